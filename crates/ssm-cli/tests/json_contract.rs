//! The `--json` contract of `ssm obt` (README "The --json contract"): every
//! subcommand, run with `--json` against real devices on loopback, prints
//! one JSON document (JSON lines for `status --watch`) whose keys are
//! snake_case; a device is `uuid` (a UUID) and `name`, an endpoint `ep`,
//! a duration a `_ms` float; no command uses the old names (`deviceuuid`,
//! `device`, `client`, `obt`, `read_back`); an error is exactly one
//! `{"error": …, "exit": N}` object.
mod common;
use common::*;
use serde_json::Value;
use ssm_testkit::{Host, TempDir};

const OLD_NAMES: [&str; 5] = ["deviceuuid", "device", "client", "obt", "read_back"];

/// Checks one document against the contract; `path` names where in it.
fn check(v: &Value, path: &str, what: &str) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let here = format!("{path}.{k}");
                assert!(
                    !k.is_empty()
                        && k.bytes()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_'),
                    "{what}: key {here} is not snake_case"
                );
                assert!(!OLD_NAMES.contains(&k.as_str()), "{what}: old name {here}");
                if k == "uuid" && !x.is_null() {
                    let s = x
                        .as_str()
                        .unwrap_or_else(|| panic!("{what}: {here} not text"));
                    assert!(s.parse::<uuid::Uuid>().is_ok(), "{what}: {here} = {s}");
                }
                if k.ends_with("_ms") {
                    assert!(
                        x.is_null() || x.is_f64(),
                        "{what}: {here} = {x} is not a float"
                    );
                }
                if k == "ep" {
                    assert!(
                        x.as_str().is_some_and(|s| s.starts_with("coap://")),
                        "{what}: {here} = {x}"
                    );
                }
                check(x, &here, what);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| check(x, path, what)),
        _ => {}
    }
}

/// Runs `ssm obt --domain D --json ARGS`: exactly one document, checked;
/// an error one `{"error", "exit"}` object whose exit is the status.
fn doc(h: &Host, domain: &str, args: &[&str], want: i32) -> Value {
    let mut a = vec!["obt", "--domain", domain, "--json"];
    a.extend_from_slice(args);
    let o = h.ssm(&a);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(want),
        "{args:?}: {out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let docs: Vec<Value> = serde_json::Deserializer::from_str(&out)
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {out}"));
    assert_eq!(docs.len(), 1, "{args:?}: one document: {out}");
    let v = docs.into_iter().next().unwrap();
    check(&v, "", &format!("{args:?}"));
    if want != 0 && v.get("error").is_some() {
        let m = v.as_object().unwrap();
        assert_eq!(m.len(), 2, "{args:?}: an error is {{error, exit}}: {v}");
        assert!(v["error"].is_string());
        assert_eq!(v["exit"], want);
    }
    v
}

#[test]
fn every_obt_subcommand_follows_the_json_contract() {
    let h = Host(None);
    let tmp = TempDir::new("ssm-json");
    let dir = tmp.path();
    let port = ssm_testkit::free_udp_port();
    let ports = port.to_string();
    let link = ["--iface", "lo", "--port", ports.as_str()];
    let names = ["light-0", "light-1", "switch-0"];
    let devs: Vec<Dev> = names
        .iter()
        .map(|n| {
            let role = if n.starts_with("switch") {
                "switch"
            } else {
                "light"
            };
            start_with(&h, &dir.join(n), "lo", role, port, &["--name", n])
        })
        .collect();
    let pins: Vec<String> = names
        .iter()
        .map(|n| {
            std::fs::read_to_string(dir.join(n).join("pin"))
                .unwrap()
                .trim()
                .to_string()
        })
        .collect();
    let pin = |i: usize| pins[i].clone();
    let d = dir.join("domain.sqlite");
    let d = d.to_str().unwrap();
    let with = |a: &[&str]| -> Vec<String> {
        a.iter().chain(link.iter()).map(|s| s.to_string()).collect()
    };
    let run = |a: &[&str], want: i32| {
        let v: Vec<String> = with(a);
        let r: Vec<&str> = v.iter().map(String::as_str).collect();
        doc(&h, d, &r, want)
    };

    let v = doc(&h, d, &["init", "--name", "hall"], 0);
    assert!(v["obt_uuid"].is_string() && v["name"] == "hall", "{v}");
    let v = run(&["discover", "--wait-ms", "600"], 0);
    assert_eq!(v["unowned"].as_array().unwrap().len(), 3, "{v}");
    let wrong = if pin(0) == "12345678" {
        "87654321"
    } else {
        "12345678"
    };
    let v = run(&["onboard", &devs[0].ep, "--pin", wrong], 1);
    assert!(
        v["error"].as_str().unwrap().contains("refused the PIN"),
        "{v}"
    );
    let v = run(&["onboard", &devs[0].ep, "--pin", &pin(0)], 0);
    assert_eq!(
        (v["name"].as_str(), v["role"].as_str()),
        (Some("light-0"), Some("light")),
        "{v}"
    );
    let sheet = dir.join("sheet.txt");
    std::fs::write(
        &sheet,
        format!(
            "{} {}\n{} {}\n{} {} light-0\n",
            devs[1].di,
            pin(1),
            devs[2].di,
            pin(2),
            devs[0].di,
            pin(0)
        ),
    )
    .unwrap();
    let v = run(&["onboard", "--all", "--pins", sheet.to_str().unwrap()], 0);
    let results: Vec<&str> = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["result"].as_str().unwrap())
        .collect();
    assert_eq!(
        results,
        ["onboarded", "onboarded", "already_in_domain"],
        "{v}"
    );
    std::fs::write(&sheet, "garbage\n").unwrap();
    let v = run(&["onboard", "--all", "--pins", sheet.to_str().unwrap()], 2);
    assert!(v["error"].as_str().unwrap().contains("line 1"), "{v}");
    let v = doc(&h, d, &["list"], 0);
    assert_eq!(v["devices"].as_array().unwrap().len(), 3, "{v}");
    doc(&h, d, &["show", "light-0"], 0);
    doc(&h, d, &["show", "nobody"], 1);
    let v = run(&["ssm", "grant", "switch-0", "--all"], 0);
    assert_eq!(v["name"], "switch-0", "{v}");
    let v = doc(&h, d, &["status"], 0);
    assert!(
        v["devices"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["reachable"] == true),
        "{v}"
    );
    // --watch: JSON lines, each checked.
    let o = h.ssm(&[
        "obt", "--domain", d, "--json", "status", "--watch", "--for", "1500ms",
    ]);
    assert!(o.status.success());
    let lines: Vec<Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "one state line per light: {lines:?}");
    for l in &lines {
        check(l, "", "status --watch");
        assert_eq!(l["event"], "state");
    }
    let v = doc(&h, d, &["rename", "light-1", "hall-1"], 0);
    assert_eq!(v["old_name"], "light-1", "{v}");
    assert_eq!(v["device_updated"], true, "/oic/con took the name: {v}");
    let v = doc(&h, d, &["inspect", "light-0"], 0);
    assert_eq!(v["matches"], true, "{v}");
    // Zones: `ssm obt group …`.
    doc(&h, d, &["group", "create", "east"], 0);
    run(&["group", "add", "east", "light-0", "switch-0"], 0);
    doc(&h, d, &["group", "list"], 0);
    doc(&h, d, &["group", "show", "east"], 0);
    run(&["group", "rekey", "east"], 0);
    let v = run(&["ssm", "grant", "switch-0", "--group", "east"], 0);
    assert_eq!(v["name"], "switch-0", "{v}");
    run(&["ssm", "revoke", "switch-0", "--group", "east"], 0);
    run(&["group", "remove", "east", "light-0"], 0);
    run(&["group", "delete", "east"], 0);
    doc(&h, d, &["group", "show", "east"], 1);
    // External members of a group-oscore group.
    let v = doc(
        &h,
        d,
        &[
            "group",
            "create",
            "hall",
            "--profile",
            "group-oscore",
            "--aead-alg",
            "AES-CCM-16-64-128",
        ],
        0,
    );
    assert_eq!(v["group"]["aead_alg"], 10, "{v}");
    run(&["group", "add", "hall", "light-0"], 0);
    let key = ssm_ocf::group_cred::public_key(&[7; 32]);
    let ccs = dir.join("ext.ccs");
    std::fs::write(&ccs, hex::encode(ssm_ocf::group_cred::ccs_of_ed25519(&key))).unwrap();
    let ccs = ccs.to_str().unwrap();
    let v = doc(
        &h,
        d,
        &[
            "external",
            "add",
            "ext-0",
            "--role",
            "switch",
            "--authcred",
            ccs,
        ],
        0,
    );
    assert_eq!(v["state"], "external", "{v}");
    let v = doc(&h, d, &["show", "ext-0"], 0);
    assert!(v.get("ep").is_none(), "no endpoint: {v}");
    doc(
        &h,
        d,
        &[
            "external",
            "add",
            "ext-1",
            "--role",
            "light",
            "--authcred",
            d,
        ],
        2,
    );
    run(&["ssm", "grant", "ext-0", "--group", "hall"], 0);
    let v = doc(
        &h,
        d,
        &["external", "material", "ext-0", "--group", "hall"],
        0,
    );
    assert_eq!(
        (v["epoch"].as_i64(), v["aeadalg"].as_i64()),
        (Some(1), Some(10)),
        "{v}"
    );
    let out = dir.join("ext-0.json");
    let o = out.to_str().unwrap();
    let v = doc(
        &h,
        d,
        &[
            "external", "material", "ext-0", "--group", "hall", "--out", o,
        ],
        0,
    );
    assert_eq!(v["member"], "ext-0", "{v}");
    doc(
        &h,
        d,
        &["external", "material", "light-0", "--group", "hall"],
        1,
    );
    let v = doc(&h, d, &["list"], 0);
    assert_eq!(v["devices"].as_array().unwrap().len(), 4, "{v}");
    doc(&h, d, &["status"], 0);
    let v = run(&["external", "remove", "ext-0"], 0);
    assert_eq!(v["rekeyed"][0]["group"], "hall", "{v}");
    run(&["group", "delete", "hall"], 0);
    run(&["sync", "--all"], 0);
    run(&["ssm", "rekey"], 0);
    run(&["ssm", "revoke", "switch-0", "hall-1"], 0);
    let pass = dir.join("pass");
    std::fs::write(&pass, "passphrase\n").unwrap();
    let export = dir.join("d.ssmdom");
    let e = export.to_str().unwrap();
    doc(
        &h,
        d,
        &["export", e, "--passphrase-file", pass.to_str().unwrap()],
        0,
    );
    let fresh = dir.join("fresh.sqlite");
    let f = fresh.to_str().unwrap();
    doc(
        &h,
        f,
        &["import", e, "--passphrase-file", pass.to_str().unwrap()],
        0,
    );
    doc(
        &h,
        f,
        &["import", e, "--passphrase-file", pass.to_str().unwrap()],
        1,
    );
    let v = run(&["offboard", "hall-1"], 0);
    assert_eq!(
        (v["name"].as_str(), v["removed"].as_bool()),
        (Some("hall-1"), Some(true)),
        "{v}"
    );
    // A usage error and a store error are errors too.
    doc(&h, d, &["onboard"], 2);
    doc(&h, &dir.join("none.sqlite").to_string_lossy(), &["list"], 3);
    drop(devs);
}

//! Lights at several SSM hrefs, commissioned by `ssm obt` (issue 14's
//! leftovers): a relay light with two SSM-enabled switches (`ssm device
//! --href /lights --href /lights/2`, each its own state) and one of ours at
//! the example URI, and a switch, each its own process started unowned
//! (each in its own network namespace on a bridge when root, IPv6
//! ff02::158; else on `lo`, IPv4), onboarded by `ssm obt onboard --all`
//! from a PIN sheet and granted by `ssm obt ssm grant --all`. Then:
//!
//! * the relay's ACEs (read back from it by `ssm obt inspect`) grant the
//!   switch, and the OBT, every href it serves; the other light's its one;
//! * one `ssm client update --multicast --confirm` sends one datagram per
//!   href, switches both of the relay's switches, and confirms both lights
//!   (exit 0), each at the href it serves (the table's and `--json`'s
//!   `href`);
//! * a second `ssm obt sync --all` (which re-reads each light's `/oic/res`)
//!   changes nothing on any device;
//! * the light at the example URI restarts at another port with a second
//!   switch: `ssm obt sync` finds it by multicast, re-reads its hrefs,
//!   grants the new one (ACEs for the switch and the OBT) and syncs the
//!   switch in the same run; the next `--confirm` switches all four;
//! * with the light at the example URI stopped, `--confirm` exits 1: the
//!   relay is confirmed, the stopped light is not.
mod common;
use common::*;
use serde_json::Value;
use ssm_testkit::hosts;
use std::time::{Duration, Instant};

const EXAMPLE: &str = "/BinarySwitchResURI";

/// The hrefs of the ACEs for `subject` in an `inspect --json` answer.
fn ace_hrefs(inspected: &Value, subject: &str) -> Vec<String> {
    let mut out: Vec<String> = inspected["aces"]
        .as_array()
        .unwrap_or_else(|| panic!("no aces: {inspected}"))
        .iter()
        .filter(|a| a["subject"]["uuid"] == subject)
        .flat_map(|a| a["resources"].as_array().cloned().unwrap_or_default())
        .filter_map(|r| r["href"].as_str().map(String::from))
        .collect();
    out.sort();
    out
}

#[test]
fn one_confirm_switches_lights_at_several_hrefs() {
    let pid = std::process::id();
    let (topo, hosts, iface) = hosts(&format!("ssmh{}", pid % 100000), 4);
    let port = ssm_testkit::free_udp_port();
    let dir = std::env::temp_dir().join(format!("ssm-obt-hrefs-{pid}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let domain = dir.join("domain.sqlite");
    let domain = domain.to_str().unwrap().to_string();
    let link = link_args(iface, port);
    let link: Vec<&str> = link.iter().map(String::as_str).collect();
    let obt = &hosts[0];
    let obt_cmd = |args: &[&str], may_fail: bool| {
        let mut a = vec!["obt", "--domain", &domain, "--json"];
        a.extend_from_slice(args);
        obt.json(&a, may_fail)
    };
    let relay_hrefs = ["--href", "/lights", "--href", "/lights/2"];
    let names = [("relay", "light"), ("hall", "light"), ("sw", "switch")];
    let mut devs: Vec<Option<Dev>> = names
        .iter()
        .enumerate()
        .map(|(i, (n, r))| {
            let more: &[&str] = if *n == "relay" { &relay_hrefs } else { &[] };
            Some(start_with(
                &hosts[i + 1],
                &dir.join(n),
                iface,
                r,
                port,
                more,
            ))
        })
        .collect();
    let sheet: Vec<_> = devs
        .iter()
        .zip(&names)
        .map(|(d, (n, r))| (d.as_ref().unwrap(), n.to_string(), *r))
        .collect();
    let pins = pin_sheet(&dir, &sheet);
    obt_cmd(&["init", "--name", "hrefs"], false);
    let mut a = vec!["onboard", "--all", "--pins", pins.to_str().unwrap()];
    a.extend(&link);
    let (_, v) = obt_cmd(&a, false);
    assert_eq!(v["onboarded"], 3, "{v}");
    let mut a = vec!["ssm", "grant", "sw", "--all"];
    a.extend(&link);
    let (_, v) = obt_cmd(&a, false);
    assert_eq!(v["granted"], 2, "{v}");

    // What the lights hold: every href granted, to the switch and the OBT.
    let (_, sw_i) = obt_cmd(&["inspect", "sw"], false);
    let sw_uuid = sw_i["uuid"].as_str().unwrap().to_string();
    let (_, relay) = obt_cmd(&["inspect", "relay"], false);
    assert_eq!(relay["matches"], true, "{relay}");
    assert_eq!(
        ace_hrefs(&relay, &sw_uuid),
        ["/lights", "/lights/2"],
        "{relay}"
    );
    let (_, hall) = obt_cmd(&["inspect", "hall"], false);
    assert_eq!(hall["matches"], true, "{hall}");
    assert_eq!(ace_hrefs(&hall, &sw_uuid), [EXAMPLE], "{hall}");

    let sw_host = &hosts[3];
    let sw = dir.join("sw");
    let sw = sw.to_str().unwrap();
    let mut mcast: Vec<String> = vec![
        "--iface".into(),
        iface.into(),
        "--port".into(),
        port.to_string(),
    ];
    if iface != "lo" {
        mcast.extend(["--no-ipv4".into(), "--scopes".into(), "2".into()]);
    }
    let confirm = |value: &str| {
        let mut a = vec![
            "client",
            "--state-dir",
            sw,
            "--json",
            "update",
            "--multicast",
            "--confirm",
            "--value",
            value,
        ];
        a.extend(mcast.iter().map(String::as_str));
        let out = sw_host.ssm(&a);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "confirm: not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.code(), v)
    };
    let light_row = |v: &Value, name: &str| -> Value {
        v["lights"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no row for {name}: {v}"))
    };

    // One command, both lights confirmed, each at its href; the relay
    // applied it on both of its switches.
    for value in ["on", "off"] {
        devs[0].as_ref().unwrap().drain();
        let (code, v) = confirm(value);
        assert_eq!(code, Some(0), "confirm {value}: {v}");
        assert_eq!(v["all_confirmed"], true, "{v}");
        let mut hrefs: Vec<&str> = v["hrefs"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        hrefs.sort();
        assert_eq!(hrefs, [EXAMPLE, "/lights", "/lights/2"], "{v}");
        let sent: Vec<&str> = v["sent"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|s| s["href"].as_str())
            .collect();
        for h in [EXAMPLE, "/lights", "/lights/2"] {
            assert!(sent.contains(&h), "a datagram for {h}: {v}");
        }
        let (r, h) = (light_row(&v, "relay"), light_row(&v, "hall"));
        assert_eq!(
            (r["href"].as_str(), r["confirmed"].as_bool()),
            (Some("/lights"), Some(true)),
            "{v}"
        );
        assert_eq!(
            (h["href"].as_str(), h["confirmed"].as_bool()),
            (Some(EXAMPLE), Some(true)),
            "{v}"
        );
        assert_eq!(r["state"], value == "on", "{v}");
        let relay_dev = devs[0].as_ref().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut applied: Vec<String> = Vec::new();
        while applied.len() < 2 {
            let Some(e) = relay_dev.next("ssm_applied", deadline) else {
                break;
            };
            if let Some(h) = e["href"]
                .as_str()
                .filter(|h| !applied.iter().any(|a| a == h))
            {
                applied.push(h.to_string());
            }
        }
        applied.sort();
        assert_eq!(
            applied,
            ["/lights", "/lights/2"],
            "both of the relay's switches"
        );
    }

    // A second sync (each light's /oic/res read again) changes nothing.
    let mut a = vec!["sync", "--all"];
    a.extend(&link);
    let (_, v) = obt_cmd(&a, false);
    let devices = v["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 3, "{v}");
    for d in devices {
        assert_eq!(d["synced"], true, "{v}");
        for k in [
            "creds_added",
            "creds_removed",
            "creds_updated",
            "aces_added",
            "aces_removed",
        ] {
            assert_eq!(d[k], 0, "{k} on {}: {v}", d["name"]);
        }
    }

    // The light at the example URI restarts (a new unicast port) with a
    // second switch: a sync finds it again, grants the new href and
    // brings the switch, which its set made stale, the new list at once.
    devs[1].take().unwrap().kill();
    let hall_more = ["--href", EXAMPLE, "--href", "/hall/2"];
    devs[1] = Some(start_with(
        &hosts[2],
        &dir.join("hall"),
        iface,
        "light",
        port,
        &hall_more,
    ));
    let mut a = vec!["sync", "hall"];
    a.extend(&link);
    let (_, v) = obt_cmd(&a, false);
    let devices = v["devices"].as_array().unwrap();
    let synced = |name: &str| {
        devices
            .iter()
            .find(|d| d["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} not synced: {v}"))
    };
    let (h, s) = (synced("hall"), synced("sw"));
    assert_eq!(
        (h["synced"].as_bool(), h["aces_added"].as_u64()),
        (Some(true), Some(2)),
        "switch and OBT on /hall/2: {v}"
    );
    assert_eq!(h["aces_removed"], 0, "{v}");
    assert_eq!(s["synced"], true, "{v}");
    let (_, hall) = obt_cmd(&["inspect", "hall"], false);
    assert_eq!(hall["matches"], true, "{hall}");
    assert_eq!(ace_hrefs(&hall, &sw_uuid), [EXAMPLE, "/hall/2"], "{hall}");
    devs[1].as_ref().unwrap().drain();
    let (code, v) = confirm("on");
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["hrefs"].as_array().unwrap().len(), 4, "{v}");
    assert_eq!(light_row(&v, "hall")["href"], EXAMPLE, "{v}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut applied: Vec<String> = Vec::new();
    while applied.len() < 2 {
        let Some(e) = devs[1].as_ref().unwrap().next("ssm_applied", deadline) else {
            break;
        };
        if let Some(h) = e["href"]
            .as_str()
            .filter(|h| !applied.iter().any(|a| a == h))
        {
            applied.push(h.to_string());
        }
    }
    applied.sort();
    assert_eq!(
        applied,
        [EXAMPLE, "/hall/2"],
        "both of the hall light's switches"
    );

    // The light at the example URI stopped: not confirmed, exit 1; the
    // relay still is.
    devs[1].take().unwrap().kill();
    let (code, v) = confirm("on");
    assert_eq!(code, Some(1), "{v}");
    assert_eq!(v["all_confirmed"], false, "{v}");
    let rows = v["lights"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{v}");
    let confirmed: Vec<&Value> = rows.iter().filter(|l| l["confirmed"] == true).collect();
    assert_eq!(confirmed.len(), 1, "{v}");
    assert_eq!(confirmed[0]["href"], "/lights", "{v}");
    drop(devs);
    drop(topo);
    let _ = std::fs::remove_dir_all(&dir);
}

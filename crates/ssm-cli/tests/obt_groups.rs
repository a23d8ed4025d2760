//! Zones: several SSM groups in one domain, with `ssm obt group` only, as
//! in the README. Five lights and two switches, each its own process (each
//! in its own network namespace when root, IPv6 ff02::158; else on `lo`,
//! IPv4): `east` = e1, e2, both; `west` = both, w1, w2; switch A commands
//! east, switch B commands east and west.
//!
//! * group lifecycle: create, add, grant `--group`, targeted commands
//!   (`update --multicast --group NAME`; the default is the switch's only
//!   group, several without `--group` is a usage error naming them), a
//!   light outside the group drops before any AEAD work (`UnknownKid`),
//!   the light in both groups applies each group's commands; the devices'
//!   `/groupsResURI` equals the store (read with a switch's pair-wise
//!   credential); removing a member while another is offline rekeys that
//!   group only (the other group's epoch, Sender IDs and devices are
//!   untouched and keep working) and the offline light is synced later.
//! * forgery across groups: light e1, using everything on its disk (every
//!   secret and ID of its `svr.json`, also combined with the Sender IDs of
//!   the west switches, which are on the wire), forges commands: the west
//!   lights accept none.
mod common;
use common::*;
use serde_json::{json, Value};
use ssm_testkit::hosts;
use std::path::Path;
use std::time::{Duration, Instant};

const LIGHTS: [&str; 5] = ["e1", "e2", "both", "w1", "w2"];

/// What each device reported until `deadline`: whether it applied an SSM
/// update, and the reasons of the datagrams it dropped.
fn observe(devs: &[(&str, &Dev)], deadline: Instant) -> Vec<(String, bool, Vec<String>)> {
    devs.iter()
        .map(|(n, d)| {
            let (applied, drops) = reported(d, deadline);
            (n.to_string(), applied.is_some(), drops)
        })
        .collect()
}

/// Which of the devices applied an SSM update before `deadline`.
fn who_applied(devs: &[(&str, &Dev)], deadline: Instant) -> Vec<String> {
    observe(devs, deadline)
        .into_iter()
        .filter(|o| o.1)
        .map(|o| o.0)
        .collect()
}

struct Site {
    devs: Vec<Option<Dev>>,
    names: Vec<&'static str>,
}

impl Site {
    fn dev(&self, n: &str) -> &Dev {
        let i = self.names.iter().position(|x| *x == n).unwrap();
        self.devs[i].as_ref().unwrap()
    }
    fn lights(&self) -> Vec<(&str, &Dev)> {
        LIGHTS
            .iter()
            .filter_map(|n| {
                let i = self.names.iter().position(|x| x == n)?;
                Some((*n, self.devs[i].as_ref()?))
            })
            .collect()
    }
    fn drain(&self) {
        self.devs.iter().flatten().for_each(|d| d.drain());
    }
}

#[test]
fn zones_lifecycle_and_forgery_across_groups() {
    let pid = std::process::id();
    let (topo, hosts, iface) = hosts(&format!("ssmz{}", pid % 100000), 8);
    let port = ssm_testkit::free_udp_port();
    let dir = ssm_testkit::TempDir::new("ssm-obt-zones");
    let domain = dir.join("domain.sqlite");
    let domain = domain.to_str().unwrap().to_string();
    let link = link_args(iface, port);
    let link: Vec<&str> = link.iter().map(String::as_str).collect();
    let obt = &hosts[0];
    let obt_cmd = |args: &[&str], may_fail: bool| {
        let mut a = vec!["obt", "--domain", &domain, "--json"];
        a.extend_from_slice(args);
        a.extend(&link);
        obt.json(&a, may_fail)
    };
    let plain = |args: &[&str]| {
        let mut a = vec!["obt", "--domain", &domain, "--json"];
        a.extend_from_slice(args);
        obt.json(&a, false).1
    };
    let names: Vec<&'static str> = LIGHTS.iter().copied().chain(["sw-a", "sw-b"]).collect();
    let role = |n: &str| {
        if n.starts_with("sw") {
            "switch"
        } else {
            "light"
        }
    };
    let mut site = Site {
        devs: names
            .iter()
            .enumerate()
            .map(|(i, n)| Some(start(&hosts[i + 1], &dir.join(n), iface, role(n), port)))
            .collect(),
        names: names.clone(),
    };
    let sheet: Vec<_> = site
        .devs
        .iter()
        .zip(&names)
        .map(|(d, n)| (d.as_ref().unwrap(), n.to_string(), role(n)))
        .collect();
    let pins = pin_sheet(&dir, &sheet);
    let t0 = Instant::now();
    let phase = |what: &str| eprintln!("{:>6} ms  {what}", t0.elapsed().as_millis());
    plain(&["init", "--name", "site"]);
    let (_, v) = obt_cmd(
        &["onboard", "--all", "--pins", pins.to_str().unwrap()],
        false,
    );
    assert_eq!(v["onboarded"], 7, "{v}");

    phase("onboarded");
    // Groups, members, switches.
    let east = plain(&["group", "create", "east"])["group"].clone();
    let west = plain(&["group", "create", "west"])["group"].clone();
    assert_eq!(
        (east["epoch"].as_i64(), west["epoch"].as_i64()),
        (Some(0), Some(0))
    );
    let (eid, wid) = (east["id"].as_i64().unwrap(), west["id"].as_i64().unwrap());
    for (g, members) in [
        ("east", ["e1", "e2", "both"]),
        ("west", ["both", "w1", "w2"]),
    ] {
        let mut a = vec!["group", "add", g];
        a.extend(members);
        let (_, v) = obt_cmd(&a, false);
        assert_eq!(
            (v["stale"].as_u64(), v["epoch"].as_i64()),
            (Some(0), Some(1)),
            "{v}"
        );
    }
    for (sw, g) in [("sw-a", "east"), ("sw-b", "east"), ("sw-b", "west")] {
        let (_, v) = obt_cmd(&["ssm", "grant", sw, "--group", g], false);
        assert_eq!(
            (v["stale"].as_u64(), v["granted"].as_u64()),
            (Some(0), Some(3)),
            "{v}"
        );
    }
    let list = plain(&["group", "list"]);
    assert_eq!(list["groups"].as_array().unwrap().len(), 2, "{list}");
    let west_before = plain(&["group", "show", "west"])["group"].clone();
    assert_eq!(west_before["switches"].as_array().unwrap().len(), 1);
    let (code, _) = obt.json(
        &[
            "obt", "--domain", &domain, "--json", "group", "show", "north",
        ],
        true,
    );
    assert_eq!(code, Some(1), "an unknown group is not a store error");

    phase("groups made");
    // Targeted commands.
    let sw = |n: &str| dir.join(n);
    let soon = || Instant::now() + Duration::from_millis(1500);
    site.drain();
    let (code, err) = send_group(&hosts[6], &sw("sw-a"), iface, port, "on", None);
    assert_eq!(code, Some(0), "{err}");
    let seen = observe(&site.lights(), soon());
    let appliers: Vec<&str> = seen.iter().filter(|o| o.1).map(|o| o.0.as_str()).collect();
    assert_eq!(appliers, ["e1", "e2", "both"], "{seen:?}");
    for o in seen.iter().filter(|o| o.0.starts_with('w')) {
        assert!(
            o.2.iter().all(|r| r == "UnknownKid") && !o.2.is_empty(),
            "a light outside the group drops before any AEAD work: {o:?}"
        );
    }
    let (code, err) = send_group(&hosts[7], &sw("sw-b"), iface, port, "on", None);
    assert_eq!(code, Some(2), "two groups and no --group: {err}");
    assert!(err.contains("east") && err.contains("west"), "{err}");
    site.drain();
    let (code, err) = send_group(&hosts[7], &sw("sw-b"), iface, port, "off", Some("west"));
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(who_applied(&site.lights(), soon()), ["both", "w1", "w2"]);
    // --confirm reads back the lights of that group only (by their
    // /groupsResURI), though the switch holds pair-wise keys for all five.
    let swb = sw("sw-b");
    let mut a = vec![
        "client",
        "--json",
        "--state-dir",
        swb.to_str().unwrap(),
        "update",
        "--multicast",
        "--group",
        "west",
        "--value",
        "on",
        "--confirm",
    ];
    let net = link_args(iface, port);
    a.extend(net.iter().filter(|x| *x != "--ipv6").map(String::as_str));
    if iface != "lo" {
        a.extend(["--no-ipv4", "--scopes", "2"]);
    }
    let (code, v) = hosts[7].json(&a, true);
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(
        (v["confirmed"].as_u64(), v["all_confirmed"].as_bool()),
        (Some(3), Some(true)),
        "{v}"
    );
    let dis: Vec<&str> = v["lights"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["di"].as_str())
        .collect();
    for n in ["both", "w1", "w2"] {
        let uuid = plain(&["show", n])["uuid"].as_str().unwrap().to_string();
        assert!(dis.contains(&uuid.as_str()), "{n} confirmed: {v}");
    }
    let (code, err) = send_group(&hosts[6], &sw("sw-a"), iface, port, "on", Some("west"));
    assert_eq!(code, Some(2), "switch A does not command west: {err}");

    phase("targeted commands");
    // /groupsResURI equals the store: read by a switch (pair-wise OSCORE).
    let read_groups = |light: &str| -> Vec<i64> {
        let out = hosts[7].ssm(&[
            "client",
            "--json",
            "--state-dir",
            sw("sw-b").to_str().unwrap(),
            "get",
            &site.dev(light).ep,
            "--href",
            "/groupsResURI",
        ]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        let mut g: Vec<i64> = v["body"]["groups"]
            .as_array()
            .unwrap_or_else(|| panic!("{light}: {v} {}", String::from_utf8_lossy(&out.stderr)))
            .iter()
            .filter_map(Value::as_i64)
            .collect();
        g.sort();
        g
    };
    assert_eq!(read_groups("both"), vec![eid, wid]);
    assert_eq!(read_groups("e1"), vec![eid]);
    assert_eq!(read_groups("w2"), vec![wid]);

    phase("groups read back");
    // e1 goes offline; e2 leaves east: east (only) is rekeyed.
    let i_e1 = names.iter().position(|n| *n == "e1").unwrap();
    site.devs[i_e1].take().unwrap().kill();
    let (code, v) = obt_cmd(&["group", "remove", "east", "e2"], true);
    assert_eq!(code, Some(1), "one member offline: {v}");
    assert_eq!(
        (v["epoch"].as_i64(), v["stale"].as_u64()),
        (Some(2), Some(1)),
        "{v}"
    );
    let synced: Vec<&str> = v["devices"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["name"].as_str())
        .collect();
    assert!(
        !synced.contains(&"w1") && !synced.contains(&"w2"),
        "west untouched: {v}"
    );
    let west_after = plain(&["group", "show", "west"])["group"].clone();
    assert_eq!(
        west_after, west_before,
        "west: same epoch, members, Sender IDs"
    );
    let l = plain(&["list"]);
    let state = |n: &str| {
        l["devices"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["name"] == n)
            .map(|d| d["state"].as_str().unwrap().to_string())
            .unwrap()
    };
    assert_eq!(state("e1"), "stale");
    assert_eq!(state("w1"), "provisioned");
    // e2's own state (no switch holds a key to ask it any more).
    let svr: Value =
        serde_json::from_str(&std::fs::read_to_string(sw("e2").join("svr.json")).unwrap()).unwrap();
    assert_eq!(svr["groups"], json!([]), "e2 is in no group now");
    assert!(
        !managed_creds(&sw("e2")).contains(&256),
        "e2 holds no group key"
    );
    // West still works as before; east reaches "both" but not e2.
    site.drain();
    send_group(&hosts[7], &sw("sw-b"), iface, port, "on", Some("west"));
    assert_eq!(who_applied(&site.lights(), soon()), ["both", "w1", "w2"]);
    site.drain();
    send_group(&hosts[6], &sw("sw-a"), iface, port, "off", None);
    assert_eq!(who_applied(&site.lights(), soon()), ["both"]);

    phase("removed");
    // e1 comes back (another port): sync brings it to east's new epoch.
    site.devs[i_e1] = Some(start(&hosts[i_e1 + 1], &sw("e1"), iface, "light", port));
    let (_, v) = obt_cmd(&["sync"], false);
    assert_eq!(
        (v["stale"].as_u64(), v["devices"].as_array().map(Vec::len)),
        (Some(0), Some(1)),
        "{v}"
    );
    site.drain();
    send_group(&hosts[6], &sw("sw-a"), iface, port, "on", None);
    assert_eq!(who_applied(&site.lights(), soon()), ["e1", "both"]);

    phase("synced");
    // `list` shows each device's groups.
    let l = plain(&["list"]);
    let groups_of = |n: &str| {
        let d = l["devices"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["name"] == n)
            .unwrap();
        (d["groups"].clone(), d["group_ids"].clone())
    };
    assert_eq!(
        (groups_of("both"), groups_of("e2"), groups_of("sw-b")),
        (
            (json!(["east", "west"]), json!([eid, wid])),
            (json!([]), json!([])),
            (json!(["east", "west"]), json!([eid, wid]))
        )
    );
    // Forgery across groups: e1 uses everything on its disk.
    let west_ids: Vec<String> = west_after["sender_ids"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["sender_id"].as_str().map(String::from))
        .collect();
    let forged = forge_from(&sw("e1"), &west_ids);
    assert!(forged.len() >= 6, "{} forgeries", forged.len());
    let forger = dir.join("forger");
    std::fs::create_dir_all(&forger).unwrap();
    let creds: Vec<Value> = forged
        .iter()
        .enumerate()
        .map(|(i, (secret, sid))| {
            json!({"credid": i + 1, "subjectuuid": "11111111-2222-4333-8444-555555555555", "credtype": 128,
                   "privatedata": secret, "oscore": {"senderid": sid, "desc": format!("SSM group f{i} (9) epoch 1")}})
        })
        .collect();
    std::fs::write(
        forger.join("creds.json"),
        serde_json::to_string(&json!({"creds": creds, "rowneruuid": ""})).unwrap(),
    )
    .unwrap();
    fn west_lights(s: &Site) -> Vec<(&'static str, &Dev)> {
        ["w1", "w2"].iter().map(|n| (*n, s.dev(n))).collect()
    }
    site.drain();
    // Every accepted update is reported (`ssm_applied`), changed or not.
    for i in 0..forged.len() {
        let g = format!("f{i}");
        let (code, err) = send_group(&hosts[1], &forger, iface, port, "off", Some(&g));
        assert_eq!(code, Some(0), "the forger sends: {err}");
    }
    let seen = observe(&west_lights(&site), Instant::now() + Duration::from_secs(2));
    for (n, applied, drops) in &seen {
        assert!(!applied, "{n} accepted a forgery: {seen:?}");
        // Every forgery reached it and was dropped (coalesced counts).
        assert!(!drops.is_empty(), "{n} saw the forgeries: {seen:?}");
    }
    phase("forgeries");
    // West still works.
    site.drain();
    send_group(&hosts[7], &sw("sw-b"), iface, port, "on", Some("west"));
    assert_eq!(who_applied(&west_lights(&site), soon()), ["w1", "w2"]);

    // Offboarding the switch of both groups rekeys both.
    let (_, v) = obt_cmd(&["offboard", "sw-b"], false);
    let mut rekeyed: Vec<&str> = v["rekeyed"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["group"].as_str())
        .collect();
    rekeyed.sort();
    assert_eq!(rekeyed, ["east", "west"], "{v}");
    assert_eq!(v["stale"], 0, "{v}");

    drop(site);
    drop(topo);
}

/// Every (secret, Sender ID) a light's files give a forger: each OSCORE
/// credential's secret with each ID it holds, and with each of `extra`
/// (the IDs of another group's senders, seen on the wire).
fn forge_from(state: &Path, extra: &[String]) -> Vec<(Value, String)> {
    let text = std::fs::read_to_string(state.join("svr.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    let mut out = Vec::new();
    for c in v["cred"]["creds"].as_array().unwrap() {
        let t = c["credtype"].as_u64().unwrap_or(0);
        if ![64, 128, 256].contains(&t) {
            continue;
        }
        let secret = c["privatedata"].clone();
        let o = &c["oscore"];
        let mut ids: Vec<String> = ["senderid", "recipientid"]
            .iter()
            .filter_map(|k| o[*k].as_str().map(String::from))
            .collect();
        ids.extend(extra.iter().cloned());
        for id in ids {
            out.push((secret.clone(), id));
        }
    }
    out
}

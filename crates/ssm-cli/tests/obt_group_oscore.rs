//! Group OSCORE group mode (RFC 10021) as a per-group profile, with `ssm
//! obt` as Group Manager, every device its own process (each in its own
//! network namespace when root, IPv6 ff02::158; else on `lo`, IPv4).
//! Three lights, two switches, one group `hall --profile group-oscore`:
//!
//! * lifecycle: create, add the lights, grant both switches; each switch
//!   made its own key pair (0600, private key nowhere else: not in the
//!   domain, not on the lights); the lights hold one group-mode recipient
//!   credential (131072) per switch, the switches a sender credential
//!   (65536), no SSM (128/256) credential; a switch's command is applied.
//! * forgery by a member: light l1 uses everything on its disk (master
//!   secret, Group ID, GM credential, each switch's Sender ID) and signs
//!   with a key of its own under each switch's Sender ID: 0 accepted,
//!   every light drops them as `BadSignature` (or `Replay` for a sequence
//!   number the switch used already).
//! * removal: a copy of sw-b's state dir is kept, sw-b is revoked (the
//!   group is rekeyed: new epoch, so a new Group ID, master secret and
//!   Sender IDs); the copy's commands: 0 accepted; sw-a still commands.
mod common;
use common::*;
use serde_json::{json, Value};
use ssm_testkit::hosts;
use std::path::Path;
use std::time::{Duration, Instant};

const LIGHTS: [&str; 3] = ["l1", "l2", "l3"];

fn send_hall(host: &Host, state: &Path, iface: &str, port: u16, value: &str, group: &str) {
    send_to(host, state, iface, port, value, Some(group))
}

/// Per light until `deadline`: applied?, drop reasons.
fn observe(lights: &[&Dev], deadline: Instant) -> Vec<(bool, Vec<String>)> {
    lights
        .iter()
        .map(|d| {
            let (applied, drops) = reported(d, deadline);
            (applied.is_some(), drops)
        })
        .collect()
}

fn credtypes(state: &Path) -> Vec<u64> {
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(state.join("svr.json")).unwrap()).unwrap();
    let mut t: Vec<u64> = v["cred"]["creds"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["credtype"].as_u64())
        .filter(|t| *t != 1)
        .collect();
    t.sort();
    t
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let name = e.file_name();
        let n = name.to_string_lossy();
        if e.path().is_file() && !n.ends_with(".lock") {
            std::fs::copy(e.path(), to.join(&name)).unwrap();
        }
    }
}

#[test]
fn group_oscore_lifecycle_member_forgery_and_removal() {
    let pid = std::process::id();
    let (topo, hosts, iface) = hosts(&format!("ssmgo{}", pid % 100000), 6);
    let port = ssm_testkit::free_udp_port();
    let dir = ssm_testkit::TempDir::new("ssm-obt-group-oscore");
    let domain = dir.join("domain.sqlite");
    let domain = domain.to_str().unwrap().to_string();
    let link = link_args(iface, port);
    let link: Vec<&str> = link.iter().map(String::as_str).collect();
    let obt = &hosts[0];
    let obt_cmd = |args: &[&str]| {
        let mut a = vec!["obt", "--domain", &domain, "--json"];
        a.extend_from_slice(args);
        a.extend(&link);
        obt.json(&a, false).1
    };
    let plain = |args: &[&str]| {
        let mut a = vec!["obt", "--domain", &domain, "--json"];
        a.extend_from_slice(args);
        obt.json(&a, false).1
    };
    let names = ["l1", "l2", "l3", "sw-a", "sw-b"];
    let role = |n: &str| {
        if n.starts_with("sw") {
            "switch"
        } else {
            "light"
        }
    };
    let devs: Vec<Dev> = names
        .iter()
        .enumerate()
        .map(|(i, n)| start(&hosts[i + 1], &dir.join(n), iface, role(n), port))
        .collect();
    let sheet: Vec<_> = devs
        .iter()
        .zip(names)
        .map(|(d, n)| (d, n.to_string(), role(n)))
        .collect();
    let pins = pin_sheet(&dir, &sheet);
    let lights: Vec<&Dev> = devs[..3].iter().collect();
    let drain = || devs.iter().for_each(Dev::drain);
    let soon = || Instant::now() + Duration::from_millis(1500);
    plain(&["init", "--name", "site"]);
    let v = obt_cmd(&["onboard", "--all", "--pins", pins.to_str().unwrap()]);
    assert_eq!(v["onboarded"], 5, "{v}");

    // Lifecycle.
    let g = plain(&["group", "create", "hall", "--profile", "group-oscore"])["group"].clone();
    assert_eq!(g["profile"], "group-oscore", "{g}");
    let other = plain(&["group", "create", "east"])["group"].clone();
    assert_eq!(other["profile"], "ocf-ssm", "the default: {other}");
    let v = obt_cmd(&["group", "add", "hall", "l1", "l2", "l3"]);
    assert_eq!(
        (v["stale"].as_u64(), v["epoch"].as_i64()),
        (Some(0), Some(1)),
        "{v}"
    );
    for sw in ["sw-a", "sw-b"] {
        let v = obt_cmd(&["ssm", "grant", sw, "--group", "hall"]);
        assert_eq!(
            (v["stale"].as_u64(), v["granted"].as_u64()),
            (Some(0), Some(3)),
            "{v}"
        );
    }
    for l in LIGHTS {
        assert_eq!(credtypes(&dir.join(l)), [64, 64, 131072, 131072], "{l}");
    }
    let domain_bytes = std::fs::read(&domain).unwrap();
    for sw in ["sw-a", "sw-b"] {
        assert_eq!(credtypes(&dir.join(sw)), [64, 64, 64, 65536], "{sw}");
        let key = dir.join(sw).join("group-signing-key");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{sw}");
        let hex_key = std::fs::read_to_string(&key).unwrap();
        let raw = hex::decode(hex_key.trim()).unwrap();
        assert!(
            !domain_bytes.windows(32).any(|w| w == raw.as_slice()),
            "{sw}'s private key is not in the domain"
        );
        for l in LIGHTS {
            let svr = std::fs::read_to_string(dir.join(l).join("svr.json")).unwrap();
            assert!(
                !svr.contains(hex_key.trim()),
                "{sw}'s private key is not on {l}"
            );
        }
    }
    drain();
    send_hall(&hosts[4], &dir.join("sw-a"), iface, port, "on", "hall");
    let seen = observe(&lights, soon());
    assert!(
        seen.iter().all(|o| o.0),
        "every light applied sw-a's command: {seen:?}"
    );
    drain();
    send_hall(&hosts[5], &dir.join("sw-b"), iface, port, "off", "hall");
    let seen = observe(&lights, soon());
    assert!(
        seen.iter().all(|o| o.0),
        "every light applied sw-b's command: {seen:?}"
    );

    // Forgery by a member: l1's full key material, its own signing key.
    let svr: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("l1").join("svr.json")).unwrap())
            .unwrap();
    let forged: Vec<Value> = svr["cred"]["creds"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["credtype"] == 131072)
        .enumerate()
        .map(|(i, c)| {
            let mut group = c["oscore"]["group"].clone();
            group.as_object_mut().unwrap().remove("authcred");
            json!({"credid": i + 1, "subjectuuid": "11111111-2222-4333-8444-555555555555",
                   "credtype": 65536, "privatedata": c["privatedata"],
                   "oscore": {"senderid": c["oscore"]["recipientid"],
                              "desc": format!("SSM group f{i} (9) epoch 1"), "group": group}})
        })
        .collect();
    assert_eq!(forged.len(), 2, "one per switch");
    let forger = dir.join("forger");
    std::fs::create_dir_all(&forger).unwrap();
    std::fs::write(
        forger.join("creds.json"),
        serde_json::to_string(&json!({"creds": forged, "rowneruuid": ""})).unwrap(),
    )
    .unwrap();
    std::fs::write(forger.join("group-signing-key"), hex::encode([0x42u8; 32])).unwrap();
    drain();
    for i in 0..forged.len() {
        for _ in 0..5 {
            send_hall(&hosts[1], &forger, iface, port, "on", &format!("f{i}"));
        }
    }
    let seen = observe(&lights, Instant::now() + Duration::from_secs(2));
    for (n, (applied, drops)) in LIGHTS.iter().zip(&seen) {
        assert!(!applied, "{n} accepted a member's forgery: {seen:?}");
        // The forger's first sequence number per switch was used by that
        // switch already: a Replay (checked before the signature); every
        // other forgery fails the signature.
        let bad_sig = drops.iter().filter(|r| *r == "BadSignature").count();
        assert!(
            drops.iter().all(|r| r == "BadSignature" || r == "Replay") && bad_sig >= 8,
            "{n} dropped the forgeries for their signature: {seen:?}"
        );
    }

    // Removal: a stolen copy of sw-b's files, then sw-b is revoked.
    let stolen = dir.join("stolen-sw-b");
    copy_dir(&dir.join("sw-b"), &stolen);
    let v = obt_cmd(&["ssm", "revoke", "sw-b", "--group", "hall"]);
    assert_eq!(v["stale"], 0, "{v}");
    let g = plain(&["group", "show", "hall"])["group"].clone();
    assert_eq!(g["epoch"], 2, "rekeyed on leave: {g}");
    for l in LIGHTS {
        assert_eq!(
            credtypes(&dir.join(l)),
            [64, 131072],
            "{l}: sw-b's contexts gone"
        );
    }
    drain();
    for _ in 0..5 {
        send_hall(&hosts[5], &stolen, iface, port, "on", "hall");
    }
    let seen = observe(&lights, Instant::now() + Duration::from_secs(2));
    for (n, (applied, drops)) in LIGHTS.iter().zip(&seen) {
        assert!(!applied, "{n} accepted the removed switch: {seen:?}");
        assert!(
            !drops.is_empty(),
            "{n} saw the removed switch's datagrams: {seen:?}"
        );
    }
    drain();
    send_hall(&hosts[4], &dir.join("sw-a"), iface, port, "off", "hall");
    let seen = observe(&lights, soon());
    assert!(
        seen.iter().all(|o| o.0),
        "sw-a commands the rekeyed group: {seen:?}"
    );
    drop(devs);
    drop(topo);
}

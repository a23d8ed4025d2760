//! The commissioning life cycle with `ssm obt` only, as in the README:
//! 10 lights and 2 switches (each its own process; each in its own network
//! namespace when root, IPv6 ff02::158; else on `lo`, IPv4) are onboarded
//! in parallel from a PIN sheet, both switches are granted every light and
//! switch them all by one multicast datagram. Then one light and one switch
//! are offboarded while another light is offline: the group is rekeyed,
//! the removed switch's keys (old key and old Sender ID, replayed from a
//! copy of its files) change nothing, the remaining switch still switches
//! every remaining light, the removed light holds no group key, and the
//! offline light is marked stale until `ssm obt sync` brings it up to date
//! after it comes back on another port. A second OBT on the same domain
//! gets a clear "locked" error (exit status 3).
mod common;
use common::*;
use ssm_testkit::hosts;
use std::process::Stdio;
use std::time::{Duration, Instant};

fn all_lights(devs: &[Option<Dev>]) -> Vec<&Dev> {
    devs[..10].iter().filter_map(|d| d.as_ref()).collect()
}

/// Lights 1..=9 (light 0 is offboarded).
fn remaining(devs: &[Option<Dev>]) -> Vec<&Dev> {
    devs[1..10].iter().filter_map(|d| d.as_ref()).collect()
}

#[test]
fn commission_offboard_rekey_sync() {
    let pid = std::process::id();
    let (topo, hosts, iface) = hosts(&format!("ssml{}", pid % 100000), 13);
    let port = ssm_testkit::free_udp_port();
    let dir = std::env::temp_dir().join(format!("ssm-obt-life-{pid}"));
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

    let names: Vec<(String, &str)> = (0..10)
        .map(|i| (format!("light-{i}"), "light"))
        .chain([
            ("switch-a".to_string(), "switch"),
            ("switch-b".to_string(), "switch"),
        ])
        .collect();
    let mut devs: Vec<Option<Dev>> = names
        .iter()
        .enumerate()
        .map(|(i, (n, r))| Some(start(&hosts[i + 1], &dir.join(n), iface, r, port)))
        .collect();
    let sheet: Vec<_> = devs
        .iter()
        .zip(&names)
        .map(|(d, (n, r))| (d.as_ref().unwrap(), n.clone(), *r))
        .collect();
    let pins = pin_sheet(&dir, &sheet);

    obt_cmd(&["init", "--name", "hallway"], false);
    let t = Instant::now();
    let mut a = vec![
        "onboard",
        "--all",
        "--pins",
        pins.to_str().unwrap(),
        "--jobs",
        "8",
    ];
    a.extend(&link);
    let (_, v) = obt_cmd(&a, false);
    assert_eq!(
        (v["onboarded"].as_u64(), v["failed"].as_u64()),
        (Some(12), Some(0)),
        "{v}"
    );
    eprintln!("onboarded 12 devices in {:?}", t.elapsed());
    for s in ["switch-a", "switch-b"] {
        let mut a = vec!["ssm", "grant", s, "--all"];
        a.extend(&link);
        let (_, v) = obt_cmd(&a, false);
        assert_eq!(v["stale"], 0, "{v}");
        assert_eq!(v["granted"], 10, "{v}");
    }
    let (_, l) = obt_cmd(&["list"], false);
    assert_eq!(l["ssm_epoch"], 1);
    assert!(
        l["devices"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["state"] == "provisioned" && d["last_seen"].is_string()),
        "{l}"
    );
    let sw = |n: &str| dir.join(n);

    // Both switches switch all ten lights with one datagram each.
    for (s, value) in [("switch-a", "on"), ("switch-b", "off")] {
        all_lights(&devs).iter().for_each(|d| d.drain());
        send(
            &hosts[if s == "switch-a" { 11 } else { 12 }],
            &sw(s),
            iface,
            port,
            value,
        );
        let got = applied(&all_lights(&devs), Instant::now() + Duration::from_secs(5));
        assert!(got.iter().all(|x| *x), "{s}: {got:?}");
    }
    // A copy of switch A's files (its key, Sender ID and sequence number):
    // it works now…
    let stolen = dir.join("stolen-a");
    copy_dir(&sw("switch-a"), &stolen);
    all_lights(&devs).iter().for_each(|d| d.drain());
    send(&hosts[11], &stolen, iface, port, "on");
    let got = applied(&all_lights(&devs), Instant::now() + Duration::from_secs(5));
    assert!(
        got.iter().all(|x| *x),
        "the copy works before the rekey: {got:?}"
    );

    // Light 9 goes offline (killed); light 0 and switch A are offboarded.
    devs[9].take().unwrap().kill();
    let mut a = vec!["offboard", "light-0"];
    a.extend(&link);
    let (code, v) = obt_cmd(&a, true);
    assert_eq!(code, Some(1), "one member offline: {v}");
    assert_eq!(
        (
            v["reset"].as_bool(),
            v["epoch"].as_i64(),
            v["stale"].as_u64()
        ),
        (Some(true), Some(2), Some(1)),
        "{v}"
    );
    let mut a = vec!["offboard", "switch-a"];
    a.extend(&link);
    let (_, v) = obt_cmd(&a, true);
    assert_eq!(
        (
            v["reset"].as_bool(),
            v["epoch"].as_i64(),
            v["stale"].as_u64()
        ),
        (Some(true), Some(3), Some(1)),
        "{v}"
    );
    let (_, l) = obt_cmd(&["list"], false);
    let state = |n: &str| {
        l["devices"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["name"] == n)
            .map(|d| d["state"].as_str().unwrap().to_string())
    };
    assert_eq!(state("light-0"), None, "removed from the domain");
    assert_eq!(state("switch-a"), None);
    assert_eq!(
        state("light-9").as_deref(),
        Some("stale"),
        "offline during the rekey: {l}"
    );
    assert_eq!(state("light-5").as_deref(), Some("provisioned"));
    assert_eq!(l["ssm_epoch"], 3);
    // The removed light and switch were hard-reset: no keys of the domain.
    assert!(
        managed_creds(&sw("light-0")).is_empty(),
        "{:?}",
        managed_creds(&sw("light-0"))
    );
    assert!(managed_creds(&sw("switch-a")).is_empty());
    assert!(managed_creds(&sw("light-5")).contains(&256));

    // The stolen copy (old key, old ID, fresh sequence numbers) changes nothing.
    remaining(&devs).iter().for_each(|d| d.drain());
    send(&hosts[11], &stolen, iface, port, "off");
    let got = applied(&remaining(&devs), Instant::now() + Duration::from_secs(2));
    assert!(got.iter().all(|x| !*x), "old key rejected: {got:?}");
    // Switch B still switches every remaining light.
    remaining(&devs).iter().for_each(|d| d.drain());
    send(&hosts[12], &sw("switch-b"), iface, port, "on");
    let got = applied(&remaining(&devs), Instant::now() + Duration::from_secs(5));
    assert!(got.iter().all(|x| *x), "switch B after the rekey: {got:?}");

    // Light 9 comes back (another port): sync finds it and brings it up to date.
    devs[9] = Some(start(&hosts[10], &sw("light-9"), iface, "light", port));
    let mut a = vec!["sync"];
    a.extend(&link);
    let (_, v) = obt_cmd(&a, false);
    assert_eq!(
        (v["stale"].as_u64(), v["devices"].as_array().map(Vec::len)),
        (Some(0), Some(1)),
        "{v}"
    );
    let (_, l) = obt_cmd(&["list"], false);
    assert!(
        l["devices"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["state"] == "provisioned"),
        "{l}"
    );
    // Nothing left to do: a second sync of everything changes nothing.
    let mut a = vec!["sync", "--all"];
    a.extend(&link);
    let (_, v) = obt_cmd(&a, false);
    assert!(
        v["devices"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["creds_added"] == 0 && d["creds_removed"] == 0),
        "{v}"
    );
    let l9 = [devs[9].as_ref().unwrap()];
    l9[0].drain();
    send(&hosts[11], &stolen, iface, port, "off");
    assert_eq!(
        applied(&l9, Instant::now() + Duration::from_secs(2)),
        vec![false]
    );
    send(&hosts[12], &sw("switch-b"), iface, port, "off");
    assert_eq!(
        applied(&l9, Instant::now() + Duration::from_secs(5)),
        vec![true]
    );

    // show: switch B is a member of epoch 3 commanding the nine lights.
    let (_, v) = obt_cmd(&["show", "switch-b"], false);
    assert_eq!(v["ssm"]["epoch"], 3, "{v}");
    assert_eq!(v["ssm"]["commands"].as_array().unwrap().len(), 9, "{v}");
    assert!(!v["audit"].as_array().unwrap().is_empty());
    let (code, _) = obt.json(
        &["obt", "--domain", &domain, "--json", "show", "nope"],
        true,
    );
    assert_eq!(code, Some(1));

    // A second OBT on the same domain: a change is refused ("locked",
    // exit status 3); reading (list, a read-only view) still works.
    let mut holder = obt.cmd(ssm());
    holder
        .args(["obt", "--domain", &domain, "discover", "--wait-ms", "3000"])
        .args(&link)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut holder = holder.spawn().unwrap();
    std::thread::sleep(Duration::from_millis(700));
    let out = obt.ssm(&["obt", "--domain", &domain, "sync"]);
    let listed = obt.ssm(&["obt", "--domain", &domain, "list"]);
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another ssm obt process"), "{err}");
    assert_eq!(listed.status.code(), Some(0), "list reads while locked");
    // Restarted: the domain and its group are intact.
    let (_, l) = obt_cmd(&["list"], false);
    assert_eq!(
        (
            l["devices"].as_array().unwrap().len(),
            l["ssm_epoch"].as_i64()
        ),
        (10, Some(3))
    );

    drop(devs);
    drop(topo);
    let _ = std::fs::remove_dir_all(&dir);
}

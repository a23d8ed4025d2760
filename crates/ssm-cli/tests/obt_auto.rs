//! Zero-touch SSM: a domain made with `ssm obt init --auto-ssm` puts every
//! SSM device onboarded into the group `all` (lights as members with the
//! server credentials of its switches, switches granted every light; the
//! key made at the first). One bulk onboarding leaves a hallway ready to
//! switch with no further command; a light onboarded later (by PIN file,
//! one device) joins `all` and a second group made with `group create
//! --auto`, and the switch commands it at once. A device the sheet calls a
//! light but that hosts no SSM-enabled resource (a switch process) is
//! onboarded and joins no group. Real processes, one network
//! namespace each when root (IPv6), else `lo` (IPv4).
mod common;
use common::*;
use serde_json::json;
use ssm_testkit::hosts;
use std::time::{Duration, Instant};

#[test]
fn auto_ssm_hallway_is_ready_after_onboarding() {
    let pid = std::process::id();
    let (topo, hosts, iface) = hosts(&format!("ssma{}", pid % 100000), 7);
    let port = ssm_testkit::free_udp_port();
    let dir = ssm_testkit::TempDir::new("ssm-obt-auto");
    let domain = dir.join("domain.sqlite");
    let domain = domain.to_str().unwrap().to_string();
    let link = link_args(iface, port);
    let link: Vec<&str> = link.iter().map(String::as_str).collect();
    let obt = &hosts[0];
    let run = |args: &[&str], with_link: bool| {
        let mut a = vec!["obt", "--domain", &domain, "--json"];
        a.extend_from_slice(args);
        if with_link {
            a.extend(&link);
        }
        obt.json(&a, false).1
    };
    // "odd-one" is a switch process (no SSM-enabled resource) that the
    // sheet calls a light: it is onboarded, but joins no group.
    let names = ["hall-1", "hall-2", "hall-3", "hall-switch", "odd-one"];
    let role = |n: &str| match n {
        "hall-switch" | "odd-one" => "switch",
        _ => "light",
    };
    let devs: Vec<Dev> = names
        .iter()
        .enumerate()
        .map(|(i, n)| start(&hosts[i + 1], &dir.join(n), iface, role(n), port))
        .collect();
    let sheet: Vec<_> = devs
        .iter()
        .zip(names)
        .map(|(d, n)| {
            (
                d,
                n.to_string(),
                if n == "odd-one" { "light" } else { role(n) },
            )
        })
        .collect();
    let pins = pin_sheet(&dir, &sheet);
    let v = run(&["init", "--name", "hallway", "--auto-ssm"], false);
    assert_eq!(v["auto_ssm"], true, "{v}");
    let all = run(&["group", "show", "all"], false);
    assert_eq!(
        (
            all["group"]["auto"].as_bool(),
            all["group"]["epoch"].as_i64()
        ),
        (Some(true), Some(0))
    );
    let v = run(
        &["onboard", "--all", "--pins", pins.to_str().unwrap()],
        true,
    );
    assert_eq!(v["onboarded"], 5, "{v}");
    assert_eq!(v["resumed"], 4, "every SSM device provisioned at once: {v}");
    let l = run(&["list"], false);
    for d in l["devices"].as_array().unwrap() {
        if d["name"] == "odd-one" {
            assert_eq!(
                (&d["state"], &d["groups"]),
                (&json!("owned"), &json!([])),
                "{d}"
            );
        } else {
            assert_eq!(d["state"], "provisioned", "{d}");
        }
    }
    let all = run(&["group", "show", "all"], false)["group"].clone();
    assert_eq!(all["epoch"], 1, "the key was made at the first onboarding");
    assert_eq!(all["members"].as_array().unwrap().len(), 3, "{all}");
    assert_eq!(all["switches"].as_array().unwrap().len(), 1, "{all}");

    // No further command: the switch switches the hallway.
    let lights: Vec<&Dev> = devs[..3].iter().collect();
    lights.iter().for_each(|d| d.drain());
    send(&hosts[4], &dir.join("hall-switch"), iface, port, "on");
    let got = applied(&lights, Instant::now() + Duration::from_secs(5));
    assert_eq!(got, vec![true; 3]);

    // A light onboarded later joins `all` and a second auto group.
    let late = run(&["group", "create", "late", "--auto"], false);
    assert_eq!(late["group"]["auto"], true);
    let d4 = start(&hosts[6], &dir.join("hall-4"), iface, "light", port);
    let pin = dir.join("hall-4").join("pin");
    let v = run(
        &[
            "onboard",
            &d4.ep,
            "--pin-file",
            pin.to_str().unwrap(),
            "--name",
            "hall-4",
        ],
        true,
    );
    assert_eq!(v["onboarded"], 1, "{v}");
    let show = run(&["show", "hall-4"], false);
    let groups: Vec<&str> = show["groups"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|g| g["name"].as_str())
        .collect();
    assert_eq!(groups, ["all", "late"], "{show}");
    let sw = run(&["show", "hall-switch"], false);
    assert_eq!(
        sw["state"], "provisioned",
        "the switch got the new light: {sw}"
    );
    d4.drain();
    send(&hosts[4], &dir.join("hall-switch"), iface, port, "off");
    assert_eq!(
        applied(&[&d4], Instant::now() + Duration::from_secs(5)),
        vec![true]
    );
    drop(d4);
    drop(devs);
    drop(topo);
}

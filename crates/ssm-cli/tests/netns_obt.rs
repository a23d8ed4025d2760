//! Commissioning across network namespaces with real processes: an OBT in
//! one namespace finds 3 lights and 2 switches (each in its own namespace)
//! by multicast, onboards them by Random PIN over DTLS, grants switch 0 SSM
//! on every light; switch 0's multicast then switches every light, and
//! switch 1 (onboarded, no grant) changes nothing. Without root: the same
//! on loopback.
mod common;
use common::*;
use serde_json::Value;
use ssm_testkit::hosts;
use std::time::{Duration, Instant};

/// The next SSM verdict a light reports: "ssm_applied" or "refused".
fn verdict(d: &Dev) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match d.events.recv_timeout(left) {
            Ok(v) if v["event"] == "ssm_applied" || v["event"] == "refused" => {
                return v["event"].as_str().map(String::from)
            }
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
    None
}

#[test]
fn obt_commissions_lights_and_switches() {
    let (topo, hosts, iface) = hosts(&format!("ssmo{}", std::process::id() % 100000), 6);
    let port = ssm_testkit::free_udp_port();
    let ports = port.to_string();
    let dir = std::env::temp_dir().join(format!("ssm-netns-obt-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let domain = dir.join("domain.sqlite");
    let domain = domain.to_str().unwrap();
    let obt = &hosts[0];
    let roles = ["light", "light", "light", "switch", "switch"];
    let devs: Vec<Dev> = roles
        .iter()
        .enumerate()
        .map(|(i, r)| start(&hosts[i + 1], &dir.join(format!("d{i}")), iface, r, port))
        .collect();

    assert!(obt
        .ssm(&["obt", "--domain", domain, "init", "--name", "hall"])
        .status
        .success());
    let ipv6 = if iface == "lo" {
        vec![]
    } else {
        vec!["--ipv6"]
    };
    let mut args = vec![
        "obt",
        "--domain",
        domain,
        "discover",
        "--json",
        "--iface",
        iface,
        "--port",
        &ports,
        "--wait-ms",
        "800",
    ];
    args.extend(ipv6.iter().copied());
    let v: Value = serde_json::from_slice(&obt.ssm(&args).stdout).unwrap();
    assert_eq!(v["unowned"].as_array().unwrap().len(), 5, "{v}");

    for (i, d) in devs.iter().enumerate() {
        let pin_file = dir.join(format!("d{i}/pin"));
        let name = format!("{}-{i}", roles[i]);
        let out = obt.ssm(&[
            "obt",
            "--domain",
            domain,
            "onboard",
            &d.ep,
            "--pin-file",
            pin_file.to_str().unwrap(),
            "--name",
            &name,
            "--role",
            roles[i],
        ]);
        assert!(
            out.status.success(),
            "onboard {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = obt.ssm(&[
        "obt", "--domain", domain, "ssm", "grant", "switch-3", "--all", "--json",
    ]);
    assert!(
        out.status.success(),
        "grant: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Switch 4: SSM credentials for itself (a grant on no light).
    let out = obt.ssm(&[
        "obt", "--domain", domain, "ssm", "grant", "switch-4", "light-0", "--json",
    ]);
    assert!(
        out.status.success(),
        "grant 4: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: Value = serde_json::from_slice(
        &obt.ssm(&["obt", "--domain", domain, "list", "--json"])
            .stdout,
    )
    .unwrap();
    assert_eq!(listed["devices"].as_array().unwrap().len(), 5);
    assert!(
        listed["devices"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["state"] == "provisioned"),
        "{listed}"
    );
    for d in &devs[..3] {
        while d.events.try_recv().is_ok() {}
    }

    // Switch 3 (granted on every light) sends from its own namespace.
    send(&hosts[4], &dir.join("d3"), iface, port, "on");
    for (i, d) in devs[..3].iter().enumerate() {
        assert_eq!(
            verdict(d).as_deref(),
            Some("ssm_applied"),
            "light {i} applied switch 3's update"
        );
    }
    // Unicast UPDATE with the pair-wise context the OBT provisioned.
    let out = hosts[4].ssm(&[
        "client",
        "--state-dir",
        dir.join("d3").to_str().unwrap(),
        "update",
        &devs[1].ep,
        "--value",
        "off",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "unicast update: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["code"], "2.04", "{v}");
    // Without credentials there is no secured UPDATE.
    let out = hosts[4].ssm(&[
        "client",
        "--state-dir",
        dir.join("nobody").to_str().unwrap(),
        "update",
        &devs[1].ep,
        "--value",
        "on",
    ]);
    assert!(!out.status.success());
    // Switch 4 holds the group key for light 0 only: light 0 applies it,
    // lights 1 and 2 do not know its Sender ID (dropped, no verdict).
    send(&hosts[5], &dir.join("d4"), iface, port, "off");
    assert_eq!(verdict(&devs[0]).as_deref(), Some("ssm_applied"));
    assert_eq!(verdict(&devs[1]), None, "light 1 ignores switch 4");
    assert_eq!(verdict(&devs[2]), None, "light 2 ignores switch 4");
    drop(devs);
    drop(topo);
    let _ = std::fs::remove_dir_all(&dir);
}

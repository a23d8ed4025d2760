//! Site-wide SSM across routed subnets: three subnets (a, b, c; a bridge
//! each) joined by a router namespace running a real multicast router
//! (smcroute, static (*,G) routes for ff05::158 and 224.0.1.187; the
//! configuration README.md quotes). The OBT and a wall switch are on
//! subnet a, lights on b and c, each an `ssm device` process.
//!
//! * `ssm obt discover --scope site` (ff05::158, hop limit 4) finds the
//!   lights through the router at their routable addresses; a light that
//!   names no site prefix answers only its own link (the on-link rule).
//! * `/oic/res` lists the routable endpoint first (`ssm client discover`
//!   with `--scopes 5 --hops 4`, through the router).
//! * Onboarding (DTLS) and the SSM grant go to those addresses by unicast.
//! * One `ssm client update --multicast --scopes 5 --hops 4` (ff05::158 and
//!   its IPv4 copy) is applied exactly once by every light; the other copy
//!   is a `DuplicateCopy` drop, not a `Replay`.
//!
//! Needs root (namespaces) and `smcrouted` (`scripts/test.sh` installs the
//! Debian package smcroute); without root it is skipped, loudly.
mod common;
use common::*;
use serde_json::Value;
use ssm_testkit::{is_root, TempDir, Topology};
use std::time::{Duration, Instant};

const PORT: u16 = 5683;
/// The site: every subnet of the topology (fd00:a::/64 … fd00:c::/64).
const SITE: &str = "fd00::/16";

/// What one light did after the command (until both copies are in, and
/// 200 ms more; at most 3 s): SSM updates applied, drops by reason.
fn after_command(d: &Dev) -> (usize, std::collections::BTreeMap<String, u64>) {
    let mut deadline = Instant::now() + Duration::from_secs(3);
    let (mut applied, mut drops) = (0, std::collections::BTreeMap::new());
    let mut settled = false;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match d.events.recv_timeout(left) {
            Ok(v) if v["event"] == "ssm_applied" => applied += 1,
            Ok(v) if v["event"] == "dropped" => {
                *drops
                    .entry(v["reason"].as_str().unwrap_or("?").to_string())
                    .or_insert(0) += v["count"].as_u64().unwrap_or(1)
            }
            Ok(_) => {}
            Err(_) => break,
        }
        if !settled && applied > 0 && drops.contains_key("DuplicateCopy") {
            // Both copies are in: anything more (a second apply, a
            // replay) would come within a few ms.
            settled = true;
            deadline = Instant::now() + Duration::from_millis(200);
        }
    }
    (applied, drops)
}

/// README.md's deployment section quotes the router configuration this
/// test runs, line for line (comments aside).
fn readme_shows(conf: &std::path::Path) {
    let lines = |t: &str| -> Vec<String> {
        t.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(String::from)
            .collect()
    };
    let readme = std::fs::read_to_string(ssm_testkit::repo().join("README.md")).unwrap();
    let marker = "<!-- the configuration tests/netns/topology.sh (routed) writes";
    let block = readme
        .split_once(marker)
        .and_then(|(_, rest)| rest.split_once("```\n"))
        .and_then(|(_, rest)| rest.split_once("```"))
        .map(|(b, _)| b)
        .expect("README.md: the tested smcroute configuration");
    assert_eq!(lines(block), lines(&std::fs::read_to_string(conf).unwrap()));
}

#[test]
fn site_wide_ssm_across_a_multicast_router() {
    if !is_root() {
        eprintln!("SKIPPED site_wide_ssm_across_a_multicast_router: needs root (network namespaces and a router)");
        return;
    }
    assert!(
        std::process::Command::new("smcrouted")
            .arg("-v")
            .output()
            .is_ok_and(|o| o.status.success()),
        "smcrouted not found: apt-get install smcroute (scripts/test.sh does)"
    );
    let t0 = Instant::now();
    let topo = Topology::routed(&format!("ssmr{}", std::process::id() % 100000), [2, 2, 2]);
    readme_shows(&topo.router.as_ref().unwrap().1);
    // a: OBT, switch; b: two lights; c: a light, and one that names no
    // site prefix.
    let (obt, sw_host) = (topo.host(0), topo.host(1));
    let dir = TempDir::new("netns-routed");
    let domain = dir.join("domain.sqlite");
    let domain = domain.to_str().unwrap();
    let site = ["--site-prefix", SITE];
    let light_nodes = [2, 3, 4];
    let lights: Vec<Dev> = light_nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            start_with(
                &topo.host(*n),
                &dir.join(format!("light-{i}")),
                "ssm0",
                "light",
                PORT,
                &site,
            )
        })
        .collect();
    let on_link_only = start(&topo.host(5), &dir.join("link-only"), "ssm0", "light", PORT);
    let switch = start(&sw_host, &dir.join("switch"), "ssm0", "switch", PORT);

    // Each light lists its routable address first in its endpoints and in
    // /oic/res, which `ssm client discover` reads through the router.
    let out = obt.ssm(&[
        "client",
        "discover",
        "--iface",
        "ssm0",
        "--no-ipv4",
        "--scopes",
        "5",
        "--hops",
        "4",
        "--wait-ms",
        "800",
        "--json",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    let res: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {err}"));
    assert_eq!(
        res["devices"], 3,
        "the 3 lights with a site prefix: {res}\n{err}"
    );
    for (d, n) in lights.iter().zip(light_nodes) {
        assert!(
            d.eps[0].starts_with(&format!("coap://[{}]:", topo.ula(n))),
            "{:?}",
            d.eps
        );
        let link = res["links"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["di"] == d.di.as_str() && l["ssm"] == true)
            .unwrap_or_else(|| panic!("no SSM link of {}: {res}", d.di));
        // Per scheme (coaps:// for DTLS first, then coap://), the routable
        // address comes first.
        for scheme in ["coaps://", "coap://"] {
            let first = link["eps"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(Value::as_str)
                .find(|e| e.starts_with(scheme))
                .unwrap_or_else(|| panic!("no {scheme} ep: {link}"));
            assert!(
                first.starts_with(&format!("{scheme}[{}]:", topo.ula(n))),
                "{link}"
            );
        }
    }

    let link = [
        "--iface", "ssm0", "--ipv6", "--scope", "site", "--hops", "4",
    ];
    let args = |head: &[&str]| -> Vec<String> {
        ["obt", "--domain", domain]
            .iter()
            .chain(head)
            .chain(&link)
            .map(|s| s.to_string())
            .collect()
    };
    let run = |a: Vec<String>| {
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        obt.json(&a, false).1
    };
    obt.json(
        &[
            "obt", "--domain", domain, "init", "--name", "site", "--json",
        ],
        false,
    );
    let found = run(args(&["discover", "--json", "--wait-ms", "800"]));
    let unowned = found["unowned"].as_array().unwrap();
    let ep_of = |di: &str| -> String {
        unowned
            .iter()
            .find(|u| u["uuid"] == di)
            .unwrap_or_else(|| panic!("{di} not discovered: {found}"))["ep"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(
        unowned
            .iter()
            .all(|u| u["uuid"] != on_link_only.di.as_str()),
        "a light without --site-prefix answers its own link only: {found}"
    );
    assert_eq!(
        unowned.len(),
        4,
        "3 lights across the router + the switch: {found}"
    );

    for (i, (d, n)) in lights.iter().zip(light_nodes).enumerate() {
        let ep = ep_of(&d.di);
        assert_eq!(
            format!("coap://{}", ep.trim_start_matches("coap://")),
            d.eps[0],
            "routable, through the router ({n})"
        );
        let pin = dir.join(format!("light-{i}/pin"));
        let name = format!("light-{i}");
        run(args(&[
            "onboard",
            &ep,
            "--pin-file",
            pin.to_str().unwrap(),
            "--name",
            &name,
            "--role",
            "light",
            "--json",
        ]));
    }
    let pin = dir.join("switch/pin");
    let sw_ep = ep_of(&switch.di);
    run(args(&[
        "onboard",
        &sw_ep,
        "--pin-file",
        pin.to_str().unwrap(),
        "--name",
        "switch",
        "--role",
        "switch",
        "--json",
    ]));
    run(args(&["ssm", "grant", "switch", "--all", "--json"]));
    let listed = obt
        .json(&["obt", "--domain", domain, "list", "--json"], false)
        .1;
    let devices = listed["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 4);
    assert!(
        devices.iter().all(|d| d["state"] == "provisioned"),
        "{listed}"
    );
    for d in &lights {
        d.drain();
    }

    // ONE command, ff05::158 and 224.0.1.187, 4 hops: through the router.
    let state = dir.join("switch");
    let out = sw_host.ssm(&[
        "client",
        "--state-dir",
        state.to_str().unwrap(),
        "update",
        "--multicast",
        "--iface",
        "ssm0",
        "--scopes",
        "5",
        "--hops",
        "4",
        "--value",
        "on",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "update: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (i, d) in lights.iter().enumerate() {
        let (applied, drops) = after_command(d);
        assert_eq!(
            applied, 1,
            "light {i} applied the command exactly once ({drops:?})"
        );
        assert_eq!(
            drops.get("DuplicateCopy"),
            Some(&1),
            "light {i}: the other copy: {drops:?}"
        );
        assert_eq!(drops.get("Replay"), None, "light {i}: {drops:?}");
    }
    // Read back by pair-wise OSCORE, across the router.
    for (i, d) in lights.iter().enumerate() {
        let ep = &d.eps[0];
        let (_, v) = sw_host.json(
            &[
                "client",
                "--state-dir",
                state.to_str().unwrap(),
                "get",
                ep,
                "--json",
            ],
            false,
        );
        assert_eq!(v["body"]["value"], true, "light {i}: {v}");
        assert_eq!(v["security"], "oscore", "light {i}: {v}");
    }
    drop((lights, on_link_only, switch));
    drop(topo);
    eprintln!("routed three-subnet test: {:?}", t0.elapsed());
}

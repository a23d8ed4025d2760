//! Live onboarding interop with the OCF reference stack (issue 14), both
//! ways, against the unmodified iotivity-lite 2.2.5.16 sample apps in
//! `shared/peers/iotivity-lite/bin`, each app and each of our processes in
//! its own network namespace on one bridge (IPv6 link-local, as their
//! README asks), multicast on port 5683:
//! * (a) their onboarding tool commissions our unowned light; their SSM
//!   client's multicast UPDATEs switch it, and it answers their client's
//!   unicast RETRIEVE;
//! * (b) our `ssm obt` commissions their Random PIN light; our switch's
//!   SSM UPDATE switches it; revoke and offboard take back what was
//!   provisioned (read back with their OBT);
//! * (c) a mixed hallway: our OBT commissions two of our lights (at their
//!   href, `/lights`), one of theirs and our switch; one SSM datagram
//!   switches all three.
//!
//! They need root (namespaces); without it they say so and pass.
mod common;
mod peers;
use common::*;
use peers::{obt_with_zero_byte_uuid, RefObt, STEP};
use ssm_testkit::{is_root, MenuApp, TempDir, Topology};
use std::time::{Duration, Instant};

fn root_or_skip(what: &str) -> bool {
    if !is_root() {
        eprintln!("SKIP {what}: needs root (network namespaces for the IPv6-only reference apps)");
    }
    is_root()
}

/// A topology of `n` namespaces, unique to this test and process.
fn topology(tag: &str, n: usize) -> (Topology, Vec<Host>) {
    let prefix = format!("{tag}{}", std::process::id() % 100_000);
    let t = Topology::up(&prefix, n);
    let hosts = (0..n).map(|i| Host(Some(t.ns(i).to_string()))).collect();
    (t, hosts)
}

/// The next `pin` event of our device (the PIN it shows while unowned).
fn pin_of(d: &Dev) -> String {
    let v = d
        .next("pin", Instant::now() + STEP)
        .expect("the light shows a PIN");
    v["pin"].as_str().unwrap().to_string()
}

/// The next SSM update our device applied: its `value`.
fn applied_value(d: &Dev) -> bool {
    let v = d
        .next("ssm_applied", Instant::now() + STEP)
        .expect("the light applied an SSM update");
    v["state"]["value"].as_bool().unwrap()
}

/// (a) Their OBT commissions our light; their client switches it by SSM.
#[test]
fn their_obt_commissions_our_light() {
    if !root_or_skip("their_obt_commissions_our_light") {
        return;
    }
    let dir = TempDir::new("iot-a");
    let (_topo, h) = topology("ioa", 3);
    let light = start(&h[1], &dir.join("light"), "ssm0", "light", 5683);
    let mut client = MenuApp::start(
        &h[2],
        &peers::bin("secure_mcast_client"),
        &dir.join("client"),
    );
    // Their OBT's own UUID (its PSK identity) holds a 0x00 byte.
    let (obt, _obt_id) = obt_with_zero_byte_uuid(&h[0], &dir.join("obt"));
    let mut obt = RefObt(obt);

    // Their OBT finds our unowned light (doxm link in /oic/res) and owns
    // it by Random PIN; it draws our light's new UUID at random, and our
    // light refuses one with a 0x00 byte (then the OBT runs it again).
    let found = obt.discover(1, &[&light.di], 1);
    let client_id = found.iter().find(|u| **u != light.di).unwrap().clone();
    let client_id = obt.just_works(&client_id);
    let mut pin = pin_of(&light);
    let mut light_id = None;
    for _ in 0..4 {
        if let Some(id) = obt.random_pin(&light.di, &pin) {
            light_id = Some(id);
            break;
        }
        // Undone on our side (a new PIN shows), forgotten on theirs.
        pin = pin_of(&light);
        obt.discover(1, &[&light.di], 0);
    }
    let light_id = light_id.expect("their OBT onboarded our light");
    let owned = light
        .next("owned", Instant::now() + STEP)
        .expect("our light reports its owner");
    assert_eq!(owned["di"], light_id.as_str());

    // Provisioning (owner sessions: our light's PSK hint is its UUID).
    obt.on_device(
        25,
        "Select device for provisioning:",
        &client_id,
        "Successfully provisioned group OSCORE context",
    );
    obt.server_group(&light_id, &client_id);
    obt.on_device(
        14,
        "Select device for provisioning:",
        &light_id,
        "Successfully provisioned auth-crypt * ACE",
    );
    // Pair-wise PSK (credtype 1) for their client's DTLS RETRIEVE.
    obt.pairwise_psk(&client_id, &light_id);
    let creds = obt.retrieve(15, &light_id);
    assert!(creds.contains(&client_id), "{creds}");

    // Their client: discover SSM switches, multicast UPDATE true, false.
    client.choose(1, STEP);
    client.expect("##Discovered light switch##", STEP);
    light.drain();
    for (choice, want) in [(0, true), (1, false)] {
        client.choose(6, STEP);
        client.expect("Select:", STEP);
        client.send(&choice.to_string());
        assert_eq!(applied_value(&light), want, "their multicast UPDATE {want}");
    }
    // Their unicast RETRIEVE (DTLS to our first endpoint) shows the state.
    client.choose(2, STEP);
    client.expect("Select light switch:", STEP);
    client.send("0");
    client.expect("RETRIEVE light switch:", STEP);
    let got = client.expect("payload:", STEP) + &client.expect("\n", STEP);
    let tail = client.expect("}", STEP);
    assert!(
        tail.contains("\"value\" : false") || tail.contains("\"value\":false"),
        "{got}{tail}"
    );
    let _ = Duration::ZERO;
}

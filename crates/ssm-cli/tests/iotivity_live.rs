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

    // Provisioning (owner sessions: our light's PSK hint is its UUID), the
    // reference demo sequence (REFERENCE-SSM §6): [25] on the client, [26]
    // on the server naming the client, and an ACE ([14], §4: a decrypted
    // multicast still goes through the ACL).
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

/// `ssm obt onboard EP` with the PIN typed on stdin once it asks (after
/// `oxmsel`): the PIN is read off their light's output at that moment (it
/// makes a new one for every `oxmsel`).
fn onboard_reading_their_pin(
    obt_host: &Host,
    domain: &str,
    ep: &str,
    name: &str,
    light: &mut MenuApp,
) -> serde_json::Value {
    use std::io::{BufRead, BufReader, Write};
    use std::process::Stdio;
    let mut c = obt_host.cmd(ssm());
    c.args(["obt", "-v", "--domain", domain, "--json", "onboard", ep])
        .args(["--name", name, "--role", "light"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let mut said = Vec::new();
    let prompt = loop {
        match rx.recv_timeout(STEP) {
            Ok(l) if l.contains("PIN shown by the device") => break l,
            Ok(l) => said.push(l),
            Err(_) => {
                let _ = child.kill();
                panic!("ssm obt onboard did not ask for the PIN");
            }
        }
    };
    assert!(prompt.contains("stdin"), "{prompt}");
    // The PIN it shows now: the last one printed, after our oxmsel.
    let shown = light.drain(Duration::from_millis(300));
    let pin = shown
        .rsplit("Random PIN: ")
        .next()
        .filter(|_| shown.contains("Random PIN: "))
        .map(|t| t.chars().take(8).collect::<String>())
        .unwrap_or_else(|| panic!("their light showed no PIN after oxmsel:\n{shown}"));
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{pin}").unwrap();
    drop(stdin);
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "onboarding did not finish");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    said.extend(rx.try_iter());
    let rest = said;
    assert!(
        out.status.success(),
        "onboard {name}: {rest:?}\ntheir light printed:\n{}",
        light.transcript
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `ssm obt discover` on the bridge (IPv6, port 5683).
fn discover(h: &Host, domain: &str) -> serde_json::Value {
    h.json(
        &[
            "obt",
            "--domain",
            domain,
            "--json",
            "discover",
            "--iface",
            "ssm0",
            "--port",
            "5683",
            "--ipv6",
            "--wait-ms",
            "800",
        ],
        false,
    )
    .1
}

/// The unowned device at `host`'s address in a discover report.
fn unowned_at(v: &serde_json::Value, addr: &str) -> Option<String> {
    v["unowned"]
        .as_array()?
        .iter()
        .find(|d| d["ep"].as_str().is_some_and(|e| e.contains(addr)))
        .map(|d| d["ep"].as_str().unwrap().to_string())
}

/// The endpoint of the unowned device at `addr`, asked by discovery until
/// it answers (a reference app takes seconds to come up, also after a
/// hard reset, more on a loaded machine; bounded: about 30 s).
fn wait_unowned(h: &Host, domain: &str, addr: &str) -> String {
    let mut last = serde_json::Value::Null;
    for _ in 0..30 {
        last = discover(h, domain);
        if let Some(ep) = unowned_at(&last, addr) {
            return ep;
        }
    }
    panic!("no unowned device at {addr}: {last}");
}

/// Our switch's multicast UPDATE (IPv6 ff02::158 on the bridge, port 5683).
fn switch_sends(h: &Host, state: &std::path::Path, value: &str) -> serde_json::Value {
    h.json(
        &[
            "client",
            "--state-dir",
            state.to_str().unwrap(),
            "--json",
            "update",
            "--multicast",
            "--iface",
            "ssm0",
            "--port",
            "5683",
            "--no-ipv4",
            "--scopes",
            "2",
            "--value",
            value,
        ],
        false,
    )
    .1
}

/// What their light printed for an applied update: `Some(value)`.
fn their_update(light: &mut MenuApp, within: Duration) -> Option<bool> {
    light.try_expect("--multicast", within)?;
    let t = light.expect("value: ", STEP);
    let _ = t;
    let v = light.expect("\n", STEP);
    Some(v.trim() == "1")
}

/// (b) Our OBT commissions their Random PIN light and our switch.
#[test]
fn our_obt_commissions_their_light() {
    if !root_or_skip("our_obt_commissions_their_light") {
        return;
    }
    let dir = TempDir::new("iot-b");
    let (topo, h) = topology("iob", 4);
    let mut light = MenuApp::start(
        &h[1],
        &peers::bin("secure_mcast_server_rdp"),
        &dir.join("rdp"),
    );
    let switch = start(&h[2], &dir.join("switch"), "ssm0", "switch", 5683);
    // One of ours at the default href (the resource type's example URI).
    let ours = start(&h[3], &dir.join("ours"), "ssm0", "light", 5683);
    let domain = dir.join("domain.sqlite");
    let domain = domain.to_str().unwrap();
    h[0].json(
        &[
            "obt", "--domain", domain, "--json", "init", "--name", "mixed",
        ],
        false,
    );

    // Their light takes a moment to come up: discovery until it answers.
    let their_addr = &topo.nodes[1][6];
    let ep = wait_unowned(&h[0], domain, their_addr);
    let v = onboard_reading_their_pin(&h[0], domain, &ep, "their-light", &mut light);
    assert_eq!(v["onboarded"], 1, "{v}");
    for (ep, state, name, role) in [
        (&switch.ep, "switch", "our-switch", "switch"),
        (&ours.ep, "ours", "our-light", "light"),
    ] {
        let pin = dir.join(state).join("pin");
        h[0].json(
            &[
                "obt",
                "--domain",
                domain,
                "--json",
                "onboard",
                ep,
                "--pin-file",
                pin.to_str().unwrap(),
                "--name",
                name,
                "--role",
                role,
            ],
            false,
        );
    }
    // Their light serves SSM at /lights, ours at /BinarySwitchResURI: the
    // grant says so, and each command goes as one datagram per href.
    let out = h[0].ssm(&[
        "obt",
        "--domain",
        domain,
        "--json",
        "ssm",
        "grant",
        "our-switch",
        "their-light",
        "our-light",
    ]);
    let warned = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{warned}");
    let g: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut hrefs: Vec<String> = serde_json::from_value(g["hrefs"].clone()).unwrap();
    hrefs.sort();
    assert_eq!(hrefs, ["/BinarySwitchResURI", "/lights"], "{g}");
    assert!(
        warned.contains("warning") && warned.contains("one datagram per href"),
        "{warned}"
    );
    assert_eq!(g["stale"], 0, "{g}");
    assert_eq!(managed_creds(&dir.join("switch")), vec![128, 64, 64], "{g}");

    let _ = light.drain(Duration::from_millis(100));
    ours.drain();
    let sent = switch_sends(&h[2], &dir.join("switch"), "on");
    assert_eq!(sent["sent"].as_array().unwrap().len(), 2, "{sent}");
    assert_eq!(
        their_update(&mut light, STEP),
        Some(true),
        "{}",
        light.transcript
    );
    assert!(applied_value(&ours));
    let sw = dir.join("switch");
    let out = h[2].ssm(&[
        "client",
        "--state-dir",
        sw.to_str().unwrap(),
        "update",
        "--multicast",
        "--iface",
        "ssm0",
        "--port",
        "5683",
        "--no-ipv4",
        "--scopes",
        "2",
        "--value",
        "off",
    ]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("one datagram per href"),
        "{said}"
    );
    assert_eq!(
        their_update(&mut light, STEP),
        Some(false),
        "{}",
        light.transcript
    );
    assert!(!applied_value(&ours));

    // A copy of the switch as it is now: its old key, after the revoke.
    let old = dir.join("old-switch");
    let cp = std::process::Command::new("cp")
        .arg("-a")
        .arg(dir.join("switch"))
        .arg(&old)
        .status()
        .unwrap();
    assert!(cp.success());

    // Revoke: their light's SSM Server credential (256), pair-wise
    // credential (64) and ACE are deleted by the ids read back from it
    // (kept apart: new entries were posted without ids).
    let (_, r) = h[0].json(
        &[
            "obt",
            "--domain",
            domain,
            "--json",
            "ssm",
            "revoke",
            "our-switch",
            "their-light",
        ],
        false,
    );
    let theirs = r["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "their-light")
        .unwrap_or_else(|| panic!("{r}"));
    assert_eq!(theirs["synced"], true, "{r}");
    assert_eq!(theirs["creds_removed"], 2, "{r}");
    assert_eq!(theirs["aces_removed"], 1, "{r}");
    // Read back by our OBT: nothing left to change on it.
    let (_, s) = h[0].json(
        &["obt", "--domain", domain, "--json", "sync", "their-light"],
        false,
    );
    assert_eq!(s["devices"][0]["creds_removed"], 0, "{s}");
    assert_eq!(s["devices"][0]["creds_added"], 0, "{s}");
    assert_eq!(s["devices"][0]["aces_removed"], 0, "{s}");
    // The switch now commands our light only (one datagram, to its
    // href); neither it nor the old key switches their light.
    let _ = light.drain(Duration::from_millis(100));
    ours.drain();
    let sent = switch_sends(&h[2], &sw, "on");
    assert_eq!(
        sent["hrefs"],
        serde_json::json!(["/BinarySwitchResURI"]),
        "{sent}"
    );
    assert!(applied_value(&ours));
    switch_sends(&h[2], &old, "on");
    assert_eq!(
        their_update(&mut light, Duration::from_millis(1500)),
        None,
        "their light applied the revoked key:\n{}",
        light.transcript
    );

    // Offboard: a hard reset; it is unowned again.
    let (_, o) = h[0].json(
        &[
            "obt",
            "--domain",
            domain,
            "--json",
            "offboard",
            "their-light",
        ],
        false,
    );
    assert_eq!(o["reset"], true, "{o}");
    let t0 = Instant::now();
    wait_unowned(&h[0], domain, their_addr);
    eprintln!("their light unowned again after {:?}", t0.elapsed());
}

/// (c) A mixed hallway: our OBT commissions two of our lights (serving SSM
/// at the reference sample's `/lights`), their Random PIN light and our
/// switch; one SSM datagram switches all three lights.
#[test]
fn mixed_hallway_one_datagram() {
    if !root_or_skip("mixed_hallway_one_datagram") {
        return;
    }
    let dir = TempDir::new("iot-c");
    let (topo, h) = topology("ioc", 5);
    let mut theirs = MenuApp::start(
        &h[3],
        &peers::bin("secure_mcast_server_rdp"),
        &dir.join("rdp"),
    );
    let ours: Vec<Dev> = (1..=2)
        .map(|i| {
            let d = dir.join(format!("light{i}"));
            start_with(&h[i], &d, "ssm0", "light", 5683, &["--href", "/lights"])
        })
        .collect();
    let switch = start(&h[4], &dir.join("switch"), "ssm0", "switch", 5683);
    let domain = dir.join("domain.sqlite");
    let domain = domain.to_str().unwrap();
    h[0].json(
        &[
            "obt", "--domain", domain, "--json", "init", "--name", "hall",
        ],
        false,
    );
    let their_addr = &topo.nodes[3][6];
    let ep = wait_unowned(&h[0], domain, their_addr);
    onboard_reading_their_pin(&h[0], domain, &ep, "their-light", &mut theirs);
    let by_pin = |ep: &str, pin: std::path::PathBuf, name: &str, role: &str| {
        h[0].json(
            &[
                "obt",
                "--domain",
                domain,
                "--json",
                "onboard",
                ep,
                "--pin-file",
                pin.to_str().unwrap(),
                "--name",
                name,
                "--role",
                role,
            ],
            false,
        );
    };
    for (i, d) in ours.iter().enumerate() {
        by_pin(
            &d.ep,
            dir.join(format!("light{}/pin", i + 1)),
            &format!("our-light-{i}"),
            "light",
        );
    }
    by_pin(&switch.ep, dir.join("switch/pin"), "our-switch", "switch");
    let out = h[0].ssm(&[
        "obt",
        "--domain",
        domain,
        "--json",
        "ssm",
        "grant",
        "our-switch",
        "--all",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let g: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(g["granted"], 3, "{g}");
    assert_eq!(g["stale"], 0, "{g}");
    assert_eq!(g["hrefs"], serde_json::json!(["/lights"]), "{g}");
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("warning"),
        "one href: no warning"
    );

    for d in &ours {
        d.drain();
    }
    let _ = theirs.drain(Duration::from_millis(100));
    let sent = switch_sends(&h[4], &dir.join("switch"), "on");
    assert_eq!(
        sent["sent"].as_array().unwrap().len(),
        1,
        "one datagram: {sent}"
    );
    assert_eq!(sent["sent"][0]["href"], "/lights", "{sent}");
    for d in &ours {
        assert!(applied_value(d), "our light at /lights applied it");
    }
    assert_eq!(
        their_update(&mut theirs, STEP),
        Some(true),
        "{}",
        theirs.transcript
    );
}

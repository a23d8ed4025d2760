//! Group OSCORE group mode (RFC 10021) live with aiocoap 0.4.17 (draft -23)
//! in both directions (issue 16), every process in its own network
//! namespace on one bridge, IPv6 multicast ff02::158 on `ssm0`:
//!
//! hosts: our OBT, our lights l1 and l2, our switch sw, an aiocoap light
//! (`interop/aiocoap/group_peer.py serve`) and an aiocoap switch
//! (`group_peer.py send`), each aiocoap member with an Ed25519 key of its
//! own. Our OBT commissions `hall --profile group-oscore --aead-alg
//! AES-CCM-16-64-128` (aiocoap needs the AEAD Algorithm) with l1, l2 and
//! sw, registers both aiocoap members as external members and exports
//! their material. Then:
//!
//! * (a) our switch → the aiocoap light: `ssm client update --multicast`
//!   switches l1 and l2 (read back by secured RETRIEVE) and the aiocoap
//!   server applies it, credited to our switch's Sender ID;
//! * (b) the aiocoap switch → our lights: l1 and l2 read back its value
//!   (and the aiocoap light applies it too);
//! * (c) `ssm obt external remove` of the aiocoap switch rekeys hall: its
//!   command with the old material changes none of our lights; our switch
//!   still switches them and the aiocoap light, restarted with its
//!   re-exported material, applies our switch's new-epoch command.
//!
//! Needs root (namespaces) and the aiocoap venv: without root it fails in
//! CI (`CI=true`) and says SKIP elsewhere.
mod common;
use common::*;
use serde_json::Value;
use ssm_testkit::{is_root, repo, spawn_ready, TempDir, Topology};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

const IFACE: &str = "ssm0";
/// How long a multicast command may take to arrive and be applied.
const SETTLE: Duration = Duration::from_secs(3);

fn peer_script() -> PathBuf {
    repo().join("interop/aiocoap/group_peer.py")
}

/// `group_peer.py send` on `host`: its JSON line.
fn aio_send(host: &Host, py: &Path, material: &Path, key: &Path, port: u16, value: &str) -> Value {
    let port = port.to_string();
    let out = host.run(
        py,
        &[
            peer_script().to_str().unwrap(),
            "send",
            "--material",
            material.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "--iface",
            IFACE,
            "--port",
            &port,
            "--value",
            value,
            "--wait",
            "0.5",
        ],
        Duration::from_secs(30),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "group_peer.py send: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("send: {e}: {text}"))
}

/// A running `group_peer.py serve` and its JSON lines; killed on drop.
struct AioLight {
    child: Child,
    lines: Receiver<String>,
}
impl Drop for AioLight {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
impl AioLight {
    fn start(host: &Host, py: &Path, material: &Path, key: &Path, port: u16) -> AioLight {
        let mut c = host.cmd(py);
        c.arg(peer_script())
            .arg("serve")
            .arg("--material")
            .arg(material)
            .arg("--key")
            .arg(key)
            .args(["--iface", IFACE, "--port", &port.to_string()])
            .stderr(Stdio::inherit());
        let r = spawn_ready(c, Duration::from_secs(30));
        assert_eq!(r.ready["ready"], true, "{}", r.ready);
        AioLight {
            child: r.child,
            lines: r.lines,
        }
    }

    /// Its `applied` and `dropped` lines until `deadline` (or until it
    /// applied `want` requests).
    fn observe(&self, want: usize, deadline: Instant) -> (Vec<Value>, Vec<Value>) {
        let (mut applied, mut dropped) = (Vec::new(), Vec::new());
        while applied.len() < want {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                break;
            };
            let Ok(l) = self.lines.recv_timeout(left) else {
                break;
            };
            let v: Value = serde_json::from_str(&l).unwrap_or(Value::Null);
            if v["applied"] == true {
                applied.push(v);
            } else if v.get("dropped").is_some() {
                dropped.push(v);
            }
        }
        (applied, dropped)
    }
}

fn send_ours(host: &Host, state: &Path, port: u16, value: &str) {
    let port = port.to_string();
    let out = host.ssm(&[
        "client",
        "--state-dir",
        state.to_str().unwrap(),
        "update",
        "--multicast",
        "--group",
        "hall",
        "--iface",
        IFACE,
        "--port",
        &port,
        "--no-ipv4",
        "--scopes",
        "2",
        "--value",
        value,
    ]);
    assert!(
        out.status.success(),
        "our switch's update: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The light's switch value, read by secured RETRIEVE (pair-wise OSCORE)
/// with our switch's credentials.
fn read_back(host: &Host, sw: &Path, light: &Dev) -> bool {
    let (_, v) = host.json(
        &[
            "client",
            "--state-dir",
            sw.to_str().unwrap(),
            "--json",
            "get",
            &light.ep,
        ],
        false,
    );
    assert_eq!(
        (v["code"].as_str(), v["security"].as_str()),
        (Some("2.05"), Some("oscore")),
        "{v}"
    );
    v["body"]["value"].as_bool().unwrap()
}

/// Per light: did it apply an SSM update before `deadline`, and the drop
/// reasons it reported by then (also those queued when the deadline passed).
fn lights_applied(lights: &[&Dev], deadline: Instant) -> Vec<(bool, Vec<String>)> {
    lights
        .iter()
        .map(|d| {
            let (mut applied, mut drops) = (false, Vec::new());
            let mut note = |v: Value| match v["event"].as_str() {
                Some("ssm_applied") => applied = true,
                Some("dropped") => drops.push(v["reason"].as_str().unwrap_or("").to_string()),
                _ => {}
            };
            while let Some(left) = deadline.checked_duration_since(Instant::now()) {
                match d.events.recv_timeout(left) {
                    Ok(v) => {
                        let done = v["event"] == "ssm_applied";
                        note(v);
                        if done {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
            while let Ok(v) = d.events.try_recv() {
                note(v);
            }
            (applied, drops)
        })
        .collect()
}

fn count_applied(seen: &[(bool, Vec<String>)]) -> usize {
    seen.iter().filter(|s| s.0).count()
}

/// Our switch's group-mode Sender ID (its credential 65536 in svr.json).
fn our_sender_id(state: &Path) -> String {
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(state.join("svr.json")).unwrap()).unwrap();
    v["cred"]["creds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["credtype"] == 65536)
        .and_then(|c| c["oscore"]["senderid"].as_str())
        .expect("our switch holds a group-mode sender credential")
        .to_string()
}

fn keygen(py: &Path, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let key = dir.join(format!("{name}.key"));
    let out = Command::new(py)
        .arg(peer_script())
        .args(["keygen", "--out"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success(), "keygen: {out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ccs = dir.join(format!("{name}.ccs"));
    std::fs::write(&ccs, v["ccs"].as_str().unwrap()).unwrap();
    (key, ccs)
}

fn root_or_skip() -> bool {
    if is_root() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "aiocoap_group_live needs root (network namespaces for IPv6 multicast); CI runs as root"
    );
    eprintln!("SKIP aiocoap_group_live: needs root (network namespaces for IPv6 multicast)");
    false
}

#[test]
fn aiocoap_group_mode_live_both_ways_and_removal() {
    if !root_or_skip() {
        return;
    }
    let py = ssm_testkit::aiocoap_python();
    let pid = std::process::id();
    let prefix = format!("ssmal{}", pid % 100_000);
    let topo = Topology::up(&prefix, 6);
    let h: Vec<Host> = (0..6).map(|i| Host(Some(topo.ns(i).to_string()))).collect();
    let port = ssm_testkit::free_udp_port();
    let dir = TempDir::new("ssm-aiocoap-group-live");
    let domain = dir.join("domain.sqlite");
    let domain = domain.to_str().unwrap().to_string();
    let link = link_args(IFACE, port);
    let obt = |args: &[&str], with_link: bool| {
        let mut a = vec!["obt", "--domain", &domain, "--json"];
        a.extend_from_slice(args);
        if with_link {
            a.extend(link.iter().map(String::as_str));
        }
        h[0].json(&a, false).1
    };
    let names = [("l1", "light"), ("l2", "light"), ("sw", "switch")];
    let devs: Vec<Dev> = names
        .iter()
        .enumerate()
        .map(|(i, (n, r))| start(&h[i + 1], &dir.join(n), IFACE, r, port))
        .collect();
    let sheet: Vec<_> = devs
        .iter()
        .zip(names)
        .map(|(d, (n, r))| (d, n.to_string(), r))
        .collect();
    let pins = pin_sheet(&dir, &sheet);
    let lights: Vec<&Dev> = devs[..2].iter().collect();
    let sw = dir.join("sw");
    let (light_key, light_ccs) = keygen(&py, &dir, "aio-light");
    let (switch_key, switch_ccs) = keygen(&py, &dir, "aio-switch");

    // Commissioning: our three devices, the two aiocoap members.
    obt(&["init", "--name", "aiolive"], false);
    let v = obt(
        &["onboard", "--all", "--pins", pins.to_str().unwrap()],
        true,
    );
    assert_eq!(v["onboarded"], 3, "{v}");
    let g = obt(
        &[
            "group",
            "create",
            "hall",
            "--profile",
            "group-oscore",
            "--aead-alg",
            "AES-CCM-16-64-128",
        ],
        false,
    );
    assert_eq!(g["group"]["profile"], "group-oscore", "{g}");
    for (n, role, ccs) in [
        ("aio-light", "light", &light_ccs),
        ("aio-switch", "switch", &switch_ccs),
    ] {
        obt(
            &[
                "external",
                "add",
                n,
                "--role",
                role,
                "--authcred",
                ccs.to_str().unwrap(),
            ],
            false,
        );
    }
    let v = obt(&["group", "add", "hall", "l1", "l2", "aio-light"], true);
    assert_eq!(v["stale"], 0, "{v}");
    for s in ["sw", "aio-switch"] {
        let v = obt(&["ssm", "grant", s, "--group", "hall"], true);
        assert_eq!(v["stale"], 0, "{v}");
    }
    let material = |n: &str, file: &str| {
        let out = dir.join(file);
        obt(
            &[
                "external",
                "material",
                n,
                "--group",
                "hall",
                "--out",
                out.to_str().unwrap(),
            ],
            false,
        );
        let m: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        assert_eq!(m["aeadalg"], 10, "{m}");
        out
    };
    let light_m = material("aio-light", "aio-light-1.json");
    let switch_m = material("aio-switch", "aio-switch-1.json");
    let aio_switch_sid = {
        let m: Value = serde_json::from_str(&std::fs::read_to_string(&switch_m).unwrap()).unwrap();
        m["sender_id"].as_str().unwrap().to_string()
    };
    let ours = our_sender_id(&sw);
    let aio = AioLight::start(&h[4], &py, &light_m, &light_key, port);
    let drain = || devs.iter().for_each(Dev::drain);

    // (a) our switch → our lights and the aiocoap light.
    drain();
    send_ours(&h[3], &sw, port, "on");
    let seen = lights_applied(&lights, Instant::now() + SETTLE);
    let (a_applied, a_dropped) = aio.observe(1, Instant::now() + SETTLE);
    eprintln!("(a) our lights {seen:?}; aiocoap applied {a_applied:?} dropped {a_dropped:?}");
    assert_eq!(
        count_applied(&seen),
        2,
        "our lights applied our switch's command: {seen:?}"
    );
    assert_eq!(a_applied.len(), 1, "aiocoap applied it: {a_dropped:?}");
    assert_eq!(
        (&a_applied[0]["value"], a_applied[0]["kid"].as_str()),
        (&Value::Bool(true), Some(ours.as_str())),
        "{a_applied:?}"
    );
    for l in &lights {
        assert!(read_back(&h[3], &sw, l), "on, read back");
    }

    // (b) the aiocoap switch → our lights (and the aiocoap light).
    drain();
    let s = aio_send(&h[5], &py, &switch_m, &switch_key, port, "false");
    assert_eq!(s["sent"], true, "{s}");
    let seen = lights_applied(&lights, Instant::now() + SETTLE);
    let (b_applied, b_dropped) = aio.observe(1, Instant::now() + SETTLE);
    eprintln!(
        "(b) sent {s}; our lights {seen:?}; aiocoap applied {b_applied:?} dropped {b_dropped:?}"
    );
    assert_eq!(
        count_applied(&seen),
        2,
        "our lights applied aiocoap's command: {seen:?}"
    );
    for l in &lights {
        assert!(!read_back(&h[3], &sw, l), "off, read back");
    }
    assert_eq!(b_applied.len(), 1, "the aiocoap light: {b_dropped:?}");
    assert_eq!(
        (&b_applied[0]["value"], b_applied[0]["kid"].as_str()),
        (&Value::Bool(false), Some(aio_switch_sid.as_str())),
        "{b_applied:?}"
    );

    // (c) the aiocoap switch removed: hall is rekeyed.
    let v = obt(&["external", "remove", "aio-switch"], true);
    assert_eq!(v["stale"], 0, "{v}");
    let g = obt(&["group", "show", "hall"], false);
    assert_eq!(g["group"]["epoch"], 2, "rekeyed: {g}");
    drop(aio);
    let light_m2 = material("aio-light", "aio-light-2.json");
    let aio = AioLight::start(&h[4], &py, &light_m2, &light_key, port);
    drain();
    for _ in 0..3 {
        let s = aio_send(&h[5], &py, &switch_m, &switch_key, port, "true");
        assert_eq!(s["sent"], true, "{s}");
    }
    let seen = lights_applied(&lights, Instant::now() + SETTLE);
    let (r_applied, r_dropped) = aio.observe(1, Instant::now() + SETTLE);
    eprintln!("(c) removed aiocoap switch x3: our lights {seen:?}; aiocoap applied {r_applied:?} dropped {r_dropped:?}");
    assert_eq!(
        count_applied(&seen),
        0,
        "a removed member changed a light: {seen:?}"
    );
    assert!(
        seen.iter().all(|s| s.1.len() == 3),
        "each light dropped its 3 datagrams: {seen:?}"
    );
    assert_eq!(
        r_applied.len(),
        0,
        "nor the re-keyed aiocoap light: {r_applied:?}"
    );
    assert_eq!(r_dropped.len(), 3, "{r_dropped:?}");
    assert!(
        r_dropped.iter().all(|d| d["dropped"] == "other Group ID"),
        "{r_dropped:?}"
    );
    for l in &lights {
        assert!(!read_back(&h[3], &sw, l), "still off");
    }
    drain();
    send_ours(&h[3], &sw, port, "on");
    let seen = lights_applied(&lights, Instant::now() + SETTLE);
    let (c_applied, c_dropped) = aio.observe(1, Instant::now() + SETTLE);
    let ours2 = our_sender_id(&sw);
    assert_ne!(ours, ours2, "the rekey gave our switch a new Sender ID");
    eprintln!("(c) our switch, epoch 2: our lights {seen:?}; aiocoap applied {c_applied:?} dropped {c_dropped:?}");
    assert_eq!(
        count_applied(&seen),
        2,
        "our switch commands the rekeyed group: {seen:?}"
    );
    for l in &lights {
        assert!(read_back(&h[3], &sw, l), "on again");
    }
    assert_eq!(
        c_applied.len(),
        1,
        "the re-keyed aiocoap light: {c_dropped:?}"
    );
    assert_eq!(
        (&c_applied[0]["value"], c_applied[0]["kid"].as_str()),
        (&Value::Bool(true), Some(ours2.as_str())),
        "{c_applied:?}"
    );
    drop(aio);
    drop(devs);
    drop(topo);
}

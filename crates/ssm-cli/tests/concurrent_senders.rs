//! Daily use of one switch state dir by many processes at once, and one
//! command sent to several groups, in network namespaces joined by a
//! bridge: a switch namespace, three light namespaces and a capture
//! namespace that sees every datagram on the link.
//!
//! * 60 `ssm client update --multicast` and 8 pair-wise unicast
//!   `ssm client update EP` started at once from the switch's state dir
//!   while the switch device itself runs on it: no two different datagrams
//!   on the wire carry the same (kid, Partial IV); every call exits 0 and
//!   every multicast command is applied by every light, exactly once.
//! * IPv4 + ff02::158 + ff05::158: 3 commands are applied exactly 3 times;
//!   the other copies are counted as duplicate copies, not replays.
//! * A second `ssm device` on a state dir in use refuses to start.
//!
//! Not root: the same senders over IPv4 on `lo` (the multi-scope part needs
//! IPv6 multicast and namespaces: skipped, loudly).
mod netkit;
use netkit::*;
use serde_json::Value;
use ssm_testkit::{is_root, Topology};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const LIGHTS: usize = 3;
const SENDERS: usize = 60;

fn port(salt: u32) -> u16 {
    ssm_testkit::test_port(salt)
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ssm-conc-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn generate(dir: &Path) {
    let out = Command::new(ssm())
        .args(["creds", "generate", "--lights", &LIGHTS.to_string()])
        .args(["--switches", "1", "--out"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

/// (kid, Partial IV) of an SSM datagram.
fn kid_piv(d: &[u8]) -> Option<(Vec<u8>, u64)> {
    let p = ssm_coap::Packet::new_checked(d).ok()?;
    let o = p.options().get(ssm_coap::OptionNumber::OSCORE)?;
    let o = ssm_oscore::OscoreOption::parse(o.value).ok()?;
    Some((o.kid?.as_bytes().to_vec(), o.partial_iv?.value()))
}

/// The capture: every multicast datagram on the link, from a namespace of
/// its own (or this host on lo), collected until `stop`.
fn capture_thread(
    ns: Option<String>,
    v4: Ipv4Addr,
    v6_if: Option<u32>,
    port: u16,
) -> (
    std::sync::mpsc::Sender<()>,
    std::thread::JoinHandle<Vec<Captured>>,
) {
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
    let h = std::thread::spawn(move || {
        if let Some(ns) = &ns {
            enter_netns(ns);
        }
        let att = Attacker::new(v4, v6_if, port);
        ready_tx.send(()).unwrap();
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        while stop_rx.try_recv().is_err() && Instant::now() < deadline {
            got.extend(att.capture());
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(200));
        got.extend(att.capture());
        got
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("capture ready");
    (stop_tx, h)
}

fn update_args<'a>(dir: &'a str, iface: &'a str, port: &'a str, value: &'a str) -> Vec<&'a str> {
    vec![
        "client",
        "--state-dir",
        dir,
        "update",
        "--multicast",
        "--json",
        "--iface",
        iface,
        "--port",
        port,
        "--value",
        value,
    ]
}

/// Waits (bounded) until every light applied `n` more updates and dropped
/// `copies` more duplicate copies.
fn wait_applied(lights: &[Light], before: &[Events], n: u64, copies: u64) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let done = lights.iter().zip(before).all(|(l, b)| {
            let e = l.events();
            e.applied >= b.applied + n
                && e.dropped.get("DuplicateCopy").copied().unwrap_or(0)
                    >= b.dropped.get("DuplicateCopy").copied().unwrap_or(0) + copies
        });
        if done || Instant::now() > deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn wait_all(children: Vec<Child>, limit: Duration) -> Vec<(bool, Value)> {
    let deadline = Instant::now() + limit;
    children
        .into_iter()
        .map(|mut c| loop {
            if c.try_wait().unwrap().is_some() {
                let out = c.wait_with_output().unwrap();
                let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
                if !out.status.success() {
                    eprintln!(
                        "concurrent: a sender failed: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
                break (out.status.success(), v);
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                panic!("a sender did not finish in time");
            }
            std::thread::sleep(Duration::from_millis(5));
        })
        .collect()
}

#[test]
fn many_senders_on_one_state_dir_never_reuse_a_nonce_and_every_command_is_applied() {
    let dir = scratch("many");
    generate(&dir);
    let p = port(1);
    let ps = p.to_string();
    let (_topo, switch, light_hosts, cap_ns, iface, cap_v4, cap_v6) = if is_root() {
        let t = Topology::up(&format!("cs{}", std::process::id() % 100_000), LIGHTS + 2);
        let hosts: Vec<Host> = t.nodes.iter().map(|n| Host(Some(n[2].clone()))).collect();
        let cap = &t.nodes[LIGHTS + 1];
        let (ns, v4, idx) = (cap[2].clone(), cap[5].parse().unwrap(), cap[4].parse().ok());
        let lights = hosts[1..=LIGHTS].to_vec();
        (Some(t), hosts[0].clone(), lights, Some(ns), "ssm0", v4, idx)
    } else {
        eprintln!("concurrent: not root: IPv4 on lo instead of namespaces");
        let h = Host(None);
        (
            None,
            h.clone(),
            vec![h; LIGHTS],
            None,
            "lo",
            Ipv4Addr::LOCALHOST,
            None,
        )
    };
    let lights: Vec<Light> = light_hosts
        .iter()
        .enumerate()
        .map(|(i, h)| Light::start(h, &dir.join(format!("light-{i}")), iface, p))
        .collect();
    // The switch device runs on the state dir the senders use.
    let switch_dir = dir.join("switch-0");
    let sd = switch_dir.to_str().unwrap().to_string();
    let mut switch_dev = switch
        .cmd(ssm())
        .args(["device", "--json", "--role", "switch", "--iface", iface])
        .args(["--port", &ps, "--state-dir", &sd])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    {
        use std::io::BufRead;
        let mut first = String::new();
        std::io::BufReader::new(switch_dev.stdout.as_mut().unwrap())
            .read_line(&mut first)
            .unwrap();
        assert!(first.contains("\"ready\""), "switch device: {first}");
    }
    // A second device on the same state dir refuses, and says why.
    let second = switch.ssm(&[
        "device",
        "--role",
        "switch",
        "--iface",
        iface,
        "--port",
        &ps,
        "--state-dir",
        &sd,
    ]);
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "a second device started on {sd}");
    assert!(
        err.contains("in use by another running device"),
        "unclear refusal: {err}"
    );
    eprintln!("concurrent: second device refused: {}", err.trim());

    let (stop, cap) = capture_thread(cap_ns, cap_v4, cap_v6, p);
    let before: Vec<Events> = lights.iter().map(|l| l.events()).collect();
    // Scope 2 and IPv4: two identical copies per command on the link.
    let mut children = Vec::new();
    for i in 0..SENDERS {
        let value = if i % 2 == 0 { "on" } else { "off" };
        let mut c = switch.cmd(ssm());
        c.args(update_args(&sd, iface, &ps, value))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        children.push(c.spawn().unwrap());
    }
    // Pair-wise unicast updates to light 0 share the switch's credtype-64
    // sequence store the same way (one first: the light's window starts
    // with an Echo round trip, RFC 8613 App. B.1.2).
    let unicast = |value: &str| {
        let mut c = switch.cmd(ssm());
        c.args(["client", "--state-dir", &sd, "update", &lights[0].ep])
            .args(["--json", "--value", value])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c.spawn().unwrap()
    };
    let warm = wait_all(vec![unicast("off")], Duration::from_secs(30));
    assert!(warm[0].0, "first unicast update");
    let mut unicasts = Vec::new();
    for _ in 0..8 {
        unicasts.push(unicast("off"));
    }
    let results = wait_all(children, Duration::from_secs(60));
    let uc = wait_all(unicasts, Duration::from_secs(60));
    assert!(
        uc.iter().all(|(ok, v)| *ok && v["code"] == "2.04"),
        "every pair-wise update answered 2.04: {uc:?}"
    );
    let ok: Vec<&Value> = results.iter().filter(|(s, _)| *s).map(|(_, v)| v).collect();
    assert_eq!(ok.len(), SENDERS, "every sender exits 0");
    let copies_per_command = ok[0]["sent"].as_array().unwrap().len() as u64;
    let mut reported = BTreeSet::new();
    for v in &ok {
        let sent = v["sent"].as_array().unwrap();
        let pivs: BTreeSet<u64> = sent.iter().map(|s| s["piv"].as_u64().unwrap()).collect();
        assert_eq!(pivs.len(), 1, "one Partial IV per command: {v}");
        assert!(
            reported.insert(*pivs.first().unwrap()),
            "a PIV reported twice"
        );
    }
    wait_applied(
        &lights,
        &before,
        SENDERS as u64,
        SENDERS as u64 * (copies_per_command - 1),
    );
    stop.send(()).unwrap();
    let captured = cap.join().unwrap();

    // Off the wire: no two different datagrams share (kid, PIV).
    let mut by_nonce: BTreeMap<(Vec<u8>, u64), BTreeSet<Vec<u8>>> = BTreeMap::new();
    for c in &captured {
        if let Some(k) = kid_piv(&c.bytes) {
            by_nonce.entry(k).or_default().insert(c.bytes.clone());
        }
    }
    let reused: Vec<_> = by_nonce.iter().filter(|(_, b)| b.len() > 1).collect();
    assert!(
        reused.is_empty(),
        "{} (kid, PIV) pairs carried different datagrams (AES-CCM nonce reuse)",
        reused.len()
    );
    assert_eq!(
        by_nonce.len(),
        SENDERS,
        "one (kid, PIV) per command on the wire"
    );
    assert_eq!(
        captured.len() as u64,
        SENDERS as u64 * copies_per_command,
        "every copy on the wire"
    );
    for (l, b) in lights.iter().zip(&before) {
        let e = l.events();
        assert_eq!(
            e.applied - b.applied,
            SENDERS as u64,
            "light {}: every command applied exactly once ({e:?})",
            l.ep
        );
        assert_eq!(
            e.dropped.get("Replay").copied().unwrap_or(0),
            b.dropped.get("Replay").copied().unwrap_or(0),
            "light {}: a genuine command dropped as a replay ({e:?})",
            l.ep
        );
    }
    eprintln!(
        "concurrent: {SENDERS} senders + a running switch device on one state dir: {} datagrams on the wire ({copies_per_command} copies per command), {} distinct (kid, PIV), 0 reused; each of {LIGHTS} lights applied {SENDERS}",
        captured.len(),
        by_nonce.len()
    );
    // Stale temporaries never pile up: one lock file, one limit file.
    let stray: Vec<String> = std::fs::read_dir(&switch_dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(stray.is_empty(), "temporary files left: {stray:?}");
    let _ = switch_dev.kill();
    let _ = switch_dev.wait();
    drop(lights);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn one_command_over_three_groups_is_applied_once() {
    if !is_root() {
        eprintln!("concurrent: NOT RUN: IPv4 + ff02 + ff05 needs namespaces (root)");
        return;
    }
    let dir = scratch("scopes");
    generate(&dir);
    let p = port(2);
    let ps = p.to_string();
    let t = Topology::up(&format!("cx{}", std::process::id() % 100_000), LIGHTS + 1);
    let hosts: Vec<Host> = t.nodes.iter().map(|n| Host(Some(n[2].clone()))).collect();
    let lights: Vec<Light> = hosts[1..]
        .iter()
        .enumerate()
        .map(|(i, h)| Light::start(h, &dir.join(format!("light-{i}")), "ssm0", p))
        .collect();
    let sd = dir.join("switch-0").to_str().unwrap().to_string();
    let before: Vec<Events> = lights.iter().map(|l| l.events()).collect();
    for (i, value) in ["on", "off", "on"].iter().enumerate() {
        let mut a = update_args(&sd, "ssm0", &ps, value);
        a.extend(["--scopes", "2,5"]);
        let out = hosts[0].ssm(&a);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let sent = v["sent"].as_array().unwrap();
        assert_eq!(sent.len(), 3, "IPv4, ff02::158, ff05::158: {v}");
        let pivs: BTreeSet<u64> = sent.iter().map(|s| s["piv"].as_u64().unwrap()).collect();
        assert_eq!(pivs.len(), 1, "one Partial IV for the three copies: {v}");
        wait_applied(&lights, &before, i as u64 + 1, 2 * (i as u64 + 1));
    }
    std::thread::sleep(Duration::from_millis(300));
    for (l, b) in lights.iter().zip(&before) {
        let e = l.events();
        assert_eq!(
            e.applied - b.applied,
            3,
            "light {}: 3 commands, 3 applies ({e:?})",
            l.ep
        );
        assert_eq!(
            e.dropped.get("DuplicateCopy").copied().unwrap_or(0),
            6,
            "light {}: the two other copies of each command ({e:?})",
            l.ep
        );
        assert_eq!(
            e.dropped.get("Replay").copied().unwrap_or(0),
            0,
            "light {}: copies are not replays ({e:?})",
            l.ep
        );
    }
    eprintln!("concurrent: 3 commands x 3 groups: each of {LIGHTS} lights applied 3, dropped 6 duplicate copies, 0 replays");
    drop(lights);
    drop(t);
    let _ = std::fs::remove_dir_all(&dir);
}

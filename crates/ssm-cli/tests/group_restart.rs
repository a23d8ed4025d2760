//! Restart safety of Group OSCORE group mode (RFC 10021) as the SSM
//! profile has it, with real processes: a group `hall --profile
//! group-oscore` commissioned by `ssm obt` (one switch, two lights; every
//! device its own network namespace when root, IPv6 ff02::158; else IPv4
//! 224.0.1.187 on `lo`) and a capture of every datagram on the link (a
//! namespace of its own on the bridge, or a socket on `lo`).
//!
//! * Switch restarts: 200 `ssm client update --multicast --group hall`
//!   runs on the switch's state dir, every other one SIGKILLed at a random
//!   moment of its run (`SSM_GROUP_RESTART_RUNS`, `SSM_GROUP_RESTART_SEED`):
//!   no (kid, Partial IV) pair carries two different datagrams; every run
//!   that exited 0, and every datagram on the wire, was applied by both
//!   lights exactly once.
//! * Light restarts: light l1 SIGKILLed and started again on its state
//!   dir; every datagram captured so far sent again: 0 applied, the
//!   restarted light drops each as `Replay` (its floor was durable before
//!   each apply: no Echo on multicast), the other light as `Replay` or
//!   `DuplicateCopy`; the switch's next command is applied by both.
//! * The harness sees reuse when there is some: the switch's sequence
//!   files deleted, its next command reuses a Partial IV with other bytes;
//!   it is caught, and no light applies it.
mod common;
mod netkit;
use common::*;
use netkit::{enter_netns, Attacker, Captured, Rng};
use serde_json::Value;
use ssm_testkit::{hosts, Topology};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// (kid, Partial IV) of a group-mode datagram (the Group Flag cleared to
/// parse the option), else `None`.
fn kid_piv(d: &[u8]) -> Option<(Vec<u8>, u64)> {
    let p = ssm_coap::Packet::new_checked(d).ok()?;
    let o = p.options().get(ssm_coap::OptionNumber::OSCORE)?;
    let mut v = o.value.to_vec();
    if v.first()? & ssm_oscore::group::GROUP_FLAG == 0 {
        return None;
    }
    v[0] &= !ssm_oscore::group::GROUP_FLAG;
    let o = ssm_oscore::OscoreOption::parse(&v).ok()?;
    Some((o.kid?.as_bytes().to_vec(), o.partial_iv?.value()))
}

/// What a light process reported: the Partial IVs it applied (in order)
/// and its drops by reason.
#[derive(Default, Debug, Clone)]
struct Tally {
    applied: Vec<u64>,
    dropped: BTreeMap<String, u64>,
}

impl Tally {
    fn take(&mut self, d: &Dev) {
        while let Ok(v) = d.events.try_recv() {
            match v["event"].as_str() {
                Some("ssm_applied") => self.applied.push(v["piv"].as_u64().unwrap()),
                Some("dropped") => {
                    *self
                        .dropped
                        .entry(v["reason"].as_str().unwrap_or("?").to_string())
                        .or_default() += v["count"].as_u64().unwrap_or(1)
                }
                Some("lagged") => panic!("light events lagged: {v}"),
                _ => {}
            }
        }
    }
    fn drops(&self) -> u64 {
        self.dropped.values().sum()
    }
}

/// The commissioned site. Fields drop in order: processes before the
/// namespaces.
struct Site {
    lights: Vec<Dev>,
    _switch: Dev,
    tallies: Vec<Tally>,
    tap: Attacker,
    /// Everything the switch put on the link.
    wire: Vec<Captured>,
    hosts: Vec<Host>,
    iface: &'static str,
    port: u16,
    dir: ssm_testkit::TempDir,
    _topo: Option<Topology>,
}

const OBT: usize = 0;
const SWITCH: usize = 3;
const TAP: usize = 4;

impl Site {
    /// `ssm obt`: onboard l1, l2 and sw, group `hall` in group mode with
    /// both lights, sw granted.
    fn commission() -> Site {
        let pid = std::process::id();
        let (topo, hosts, iface) = hosts(&format!("ssmgr{}", pid % 100000), 5);
        let port = ssm_testkit::free_udp_port();
        let dir = ssm_testkit::TempDir::new("ssm-group-restart");
        let domain = dir.join("domain.sqlite").to_str().unwrap().to_string();
        let link = link_args(iface, port);
        let obt = |args: &[&str], linked: bool| {
            let mut a = vec!["obt", "--domain", &domain, "--json"];
            a.extend_from_slice(args);
            if linked {
                a.extend(link.iter().map(String::as_str));
            }
            hosts[OBT].json(&a, false).1
        };
        let names = ["l1", "l2", "sw"];
        let role = |n: &str| if n == "sw" { "switch" } else { "light" };
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
        obt(&["init", "--name", "site"], false);
        let v = obt(
            &["onboard", "--all", "--pins", pins.to_str().unwrap()],
            true,
        );
        assert_eq!(v["onboarded"], 3, "{v}");
        let g = obt(
            &["group", "create", "hall", "--profile", "group-oscore"],
            false,
        );
        assert_eq!(g["group"]["profile"], "group-oscore", "{g}");
        let v = obt(&["group", "add", "hall", "l1", "l2"], true);
        assert_eq!(v["stale"], 0, "{v}");
        let v = obt(&["ssm", "grant", "sw", "--group", "hall"], true);
        assert_eq!(
            (v["stale"].as_u64(), v["granted"].as_u64()),
            (Some(0), Some(2)),
            "{v}"
        );
        let tap = match &topo {
            Some(t) => {
                let ns = t.ns(TAP).to_string();
                let v4: Ipv4Addr = t.ipv4(TAP).parse().unwrap();
                let idx: Option<u32> = t.nodes[TAP][4].parse().ok();
                // Sockets belong to the namespace they are made in.
                std::thread::spawn(move || {
                    enter_netns(&ns);
                    Attacker::new(v4, idx, port)
                })
                .join()
                .unwrap()
            }
            None => Attacker::new(Ipv4Addr::LOCALHOST, None, port),
        };
        let mut devs = devs.into_iter();
        let lights = vec![devs.next().unwrap(), devs.next().unwrap()];
        Site {
            lights,
            _switch: devs.next().unwrap(),
            tallies: vec![Tally::default(); 2],
            tap,
            wire: Vec::new(),
            hosts,
            iface,
            port,
            dir,
            _topo: topo,
        }
    }

    fn switch_dir(&self) -> PathBuf {
        self.dir.join("sw")
    }

    /// `ssm client update --multicast --group hall --json` on the switch.
    fn client(&self, value: &str) -> Child {
        let sd = self.switch_dir();
        let port = self.port.to_string();
        let mut a = vec![
            "client",
            "--state-dir",
            sd.to_str().unwrap(),
            "update",
            "--multicast",
            "--json",
            "--iface",
            self.iface,
            "--port",
            &port,
            "--value",
            value,
            "--group",
            "hall",
        ];
        if self.iface != "lo" {
            a.extend(["--no-ipv4", "--scopes", "2"]);
        }
        let mut c = self.hosts[SWITCH].cmd(ssm());
        c.args(&a).stdout(Stdio::piped()).stderr(Stdio::piped());
        c.spawn().unwrap()
    }

    /// One command run to its end: its Partial IV.
    fn command(&mut self, value: &str) -> u64 {
        match finish(self.client(value), None).0 {
            Run::Sent(piv) => piv,
            r => panic!("a command failed: {r:?}"),
        }
    }

    /// Collects the capture and the lights' events.
    fn poll(&mut self) {
        self.wire.extend(self.tap.capture());
        for (t, l) in self.tallies.iter_mut().zip(&self.lights) {
            t.take(l);
        }
    }

    /// Polls until `done` holds or `limit` passed.
    fn settle(&mut self, limit: Duration, done: impl Fn(&Site) -> bool) {
        let deadline = Instant::now() + limit;
        loop {
            self.poll();
            if done(self) || Instant::now() > deadline {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The Partial IVs on the wire.
    fn wire_pivs(&self) -> BTreeSet<u64> {
        self.wire
            .iter()
            .filter_map(|c| kid_piv(&c.bytes))
            .map(|k| k.1)
            .collect()
    }
}

#[derive(Debug)]
enum Run {
    /// Exited 0, having sent the command under this Partial IV.
    Sent(u64),
    /// SIGKILLed before it exited.
    Killed,
    Failed(String),
}

/// Waits for a client run (SIGKILLing it after `kill_after` if it still
/// runs then): its outcome and how long it ran.
fn finish(mut c: Child, kill_after: Option<Duration>) -> (Run, Duration) {
    let t0 = Instant::now();
    if let Some(d) = kill_after {
        std::thread::sleep(d);
        if c.try_wait().unwrap().is_none() {
            // SIGKILL: no destructor, no flush, no clean exit.
            let _ = c.kill();
        }
    }
    let deadline = t0 + RUN_LIMIT;
    while c.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = c.kill();
            let _ = c.wait();
            panic!("a client run did not finish in {RUN_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let ran = t0.elapsed();
    let out = c.wait_with_output().unwrap();
    if out.status.signal() == Some(libc::SIGKILL) {
        return (Run::Killed, ran);
    }
    if !out.status.success() {
        return (
            Run::Failed(String::from_utf8_lossy(&out.stderr).into_owned()),
            ran,
        );
    }
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let pivs: BTreeSet<u64> = v["sent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["piv"].as_u64().unwrap())
        .collect();
    assert_eq!(pivs.len(), 1, "one Partial IV per command: {v}");
    (Run::Sent(*pivs.first().unwrap()), ran)
}

/// (kid, Partial IV) pairs that carried more than one distinct datagram.
fn reused(wire: &[Captured]) -> Vec<(Vec<u8>, u64)> {
    let mut by_nonce: BTreeMap<(Vec<u8>, u64), BTreeSet<&[u8]>> = BTreeMap::new();
    for c in wire {
        if let Some(k) = kid_piv(&c.bytes) {
            by_nonce.entry(k).or_default().insert(c.bytes.as_slice());
        }
    }
    by_nonce
        .into_iter()
        .filter(|(_, b)| b.len() > 1)
        .map(|(k, _)| k)
        .collect()
}

#[test]
fn group_mode_survives_switch_and_light_restarts() {
    let started = Instant::now();
    let mut site = Site::commission();
    eprintln!(
        "group_restart: commissioned in {:.1} s on {}",
        started.elapsed().as_secs_f64(),
        site.iface
    );
    switch_restarts(&mut site);
    light_restarts(&mut site);
    control(&mut site);
    eprintln!(
        "group_restart: done in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// Runs with every other one SIGKILLed at a random moment of its run.
fn switch_restarts(site: &mut Site) {
    let runs: u64 = std::env::var("SSM_GROUP_RESTART_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let seed = std::env::var("SSM_GROUP_RESTART_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("group_restart: {runs} runs, seed {seed} (SSM_GROUP_RESTART_SEED to replay)");
    let mut rng = Rng(seed);
    let t0 = Instant::now();
    let (mut sent, mut killed, mut finished_first) = (Vec::new(), 0u64, 0u64);
    // Kills land anywhere in a run: at a random moment within as long as
    // the last whole run took here (30 ms before the first one finished).
    let mut span_us = 30_000u64;
    for i in 0..runs {
        let value = if i % 2 == 0 { "on" } else { "off" };
        let kill = (i % 2 == 1).then(|| Duration::from_micros(rng.next() % span_us));
        let c = site.client(value);
        match finish(c, kill) {
            (Run::Sent(piv), ran) => {
                sent.push(piv);
                if kill.is_some() {
                    finished_first += 1;
                } else {
                    span_us = (ran.as_micros() as u64).max(1000);
                }
            }
            (Run::Killed, _) => killed += 1,
            (Run::Failed(e), _) => panic!("run {i} failed: {e}"),
        }
        site.poll();
    }
    let elapsed = t0.elapsed();
    site.settle(Duration::from_secs(10), |s| {
        let wire = s.wire_pivs();
        s.tallies
            .iter()
            .all(|t| wire.iter().all(|p| t.applied.contains(p)))
    });
    let wire: BTreeSet<u64> = site.wire_pivs();
    let kids: BTreeSet<Vec<u8>> = site
        .wire
        .iter()
        .filter_map(|c| kid_piv(&c.bytes))
        .map(|k| k.0)
        .collect();
    let dups = reused(&site.wire);
    let from_killed = wire.iter().filter(|p| !sent.contains(p)).count();
    let highest = wire.iter().max().copied().unwrap_or(0);
    eprintln!(
        "group_restart: {runs} runs in {:.1} s: {} exited 0 ({finished_first} before their kill), {killed} SIGKILLed \
         ({from_killed} of them after sending); kills within {} ms; {} group-mode datagrams on the wire, \
         {} distinct (kid, PIV), highest PIV {highest} ({} numbers reserved by a killed run, never sent), {} reused; \
         lights applied {:?}, dropped {:?}",
        elapsed.as_secs_f64(),
        sent.len(),
        span_us / 1000,
        site.wire.len(),
        wire.len(),
        (highest + 1).saturating_sub(wire.len() as u64),
        dups.len(),
        site.tallies.iter().map(|t| t.applied.len()).collect::<Vec<_>>(),
        site.tallies.iter().map(|t| &t.dropped).collect::<Vec<_>>(),
    );
    assert!(
        dups.is_empty(),
        "nonce reuse: {} (kid, PIV) pairs carried different datagrams, e.g. {:?}",
        dups.len(),
        &dups[..dups.len().min(5)]
    );
    assert_eq!(kids.len(), 1, "one switch, one kid");
    assert!(
        killed >= runs / 8,
        "only {killed} of {} kills landed while the run was alive",
        runs / 2
    );
    let unsent: Vec<_> = sent.iter().filter(|p| !wire.contains(p)).collect();
    assert!(
        unsent.is_empty(),
        "reported sent, not on the wire: {unsent:?}"
    );
    for (n, t) in ["l1", "l2"].iter().zip(&site.tallies) {
        let applied: BTreeSet<u64> = t.applied.iter().copied().collect();
        assert_eq!(applied.len(), t.applied.len(), "{n} applied a PIV twice");
        let missing: Vec<_> = wire.difference(&applied).collect();
        assert!(
            missing.is_empty(),
            "{n} did not apply {} datagrams on the wire (every run that exited 0 among them: {}): {missing:?}",
            missing.len(),
            sent.iter().all(|p| applied.contains(p))
        );
        assert_eq!(applied, wire, "{n} applied only what the switch sent");
    }
}

/// l1 SIGKILLed and restarted; every datagram captured so far replayed.
fn light_restarts(site: &mut Site) {
    let fresh: Vec<u64> = ["on", "off", "on"].map(|v| site.command(v)).to_vec();
    let done = |s: &Site| {
        let wire = s.wire_pivs();
        fresh
            .iter()
            .all(|p| wire.contains(p) && s.tallies.iter().all(|t| t.applied.contains(p)))
    };
    site.settle(Duration::from_secs(5), done);
    assert!(done(site), "3 more commands applied by both lights");
    let highest = *site.wire_pivs().iter().max().unwrap();
    assert_eq!(Some(&highest), fresh.last());
    // The restarted light's floor is the one on its disk.
    let floors: Value = serde_json::from_str(
        &std::fs::read_to_string(site.dir.join("l1").join("ssm-replay-floors.json")).unwrap(),
    )
    .unwrap();
    let kid = site.wire.iter().find_map(|c| kid_piv(&c.bytes)).unwrap().0;
    let kid = hex::encode(kid);
    assert!(
        floors[&kid].as_u64() >= Some(highest),
        "l1's durable floor for {kid} is at least {highest}: {floors}"
    );
    site.lights.remove(0).kill();
    let l1 = start(
        &site.hosts[1],
        &site.dir.join("l1"),
        site.iface,
        "light",
        site.port,
    );
    site.lights.insert(0, l1);
    site.poll();
    let before = site.tallies.clone();
    let replays: Vec<Captured> = site
        .wire
        .iter()
        .filter(|c| kid_piv(&c.bytes).is_some())
        .cloned()
        .collect();
    for (i, c) in replays.iter().enumerate() {
        site.tap.send(&c.bytes, c.v6);
        // Paced: the lights' event streams keep up.
        if i % 4 == 3 {
            std::thread::sleep(Duration::from_millis(2));
            site.poll();
        }
    }
    let n = replays.len() as u64;
    assert_eq!(site.tap.sent, n, "every replay left the tap");
    site.settle(Duration::from_secs(10), |s| {
        s.tallies
            .iter()
            .zip(&before)
            .all(|(t, b)| t.drops() >= b.drops() + n)
    });
    std::thread::sleep(Duration::from_millis(300));
    site.poll();
    let delta = |t: &Tally, b: &Tally| -> (usize, BTreeMap<String, u64>) {
        let mut d = t.dropped.clone();
        for (k, v) in &b.dropped {
            *d.get_mut(k).unwrap() -= v;
        }
        d.retain(|_, v| *v > 0);
        (t.applied.len() - b.applied.len(), d)
    };
    let (a1, d1) = delta(&site.tallies[0], &before[0]);
    let (a2, d2) = delta(&site.tallies[1], &before[1]);
    eprintln!(
        "group_restart: l1 SIGKILLed and restarted (floor {} on disk), {n} captured datagrams sent again: \
         l1 applied {a1}, dropped {d1:?}; l2 applied {a2}, dropped {d2:?}",
        floors[&kid]
    );
    assert_eq!(
        (a1, d1),
        (0, BTreeMap::from([("Replay".to_string(), n)])),
        "the restarted light drops every old datagram as a replay"
    );
    assert_eq!(a2, 0, "l2 applied an old datagram");
    assert!(
        d2.keys().all(|k| k == "Replay" || k == "DuplicateCopy") && d2.values().sum::<u64>() == n,
        "l2 drops every old datagram: {d2:?}"
    );
    let piv = site.command("off");
    site.settle(Duration::from_secs(5), |s| {
        s.tallies.iter().all(|t| t.applied.contains(&piv))
    });
    assert!(
        site.tallies.iter().all(|t| t.applied.contains(&piv)),
        "the switch's next command ({piv}) applied by the restarted light and the other: {:?}",
        site.tallies
    );
}

/// The switch's sequence files deleted (a switch without persistence):
/// its next command reuses a Partial IV with other bytes, which the
/// harness sees and no light applies.
fn control(site: &mut Site) {
    let svr: Value =
        serde_json::from_str(&std::fs::read_to_string(site.switch_dir().join("svr.json")).unwrap())
            .unwrap();
    let credid = svr["cred"]["creds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["credtype"] == 65536)
        .and_then(|c| c["credid"].as_u64())
        .expect("the switch's group-mode sender credential");
    for f in [format!("ssn-{credid}"), format!("ssn-{credid}.lock")] {
        std::fs::remove_file(site.switch_dir().join(f)).unwrap();
    }
    site.poll();
    let before = site.tallies.clone();
    let piv = site.command("on");
    site.settle(Duration::from_secs(3), |s| {
        s.tallies
            .iter()
            .zip(&before)
            .all(|(t, b)| t.drops() > b.drops())
    });
    let dups = reused(&site.wire);
    eprintln!(
        "group_restart: control: without its sequence files the switch sent PIV {piv} again: {} reused pair(s) caught",
        dups.len()
    );
    assert!(dups.iter().any(|(_, p)| *p == piv), "reuse went unnoticed");
    for (t, b) in site.tallies.iter().zip(&before) {
        assert_eq!(t.applied.len(), b.applied.len(), "a reused PIV was applied");
        assert!(t.drops() > b.drops(), "the reused PIV was not dropped");
    }
}

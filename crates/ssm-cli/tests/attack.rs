//! The attack matrix: real lights (`ssm device` processes) and a real
//! switch in network namespaces joined by a bridge, and an attacker in a
//! namespace of its own that captures the switch's SSM datagrams off the
//! bridge and sends crafted ones to the lights' multicast groups:
//!
//! exact replay; reordered replay; the IPv4 copy replayed to the IPv6
//! group and back; replay after the sender restarted; every single-byte
//! change (3 masks per byte) of 100 captured datagrams; messages under a
//! non-member key (its own kid, and a member's kid); random kids; plain
//! (unprotected) multicast UPDATEs; OSCORE GET/PUT/DELETE via multicast
//! under a real member key; a member's pair-wise (credtype 64) key on
//! multicast; oversized and truncated datagrams; replay after a light was
//! killed with SIGKILL and restarted.
//!
//! Asserted: no light applies anything during the attacks (its event
//! stream shows no `ssm_applied`/`unicast_applied`), every light saw and
//! dropped the attack traffic, the state read back by unicast is the last
//! genuine one, nothing is ever sent back to the attacker, and genuine
//! commands still work after every phase (including on the restarted light).
//!
//! Not root: the same matrix runs over IPv4 on `lo` (the cross-family
//! replay is then skipped, loudly).
//!
//! A message from a revoked client after rekey is covered with the OBT's
//! offboarding (issue 5), not here.
use serde_json::Value;
use socket2::{Domain, Protocol, Socket, Type};
use ssm_ocf::cred::{CredResource, CredType, OscoreCred};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const LIGHTS: usize = 3;
const V4_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 1, 187);
const V6_GROUP: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x158);

fn ssm() -> &'static str {
    env!("CARGO_BIN_EXE_ssm")
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
        && Command::new("ip").arg("-V").output().is_ok()
}

/// A namespace topology, deleted on drop.
struct Topology {
    prefix: String,
    nodes: Vec<Vec<String>>,
}

impl Topology {
    fn up(prefix: &str, n: usize) -> Topology {
        let out = Command::new("bash")
            .arg(repo().join("tests/netns/topology.sh"))
            .args(["up", prefix, &n.to_string()])
            .stderr(Stdio::inherit())
            .output()
            .expect("run topology.sh");
        // Torn down on drop even if `up` half failed.
        let t = Topology {
            prefix: prefix.into(),
            nodes: String::from_utf8(out.stdout)
                .unwrap()
                .lines()
                .filter(|l| l.starts_with("node "))
                .map(|l| l.split_whitespace().map(String::from).collect())
                .collect(),
        };
        assert!(out.status.success(), "topology.sh up failed");
        assert_eq!(t.nodes.len(), n);
        t
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(repo().join("tests/netns/topology.sh"))
            .args(["down", &self.prefix])
            .status();
    }
}

/// Where a process runs: a namespace, or this host (loopback fallback).
#[derive(Clone)]
struct Host(Option<String>);

impl Host {
    fn cmd(&self) -> Command {
        match &self.0 {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, ssm()]);
                c
            }
            None => Command::new(ssm()),
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut c = self.cmd();
        c.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = c.spawn().expect("spawn ssm");
        let start = Instant::now();
        loop {
            if child.try_wait().unwrap().is_some() {
                return child.wait_with_output().unwrap();
            }
            if start.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                let out = child.wait_with_output().unwrap();
                panic!(
                    "timed out: {args:?}\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// What a light process reported on its JSON event stream.
#[derive(Default, Debug, Clone)]
struct Events {
    applied: u64,
    unicast_applied: u64,
    refused: u64,
    dropped: BTreeMap<String, u64>,
}

impl Events {
    fn dropped(&self) -> u64 {
        self.dropped.values().sum()
    }
}

struct Light {
    child: Child,
    ep: String,
    events: Arc<Mutex<Events>>,
    dir: PathBuf,
    host: Host,
}

impl Light {
    fn start(host: &Host, dir: &Path, iface: &str, port: u16) -> Light {
        let mut c = host.cmd();
        c.args([
            "device",
            "--json",
            "--iface",
            iface,
            "--port",
            &port.to_string(),
            "--state-dir",
        ])
        .arg(dir);
        let mut child = c
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start ssm device");
        let stdout = child.stdout.take().unwrap();
        let events = Arc::new(Mutex::new(Events::default()));
        let mut light = Light {
            child,
            ep: String::new(),
            events: events.clone(),
            dir: dir.to_path_buf(),
            host: host.clone(),
        };
        let mut lines = BufReader::new(stdout).lines();
        let ready: Value =
            serde_json::from_str(&lines.next().expect("ready line").unwrap()).unwrap();
        assert_eq!(ready["event"], "ready", "{ready}");
        std::thread::spawn(move || {
            for l in lines.map_while(Result::ok) {
                let Ok(v) = serde_json::from_str::<Value>(&l) else {
                    continue;
                };
                let mut e = events.lock().unwrap();
                match v["event"].as_str() {
                    Some("ssm_applied") => e.applied += 1,
                    Some("unicast_applied") => e.unicast_applied += 1,
                    Some("refused") => e.refused += 1,
                    Some("dropped") => {
                        *e.dropped
                            .entry(v["reason"].as_str().unwrap_or("?").to_string())
                            .or_default() += 1
                    }
                    _ => {}
                }
            }
        });
        let eps: Vec<String> = ready["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e.as_str().unwrap().to_string())
            .collect();
        light.ep = eps
            .iter()
            .find(|e| e.contains('%'))
            .or_else(|| eps.iter().find(|e| e.contains("127.0.0.1")))
            .expect("an endpoint")
            .clone();
        light
    }

    fn events(&self) -> Events {
        self.events.lock().unwrap().clone()
    }

    /// SIGKILL and start again on the same state dir.
    fn crash_and_restart(&mut self, iface: &str, port: u16) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        *self = Light::start(&self.host.clone(), &self.dir.clone(), iface, port);
    }
}

impl Drop for Light {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The attacker: a capture socket per family joined to the groups, and a
/// sending socket per family whose every reply is counted.
struct Attacker {
    cap4: UdpSocket,
    cap6: Option<UdpSocket>,
    tx4: UdpSocket,
    tx6: Option<UdpSocket>,
    port: u16,
    ifindex: u32,
    own_ports: Vec<u16>,
    sent: u64,
}

/// One datagram seen on the wire, with the group it went to.
#[derive(Clone)]
struct Captured {
    bytes: Vec<u8>,
    v6: bool,
}

impl Attacker {
    fn new(v4_if: Ipv4Addr, v6_if: Option<u32>, port: u16) -> Attacker {
        let cap4 = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
        cap4.set_reuse_address(true).unwrap();
        cap4.set_reuse_port(true).unwrap();
        let _ = cap4.set_recv_buffer_size(4 << 20);
        cap4.bind(&SocketAddr::from((V4_GROUP, port)).into())
            .unwrap();
        cap4.join_multicast_v4(&V4_GROUP, &v4_if).unwrap();
        let tx4 = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
        tx4.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)).into())
            .unwrap();
        tx4.set_multicast_if_v4(&v4_if).unwrap();
        tx4.set_multicast_ttl_v4(1).unwrap();
        tx4.set_multicast_loop_v4(false).unwrap();
        let (cap6, tx6) = match v6_if {
            Some(idx) => {
                let c = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP)).unwrap();
                c.set_only_v6(true).unwrap();
                c.set_reuse_address(true).unwrap();
                c.set_reuse_port(true).unwrap();
                let _ = c.set_recv_buffer_size(4 << 20);
                c.bind(&SocketAddrV6::new(V6_GROUP, port, 0, idx).into())
                    .unwrap();
                c.join_multicast_v6(&V6_GROUP, idx).unwrap();
                let t = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP)).unwrap();
                t.set_only_v6(true).unwrap();
                t.bind(&SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)).into())
                    .unwrap();
                t.set_multicast_if_v6(idx).unwrap();
                t.set_multicast_hops_v6(1).unwrap();
                t.set_multicast_loop_v6(false).unwrap();
                (Some(c.into()), Some(t.into()))
            }
            None => (None, None),
        };
        let tx4: UdpSocket = tx4.into();
        let own_ports = [Some(&tx4), tx6.as_ref()]
            .into_iter()
            .flatten()
            .map(|s: &UdpSocket| s.local_addr().unwrap().port())
            .collect();
        let a = Attacker {
            cap4: cap4.into(),
            cap6,
            tx4,
            tx6,
            port,
            ifindex: v6_if.unwrap_or(0),
            own_ports,
            sent: 0,
        };
        for s in [Some(&a.cap4), a.cap6.as_ref(), Some(&a.tx4), a.tx6.as_ref()]
            .into_iter()
            .flatten()
        {
            s.set_nonblocking(true).unwrap();
        }
        a
    }

    /// Everything the capture sockets hold now.
    fn capture(&self) -> Vec<Captured> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 70_000];
        for (s, v6) in [(Some(&self.cap4), false), (self.cap6.as_ref(), true)] {
            let Some(s) = s else { continue };
            while let Ok((n, from)) = s.recv_from(&mut buf) {
                // On lo the attacker hears itself (multicast loop does not
                // apply there): only others' datagrams are captured.
                if self.own_ports.contains(&from.port()) {
                    continue;
                }
                out.push(Captured {
                    bytes: buf[..n].to_vec(),
                    v6,
                });
            }
        }
        out
    }

    fn send(&mut self, bytes: &[u8], v6: bool) {
        let r = if v6 {
            let to = SocketAddrV6::new(V6_GROUP, self.port, 0, self.ifindex);
            self.tx6.as_ref().expect("IPv6").send_to(bytes, to)
        } else {
            self.tx4.send_to(bytes, (V4_GROUP, self.port))
        };
        // EMSGSIZE for the 65 kB datagram over IPv6 without a jumbo MTU
        // is the kernel refusing it: nothing left the attacker.
        if r.is_ok() {
            self.sent += 1;
        }
    }

    /// Datagrams sent back to the attacker's sockets (must stay 0).
    fn replies(&self) -> Vec<(SocketAddr, Vec<u8>)> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 70_000];
        for s in [Some(&self.tx4), self.tx6.as_ref()].into_iter().flatten() {
            while let Ok((n, from)) = s.recv_from(&mut buf) {
                out.push((from, buf[..n].to_vec()));
            }
        }
        out
    }
}

/// Enters the named network namespace (this thread only).
fn enter_netns(ns: &str) {
    let f = std::fs::File::open(format!("/var/run/netns/{ns}")).expect("netns file");
    use std::os::fd::AsRawFd;
    // SAFETY: setns on a valid namespace fd affects only the calling thread.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {ns}: {}", std::io::Error::last_os_error());
}

fn cred(dir: &Path, t: CredType) -> OscoreCred {
    CredResource::from_json(&std::fs::read_to_string(dir.join("creds.json")).unwrap())
        .unwrap()
        .oscore_creds()
        .unwrap()
        .into_iter()
        .find(|c| c.credtype == t)
        .unwrap_or_else(|| panic!("{} has no {t:?} credential", dir.display()))
}

/// An OSCORE-protected multicast request with inner `code` under a secret
/// and Sender ID of the attacker's choosing.
fn forge(
    secret: &[u8],
    sid: ssm_oscore::Id,
    piv: u64,
    code: ssm_coap::Code,
    value: bool,
) -> Vec<u8> {
    let mut ctx = ssm_oscore::SenderContext::derive(
        secret,
        None,
        None,
        sid,
        ssm_oscore::SequenceNumber::volatile(piv),
    )
    .unwrap();
    let mut m = ssm_ocf::ssm::update_request(
        ssm_ocf::switch::HREF,
        &ssm_ocf::cbor::map([("value", ciborium::Value::Bool(value))]),
        0x4242,
        ssm_coap::Token::new(&[7; 8]).unwrap(),
        true,
    );
    m.code = code;
    if code == ssm_coap::Code::GET || code == ssm_coap::Code::DELETE {
        m.payload.clear();
    }
    let mut out = vec![0u8; 512];
    let (n, _) = ctx.protect_request(&m.to_vec(), &mut out).unwrap();
    out.truncate(n);
    out
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

struct World {
    switch: Host,
    switch_dir: PathBuf,
    iface: String,
    port: u16,
    ipv6: bool,
    lights: Vec<Light>,
    value: bool,
    /// What each light must read back (a restarted light boots OFF: the
    /// switch state is not persisted, the replay floor is).
    expect: Vec<bool>,
    genuine: u64,
}

impl World {
    /// One genuine `ssm client update --multicast` (a new process each
    /// time: the sender restarts every time); waits until every light
    /// applied every copy. Returns how many datagrams it sent.
    fn genuine(&mut self, att: &Attacker, captured: &mut Vec<Captured>) -> usize {
        self.value = !self.value;
        self.expect = vec![self.value; self.lights.len()];
        let before: Vec<u64> = self.lights.iter().map(|l| l.events().applied).collect();
        let mut args = vec![
            "client",
            "--state-dir",
            self.switch_dir.to_str().unwrap(),
            "update",
            "--multicast",
            "--json",
            "--iface",
            &self.iface,
            "--value",
            if self.value { "on" } else { "off" },
        ];
        let port = self.port.to_string();
        args.extend(["--port", &port]);
        if !self.ipv6 {
            args.push("--no-ipv6");
        }
        let out = self.switch.run(&args);
        assert!(
            out.status.success(),
            "genuine update: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let sent: Value = serde_json::from_slice(&out.stdout).unwrap();
        let n = sent["sent"].as_array().unwrap().len();
        assert_eq!(n, if self.ipv6 { 2 } else { 1 }, "{sent}");
        self.genuine += n as u64;
        let deadline = Instant::now() + Duration::from_secs(10);
        for (l, b) in self.lights.iter().zip(before) {
            while l.events().applied < b + n as u64 {
                assert!(
                    Instant::now() < deadline,
                    "light {} did not apply a genuine command: {:?}",
                    l.ep,
                    l.events()
                );
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        // The capture holds exactly what the switch sent.
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut got = Vec::new();
        while got.len() < n {
            got.extend(att.capture());
            assert!(Instant::now() < deadline, "capture missed a datagram");
            std::thread::sleep(Duration::from_millis(2));
        }
        assert_eq!(got.len(), n, "only the switch multicasts");
        captured.extend(got);
        n
    }

    fn value_of(&self, ep: &str) -> Value {
        let out = self.switch.run(&["client", "get", ep, "--json"]);
        assert!(
            out.status.success(),
            "get {ep}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["code"], "2.05");
        v["body"]["value"].clone()
    }

    /// After an attack phase: nothing applied, every light dropped what
    /// was sent, state unchanged (read by unicast), nothing sent back.
    /// Waits (bounded) until every light reported `sent` more drops.
    fn wait_dropped(&self, before: &[Events], sent: u64, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let done = self
                .lights
                .iter()
                .zip(before)
                .all(|(l, b)| l.events().dropped() >= b.dropped() + sent);
            if done || Instant::now() > deadline {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn check_phase(&self, name: &str, att: &mut Attacker, before: &[Events], sent: u64) {
        self.wait_dropped(before, sent, Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(100));
        for ((l, b), want) in self.lights.iter().zip(before).zip(&self.expect) {
            let e = l.events();
            assert_eq!(
                (e.applied, e.unicast_applied, e.refused),
                (b.applied, b.unicast_applied, b.refused),
                "{name}: light {} accepted something: before {b:?}, after {e:?}",
                l.ep
            );
            let dropped = e.dropped() - b.dropped();
            // Every attack datagram reached the light and was dropped.
            assert!(
                dropped == sent,
                "{name}: light {} dropped {dropped} of {sent} datagrams ({:?})",
                l.ep,
                e.dropped
            );
            assert_eq!(
                self.value_of(&l.ep),
                Value::Bool(*want),
                "{name}: light {} changed state",
                l.ep
            );
        }
        let r = att.replies();
        assert!(
            r.is_empty(),
            "{name}: {} datagrams sent back to the attacker, first from {}: {:02x?}",
            r.len(),
            r[0].0,
            r[0].1
        );
        let mut by: BTreeMap<String, u64> = BTreeMap::new();
        for (l, b) in self.lights.iter().zip(before) {
            for (k, v) in &l.events().dropped {
                let n = v - b.dropped.get(k).copied().unwrap_or(0);
                if n > 0 {
                    *by.entry(k.clone()).or_default() += n;
                }
            }
        }
        eprintln!("attack: {name}: {sent} datagrams, 0 accepted, 0 replies; drops per reason over {} lights: {by:?}", self.lights.len());
    }

    fn snapshot(&self) -> Vec<Events> {
        self.lights.iter().map(|l| l.events()).collect()
    }
}

fn matrix(
    switch: Host,
    lights_on: Vec<Host>,
    iface: &str,
    port: u16,
    att_if: (Ipv4Addr, Option<u32>),
) {
    let ipv6 = att_if.1.is_some();
    let dir = std::env::temp_dir().join(format!("ssm-attack-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for (sub, switches) in [("group", "2"), ("foreign", "1")] {
        let out = Command::new(ssm())
            .args([
                "creds",
                "generate",
                "--lights",
                &LIGHTS.to_string(),
                "--switches",
                switches,
                "--out",
            ])
            .arg(dir.join(sub))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    let group = dir.join("group");
    let lights: Vec<Light> = lights_on
        .iter()
        .enumerate()
        .map(|(i, h)| Light::start(h, &group.join(format!("light-{i}")), iface, port))
        .collect();
    let mut att = Attacker::new(att_if.0, att_if.1, port);
    let mut w = World {
        switch,
        switch_dir: group.join("switch-0"),
        iface: iface.into(),
        port,
        ipv6,
        lights,
        value: false,
        expect: vec![false; LIGHTS],
        genuine: 0,
    };
    let mut rng = Rng(0x5eed_0000 ^ u64::from(std::process::id()) | 1);

    // Genuine traffic, captured off the wire: 100 datagrams.
    let mut cap = Vec::new();
    while cap.len() < 100 {
        w.genuine(&att, &mut cap);
    }
    assert!(att.replies().is_empty(), "a light answered an SSM UPDATE");
    eprintln!(
        "attack: captured {} genuine SSM datagrams ({} IPv6), every light applied each",
        cap.len(),
        cap.iter().filter(|c| c.v6).count()
    );

    let phase = |w: &mut World, att: &mut Attacker, name: &str, dgs: Vec<(Vec<u8>, bool)>| {
        let before = w.snapshot();
        let s0 = att.sent;
        for chunk in dgs.chunks(128) {
            for (d, v6) in chunk {
                att.send(d, *v6);
            }
            // Flow control: the lights report every drop, so wait until
            // they have caught up; a full socket buffer would lose attack
            // datagrams before any light saw them.
            w.wait_dropped(&before, att.sent - s0, Duration::from_secs(3));
            // Nobody but the attacker multicasts now (on lo this also
            // drains the attacker's own copies).
            let stray = att.capture();
            assert!(
                stray.is_empty(),
                "{name}: {} datagrams multicast by someone else",
                stray.len()
            );
        }
        w.check_phase(name, att, &before, att.sent - s0);
    };
    let all = |c: &[Captured]| -> Vec<(Vec<u8>, bool)> {
        c.iter().map(|c| (c.bytes.clone(), c.v6)).collect()
    };

    phase(&mut w, &mut att, "exact replay", all(&cap));
    let mut rev = all(&cap);
    rev.reverse();
    // Newest first, then an interleaving of old and new.
    let mut shuffled = all(&cap);
    for i in (1..shuffled.len()).rev() {
        let j = (rng.next() % (i as u64 + 1)) as usize;
        shuffled.swap(i, j);
    }
    rev.extend(shuffled);
    phase(&mut w, &mut att, "reordered replay", rev);
    if ipv6 {
        let cross = cap.iter().map(|c| (c.bytes.clone(), !c.v6)).collect();
        phase(
            &mut w,
            &mut att,
            "IPv4 copy replayed to IPv6 and back",
            cross,
        );
    } else {
        eprintln!("attack: NOT RUN without namespaces: IPv4 copy replayed to IPv6 (no IPv6 multicast on lo)");
    }
    // The switch restarts for every command: replay the old ones after a
    // new genuine command.
    let mut fresh = Vec::new();
    w.genuine(&att, &mut fresh);
    phase(
        &mut w,
        &mut att,
        "replay after the sender restarted",
        all(&cap),
    );
    cap.extend(fresh);

    let mut mods = Vec::new();
    for c in cap.iter().take(100) {
        for i in 0..c.bytes.len() {
            for mask in [0x01u8, 0x80, 0xff] {
                let mut d = c.bytes.clone();
                d[i] ^= mask;
                mods.push((d, c.v6));
            }
        }
    }
    let n = mods.len();
    phase(
        &mut w,
        &mut att,
        &format!("every single-byte change of 100 datagrams ({n})"),
        mods,
    );

    let switch0 = cred(&w.switch_dir, CredType::SsmClient);
    let foreign = cred(&dir.join("foreign/switch-0"), CredType::SsmClient);
    let fam = |i: usize| ipv6 && i % 2 == 1;
    let mut nm = Vec::new();
    for i in 0..20 {
        let piv = 1_000_000 + i as u64;
        nm.push((
            forge(
                &foreign.secret,
                foreign.sender_id.unwrap(),
                piv,
                ssm_coap::Code::POST,
                !w.value,
            ),
            fam(i),
        ));
        nm.push((
            forge(
                &foreign.secret,
                switch0.sender_id.unwrap(),
                piv,
                ssm_coap::Code::POST,
                !w.value,
            ),
            fam(i),
        ));
    }
    phase(
        &mut w,
        &mut att,
        "non-member key (own kid and a member's kid)",
        nm,
    );

    let mut rk = Vec::new();
    for i in 0..100 {
        let kid_len = 1 + (rng.next() % 7) as usize;
        let sid = ssm_oscore::Id::new(&rng.bytes(kid_len)).unwrap();
        let secret = rng.bytes(32);
        rk.push((
            forge(
                &secret,
                sid,
                rng.next() % 100_000,
                ssm_coap::Code::POST,
                !w.value,
            ),
            fam(i),
        ));
    }
    phase(&mut w, &mut att, "random kid", rk);

    let mut plain = Vec::new();
    for (i, code) in [
        ssm_coap::Code::POST,
        ssm_coap::Code::PUT,
        ssm_coap::Code::DELETE,
    ]
    .into_iter()
    .enumerate()
    {
        for ty in [
            ssm_coap::MessageType::NonConfirmable,
            ssm_coap::MessageType::Confirmable,
        ] {
            let mut m = ssm_ocf::ssm::update_request(
                ssm_ocf::switch::HREF,
                &ssm_ocf::cbor::map([("value", ciborium::Value::Bool(!w.value))]),
                0x1000 + i as u16,
                ssm_coap::Token::new(&[1, 2, 3]).unwrap(),
                true,
            );
            m.code = code;
            m.ty = ty;
            for v6 in [false, ipv6] {
                plain.push((m.to_vec(), v6));
            }
        }
    }
    phase(
        &mut w,
        &mut att,
        "unprotected multicast UPDATE/PUT/DELETE",
        plain,
    );

    // A real member (switch-1, with an ACE) using its key for GET, PUT and
    // DELETE by multicast; and switch-0's pair-wise key on multicast.
    let switch1 = cred(&group.join("switch-1"), CredType::SsmClient);
    let pairwise = cred(&w.switch_dir, CredType::PairwiseOscore);
    let mut member = Vec::new();
    let mut piv = 500_000;
    for code in [
        ssm_coap::Code::GET,
        ssm_coap::Code::PUT,
        ssm_coap::Code::DELETE,
        ssm_coap::Code::FETCH,
    ] {
        for v6 in [false, ipv6] {
            piv += 1;
            member.push((
                forge(
                    &switch1.secret,
                    switch1.sender_id.unwrap(),
                    piv,
                    code,
                    !w.value,
                ),
                v6,
            ));
        }
    }
    for v6 in [false, ipv6] {
        piv += 1;
        member.push((
            forge(
                &pairwise.secret,
                pairwise.sender_id.unwrap(),
                piv,
                ssm_coap::Code::POST,
                !w.value,
            ),
            v6,
        ));
    }
    phase(
        &mut w,
        &mut att,
        "OSCORE GET/PUT/DELETE/FETCH via multicast by a member; pair-wise key on multicast",
        member,
    );

    let mut sizes = Vec::new();
    let head = &cap[0].bytes;
    for len in [1200usize, 1500, 4000, 9000, 65_000] {
        let mut d = head.clone();
        d.extend(rng.bytes(len.saturating_sub(d.len())));
        sizes.push((d, false));
        if ipv6 && len <= 9000 {
            let mut d = head.clone();
            d.extend(rng.bytes(len.saturating_sub(d.len())));
            sizes.push((d, true));
        }
    }
    for c in cap.iter().take(10) {
        for l in 0..c.bytes.len() {
            sizes.push((c.bytes[..l].to_vec(), c.v6));
        }
    }
    phase(&mut w, &mut att, "oversized and truncated datagrams", sizes);

    // Receiver restart: light 0 killed (SIGKILL) and started on the same
    // state; every captured datagram replayed.
    w.lights[0].crash_and_restart(iface, port);
    let booted = w.value_of(&w.lights[0].ep);
    w.expect[0] = booted.as_bool().unwrap();
    phase(
        &mut w,
        &mut att,
        "replay after a light was killed and restarted",
        all(&cap),
    );

    // Still alive: a genuine command is applied by every light, the
    // restarted one included.
    let mut last = Vec::new();
    w.genuine(&att, &mut last);
    for l in &w.lights {
        assert_eq!(w.value_of(&l.ep), Value::Bool(w.value));
    }
    assert!(att.replies().is_empty());
    eprintln!(
        "attack: done: {} attack datagrams sent, {} genuine applied by every light",
        att.sent, w.genuine
    );
    drop(w);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn attacks_are_dropped_change_nothing_and_get_no_answer() {
    if !is_root() {
        eprintln!(
            "NOT ROOT: the attack matrix runs over IPv4 on lo instead of namespaces (no IPv6)"
        );
        let port = (20000 + (std::process::id() * 17 + 9) % 20000) as u16;
        matrix(
            Host(None),
            (0..LIGHTS).map(|_| Host(None)).collect(),
            "lo",
            port,
            (Ipv4Addr::LOCALHOST, None),
        );
        return;
    }
    let topo = Topology::up(&format!("ssma{}", std::process::id() % 100000), LIGHTS + 2);
    let ns = |i: usize| topo.nodes[i][2].clone();
    let attacker = topo.nodes[LIGHTS + 1].clone();
    let v4: Ipv4Addr = attacker[5].parse().unwrap();
    let ifindex: u32 = attacker[4].parse().unwrap();
    let switch = Host(Some(ns(0)));
    let lights = (1..=LIGHTS).map(|i| Host(Some(ns(i)))).collect();
    let attacker_ns = attacker[2].clone();
    // The attacker thread lives in its own namespace; the processes it
    // starts go to theirs through `ip netns exec`.
    let r = std::thread::spawn(move || {
        enter_netns(&attacker_ns);
        matrix(switch, lights, "ssm0", 5683, (v4, Some(ifindex)));
    })
    .join();
    drop(topo);
    if let Err(e) = r {
        std::panic::resume_unwind(e);
    }
}

//! The attack matrix: real lights (`ssm device` processes) and a real
//! switch in network namespaces joined by a bridge, and an attacker in a
//! namespace of its own that captures the switch's SSM datagrams off the
//! bridge and sends crafted ones to the lights' multicast groups:
//!
//! exact replay; reordered replay; the IPv4 copy replayed to the IPv6
//! group and back; replay after the sender restarted; every single-byte
//! change (3 masks per byte; all 255 other values with
//! `SSM_ATTACK_ALL_BYTES=1`) of 100 captured datagrams; messages under a
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
mod netkit;
use netkit::*;
use serde_json::Value;
use ssm_ocf::cred::CredType;
use ssm_testkit::{is_root, Topology};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

const LIGHTS: usize = 3;

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
    /// time: the sender restarts every time): one Partial IV, the same
    /// datagram to every group. Waits until every light applied it once and
    /// dropped the other copies as duplicate copies. Returns how many
    /// datagrams it sent.
    fn genuine(&mut self, att: &Attacker, captured: &mut Vec<Captured>) -> usize {
        self.value = !self.value;
        self.expect = vec![self.value; self.lights.len()];
        let before: Vec<Events> = self.snapshot();
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
        let out = self.switch.ssm(&args);
        assert!(
            out.status.success(),
            "genuine update: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let sent: Value = serde_json::from_slice(&out.stdout).unwrap();
        let copies = sent["sent"].as_array().unwrap();
        let n = copies.len();
        assert_eq!(n, if self.ipv6 { 2 } else { 1 }, "{sent}");
        assert!(
            copies.iter().all(|c| c["piv"] == copies[0]["piv"]),
            "one Partial IV per command: {sent}"
        );
        self.genuine += 1;
        let deadline = Instant::now() + Duration::from_secs(10);
        let dup = |e: &Events| e.dropped.get("DuplicateCopy").copied().unwrap_or(0);
        for (l, b) in self.lights.iter().zip(&before) {
            while l.events().applied < b.applied + 1 || dup(&l.events()) < dup(b) + n as u64 - 1 {
                assert!(
                    Instant::now() < deadline,
                    "light {} did not apply a genuine command once: {:?}",
                    l.ep,
                    l.events()
                );
                std::thread::sleep(Duration::from_millis(5));
            }
            let e = l.events();
            assert_eq!(e.applied, b.applied + 1, "applied once, not per copy");
            assert_eq!(e.dropped() - b.dropped(), n as u64 - 1, "{e:?}");
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
        let out = self.switch.ssm(&["client", "get", ep, "--json"]);
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

    // CI: three changes per byte (lowest bit, highest bit, all bits);
    // SSM_ATTACK_ALL_BYTES=1: all 255 other values of every byte.
    let masks: Vec<u8> = if std::env::var_os("SSM_ATTACK_ALL_BYTES").is_some() {
        (1..=255).collect()
    } else {
        vec![0x01, 0x80, 0xff]
    };
    let mut mods = Vec::new();
    for c in cap.iter().take(100) {
        for i in 0..c.bytes.len() {
            for &mask in &masks {
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
        let port = ssm_testkit::free_udp_port();
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

/// One plain NON `GET href` without a token: the smallest discovery
/// request (12 B for `/oic/res`, as in the review).
fn discovery_get(rng: &mut Rng, href: &str) -> Vec<u8> {
    // NON GET, no token (RFC 7252 §3), then one Uri-Path option per segment.
    let mid = (rng.next() as u16).to_be_bytes();
    let mut d = vec![0x50, 0x01, mid[0], mid[1]];
    let mut delta = 11u8;
    for seg in href.trim_start_matches('/').split('/') {
        assert!(seg.len() < 13);
        d.push((delta << 4) | seg.len() as u8);
        d.extend_from_slice(seg.as_bytes());
        delta = 0;
    }
    d
}

/// A UDP socket on `addr` whose multicast leaves by the interface holding
/// `ifaddr`, TTL 1, not looped back to itself.
fn spoofing_socket(addr: Ipv4Addr, ifaddr: Ipv4Addr) -> std::net::UdpSocket {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
    s.bind(&std::net::SocketAddr::from((addr, 0)).into())
        .unwrap();
    s.set_multicast_if_v4(&ifaddr).unwrap();
    s.set_multicast_ttl_v4(1).unwrap();
    s.set_multicast_loop_v4(false).unwrap();
    s.set_nonblocking(true).unwrap();
    s.into()
}

/// Everything that arrived on `s` now: (from, bytes).
fn drain(s: &std::net::UdpSocket) -> Vec<(std::net::SocketAddr, Vec<u8>)> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 70_000];
    while let Ok((n, from)) = s.recv_from(&mut buf) {
        out.push((from, buf[..n].to_vec()));
    }
    out
}

/// SECURITY-REVIEW F3 as the attack: `victims` (on-link addresses the
/// attacker holds, standing for spoofed sources) each send a burst of
/// multicast `GET /oic/res`; what comes back is counted per source and per
/// light. Then an off-link source tries the same. Then our own discovery
/// still gets the whole `/oic/res` of every light.
fn discovery_amplification(
    lights: &[Light],
    iface: &str,
    port: u16,
    light0: Ipv4Addr,
    ifaddr: Ipv4Addr,
    victims: &[Ipv4Addr],
    off_link: Option<Ipv4Addr>,
) {
    const BURST: usize = 50;
    let mut rng = Rng(0xd15c ^ u64::from(std::process::id()) | 1);
    let group = std::net::SocketAddr::from((Ipv4Addr::new(224, 0, 1, 187), port));
    let socks: Vec<_> = victims
        .iter()
        .map(|v| spoofing_socket(*v, ifaddr))
        .collect();
    let mut bytes_in = 0usize;
    let started = Instant::now();
    for _ in 0..BURST {
        for s in &socks {
            let d = discovery_get(&mut rng, "/oic/res");
            bytes_in += s.send_to(&d, group).unwrap();
        }
    }
    let burst_time = started.elapsed();
    // Leisure is at most 100 ms; wait well past it.
    std::thread::sleep(Duration::from_millis(1500));
    let window = started.elapsed().as_secs_f64();
    let mut bytes_out = 0usize;
    let mut largest = 0usize;
    let mut per_light: BTreeMap<std::net::SocketAddr, usize> = BTreeMap::new();
    for (v, s) in victims.iter().zip(&socks) {
        let mut per: BTreeMap<std::net::SocketAddr, usize> = BTreeMap::new();
        for (from, d) in drain(s) {
            bytes_out += d.len();
            largest = largest.max(d.len());
            *per.entry(from).or_default() += 1;
            *per_light.entry(from).or_default() += 1;
            let m = ssm_coap::Message::parse(&d).unwrap();
            assert!(
                m.payload.len() <= 512,
                "a multicast answer of {} B payload: not capped",
                m.payload.len()
            );
        }
        // The per-source bucket: 8 at once, then 2 per second.
        let bound = 8 + (2.0 * window).ceil() as usize;
        for (light, n) in &per {
            assert!(
                *n <= bound,
                "{n} answers from {light} to {v} for {BURST} requests: not rate-limited (bound {bound})"
            );
        }
    }
    assert_eq!(
        per_light.len(),
        lights.len(),
        "every light answered some: {per_light:?}"
    );
    let global = 64 + (20.0 * window).ceil() as usize;
    for (light, n) in &per_light {
        assert!(
            *n <= global,
            "{light} answered {n} in {window:.1} s (bound {global})"
        );
    }
    let factor = bytes_out as f64 / bytes_in as f64;
    eprintln!(
        "attack: discovery: {} sources x {BURST} multicast GET /oic/res in {burst_time:?} ({bytes_in} B) \
         -> {} answers ({bytes_out} B, largest {largest} B) from {} lights: x{factor:.2} overall, \
         x{:.0} per answered request",
        victims.len(),
        per_light.values().sum::<usize>(),
        lights.len(),
        largest as f64 / (bytes_in as f64 / (BURST * victims.len()) as f64),
    );
    // The Block2 cap bounds every answer (512 B payload + header and
    // options), the buckets their number.
    assert!(largest <= 600, "an answer of {largest} B");

    match off_link {
        Some(a) => {
            let s = spoofing_socket(a, ifaddr);
            for _ in 0..20 {
                s.send_to(&discovery_get(&mut rng, "/oic/res"), group).unwrap();
            }
            std::thread::sleep(Duration::from_millis(800));
            let got = drain(&s);
            assert!(
                got.is_empty(),
                "{} answers to the off-link source {a}, first from {}",
                got.len(),
                got[0].0
            );
            eprintln!("attack: discovery: 20 requests from the off-link source {a}: no answer");
        }
        None => eprintln!(
            "attack: discovery: NOT RUN without namespaces: off-link source (lo has only on-link sources)"
        ),
    }

    // Unicast: not rate-limited, but capped at 1024 B by Block2.
    let s = spoofing_socket(victims[0], ifaddr);
    let unicast_port: u16 = lights[0].ep.rsplit(':').next().unwrap().parse().unwrap();
    let req = discovery_get(&mut rng, "/oic/res");
    s.send_to(&req, (light0, unicast_port)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    let answer = loop {
        if let Some((_, d)) = drain(&s).into_iter().next() {
            break d;
        }
        assert!(Instant::now() < deadline, "no unicast answer from {light0}");
        std::thread::sleep(Duration::from_millis(10));
    };
    eprintln!(
        "attack: discovery: unicast GET /oic/res {} B -> {} B: x{:.0} (capped by Block2 at 1024 B payload, not rate-limited)",
        req.len(),
        answer.len(),
        answer.len() as f64 / req.len() as f64
    );
    assert!(ssm_coap::Message::parse(&answer).unwrap().payload.len() <= 1024);

    // Our own discovery still gets every light's whole /oic/res: the
    // first block by multicast, the rest by unicast.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let targets = ssm_runtime::client::MulticastTargets::open(&ssm_runtime::client::MulticastScope {
            interfaces: vec![iface.into()],
            ipv4: true,
            ipv6_scopes: vec![],
            port,
            hops: 1,
        })
        .unwrap();
        // Wait out the buckets of this host's own address.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let first = ssm_runtime::client::multicast_get(&targets, "/oic/res", None, Duration::from_millis(600))
            .await
            .unwrap();
        assert_eq!(first.len(), lights.len());
        for (from, m) in &first {
            let (num, more, size) = ssm_ocf::message::block2(m).expect("a Block2 first block");
            assert_eq!((num, more, size), (0, true, 512), "from {from}");
        }
        let found = ssm_runtime::client::discover(&targets, None, Duration::from_millis(600))
            .await
            .unwrap();
        assert_eq!(found.len(), lights.len(), "{found:?}");
        for (from, links) in &found {
            assert!(
                links.iter().any(|l| l.href == ssm_ocf::switch::HREF && l.accepts_ssm()),
                "{from}: the switch link is missing from the reassembled /oic/res: {links:?}"
            );
            assert!(links.iter().any(|l| l.href == "/oic/d"), "{from}: {links:?}");
        }
        eprintln!(
            "attack: discovery: our discovery reassembled the /oic/res of {} lights (first block by multicast, rest by unicast)",
            found.len()
        );
    });
}

#[test]
fn discovery_is_capped_rate_limited_and_on_link_only() {
    let dir = std::env::temp_dir().join(format!("ssm-attack-disc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = Command::new(ssm())
        .args([
            "creds",
            "generate",
            "--lights",
            "2",
            "--switches",
            "1",
            "--out",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    if !is_root() || std::env::var_os("SSM_ATTACK_DISCOVERY_ON_LO").is_some() {
        eprintln!("NOT ROOT: discovery amplification runs on lo (no off-link source)");
        let port = ssm_testkit::free_udp_port();
        let lights: Vec<Light> = (0..2)
            .map(|i| Light::start(&Host(None), &dir.join(format!("light-{i}")), "lo", port))
            .collect();
        let victims: Vec<Ipv4Addr> = (2..10).map(|i| Ipv4Addr::new(127, 0, 0, i)).collect();
        discovery_amplification(
            &lights,
            "lo",
            port,
            Ipv4Addr::LOCALHOST,
            Ipv4Addr::LOCALHOST,
            &victims,
            None,
        );
        drop(lights);
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    let topo = Topology::up(&format!("ssmd{}", std::process::id() % 100000), 3);
    let ns = |i: usize| topo.nodes[i][2].clone();
    let ip = |args: &[&str]| {
        let st = Command::new("ip").args(args).status().unwrap();
        assert!(st.success(), "ip {args:?}");
    };
    // The attacker (node 2) holds 8 more on-link addresses (its "spoofed"
    // sources, which must then receive the answers) and one off-link
    // address; the lights can route to the off-link one, so only the
    // on-link check keeps them from answering it.
    let attacker = ns(2);
    let light0: Ipv4Addr = topo.nodes[0][5].parse().unwrap();
    let own: Ipv4Addr = topo.nodes[2][5].parse().unwrap();
    let victims: Vec<Ipv4Addr> = (101..109).map(|i| Ipv4Addr::new(10, 158, 0, i)).collect();
    for v in &victims {
        ip(&[
            "-n",
            &attacker,
            "addr",
            "add",
            &format!("{v}/24"),
            "dev",
            "ssm0",
        ]);
    }
    let off = Ipv4Addr::new(10, 99, 0, 2);
    ip(&[
        "-n",
        &attacker,
        "addr",
        "add",
        &format!("{off}/24"),
        "dev",
        "ssm0",
    ]);
    for i in 0..2 {
        ip(&["-n", &ns(i), "route", "add", "10.99.0.0/24", "dev", "ssm0"]);
    }
    let lights: Vec<Light> = (0..2)
        .map(|i| {
            Light::start(
                &Host(Some(ns(i))),
                &dir.join(format!("light-{i}")),
                "ssm0",
                5683,
            )
        })
        .collect();
    let r = std::thread::spawn(move || {
        enter_netns(&attacker);
        discovery_amplification(&lights, "ssm0", 5683, light0, own, &victims, Some(off));
        drop(lights);
    })
    .join();
    drop(topo);
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(e) = r {
        std::panic::resume_unwind(e);
    }
}

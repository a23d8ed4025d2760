//! No nonce reuse, ever: a switch is killed with SIGKILL at random moments
//! while it multicasts SSM UPDATEs on `lo` (IPv4 224.0.1.187, a port of
//! this test's own), and every datagram on the wire is collected by a
//! listener joined to the group. Every (kid, Partial IV) pair must be
//! unique: a crash never makes the sender reuse a sequence number.
//!
//! Senders alternate between the real `ssm client update --multicast` (one
//! datagram per process) and a loop sender (this test binary re-run as
//! `nonce_child_sender`: the same `SsmSender` and sequence-number file,
//! sending every millisecond until killed, so kills land before, during
//! and after the K-ahead reservation and its fsync). Both share one state
//! dir, as a real switch's processes would.
//!
//! CI runs the 1,000 kills of the switch (`SSM_NONCE_RUNS`) and a
//! quarter as many of a light answering with Partial IVs of its own.
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 1, 187);

fn port() -> u16 {
    ssm_testkit::test_port(0)
}

/// xorshift64*: reproducible from the seed the test prints.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// (kid, Partial IV) of an SSM datagram, if it is one.
fn kid_piv(d: &[u8]) -> Option<(Vec<u8>, u64)> {
    let p = ssm_coap::Packet::new_checked(d).ok()?;
    let o = p.options().get(ssm_coap::OptionNumber::OSCORE)?;
    let o = ssm_oscore::OscoreOption::parse(o.value).ok()?;
    Some((o.kid?.as_bytes().to_vec(), o.partial_iv?.value()))
}

/// (kid, Partial IV) pairs as seen on the wire.
type Seen = Arc<Mutex<Vec<(Vec<u8>, u64)>>>;

/// A listener on lo joined to the group, collecting every (kid, PIV).
struct Wire {
    seen: Seen,
    other: Arc<Mutex<u64>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Wire {
    fn listen(port: u16) -> Wire {
        let s = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )
        .unwrap();
        s.set_reuse_address(true).unwrap();
        // Room for bursts while this thread is descheduled.
        let _ = s.set_recv_buffer_size(4 << 20);
        s.bind(&SocketAddrV4::new(GROUP, port).into()).unwrap();
        s.join_multicast_v4(&GROUP, &Ipv4Addr::LOCALHOST).unwrap();
        let sock: UdpSocket = s.into();
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let other = Arc::new(Mutex::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (se, ot, st) = (seen.clone(), other.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            loop {
                match sock.recv_from(&mut buf) {
                    Ok((n, _)) => match kid_piv(&buf[..n]) {
                        Some(kp) => se.lock().unwrap().push(kp),
                        None => *ot.lock().unwrap() += 1,
                    },
                    Err(_) if st.load(Ordering::SeqCst) => return,
                    Err(_) => {}
                }
            }
        });
        Wire {
            seen,
            other,
            stop,
            thread: Some(thread),
        }
    }

    fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// Stops after the socket has been quiet for a moment.
    fn finish(mut self) -> (Vec<(Vec<u8>, u64)>, u64) {
        let mut last = self.count();
        loop {
            std::thread::sleep(Duration::from_millis(200));
            let now = self.count();
            if now == last {
                break;
            }
            last = now;
        }
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap();
        let seen = std::mem::take(&mut *self.seen.lock().unwrap());
        let other = *self.other.lock().unwrap();
        (seen, other)
    }
}

#[test]
fn killed_senders_never_reuse_a_partial_iv() {
    let runs: u64 = std::env::var("SSM_NONCE_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let (seen, dups) = kill_loop(runs, false, 0);
    assert!(
        dups.is_empty(),
        "nonce reuse: {} (kid, PIV) pairs seen more than once, e.g. {:?}",
        dups.len(),
        &dups[..dups.len().min(5)]
    );
    // The test saw real traffic from many runs, not a handful.
    assert!(
        seen as u64 >= runs,
        "only {seen} datagrams from {runs} runs: the kills were too early to prove anything"
    );
}

/// The harness sees reuse when there is some: a sender that loses its
/// sequence-number file before every start (a switch without persistence)
/// is caught at once.
#[test]
fn a_sender_that_forgets_its_sequence_number_is_caught() {
    let (_, dups) = kill_loop(12, true, 1);
    assert!(!dups.is_empty(), "reuse went unnoticed");
}

type Dups = Vec<((Vec<u8>, u64), u32)>;

/// `runs` kills; with `forget`, the sequence-number files are deleted
/// before each start. Returns (SSM datagrams seen, duplicated pairs).
fn kill_loop(runs: u64, forget: bool, port_offset: u16) -> (usize, Dups) {
    let dir =
        std::env::temp_dir().join(format!("ssm-nonce-{}-{}", std::process::id(), port_offset));
    let _ = std::fs::remove_dir_all(&dir);
    let ssm = env!("CARGO_BIN_EXE_ssm");
    let out = Command::new(ssm)
        .args([
            "creds",
            "generate",
            "--lights",
            "1",
            "--switches",
            "1",
            "--out",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let state = dir.join("switch-0");
    let port = port() + port_offset;
    let wire = Wire::listen(port);
    let seed = std::env::var("SSM_NONCE_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("nonce_reuse: {runs} kills, seed {seed} (SSM_NONCE_SEED to replay)");
    let mut rng = Rng(seed);
    let started = Instant::now();
    let mut cli_runs = 0;
    for i in 0..runs {
        if forget {
            for f in std::fs::read_dir(&state).unwrap().flatten() {
                if f.file_name().to_string_lossy().starts_with("ssn-") {
                    std::fs::remove_file(f.path()).unwrap();
                }
            }
        }
        let (mut child, delay) = if i % 4 == 0 && !forget {
            cli_runs += 1;
            let c = Command::new(ssm)
                .arg("client")
                .arg("--state-dir")
                .arg(&state)
                .args(["update", "--multicast", "--value", "on", "--port"])
                .arg(port.to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            (c, rng.below(40))
        } else {
            let c = Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "nonce_child_sender", "--ignored", "--nocapture"])
                .env("SSM_NONCE_CHILD_DIR", &state)
                .env("SSM_NONCE_CHILD_PORT", port.to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            (c, if forget { 30 } else { rng.below(60) })
        };
        std::thread::sleep(Duration::from_micros(delay * 1000 + rng.below(1000)));
        // SIGKILL: no destructor, no flush, no clean exit.
        let _ = child.kill();
        let _ = child.wait();
    }
    let elapsed = started.elapsed();
    let (seen, other) = wire.finish();
    let mut by_pair: HashMap<(Vec<u8>, u64), u32> = HashMap::new();
    for kp in &seen {
        *by_pair.entry(kp.clone()).or_default() += 1;
    }
    let dups: Vec<_> = by_pair.iter().filter(|(_, &n)| n > 1).collect();
    let kids: std::collections::BTreeSet<_> = seen.iter().map(|(k, _)| k.clone()).collect();
    eprintln!(
        "nonce_reuse: {runs} kills ({cli_runs} ssm client, {} loop sender) in {:.1} s; \
         {} SSM datagrams on the wire, {} kid(s), highest PIV {}, {other} other datagrams, {} duplicate pairs",
        runs - cli_runs,
        elapsed.as_secs_f64(),
        seen.len(),
        kids.len(),
        seen.iter().map(|(_, p)| *p).max().unwrap_or(0),
        dups.len()
    );
    assert_eq!(kids.len(), 1, "one switch, one kid");
    let _ = std::fs::remove_dir_all(&dir);
    let dups = dups.into_iter().map(|(k, n)| (k.clone(), *n)).collect();
    (seen.len(), dups)
}

/// The loop sender the test above kills (only runs when it is started by
/// that test: it needs the state dir and port it is given).
#[test]
#[ignore = "a child process of killed_senders_never_reuse_a_partial_iv"]
fn nonce_child_sender() {
    let dir = std::path::PathBuf::from(
        std::env::var("SSM_NONCE_CHILD_DIR")
            .expect("started by killed_senders_never_reuse_a_partial_iv"),
    );
    let port: u16 = std::env::var("SSM_NONCE_CHILD_PORT")
        .unwrap()
        .parse()
        .unwrap();
    let creds = ssm_ocf::cred::CredResource::from_json(
        &std::fs::read_to_string(dir.join("creds.json")).unwrap(),
    )
    .unwrap();
    let cred = creds
        .oscore_creds()
        .unwrap()
        .into_iter()
        .find(|c| c.credtype == ssm_ocf::cred::CredType::SsmClient)
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store =
            ssm_runtime::store::FileSequenceStore::new(dir.join(format!("ssn-{}", cred.credid)));
        let mut sender = ssm_runtime::client::SsmSender::new(&cred, store).unwrap();
        let targets =
            ssm_runtime::client::MulticastTargets::open(&ssm_runtime::client::MulticastScope {
                interfaces: vec!["lo".into()],
                ipv4: true,
                ipv6_scopes: vec![],
                port,
                hops: 1,
            })
            .unwrap();
        let on = ssm_ocf::cbor::map([("value", ciborium::Value::Bool(true))]);
        // Bounded even if nobody kills it.
        for _ in 0..5000 {
            sender
                .send(&targets, ssm_ocf::switch::HREF, &on, true)
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
}

/// A light's own Partial IVs: after a restart its pair-wise responder
/// answers every request of unknown freshness with a 4.01 Echo challenge
/// protected under a Partial IV of its own (RFC 8613 App. B.1.2). The light
/// is killed at random moments while requests keep coming; every Partial IV
/// it ever put on a response is unique.
#[test]
fn killed_lights_never_reuse_a_response_partial_iv() {
    let runs: u64 = std::env::var("SSM_NONCE_RUNS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map(|n| n / 4)
        .unwrap_or(250);
    let dir = std::env::temp_dir().join(format!("ssm-nonce-light-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let ssm = env!("CARGO_BIN_EXE_ssm");
    let out = Command::new(ssm)
        .args([
            "creds",
            "generate",
            "--lights",
            "1",
            "--switches",
            "1",
            "--out",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let cred = ssm_ocf::cred::CredResource::from_json(
        &std::fs::read_to_string(dir.join("switch-0/creds.json")).unwrap(),
    )
    .unwrap()
    .oscore_creds()
    .unwrap()
    .into_iter()
    .find(|c| c.credtype == ssm_ocf::cred::CredType::PairwiseOscore)
    .unwrap();
    let mut ctx = ssm_ocf::ssm::pairwise_context(
        &cred,
        ssm_oscore::SequenceNumber::volatile(0),
        ssm_oscore::ReplayState::Window(ssm_oscore::ReplayWindow::new(32)),
    )
    .unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_nonblocking(true).unwrap();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    let mut rng = Rng(seed);
    let port = port() + 2;
    let mut seen: HashMap<u64, u32> = HashMap::new();
    let mut responses = 0u64;
    let mut buf = [0u8; 1500];
    let mut drain = |seen: &mut HashMap<u64, u32>, responses: &mut u64| {
        while let Ok((n, _)) = sock.recv_from(&mut buf) {
            let Ok(p) = ssm_coap::Packet::new_checked(&buf[..n]) else {
                continue;
            };
            let Some(o) = p.options().get(ssm_coap::OptionNumber::OSCORE) else {
                continue;
            };
            if let Some(piv) = ssm_oscore::OscoreOption::parse(o.value)
                .ok()
                .and_then(|o| o.partial_iv)
            {
                *seen.entry(piv.value()).or_default() += 1;
                *responses += 1;
            }
        }
    };
    let started = Instant::now();
    for i in 0..runs {
        let mut child = Command::new(ssm)
            .args([
                "device",
                "--json",
                "--port",
                &port.to_string(),
                "--state-dir",
            ])
            .arg(dir.join("light-0"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines =
            std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
        let ready: serde_json::Value =
            serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        std::thread::spawn(move || for _ in lines.by_ref() {});
        let to = std::net::SocketAddr::from((
            [127, 0, 0, 1],
            ready["unicast_port"].as_u64().unwrap() as u16,
        ));
        let until = Instant::now() + Duration::from_micros(rng.below(30_000));
        let mut k = 0u16;
        loop {
            let mut m = ssm_ocf::message::request(
                ssm_coap::MessageType::Confirmable,
                ssm_coap::Code::GET,
                ssm_ocf::switch::HREF,
                None,
            );
            m.message_id = (i as u16).wrapping_mul(97).wrapping_add(k);
            k = k.wrapping_add(1);
            let mut out = vec![0u8; 256];
            let (n, _) = ctx.sender.protect_request(&m.to_vec(), &mut out).unwrap();
            let _ = sock.send_to(&out[..n], to);
            std::thread::sleep(Duration::from_micros(700));
            drain(&mut seen, &mut responses);
            if Instant::now() >= until {
                break;
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        std::thread::sleep(Duration::from_millis(5));
        drain(&mut seen, &mut responses);
    }
    let dups: Vec<_> = seen.iter().filter(|(_, &n)| n > 1).collect();
    eprintln!(
        "nonce_reuse (light): {runs} kills in {:.1} s, {responses} responses with the light's own Partial IV, highest {}, {} reused",
        started.elapsed().as_secs_f64(),
        seen.keys().max().copied().unwrap_or(0),
        dups.len()
    );
    assert!(dups.is_empty(), "the light reused Partial IVs: {dups:?}");
    assert!(
        responses >= runs,
        "too few responses ({responses}) to prove anything"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

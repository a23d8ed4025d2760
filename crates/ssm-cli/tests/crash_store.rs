//! Crash-safe device stores: a light is killed with SIGKILL at random
//! moments while it writes its stores, then started again on the same
//! state dir. Every store must load, and nothing the light acknowledged
//! may be lost:
//!
//! * during Random PIN onboarding (svr.json written at every step): after
//!   the restart the device is either untouched-unowned (RFOTM, no
//!   credentials: it can be onboarded again) or completely owned (owner
//!   credential, out of RFOTM) — never half-owned; an onboarding the OBT
//!   reported done is never lost;
//! * during a stream of SSM updates (the replay floor written and fsynced
//!   before each is applied): the floor on disk is at or above every
//!   update the light reported applied, and a replay of the last one is
//!   rejected after the restart.
//!
//! CI: `SSM_CRASH_RUNS` (default 60) kills per part; the long run
//! is `SSM_CRASH_RUNS=1000`. The OBT's SQLite store is covered with the
//! OBT's offboarding work (issue 5).
use serde_json::Value;
use ssm_ocf::security::pstat::DeviceOnboardingState as Dos;
use ssm_ocf::security::SecurityState;
use ssm_testkit::TempDir;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn ssm() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ssm"))
}

fn runs() -> u64 {
    std::env::var("SSM_CRASH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60)
}

struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

fn seed() -> u64 {
    std::env::var("SSM_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        })
}

/// `ssm device --json` on lo, its JSON lines collected.
struct Dev {
    child: Child,
    lines: Arc<Mutex<Vec<Value>>>,
    ready: Value,
}

impl Dev {
    fn start(dir: &Path, port: u16) -> Dev {
        let mut child = ssm()
            .args([
                "device",
                "--json",
                "--port",
                &port.to_string(),
                "--state-dir",
            ])
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = out.next();
        let ready: Value = match first {
            Some(Ok(l)) => serde_json::from_str(&l).unwrap_or(Value::Null),
            _ => Value::Null,
        };
        if ready["event"] != "ready" {
            let mut err = String::new();
            let _ = std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err);
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the device did not start on {} after a crash: {err}",
                dir.display()
            );
        }
        let lines = Arc::new(Mutex::new(Vec::new()));
        let l = lines.clone();
        std::thread::spawn(move || {
            for line in out.map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str(&line) {
                    l.lock().unwrap().push(v);
                }
            }
        });
        let mut err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut err, &mut std::io::sink());
        });
        Dev {
            child,
            lines,
            ready,
        }
    }

    fn ep(&self) -> String {
        format!("coap://127.0.0.1:{}", self.ready["unicast_port"])
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn events(&self, kind: &str) -> Vec<Value> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|v| v["event"] == kind)
            .cloned()
            .collect()
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        self.kill();
    }
}

fn run_for(mut c: Command, limit: Duration) -> Option<Output> {
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return Some(child.wait_with_output().unwrap());
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn security(dir: &Path) -> SecurityState {
    let text = std::fs::read_to_string(dir.join("svr.json")).expect("svr.json exists");
    serde_json::from_str(&text).expect("svr.json loads")
}

#[test]
fn killed_during_onboarding_never_half_owned_never_loses_an_acknowledged_onboarding() {
    let runs = runs();
    let dir = TempDir::new("crash-otm");
    let port = ssm_testkit::free_udp_port();
    let seed = seed();
    eprintln!("crash_store onboarding: {runs} kills, seed {seed} (SSM_CRASH_SEED)");
    let mut rng = Rng(seed);
    // How long one onboarding takes here, to spread the kills over it.
    let (mut owned_after, mut unowned_after, mut acked, mut reonboarded) = (0, 0, 0, 0);
    let mut span_ms = 400;
    for i in 0..runs {
        let sd = dir.join(format!("dev-{i}"));
        let domain = dir.join(format!("domain-{i}.sqlite"));
        let d = domain.to_str().unwrap().to_string();
        let init = ssm()
            .args(["obt", "--domain", &d, "init"])
            .output()
            .unwrap();
        assert!(init.status.success());
        let mut dev = Dev::start(&sd, port);
        let pin = sd.join("pin");
        let mut obt = ssm();
        obt.args(["obt", "--domain", &d, "onboard", &dev.ep(), "--pin-file"])
            .arg(&pin)
            .args(["--name", "light"]);
        let started = Instant::now();
        let obt = obt
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The first runs measure; the rest kill anywhere in that span.
        let delay = if i < 2 { 60_000 } else { rng.below(span_ms) };
        let mut obt = Some(obt);
        let mut done = None;
        while started.elapsed() < Duration::from_millis(delay) {
            if let Some(st) = obt.as_mut().unwrap().try_wait().unwrap() {
                done = Some(st.success());
                break;
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        if i < 2 {
            span_ms = span_ms.max(started.elapsed().as_millis() as u64 * 12 / 10);
        }
        dev.kill();
        let mut obt = obt.take().unwrap();
        if done.is_none() {
            // The OBT gets a moment to finish what the device may already
            // have acknowledged, then goes too.
            let t = Instant::now();
            while t.elapsed() < Duration::from_millis(200) {
                if let Ok(Some(st)) = obt.try_wait() {
                    done = Some(st.success());
                    break;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            if done.is_none() {
                let _ = obt.kill();
            }
        }
        // Reaped in every case (an exited child returns its status at once).
        let _ = obt.wait();
        let acknowledged = done == Some(true);
        acked += u64::from(acknowledged);

        // Restart on the same state: it must load.
        let dev = Dev::start(&sd, port);
        // No svr.json: killed before its first write, an untouched device.
        let s = if sd.join("svr.json").exists() {
            security(&sd)
        } else {
            SecurityState::new(dev.ready["di"].as_str().unwrap().parse().unwrap())
        };
        let fresh = SecurityState::new(s.device_uuid());
        let unowned = s.pstat.dos == Dos::Rfotm
            && !s.doxm.owned
            && s.cred.creds.is_empty()
            && s.acl.aclist2.is_empty();
        let owned = s.doxm.owned
            && s.pstat.dos != Dos::Rfotm
            && s.cred
                .creds
                .iter()
                .any(|c| c.credtype == ssm_ocf::cred::CredType::PairwiseSymmetric);
        assert!(
            unowned || owned,
            "run {i}: half-owned after a crash (seed {seed}): {s:#?}"
        );
        if unowned {
            assert_eq!(
                (s.doxm.owned, &s.cred, &s.acl),
                (fresh.doxm.owned, &fresh.cred, &fresh.acl),
                "run {i}: unowned but not clean"
            );
            unowned_after += 1;
        } else {
            owned_after += 1;
        }
        assert!(
            !acknowledged || owned,
            "run {i}: the OBT reported the onboarding done, the device lost it (seed {seed})"
        );
        // An unowned device can be onboarded again (every 4th, for time).
        if unowned && i % 4 == 0 {
            let mut c = ssm();
            c.args(["obt", "--domain", &d, "onboard", &dev.ep(), "--pin-file"])
                .arg(&pin)
                .args(["--name", "again"]);
            let out = run_for(c, Duration::from_secs(20)).expect("re-onboarding timed out");
            assert!(
                out.status.success(),
                "run {i}: cannot onboard again after the crash: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            reonboarded += 1;
        }
        drop(dev);
        let _ = std::fs::remove_dir_all(&sd);
        let _ = std::fs::remove_file(&domain);
    }
    eprintln!(
        "crash_store onboarding: {runs} kills over a {span_ms} ms onboarding: {owned_after} owned, \
         {unowned_after} unowned after restart ({reonboarded} onboarded again), {acked} acknowledged by the OBT; 0 half-owned"
    );
    assert!(
        owned_after > 0 && unowned_after > 0,
        "kills did not spread over the onboarding"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn killed_during_ssm_updates_keeps_every_acknowledged_replay_floor() {
    let runs = runs();
    let dir = TempDir::new("crash-floors");
    let port = ssm_testkit::free_udp_port();
    let out = ssm()
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
    assert!(out.status.success());
    let light = dir.join("light-0");
    let switch = dir.join("switch-0");
    let cred = ssm_ocf::cred::CredResource::from_json(
        &std::fs::read_to_string(switch.join("creds.json")).unwrap(),
    )
    .unwrap()
    .oscore_creds()
    .unwrap()
    .into_iter()
    .find(|c| c.credtype == ssm_ocf::cred::CredType::SsmClient)
    .unwrap();
    let kid = hex::encode(cred.sender_id.unwrap().as_bytes());
    let seed = seed();
    eprintln!("crash_store floors: {runs} kills, seed {seed} (SSM_CRASH_SEED)");
    let mut rng = Rng(seed);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut sender = rt.block_on(async {
        ssm_runtime::client::SsmSender::new(
            &cred,
            ssm_runtime::store::FileSequenceStore::new(switch.join(format!("ssn-{}", cred.credid))),
        )
        .unwrap()
    });
    // Pinned to lo, TTL 1 (never the default multicast route).
    let raw = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
    raw.set_multicast_if_v4(&std::net::Ipv4Addr::LOCALHOST)
        .unwrap();
    raw.set_multicast_ttl_v4(1).unwrap();
    raw.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    let raw: std::net::UdpSocket = raw.into();
    let group = std::net::SocketAddr::from(([224, 0, 1, 187], port));
    let (mut applied_total, mut highest) = (0u64, 0u64);
    for i in 0..runs {
        let mut dev = Dev::start(&light, port);
        // Keep sending until a random moment, then SIGKILL.
        let until = Instant::now() + Duration::from_millis(5 + rng.below(60));
        let mut by_piv = std::collections::HashMap::new();
        let mut value = false;
        while Instant::now() < until {
            value = !value;
            let req = ssm_ocf::ssm::update_request(
                ssm_ocf::switch::HREF,
                &ssm_ocf::cbor::map([("value", ciborium::Value::Bool(value))]),
                i as u16,
                ssm_coap::Token::default(),
                true,
            );
            let (bytes, piv) = sender.protect(&req).unwrap();
            raw.send_to(&bytes, group).unwrap();
            by_piv.insert(piv, bytes);
            std::thread::sleep(Duration::from_micros(1500));
        }
        dev.kill();
        let acked: Vec<u64> = dev
            .events("ssm_applied")
            .iter()
            .filter_map(|e| e["piv"].as_u64())
            .collect();
        applied_total += acked.len() as u64;
        let last = acked.iter().copied().max();

        // Restart: svr.json and the floors load, nothing acknowledged lost.
        let dev = Dev::start(&light, port);
        let floors: Value = serde_json::from_str(
            &std::fs::read_to_string(light.join("ssm-replay-floors.json")).unwrap_or("{}".into()),
        )
        .expect("the replay floors load");
        let floor = floors[&kid].as_u64().unwrap_or(0);
        if let Some(last) = last {
            assert!(
                floor >= last,
                "run {i}: floor {floor} below the acknowledged PIV {last} (seed {seed})"
            );
            highest = highest.max(last);
            // The last acknowledged update, replayed, is rejected.
            raw.send_to(&by_piv[&last], group).unwrap();
            let t = Instant::now();
            while dev.events("dropped").is_empty() && t.elapsed() < Duration::from_secs(5) {
                std::thread::sleep(Duration::from_millis(2));
            }
            assert!(
                dev.events("ssm_applied").is_empty(),
                "run {i}: a replay was applied after the restart"
            );
            assert_eq!(
                dev.events("dropped")
                    .first()
                    .map(|e| e["reason"].as_str().unwrap_or("").to_string()),
                Some("Replay".to_string()),
                "run {i}: the replay was not dropped as a replay: {:?}",
                dev.lines.lock().unwrap()
            );
        }
        drop(dev);
        assert!(
            security(&light).doxm.owned,
            "run {i}: svr.json lost its owner"
        );
    }
    eprintln!(
        "crash_store floors: {runs} kills, {applied_total} updates acknowledged, highest PIV {highest}; \
         every floor at or above the last acknowledged update, every replay rejected"
    );
    assert!(
        applied_total > runs,
        "too few updates got through to prove anything"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

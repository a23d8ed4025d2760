//! The device side of the commissioning engineer's day (issue 17), with
//! real `ssm device` processes on `lo` (unicast, and IPv4 multicast
//! 224.0.1.187 on `lo` only) and the OBT's transport in this process:
//!
//! * identity: the role and name in `/oic/d`, the owner's rename through
//!   `/oic/con` (persisted), the current UUID in the banner after an
//!   onboarding and a restart;
//! * `ssm device reset`: refused while the device runs, then a new UUID,
//!   unowned, secrets gone, a new PIN at the next start;
//! * the light's state across restarts (`--power-on`), `--unicast-port`;
//! * Random PIN brute-force protection: each failed attempt logged (never
//!   the PIN), three in a row start a back-off (PIN sessions refused, the
//!   PIN void), then a new PIN that onboards.
use serde_json::Value;
use ssm_coap::{Code, MessageType};
use ssm_ocf::{cbor, message};
use ssm_runtime::obt_transport::{self, zero_free_uuid};
use ssm_testkit::TempDir;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

fn ssm() -> &'static str {
    env!("CARGO_BIN_EXE_ssm")
}

/// Ports of this test process: free, below the ephemeral range
/// (`ssm_testkit::test_port`), the same for a slot each time.
fn ports(slot: u16) -> (u16, u16) {
    let slot = u32::from(slot);
    (
        ssm_testkit::test_port(slot * 2),
        ssm_testkit::test_port(slot * 2 + 1),
    )
}

/// A device process: its ready line, its further JSON events, its stderr
/// (logs) in a file.
struct Dev {
    child: Child,
    ready: Value,
    events: Receiver<String>,
    log: std::path::PathBuf,
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Dev {
    fn start(dir: &Path, mport: u16, uport: u16, extra: &[&str]) -> Dev {
        let log = dir.with_extension(format!("log{}", rand_suffix()));
        let mut c = Command::new(ssm());
        c.args(["device", "--json", "--iface", "lo", "--port"])
            .arg(mport.to_string())
            .arg("--unicast-port")
            .arg(uport.to_string())
            .arg("--state-dir")
            .arg(dir)
            .args(extra)
            .stderr(std::fs::File::create(&log).unwrap());
        let r = ssm_testkit::spawn_ready(c, Duration::from_secs(30));
        Dev {
            child: r.child,
            ready: r.ready,
            events: r.lines,
            log,
        }
    }

    /// The next event named `name` within `limit`.
    fn next(&self, name: &str, limit: Duration) -> Option<Value> {
        let deadline = Instant::now() + limit;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.events.recv_timeout(left) {
                Ok(l) => {
                    let v: Value = serde_json::from_str(&l).unwrap_or(Value::Null);
                    if v["event"] == name {
                        return Some(v);
                    }
                }
                Err(_) => return None,
            }
        }
        None
    }

    fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn rand_suffix() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    t.subsec_nanos()
}

fn peer(uport: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], uport))
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A plain request to the device; (code, payload as JSON).
async fn plain(uport: u16, code: Code, href: &str, body: Option<ciborium::Value>) -> (Code, Value) {
    let p = peer(uport);
    let socket = ssm_runtime::client::socket_for(p).await.unwrap();
    let (href, query) = match href.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (href, None),
    };
    let mut m = message::request(MessageType::Confirmable, code, href, query);
    if let Some(b) = body {
        message::set_payload(&mut m, &b);
    }
    let r = ssm_runtime::client::request(&socket, p, m, Duration::from_millis(300), 4)
        .await
        .unwrap();
    let v = message::payload(&r)
        .map(|v| cbor::to_json(&v))
        .unwrap_or(Value::Null);
    (r.code, v)
}

fn ssm_run(args: &[&str]) -> std::process::Output {
    let c = {
        let mut c = Command::new(ssm());
        c.args(args).stdin(Stdio::null());
        c
    };
    ssm_testkit::run_with_timeout(c, Duration::from_secs(60))
}

#[test]
fn identity_rename_current_uuid_and_factory_reset() {
    let tmp = TempDir::new("daydev-identity");
    let dir = tmp.path().join("hall-1");
    let (mport, uport) = ports(0);
    let rt = rt();

    let dev = Dev::start(&dir, mport, uport, &["--name", "hall-1"]);
    let first_uuid = dev.ready["uuid"].as_str().unwrap().to_string();
    assert_eq!(dev.ready["role"], "light", "{}", dev.ready);
    assert_eq!(dev.ready["name"], "hall-1");
    let eps = dev.ready["endpoints"].to_string();
    assert!(
        eps.contains(&format!("127.0.0.1:{uport}")),
        "--unicast-port: {eps}"
    );
    let pin = dev.next("pin", Duration::from_secs(5)).unwrap()["pin"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, d) = rt.block_on(plain(uport, Code::GET, "/oic/d", None));
    assert_eq!(code, Code::CONTENT);
    assert_eq!(
        d["rt"],
        serde_json::json!(["oic.wk.d", "oic.d.light"]),
        "{d}"
    );
    assert_eq!(d["n"], "hall-1");
    let (_, res) = rt.block_on(plain(uport, Code::GET, "/oic/res?rt=oic.wk.con", None));
    assert_eq!(res[0]["href"], "/oic/con", "{res}");

    // Onboarded by an OBT: a new UUID, as the device says.
    let obt = zero_free_uuid();
    let new_uuid = zero_free_uuid();
    let done = rt
        .block_on(obt_transport::onboard(
            peer(uport),
            &pin,
            obt,
            new_uuid,
            (zero_free_uuid(), "daydev"),
            &mut |_, _| {},
        ))
        .unwrap();
    let owned = dev.next("owned", Duration::from_secs(5)).unwrap();
    assert_eq!(owned["uuid"], new_uuid.to_string());

    // Nobody but the owner renames it.
    let rename_body = cbor::map([("n", ciborium::Value::Text("thief".into()))]);
    let (code, _) = rt.block_on(plain(uport, Code::POST, "/oic/con", Some(rename_body)));
    assert_eq!(code, Code::UNAUTHORIZED);
    let stranger = rt.block_on(obt_transport::provision(
        peer(uport),
        zero_free_uuid(),
        &[7; 16],
        ssm_ocf::onboarding::rename("thief"),
        &mut |_, _| {},
    ));
    assert!(stranger.is_err(), "no owner session without the owner PSK");
    // The owner does, over its owner session.
    rt.block_on(obt_transport::provision(
        peer(uport),
        obt,
        &done.owner_psk,
        ssm_ocf::onboarding::rename("hall east 1"),
        &mut |_, _| {},
    ))
    .unwrap();
    let renamed = dev.next("renamed", Duration::from_secs(5)).unwrap();
    assert_eq!(renamed["name"], "hall east 1");
    let (_, d) = rt.block_on(plain(uport, Code::GET, "/oic/d", None));
    assert_eq!(d["n"], "hall east 1");
    assert_eq!(d["di"], new_uuid.to_string());
    let (_, con) = rt.block_on(plain(uport, Code::GET, "/oic/con", None));
    assert_eq!(con["n"], "hall east 1");
    let id: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("device.json")).unwrap()).unwrap();
    assert_eq!(id["name"], "hall east 1", "persisted");
    dev.stop();

    // After a restart: the current UUID and the new name, owned (no PIN).
    let dev = Dev::start(&dir, mport, uport, &[]);
    assert_eq!(dev.ready["uuid"], new_uuid.to_string(), "{}", dev.ready);
    assert_ne!(dev.ready["uuid"], first_uuid.as_str());
    assert_eq!(dev.ready["name"], "hall east 1");
    assert!(dev.next("pin", Duration::from_millis(300)).is_none());

    // A factory reset is refused while the device runs ...
    let out = ssm_run(&["device", "reset", "--state-dir", dir.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("in use") && err.contains(&dev.child.id().to_string()),
        "{err}"
    );
    assert!(dir.join("svr.json").exists());
    dev.stop();
    // ... and done once it is stopped: a new UUID, printed.
    let out = ssm_run(&[
        "device",
        "reset",
        "--json",
        "--state-dir",
        dir.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reset: Value = serde_json::from_slice(&out.stdout).unwrap();
    let reset_uuid = reset["uuid"].as_str().unwrap().to_string();
    assert_ne!(reset_uuid, new_uuid.to_string());
    assert_ne!(reset_uuid, first_uuid);
    assert_eq!(reset["name"], "hall east 1", "the name is kept");
    let svr = std::fs::read_to_string(dir.join("svr.json")).unwrap();
    assert!(
        !svr.contains(&obt.to_string()),
        "no trace of the owner: {svr}"
    );
    assert!(svr.contains("\"owned\": false"), "{svr}");
    let left: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for gone in [
        "ssm-replay-floors.json",
        "pin",
        "creds.json",
        "resources.json",
    ] {
        assert!(!left.contains(&gone.to_string()), "{gone} left: {left:?}");
    }
    assert!(!left.iter().any(|f| f.starts_with("ssn-")), "{left:?}");
    // The next start shows the new UUID and a new PIN; the old owner is
    // not the owner any more.
    let dev = Dev::start(&dir, mport, uport, &[]);
    assert_eq!(dev.ready["uuid"], reset_uuid.as_str());
    let new_pin = dev.next("pin", Duration::from_secs(5)).unwrap();
    assert_ne!(new_pin["pin"], pin.as_str());
    assert_eq!(new_pin["uuid"], reset_uuid.as_str(), "the sheet needs both");
    let old_owner = rt.block_on(obt_transport::owns(peer(uport), obt, &done.owner_psk));
    assert!(!old_owner.unwrap(), "the old owner PSK opens nothing");
    // After a hard reset by its (new) owner the device shows its current
    // UUID with the new PIN too.
    let (obt2, uuid2) = (zero_free_uuid(), zero_free_uuid());
    let done2 = rt
        .block_on(obt_transport::onboard(
            peer(uport),
            new_pin["pin"].as_str().unwrap(),
            obt2,
            uuid2,
            (zero_free_uuid(), "daydev"),
            &mut |_, _| {},
        ))
        .unwrap();
    rt.block_on(obt_transport::hard_reset(
        peer(uport),
        obt2,
        &done2.owner_psk,
    ))
    .unwrap();
    let after_hard_reset = dev.next("pin", Duration::from_secs(5)).unwrap();
    assert_eq!(after_hard_reset["uuid"], uuid2.to_string());
    let log = dev.stop();
    assert!(!log.contains(&pin), "the PIN is never logged");
}

#[test]
fn light_state_survives_restarts_per_power_on() {
    let tmp = TempDir::new("daydev-state");
    let out = ssm_run(&[
        "creds",
        "generate",
        "--out",
        tmp.path().to_str().unwrap(),
        "--lights",
        "1",
        "--switches",
        "1",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let light = tmp.path().join("light-0");
    let switch = tmp.path().join("switch-0");
    let (mport, uport) = ports(1);
    let state = |d: &Dev| d.ready["state"]["value"].clone();

    let dev = Dev::start(&light, mport, uport, &[]);
    assert_eq!(state(&dev), false, "never switched: off");
    // ON by one SSM datagram (the multicast path persists it too).
    let mp = mport.to_string();
    let out = ssm_run(&[
        "client",
        "--state-dir",
        switch.to_str().unwrap(),
        "update",
        "--multicast",
        "--iface",
        "lo",
        "--port",
        &mp,
        "--value",
        "on",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dev.next("ssm_applied", Duration::from_secs(5)).is_some());
    let file = light.join("resources.json");
    let persisted = || {
        std::fs::read_to_string(&file)
            .ok()
            .and_then(|s| serde_json::from_str::<Value>(&s).ok())
            .map(|v| v["/BinarySwitchResURI"]["value"].clone())
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while persisted() != Some(Value::Bool(true)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(persisted(), Some(Value::Bool(true)));
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    // SIGKILL, not a clean stop: the state was on disk already.
    dev.stop();
    let dev = Dev::start(&light, mport, uport, &[]);
    assert_eq!(state(&dev), true, "power-on last (the default): on again");
    // Unicast OFF (pair-wise OSCORE), then restarted: off.
    let ep = format!("coap://127.0.0.1:{uport}");
    let out = ssm_run(&[
        "client",
        "--state-dir",
        switch.to_str().unwrap(),
        "update",
        &ep,
        "--value",
        "off",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dev
        .next("unicast_applied", Duration::from_secs(5))
        .is_some());
    let deadline = Instant::now() + Duration::from_secs(5);
    while persisted() != Some(Value::Bool(false)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    dev.stop();
    let dev = Dev::start(&light, mport, uport, &["--power-on", "last"]);
    assert_eq!(state(&dev), false);
    dev.stop();
    let dev = Dev::start(&light, mport, uport, &["--power-on", "on"]);
    assert_eq!(state(&dev), true, "power-on on");
    dev.stop();
    let dev = Dev::start(&light, mport, uport, &["--power-on", "off"]);
    assert_eq!(state(&dev), false, "power-on off");
    dev.stop();
    // What it started in is its last state.
    let dev = Dev::start(&light, mport, uport, &[]);
    assert_eq!(state(&dev), false);
    dev.stop();
    let bad = ssm_run(&["device", "--state-dir", "x", "--power-on", "dim"]);
    assert_eq!(bad.status.code(), Some(2));

    // A wall switch says so: its role in the banner and in /oic/d, and a
    // switch's default name; it keeps no light state.
    let sw = Dev::start(
        &tmp.path().join("wall"),
        mport,
        uport,
        &["--role", "switch"],
    );
    assert_eq!(sw.ready["role"], "switch");
    assert_eq!(sw.ready["name"], "switch");
    assert!(sw.ready["state"].is_null(), "{}", sw.ready);
    let (_, d) = rt().block_on(plain(uport, Code::GET, "/oic/d", None));
    assert_eq!(
        d["rt"],
        serde_json::json!(["oic.wk.d", "oic.d.switch"]),
        "{d}"
    );
    sw.stop();
    assert!(!tmp.path().join("wall/resources.json").exists());
}

#[test]
fn wrong_pins_are_logged_and_back_off_then_a_new_pin() {
    let tmp = TempDir::new("daydev-pin");
    let dir = tmp.path().join("light");
    let (mport, uport) = ports(2);
    let rt = rt();
    let dev = Dev::start(&dir, mport, uport, &[]);
    let pin = dev.next("pin", Duration::from_secs(5)).unwrap()["pin"]
        .as_str()
        .unwrap()
        .to_string();
    let wrong = if pin == "00000000" {
        "11111111"
    } else {
        "00000000"
    };
    let onboard = |pin: String| async move {
        obt_transport::onboard(
            peer(uport),
            &pin,
            zero_free_uuid(),
            zero_free_uuid(),
            (zero_free_uuid(), "daydev"),
            &mut |_, _| {},
        )
        .await
    };
    let started = Instant::now();
    // Three wrong guesses at once (each is one DTLS handshake).
    let guesses: Vec<_> = (0..3)
        .map(|_| rt.spawn(onboard(wrong.to_string())))
        .collect();
    let mut in_a_row = Vec::new();
    for _ in 0..3 {
        let f = dev
            .next("pin_failed", Duration::from_secs(10))
            .expect("each failed attempt is reported");
        in_a_row.push(f["in_a_row"].as_u64().unwrap());
    }
    in_a_row.sort();
    assert_eq!(in_a_row, [1, 2, 3]);
    let backoff = dev.next("pin_backoff", Duration::from_secs(5)).unwrap();
    assert_eq!(backoff["backoff_ms"], 2000.0, "{backoff}");
    assert!(
        !dir.join("pin").exists(),
        "the PIN is void during the back-off"
    );
    // During the back-off even the PIN that was right is refused.
    let during = rt.spawn(onboard(pin.clone()));
    let new_pin = dev
        .next("pin", Duration::from_secs(10))
        .expect("a new PIN after the back-off");
    let new_pin = new_pin["pin"].as_str().unwrap().to_string();
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(2), "{waited:?}");
    assert_ne!(new_pin, pin);
    for g in guesses {
        assert!(rt.block_on(g).unwrap().is_err());
    }
    assert!(
        rt.block_on(during).unwrap().is_err(),
        "refused during the back-off"
    );
    // The new PIN onboards the device (and the count starts again).
    let done = rt.block_on(onboard(new_pin.clone()));
    assert!(done.is_ok(), "{done:?}");
    assert!(dev.next("owned", Duration::from_secs(5)).is_some());
    let log = dev.stop();
    let failed_lines = log
        .lines()
        .filter(|l| l.contains("Random PIN attempt failed"))
        .count();
    // The attempt begun during the back-off retransmits its ClientHello:
    // once the back-off is over it meets the new PIN and fails on it too.
    assert!(
        (3..=4).contains(&failed_lines),
        "one log line per failed attempt:\n{log}"
    );
    assert!(
        log.contains("no PIN session until the back-off ends"),
        "{log}"
    );
    // Logs: no colour into a file, RFC 3339 UTC timestamps, the device's
    // name.
    assert!(!log.contains('\x1b'), "ANSI escapes in a file:\n{log}");
    for l in log
        .lines()
        .filter(|l| l.contains("Random PIN attempt failed"))
    {
        let ts = l.split_whitespace().next().unwrap();
        assert!(
            ts.len() >= 20 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T',
            "not RFC 3339: {l}"
        );
        assert!(l.contains("device{name=light}"), "no device name: {l}");
    }
    for p in [&pin, &new_pin] {
        assert!(!log.contains(p.as_str()), "a PIN in the log:\n{log}");
    }
    println!(
        "3 wrong PINs -> back-off 2 s -> new PIN after {:?}; onboarded with it",
        waited
    );
}

//! Secrets hygiene: no master secret, group secret, PSK (PIN-derived or
//! owner) or derived OSCORE key ever appears in a log line (trace level),
//! in `--json` output or in the `Debug` form of a key-holding type; and the
//! Random PIN never appears in a log line at any level (it is shown only as
//! the device's `pin` event and in its 0600 `pin` file).
//!
//! The secrets are learnt from the state the processes leave behind
//! (`svr.json`, `creds.json`, the PIN file), then searched for as lowercase
//! and uppercase hex, base64 (standard, URL-safe, padded or not), the byte
//! lists `{:?}` and `{:x?}` print, and the raw bytes; each as the whole
//! value and as every 8-byte window (a partial print is a leak too).
use base64::Engine;
use serde_json::Value;
use ssm_ocf::cred::{CredResource, CredType};
use ssm_oscore::kdf::Prk;
use ssm_testkit::TempDir;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Every printable form of `secret` (and of its 8-byte windows).
fn needles(secret: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut forms = |b: &[u8], aligned: bool| {
        out.push(b.to_vec());
        out.push(hex::encode(b).into_bytes());
        out.push(hex::encode_upper(b).into_bytes());
        let dec: Vec<String> = b.iter().map(|x| x.to_string()).collect();
        out.push(dec.join(", ").into_bytes());
        let hx: Vec<String> = b.iter().map(|x| format!("{x:x}")).collect();
        out.push(hx.join(", ").into_bytes());
        let hx2: Vec<String> = b.iter().map(|x| format!("{x:02x}")).collect();
        out.push(hx2.join(", ").into_bytes());
        out.push(hx2.join(":").into_bytes());
        out.push(hx2.join(" ").into_bytes());
        if aligned {
            use base64::engine::general_purpose::*;
            for e in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
                out.push(e.encode(b).into_bytes());
            }
        }
    };
    forms(secret, true);
    for (i, w) in secret.windows(8).enumerate() {
        // base64 of a window is only a substring of the whole encoding at
        // 3-byte alignment; other offsets are covered by the aligned ones.
        forms(w, i % 3 == 0);
    }
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Named secrets; `assert_absent` fails with the first one found.
#[derive(Default)]
struct Secrets(Vec<(String, Vec<u8>)>);

impl Secrets {
    fn add(&mut self, what: impl Into<String>, bytes: &[u8]) {
        assert!(bytes.len() >= 8, "secrets are at least 8 bytes");
        self.0.push((what.into(), bytes.to_vec()));
    }

    /// The master secrets of a cred resource and the OSCORE keys they
    /// derive (Sender/Recipient Keys of every Sender and Recipient ID).
    fn add_creds(&mut self, origin: &str, creds: &CredResource) -> Vec<CredType> {
        let mut types = Vec::new();
        for c in &creds.creds {
            types.push(c.cred_type());
            let Some(p) = &c.privatedata else { continue };
            let secret = p.bytes().expect("privatedata decodes");
            self.add(
                format!(
                    "{origin}: credid {} (credtype {}) secret",
                    c.credid, c.credtype
                ),
                &secret,
            );
        }
        for o in creds.oscore_creds().expect("valid OSCORE creds") {
            let prk = Prk::extract(&o.secret, None).unwrap();
            for id in [o.sender_id, o.recipient_id].into_iter().flatten() {
                self.add(
                    format!("{origin}: credid {} key of kid {:?}", o.credid, id),
                    &*prk.key(&id, None),
                );
            }
        }
        types
    }

    fn assert_absent(&self, where_: &str, hay: &[u8]) {
        for (what, s) in &self.0 {
            for n in needles(s) {
                if let Some(at) = find(hay, &n) {
                    let from = at.saturating_sub(120);
                    let to = (at + n.len() + 40).min(hay.len());
                    panic!(
                        "{what} leaks in {where_} as {:?}:\n...{}...",
                        String::from_utf8_lossy(&n),
                        String::from_utf8_lossy(&hay[from..to])
                    );
                }
            }
        }
    }
}

/// Fails if `pin` (8 digits) appears in `hay` as a number of its own (not
/// inside a longer run of digits, which would be a coincidence).
fn assert_no_pin(where_: &str, hay: &[u8], pin: &str) {
    let p = pin.as_bytes();
    let mut from = 0;
    while let Some(at) = find(&hay[from..], p).map(|i| i + from) {
        let before = at.checked_sub(1).map(|i| hay[i]);
        let after = hay.get(at + p.len()).copied();
        if !before.is_some_and(|b| b.is_ascii_digit()) && !after.is_some_and(|b| b.is_ascii_digit())
        {
            let a = at.saturating_sub(120);
            let b = (at + p.len() + 40).min(hay.len());
            panic!(
                "the Random PIN leaks in {where_}:\n...{}...",
                String::from_utf8_lossy(&hay[a..b])
            );
        }
        from = at + 1;
    }
}

fn ssm() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ssm"));
    c.env("SSM_LOG", "trace");
    c
}

/// Runs `ssm -vv ARGS` at trace level; returns stdout + stderr.
fn run(args: &[&str]) -> (Output, Vec<u8>) {
    let out = ssm().arg("-vv").args(args).output().expect("run ssm");
    let mut all = out.stdout.clone();
    all.extend_from_slice(&out.stderr);
    (out, all)
}

fn port(offset: u32) -> u16 {
    ssm_testkit::test_port(offset)
}

fn creds_of(dir: &Path) -> CredResource {
    if let Ok(s) = std::fs::read_to_string(dir.join("svr.json")) {
        let v: Value = serde_json::from_str(&s).unwrap();
        return serde_json::from_value(v["cred"].clone()).unwrap();
    }
    CredResource::from_json(&std::fs::read_to_string(dir.join("creds.json")).unwrap()).unwrap()
}

#[test]
fn demo_logs_and_json_carry_no_key() {
    for json in [false, true] {
        let dir = TempDir::new(if json {
            "secrets-demo-json"
        } else {
            "secrets-demo"
        });
        let p = port(u32::from(json)).to_string();
        let mut args = vec![
            "demo",
            "--lights",
            "3",
            "--rounds",
            "1",
            "--port",
            &p,
            "--data-dir",
            dir.to_str().unwrap(),
        ];
        if json {
            args.push("--json");
        }
        let (out, all) = run(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("TRACE")
                || String::from_utf8_lossy(&out.stderr).contains("DEBUG"),
            "the demo logged nothing at trace level: the test would prove nothing"
        );
        let mut secrets = Secrets::default();
        let mut types = Vec::new();
        for i in 0..3 {
            types.extend(secrets.add_creds("light", &creds_of(&dir.join(format!("light-{i}")))));
        }
        types.extend(secrets.add_creds("switch", &creds_of(&dir.join("wall-switch"))));
        // The demo's OBT domain: every owner PSK and every SSM group's secret.
        let db = rusqlite::Connection::open(dir.join("domain.sqlite")).unwrap();
        let mut learnt = 0;
        for q in [
            "SELECT uuid, owner_psk FROM devices",
            "SELECT name, secret FROM ssm_groups WHERE secret IS NOT NULL",
            "SELECT client_uuid, secret FROM pairwise",
        ] {
            let mut st = db.prepare(q).unwrap();
            let rows: Vec<(String, Vec<u8>)> = st
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            for (who, key) in rows {
                secrets.add(format!("domain: {q}: {who}"), &key);
                learnt += 1;
            }
        }
        assert!(
            learnt >= 3 + 1 + 1 + 3,
            "owner PSKs, group and pair-wise secrets learnt: {learnt}"
        );
        for t in [
            CredType::SsmServer,
            CredType::SsmClient,
            CredType::PairwiseOscore,
        ] {
            assert!(types.contains(&t), "no {t:?} credential learnt");
        }
        secrets.assert_absent(if json { "demo --json" } else { "demo -vv" }, &all);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// A device process whose stdout (JSON lines) and stderr are collected.
struct Dev {
    child: Child,
    out: Arc<Mutex<Vec<u8>>>,
    /// stderr alone: the log lines.
    err: Arc<Mutex<Vec<u8>>>,
    ready: Value,
}

impl Dev {
    fn start(dir: &Path, port: &str, role: &str) -> Dev {
        let mut child = ssm()
            .args(["-vv", "device", "--json", "--port", port, "--role", role])
            .arg("--state-dir")
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = Arc::new(Mutex::new(Vec::new()));
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().unwrap().unwrap();
        out.lock().unwrap().extend_from_slice(first.as_bytes());
        let ready: Value = serde_json::from_str(&first).unwrap();
        let o = out.clone();
        std::thread::spawn(move || {
            for l in lines.map_while(Result::ok) {
                let mut o = o.lock().unwrap();
                o.extend_from_slice(l.as_bytes());
                o.push(b'\n');
            }
        });
        let (o, e) = (out.clone(), Arc::new(Mutex::new(Vec::new())));
        let e2 = e.clone();
        let mut err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                o.lock().unwrap().extend_from_slice(&buf[..n]);
                e2.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Dev {
            child,
            out,
            err: e,
            ready,
        }
    }

    /// The log lines (stderr) so far.
    fn logs(&self) -> Vec<u8> {
        self.err.lock().unwrap().clone()
    }

    fn ep(&self) -> String {
        format!("coap://127.0.0.1:{}", self.ready["unicast_port"])
    }

    fn text(&self) -> Vec<u8> {
        self.out.lock().unwrap().clone()
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn onboarding_grant_and_multicast_carry_no_key() {
    let dir = TempDir::new("secrets-obt");
    let p = port(7).to_string();
    let light_dir = dir.join("light-0");
    let switch_dir = dir.join("switch-0");
    let light = Dev::start(&light_dir, &p, "light");
    let switch = Dev::start(&switch_dir, &p, "switch");
    let mut secrets = Secrets::default();
    let mut pins = Vec::new();
    // The PIN-derived PSKs of the owner-transfer sessions (DTLS).
    for (d, sd) in [(&light, &light_dir), (&switch, &switch_dir)] {
        let pin = std::fs::read_to_string(sd.join("pin")).unwrap();
        pins.push(pin.trim().to_string());
        let di: ssm_ocf::Uuid = d.ready["di"].as_str().unwrap().parse().unwrap();
        secrets.add(
            "PIN-derived PSK",
            &*ssm_ocf::security::otm::pin_psk(pin.trim(), &di),
        );
    }
    let domain = dir.join("domain.sqlite");
    let d = domain.to_str().unwrap();
    let mut logs: Vec<(String, Vec<u8>)> = Vec::new();
    let mut step = |name: &str, args: &[&str]| {
        let (out, all) = run(args);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&all)
        );
        logs.push((name.to_string(), all));
    };
    step("obt init", &["obt", "--domain", d, "init"]);
    let lp = light_dir.join("pin");
    let sp = switch_dir.join("pin");
    step(
        "obt onboard light",
        &[
            "obt",
            "--domain",
            d,
            "onboard",
            &light.ep(),
            "--pin-file",
            lp.to_str().unwrap(),
            "--name",
            "light-0",
        ],
    );
    step(
        "obt onboard switch --json",
        &[
            "obt",
            "--domain",
            d,
            "--json",
            "onboard",
            &switch.ep(),
            "--pin-file",
            sp.to_str().unwrap(),
            "--name",
            "switch-0",
            "--role",
            "switch",
        ],
    );
    step(
        "obt ssm grant",
        &["obt", "--domain", d, "ssm", "grant", "switch-0", "--all"],
    );
    step("obt list --json", &["obt", "--domain", d, "--json", "list"]);
    let sd = switch_dir.to_str().unwrap();
    step(
        "client update --multicast",
        &[
            "client",
            "--state-dir",
            sd,
            "update",
            "--multicast",
            "--value",
            "on",
            "--port",
            &p,
        ],
    );
    step(
        "client update --multicast --json",
        &[
            "client",
            "--state-dir",
            sd,
            "--json",
            "update",
            "--multicast",
            "--value",
            "off",
            "--port",
            &p,
        ],
    );
    // The light applied both: the flow really ran with the keys below.
    let deadline = Instant::now() + Duration::from_secs(10);
    while String::from_utf8_lossy(&light.text())
        .matches("\"event\":\"ssm_applied\"")
        .count()
        < 2
    {
        assert!(
            Instant::now() < deadline,
            "the light did not apply both SSM updates:\n{}",
            String::from_utf8_lossy(&light.text())
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut types = secrets.add_creds("light", &creds_of(&light_dir));
    types.extend(secrets.add_creds("switch", &creds_of(&switch_dir)));
    for t in [
        CredType::SsmServer,
        CredType::SsmClient,
        CredType::PairwiseOscore,
    ] {
        assert!(types.contains(&t), "no {t:?} credential learnt: {types:?}");
    }
    assert!(
        types.iter().filter(|t| t.as_u32() == 1).count() >= 2,
        "no owner PSK (credtype 1) learnt: {types:?}"
    );
    std::thread::sleep(Duration::from_millis(200));
    for (name, all) in &logs {
        secrets.assert_absent(name, all);
    }
    secrets.assert_absent("light process (trace + JSON events)", &light.text());
    secrets.assert_absent("switch process (trace + JSON events)", &switch.text());
    // The PINs (SECURITY-REVIEW F9): shown once each as the device's `pin`
    // event on stdout, never in a log line of the devices (trace level) or
    // of the OBT that read them from the PIN files.
    for (pin, dev) in pins.iter().zip([&light, &switch]) {
        assert_eq!(pin.len(), 8, "a Random PIN");
        // (The event also names the device's current UUID.)
        let event = format!("{{\"event\":\"pin\",\"pin\":\"{pin}\",\"uuid\":");
        let stdout = String::from_utf8_lossy(&dev.out.lock().unwrap()).to_string();
        assert_eq!(stdout.matches(&event).count(), 1, "the PIN event: {stdout}");
        let dev_logs = dev.logs();
        // The line that announces a new PIN was logged (so the check below
        // covers the place that used to print it).
        assert!(
            String::from_utf8_lossy(&dev_logs).contains("Random PIN"),
            "the device did not log its PIN announcement: the check would prove nothing"
        );
        assert_no_pin("device log (trace)", &dev_logs, pin);
        for (name, all) in &logs {
            assert_no_pin(name, all, pin);
        }
    }
    drop((light, switch));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn debug_of_key_holding_types_redacts() {
    use ssm_ocf::provision::{generate_group, provisioned_state, SsmGroup};
    let mut n = 0u8;
    let mut rng = |b: &mut [u8]| {
        for x in b.iter_mut() {
            n = n.wrapping_mul(31).wrapping_add(17);
            *x = n;
        }
    };
    let (lights, clients) = generate_group(1, 1, ssm_ocf::Uuid::from_u128(1), &mut rng);
    let mut secrets = Secrets::default();
    let mut dbg = String::new();
    for m in lights.iter().chain(&clients) {
        secrets.add_creds("member", &m.creds);
        dbg += &format!("{m:?}\n{:?}\n{:#?}\n", m.creds, m.creds.creds);
        for o in m.creds.oscore_creds().unwrap() {
            dbg += &format!("{o:?}\n{o:#?}\n");
            let prk = Prk::extract(&o.secret, None).unwrap();
            dbg += &format!("{prk:?}\n");
            if let Some(s) = o.sender_id {
                let sc = ssm_oscore::SenderContext::derive(
                    &o.secret,
                    None,
                    None,
                    s,
                    ssm_oscore::SequenceNumber::volatile(0),
                )
                .unwrap();
                dbg += &format!("{sc:?}\n{sc:#?}\n");
            }
            if let Some(r) = o.recipient_id {
                let rc = ssm_oscore::RecipientContext::derive(
                    &o.secret,
                    None,
                    None,
                    r,
                    ssm_oscore::ReplayState::Window(ssm_oscore::ReplayWindow::new(32)),
                )
                .unwrap();
                dbg += &format!("{rc:?}\n{rc:#?}\n");
            }
            if let (Some(s), Some(r)) = (o.sender_id, o.recipient_id) {
                let p = ssm_oscore::ContextParams {
                    master_secret: &o.secret,
                    master_salt: Some(&o.secret[..8]),
                    id_context: None,
                    sender_id: s,
                    recipient_id: r,
                };
                let ctx = ssm_oscore::SecurityContext::derive(
                    &p,
                    ssm_oscore::SequenceNumber::volatile(0),
                    ssm_oscore::ReplayState::Window(ssm_oscore::ReplayWindow::new(32)),
                )
                .unwrap();
                dbg += &format!("{p:?}\n{ctx:?}\n{ctx:#?}\n");
            }
        }
    }
    // A light's whole security state with an owner PSK (credtype 1).
    let owner_psk = [0x5au8, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];
    let mut creds = lights[0].creds.clone();
    creds.creds.push(ssm_ocf::cred::Credential {
        credid: 99,
        subjectuuid: ssm_ocf::Uuid::from_u128(1).to_string(),
        credtype: ssm_ocf::cred::CredType::PairwiseSymmetric,
        privatedata: Some(ssm_ocf::cred::PrivateData::raw(&owner_psk)),
        oscore: None,
    });
    secrets.add("owner PSK", &owner_psk);
    let s = provisioned_state(lights[0].uuid, ssm_ocf::Uuid::from_u128(1), creds, vec![]);
    dbg += &format!("{s:?}\n{s:#?}\n");
    // The OBT's view: the group it keeps, an onboarded device's owner PSK,
    // the owner-transfer session's exported keys.
    let mut group = SsmGroup::new(&mut rng);
    group.add_client(ssm_ocf::Uuid::from_u128(3), &mut rng);
    for c in group.server_creds() {
        secrets.add_creds(
            "group",
            &CredResource {
                creds: vec![c],
                rowneruuid: String::new(),
            },
        );
    }
    dbg += &format!("{group:?}\n{group:#?}\n");
    let onboarded = ssm_runtime::obt_transport::Onboarded {
        device_uuid: ssm_ocf::Uuid::from_u128(2),
        owner_psk,
        ssm_hrefs: vec!["/lights".into()],
    };
    dbg += &format!("{onboarded:?}\n{onboarded:#?}\n");
    let otm = ssm_ocf::security::otm::OtmKeys {
        master_secret: [0xa7; 48],
        client_random: [2; 32],
        server_random: [3; 32],
        key_block_len: 96,
    };
    secrets.add("OTM master secret", &otm.master_secret);
    let opsk = otm.owner_psk(&ssm_ocf::Uuid::from_u128(1), &ssm_ocf::Uuid::from_u128(2));
    secrets.add("owner PSK from the OTM session", &*opsk);
    dbg += &format!("{otm:?}\n{otm:#?}\n");
    secrets.assert_absent("Debug output", dbg.as_bytes());
}

/// The matcher itself: every usual way of printing a key is caught.
#[test]
fn matcher_catches_every_print_form() {
    use base64::engine::general_purpose::*;
    let key: Vec<u8> = (0u8..32)
        .map(|i| i.wrapping_mul(37).wrapping_add(101))
        .collect();
    let mut s = Secrets::default();
    s.add("k", &key);
    let forms = [
        format!("{key:?}"),
        format!("{key:x?}"),
        format!("{key:02x?}"),
        format!("{:?}", &key[5..20]),
        hex::encode(&key),
        hex::encode_upper(&key[3..14]),
        STANDARD.encode(&key),
        URL_SAFE_NO_PAD.encode(&key),
        STANDARD.encode(&key[9..30]),
        format!("key={}", hex::encode(&key[20..30])),
    ];
    for f in forms {
        let caught = std::panic::catch_unwind(|| s.assert_absent("x", f.as_bytes())).is_err();
        assert!(caught, "not caught: {f}");
    }
    let raw = std::panic::catch_unwind(|| s.assert_absent("x", &key[10..19])).is_err();
    assert!(raw, "raw bytes not caught");
    let clean = std::panic::catch_unwind(|| s.assert_absent("x", b"nothing secret here"));
    assert!(clean.is_ok());
}

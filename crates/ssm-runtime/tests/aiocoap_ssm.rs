//! SSM interop with aiocoap 0.4.17: an aiocoap OSCORE context holding one
//! of our switches' Sender ID and the group secret protects an UPDATE that
//! we send to the multicast group on `lo`: our lights apply it (and reject
//! its replay). And aiocoap, holding the matching recipient context,
//! decrypts the SSM datagram our switch produced.

use ciborium::Value;
use ssm_coap::Token;
use ssm_ocf::cbor;
use ssm_ocf::cred::CredType;
use ssm_ocf::device::{Device, DeviceInfo};
use ssm_ocf::provision::generate_group;
use ssm_ocf::ssm::DropReason;
use ssm_ocf::switch::{BinarySwitch, HREF};
use ssm_ocf::Uuid;
use ssm_runtime::client::{MulticastScope, MulticastTargets, SsmSender};
use ssm_runtime::device::{start, DeviceConfig, DeviceEvent};
use ssm_runtime::random_bytes;
use ssm_runtime::store::FileSequenceStore;
use ssm_testkit::{repo, TempDir};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

fn python() -> PathBuf {
    if let Ok(p) = std::env::var("SSM_AIOCOAP_PYTHON") {
        return PathBuf::from(p);
    }
    let out = Command::new("bash")
        .arg(repo().join("interop/aiocoap/setup-venv.sh"))
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "setup-venv.sh failed: aiocoap is required for the interop tests"
    );
    PathBuf::from(
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .last()
            .unwrap()
            .trim(),
    )
}

fn aiocoap_context(dir: &Path, sender: &str, recipient: &str, secret: &[u8]) {
    std::fs::create_dir_all(dir).unwrap();
    let s = serde_json::json!({
        "sender-id_hex": sender, "recipient-id_hex": recipient, "secret_hex": hex::encode(secret),
        "algorithm": "AES-CCM-16-64-128", "kdf-hashfun": "sha256",
    });
    std::fs::write(dir.join("settings.json"), s.to_string()).unwrap();
}

fn run_py(py: &Path, script: &str, args: &[&str]) -> serde_json::Value {
    let out = Command::new(py)
        .arg(repo().join("interop/aiocoap").join(script))
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!(
            "{script}: {e}: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aiocoap_and_our_ssm_interoperate() {
    let py = python();
    let dir = TempDir::new("test-aiocoap-ssm");
    let mut rng = |b: &mut [u8]| b.copy_from_slice(&random_bytes::<64>()[..b.len()]);
    let (lights, switches) = generate_group(3, 1, Uuid::new_v4(), &mut rng);
    let creds = switches[0].creds.oscore_creds().unwrap();
    let ssm = creds
        .iter()
        .find(|c| c.credtype == CredType::SsmClient)
        .unwrap();
    let sid = hex::encode(ssm.sender_id.unwrap().as_bytes());
    let other = "01aabbccddeeff";

    // aiocoap as the switch → our lights.
    let port = ssm_testkit::free_udp_port();
    let mut handles = Vec::new();
    for (i, l) in lights.iter().enumerate() {
        let mut d = Device::new(DeviceInfo::light(&format!("light {i}"), l.uuid));
        d.add_resource(HREF, Box::new(BinarySwitch::default()), true);
        let mut cfg = DeviceConfig::loopback(dir.join(format!("light-{i}")));
        cfg.port = port;
        handles.push(start(secured(d, l.uuid, &l.creds), &cfg).await.unwrap());
    }
    let mut events: Vec<_> = handles.iter().map(|h| h.events.subscribe()).collect();
    let ctx = dir.join("aiocoap-switch");
    aiocoap_context(&ctx, &sid, other, &ssm.secret);
    let p = run_py(
        &py,
        "ssm_protect.py",
        &[
            "--context",
            ctx.to_str().unwrap(),
            "--path",
            HREF,
            "--value",
            "true",
        ],
    );
    let datagram = hex::decode(p["hex"].as_str().unwrap()).unwrap();
    let targets = MulticastTargets::open(&MulticastScope {
        interfaces: vec!["lo".into()],
        ipv4: true,
        ipv6_scopes: vec![],
        port,
        hops: 1,
    })
    .unwrap();
    let (sock, dests) = &targets.targets[0];
    for (expect_applied, what) in [(true, "aiocoap's UPDATE"), (false, "its replay")] {
        sock.send_to(&datagram, dests[0]).await.unwrap();
        for rx in events.iter_mut() {
            let ev = tokio::time::timeout(Duration::from_secs(3), rx.recv())
                .await
                .expect(what)
                .unwrap();
            match (expect_applied, &ev) {
                (true, DeviceEvent::SsmApplied { state, .. }) => {
                    assert_eq!(state, &serde_json::json!({"value": true}))
                }
                (false, DeviceEvent::Dropped(DropReason::Replay)) => {}
                _ => panic!("{what}: unexpected {ev:?}"),
            }
        }
    }
    for h in &handles {
        assert_eq!(
            h.representation(HREF),
            Some(serde_json::json!({"value": true}))
        );
    }
    drop(handles);

    // Our switch → aiocoap holding the recipient context.
    let mut sender = SsmSender::new(ssm, FileSequenceStore::new(dir.join("switch.ssn"))).unwrap();
    sender
        .protect(&ssm_ocf::ssm::update_request(
            HREF,
            &cbor::map([("value", Value::Bool(true))]),
            1,
            Token::default(),
            true,
        ))
        .unwrap();
    let req = ssm_ocf::ssm::update_request(
        HREF,
        &cbor::map([("value", Value::Bool(false))]),
        7,
        Token::new(&[7; 8]).unwrap(),
        true,
    );
    let (ours, piv) = sender.protect(&req).unwrap();
    let rctx = dir.join("aiocoap-light");
    aiocoap_context(&rctx, other, &sid, &ssm.secret);
    let u = run_py(
        &py,
        "ssm_unprotect.py",
        &[
            "--context",
            rctx.to_str().unwrap(),
            "--hex",
            &hex::encode(&ours),
        ],
    );
    assert_eq!(u["ok"], true, "{u}");
    assert_eq!(u["code"], "POST");
    assert_eq!(u["uri_path"], HREF);
    assert_eq!(u["content_format"], 10000);
    assert_eq!(u["value"], false);
    assert_eq!(u["piv"], piv);
    let nums: Vec<u64> = u["options"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o[0].as_u64().unwrap())
        .collect();
    assert_eq!(
        nums,
        [11, 12, 17, 258, 2049, 2053],
        "OCF and No-Response options inside the ciphertext"
    );
    // aiocoap's replay protection agrees.
    let again = run_py(
        &py,
        "ssm_unprotect.py",
        &[
            "--context",
            rctx.to_str().unwrap(),
            "--hex",
            &hex::encode(&ours),
        ],
    );
    assert_eq!(again["ok"], false);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A device provisioned from its generated credentials (owned, RFNOP, the
/// default ACEs with public read).
fn secured(mut d: Device, uuid: Uuid, creds: &ssm_ocf::cred::CredResource) -> Device {
    let hrefs = [HREF, "/plain"];
    let aces = ssm_ocf::provision::default_aces(creds, &hrefs, true);
    d.set_security(ssm_ocf::provision::provisioned_state(
        uuid,
        Uuid::from_u128(0x0b7),
        creds.clone(),
        aces,
    ));
    d
}

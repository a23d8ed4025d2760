//! Group OSCORE group mode interop with aiocoap 0.4.17 (draft -23), live
//! one way and offline the other:
//!
//! * aiocoap as a group-mode switch (SimpleGroupContext, its own Ed25519
//!   key) protects an SSM UPDATE; we send its datagram to the multicast
//!   group on `lo` (224.0.1.187, hop limit 1): our three light runtimes,
//!   holding a group-mode recipient credential (credtype 131072) with
//!   aiocoap's CCS, apply it, drop its replay, and drop the same datagram
//!   with one signature byte changed as `BadSignature`.
//! * our switch ([`GroupSsmSender`]) protects an UPDATE; aiocoap, as a
//!   member holding our switch's CCS, verifies and decrypts it.
//!
//! aiocoap needs the AEAD Algorithm set in the Common Context (it derives
//! the Common IV from it), so these credentials carry `aeadalg` 10 (RFC
//! 10021 §2.1.1: it then enters the `external_aad`); aiocoap's context has
//! no Pairwise Key Agreement Algorithm (null in the `external_aad`, as
//! ours).
use ssm_ocf::cred::{CredResource, CredType, Credential, OscoreFields, PrivateData};
use ssm_ocf::device::{Device, DeviceInfo};
use ssm_ocf::group_cred::{ccs_of_ed25519, fields, gid_of, public_key};
use ssm_ocf::ssm::DropReason;
use ssm_ocf::switch::{BinarySwitch, HREF};
use ssm_ocf::Uuid;
use ssm_runtime::client::{MulticastScope, MulticastTargets};
use ssm_runtime::device::{start, DeviceConfig, DeviceEvent};
use ssm_runtime::group_client::GroupSsmSender;
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

fn group_ssm(py: &Path, args: &[&str]) -> serde_json::Value {
    let out = Command::new(py)
        .arg(repo().join("interop/aiocoap/group_ssm.py"))
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!(
            "group_ssm.py: {e}: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// A group-mode credential of the group (secret, Gid, GM CCS, aeadalg 10).
fn cred(
    t: CredType,
    subject: Uuid,
    id: &str,
    secret: &[u8],
    gm: &[u8],
    auth: Option<&[u8]>,
) -> Credential {
    let mut g = fields(&gid_of(7, 1), gm, auth);
    g.aeadalg = Some(10);
    let (s, r) = match t {
        CredType::GroupOscoreSender => (Some(id.to_string()), None),
        _ => (None, Some(id.to_string())),
    };
    Credential {
        credid: 0,
        subjectuuid: subject.to_string(),
        credtype: t,
        privatedata: Some(PrivateData::raw(secret)),
        oscore: Some(OscoreFields {
            senderid: s,
            recipientid: r,
            desc: Some("SSM group hall (7) epoch 1".into()),
            group: Some(g),
            ..Default::default()
        }),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aiocoap_and_our_group_mode_interoperate() {
    let py = python();
    let dir = TempDir::new("test-aiocoap-group");
    let secret = random_bytes::<32>();
    let gm = ccs_of_ed25519(&public_key(&random_bytes::<32>())).to_vec();
    let (their_key, our_key) = (random_bytes::<32>(), random_bytes::<32>());
    let (their_ccs, our_ccs) = (
        ccs_of_ed25519(&public_key(&their_key)).to_vec(),
        ccs_of_ed25519(&public_key(&our_key)).to_vec(),
    );
    let (their_sid, our_sid, light_sid) = ("02000000000a1c", "02000000000b2d", "52");
    let switch = Uuid::new_v4();

    // aiocoap as the switch → our lights (live, multicast on lo).
    let port = ssm_testkit::free_udp_port();
    let mut handles = Vec::new();
    for i in 0..3 {
        let uuid = Uuid::new_v4();
        let creds = CredResource {
            creds: vec![cred(
                CredType::GroupOscoreRecipient,
                switch,
                their_sid,
                &secret,
                &gm,
                Some(&their_ccs),
            )],
            rowneruuid: String::new(),
        };
        let mut d = Device::new(DeviceInfo::light(&format!("light {i}"), uuid));
        d.add_resource(HREF, Box::new(BinarySwitch::default()), true);
        let aces = ssm_ocf::provision::default_aces(&creds, &[HREF], false);
        d.set_security(ssm_ocf::provision::provisioned_state(
            uuid,
            Uuid::from_u128(0x0b7),
            creds,
            aces,
        ));
        let mut cfg = DeviceConfig::loopback(dir.join(format!("light-{i}")));
        cfg.port = port;
        handles.push(start(d, &cfg).await.unwrap());
    }
    let mut events: Vec<_> = handles.iter().map(|h| h.events.subscribe()).collect();
    let setup = |sid: &str, key: &[u8; 32], ccs: &[u8], peers: serde_json::Value, name: &str| {
        let p = dir.join(name);
        let s = serde_json::json!({"gid": hex::encode(gid_of(7, 1)), "secret": hex::encode(secret), "salt": null,
            "sender_id": sid, "private_key": hex::encode(key), "own_ccs": hex::encode(ccs),
            "gm_cred": hex::encode(&gm), "ssn": 5, "peers": peers});
        std::fs::write(&p, s.to_string()).unwrap();
        p
    };
    let theirs = setup(
        their_sid,
        &their_key,
        &their_ccs,
        serde_json::json!({}),
        "aiocoap-switch.json",
    );
    let p = group_ssm(
        &py,
        &[
            "protect",
            "--setup",
            theirs.to_str().unwrap(),
            "--path",
            HREF,
            "--value",
            "true",
        ],
    );
    let datagram = hex::decode(p["hex"].as_str().unwrap()).unwrap();
    let mut tampered = datagram.clone();
    *tampered.last_mut().unwrap() ^= 0x40; // inside the encrypted signature
    let targets = MulticastTargets::open(&MulticastScope {
        interfaces: vec!["lo".into()],
        ipv4: true,
        ipv6_scopes: vec![],
        port,
        hops: 1,
    })
    .unwrap();
    let (sock, dests) = &targets.targets[0];
    for (bytes, expect, what) in [
        (
            &tampered,
            Some(DropReason::BadSignature),
            "a changed signature byte",
        ),
        (&datagram, None, "aiocoap's UPDATE"),
        (&datagram, Some(DropReason::Replay), "its replay"),
    ] {
        sock.send_to(bytes, dests[0]).await.unwrap();
        for rx in events.iter_mut() {
            let ev = tokio::time::timeout(Duration::from_secs(3), rx.recv())
                .await
                .expect(what)
                .unwrap();
            match (expect, &ev) {
                (None, DeviceEvent::SsmApplied { state, from, .. }) => {
                    assert_eq!(state, &serde_json::json!({"value": true}));
                    assert_eq!(*from, Some(switch));
                }
                (Some(r), DeviceEvent::Dropped(got)) if *got == r => {}
                _ => panic!("{what}: unexpected {ev:?}"),
            }
        }
    }
    drop(handles);

    // Our switch → aiocoap (offline: aiocoap verifies our datagram).
    let sc = cred(
        CredType::GroupOscoreSender,
        switch,
        our_sid,
        &secret,
        &gm,
        None,
    );
    let oc = sc.oscore().unwrap().unwrap();
    let mut sender = GroupSsmSender::new(
        &oc,
        &our_key,
        FileSequenceStore::new(dir.join("switch.ssn")),
    )
    .unwrap();
    let req = ssm_ocf::ssm::update_request(
        HREF,
        &ssm_ocf::cbor::map([("value", ciborium::Value::Bool(false))]),
        7,
        ssm_coap::Token::new(&[7; 8]).unwrap(),
        true,
    );
    let (ours, piv) = sender.protect(&req, true).unwrap();
    let light_key = random_bytes::<32>();
    let light_ccs = ccs_of_ed25519(&public_key(&light_key)).to_vec();
    let aiolight = setup(
        light_sid,
        &light_key,
        &light_ccs,
        serde_json::json!({ our_sid: hex::encode(&our_ccs) }),
        "aiocoap-light.json",
    );
    let u = group_ssm(
        &py,
        &[
            "unprotect",
            "--setup",
            aiolight.to_str().unwrap(),
            "--hex",
            &hex::encode(&ours),
        ],
    );
    assert_eq!(u["ok"], true, "{u}");
    assert_eq!(u["uri_path"], HREF);
    assert_eq!(u["value"], false);
    assert_eq!(u["piv"], piv);
    assert_eq!(u["kid"], our_sid);
    // One byte of the encrypted signature changed: aiocoap refuses it.
    let mut forged = ours.clone();
    *forged.last_mut().unwrap() ^= 1;
    let f = group_ssm(
        &py,
        &[
            "unprotect",
            "--setup",
            aiolight.to_str().unwrap(),
            "--hex",
            &hex::encode(&forged),
        ],
    );
    assert_eq!(f["ok"], false, "{f}");
    std::fs::remove_dir_all(&dir).unwrap();
}

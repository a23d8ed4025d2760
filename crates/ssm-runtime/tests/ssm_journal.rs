//! Lights of one process sharing a replay-floor journal
//! (`ssm_runtime::journal`): one SSM datagram is applied by all of them
//! with one commit, no per-light floor file is written, and after a
//! restart (journal and lights reopened) every light rejects the replay
//! and applies the next fresh command.

use ssm_coap::Token;
use ssm_ocf::cred::CredType;
use ssm_ocf::device::{Device, DeviceInfo};
use ssm_ocf::provision::{default_aces, generate_group, provisioned_state, Member};
use ssm_ocf::ssm::{update_request, DropReason};
use ssm_ocf::switch::{BinarySwitch, HREF};
use ssm_ocf::{cbor, Uuid};
use ssm_oscore::{SenderContext, SequenceNumber};
use ssm_runtime::device::{start, DeviceConfig, DeviceEvent, DeviceHandle};
use ssm_runtime::journal::FloorJournal;
use ssm_runtime::multicast::{sender_v4, ALL_COAP_NODES_V4};
use ssm_runtime::netif::NetIf;
use ssm_runtime::state_dir::StateDir;
use ssm_testkit::TempDir;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

fn port() -> u16 {
    ssm_testkit::test_port(0)
}

async fn light(l: &Member, dir: &Path, journal: &Arc<FloorJournal>) -> DeviceHandle {
    let mut d = Device::new(DeviceInfo::light("light", l.uuid));
    d.add_resource(HREF, Box::new(BinarySwitch::default()), true);
    d.set_security(provisioned_state(
        l.uuid,
        Uuid::from_u128(0xb7),
        l.creds.clone(),
        default_aces(&l.creds, &[HREF], true),
    ));
    let mut cfg = DeviceConfig::loopback(dir.to_path_buf());
    cfg.port = port();
    cfg.floor_journal = Some(journal.clone());
    start(d, &cfg).await.unwrap()
}

fn datagram(s: &mut SenderContext, v: bool) -> Vec<u8> {
    let piv = s.sequence().peek();
    let req = update_request(
        HREF,
        &cbor::map([("value", ciborium::Value::Bool(v))]),
        piv as u16,
        Token::new(&[1, 2]).unwrap(),
        true,
    )
    .to_vec();
    let mut out = vec![0u8; req.len() + 64];
    let (n, _) = s.protect_request(&req, &mut out).unwrap();
    out.truncate(n);
    out
}

/// Sends `d` once to the group on `lo`; returns each light's verdict.
async fn deliver(
    sock: &tokio::net::UdpSocket,
    rxs: &mut [tokio::sync::broadcast::Receiver<DeviceEvent>],
    d: &[u8],
) -> Vec<Option<DeviceEvent>> {
    sock.send_to(d, SocketAddr::from((ALL_COAP_NODES_V4, port())))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    let mut out = Vec::new();
    for rx in rxs.iter_mut() {
        let mut got = None;
        while let Ok(Ok(ev)) = tokio::time::timeout_at(deadline, rx.recv()).await {
            if matches!(ev, DeviceEvent::SsmApplied { .. } | DeviceEvent::Dropped(_)) {
                got = Some(ev);
                break;
            }
        }
        out.push(got);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_journal_survives_restart() {
    let mut rng = |b: &mut [u8]| b.copy_from_slice(&ssm_runtime::random_bytes::<64>()[..b.len()]);
    let (lights, switches) = generate_group(3, 1, Uuid::from_u128(1), &mut rng);
    let cred = switches[0]
        .creds
        .oscore_creds()
        .unwrap()
        .into_iter()
        .find(|c| c.credtype == CredType::SsmClient)
        .unwrap();
    let mut s = ssm_ocf::ssm::sender_context(&cred, SequenceNumber::volatile(20)).unwrap();
    let lo = NetIf::by_name("lo").unwrap().ipv4_addr().unwrap();
    let sock = sender_v4(lo, 1).unwrap();
    let base = TempDir::new("test-journal");
    let jpath = base.join("floors.journal");
    let dirs: Vec<_> = (0..3).map(|i| base.join(format!("light-{i}"))).collect();

    let journal = FloorJournal::open(&jpath).unwrap();
    let mut hs = Vec::new();
    for (l, d) in lights.iter().zip(&dirs) {
        hs.push(light(l, d, &journal).await);
    }
    let mut rxs: Vec<_> = hs.iter().map(|h| h.events.subscribe()).collect();
    let d20 = datagram(&mut s, true);
    let d21 = datagram(&mut s, false);
    for d in [&d20, &d21] {
        let got = deliver(&sock, &mut rxs, d).await;
        assert!(
            got.iter()
                .all(|e| matches!(e, Some(DeviceEvent::SsmApplied { .. }))),
            "{got:?}"
        );
    }
    for d in &dirs {
        assert!(
            !StateDir::new(d).floors_path().exists(),
            "the journal, not a file per light"
        );
        let v: ssm_ocf::ssm::ReplayFloors =
            serde_json::from_slice(&journal.latest(&d.to_string_lossy()).unwrap()).unwrap();
        assert_eq!(v.0.values().copied().collect::<Vec<_>>(), vec![21]);
    }
    drop(rxs);
    for h in hs {
        h.stop();
    }
    drop(journal);

    // Restart: a new journal handle on the same file, new lights.
    let journal = FloorJournal::open(&jpath).unwrap();
    let mut hs = Vec::new();
    for (l, d) in lights.iter().zip(&dirs) {
        hs.push(light(l, d, &journal).await);
    }
    let mut rxs: Vec<_> = hs.iter().map(|h| h.events.subscribe()).collect();
    for d in [&d20, &d21] {
        let got = deliver(&sock, &mut rxs, d).await;
        assert!(
            got.iter()
                .all(|e| matches!(e, Some(DeviceEvent::Dropped(DropReason::Replay)))),
            "a replay after the restart: {got:?}"
        );
    }
    let d22 = datagram(&mut s, true);
    let got = deliver(&sock, &mut rxs, &d22).await;
    assert!(
        got.iter()
            .all(|e| matches!(e, Some(DeviceEvent::SsmApplied { piv: 22, .. }))),
        "{got:?}"
    );
    for h in hs {
        h.stop();
    }
}

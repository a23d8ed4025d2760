//! The SSM replay floor over real sockets on `lo`: an update is applied
//! only after its floor is durable (a failed write means not applied), a
//! restarted light rejects what it accepted before, and with a floor
//! reservation of k it writes once per k + 1 updates and still rejects
//! every replay after a restart.

use ssm_coap::Token;
use ssm_ocf::cred::CredType;
use ssm_ocf::device::{Device, DeviceInfo};
use ssm_ocf::provision::{default_aces, generate_group, provisioned_state, Member};
use ssm_ocf::ssm::{update_request, DropReason};
use ssm_ocf::switch::{BinarySwitch, HREF};
use ssm_ocf::{cbor, Uuid};
use ssm_oscore::{SenderContext, SequenceNumber};
use ssm_runtime::device::{start, DeviceConfig, DeviceEvent, DeviceHandle};
use ssm_runtime::multicast::{sender_v4, ALL_COAP_NODES_V4};
use ssm_runtime::netif::NetIf;
use ssm_runtime::state_dir::StateDir;
use ssm_testkit::TempDir;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

fn port() -> u16 {
    ssm_testkit::test_port(0)
}

async fn light(l: &Member, dir: &Path) -> DeviceHandle {
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
    start(d, &cfg).await.unwrap()
}

fn datagram(s: &mut SenderContext, v: bool) -> (Vec<u8>, u64) {
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
    (out, piv)
}

/// Sends `d` to the group on `lo` and returns what the light reported.
async fn deliver(
    sock: &tokio::net::UdpSocket,
    rx: &mut tokio::sync::broadcast::Receiver<DeviceEvent>,
    d: &[u8],
) -> Option<DeviceEvent> {
    sock.send_to(d, SocketAddr::from((ALL_COAP_NODES_V4, port())))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while let Ok(Ok(ev)) = tokio::time::timeout_at(deadline, rx.recv()).await {
        if matches!(ev, DeviceEvent::SsmApplied { .. } | DeviceEvent::Dropped(_)) {
            return Some(ev);
        }
    }
    None
}

fn stored_floor(dir: &Path) -> u64 {
    let f: ssm_ocf::ssm::ReplayFloors =
        serde_json::from_str(&std::fs::read_to_string(StateDir::new(dir).floors_path()).unwrap())
            .unwrap();
    *f.0.values().next().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floor_is_durable_before_apply_and_survives_restart() {
    let mut rng = |b: &mut [u8]| b.copy_from_slice(&ssm_runtime::random_bytes::<64>()[..b.len()]);
    let (lights, switches) = generate_group(1, 1, Uuid::from_u128(1), &mut rng);
    let cred = switches[0]
        .creds
        .oscore_creds()
        .unwrap()
        .into_iter()
        .find(|c| c.credtype == CredType::SsmClient)
        .unwrap();
    let mut s = ssm_ocf::ssm::sender_context(&cred, SequenceNumber::volatile(10)).unwrap();
    let lo = NetIf::by_name("lo").unwrap().ipv4_addr().unwrap();
    let sock = sender_v4(lo, 1).unwrap();

    // 1. Exact floor (the default).
    let dir = TempDir::new("test-floor-exact");
    let h = light(&lights[0], &dir).await;
    let mut rx = h.events.subscribe();
    let (d10, _) = datagram(&mut s, true);
    assert!(matches!(
        deliver(&sock, &mut rx, &d10).await,
        Some(DeviceEvent::SsmApplied { piv: 10, .. })
    ));
    assert_eq!(stored_floor(&dir), 10);
    // The floor cannot be written (a directory in the way): not applied.
    std::fs::remove_file(StateDir::new(&dir).floors_path()).unwrap();
    std::fs::create_dir(StateDir::new(&dir).floors_path()).unwrap();
    let (d11, _) = datagram(&mut s, false);
    assert_eq!(
        deliver(&sock, &mut rx, &d11)
            .await
            .map(|e| format!("{e:?}")),
        None
    );
    assert_eq!(
        h.representation(HREF).unwrap()["value"],
        true,
        "an update whose floor is not durable is not applied"
    );
    std::fs::remove_dir(StateDir::new(&dir).floors_path()).unwrap();
    let (d12, _) = datagram(&mut s, false);
    assert!(matches!(
        deliver(&sock, &mut rx, &d12).await,
        Some(DeviceEvent::SsmApplied { piv: 12, .. })
    ));
    assert_eq!(stored_floor(&dir), 12);
    drop(rx);
    h.stop();
    // Restart: everything up to 12 is a replay.
    let h = light(&lights[0], &dir).await;
    let mut rx = h.events.subscribe();
    for d in [&d10, &d12] {
        assert!(matches!(
            deliver(&sock, &mut rx, d).await,
            Some(DeviceEvent::Dropped(DropReason::Replay))
        ));
    }
    h.stop();

    // 2. Reserved 4 ahead: one write per 5 updates; after a restart no
    // replay is accepted, and fresh numbers above the reservation are.
    let dir = TempDir::new("test-floor-reserved");
    let h = light(&lights[0], &dir).await;
    h.set_floor_reservation(4);
    let mut rx = h.events.subscribe();
    let mut sent = Vec::new();
    for i in 0..3 {
        let (d, piv) = datagram(&mut s, i % 2 == 0);
        assert!(matches!(
            deliver(&sock, &mut rx, &d).await,
            Some(DeviceEvent::SsmApplied { piv: p, .. }) if p == piv
        ));
        sent.push((d, piv));
    }
    let first = sent[0].1;
    assert_eq!(stored_floor(&dir), first + 4, "written once, k ahead");
    drop(rx);
    h.stop();
    let h = light(&lights[0], &dir).await;
    let mut rx = h.events.subscribe();
    for (d, _) in &sent {
        assert!(matches!(
            deliver(&sock, &mut rx, d).await,
            Some(DeviceEvent::Dropped(DropReason::Replay))
        ));
    }
    // The price: a fresh number inside the reservation is refused too...
    let (d, piv) = datagram(&mut s, true);
    assert!(piv <= first + 4);
    assert!(matches!(
        deliver(&sock, &mut rx, &d).await,
        Some(DeviceEvent::Dropped(DropReason::Replay))
    ));
    // ... and the first one above it is applied.
    // (The switch skips ahead: a context of the same credential that
    // starts above the reservation.)
    let mut s = ssm_ocf::ssm::sender_context(&cred, SequenceNumber::volatile(first + 5)).unwrap();
    let (d, _) = datagram(&mut s, false);
    assert!(matches!(
        deliver(&sock, &mut rx, &d).await,
        Some(DeviceEvent::SsmApplied { .. })
    ));
    h.stop();
}

//! The SSM replay floor over real sockets on `lo`: an update is applied
//! only after its floor is durable (a failed write means not applied), a
//! restarted light rejects what it accepted before, and with a floor
//! reservation of k it writes once per k + 1 updates and still rejects
//! every replay after a restart. The same for a Group OSCORE group-mode
//! light, whose floor a datagram with a bad signature does not move.

use ssm_coap::Token;
use ssm_ocf::cred::CredType;
use ssm_ocf::device::{Device, DeviceInfo};
use ssm_ocf::group_cred::{ccs_of_ed25519, fields, gid_of, public_key, sender_context};
use ssm_ocf::provision::{default_aces, generate_group, provisioned_state, Member};
use ssm_ocf::ssm::{update_request, DropReason};
use ssm_ocf::switch::{BinarySwitch, HREF};
use ssm_ocf::{cbor, Uuid};
use ssm_oscore::group::{GroupCommon, GroupSenderContext};
use ssm_oscore::{RequestOptions, SenderContext, SequenceNumber};
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

async fn light(l: &Member, dir: &Path, port: u16) -> DeviceHandle {
    let mut d = Device::new(DeviceInfo::light("light", l.uuid));
    d.add_resource(HREF, Box::new(BinarySwitch::default()), true);
    d.set_security(provisioned_state(
        l.uuid,
        Uuid::from_u128(0xb7),
        l.creds.clone(),
        default_aces(&l.creds, &[HREF], true),
    ));
    let mut cfg = DeviceConfig::loopback(dir.to_path_buf());
    cfg.port = port;
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
    (sock, port): (&tokio::net::UdpSocket, u16),
    rx: &mut tokio::sync::broadcast::Receiver<DeviceEvent>,
    d: &[u8],
) -> Option<DeviceEvent> {
    sock.send_to(d, SocketAddr::from((ALL_COAP_NODES_V4, port)))
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
    let h = light(&lights[0], &dir, port()).await;
    let mut rx = h.events.subscribe();
    let (d10, _) = datagram(&mut s, true);
    assert!(matches!(
        deliver((&sock, port()), &mut rx, &d10).await,
        Some(DeviceEvent::SsmApplied { piv: 10, .. })
    ));
    assert_eq!(stored_floor(&dir), 10);
    // The floor cannot be written (a directory in the way): not applied.
    std::fs::remove_file(StateDir::new(&dir).floors_path()).unwrap();
    std::fs::create_dir(StateDir::new(&dir).floors_path()).unwrap();
    let (d11, _) = datagram(&mut s, false);
    assert_eq!(
        deliver((&sock, port()), &mut rx, &d11)
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
        deliver((&sock, port()), &mut rx, &d12).await,
        Some(DeviceEvent::SsmApplied { piv: 12, .. })
    ));
    assert_eq!(stored_floor(&dir), 12);
    drop(rx);
    h.stop();
    // Restart: everything up to 12 is a replay.
    let h = light(&lights[0], &dir, port()).await;
    let mut rx = h.events.subscribe();
    for d in [&d10, &d12] {
        assert!(matches!(
            deliver((&sock, port()), &mut rx, d).await,
            Some(DeviceEvent::Dropped(DropReason::Replay))
        ));
    }
    h.stop();

    // 2. Reserved 4 ahead: one write per 5 updates; after a restart no
    // replay is accepted, and fresh numbers above the reservation are.
    let dir = TempDir::new("test-floor-reserved");
    let h = light(&lights[0], &dir, port()).await;
    h.set_floor_reservation(4);
    let mut rx = h.events.subscribe();
    let mut sent = Vec::new();
    for i in 0..3 {
        let (d, piv) = datagram(&mut s, i % 2 == 0);
        assert!(matches!(
            deliver((&sock, port()), &mut rx, &d).await,
            Some(DeviceEvent::SsmApplied { piv: p, .. }) if p == piv
        ));
        sent.push((d, piv));
    }
    let first = sent[0].1;
    assert_eq!(stored_floor(&dir), first + 4, "written once, k ahead");
    drop(rx);
    h.stop();
    let h = light(&lights[0], &dir, port()).await;
    let mut rx = h.events.subscribe();
    for (d, _) in &sent {
        assert!(matches!(
            deliver((&sock, port()), &mut rx, d).await,
            Some(DeviceEvent::Dropped(DropReason::Replay))
        ));
    }
    // The price: a fresh number inside the reservation is refused too...
    let (d, piv) = datagram(&mut s, true);
    assert!(piv <= first + 4);
    assert!(matches!(
        deliver((&sock, port()), &mut rx, &d).await,
        Some(DeviceEvent::Dropped(DropReason::Replay))
    ));
    // ... and the first one above it is applied.
    // (The switch skips ahead: a context of the same credential that
    // starts above the reservation.)
    let mut s = ssm_ocf::ssm::sender_context(&cred, SequenceNumber::volatile(first + 5)).unwrap();
    let (d, _) = datagram(&mut s, false);
    assert!(matches!(
        deliver((&sock, port()), &mut rx, &d).await,
        Some(DeviceEvent::SsmApplied { .. })
    ));
    h.stop();
}

/// The group's SSM credentials turned into Group OSCORE group-mode ones
/// (RFC 10021; credtype 131072 with the switch's CCS on the light, 65536
/// on the switch) and the switch's signing context.
fn group_mode(
    light: &mut Member,
    switch: &Member,
    key: &[u8; 32],
) -> (GroupCommon, GroupSenderContext) {
    let gm = ccs_of_ed25519(&public_key(&[0x77; 32])).to_vec();
    let ccs = ccs_of_ed25519(&public_key(key)).to_vec();
    let gid = gid_of(1, 1);
    for c in light.creds.creds.iter_mut() {
        if c.credtype == CredType::SsmServer {
            c.credtype = CredType::GroupOscoreRecipient;
            c.oscore.as_mut().unwrap().group = Some(fields(&gid, &gm, Some(&ccs)));
        }
    }
    let mut sc = switch.creds.clone();
    for c in sc.creds.iter_mut() {
        if c.credtype == CredType::SsmClient {
            c.credtype = CredType::GroupOscoreSender;
            c.oscore.as_mut().unwrap().group = Some(fields(&gid, &gm, None));
        }
    }
    let cred = sc
        .oscore_creds()
        .unwrap()
        .into_iter()
        .find(|c| c.credtype == CredType::GroupOscoreSender)
        .unwrap();
    sender_context(&cred, key, SequenceNumber::volatile(10)).unwrap()
}

fn signed(g: &mut (GroupCommon, GroupSenderContext), v: bool) -> Vec<u8> {
    let piv = g.1.sequence().peek();
    let req = update_request(
        HREF,
        &cbor::map([("value", ciborium::Value::Bool(v))]),
        piv as u16,
        Token::new(&[3, 4]).unwrap(),
        true,
    )
    .to_vec();
    let mut out = vec![0u8; req.len() + 160];
    let opts = RequestOptions {
        outer_no_response: true,
    };
    let (n, _) = g.1.protect_request(&g.0, &req, &mut out, opts).unwrap();
    out.truncate(n);
    out
}

fn applied(e: Option<DeviceEvent>) -> Option<u64> {
    match e {
        Some(DeviceEvent::SsmApplied { piv, .. }) => Some(piv),
        _ => None,
    }
}

fn dropped(e: Option<DeviceEvent>) -> Option<DropReason> {
    match e {
        Some(DeviceEvent::Dropped(r)) => Some(r),
        _ => None,
    }
}

/// Group mode keeps the SSM floor exactly: durable before apply (a failed
/// write means not applied), untouched by a datagram whose signature does
/// not verify (the genuine one with that Partial IV is applied after it),
/// and a restarted light drops everything it accepted before as `Replay`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_mode_floor_is_durable_before_apply_and_untouched_by_a_bad_signature() {
    let mut rng = |b: &mut [u8]| b.copy_from_slice(&ssm_runtime::random_bytes::<64>()[..b.len()]);
    let (mut lights, switches) = generate_group(1, 1, Uuid::from_u128(1), &mut rng);
    let mut g = group_mode(&mut lights[0], &switches[0], &[0x11; 32]);
    let lo = NetIf::by_name("lo").unwrap().ipv4_addr().unwrap();
    let sock = sender_v4(lo, 1).unwrap();
    // Not the other test's port: each light hears only its own datagrams.
    let group_port = ssm_testkit::test_port(1);
    let to = (&sock, group_port);
    let dir = TempDir::new("test-floor-group");
    let h = light(&lights[0], &dir, group_port).await;
    let mut rx = h.events.subscribe();
    let d10 = signed(&mut g, true);
    assert_eq!(applied(deliver(to, &mut rx, &d10).await), Some(10));
    assert_eq!(stored_floor(&dir), 10);
    // A flipped signature byte at Partial IV 11: dropped, the floor (on
    // disk and in memory) stays at 10.
    let d11 = signed(&mut g, false);
    let mut bad = d11.clone();
    *bad.last_mut().unwrap() ^= 0x01;
    assert_eq!(
        dropped(deliver(to, &mut rx, &bad).await),
        Some(DropReason::BadSignature)
    );
    assert_eq!(stored_floor(&dir), 10, "a bad signature moves no floor");
    assert_eq!(applied(deliver(to, &mut rx, &d11).await), Some(11));
    assert_eq!(h.representation(HREF).unwrap()["value"], false);
    // The floor cannot be written: verified, but not applied.
    let floors = StateDir::new(&dir).floors_path();
    std::fs::remove_file(&floors).unwrap();
    std::fs::create_dir(&floors).unwrap();
    let d12 = signed(&mut g, true);
    assert!(deliver(to, &mut rx, &d12).await.is_none());
    assert_eq!(
        h.representation(HREF).unwrap()["value"],
        false,
        "a group-mode update whose floor is not durable is not applied"
    );
    std::fs::remove_dir(&floors).unwrap();
    let d13 = signed(&mut g, true);
    assert_eq!(applied(deliver(to, &mut rx, &d13).await), Some(13));
    assert_eq!(stored_floor(&dir), 13);
    drop(rx);
    h.stop();
    // Restart: every datagram up to 13 is a replay; 14 is applied.
    let h = light(&lights[0], &dir, group_port).await;
    let mut rx = h.events.subscribe();
    for d in [&d10, &d11, &d12, &d13] {
        assert_eq!(
            dropped(deliver(to, &mut rx, d).await),
            Some(DropReason::Replay)
        );
    }
    let d14 = signed(&mut g, false);
    assert_eq!(applied(deliver(to, &mut rx, &d14).await), Some(14));
    assert_eq!(stored_floor(&dir), 14);
    h.stop();
}

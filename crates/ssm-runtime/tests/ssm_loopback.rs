//! The SSM data path in one process over real sockets on `lo` (IPv4
//! multicast 224.0.1.187): 1 client + 5 lights; discovery, one multicast
//! UPDATE switching every light, read-back by unicast GET, an Observe
//! notification, the negative cases (nothing changes, nothing is sent
//! back) and restarts of lights and client.

use ciborium::Value;
use ssm_coap::{Code, Message, MessageType, OptionNumber};
use ssm_ocf::cbor;
use ssm_ocf::cred::{CredResource, CredType};
use ssm_ocf::device::{Device, DeviceInfo};
use ssm_ocf::provision::generate_group;
use ssm_ocf::ssm::DropReason;
use ssm_ocf::switch::{BinarySwitch, HREF};
use ssm_ocf::{message, Uuid};
use ssm_runtime::client::{discover, request, MulticastScope, MulticastTargets, SsmSender};
use ssm_runtime::device::{start, DeviceConfig, DeviceEvent, DeviceHandle};
use ssm_runtime::random_bytes;
use ssm_runtime::store::FileSequenceStore;
use ssm_testkit::TempDir;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

const LIGHTS: usize = 5;

fn port(offset: u16) -> u16 {
    ssm_testkit::test_port(u32::from(offset))
}

async fn start_light(
    i: usize,
    uuid: Uuid,
    creds: &CredResource,
    dir: &Path,
    port: u16,
) -> DeviceHandle {
    let mut d = Device::new(DeviceInfo::light(&format!("light {i}"), uuid));
    d.add_resource(HREF, Box::new(BinarySwitch::default()), true);
    d.add_resource("/plain", Box::new(BinarySwitch::default()), false);
    let mut cfg = DeviceConfig::loopback(dir.join(format!("light-{i}")));
    cfg.port = port;
    start(secured(d, uuid, creds), &cfg).await.unwrap()
}

fn value(v: bool) -> Value {
    cbor::map([("value", Value::Bool(v))])
}

/// Waits until `n` lights report an event matching `f`, or the timeout.
async fn wait_events(
    rxs: &mut [tokio::sync::broadcast::Receiver<DeviceEvent>],
    f: impl Fn(&DeviceEvent) -> bool,
) -> usize {
    let mut hits = 0;
    for rx in rxs.iter_mut() {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        while let Ok(Ok(ev)) = tokio::time::timeout_at(deadline, rx.recv()).await {
            if f(&ev) {
                hits += 1;
                break;
            }
        }
    }
    hits
}

async fn unicast_value(light: &DeviceHandle, href: &str) -> Value {
    let peer: SocketAddr = ([127, 0, 0, 1], light.unicast.port()).into();
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let r = request(
        &sock,
        peer,
        message::request(MessageType::Confirmable, Code::GET, href, None),
        Duration::from_millis(500),
        4,
    )
    .await
    .unwrap();
    assert_eq!(r.code, Code::CONTENT);
    message::payload(&r).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_update_switches_every_light_and_attacks_change_nothing() {
    let dir = TempDir::new("test-ssm-lo");
    let port = port(0);
    let mut rng = |b: &mut [u8]| b.copy_from_slice(&random_bytes::<64>()[..b.len()]);
    let (lights, clients) = generate_group(LIGHTS, 1, Uuid::new_v4(), &mut rng);
    let mut handles = Vec::new();
    for (i, l) in lights.iter().enumerate() {
        handles.push(start_light(i, l.uuid, &l.creds, &dir, port).await);
    }
    let mut events: Vec<_> = handles.iter().map(|h| h.events.subscribe()).collect();

    let scope = MulticastScope {
        interfaces: vec!["lo".into()],
        ipv4: true,
        ipv6_scopes: vec![],
        port,
        hops: 1,
    };
    let targets = MulticastTargets::open(&scope).unwrap();

    // Discovery: every light answers by unicast and marks the switch SSM.
    let found = discover(
        &targets,
        Some("rt=oic.r.switch.binary"),
        Duration::from_millis(500),
    )
    .await
    .unwrap();
    assert_eq!(found.len(), LIGHTS);
    for (_, links) in &found {
        let l = links.iter().find(|l| l.href == HREF).unwrap();
        assert!(l.accepts_ssm());
        assert!(
            links
                .iter()
                .all(|l| l.rt.iter().any(|r| r == "oic.r.switch.binary")),
            "rt filter"
        );
        assert!(!links
            .iter()
            .find(|l| l.href == "/plain")
            .unwrap()
            .accepts_ssm());
    }

    // Observe one light's switch.
    let obs_sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut reg = message::request(MessageType::Confirmable, Code::GET, HREF, None);
    reg.add_option_uint(OptionNumber::OBSERVE, 0);
    let peer0: SocketAddr = ([127, 0, 0, 1], handles[0].unicast.port()).into();
    let first = request(&obs_sock, peer0, reg, Duration::from_millis(500), 4)
        .await
        .unwrap();
    assert_eq!(first.option_uint(OptionNumber::OBSERVE), Some(0));

    // ONE multicast UPDATE switches all lights.
    let client_creds = clients[0].creds.oscore_creds().unwrap();
    let ssm_cred = client_creds
        .iter()
        .find(|c| c.credtype == CredType::SsmClient)
        .unwrap();
    let mut sender =
        SsmSender::new(ssm_cred, FileSequenceStore::new(dir.join("client.ssn"))).unwrap();
    let sent = sender
        .send(&targets, HREF, &value(true), true)
        .await
        .unwrap();
    assert_eq!(sent.len(), 1, "one datagram per configured group");
    let applied = wait_events(&mut events, |e| matches!(e, DeviceEvent::SsmApplied { .. })).await;
    assert_eq!(applied, LIGHTS);
    for h in &handles {
        assert_eq!(unicast_value(h, HREF).await, value(true));
    }
    let note = ssm_runtime::client::next_notification(
        &obs_sock,
        &first.token,
        tokio::time::Instant::now() + Duration::from_secs(3),
    )
    .await
    .unwrap()
    .expect("a NOTIFY");
    assert_eq!(message::payload(&note).unwrap(), value(true));

    // Attacks. Capture a genuine datagram of our own first (OFF).
    let off = ssm_ocf::ssm::update_request(
        HREF,
        &value(false),
        9,
        ssm_coap::Token::new(&[9]).unwrap(),
        true,
    );
    let (genuine, _) = sender.protect(&off).unwrap();
    let (sock, dests) = &targets.targets[0];
    let group = dests[0];
    sock.send_to(&genuine, group).await.unwrap();
    assert_eq!(
        wait_events(&mut events, |e| matches!(e, DeviceEvent::SsmApplied { .. })).await,
        LIGHTS
    );
    let mut attacks: Vec<(Vec<u8>, DropReason)> = vec![(genuine.clone(), DropReason::Replay)];
    // A flipped bit in a datagram whose sequence number was never used.
    let (mut flipped, _) = sender.protect(&off).unwrap();
    let i = flipped.len() - 3;
    flipped[i] ^= 0x10;
    attacks.push((flipped, DropReason::DecryptionFailed));
    // Unprotected multicast POST.
    let mut plain = message::update(MessageType::NonConfirmable, HREF, &value(true));
    plain.message_id = 77;
    attacks.push((plain.to_vec(), DropReason::Unprotected));
    // OSCORE GET via multicast (verifies, not an UPDATE).
    let (get, _) = sender
        .protect(&message::request(
            MessageType::NonConfirmable,
            Code::GET,
            HREF,
            None,
        ))
        .unwrap();
    attacks.push((get, DropReason::NotUpdate));
    // Unknown kid.
    let mut unknown = genuine.clone();
    let kid_at = unknown
        .windows(7)
        .position(|w| w == ssm_cred.sender_id.unwrap().as_bytes())
        .unwrap();
    unknown[kid_at + 6] ^= 0xff;
    attacks.push((unknown, DropReason::UnknownKid));
    for (bytes, reason) in &attacks {
        sock.send_to(bytes, group).await.unwrap();
        let n = wait_events(
            &mut events,
            |e| matches!(e, DeviceEvent::Dropped(r) if r == reason),
        )
        .await;
        assert_eq!(n, LIGHTS, "{reason:?} dropped by every light");
    }
    // An UPDATE to a resource that does not accept SSM verifies but is refused.
    let (to_plain, _) = sender
        .protect(&ssm_ocf::ssm::update_request(
            "/plain",
            &value(true),
            10,
            ssm_coap::Token::new(&[10]).unwrap(),
            true,
        ))
        .unwrap();
    sock.send_to(&to_plain, group).await.unwrap();
    assert_eq!(
        wait_events(&mut events, |e| matches!(e, DeviceEvent::Refused(_))).await,
        LIGHTS
    );
    for h in &handles {
        assert_eq!(
            unicast_value(h, HREF).await,
            value(false),
            "attacks changed nothing"
        );
        assert_eq!(unicast_value(h, "/plain").await, value(false));
    }
    // Nothing was ever sent back to the sender's socket.
    let mut buf = [0u8; 64];
    assert!(
        tokio::time::timeout(Duration::from_millis(300), sock.recv_from(&mut buf))
            .await
            .is_err(),
        "a light answered"
    );

    // Restart every light (state dirs kept): all old datagrams are rejected.
    for h in handles.drain(..) {
        h.stop();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    for (i, l) in lights.iter().enumerate() {
        handles.push(start_light(i, l.uuid, &l.creds, &dir, port).await);
    }
    let mut events: Vec<_> = handles.iter().map(|h| h.events.subscribe()).collect();
    sock.send_to(&genuine, group).await.unwrap();
    assert_eq!(
        wait_events(&mut events, |e| matches!(
            e,
            DeviceEvent::Dropped(DropReason::Replay)
        ))
        .await,
        LIGHTS
    );

    // Restart the client: its new sequence numbers are above the old ones.
    let before = sender.next_sequence_number();
    drop(sender);
    let mut sender =
        SsmSender::new(ssm_cred, FileSequenceStore::new(dir.join("client.ssn"))).unwrap();
    assert!(sender.next_sequence_number() >= before);
    let sent = sender
        .send(&targets, HREF, &value(true), true)
        .await
        .unwrap();
    assert!(sent[0].piv >= before);
    assert_eq!(
        wait_events(&mut events, |e| matches!(e, DeviceEvent::SsmApplied { .. })).await,
        LIGHTS
    );
    for h in &handles {
        assert_eq!(unicast_value(h, HREF).await, value(true));
    }
    drop(handles);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unicast_update_needs_the_pairwise_context() {
    let dir = TempDir::new("test-pairwise");
    let mut rng = |b: &mut [u8]| b.copy_from_slice(&random_bytes::<64>()[..b.len()]);
    let (lights, clients) = generate_group(1, 1, Uuid::new_v4(), &mut rng);
    let light = start_light(0, lights[0].uuid, &lights[0].creds, &dir, port(1)).await;
    let peer: SocketAddr = ([127, 0, 0, 1], light.unicast.port()).into();
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    // Unprotected UPDATE: refused.
    let r = request(
        &sock,
        peer,
        message::update(MessageType::Confirmable, HREF, &value(true)),
        Duration::from_millis(500),
        4,
    )
    .await
    .unwrap();
    assert_eq!(r.code, Code::UNAUTHORIZED);
    // Pair-wise OSCORE UPDATE: applied (after the Echo round trip a fresh
    // light asks for).
    let creds = clients[0].creds.oscore_creds().unwrap();
    let pw = creds
        .iter()
        .find(|c| c.credtype == CredType::PairwiseOscore && c.subject == Some(lights[0].uuid))
        .unwrap();
    let ctx = ssm_ocf::ssm::pairwise_context(
        pw,
        ssm_oscore::SequenceNumber::resume(0, 16),
        ssm_oscore::ReplayState::Window(ssm_oscore::ReplayWindow::new(32)),
    )
    .unwrap();
    let mut client =
        ssm_runtime::udp::OscoreClient::new(sock, ctx, FileSequenceStore::new(dir.join("pw.ssn")));
    client.config.ack_timeout = Duration::from_millis(500);
    let r: Message = client
        .request(
            peer,
            message::update(MessageType::Confirmable, HREF, &value(true)),
        )
        .await
        .unwrap();
    assert_eq!(r.code, Code::CHANGED);
    assert_eq!(
        light.representation(HREF),
        Some(serde_json::json!({"value": true}))
    );
    drop(light);
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

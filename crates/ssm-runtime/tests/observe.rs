//! Observe over real sockets on `lo` against the device runtime: an OSCORE
//! observation is notified protected and in order; an RST cancels a plain
//! observation by Message ID (RFC 7641 §3.6); 64 spoofed plain
//! registrations (public read on) neither push a switch's OSCORE
//! observation off the list nor make a change send 64 notifications to the
//! victim (the review's F7); a DTLS observation is notified in its
//! session; a retransmitted CON OSCORE UPDATE gets the same protected
//! response and is applied once (F8).

use ciborium::Value;
use ssm_coap::{Code, Message, MessageType, OptionNumber, Packet, Token};
use ssm_ocf::cbor;
use ssm_ocf::cred::{CredResource, CredType};
use ssm_ocf::device::{Device, DeviceInfo};
use ssm_ocf::provision::{generate_group, Member};
use ssm_ocf::switch::{BinarySwitch, HREF};
use ssm_ocf::{message, Uuid};
use ssm_runtime::device::{start, DeviceConfig, DeviceHandle};
use ssm_runtime::random_bytes;
use ssm_runtime::store::FileSequenceStore;
use ssm_runtime::udp::OscoreClient;
use ssm_testkit::TempDir;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use tokio::net::UdpSocket;

fn port(offset: u16) -> u16 {
    ssm_testkit::test_port(u32::from(offset))
}

fn value(v: bool) -> Value {
    cbor::map([("value", Value::Bool(v))])
}

/// A peer with a DTLS PSK (credtype 1) on the light and an ACE letting it
/// RETRIEVE and OBSERVE the switch resource.
const READER: Uuid = Uuid::from_u128(0x1122_3344_5566_4778_9911_2233_4455_6677);
const READER_PSK: [u8; 16] = [0x37; 16];

/// A light owned and in RFNOP with the default ACEs and public read (the
/// default of `ssm creds generate` state dirs), and [`READER`].
async fn light(dir: &Path, mport: u16) -> (DeviceHandle, Member, Member) {
    use ssm_ocf::security::acl2::{Ace, AceResource, AceSubject, PERM_N, PERM_R};
    let mut rng = |b: &mut [u8]| b.copy_from_slice(&random_bytes::<64>()[..b.len()]);
    let (mut lights, mut clients) = generate_group(1, 1, Uuid::new_v4(), &mut rng);
    let l = lights.remove(0);
    let mut d = Device::new(DeviceInfo::light("light", l.uuid));
    d.add_resource(HREF, Box::new(BinarySwitch::default()), true);
    let mut aces = ssm_ocf::provision::default_aces(&l.creds, &[HREF], true);
    aces.push(Ace {
        aceid: 0,
        subject: AceSubject::Uuid { uuid: READER },
        resources: vec![AceResource::Href { href: HREF.into() }],
        permission: PERM_R | PERM_N,
    });
    let mut creds = l.creds.clone();
    creds.creds.push(ssm_ocf::cred::Credential {
        credid: 9000,
        subjectuuid: READER.to_string(),
        credtype: ssm_ocf::cred::CredType::PairwiseSymmetric,
        privatedata: Some(ssm_ocf::cred::PrivateData::raw(&READER_PSK)),
        oscore: None,
    });
    d.set_security(ssm_ocf::provision::provisioned_state(
        l.uuid,
        Uuid::from_u128(0x0b7),
        creds,
        aces,
    ));
    let mut cfg = DeviceConfig::loopback(dir.join("light"));
    cfg.port = mport;
    (start(d, &cfg).await.unwrap(), l, clients.remove(0))
}

/// The switch's pair-wise OSCORE client for `light`.
async fn client(dir: &Path, creds: &CredResource, light: Uuid) -> OscoreClient<FileSequenceStore> {
    let creds = creds.oscore_creds().unwrap();
    let pw = creds
        .iter()
        .find(|c| c.credtype == CredType::PairwiseOscore && c.subject == Some(light))
        .unwrap();
    let ctx = ssm_ocf::ssm::pairwise_context(
        pw,
        ssm_oscore::SequenceNumber::resume(0, 16),
        ssm_oscore::ReplayState::Window(ssm_oscore::ReplayWindow::new(32)),
    )
    .unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut c = OscoreClient::new(sock, ctx, FileSequenceStore::new(dir.join("pw.ssn")));
    c.config.ack_timeout = Duration::from_millis(500);
    c
}

fn unicast(h: &DeviceHandle) -> SocketAddr {
    ([127, 0, 0, 1], h.unicast.port()).into()
}

/// A plain NON GET with Observe 0 from `sock` (token `t`).
async fn plain_register(sock: &UdpSocket, to: SocketAddr, t: u32) {
    let mut m = message::request(MessageType::NonConfirmable, Code::GET, HREF, None);
    m.message_id = t as u16;
    m.token = Token::new(&t.to_be_bytes()).unwrap();
    m.add_option_uint(OptionNumber::OBSERVE, 0);
    sock.send_to(&m.to_vec(), to).await.unwrap();
    let mut buf = [0u8; 1500];
    let (n, _) = tokio::time::timeout(Duration::from_secs(3), sock.recv_from(&mut buf))
        .await
        .expect("registration answered")
        .unwrap();
    let r = Message::parse(&buf[..n]).unwrap();
    assert_eq!(r.code, Code::CONTENT, "public read/observe is on");
    assert_eq!(r.option_uint(OptionNumber::OBSERVE), Some(0));
}

/// Everything `sock` receives within `wait`.
async fn received(sock: &UdpSocket, wait: Duration) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 1500];
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(Ok((n, _))) = tokio::time::timeout_at(deadline, sock.recv_from(&mut buf)).await {
        out.push(buf[..n].to_vec());
    }
    out
}

async fn switch_to(c: &mut OscoreClient<FileSequenceStore>, to: SocketAddr, v: bool) {
    let r = c
        .request(
            to,
            message::update(MessageType::Confirmable, HREF, &value(v)),
        )
        .await
        .unwrap();
    assert_eq!(r.code, Code::CHANGED);
}

/// The OSCORE observation gets protected, verified notifications; a plain
/// observer of the same resource gets plain ones; the secured observer is
/// never sent a plaintext one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oscore_observation_is_notified_protected() {
    let dir = TempDir::new("test-observe-oscore");
    let (h, l, sw) = light(&dir, port(0)).await;
    let to = unicast(&h);
    std::fs::create_dir_all(dir.join("a")).unwrap();
    let mut obs = client(&dir.join("a"), &sw.creds, l.uuid).await;
    let reg = message::request(MessageType::Confirmable, Code::GET, HREF, None);
    let (first, mut o) = obs.observe(to, reg).await.unwrap();
    assert_eq!(first.code, Code::CONTENT);
    assert_eq!(
        message::payload(&first).unwrap(),
        value(false),
        "the first response is the current state"
    );
    // The same client (one sender context: one sequence of Partial IVs)
    // switches the light; the notifications that arrive meanwhile are kept.
    for v in [true, false, true] {
        switch_to(&mut obs, to, v).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        let n = obs
            .next_notification(&mut o, deadline)
            .await
            .unwrap()
            .expect("a protected notification");
        assert_eq!(n.code, Code::CONTENT);
        assert_eq!(message::payload(&n).unwrap(), value(v));
    }
    assert_eq!(o.out_of_order, 0);
    drop(h);
    let _ = std::fs::remove_dir_all(&dir);
}

/// RFC 7641 §3.6: an RST (Empty, no token) with the Message ID of a
/// notification ends that observation. On the old code the RST was
/// matched by token (which an RST does not have) and the observer stayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rst_by_message_id_cancels_observation() {
    let dir = TempDir::new("test-observe-rst");
    let (h, l, sw) = light(&dir, port(1)).await;
    let to = unicast(&h);
    std::fs::create_dir_all(dir.join("w")).unwrap();
    let mut writer = client(&dir.join("w"), &sw.creds, l.uuid).await;
    let plain = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    plain_register(&plain, to, 1).await;
    switch_to(&mut writer, to, true).await;
    let got = received(&plain, Duration::from_millis(500)).await;
    assert_eq!(got.len(), 1, "one notification");
    let mid = Packet::new_checked(&got[0][..]).unwrap().message_id();
    // An RST with another Message ID changes nothing…
    let rst =
        |mid: u16| Message::new(MessageType::Reset, Code::EMPTY, mid, Token::default()).to_vec();
    plain.send_to(&rst(mid.wrapping_add(1)), to).await.unwrap();
    switch_to(&mut writer, to, false).await;
    let got = received(&plain, Duration::from_millis(500)).await;
    assert_eq!(got.len(), 1, "still observed");
    let mid = Packet::new_checked(&got[0][..]).unwrap().message_id();
    // …the RST answering the notification ends the observation.
    plain.send_to(&rst(mid), to).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    switch_to(&mut writer, to, true).await;
    let got = received(&plain, Duration::from_millis(700)).await;
    assert!(got.is_empty(), "no notification after the RST: {got:?}");
    drop(h);
    let _ = std::fs::remove_dir_all(&dir);
}

/// F7 as the attack: with public read on, 64 spoofed plain registrations
/// (all "from" one victim address, different ports and tokens) after the
/// switch's OSCORE observation. One change must still notify the switch,
/// and must not send 64 notifications to the victim.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_plain_registrations_do_not_evict_or_amplify() {
    let dir = TempDir::new("test-observe-f7");
    let (h, l, sw) = light(&dir, port(2)).await;
    let to = unicast(&h);
    std::fs::create_dir_all(dir.join("a")).unwrap();
    let mut switch = client(&dir.join("a"), &sw.creds, l.uuid).await;
    let (_, mut o) = switch
        .observe(
            to,
            message::request(MessageType::Confirmable, Code::GET, HREF, None),
        )
        .await
        .unwrap();
    let mut victims = Vec::new();
    for i in 0..64u32 {
        let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        plain_register(&s, to, 100 + i).await;
        victims.push(s);
    }
    switch_to(&mut switch, to, true).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    let n = switch
        .next_notification(&mut o, deadline)
        .await
        .unwrap()
        .expect("the switch is still notified");
    assert_eq!(message::payload(&n).unwrap(), value(true));
    let mut to_victim = 0;
    for s in &victims {
        to_victim += received(s, Duration::from_millis(20)).await.len();
    }
    assert!(
        to_victim <= ssm_ocf::observe::MAX_PER_SOURCE,
        "{to_victim} notifications to one victim address for one change"
    );
    drop(h);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The CoAP messages a DTLS session delivers from `peer` on `sock` within
/// `wait`; every datagram from the light must be a DTLS record.
async fn dtls_messages(
    sock: &UdpSocket,
    peer: SocketAddr,
    s: &mut ssm_dtls::DtlsSession,
    wait: Duration,
) -> Vec<Message> {
    let mut out = Vec::new();
    let mut buf = [0u8; 2048];
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(Ok((n, from))) = tokio::time::timeout_at(deadline, sock.recv_from(&mut buf)).await
    {
        if from != peer {
            continue;
        }
        assert!(
            matches!(buf[0], 20..=25),
            "a datagram that is not DTLS to the DTLS observer: {:02x?}",
            &buf[..n]
        );
        let _ = s.handle_datagram(&buf[..n]);
        ssm_dtls::send_pending(s, sock, peer).await.unwrap();
        while let Some(app) = s.poll_app_data() {
            if let Ok(m) = Message::parse(&app) {
                out.push(m);
            }
        }
        if !out.is_empty() {
            break;
        }
    }
    out
}

/// A DTLS observer (before: registered as "dtls:<addr>", which failed to
/// parse, so it got nothing) gets its notifications in its session, never
/// as plain datagrams.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dtls_observation_is_notified_in_its_session() {
    let dir = TempDir::new("test-observe-dtls");
    let (h, l, sw) = light(&dir, port(3)).await;
    let to = unicast(&h);
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let cfg = ssm_dtls::DtlsConfig::psk_client(READER.as_bytes().to_vec(), READER_PSK.to_vec());
    let mut s = ssm_dtls::connect(&sock, to, &cfg, Duration::from_secs(5))
        .await
        .unwrap();
    let mut reg = message::request(MessageType::Confirmable, Code::GET, HREF, None);
    reg.message_id = 77;
    reg.token = Token::new(&[0xd7]).unwrap();
    reg.add_option_uint(OptionNumber::OBSERVE, 0);
    s.send_app_data(&reg.to_vec()).unwrap();
    ssm_dtls::send_pending(&mut s, &sock, to).await.unwrap();
    let r = dtls_messages(&sock, to, &mut s, Duration::from_secs(3)).await;
    assert_eq!(r.len(), 1, "the registration is answered");
    assert_eq!(r[0].code, Code::CONTENT);
    assert_eq!(r[0].option_uint(OptionNumber::OBSERVE), Some(0));
    std::fs::create_dir_all(dir.join("w")).unwrap();
    let mut writer = client(&dir.join("w"), &sw.creds, l.uuid).await;
    for (i, v) in [true, false].into_iter().enumerate() {
        switch_to(&mut writer, to, v).await;
        let n = dtls_messages(&sock, to, &mut s, Duration::from_secs(3)).await;
        assert_eq!(n.len(), 1, "a notification in the session");
        assert_eq!(n[0].token, reg.token);
        assert_eq!(n[0].option_uint(OptionNumber::OBSERVE), Some(i as u32 + 1));
        assert_eq!(message::payload(&n[0]).unwrap(), value(v));
    }
    drop(h);
    let _ = std::fs::remove_dir_all(&dir);
}

/// F8 as the attack of a lossy network: a CON OSCORE UPDATE whose response
/// is lost is retransmitted byte for byte; the light must answer the same
/// protected response again (before: a plain "4.01 Replay detected", so
/// the client reported a failure for an update that was applied) and apply
/// it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retransmitted_update_gets_the_same_protected_response() {
    let dir = TempDir::new("test-observe-f8");
    let (h, l, sw) = light(&dir, port(4)).await;
    let to = unicast(&h);
    std::fs::create_dir_all(dir.join("w")).unwrap();
    // A first exchange establishes freshness (the light's Echo round trip).
    let mut c = client(&dir.join("w"), &sw.creds, l.uuid).await;
    switch_to(&mut c, to, false).await;
    drop(c);
    let creds = sw.creds.oscore_creds().unwrap();
    let pw = creds
        .iter()
        .find(|c| c.credtype == CredType::PairwiseOscore && c.subject == Some(l.uuid))
        .unwrap();
    // Above anything the first client may have used.
    let mut ctx = ssm_ocf::ssm::pairwise_context(
        pw,
        ssm_oscore::SequenceNumber::volatile(1000),
        ssm_oscore::ReplayState::Window(ssm_oscore::ReplayWindow::new(32)),
    )
    .unwrap();
    let mut req = message::update(MessageType::Confirmable, HREF, &value(true));
    req.message_id = 0x4242;
    req.token = Token::new(&[0xf8]).unwrap();
    let mut wire = vec![0u8; 256];
    let (n, binding) = ctx
        .sender
        .protect_request(&req.to_vec(), &mut wire)
        .unwrap();
    wire.truncate(n);
    let mut events = h.events.subscribe();
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut answers = Vec::new();
    for _ in 0..2 {
        // The first answer is "lost": the client sends the same bytes again.
        sock.send_to(&wire, to).await.unwrap();
        let got = received(&sock, Duration::from_millis(500)).await;
        assert_eq!(got.len(), 1);
        answers.push(got[0].clone());
    }
    assert_eq!(answers[0], answers[1], "the same protected response");
    let mut r = answers[1].clone();
    let d = ctx.recipient.unprotect_response(&binding, &mut r).unwrap();
    assert_eq!(d.code, Code::CHANGED);
    let mut applied = 0;
    while let Ok(e) = events.try_recv() {
        if matches!(e, ssm_runtime::device::DeviceEvent::UnicastApplied { .. }) {
            applied += 1;
        }
    }
    assert_eq!(applied, 1, "applied once");
    drop(h);
    let _ = std::fs::remove_dir_all(&dir);
}

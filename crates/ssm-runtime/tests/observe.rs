//! Observe over real sockets on `lo` against the device runtime: an OSCORE
//! observation is notified protected and in order; an RST cancels a plain
//! observation by Message ID (RFC 7641 §3.6); 64 spoofed plain
//! registrations (public read on) neither push a switch's OSCORE
//! observation off the list nor make a change send 64 notifications to the
//! victim (the review's F7).
mod common;

use ciborium::Value;
use common::tempdir;
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
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use tokio::net::UdpSocket;

fn port(offset: u16) -> u16 {
    40000 + (std::process::id() % 10000) as u16 + offset
}

fn value(v: bool) -> Value {
    cbor::map([("value", Value::Bool(v))])
}

/// A light owned and in RFNOP with the default ACEs and public read (the
/// default of `ssm creds generate` state dirs).
async fn light(dir: &Path, mport: u16) -> (DeviceHandle, Member, Member) {
    let mut rng = |b: &mut [u8]| b.copy_from_slice(&random_bytes::<64>()[..b.len()]);
    let (mut lights, mut clients) = generate_group(1, 1, Uuid::new_v4(), &mut rng);
    let l = lights.remove(0);
    let mut d = Device::new(DeviceInfo::light("light", l.uuid));
    d.add_resource(HREF, Box::new(BinarySwitch::default()), true);
    let aces = ssm_ocf::provision::default_aces(&l.creds, &[HREF], true);
    d.set_security(ssm_ocf::provision::provisioned_state(
        l.uuid,
        Uuid::from_u128(0x0b7),
        l.creds.clone(),
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
    let dir = tempdir("observe-oscore");
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
    let dir = tempdir("observe-rst");
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
    let dir = tempdir("observe-f7");
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

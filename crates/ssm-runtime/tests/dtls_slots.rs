//! Regression tests, written as the attacks, for the device's DTLS table
//! (SECURITY-REVIEW F2) and owner-transfer session binding (F5), over real
//! sockets on 127.0.0.1.
//!
//! * F2: 16 and 64 source ports each send one `0x16` byte and a
//!   well-formed ClientHello without a cookie, again and again; an
//!   onboarding run meanwhile still succeeds promptly, and the flood holds
//!   no session. (At d078798 every
//!   such datagram took one of the 16 session slots for 10 s, and the
//!   onboarding's handshake timed out.) What the flood gets back is no
//!   larger than what it sends.
//! * F5: OBT attempt A stands its PIN session and goes silent; a second
//!   attempt B runs the owner transfer, and A's idle end (12 s) falls in the
//!   middle of it. B's transfer survives: the device ends owned by the OBT,
//!   with the owner PSK both sides derived. While B's transfer runs, a third
//!   PIN session is refused. (At d078798 A's end wiped B's transfer and the
//!   device ended "owned" with a nil owner and no owner PSK.)

use ssm_dtls::{connect, DtlsConfig, DtlsSession};
use ssm_ocf::device::{Device, DeviceInfo};
use ssm_ocf::onboarding::{owner_transfer, Channel};
use ssm_ocf::security::otm::pin_psk;
use ssm_ocf::security::pstat::DeviceOnboardingState as Dos;
use ssm_ocf::security::SecurityState;
use ssm_ocf::switch::{BinarySwitch, HREF};
use ssm_ocf::Uuid;
use ssm_runtime::client::request;
use ssm_runtime::device::{start, DeviceConfig, DeviceHandle};
use ssm_runtime::obt_transport::{dtls_request, onboard, zero_free_uuid};
use ssm_runtime::otm::otm_keys;
use ssm_testkit::TempDir;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;

async fn start_light(dir: &std::path::Path, id: Uuid, port: u16) -> (DeviceHandle, SocketAddr) {
    let mut d = Device::new(DeviceInfo::light("hall light", id));
    d.add_resource(HREF, Box::new(BinarySwitch::default()), true);
    d.set_security(SecurityState::new(id));
    let mut cfg = DeviceConfig::loopback(dir.to_path_buf());
    cfg.port = port;
    let h = start(d, &cfg).await.unwrap();
    let peer = SocketAddr::from(([127, 0, 0, 1], h.unicast.port()));
    (h, peer)
}

/// A real, well-formed first ClientHello (no cookie), as OpenSSL sends it.
fn cookieless_client_hello() -> Vec<u8> {
    let mut c = DtlsSession::client(&DtlsConfig::random_pin_client([0; 16])).unwrap();
    let d = c.poll_transmit().unwrap();
    assert_eq!(d[0], 22, "a handshake record");
    d
}

struct Flood {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    received: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

/// `ports` sockets, each sending `[0x16]` and a cookie-less ClientHello to
/// `device` every 100 ms (the review's attack ran every 10 s), reading
/// what comes back.
async fn flood(device: SocketAddr, ports: usize) -> Flood {
    let mut socks = Vec::new();
    for _ in 0..ports {
        socks.push(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    }
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let received = Arc::new(AtomicU64::new(0));
    let (st, se, re) = (stop.clone(), sent.clone(), received.clone());
    let hello = cookieless_client_hello();
    let task = tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        // Bounded: at most 30 s.
        for _ in 0..300 {
            if st.load(Ordering::Relaxed) {
                break;
            }
            for s in &socks {
                for d in [&[0x16u8][..], &hello[..]] {
                    if s.send_to(d, device).await.is_ok() {
                        se.fetch_add(d.len() as u64, Ordering::Relaxed);
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            for s in &socks {
                while let Ok((n, _)) = s.try_recv_from(&mut buf) {
                    re.fetch_add(n as u64, Ordering::Relaxed);
                }
            }
        }
    });
    Flood {
        stop,
        sent,
        received,
        task,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f2_a_cookieless_flood_does_not_block_onboarding() {
    for (i, ports) in [16usize, 64].into_iter().enumerate() {
        let dir = TempDir::new(&format!("test-dtls-flood-{ports}"));
        let port = ssm_testkit::test_port(i as u32);
        let (h, peer) = start_light(&dir, zero_free_uuid(), port).await;
        let pin = h.pin().unwrap();
        let f = flood(peer, ports).await;
        // Let the flood fill whatever it can: nothing, since no state is
        // kept for a peer before a verified cookie.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            h.dtls_sessions(),
            0,
            "{ports} ports: the flood took sessions"
        );
        let started = Instant::now();
        let (obt, new_id) = (zero_free_uuid(), zero_free_uuid());
        let r = tokio::time::timeout(
            Duration::from_secs(8),
            onboard(
                peer,
                &pin,
                obt,
                new_id,
                (Uuid::new_v4(), "hall"),
                &mut |_, _| {},
            ),
        )
        .await;
        let took = started.elapsed();
        f.stop.store(true, Ordering::Relaxed);
        let _ = f.task.await;
        let (sent, received) = (
            f.sent.load(Ordering::Relaxed),
            f.received.load(Ordering::Relaxed),
        );
        match r {
            Ok(Ok(done)) => assert_eq!(done.device_uuid, new_id),
            other => panic!("{ports} flooding ports: onboarding failed: {other:?}"),
        }
        assert!(
            took < Duration::from_secs(3),
            "{ports} ports: onboarding took {took:?}"
        );
        let s = h.security().unwrap();
        assert_eq!((s.doxm.owned, s.pstat.dos), (true, Dos::Rfnop));
        // Only stateless HelloVerifyRequests went back, never more bytes
        // than came in.
        assert!(sent > 0);
        assert!(
            received <= sent,
            "{ports} ports: {received} B back for {sent} B sent"
        );
        eprintln!(
            "{ports} ports: onboarded in {took:?} under a flood of {sent} B; {received} B back"
        );
        h.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f5_an_abandoned_sessions_end_does_not_wipe_a_running_transfer() {
    let dir = TempDir::new("test-otm-binding");
    let port = ssm_testkit::free_udp_port();
    let factory = zero_free_uuid();
    let (h, peer) = start_light(&dir, factory, port).await;
    let pin = h.pin().unwrap();
    let cfg = DtlsConfig::random_pin_client(*pin_psk(&pin, &factory))
        .with_handshake_timeout(Duration::from_secs(4));

    // Attempt A: the PIN session stands, then its OBT goes away (silent).
    let sock_a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let _a = connect(&sock_a, peer, &cfg, Duration::from_secs(4))
        .await
        .expect("session A");
    let a_done = Instant::now();

    // Attempt B starts 9 s later and runs the transfer up to the owner
    // credential.
    tokio::time::sleep(Duration::from_secs(9)).await;
    let (obt, new_id) = (zero_free_uuid(), zero_free_uuid());
    let mut seq = owner_transfer(obt, new_id, (Uuid::new_v4(), "hall"));
    let sock_b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let first = seq.next_step().cloned().unwrap();
    assert_eq!(first.channel, Channel::Plain);
    let r = request(&sock_b, peer, first.request, Duration::from_millis(500), 5)
        .await
        .unwrap();
    seq.on_response(&r).unwrap();
    let mut b = connect(&sock_b, peer, &cfg, Duration::from_secs(4))
        .await
        .expect("session B (A never wrote anything)");
    let b_keys = otm_keys(&b.key_material().unwrap());
    loop {
        let s = seq.next_step().cloned().unwrap();
        assert_eq!(s.channel, Channel::OwnerTransfer);
        let r = dtls_request(&sock_b, peer, &mut b, s.request)
            .await
            .unwrap();
        seq.on_response(&r).unwrap();
        if s.what == "owner credential" {
            break;
        }
    }

    // Meanwhile a third PIN session is refused: B's transfer runs. (The
    // PIN PSK is salted with the device's current UUID, which B set.)
    assert_eq!(h.security().unwrap().device_uuid(), new_id);
    let cfg_c = DtlsConfig::random_pin_client(*pin_psk(&pin, &new_id))
        .with_handshake_timeout(Duration::from_secs(2));
    let sock_c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let c = connect(&sock_c, peer, &cfg_c, Duration::from_secs(2)).await;
    assert!(c.is_err(), "a second owner transfer started while B's runs");

    // A's idle end (12 s after its last datagram) passes.
    let a_end = a_done + Duration::from_secs(13);
    tokio::time::sleep(a_end.saturating_duration_since(Instant::now())).await;
    let s = h.security().unwrap();
    assert_eq!(
        s.doxm.devowneruuid, obt,
        "A's end wiped B's transfer in progress"
    );

    // B finishes.
    while let Some(s) = seq.next_step().cloned() {
        let r = dtls_request(&sock_b, peer, &mut b, s.request)
            .await
            .unwrap();
        seq.on_response(&r)
            .unwrap_or_else(|e| panic!("{}: {e}", s.what));
    }
    assert!(seq.is_done());
    let s = h.security().unwrap();
    assert_eq!(
        (
            s.doxm.owned,
            s.pstat.dos,
            s.device_uuid(),
            s.doxm.devowneruuid
        ),
        (true, Dos::Rfnop, new_id, obt)
    );
    assert_eq!(
        s.owner_psk(),
        Some(b_keys.owner_psk(&obt, &new_id).to_vec()),
        "the device holds the owner PSK the OBT derived"
    );
    h.stop();
}

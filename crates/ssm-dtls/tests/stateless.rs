//! The stateless cookie exchange (RFC 6347 §4.2.1) in front of
//! `DtlsSession::accept`: no session before a verified cookie, and both
//! OCF handshakes (Random PIN, owner PSK) complete through it, also when
//! the HelloVerifyRequest or the server's first flight is lost.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use ssm_dtls::{check_client_hello, CookieKeys, DtlsConfig, DtlsSession, HelloCheck};

fn peer() -> SocketAddr {
    "198.51.100.7:40000".parse().unwrap()
}

/// Runs the client against a stateless front end plus the session it
/// creates, dropping the first `lose_hvr` HelloVerifyRequests and the
/// first `lose_flight` server datagrams after the session exists.
fn handshake_through_cookie(
    cfg_c: &DtlsConfig,
    cfg_s: &DtlsConfig,
    lose_hvr: usize,
    lose_flight: usize,
) -> (DtlsSession, DtlsSession, usize) {
    let keys = CookieKeys::new([0x42; 32]);
    let mut c = DtlsSession::client(cfg_c).unwrap();
    let mut server: Option<DtlsSession> = None;
    let (mut hvr_sent, mut lost_hvr, mut lost_flight) = (0, 0, 0);
    let start = Instant::now();
    while c.is_handshaking() || server.as_ref().is_some_and(|s| s.is_handshaking()) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{c:?} / {server:?}"
        );
        let mut idle = true;
        while let Some(d) = c.poll_transmit() {
            idle = false;
            match &mut server {
                Some(s) => {
                    let _ = s.handle_datagram(&d);
                }
                None => match check_client_hello(&keys, peer(), &d) {
                    HelloCheck::SendHelloVerify(hvr) => {
                        hvr_sent += 1;
                        if lost_hvr < lose_hvr {
                            lost_hvr += 1;
                        } else {
                            let _ = c.handle_datagram(&hvr);
                        }
                    }
                    HelloCheck::Verified(v) => {
                        server = Some(DtlsSession::accept(cfg_s, v).unwrap())
                    }
                    HelloCheck::Drop => panic!("client datagram dropped"),
                },
            }
        }
        if let Some(s) = &mut server {
            while let Some(d) = s.poll_transmit() {
                idle = false;
                if lost_flight < lose_flight {
                    lost_flight += 1;
                } else {
                    let _ = c.handle_datagram(&d);
                }
            }
        }
        if idle {
            // Let the retransmission timers run (OpenSSL: 1 s, doubling).
            std::thread::sleep(Duration::from_millis(50));
            let _ = c.handle_timeout();
            if let Some(s) = &mut server {
                let _ = s.handle_timeout();
            }
        }
    }
    (c, server.expect("a session"), hvr_sent)
}

#[test]
fn random_pin_and_owner_psk_handshakes_complete_through_the_cookie_exchange() {
    let pin = [9u8; 16];
    let (mut c, mut s, hvrs) = handshake_through_cookie(
        &DtlsConfig::random_pin_client(pin),
        &DtlsConfig::random_pin_server(DEVICE_UUID, pin),
        0,
        0,
    );
    assert_eq!(hvrs, 1);
    assert!(c.is_established() && s.is_established(), "{c:?} / {s:?}");
    assert_eq!(s.cipher(), Some("ECDHE-PSK-AES128-CBC-SHA256"));
    assert_eq!(
        *c.key_material().unwrap().master_secret,
        *s.key_material().unwrap().master_secret
    );
    assert_eq!(roundtrip(&mut c, &mut s, b"GET"), vec![b"GET".to_vec()]);

    let psk = [3u8; 16];
    let (mut c, mut s, _) = handshake_through_cookie(
        &DtlsConfig::psk_client(CLIENT_UUID, psk),
        &DtlsConfig::psk_server(move |id| (id == CLIENT_UUID).then(|| psk.to_vec())),
        0,
        0,
    );
    assert!(c.is_established() && s.is_established());
    assert_eq!(s.cipher(), Some("PSK-AES128-CCM8"));
    assert_eq!(s.peer_identity().as_deref(), Some(&CLIENT_UUID[..]));
    assert_eq!(roundtrip(&mut c, &mut s, b"POST"), vec![b"POST".to_vec()]);
}

#[test]
fn lost_hello_verify_request_and_lost_server_flight_are_retransmitted() {
    let pin = [5u8; 16];
    let (c, s, hvrs) = handshake_through_cookie(
        &DtlsConfig::random_pin_client(pin),
        &DtlsConfig::random_pin_server(DEVICE_UUID, pin),
        1,
        2,
    );
    // The client's retransmitted first ClientHello got a new (stateless)
    // HelloVerifyRequest; the session retransmitted its lost flight.
    assert_eq!(hvrs, 2);
    assert!(c.is_established() && s.is_established(), "{c:?} / {s:?}");
}

#[test]
fn a_wrong_pin_fails_and_garbage_creates_nothing() {
    let (c, s, _) = handshake_through_cookie(
        &DtlsConfig::random_pin_client([1; 16]).with_handshake_timeout(Duration::from_secs(3)),
        &DtlsConfig::random_pin_server(DEVICE_UUID, [2; 16])
            .with_handshake_timeout(Duration::from_secs(3)),
        0,
        0,
    );
    assert!(!c.is_established() && !s.is_established());
    let keys = CookieKeys::new([0x42; 32]);
    for d in [
        &[0x16u8][..],
        &[0x16; 13],
        &[0x17, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0],
    ] {
        assert_eq!(check_client_hello(&keys, peer(), d), HelloCheck::Drop);
    }
}

//! In-memory handshakes between a client and a server `DtlsSession`.

mod common;

use std::time::{Duration, Instant};

use common::*;
use ssm_dtls::{CipherSuite, DtlsConfig, DtlsSession, Error, RDP_HINT_PREFIX, RDP_IDENTITY};

const PIN_PSK: [u8; 16] = *b"pin-derived-psk!";

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn random_pin_ecdhe_psk_handshake_app_data_and_key_material() {
    let mut c = DtlsSession::client(&DtlsConfig::random_pin_client(PIN_PSK)).unwrap();
    let mut s = DtlsSession::server(&DtlsConfig::random_pin_server(DEVICE_UUID, PIN_PSK)).unwrap();
    assert!(c.key_material().is_none());
    handshake(&mut c, &mut s);
    assert!(c.is_established(), "{c:?}");
    assert!(s.is_established(), "{s:?}");

    // Identity and hint as OCF wants them.
    assert_eq!(s.peer_identity().as_deref(), Some(RDP_IDENTITY));
    let mut hint = RDP_HINT_PREFIX.to_vec();
    hint.extend_from_slice(&DEVICE_UUID);
    assert_eq!(c.psk_identity_hint(), Some(hint));
    assert_eq!(c.peer_identity(), None);

    // Application data both ways, one datagram per message.
    assert_eq!(
        roundtrip(&mut c, &mut s, b"GET /oic/sec/doxm"),
        vec![b"GET /oic/sec/doxm".to_vec()]
    );
    assert_eq!(
        roundtrip(&mut s, &mut c, b"2.05 Content"),
        vec![b"2.05 Content".to_vec()]
    );
    c.send_app_data(b"one").unwrap();
    c.send_app_data(b"two").unwrap();
    transfer(&mut c, &mut s, &mut pass);
    assert_eq!(s.poll_app_data().as_deref(), Some(&b"one"[..]));
    assert_eq!(s.poll_app_data().as_deref(), Some(&b"two"[..]));
    assert_eq!(s.poll_app_data(), None);

    // Key material agrees.
    let kc = c.key_material().expect("client key material");
    let ks = s.key_material().expect("server key material");
    assert_eq!(*kc.master_secret, *ks.master_secret);
    assert_ne!(*kc.master_secret, [0u8; 48]);
    assert_eq!(kc.client_random, ks.client_random);
    assert_eq!(kc.server_random, ks.server_random);
    assert_ne!(kc.client_random, kc.server_random);
    assert_eq!(kc.cipher, "ECDHE-PSK-AES128-CBC-SHA256");
    assert_eq!(
        ks.cipher,
        CipherSuite::EcdhePskWithAes128CbcSha256.openssl_name()
    );
    assert_eq!(c.cipher(), Some("ECDHE-PSK-AES128-CBC-SHA256"));

    // Secrets never in Debug.
    let dbg = format!(
        "{kc:?} {c:?} {s:?} {:?}",
        DtlsConfig::random_pin_client(PIN_PSK)
    );
    assert!(!dbg.contains(&hex(&kc.master_secret[..])), "{dbg}");
    assert!(!dbg.contains("pin-derived-psk"), "{dbg}");
    assert!(!dbg.contains(&hex(&PIN_PSK)), "{dbg}");
    assert!(dbg.contains("<redacted>"), "{dbg}");

    // Close: the peer sees close_notify.
    c.close();
    assert!(c.is_closed());
    transfer(&mut c, &mut s, &mut pass);
    assert!(s.is_closed(), "{s:?}");
    assert_eq!(c.send_app_data(b"x"), Err(Error::Closed));
    // Key material stays available after close.
    assert!(c.key_material().is_some());
}

#[test]
fn psk_ccm8_with_uuid_identity_and_lookup() {
    let client_psk = [0x5au8; 16];
    let lookup = move |id: &[u8]| (id == CLIENT_UUID).then(|| client_psk.to_vec());
    let mut c = DtlsSession::client(&DtlsConfig::psk_client(CLIENT_UUID, client_psk)).unwrap();
    let mut s = DtlsSession::server(&DtlsConfig::psk_server(lookup)).unwrap();
    handshake(&mut c, &mut s);
    assert!(c.is_established() && s.is_established(), "{c:?} / {s:?}");
    assert_eq!(s.peer_identity(), Some(CLIENT_UUID.to_vec()));
    assert_eq!(c.psk_identity_hint(), None);

    let kc = c.key_material().unwrap();
    let ks = s.key_material().unwrap();
    assert_eq!(kc.cipher, "PSK-AES128-CCM8");
    assert_eq!(ks.cipher, "PSK-AES128-CCM8");
    assert_eq!(*kc.master_secret, *ks.master_secret);
    assert_eq!(
        (kc.client_random, kc.server_random),
        (ks.client_random, ks.server_random)
    );

    assert_eq!(roundtrip(&mut c, &mut s, b"ping"), vec![b"ping".to_vec()]);
    assert_eq!(roundtrip(&mut s, &mut c, b"pong"), vec![b"pong".to_vec()]);
    // Largest allowed payload fits in one datagram of the configured size.
    let big = vec![0xabu8; c.max_app_data()];
    c.send_app_data(&big).unwrap();
    let d = c.poll_transmit().unwrap();
    assert!(d.len() <= 1500, "{}", d.len());
    s.handle_datagram(&d).unwrap();
    assert_eq!(s.poll_app_data(), Some(big));
    assert!(matches!(
        c.send_app_data(&vec![0u8; c.max_app_data() + 1]),
        Err(Error::AppDataTooLarge { .. })
    ));
}

#[test]
fn psk_session_can_negotiate_ecdhe_psk() {
    let psk = [9u8; 16];
    let cfg_c = DtlsConfig::psk_client(CLIENT_UUID, psk)
        .with_ciphers(&[CipherSuite::EcdhePskWithAes128CbcSha256]);
    let mut c = DtlsSession::client(&cfg_c).unwrap();
    let mut s = DtlsSession::server(&DtlsConfig::psk_server(move |_| Some(psk.to_vec()))).unwrap();
    handshake(&mut c, &mut s);
    assert_eq!(c.cipher(), Some("ECDHE-PSK-AES128-CBC-SHA256"));
    assert_eq!(s.cipher(), Some("ECDHE-PSK-AES128-CBC-SHA256"));
}

#[test]
fn without_cookie_exchange() {
    let psk = [3u8; 16];
    let mut c = DtlsSession::client(&DtlsConfig::psk_client(CLIENT_UUID, psk)).unwrap();
    let cfg_s = DtlsConfig::psk_server(move |_| Some(psk.to_vec())).with_cookie_exchange(false);
    let mut s = DtlsSession::server(&cfg_s).unwrap();
    handshake(&mut c, &mut s);
    assert!(c.is_established() && s.is_established());
}

#[test]
fn cookie_exchange_sends_hello_verify_request() {
    let psk = [3u8; 16];
    let mut c = DtlsSession::client(&DtlsConfig::psk_client(CLIENT_UUID, psk)).unwrap();
    let mut s = DtlsSession::server(&DtlsConfig::psk_server(move |_| Some(psk.to_vec()))).unwrap();
    let ch = c.poll_transmit().unwrap();
    assert_eq!(c.poll_transmit(), None);
    s.handle_datagram(&ch).unwrap();
    let hvr = s.poll_transmit().unwrap();
    assert_eq!(
        s.poll_transmit(),
        None,
        "only a HelloVerifyRequest before the cookie"
    );
    // record type handshake(22), DTLS 1.0 record version, msg type hello_verify_request(3)
    assert_eq!(hvr[0], 22);
    assert_eq!(hvr[13], 3);
}

#[test]
fn wrong_psk_fails_on_both_sides() {
    let timeout = Duration::from_millis(800);
    let cfg_c = DtlsConfig::random_pin_client(*b"wrong-pin-psk-!!").with_handshake_timeout(timeout);
    let cfg_s = DtlsConfig::random_pin_server(DEVICE_UUID, PIN_PSK).with_handshake_timeout(timeout);
    let mut c = DtlsSession::client(&cfg_c).unwrap();
    let mut s = DtlsSession::server(&cfg_s).unwrap();
    let start = Instant::now();
    let rounds = drive(&mut c, &mut s, &mut pass, &mut pass, Duration::from_secs(4));
    assert!(rounds < 50, "{rounds} rounds");
    assert!(start.elapsed() < Duration::from_secs(3));
    assert!(c.is_failed(), "{c:?}");
    assert!(s.is_failed(), "{s:?}");
    // A wrong PSK makes the peer's Finished undecryptable. DTLS discards
    // such records silently (this crate turns Encrypt-then-MAC off so that
    // OpenSSL does), so neither side hears back and both hit the timeout.
    assert_eq!(c.failure(), Some(&Error::Timeout));
    assert_eq!(s.failure(), Some(&Error::Timeout));
    eprintln!(
        "wrong PSK detected after {:?} in {rounds} rounds",
        start.elapsed()
    );
    assert!(c.key_material().is_none() && s.key_material().is_none());
    assert_eq!(
        c.send_app_data(b"x").unwrap_err(),
        c.failure().unwrap().clone()
    );
    assert_eq!(c.next_timeout(), None);
}

#[test]
fn unknown_identity_fails_fast() {
    let psk = [1u8; 16];
    let mut c = DtlsSession::client(&DtlsConfig::psk_client(CLIENT_UUID, psk)).unwrap();
    let mut s = DtlsSession::server(&DtlsConfig::psk_server(|_| None)).unwrap();
    let start = Instant::now();
    drive(&mut c, &mut s, &mut pass, &mut pass, Duration::from_secs(4));
    assert!(
        start.elapsed() < Duration::from_millis(500),
        "{:?}",
        start.elapsed()
    );
    let (Some(Error::HandshakeFailed(cr)), Some(Error::HandshakeFailed(sr))) =
        (c.failure(), s.failure())
    else {
        panic!("{c:?} / {s:?}");
    };
    assert!(
        sr.contains("psk identity not found") || sr.contains("unknown psk identity"),
        "{sr}"
    );
    assert!(cr.contains("unknown psk identity"), "{cr}");
    assert_eq!(s.peer_identity(), None);
}

#[test]
fn panicking_lookup_is_an_unknown_identity() {
    let mut c = DtlsSession::client(&DtlsConfig::psk_client(CLIENT_UUID, [1u8; 16])).unwrap();
    let mut s = DtlsSession::server(&DtlsConfig::psk_server(|_| panic!("lookup bug"))).unwrap();
    drive(&mut c, &mut s, &mut pass, &mut pass, Duration::from_secs(4));
    assert!(c.is_failed() && s.is_failed(), "{c:?} / {s:?}");
}

#[test]
fn no_common_cipher_fails() {
    let psk = [1u8; 16];
    let cfg_c =
        DtlsConfig::psk_client(CLIENT_UUID, psk).with_ciphers(&[CipherSuite::PskWithAes128Ccm8]);
    let mut c = DtlsSession::client(&cfg_c).unwrap();
    let mut s = DtlsSession::server(&DtlsConfig::random_pin_server(DEVICE_UUID, psk)).unwrap();
    drive(&mut c, &mut s, &mut pass, &mut pass, Duration::from_secs(4));
    assert!(
        matches!(c.failure(), Some(Error::HandshakeFailed(_))),
        "{c:?}"
    );
    assert!(
        matches!(s.failure(), Some(Error::HandshakeFailed(_))),
        "{s:?}"
    );
}

/// True for a datagram whose first record is a plaintext handshake message
/// of type `msg_type` (13-byte DTLS record header, then the handshake type).
fn is_handshake(d: &[u8], msg_type: u8) -> bool {
    is_plaintext_handshake(d) && d[13] == msg_type
}

/// First record is an epoch-0 handshake record.
fn is_plaintext_handshake(d: &[u8]) -> bool {
    d.len() > 13 && d[0] == 22 && d[3..5] == [0, 0]
}

#[test]
fn lost_first_flights_are_retransmitted() {
    let psk = [0x42u8; 16];
    let mut c = DtlsSession::client(&DtlsConfig::psk_client(CLIENT_UUID, psk)).unwrap();
    let mut s = DtlsSession::server(&DtlsConfig::psk_server(move |_| Some(psk.to_vec()))).unwrap();
    // Drop the client's first flight (ClientHello) once, and the server's
    // first ServerHello flight once: each side must retransmit on its timer.
    let mut client_dropped = 0;
    let mut c_to_s = |d: &[u8]| {
        if client_dropped == 0 && is_handshake(d, 1) {
            client_dropped += 1;
            return false;
        }
        true
    };
    let mut server_flight_dropped = false;
    let mut server_dropped = 0;
    let mut s_to_c = |d: &[u8]| {
        // ServerHello (2) starts the flight; drop it and the rest of that
        // flight (epoch-0 handshake messages up to ServerHelloDone).
        if !server_flight_dropped && is_plaintext_handshake(d) && !is_handshake(d, 3) {
            server_dropped += 1;
            server_flight_dropped = contains_handshake_type(d, 14);
            return false;
        }
        true
    };
    let start = Instant::now();
    drive(
        &mut c,
        &mut s,
        &mut c_to_s,
        &mut s_to_c,
        Duration::from_secs(5),
    );
    let elapsed = start.elapsed();
    assert!(c.is_established() && s.is_established(), "{c:?} / {s:?}");
    assert_eq!(client_dropped, 1);
    assert!(server_flight_dropped && server_dropped >= 1);
    // Two retransmissions at OpenSSL's 1 s initial timer (both run in parallel).
    assert!(elapsed >= Duration::from_millis(900), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    assert_eq!(
        roundtrip(&mut c, &mut s, b"after loss"),
        vec![b"after loss".to_vec()]
    );
    eprintln!("handshake with two lost flights took {elapsed:?}");
}

/// Walks the plaintext (epoch 0) records of a datagram and reports whether
/// one carries a handshake message of type `msg_type`.
fn contains_handshake_type(d: &[u8], msg_type: u8) -> bool {
    let mut i = 0;
    while i + 13 <= d.len() {
        let len = usize::from(u16::from_be_bytes([d[i + 11], d[i + 12]]));
        if d[i] == 22 && d[i + 3..i + 5] == [0, 0] && i + 13 < d.len() && d[i + 13] == msg_type {
            return true;
        }
        i += 13 + len;
    }
    false
}

#[test]
fn config_validation() {
    let with_nul = [0u8, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];
    assert!(matches!(
        DtlsSession::client(&DtlsConfig::psk_client(with_nul, [1u8; 16])),
        Err(Error::InvalidConfig(_))
    ));
    assert!(matches!(
        DtlsSession::client(&DtlsConfig::psk_client(CLIENT_UUID, Vec::new())),
        Err(Error::InvalidConfig(_))
    ));
    assert!(matches!(
        DtlsSession::client(&DtlsConfig::psk_client(CLIENT_UUID, [1u8; 16]).with_ciphers(&[])),
        Err(Error::InvalidConfig(_))
    ));
    assert!(matches!(
        DtlsSession::client(&DtlsConfig::psk_client(CLIENT_UUID, [1u8; 16]).with_max_datagram(100)),
        Err(Error::InvalidConfig(_))
    ));
    // Roles: a server config cannot start a client and vice versa.
    assert!(matches!(
        DtlsSession::client(&DtlsConfig::psk_server(|_| None)),
        Err(Error::InvalidConfig(_))
    ));
    assert!(matches!(
        DtlsSession::server(&DtlsConfig::psk_client(CLIENT_UUID, [1u8; 16])),
        Err(Error::InvalidConfig(_))
    ));
}

#[test]
fn hint_with_nul_is_truncated_but_owner_transfer_works() {
    let mut uuid = DEVICE_UUID;
    uuid[5] = 0;
    let mut c = DtlsSession::client(&DtlsConfig::random_pin_client(PIN_PSK)).unwrap();
    let mut s = DtlsSession::server(&DtlsConfig::random_pin_server(uuid, PIN_PSK)).unwrap();
    handshake(&mut c, &mut s);
    assert!(c.is_established() && s.is_established());
    let mut expected = RDP_HINT_PREFIX.to_vec();
    expected.extend_from_slice(&uuid[..5]);
    assert_eq!(c.psk_identity_hint(), Some(expected));
}

#[test]
fn misuse_is_reported_not_panicking() {
    let psk = [1u8; 16];
    let mut c = DtlsSession::client(&DtlsConfig::psk_client(CLIENT_UUID, psk)).unwrap();
    let mut s = DtlsSession::server(&DtlsConfig::psk_server(move |_| Some(psk.to_vec()))).unwrap();
    assert_eq!(c.send_app_data(b"early"), Err(Error::NotEstablished));
    assert!(matches!(
        s.handle_datagram(&[0u8; 1501]),
        Err(Error::DatagramTooLarge {
            len: 1501,
            max: 1500
        })
    ));
    // Garbage is ignored by DTLS.
    s.handle_datagram(b"not a dtls record").unwrap();
    s.handle_datagram(&[]).unwrap();
    assert!(s.is_handshaking());
    handshake(&mut c, &mut s);
    assert!(c.is_established() && s.is_established(), "{c:?} / {s:?}");
    // Garbage after the handshake, too.
    s.handle_datagram(&[23, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 9, 0, 4, 1, 2, 3, 4])
        .unwrap();
    assert!(s.is_established());
    assert_eq!(s.poll_app_data(), None);
    // A replayed record is dropped by the replay window.
    c.send_app_data(b"once").unwrap();
    let rec = c.poll_transmit().unwrap();
    s.handle_datagram(&rec).unwrap();
    s.handle_datagram(&rec).unwrap();
    assert_eq!(s.poll_app_data().as_deref(), Some(&b"once"[..]));
    assert_eq!(s.poll_app_data(), None);
}

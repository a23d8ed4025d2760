//! Spoofed or corrupted datagrams must never kill an established session
//! (RFC 6347 §4.1.2.7: invalid records are silently discarded).

mod common;

use common::*;
use ssm_dtls::{CipherSuite, DtlsConfig, DtlsSession};

fn established(cs: CipherSuite) -> (DtlsSession, DtlsSession) {
    let psk = [1u8; 16];
    let cfg_c = DtlsConfig::psk_client(CLIENT_UUID, psk).with_ciphers(&[cs]);
    let mut c = DtlsSession::client(&cfg_c).unwrap();
    let mut s = DtlsSession::server(&DtlsConfig::psk_server(move |_| Some(psk.to_vec()))).unwrap();
    handshake(&mut c, &mut s);
    assert!(c.is_established() && s.is_established(), "{c:?} / {s:?}");
    (c, s)
}

/// A DTLS 1.2 record: type, version fe fd, epoch, 48-bit sequence, length.
fn record(
    content_type: u8,
    epoch: u16,
    seq: u64,
    body: &[u8],
    declared_len: Option<u16>,
) -> Vec<u8> {
    let mut d = vec![content_type, 0xfe, 0xfd];
    d.extend_from_slice(&epoch.to_be_bytes());
    d.extend_from_slice(&seq.to_be_bytes()[2..]);
    d.extend_from_slice(&declared_len.unwrap_or(body.len() as u16).to_be_bytes());
    d.extend_from_slice(body);
    d
}

fn still_works(c: &mut DtlsSession, s: &mut DtlsSession, what: &str) {
    assert!(s.is_established(), "{what}: {s:?}");
    assert_eq!(s.poll_transmit(), None, "{what}: server answered garbage");
    assert_eq!(
        roundtrip(c, s, b"still alive"),
        vec![b"still alive".to_vec()],
        "{what}"
    );
}

#[test]
fn garbage_and_forgeries_are_discarded() {
    for cs in CipherSuite::ALL {
        let mut cases: Vec<(String, Vec<u8>)> = vec![
            (
                "declared length > datagram".into(),
                record(23, 1, 50, &[1; 20], Some(100)),
            ),
            (
                "unknown content type, epoch 1".into(),
                record(99, 1, 50, &[1; 40], None),
            ),
            (
                "unknown content type, epoch 0".into(),
                record(99, 0, 50, &[1; 40], None),
            ),
            (
                "garbage alert, epoch 1".into(),
                record(21, 1, 50, &[1; 40], None),
            ),
            (
                "plaintext fatal alert, epoch 0".into(),
                record(21, 0, 50, &[2, 40], None),
            ),
            (
                "plaintext close_notify, epoch 0".into(),
                record(21, 0, 50, &[1, 0], None),
            ),
            (
                "garbage handshake, epoch 0".into(),
                record(22, 0, 50, &[1; 40], None),
            ),
            (
                "garbage handshake, epoch 1".into(),
                record(22, 1, 50, &[1; 40], None),
            ),
            ("future epoch".into(), record(23, 2, 50, &[1; 40], None)),
            ("TLS record version".into(), {
                let mut r = record(23, 1, 50, &[1; 40], None);
                r[1..3].copy_from_slice(&[3, 3]);
                r
            }),
            ("truncated header".into(), vec![23, 0xfe, 0xfd, 0, 1]),
            ("not DTLS at all".into(), b"GET /oic/res".to_vec()),
        ];
        for len in 1..100 {
            cases.push((
                format!("{len}-byte app record"),
                record(23, 1, 50, &vec![0x5a; len], None),
            ));
        }
        for (what, d) in cases {
            let (mut c, mut s) = established(cs);
            s.handle_datagram(&d)
                .unwrap_or_else(|e| panic!("{cs:?} {what}: {e}"));
            still_works(&mut c, &mut s, &format!("{cs:?} {what}"));
        }
        // A genuine record with one bit flipped anywhere in its protected part.
        let (mut c, mut s) = established(cs);
        c.send_app_data(b"genuine").unwrap();
        let genuine = c.poll_transmit().unwrap();
        for i in 13..genuine.len() {
            let mut t = genuine.clone();
            t[i] ^= 0x01;
            s.handle_datagram(&t)
                .unwrap_or_else(|e| panic!("{cs:?} bit flip at {i}: {e}"));
            assert_eq!(s.poll_app_data(), None, "{cs:?} bit flip at {i} accepted");
        }
        still_works(&mut c, &mut s, &format!("{cs:?} after bit flips"));
        // A ClientHello from a new client on the same association is ignored.
        let mut other =
            DtlsSession::client(&DtlsConfig::psk_client(CLIENT_UUID, [1u8; 16])).unwrap();
        s.handle_datagram(&other.poll_transmit().unwrap()).unwrap();
        still_works(&mut c, &mut s, &format!("{cs:?} after a new ClientHello"));
    }
}

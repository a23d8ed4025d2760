//! Stateless cookie exchange (RFC 6347 §4.2.1), sans-IO: decides what to do
//! with a datagram from a peer that has no session yet, without keeping any
//! state for it.
//!
//! A server answers a ClientHello without a valid cookie with a
//! HelloVerifyRequest carrying
//! `cookie = HMAC-SHA256(secret, peer address ‖ port ‖ ClientHello
//! parameters)` and forgets it. Only a ClientHello that echoes a valid
//! cookie, which proves the peer receives datagrams at its source address,
//! may create a session ([`DtlsSession::accept`]). The secret is random per
//! process and rotates ([`CookieKeys::rotate`]); a cookie made with the
//! previous secret is still accepted, so a rotation never breaks a
//! handshake in progress.
//!
//! The parameters covered are those RFC 6347 §4.2.1 requires the client to
//! repeat in its second ClientHello: `client_version`, `random`,
//! `session_id`, `cipher_suites` and `compression_methods`.
//!
//! [`DtlsSession::accept`]: crate::DtlsSession::accept

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

/// Length of a cookie (a full HMAC-SHA256).
pub const COOKIE_LEN: usize = 32;

/// DTLS record header: type, version, epoch, sequence number, length.
const RECORD_HEADER: usize = 13;
/// DTLS handshake header: type, length, message_seq, fragment offset and
/// length (RFC 6347 §4.2.2).
const HANDSHAKE_HEADER: usize = 12;
const CONTENT_HANDSHAKE: u8 = 22;
const CLIENT_HELLO: u8 = 1;
const HELLO_VERIFY_REQUEST: u8 = 3;
/// DTLS 1.0: RFC 6347 §4.2.1 says the HelloVerifyRequest's
/// `server_version` SHOULD be DTLS 1.0 whatever is negotiated.
const DTLS1_0: [u8; 2] = [0xfe, 0xff];

/// The per-process cookie secrets: the current one and the one before the
/// last rotation. `Debug` never shows them; they are wiped on drop.
#[derive(Clone)]
pub struct CookieKeys {
    current: Zeroizing<[u8; 32]>,
    previous: Option<Zeroizing<[u8; 32]>>,
}

impl CookieKeys {
    /// Keys starting from `secret` (32 random bytes from the caller).
    pub fn new(secret: [u8; 32]) -> Self {
        CookieKeys {
            current: Zeroizing::new(secret),
            previous: None,
        }
    }

    /// Starts using `fresh` (32 new random bytes); cookies made with the
    /// secret in use until now are still accepted until the next rotation.
    pub fn rotate(&mut self, fresh: [u8; 32]) {
        let old = std::mem::replace(&mut self.current, Zeroizing::new(fresh));
        self.previous = Some(old);
    }

    fn cookie(key: &[u8; 32], peer: SocketAddr, hello: &ClientHello<'_>) -> [u8; COOKIE_LEN] {
        // HMAC takes keys of any length.
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length");
        m.update(b"ssm-dtls cookie v1");
        let ip = match peer.ip() {
            IpAddr::V4(a) => a.to_ipv6_mapped(),
            IpAddr::V6(a) => a,
        };
        m.update(&ip.octets());
        m.update(&peer.port().to_be_bytes());
        m.update(hello.client_version);
        m.update(hello.random);
        for field in [hello.session_id, hello.cipher_suites, hello.compression] {
            // Length-prefixed, so fields cannot be shifted into each other.
            m.update(&(field.len() as u32).to_be_bytes());
            m.update(field);
        }
        m.finalize().into_bytes().into()
    }

    fn verify(&self, peer: SocketAddr, hello: &ClientHello<'_>) -> bool {
        if hello.cookie.len() != COOKIE_LEN {
            return false;
        }
        std::iter::once(&self.current)
            .chain(self.previous.as_ref())
            .any(|k| {
                let expected = Self::cookie(k, peer, hello);
                openssl::memcmp::eq(&expected, hello.cookie)
            })
    }
}

impl fmt::Debug for CookieKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CookieKeys(<secret>)")
    }
}

/// What to do with a datagram from a peer without a session
/// ([`check_client_hello`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HelloCheck {
    /// A ClientHello with a valid cookie: create the session with
    /// [`DtlsSession::accept`](crate::DtlsSession::accept).
    Verified(VerifiedHello),
    /// A ClientHello without a (valid) cookie: send these bytes (a
    /// HelloVerifyRequest) back to the peer and keep nothing.
    SendHelloVerify(Vec<u8>),
    /// Anything else: drop it silently (RFC 6347 §4.1.2.7).
    Drop,
}

/// A ClientHello whose cookie verified; the only way to start a server
/// session with [`DtlsSession::accept`](crate::DtlsSession::accept).
#[derive(Clone, PartialEq, Eq)]
pub struct VerifiedHello {
    pub(crate) datagram: Vec<u8>,
    pub(crate) cookie: Vec<u8>,
}

impl fmt::Debug for VerifiedHello {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedHello")
            .field("len", &self.datagram.len())
            .finish_non_exhaustive()
    }
}

/// The fields of a ClientHello the cookie covers.
struct ClientHello<'a> {
    record_seq: &'a [u8],
    client_version: &'a [u8],
    random: &'a [u8],
    session_id: &'a [u8],
    cookie: &'a [u8],
    cipher_suites: &'a [u8],
    compression: &'a [u8],
}

/// A bounds-checked reader; every method returns `None` past the end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<usize> {
        self.take(2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
    }
    fn u24(&mut self) -> Option<usize> {
        self.take(3)
            .map(|b| (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2]))
    }
    fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = usize::from(self.u8()?);
        self.take(n)
    }
    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(n)
    }
}

/// Parses the first record of `datagram` as an unfragmented, unencrypted
/// ClientHello (RFC 6347 §4.1, §4.2.2; RFC 5246 §7.4.1.2). A ClientHello
/// must fit one record and one fragment here, as with OpenSSL's
/// `DTLSv1_listen`: reassembling fragments would need per-peer state.
fn parse(datagram: &[u8]) -> Option<ClientHello<'_>> {
    let mut r = Reader(datagram);
    let header = r.take(RECORD_HEADER)?;
    // Content type handshake, DTLS major version 0xfe, epoch 0.
    if header[0] != CONTENT_HANDSHAKE || header[1] != 0xfe || header[3..5] != [0, 0] {
        return None;
    }
    let record_seq = &header[5..11];
    let len = usize::from(u16::from_be_bytes([header[11], header[12]]));
    let mut rec = Reader(r.take(len)?);
    let msg_type = rec.u8()?;
    let msg_len = rec.u24()?;
    let _message_seq = rec.u16()?;
    let frag_off = rec.u24()?;
    let frag_len = rec.u24()?;
    if msg_type != CLIENT_HELLO || frag_off != 0 || frag_len != msg_len {
        return None;
    }
    let mut body = Reader(rec.take(frag_len)?);
    let client_version = body.take(2)?;
    if client_version[0] != 0xfe {
        return None;
    }
    let random = body.take(32)?;
    let session_id = body.vec8()?;
    let cookie = body.vec8()?;
    let cipher_suites = body.vec16()?;
    let compression = body.vec8()?;
    if session_id.len() > 32 || cipher_suites.len() < 2 || compression.is_empty() {
        return None;
    }
    // Extensions (if any) follow; they are not covered by the cookie.
    Some(ClientHello {
        record_seq,
        client_version,
        random,
        session_id,
        cookie,
        cipher_suites,
        compression,
    })
}

/// The stateless server step for a datagram from `peer`, which has no
/// session: a pure function of the keys, the peer and the bytes.
pub fn check_client_hello(keys: &CookieKeys, peer: SocketAddr, datagram: &[u8]) -> HelloCheck {
    let Some(hello) = parse(datagram) else {
        return HelloCheck::Drop;
    };
    if keys.verify(peer, &hello) {
        return HelloCheck::Verified(VerifiedHello {
            datagram: datagram.to_vec(),
            cookie: hello.cookie.to_vec(),
        });
    }
    let cookie = CookieKeys::cookie(&keys.current, peer, &hello);
    HelloCheck::SendHelloVerify(hello_verify_request(hello.record_seq, &cookie))
}

/// A HelloVerifyRequest record (RFC 6347 §4.2.1): record version DTLS 1.0,
/// the ClientHello's record sequence number, message_seq 0, unfragmented.
fn hello_verify_request(record_seq: &[u8], cookie: &[u8; COOKIE_LEN]) -> Vec<u8> {
    let body_len = 2 + 1 + COOKIE_LEN;
    let mut d = Vec::with_capacity(RECORD_HEADER + HANDSHAKE_HEADER + body_len);
    d.push(CONTENT_HANDSHAKE);
    d.extend_from_slice(&DTLS1_0);
    d.extend_from_slice(&[0, 0]); // epoch
    d.extend_from_slice(record_seq);
    d.extend_from_slice(&((HANDSHAKE_HEADER + body_len) as u16).to_be_bytes());
    d.push(HELLO_VERIFY_REQUEST);
    let len24 = (body_len as u32).to_be_bytes();
    d.extend_from_slice(&len24[1..]); // length
    d.extend_from_slice(&[0, 0]); // message_seq
    d.extend_from_slice(&[0, 0, 0]); // fragment_offset
    d.extend_from_slice(&len24[1..]); // fragment_length
    d.extend_from_slice(&DTLS1_0); // server_version
    d.push(COOKIE_LEN as u8);
    d.extend_from_slice(cookie);
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ClientHello record with the given cookie (RFC 5246 §7.4.1.2).
    fn client_hello(seq: u64, random: u8, cookie: &[u8]) -> Vec<u8> {
        let mut body = vec![0xfe, 0xfd];
        body.extend_from_slice(&[random; 32]);
        body.push(0); // session_id
        body.push(cookie.len() as u8);
        body.extend_from_slice(cookie);
        body.extend_from_slice(&[0, 2, 0xc0, 0x37]); // one suite
        body.extend_from_slice(&[1, 0]); // null compression
        let mut hs = vec![CLIENT_HELLO];
        let l = (body.len() as u32).to_be_bytes();
        hs.extend_from_slice(&l[1..]);
        hs.extend_from_slice(&[0, u8::from(!cookie.is_empty())]);
        hs.extend_from_slice(&[0, 0, 0]);
        hs.extend_from_slice(&l[1..]);
        hs.extend_from_slice(&body);
        let mut d = vec![CONTENT_HANDSHAKE, 0xfe, 0xfd, 0, 0];
        d.extend_from_slice(&seq.to_be_bytes()[2..]);
        d.extend_from_slice(&(hs.len() as u16).to_be_bytes());
        d.extend_from_slice(&hs);
        d
    }

    fn cookie_of(hvr: &[u8]) -> Vec<u8> {
        assert_eq!(hvr[0], CONTENT_HANDSHAKE);
        assert_eq!(hvr[RECORD_HEADER], HELLO_VERIFY_REQUEST);
        let body = &hvr[RECORD_HEADER + HANDSHAKE_HEADER..];
        assert_eq!(&body[..2], &DTLS1_0);
        assert_eq!(usize::from(body[2]), body.len() - 3);
        body[3..].to_vec()
    }

    fn peer(port: u16) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 1], port))
    }

    #[test]
    fn cookie_round_trip_binds_address_port_and_parameters() {
        let keys = CookieKeys::new([7; 32]);
        let HelloCheck::SendHelloVerify(hvr) =
            check_client_hello(&keys, peer(1), &client_hello(5, 1, &[]))
        else {
            panic!("no HelloVerifyRequest");
        };
        // The record sequence number is the ClientHello's (RFC 6347 §4.2.1).
        assert_eq!(&hvr[5..11], &5u64.to_be_bytes()[2..]);
        let cookie = cookie_of(&hvr);
        assert_eq!(cookie.len(), COOKIE_LEN);
        // Echoed by the same peer with the same parameters: verified.
        let second = client_hello(6, 1, &cookie);
        match check_client_hello(&keys, peer(1), &second) {
            HelloCheck::Verified(v) => {
                assert_eq!(v.datagram, second);
                assert_eq!(v.cookie, cookie);
            }
            other => panic!("{other:?}"),
        }
        // Another port, another address, another random, a flipped bit:
        // a new HelloVerifyRequest, never a session.
        for (p, hello) in [
            (peer(2), client_hello(6, 1, &cookie)),
            (
                SocketAddr::from(([192, 0, 2, 2], 1)),
                client_hello(6, 1, &cookie),
            ),
            (peer(1), client_hello(6, 2, &cookie)),
            (peer(1), {
                let mut c = cookie.clone();
                c[0] ^= 1;
                client_hello(6, 1, &c)
            }),
            (peer(1), client_hello(6, 1, &cookie[..31])),
        ] {
            assert!(
                matches!(
                    check_client_hello(&keys, p, &hello),
                    HelloCheck::SendHelloVerify(_)
                ),
                "{p}"
            );
        }
        // Another process (secret): not verified.
        let other = CookieKeys::new([8; 32]);
        assert!(matches!(
            check_client_hello(&other, peer(1), &second),
            HelloCheck::SendHelloVerify(_)
        ));
    }

    #[test]
    fn rotation_keeps_one_previous_secret() {
        let mut keys = CookieKeys::new([1; 32]);
        let HelloCheck::SendHelloVerify(hvr) =
            check_client_hello(&keys, peer(9), &client_hello(0, 3, &[]))
        else {
            panic!();
        };
        let second = client_hello(1, 3, &cookie_of(&hvr));
        keys.rotate([2; 32]);
        assert!(matches!(
            check_client_hello(&keys, peer(9), &second),
            HelloCheck::Verified(_)
        ));
        keys.rotate([3; 32]);
        assert!(matches!(
            check_client_hello(&keys, peer(9), &second),
            HelloCheck::SendHelloVerify(_)
        ));
        assert_eq!(format!("{keys:?}"), "CookieKeys(<secret>)");
    }

    #[test]
    fn anything_but_a_client_hello_is_dropped_without_panic() {
        let keys = CookieKeys::new([7; 32]);
        let good = client_hello(0, 1, &[]);
        // Every truncation, and a few mutations, of a valid ClientHello.
        for n in 0..good.len() {
            assert_eq!(
                check_client_hello(&keys, peer(1), &good[..n]),
                HelloCheck::Drop,
                "{n}"
            );
        }
        let mutate = |i: usize, v: u8| {
            let mut d = good.clone();
            d[i] = v;
            d
        };
        for d in [
            mutate(0, 23),                 // application data
            mutate(1, 0x03),               // TLS, not DTLS
            mutate(4, 1),                  // epoch 1
            mutate(RECORD_HEADER, 2),      // ServerHello
            mutate(RECORD_HEADER + 8, 1),  // fragment offset != 0
            mutate(RECORD_HEADER + 11, 1), // fragment length != length
            vec![0x16],
            vec![0x16; 13],
            vec![0x16; 1500],
        ] {
            assert_eq!(check_client_hello(&keys, peer(1), &d), HelloCheck::Drop);
        }
        // Pseudo-random garbage starting with 0x16.
        let mut x = 0x1234_5678u32;
        for _ in 0..2000 {
            let mut d = vec![0x16, 0xfe, 0xfd, 0, 0];
            for _ in 0..(x % 200) {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                d.push((x >> 16) as u8);
            }
            let _ = check_client_hello(&keys, peer(1), &d);
        }
    }
}

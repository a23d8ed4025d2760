//! DTLS 1.2 with pre-shared keys for OCF, on OpenSSL (vendored), sans-IO.
//!
//! * **Random PIN owner transfer** ([`DtlsConfig::random_pin_client`] /
//!   [`DtlsConfig::random_pin_server`]): `TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256`,
//!   client identity `oic.sec.doxm.rdp`, server identity hint
//!   `oic.sec.doxm.rdp:` + device UUID, PSK derived from the PIN by the caller.
//! * **PSK sessions** after onboarding ([`DtlsConfig::psk_client`] /
//!   [`DtlsConfig::psk_server`]): `TLS_PSK_WITH_AES_128_CCM_8` (preferred) or
//!   `TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256`, identity = client UUID, the
//!   server finds the key with a caller-supplied lookup.
//! * After the handshake, [`DtlsSession::key_material`] exports the master
//!   secret, both randoms and the cipher, to derive the OCF owner PSK.
//!
//! [`DtlsSession`] owns no socket (like `quinn-proto`): datagrams go in via
//! [`DtlsSession::handle_datagram`] and out via [`DtlsSession::poll_transmit`];
//! the caller drives timers with [`DtlsSession::next_timeout`] /
//! [`DtlsSession::handle_timeout`]. [`connect`] is a small tokio helper that
//! does this for a client over a `UdpSocket`.
//!
//! ```
//! use ssm_dtls::{DtlsConfig, DtlsSession};
//!
//! let pin_psk = [7u8; 16];
//! let device_uuid = [0x11u8; 16];
//! let mut obt = DtlsSession::client(&DtlsConfig::random_pin_client(pin_psk))?;
//! let mut device = DtlsSession::server(&DtlsConfig::random_pin_server(device_uuid, pin_psk))?;
//! // Lossless in-memory link: shuttle datagrams until both are done.
//! while obt.is_handshaking() || device.is_handshaking() {
//!     while let Some(d) = obt.poll_transmit() { device.handle_datagram(&d)?; }
//!     while let Some(d) = device.poll_transmit() { obt.handle_datagram(&d)?; }
//! }
//! obt.send_app_data(b"CoAP request")?;
//! device.handle_datagram(&obt.poll_transmit().unwrap())?;
//! assert_eq!(device.poll_app_data().as_deref(), Some(&b"CoAP request"[..]));
//!
//! let k = obt.key_material().unwrap();
//! assert_eq!(*k.master_secret, *device.key_material().unwrap().master_secret);
//! assert_eq!(k.cipher, "ECDHE-PSK-AES128-CBC-SHA256");
//! # Ok::<(), ssm_dtls::Error>(())
//! ```
//!
//! # Bounds
//! Handshake timeout (default 10 s), maximum datagram (default 1500 bytes, both
//! ways, handshake flights fragmented to fit), at most 256 queued datagrams per
//! direction and 256 queued application datagrams (oldest dropped, as UDP would).
//!
//! # OpenSSL limitations
//! OpenSSL's TLS 1.2 PSK API handles identities and identity hints as C
//! strings. A client identity containing `0x00` is therefore rejected
//! ([`Error::InvalidConfig`]) rather than sent truncated — with random UUIDs as
//! identities that affects about 6 % of clients. An identity hint is sent
//! truncated before its first `0x00`: OpenSSL cannot send such a hint, so a
//! device whose UUID holds a `0x00` byte cannot be told apart by it (OCF
//! devices send their UUID as the hint; `ssm-ocf` refuses such a UUID at
//! owner transfer). A server's lookup sees incoming identities **whole**:
//! OpenSSL cuts them at their first `0x00`, so the session reads the
//! identity off the plaintext ClientKeyExchange record and hands the lookup
//! (and [`DtlsSession::peer_identity`]) the identity as the client sent it
//! (mbedTLS clients, such as the OCF reference stack, send it whole).
//!
//! # Cookie exchange
//! A server that demultiplexes many peers keeps **no per-peer state before a
//! verified cookie** (RFC 6347 §4.2.1): [`check_client_hello`] answers a
//! ClientHello without a valid cookie with a HelloVerifyRequest (an HMAC
//! over the peer's address, port and ClientHello parameters under a
//! per-process [`CookieKeys`] secret) and keeps nothing; only a ClientHello
//! echoing a valid cookie becomes a session, with [`DtlsSession::accept`].
//! Anything else from an unknown peer is dropped.
//!
//! [`DtlsSession::server`] (one session created per peer up front) still
//! answers the first ClientHello with a HelloVerifyRequest by default
//! ([`DtlsConfig::with_cookie_exchange`]): that protects against reflection
//! (the big server flight goes only to a return-routable address) but not
//! against state exhaustion.
//!
//! # Unsafe
//! Only `ffi.rs`: `DTLSv1_get_timeout` / `DTLSv1_handle_timeout` (C macros
//! over `SSL_ctrl`, not wrapped by the `openssl` crate) and
//! `SSL_CTX_use_psk_identity_hint` (not declared by `openssl-sys`).

#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod config;
mod cookie;
mod error;
mod ffi;
mod pipe;
mod session;
mod udp;

use std::fmt;

pub use config::{
    CipherSuite, DtlsConfig, PskLookup, DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_MAX_DATAGRAM,
    MAX_IDENTITY_LEN, MAX_MAX_DATAGRAM, MAX_PSK_LEN, MIN_MAX_DATAGRAM, RDP_HINT_PREFIX,
    RDP_IDENTITY,
};
pub use cookie::{check_client_hello, CookieKeys, HelloCheck, VerifiedHello, COOKIE_LEN};
pub use error::{Error, Result};
pub use session::{DtlsSession, KeyMaterial, Role};
pub use udp::{connect, send_pending};

/// `Debug` for non-secret byte strings (identities, hints): escaped ASCII.
struct Bytes<'a>(&'a [u8]);

impl fmt::Debug for Bytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("b\"")?;
        for &b in self.0 {
            write!(f, "{}", std::ascii::escape_default(b))?;
        }
        f.write_str("\"")
    }
}

/// `Debug` for non-secret binary values (randoms): lowercase hex.
struct Hex<'a>(&'a [u8]);

impl fmt::Debug for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

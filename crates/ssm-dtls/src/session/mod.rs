//! The sans-IO DTLS session.

use std::collections::VecDeque;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openssl::ssl::{
    ErrorCode, Ssl, SslContextBuilder, SslMethod, SslOptions, SslSessionCacheMode, SslStream,
    SslVerifyMode, SslVersion,
};
use zeroize::Zeroizing;

use crate::config::{CipherSuite, DtlsConfig};
use crate::error::{describe_ssl, describe_stack, Error, Result};
use crate::ffi::{self, TimeoutOutcome};
use crate::pipe::{DatagramPipe, MAX_QUEUED_DATAGRAMS};

mod key_material;
mod record;

pub use key_material::KeyMaterial;
use record::{client_key_exchange_identity, has_short_protected_record, SharedIdentity};

/// Worst-case per-record overhead of the supported suites in DTLS 1.2:
/// 13-byte record header + CBC explicit IV (16) + HMAC-SHA256 (32) + padding
/// (up to 16). CCM_8 needs less (13 + 8 nonce + 8 tag).
const RECORD_OVERHEAD: usize = 13 + 16 + 32 + 16;

/// `SSL_OP_NO_ENCRYPT_THEN_MAC` (`SSL_OP_BIT(19)`), not exposed by the
/// `openssl` crate. See `base_context` for why.
const SSL_OP_NO_ENCRYPT_THEN_MAC: SslOptions = SslOptions::from_bits_retain(1 << 19);

/// Length of the server's HelloVerifyRequest cookie.
const COOKIE_LEN: usize = 32;

/// ECDHE groups offered/accepted, P-256 first (what OCF devices implement).
const GROUPS: &str = "P-256:X25519";

/// Which end of the handshake a session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Sends the ClientHello (the onboarding tool / requester).
    Client,
    /// Answers it (the device / responder).
    Server,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Handshaking,
    Established,
    Failed(Error),
    Closed,
}

/// One DTLS 1.2 PSK session with one peer, without any socket.
///
/// Feed every datagram from the peer to [`handle_datagram`], send everything
/// [`poll_transmit`] returns to the peer, and call [`handle_timeout`] once
/// [`next_timeout`] has elapsed (it changes after every call into the
/// session). Decrypted application datagrams come out of [`poll_app_data`].
///
/// [`handle_datagram`]: DtlsSession::handle_datagram
/// [`poll_transmit`]: DtlsSession::poll_transmit
/// [`handle_timeout`]: DtlsSession::handle_timeout
/// [`next_timeout`]: DtlsSession::next_timeout
/// [`poll_app_data`]: DtlsSession::poll_app_data
pub struct DtlsSession {
    stream: SslStream<DatagramPipe>,
    role: Role,
    state: State,
    handshake_deadline: Instant,
    max_datagram: usize,
    app_in: VecDeque<Vec<u8>>,
    /// Reusable plaintext buffer for `SSL_read`.
    read_buf: Vec<u8>,
    /// The handshake completed at some point (key material is valid).
    handshake_done: bool,
    /// Server: the client's PSK identity as sent (ClientKeyExchange), and
    /// the one the lookup was given.
    identity: SharedIdentity,
}

impl DtlsSession {
    /// Starts a client handshake: the ClientHello is ready in
    /// [`poll_transmit`](Self::poll_transmit) when this returns.
    pub fn client(cfg: &DtlsConfig) -> Result<Self> {
        let (identity, psk) = cfg.validate_client()?;
        let mut b = base_context(cfg)?;
        b.set_psk_client_callback(move |_ssl, _hint, id_buf, psk_buf| {
            // Both were length-checked by `validate_client`; OpenSSL gives
            // 256 + 512 bytes. Returning 0 fails the handshake.
            if identity.len() >= id_buf.len() || psk.len() > psk_buf.len() {
                return Ok(0);
            }
            id_buf[..identity.len()].copy_from_slice(&identity);
            id_buf[identity.len()] = 0; // OpenSSL reads the identity as a C string.
            psk_buf[..psk.len()].copy_from_slice(&psk);
            Ok(psk.len())
        });
        let mut session = Self::new(cfg, b, Role::Client, Default::default())?;
        session.drive();
        if let State::Failed(e) = &session.state {
            return Err(e.clone());
        }
        Ok(session)
    }

    /// Prepares a server session waiting for the peer's ClientHello.
    pub fn server(cfg: &DtlsConfig) -> Result<Self> {
        let (b, identity) = Self::server_context(cfg)?;
        Self::new(cfg, b, Role::Server, identity)
    }

    /// Starts a server session from a ClientHello whose cookie
    /// [`check_client_hello`](crate::check_client_hello) verified (RFC 6347
    /// §4.2.1: the first state kept for a peer). The server's first flight
    /// (ServerHello … ServerHelloDone) is ready in
    /// [`poll_transmit`](Self::poll_transmit) when this returns. The cookie
    /// exchange is done, so the config's
    /// [`with_cookie_exchange`](DtlsConfig::with_cookie_exchange) is not
    /// used.
    pub fn accept(cfg: &DtlsConfig, hello: crate::cookie::VerifiedHello) -> Result<Self> {
        if hello.datagram.len() > cfg.max_datagram {
            return Err(Error::DatagramTooLarge {
                len: hello.datagram.len(),
                max: cfg.max_datagram,
            });
        }
        let cfg = cfg.clone().with_cookie_exchange(false);
        let (mut b, identity) = Self::server_context(&cfg)?;
        // DTLSv1_listen checks the cookie once more through the context's
        // callback: exactly the one that was verified.
        let cookie = Arc::new(hello.cookie);
        let expected = Arc::clone(&cookie);
        b.set_options(SslOptions::COOKIE_EXCHANGE);
        b.set_cookie_generate_cb(move |_ssl, buf| {
            let n = cookie.len().min(buf.len());
            buf[..n].copy_from_slice(&cookie[..n]);
            Ok(n)
        });
        b.set_cookie_verify_cb(move |_ssl, got| {
            got.len() == expected.len() && openssl::memcmp::eq(got, &expected[..])
        });
        let mut session = Self::new(&cfg, b, Role::Server, identity)?;
        session.stream.get_mut().push_incoming(&hello.datagram);
        if !ffi::dtls_listen(session.stream.ssl()) {
            let reason = describe_stack(&openssl::error::ErrorStack::get())
                .unwrap_or_else(|| "ClientHello not accepted".into());
            return Err(Error::HandshakeFailed(reason));
        }
        session.drive();
        if let State::Failed(e) = &session.state {
            return Err(e.clone());
        }
        Ok(session)
    }

    fn server_context(cfg: &DtlsConfig) -> Result<(SslContextBuilder, SharedIdentity)> {
        let (lookup, hint) = cfg.validate_server()?;
        let mut b = base_context(cfg)?;
        if let Some(hint) = hint {
            ffi::set_psk_identity_hint(&mut b, &hint)?;
        }
        let seen = SharedIdentity::default();
        let shared = Arc::clone(&seen);
        b.set_psk_server_callback(move |_ssl, identity, psk_buf| {
            let Some(identity) = identity else {
                return Ok(0);
            };
            // OpenSSL cut the identity at its first 0x00 byte: the lookup
            // gets the whole one the client sent (a random UUID holds a
            // 0x00 byte about 6 % of the time, and mbedTLS clients, such as
            // the reference OBT, send it whole).
            let Ok(identity) = shared.lock().map(|mut p| p.whole(identity)) else {
                return Ok(0);
            };
            // A panicking lookup must not unwind into C: treat as unknown.
            let key = catch_unwind(AssertUnwindSafe(|| lookup(&identity)))
                .ok()
                .flatten();
            let Some(key) = key.map(Zeroizing::new) else {
                return Ok(0);
            };
            if key.is_empty() || key.len() > psk_buf.len() {
                return Ok(0);
            }
            psk_buf[..key.len()].copy_from_slice(&key);
            Ok(key.len())
        });
        if cfg.cookie_exchange {
            // This session serves exactly one peer (the caller demultiplexes
            // by address), so a random per-session cookie is as good as an
            // HMAC over the peer address and needs no shared secret.
            let mut cookie = [0u8; COOKIE_LEN];
            openssl::rand::rand_bytes(&mut cookie)?;
            let cookie = Arc::new(cookie);
            let expected = Arc::clone(&cookie);
            b.set_options(SslOptions::COOKIE_EXCHANGE);
            b.set_cookie_generate_cb(move |_ssl, buf| {
                let n = COOKIE_LEN.min(buf.len());
                buf[..n].copy_from_slice(&cookie[..n]);
                Ok(n)
            });
            b.set_cookie_verify_cb(move |_ssl, got| {
                got.len() == COOKIE_LEN && openssl::memcmp::eq(got, &expected[..])
            });
        }
        Ok((b, seen))
    }

    fn new(
        cfg: &DtlsConfig,
        b: SslContextBuilder,
        role: Role,
        identity: SharedIdentity,
    ) -> Result<Self> {
        let ctx = b.build();
        let mut ssl = Ssl::new(&ctx)?;
        // Bounded by validate_common to 256..=16384.
        ssl.set_mtu(cfg.max_datagram as u32)?;
        match role {
            Role::Client => ssl.set_connect_state(),
            Role::Server => ssl.set_accept_state(),
        }
        let stream = SslStream::new(ssl, DatagramPipe::default())?;
        Ok(DtlsSession {
            stream,
            role,
            state: State::Handshaking,
            handshake_deadline: Instant::now() + cfg.handshake_timeout,
            max_datagram: cfg.max_datagram,
            app_in: VecDeque::new(),
            read_buf: vec![0; cfg.max_datagram],
            handshake_done: false,
            identity,
        })
    }

    /// Client or server.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Handshake done and not closed or failed: application data flows.
    pub fn is_established(&self) -> bool {
        self.state == State::Established
    }

    /// Still handshaking.
    pub fn is_handshaking(&self) -> bool {
        self.state == State::Handshaking
    }

    /// The session failed; see [`failure`](Self::failure).
    pub fn is_failed(&self) -> bool {
        matches!(self.state, State::Failed(_))
    }

    /// Closed locally ([`close`](Self::close)) or by the peer's close_notify.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Why the session failed, if it did.
    pub fn failure(&self) -> Option<&Error> {
        match &self.state {
            State::Failed(e) => Some(e),
            _ => None,
        }
    }

    /// Largest application datagram [`send_app_data`](Self::send_app_data)
    /// accepts: the maximum datagram minus the worst-case record overhead.
    pub fn max_app_data(&self) -> usize {
        self.max_datagram - RECORD_OVERHEAD
    }

    /// Feeds one datagram received from the peer: advances the handshake
    /// and/or decrypts application data into [`poll_app_data`](Self::poll_app_data).
    /// Records that fail authentication are silently dropped (DTLS rules).
    ///
    /// Errors: the datagram is too large (dropped, session unaffected), the
    /// session failed (now or before), or it is closed.
    pub fn handle_datagram(&mut self, datagram: &[u8]) -> Result<()> {
        self.check_usable()?;
        if datagram.len() > self.max_datagram {
            return Err(Error::DatagramTooLarge {
                len: datagram.len(),
                max: self.max_datagram,
            });
        }
        if datagram.is_empty() {
            // A zero-length read would look like EOF to OpenSSL; an empty UDP
            // datagram carries no record anyway.
            return Ok(());
        }
        if has_short_protected_record(datagram) {
            // Invalid per DTLS rules: drop silently (see the function).
            return Ok(());
        }
        if self.role == Role::Server && self.state == State::Handshaking {
            if let Some(raw) = client_key_exchange_identity(datagram) {
                if let Ok(mut p) = self.identity.lock() {
                    p.raw = Some(raw);
                }
            }
        }
        self.stream.get_mut().push_incoming(datagram);
        self.drive();
        match &self.state {
            State::Failed(e) => Err(e.clone()),
            _ => Ok(()),
        }
    }

    /// Next datagram to send to the peer (handshake flights,
    /// retransmissions, encrypted application data, alerts).
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.stream.get_mut().outgoing.pop_front()
    }

    /// Next decrypted application datagram (one CoAP message each).
    pub fn poll_app_data(&mut self) -> Option<Vec<u8>> {
        self.app_in.pop_front()
    }

    /// Encrypts one application datagram; the record is then available from
    /// [`poll_transmit`](Self::poll_transmit).
    pub fn send_app_data(&mut self, data: &[u8]) -> Result<()> {
        match &self.state {
            State::Established => {}
            State::Handshaking => return Err(Error::NotEstablished),
            State::Failed(e) => return Err(e.clone()),
            State::Closed => return Err(Error::Closed),
        }
        if data.len() > self.max_app_data() {
            return Err(Error::AppDataTooLarge {
                len: data.len(),
                max: self.max_app_data(),
            });
        }
        if data.is_empty() {
            // SSL_write refuses zero bytes; an empty CoAP datagram is not a
            // message anyway.
            return Ok(());
        }
        match self.stream.ssl_write(data) {
            Ok(_) => Ok(()),
            Err(e) => {
                let err = Error::Protocol(describe_ssl(&e));
                self.state = State::Failed(err.clone());
                Err(err)
            }
        }
    }

    /// How long until [`handle_timeout`](Self::handle_timeout) should be
    /// called: the earlier of OpenSSL's retransmission timer and the end of
    /// the handshake timeout. `None` when nothing is pending.
    pub fn next_timeout(&self) -> Option<Duration> {
        match self.state {
            State::Handshaking => {
                let left = self
                    .handshake_deadline
                    .saturating_duration_since(Instant::now());
                Some(match ffi::dtls_get_timeout(self.stream.ssl()) {
                    Some(t) => t.min(left),
                    None => left,
                })
            }
            State::Established => ffi::dtls_get_timeout(self.stream.ssl()),
            State::Failed(_) | State::Closed => None,
        }
    }

    /// Handles an elapsed [`next_timeout`](Self::next_timeout): fails the
    /// session with [`Error::Timeout`] past the handshake timeout, otherwise
    /// lets OpenSSL retransmit its last flight if its timer expired (the
    /// datagrams appear in [`poll_transmit`](Self::poll_transmit)). Calling it
    /// early is harmless.
    pub fn handle_timeout(&mut self) -> Result<()> {
        self.check_usable()?;
        if self.state == State::Handshaking && Instant::now() >= self.handshake_deadline {
            self.state = State::Failed(Error::Timeout);
            return Err(Error::Timeout);
        }
        match ffi::dtls_handle_timeout(self.stream.ssl()) {
            TimeoutOutcome::NotExpired | TimeoutOutcome::Retransmitted => Ok(()),
            TimeoutOutcome::Fatal => {
                let reason = describe_stack(&openssl::error::ErrorStack::get())
                    .unwrap_or_else(|| "retransmission failed".into());
                let err = match self.state {
                    State::Handshaking => Error::HandshakeFailed(reason),
                    _ => Error::Protocol(reason),
                };
                self.state = State::Failed(err.clone());
                Err(err)
            }
        }
    }

    /// Secrets and randoms of the established handshake (also after
    /// [`close`](Self::close)); `None` before the handshake completed.
    pub fn key_material(&self) -> Option<KeyMaterial> {
        if !self.handshake_done {
            return None;
        }
        let ssl = self.stream.ssl();
        let session = ssl.session()?;
        let mut master_secret = Zeroizing::new([0u8; 48]);
        if session.master_key(&mut master_secret[..]) != 48 {
            return None;
        }
        let mut client_random = [0u8; 32];
        let mut server_random = [0u8; 32];
        if ssl.client_random(&mut client_random) != 32
            || ssl.server_random(&mut server_random) != 32
        {
            return None;
        }
        let cipher = ssl.current_cipher()?.name().to_owned();
        Some(KeyMaterial {
            master_secret,
            client_random,
            server_random,
            cipher,
        })
    }

    /// The negotiated cipher suite (OpenSSL name), once established.
    pub fn cipher(&self) -> Option<&'static str> {
        if !self.handshake_done {
            return None;
        }
        self.stream.ssl().current_cipher().map(|c| c.name())
    }

    /// Server: the PSK identity the client used (for OCF sessions, the
    /// client's raw UUID bytes, `0x00` bytes included), once established.
    /// `None` on a client.
    pub fn peer_identity(&self) -> Option<Vec<u8>> {
        if self.role != Role::Server || !self.handshake_done {
            return None;
        }
        if let Some(id) = self.identity.lock().ok().and_then(|p| p.used.clone()) {
            return Some(id);
        }
        self.stream.ssl().psk_identity().map(<[u8]>::to_vec)
    }

    /// Client: the PSK identity hint the server sent (truncated before any
    /// `0x00` byte by OpenSSL), once received. `None` on a server.
    pub fn psk_identity_hint(&self) -> Option<Vec<u8>> {
        if self.role != Role::Client {
            return None;
        }
        self.stream.ssl().psk_identity_hint().map(<[u8]>::to_vec)
    }

    /// Closes the session: on an established session a close_notify alert is
    /// queued for [`poll_transmit`](Self::poll_transmit). Idempotent.
    pub fn close(&mut self) {
        match self.state {
            State::Established => {
                // Errors are irrelevant here: we are done with the session.
                let _ = self.stream.shutdown();
                self.state = State::Closed;
            }
            State::Handshaking => self.state = State::Closed,
            State::Failed(_) | State::Closed => {}
        }
    }

    fn check_usable(&self) -> Result<()> {
        match &self.state {
            State::Handshaking | State::Established => Ok(()),
            State::Failed(e) => Err(e.clone()),
            State::Closed => Err(Error::Closed),
        }
    }

    /// Runs OpenSSL on whatever is queued: handshake, then decryption.
    fn drive(&mut self) {
        if self.state == State::Handshaking {
            if Instant::now() >= self.handshake_deadline {
                self.state = State::Failed(Error::Timeout);
                return;
            }
            match self.stream.do_handshake() {
                Ok(()) => {
                    self.state = State::Established;
                    self.handshake_done = true;
                }
                Err(e) if is_want(&e) => return,
                Err(e) => {
                    self.state = State::Failed(Error::HandshakeFailed(describe_ssl(&e)));
                    return;
                }
            }
        }
        if self.state != State::Established {
            return;
        }
        // Each successful SSL_read consumes one record; the loop ends when
        // the incoming queue (bounded) is drained.
        loop {
            match self.stream.ssl_read(&mut self.read_buf) {
                Ok(n) => {
                    if self.app_in.len() >= MAX_QUEUED_DATAGRAMS {
                        self.app_in.pop_front();
                    }
                    self.app_in.push_back(self.read_buf[..n].to_vec());
                }
                Err(e) if is_want(&e) => break,
                Err(e) if e.code() == ErrorCode::ZERO_RETURN => {
                    self.state = State::Closed;
                    break;
                }
                Err(e) => {
                    self.state = State::Failed(Error::Protocol(describe_ssl(&e)));
                    break;
                }
            }
        }
    }
}

fn is_want(e: &openssl::ssl::Error) -> bool {
    e.code() == ErrorCode::WANT_READ || e.code() == ErrorCode::WANT_WRITE
}

/// DTLS 1.2 only, PSK suites only, no certificates, no tickets, no
/// renegotiation, fixed MTU.
fn base_context(cfg: &DtlsConfig) -> Result<SslContextBuilder> {
    let mut b = SslContextBuilder::new(SslMethod::dtls())?;
    b.set_min_proto_version(Some(SslVersion::DTLS1_2))?;
    b.set_max_proto_version(Some(SslVersion::DTLS1_2))?;
    b.set_cipher_list(&cfg.cipher_list())
        .map_err(|e| Error::InvalidConfig(format!("cipher list rejected by OpenSSL: {e}")))?;
    b.set_groups_list(GROUPS)?;
    if cfg.ciphers.contains(&CipherSuite::PskWithAes128Ccm8) {
        // OpenSSL rates CCM_8 (64-bit tag) at 64 bits of strength, below
        // security level 1's 80-bit floor, so it is only offered at level 0.
        // Level 0 matters only for what the cipher list allows, and that list
        // holds nothing but the configured OCF suites; there are no
        // certificates, DTLS 1.2 only, and the ECDHE groups are fixed above.
        b.set_security_level(0);
    }
    b.set_verify(SslVerifyMode::NONE);
    b.set_session_cache_mode(SslSessionCacheMode::OFF);
    b.set_options(
        SslOptions::NO_TICKET
            | SslOptions::NO_RENEGOTIATION
            // Use the MTU we set, never ask the (in-memory) BIO; otherwise
            // OpenSSL would shrink it to the BIO's "fallback MTU" of 0 after
            // two retransmissions.
            | SslOptions::NO_QUERY_MTU
            | SslOptions::CIPHER_SERVER_PREFERENCE
            // OpenSSL 3.x (through 3.6, openssl/openssl#24972) answers a
            // record whose Encrypt-then-MAC check fails with a fatal
            // bad_record_mac instead of discarding it as DTLS requires, so a
            // single spoofed datagram would kill a CBC session. With classic
            // MAC-then-encrypt (OpenSSL's constant-time CBC code) bad records
            // are silently dropped. Cost: a wrong PSK is no longer reported
            // at once but ends in the handshake timeout.
            | SSL_OP_NO_ENCRYPT_THEN_MAC,
    );
    Ok(b)
}

impl fmt::Debug for DtlsSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pipe = self.stream.get_ref();
        f.debug_struct("DtlsSession")
            .field("role", &self.role)
            .field("state", &self.state)
            .field("cipher", &self.cipher())
            .field("max_datagram", &self.max_datagram)
            .field("queued_in", &pipe.incoming.len())
            .field("queued_out", &pipe.outgoing.len())
            .field("queued_app_data", &self.app_in.len())
            .finish_non_exhaustive()
    }
}

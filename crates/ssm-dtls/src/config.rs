//! Session configuration.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// PSK identity the onboarding tool uses for the Random PIN owner transfer
/// method (OCF Security, `oic.sec.doxm.rdp`).
pub const RDP_IDENTITY: &[u8] = b"oic.sec.doxm.rdp";

/// Prefix of the PSK identity hint a device sends during Random PIN owner
/// transfer; the 16 raw bytes of the device UUID follow it.
pub const RDP_HINT_PREFIX: &[u8] = b"oic.sec.doxm.rdp:";

/// Default bound on the whole handshake.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Default (and recommended) maximum datagram size, in bytes, both ways.
pub const DEFAULT_MAX_DATAGRAM: usize = 1500;

/// Smallest accepted `max_datagram` (OpenSSL's DTLS minimum MTU is 256).
pub const MIN_MAX_DATAGRAM: usize = 256;

/// Largest accepted `max_datagram`.
pub const MAX_MAX_DATAGRAM: usize = 16_384;

/// Longest PSK identity or identity hint accepted. RFC 4279 allows more, but
/// OCF identities are at most 33 bytes and OpenSSL caps them at 256.
pub const MAX_IDENTITY_LEN: usize = 128;

/// Longest PSK accepted (OpenSSL's own cap is 512).
pub const MAX_PSK_LEN: usize = 64;

/// Server-side PSK lookup: PSK identity the client sent → key, or `None` for
/// an unknown identity (which fails the handshake with `unknown_psk_identity`).
pub type PskLookup = Arc<dyn Fn(&[u8]) -> Option<Vec<u8>> + Send + Sync>;

/// A PSK shared with the OpenSSL callback, wiped when the last user drops it.
pub(crate) type SharedPsk = Arc<Zeroizing<Vec<u8>>>;

/// The DTLS 1.2 PSK cipher suites OCF uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CipherSuite {
    /// `TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256` (0xC037): Random PIN owner
    /// transfer, and allowed for later PSK sessions.
    EcdhePskWithAes128CbcSha256,
    /// `TLS_PSK_WITH_AES_128_CCM_8` (0xC0A8): PSK sessions after onboarding.
    PskWithAes128Ccm8,
}

impl CipherSuite {
    /// All suites, in the default preference order for PSK sessions.
    pub const ALL: [CipherSuite; 2] = [
        CipherSuite::PskWithAes128Ccm8,
        CipherSuite::EcdhePskWithAes128CbcSha256,
    ];

    /// OpenSSL's name, as used in cipher lists and reported by
    /// [`KeyMaterial::cipher`](crate::KeyMaterial::cipher).
    pub const fn openssl_name(self) -> &'static str {
        match self {
            CipherSuite::EcdhePskWithAes128CbcSha256 => "ECDHE-PSK-AES128-CBC-SHA256",
            CipherSuite::PskWithAes128Ccm8 => "PSK-AES128-CCM8",
        }
    }

    /// The IANA (RFC) name.
    pub const fn iana_name(self) -> &'static str {
        match self {
            CipherSuite::EcdhePskWithAes128CbcSha256 => "TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256",
            CipherSuite::PskWithAes128Ccm8 => "TLS_PSK_WITH_AES_128_CCM_8",
        }
    }

    /// The two-byte IANA code point.
    pub const fn id(self) -> u16 {
        match self {
            CipherSuite::EcdhePskWithAes128CbcSha256 => 0xC037,
            CipherSuite::PskWithAes128Ccm8 => 0xC0A8,
        }
    }
}

impl fmt::Display for CipherSuite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.iana_name())
    }
}

/// Configuration of one [`DtlsSession`](crate::DtlsSession).
///
/// Build it with one of the constructors ([`random_pin_client`],
/// [`random_pin_server`], [`psk_client`], [`psk_server`]) and adjust it with
/// the `with_*` methods. `Clone` is cheap; the PSK is kept in zeroizing memory
/// and never shown by `Debug`.
///
/// [`random_pin_client`]: DtlsConfig::random_pin_client
/// [`random_pin_server`]: DtlsConfig::random_pin_server
/// [`psk_client`]: DtlsConfig::psk_client
/// [`psk_server`]: DtlsConfig::psk_server
#[derive(Clone)]
pub struct DtlsConfig {
    pub(crate) ciphers: Vec<CipherSuite>,
    /// Client: PSK identity to send.
    pub(crate) psk_identity: Option<Vec<u8>>,
    /// Client: the PSK.
    pub(crate) psk: Option<SharedPsk>,
    /// Server: PSK identity hint to send in ServerKeyExchange.
    pub(crate) identity_hint: Option<Vec<u8>>,
    /// Server: identity → PSK.
    pub(crate) psk_lookup: Option<PskLookup>,
    pub(crate) handshake_timeout: Duration,
    pub(crate) max_datagram: usize,
    pub(crate) cookie_exchange: bool,
}

impl DtlsConfig {
    fn empty(ciphers: Vec<CipherSuite>) -> Self {
        DtlsConfig {
            ciphers,
            psk_identity: None,
            psk: None,
            identity_hint: None,
            psk_lookup: None,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            max_datagram: DEFAULT_MAX_DATAGRAM,
            cookie_exchange: true,
        }
    }

    /// Onboarding tool side of the Random PIN owner transfer: offers only
    /// `TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256` with PSK identity
    /// [`RDP_IDENTITY`]. `psk` is the 16-byte key derived from the PIN.
    pub fn random_pin_client(psk: [u8; 16]) -> Self {
        let psk = Zeroizing::new(psk);
        Self::psk_client(RDP_IDENTITY.to_vec(), psk.to_vec())
            .with_ciphers(&[CipherSuite::EcdhePskWithAes128CbcSha256])
    }

    /// Device side of the Random PIN owner transfer: offers only
    /// `TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256`, sends the identity hint
    /// [`RDP_HINT_PREFIX`] + the 16 raw bytes of `device_uuid`, and accepts
    /// only the identity [`RDP_IDENTITY`] with `psk`.
    ///
    /// **OpenSSL limitation:** OpenSSL keeps identity hints as C strings, so a
    /// hint is sent truncated before the first `0x00` byte of the UUID (if
    /// any). The hint is informational (RFC 4279 §5.2); the owner transfer
    /// itself is unaffected, but a peer that parses the device UUID out of the
    /// hint sees fewer than 16 bytes.
    pub fn random_pin_server(device_uuid: [u8; 16], psk: [u8; 16]) -> Self {
        let psk = Arc::new(Zeroizing::new(psk));
        let mut hint = RDP_HINT_PREFIX.to_vec();
        hint.extend_from_slice(&device_uuid);
        Self::psk_server(move |identity| (identity == RDP_IDENTITY).then(|| psk.to_vec()))
            .with_ciphers(&[CipherSuite::EcdhePskWithAes128CbcSha256])
            .with_identity_hint(hint)
    }

    /// Client of a PSK session (after onboarding): sends `identity` (for OCF
    /// the 16 raw bytes of the client's UUID) and uses `psk`. Offers
    /// [`CipherSuite::ALL`] (CCM_8 preferred).
    ///
    /// **OpenSSL limitation:** OpenSSL passes PSK identities as C strings, so
    /// an identity containing a `0x00` byte cannot be sent intact;
    /// [`DtlsSession::client`](crate::DtlsSession::client) rejects it with
    /// [`Error::InvalidConfig`] instead of silently sending a truncated one.
    pub fn psk_client(identity: impl Into<Vec<u8>>, psk: impl Into<Vec<u8>>) -> Self {
        let mut cfg = Self::empty(CipherSuite::ALL.to_vec());
        cfg.psk_identity = Some(identity.into());
        cfg.psk = Some(Arc::new(Zeroizing::new(psk.into())));
        cfg
    }

    /// Server of a PSK session: `lookup` maps the identity the client sent to
    /// its PSK; `None` fails the handshake (alert `unknown_psk_identity`).
    /// Accepts [`CipherSuite::ALL`] (CCM_8 preferred). No identity hint unless
    /// [`with_identity_hint`](Self::with_identity_hint) is used.
    ///
    /// `lookup` sees the identity as the client sent it, `0x00` bytes
    /// included (OpenSSL cuts it at the first `0x00`; the session recovers
    /// the rest from the ClientKeyExchange record). A panic in `lookup` is
    /// caught and treated as an unknown identity.
    pub fn psk_server<F>(lookup: F) -> Self
    where
        F: Fn(&[u8]) -> Option<Vec<u8>> + Send + Sync + 'static,
    {
        let mut cfg = Self::empty(CipherSuite::ALL.to_vec());
        cfg.psk_lookup = Some(Arc::new(lookup));
        cfg
    }

    /// Replaces the offered/accepted cipher suites (in preference order).
    pub fn with_ciphers(mut self, ciphers: &[CipherSuite]) -> Self {
        self.ciphers = ciphers.to_vec();
        self
    }

    /// Server: PSK identity hint to send (truncated before the first `0x00`
    /// byte, see [`random_pin_server`](Self::random_pin_server)).
    pub fn with_identity_hint(mut self, hint: impl Into<Vec<u8>>) -> Self {
        self.identity_hint = Some(hint.into());
        self
    }

    /// Bound on the whole handshake (default 10 s). Past it the session fails
    /// with [`Error::Timeout`].
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Largest datagram sent or accepted (default 1500 bytes, range
    /// 256..=16384). Handshake flights are fragmented to fit; larger incoming
    /// datagrams are rejected.
    pub fn with_max_datagram(mut self, max: usize) -> Self {
        self.max_datagram = max;
        self
    }

    /// Server: answer a ClientHello without a valid cookie with a
    /// HelloVerifyRequest (default on). See the crate docs for what this does
    /// and does not protect against.
    pub fn with_cookie_exchange(mut self, on: bool) -> Self {
        self.cookie_exchange = on;
        self
    }

    /// The handshake timeout.
    pub fn handshake_timeout(&self) -> Duration {
        self.handshake_timeout
    }

    /// The maximum datagram size.
    pub fn max_datagram(&self) -> usize {
        self.max_datagram
    }

    /// The configured cipher suites, in preference order.
    pub fn ciphers(&self) -> &[CipherSuite] {
        &self.ciphers
    }

    /// OpenSSL cipher list string for the configured suites.
    pub(crate) fn cipher_list(&self) -> String {
        self.ciphers
            .iter()
            .map(|c| c.openssl_name())
            .collect::<Vec<_>>()
            .join(":")
    }

    fn validate_common(&self) -> Result<()> {
        if self.ciphers.is_empty() {
            return Err(Error::InvalidConfig("no cipher suite configured".into()));
        }
        if self.handshake_timeout.is_zero() {
            return Err(Error::InvalidConfig(
                "handshake timeout must be non-zero".into(),
            ));
        }
        if !(MIN_MAX_DATAGRAM..=MAX_MAX_DATAGRAM).contains(&self.max_datagram) {
            return Err(Error::InvalidConfig(format!(
                "max datagram {} outside {MIN_MAX_DATAGRAM}..={MAX_MAX_DATAGRAM}",
                self.max_datagram
            )));
        }
        Ok(())
    }

    /// Checks what a client needs; returns (identity, psk).
    pub(crate) fn validate_client(&self) -> Result<(Vec<u8>, SharedPsk)> {
        self.validate_common()?;
        let (Some(identity), Some(psk)) = (&self.psk_identity, &self.psk) else {
            return Err(Error::InvalidConfig(
                "a client needs a PSK identity and a PSK".into(),
            ));
        };
        if identity.is_empty() || identity.len() > MAX_IDENTITY_LEN {
            return Err(Error::InvalidConfig(format!(
                "PSK identity must be 1..={MAX_IDENTITY_LEN} bytes"
            )));
        }
        if identity.contains(&0) {
            return Err(Error::InvalidConfig(
                "PSK identity contains a 0x00 byte, which OpenSSL's TLS 1.2 PSK API (C strings) \
                 would truncate"
                    .into(),
            ));
        }
        if psk.is_empty() || psk.len() > MAX_PSK_LEN {
            return Err(Error::InvalidConfig(format!(
                "PSK must be 1..={MAX_PSK_LEN} bytes"
            )));
        }
        Ok((identity.clone(), Arc::clone(psk)))
    }

    /// Checks what a server needs; returns (lookup, hint truncated at NUL).
    pub(crate) fn validate_server(&self) -> Result<(PskLookup, Option<Vec<u8>>)> {
        self.validate_common()?;
        let Some(lookup) = &self.psk_lookup else {
            return Err(Error::InvalidConfig("a server needs a PSK lookup".into()));
        };
        let hint = match &self.identity_hint {
            Some(h) if h.len() > MAX_IDENTITY_LEN => {
                return Err(Error::InvalidConfig(format!(
                    "PSK identity hint longer than {MAX_IDENTITY_LEN} bytes"
                )))
            }
            Some(h) => {
                let end = h.iter().position(|&b| b == 0).unwrap_or(h.len());
                Some(h[..end].to_vec())
            }
            None => None,
        };
        Ok((Arc::clone(lookup), hint))
    }
}

impl fmt::Debug for DtlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DtlsConfig")
            .field("ciphers", &self.ciphers)
            .field(
                "psk_identity",
                &self.psk_identity.as_deref().map(crate::Bytes),
            )
            .field("psk", &self.psk.as_ref().map(|_| "<redacted>"))
            .field(
                "identity_hint",
                &self.identity_hint.as_deref().map(crate::Bytes),
            )
            .field("psk_lookup", &self.psk_lookup.as_ref().map(|_| "<fn>"))
            .field("handshake_timeout", &self.handshake_timeout)
            .field("max_datagram", &self.max_datagram)
            .field("cookie_exchange", &self.cookie_exchange)
            .finish()
    }
}

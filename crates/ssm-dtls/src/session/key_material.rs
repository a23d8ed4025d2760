//! What an established session exports for deriving OCF keys.

use std::fmt;

use zeroize::Zeroizing;

/// Secrets and public values of an established session, for deriving OCF
/// keys (e.g. the owner PSK after Random PIN owner transfer).
///
/// `Debug` shows the randoms and the cipher but never the master secret; the
/// master secret is zeroized on drop.
#[derive(Clone)]
pub struct KeyMaterial {
    /// The TLS 1.2 master secret. OpenSSL negotiates the extended master
    /// secret (RFC 7627) when the peer supports it, in which case this is the
    /// extended one; both ends always hold the same value.
    pub master_secret: Zeroizing<[u8; 48]>,
    /// ClientHello.random.
    pub client_random: [u8; 32],
    /// ServerHello.random.
    pub server_random: [u8; 32],
    /// Negotiated suite, OpenSSL name (e.g. `ECDHE-PSK-AES128-CBC-SHA256`).
    pub cipher: String,
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyMaterial")
            .field("master_secret", &"<redacted>")
            .field("client_random", &crate::Hex(&self.client_random))
            .field("server_random", &crate::Hex(&self.server_random))
            .field("cipher", &self.cipher)
            .finish()
    }
}

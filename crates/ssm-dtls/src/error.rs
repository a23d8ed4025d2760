//! Error type of the crate.

use std::io;

/// Everything that can go wrong in a DTLS session.
///
/// `Clone + PartialEq` so a session can keep the reason it failed and report
/// it again on every later call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The [`DtlsConfig`](crate::DtlsConfig) cannot be used for the requested
    /// role (missing PSK, identity with a NUL byte, limits out of range, ...).
    #[error("invalid DTLS configuration: {0}")]
    InvalidConfig(String),
    /// The handshake was aborted: a fatal alert was sent or received, the PSK
    /// identity is unknown, no cipher suite in common, OpenSSL gave up
    /// retransmitting, ... The string is OpenSSL's reason.
    #[error("DTLS handshake failed: {0}")]
    HandshakeFailed(String),
    /// The handshake did not complete within the configured handshake timeout.
    /// A wrong PSK usually ends here: DTLS silently discards records that fail
    /// to decrypt, so neither side ever sees the peer's Finished message.
    #[error("DTLS handshake timed out")]
    Timeout,
    /// The session was closed (locally, or by the peer's close_notify).
    #[error("DTLS session is closed")]
    Closed,
    /// Application data cannot be sent before the handshake completes.
    #[error("DTLS session is not established yet")]
    NotEstablished,
    /// An incoming datagram is larger than the configured maximum; it was
    /// dropped without touching the session.
    #[error("datagram of {len} bytes exceeds the limit of {max} bytes")]
    DatagramTooLarge {
        /// Size of the offending datagram.
        len: usize,
        /// The configured maximum.
        max: usize,
    },
    /// Application data that would not fit into one datagram of the
    /// configured maximum size.
    #[error("application data of {len} bytes exceeds the limit of {max} bytes")]
    AppDataTooLarge {
        /// Size of the offending payload.
        len: usize,
        /// [`DtlsSession::max_app_data`](crate::DtlsSession::max_app_data).
        max: usize,
    },
    /// A fatal error on an established session (e.g. a fatal alert from the
    /// peer). The string is OpenSSL's reason.
    #[error("DTLS protocol error: {0}")]
    Protocol(String),
    /// OpenSSL failed outside the handshake (context setup, ...).
    #[error("OpenSSL error: {0}")]
    Openssl(String),
    /// Socket error in the async UDP helper.
    #[error("I/O error ({kind:?}): {message}")]
    Io {
        /// The error kind.
        kind: io::ErrorKind,
        /// The error's message.
        message: String,
    },
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io {
            kind: e.kind(),
            message: e.to_string(),
        }
    }
}

impl From<openssl::error::ErrorStack> for Error {
    fn from(e: openssl::error::ErrorStack) -> Self {
        Error::Openssl(describe_stack(&e).unwrap_or_else(|| e.to_string()))
    }
}

/// OpenSSL's reason strings, `; `-joined, or `None` for an empty stack.
pub(crate) fn describe_stack(stack: &openssl::error::ErrorStack) -> Option<String> {
    let reasons: Vec<String> = stack
        .errors()
        .iter()
        .map(|e| {
            e.reason()
                .map_or_else(|| format!("code {}", e.code()), str::to_owned)
        })
        .collect();
    if reasons.is_empty() {
        None
    } else {
        Some(reasons.join("; "))
    }
}

/// A short human-readable reason for an `openssl::ssl::Error`.
pub(crate) fn describe_ssl(e: &openssl::ssl::Error) -> String {
    if let Some(s) = e.ssl_error().and_then(describe_stack) {
        return s;
    }
    if let Some(io) = e.io_error() {
        return format!("I/O: {io}");
    }
    e.to_string()
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

//! The only module of this crate that contains `unsafe` code.
//!
//! The `openssl` crate (0.10) does not wrap three things this crate needs:
//!
//! * `DTLSv1_get_timeout` / `DTLSv1_handle_timeout`: in OpenSSL these are C
//!   macros over `SSL_ctrl` (`DTLS_CTRL_GET_TIMEOUT` = 73,
//!   `DTLS_CTRL_HANDLE_TIMEOUT` = 74), so neither `openssl` nor `openssl-sys`
//!   exports them. `SSL_ctrl` itself is exported by `openssl-sys`.
//! * `SSL_CTX_use_psk_identity_hint`: a real libssl function (present since
//!   OpenSSL 1.0.0) that `openssl-sys` does not declare. We declare it here; it
//!   links against the same (vendored, static) libssl that `openssl-sys` links.
//! * `DTLSv1_listen` (with `BIO_ADDR_new`/`BIO_ADDR_free`), likewise not
//!   declared: it starts a server session from a ClientHello whose cookie
//!   was verified statelessly (see `cookie.rs`).
//!
//! Everything here takes safe Rust references to the `openssl` crate's owned
//! wrappers, so the raw pointers handed to OpenSSL are always valid, non-null
//! and live for the duration of the call.

#![allow(unsafe_code)]

use std::ffi::CString;
use std::time::Duration;

use foreign_types::ForeignTypeRef;
use libc::{c_char, c_int, c_long, c_void};
use openssl::ssl::{SslContextBuilder, SslRef};

use crate::error::Error;

/// `#define DTLS_CTRL_GET_TIMEOUT 73` (include/openssl/ssl.h).
const DTLS_CTRL_GET_TIMEOUT: c_int = 73;
/// `#define DTLS_CTRL_HANDLE_TIMEOUT 74` (include/openssl/ssl.h).
const DTLS_CTRL_HANDLE_TIMEOUT: c_int = 74;

extern "C" {
    /// `int SSL_CTX_use_psk_identity_hint(SSL_CTX *ctx, const char *hint);`
    /// Copies `hint` (a NUL-terminated C string); returns 1 on success.
    fn SSL_CTX_use_psk_identity_hint(ctx: *mut openssl_sys::SSL_CTX, hint: *const c_char) -> c_int;
    /// `int DTLSv1_listen(SSL *s, BIO_ADDR *client);` (libssl, not declared
    /// by `openssl-sys`).
    fn DTLSv1_listen(ssl: *mut openssl_sys::SSL, client: *mut c_void) -> c_int;
    /// `BIO_ADDR *BIO_ADDR_new(void);` (libcrypto).
    fn BIO_ADDR_new() -> *mut c_void;
    /// `void BIO_ADDR_free(BIO_ADDR *);` (libcrypto).
    fn BIO_ADDR_free(addr: *mut c_void);
}

/// `DTLSv1_listen` on a fresh server SSL whose BIO holds one ClientHello
/// that carries a cookie the caller already verified (and which the
/// context's verify callback accepts): OpenSSL takes the "cookie verified"
/// path, sets the handshake sequence numbers a second ClientHello implies
/// (RFC 6347 §4.2.2: message_seq 1) and keeps the record for the
/// handshake that follows. True on success.
pub(crate) fn dtls_listen(ssl: &SslRef) -> bool {
    // SAFETY: BIO_ADDR_new returns an owned, zero-initialised BIO_ADDR or
    // NULL (checked); it is freed below exactly once, after OpenSSL (which
    // keeps no pointer to it) is done with it.
    let addr = unsafe { BIO_ADDR_new() };
    if addr.is_null() {
        return false;
    }
    // SAFETY: `ssl.as_ptr()` is a valid `SSL*` (see `dtls_get_timeout`);
    // its BIO is the `openssl` crate's Rust BIO over our `DatagramPipe`,
    // reachable only through this SSL, and the caller holds the session
    // exclusively (it is being constructed). `addr` is a valid BIO_ADDR;
    // our BIO does not implement BIO_CTRL_DGRAM_GET_PEER, so OpenSSL only
    // clears it.
    let ret = unsafe { DTLSv1_listen(ssl.as_ptr(), addr) };
    // SAFETY: `addr` came from BIO_ADDR_new and is not used afterwards.
    unsafe { BIO_ADDR_free(addr) };
    ret == 1
}

/// `DTLSv1_get_timeout`: time left until OpenSSL's DTLS retransmission timer
/// fires, or `None` when no timer is running. An already expired timer is
/// reported as `Some(Duration::ZERO)`.
pub(crate) fn dtls_get_timeout(ssl: &SslRef) -> Option<Duration> {
    let mut tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 0,
    };
    // SAFETY: `ssl.as_ptr()` is a valid `SSL*` owned by the `Ssl`/`SslStream`
    // that `ssl` borrows from. For DTLS_CTRL_GET_TIMEOUT, `SSL_ctrl` writes a
    // `struct timeval` through `parg` when it returns 1 and does not touch it
    // otherwise; `tv` is a properly aligned, initialised `libc::timeval` (the
    // platform's `struct timeval`) living on our stack for the whole call, and
    // OpenSSL keeps no pointer to it afterwards. `larg` is unused (0).
    let ret = unsafe {
        openssl_sys::SSL_ctrl(
            ssl.as_ptr(),
            DTLS_CTRL_GET_TIMEOUT,
            0,
            (&mut tv as *mut libc::timeval).cast::<c_void>(),
        )
    };
    if ret != 1 {
        return None;
    }
    let secs = u64::try_from(tv.tv_sec).unwrap_or(0);
    let micros = u32::try_from(tv.tv_usec).unwrap_or(0).min(999_999);
    Some(Duration::from_secs(secs) + Duration::from_micros(u64::from(micros)))
}

/// Result of [`dtls_handle_timeout`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimeoutOutcome {
    /// No timer had expired; nothing was done.
    NotExpired,
    /// The timer had expired and the last flight was retransmitted.
    Retransmitted,
    /// OpenSSL gave up (too many retransmissions) or hit a fatal error; the
    /// connection is dead and the error is on OpenSSL's error queue.
    Fatal,
}

/// `DTLSv1_handle_timeout`: if OpenSSL's DTLS timer has expired, retransmit
/// the last flight (written to the session's BIO) and back the timer off.
///
/// Takes `&SslRef` because `SslStream` only hands out a shared reference; the
/// `SSL` object is an opaque C struct behind an `UnsafeCell`-based wrapper
/// (`foreign_types::Opaque`), so mutation by C through it is permitted. The
/// caller (`DtlsSession::handle_timeout`) holds `&mut DtlsSession`, so no other
/// Rust code is using the SSL or its BIO concurrently.
pub(crate) fn dtls_handle_timeout(ssl: &SslRef) -> TimeoutOutcome {
    // SAFETY: `ssl.as_ptr()` is a valid `SSL*` (see above). For
    // DTLS_CTRL_HANDLE_TIMEOUT, `larg` and `parg` are ignored, so passing 0 and
    // NULL is what the `DTLSv1_handle_timeout(ssl)` macro itself does. The
    // retransmission writes through the SSL's BIO, which is the `openssl`
    // crate's Rust BIO over our `DatagramPipe`; that BIO is only reachable via
    // this SSL, and we are inside `&mut DtlsSession`, so there is no aliasing
    // Rust access to the pipe during the call.
    let ret: c_long = unsafe {
        openssl_sys::SSL_ctrl(
            ssl.as_ptr(),
            DTLS_CTRL_HANDLE_TIMEOUT,
            0,
            std::ptr::null_mut(),
        )
    };
    match ret {
        0 => TimeoutOutcome::NotExpired,
        r if r > 0 => TimeoutOutcome::Retransmitted,
        _ => TimeoutOutcome::Fatal,
    }
}

/// Sets the PSK identity hint the server sends in ServerKeyExchange.
///
/// OpenSSL stores the hint as a C string, so `hint` must not contain a NUL
/// byte (checked by the caller, re-checked here by `CString::new`).
pub(crate) fn set_psk_identity_hint(ctx: &mut SslContextBuilder, hint: &[u8]) -> Result<(), Error> {
    let Ok(hint) = CString::new(hint) else {
        return Err(Error::InvalidConfig(
            "PSK identity hint contains a 0x00 byte".into(),
        ));
    };
    // SAFETY: `ctx.as_ptr()` is the valid `SSL_CTX*` owned by `ctx` (we hold
    // `&mut`, so nobody else uses it during the call). `hint` is a valid
    // NUL-terminated C string that outlives the call; OpenSSL copies it
    // (`OPENSSL_strdup`) and keeps no pointer to our buffer. The function is
    // part of libssl's public API, with exactly this C signature.
    let ret = unsafe { SSL_CTX_use_psk_identity_hint(ctx.as_ptr(), hint.as_ptr()) };
    if ret == 1 {
        Ok(())
    } else {
        Err(openssl::error::ErrorStack::get().into())
    }
}

//! Shared in-memory drivers for the DTLS tests.
// Compiled into each test binary that uses a part of it: the rest is
// dead code there.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use ssm_dtls::DtlsSession;

/// Device UUID without 0x00 bytes (OpenSSL handles hints as C strings).
pub const DEVICE_UUID: [u8; 16] = [
    0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0x4d, 0xef, 0x81, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef,
];
/// Client UUID without 0x00 bytes.
pub const CLIENT_UUID: [u8; 16] = [
    0xa1, 0xa2, 0xa3, 0xa4, 0xb1, 0xb2, 0x41, 0xc2, 0x91, 0x92, 0xd3, 0xd4, 0xe1, 0xe2, 0xe3, 0xe4,
];

/// Moves every queued datagram from `from` to `to`, through `filter`
/// (return false to drop). Returns how many were delivered.
pub fn transfer(
    from: &mut DtlsSession,
    to: &mut DtlsSession,
    filter: &mut dyn FnMut(&[u8]) -> bool,
) -> usize {
    let mut n = 0;
    while let Some(d) = from.poll_transmit() {
        if filter(&d) && !to.is_failed() && !to.is_closed() {
            let _ = to.handle_datagram(&d);
            n += 1;
        }
    }
    n
}

pub fn done(s: &DtlsSession) -> bool {
    !s.is_handshaking()
}

/// Runs the handshake to completion or failure on both sides, with the
/// given per-direction drop filters, sleeping for timers when idle.
/// Panics if it takes more than `max_rounds` rounds or `limit` time.
pub fn drive(
    c: &mut DtlsSession,
    s: &mut DtlsSession,
    c_to_s: &mut dyn FnMut(&[u8]) -> bool,
    s_to_c: &mut dyn FnMut(&[u8]) -> bool,
    limit: Duration,
) -> usize {
    let start = Instant::now();
    let max_rounds = 200;
    for round in 0..max_rounds {
        let moved = transfer(c, s, c_to_s) + transfer(s, c, s_to_c);
        // The failing side may have queued a final alert: deliver it.
        if done(c) && done(s) {
            transfer(c, s, c_to_s);
            transfer(s, c, s_to_c);
            return round;
        }
        assert!(
            start.elapsed() < limit,
            "handshake not done after {:?}: {c:?} / {s:?}",
            limit
        );
        if moved == 0 {
            let wait = [c.next_timeout(), s.next_timeout()]
                .into_iter()
                .flatten()
                .min()
                .expect("idle but no timer running");
            std::thread::sleep(wait.min(Duration::from_secs(2)));
            let _ = c.handle_timeout();
            let _ = s.handle_timeout();
        }
    }
    panic!("handshake did not settle in {max_rounds} rounds");
}

pub fn pass(_: &[u8]) -> bool {
    true
}

/// Handshake over a lossless in-memory link.
pub fn handshake(c: &mut DtlsSession, s: &mut DtlsSession) {
    drive(c, s, &mut pass, &mut pass, Duration::from_secs(5));
}

/// Sends `msg` from `a` to `b` and returns what `b` decrypted.
pub fn roundtrip(a: &mut DtlsSession, b: &mut DtlsSession, msg: &[u8]) -> Vec<Vec<u8>> {
    a.send_app_data(msg).expect("send_app_data");
    transfer(a, b, &mut pass);
    std::iter::from_fn(|| b.poll_app_data()).collect()
}

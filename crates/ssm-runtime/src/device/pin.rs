//! The Random PIN: shown while the device is unowned
//! ([`new_pin_if_needed`]); attempts on the DTLS server: which handshakes
//! failed on the PIN, and the device's [`PinGuard`] acting on them (a log
//! line and an event per failure; after three in a row no PIN session and
//! no valid PIN for a growing back-off, then a new PIN).
//!
//! A wrong PIN gives both sides different PSKs: the client's Finished (the
//! first record under the new keys, epoch 1) does not verify, DTLS drops it
//! silently (RFC 6347 §4.1.2.7) and the handshake never finishes. So a
//! Random PIN session that has received an epoch-1 handshake record and is
//! still handshaking after it failed on the PIN. It is counted once and
//! ended at once (the client's retransmissions of that flight then meet no
//! session). The PIN itself is never logged.
//!
//! [`PinGuard`]: ssm_ocf::security::pin_guard::PinGuard
use super::{DeviceEvent, State};
use crate::random_bytes;
use ssm_ocf::security::pin_guard::PinVerdict;
use std::net::SocketAddr;
use std::time::Instant;
use tokio::sync::broadcast;

/// Shows a new Random PIN while the device is unowned (RFOTM): as an event
/// and in `<state_dir>/pin` (for headless setups).
pub(super) fn new_pin_if_needed(st: &mut State, events: &broadcast::Sender<DeviceEvent>) {
    let unowned = st
        .device
        .security()
        .is_some_and(|s| s.pstat.dos == ssm_ocf::security::pstat::DeviceOnboardingState::Rfotm);
    // No PIN at all during a back-off after failed attempts (below).
    let backing_off = !st.pin_guard.allows(std::time::Instant::now());
    if !unowned || backing_off {
        st.pin = None;
        st.persist.dir.remove_pin();
        return;
    }
    let mut rng = |b: &mut [u8]| b.copy_from_slice(&random_bytes::<4>()[..b.len()]);
    let pin = ssm_ocf::security::otm::random_pin(&mut rng);
    if let Err(e) = st.persist.dir.save_pin(&pin) {
        tracing::warn!(error = %e, "cannot write the PIN file");
    }
    // The PIN is a secret: never logged at any level. It is shown once on
    // the event stream (`ssm device` prints it) and in the 0600 `pin` file.
    tracing::info!("a new Random PIN is shown for onboarding");
    let _ = events.send(DeviceEvent::Pin(pin.clone()));
    st.pin = Some(pin);
}

/// DTLS content type `handshake`.
const HANDSHAKE: u8 = 22;
/// DTLS record header: type, version, epoch, sequence number, length.
const RECORD_HEADER: usize = 13;

/// Whether `datagram` carries a handshake record of epoch 1 or later: the
/// peer's encrypted Finished.
pub(super) fn carries_finished(datagram: &[u8]) -> bool {
    let mut rest = datagram;
    while rest.len() >= RECORD_HEADER {
        let epoch = u16::from_be_bytes([rest[3], rest[4]]);
        if rest[0] == HANDSHAKE && epoch >= 1 {
            return true;
        }
        let len = usize::from(u16::from_be_bytes([rest[11], rest[12]]));
        rest = rest.get(RECORD_HEADER + len..).unwrap_or_default();
    }
    false
}

/// After a datagram of a Random PIN session from `peer`: if it carried
/// the peer's Finished and the handshake is still not done, the PIN was
/// wrong. Counts it (once per session) and ends the session.
pub(super) fn check_attempt(
    st: &mut State,
    peer: SocketAddr,
    carried_finished: bool,
    now: Instant,
    events: &broadcast::Sender<DeviceEvent>,
) {
    let Some(e) = st.dtls.get_mut(&peer) else {
        return;
    };
    if !carried_finished || !e.owner_transfer || e.session.pin_rejected {
        return;
    }
    if e.session.session.cipher().is_some() {
        return;
    }
    e.session.pin_rejected = true;
    failed(st, peer, now, events);
}

/// A failed Random PIN attempt from `peer`: logged (never the PIN), as an
/// event, and counted by the guard; at the limit the PIN is void and every
/// PIN handshake in progress ends.
fn failed(st: &mut State, peer: SocketAddr, now: Instant, events: &broadcast::Sender<DeviceEvent>) {
    let verdict = st.pin_guard.failed(now);
    let in_a_row = match verdict {
        PinVerdict::Counted { in_a_row } => in_a_row,
        PinVerdict::BackOff { .. } => ssm_ocf::security::pin_guard::FAILURES_BEFORE_BACKOFF,
    };
    tracing::warn!(
        %peer,
        in_a_row,
        "Random PIN attempt failed: the handshake did not verify under the PIN (wrong PIN)"
    );
    let _ = events.send(DeviceEvent::PinFailed { peer, in_a_row });
    if let PinVerdict::BackOff { backoff, round } = verdict {
        tracing::warn!(
            backoff_s = backoff.as_secs_f64(),
            round,
            "{in_a_row} failed Random PIN attempts in a row: no PIN session until the back-off ends, then a new PIN"
        );
        // The PIN is void: nobody may finish guessing it.
        st.pin = None;
        st.persist.dir.remove_pin();
        for (_, e) in st.dtls.iter_mut() {
            if e.owner_transfer && !e.is_established() {
                e.session.pin_rejected = true;
            }
        }
        let _ = events.send(DeviceEvent::PinBackOff { backoff, round });
    }
}

/// A PIN session finished its handshake: the peer knew the PIN.
pub(super) fn succeeded(st: &mut State) {
    st.pin_guard.succeeded();
}

/// From the timer: when a back-off ends, a new PIN is shown.
pub(super) fn poll(st: &mut State, now: Instant, events: &broadcast::Sender<DeviceEvent>) {
    if st.pin_guard.poll(now) {
        new_pin_if_needed(st, events);
    }
}

#[cfg(test)]
mod tests {
    use super::carries_finished;

    fn record(ty: u8, epoch: u16, body: &[u8]) -> Vec<u8> {
        let mut r = vec![ty, 0xfe, 0xfd];
        r.extend_from_slice(&epoch.to_be_bytes());
        r.extend_from_slice(&[0; 6]);
        r.extend_from_slice(&(body.len() as u16).to_be_bytes());
        r.extend_from_slice(body);
        r
    }

    #[test]
    fn finds_the_encrypted_finished_in_a_flight() {
        // ClientKeyExchange, ChangeCipherSpec (epoch 0), Finished (epoch 1).
        let mut flight = record(22, 0, &[16; 40]);
        flight.extend(record(20, 0, &[1]));
        assert!(!carries_finished(&flight));
        flight.extend(record(22, 1, &[0xaa; 48]));
        assert!(carries_finished(&flight));
        // Application data of an established session is not a Finished.
        assert!(!carries_finished(&record(23, 1, &[0; 30])));
        // Truncated or garbage input never panics.
        assert!(!carries_finished(&flight[..20]));
        assert!(!carries_finished(&[22, 0xfe]));
        let mut lying = record(22, 0, &[0; 4]);
        lying[11] = 0xff;
        assert!(!carries_finished(&lying));
    }
}

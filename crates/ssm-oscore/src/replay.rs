//! Replay protection for requests (RFC 8613 §7.4) and the Echo-based
//! initialisation of the window after a restart (Appendix B.1.2, RFC 9175).
//!
//! The window is a sliding bitmap anchored at the highest Partial IV
//! accepted. [`ReplayWindow::check`] is a pure query; only
//! [`ReplayWindow::accept`] changes state, and the unprotect functions call
//! it only after the AEAD tag has verified, so forged messages cannot move
//! the window.
use crate::error::Error;
use core::fmt;

/// RFC 8613 recommends a default window of 32.
pub const DEFAULT_REPLAY_WINDOW: u8 = 32;
/// The largest window this implementation keeps (a `u128` bitmap).
pub const MAX_REPLAY_WINDOW: u8 = 128;

/// A sliding replay window over sequence numbers.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ReplayWindow {
    size: u8,
    /// Highest accepted sequence number, `None` before the first.
    highest: Option<u64>,
    /// Bit `i` set: `highest − i` was accepted.
    seen: u128,
}

impl ReplayWindow {
    /// An empty window of `size` (1..=128) positions.
    pub fn new(size: u8) -> Self {
        ReplayWindow {
            size: size.clamp(1, MAX_REPLAY_WINDOW),
            highest: None,
            seen: 0,
        }
    }

    /// A window that treats every sequence number up to and including
    /// `highest` as already received: what a receiver restores from a
    /// persisted floor after a restart.
    pub fn from_floor(highest: u64, size: u8) -> Self {
        let size = size.clamp(1, MAX_REPLAY_WINDOW);
        ReplayWindow {
            size,
            highest: Some(highest),
            seen: mask(size),
        }
    }

    /// The window size.
    pub fn size(&self) -> u8 {
        self.size
    }

    /// The highest accepted sequence number.
    pub fn highest(&self) -> Option<u64> {
        self.highest
    }

    /// Is `seq` fresh? Does not change the window.
    pub fn check(&self, seq: u64) -> Result<(), Error> {
        let Some(h) = self.highest else { return Ok(()) };
        if seq > h {
            return Ok(());
        }
        let age = h - seq;
        if age >= u64::from(self.size) || self.seen & (1u128 << age) != 0 {
            return Err(Error::Replay);
        }
        Ok(())
    }

    /// Records `seq` as received. Call only after the message authenticated
    /// and [`Self::check`] passed; a stale `seq` is ignored.
    pub fn accept(&mut self, seq: u64) {
        match self.highest {
            None => {
                self.highest = Some(seq);
                self.seen = 1;
            }
            Some(h) if seq > h => {
                let shift = seq - h;
                self.seen = if shift >= 128 { 0 } else { self.seen << shift };
                self.seen = (self.seen | 1) & mask(self.size);
                self.highest = Some(seq);
            }
            Some(h) => {
                let age = h - seq;
                if age < u64::from(self.size) {
                    self.seen |= 1u128 << age;
                }
            }
        }
    }
}

fn mask(size: u8) -> u128 {
    if size >= 128 {
        u128::MAX
    } else {
        (1u128 << size) - 1
    }
}

impl fmt::Debug for ReplayWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplayWindow")
            .field("size", &self.size)
            .field("highest", &self.highest)
            .field("seen", &format_args!("{:#x}", self.seen))
            .finish()
    }
}

/// Longest Echo value we issue (RFC 9175 allows 1–40 bytes).
pub const MAX_ECHO_LEN: usize = 16;

/// The replay state of a Recipient Context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayState {
    /// Normal operation.
    Window(ReplayWindow),
    /// After a restart without a trustworthy window (App. B.1.2): every
    /// request is answered with a 4.01 Echo challenge until one verifies
    /// carrying the pending Echo value; its Partial IV then anchors the
    /// window.
    AwaitingEcho {
        /// Window size to use once initialised.
        size: u8,
        /// The Echo value issued (length, bytes), if any. Every challenge
        /// of this period carries it (see [`ReplayState::echo_challenge`]).
        pending: Option<(u8, [u8; MAX_ECHO_LEN])>,
    },
}

impl ReplayState {
    /// Starts awaiting an Echo round trip.
    pub fn awaiting_echo(size: u8) -> Self {
        ReplayState::AwaitingEcho {
            size,
            pending: None,
        }
    }

    /// The Echo value to send in a 4.01 challenge (App. B.1.2): the one
    /// already outstanding, else `fresh` (cut to 16 bytes; an empty value is
    /// never issued), which becomes the outstanding one. `None` when no
    /// challenge is due (normal operation) or `fresh` is empty.
    ///
    /// One value serves every challenge until a verified request returns
    /// it. What the Echo round trip has to prove is only that the request
    /// was made after the value existed, i.e. after the restart; any
    /// request that verifies under this context and carries it proves that,
    /// and only the holder of the key can make one. A value replaced on
    /// every challenge would let whoever replays an old recorded request
    /// (it verifies, so it is challenged too) overwrite the value the real
    /// client is about to return, for as long as the replays continue
    /// (review finding F4); several slots, oldest replaced, only raise the
    /// number of replays needed.
    pub fn echo_challenge(&mut self, fresh: &[u8]) -> Option<&[u8]> {
        if let ReplayState::AwaitingEcho { pending: None, .. } = self {
            if fresh.is_empty() {
                return None;
            }
            self.set_pending_echo(fresh);
        }
        self.pending_echo()
    }

    /// Sets (replaces) the Echo value the server is about to send in its
    /// challenge. Values longer than 16 bytes are cut. A responder uses
    /// [`Self::echo_challenge`], which keeps an outstanding value.
    pub fn set_pending_echo(&mut self, echo: &[u8]) {
        if let ReplayState::AwaitingEcho { pending, .. } = self {
            let n = echo.len().min(MAX_ECHO_LEN);
            let mut b = [0u8; MAX_ECHO_LEN];
            b[..n].copy_from_slice(&echo[..n]);
            *pending = Some((n as u8, b));
        }
    }

    /// The pending Echo value, if a challenge was issued.
    pub fn pending_echo(&self) -> Option<&[u8]> {
        match self {
            ReplayState::AwaitingEcho {
                pending: Some((n, b)),
                ..
            } => Some(&b[..*n as usize]),
            _ => None,
        }
    }
}

/// The client's Notification Number of one observation (RFC 8613
/// §4.1.3.5.2, §7.4.1): notifications are ordered and replay-checked by
/// their Partial IV, never by the outer Observe value. At most one
/// notification without Partial IV (the first, which may reuse the request
/// nonce) is accepted, as the oldest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NotificationOrder {
    without_piv_seen: bool,
    number: Option<u64>,
}

impl NotificationOrder {
    /// A new observation: nothing received yet.
    pub const fn new() -> Self {
        NotificationOrder {
            without_piv_seen: false,
            number: None,
        }
    }

    /// Decides on a *verified* notification with Partial IV `piv` (`None`:
    /// none in the message). Returns `true` if it is newer than every one
    /// accepted so far (and records it); `false`: a replay or an older one,
    /// to be dropped (RFC 7641 §3.4: an older notification never replaces
    /// a newer one).
    pub fn accept(&mut self, piv: Option<u64>) -> bool {
        match piv {
            None => {
                // Only the first, and only before any with a Partial IV.
                if self.without_piv_seen || self.number.is_some() {
                    return false;
                }
                self.without_piv_seen = true;
                true
            }
            Some(p) => {
                if self.number.is_some_and(|n| p <= n) {
                    return false;
                }
                self.number = Some(p);
                true
            }
        }
    }

    /// The Notification Number: the largest Partial IV accepted.
    pub fn number(&self) -> Option<u64> {
        self.number
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(w: &mut ReplayWindow, seq: u64) -> bool {
        if w.check(seq).is_ok() {
            w.accept(seq);
            true
        } else {
            false
        }
    }

    #[test]
    fn rfc_example_10_7_10() {
        let mut w = ReplayWindow::new(32);
        assert!(run(&mut w, 10));
        assert!(run(&mut w, 7));
        assert!(!run(&mut w, 10));
        assert!(!run(&mut w, 7));
        assert!(run(&mut w, 8));
    }

    #[test]
    fn window_edges() {
        let mut w = ReplayWindow::new(32);
        assert!(run(&mut w, 100));
        assert!(!run(&mut w, 100 - 32)); // just outside
        assert!(run(&mut w, 100 - 31)); // oldest inside
        assert!(run(&mut w, 1000)); // far jump clears
        assert!(!run(&mut w, 100));
        assert!(run(&mut w, 999));
        assert!(run(&mut w, 0xff_ffff_ffff));
    }

    #[test]
    fn floor() {
        let mut w = ReplayWindow::from_floor(50, 32);
        for s in 0..=50 {
            assert!(!run(&mut w, s));
        }
        assert!(run(&mut w, 51));
    }

    #[test]
    fn echo_challenge_keeps_the_outstanding_value() {
        let mut s = ReplayState::awaiting_echo(32);
        assert_eq!(s.echo_challenge(&[]), None);
        assert_eq!(s.echo_challenge(&[1; 8]), Some(&[1u8; 8][..]));
        // Later challenges (a replayed request's among them) carry the same
        // value: nothing can push it out before the client returns it.
        for i in 2..100u8 {
            assert_eq!(s.echo_challenge(&[i; 8]), Some(&[1u8; 8][..]));
        }
        assert_eq!(s.pending_echo(), Some(&[1u8; 8][..]));
        // Cut to the longest value kept.
        let mut s = ReplayState::awaiting_echo(32);
        assert_eq!(
            s.echo_challenge(&[7; 40]).map(<[u8]>::len),
            Some(MAX_ECHO_LEN)
        );
        // No challenge in normal operation.
        let mut w = ReplayState::Window(ReplayWindow::new(32));
        assert_eq!(w.echo_challenge(&[1; 8]), None);
    }

    #[test]
    fn zero_first() {
        let mut w = ReplayWindow::new(32);
        assert!(run(&mut w, 0));
        assert!(!run(&mut w, 0));
    }

    #[test]
    fn notifications_in_partial_iv_order() {
        let mut o = NotificationOrder::new();
        assert!(o.accept(None), "the first may reuse the request nonce");
        assert!(!o.accept(None), "only one without Partial IV");
        assert!(o.accept(Some(5)));
        assert!(!o.accept(Some(5)), "a replay");
        assert!(!o.accept(Some(3)), "an older one");
        assert!(o.accept(Some(9)));
        assert_eq!(o.number(), Some(9));
        assert!(!o.accept(None), "none without Partial IV after one with");
    }

    #[test]
    fn notification_order_starts_at_first_piv() {
        let mut o = NotificationOrder::new();
        assert!(o.accept(Some(0)));
        assert!(!o.accept(Some(0)));
        assert!(!o.accept(None));
        assert!(o.accept(Some(1)));
    }
}

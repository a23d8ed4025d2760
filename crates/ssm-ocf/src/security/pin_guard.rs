//! Brute-force protection of the Random PIN owner transfer (OCF Security,
//! Random PIN based OTM; DIGEST §6): every DTLS handshake of a PIN session
//! tests one guess of an 8-digit PIN. After [`FAILURES_BEFORE_BACKOFF`]
//! failed handshakes in a row the device refuses PIN sessions for a back-off
//! that doubles with each further round ([`FIRST_BACKOFF`] up to
//! [`MAX_BACKOFF`]), and then shows a new PIN: the guesses made against the
//! old one are worth nothing.
//!
//! Sans-IO: the runtime says when a handshake failed or succeeded and asks,
//! with the current time, whether a PIN session may start and whether the
//! back-off just ended.
use std::time::{Duration, Instant};

/// Failed PIN handshakes in a row that start a back-off.
pub const FAILURES_BEFORE_BACKOFF: u32 = 3;
/// The first back-off.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(2);
/// The longest back-off (reached after 8 rounds of 3 failures).
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// What a failed PIN handshake leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinVerdict {
    /// Counted: `in_a_row` failures since the last success or back-off.
    Counted {
        /// Failures in a row, this one included.
        in_a_row: u32,
    },
    /// The limit is reached: the current PIN is void, no PIN session is
    /// accepted for `backoff`, then a new PIN is shown.
    BackOff {
        /// How long PIN sessions are refused.
        backoff: Duration,
        /// Back-off rounds since the last success, this one included.
        round: u32,
    },
}

/// The state of the protection (in memory: a restarted device shows a new
/// PIN anyway).
#[derive(Debug, Clone, Default)]
pub struct PinGuard {
    /// Failures since the last success or the last back-off.
    in_a_row: u32,
    /// Back-off rounds since the last success.
    rounds: u32,
    /// The running back-off ends then.
    until: Option<Instant>,
}

impl PinGuard {
    /// No failure yet.
    pub fn new() -> Self {
        PinGuard::default()
    }

    /// Whether a PIN session may start at `now` (no back-off running).
    pub fn allows(&self, now: Instant) -> bool {
        self.until.is_none_or(|t| now >= t)
    }

    /// A PIN handshake failed at `now` (the peer's Finished did not verify
    /// under the PIN's key).
    pub fn failed(&mut self, now: Instant) -> PinVerdict {
        self.in_a_row += 1;
        if self.in_a_row < FAILURES_BEFORE_BACKOFF {
            return PinVerdict::Counted {
                in_a_row: self.in_a_row,
            };
        }
        self.in_a_row = 0;
        self.rounds = self.rounds.saturating_add(1);
        let backoff = backoff(self.rounds);
        // A session that began before a back-off and failed during it
        // extends it; it never shortens it.
        let end = now + backoff;
        self.until = Some(self.until.map_or(end, |t| t.max(end)));
        PinVerdict::BackOff {
            backoff,
            round: self.rounds,
        }
    }

    /// A PIN handshake succeeded (the peer knew the PIN): the count starts
    /// again.
    pub fn succeeded(&mut self) {
        *self = PinGuard::default();
    }

    /// Whether a back-off ended by `now` (true once per back-off): the
    /// moment to show a new PIN.
    pub fn poll(&mut self, now: Instant) -> bool {
        match self.until {
            Some(t) if now >= t => {
                self.until = None;
                true
            }
            _ => false,
        }
    }
}

/// The back-off of round `round` (1, 2, …): [`FIRST_BACKOFF`] doubled each
/// round, at most [`MAX_BACKOFF`].
pub fn backoff(round: u32) -> Duration {
    let doublings = round.saturating_sub(1).min(16);
    (FIRST_BACKOFF * (1u32 << doublings)).min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_failures_in_a_row_start_a_growing_backoff() {
        let t0 = Instant::now();
        let mut g = PinGuard::new();
        assert!(g.allows(t0));
        assert_eq!(g.failed(t0), PinVerdict::Counted { in_a_row: 1 });
        assert_eq!(g.failed(t0), PinVerdict::Counted { in_a_row: 2 });
        assert!(g.allows(t0), "two failures: no back-off yet");
        assert_eq!(
            g.failed(t0),
            PinVerdict::BackOff {
                backoff: FIRST_BACKOFF,
                round: 1
            }
        );
        assert!(!g.allows(t0));
        assert!(!g.allows(t0 + FIRST_BACKOFF - Duration::from_millis(1)));
        assert!(!g.poll(t0 + Duration::from_secs(1)));
        assert!(g.allows(t0 + FIRST_BACKOFF));
        assert!(g.poll(t0 + FIRST_BACKOFF), "the back-off ended: new PIN");
        assert!(!g.poll(t0 + FIRST_BACKOFF), "once per back-off");

        // The next round waits twice as long, and so on up to the cap.
        let t1 = t0 + Duration::from_secs(10);
        for _ in 0..2 {
            g.failed(t1);
        }
        assert_eq!(
            g.failed(t1),
            PinVerdict::BackOff {
                backoff: 2 * FIRST_BACKOFF,
                round: 2
            }
        );
        assert!(!g.allows(t1 + FIRST_BACKOFF));
        assert!(g.allows(t1 + 2 * FIRST_BACKOFF));
        assert_eq!(backoff(3), Duration::from_secs(8));
        assert_eq!(backoff(8), Duration::from_secs(256));
        assert_eq!(backoff(9), MAX_BACKOFF);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }

    #[test]
    fn a_success_starts_the_count_again() {
        let t0 = Instant::now();
        let mut g = PinGuard::new();
        g.failed(t0);
        g.failed(t0);
        g.succeeded();
        assert_eq!(g.failed(t0), PinVerdict::Counted { in_a_row: 1 });
        // After a success the back-off is the first one again.
        for _ in 0..5 {
            g.failed(t0);
        }
        g.succeeded();
        assert!(g.allows(t0));
        for _ in 0..2 {
            g.failed(t0);
        }
        assert_eq!(
            g.failed(t0),
            PinVerdict::BackOff {
                backoff: FIRST_BACKOFF,
                round: 1
            }
        );
    }

    #[test]
    fn a_late_failure_extends_the_backoff_never_shortens_it() {
        let t0 = Instant::now();
        let mut g = PinGuard::new();
        for _ in 0..3 {
            g.failed(t0);
        }
        // Sessions begun before the back-off fail during it.
        let t1 = t0 + Duration::from_secs(1);
        for _ in 0..3 {
            g.failed(t1);
        }
        assert!(!g.allows(t1 + 2 * FIRST_BACKOFF - Duration::from_millis(1)));
        assert!(g.allows(t1 + 2 * FIRST_BACKOFF));
    }
}

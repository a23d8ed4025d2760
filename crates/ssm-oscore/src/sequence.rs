//! The Sender Sequence Number and its persistence "K ahead" (RFC 8613 §7.2.1,
//! Appendix B.1.1).
//!
//! A value `L` in storage promises that no sequence number `≥ L` was ever
//! used. Before using a number at or above the stored limit the sender
//! writes `L' = next + K`; after a restart it resumes at the stored limit.
//! A crash can therefore skip up to K numbers but never reuse one.
use crate::error::Error;
use crate::id::PartialIv;

/// The largest sequence number (a 5-byte Partial IV).
pub const MAX_SEQUENCE_NUMBER: u64 = (1 << 40) - 1;

/// Durable storage for a sender's sequence-number limit.
pub trait SequenceNumberStore {
    /// Why storing failed.
    type Error;
    /// Durably records `limit`: after a restart the sender must resume at
    /// `limit`. Must not return before the value is on stable storage.
    fn store_limit(&mut self, limit: u64) -> Result<(), Self::Error>;
}

/// A sender sequence number with its persisted reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SequenceNumber {
    next: u64,
    /// Numbers below this are covered by storage.
    reserved_until: u64,
    /// How far ahead to reserve.
    k: u64,
}

impl SequenceNumber {
    /// Resumes from a persisted limit (0 for a new context). The first
    /// protect needs a checkpoint.
    pub fn resume(stored_limit: u64, k: u64) -> Self {
        SequenceNumber {
            next: stored_limit,
            reserved_until: stored_limit,
            k: k.max(1),
        }
    }

    /// A sequence number that is never persisted. Only sound for a context
    /// whose keys are never used again after this process ends (e.g. fresh
    /// random keys per run, or test vectors).
    pub fn volatile(start: u64) -> Self {
        SequenceNumber {
            next: start,
            reserved_until: u64::MAX,
            k: 1,
        }
    }

    /// The next number to be used.
    pub fn peek(&self) -> u64 {
        self.next
    }

    /// The limit to store before the next number may be used, if due.
    pub fn checkpoint_due(&self) -> Option<u64> {
        (self.next >= self.reserved_until).then(|| {
            self.next
                .saturating_add(self.k)
                .min(MAX_SEQUENCE_NUMBER + 1)
        })
    }

    /// Records that `limit` is on stable storage.
    pub fn checkpoint_stored(&mut self, limit: u64) {
        self.reserved_until = self.reserved_until.max(limit);
    }

    /// Stores a checkpoint through `store` if one is due.
    pub fn reserve<S: SequenceNumberStore>(&mut self, store: &mut S) -> Result<(), S::Error> {
        if let Some(limit) = self.checkpoint_due() {
            store.store_limit(limit)?;
            self.checkpoint_stored(limit);
        }
        Ok(())
    }

    /// Takes the next number as a Partial IV.
    pub fn take(&mut self) -> Result<PartialIv, Error> {
        if self.next > MAX_SEQUENCE_NUMBER {
            return Err(Error::SequenceNumberExhausted);
        }
        if self.next >= self.reserved_until {
            return Err(Error::SequenceNumberNotReserved);
        }
        let piv = PartialIv::from_u64(self.next)?;
        self.next += 1;
        Ok(piv)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Mem(u64, usize);
    impl SequenceNumberStore for Mem {
        type Error = ();
        fn store_limit(&mut self, l: u64) -> Result<(), ()> {
            self.0 = l;
            self.1 += 1;
            Ok(())
        }
    }

    #[test]
    fn k_ahead_and_resume() {
        let mut store = Mem(0, 0);
        let mut s = SequenceNumber::resume(0, 10);
        assert_eq!(s.take(), Err(Error::SequenceNumberNotReserved));
        let mut used = alloc::vec::Vec::new();
        for _ in 0..25 {
            s.reserve(&mut store).unwrap();
            used.push(s.take().unwrap().value());
        }
        assert_eq!(store.1, 3); // 10, 20, 30
        assert_eq!(store.0, 30);
        // Crash: resume from storage; every new number is above every used one.
        let mut s2 = SequenceNumber::resume(store.0, 10);
        s2.reserve(&mut store).unwrap();
        let n = s2.take().unwrap().value();
        assert!(used.iter().all(|u| *u < n));
    }

    #[test]
    fn exhaustion() {
        let mut s = SequenceNumber::volatile(MAX_SEQUENCE_NUMBER);
        assert_eq!(s.take().unwrap().value(), MAX_SEQUENCE_NUMBER);
        assert_eq!(s.take(), Err(Error::SequenceNumberExhausted));
        let s = SequenceNumber::resume(MAX_SEQUENCE_NUMBER, 100);
        assert_eq!(s.checkpoint_due(), Some(MAX_SEQUENCE_NUMBER + 1));
    }

    extern crate alloc;
}

//! The Sender Sequence Number and its persistence "K ahead" (RFC 8613 §7.2.1,
//! Appendix B.1.1).
//!
//! A sender never uses a number its store has not reserved for it. A store
//! hands out *blocks* `start..end`: it promises that no number in the block
//! was ever handed out before, to this sender or to any other user of the
//! same store (another process sharing a state directory), and that after a
//! crash or restart no number below `end` is handed out again. A
//! single-process store reserves K ahead (one durable write per K numbers);
//! a store shared by several processes hands out one number at a time under
//! a lock (see `ssm_runtime::store::FileSequenceStore`). A crash can skip
//! numbers but never reuse one.
use crate::error::Error;
use crate::id::PartialIv;
use core::ops::Range;

/// The largest sequence number (a 5-byte Partial IV).
pub const MAX_SEQUENCE_NUMBER: u64 = (1 << 40) - 1;

/// Durable storage that hands out blocks of a sender's sequence numbers.
pub trait SequenceNumberStore {
    /// Why reserving failed.
    type Error;
    /// Reserves numbers for the sender whose next unused number is `next`:
    /// returns `start..end` with `start ≥ next`, none of which was ever
    /// handed out before (to anyone sharing this store), and none of which
    /// is handed out again after a crash or restart. `k` is how far ahead
    /// the store may reserve on stable storage. Must not return before the
    /// reservation is on stable storage. An empty range means exhausted.
    fn reserve_block(&mut self, next: u64, k: u64) -> Result<Range<u64>, Self::Error>;
}

/// The reservation rule of a store owned by one sender only: `next..next+k`
/// (capped at the largest sequence number), with `next + k` the limit to
/// persist.
pub fn block_ahead(next: u64, k: u64) -> Range<u64> {
    next..next.saturating_add(k.max(1)).min(MAX_SEQUENCE_NUMBER + 1)
}

/// A sender sequence number with its persisted reservation. Neither `Copy`
/// nor `Clone`: a copy would hand out the same numbers twice.
#[derive(Debug, PartialEq, Eq)]
pub struct SequenceNumber {
    next: u64,
    /// Numbers below this (and at or above `next`) are reserved for us.
    reserved_until: u64,
    /// How far ahead to reserve.
    k: u64,
}

impl SequenceNumber {
    /// Resumes at or above `floor` (a persisted limit, 0 for a new
    /// context). The first protect needs a reservation from the store.
    pub fn resume(floor: u64, k: u64) -> Self {
        SequenceNumber {
            next: floor,
            reserved_until: floor,
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

    /// The next number to be used (if reserved; a shared store may move it
    /// forward at the next reservation).
    pub fn peek(&self) -> u64 {
        self.next
    }

    /// True if the next number must be reserved through the store first.
    pub fn reservation_due(&self) -> bool {
        self.next >= self.reserved_until
    }

    /// Reserves through `store` if the next number is not reserved yet.
    pub fn reserve<S: SequenceNumberStore>(&mut self, store: &mut S) -> Result<(), S::Error> {
        if self.reservation_due() {
            let block = store.reserve_block(self.next, self.k)?;
            // A store never hands out a number below `next`; should one
            // misbehave, what lies below stays unusable.
            self.next = self.next.max(block.start);
            self.reserved_until = block.end;
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

    /// A single-sender store: persists the end of each block.
    struct Mem(u64, usize);
    impl SequenceNumberStore for Mem {
        type Error = ();
        fn reserve_block(&mut self, next: u64, k: u64) -> Result<Range<u64>, ()> {
            let b = block_ahead(next.max(self.0), k);
            self.0 = b.end;
            self.1 += 1;
            Ok(b)
        }
    }

    /// A store shared by several senders: one number at a time from a
    /// common counter.
    struct Shared<'a>(&'a core::cell::Cell<u64>);
    impl SequenceNumberStore for Shared<'_> {
        type Error = ();
        fn reserve_block(&mut self, next: u64, _k: u64) -> Result<Range<u64>, ()> {
            let start = next.max(self.0.get());
            self.0.set(start + 1);
            Ok(start..start + 1)
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
    fn shared_store_never_hands_out_a_number_twice() {
        let counter = core::cell::Cell::new(0);
        let (mut a, mut b) = (Shared(&counter), Shared(&counter));
        let mut sa = SequenceNumber::resume(0, 64);
        let mut sb = SequenceNumber::resume(0, 64);
        let mut used = alloc::vec::Vec::new();
        for i in 0..100 {
            let (s, st) = if i % 3 == 0 {
                (&mut sb, &mut b)
            } else {
                (&mut sa, &mut a)
            };
            s.reserve(st).unwrap();
            used.push(s.take().unwrap().value());
            // Taking again without a reservation is refused.
            assert_eq!(s.take(), Err(Error::SequenceNumberNotReserved));
        }
        let mut sorted = used.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), used.len());
        assert_eq!(used, (0..100).collect::<alloc::vec::Vec<_>>());
    }

    #[test]
    fn exhaustion() {
        let mut s = SequenceNumber::volatile(MAX_SEQUENCE_NUMBER);
        assert_eq!(s.take().unwrap().value(), MAX_SEQUENCE_NUMBER);
        assert_eq!(s.take(), Err(Error::SequenceNumberExhausted));
        assert_eq!(
            block_ahead(MAX_SEQUENCE_NUMBER, 100),
            MAX_SEQUENCE_NUMBER..MAX_SEQUENCE_NUMBER + 1
        );
        let mut store = Mem(MAX_SEQUENCE_NUMBER + 1, 0);
        let mut s = SequenceNumber::resume(MAX_SEQUENCE_NUMBER, 100);
        s.reserve(&mut store).unwrap();
        assert_eq!(s.take(), Err(Error::SequenceNumberExhausted));
    }

    extern crate alloc;
}

//! A memo of verified group-mode countersignatures, shared by the lights
//! of one process (a gateway, a bridge, `ssm demo`, the benchmark): each
//! of N lights receives the same signed datagram, and without the memo
//! each verifies the same Ed25519 signature (~33 µs of CPU; 3.3 ms for
//! 100 lights, the fan-out skew of issue 16).
//!
//! Why this is sound:
//!
//! * Ed25519 strict verification ([`StrictVerifier`], `verify_strict`) is
//!   a deterministic function of (public key, signed bytes, signature):
//!   nothing else enters it, so its answer for a triple never changes.
//! * Only successes are remembered, keyed by SHA-256 over public key ‖
//!   signature ‖ to-be-signed bytes (fixed-length key and signature first,
//!   so the concatenation is unambiguous). A hit means this exact triple
//!   verified before. A forged triple (any byte of key, signature or
//!   signed bytes changed) has another digest and misses, so the strict
//!   check runs and refuses it; a hit on it would take a SHA-256
//!   collision with a triple that did verify (a second preimage of a
//!   genuine command, which the attacker did not choose).
//! * Nothing about a receiver is cached: each light still checks the kid
//!   and Gid, decrypts and verifies the AEAD tag with its own context, and
//!   checks and moves its own replay window (only after the signature and
//!   the tag). The to-be-signed bytes include the `external_aad` with the
//!   sender's credential, so a hit also needs the same group context.
//! * Bounded ([`SignatureCache::DEFAULT_CAPACITY`] entries, oldest out)
//!   and per process (an `Arc` shared by the receivers, never persisted).
use ssm_oscore::group::{SignatureVerifier, StrictVerifier, VerifyingKey, SIGNATURE_LEN};
use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

/// SHA-256 of (public key ‖ signature ‖ to-be-signed bytes).
type Digest = [u8; 32];

/// Verified (key, signed bytes, signature) triples, by digest; see the
/// module documentation for why a hit can stand for a verification.
pub struct SignatureCache {
    capacity: usize,
    inner: Box<dyn SignatureVerifier + Send + Sync>,
    memo: Mutex<Memo>,
}

#[derive(Default)]
struct Memo {
    known: HashSet<Digest>,
    /// Insertion order, oldest first.
    order: VecDeque<Digest>,
    hits: u64,
    misses: u64,
}

impl SignatureCache {
    /// The capacity the product uses ([`SignatureCache::new`]): far more
    /// than the commands in flight to the lights of a process at once.
    pub const DEFAULT_CAPACITY: usize = 256;

    /// A memo of up to `capacity` successes of the strict Ed25519 check.
    pub fn new(capacity: usize) -> Self {
        Self::with_verifier(capacity, Box::new(StrictVerifier))
    }

    /// A memo of the successes of `inner` (which must itself be a
    /// deterministic check, e.g. the strict one).
    pub fn with_verifier(capacity: usize, inner: Box<dyn SignatureVerifier + Send + Sync>) -> Self {
        SignatureCache {
            capacity,
            inner,
            memo: Mutex::default(),
        }
    }

    /// Lookups answered from the memo, and those that ran the check.
    pub fn stats(&self) -> (u64, u64) {
        self.memo
            .lock()
            .map(|m| (m.hits, m.misses))
            .unwrap_or_default()
    }

    /// Successes remembered now.
    pub fn len(&self) -> usize {
        self.memo.lock().map(|m| m.known.len()).unwrap_or(0)
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn digest(key: &VerifyingKey, tbs: &[u8], sig: &[u8; SIGNATURE_LEN]) -> Digest {
        use sha2::{Digest as _, Sha256};
        let mut h = Sha256::new();
        h.update(key.as_bytes());
        h.update(sig);
        h.update(tbs);
        h.finalize().into()
    }
}

impl SignatureVerifier for SignatureCache {
    fn verify(&self, key: &VerifyingKey, tbs: &[u8], sig: &[u8; SIGNATURE_LEN]) -> bool {
        let d = Self::digest(key, tbs, sig);
        {
            // A poisoned lock only loses the memo: verify as without it.
            let Ok(mut m) = self.memo.lock() else {
                return self.inner.verify(key, tbs, sig);
            };
            if m.known.contains(&d) {
                m.hits += 1;
                return true;
            }
            m.misses += 1;
        }
        // Verified outside the lock: the other lights' lookups go on.
        if !self.inner.verify(key, tbs, sig) {
            return false; // a failure is never remembered
        }
        if self.capacity > 0 {
            if let Ok(mut m) = self.memo.lock() {
                if m.known.insert(d) {
                    m.order.push_back(d);
                    while m.order.len() > self.capacity {
                        if let Some(old) = m.order.pop_front() {
                            m.known.remove(&old);
                        }
                    }
                }
            }
        }
        true
    }
}

impl std::fmt::Debug for SignatureCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (hits, misses) = self.stats();
        f.debug_struct("SignatureCache")
            .field("capacity", &self.capacity)
            .field("entries", &self.len())
            .field("hits", &hits)
            .field("misses", &misses)
            .finish()
    }
}

#[cfg(test)]
#[path = "signature_cache_tests.rs"]
pub(super) mod tests;

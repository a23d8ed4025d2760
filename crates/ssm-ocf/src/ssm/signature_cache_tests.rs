use super::SignatureCache;
use ed25519_dalek::{Signer, SigningKey};
use ssm_oscore::group::{SignatureVerifier, StrictVerifier, VerifyingKey, SIGNATURE_LEN};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// The strict check, counting its calls.
pub(crate) struct Counting(pub(crate) Arc<AtomicU32>);

impl SignatureVerifier for Counting {
    fn verify(&self, key: &VerifyingKey, tbs: &[u8], sig: &[u8; SIGNATURE_LEN]) -> bool {
        self.0.fetch_add(1, Ordering::SeqCst);
        StrictVerifier.verify(key, tbs, sig)
    }
}

pub(crate) fn counting(capacity: usize) -> (SignatureCache, Arc<AtomicU32>) {
    let calls = Arc::new(AtomicU32::new(0));
    (
        SignatureCache::with_verifier(capacity, Box::new(Counting(calls.clone()))),
        calls,
    )
}

fn signed(seed: u8, msg: &[u8]) -> (VerifyingKey, [u8; SIGNATURE_LEN]) {
    let k = SigningKey::from_bytes(&[seed; 32]);
    (k.verifying_key(), k.sign(msg).to_bytes())
}

#[test]
fn a_success_is_remembered() {
    let (cache, calls) = counting(8);
    let (key, sig) = signed(1, b"tbs one");
    assert!(cache.verify(&key, b"tbs one", &sig));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    for _ in 0..3 {
        assert!(cache.verify(&key, b"tbs one", &sig));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1, "a hit ran the check");
    assert_eq!(cache.stats(), (3, 1));
    assert_eq!(cache.len(), 1);
}

#[test]
fn a_failure_is_not_remembered() {
    let (cache, calls) = counting(8);
    let (key, mut sig) = signed(1, b"tbs");
    sig[5] ^= 1;
    for i in 1..=3 {
        assert!(!cache.verify(&key, b"tbs", &sig));
        assert_eq!(
            calls.load(Ordering::SeqCst),
            i,
            "a failure was answered from memory"
        );
    }
    assert!(cache.is_empty());
    assert_eq!(cache.stats(), (0, 3));
}

#[test]
fn a_changed_byte_of_key_signature_or_message_misses() {
    let (cache, calls) = counting(8);
    let msg = b"countersign structure".to_vec();
    let (key, sig) = signed(1, &msg);
    assert!(cache.verify(&key, &msg, &sig));
    // Another key (a valid one, that did not sign): the check runs, refuses.
    let (other, _) = signed(2, &msg);
    assert!(!cache.verify(&other, &msg, &sig));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    for i in 0..SIGNATURE_LEN {
        let mut s = sig;
        s[i] ^= 0x01;
        assert!(!cache.verify(&key, &msg, &s), "signature byte {i}");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2 + SIGNATURE_LEN as u32);
    for i in 0..msg.len() {
        let mut m = msg.clone();
        m[i] ^= 0x80;
        assert!(!cache.verify(&key, &m, &sig), "message byte {i}");
    }
    // A message one byte longer or shorter is another message too.
    let mut longer = msg.clone();
    longer.push(0);
    assert!(!cache.verify(&key, &longer, &sig));
    assert!(!cache.verify(&key, &msg[..msg.len() - 1], &sig));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2 + (SIGNATURE_LEN + msg.len() + 2) as u32
    );
    // Only the original triple is remembered.
    assert_eq!(cache.len(), 1);
    assert!(cache.verify(&key, &msg, &sig));
    assert_eq!(cache.stats().0, 1);
}

#[test]
fn the_bound_is_respected_oldest_out() {
    let (cache, calls) = counting(4);
    let msgs: Vec<Vec<u8>> = (0..6u8).map(|i| vec![i; 10]).collect();
    let (key, _) = signed(1, b"");
    let sigs: Vec<_> = msgs.iter().map(|m| signed(1, m).1).collect();
    for (m, s) in msgs.iter().zip(&sigs) {
        assert!(cache.verify(&key, m, s));
        assert!(cache.len() <= 4);
    }
    assert_eq!(cache.len(), 4);
    assert_eq!(calls.load(Ordering::SeqCst), 6);
    // The newest four hit; the two oldest went and are checked again.
    for i in 2..6 {
        assert!(cache.verify(&key, &msgs[i], &sigs[i]));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 6);
    assert!(cache.verify(&key, &msgs[0], &sigs[0]));
    assert_eq!(calls.load(Ordering::SeqCst), 7);
    assert_eq!(cache.len(), 4);
    // Capacity 0 remembers nothing.
    let (none, calls) = counting(0);
    assert!(none.verify(&key, &msgs[0], &sigs[0]));
    assert!(none.verify(&key, &msgs[0], &sigs[0]));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert!(none.is_empty());
}

#[test]
fn debug_shows_counts_only() {
    let cache = SignatureCache::new(SignatureCache::DEFAULT_CAPACITY);
    let (key, sig) = signed(3, b"m");
    assert!(cache.verify(&key, b"m", &sig));
    assert!(cache.verify(&key, b"m", &sig));
    assert_eq!(
        format!("{cache:?}"),
        "SignatureCache { capacity: 256, entries: 1, hits: 1, misses: 1 }"
    );
}

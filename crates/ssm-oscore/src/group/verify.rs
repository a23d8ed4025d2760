//! The countersignature check of group mode (RFC 10021 §7.2, §7.4), made
//! pluggable: a process that hosts many members of one group (a gateway,
//! a bridge, a simulator) receives the same signed datagram once per
//! member and may verify each (key, to-be-signed bytes, signature) triple
//! only once (`ssm_ocf::ssm::SignatureCache`). Whatever the verifier, the
//! AEAD tag is verified by every recipient context, and its replay window
//! moves only after the verifier said yes *and* the tag verified.
use super::{GroupCommon, GroupRecipientContext, SIGNATURE_LEN};
use crate::error::Error;
use crate::protect::{Decrypted, RequestBinding};
pub use ed25519_dalek::VerifyingKey;

/// Decides whether a countersignature is valid.
///
/// An implementation must answer as [`StrictVerifier`] does for the same
/// triple (it may remember earlier answers, never invent one): `true` only
/// if `sig` is a valid Ed25519 signature of `tbs` (the
/// `Countersign_structure`) under `key`.
pub trait SignatureVerifier {
    /// True if `sig` verifies over `tbs` under `key`.
    fn verify(&self, key: &VerifyingKey, tbs: &[u8], sig: &[u8; SIGNATURE_LEN]) -> bool;
}

/// Ed25519 verification with `ed25519-dalek`'s `verify_strict` (no
/// small-order components, canonical `S`): the default of
/// [`GroupRecipientContext::unprotect_request`] and
/// [`GroupRecipientContext::unprotect_response`]. A deterministic function
/// of (public key, signed bytes, signature).
#[derive(Debug, Clone, Copy, Default)]
pub struct StrictVerifier;

impl SignatureVerifier for StrictVerifier {
    fn verify(&self, key: &VerifyingKey, tbs: &[u8], sig: &[u8; SIGNATURE_LEN]) -> bool {
        key.verify_strict(tbs, &ed25519_dalek::Signature::from_bytes(sig))
            .is_ok()
    }
}

impl GroupRecipientContext {
    /// Verifies and decrypts a group-mode request (RFC 10021 §7.2) in place:
    /// [`Self::unprotect_request_with`] and the [`StrictVerifier`].
    pub fn unprotect_request<'a>(
        &mut self,
        common: &GroupCommon,
        datagram: &'a mut [u8],
    ) -> Result<Decrypted<'a>, Error> {
        self.unprotect_request_with(common, datagram, &StrictVerifier)
    }

    /// Verifies and decrypts a group-mode response (RFC 10021 §7.4) in
    /// place: [`Self::unprotect_response_with`] and the [`StrictVerifier`].
    pub fn unprotect_response<'a>(
        &self,
        common: &GroupCommon,
        binding: &RequestBinding,
        datagram: &'a mut [u8],
    ) -> Result<Decrypted<'a>, Error> {
        self.unprotect_response_with(common, binding, datagram, &StrictVerifier)
    }
}

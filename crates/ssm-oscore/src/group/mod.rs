//! Group OSCORE, **group mode** (RFC 10021): every message is signed by its
//! sender (EdDSA with Ed25519) and the signature is encrypted with a
//! keystream, so a receiver knows *which* member sent it, not only that a
//! member did.
//!
//! What this module implements, by section of RFC 10021 (numbers as in the
//! working group's editor's copy of the final revision -28,
//! `shared/specs/draft-ietf-core-oscore-groupcomm.md`; the section titles
//! are given too):
//!
//! * §2.1 Common Context ([`GroupCommon`]): the Group Identifier (Gid) as ID
//!   Context (§2.1.3); the Group Encryption Algorithm AES-CCM-16-64-128
//!   (§2.1.7), which also enters the `info` of every key derivation (§2.3);
//!   the Signature Algorithm EdDSA/Ed25519 (§2.1.8); the Signature
//!   Encryption Key (§2.1.9, [`signature_encryption_key`]); the Group
//!   Manager's authentication credential (§2.1.6); the AEAD Algorithm and
//!   Pairwise Key Agreement Algorithm, which group mode uses only as the
//!   values they put into the `external_aad` (§2.1.1, §2.1.10).
//! * §2.2 Sender and Recipient Contexts ([`GroupSenderContext`],
//!   [`GroupRecipientContext`]) with authentication credentials (§2.4):
//!   CWT Claims Sets (RFC 8392) carrying an Ed25519 COSE_Key, kept as the
//!   exact bytes the caller (the Group Manager) provides, since they enter
//!   the `external_aad` verbatim ([`Credential`], [`ccs_ed25519_public_key`]).
//! * §3.1 the countersignature (`Countersign_structure` of RFC 9338 §3.3
//!   with the context "CounterSignature0" and the ciphertext as payload);
//!   §3.2 `kid context` = Gid in requests, `kid` in every response; §3.4 the
//!   extended `external_aad` ([`aad_array`]).
//! * §4.1 the payload is ciphertext ‖ encrypted signature, the OSCORE option
//!   carries the Group Flag (0x20); §4.2 the keystream ([`keystream`]).
//! * §6 message reception: a message without the Group Flag is not
//!   processed here ([`Error::NotGroupMode`]), and the RFC 8613 functions
//!   reject the flag as a reserved bit.
//! * §7.1–§7.4 protecting and verifying requests and responses in group
//!   mode. The signature is verified *before* the ciphertext is decrypted
//!   (§7.2: "SHOULD be performed before decrypting"), and the replay window
//!   moves only after both the signature and the AEAD tag verified; a bad
//!   signature is its own error, [`Error::BadSignature`]. The signature
//!   check is pluggable ([`SignatureVerifier`], default [`StrictVerifier`],
//!   `unprotect_request_with`): a process hosting many members may verify
//!   a signature it received for all of them once; the AEAD tag and the
//!   replay window stay each recipient context's.
//!
//! The pairwise mode (§2.5, §8) is in [`crate::pairwise`].
//!
//! Sequence numbers and replay windows are those of RFC 8613 as in the rest
//! of the crate ([`crate::SequenceNumber`] reserved K ahead through a
//! [`crate::SequenceNumberStore`], [`crate::ReplayState`] with the Echo
//! recovery of App. B.1.2; RFC 10021 §9 allows it for groups).
//!
//! Like the rest of the crate this module is sans-IO and does not allocate:
//! the structures that are signed and authenticated are built in bounded
//! stack buffers, which bounds a group-mode ciphertext to
//! [`MAX_GROUP_CIPHERTEXT_LEN`] bytes and a credential to
//! [`MAX_CRED_LEN`] bytes. Private keys are zeroized on drop (the
//! `ed25519-dalek` `zeroize` feature) and never printed by `Debug`.
//!
//! # Draft -23 (aiocoap 0.4.17) and RFC 10021
//!
//! `shared/vectors/group-oscore-aiocoap.json` was produced by aiocoap 0.4.17,
//! which implements draft -23. The change log of the editor's copy (-23 to
//! -28) and a comparison of the processing rules give these differences; the
//! test `tests/group_aiocoap.rs` reproduces every message of the vectors
//! (group and pairwise mode) byte for byte and asserts the group-mode
//! request field by field, so none of them changes a byte:
//!
//! * -24 §"Implementation Status" (RFC 7942) added, removed again in the RFC:
//!   no protocol change. Fixed "P-521": not used here.
//! * -25 "More precise phrasing on using the encryption nonce" (§3.3): same
//!   nonce construction (the Common IV's first X bytes; X = 13 for
//!   AES-CCM-16-64-128, so the whole Common IV as in RFC 8613).
//! * -26 "Clearer handling of incoming messages if the Replay Window is
//!   invalid" (§2.6.1.1, §9): an invalid window is recovered through Echo,
//!   which this crate does for groups as for RFC 8613 contexts.
//! * -28 Group Encryption Algorithm (§2.1.7): non-AEAD A128CTR/A192CTR/
//!   A256CTR admitted (12-byte nonce), AES-CBC ruled out; the Common IV is
//!   as long as the longest nonce of the AEAD and Group Encryption
//!   Algorithms (§2.1.4), and the longest Sender ID follows the shortest
//!   (§2.2). With AES-CCM-16-64-128 as both algorithms (SSM, and the
//!   vectors) the Common IV stays 13 bytes and Sender IDs 0–7 bytes.
//! * -28 "Clearer definition of Signature Encryption Key" (§2.1.9): `info`
//!   = `[h'', Gid, alg_group_enc, "SEKey", key length of alg_group_enc]`;
//!   aiocoap derives exactly this (the vector's `signature_encryption_key`
//!   is reproduced).
//! * -28 "Integrity protection for the Group Encryption Algorithm" (§2.1.7):
//!   an unauthenticated Group Encryption Algorithm relies on the signature;
//!   with AES-CCM both protect the message.
//! * -28 CWT/CCS: (kty, crv) identify the *type* of public key algorithm
//!   (§2.4); a credential with kty OKP and crv Ed25519 is accepted for
//!   EdDSA, an explicit `alg` other than EdDSA is refused.
//! * -26 "Not only CWTs but also CCSs can be tagged" (§2.4): the untagged
//!   CCS is what the Security Context stores and the `external_aad`
//!   carries; this module takes untagged CCSs and refuses a tagged one
//!   ([`Error::BadCredential`]).
//! * Not a -23/-28 difference, but the one structure the editor's copy
//!   only names: the `Countersign_structure` (RFC 9338 §3.3) is built as
//!   aiocoap builds it, `["CounterSignature0", h'', h'', external_aad,
//!   ciphertext]` (body_protected and sign_protected both the empty byte
//!   string); the vectors' signatures verify only with this structure, not
//!   with the four-element one without `sign_protected` (asserted in the
//!   test). The RFC 9338 text was not at hand to confirm it.
//!
//! The editor's copy has no Group OSCORE test vectors; the aiocoap vectors
//! are not normative.
//!
//! Section numbers: the published RFC 10021 text was not at hand when this
//! was written; the numbers follow the -28 editor's copy (aiocoap's
//! comments cite draft -23 §2.3 and §2.1.9 for the same text as here). An
//! RFC drops the
//! "Implementation Status" section (13 in the draft), so sections from 14
//! on may be numbered one lower in RFC 10021; none of them is cited here.

mod cose;
mod credential;
mod message;
mod sign;
mod verify;

pub use cose::aad_array;
pub(crate) use cose::enc_structure;
pub use credential::{ccs_ed25519_public_key, ccs_of_ed25519, Credential, ED25519_CCS_LEN};
pub use sign::{keystream, signature_encryption_key};
pub use verify::{SignatureVerifier, StrictVerifier, VerifyingKey};

use crate::context::{RecipientContext, SenderContext};
use crate::error::Error;
use crate::id::{Id, IdContext};
use crate::protect::MAX_OPTION_LEN;
use crate::replay::ReplayState;
use crate::sequence::SequenceNumber;
use crate::KEY_LEN;
use ed25519_dalek::SigningKey;
use zeroize::Zeroizing;

/// COSE algorithm -8, EdDSA (here with Ed25519): the Signature Algorithm.
pub const ALG_EDDSA: i32 = -8;
/// COSE algorithm -27, ECDH-SS + HKDF-256: the Pairwise Key Agreement
/// Algorithm for a group with HKDF SHA-256 (RFC 10021 §2.1.10).
pub const ALG_ECDH_SS_HKDF_256: i32 = -27;
/// Length of an Ed25519 signature, and so of the keystream (§4.2).
pub const SIGNATURE_LEN: usize = 64;
/// Longest authentication credential kept (the CCS of an Ed25519 key as
/// aiocoap builds it is 46 bytes).
pub const MAX_CRED_LEN: usize = 256;
/// Longest group-mode ciphertext (plaintext + tag) that can be signed or
/// verified: RFC 7252 §4.6's 1152-byte limit for a CoAP message whose size
/// is not known to fit the path.
pub const MAX_GROUP_CIPHERTEXT_LEN: usize = 1152;
/// The Group Flag in the first byte of the OSCORE option (RFC 10021 §4.1;
/// bit position 2 in IANA's "OSCORE Flag Bits" registry).
pub const GROUP_FLAG: u8 = 0x20;

/// Longest `aad_array` (§3.4): array head, version, the four algorithms,
/// request_kid, request_piv, options, request_kid_context, OSCORE_option,
/// sender_cred, gm_cred.
pub const MAX_AAD_ARRAY_LEN: usize = 1
    + 1
    + (1 + 4 * 5)
    + (1 + crate::MAX_ID_LEN)
    + (1 + crate::MAX_PARTIAL_IV_LEN)
    + 1
    + (2 + crate::MAX_ID_CONTEXT_LEN)
    + (2 + MAX_OPTION_LEN)
    + 2 * (3 + MAX_CRED_LEN);
/// Room before the `aad_array` for the `Enc_structure` head.
pub(crate) const ENC_HEAD: usize = 1 + 9 + 1 + 3;
/// Longest `Countersign_structure`.
const MAX_TBS_LEN: usize = 1 + 18 + 1 + 1 + 3 + MAX_AAD_ARRAY_LEN + 3 + MAX_GROUP_CIPHERTEXT_LEN;

/// The inputs of a group's Security Context (RFC 10021 §2, §2.3).
#[derive(Clone, Copy)]
pub struct GroupParams<'a> {
    /// Master Secret.
    pub master_secret: &'a [u8],
    /// Master Salt; `None` is the empty salt.
    pub master_salt: Option<&'a [u8]>,
    /// Group Identifier (Gid), the ID Context (§2.1.3).
    pub group_id: IdContext,
    /// The Group Manager's authentication credential (§2.1.6), as
    /// distributed.
    pub gm_cred: &'a [u8],
    /// AEAD Algorithm of the Common Context (§2.1.1): set only in groups
    /// that also use the pairwise mode; `None` is CBOR null in the
    /// `external_aad`. AES-CCM-16-64-128 when set ([`crate::ALG_AES_CCM_16_64_128`]).
    pub alg_aead: Option<i32>,
    /// Pairwise Key Agreement Algorithm (§2.1.10), likewise only for the
    /// `external_aad`; [`ALG_ECDH_SS_HKDF_256`] when set.
    pub alg_pairwise_key_agreement: Option<i32>,
}

impl core::fmt::Debug for GroupParams<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("GroupParams")
            .field("master_secret", &"<secret>")
            .field("master_salt", &self.master_salt.map(|_| "<salt>"))
            .field("group_id", &self.group_id)
            .field("alg_aead", &self.alg_aead)
            .field(
                "alg_pairwise_key_agreement",
                &self.alg_pairwise_key_agreement,
            )
            .finish()
    }
}

/// The Common Context's group-mode part (RFC 10021 §2.1), shared by a
/// member's Sender and Recipient Contexts and passed to every protect and
/// unprotect.
pub struct GroupCommon {
    pub(crate) group_id: IdContext,
    sekey: Zeroizing<[u8; KEY_LEN]>,
    gm_cred: Credential,
    alg_aead: Option<i32>,
    alg_pairwise_key_agreement: Option<i32>,
}

impl GroupCommon {
    /// Derives the Signature Encryption Key and keeps the rest of `p`.
    pub fn derive(p: &GroupParams<'_>) -> Result<Self, Error> {
        Ok(GroupCommon {
            group_id: p.group_id,
            sekey: signature_encryption_key(p.master_secret, p.master_salt, &p.group_id)?,
            gm_cred: Credential::new(p.gm_cred)?,
            alg_aead: p.alg_aead,
            alg_pairwise_key_agreement: p.alg_pairwise_key_agreement,
        })
    }

    /// The Group Identifier (ID Context).
    pub fn group_id(&self) -> &IdContext {
        &self.group_id
    }

    /// The Group Manager's authentication credential.
    pub fn gm_cred(&self) -> &Credential {
        &self.gm_cred
    }

    pub(crate) fn check(&self, ctx: Option<&IdContext>) -> Result<(), Error> {
        if ctx == Some(&self.group_id) {
            Ok(())
        } else {
            Err(Error::UnknownKid)
        }
    }
}

impl core::fmt::Debug for GroupCommon {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("GroupCommon")
            .field("group_id", &self.group_id)
            .field("signature_encryption_key", &"<secret>")
            .field("gm_cred", &self.gm_cred)
            .field("alg_aead", &self.alg_aead)
            .field(
                "alg_pairwise_key_agreement",
                &self.alg_pairwise_key_agreement,
            )
            .finish()
    }
}

/// A member's Sender Context in group mode (RFC 10021 §2.2): the RFC 8613
/// Sender Context derived with the Gid as ID Context, the member's private
/// key and its own authentication credential. Not `Clone`, like
/// [`SenderContext`]: a copy would reuse sequence numbers.
pub struct GroupSenderContext {
    pub(crate) inner: SenderContext,
    pub(crate) signing_key: SigningKey,
    pub(crate) cred: Credential,
}

impl core::fmt::Debug for GroupSenderContext {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("GroupSenderContext")
            .field("inner", &self.inner)
            .field("signing_key", &"<secret>")
            .field("cred", &self.cred)
            .finish()
    }
}

impl GroupSenderContext {
    /// Derives the Sender Key and Common IV for `sender_id` in the group of
    /// `p`. `private_key` is the member's Ed25519 private key (the RFC 8032
    /// seed, generated on the device); `cred` its authentication credential,
    /// whose public key must be the one of `private_key`
    /// ([`Error::BadCredential`] otherwise).
    pub fn derive(
        p: &GroupParams<'_>,
        sender_id: Id,
        private_key: &[u8; 32],
        cred: &[u8],
        sequence: SequenceNumber,
    ) -> Result<Self, Error> {
        let signing_key = SigningKey::from_bytes(private_key);
        if ccs_ed25519_public_key(cred)? != signing_key.verifying_key().to_bytes() {
            return Err(Error::BadCredential);
        }
        Ok(GroupSenderContext {
            inner: SenderContext::derive(
                p.master_secret,
                p.master_salt,
                Some(p.group_id),
                sender_id,
                sequence,
            )?,
            signing_key,
            cred: Credential::new(cred)?,
        })
    }

    /// The Sender ID.
    pub fn id(&self) -> &Id {
        self.inner.id()
    }

    /// The member's own authentication credential.
    pub fn cred(&self) -> &Credential {
        &self.cred
    }

    /// The Sender Sequence Number, to reserve through a
    /// [`crate::SequenceNumberStore`].
    pub fn sequence(&mut self) -> &mut SequenceNumber {
        &mut self.inner.sequence
    }
}

/// A Recipient Context in group mode (RFC 10021 §2.2): the RFC 8613
/// Recipient Context for one other member (Gid as ID Context), with that
/// member's authentication credential and public key.
#[derive(Clone)]
pub struct GroupRecipientContext {
    pub(crate) inner: RecipientContext,
    pub(crate) verifying_key: VerifyingKey,
    pub(crate) cred: Credential,
}

impl core::fmt::Debug for GroupRecipientContext {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("GroupRecipientContext")
            .field("inner", &self.inner)
            .field("cred", &self.cred)
            .finish()
    }
}

impl GroupRecipientContext {
    /// Derives the Recipient Key for `recipient_id` in the group of `p`;
    /// `cred` is that member's authentication credential (a CCS with an
    /// Ed25519 key, [`Error::BadCredential`] otherwise).
    pub fn derive(
        p: &GroupParams<'_>,
        recipient_id: Id,
        cred: &[u8],
        replay: ReplayState,
    ) -> Result<Self, Error> {
        let key = ccs_ed25519_public_key(cred)?;
        let verifying_key = VerifyingKey::from_bytes(&key).map_err(|_| Error::BadCredential)?;
        // A key of small order (the identity, y = 1, among them) verifies
        // almost any signature and gives a degenerate shared secret (§2.5.2.1:
        // abort for y = ±1).
        if verifying_key.is_weak() {
            return Err(Error::BadCredential);
        }
        Ok(GroupRecipientContext {
            inner: RecipientContext::derive(
                p.master_secret,
                p.master_salt,
                Some(p.group_id),
                recipient_id,
                replay,
            )?,
            verifying_key,
            cred: Credential::new(cred)?,
        })
    }

    /// The Recipient ID (the `kid` of that member's messages).
    pub fn id(&self) -> &Id {
        self.inner.id()
    }

    /// That member's authentication credential.
    pub fn cred(&self) -> &Credential {
        &self.cred
    }

    /// The replay state (window, or awaiting an Echo round trip).
    pub fn replay(&self) -> &ReplayState {
        &self.inner.replay
    }

    /// The replay state, e.g. to issue an Echo challenge.
    pub fn replay_mut(&mut self) -> &mut ReplayState {
        &mut self.inner.replay
    }
}

#[cfg(test)]
mod tests;

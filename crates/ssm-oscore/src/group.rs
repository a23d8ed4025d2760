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
//!   signature is its own error, [`Error::BadSignature`].
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
use crate::context::{RecipientContext, SenderContext};
use crate::crypto::{nonce, nonce_with_piv};
use crate::error::Error;
use crate::id::{Id, IdContext, PartialIv};
use crate::kdf::Prk;
use crate::option::OscoreOption;
use crate::protect::{
    open, seal_with, Decrypted, Direction, Layout, RequestBinding, RequestOptions, ResponsePiv,
    MAX_OPTION_LEN,
};
use crate::replay::ReplayState;
use crate::sequence::SequenceNumber;
use crate::{ALG_AES_CCM_16_64_128, KEY_LEN, TAG_LEN};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use hkdf::Hkdf;
use sha2::Sha256;
use ssm_coap::{Code, OptionNumber, Packet};
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

/// An authentication credential (RFC 10021 §2.4): opaque bytes, exactly as
/// the Group Manager distributes them (they enter the `external_aad` as they
/// are). For this module a CWT Claims Set whose `cnf` holds an Ed25519
/// COSE_Key.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    len: u16,
    bytes: [u8; MAX_CRED_LEN],
}

impl Credential {
    /// Copies `bytes`; fails with [`Error::BadCredential`] above
    /// [`MAX_CRED_LEN`].
    pub fn new(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() > MAX_CRED_LEN {
            return Err(Error::BadCredential);
        }
        let mut c = Credential {
            len: bytes.len() as u16,
            bytes: [0; MAX_CRED_LEN],
        };
        c.bytes[..bytes.len()].copy_from_slice(bytes);
        Ok(c)
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

impl core::fmt::Debug for Credential {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Public data; the length is enough to tell credentials apart.
        write!(f, "Credential({} bytes)", self.len)
    }
}

/// The public key of a CWT Claims Set (RFC 8392) `{ 8 (cnf): { 1
/// (COSE_Key): { 1 (kty): 1 (OKP), -1 (crv): 6 (Ed25519), -2 (x): bstr .size
/// 32, ? 3 (alg): -8 } } }`, other claims and key parameters skipped. Fails
/// with [`Error::BadCredential`] for anything else (RFC 10021 §2.4: kty and
/// crv identify the public key algorithm, which must be the group's
/// Signature Algorithm).
pub fn ccs_ed25519_public_key(ccs: &[u8]) -> Result<[u8; 32], Error> {
    let mut r = Cbor { b: ccs, p: 0 };
    let mut found = None;
    for _ in 0..r.map()? {
        if r.int()? == 8 {
            for _ in 0..r.map()? {
                if r.int()? == 1 {
                    found = Some(cose_key(&mut r)?);
                } else {
                    r.skip(0)?;
                }
            }
        } else {
            r.skip(0)?;
        }
    }
    if r.p != ccs.len() {
        return Err(Error::BadCredential);
    }
    found.ok_or(Error::BadCredential)
}

fn cose_key(r: &mut Cbor<'_>) -> Result<[u8; 32], Error> {
    let (mut kty, mut crv, mut x, mut alg) = (None, None, None, None);
    for _ in 0..r.map()? {
        match r.int()? {
            1 => kty = Some(r.int()?),
            3 => alg = Some(r.int()?),
            -1 => crv = Some(r.int()?),
            -2 => x = Some(r.bytes()?),
            _ => r.skip(0)?,
        }
    }
    match (kty, crv, x, alg) {
        (Some(1), Some(6), Some(x), None | Some(-8)) if x.len() == 32 => {
            let mut k = [0u8; 32];
            k.copy_from_slice(x);
            Ok(k)
        }
        _ => Err(Error::BadCredential),
    }
}

/// A minimal reader of definite-length CBOR, for credentials.
struct Cbor<'a> {
    b: &'a [u8],
    p: usize,
}

impl<'a> Cbor<'a> {
    fn head(&mut self) -> Result<(u8, u64), Error> {
        let ib = *self.b.get(self.p).ok_or(Error::BadCredential)?;
        self.p += 1;
        let (major, ai) = (ib >> 5, ib & 0x1f);
        let n = match ai {
            0..=23 => return Ok((major, ai as u64)),
            24 => 1,
            25 => 2,
            26 => 4,
            27 => 8,
            _ => return Err(Error::BadCredential), // indefinite or reserved
        };
        let bytes = self.b.get(self.p..self.p + n).ok_or(Error::BadCredential)?;
        self.p += n;
        Ok((major, bytes.iter().fold(0u64, |a, b| a << 8 | *b as u64)))
    }

    fn map(&mut self) -> Result<u64, Error> {
        match self.head()? {
            (5, n) if n <= 64 => Ok(n),
            _ => Err(Error::BadCredential),
        }
    }

    fn int(&mut self) -> Result<i64, Error> {
        match self.head()? {
            (0, n) if n <= i64::MAX as u64 => Ok(n as i64),
            (1, n) if n < i64::MAX as u64 => Ok(-1 - n as i64),
            _ => Err(Error::BadCredential),
        }
    }

    fn bytes(&mut self) -> Result<&'a [u8], Error> {
        match self.head()? {
            (2, n) => self.take(n),
            _ => Err(Error::BadCredential),
        }
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], Error> {
        let n = usize::try_from(n).map_err(|_| Error::BadCredential)?;
        let v = self
            .b
            .get(self.p..self.p.checked_add(n).ok_or(Error::BadCredential)?)
            .ok_or(Error::BadCredential)?;
        self.p += n;
        Ok(v)
    }

    /// Skips one data item (nesting bounded).
    fn skip(&mut self, depth: u8) -> Result<(), Error> {
        if depth > 8 {
            return Err(Error::BadCredential);
        }
        match self.head()? {
            (0 | 1 | 7, _) => Ok(()),
            (2 | 3, n) => self.take(n).map(|_| ()),
            (4, n) => {
                for _ in 0..n.min(256) {
                    self.skip(depth + 1)?;
                }
                if n > 256 {
                    return Err(Error::BadCredential);
                }
                Ok(())
            }
            (5, n) => {
                if n > 256 {
                    return Err(Error::BadCredential);
                }
                for _ in 0..2 * n {
                    self.skip(depth + 1)?;
                }
                Ok(())
            }
            (6, _) => self.skip(depth + 1), // tag: skip the tagged item
            _ => Err(Error::BadCredential),
        }
    }
}

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

/// The Signature Encryption Key (RFC 10021 §2.1.9): derived like a
/// Sender Key (RFC 8613 §3.2.1) with `id` = h'', `alg_aead` = the Group
/// Encryption Algorithm, `type` = "SEKey" and L = its key length.
pub fn signature_encryption_key(
    master_secret: &[u8],
    master_salt: Option<&[u8]>,
    group_id: &IdContext,
) -> Result<Zeroizing<[u8; KEY_LEN]>, Error> {
    let prk = Prk::extract(master_secret, master_salt)?;
    let mut info = [0u8; 1 + 1 + 2 + crate::MAX_ID_CONTEXT_LEN + 1 + 6 + 1];
    let mut p = 0;
    info[p] = 0x85;
    info[p + 1] = 0x40; // id: the empty byte string
    p += 2;
    p += bstr(&mut info[p..], group_id.as_bytes());
    info[p] = ALG_AES_CCM_16_64_128;
    info[p + 1] = 0x65;
    info[p + 2..p + 7].copy_from_slice(b"SEKey");
    info[p + 7] = KEY_LEN as u8;
    p += 8;
    let mut out = Zeroizing::new([0u8; KEY_LEN]);
    prk.expand(&info[..p], &mut out[..]);
    Ok(out)
}

/// The keystream of §4.2 that encrypts a countersignature:
/// `HKDF(salt = PIV, IKM = Signature Encryption Key, info = [id, Gid,
/// is_request, 64], L = 64)`, `id` the Sender ID of whoever generated the
/// Partial IV.
pub fn keystream(
    sekey: &[u8; KEY_LEN],
    piv: &PartialIv,
    piv_generator: &Id,
    group_id: &IdContext,
    is_request: bool,
) -> Zeroizing<[u8; SIGNATURE_LEN]> {
    let mut info = [0u8; 1 + 1 + crate::MAX_ID_LEN + 2 + crate::MAX_ID_CONTEXT_LEN + 1 + 2];
    info[0] = 0x84;
    let mut p = 1;
    p += bstr(&mut info[p..], piv_generator.as_bytes());
    p += bstr(&mut info[p..], group_id.as_bytes());
    info[p] = if is_request { 0xf5 } else { 0xf4 };
    info[p + 1] = 0x18;
    info[p + 2] = SIGNATURE_LEN as u8;
    p += 3;
    let mut out = Zeroizing::new([0u8; SIGNATURE_LEN]);
    // 64 bytes is far below HKDF's 255 * 32 limit.
    let _ = Hkdf::<Sha256>::new(Some(piv.as_bytes()), &sekey[..]).expand(&info[..p], &mut out[..]);
    out
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

    /// Protects a request in group mode (RFC 10021 §7.1): OSCORE option
    /// with Group Flag, `kid` and `kid context` = Gid; payload = ciphertext
    /// ‖ encrypted countersignature. Returns the length written to `out`
    /// and the binding for the responses.
    pub fn protect_request(
        &mut self,
        common: &GroupCommon,
        request: &[u8],
        out: &mut [u8],
        opts: RequestOptions,
    ) -> Result<(usize, RequestBinding), Error> {
        common.check(self.inner.id_context())?;
        let plain = Packet::new_checked(request)?;
        if !plain.code().is_request() {
            return Err(Error::Coap(ssm_coap::Error::NonEmptyEmptyMessage));
        }
        let piv = self.inner.sequence.take()?;
        let observe = plain.options().get(OptionNumber::OBSERVE).is_some();
        let binding = RequestBinding {
            kid: *self.id(),
            partial_iv: piv,
            kid_context: Some(common.group_id),
            observe,
        };
        let option = OscoreOption {
            partial_iv: Some(piv),
            kid_context: Some(common.group_id),
            kid: Some(*self.id()),
        };
        let no_response = opts.outer_no_response
            && plain.options().get_uint(OptionNumber::NO_RESPONSE) == Some(Ok(26));
        let n = self.seal(
            common,
            &plain,
            if observe { Code::FETCH } else { Code::POST },
            &option,
            &nonce_with_piv(&self.inner.nonce_base, &piv),
            &binding,
            (piv, *self.id(), true),
            out,
            Direction::Request {
                outer_no_response: no_response,
            },
        )?;
        Ok((n, binding))
    }

    /// Protects a response in group mode (RFC 10021 §7.3) to the request of
    /// `binding`: `kid` always present; with [`ResponsePiv::Own`] a fresh
    /// Partial IV of this sender.
    pub fn protect_response(
        &mut self,
        common: &GroupCommon,
        binding: &RequestBinding,
        response: &[u8],
        piv: ResponsePiv,
        out: &mut [u8],
    ) -> Result<usize, Error> {
        common.check(self.inner.id_context())?;
        let plain = Packet::new_checked(response)?;
        if !plain.code().is_response() {
            return Err(Error::Coap(ssm_coap::Error::NonEmptyEmptyMessage));
        }
        let (option, nonce, ks) = match piv {
            ResponsePiv::RequestNonce => (
                OscoreOption {
                    partial_iv: None,
                    kid_context: None,
                    kid: Some(*self.id()),
                },
                nonce(&binding.kid, &binding.partial_iv, &self.inner.common_iv),
                (binding.partial_iv, binding.kid, false),
            ),
            ResponsePiv::Own => {
                let p = self.inner.sequence.take()?;
                (
                    OscoreOption {
                        partial_iv: Some(p),
                        kid_context: None,
                        kid: Some(*self.id()),
                    },
                    nonce_with_piv(&self.inner.nonce_base, &p),
                    (p, *self.id(), false),
                )
            }
        };
        let observe = plain.options().get(OptionNumber::OBSERVE).is_some();
        self.seal(
            common,
            &plain,
            if observe {
                Code::CONTENT
            } else {
                Code::CHANGED
            },
            &option,
            &nonce,
            binding,
            ks,
            out,
            Direction::Response,
        )
    }

    /// §7.1/§7.3: AEAD-encrypts with the group `external_aad`, signs the
    /// ciphertext, appends the signature XOR keystream.
    #[allow(clippy::too_many_arguments)]
    fn seal(
        &self,
        common: &GroupCommon,
        plain: &Packet<&[u8]>,
        outer_code: Code,
        option: &OscoreOption,
        nonce: &[u8; crate::NONCE_LEN],
        binding: &RequestBinding,
        (ks_piv, ks_id, is_request): (PartialIv, Id, bool),
        out: &mut [u8],
        dir: Direction,
    ) -> Result<usize, Error> {
        let mut opt = [0u8; MAX_OPTION_LEN];
        let opt_len = option.emit(&mut opt)?;
        opt[0] |= GROUP_FLAG; // §4.1; a group-mode option is never empty
        let opt = &opt[..opt_len];
        let mut enc = [0u8; ENC_HEAD + MAX_AAD_ARRAY_LEN];
        let (aad_start, aad_end) =
            enc_structure(&mut enc, common, binding, opt, self.cred.as_bytes())?;
        let (ct_start, end) = seal_with(
            &self.inner.aead,
            plain,
            outer_code,
            opt,
            nonce,
            &enc[aad_start..aad_end],
            out,
            dir,
        )?;
        let sig_end = end + SIGNATURE_LEN;
        if out.len() < sig_end {
            return Err(Error::BufferTooSmall);
        }
        let mut tbs = [0u8; MAX_TBS_LEN];
        let tbs_len =
            countersign_structure(&mut tbs, aad_array_of(&enc, aad_end), &out[ct_start..end])?;
        let sig = self.signing_key.sign(&tbs[..tbs_len]).to_bytes();
        let ks = keystream(&common.sekey, &ks_piv, &ks_id, &common.group_id, is_request);
        for ((o, s), k) in out[end..sig_end].iter_mut().zip(sig).zip(ks.iter()) {
            *o = s ^ k;
        }
        Ok(sig_end)
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

    /// Verifies and decrypts a group-mode request (RFC 10021 §7.2) in place.
    /// The caller picked this context by the request's `kid` and `kid
    /// context`; both are checked again. The countersignature is verified
    /// first ([`Error::BadSignature`]), then the AEAD tag
    /// ([`Error::DecryptionFailed`]); only then does the replay state change.
    /// On error the buffer's content is unspecified.
    pub fn unprotect_request<'a>(
        &mut self,
        common: &GroupCommon,
        datagram: &'a mut [u8],
    ) -> Result<Decrypted<'a>, Error> {
        common.check(self.inner.id_context())?;
        let mut opt = [0u8; MAX_OPTION_LEN];
        let mut opt_len = 0;
        let layout =
            Layout::read_with(datagram, |v| parse_group_option(v, &mut opt, &mut opt_len))?;
        if layout.code != Code::POST && layout.code != Code::FETCH {
            return Err(Error::BadOuterCode);
        }
        let kid = layout.option.kid.ok_or(Error::MissingKid)?;
        let piv = layout.option.partial_iv.ok_or(Error::MissingPartialIv)?;
        // §3.2: a group request always carries the Gid as kid context.
        if kid != self.inner.id || layout.option.kid_context != Some(common.group_id) {
            return Err(Error::UnknownKid);
        }
        if let ReplayState::Window(w) = &self.inner.replay {
            w.check(piv.value())?;
        }
        let binding = RequestBinding {
            kid,
            partial_iv: piv,
            kid_context: layout.option.kid_context,
            observe: false,
        };
        let nonce = nonce_with_piv(&self.inner.nonce_base, &piv); // kid == self.id
        let mut d = self.open(
            common,
            &layout,
            datagram,
            &opt[..opt_len],
            &nonce,
            &binding,
            (piv, kid, true),
        )?;
        if !d.code.is_request() {
            return Err(Error::MalformedPlaintext);
        }
        let binding = RequestBinding {
            observe: d.options.get(OptionNumber::OBSERVE).is_some(),
            ..binding
        };
        d.binding = Some(binding);
        // Signature and tag verified: now, and only now, the window moves.
        self.inner.accept_verified(piv, &d, binding)?;
        Ok(d)
    }

    /// Verifies and decrypts a group-mode response (RFC 10021 §7.4) of this
    /// member to the request of `binding`, in place. Ordering of
    /// notifications is left to the caller, as in
    /// [`RecipientContext::unprotect_response`].
    pub fn unprotect_response<'a>(
        &self,
        common: &GroupCommon,
        binding: &RequestBinding,
        datagram: &'a mut [u8],
    ) -> Result<Decrypted<'a>, Error> {
        common.check(self.inner.id_context())?;
        let mut opt = [0u8; MAX_OPTION_LEN];
        let mut opt_len = 0;
        let layout =
            Layout::read_with(datagram, |v| parse_group_option(v, &mut opt, &mut opt_len))?;
        // §3.2: responses to group requests always carry the server's kid.
        if layout.option.kid != Some(self.inner.id)
            || layout
                .option
                .kid_context
                .is_some_and(|c| c != common.group_id)
        {
            return Err(Error::UnknownKid);
        }
        let (nonce, ks) = match layout.option.partial_iv {
            Some(p) => (
                nonce_with_piv(&self.inner.nonce_base, &p),
                (p, self.inner.id),
            ),
            None => (
                nonce(&binding.kid, &binding.partial_iv, &self.inner.common_iv),
                (binding.partial_iv, binding.kid),
            ),
        };
        let d = self.open(
            common,
            &layout,
            datagram,
            &opt[..opt_len],
            &nonce,
            binding,
            (ks.0, ks.1, false),
        )?;
        if !d.code.is_response() {
            return Err(Error::MalformedPlaintext);
        }
        if !binding.observe && d.options.get(OptionNumber::OBSERVE).is_some() {
            return Err(Error::UnexpectedObserve);
        }
        Ok(d)
    }

    /// Verifies the countersignature over the intact ciphertext, then
    /// decrypts (§7.2, §7.4).
    #[allow(clippy::too_many_arguments)]
    fn open<'a>(
        &self,
        common: &GroupCommon,
        layout: &Layout,
        datagram: &'a mut [u8],
        opt: &[u8],
        nonce: &[u8; crate::NONCE_LEN],
        binding: &RequestBinding,
        (ks_piv, ks_id, is_request): (PartialIv, Id, bool),
    ) -> Result<Decrypted<'a>, Error> {
        let payload_len = datagram.len() - layout.payload_start;
        // Ciphertext of at least the code byte and the tag, then the
        // signature.
        if payload_len < 1 + TAG_LEN + SIGNATURE_LEN {
            return Err(Error::MissingCiphertext);
        }
        let ct_end = datagram.len() - SIGNATURE_LEN;
        if ct_end - layout.payload_start > MAX_GROUP_CIPHERTEXT_LEN {
            return Err(Error::GroupMessageTooLong);
        }
        let mut enc = [0u8; ENC_HEAD + MAX_AAD_ARRAY_LEN];
        let (aad_start, aad_end) =
            enc_structure(&mut enc, common, binding, opt, self.cred.as_bytes())?;
        let ks = keystream(&common.sekey, &ks_piv, &ks_id, &common.group_id, is_request);
        let mut sig = [0u8; SIGNATURE_LEN];
        for ((s, e), k) in sig.iter_mut().zip(&datagram[ct_end..]).zip(ks.iter()) {
            *s = e ^ k;
        }
        let mut tbs = [0u8; MAX_TBS_LEN];
        let tbs_len = countersign_structure(
            &mut tbs,
            aad_array_of(&enc, aad_end),
            &datagram[layout.payload_start..ct_end],
        )?;
        self.verifying_key
            .verify_strict(&tbs[..tbs_len], &Signature::from_bytes(&sig))
            .map_err(|_| Error::BadSignature)?;
        open(
            &self.inner.aead,
            layout,
            &mut datagram[..ct_end],
            nonce,
            &enc[aad_start..aad_end],
        )
    }
}

/// Parses a group-mode OSCORE option value: the Group Flag must be set
/// (§4.1, §6); the rest is the RFC 8613 §6.1 encoding. Keeps a copy of the
/// value as received for the `external_aad`.
fn parse_group_option(
    v: &[u8],
    copy: &mut [u8; MAX_OPTION_LEN],
    len: &mut usize,
) -> Result<OscoreOption, Error> {
    match v.first() {
        Some(f) if f & GROUP_FLAG != 0 => {}
        _ => return Err(Error::NotGroupMode),
    }
    let c = copy.get_mut(..v.len()).ok_or(Error::BadOscoreOption)?;
    c.copy_from_slice(v);
    *len = v.len();
    c[0] &= !GROUP_FLAG;
    let o = OscoreOption::parse(c)?;
    c[0] |= GROUP_FLAG;
    Ok(o)
}

/// Writes the `Enc_structure` `["Encrypt0", h'', external_aad]` (RFC 8613
/// §5.4 with the `aad_array` of RFC 10021 §3.4) into `buf`; returns its
/// range. The `aad_array` itself lies at its end, see [`aad_array_of`].
pub(crate) fn enc_structure(
    buf: &mut [u8; ENC_HEAD + MAX_AAD_ARRAY_LEN],
    common: &GroupCommon,
    binding: &RequestBinding,
    opt: &[u8],
    sender_cred: &[u8],
) -> Result<(usize, usize), Error> {
    let n = aad_array(
        &mut buf[ENC_HEAD..],
        common,
        &binding.kid,
        &binding.partial_iv,
        binding
            .kid_context
            .as_ref()
            .map(|c| c.as_bytes())
            .unwrap_or(&[]),
        opt,
        sender_cred,
    )?;
    let mut head = [0u8; ENC_HEAD];
    head[0] = 0x83;
    head[1] = 0x68;
    head[2..10].copy_from_slice(b"Encrypt0");
    head[10] = 0x40;
    let h = 11 + bstr_head(&mut head[11..], n);
    let start = ENC_HEAD - h;
    buf[start..ENC_HEAD].copy_from_slice(&head[..h]);
    Ok((start, ENC_HEAD + n))
}

/// The `aad_array` inside an [`enc_structure`] ending at `end`.
fn aad_array_of(buf: &[u8], end: usize) -> &[u8] {
    &buf[ENC_HEAD..end]
}

/// The `aad_array` of RFC 10021 §3.4:
/// `[1, [alg_aead, alg_group_enc, alg_signature, alg_pairwise_key_agreement],
/// request_kid, request_piv, options (h''), request_kid_context,
/// OSCORE_option, sender_cred, gm_cred]`. Returns its length.
#[allow(clippy::too_many_arguments)]
pub fn aad_array(
    out: &mut [u8],
    common: &GroupCommon,
    request_kid: &Id,
    request_piv: &PartialIv,
    request_kid_context: &[u8],
    oscore_option: &[u8],
    sender_cred: &[u8],
) -> Result<usize, Error> {
    let mut w = Writer { out, p: 0 };
    w.raw(&[0x89, 0x01, 0x84])?;
    w.alg(common.alg_aead)?;
    w.alg(Some(ALG_AES_CCM_16_64_128 as i32))?;
    w.alg(Some(ALG_EDDSA))?;
    w.alg(common.alg_pairwise_key_agreement)?;
    w.bstr(request_kid.as_bytes())?;
    w.bstr(request_piv.as_bytes())?;
    w.bstr(&[])?; // no Class I options
    w.bstr(request_kid_context)?;
    w.bstr(oscore_option)?;
    w.bstr(sender_cred)?;
    w.bstr(common.gm_cred.as_bytes())?;
    Ok(w.p)
}

/// The `Countersign_structure` (RFC 9338 §3.3, RFC 10021 §3.1):
/// `["CounterSignature0", body_protected h'', sign_protected h'',
/// external_aad, ciphertext]`. Returns its length.
fn countersign_structure(
    out: &mut [u8; MAX_TBS_LEN],
    aad_array: &[u8],
    ciphertext: &[u8],
) -> Result<usize, Error> {
    if ciphertext.len() > MAX_GROUP_CIPHERTEXT_LEN {
        return Err(Error::GroupMessageTooLong);
    }
    let mut w = Writer { out, p: 0 };
    w.raw(&[0x85, 0x71])?;
    w.raw(b"CounterSignature0")?;
    w.raw(&[0x40, 0x40])?;
    w.bstr(aad_array)?;
    w.bstr(ciphertext)?;
    Ok(w.p)
}

struct Writer<'a> {
    out: &'a mut [u8],
    p: usize,
}

impl Writer<'_> {
    fn raw(&mut self, b: &[u8]) -> Result<(), Error> {
        self.out
            .get_mut(self.p..self.p + b.len())
            .ok_or(Error::BufferTooSmall)?
            .copy_from_slice(b);
        self.p += b.len();
        Ok(())
    }

    fn bstr(&mut self, b: &[u8]) -> Result<(), Error> {
        let mut h = [0u8; 3];
        let n = bstr_head(&mut h, b.len());
        self.raw(&h[..n])?;
        self.raw(b)
    }

    /// A COSE algorithm as a CBOR integer, or null.
    fn alg(&mut self, a: Option<i32>) -> Result<(), Error> {
        let Some(a) = a else { return self.raw(&[0xf6]) };
        let (major, v) = if a < 0 {
            (0x20u8, (-1 - a as i64) as u64)
        } else {
            (0, a as u64)
        };
        match v {
            0..=23 => self.raw(&[major | v as u8]),
            24..=0xff => self.raw(&[major | 24, v as u8]),
            0x100..=0xffff => self.raw(&[major | 25, (v >> 8) as u8, v as u8]),
            _ => {
                let b = (v as u32).to_be_bytes();
                self.raw(&[major | 26, b[0], b[1], b[2], b[3]])
            }
        }
    }
}

/// Writes a CBOR byte-string head for `len` (< 65536); returns its length.
fn bstr_head(out: &mut [u8], len: usize) -> usize {
    if len < 24 {
        out[0] = 0x40 | len as u8;
        1
    } else if len < 256 {
        out[0] = 0x58;
        out[1] = len as u8;
        2
    } else {
        out[0] = 0x59;
        out[1] = (len >> 8) as u8;
        out[2] = len as u8;
        3
    }
}

/// Writes a short byte string (< 256 bytes) with its head.
fn bstr(out: &mut [u8], v: &[u8]) -> usize {
    let h = bstr_head(out, v.len());
    out[h..h + v.len()].copy_from_slice(v);
    h + v.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::ReplayWindow;
    use ssm_coap::{MessageType, MessageWriter};
    extern crate alloc;

    const SECRET: [u8; 32] = [0x42; 32];
    const GM_CRED: &[u8] = b"group manager credential";
    const SWITCH: [u8; 1] = [0x01];
    const LIGHT: [u8; 1] = [0x02];

    fn gid() -> IdContext {
        IdContext::new(&[0x47, 0x01]).unwrap()
    }

    fn params() -> GroupParams<'static> {
        GroupParams {
            master_secret: &SECRET,
            master_salt: None,
            group_id: gid(),
            gm_cred: GM_CRED,
            alg_aead: None,
            alg_pairwise_key_agreement: None,
        }
    }

    fn seed(id: &[u8]) -> [u8; 32] {
        let mut s = [0x5au8; 32];
        s[0] = id[0];
        s
    }

    /// A CCS `{8: {1: {1: 1, 3: -8, -1: 6, -2: pub}}}`, as aiocoap builds
    /// them.
    fn ccs(pk: &[u8; 32]) -> [u8; 46] {
        let mut c = [0u8; 46];
        c[..14].copy_from_slice(&[
            0xa1, 0x08, 0xa1, 0x01, 0xa4, 0x01, 0x01, 0x03, 0x27, 0x20, 0x06, 0x21, 0x58, 0x20,
        ]);
        c[14..].copy_from_slice(pk);
        c
    }

    fn cred_of(id: &[u8]) -> [u8; 46] {
        ccs(&SigningKey::from_bytes(&seed(id)).verifying_key().to_bytes())
    }

    fn sender(id: &[u8], seq: u64) -> GroupSenderContext {
        GroupSenderContext::derive(
            &params(),
            Id::new(id).unwrap(),
            &seed(id),
            &cred_of(id),
            SequenceNumber::volatile(seq),
        )
        .unwrap()
    }

    fn recipient(id: &[u8]) -> GroupRecipientContext {
        GroupRecipientContext::derive(
            &params(),
            Id::new(id).unwrap(),
            &cred_of(id),
            ReplayState::Window(ReplayWindow::new(32)),
        )
        .unwrap()
    }

    /// The SSM UPDATE: NON POST /BinarySwitchResURI {"value": true}.
    fn update(buf: &mut [u8; 128]) -> usize {
        let mut w = MessageWriter::new(
            buf,
            MessageType::NonConfirmable,
            Code::POST,
            0x1234,
            &[1, 2, 3, 4],
        )
        .unwrap();
        w.option(OptionNumber::URI_PATH, b"BinarySwitchResURI")
            .unwrap();
        w.option_uint(OptionNumber::CONTENT_FORMAT, 10000).unwrap();
        w.option_uint(OptionNumber::NO_RESPONSE, 26).unwrap();
        w.payload(&[0xa1, 0x65, b'v', b'a', b'l', b'u', b'e', 0xf5])
            .unwrap()
    }

    fn protected(s: &mut GroupSenderContext, common: &GroupCommon) -> ([u8; 256], usize) {
        let mut req = [0u8; 128];
        let n = update(&mut req);
        let mut out = [0u8; 256];
        let (len, _) = s
            .protect_request(common, &req[..n], &mut out, RequestOptions::default())
            .unwrap();
        (out, len)
    }

    #[test]
    fn roundtrip_and_replay() {
        let common = GroupCommon::derive(&params()).unwrap();
        let mut s = sender(&SWITCH, 7);
        let mut r = recipient(&SWITCH);
        let (wire, n) = protected(&mut s, &common);
        // §4.1: Group Flag, kid context = Gid, kid = Sender ID.
        let p = Packet::new_checked(&wire[..n]).unwrap();
        let opt = p.options().get(OptionNumber::OSCORE).unwrap().value;
        assert_eq!(opt, &[0x39, 7, 2, 0x47, 0x01, 0x01]);
        let mut buf = wire;
        let d = r.unprotect_request(&common, &mut buf[..n]).unwrap();
        assert_eq!(d.payload, &[0xa1, 0x65, b'v', b'a', b'l', b'u', b'e', 0xf5]);
        assert_eq!(
            d.options.get(OptionNumber::URI_PATH).unwrap().value,
            b"BinarySwitchResURI"
        );
        let mut buf = wire;
        assert_eq!(
            r.unprotect_request(&common, &mut buf[..n]).err(),
            Some(Error::Replay)
        );
        // The next request is fresh.
        let (wire2, n2) = protected(&mut s, &common);
        let mut buf = wire2;
        assert!(r.unprotect_request(&common, &mut buf[..n2]).is_ok());
    }

    #[test]
    fn every_byte_flipped_is_rejected_and_the_window_stays() {
        let common = GroupCommon::derive(&params()).unwrap();
        let mut s = sender(&SWITCH, 1000);
        let (wire, n) = protected(&mut s, &common);
        // `r` has accepted an earlier request (sequence number 999).
        let mut earlier = sender(&SWITCH, 999);
        let (w0, n0) = protected(&mut earlier, &common);
        let mut r = recipient(&SWITCH);
        let mut buf = w0;
        r.unprotect_request(&common, &mut buf[..n0]).unwrap();
        let accepted = *r.replay();
        let before = ReplayState::Window(ReplayWindow::new(32));
        let mut signature_errors = 0;
        for i in 0..n {
            for bit in [0x01u8, 0x80] {
                let mut buf = wire;
                buf[i] ^= bit;
                let mut fresh = recipient(&SWITCH);
                match fresh.unprotect_request(&common, &mut buf[..n]) {
                    // OSCORE leaves the outer header unprotected (RFC 8613
                    // §4: message type, Message ID, token): a change there
                    // may pass, with every protected field unchanged.
                    Ok(d) => {
                        assert!(i < 4 + 4, "byte {i} bit {bit:#x} accepted");
                        assert_eq!(d.payload, &[0xa1, 0x65, b'v', b'a', b'l', b'u', b'e', 0xf5]);
                        assert_eq!(d.code, Code::POST);
                        assert_eq!(d.options.iter().count(), 3);
                    }
                    Err(e) => {
                        if e == Error::BadSignature {
                            signature_errors += 1;
                        }
                        // A rejected message never moves the window.
                        assert_eq!(fresh.replay(), &before, "window moved at byte {i}");
                    }
                }
                // Nor does it move the window of a receiver that already
                // accepted messages.
                if r.unprotect_request(&common, &mut buf[..n]).is_err() {
                    assert_eq!(r.replay(), &accepted, "window moved at byte {i}");
                } else {
                    // Accepted (an unprotected header byte): undo, so the
                    // next flip meets the same window.
                    r = recipient(&SWITCH);
                    let mut buf = w0;
                    r.unprotect_request(&common, &mut buf[..n0]).unwrap();
                }
            }
        }
        // Every ciphertext and signature byte is covered by the signature:
        // a flip there is reported as a bad signature.
        let payload_start = Packet::new_checked(&wire[..n]).unwrap().payload_offset();
        assert!(signature_errors >= 2 * (n - payload_start));
        // The untouched message is still accepted afterwards.
        let mut buf = wire;
        assert!(r.unprotect_request(&common, &mut buf[..n]).is_ok());
    }

    /// The attack group mode exists for (issue 16, SECURITY.md's threat
    /// model): a light holding the group's full key material (Master Secret,
    /// Salt, Gid, hence every Sender Key, the Signature Encryption Key and
    /// every public credential) sends a command under the switch's Sender
    /// ID. With OCF SSM (RFC 8613 contexts) it is accepted; in group mode
    /// it fails on the signature, and the window does not move.
    #[test]
    fn member_forging_under_another_sender_id_is_rejected() {
        let mut req = [0u8; 128];
        let n = update(&mut req);

        // OCF SSM: the light derives the switch's Sender Context itself.
        let switch_id = Id::new(&SWITCH).unwrap();
        let mut forged_ssm = SenderContext::derive(
            &SECRET,
            None,
            Some(gid()),
            switch_id,
            SequenceNumber::volatile(500),
        )
        .unwrap();
        let mut out = [0u8; 256];
        let (m, _) = forged_ssm.protect_request(&req[..n], &mut out).unwrap();
        let mut victim_ssm = RecipientContext::derive(
            &SECRET,
            None,
            Some(gid()),
            switch_id,
            ReplayState::Window(ReplayWindow::new(32)),
        )
        .unwrap();
        assert!(
            victim_ssm.unprotect_request(&mut out[..m]).is_ok(),
            "with a shared key alone the forgery is accepted"
        );

        // Group mode: the light builds the switch's Sender Context with the
        // switch's public credential (so the external_aad and the AEAD tag
        // are right) and signs with the only private key it has, its own.
        let common = GroupCommon::derive(&params()).unwrap();
        let mut forger = GroupSenderContext {
            inner: SenderContext::derive(
                &SECRET,
                None,
                Some(gid()),
                switch_id,
                SequenceNumber::volatile(500),
            )
            .unwrap(),
            signing_key: SigningKey::from_bytes(&seed(&LIGHT)),
            cred: Credential::new(&cred_of(&SWITCH)).unwrap(),
        };
        let (wire, len) = protected(&mut forger, &common);
        let mut victim = recipient(&SWITCH);
        let before = *victim.replay();
        let mut buf = wire;
        assert_eq!(
            victim.unprotect_request(&common, &mut buf[..len]).err(),
            Some(Error::BadSignature)
        );
        assert_eq!(victim.replay(), &before);
        // Nor can it sign with its own credential in the AAD: the receiver
        // uses the switch's.
        let mut forger2 = GroupSenderContext::derive(
            &params(),
            switch_id,
            &seed(&LIGHT),
            &cred_of(&LIGHT),
            SequenceNumber::volatile(501),
        )
        .unwrap();
        let (wire, len) = protected(&mut forger2, &common);
        let mut buf = wire;
        assert_eq!(
            victim.unprotect_request(&common, &mut buf[..len]).err(),
            Some(Error::BadSignature)
        );
        assert_eq!(victim.replay(), &before);
        // The real switch at the same sequence number is accepted.
        let mut real = sender(&SWITCH, 500);
        let (wire, len) = protected(&mut real, &common);
        let mut buf = wire;
        assert!(victim.unprotect_request(&common, &mut buf[..len]).is_ok());
    }

    #[test]
    fn small_order_keys_are_refused() {
        // The identity (y = 1) and the point of order 2 (y = -1): §2.5.2.1
        // requires aborting for them; they also make signatures meaningless.
        let mut one = [0u8; 32];
        one[0] = 1;
        let mut minus_one = [0xffu8; 32];
        minus_one[0] = 0xec;
        minus_one[31] = 0x7f;
        for pk in [one, minus_one] {
            assert_eq!(
                GroupRecipientContext::derive(
                    &params(),
                    Id::new(&SWITCH).unwrap(),
                    &ccs(&pk),
                    ReplayState::Window(ReplayWindow::new(32)),
                )
                .err(),
                Some(Error::BadCredential)
            );
        }
    }

    #[test]
    fn a_credential_must_match_the_private_key() {
        assert_eq!(
            GroupSenderContext::derive(
                &params(),
                Id::new(&SWITCH).unwrap(),
                &seed(&SWITCH),
                &cred_of(&LIGHT),
                SequenceNumber::volatile(0),
            )
            .err(),
            Some(Error::BadCredential)
        );
    }

    #[test]
    fn credentials() {
        let pk = [7u8; 32];
        let c = ccs(&pk);
        assert_eq!(ccs_ed25519_public_key(&c), Ok(pk));
        // Other claims around cnf are skipped; alg may be absent.
        let mut with_sub = alloc_vec(&[0xa2, 0x02, 0x63, b'a', b'b', b'c']);
        with_sub.extend_from_slice(&c[1..]);
        assert_eq!(ccs_ed25519_public_key(&with_sub), Ok(pk));
        let mut no_alg = alloc_vec(&[0xa1, 0x08, 0xa1, 0x01, 0xa3, 0x01, 0x01, 0x20, 0x06, 0x21]);
        no_alg.extend_from_slice(&c[12..]);
        assert_eq!(ccs_ed25519_public_key(&no_alg), Ok(pk));
        // Wrong kty, crv, alg, key length; trailing bytes; truncation.
        for (i, v) in [(6, 0x02), (10, 0x01), (8, 0x26), (13, 0x1f)] {
            let mut b = c;
            b[i] = v;
            assert_eq!(ccs_ed25519_public_key(&b), Err(Error::BadCredential), "{i}");
        }
        // A tagged CCS (tag 61, CWT) is not what the Security Context stores.
        let mut tagged = alloc_vec(&[0xd8, 0x3d]);
        tagged.extend_from_slice(&c);
        assert_eq!(ccs_ed25519_public_key(&tagged), Err(Error::BadCredential));
        let mut long = alloc_vec(&c);
        long.push(0);
        assert_eq!(ccs_ed25519_public_key(&long), Err(Error::BadCredential));
        for n in 0..c.len() {
            assert_eq!(ccs_ed25519_public_key(&c[..n]), Err(Error::BadCredential));
        }
        assert_eq!(
            Credential::new(&[0; MAX_CRED_LEN + 1]).err(),
            Some(Error::BadCredential)
        );
    }

    fn alloc_vec(b: &[u8]) -> alloc::vec::Vec<u8> {
        b.to_vec()
    }

    #[test]
    fn sequence_numbers_come_from_the_store() {
        struct Store(u64);
        impl crate::SequenceNumberStore for Store {
            type Error = ();
            fn reserve_block(&mut self, next: u64, k: u64) -> Result<core::ops::Range<u64>, ()> {
                let b = crate::block_ahead(next.max(self.0), k);
                self.0 = b.end;
                Ok(b)
            }
        }
        let common = GroupCommon::derive(&params()).unwrap();
        let mut s = GroupSenderContext::derive(
            &params(),
            Id::new(&SWITCH).unwrap(),
            &seed(&SWITCH),
            &cred_of(&SWITCH),
            SequenceNumber::resume(40, 2),
        )
        .unwrap();
        let mut req = [0u8; 128];
        let n = update(&mut req);
        let mut out = [0u8; 256];
        assert_eq!(
            s.protect_request(&common, &req[..n], &mut out, RequestOptions::default())
                .err(),
            Some(Error::SequenceNumberNotReserved)
        );
        let mut store = Store(0);
        let mut seen = [0u64; 5];
        for v in &mut seen {
            s.sequence().reserve(&mut store).unwrap();
            let (_, b) = s
                .protect_request(&common, &req[..n], &mut out, RequestOptions::default())
                .unwrap();
            *v = b.partial_iv.value();
        }
        assert_eq!(seen, [40, 41, 42, 43, 44]);
        assert_eq!(store.0, 46);
    }

    #[test]
    fn echo_recovery_after_restart() {
        let common = GroupCommon::derive(&params()).unwrap();
        let mut s = sender(&SWITCH, 9);
        let mut r = GroupRecipientContext::derive(
            &params(),
            Id::new(&SWITCH).unwrap(),
            &cred_of(&SWITCH),
            ReplayState::awaiting_echo(32),
        )
        .unwrap();
        let (wire, n) = protected(&mut s, &common);
        let mut buf = wire;
        assert!(matches!(
            r.unprotect_request(&common, &mut buf[..n]),
            Err(Error::FreshnessUnknown(_))
        ));
        // A forged request is not even challenged: the signature fails.
        let mut bad = wire;
        bad[n - 1] ^= 1;
        assert_eq!(
            r.unprotect_request(&common, &mut bad[..n]).err(),
            Some(Error::BadSignature)
        );
        let echo = r.replay_mut().echo_challenge(&[9; 8]).unwrap().to_vec();
        let mut req = [0u8; 128];
        let mut w =
            MessageWriter::new(&mut req, MessageType::NonConfirmable, Code::POST, 1, &[1]).unwrap();
        w.option(OptionNumber::URI_PATH, b"BinarySwitchResURI")
            .unwrap();
        w.option(OptionNumber::ECHO, &echo).unwrap();
        let m = w.payload(&[0xf5]).unwrap();
        let mut out = [0u8; 256];
        let (len, _) = s
            .protect_request(&common, &req[..m], &mut out, RequestOptions::default())
            .unwrap();
        assert!(r.unprotect_request(&common, &mut out[..len]).is_ok());
        assert!(matches!(r.replay(), ReplayState::Window(_)));
        // The first request (older) is now a replay.
        let mut buf = wire;
        assert_eq!(
            r.unprotect_request(&common, &mut buf[..n]).err(),
            Some(Error::Replay)
        );
    }

    #[test]
    fn wrong_group_and_wrong_kid() {
        let common = GroupCommon::derive(&params()).unwrap();
        let other = GroupCommon::derive(&GroupParams {
            group_id: IdContext::new(&[0x47, 0x02]).unwrap(),
            ..params()
        })
        .unwrap();
        let mut s = sender(&SWITCH, 3);
        let mut req = [0u8; 128];
        let n = update(&mut req);
        let mut out = [0u8; 256];
        assert_eq!(
            s.protect_request(&other, &req[..n], &mut out, RequestOptions::default())
                .err(),
            Some(Error::UnknownKid)
        );
        let (wire, len) = protected(&mut s, &common);
        let mut buf = wire;
        assert_eq!(
            recipient(&LIGHT)
                .unprotect_request(&common, &mut buf[..len])
                .err(),
            Some(Error::UnknownKid)
        );
        let mut buf = wire;
        assert_eq!(
            recipient(&SWITCH)
                .unprotect_request(&other, &mut buf[..len])
                .err(),
            Some(Error::UnknownKid)
        );
        // A message too short to hold a signature.
        let mut buf = wire;
        assert_eq!(
            recipient(&SWITCH)
                .unprotect_request(&common, &mut buf[..len - SIGNATURE_LEN])
                .err(),
            Some(Error::MissingCiphertext)
        );
    }

    #[test]
    fn response_roundtrip_both_nonces() {
        let common = GroupCommon::derive(&params()).unwrap();
        let mut s = sender(&SWITCH, 3);
        let mut light = sender(&LIGHT, 0);
        let (wire, n) = protected(&mut s, &common);
        let mut buf = wire;
        let binding = recipient(&SWITCH)
            .unprotect_request(&common, &mut buf[..n])
            .unwrap()
            .binding
            .unwrap();
        for piv in [ResponsePiv::RequestNonce, ResponsePiv::Own] {
            let mut resp = [0u8; 64];
            let w = MessageWriter::new(
                &mut resp,
                MessageType::NonConfirmable,
                Code::CHANGED,
                5,
                &[1, 2, 3, 4],
            )
            .unwrap();
            let m = w.payload(b"ok").unwrap();
            let mut out = [0u8; 256];
            let len = light
                .protect_response(&common, &binding, &resp[..m], piv, &mut out)
                .unwrap();
            let mut buf = out;
            let d = recipient(&LIGHT)
                .unprotect_response(&common, &binding, &mut buf[..len])
                .unwrap();
            assert_eq!(d.payload, b"ok");
            let mut bad = out;
            bad[len - 10] ^= 4;
            assert_eq!(
                recipient(&LIGHT)
                    .unprotect_response(&common, &binding, &mut bad[..len])
                    .err(),
                Some(Error::BadSignature)
            );
        }
    }

    #[test]
    fn debug_shows_no_secrets() {
        extern crate alloc;
        use alloc::format;
        let common = GroupCommon::derive(&params()).unwrap();
        let s = sender(&SWITCH, 0);
        let sekey = signature_encryption_key(&SECRET, None, &gid()).unwrap();
        let text = format!("{common:?} {s:?} {:?} {:?}", recipient(&SWITCH), params());
        let hex = |b: &[u8]| {
            b.iter()
                .map(|x| format!("{x:02x}"))
                .collect::<alloc::string::String>()
        };
        for secret in [&sekey[..], &seed(&SWITCH)[..], &SECRET[..]] {
            assert!(!text.contains(&hex(secret)), "{text}");
        }
        assert!(!text.contains("90, 90, 90"), "{text}"); // seed bytes 0x5a as decimals
        assert!(text.contains("<secret>"));
    }
}

use crate::protect::RequestBinding;
use core::fmt;
use ssm_coap::Code;

/// Why OSCORE processing failed. [`Error::coap_code`] gives the response
/// code of RFC 8613 §8.2 where one applies (unicast only: multicast errors
/// are never answered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The outer message is not valid CoAP.
    Coap(ssm_coap::Error),
    /// The message has no OSCORE option.
    NotOscore,
    /// The OSCORE option is malformed (§6.1): reserved bits, reserved
    /// Partial IV length 6 or 7, truncated kid context, or 0x00 not sent as
    /// an empty option.
    BadOscoreOption,
    /// A request without `kid` (§6.1: requests always carry one).
    MissingKid,
    /// A request without Partial IV.
    MissingPartialIv,
    /// A request with an empty payload (no ciphertext).
    MissingCiphertext,
    /// An OSCORE request whose outer code is neither POST nor FETCH
    /// (RFC 8613 §4.2).
    BadOuterCode,
    /// No Recipient Context for this `kid` (and kid context).
    UnknownKid,
    /// The Partial IV was already received, or is below the window.
    Replay,
    /// The AEAD tag did not verify.
    DecryptionFailed,
    /// The plaintext did not decode as code + options + payload.
    MalformedPlaintext,
    /// The request verified, but the replay window is not initialised (after
    /// a restart): answer 4.01 with an Echo option (RFC 8613 App. B.1.2).
    /// The request must not be processed.
    FreshnessUnknown(RequestBinding),
    /// A response carries an inner Observe but the request did not, or
    /// similar response/request mismatches (§8.4.2).
    UnexpectedObserve,
    /// The Sender Sequence Number reached 2^40 − 1: the context must be
    /// renewed.
    SequenceNumberExhausted,
    /// No sequence number is reserved in persistent storage: call
    /// [`crate::SequenceNumber::reserve`] first.
    SequenceNumberNotReserved,
    /// The output buffer is too small.
    BufferTooSmall,
    /// An ID longer than the nonce allows (7 bytes).
    IdTooLong,
    /// An ID context longer than [`crate::MAX_ID_CONTEXT_LEN`].
    IdContextTooLong,
    /// A Proxy-Uri that cannot be decomposed (§4.1.3.3).
    BadProxyUri,
    /// The master secret is empty.
    EmptyMasterSecret,
    /// Group OSCORE group mode (RFC 10021 §7.2, §7.4): the countersignature
    /// did not verify with the sender's public key. Distinct from
    /// [`Error::DecryptionFailed`] so a receiver can count forgeries by
    /// holders of the group key apart from corrupted messages.
    BadSignature,
    /// An authentication credential that is not a CWT Claims Set with an
    /// Ed25519 key, is too long, or does not match the private key
    /// (RFC 10021 §2.4).
    BadCredential,
    /// A message without the Group Flag given to group-mode processing
    /// (RFC 10021 §6: group mode only with the flag set).
    NotGroupMode,
    /// Pairwise mode in a group whose Common Context does not set the AEAD
    /// Algorithm and the Pairwise Key Agreement Algorithm (RFC 10021 §6,
    /// §8).
    NotPairwiseMode,
    /// A group-mode ciphertext longer than
    /// [`crate::group::MAX_GROUP_CIPHERTEXT_LEN`].
    GroupMessageTooLong,
}

impl Error {
    /// The CoAP error code of RFC 8613 §8.2 for a unicast request that
    /// failed this way, or `None` when no response is due.
    pub fn coap_code(&self) -> Option<Code> {
        match self {
            Error::BadOscoreOption
            | Error::MissingKid
            | Error::MissingPartialIv
            | Error::MissingCiphertext => Some(Code::BAD_OPTION),
            Error::UnknownKid | Error::Replay | Error::FreshnessUnknown(_) => {
                Some(Code::UNAUTHORIZED)
            }
            // RFC 10021 §7.2: a bad signature is answered (if at all) as a
            // failed decryption.
            Error::DecryptionFailed | Error::MalformedPlaintext | Error::BadSignature => {
                Some(Code::BAD_REQUEST)
            }
            Error::NotGroupMode => Some(Code::UNAUTHORIZED),
            Error::BadOuterCode => Some(Code::METHOD_NOT_ALLOWED),
            _ => None,
        }
    }

    /// The diagnostic payload RFC 8613 suggests for the error.
    pub fn diagnostic(&self) -> &'static str {
        match self {
            Error::BadOscoreOption
            | Error::MissingKid
            | Error::MissingPartialIv
            | Error::MissingCiphertext => "Failed to decode COSE",
            Error::UnknownKid => "Security context not found",
            Error::Replay => "Replay detected",
            Error::DecryptionFailed | Error::BadSignature => "Decryption failed",
            _ => "",
        }
    }
}

impl From<ssm_coap::Error> for Error {
    fn from(e: ssm_coap::Error) -> Self {
        match e {
            ssm_coap::Error::BufferTooSmall => Error::BufferTooSmall,
            e => Error::Coap(e),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Coap(e) => write!(f, "malformed CoAP message: {e}"),
            Error::NotOscore => f.write_str("message has no OSCORE option"),
            Error::BadOscoreOption => f.write_str("malformed OSCORE option"),
            Error::MissingKid => f.write_str("OSCORE request without kid"),
            Error::MissingPartialIv => f.write_str("OSCORE request without Partial IV"),
            Error::MissingCiphertext => f.write_str("OSCORE message without ciphertext"),
            Error::BadOuterCode => {
                f.write_str("OSCORE request with an outer code other than POST or FETCH")
            }
            Error::UnknownKid => f.write_str("no security context for this kid"),
            Error::Replay => f.write_str("replayed Partial IV"),
            Error::DecryptionFailed => f.write_str("AEAD decryption failed"),
            Error::MalformedPlaintext => f.write_str("decrypted plaintext is not a CoAP message"),
            Error::FreshnessUnknown(_) => {
                f.write_str("replay window not initialised: Echo challenge required")
            }
            Error::UnexpectedObserve => f.write_str("Observe option does not match the request"),
            Error::SequenceNumberExhausted => {
                f.write_str("sender sequence number exhausted (2^40)")
            }
            Error::SequenceNumberNotReserved => {
                f.write_str("sender sequence number not reserved in storage")
            }
            Error::BufferTooSmall => f.write_str("output buffer too small"),
            Error::IdTooLong => f.write_str("OSCORE ID longer than 7 bytes"),
            Error::IdContextTooLong => f.write_str("OSCORE ID context too long"),
            Error::BadProxyUri => f.write_str("Proxy-Uri cannot be decomposed"),
            Error::EmptyMasterSecret => f.write_str("empty master secret"),
            Error::BadSignature => f.write_str("group-mode countersignature did not verify"),
            Error::BadCredential => f.write_str("unusable authentication credential"),
            Error::NotGroupMode => f.write_str("OSCORE message without the Group Flag"),
            Error::GroupMessageTooLong => f.write_str("group-mode message too long to sign"),
            Error::NotPairwiseMode => f.write_str("the group does not use the pairwise mode"),
        }
    }
}

#[cfg(feature = "alloc")]
impl core::error::Error for Error {}

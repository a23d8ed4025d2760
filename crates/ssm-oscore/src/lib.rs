//! Object Security for Constrained RESTful Environments (OSCORE), RFC 8613,
//! as used by OCF Simple Secure Multicast.
//!
//! What this crate implements, by section of RFC 8613:
//!
//! * §3.2 security context derivation ([`SecurityContext::derive`],
//!   [`kdf`]): HKDF-SHA-256, AES-CCM-16-64-128 (COSE algorithm 10), optional
//!   Master Salt and ID Context, Sender/Recipient IDs of 0–7 bytes.
//! * §4.1 option classes ([`class`]), including the Proxy-Uri decomposition
//!   of §4.1.3.3 and Observe/No-Response handling of §4.1.3.5–6.
//! * §5.2 nonce, §5.4 AAD ([`crypto`]).
//! * §6.1 the OSCORE option ([`OscoreOption`]).
//! * §7.4 replay protection ([`ReplayWindow`]): a sliding bitmap, checked
//!   before and updated **only after** the AEAD tag verifies.
//! * §8 protecting and verifying requests and responses
//!   ([`SenderContext::protect_request`], [`RecipientContext::unprotect_request`], …).
//! * Appendix B.1.1 sequence numbers stored "K ahead" ([`SequenceNumber`],
//!   [`SequenceNumberStore`]); Appendix B.1.2 Echo-based replay-window
//!   initialisation after a restart ([`ReplayState`]).
//!
//! * Group OSCORE (RFC 10021) group mode ([`group`]): signed and
//!   encrypted group requests and responses, EdDSA with Ed25519; and its
//!   pairwise mode ([`pairwise`]) for one-to-one exchanges in a group.
//!
//! The crate is sans-IO: it never touches a socket, a clock, a file or a
//! random-number generator. Callers supply buffers, persisted state and
//! random values. Protect and unprotect do not allocate; keys are zeroized on
//! drop and never printed by `Debug`.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "alloc")]
extern crate alloc;

pub mod class;
mod context;
pub mod crypto;
mod error;
pub mod group;
mod id;
pub mod kdf;
mod option;
pub mod pairwise;
mod protect;
mod replay;
mod sequence;

pub use context::{ContextParams, RecipientContext, SecurityContext, SenderContext};
pub use error::Error;
pub use id::{Id, IdContext, PartialIv, MAX_ID_CONTEXT_LEN, MAX_ID_LEN, MAX_PARTIAL_IV_LEN};
pub use option::OscoreOption;
pub use protect::{Decrypted, RequestBinding, RequestOptions, ResponsePiv};
pub use replay::{
    NotificationOrder, ReplayState, ReplayWindow, DEFAULT_REPLAY_WINDOW, MAX_REPLAY_WINDOW,
};
pub use sequence::{block_ahead, SequenceNumber, SequenceNumberStore, MAX_SEQUENCE_NUMBER};

/// COSE algorithm 10, AES-CCM-16-64-128: the only AEAD OSCORE mandates.
pub const ALG_AES_CCM_16_64_128: u8 = 10;
/// Key length of AES-CCM-16-64-128.
pub const KEY_LEN: usize = 16;
/// Nonce (and Common IV) length of AES-CCM-16-64-128.
pub const NONCE_LEN: usize = 13;
/// Authentication tag length of AES-CCM-16-64-128.
pub const TAG_LEN: usize = 8;

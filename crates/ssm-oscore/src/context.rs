//! Security contexts (RFC 8613 §3): the Common, Sender and Recipient parts.
//!
//! Each [`SenderContext`] and [`RecipientContext`] carries its own copy of
//! the Common IV, so a multicast client can hold a sender-only context and a
//! multicast server recipient-only contexts (OCF SSM credtypes 128 and 256).
//! The AES key schedule is expanded once, when the context is derived.
use crate::crypto::{self, Aead};
use crate::error::Error;
use crate::id::{Id, IdContext};
use crate::kdf::Prk;
use crate::replay::ReplayState;
use crate::sequence::SequenceNumber;
use crate::NONCE_LEN;

/// The inputs of §3.2.
#[derive(Clone, Copy)]
pub struct ContextParams<'a> {
    /// Master Secret (OCF: 32 raw bytes).
    pub master_secret: &'a [u8],
    /// Master Salt; `None` is the default empty salt.
    pub master_salt: Option<&'a [u8]>,
    /// ID Context; `None` puts CBOR null in `info`.
    pub id_context: Option<IdContext>,
    /// Sender ID.
    pub sender_id: Id,
    /// Recipient ID.
    pub recipient_id: Id,
}

impl core::fmt::Debug for ContextParams<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ContextParams")
            .field("master_secret", &"<secret>")
            .field("master_salt", &self.master_salt.map(|_| "<salt>"))
            .field("id_context", &self.id_context)
            .field("sender_id", &self.sender_id)
            .field("recipient_id", &self.recipient_id)
            .finish()
    }
}

/// The sending half: Sender ID, Sender Key (as an expanded AEAD), Common
/// IV and the Sender Sequence Number.
#[derive(Debug)]
pub struct SenderContext {
    pub(crate) id: Id,
    pub(crate) id_context: Option<IdContext>,
    pub(crate) common_iv: [u8; NONCE_LEN],
    /// The nonce part fixed by the Sender ID, computed once (see
    /// [`crypto::nonce_base`]).
    pub(crate) nonce_base: [u8; NONCE_LEN],
    pub(crate) aead: Aead,
    /// The Sender Sequence Number and its persistence state. Private: a
    /// number can only move forward (through [`Self::reserve_sequence`] and
    /// protecting), never be set or rewound, so a nonce is never reused.
    pub(crate) sequence: SequenceNumber,
}

impl SenderContext {
    /// The sender sequence number (read only).
    pub fn sequence(&self) -> &SequenceNumber {
        &self.sequence
    }

    /// Reserves the next sequence number through `store` if it is not
    /// reserved yet (see [`SequenceNumber::reserve`]); protecting needs one.
    pub fn reserve_sequence<S: crate::SequenceNumberStore>(
        &mut self,
        store: &mut S,
    ) -> Result<(), S::Error> {
        self.sequence.reserve(store)
    }

    /// Derives the Sender Key and Common IV.
    pub fn derive(
        master_secret: &[u8],
        master_salt: Option<&[u8]>,
        id_context: Option<IdContext>,
        sender_id: Id,
        sequence: SequenceNumber,
    ) -> Result<Self, Error> {
        let prk = Prk::extract(master_secret, master_salt)?;
        Ok(Self::from_prk(&prk, id_context, sender_id, sequence))
    }

    fn from_prk(
        prk: &Prk,
        id_context: Option<IdContext>,
        id: Id,
        sequence: SequenceNumber,
    ) -> Self {
        let common_iv = prk.common_iv(id_context.as_ref());
        SenderContext {
            id,
            id_context,
            common_iv,
            nonce_base: crypto::nonce_base(&id, &common_iv),
            aead: Aead::new(&prk.key(&id, id_context.as_ref())),
            sequence,
        }
    }

    /// The Sender ID (sent as `kid` in requests).
    pub fn id(&self) -> &Id {
        &self.id
    }

    /// The ID Context.
    pub fn id_context(&self) -> Option<&IdContext> {
        self.id_context.as_ref()
    }

    /// The Common IV (not a secret: it only makes nonces unique per context).
    pub fn common_iv(&self) -> &[u8; NONCE_LEN] {
        &self.common_iv
    }
}

/// The receiving half: Recipient ID, Recipient Key, Common IV and the
/// replay state.
#[derive(Debug, Clone)]
pub struct RecipientContext {
    pub(crate) id: Id,
    pub(crate) id_context: Option<IdContext>,
    pub(crate) common_iv: [u8; NONCE_LEN],
    /// The nonce part fixed by the Recipient ID, computed once (see
    /// [`crypto::nonce_base`]).
    pub(crate) nonce_base: [u8; NONCE_LEN],
    pub(crate) aead: Aead,
    /// Replay window, or the Echo challenge state after a restart.
    pub replay: ReplayState,
}

impl RecipientContext {
    /// Derives the Recipient Key and Common IV.
    pub fn derive(
        master_secret: &[u8],
        master_salt: Option<&[u8]>,
        id_context: Option<IdContext>,
        recipient_id: Id,
        replay: ReplayState,
    ) -> Result<Self, Error> {
        let prk = Prk::extract(master_secret, master_salt)?;
        Ok(Self::from_prk(&prk, id_context, recipient_id, replay))
    }

    fn from_prk(prk: &Prk, id_context: Option<IdContext>, id: Id, replay: ReplayState) -> Self {
        let common_iv = prk.common_iv(id_context.as_ref());
        RecipientContext {
            id,
            id_context,
            common_iv,
            nonce_base: crypto::nonce_base(&id, &common_iv),
            aead: Aead::new(&prk.key(&id, id_context.as_ref())),
            replay,
        }
    }

    /// The Recipient ID (the `kid` of the peer's requests).
    pub fn id(&self) -> &Id {
        &self.id
    }

    /// The ID Context.
    pub fn id_context(&self) -> Option<&IdContext> {
        self.id_context.as_ref()
    }

    /// The Common IV (not a secret: it only makes nonces unique per context).
    pub fn common_iv(&self) -> &[u8; NONCE_LEN] {
        &self.common_iv
    }
}

/// A full unicast security context.
#[derive(Debug)]
pub struct SecurityContext {
    /// Sending half.
    pub sender: SenderContext,
    /// Receiving half.
    pub recipient: RecipientContext,
}

impl SecurityContext {
    /// Derives both halves (one HKDF-Extract).
    pub fn derive(
        p: &ContextParams<'_>,
        sequence: SequenceNumber,
        replay: ReplayState,
    ) -> Result<Self, Error> {
        let prk = Prk::extract(p.master_secret, p.master_salt)?;
        Ok(SecurityContext {
            sender: SenderContext::from_prk(&prk, p.id_context, p.sender_id, sequence),
            recipient: RecipientContext::from_prk(&prk, p.id_context, p.recipient_id, replay),
        })
    }
}

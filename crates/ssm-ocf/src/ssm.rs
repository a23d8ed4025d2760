//! Simple Secure Multicast, the receive and send rules (REFERENCE-SSM §3–§5,
//! with its weaknesses of §9 fixed):
//!
//! * A light holds one recipient context per authorised client (credtype
//!   256, `subjectuuid` = that client), selected by `kid`. Every client has
//!   its own Sender ID, so no two clients share a nonce space; a light
//!   provisioned the reference way (one shared group ID) still works:
//!   credentials with the same kid *and* key share one context and one
//!   replay window (a datagram cannot tell which of them sent it, and a
//!   window per credential would accept every replay once more per extra
//!   credential).
//! * A sender protects a command once and sends the identical datagram to
//!   every group it addresses (224.0.1.187, ff02::158, ff05::158, …); a
//!   light joined to several of them applies the first copy and counts the
//!   others as [`DropReason::DuplicateCopy`], not as replays.
//! * The replay window moves only after the tag verifies; a pair-wise
//!   (credtype 64) context is never usable on multicast; the inner method
//!   must be POST. Nothing is ever sent back.
//! * Restart safety: the highest accepted Partial IV of each recipient is
//!   kept in [`ReplayFloors`]; the runtime persists it *before* the update
//!   is applied, and a restarted light rejects everything at or below it.
//!   The receiver's floors are only ever the *durable* ones: a verified
//!   update whose Partial IV is above them comes with the floors to persist
//!   ([`Verified::persist`]), which the runtime hands back with
//!   [`SsmReceiver::floor_persisted`] once they are on disk; one at or
//!   below them is covered already and may be applied at once.
use crate::cred::{CredType, OscoreCred};
use ssm_coap::{Message, OptionNumber, Packet};
use ssm_oscore::{
    Error as OscoreError, Id, OscoreOption, RecipientContext, ReplayState, ReplayWindow,
    DEFAULT_REPLAY_WINDOW,
};
use std::collections::BTreeMap;
use uuid::Uuid;

/// Why a multicast datagram was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DropReason {
    /// Not valid CoAP.
    Malformed,
    /// No OSCORE option (an unprotected multicast request).
    Unprotected,
    /// Malformed OSCORE option.
    BadOscoreOption,
    /// No SSM recipient context for this kid.
    UnknownKid,
    /// The kid names a pair-wise (credtype 64) context: never on multicast.
    PairwiseOnMulticast,
    /// Already received (or below the persisted floor).
    Replay,
    /// The AEAD tag did not verify.
    DecryptionFailed,
    /// The plaintext is not a CoAP request.
    MalformedPlaintext,
    /// The inner method is not POST (UPDATE).
    NotUpdate,
    /// An identical copy of a datagram just accepted, received through
    /// another group the light listens on (a sender sends one copy per
    /// scope and family). Expected, not an attack; beyond one copy per
    /// other group, or a few commands later, the same bytes count as a
    /// [`DropReason::Replay`].
    DuplicateCopy,
    /// A confirmable (CON) request on a multicast group: multicast requests
    /// are NON (RFC 7252 §8.1).
    ConfirmableMulticast,
    /// Group OSCORE group mode (RFC 10021 §7.2): the countersignature did
    /// not verify with the credential of the switch the kid names (a
    /// member forging another's command, or a tampered datagram).
    BadSignature,
}

impl DropReason {
    /// Rejected before any AEAD work (cheap).
    pub fn is_cheap(self) -> bool {
        !matches!(
            self,
            DropReason::DecryptionFailed
                | DropReason::MalformedPlaintext
                | DropReason::NotUpdate
                | DropReason::BadSignature
        )
    }
}

/// A verified SSM UPDATE, not yet applied.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// The decrypted inner request.
    pub request: Message,
    /// The client it comes from (the credential's subject).
    pub subject: Option<Uuid>,
    /// The credential that verified it.
    pub credid: u32,
    /// Its kid.
    pub kid: Id,
    /// Its Partial IV (sequence number).
    pub piv: u64,
}

/// The highest accepted Partial IV per recipient kid (hex), persisted by the
/// runtime before applying an update.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReplayFloors(pub BTreeMap<String, u64>);

impl ReplayFloors {
    /// Records `piv` for `kid`; true if the stored value changed (persist it).
    pub fn record(&mut self, kid: &Id, piv: u64) -> bool {
        let k = hex::encode(kid.as_bytes());
        match self.0.get(&k) {
            Some(&floor) if floor >= piv => false,
            _ => {
                self.0.insert(k, piv);
                true
            }
        }
    }

    /// Records that `piv` was accepted for `kid`, reserving `k` ahead: when
    /// `piv` is above the stored floor, the stored floor becomes `piv + k`
    /// (at most the largest sequence number) and true is returned (persist
    /// it). With `k = 0` this is [`Self::record`]. A restarted receiver
    /// rejects everything at or below the stored value, so a larger `k`
    /// never lets a replay through; it only makes a crashed receiver ignore
    /// up to `k` fresh datagrams of that sender, in exchange for one write
    /// per `k + 1` datagrams instead of one per datagram.
    pub fn reserve(&mut self, kid: &Id, piv: u64, k: u64) -> bool {
        let k_hex = hex::encode(kid.as_bytes());
        match self.0.get(&k_hex) {
            Some(&floor) if floor >= piv => false,
            _ => {
                let v = piv
                    .saturating_add(k)
                    .min(ssm_oscore::MAX_SEQUENCE_NUMBER)
                    .max(piv);
                self.0.insert(k_hex, v);
                true
            }
        }
    }

    /// The floor for `kid`, if one was recorded.
    pub fn get(&self, kid: &Id) -> Option<u64> {
        self.0.get(&hex::encode(kid.as_bytes())).copied()
    }
}

/// One recipient context (and so one replay window) per (kid, key).
struct Recipient {
    ctx: RecipientContext,
    /// Its master secret, to group credentials that share kid and key.
    secret: zeroize::Zeroizing<Vec<u8>>,
    /// The first credential with this kid and key (in provisioning order)
    /// is credited with what the context verifies.
    subject: Option<Uuid>,
    credid: u32,
}

/// A datagram accepted lately, to recognise its copies from other groups.
struct RecentAccept {
    kid: Id,
    piv: u64,
    digest: u64,
    copies_left: u8,
}

/// How many accepted datagrams are remembered to recognise their copies.
const RECENT_ACCEPTS: usize = 8;

/// A verified SSM update, with what must be made durable before it is
/// applied.
#[derive(Debug)]
pub struct Verified {
    /// The update.
    pub accepted: Accepted,
    /// `Some(floor)`: the floor of `accepted.kid` must rise to `floor`
    /// first: persist [`SsmReceiver::floors_with`], then call
    /// [`SsmReceiver::floor_persisted`], then apply. `None`: the durable
    /// floor already covers this Partial IV; apply at once.
    pub persist: Option<u64>,
}

/// The SSM receive side of one device.
pub struct SsmReceiver {
    recipients: Vec<Recipient>,
    /// Group OSCORE group-mode recipient contexts (credtype 131072), one
    /// per (group, authorised switch).
    group: Vec<group_rx::GroupRecipient>,
    pairwise_kids: Vec<Id>,
    /// The durable floors (on disk or in the journal).
    floors: ReplayFloors,
    reserve: u64,
    recent: std::collections::VecDeque<RecentAccept>,
    copies: u8,
    /// Group-mode signatures verified by this process's receivers
    /// ([`SsmReceiver::set_signature_cache`]); `None`: each verified here.
    signature_cache: Option<std::sync::Arc<SignatureCache>>,
}

impl SsmReceiver {
    /// Builds recipient contexts from the device's OSCORE credentials
    /// (credtype 256; credtype 64 kids are remembered only to refuse them)
    /// and restores the persisted replay floors.
    pub fn new(creds: &[OscoreCred], floors: ReplayFloors) -> Result<Self, OscoreError> {
        let mut recipients = Vec::new();
        let mut pairwise_kids = Vec::new();
        for c in creds {
            match (c.credtype, c.recipient_id) {
                (CredType::SsmServer, Some(rid)) => {
                    if recipients
                        .iter()
                        .any(|r: &Recipient| *r.ctx.id() == rid && *r.secret == *c.secret)
                    {
                        // Same kid and key as an earlier credential (the
                        // reference stack's shared group ID): the same
                        // context and window serve both.
                        continue;
                    }
                    let replay = match floors.get(&rid) {
                        Some(f) => ReplayWindow::from_floor(f, DEFAULT_REPLAY_WINDOW),
                        None => ReplayWindow::new(DEFAULT_REPLAY_WINDOW),
                    };
                    let ctx = RecipientContext::derive(
                        &c.secret,
                        None,
                        None,
                        rid,
                        ReplayState::Window(replay),
                    )?;
                    recipients.push(Recipient {
                        ctx,
                        secret: c.secret.clone(),
                        subject: c.subject,
                        credid: c.credid,
                    });
                }
                (CredType::PairwiseOscore, Some(rid)) => pairwise_kids.push(rid),
                _ => {}
            }
        }
        let group = group_rx::recipients(creds, &floors)?;
        Ok(SsmReceiver {
            recipients,
            group,
            pairwise_kids,
            floors,
            reserve: 0,
            recent: Default::default(),
            copies: 0,
            signature_cache: None,
        })
    }

    /// How many identical copies of each datagram may arrive through the
    /// light's other groups (the number of multicast groups it listens on,
    /// less one); they are dropped as [`DropReason::DuplicateCopy`].
    /// Default 0: every copy is a replay.
    pub fn set_expected_copies(&mut self, n: u8) {
        self.copies = n;
    }

    /// The durable floors with `kid`'s raised to `floor`: what to persist
    /// for a [`Verified::persist`].
    pub fn floors_with(&self, kid: &Id, floor: u64) -> ReplayFloors {
        let mut f = self.floors.clone();
        f.record(kid, floor);
        f
    }

    /// `kid`'s floor `floor` is on stable storage now: it becomes the
    /// receiver's durable floor (never lowered).
    pub fn floor_persisted(&mut self, kid: &Id, floor: u64) {
        self.floors.record(kid, floor);
    }

    /// Floor reservation (see [`ReplayFloors::reserve`]): 0 (the default)
    /// persists the exact floor before every update.
    pub fn set_floor_reservation(&mut self, k: u64) {
        self.reserve = k;
    }

    /// The floor reservation in use.
    pub fn floor_reservation(&self) -> u64 {
        self.reserve
    }

    /// Whether a datagram with this kid could be more than an
    /// [`DropReason::UnknownKid`] here (an SSM recipient context of either
    /// profile, or a pair-wise kid to refuse by name): a process hosting
    /// many devices on one group socket hands a datagram only to those.
    pub fn admits(&self, kid: &Id) -> bool {
        self.pairwise_kids.contains(kid)
            || self.recipients.iter().any(|r| *r.ctx.id() == *kid)
            || self.group.iter().any(|g| *g.kid() == *kid)
    }

    /// Number of SSM recipient contexts (group mode included).
    pub fn len(&self) -> usize {
        self.recipients.len() + self.group.len()
    }

    /// True without any SSM recipient context.
    pub fn is_empty(&self) -> bool {
        self.recipients.is_empty() && self.group.is_empty()
    }

    /// The replay floors (to persist).
    pub fn floors(&self) -> &ReplayFloors {
        &self.floors
    }

    /// Verifies one multicast datagram carrying an OSCORE option. The
    /// datagram is decrypted in place. On `Ok`, the caller persists
    /// [`Verified::persist`] if there is one, reports it with
    /// [`Self::floor_persisted`], then applies.
    pub fn receive(&mut self, datagram: &mut [u8]) -> Result<Verified, DropReason> {
        if let Some(g) = group_rx::group_flagged(datagram)? {
            return self.receive_group(datagram, g);
        }
        let (kid, piv) = {
            let p = Packet::new_checked(&*datagram).map_err(|_| DropReason::Malformed)?;
            if p.msg_type() == ssm_coap::MessageType::Confirmable {
                return Err(DropReason::ConfirmableMulticast);
            }
            let o = p
                .options()
                .get(OptionNumber::OSCORE)
                .ok_or(DropReason::Unprotected)?;
            let opt = OscoreOption::parse(o.value).map_err(|e| match e {
                OscoreError::UnknownKid => DropReason::UnknownKid,
                _ => DropReason::BadOscoreOption,
            })?;
            (
                opt.kid.ok_or(DropReason::BadOscoreOption)?,
                opt.partial_iv.map(|p| p.value()),
            )
        };
        if self.pairwise_kids.contains(&kid) && !self.recipients.iter().any(|r| *r.ctx.id() == kid)
        {
            return Err(DropReason::PairwiseOnMulticast);
        }
        // Contexts with the same kid and different keys (rare: a kid reused
        // across keys): the first whose tag verifies wins. Decryption is in
        // place, so each attempt after the first works on a copy.
        let shared = self
            .recipients
            .iter()
            .filter(|r| *r.ctx.id() == kid)
            .count()
            > 1;
        let original = if shared || self.copies > 0 {
            datagram.to_vec()
        } else {
            Vec::new()
        };
        let mut last = DropReason::UnknownKid;
        for r in self.recipients.iter_mut().filter(|r| *r.ctx.id() == kid) {
            if shared {
                datagram.copy_from_slice(&original);
            }
            match r.ctx.unprotect_request(datagram) {
                Ok(d) => {
                    let piv = d.partial_iv.map(|p| p.value()).unwrap_or(0);
                    if d.code != ssm_coap::Code::POST {
                        // Verified but not an UPDATE: the window already moved
                        // (the PIV is spent), nothing is applied.
                        return Err(DropReason::NotUpdate);
                    }
                    let accepted = Accepted {
                        request: d.to_message(),
                        subject: r.subject,
                        credid: r.credid,
                        kid,
                        piv,
                    };
                    return Ok(self.verified(accepted, &original));
                }
                Err(OscoreError::Replay) => last = DropReason::Replay,
                Err(OscoreError::DecryptionFailed) => last = DropReason::DecryptionFailed,
                Err(OscoreError::MalformedPlaintext) => last = DropReason::MalformedPlaintext,
                Err(OscoreError::UnknownKid) => last = DropReason::UnknownKid,
                Err(OscoreError::BadOuterCode) => last = DropReason::Malformed,
                Err(_) => last = DropReason::BadOscoreOption,
            }
        }
        Err(self.label_copy(last, kid, piv, &original))
    }

    /// A verified update: what must be persisted first, and remembered to
    /// recognise its copies from the light's other groups.
    fn verified(&mut self, accepted: Accepted, original: &[u8]) -> Verified {
        let (kid, piv) = (accepted.kid, accepted.piv);
        let persist = match self.floors.get(&kid) {
            Some(floor) if floor >= piv => None,
            _ => Some(
                piv.saturating_add(self.reserve)
                    .min(ssm_oscore::MAX_SEQUENCE_NUMBER)
                    .max(piv),
            ),
        };
        if self.copies > 0 {
            if self.recent.len() == RECENT_ACCEPTS {
                self.recent.pop_front();
            }
            self.recent.push_back(RecentAccept {
                kid,
                piv,
                digest: digest(original),
                copies_left: self.copies,
            });
        }
        Verified { accepted, persist }
    }

    /// `last`, or [`DropReason::DuplicateCopy`] for a replay that is an
    /// identical copy of a datagram accepted lately.
    fn label_copy(
        &mut self,
        last: DropReason,
        kid: Id,
        piv: Option<u64>,
        original: &[u8],
    ) -> DropReason {
        if last == DropReason::Replay && self.copies > 0 {
            // Rejected either way; only the label differs. An identical copy
            // of a datagram accepted lately is the sender's copy to another
            // group, within one copy per other group.
            let d = digest(original);
            if let Some(r) = self
                .recent
                .iter_mut()
                .find(|r| r.kid == kid && Some(r.piv) == piv && r.digest == d)
            {
                if r.copies_left > 0 {
                    r.copies_left -= 1;
                    return DropReason::DuplicateCopy;
                }
            }
        }
        last
    }
}

/// A digest of a datagram to recognise identical copies (not a security
/// mechanism: a copy is dropped either way, this only names the reason).
fn digest(bytes: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

/// Counters of dropped datagrams, by reason.
#[derive(Debug, Clone, Default)]
pub struct DropCounters(pub BTreeMap<DropReason, u64>);

impl DropCounters {
    /// Counts one drop.
    pub fn count(&mut self, r: DropReason) {
        *self.0.entry(r).or_default() += 1;
    }
    /// Drops that needed no AEAD work.
    pub fn cheap(&self) -> u64 {
        self.0
            .iter()
            .filter(|(r, _)| r.is_cheap())
            .map(|(_, n)| n)
            .sum()
    }
    /// Total drops.
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }
}

/// The kid of a NON multicast datagram with a well-formed OSCORE option
/// (what [`SsmReceiver::receive`] looks up first); `None` for anything
/// else, which only the full receive path can judge.
pub fn datagram_kid(datagram: &[u8]) -> Option<Id> {
    let p = Packet::new_checked(datagram).ok()?;
    if p.msg_type() == ssm_coap::MessageType::Confirmable {
        return None;
    }
    OscoreOption::parse(p.options().get(OptionNumber::OSCORE)?.value)
        .ok()?
        .kid
}

/// The SSM UPDATE a client sends (REFERENCE-SSM §3): NON POST to `href`
/// with the OCF options, and No-Response 26 (RFC 7967) unless
/// `no_response` is false (the reference stack sends none).
pub fn update_request(
    href: &str,
    props: &ciborium::Value,
    message_id: u16,
    token: ssm_coap::Token,
    no_response: bool,
) -> Message {
    let mut m = crate::message::update(ssm_coap::MessageType::NonConfirmable, href, props);
    m.message_id = message_id;
    m.token = token;
    if no_response {
        m.set_option_uint(OptionNumber::NO_RESPONSE, 26);
    }
    m
}

/// Why an OSCORE context cannot be built from a credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContextError {
    /// Not an SSM client credential.
    #[error("credential {0} is not an SSM client credential (credtype 128)")]
    NotSsmClient(u32),
    /// An SSM client credential without a Sender ID.
    #[error("SSM client credential {0} without senderid")]
    NoSenderId(u32),
    /// Not a group-mode sender credential (credtype 65536 with its group).
    #[error("credential {0} is not a Group OSCORE sender credential (credtype 65536)")]
    NotGroupSender(u32),
    /// Not a pair-wise OSCORE credential (both IDs needed).
    #[error("credential {0} is not a pair-wise OSCORE credential")]
    NotPairwise(u32),
    /// The key derivation refused the parameters.
    #[error("OSCORE context of credential {credid}: {error}")]
    Derive {
        /// The credential.
        credid: u32,
        /// What OSCORE said.
        error: OscoreError,
    },
}

/// The sender context of an SSM client credential (credtype 128).
pub fn sender_context(
    cred: &OscoreCred,
    sequence: ssm_oscore::SequenceNumber,
) -> Result<ssm_oscore::SenderContext, ContextError> {
    if cred.credtype != CredType::SsmClient {
        return Err(ContextError::NotSsmClient(cred.credid));
    }
    let sid = cred
        .sender_id
        .ok_or(ContextError::NoSenderId(cred.credid))?;
    ssm_oscore::SenderContext::derive(&cred.secret, None, None, sid, sequence).map_err(|error| {
        ContextError::Derive {
            credid: cred.credid,
            error,
        }
    })
}

/// Both halves of a pair-wise OSCORE credential (credtype 64).
pub fn pairwise_context(
    cred: &OscoreCred,
    sequence: ssm_oscore::SequenceNumber,
    replay: ReplayState,
) -> Result<ssm_oscore::SecurityContext, ContextError> {
    let (Some(s), Some(r)) = (cred.sender_id, cred.recipient_id) else {
        return Err(ContextError::NotPairwise(cred.credid));
    };
    ssm_oscore::SecurityContext::derive(
        &ssm_oscore::ContextParams {
            master_secret: &cred.secret,
            master_salt: None,
            id_context: None,
            sender_id: s,
            recipient_id: r,
        },
        sequence,
        replay,
    )
    .map_err(|error| ContextError::Derive {
        credid: cred.credid,
        error,
    })
}

mod group_rx;
mod signature_cache;
pub use signature_cache::SignatureCache;

#[cfg(test)]
mod tests;

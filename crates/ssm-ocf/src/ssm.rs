//! Simple Secure Multicast, the receive and send rules (REFERENCE-SSM §3–§5,
//! with its weaknesses of §9 fixed):
//!
//! * A light holds one recipient context per authorised client (credtype
//!   256, `subjectuuid` = that client), selected by `kid`. Every client has
//!   its own Sender ID, so no two clients share a nonce space; a light
//!   provisioned the reference way (one shared group ID) still works.
//! * The replay window moves only after the tag verifies; a pair-wise
//!   (credtype 64) context is never usable on multicast; the inner method
//!   must be POST. Nothing is ever sent back.
//! * Restart safety: the highest accepted Partial IV of each recipient is
//!   kept in [`ReplayFloors`]; the runtime persists it *before* the update
//!   is applied, and a restarted light rejects everything at or below it.
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
}

impl DropReason {
    /// Rejected before any AEAD work (cheap).
    pub fn is_cheap(self) -> bool {
        !matches!(
            self,
            DropReason::DecryptionFailed | DropReason::MalformedPlaintext | DropReason::NotUpdate
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

struct Recipient {
    ctx: RecipientContext,
    subject: Option<Uuid>,
    credid: u32,
}

/// The SSM receive side of one device.
pub struct SsmReceiver {
    recipients: Vec<Recipient>,
    pairwise_kids: Vec<Id>,
    floors: ReplayFloors,
    reserve: u64,
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
                        subject: c.subject,
                        credid: c.credid,
                    });
                }
                (CredType::PairwiseOscore, Some(rid)) => pairwise_kids.push(rid),
                _ => {}
            }
        }
        Ok(SsmReceiver {
            recipients,
            pairwise_kids,
            floors,
            reserve: 0,
        })
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

    /// Number of SSM recipient contexts.
    pub fn len(&self) -> usize {
        self.recipients.len()
    }

    /// True without any SSM recipient context.
    pub fn is_empty(&self) -> bool {
        self.recipients.is_empty()
    }

    /// The replay floors (to persist).
    pub fn floors(&self) -> &ReplayFloors {
        &self.floors
    }

    /// Verifies one multicast datagram carrying an OSCORE option. The
    /// datagram is decrypted in place. On `Ok`, the caller persists
    /// [`Self::floors`] if `true` was returned with it, then applies.
    pub fn receive(&mut self, datagram: &mut [u8]) -> Result<(Accepted, bool), DropReason> {
        let kid = {
            let p = Packet::new_checked(&*datagram).map_err(|_| DropReason::Malformed)?;
            let o = p
                .options()
                .get(OptionNumber::OSCORE)
                .ok_or(DropReason::Unprotected)?;
            let opt = OscoreOption::parse(o.value).map_err(|e| match e {
                OscoreError::UnknownKid => DropReason::UnknownKid,
                _ => DropReason::BadOscoreOption,
            })?;
            opt.kid.ok_or(DropReason::BadOscoreOption)?
        };
        if self.pairwise_kids.contains(&kid) && !self.recipients.iter().any(|r| *r.ctx.id() == kid)
        {
            return Err(DropReason::PairwiseOnMulticast);
        }
        // Several credentials may share a kid (the reference stack's single
        // group ID): the first whose tag verifies wins. Decryption is in
        // place, so each attempt works on a copy.
        let shared = self
            .recipients
            .iter()
            .filter(|r| *r.ctx.id() == kid)
            .count()
            > 1;
        let original = if shared {
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
                    let request = d.to_message();
                    let grew = self.floors.reserve(&kid, piv, self.reserve);
                    return Ok((
                        Accepted {
                            request,
                            subject: r.subject,
                            credid: r.credid,
                            kid,
                            piv,
                        },
                        grew,
                    ));
                }
                Err(OscoreError::Replay) => last = DropReason::Replay,
                Err(OscoreError::DecryptionFailed) => last = DropReason::DecryptionFailed,
                Err(OscoreError::MalformedPlaintext) => last = DropReason::MalformedPlaintext,
                Err(OscoreError::UnknownKid) => last = DropReason::UnknownKid,
                Err(OscoreError::BadOuterCode) => last = DropReason::Malformed,
                Err(_) => last = DropReason::BadOscoreOption,
            }
        }
        Err(last)
    }
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

/// The sender context of an SSM client credential (credtype 128).
pub fn sender_context(
    cred: &OscoreCred,
    sequence: ssm_oscore::SequenceNumber,
) -> Result<ssm_oscore::SenderContext, String> {
    if cred.credtype != CredType::SsmClient {
        return Err(format!(
            "credential {} is not an SSM client credential (credtype 128)",
            cred.credid
        ));
    }
    let sid = cred
        .sender_id
        .ok_or("SSM client credential without senderid")?;
    ssm_oscore::SenderContext::derive(&cred.secret, None, None, sid, sequence)
        .map_err(|e| e.to_string())
}

/// Both halves of a pair-wise OSCORE credential (credtype 64).
pub fn pairwise_context(
    cred: &OscoreCred,
    sequence: ssm_oscore::SequenceNumber,
    replay: ReplayState,
) -> Result<ssm_oscore::SecurityContext, String> {
    let (Some(s), Some(r)) = (cred.sender_id, cred.recipient_id) else {
        return Err(format!(
            "credential {} is not a pair-wise OSCORE credential",
            cred.credid
        ));
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
    .map_err(|e| e.to_string())
}

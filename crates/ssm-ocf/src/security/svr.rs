//! The security state of one device (`doxm`, `pstat`, `cred`, `acl2`,
//! `sdi`) and the request handling of the security virtual resources
//! (OCF Security: owner transfer states, owner-only writes, ACE
//! evaluation; DIGEST §5–§7): [`SecurityState::authorize`] decides every
//! request, [`SecurityState::handle`] serves `/oic/sec/*`.
use super::acl2::{Acl2, Requester, PERM_D, PERM_N, PERM_R, PERM_U};
use super::doxm::Doxm;
use super::pstat::{DeviceOnboardingState as Dos, Pstat};
use crate::cred::{CredResource, CredType};
use ciborium::Value;
use serde::{Deserialize, Serialize};
use ssm_coap::{Code, Message};
use uuid::Uuid;

pub use super::codec::{cred_from_value, cred_value};

/// Who sent a request, as the transport established it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// Plain CoAP.
    Anonymous,
    /// DTLS or OSCORE, authenticated as `subject`.
    Authenticated {
        /// The peer's UUID (PSK identity, or OSCORE credential subject).
        subject: Option<Uuid>,
    },
    /// The DTLS session of an owner transfer (Random PIN) in RFOTM: the
    /// owner-to-be, who may write doxm/pstat/cred/acl2.
    OwnerTransfer {
        /// What the session exported (the owner PSK is derived from it
        /// when the owner credential arrives; it is never sent).
        keys: std::sync::Arc<super::otm::OtmKeys>,
        /// Which session (the runtime's identifier): the transfer is bound
        /// to the first session that writes.
        session: u64,
    },
}

impl Peer {
    pub(super) fn requester(&self) -> Requester {
        match self {
            Peer::Anonymous => Requester {
                subject: None,
                secured: false,
            },
            Peer::Authenticated { subject } => Requester {
                subject: *subject,
                secured: true,
            },
            Peer::OwnerTransfer { .. } => Requester {
                subject: None,
                secured: true,
            },
        }
    }
}

/// The decision for a non-security resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Go ahead.
    Allowed,
    /// Refused, for this reason (the device maps it to a CoAP code).
    Denied(Denial),
}

/// Why the access rule refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    /// A method the resources do not have.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The device is not in normal operation (RFNOP).
    #[error("not in normal operation")]
    NotOperational,
    /// No ACE grants an unsecured requester this access.
    #[error("unauthenticated")]
    Unauthenticated,
    /// No ACE grants the (authenticated) requester this access.
    #[error("no ACE grants it")]
    NotPermitted,
}

/// Result of a request to a security resource.
#[derive(Debug)]
pub struct SvrOutcome {
    /// Response code.
    pub code: Code,
    /// Response body.
    pub body: Option<Value>,
    /// The state changed: persist it (atomically) before answering.
    pub persist: bool,
    /// OSCORE credentials changed: rebuild the live contexts.
    pub creds_changed: bool,
    /// The onboarding transition the request made.
    pub transition: Option<super::Transition>,
}

impl SvrOutcome {
    pub(super) fn code(code: Code) -> Self {
        SvrOutcome {
            code,
            body: None,
            persist: false,
            creds_changed: false,
            transition: None,
        }
    }
    pub(super) fn content(v: Value) -> Self {
        SvrOutcome {
            code: Code::CONTENT,
            body: Some(v),
            persist: false,
            creds_changed: false,
            transition: None,
        }
    }
    pub(super) fn changed(creds_changed: bool) -> Self {
        SvrOutcome {
            code: Code::CHANGED,
            body: None,
            persist: true,
            creds_changed,
            transition: None,
        }
    }
}

/// `/oic/sec/sdi`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Sdi {
    /// Secure domain UUID.
    #[serde(with = "crate::security::uuid_text")]
    pub uuid: Uuid,
    /// Domain name.
    pub name: String,
    /// Private.
    pub privileged: bool,
}

/// How the end of an owner-transfer session left the security state
/// ([`SecurityState::owner_transfer_session_ended`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerTransferEnd {
    /// The session was the transfer in progress and the device had not got
    /// past RFOTM: everything the transfer wrote was undone (the state is
    /// that of a new device again; persist it and show a new PIN).
    Undone,
    /// The session was the transfer and the device got past RFOTM: kept.
    Completed,
    /// The session never wrote (or another session's transfer is in
    /// progress): nothing changed.
    NotTheTransfer,
}

/// The owner-transfer session a transfer in progress is bound to, and the
/// device UUID from before the transfer's first write (the OBT replaces
/// it; undoing the transfer gives it back, so the UUID on the device's
/// label and commissioning sheet names it again). Runtime bookkeeping, not
/// part of the resources, so neither persisted nor compared (two states
/// with the same resources are equal).
#[derive(Debug, Clone, Copy, Default)]
struct TransferBinding(Option<(u64, Uuid)>);

impl PartialEq for TransferBinding {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for TransferBinding {}

/// Every security resource of a device, persisted as one JSON document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityState {
    /// doxm.
    pub doxm: Doxm,
    /// pstat.
    pub pstat: Pstat,
    /// cred.
    pub cred: CredResource,
    /// acl2.
    pub acl: Acl2,
    /// sdi.
    pub sdi: Sdi,
    /// sp: the current security profile.
    pub sp_current: String,
    /// The ids of the SSM groups the device belongs to (`/groupsResURI`,
    /// [`crate::groups`]): written by the owner, wiped by a hard reset.
    #[serde(default)]
    pub groups: Vec<u32>,
    /// The owner-transfer session whose writes are in progress, if any
    /// (in memory only: after a restart a partial transfer is undone by
    /// [`owner_transfer_ended`](Self::owner_transfer_ended)).
    #[serde(skip)]
    transfer: TransferBinding,
}

/// The baseline security profile OID.
pub const SP_BASELINE: &str = "1.3.6.1.4.1.51414.0.0.1.0";

impl SecurityState {
    /// A new, unowned device in RFOTM.
    pub fn new(deviceuuid: Uuid) -> Self {
        SecurityState {
            doxm: Doxm::unowned(deviceuuid),
            pstat: Pstat::default(),
            cred: CredResource::default(),
            acl: Acl2::default(),
            sdi: Sdi::default(),
            sp_current: SP_BASELINE.into(),
            groups: Vec::new(),
            transfer: TransferBinding::default(),
        }
    }

    /// The device's current identity.
    pub fn device_uuid(&self) -> Uuid {
        self.doxm.deviceuuid
    }

    /// Hard reset (pstat RESET): wipe credentials, ACEs and ownership,
    /// keep the identity, back to RFOTM.
    pub fn reset(&mut self) {
        let id = self.doxm.deviceuuid;
        *self = SecurityState::new(id);
        self.pstat.enter(Dos::Reset);
        self.pstat.enter(Dos::Rfotm);
    }

    /// No session may be running (at start-up, after a crash in the middle
    /// of an owner transfer, every step of which was persisted): if the
    /// device did not get past RFOTM, everything written is undone, so a
    /// device is never left half-owned and can be onboarded again.
    pub fn owner_transfer_ended(&mut self) -> bool {
        self.transfer = TransferBinding(None);
        if self.pstat.dos == Dos::Rfotm && !self.is_fresh() {
            self.reset();
            return true;
        }
        false
    }

    /// Owner-transfer session `session` ended (closed, failed or idle).
    /// Only the session the transfer in progress is bound to (the first
    /// that wrote) can undo it; the end of any other session (an abandoned
    /// attempt whose OBT went away) leaves that transfer alone.
    pub fn owner_transfer_session_ended(&mut self, session: u64) -> OwnerTransferEnd {
        if self.transfer.0.map(|(s, _)| s) != Some(session) {
            return OwnerTransferEnd::NotTheTransfer;
        }
        let before = self.transfer.0.map(|(_, uuid)| uuid);
        self.transfer = TransferBinding(None);
        if self.pstat.dos == Dos::Rfotm && !self.is_fresh() {
            if let Some(uuid) = before {
                self.doxm.deviceuuid = uuid;
            }
            self.reset();
            return OwnerTransferEnd::Undone;
        }
        OwnerTransferEnd::Completed
    }

    /// An owner-transfer session has written and has not ended: no other
    /// owner-transfer (Random PIN) session may start.
    pub fn owner_transfer_in_progress(&self) -> bool {
        self.transfer.0.is_some()
    }

    /// The resources are those of a new, unowned device.
    pub(super) fn is_fresh(&self) -> bool {
        *self == SecurityState::new(self.doxm.deviceuuid)
    }

    /// `owner` (the `devowneruuid`) is set and the device holds its owner
    /// credential (credtype 1, that subject, with key material): what
    /// `owned` and the move out of RFOTM require.
    pub(super) fn has_owner_credential(&self, owner: Uuid) -> bool {
        !owner.is_nil()
            && self.cred.creds.iter().any(|c| {
                c.cred_type() == CredType::PairwiseSymmetric
                    && c.subjectuuid.parse::<Uuid>().ok() == Some(owner)
                    && c.privatedata.as_ref().is_some_and(|p| !p.data.is_empty())
            })
    }

    /// Whether `peer` speaks for the device's owner (it may write the
    /// owner-only resources).
    pub fn is_owner_peer(&self, peer: &Peer) -> bool {
        self.is_owner(peer)
    }

    pub(super) fn is_owner(&self, peer: &Peer) -> bool {
        match peer {
            // The owner-transfer session (which the runtime only accepts in
            // RFOTM) speaks for the owner until it closes, also after it
            // moved the device on to RFPRO/RFNOP (steps 12–15); once one
            // session has written, only that one.
            Peer::OwnerTransfer { session, .. } => {
                let bound = self.transfer.0.is_none_or(|(s, _)| s == *session);
                bound && (self.pstat.dos == Dos::Rfotm || self.doxm.owned)
            }
            Peer::Authenticated { subject: Some(s) } => {
                self.doxm.owned && *s == self.doxm.devowneruuid
            }
            _ => false,
        }
    }

    /// Access to a non-security resource. `core` marks `/oic/res`,
    /// `/oic/d`, `/oic/p`, which are always readable.
    pub fn authorize(&self, peer: &Peer, href: &str, req: &Message, core: bool) -> Access {
        let needed = match req.code {
            Code::GET if req.option_uint(ssm_coap::OptionNumber::OBSERVE) == Some(0) => {
                PERM_R | PERM_N
            }
            Code::GET => PERM_R,
            Code::POST => PERM_U,
            Code::PUT => super::acl2::PERM_C,
            Code::DELETE => PERM_D,
            _ => return Access::Denied(Denial::MethodNotAllowed),
        };
        if core && req.code == Code::GET {
            return Access::Allowed;
        }
        let r = peer.requester();
        if self.pstat.dos != Dos::Rfnop {
            return Access::Denied(Denial::NotOperational);
        }
        if self.acl.permits(&r, href, true, needed) {
            Access::Allowed
        } else if r.secured {
            Access::Denied(Denial::NotPermitted)
        } else {
            Access::Denied(Denial::Unauthenticated)
        }
    }

    /// Handles a request to `/oic/sec/*`. `multicast` makes mismatching
    /// doxm filters silent (`None`). The first owner-transfer session that
    /// changes the state binds the transfer to itself.
    pub fn handle(&mut self, req: &Message, peer: &Peer, multicast: bool) -> Option<SvrOutcome> {
        if let Peer::OwnerTransfer { session, .. } = peer {
            if self.transfer.0.is_some_and(|(s, _)| s != *session) {
                // Another session's owner transfer is in progress.
                return Some(SvrOutcome::code(Code::FORBIDDEN));
            }
        }
        let before = self.before();
        let uuid_before = self.doxm.deviceuuid;
        let mut out = self.handle_svr(req, peer, multicast);
        if let Some(o) = &mut out {
            o.transition = self.transition_since(before);
        }
        if let (Peer::OwnerTransfer { session, .. }, Some(o)) = (peer, &out) {
            if o.persist && self.transfer.0.is_none() && !self.is_fresh() {
                self.transfer = TransferBinding(Some((*session, uuid_before)));
            }
        }
        out
    }

    /// The owner PSK the device holds for `owner` (credtype 1), if any.
    pub fn owner_psk(&self) -> Option<Vec<u8>> {
        let owner = self.doxm.devowneruuid.to_string();
        self.cred
            .creds
            .iter()
            .find(|c| c.cred_type() == CredType::PairwiseSymmetric && c.subjectuuid == owner)
            .and_then(|c| c.privatedata.as_ref()?.bytes().ok().map(|b| b.to_vec()))
    }
}

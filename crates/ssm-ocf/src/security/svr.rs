//! The security state of one device (`doxm`, `pstat`, `cred`, `acl2`,
//! `sdi`) and the request handling of the security virtual resources
//! (OCF Security: owner transfer states, owner-only writes, ACE
//! evaluation; DIGEST §5–§7): [`SecurityState::authorize`] decides every
//! request, [`SecurityState::handle`] serves `/oic/sec/*`.
use super::acl2::{Ace, Acl2, Requester, PERM_D, PERM_N, PERM_R, PERM_U};
use super::doxm::Doxm;
use super::pstat::{DeviceOnboardingState as Dos, Pstat};
use crate::cbor;
use crate::cred::{CredResource, CredType, Credential, OscoreFields, PrivateData};
use ciborium::Value;
use serde::{Deserialize, Serialize};
use ssm_coap::{Code, Message};
use uuid::Uuid;

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
    fn requester(&self) -> Requester {
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
    /// Refuse with this code (4.01 unauthenticated, 4.03 forbidden).
    Denied(Code),
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
}

impl SvrOutcome {
    fn code(code: Code) -> Self {
        SvrOutcome {
            code,
            body: None,
            persist: false,
            creds_changed: false,
        }
    }
    fn content(v: Value) -> Self {
        SvrOutcome {
            code: Code::CONTENT,
            body: Some(v),
            persist: false,
            creds_changed: false,
        }
    }
    fn changed(creds_changed: bool) -> Self {
        SvrOutcome {
            code: Code::CHANGED,
            body: None,
            persist: true,
            creds_changed,
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

/// The owner-transfer session a transfer in progress is bound to: runtime
/// bookkeeping, not part of the resources, so neither persisted nor
/// compared (two states with the same resources are equal).
#[derive(Debug, Clone, Copy, Default)]
struct TransferBinding(Option<u64>);

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
        if self.transfer.0 != Some(session) {
            return OwnerTransferEnd::NotTheTransfer;
        }
        self.transfer = TransferBinding(None);
        if self.pstat.dos == Dos::Rfotm && !self.is_fresh() {
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
    fn is_fresh(&self) -> bool {
        *self == SecurityState::new(self.doxm.deviceuuid)
    }

    /// `owner` (the `devowneruuid`) is set and the device holds its owner
    /// credential (credtype 1, that subject, with key material): what
    /// `owned` and the move out of RFOTM require.
    fn has_owner_credential(&self, owner: Uuid) -> bool {
        !owner.is_nil()
            && self.cred.creds.iter().any(|c| {
                c.cred_type() == CredType::PairwiseSymmetric
                    && c.subjectuuid.parse::<Uuid>().ok() == Some(owner)
                    && c.privatedata.as_ref().is_some_and(|p| !p.data.is_empty())
            })
    }

    fn is_owner(&self, peer: &Peer) -> bool {
        match peer {
            // The owner-transfer session (which the runtime only accepts in
            // RFOTM) speaks for the owner until it closes, also after it
            // moved the device on to RFPRO/RFNOP (steps 12–15); once one
            // session has written, only that one.
            Peer::OwnerTransfer { session, .. } => {
                let bound = self.transfer.0.is_none_or(|s| s == *session);
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
            _ => return Access::Denied(Code::METHOD_NOT_ALLOWED),
        };
        if core && req.code == Code::GET {
            return Access::Allowed;
        }
        let r = peer.requester();
        if self.pstat.dos != Dos::Rfnop {
            return Access::Denied(Code::SERVICE_UNAVAILABLE);
        }
        if self.acl.permits(&r, href, true, needed) {
            Access::Allowed
        } else if r.secured {
            Access::Denied(Code::FORBIDDEN)
        } else {
            Access::Denied(Code::UNAUTHORIZED)
        }
    }

    /// Handles a request to `/oic/sec/*`. `multicast` makes mismatching
    /// doxm filters silent (`None`). The first owner-transfer session that
    /// changes the state binds the transfer to itself.
    pub fn handle(&mut self, req: &Message, peer: &Peer, multicast: bool) -> Option<SvrOutcome> {
        if let Peer::OwnerTransfer { session, .. } = peer {
            if self.transfer.0.is_some_and(|s| s != *session) {
                // Another session's owner transfer is in progress.
                return Some(SvrOutcome::code(Code::FORBIDDEN));
            }
        }
        let out = self.handle_svr(req, peer, multicast);
        if let (Peer::OwnerTransfer { session, .. }, Some(o)) = (peer, &out) {
            if o.persist && self.transfer.0.is_none() && !self.is_fresh() {
                self.transfer = TransferBinding(Some(*session));
            }
        }
        out
    }

    fn handle_svr(&mut self, req: &Message, peer: &Peer, multicast: bool) -> Option<SvrOutcome> {
        let path = req.uri_path();
        let body = || crate::message::payload(req).ok();
        let owner = self.is_owner(peer);
        let writable = matches!(self.pstat.dos, Dos::Rfotm | Dos::Rfpro | Dos::Sreset);
        Some(match (path.as_str(), req.code) {
            ("/oic/sec/doxm", Code::GET) => {
                if let Some(want) = req.uri_queries().find_map(|q| q.strip_prefix("owned=")) {
                    let want = want.eq_ignore_ascii_case("true");
                    if want != self.doxm.owned {
                        return if multicast {
                            None
                        } else {
                            Some(SvrOutcome::code(Code::BAD_REQUEST))
                        };
                    }
                }
                SvrOutcome::content(self.doxm_value())
            }
            ("/oic/sec/doxm", Code::POST) => {
                if self.pstat.dos != Dos::Rfotm {
                    return Some(SvrOutcome::code(Code::FORBIDDEN));
                }
                let Some(b) = body() else {
                    return Some(SvrOutcome::code(Code::BAD_REQUEST));
                };
                self.post_doxm(&b, owner)
            }
            ("/oic/sec/pstat", Code::GET) if owner => SvrOutcome::content(self.pstat_value()),
            ("/oic/sec/pstat", Code::POST) if owner => {
                let Some(b) = body() else {
                    return Some(SvrOutcome::code(Code::BAD_REQUEST));
                };
                self.post_pstat(&b)
            }
            ("/oic/sec/cred", Code::GET) if owner => {
                SvrOutcome::content(cred_value(&self.cred, false))
            }
            ("/oic/sec/cred", Code::POST) if owner && writable => {
                let Some(b) = body() else {
                    return Some(SvrOutcome::code(Code::BAD_REQUEST));
                };
                self.post_cred(&b, peer)
            }
            ("/oic/sec/cred", Code::DELETE) if owner && writable => {
                let before = self.cred.creds.len();
                let q: Vec<&str> = req.uri_queries().collect();
                let credid = q
                    .iter()
                    .find_map(|q| q.strip_prefix("credid="))
                    .and_then(|v| v.parse::<u32>().ok());
                let subject = q
                    .iter()
                    .find_map(|q| q.strip_prefix("subjectuuid="))
                    .map(String::from);
                self.cred.creds.retain(|c| match (credid, &subject) {
                    (Some(id), _) => c.credid != id,
                    (None, Some(s)) => &c.subjectuuid != s,
                    (None, None) => false,
                });
                SvrOutcome {
                    code: Code::DELETED,
                    body: None,
                    persist: true,
                    creds_changed: before != self.cred.creds.len(),
                }
            }
            ("/oic/sec/acl2", Code::GET) if owner => {
                SvrOutcome::content(Value::serialized(&self.acl).unwrap_or(Value::Null))
            }
            ("/oic/sec/acl2", Code::POST) if owner && writable => {
                let Some(b) = body() else {
                    return Some(SvrOutcome::code(Code::BAD_REQUEST));
                };
                let aces = cbor::get(&b, "aclist2")
                    .cloned()
                    .map(|v| v.deserialized::<Vec<Ace>>());
                let aces = match aces {
                    Some(Ok(aces)) => aces,
                    Some(Err(_)) => return Some(SvrOutcome::code(Code::BAD_REQUEST)),
                    None => Vec::new(),
                };
                if self.acl.add(aces).is_err() {
                    return Some(SvrOutcome::code(Code::REQUEST_ENTITY_TOO_LARGE));
                }
                if let Some(r) = uuid_field(&b, "rowneruuid") {
                    self.acl.rowneruuid = r;
                }
                SvrOutcome::changed(false)
            }
            ("/oic/sec/acl2", Code::DELETE) if owner && writable => {
                match req
                    .uri_queries()
                    .find_map(|q| q.strip_prefix("aceid="))
                    .and_then(|v| v.parse::<u32>().ok())
                {
                    Some(id) => self.acl.aclist2.retain(|a| a.aceid != id),
                    None => self.acl.aclist2.clear(),
                }
                SvrOutcome {
                    code: Code::DELETED,
                    body: None,
                    persist: true,
                    creds_changed: false,
                }
            }
            ("/oic/sec/sdi", Code::GET)
                if owner
                    || self
                        .acl
                        .permits(&peer.requester(), "/oic/sec/sdi", false, PERM_R) =>
            {
                SvrOutcome::content(cbor::map([
                    ("uuid", Value::Text(self.sdi.uuid.to_string())),
                    ("name", Value::Text(self.sdi.name.clone())),
                    ("priv", Value::Bool(self.sdi.privileged)),
                ]))
            }
            ("/oic/sec/sdi", Code::POST) if owner && writable => {
                let Some(b) = body() else {
                    return Some(SvrOutcome::code(Code::BAD_REQUEST));
                };
                if let Some(u) = uuid_field(&b, "uuid") {
                    self.sdi.uuid = u;
                }
                if let Some(n) = cbor::get(&b, "name").and_then(Value::as_text) {
                    self.sdi.name = n.into();
                }
                if let Some(p) = cbor::get(&b, "priv").and_then(Value::as_bool) {
                    self.sdi.privileged = p;
                }
                SvrOutcome::changed(false)
            }
            ("/oic/sec/sp", Code::GET) if owner => SvrOutcome::content(cbor::map([
                ("supportedprofiles", cbor::text_array(&[SP_BASELINE])),
                ("currentprofile", Value::Text(self.sp_current.clone())),
            ])),
            ("/oic/sec/sp", Code::POST) if owner && writable => {
                let Some(b) = body() else {
                    return Some(SvrOutcome::code(Code::BAD_REQUEST));
                };
                match cbor::get(&b, "currentprofile").and_then(Value::as_text) {
                    Some(SP_BASELINE) | None => SvrOutcome::changed(false),
                    Some(_) => SvrOutcome::code(Code::BAD_REQUEST),
                }
            }
            (p, _)
                if p.starts_with("/oic/sec/")
                    && !matches!(
                        p,
                        "/oic/sec/doxm"
                            | "/oic/sec/pstat"
                            | "/oic/sec/cred"
                            | "/oic/sec/acl2"
                            | "/oic/sec/sdi"
                            | "/oic/sec/sp"
                    ) =>
            {
                SvrOutcome::code(Code::NOT_FOUND)
            }
            _ => match peer {
                Peer::Anonymous => SvrOutcome::code(Code::UNAUTHORIZED),
                _ => SvrOutcome::code(Code::FORBIDDEN),
            },
        })
    }

    /// The doxm representation.
    pub fn doxm_value(&self) -> Value {
        Value::serialized(&self.doxm)
            .map(|mut v| {
                if let Value::Map(m) = &mut v {
                    m.insert(
                        0,
                        (Value::Text("rt".into()), cbor::text_array(&["oic.r.doxm"])),
                    );
                }
                v
            })
            .unwrap_or(Value::Null)
    }

    /// The pstat representation.
    pub fn pstat_value(&self) -> Value {
        let p = &self.pstat;
        cbor::map([
            ("rt", cbor::text_array(&["oic.r.pstat"])),
            (
                "dos",
                cbor::map([
                    ("s", Value::Integer(p.dos.as_u8().into())),
                    ("p", Value::Bool(p.pending)),
                ]),
            ),
            ("isop", Value::Bool(p.isop)),
            ("cm", Value::Integer(p.cm.into())),
            ("tm", Value::Integer(p.tm.into())),
            ("om", Value::Integer(p.om.into())),
            ("sm", Value::Integer(p.sm.into())),
            ("rowneruuid", Value::Text(p.rowneruuid.to_string())),
        ])
    }

    fn post_doxm(&mut self, b: &Value, owner: bool) -> SvrOutcome {
        let mut d = self.doxm.clone();
        for (k, v) in b.as_map().into_iter().flatten() {
            let k = k.as_text().unwrap_or("");
            match (k, owner) {
                ("oxmsel", _) => match v.as_integer().and_then(|i| u32::try_from(i).ok()) {
                    Some(m) if d.oxms.contains(&m) => d.oxmsel = m,
                    _ => return SvrOutcome::code(Code::BAD_REQUEST),
                },
                ("devowneruuid", true) | ("deviceuuid", true) | ("rowneruuid", true) => {
                    let Some(u) = v.as_text().and_then(|s| s.parse::<Uuid>().ok()) else {
                        return SvrOutcome::code(Code::BAD_REQUEST);
                    };
                    match k {
                        "devowneruuid" => d.devowneruuid = u,
                        "deviceuuid" => d.deviceuuid = u,
                        _ => d.rowneruuid = u,
                    }
                }
                ("owned", true) => match v.as_bool() {
                    Some(o) => d.owned = o,
                    None => return SvrOutcome::code(Code::BAD_REQUEST),
                },
                ("rt" | "if", _) => return SvrOutcome::code(Code::BAD_REQUEST),
                (_, false) => return SvrOutcome::code(Code::UNAUTHORIZED),
                _ => return SvrOutcome::code(Code::BAD_REQUEST),
            }
        }
        if d.owned && !self.doxm.owned {
            // Owned needs an owner: devowneruuid and its credential (OCF
            // Security: the owner credential is provisioned before `owned`
            // is set, DIGEST §6 steps 8 and 10).
            if !self.has_owner_credential(d.devowneruuid) {
                return SvrOutcome::code(Code::FORBIDDEN);
            }
        }
        self.doxm = d;
        SvrOutcome::changed(false)
    }

    fn post_pstat(&mut self, b: &Value) -> SvrOutcome {
        if let Some(r) = uuid_field(b, "rowneruuid") {
            self.pstat.rowneruuid = r;
        }
        if let Some(om) = cbor::get(b, "om")
            .and_then(Value::as_integer)
            .and_then(|i| u32::try_from(i).ok())
        {
            self.pstat.om = om;
        }
        if let Some(s) = cbor::get(b, "dos").and_then(|d| cbor::get(d, "s")) {
            let Some(to) = s
                .as_integer()
                .and_then(|i| u8::try_from(i).ok())
                .and_then(Dos::from_u8)
            else {
                return SvrOutcome::code(Code::BAD_REQUEST);
            };
            if !self.pstat.dos.can_enter(to)
                || (self.pstat.dos == Dos::Rfotm
                    && matches!(to, Dos::Rfpro | Dos::Rfnop)
                    && !(self.doxm.owned && self.has_owner_credential(self.doxm.devowneruuid)))
            {
                return SvrOutcome::code(Code::FORBIDDEN);
            }
            if to == Dos::Reset {
                self.reset();
                return SvrOutcome::changed(true);
            }
            self.pstat.enter(to);
        }
        SvrOutcome::changed(false)
    }

    fn post_cred(&mut self, b: &Value, peer: &Peer) -> SvrOutcome {
        let mut next = self.cred.clone();
        if let Some(r) = uuid_field(b, "rowneruuid") {
            next.rowneruuid = r.to_string();
        }
        let mut oscore_changed = false;
        for c in cbor::get(b, "creds")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(mut cred) = cred_from_value(c) else {
                return SvrOutcome::code(Code::BAD_REQUEST);
            };
            if cred.oscore.as_ref().is_some_and(|o| o.ssn.is_some()) {
                return SvrOutcome::code(Code::BAD_REQUEST); // ssn is read-only
            }
            // The owner credential of an owner transfer: the device puts in
            // the PSK it derived itself; the key never crosses the wire.
            if cred.cred_type() == CredType::PairwiseSymmetric {
                if let Peer::OwnerTransfer { keys, .. } = peer {
                    if cred.privatedata.as_ref().is_none_or(|p| p.data.is_empty()) {
                        let psk = keys.owner_psk(&self.doxm.devowneruuid, &self.doxm.deviceuuid);
                        cred.privatedata = Some(PrivateData::raw(&psk[..]));
                    }
                }
            }
            if cred.oscore().is_err() {
                return SvrOutcome::code(Code::BAD_REQUEST);
            }
            oscore_changed |= matches!(
                cred.cred_type(),
                CredType::PairwiseOscore | CredType::SsmClient | CredType::SsmServer
            );
            if cred.credid == 0 {
                let Some(id) = super::next_free_id(next.creds.iter().map(|c| c.credid)) else {
                    return SvrOutcome::code(Code::REQUEST_ENTITY_TOO_LARGE);
                };
                cred.credid = id;
            }
            next.creds.retain(|c| c.credid != cred.credid);
            next.creds.push(cred);
        }
        self.cred = next;
        SvrOutcome::changed(oscore_changed)
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

fn uuid_field(v: &Value, k: &str) -> Option<Uuid> {
    cbor::get(v, k)?.as_text()?.parse().ok()
}

/// `/oic/sec/cred` as CBOR; private data only when `with_secrets` (never
/// in a RETRIEVE).
pub fn cred_value(c: &CredResource, with_secrets: bool) -> Value {
    let creds = c
        .creds
        .iter()
        .map(|cr| {
            let mut m = vec![
                ("credid", Value::Integer(cr.credid.into())),
                ("subjectuuid", Value::Text(cr.subjectuuid.clone())),
                ("credtype", Value::Integer(cr.credtype.as_u32().into())),
            ];
            if let (true, Some(p)) = (with_secrets, &cr.privatedata) {
                if let Ok(b) = p.bytes() {
                    m.push((
                        "privatedata",
                        cbor::map([
                            ("data", Value::Bytes(b.to_vec())),
                            ("encoding", Value::Text("oic.sec.encoding.raw".into())),
                        ]),
                    ));
                }
            }
            if let Some(o) = &cr.oscore {
                let mut om = Vec::new();
                let t = cr.cred_type();
                if let (Some(s), true) = (&o.senderid, t != CredType::SsmServer) {
                    om.push(("senderid", Value::Text(s.clone())));
                }
                if let (Some(r), true) = (&o.recipientid, t != CredType::SsmClient) {
                    om.push(("recipientid", Value::Text(r.clone())));
                }
                if let (Some(d), true) = (
                    &o.desc,
                    matches!(t, CredType::SsmClient | CredType::SsmServer),
                ) {
                    om.push(("desc", Value::Text(d.clone())));
                }
                if let (Some(n), true) = (
                    o.ssn,
                    matches!(t, CredType::SsmClient | CredType::PairwiseOscore),
                ) {
                    om.push(("ssn", Value::Integer(n.into())));
                }
                m.push(("oscore", cbor::map(om)));
            }
            cbor::map(m)
        })
        .collect();
    cbor::map([
        ("creds", Value::Array(creds)),
        ("rowneruuid", Value::Text(c.rowneruuid.clone())),
    ])
}

/// Decodes one credential of a cred POST (raw private data as a CBOR byte
/// string, as the reference stack sends it, or text).
pub fn cred_from_value(v: &Value) -> Option<Credential> {
    let int = |k: &str| {
        cbor::get(v, k)
            .and_then(Value::as_integer)
            .and_then(|i| u32::try_from(i).ok())
    };
    let privatedata = cbor::get(v, "privatedata").map(|p| {
        let enc = cbor::get(p, "encoding")
            .and_then(Value::as_text)
            .unwrap_or("oic.sec.encoding.raw")
            .to_string();
        match cbor::get(p, "data") {
            Some(Value::Bytes(b)) => PrivateData::raw(b),
            Some(Value::Text(t)) if enc == "oic.sec.encoding.raw" => PrivateData::raw(t.as_bytes()),
            Some(Value::Text(t)) => PrivateData {
                data: t.clone(),
                encoding: enc,
            },
            _ => PrivateData::raw(&[]),
        }
    });
    let oscore = cbor::get(v, "oscore").map(|o| {
        let text = |k: &str| cbor::get(o, k).and_then(Value::as_text).map(String::from);
        OscoreFields {
            senderid: text("senderid"),
            recipientid: text("recipientid"),
            ssn: cbor::get(o, "ssn")
                .and_then(Value::as_integer)
                .and_then(|i| u64::try_from(i).ok()),
            desc: text("desc"),
        }
    });
    Some(Credential {
        credid: int("credid").unwrap_or(0),
        subjectuuid: cbor::get(v, "subjectuuid")?.as_text()?.to_string(),
        credtype: CredType::from_u32(int("credtype")?),
        privatedata,
        oscore,
    })
}

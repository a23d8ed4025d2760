//! The request handlers of the security virtual resources, one per
//! resource (`/oic/sec/doxm`, `pstat`, `cred`, `acl2`, `sdi`, `sp`):
//! owner-only writes in the states that allow them (OCF Security; DIGEST
//! §5–§7). [`SecurityState::handle`] is the entry point.
use super::acl2::{Ace, PERM_R};
use super::codec::{cred_from_value, cred_value, uuid_field};
use super::pstat::DeviceOnboardingState as Dos;
use super::svr::{Peer, SecurityState, SvrOutcome, SP_BASELINE};
use crate::cbor;
use crate::cred::{CredType, PrivateData};
use ciborium::Value;
use ssm_coap::{Code, Message};
use uuid::Uuid;

/// What a resource handler made of a request.
enum Answer {
    /// Answer with this.
    Reply(SvrOutcome),
    /// Stay silent (a multicast doxm filter that does not match).
    Silent,
    /// Not for this requester or method: 4.01 (unsecured) or 4.03.
    Refused,
}

use Answer::{Refused, Reply};

/// The security resources this device serves.
const RESOURCES: [&str; 6] = [
    "/oic/sec/doxm",
    "/oic/sec/pstat",
    "/oic/sec/cred",
    "/oic/sec/acl2",
    "/oic/sec/sdi",
    "/oic/sec/sp",
];

/// The request's payload, or the 4.00 to answer.
fn body(req: &Message) -> Result<Value, SvrOutcome> {
    crate::message::payload(req).map_err(|_| SvrOutcome::code(Code::BAD_REQUEST))
}

impl SecurityState {
    /// Serves `/oic/sec/*`: the resource's handler, 4.04 for an unknown
    /// security resource, 4.01/4.03 for what the requester may not do.
    pub(super) fn handle_svr(
        &mut self,
        req: &Message,
        peer: &Peer,
        multicast: bool,
    ) -> Option<SvrOutcome> {
        let path = req.uri_path();
        let owner = self.is_owner(peer);
        let answer = match path.as_str() {
            "/oic/sec/doxm" => self.doxm_request(req, owner, multicast),
            "/oic/sec/pstat" if owner => self.pstat_request(req),
            "/oic/sec/cred" if owner => self.cred_request(req, peer),
            "/oic/sec/acl2" if owner => self.acl2_request(req),
            "/oic/sec/sdi" => self.sdi_request(req, peer, owner),
            "/oic/sec/sp" if owner => self.sp_request(req),
            p if p.starts_with("/oic/sec/") && !RESOURCES.contains(&p) => {
                Reply(SvrOutcome::code(Code::NOT_FOUND))
            }
            _ => Refused,
        };
        match answer {
            Reply(o) => Some(o),
            Answer::Silent => None,
            Refused => Some(match peer {
                Peer::Anonymous => SvrOutcome::code(Code::UNAUTHORIZED),
                _ => SvrOutcome::code(Code::FORBIDDEN),
            }),
        }
    }

    /// The states in which the owner may write cred, acl2, sdi and sp.
    fn writable(&self) -> bool {
        matches!(self.pstat.dos, Dos::Rfotm | Dos::Rfpro | Dos::Sreset)
    }

    /// `/oic/sec/doxm`: readable by anyone (with the `owned=` filter of
    /// discovery), `oxmsel` writable by anyone in RFOTM, the rest by the
    /// owner-transfer session.
    fn doxm_request(&mut self, req: &Message, owner: bool, multicast: bool) -> Answer {
        match req.code {
            Code::GET => {
                if let Some(want) = req.uri_queries().find_map(|q| q.strip_prefix("owned=")) {
                    let want = want.eq_ignore_ascii_case("true");
                    if want != self.doxm.owned {
                        return if multicast {
                            Answer::Silent
                        } else {
                            Reply(SvrOutcome::code(Code::BAD_REQUEST))
                        };
                    }
                }
                Reply(SvrOutcome::content(self.doxm_value()))
            }
            Code::POST => {
                if self.pstat.dos != Dos::Rfotm {
                    return Reply(SvrOutcome::code(Code::FORBIDDEN));
                }
                Reply(match body(req) {
                    Ok(b) => self.post_doxm(&b, owner),
                    Err(o) => o,
                })
            }
            _ => Refused,
        }
    }

    /// `/oic/sec/pstat` (owner only): the onboarding state machine.
    fn pstat_request(&mut self, req: &Message) -> Answer {
        match req.code {
            Code::GET => Reply(SvrOutcome::content(self.pstat_value())),
            Code::POST => Reply(match body(req) {
                Ok(b) => self.post_pstat(&b),
                Err(o) => o,
            }),
            _ => Refused,
        }
    }

    /// `/oic/sec/cred` (owner only): read without secrets, add, delete.
    fn cred_request(&mut self, req: &Message, peer: &Peer) -> Answer {
        match req.code {
            Code::GET => Reply(SvrOutcome::content(cred_value(&self.cred, false))),
            Code::POST if self.writable() => Reply(match body(req) {
                Ok(b) => self.post_cred(&b, peer),
                Err(o) => o,
            }),
            Code::DELETE if self.writable() => {
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
                Reply(SvrOutcome {
                    code: Code::DELETED,
                    body: None,
                    persist: true,
                    creds_changed: before != self.cred.creds.len(),
                    transition: None,
                })
            }
            _ => Refused,
        }
    }

    /// `/oic/sec/acl2` (owner only): read, add ACEs, delete.
    fn acl2_request(&mut self, req: &Message) -> Answer {
        match req.code {
            Code::GET => Reply(SvrOutcome::content(
                Value::serialized(&self.acl).unwrap_or(Value::Null),
            )),
            Code::POST if self.writable() => {
                let b = match body(req) {
                    Ok(b) => b,
                    Err(o) => return Reply(o),
                };
                let aces = cbor::get(&b, "aclist2")
                    .cloned()
                    .map(|v| v.deserialized::<Vec<Ace>>());
                let aces = match aces {
                    Some(Ok(aces)) => aces,
                    Some(Err(_)) => return Reply(SvrOutcome::code(Code::BAD_REQUEST)),
                    None => Vec::new(),
                };
                if self.acl.add(aces).is_err() {
                    return Reply(SvrOutcome::code(Code::REQUEST_ENTITY_TOO_LARGE));
                }
                if let Some(r) = uuid_field(&b, "rowneruuid") {
                    self.acl.rowneruuid = r;
                }
                Reply(SvrOutcome::changed(false))
            }
            Code::DELETE if self.writable() => {
                match req
                    .uri_queries()
                    .find_map(|q| q.strip_prefix("aceid="))
                    .and_then(|v| v.parse::<u32>().ok())
                {
                    Some(id) => self.acl.aclist2.retain(|a| a.aceid != id),
                    None => self.acl.aclist2.clear(),
                }
                Reply(SvrOutcome {
                    code: Code::DELETED,
                    body: None,
                    persist: true,
                    creds_changed: false,
                    transition: None,
                })
            }
            _ => Refused,
        }
    }

    /// `/oic/sec/sdi`: read by the owner or whom an ACE lets, written by
    /// the owner.
    fn sdi_request(&mut self, req: &Message, peer: &Peer, owner: bool) -> Answer {
        match req.code {
            Code::GET
                if owner
                    || self
                        .acl
                        .permits(&peer.requester(), "/oic/sec/sdi", false, PERM_R) =>
            {
                Reply(SvrOutcome::content(cbor::map([
                    ("uuid", Value::Text(self.sdi.uuid.to_string())),
                    ("name", Value::Text(self.sdi.name.clone())),
                    ("priv", Value::Bool(self.sdi.privileged)),
                ])))
            }
            Code::POST if owner && self.writable() => {
                let b = match body(req) {
                    Ok(b) => b,
                    Err(o) => return Reply(o),
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
                Reply(SvrOutcome::changed(false))
            }
            _ => Refused,
        }
    }

    /// `/oic/sec/sp` (owner only): only the baseline profile.
    fn sp_request(&mut self, req: &Message) -> Answer {
        match req.code {
            Code::GET => Reply(SvrOutcome::content(cbor::map([
                ("supportedprofiles", cbor::text_array(&[SP_BASELINE])),
                ("currentprofile", Value::Text(self.sp_current.clone())),
            ]))),
            Code::POST if self.writable() => {
                let b = match body(req) {
                    Ok(b) => b,
                    Err(o) => return Reply(o),
                };
                Reply(
                    match cbor::get(&b, "currentprofile").and_then(Value::as_text) {
                        Some(SP_BASELINE) | None => SvrOutcome::changed(false),
                        Some(_) => SvrOutcome::code(Code::BAD_REQUEST),
                    },
                )
            }
            _ => Refused,
        }
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
                    // The device's UUID is its DTLS PSK identity hint (the
                    // reference OBT picks the owner credential by it, issue
                    // 14), and OpenSSL cannot send a hint holding a 0x00
                    // byte: such a UUID is refused (4.06), the owner
                    // transfer fails and is undone when its session ends,
                    // and the OBT can run it again with a new UUID (the reference OBT
                    // draws a random one per run, 6 % of them hold a 0x00
                    // byte; ours never does).
                    if k == "deviceuuid" && u.as_bytes().contains(&0) {
                        return SvrOutcome::code(Code::NOT_ACCEPTABLE);
                    }
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
            oscore_changed |= cred.cred_type().is_oscore();
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
}

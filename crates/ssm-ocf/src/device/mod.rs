//! A device's request handling (sans-IO): core resources (`/oic/res`,
//! `/oic/d`, `/oic/p`, `/introspection`), application resources with
//! RETRIEVE, UPDATE and NOTIFY (Observe, RFC 7641), and the application of
//! verified SSM updates.
//!
//! Every request passes the security model ([`crate::security`]) when
//! the device has one. Multicast requests are only answered for
//! discovery, and never with an error. The core resources are in
//! `core_resources.rs`.
use crate::cbor;
use crate::cred::CredType;
use crate::message::{self, check_version};
pub use crate::observe::Channel;
use crate::observe::Observers;
use crate::resource::{Resource, UpdateError, IF_BASELINE};
use crate::security::{Access, Denial, Peer, SecurityState, Transition};
use crate::ssm::Accepted;
use ciborium::Value;
use ssm_coap::{Code, Message, MessageType, OptionNumber, CONTENT_FORMAT_CBOR};
use uuid::Uuid;

mod authcred;
mod core_resources;
pub use core_resources::valid_name;
mod grouping;

/// Where the introspection data is served.
pub const INTROSPECTION_DATA_HREF: &str = "/introspection/data";

/// `/oic/d` and `/oic/p` data.
#[derive(Debug, Clone)]
pub struct DeviceInfo {
    /// `n`: the device name.
    pub name: String,
    /// `di`: the device UUID.
    pub di: Uuid,
    /// `piid`: the protocol-independent ID.
    pub piid: Uuid,
    /// The device type added to `oic.wk.d`, e.g. `oic.d.light`.
    pub device_type: String,
    /// `pi`: the platform ID.
    pub pi: Uuid,
    /// `mnmn`: manufacturer name.
    pub mnmn: String,
}

impl DeviceInfo {
    /// A light called `name` with identity `di`.
    pub fn light(name: &str, di: Uuid) -> Self {
        DeviceInfo {
            name: name.into(),
            di,
            piid: di,
            device_type: DEVICE_TYPE_LIGHT.into(),
            pi: di,
            mnmn: "ocf-ssm".into(),
        }
    }

    /// A wall switch called `name` with identity `di`: an OCF device of
    /// type `oic.d.switch` that commands lights and hosts no light.
    pub fn switch(name: &str, di: Uuid) -> Self {
        DeviceInfo {
            device_type: DEVICE_TYPE_SWITCH.into(),
            ..DeviceInfo::light(name, di)
        }
    }
}

/// `/oic/d` device type of a light.
pub const DEVICE_TYPE_LIGHT: &str = "oic.d.light";
/// `/oic/d` device type of a (wall) switch.
pub const DEVICE_TYPE_SWITCH: &str = "oic.d.switch";
/// The configuration resource (`oic.wk.con`): the device name, written by
/// the owner.
pub const CON_HREF: &str = "/oic/con";
/// Longest device name `n` (OCF Core: `n` is at most 64 characters).
pub const MAX_NAME_LEN: usize = 64;

/// How a request reached the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Security {
    /// Plain CoAP.
    None,
    /// OSCORE-protected, by the credential's subject.
    Oscore {
        /// The peer (credential `subjectuuid`).
        subject: Option<Uuid>,
        /// 64 by unicast, 256 for SSM.
        credtype: CredType,
    },
    /// A DTLS session authenticated with the owner (or another) PSK.
    Dtls {
        /// The peer (PSK identity).
        subject: Option<Uuid>,
    },
    /// The DTLS session of a Random PIN owner transfer.
    OwnerTransfer {
        /// What that session exported (derived once per session, shared).
        keys: std::sync::Arc<crate::security::otm::OtmKeys>,
        /// The runtime's identifier of that session, unique per device for
        /// the process lifetime: the transfer is bound to the session that
        /// first writes (see [`SecurityState::owner_transfer_session_ended`]).
        ///
        /// [`SecurityState::owner_transfer_session_ended`]:
        ///     crate::security::SecurityState::owner_transfer_session_ended
        session: u64,
    },
}

impl Security {
    /// The peer as the security resources see it.
    pub fn peer(&self) -> Peer {
        match self {
            Security::None => Peer::Anonymous,
            Security::Oscore { subject, .. } | Security::Dtls { subject } => {
                Peer::Authenticated { subject: *subject }
            }
            Security::OwnerTransfer { keys, session } => Peer::OwnerTransfer {
                keys: keys.clone(),
                session: *session,
            },
        }
    }
}

/// Request context supplied by the runtime.
#[derive(Debug, Clone)]
pub struct RequestMeta {
    /// Received on a multicast group.
    pub multicast: bool,
    /// Protection of the request.
    pub security: Security,
    /// The channel the request came over: where an observation it
    /// registers is notified, and how (plain, OSCORE or DTLS).
    pub peer: Channel,
}

/// What handling a request produced.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The response to send (type, token set; MID set for ACKs).
    pub response: Option<Message>,
    /// The href whose state changed (notify its observers).
    pub changed: Option<String>,
    /// The security resources changed: persist them before answering.
    pub svr_changed: bool,
    /// OSCORE credentials changed: rebuild the live contexts.
    pub creds_changed: bool,
    /// The onboarding transition the request made: what the runtime acts
    /// on (events, a new PIN), instead of comparing states.
    pub transition: Option<Transition>,
    /// The owner renamed the device (`n` of `/oic/con`): persist the new
    /// name.
    pub renamed: Option<String>,
}

/// Why a verified SSM update was not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SsmRefusal {
    /// No resource at that href.
    #[error("no resource at {0}")]
    NotFound(String),
    /// The resource does not accept SSM.
    #[error("{0} does not accept SSM updates")]
    NotSsm(String),
    /// The Content-Format / OCF version options are not acceptable (the
    /// code a unicast request would get).
    #[error("bad update: version options ({0})")]
    Version(Code),
    /// The payload does not decode (the code a unicast request would get).
    #[error("bad update: payload ({0})")]
    Payload(Code),
    /// A property is invalid.
    #[error("bad update: {0}")]
    Update(#[from] UpdateError),
    /// The ACL does not let the sender UPDATE it, or the device is not in
    /// normal operation (RFNOP).
    #[error(
        "not authorised: {} for {} on {href}",
        denial_code(*.denial),
        .subject.map(|s| s.to_string()).unwrap_or_else(|| "?".into())
    )]
    Forbidden {
        /// The sender (credential subject).
        subject: Option<Uuid>,
        /// The resource.
        href: String,
        /// Why.
        denial: Denial,
    },
}

/// The CoAP response code for an access-rule refusal (RFC 7252 §5.9.2,
/// §5.9.3): 4.01 unauthenticated, 4.03 forbidden, 4.05 method not allowed,
/// 5.03 outside normal operation.
pub fn denial_code(d: Denial) -> Code {
    match d {
        Denial::MethodNotAllowed => Code::METHOD_NOT_ALLOWED,
        Denial::NotOperational => Code::SERVICE_UNAVAILABLE,
        Denial::Unauthenticated => Code::UNAUTHORIZED,
        Denial::NotPermitted => Code::FORBIDDEN,
    }
}

struct Entry {
    href: String,
    resource: Box<dyn Resource>,
    ssm: bool,
}

/// An OCF device.
pub struct Device {
    info: DeviceInfo,
    entries: Vec<Entry>,
    endpoints: Vec<String>,
    ssm_v6: bool,
    ssm_v4: bool,
    observers: Observers,
    security: Option<SecurityState>,
    now: Option<std::time::Instant>,
    /// Its own Group OSCORE authentication credential (CCS), if any.
    auth_cred: Option<Vec<u8>>,
}

/// Most observations kept in all (plain and secured quotas, see
/// [`crate::observe`]).
pub const MAX_OBSERVERS: usize = crate::observe::MAX_PLAIN + crate::observe::MAX_SECURED;

impl Device {
    /// A device without application resources.
    pub fn new(info: DeviceInfo) -> Self {
        Device {
            info,
            entries: Vec::new(),
            endpoints: Vec::new(),
            ssm_v6: true,
            ssm_v4: true,
            observers: Observers::new(),
            security: None,
            now: None,
            auth_cred: None,
        }
    }

    /// The device data.
    pub fn info(&self) -> &DeviceInfo {
        &self.info
    }

    /// Enables the OCF security model with this state (the device's `di`
    /// follows `doxm.deviceuuid`).
    pub fn set_security(&mut self, s: SecurityState) {
        self.info.di = s.device_uuid();
        self.security = Some(s);
    }

    /// Owner-transfer session `session` ended (closed, failed, idle): see
    /// [`SecurityState::owner_transfer_session_ended`]. Returns
    /// [`Transition::OwnerTransferUndone`] when it undid the transfer
    /// (persist the state, rebuild the contexts, show a new PIN).
    pub fn owner_transfer_session_ended(&mut self, session: u64) -> Option<Transition> {
        let sec = self.security.as_mut()?;
        let t = sec.owner_transfer_session_ended(session).transition();
        // An undone transfer gives back the UUID the OBT had replaced:
        // `/oic/d` and `/oic/res` name it again.
        self.info.di = sec.device_uuid();
        t
    }

    /// The security resources, if the security model is on.
    pub fn security(&self) -> Option<&SecurityState> {
        self.security.as_ref()
    }

    /// Hosts `resource` at `href`; `ssm` marks it as accepting SSM updates.
    pub fn add_resource(&mut self, href: &str, resource: Box<dyn Resource>, ssm: bool) {
        self.entries.push(Entry {
            href: href.into(),
            resource,
            ssm,
        });
    }

    /// The unicast endpoints listed in `eps` (e.g. `coap://127.0.0.1:40000`).
    pub fn set_endpoints(&mut self, eps: Vec<String>) {
        self.endpoints = eps;
    }

    /// Which SSM endpoints discovery lists for SSM-enabled resources.
    pub fn set_ssm_families(&mut self, ipv6: bool, ipv4: bool) {
        self.ssm_v6 = ipv6;
        self.ssm_v4 = ipv4;
    }

    /// The hrefs of the application resources.
    pub fn hrefs(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.href.as_str())
    }

    /// The representation of an application resource (its default
    /// interface), e.g. `{"value": true}`.
    pub fn representation(&self, href: &str) -> Option<Value> {
        let e = self.entries.iter().find(|e| e.href == href)?;
        Some(props_map(e.resource.properties()))
    }

    /// Sets the time the next requests are handled at (observer lifetimes);
    /// without it, the system clock is read.
    pub fn set_now(&mut self, now: std::time::Instant) {
        self.now = Some(now);
    }

    fn now(&self) -> std::time::Instant {
        self.now.unwrap_or_else(std::time::Instant::now)
    }

    /// Handles a plain (or already decrypted) request.
    pub fn handle(&mut self, req: &Message, meta: &RequestMeta) -> Outcome {
        if !req.code.is_request() {
            return Outcome::default();
        }
        if let Err(code) = check_version(req) {
            return self.error(req, meta, code);
        }
        let path = req.uri_path();
        let iface = req
            .uri_queries()
            .find_map(|q| q.strip_prefix("if="))
            .map(String::from);
        let discovery_get =
            req.code == Code::GET && (path == "/oic/res" || path == "/oic/sec/doxm");
        if meta.multicast && !discovery_get {
            // Multicast: discovery only; SSM updates come through apply_ssm.
            return Outcome::default();
        }
        if path == crate::groups::HREF {
            return self.grouping(req, meta, iface.as_deref());
        }
        if path == crate::group_cred::AUTHCRED_HREF {
            return self.authcred(req, meta);
        }
        if path.starts_with("/oic/sec/") {
            let Some(sec) = self.security.as_mut() else {
                return self.error(req, meta, Code::NOT_FOUND);
            };
            let Some(o) = sec.handle(req, &meta.security.peer(), meta.multicast) else {
                return Outcome::default();
            };
            if o.code == Code::BAD_REQUEST && meta.multicast {
                return Outcome::default();
            }
            let mut r = reply(req, o.code);
            if let Some(b) = &o.body {
                message::set_payload(&mut r, b);
            }
            // di tracks doxm.deviceuuid, whichever write changed it.
            self.info.di = sec.device_uuid();
            return Outcome {
                response: Some(r),
                changed: None,
                svr_changed: o.persist,
                creds_changed: o.creds_changed,
                transition: o.transition,
                renamed: None,
            };
        }
        if path == CON_HREF {
            return self.con_request(req, meta, iface.as_deref());
        }
        if let Some(sec) = &self.security {
            let core = matches!(
                path.as_str(),
                "/oic/res" | "/oic/d" | "/oic/p" | "/introspection" | INTROSPECTION_DATA_HREF
            );
            if let Access::Denied(d) = sec.authorize(&meta.security.peer(), &path, req, core) {
                return self.error(req, meta, denial_code(d));
            }
        }
        match path.as_str() {
            "/oic/res" => self.discovery(req, meta, iface.as_deref()),
            "/oic/d" => self.core_get(req, meta, iface.as_deref(), self.oic_d()),
            "/oic/p" => self.core_get(req, meta, iface.as_deref(), self.oic_p()),
            "/introspection" => {
                self.core_get(req, meta, iface.as_deref(), self.introspection_info())
            }
            INTROSPECTION_DATA_HREF if req.code == Code::GET => {
                let mut r = reply(req, Code::CONTENT);
                r.set_option_uint(OptionNumber::CONTENT_FORMAT, u32::from(CONTENT_FORMAT_CBOR));
                r.payload = cbor::encode(&cbor::from_json(&self.introspection_data()));
                Outcome {
                    response: Some(r),
                    changed: None,
                    ..Default::default()
                }
            }
            _ => self.application(req, meta, &path, iface.as_deref()),
        }
    }

    /// Applies a verified SSM update (the receive rule of REFERENCE-SSM §4
    /// after decryption): POST to an SSM-enabled resource with a valid body.
    /// Returns the changed href (or `None` if the value was already set).
    pub fn apply_ssm(&mut self, a: &Accepted) -> Result<Option<String>, SsmRefusal> {
        let req = &a.request;
        check_version(req).map_err(SsmRefusal::Version)?;
        let path = req.uri_path();
        if let Some(sec) = &self.security {
            // Authorised as coming from the credential's subject.
            let peer = Peer::Authenticated { subject: a.subject };
            if let Access::Denied(denial) = sec.authorize(&peer, &path, req, false) {
                return Err(SsmRefusal::Forbidden {
                    subject: a.subject,
                    href: path,
                    denial,
                });
            }
        }
        let e = self
            .entries
            .iter_mut()
            .find(|e| e.href == path)
            .ok_or_else(|| SsmRefusal::NotFound(path.clone()))?;
        if !e.ssm {
            return Err(SsmRefusal::NotSsm(path));
        }
        let body = message::payload(req).map_err(SsmRefusal::Payload)?;
        let props = update_props(&body)?;
        let changed = e.resource.update(&props)?;
        Ok(changed.then_some(path))
    }

    /// Notifications for the observers of `href` (NON 2.05 with Observe,
    /// Message IDs from `mid`), each with the channel it must be sent over:
    /// the runtime protects an OSCORE one with that observer's context and
    /// sends a DTLS one in its session, never in plaintext.
    pub fn notifications(
        &mut self,
        href: &str,
        now: std::time::Instant,
        mid: &mut dyn FnMut() -> u16,
    ) -> Vec<(Channel, Message)> {
        let Some(rep) = self.representation(href) else {
            return Vec::new();
        };
        self.observers
            .notify(href, now, mid)
            .into_iter()
            .map(|d| {
                let mut m =
                    Message::new(MessageType::NonConfirmable, Code::CONTENT, d.mid, d.token);
                m.add_option_uint(OptionNumber::OBSERVE, d.seq);
                message::set_payload(&mut m, &rep);
                (d.channel, m)
            })
            .collect()
    }

    /// An RST (an Empty message, no token) from `from` answering the
    /// notification with Message ID `mid` ends that observation (RFC 7641
    /// §3.6). Returns whether one ended.
    pub fn reset(&mut self, from: std::net::SocketAddr, mid: u16) -> bool {
        self.observers.reset(from, mid)
    }

    /// The observer table (quotas, expiry).
    pub fn observers(&self) -> &Observers {
        &self.observers
    }

    fn error(&self, req: &Message, meta: &RequestMeta, code: Code) -> Outcome {
        if meta.multicast {
            return Outcome::default();
        }
        Outcome {
            response: Some(reply(req, code)),
            changed: None,
            ..Default::default()
        }
    }

    fn application(
        &mut self,
        req: &Message,
        meta: &RequestMeta,
        path: &str,
        iface: Option<&str>,
    ) -> Outcome {
        let Some(idx) = self.entries.iter().position(|e| e.href == path) else {
            return self.error(req, meta, Code::NOT_FOUND);
        };
        let e = &self.entries[idx];
        let default_if = e
            .resource
            .interfaces()
            .first()
            .copied()
            .unwrap_or(IF_BASELINE);
        let iface = iface.unwrap_or(default_if);
        if !e.resource.interfaces().contains(&iface) {
            return self.error(req, meta, Code::BAD_REQUEST);
        }
        match req.code {
            Code::GET => {
                let mut props = e.resource.properties();
                if iface == IF_BASELINE {
                    props.insert(0, ("if", cbor::text_array(e.resource.interfaces())));
                    props.insert(0, ("rt", cbor::text_array(e.resource.resource_types())));
                }
                let mut r = reply(req, Code::CONTENT);
                match req.option_uint(OptionNumber::OBSERVE) {
                    Some(0) => {
                        let now = self.now();
                        self.observers.register(meta.peer, req.token, path, now);
                        r.add_option_uint(OptionNumber::OBSERVE, 0);
                    }
                    Some(1) => self.observers.cancel(&meta.peer, &req.token),
                    _ => {}
                }
                message::set_payload(&mut r, &props_map(props));
                Outcome {
                    response: Some(r),
                    changed: None,
                    ..Default::default()
                }
            }
            Code::POST => {
                if self.security.is_none() && meta.security == Security::None {
                    // Without the security model (credentials from a file),
                    // UPDATE still needs an OSCORE-protected request.
                    return self.error(req, meta, Code::UNAUTHORIZED);
                }
                let body = match message::payload(req) {
                    Ok(b) => b,
                    Err(code) => return self.error(req, meta, code),
                };
                let result =
                    update_props(&body).and_then(|p| self.entries[idx].resource.update(&p));
                match result {
                    Ok(changed) => {
                        let mut r = reply(req, Code::CHANGED);
                        message::set_payload(
                            &mut r,
                            &props_map(self.entries[idx].resource.properties()),
                        );
                        Outcome {
                            response: Some(r),
                            changed: changed.then(|| path.to_string()),
                            ..Default::default()
                        }
                    }
                    Err(_) => self.error(req, meta, Code::BAD_REQUEST),
                }
            }
            _ => self.error(req, meta, Code::METHOD_NOT_ALLOWED),
        }
    }
}

/// The properties of an UPDATE body: a map with text keys; `rt` and `if`
/// are read-only.
fn update_props(body: &Value) -> Result<Vec<(String, Value)>, UpdateError> {
    let m = body
        .as_map()
        .ok_or_else(|| UpdateError::BadValue("(body is not a map)".into()))?;
    let mut out = Vec::with_capacity(m.len());
    for (k, v) in m {
        let k = k
            .as_text()
            .ok_or_else(|| UpdateError::BadValue("(non-text key)".into()))?;
        if matches!(k, "rt" | "if" | "n" | "id") {
            return Err(UpdateError::ReadOnly(k.into()));
        }
        out.push((k.to_string(), v.clone()));
    }
    Ok(out)
}

fn props_map(props: Vec<(&'static str, Value)>) -> Value {
    cbor::map(props)
}

/// A response skeleton: ACK with the request's MID for CON, NON otherwise
/// (MID 0: the runtime assigns one); same token.
pub fn reply(req: &Message, code: Code) -> Message {
    let (ty, mid) = match req.ty {
        MessageType::Confirmable => (MessageType::Acknowledgement, req.message_id),
        _ => (MessageType::NonConfirmable, 0),
    };
    Message::new(ty, code, mid, req.token)
}

//! `/groupsResURI` (`oic.r.groups`, [`crate::groups`]) on a device with the
//! security model: RETRIEVE by an authenticated peer (DTLS or OSCORE with
//! a credential of the domain), UPDATE by the owner only; never on
//! multicast. The ids live in the security state, persisted with it.
use super::{reply, Device, Outcome, RequestMeta};
use crate::groups;
use crate::message;
use crate::resource::{IF_BASELINE, IF_RW};
use crate::security::Peer;
use ssm_coap::Code;
use ssm_coap::Message;

impl Device {
    pub(super) fn grouping(
        &mut self,
        req: &Message,
        meta: &RequestMeta,
        iface: Option<&str>,
    ) -> Outcome {
        let peer = meta.security.peer();
        let Some(sec) = self.security.as_mut() else {
            return self.error(req, meta, Code::NOT_FOUND);
        };
        let baseline = match iface {
            None | Some(IF_RW) => false,
            Some(IF_BASELINE) => true,
            Some(_) => return self.error(req, meta, Code::BAD_REQUEST),
        };
        let authenticated = matches!(peer, Peer::Authenticated { subject: Some(_) });
        let owner = sec.is_owner_peer(&peer);
        match req.code {
            Code::GET if authenticated || owner => {
                let mut r = reply(req, Code::CONTENT);
                message::set_payload(&mut r, &groups::value(&sec.groups, baseline));
                Outcome {
                    response: Some(r),
                    ..Default::default()
                }
            }
            Code::POST if owner => {
                let parsed = message::payload(req)
                    .ok()
                    .and_then(|b| groups::parse(&b, false));
                let Some(g) = parsed else {
                    return self.error(req, meta, Code::BAD_REQUEST);
                };
                let changed = sec.groups != g;
                sec.groups = g;
                let mut r = reply(req, Code::CHANGED);
                message::set_payload(&mut r, &groups::value(&sec.groups, false));
                Outcome {
                    response: Some(r),
                    changed: changed.then(|| groups::HREF.to_string()),
                    svr_changed: changed,
                    ..Default::default()
                }
            }
            Code::GET | Code::POST if authenticated => self.error(req, meta, Code::FORBIDDEN),
            Code::GET | Code::POST => self.error(req, meta, Code::UNAUTHORIZED),
            _ => self.error(req, meta, Code::METHOD_NOT_ALLOWED),
        }
    }
}

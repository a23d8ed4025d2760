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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::{Channel, DeviceInfo, Security};
    use crate::groups;
    use uuid::Uuid;

    fn meta(security: Security, multicast: bool) -> RequestMeta {
        RequestMeta {
            multicast,
            security,
            peer: Channel::Plain("127.0.0.1:1".parse().unwrap()),
        }
    }

    fn dtls(u: u128) -> Security {
        Security::Dtls {
            subject: Some(Uuid::from_u128(u)),
        }
    }

    /// Read by authenticated peers, written by the owner only, never on
    /// multicast; listed in `/oic/res`; persisted with the security state
    /// and wiped by a hard reset.
    #[test]
    fn groups_resource_access_rules() {
        let owner = Uuid::from_u128(1);
        let mut d = Device::new(DeviceInfo::light("l", Uuid::from_u128(9)));
        d.set_security(crate::provision::provisioned_state(
            Uuid::from_u128(9),
            owner,
            Default::default(),
            Vec::new(),
        ));
        let get = crate::groups::read();
        let post = groups::write(&[3, 1]);
        let code = |o: &Outcome| o.response.as_ref().map(|r| r.code);
        // Anonymous: 4.01 for both; another authenticated peer may read.
        assert_eq!(
            code(&d.handle(&get, &meta(Security::None, false))),
            Some(Code::UNAUTHORIZED)
        );
        assert_eq!(
            code(&d.handle(&post, &meta(Security::None, false))),
            Some(Code::UNAUTHORIZED)
        );
        let o = d.handle(&post, &meta(dtls(2), false));
        assert_eq!(code(&o), Some(Code::FORBIDDEN));
        assert!(!o.svr_changed);
        // The owner writes; the state must be persisted.
        let o = d.handle(&post, &meta(dtls(1), false));
        assert_eq!(code(&o), Some(Code::CHANGED));
        assert!(o.svr_changed);
        assert_eq!(d.security().unwrap().groups, vec![1, 3]);
        let o = d.handle(&get, &meta(dtls(2), false));
        let body = message::payload(o.response.as_ref().unwrap()).unwrap();
        assert_eq!(groups::parse(&body, true), Some(vec![1, 3]));
        // The same again changes nothing to persist.
        assert!(!d.handle(&post, &meta(dtls(1), false)).svr_changed);
        // Baseline carries rt and if.
        let mut b = get.clone();
        b.add_option(
            ssm_coap::OptionNumber::URI_QUERY,
            b"if=oic.if.baseline".to_vec(),
        );
        let o = d.handle(&b, &meta(dtls(1), false));
        let body = message::payload(o.response.as_ref().unwrap()).unwrap();
        assert!(crate::cbor::get(&body, "rt").is_some());
        // A bad body, multicast: refused, unchanged.
        let bad = message::update(
            ssm_coap::MessageType::Confirmable,
            groups::HREF,
            &crate::cbor::map([("groups", ciborium::Value::Text("x".into()))]),
        );
        assert_eq!(
            code(&d.handle(&bad, &meta(dtls(1), false))),
            Some(Code::BAD_REQUEST)
        );
        assert!(d
            .handle(&groups::write(&[7]), &meta(dtls(1), true))
            .response
            .is_none());
        assert_eq!(d.security().unwrap().groups, vec![1, 3]);
        // Listed in /oic/res.
        assert!(d
            .links()
            .iter()
            .any(|l| l.href == groups::HREF && l.rt == [groups::RT]));
        // Persisted with the state (JSON) and wiped by a reset.
        let mut st = d.security().unwrap().clone();
        let json = serde_json::to_string(&st).unwrap();
        let back: crate::security::SecurityState = serde_json::from_str(&json).unwrap();
        assert_eq!(back.groups, vec![1, 3]);
        st.reset();
        assert!(st.groups.is_empty());
    }
}

//! The device's own Group OSCORE authentication credential
//! ([`crate::group_cred::AUTHCRED_HREF`]): the CWT Claims Set of the
//! Ed25519 key pair the device generated itself (the runtime keeps the
//! private key in the state directory, 0600). The onboarding tool, as
//! Group Manager, reads it over its owner session and gives it to the
//! lights; the private key never leaves the device. RETRIEVE by the owner
//! only (it is public, but who may command which group is the owner's
//! business); never on multicast (filtered before this).
use super::{reply, Device, Outcome, RequestMeta};
use crate::message;
use ciborium::Value;
use ssm_coap::{Code, Message};

impl Device {
    /// Sets the device's own authentication credential (a CCS).
    pub fn set_auth_cred(&mut self, ccs: Vec<u8>) {
        self.auth_cred = Some(ccs);
    }

    pub(super) fn authcred(&mut self, req: &Message, meta: &RequestMeta) -> Outcome {
        let peer = meta.security.peer();
        let (Some(sec), Some(ccs)) = (self.security.as_ref(), self.auth_cred.as_ref()) else {
            return self.error(req, meta, Code::NOT_FOUND);
        };
        let owner = sec.is_owner_peer(&peer);
        match req.code {
            Code::GET if owner => {
                let mut r = reply(req, Code::CONTENT);
                message::set_payload(
                    &mut r,
                    &crate::cbor::map([("authcred", Value::Bytes(ccs.clone()))]),
                );
                Outcome {
                    response: Some(r),
                    ..Default::default()
                }
            }
            Code::GET if matches!(peer, crate::security::Peer::Authenticated { .. }) => {
                self.error(req, meta, Code::FORBIDDEN)
            }
            Code::GET => self.error(req, meta, Code::UNAUTHORIZED),
            _ => self.error(req, meta, Code::METHOD_NOT_ALLOWED),
        }
    }
}

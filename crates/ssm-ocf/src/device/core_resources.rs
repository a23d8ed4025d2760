//! The core resources (OCF Core; DIGEST §2, §4): `/oic/res` (discovery
//! links, with the SSM endpoints of REFERENCE-SSM §5), `/oic/d`, `/oic/p`,
//! `/oic/con` (the device name, written by the owner), and the
//! introspection resource and data.
use super::{
    props_map, reply, Device, Outcome, RequestMeta, CON_HREF, INTROSPECTION_DATA_HREF, MAX_NAME_LEN,
};
use crate::cbor;
use crate::discovery::{Endpoint, Link, BM_DISCOVERABLE, BM_OBSERVABLE, SSM_EP_V4, SSM_EP_V6};
use crate::message;
use crate::resource::{IF_BASELINE, IF_LL, IF_R, IF_RW};
use ciborium::Value;
use ssm_coap::{Code, Message};

/// `coaps://` twins of the `coap://` endpoints (same port: DTLS and plain
/// CoAP share the unicast socket).
fn secure_eps(endpoints: &[String]) -> Vec<Endpoint> {
    endpoints
        .iter()
        .filter_map(|e| e.strip_prefix("coap://"))
        .map(|rest| Endpoint {
            ep: format!("coaps://{rest}"),
            pri: Some(1),
        })
        .collect()
}

impl Device {
    pub(super) fn links(&self) -> Vec<Link> {
        let anchor = Some(format!("ocf://{}", self.info.di));
        let eps: Vec<Endpoint> = self
            .endpoints
            .iter()
            .map(|e| Endpoint {
                ep: e.clone(),
                pri: Some(1),
            })
            .collect();
        let core = |href: &str, rt: &str, ifs: &[&str]| Link {
            anchor: anchor.clone(),
            href: href.into(),
            rt: vec![rt.into()],
            interfaces: ifs.iter().map(|s| s.to_string()).collect(),
            bm: BM_DISCOVERABLE,
            eps: eps.clone(),
        };
        let mut links = vec![
            core("/oic/res", "oic.wk.res", &[IF_LL, IF_BASELINE]),
            core("/oic/d", "oic.wk.d", &[IF_R, IF_BASELINE]),
            core("/oic/p", "oic.wk.p", &[IF_R, IF_BASELINE]),
            core(CON_HREF, "oic.wk.con", &[IF_RW, IF_BASELINE]),
            core(
                "/introspection",
                "oic.wk.introspection",
                &[IF_R, IF_BASELINE],
            ),
        ];
        links[1].rt.push(self.info.device_type.clone());
        if self.security.is_some() {
            links.extend(self.security_links(anchor.clone()));
            links.push(core(
                crate::groups::HREF,
                crate::groups::RT,
                &crate::groups::INTERFACES,
            ));
        }
        for e in &self.entries {
            // With security on, an application resource is reached secured
            // (REFERENCE-SSM §4: the reference stack denies an unsecured
            // request to one whatever the ACL): its `coaps://` endpoints
            // come first, as the reference stack lists a secure resource
            // (its clients take the first `ep`), then `coap://` (OSCORE
            // requests), then the SSM endpoints (§5: after the others).
            let mut eps = match self.security {
                Some(_) => secure_eps(&self.endpoints),
                None => Vec::new(),
            };
            eps.extend(self.endpoints.iter().map(|e| Endpoint {
                ep: e.clone(),
                pri: Some(1),
            }));
            if e.ssm {
                if self.ssm_v6 {
                    eps.push(Endpoint {
                        ep: SSM_EP_V6.into(),
                        pri: None,
                    });
                }
                if self.ssm_v4 {
                    eps.push(Endpoint {
                        ep: SSM_EP_V4.into(),
                        pri: None,
                    });
                }
            }
            links.push(Link {
                anchor: anchor.clone(),
                href: e.href.clone(),
                rt: e
                    .resource
                    .resource_types()
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
                interfaces: e
                    .resource
                    .interfaces()
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
                bm: BM_DISCOVERABLE | BM_OBSERVABLE,
                eps,
            });
        }
        links
    }

    /// The security resources (OCF Security §13) as the reference stack
    /// lists them: the reference OBT finds an unowned device by the
    /// `oic.r.doxm` link in `/oic/res` and opens its DTLS session at that
    /// link's `coaps://` endpoint (issue 14). Each unicast endpoint is
    /// listed as `coap://` and as `coaps://` with the same port: DTLS
    /// records and plain CoAP share one socket, told apart by their first
    /// byte.
    fn security_links(&self, anchor: Option<String>) -> Vec<Link> {
        let mut eps: Vec<Endpoint> = self
            .endpoints
            .iter()
            .map(|e| Endpoint {
                ep: e.clone(),
                pri: Some(1),
            })
            .collect();
        eps.extend(secure_eps(&self.endpoints));
        [
            ("/oic/sec/doxm", "oic.r.doxm"),
            ("/oic/sec/pstat", "oic.r.pstat"),
            ("/oic/sec/cred", "oic.r.cred"),
            ("/oic/sec/acl2", "oic.r.acl2"),
            ("/oic/sec/sdi", "oic.r.sdi"),
            ("/oic/sec/sp", "oic.r.sp"),
        ]
        .into_iter()
        .map(|(href, rt)| Link {
            anchor: anchor.clone(),
            href: href.into(),
            rt: vec![rt.into()],
            interfaces: vec![IF_RW.into(), IF_BASELINE.into()],
            bm: BM_DISCOVERABLE | BM_OBSERVABLE,
            eps: eps.clone(),
        })
        .collect()
    }

    pub(super) fn discovery(
        &self,
        req: &Message,
        meta: &RequestMeta,
        iface: Option<&str>,
    ) -> Outcome {
        if req.code != Code::GET {
            return self.error(req, meta, Code::METHOD_NOT_ALLOWED);
        }
        let rt = req
            .uri_queries()
            .find_map(|q| q.strip_prefix("rt="))
            .map(String::from);
        let links: Vec<Link> = self
            .links()
            .into_iter()
            .filter(|l| rt.as_ref().is_none_or(|rt| l.rt.iter().any(|x| x == rt)))
            .filter(|l| match iface {
                None | Some(IF_LL) | Some(IF_BASELINE) => true,
                Some(i) => l.interfaces.iter().any(|x| x == i),
            })
            .collect();
        if links.is_empty() {
            return self.error(req, meta, Code::BAD_REQUEST);
        }
        let arr = Value::Array(links.iter().map(Link::to_value).collect());
        let body = if iface == Some(IF_BASELINE) {
            Value::Array(vec![cbor::map([
                ("rt", cbor::text_array(&["oic.wk.res"])),
                ("if", cbor::text_array(&[IF_LL, IF_BASELINE])),
                ("n", Value::Text(self.info.name.clone())),
                ("links", arr),
            ])])
        } else {
            arr
        };
        let mut r = reply(req, Code::CONTENT);
        message::set_payload(&mut r, &body);
        Outcome {
            response: Some(r),
            changed: None,
            ..Default::default()
        }
    }

    pub(super) fn oic_d(&self) -> Vec<(&'static str, Value)> {
        vec![
            (
                "rt",
                cbor::text_array(&["oic.wk.d", self.info.device_type.as_str()]),
            ),
            ("if", cbor::text_array(&[IF_R, IF_BASELINE])),
            ("n", Value::Text(self.info.name.clone())),
            ("di", Value::Text(self.info.di.to_string())),
            ("icv", Value::Text("ocf.2.0.5".into())),
            ("dmv", Value::Text("ocf.res.1.3.0,ocf.sh.1.3.0".into())),
            ("piid", Value::Text(self.info.piid.to_string())),
        ]
    }

    /// `/oic/con` (`oic.wk.con`): RETRIEVE by anyone (the name is public in
    /// `/oic/d` too); UPDATE of `n` by the owner only, over a secured
    /// request (its DTLS session or pair-wise OSCORE), on an owned device.
    pub(super) fn con_request(
        &mut self,
        req: &Message,
        meta: &RequestMeta,
        iface: Option<&str>,
    ) -> Outcome {
        if !matches!(iface, None | Some(IF_RW) | Some(IF_BASELINE)) {
            return self.error(req, meta, Code::BAD_REQUEST);
        }
        let rep = |d: &Device, baseline: bool| {
            let mut props = vec![("n", Value::Text(d.info.name.clone()))];
            if baseline {
                props.insert(0, ("if", cbor::text_array(&[IF_RW, IF_BASELINE])));
                props.insert(0, ("rt", cbor::text_array(&["oic.wk.con"])));
            }
            props_map(props)
        };
        match req.code {
            Code::GET => {
                let mut r = reply(req, Code::CONTENT);
                message::set_payload(&mut r, &rep(self, iface == Some(IF_BASELINE)));
                Outcome {
                    response: Some(r),
                    ..Default::default()
                }
            }
            Code::POST => {
                // The owner of an owned device (not an owner-transfer
                // session before the device is owned).
                let owner = self
                    .security
                    .as_ref()
                    .is_some_and(|s| s.doxm.owned && s.is_owner_peer(&meta.security.peer()));
                if !owner {
                    let code = if meta.security.peer() == crate::security::Peer::Anonymous {
                        Code::UNAUTHORIZED
                    } else {
                        Code::FORBIDDEN
                    };
                    return self.error(req, meta, code);
                }
                let name = match message::payload(req).map(|b| con_update(&b)) {
                    Ok(Some(n)) => n,
                    Ok(None) => return self.error(req, meta, Code::BAD_REQUEST),
                    Err(code) => return self.error(req, meta, code),
                };
                let renamed = (name != self.info.name).then(|| name.clone());
                self.info.name = name;
                let mut r = reply(req, Code::CHANGED);
                message::set_payload(&mut r, &rep(self, false));
                Outcome {
                    response: Some(r),
                    renamed,
                    ..Default::default()
                }
            }
            _ => self.error(req, meta, Code::METHOD_NOT_ALLOWED),
        }
    }

    pub(super) fn oic_p(&self) -> Vec<(&'static str, Value)> {
        vec![
            ("rt", cbor::text_array(&["oic.wk.p"])),
            ("if", cbor::text_array(&[IF_R, IF_BASELINE])),
            ("pi", Value::Text(self.info.pi.to_string())),
            ("mnmn", Value::Text(self.info.mnmn.clone())),
        ]
    }

    pub(super) fn introspection_info(&self) -> Vec<(&'static str, Value)> {
        let base = self
            .endpoints
            .first()
            .cloned()
            .unwrap_or_else(|| "coap://localhost".into());
        vec![
            ("rt", cbor::text_array(&["oic.wk.introspection"])),
            ("if", cbor::text_array(&[IF_R, IF_BASELINE])),
            (
                "urlInfo",
                Value::Array(vec![cbor::map([
                    (
                        "url",
                        Value::Text(format!("{base}{INTROSPECTION_DATA_HREF}")),
                    ),
                    ("protocol", Value::Text("coap".into())),
                    ("content-type", Value::Text("application/cbor".into())),
                    ("version", Value::Integer(1.into())),
                ])]),
            ),
        ]
    }

    /// The Introspection Device Data: one swagger 2.0 document with the
    /// paths and definitions of every application resource, at its href.
    pub fn introspection_data(&self) -> serde_json::Value {
        let mut paths = serde_json::Map::new();
        let mut definitions = serde_json::Map::new();
        let mut parameters = serde_json::Map::new();
        for e in &self.entries {
            let Some(doc) = e.resource.introspection() else {
                continue;
            };
            if let Some(p) = doc
                .get("paths")
                .and_then(|p| p.as_object())
                .and_then(|p| p.values().next())
            {
                paths.insert(e.href.clone(), p.clone());
            }
            for (k, v) in doc
                .get("definitions")
                .and_then(|d| d.as_object())
                .into_iter()
                .flatten()
            {
                definitions.insert(k.clone(), v.clone());
            }
            for (k, v) in doc
                .get("parameters")
                .and_then(|d| d.as_object())
                .into_iter()
                .flatten()
            {
                parameters.insert(k.clone(), v.clone());
            }
        }
        serde_json::json!({
            "swagger": "2.0",
            "info": {
                "title": self.info.name,
                "version": env!("CARGO_PKG_VERSION"),
                "x-license": "resource definitions: OCF Data Model License (see the OCF IoTDataModels repository)"
            },
            "schemes": ["coap"],
            "consumes": ["application/vnd.ocf+cbor"],
            "produces": ["application/vnd.ocf+cbor"],
            "paths": paths,
            "parameters": parameters,
            "definitions": definitions,
        })
    }

    pub(super) fn core_get(
        &self,
        req: &Message,
        meta: &RequestMeta,
        iface: Option<&str>,
        props: Vec<(&'static str, Value)>,
    ) -> Outcome {
        if req.code != Code::GET {
            return self.error(req, meta, Code::METHOD_NOT_ALLOWED);
        }
        let props = match iface {
            None | Some(IF_BASELINE) => props,
            Some(IF_R) => props
                .into_iter()
                .filter(|(k, _)| *k != "rt" && *k != "if")
                .collect(),
            Some(_) => return self.error(req, meta, Code::BAD_REQUEST),
        };
        let mut r = reply(req, Code::CONTENT);
        message::set_payload(&mut r, &props_map(props));
        Outcome {
            response: Some(r),
            changed: None,
            ..Default::default()
        }
    }
}

/// The new name of an UPDATE of `/oic/con`: a map whose only property is
/// `n`, 1 to [`MAX_NAME_LEN`] characters, no control characters (it is
/// printed in tables and logs). `None` for anything else.
pub(super) fn con_update(body: &Value) -> Option<String> {
    let m = body.as_map()?;
    let mut name = None;
    for (k, v) in m {
        match (k.as_text()?, v) {
            ("n", Value::Text(n)) => name = Some(n.clone()),
            _ => return None,
        }
    }
    name.filter(|n| valid_name(n))
}

/// A device name as `/oic/con` accepts it (and `ssm device --name`).
pub fn valid_name(n: &str) -> bool {
    let len = n.chars().count();
    (1..=MAX_NAME_LEN).contains(&len) && !n.chars().any(char::is_control) && n.trim() == n
}

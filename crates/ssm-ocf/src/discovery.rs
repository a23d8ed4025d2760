//! `/oic/res` links and endpoints (OCF Core `oic.wk.res`; DIGEST §2) and the
//! SSM marking of REFERENCE-SSM §5: a resource that accepts secure multicast
//! lists the unsecured multicast endpoint(s) in its `eps`.
//!
//! We emit one `eps` object per endpoint; the parser also accepts the
//! reference stack's form with both `ep` keys in one map.
use crate::cbor;
use ciborium::Value;

/// The SSM endpoint for IPv6 (All OCF Nodes, link-local scope).
pub const SSM_EP_V6: &str = "coap://[ff02::158]:5683";
/// The SSM endpoint for IPv4 (All CoAP Nodes).
pub const SSM_EP_V4: &str = "coap://224.0.1.187:5683";

/// `p.bm` bit: discoverable.
pub const BM_DISCOVERABLE: u8 = 1;
/// `p.bm` bit: observable.
pub const BM_OBSERVABLE: u8 = 2;

/// One endpoint of a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `ep`, e.g. `coap://[fe80::1%iot0]:49152`.
    pub ep: String,
    /// `pri`, priority (≥ 1), if given.
    pub pri: Option<u64>,
}

/// A web link as `/oic/res` carries it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Link {
    /// `anchor`: `ocf://<device uuid>`.
    pub anchor: Option<String>,
    /// `href`.
    pub href: String,
    /// `rt`.
    pub rt: Vec<String>,
    /// `if`.
    pub interfaces: Vec<String>,
    /// `p.bm`.
    pub bm: u8,
    /// `eps`.
    pub eps: Vec<Endpoint>,
}

impl Link {
    /// The link says the resource accepts SSM UPDATEs (exact string match,
    /// as the reference client does).
    pub fn accepts_ssm(&self) -> bool {
        self.eps
            .iter()
            .any(|e| e.ep == SSM_EP_V6 || e.ep == SSM_EP_V4)
    }

    /// The device UUID from the anchor.
    pub fn device_id(&self) -> Option<uuid::Uuid> {
        self.anchor.as_deref()?.strip_prefix("ocf://")?.parse().ok()
    }

    /// The unicast endpoints (everything but the SSM entries).
    pub fn unicast_eps(&self) -> impl Iterator<Item = &Endpoint> {
        self.eps
            .iter()
            .filter(|e| e.ep != SSM_EP_V6 && e.ep != SSM_EP_V4)
    }

    /// Encodes the link.
    pub fn to_value(&self) -> Value {
        let mut m = Vec::new();
        if let Some(a) = &self.anchor {
            m.push(("anchor", Value::Text(a.clone())));
        }
        m.push(("href", Value::Text(self.href.clone())));
        m.push(("rt", cbor::text_array(&self.rt)));
        m.push(("if", cbor::text_array(&self.interfaces)));
        m.push(("p", cbor::map([("bm", Value::Integer(self.bm.into()))])));
        let eps = self
            .eps
            .iter()
            .map(|e| {
                let mut o = vec![("ep", Value::Text(e.ep.clone()))];
                if let Some(p) = e.pri {
                    o.push(("pri", Value::Integer(p.into())));
                }
                cbor::map(o)
            })
            .collect();
        m.push(("eps", Value::Array(eps)));
        cbor::map(m)
    }

    /// Decodes a link; `None` without `href`.
    pub fn from_value(v: &Value) -> Option<Link> {
        let href = cbor::get(v, "href")?.as_text()?.to_string();
        let mut eps = Vec::new();
        for e in cbor::get(v, "eps")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let pri = cbor::get(e, "pri")
                .and_then(|p| p.as_integer())
                .and_then(|i| u64::try_from(i).ok());
            // The reference stack may put two "ep" keys in one map.
            for ep in cbor::get_all(e, "ep").filter_map(Value::as_text) {
                eps.push(Endpoint {
                    ep: ep.to_string(),
                    pri,
                });
            }
        }
        let bm = cbor::get(v, "p")
            .and_then(|p| cbor::get(p, "bm"))
            .and_then(Value::as_integer)
            .and_then(|i| u8::try_from(i).ok())
            .unwrap_or(0);
        Some(Link {
            anchor: cbor::get(v, "anchor")
                .and_then(Value::as_text)
                .map(String::from),
            href,
            rt: cbor::get(v, "rt").map(cbor::texts).unwrap_or_default(),
            interfaces: cbor::get(v, "if").map(cbor::texts).unwrap_or_default(),
            bm,
            eps,
        })
    }
}

/// Parses an `/oic/res` payload in either `oic.if.ll` form (an array of
/// links) or `oic.if.baseline` form (`[{rt, if, links: [...]}]`).
pub fn parse_links(payload: &Value) -> Vec<Link> {
    let Some(items) = payload.as_array() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in items {
        if let Some(links) = cbor::get(item, "links").and_then(Value::as_array) {
            out.extend(links.iter().filter_map(Link::from_value));
        } else if let Some(l) = Link::from_value(item) {
            out.push(l);
        }
    }
    out
}

/// Splits `coap://host:port` into (host, port); IPv6 hosts keep their
/// brackets stripped and a `%zone` suffix. `None` for other schemes.
pub fn split_ep(ep: &str) -> Option<(&str, u16)> {
    split_host_port(ep.strip_prefix("coap://")?)
}

/// `host:port` or `[v6]:port` (a trailing `/` allowed).
fn split_host_port(rest: &str) -> Option<(&str, u16)> {
    if let Some(r) = rest.strip_prefix('[') {
        let (host, port) = r.split_once("]:")?;
        Some((host, port.trim_end_matches('/').parse().ok()?))
    } else {
        let (host, port) = rest.rsplit_once(':')?;
        Some((host, port.trim_end_matches('/').parse().ok()?))
    }
}

/// Splits `coaps://host:port` like [`split_ep`] does `coap://`.
pub fn split_secure_ep(ep: &str) -> Option<(&str, u16)> {
    split_host_port(ep.strip_prefix("coaps://")?)
}

/// The port of the device's DTLS endpoint: the `coaps://` endpoint of its
/// `oic.r.doxm` link (where the reference OBT opens its owner-transfer and
/// provisioning sessions, REFERENCE-SSM §6 "over the secure endpoint"; the
/// reference devices serve DTLS on a port of their own), preferring the one
/// at `host` (the address it answered from, zone ignored). `None` when the
/// links name none.
pub fn secure_port(links: &[Link], host: &str) -> Option<u16> {
    let host = host.split('%').next().unwrap_or(host);
    let eps: Vec<(&str, u16)> = links
        .iter()
        .filter(|l| l.href == "/oic/sec/doxm" || l.rt.iter().any(|r| r == "oic.r.doxm"))
        .flat_map(|l| l.eps.iter())
        .filter_map(|e| split_secure_ep(&e.ep))
        .collect();
    let same_host = |(h, _): &&(&str, u16)| {
        let h = h.split('%').next().unwrap_or(h);
        h.parse::<std::net::IpAddr>().ok() == host.parse().ok()
    };
    eps.iter()
        .find(same_host)
        .or_else(|| eps.first())
        .map(|(_, p)| *p)
}

/// The hrefs of the resources that accept SSM UPDATEs (each once, in
/// order): where an onboarding tool points a light's ACE, and where a
/// switch sends (the reference sample serves its light at `/lights`, ours
/// at `/BinarySwitchResURI` unless told otherwise).
pub fn ssm_hrefs(links: &[Link]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for l in links.iter().filter(|l| l.accepts_ssm()) {
        if !out.contains(&l.href) {
            out.push(l.href.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_ssm_marker() {
        let l = Link {
            anchor: Some("ocf://6390a324-f087-45f7-4e4a-2c4e4586542d".into()),
            href: "/BinarySwitchResURI".into(),
            rt: vec!["oic.r.switch.binary".into()],
            interfaces: vec!["oic.if.a".into(), "oic.if.baseline".into()],
            bm: 3,
            eps: vec![
                Endpoint {
                    ep: "coap://127.0.0.1:40000".into(),
                    pri: Some(1),
                },
                Endpoint {
                    ep: SSM_EP_V6.into(),
                    pri: None,
                },
                Endpoint {
                    ep: SSM_EP_V4.into(),
                    pri: None,
                },
            ],
        };
        let back = parse_links(&Value::Array(vec![l.to_value()]));
        assert_eq!(back, vec![l.clone()]);
        assert!(back[0].accepts_ssm());
        assert_eq!(back[0].unicast_eps().count(), 1);
        assert_eq!(
            back[0].device_id().unwrap().to_string(),
            "6390a324-f087-45f7-4e4a-2c4e4586542d"
        );
    }

    #[test]
    fn endpoints() {
        assert_eq!(
            split_ep("coap://[fe80::1%ssm0]:5683"),
            Some(("fe80::1%ssm0", 5683))
        );
        assert_eq!(
            split_ep("coap://127.0.0.1:40000"),
            Some(("127.0.0.1", 40000))
        );
        assert_eq!(split_ep("coaps://127.0.0.1:1"), None);
        assert_eq!(
            split_secure_ep("coaps://[fe80::1]:41054"),
            Some(("fe80::1", 41054))
        );
        assert_eq!(split_secure_ep("coap://[fe80::1]:1"), None);
    }

    /// The reference device's `/oic/res` shape: plain and secure endpoints
    /// on different ports, the SSM resource at `/lights`.
    #[test]
    fn secure_port_and_ssm_hrefs() {
        let ep = |e: &str| Endpoint {
            ep: e.into(),
            pri: None,
        };
        let links = vec![
            Link {
                href: "/oic/sec/doxm".into(),
                rt: vec!["oic.r.doxm".into()],
                eps: vec![
                    ep("coap://[fd58::3]:46773"),
                    ep("coaps://[fd58::3]:41054"),
                    ep("coaps://[fe80::58:ff:fe00:3]:41055"),
                ],
                ..Default::default()
            },
            Link {
                href: "/lights".into(),
                rt: vec!["oic.r.switch.binary".into()],
                eps: vec![ep("coaps://[fd58::3]:41054"), ep(SSM_EP_V6)],
                ..Default::default()
            },
            Link {
                href: "/oic/d".into(),
                eps: vec![ep("coaps://[fd58::3]:9")],
                ..Default::default()
            },
        ];
        assert_eq!(secure_port(&links, "fe80::58:ff:fe00:3%ssm0"), Some(41055));
        assert_eq!(secure_port(&links, "fd58::3"), Some(41054));
        assert_eq!(secure_port(&links, "10.0.0.1"), Some(41054));
        assert_eq!(secure_port(&links[1..], "fd58::3"), None);
        assert_eq!(ssm_hrefs(&links), vec!["/lights".to_string()]);
    }
}

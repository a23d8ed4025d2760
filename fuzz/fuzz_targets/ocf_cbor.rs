//! Decoding of the OCF security and discovery representations a device or
//! client receives: `/oic/sec/cred` entries, `/oic/sec/acl2` ACE lists,
//! `/oic/res` links (CBOR), and the persisted JSON (`svr.json`, cred files).
#![no_main]
use ciborium::Value;
use libfuzzer_sys::fuzz_target;
use ssm_ocf::security::acl2::{Ace, Acl2};
use ssm_ocf::{cbor, discovery, security};

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = cbor::decode(data) {
        // /oic/sec/cred POST body: {"creds": [...], "rowneruuid": ...}
        for c in cbor::get_all(&v, "creds") {
            if let Value::Array(items) = c {
                for item in items {
                    if let Some(cred) = security::svr::cred_from_value(item) {
                        let _ = cred.oscore();
                    }
                }
            }
        }
        let _ = security::svr::cred_from_value(&v);
        // /oic/sec/acl2 POST body and the whole resource.
        if let Some(a) = cbor::get(&v, "aclist2") {
            let _ = a.clone().deserialized::<Vec<Ace>>();
        }
        let _ = v.deserialized::<Acl2>();
        // /oic/res
        for l in discovery::parse_links(&v) {
            let _ = (l.accepts_ssm(), l.device_id(), l.unicast_eps().count());
            let _ = discovery::Link::from_value(&l.to_value());
        }
        let _ = cbor::to_json(&v);
        let _ = cbor::texts(&v);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(c) = ssm_ocf::cred::CredResource::from_json(text) {
            let _ = c.oscore_creds();
        }
        let _ = serde_json::from_str::<security::SecurityState>(text);
        if let Ok(j) = serde_json::from_str::<serde_json::Value>(text) {
            let _ = cbor::from_json(&j);
        }
    }
});

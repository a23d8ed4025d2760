//! The CBOR representations of the security resources (OCF Security;
//! DIGEST §5): what a RETRIEVE returns and what an UPDATE is decoded from.
use super::svr::SecurityState;
use crate::cbor;
use crate::cred::{CredResource, CredType, Credential, OscoreFields, PrivateData};
use ciborium::Value;
use uuid::Uuid;

impl SecurityState {
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
}

/// A UUID in text form at `k` of map `v`.
pub(super) fn uuid_field(v: &Value, k: &str) -> Option<Uuid> {
    cbor::get(v, k)?.as_text()?.parse().ok()
}

/// `/oic/sec/cred` as CBOR; private data only when `with_secrets` (never
/// in a RETRIEVE).
pub fn cred_value(c: &CredResource, with_secrets: bool) -> Value {
    let creds = c
        .creds
        .iter()
        .map(|cr| {
            let mut m = Vec::new();
            // 0 is "not assigned yet": a new entry a device numbers itself.
            // The reference stack takes a `credid: 0` as a real id (a
            // second new entry then replaces the first), so it is left out.
            if cr.credid != 0 {
                m.push(("credid", Value::Integer(cr.credid.into())));
            }
            m.push(("subjectuuid", Value::Text(cr.subjectuuid.clone())));
            m.push(("credtype", Value::Integer(cr.credtype.as_u32().into())));
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
                    matches!(
                        t,
                        CredType::SsmClient
                            | CredType::SsmServer
                            | CredType::GroupOscoreSender
                            | CredType::GroupOscoreRecipient
                    ),
                ) {
                    om.push(("desc", Value::Text(d.clone())));
                }
                if let (Some(n), true) = (
                    o.ssn,
                    matches!(
                        t,
                        CredType::SsmClient
                            | CredType::PairwiseOscore
                            | CredType::GroupOscoreSender
                    ),
                ) {
                    om.push(("ssn", Value::Integer(n.into())));
                }
                if let Some(g) = &o.group {
                    om.push(("group", group_value(g)));
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
            group: cbor::get(o, "group").map(group_from_value),
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

/// The `oscore.group` object (group-mode material, [`crate::group_cred`]).
fn group_value(g: &crate::group_cred::GroupFields) -> Value {
    let mut m = vec![("gid", Value::Text(g.gid.clone()))];
    if let Some(s) = &g.salt {
        m.push(("salt", Value::Text(s.clone())));
    }
    m.push(("signalg", Value::Integer(g.signalg.into())));
    m.push(("encalg", Value::Integer(g.encalg.into())));
    m.push(("gmcred", Value::Text(g.gmcred.clone())));
    if let Some(a) = &g.authcred {
        m.push(("authcred", Value::Text(a.clone())));
    }
    if let Some(a) = g.aeadalg {
        m.push(("aeadalg", Value::Integer(a.into())));
    }
    cbor::map(m)
}

/// Decodes an `oscore.group` object; missing or mistyped fields become
/// values [`crate::group_cred::check`] refuses.
fn group_from_value(v: &Value) -> crate::group_cred::GroupFields {
    let text = |k: &str| cbor::get(v, k).and_then(Value::as_text).map(String::from);
    let int = |k: &str| {
        cbor::get(v, k)
            .and_then(Value::as_integer)
            .and_then(|i| i64::try_from(i).ok())
            .unwrap_or(0)
    };
    crate::group_cred::GroupFields {
        gid: text("gid").unwrap_or_default(),
        salt: text("salt"),
        signalg: int("signalg"),
        encalg: int("encalg"),
        gmcred: text("gmcred").unwrap_or_default(),
        authcred: text("authcred"),
        aeadalg: cbor::get(v, "aeadalg")
            .and_then(Value::as_integer)
            .and_then(|i| i64::try_from(i).ok()),
    }
}

//! The request sequences: owner transfer, provisioning, hard reset.
use super::{dos, post, text, Channel, Sequence, Step};
use crate::cbor;
use crate::cred::{CredResource, Credential};
use crate::message;
use crate::security::acl2::Ace;
use crate::security::svr::cred_value;
use ciborium::Value;
use ssm_coap::{Code, MessageType};
use uuid::Uuid;

/// The owner credential (credtype 1) with empty key material: each side
/// derives the owner PSK from the owner-transfer session (DIGEST §6).
fn owner_credential(obt: Uuid) -> Value {
    cbor::map([
        (
            "creds",
            Value::Array(vec![cbor::map([
                ("credtype", Value::Integer(1.into())),
                ("subjectuuid", text(obt)),
                (
                    "privatedata",
                    cbor::map([
                        ("encoding", text("oic.sec.encoding.raw")),
                        ("data", Value::Bytes(vec![])),
                    ]),
                ),
            ])]),
        ),
        ("rowneruuid", text(obt)),
    ])
}

/// The owner transfer of one device by Random PIN (DIGEST §6): the device
/// gets `new_uuid` as its identity and `obt` as owner; the owner credential
/// is sent with empty key material (each side derives the owner PSK).
pub fn owner_transfer(obt: Uuid, new_uuid: Uuid, domain: (Uuid, &str)) -> Sequence {
    use Channel::*;
    let steps = vec![
        Step {
            channel: Plain,
            what: "select Random PIN",
            request: post(
                "/oic/sec/doxm",
                cbor::map([("oxmsel", Value::Integer(1.into()))]),
            ),
        },
        Step {
            channel: OwnerTransfer,
            what: "pstat om",
            request: post(
                "/oic/sec/pstat",
                cbor::map([("om", Value::Integer(4.into()))]),
            ),
        },
        Step {
            channel: OwnerTransfer,
            what: "doxm devowneruuid",
            request: post("/oic/sec/doxm", cbor::map([("devowneruuid", text(obt))])),
        },
        Step {
            channel: OwnerTransfer,
            what: "doxm deviceuuid",
            request: post("/oic/sec/doxm", cbor::map([("deviceuuid", text(new_uuid))])),
        },
        Step {
            channel: OwnerTransfer,
            what: "doxm rowneruuid",
            request: post("/oic/sec/doxm", cbor::map([("rowneruuid", text(obt))])),
        },
        Step {
            channel: OwnerTransfer,
            what: "acl2 rowneruuid",
            request: post("/oic/sec/acl2", cbor::map([("rowneruuid", text(obt))])),
        },
        Step {
            channel: OwnerTransfer,
            what: "pstat rowneruuid",
            request: post("/oic/sec/pstat", cbor::map([("rowneruuid", text(obt))])),
        },
        Step {
            channel: OwnerTransfer,
            what: "owner credential",
            request: post("/oic/sec/cred", owner_credential(obt)),
        },
        Step {
            channel: OwnerTransfer,
            what: "sdi",
            request: post(
                "/oic/sec/sdi",
                cbor::map([
                    ("uuid", text(domain.0)),
                    ("name", text(domain.1)),
                    ("priv", Value::Bool(false)),
                ]),
            ),
        },
        Step {
            channel: OwnerTransfer,
            what: "doxm owned",
            request: post("/oic/sec/doxm", cbor::map([("owned", Value::Bool(true))])),
        },
        Step {
            channel: OwnerTransfer,
            what: "pstat RFPRO",
            request: post("/oic/sec/pstat", dos(2)),
        },
        Step {
            channel: OwnerTransfer,
            what: "delete ACEs",
            request: message::request(
                MessageType::Confirmable,
                Code::DELETE,
                "/oic/sec/acl2",
                None,
            ),
        },
        Step {
            channel: OwnerTransfer,
            what: "default ACEs",
            request: post(
                "/oic/sec/acl2",
                cbor::map([(
                    "aclist2",
                    Value::serialized(&crate::provision::default_aces(
                        &CredResource::default(),
                        &[],
                        false,
                    ))
                    .unwrap_or(Value::Null),
                )]),
            ),
        },
        Step {
            channel: OwnerTransfer,
            what: "pstat RFNOP",
            request: post("/oic/sec/pstat", dos(3)),
        },
    ];
    Sequence { steps, next: 0 }
}

/// At most this many bytes of credentials per POST, so that a request
/// fits one DTLS record in a 1280-byte IPv6 datagram.
pub const MAX_BATCH_BYTES: usize = 900;

/// Provisioning over an owner session: RFPRO, the credentials (in batches
/// of at most [`MAX_BATCH_BYTES`]), the ACEs, RFNOP (DIGEST §7).
pub fn provision(mut creds: Vec<Credential>, aces: Vec<Ace>) -> Sequence {
    use Channel::*;
    // The device numbers its credentials: an OBT-side credid could replace
    // an unrelated credential (such as the owner's).
    for c in creds.iter_mut() {
        c.credid = 0;
    }
    let mut steps = vec![Step {
        channel: Owner,
        what: "pstat RFPRO",
        request: post("/oic/sec/pstat", dos(2)),
    }];
    // One POST per batch of credentials that fits a datagram (a switch
    // granted many lights holds a pair-wise credential per light).
    let encoded: Vec<Value> = match cbor::get(
        &cred_value(
            &CredResource {
                creds,
                rowneruuid: String::new(),
            },
            true,
        ),
        "creds",
    ) {
        Some(Value::Array(a)) => a.clone(),
        _ => Vec::new(),
    };
    let mut batch: Vec<Value> = Vec::new();
    let mut size = 0;
    let flush = |batch: &mut Vec<Value>, steps: &mut Vec<Step>| {
        if !batch.is_empty() {
            steps.push(Step {
                channel: Owner,
                what: "credentials",
                request: post(
                    "/oic/sec/cred",
                    cbor::map([("creds", Value::Array(std::mem::take(batch)))]),
                ),
            });
        }
    };
    for c in encoded {
        let n = cbor::encode(&c).len();
        if size + n > MAX_BATCH_BYTES && !batch.is_empty() {
            flush(&mut batch, &mut steps);
            size = 0;
        }
        size += n;
        batch.push(c);
    }
    flush(&mut batch, &mut steps);
    for chunk in aces.chunks(8) {
        steps.push(Step {
            channel: Owner,
            what: "ACEs",
            request: post(
                "/oic/sec/acl2",
                cbor::map([("aclist2", Value::serialized(chunk).unwrap_or(Value::Null))]),
            ),
        });
    }
    steps.push(Step {
        channel: Owner,
        what: "pstat RFNOP",
        request: post("/oic/sec/pstat", dos(3)),
    });
    Sequence { steps, next: 0 }
}

/// Hard reset over an owner session: pstat RESET (the device wipes its
/// credentials and ACEs and returns to RFOTM).
pub fn hard_reset() -> Sequence {
    Sequence {
        steps: vec![Step {
            channel: Channel::Owner,
            what: "pstat RESET",
            request: post("/oic/sec/pstat", dos(0)),
        }],
        next: 0,
    }
}

/// Renames the device over an owner session: UPDATE of `n` on `/oic/con`
/// (the device refuses anyone but its owner, and names it does not take:
/// see [`crate::device::valid_name`]).
pub fn rename(name: &str) -> Sequence {
    Sequence {
        steps: vec![Step {
            channel: Channel::Owner,
            what: "/oic/con n",
            request: post(crate::device::CON_HREF, cbor::map([("n", text(name))])),
        }],
        next: 0,
    }
}

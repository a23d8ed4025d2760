//! The onboarding tool's side of owner transfer and provisioning, as
//! request sequences (sans-IO): each step is a CoAP request for a transport
//! (plain CoAP, the owner-transfer DTLS session, or an owner session), and
//! a step advances only on a success response. The runtime opens the DTLS
//! sessions and moves the bytes. (DIGEST §6 steps 2–15, §7.)
use crate::cbor;
use crate::cred::{CredResource, Credential};
use crate::message;
use crate::security::acl2::Ace;
use crate::security::svr::cred_value;
use ciborium::Value;
use ssm_coap::{Code, Message, MessageType};
use uuid::Uuid;

/// Which channel a request must use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// Plain CoAP (only `oxmsel` before the DTLS session).
    Plain,
    /// The Random PIN DTLS session.
    OwnerTransfer,
    /// A DTLS session with the owner PSK.
    Owner,
}

/// A step that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("step {step} ({what}) failed: {code}")]
pub struct StepError {
    /// Step number.
    pub step: usize,
    /// What it did.
    pub what: &'static str,
    /// The response code.
    pub code: Code,
}

/// One request of a sequence.
#[derive(Debug, Clone)]
pub struct Step {
    /// Channel to use.
    pub channel: Channel,
    /// What it does (for errors and progress).
    pub what: &'static str,
    /// The request (CON; MID and token set by the runtime).
    pub request: Message,
}

fn post(href: &str, body: Value) -> Message {
    message::update(MessageType::Confirmable, href, &body)
}

fn text(s: impl ToString) -> Value {
    Value::Text(s.to_string())
}

fn dos(s: u8) -> Value {
    cbor::map([("dos", cbor::map([("s", Value::Integer(s.into()))]))])
}

/// A request sequence and how far it got.
#[derive(Debug, Clone)]
pub struct Sequence {
    steps: Vec<Step>,
    next: usize,
}

impl Sequence {
    /// The next step, if any.
    pub fn next_step(&self) -> Option<&Step> {
        self.steps.get(self.next)
    }

    /// Feeds the response of the current step.
    pub fn on_response(&mut self, resp: &Message) -> Result<(), StepError> {
        let Some(step) = self.steps.get(self.next) else {
            return Ok(());
        };
        if resp.code.class() != 2 {
            return Err(StepError {
                step: self.next,
                what: step.what,
                code: resp.code,
            });
        }
        self.next += 1;
        Ok(())
    }

    /// All steps done.
    pub fn is_done(&self) -> bool {
        self.next >= self.steps.len()
    }

    /// (done, total).
    pub fn progress(&self) -> (usize, usize) {
        (self.next, self.steps.len())
    }
}

/// The owner transfer of one device by Random PIN (DIGEST §6): the device
/// gets `new_uuid` as its identity and `obt` as owner; the owner credential
/// is sent with empty key material (each side derives the owner PSK).
pub fn owner_transfer(obt: Uuid, new_uuid: Uuid, domain: (Uuid, &str)) -> Sequence {
    use Channel::*;
    let owner_cred = cbor::map([
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
    ]);
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
            request: post("/oic/sec/cred", owner_cred),
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

/// Most credentials sent in one POST to `/oic/sec/cred` (each POST adds
/// its credentials to the device's).
pub const CREDS_PER_POST: usize = 4;

/// Provisioning over an owner session: RFPRO, the credentials (in POSTs of
/// at most [`CREDS_PER_POST`]), the ACEs, RFNOP (DIGEST §7).
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
    // A few credentials per POST: a switch granted on many lights gets a
    // pair-wise credential per light, and one DTLS record holds < 1.4 kB.
    for chunk in creds.chunks(CREDS_PER_POST) {
        let body = cred_value(
            &CredResource {
                creds: chunk.to_vec(),
                rowneruuid: String::new(),
            },
            true,
        );
        let only_creds = cbor::map([(
            "creds",
            cbor::get(&body, "creds")
                .cloned()
                .unwrap_or(Value::Array(vec![])),
        )]);
        steps.push(Step {
            channel: Owner,
            what: "credentials",
            request: post("/oic/sec/cred", only_creds),
        });
    }
    if !aces.is_empty() {
        steps.push(Step {
            channel: Owner,
            what: "ACEs",
            request: post(
                "/oic/sec/acl2",
                cbor::map([("aclist2", Value::serialized(&aces).unwrap_or(Value::Null))]),
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

//! The onboarding tool's side of owner transfer and provisioning, as
//! request sequences (sans-IO): each step is a CoAP request for a transport
//! (plain CoAP, the owner-transfer DTLS session, or an owner session), and
//! a step advances only on a success response. The runtime opens the DTLS
//! sessions and moves the bytes. (DIGEST §6 steps 2–15, §7.)
use crate::cbor;
use crate::cred::{CredResource, CredType, Credential};
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

/// The credential types the onboarding tool manages on a device beyond
/// the owner credential: pair-wise OSCORE (64), SSM client (128) and SSM
/// server (256). Anything else (the owner's credtype 1) is never touched
/// by [`reconcile`].
pub const MANAGED_CREDTYPES: [CredType; 3] = [
    CredType::PairwiseOscore,
    CredType::SsmClient,
    CredType::SsmServer,
];

/// The GET requests whose answers [`reconcile`] compares: the device's
/// `/oic/sec/cred` (without private data) and `/oic/sec/acl2`.
pub fn read_state() -> [Message; 2] {
    [
        message::request(MessageType::Confirmable, Code::GET, "/oic/sec/cred", None),
        message::request(MessageType::Confirmable, Code::GET, "/oic/sec/acl2", None),
    ]
}

/// What identifies a credential's key material as the device shows it
/// (a RETRIEVE never returns private data): type, subject, and the OSCORE
/// IDs and description the device returns for that type. Every key the
/// onboarding tool creates comes with fresh IDs, so equal identities mean
/// equal keys.
#[allow(clippy::type_complexity)]
fn cred_identity(
    c: &Credential,
) -> (
    CredType,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
) {
    let o = c.oscore.clone().unwrap_or_default();
    let lower = |s: Option<String>| s.map(|s| s.to_ascii_lowercase());
    let (sender, recipient, desc) = match c.credtype {
        CredType::PairwiseOscore => (lower(o.senderid), lower(o.recipientid), None),
        CredType::SsmClient => (lower(o.senderid), None, o.desc),
        CredType::SsmServer => (None, lower(o.recipientid), o.desc),
        _ => (lower(o.senderid), lower(o.recipientid), o.desc),
    };
    (
        c.credtype,
        c.subjectuuid.to_ascii_lowercase(),
        sender,
        recipient,
        desc,
    )
}

/// What a [`reconcile`] sequence changes on a device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reconciliation {
    /// Managed credentials removed (their `credid`s on the device).
    pub creds_removed: Vec<u32>,
    /// Credentials added.
    pub creds_added: usize,
    /// ACEs removed (their `aceid`s).
    pub aces_removed: Vec<u32>,
    /// ACEs added.
    pub aces_added: usize,
}

impl Reconciliation {
    /// True when the device already holds exactly the desired state.
    pub fn is_noop(&self) -> bool {
        self.creds_removed.is_empty()
            && self.creds_added == 0
            && self.aces_removed.is_empty()
            && self.aces_added == 0
    }
}

/// Brings a device to a desired set of managed credentials and UUID-subject
/// ACEs (DIGEST §7: provisioning in RFPRO), given what it holds now (the
/// answers to [`read_state`]). Managed credentials and UUID-subject ACEs
/// that are not desired are deleted by id; desired ones that are missing
/// are added; matching ones are left alone. Running it twice changes
/// nothing the second time, so an interrupted provisioning is finished by
/// running it again. The owner credential and the default (connection-type)
/// ACEs are never touched.
///
/// Returns `None` when an answer cannot be decoded.
pub fn reconcile(
    current_cred: &Value,
    current_acl: &Value,
    desired_creds: &[Credential],
    desired_aces: &[Ace],
) -> Option<(Sequence, Reconciliation)> {
    use Channel::*;
    let current: Vec<Credential> = cbor::get(current_cred, "creds")?
        .as_array()?
        .iter()
        .map(crate::security::svr::cred_from_value)
        .collect::<Option<_>>()?;
    let aces: Vec<Ace> = match cbor::get(current_acl, "aclist2") {
        Some(v) => v.deserialized().ok()?,
        None => Vec::new(),
    };
    let mut plan = Reconciliation::default();
    let wanted: Vec<_> = desired_creds.iter().map(cred_identity).collect();
    let mut present = Vec::new();
    for c in current
        .iter()
        .filter(|c| MANAGED_CREDTYPES.contains(&c.credtype))
    {
        let id = cred_identity(c);
        if wanted.contains(&id) && !present.contains(&id) {
            present.push(id);
        } else {
            plan.creds_removed.push(c.credid);
        }
    }
    let to_add: Vec<Credential> = desired_creds
        .iter()
        .filter(|c| !present.contains(&cred_identity(c)))
        .cloned()
        .collect();
    plan.creds_added = to_add.len();
    let ace_key = |a: &Ace| (a.subject.clone(), a.resources.clone(), a.permission);
    let want_aces: Vec<_> = desired_aces.iter().map(ace_key).collect();
    let mut have_aces = Vec::new();
    for a in aces
        .iter()
        .filter(|a| matches!(a.subject, crate::security::acl2::AceSubject::Uuid { .. }))
    {
        let k = ace_key(a);
        if want_aces.contains(&k) && !have_aces.contains(&k) {
            have_aces.push(k);
        } else {
            plan.aces_removed.push(a.aceid);
        }
    }
    let aces_to_add: Vec<Ace> = desired_aces
        .iter()
        .filter(|a| !have_aces.contains(&ace_key(a)))
        .cloned()
        .collect();
    plan.aces_added = aces_to_add.len();

    let mut steps = vec![Step {
        channel: Owner,
        what: "pstat RFPRO",
        request: post("/oic/sec/pstat", dos(2)),
    }];
    for id in &plan.creds_removed {
        steps.push(Step {
            channel: Owner,
            what: "delete credential",
            request: message::request(
                MessageType::Confirmable,
                Code::DELETE,
                "/oic/sec/cred",
                Some(&format!("credid={id}")),
            ),
        });
    }
    for id in &plan.aces_removed {
        steps.push(Step {
            channel: Owner,
            what: "delete ACE",
            request: message::request(
                MessageType::Confirmable,
                Code::DELETE,
                "/oic/sec/acl2",
                Some(&format!("aceid={id}")),
            ),
        });
    }
    let mut rest = provision(to_add, aces_to_add).steps;
    rest.remove(0); // its own RFPRO
    steps.extend(rest);
    Some((Sequence { steps, next: 0 }, plan))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cred::{OscoreFields, PrivateData};
    use crate::security::acl2::{AceResource, AceSubject, PERM_R, PERM_U};
    use crate::security::svr::{Peer, SecurityState};

    fn ssm_server(subject: Uuid, rid: &str, epoch: u32) -> Credential {
        Credential {
            credid: 0,
            subjectuuid: subject.to_string(),
            credtype: CredType::SsmServer,
            privatedata: Some(PrivateData::raw(&[epoch as u8; 32])),
            oscore: Some(OscoreFields {
                recipientid: Some(rid.into()),
                desc: Some(format!("SSM epoch {epoch}")),
                ..Default::default()
            }),
        }
    }

    fn ace(subject: Uuid) -> Ace {
        Ace {
            aceid: 0,
            subject: AceSubject::Uuid { uuid: subject },
            resources: vec![AceResource::Href {
                href: "/BinarySwitchResURI".into(),
            }],
            permission: PERM_R | PERM_U,
        }
    }

    /// An owned device in RFNOP, as a sans-IO security state.
    fn owned_device(owner: Uuid) -> SecurityState {
        let mut s = SecurityState::new(Uuid::from_u128(0xd));
        s.doxm.owned = true;
        s.doxm.devowneruuid = owner;
        s.cred.creds.push(Credential {
            credid: 1,
            subjectuuid: owner.to_string(),
            credtype: CredType::PairwiseSymmetric,
            privatedata: Some(PrivateData::raw(&[9; 16])),
            oscore: None,
        });
        s.pstat.dos = crate::security::pstat::DeviceOnboardingState::Rfnop;
        s
    }

    /// Runs a sequence against a device state; every step must succeed.
    fn run(dev: &mut SecurityState, seq: &mut Sequence, owner: Uuid) {
        let peer = Peer::Authenticated {
            subject: Some(owner),
        };
        while let Some(step) = seq.next_step().cloned() {
            let out = dev.handle(&step.request, &peer, false).expect("handled");
            let resp = Message::new(
                MessageType::Acknowledgement,
                out.code,
                0,
                step.request.token,
            );
            seq.on_response(&resp)
                .unwrap_or_else(|e| panic!("{e} ({:?})", step.what));
        }
    }

    fn read(dev: &mut SecurityState, owner: Uuid) -> (Value, Value) {
        let peer = Peer::Authenticated {
            subject: Some(owner),
        };
        let [c, a] = read_state();
        let c = dev.handle(&c, &peer, false).unwrap().body.unwrap();
        let a = dev.handle(&a, &peer, false).unwrap().body.unwrap();
        (c, a)
    }

    #[test]
    fn reconcile_adds_replaces_removes_and_is_idempotent() {
        let owner = Uuid::from_u128(0x0b7);
        let (a, b) = (Uuid::from_u128(0xa), Uuid::from_u128(0xb));
        let mut dev = owned_device(owner);
        // Epoch 1: switches a and b.
        let want1 = vec![
            ssm_server(a, "02aaaaaaaaaaaa", 1),
            ssm_server(b, "02bbbbbbbbbbbb", 1),
        ];
        let (c, acl) = read(&mut dev, owner);
        let (mut seq, plan) = reconcile(&c, &acl, &want1, &[ace(a), ace(b)]).unwrap();
        assert_eq!((plan.creds_added, plan.aces_added), (2, 2));
        assert!(plan.creds_removed.is_empty());
        run(&mut dev, &mut seq, owner);
        assert_eq!(dev.cred.creds.len(), 3);
        // The same again: nothing to do (a re-run after a crash is safe).
        let (c, acl) = read(&mut dev, owner);
        let (_, plan) = reconcile(&c, &acl, &want1, &[ace(a), ace(b)]).unwrap();
        assert!(plan.is_noop(), "{plan:?}");
        // Epoch 2 without b: a's key is replaced, b's key and ACE go.
        let want2 = vec![ssm_server(a, "02cccccccccccc", 2)];
        let (mut seq, plan) = reconcile(&c, &acl, &want2, &[ace(a)]).unwrap();
        assert_eq!(plan.creds_removed.len(), 2);
        assert_eq!(plan.aces_removed.len(), 1);
        assert_eq!((plan.creds_added, plan.aces_added), (1, 0));
        run(&mut dev, &mut seq, owner);
        let types: Vec<_> = dev.cred.creds.iter().map(|c| c.credtype).collect();
        assert_eq!(
            types,
            vec![CredType::PairwiseSymmetric, CredType::SsmServer],
            "owner credential untouched"
        );
        assert_eq!(
            dev.cred.creds[1].oscore.as_ref().unwrap().desc.as_deref(),
            Some("SSM epoch 2")
        );
        assert!(dev
            .acl
            .aclist2
            .iter()
            .all(|x| x.subject != AceSubject::Uuid { uuid: b }));
        // Nothing desired: every managed credential goes, the owner's stays.
        let (c, acl) = read(&mut dev, owner);
        let (mut seq, _) = reconcile(&c, &acl, &[], &[]).unwrap();
        run(&mut dev, &mut seq, owner);
        assert_eq!(dev.cred.creds.len(), 1);
        assert_eq!(dev.cred.creds[0].credtype, CredType::PairwiseSymmetric);
        assert_eq!(
            dev.pstat.dos,
            crate::security::pstat::DeviceOnboardingState::Rfnop
        );
    }

    #[test]
    fn duplicates_are_removed() {
        let owner = Uuid::from_u128(0x0b7);
        let a = Uuid::from_u128(0xa);
        let mut dev = owned_device(owner);
        let want = vec![ssm_server(a, "02aaaaaaaaaaaa", 1)];
        for _ in 0..2 {
            let mut seq = provision(want.clone(), vec![ace(a)]);
            run(&mut dev, &mut seq, owner);
        }
        assert_eq!(dev.cred.creds.len(), 3);
        let (c, acl) = read(&mut dev, owner);
        let (mut seq, plan) = reconcile(&c, &acl, &want, &[ace(a)]).unwrap();
        assert_eq!((plan.creds_removed.len(), plan.aces_removed.len()), (1, 1));
        run(&mut dev, &mut seq, owner);
        assert_eq!(dev.cred.creds.len(), 2);
    }

    #[test]
    fn many_credentials_are_sent_in_datagram_sized_batches() {
        let owner = Uuid::from_u128(0x0b7);
        let mut dev = owned_device(owner);
        let want: Vec<Credential> = (0..40u128)
            .map(|i| ssm_server(Uuid::from_u128(0x100 + i), &format!("02{:012x}", i), 1))
            .collect();
        let aces: Vec<Ace> = (0..20u128)
            .map(|i| ace(Uuid::from_u128(0x100 + i)))
            .collect();
        let mut seq = provision(want, aces);
        for step in &seq.steps {
            assert!(
                step.request.to_vec().len() <= 1100,
                "{} bytes",
                step.request.to_vec().len()
            );
        }
        assert!(seq.steps.len() > 6);
        run(&mut dev, &mut seq, owner);
        assert_eq!(dev.cred.creds.len(), 41);
        assert_eq!(
            dev.acl
                .aclist2
                .iter()
                .filter(|a| matches!(a.subject, AceSubject::Uuid { .. }))
                .count(),
            20
        );
    }

    #[test]
    fn undecodable_answers_are_refused() {
        assert!(reconcile(&Value::Null, &Value::Null, &[], &[]).is_none());
    }
}

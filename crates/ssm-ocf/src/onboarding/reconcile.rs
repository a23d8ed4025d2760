//! Reconciliation: what a device holds (as it shows it) against what the
//! domain says it should hold, as a provisioning sequence.
use super::{dos, post, provision, Channel, Sequence, Step};
use crate::cbor;
use crate::cred::{CredType, Credential};
use crate::message;
use crate::security::acl2::Ace;
use ciborium::Value;
use ssm_coap::{Code, Message, MessageType};

/// The credential types the onboarding tool manages on a device beyond
/// the owner credential: pair-wise OSCORE (64), SSM client (128) and SSM
/// server (256). Anything else (the owner's credtype 1) is never touched
/// by [`reconcile`].
pub const MANAGED_CREDTYPES: [CredType; 5] = [
    CredType::PairwiseOscore,
    CredType::SsmClient,
    CredType::SsmServer,
    CredType::GroupOscoreSender,
    CredType::GroupOscoreRecipient,
];

/// The GET requests whose answers [`reconcile`] compares: the device's
/// `/oic/sec/cred` (without private data) and `/oic/sec/acl2`.
pub fn read_state() -> [Message; 2] {
    [
        message::request(MessageType::Confirmable, Code::GET, "/oic/sec/cred", None),
        message::request(MessageType::Confirmable, Code::GET, "/oic/sec/acl2", None),
    ]
}

/// Where an SSM Client credential's description lists the hrefs its
/// switch sends to, one datagram each (space separated, to the end), when
/// its lights do not all serve SSM at the example URI. Not part of what
/// identifies the key: a change of hrefs updates the credential in place.
pub const SSM_HREFS_TAG: &str = " hrefs: ";

/// The hrefs listed in a description (see [`SSM_HREFS_TAG`]).
pub fn hrefs_in_desc(desc: &str) -> Vec<String> {
    desc.split_once(SSM_HREFS_TAG)
        .map(|(_, l)| l.split_whitespace().map(String::from).collect())
        .unwrap_or_default()
}

/// A description without its hrefs.
fn desc_base(desc: Option<String>) -> Option<String> {
    desc.map(|d| match d.split_once(SSM_HREFS_TAG) {
        Some((base, _)) => base.to_string(),
        None => d,
    })
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
        CredType::SsmClient => (lower(o.senderid), None, desc_base(o.desc)),
        CredType::SsmServer => (None, lower(o.recipientid), desc_base(o.desc)),
        // Group mode: the desc names group and epoch; a rekey (new Gid) or
        // a switch's new key gives a new desc or recipient ID, so the
        // public `group` object (Gid, credentials) is compared too.
        CredType::GroupOscoreSender => (
            lower(o.senderid),
            None,
            Some(format!("{:?} {:?}", desc_base(o.desc), o.group)),
        ),
        CredType::GroupOscoreRecipient => (
            None,
            lower(o.recipientid),
            Some(format!("{:?} {:?}", desc_base(o.desc), o.group)),
        ),
        _ => (lower(o.senderid), lower(o.recipientid), desc_base(o.desc)),
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
    /// Credentials updated in place (same id, key and IDs: only the hrefs
    /// of their description changed).
    pub creds_updated: Vec<u32>,
    /// ACEs removed (their `aceid`s).
    pub aces_removed: Vec<u32>,
    /// ACEs added.
    pub aces_added: usize,
    /// The device's `/groupsResURI` was rewritten (it listed other groups).
    pub groups_written: bool,
}

impl Reconciliation {
    /// True when the device already holds exactly the desired state.
    pub fn is_noop(&self) -> bool {
        self.creds_removed.is_empty()
            && self.creds_added == 0
            && self.creds_updated.is_empty()
            && self.aces_removed.is_empty()
            && self.aces_added == 0
            && !self.groups_written
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
    let mut updates = Vec::new();
    for c in current
        .iter()
        .filter(|c| MANAGED_CREDTYPES.contains(&c.credtype))
    {
        let id = cred_identity(c);
        match wanted.iter().position(|w| *w == id) {
            Some(k) if !present.contains(&id) => {
                present.push(id);
                // Same key and IDs, other hrefs: updated under its own id,
                // so its sender keeps its sequence numbers (a new entry
                // would start a new sequence store: nonce reuse).
                let want = &desired_creds[k];
                let desc = |c: &Credential| c.oscore.as_ref().and_then(|o| o.desc.clone());
                if desc(want) != desc(c) {
                    let mut u = want.clone();
                    u.credid = c.credid;
                    plan.creds_updated.push(c.credid);
                    updates.push(u);
                }
            }
            _ => plan.creds_removed.push(c.credid),
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
    for u in updates {
        let body = crate::security::svr::cred_value(
            &crate::cred::CredResource {
                creds: vec![u],
                rowneruuid: String::new(),
            },
            true,
        );
        let creds = cbor::get(&body, "creds").cloned().unwrap_or(Value::Null);
        steps.push(Step {
            channel: Owner,
            what: "update credential",
            request: super::post("/oic/sec/cred", cbor::map([("creds", creds)])),
        });
    }
    let mut rest = provision(to_add, aces_to_add).steps;
    rest.remove(0); // its own RFPRO
    steps.extend(rest);
    Some((Sequence { steps, next: 0 }, plan))
}

/// A device's security state against the domain's (for an inspection):
/// what it holds, and which managed credentials and UUID-subject ACEs are
/// extra (held, not desired) or missing (desired, not held), matched as
/// [`reconcile`] matches them.
#[derive(Debug, Clone, Default)]
pub struct Comparison {
    /// Every credential it holds (as it shows them: no private data).
    pub creds: Vec<Credential>,
    /// Every ACE it holds.
    pub aces: Vec<Ace>,
    /// Managed credentials it holds that the domain does not give it.
    pub extra_creds: Vec<Credential>,
    /// Desired credentials it lacks.
    pub missing_creds: Vec<Credential>,
    /// UUID-subject ACEs it holds that the domain does not give it.
    pub extra_aces: Vec<Ace>,
    /// Desired ACEs it lacks.
    pub missing_aces: Vec<Ace>,
}

impl Comparison {
    /// True when the device holds exactly what the domain says.
    pub fn matches(&self) -> bool {
        self.extra_creds.is_empty()
            && self.missing_creds.is_empty()
            && self.extra_aces.is_empty()
            && self.missing_aces.is_empty()
    }
}

/// Compares the answers to [`read_state`] with a desired state; `None`
/// when an answer cannot be decoded.
pub fn compare(
    current_cred: &Value,
    current_acl: &Value,
    desired_creds: &[Credential],
    desired_aces: &[Ace],
) -> Option<Comparison> {
    let creds: Vec<Credential> = cbor::get(current_cred, "creds")?
        .as_array()?
        .iter()
        .map(crate::security::svr::cred_from_value)
        .collect::<Option<_>>()?;
    let aces: Vec<Ace> = match cbor::get(current_acl, "aclist2") {
        Some(v) => v.deserialized().ok()?,
        None => Vec::new(),
    };
    let held: Vec<_> = creds.iter().map(cred_identity).collect();
    let wanted: Vec<_> = desired_creds.iter().map(cred_identity).collect();
    let ace_key = |a: &Ace| (a.subject.clone(), a.resources.clone(), a.permission);
    let held_aces: Vec<_> = aces.iter().map(ace_key).collect();
    let want_aces: Vec<_> = desired_aces.iter().map(ace_key).collect();
    Some(Comparison {
        extra_creds: creds
            .iter()
            .filter(|c| MANAGED_CREDTYPES.contains(&c.credtype))
            .filter(|c| !wanted.contains(&cred_identity(c)))
            .cloned()
            .collect(),
        missing_creds: desired_creds
            .iter()
            .filter(|c| !held.contains(&cred_identity(c)))
            .cloned()
            .collect(),
        extra_aces: aces
            .iter()
            .filter(|a| matches!(a.subject, crate::security::acl2::AceSubject::Uuid { .. }))
            .filter(|a| !want_aces.contains(&ace_key(a)))
            .cloned()
            .collect(),
        missing_aces: desired_aces
            .iter()
            .filter(|a| !held_aces.contains(&ace_key(a)))
            .cloned()
            .collect(),
        creds,
        aces,
    })
}

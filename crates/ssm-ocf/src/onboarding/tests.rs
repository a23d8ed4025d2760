//! Tests of the onboarding sequences and reconciliation.
use super::*;
use crate::cred::{CredType, Credential};
use crate::cred::{OscoreFields, PrivateData};
use crate::security::acl2::Ace;
use crate::security::acl2::{AceResource, AceSubject, PERM_R, PERM_U};
use crate::security::svr::{Peer, SecurityState};
use ciborium::Value;
use uuid::Uuid;

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

#[test]
fn compare_names_missing_and_extra_entries() {
    let owner = Uuid::from_u128(0x0b7);
    let (a, b) = (Uuid::from_u128(0xa), Uuid::from_u128(0xb));
    let mut dev = owned_device(owner);
    let want = vec![ssm_server(a, "02aaaaaaaaaaaa", 1)];
    let (c, acl) = read(&mut dev, owner);
    let cmp = compare(&c, &acl, &want, &[ace(a)]).unwrap();
    assert!(!cmp.matches());
    assert_eq!((cmp.missing_creds.len(), cmp.missing_aces.len()), (1, 1));
    assert!(cmp.extra_creds.is_empty() && cmp.extra_aces.is_empty());
    assert_eq!(
        cmp.creds.len(),
        1,
        "the owner credential is shown, not managed"
    );
    let (mut seq, _) = reconcile(&c, &acl, &want, &[ace(a)]).unwrap();
    run(&mut dev, &mut seq, owner);
    let (c, acl) = read(&mut dev, owner);
    assert!(compare(&c, &acl, &want, &[ace(a)]).unwrap().matches());
    // The domain moved on (b instead of a): a's entries are extra, b's missing.
    let want_b = vec![ssm_server(b, "02bbbbbbbbbbbb", 1)];
    let cmp = compare(&c, &acl, &want_b, &[ace(b)]).unwrap();
    assert_eq!(cmp.extra_creds.len(), 1);
    assert_eq!(cmp.extra_creds[0].subjectuuid, a.to_string());
    assert!(
        cmp.extra_creds[0]
            .privatedata
            .as_ref()
            .is_none_or(|p| p.data.is_empty()),
        "no secrets read"
    );
    assert_eq!(cmp.missing_creds[0].subjectuuid, b.to_string());
    assert_eq!((cmp.extra_aces.len(), cmp.missing_aces.len()), (1, 1));
    assert!(compare(&Value::Null, &acl, &[], &[]).is_none());
}

/// A switch's SSM Client credential whose description lists other hrefs is
/// updated under its own id (same key and Sender ID: its sequence numbers
/// go on), never replaced by a new entry.
#[test]
fn new_hrefs_update_the_client_credential_in_place() {
    let owner = Uuid::from_u128(0x0b7);
    let mut dev = owned_device(owner);
    let client = |desc: &str| Credential {
        credid: 0,
        subjectuuid: Uuid::from_u128(0x5).to_string(),
        credtype: CredType::SsmClient,
        privatedata: Some(PrivateData::raw(&[3; 32])),
        oscore: Some(OscoreFields {
            senderid: Some("02aaaaaaaaaaaa".into()),
            desc: Some(desc.into()),
            ..Default::default()
        }),
    };
    let (c, acl) = read(&mut dev, owner);
    let (mut seq, _) = reconcile(&c, &acl, &[client("SSM epoch 1")], &[]).unwrap();
    run(&mut dev, &mut seq, owner);
    let id = dev.cred.creds[1].credid;
    let two = format!("SSM epoch 1{SSM_HREFS_TAG}/lights /BinarySwitchResURI");
    let (c, acl) = read(&mut dev, owner);
    let (mut seq, plan) = reconcile(&c, &acl, &[client(&two)], &[]).unwrap();
    assert_eq!(plan.creds_updated, vec![id]);
    assert!(
        plan.creds_removed.is_empty() && plan.creds_added == 0,
        "{plan:?}"
    );
    run(&mut dev, &mut seq, owner);
    assert_eq!(dev.cred.creds.len(), 2);
    assert_eq!(dev.cred.creds[1].credid, id);
    let desc = dev.cred.creds[1]
        .oscore
        .as_ref()
        .unwrap()
        .desc
        .clone()
        .unwrap();
    assert_eq!(hrefs_in_desc(&desc), vec!["/lights", "/BinarySwitchResURI"]);
    let (c, acl) = read(&mut dev, owner);
    let (_, plan) = reconcile(&c, &acl, &[client(&two)], &[]).unwrap();
    assert!(plan.is_noop(), "{plan:?}");
}

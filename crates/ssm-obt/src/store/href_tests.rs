//! The store's tests of schema v7: every SSM href of a light (the
//! migration keeps the one href of a version-5 or -6 light as its first,
//! after version 6's AEAD Algorithm column), the
//! ACEs the plan derives from them (one per client and href, the OBT's
//! too), what the switch learns, and a reconcile against a sans-IO device
//! that a second run leaves alone.
use super::schema::{SCHEMA_V1, SCHEMA_V2, SCHEMA_V3, SCHEMA_V4, SCHEMA_V5, SCHEMA_V6};
use super::*;
use ssm_ocf::security::acl2::{AceResource, AceSubject};
use ssm_testkit::TempDir;

fn tmp(name: &str) -> (TempDir, PathBuf) {
    let d = TempDir::new(&format!("store-{name}"));
    let p = d.join("domain.sqlite");
    (d, p)
}

fn rng() -> impl FnMut(&mut [u8]) {
    let mut n = 41u32;
    move |b: &mut [u8]| {
        b.iter_mut().for_each(|x| {
            n = n.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            *x = (n >> 16) as u8;
        })
    }
}

fn dev(s: &mut Store, n: u128, role: &str) -> Uuid {
    let d = DeviceRecord {
        uuid: Uuid::from_u128(n),
        name: format!("{role}-{n}"),
        endpoint: format!("coap://127.0.0.1:{n}"),
        role: role.parse().unwrap(),
        state: DeviceState::Owned,
        last_seen: None,
    };
    s.add_device(&d, &[n as u8; 16]).unwrap();
    d.uuid
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// The hrefs of the ACEs for `subject`.
fn ace_hrefs(aces: &[ssm_ocf::security::acl2::Ace], subject: Uuid) -> Vec<String> {
    aces.iter()
        .filter(|a| a.subject == AceSubject::Uuid { uuid: subject })
        .flat_map(|a| a.resources.iter())
        .filter_map(|r| match r {
            AceResource::Href { href } => Some(href.clone()),
            _ => None,
        })
        .collect()
}

/// A domain of schema version `upto` (5 or 6) with one href for each of
/// two lights.
fn old_domain(p: &Path, upto: i64) {
    let c = Connection::open(p).unwrap();
    let all = [
        (1, SCHEMA_V1),
        (2, SCHEMA_V2),
        (3, SCHEMA_V3),
        (4, SCHEMA_V4),
        (5, SCHEMA_V5),
        (6, SCHEMA_V6),
    ];
    for (v, sql) in all.into_iter().filter(|(v, _)| *v <= upto) {
        c.execute_batch(&format!("BEGIN; {sql} PRAGMA user_version = {v}; COMMIT;"))
            .unwrap();
    }
    c.execute_batch(
        "INSERT INTO obt VALUES (1, '11111111-2222-4333-8444-555555555555', 'old');
         INSERT INTO ssm_hrefs VALUES ('00000000-0000-0000-0000-00000000000a', '/lights'),
                                      ('00000000-0000-0000-0000-00000000000b', '/BinarySwitchResURI');",
    )
    .unwrap();
    if upto >= 6 {
        c.execute_batch(
            "INSERT INTO ssm_groups (id, name, secret, epoch, profile, aead_alg) VALUES
               (2, 'hall', x'4343434343434343434343434343434343434343434343434343434343434343', 2, 'group-oscore', 10);",
        )
        .unwrap();
    }
}

/// Version 6 (the AEAD Algorithm) then 7 (every href), in order: a
/// version-6 domain keeps its group's algorithm and each light's href.
#[test]
fn migrates_a_version_6_domain_after_its_aead_algorithm() {
    let (_d, p) = tmp("v6-hrefs");
    old_domain(&p, 6);
    let s = Store::open(&p).unwrap();
    let v: i64 = s
        .conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(v, SCHEMA_VERSION);
    const { assert!(SCHEMA_VERSION >= 7, "version 7 keeps every href") };
    let hall = s.group_state(2).unwrap().unwrap();
    assert_eq!((hall.epoch, hall.aead_alg), (2, Some(10)));
    assert_eq!(
        s.ssm_hrefs(&Uuid::from_u128(0xa)).unwrap(),
        strings(&["/lights"])
    );
    assert_eq!(
        s.ssm_hrefs(&Uuid::from_u128(0xb)).unwrap(),
        strings(&["/BinarySwitchResURI"])
    );
}

#[test]
fn migrates_a_version_5_domain_keeping_each_lights_href() {
    let (_d, p) = tmp("v5-hrefs");
    old_domain(&p, 5);
    let mut s = Store::open(&p).unwrap();
    let v: i64 = s
        .conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(v, SCHEMA_VERSION);
    let (a, b) = (Uuid::from_u128(0xa), Uuid::from_u128(0xb));
    assert_eq!(s.ssm_hrefs(&a).unwrap(), strings(&["/lights"]));
    assert_eq!(s.ssm_hrefs(&b).unwrap(), strings(&["/BinarySwitchResURI"]));
    // Now a light has several, in its discovery's order.
    let two = strings(&["/lights/2", "/lights"]);
    assert!(s.set_ssm_hrefs(&a, &two).unwrap());
    assert_eq!(s.ssm_hrefs(&a).unwrap(), two);
    assert!(
        !s.set_ssm_hrefs(&a, &two).unwrap(),
        "the same set: no change"
    );
    assert!(!s.set_ssm_hrefs(&a, &[]).unwrap(), "none listed: kept");
    assert_eq!(s.ssm_hrefs(&a).unwrap(), two);
    assert_eq!(s.ssm_hrefs(&b).unwrap(), strings(&["/BinarySwitchResURI"]));
    // Twice the same href is one row.
    assert!(s.set_ssm_hrefs(&b, &strings(&["/x", "/x", "/y"])).unwrap());
    assert_eq!(s.ssm_hrefs(&b).unwrap(), strings(&["/x", "/y"]));
    // Reopened: the same.
    drop(s);
    let s = Store::open(&p).unwrap();
    assert_eq!(s.ssm_hrefs(&a).unwrap(), two);
}

#[test]
fn every_href_is_granted_and_a_change_makes_its_switches_stale() {
    let (_d, p) = tmp("hrefs");
    let obt = Uuid::from_u128(1);
    let mut s = Store::init(&p, obt, "hall").unwrap();
    let sw = dev(&mut s, 20, "switch");
    let (relay, ours) = (dev(&mut s, 10, "light"), dev(&mut s, 11, "light"));
    s.set_ssm_hrefs(&relay, &strings(&["/lights", "/lights/2"]))
        .unwrap();
    s.grant_lights(&sw, &[relay, ours], &mut rng()).unwrap();
    let d = crate::plan::desired(&s, &relay).unwrap();
    assert_eq!(ace_hrefs(&d.aces, sw), strings(&["/lights", "/lights/2"]));
    assert_eq!(ace_hrefs(&d.aces, obt), strings(&["/lights", "/lights/2"]));
    assert!(d.aces.iter().all(|a| a.resources.len() == 1));
    // A light of ours with none known: the example URI.
    let d = crate::plan::desired(&s, &ours).unwrap();
    assert_eq!(ace_hrefs(&d.aces, sw), strings(&[ssm_ocf::switch::HREF]));
    // The switch sends one datagram per href of its lights.
    let want = crate::plan::desired(&s, &sw).unwrap();
    let desc = want.creds[0].oscore.as_ref().unwrap().desc.clone().unwrap();
    assert_eq!(
        ssm_ocf::onboarding::hrefs_in_desc(&desc),
        strings(&["/lights", "/lights/2", ssm_ocf::switch::HREF])
    );
    // Provisioned, then the relay's set changes: its switch is stale.
    s.set_state(&sw, DeviceState::Provisioned).unwrap();
    assert!(s.set_ssm_hrefs(&relay, &strings(&["/lights"])).unwrap());
    assert_eq!(s.device("switch-20").unwrap().state, DeviceState::Stale);
    let d = crate::plan::desired(&s, &relay).unwrap();
    assert_eq!(ace_hrefs(&d.aces, sw), strings(&["/lights"]));
    // Offboarded: its hrefs go with it.
    s.remove_device(&relay, &mut rng()).unwrap();
    assert!(s.ssm_hrefs(&relay).unwrap().is_empty());
}

/// The light's ACEs brought to a sans-IO device by a reconcile: a second
/// reconcile changes nothing; a changed set of hrefs replaces only what
/// changed.
#[test]
fn reconcile_grants_every_href_and_is_idempotent() {
    use ssm_ocf::onboarding::{read_state, reconcile, Sequence};
    use ssm_ocf::security::svr::{Peer, SecurityState};
    let (_d, p) = tmp("hrefs-reconcile");
    let obt = Uuid::from_u128(1);
    let mut s = Store::init(&p, obt, "hall").unwrap();
    let sw = dev(&mut s, 20, "switch");
    let relay = dev(&mut s, 10, "light");
    s.set_ssm_hrefs(&relay, &strings(&["/lights", "/lights/2"]))
        .unwrap();
    s.grant_lights(&sw, &[relay], &mut rng()).unwrap();
    let mut device = SecurityState::new(relay);
    device.doxm.owned = true;
    device.doxm.devowneruuid = obt;
    device.pstat.dos = ssm_ocf::security::pstat::DeviceOnboardingState::Rfnop;
    let owner = Peer::Authenticated { subject: Some(obt) };
    let read = |d: &mut SecurityState| {
        let [c, a] = read_state();
        let c = d.handle(&c, &owner, false).unwrap().body.unwrap();
        let a = d.handle(&a, &owner, false).unwrap().body.unwrap();
        (c, a)
    };
    let run = |d: &mut SecurityState, seq: &mut Sequence| {
        let mut n = 0;
        while let Some(step) = seq.next_step().cloned() {
            let out = d.handle(&step.request, &owner, false).expect("handled");
            let resp = ssm_coap::Message::new(
                ssm_coap::MessageType::Acknowledgement,
                out.code,
                0,
                step.request.token,
            );
            seq.on_response(&resp)
                .unwrap_or_else(|e| panic!("{e} ({:?})", step.what));
            n += 1;
            assert!(n < 100, "a bounded sequence");
        }
    };
    let want = crate::plan::desired(&s, &relay).unwrap();
    let (c, a) = read(&mut device);
    let (mut seq, plan) = reconcile(&c, &a, &want.creds, &want.aces).unwrap();
    assert_eq!(
        plan.aces_added, 4,
        "switch and OBT, two hrefs each: {plan:?}"
    );
    run(&mut device, &mut seq);
    let held = ace_hrefs(&device.acl.aclist2, sw);
    assert_eq!(held, strings(&["/lights", "/lights/2"]));
    let (c, a) = read(&mut device);
    let (_, plan) = reconcile(&c, &a, &want.creds, &want.aces).unwrap();
    assert!(plan.is_noop(), "a second sync changes nothing: {plan:?}");
    // One href gone: its two ACEs go, nothing else changes.
    s.set_ssm_hrefs(&relay, &strings(&["/lights/2"])).unwrap();
    let want = crate::plan::desired(&s, &relay).unwrap();
    let (mut seq, plan) = reconcile(&c, &a, &want.creds, &want.aces).unwrap();
    assert_eq!(
        (plan.aces_added, plan.aces_removed.len()),
        (0, 2),
        "{plan:?}"
    );
    assert_eq!(plan.creds_added, 0, "{plan:?}");
    run(&mut device, &mut seq);
    assert_eq!(ace_hrefs(&device.acl.aclist2, sw), strings(&["/lights/2"]));
    let (c, a) = read(&mut device);
    let (_, plan) = reconcile(&c, &a, &want.creds, &want.aces).unwrap();
    assert!(plan.is_noop(), "{plan:?}");
}

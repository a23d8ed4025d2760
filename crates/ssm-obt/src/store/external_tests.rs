//! The store's tests of schema v6: the migration from a version-5 domain
//! (existing groups keep no AEAD Algorithm), `--aead-alg` and external
//! members (registered, refused outside `group-oscore`, never stale, their
//! Sender IDs from the one allocator, removal rekeys their groups).
use super::schema::{SCHEMA_V1, SCHEMA_V2, SCHEMA_V3, SCHEMA_V4, SCHEMA_V5};
use super::*;
use ssm_testkit::TempDir;

fn tmp(name: &str) -> (TempDir, PathBuf) {
    let d = TempDir::new(&format!("store-{name}"));
    let p = d.join("domain.sqlite");
    (d, p)
}

fn rng() -> impl FnMut(&mut [u8]) {
    let mut n = 23u32;
    move |b: &mut [u8]| {
        b.iter_mut().for_each(|x| {
            n = n.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            *x = (n >> 16) as u8;
        })
    }
}

fn ccs(seed: u8) -> Vec<u8> {
    let pk = ed25519_dalek::SigningKey::from_bytes(&[seed; 32])
        .verifying_key()
        .to_bytes();
    ssm_ocf::group_cred::ccs_of_ed25519(&pk).to_vec()
}

#[test]
fn migrates_a_version_5_domain_without_an_aead_algorithm() {
    let (_d, p) = tmp("v5");
    {
        let c = Connection::open(&p).unwrap();
        for (v, sql) in [
            (1, SCHEMA_V1),
            (2, SCHEMA_V2),
            (3, SCHEMA_V3),
            (4, SCHEMA_V4),
            (5, SCHEMA_V5),
        ] {
            c.execute_batch(&format!("BEGIN; {sql} PRAGMA user_version = {v}; COMMIT;"))
                .unwrap();
        }
        c.execute_batch(
            "INSERT INTO obt VALUES (1, '11111111-2222-4333-8444-555555555555', 'old');
             INSERT INTO ssm_groups (id, name, secret, epoch, profile) VALUES
               (1, 'all', x'4242424242424242424242424242424242424242424242424242424242424242', 3, 'ocf-ssm'),
               (2, 'hall', x'4343434343434343434343434343434343434343434343434343434343434343', 2, 'group-oscore');",
        )
        .unwrap();
    }
    let mut s = Store::open(&p).unwrap();
    let v: i64 = s
        .conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(v, SCHEMA_VERSION);
    assert_eq!(SCHEMA_VERSION, 6);
    let gs = s.groups().unwrap();
    assert_eq!(gs.len(), 2);
    for g in &gs {
        assert_eq!(g.aead_alg, None, "{}: none set by the migration", g.name);
    }
    // Nothing rekeyed: epochs and secrets as they were.
    let hall = s.group_state(2).unwrap().unwrap();
    assert_eq!(
        (hall.epoch, hall.profile, *hall.secret, hall.aead_alg),
        (2, Profile::GroupOscore, [0x43; 32], None)
    );
    assert_eq!(s.group_state(1).unwrap().unwrap().epoch, 3);
    // New groups: the AEAD Algorithm for group-oscore only.
    let g = s
        .create_group_with("west", false, Profile::GroupOscore, Some(10))
        .unwrap();
    assert_eq!((g.profile, g.aead_alg), (Profile::GroupOscore, Some(10)));
    assert!(matches!(
        s.create_group_with("east", false, Profile::OcfSsm, Some(10)),
        Err(StoreError::AeadNeedsGroupMode(_))
    ));
    assert!(s.group_info("east").is_err(), "nothing created");
    // The schema itself refuses it on an ocf-ssm group, and any other value.
    assert!(s
        .conn
        .execute("UPDATE ssm_groups SET aead_alg = 10 WHERE id = 1", [])
        .is_err());
    assert!(s
        .conn
        .execute("UPDATE ssm_groups SET aead_alg = 11 WHERE id = 2", [])
        .is_err());
    // A domain of this version is refused by an older ssm (TooNew there).
    drop(s);
    let s = Store::open_read_only(&p).unwrap();
    assert_eq!(s.group_info("west").unwrap().aead_alg, Some(10));
}

fn our(s: &mut Store, n: u128, role: DeviceRole) -> Uuid {
    let d = DeviceRecord {
        uuid: Uuid::from_u128(n),
        name: format!("{role}-{n}"),
        endpoint: format!("coap://127.0.0.1:{n}"),
        role,
        state: DeviceState::Owned,
        last_seen: None,
    };
    s.add_device(&d, &[n as u8; 16]).unwrap();
    d.uuid
}

fn state(s: &Store, u: &Uuid) -> DeviceState {
    s.device(&u.to_string()).unwrap().state
}

fn all_sender_ids(s: &Store) -> Vec<(String, String, i64, bool)> {
    let mut st = s
        .conn
        .prepare("SELECT sender_id, client_uuid, epoch, revoked FROM sender_ids")
        .unwrap();
    let rows = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap();
    rows.map(|r| r.unwrap()).collect()
}

/// External members in the store: registered in the devices' name space
/// (state `external`, no endpoint), refused by `ocf-ssm` groups (nothing
/// changes), never marked stale, no pair-wise keys; an external light's
/// Sender ID from the allocator of every Sender ID; their removal rekeys
/// each group they were in and forgets their CCS.
#[test]
fn external_members_in_the_store() {
    use DeviceRole::{Light, Switch};
    let (_d, p) = tmp("external");
    let mut r = rng();
    let mut s = Store::init(&p, Uuid::from_u128(1), "site").unwrap();
    let l = our(&mut s, 10, Light);
    let sw = our(&mut s, 20, Switch);
    let (bms, xl) = (Uuid::from_u128(0xb5), Uuid::from_u128(0xe1));
    let d = s.add_external(bms, "bms", Switch, &ccs(5)).unwrap();
    assert_eq!(
        (d.state, d.endpoint.as_str(), d.role),
        (DeviceState::External, "", Switch)
    );
    s.add_external(xl, "ext-light", Light, &ccs(6)).unwrap();
    assert!(matches!(
        s.add_external(Uuid::from_u128(0xcc), "light-10", Light, &ccs(7)),
        Err(StoreError::DuplicateName { .. })
    ));
    assert!(matches!(
        s.add_external(Uuid::from_u128(0xcd), "copy", Switch, &ccs(5)),
        Err(StoreError::AuthCredInUse(n)) if n == "bms"
    ));
    assert!(s.is_external(&bms).unwrap() && !s.is_external(&l).unwrap());
    assert_eq!(s.auth_cred(&bms).unwrap(), Some(ccs(5)));
    s.create_group("east", false).unwrap();
    let hall = s
        .create_group_with("hall", false, Profile::GroupOscore, Some(10))
        .unwrap()
        .id;
    // Refused outside group-oscore, before anything changes.
    let audit = s.audit_len().unwrap();
    for e in [
        s.add_to_group("east", &[(xl, Light)], &mut r).unwrap_err(),
        s.add_to_group("east", &[(l, Light), (bms, Switch)], &mut r)
            .unwrap_err(),
        s.grant_lights(&bms, &[l], &mut r).unwrap_err(),
        s.grant_lights(&sw, &[xl], &mut r).unwrap_err(),
    ] {
        assert!(
            matches!(e, StoreError::ExternalNeedsGroupMode { .. }) && e.is_request(),
            "{e}"
        );
    }
    assert_eq!(s.audit_len().unwrap(), audit);
    assert!(s.group_info("east").unwrap().members.is_empty());
    assert!(s.group().unwrap().is_none(), "the group `all` was not made");

    let affected = s
        .add_to_group(
            "hall",
            &[(l, Light), (xl, Light), (sw, Switch), (bms, Switch)],
            &mut r,
        )
        .unwrap();
    assert!(affected.contains(&bms) && affected.contains(&xl));
    assert_eq!(state(&s, &l), DeviceState::Stale);
    assert_eq!(state(&s, &bms), DeviceState::External, "never stale");
    assert_eq!(state(&s, &xl), DeviceState::External);
    // Pair-wise keys only between our devices.
    let pw = s.pairwise_keys(&l).unwrap();
    assert_eq!(pw.len(), 1);
    assert_eq!(pw[0].client, sw);
    assert!(s.pairwise_keys(&bms).unwrap().is_empty());
    assert!(s.pairwise_keys(&xl).unwrap().is_empty());
    // The switches have Sender IDs; the external light gets one on demand.
    let bms_sid = s.sender_id_in(hall, &bms).unwrap().unwrap();
    assert_eq!(s.sender_id_in(hall, &xl).unwrap(), None);
    let xl_sid = s.member_sender_id(hall, &xl, &mut r).unwrap().unwrap();
    assert_eq!(
        s.member_sender_id(hall, &xl, &mut r).unwrap(),
        Some(xl_sid.clone())
    );
    assert_eq!(
        s.member_sender_id(hall, &l, &mut r).unwrap(),
        None,
        "our lights send nothing: no Sender ID"
    );
    let g = s.group_info("hall").unwrap();
    let mut want = vec![sw, bms];
    want.sort();
    assert_eq!(g.switches, want);
    assert!(
        !g.switches.contains(&xl),
        "a member with a Sender ID is no switch"
    );
    // Peers: who has a Sender ID and a CCS (our switch has no CCS yet).
    let sids = |s: &Store| -> Vec<String> {
        s.group_peers(hall)
            .unwrap()
            .into_iter()
            .map(|p| p.sender_id)
            .collect()
    };
    assert!(sids(&s).contains(&bms_sid) && sids(&s).contains(&xl_sid));
    assert!(!sids(&s).contains(&s.sender_id_in(hall, &sw).unwrap().unwrap()));
    s.set_auth_cred(&sw, &ccs(8)).unwrap();
    assert_eq!(sids(&s).len(), 3, "bms, ext-light, switch-20");

    // Removal: forgotten, its CCS too; hall rekeyed, east untouched.
    s.set_state(&l, DeviceState::Provisioned).unwrap();
    let (rekeyed, affected) = s.remove_external(&bms, &mut r).unwrap();
    assert_eq!(rekeyed, vec![(hall, 2)]);
    assert!(affected.contains(&l) && affected.contains(&sw));
    assert!(s.device("bms").is_err());
    assert_eq!(s.auth_cred(&bms).unwrap(), None);
    assert_eq!(state(&s, &l), DeviceState::Stale);
    assert_eq!(state(&s, &xl), DeviceState::External);
    assert!(matches!(
        s.remove_external(&l, &mut r),
        Err(StoreError::UnknownDevice(_))
    ));
    // New epoch: every earlier Sender ID revoked, never given again.
    let new_xl = s.member_sender_id(hall, &xl, &mut r).unwrap().unwrap();
    assert_ne!(new_xl, xl_sid);
    let rows = all_sender_ids(&s);
    let mut ids: Vec<&String> = rows.iter().map(|r| &r.0).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), rows.len(), "Sender IDs are unique");
    for (id, who, epoch, revoked) in &rows {
        assert_eq!(*revoked, *epoch < 2, "{id} of {who} at epoch {epoch}");
        assert!(*who != bms.to_string() || *revoked);
    }
    assert!(!sids(&s).contains(&bms_sid));
}

//! The store's tests of groups (schema v3) and of the migration from a
//! version-2 domain.
use super::schema::{SCHEMA_V1, SCHEMA_V2};
use super::*;
use ssm_testkit::TempDir;

fn tmp(name: &str) -> (TempDir, PathBuf) {
    let d = TempDir::new(&format!("store-{name}"));
    let p = d.join("domain.sqlite");
    (d, p)
}

fn rng() -> impl FnMut(&mut [u8]) {
    let mut n = 11u32;
    move |b: &mut [u8]| {
        b.iter_mut().for_each(|x| {
            n = n.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            *x = (n >> 16) as u8;
        })
    }
}

fn dev(s: &mut Store, n: u128, role: DeviceRole) -> Uuid {
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

fn secret(s: &Store, name: &str) -> (i64, [u8; 32]) {
    let g = s.group_info(name).unwrap();
    let k = s.group_state(g.id).unwrap().unwrap();
    (k.epoch, *k.secret)
}

fn all_sender_ids(s: &Store) -> Vec<String> {
    let mut st = s.conn.prepare("SELECT sender_id FROM sender_ids").unwrap();
    let rows = st.query_map([], |r| r.get(0)).unwrap();
    rows.map(|r| r.unwrap()).collect()
}

/// Two groups with a light in both and a switch commanding both: each
/// group its own key, epoch and Sender IDs; removing a member rekeys that
/// group only; Sender IDs are never reused across groups.
#[test]
fn groups_have_their_own_keys_and_rekeys() {
    use DeviceRole::{Light, Switch};
    let (_d, p) = tmp("groups");
    let mut r = rng();
    let mut s = Store::init(&p, Uuid::from_u128(1), "hall").unwrap();
    let (l1, l2, l3) = (
        dev(&mut s, 10, Light),
        dev(&mut s, 11, Light),
        dev(&mut s, 12, Light),
    );
    let (sa, sb) = (dev(&mut s, 20, Switch), dev(&mut s, 21, Switch));
    let east = s.create_group("east", false).unwrap();
    let west = s.create_group("west", false).unwrap();
    assert_ne!(east.id, west.id);
    assert_eq!(east.epoch, 0, "no key before the first device");
    assert!(s.group_state(east.id).unwrap().is_none());
    assert!(matches!(
        s.create_group("east", false),
        Err(StoreError::GroupExists(_))
    ));
    assert!(matches!(
        s.create_group("-x", false),
        Err(StoreError::BadGroupName(_))
    ));
    // Lights first, then the switches follow the group; l2 is in both.
    s.add_to_group("east", &[(l1, Light), (l2, Light)], &mut r)
        .unwrap();
    s.add_to_group("west", &[(l2, Light), (l3, Light)], &mut r)
        .unwrap();
    s.add_to_group("east", &[(sa, Switch)], &mut r).unwrap();
    s.add_to_group("west", &[(sa, Switch), (sb, Switch)], &mut r)
        .unwrap();
    // A light added after a switch follows is granted to it at once.
    let l4 = dev(&mut s, 13, Light);
    s.add_to_group("west", &[(l4, Light)], &mut r).unwrap();
    let e = s.group_info("east").unwrap();
    let w = s.group_info("west").unwrap();
    assert_eq!(e.members, vec![l1, l2]);
    assert_eq!(w.members, vec![l2, l3, l4]);
    assert_eq!(e.switches, vec![sa]);
    assert_eq!(w.switches, vec![sa, sb]);
    assert_eq!(s.device_groups(&l2).unwrap(), vec![e.id, w.id]);
    assert_eq!(s.device_groups(&sa).unwrap(), vec![e.id, w.id]);
    assert_eq!(s.device_groups(&sb).unwrap(), vec![w.id]);
    let (ee, ek) = secret(&s, "east");
    let (we, wk) = secret(&s, "west");
    assert_eq!((ee, we), (1, 1));
    assert_ne!(ek, wk, "one key per group");
    let sa_e = s.sender_id_in(e.id, &sa).unwrap().unwrap();
    let sa_w = s.sender_id_in(w.id, &sa).unwrap().unwrap();
    assert_ne!(sa_e, sa_w, "one Sender ID per (group, switch)");
    // The desired state: l2 has one recipient per (group, switch), one
    // ACE per switch and one letting the OBT read and observe it; sa one
    // sender credential per group.
    let d = crate::plan::desired(&s, &l2).unwrap();
    let n = |d: &crate::plan::Desired, t: u32| {
        d.creds.iter().filter(|c| c.credtype.as_u32() == t).count()
    };
    assert_eq!((n(&d, 256), n(&d, 64), d.aces.len()), (3, 2, 3));
    assert_eq!(d.groups, vec![e.id as u32, w.id as u32]);
    let da = crate::plan::desired(&s, &sa).unwrap();
    assert_eq!(n(&da, 128), 2);
    let descs: Vec<String> = da
        .creds
        .iter()
        .filter_map(|c| c.oscore.as_ref()?.desc.clone())
        .collect();
    let names: Vec<&str> = descs
        .iter()
        .filter_map(|d| crate::plan::group_of_desc(d).map(|g| g.0))
        .collect();
    assert_eq!(names, ["east", "west"]);
    // Removing l3 from west rekeys west only; east keeps key and epoch.
    for d in s.devices().unwrap() {
        s.set_state(&d.uuid, DeviceState::Provisioned).unwrap();
    }
    let (aff, epoch) = s.remove_from_group("west", &[(l3, Light)], &mut r).unwrap();
    assert_eq!(epoch, Some(2));
    assert_eq!(secret(&s, "east"), (ee, ek), "the other group is untouched");
    assert_ne!(secret(&s, "west").1, wk);
    assert_eq!(aff, vec![l2, l3, l4, sa, sb]);
    let stale: Vec<Uuid> = s
        .devices()
        .unwrap()
        .into_iter()
        .filter(|d| d.state == DeviceState::Stale)
        .map(|d| d.uuid)
        .collect();
    assert_eq!(stale, aff, "what the change concerns, and nothing else");
    assert!(!stale.contains(&l1), "an east-only light is not touched");
    assert_eq!(s.sender_id_in(e.id, &sa).unwrap().unwrap(), sa_e);
    assert_ne!(s.sender_id_in(w.id, &sa).unwrap().unwrap(), sa_w);
    assert!(crate::plan::desired(&s, &l3).unwrap().is_empty());
    // The pair (sa, l2) keeps its pair-wise key while east grants it.
    s.remove_from_group("west", &[(l2, Light)], &mut r).unwrap();
    assert_eq!(s.pairwise_keys(&l2).unwrap().len(), 1, "sa via east");
    // A switch removed: its Sender ID there is revoked, the group rekeyed.
    let (_, epoch) = s
        .remove_from_group("west", &[(sb, Switch)], &mut r)
        .unwrap();
    assert_eq!(epoch, Some(4));
    assert_eq!(s.sender_id_in(w.id, &sb).unwrap(), None);
    assert!(s.pairwise_keys(&sb).unwrap().is_empty());
    // Explicit rekey of one group.
    let (epoch, _) = s.rekey_group("east", &mut r, "requested").unwrap();
    assert_eq!(epoch, Some(2));
    assert_eq!(secret(&s, "west").0, 4);
    // Sender IDs: never reused, across groups and epochs.
    let ids = all_sender_ids(&s);
    let mut uniq = ids.clone();
    uniq.sort();
    uniq.dedup();
    assert_eq!(uniq.len(), ids.len());
    // Offboarding sa rekeys both groups it was in.
    let (epoch, _) = s.remove_device(&sa, &mut r).unwrap();
    assert!(epoch.is_some());
    assert_eq!(secret(&s, "east").0, 3);
    assert_eq!(secret(&s, "west").0, 5);
    // Deleting a group: its devices stale, its credentials gone.
    let aff = s.delete_group("east").unwrap();
    assert!(aff.contains(&l1));
    assert!(matches!(
        s.group_info("east"),
        Err(StoreError::UnknownGroup(_))
    ));
    assert!(crate::plan::desired(&s, &l1).unwrap().is_empty());
    // A new group never takes a deleted group's id.
    let again = s.create_group("east", false).unwrap();
    assert!(again.id > w.id);
}

/// `--auto` groups take every device onboarded: a light with the server
/// credentials of the group's switches, a switch granted all its lights;
/// the key is made by the first.
#[test]
fn auto_groups_enrol_onboarded_devices() {
    use DeviceRole::{Light, Switch};
    let (_d, p) = tmp("auto");
    let mut r = rng();
    let mut s = Store::init(&p, Uuid::from_u128(1), "hall").unwrap();
    let l0 = dev(&mut s, 9, Light);
    assert!(
        s.auto_enrol(&l0, Light, &mut r).unwrap().is_empty(),
        "no auto group"
    );
    let all = s.auto_all().unwrap();
    assert!(all.auto && all.epoch == 0);
    let l1 = dev(&mut s, 10, Light);
    assert_eq!(s.auto_enrol(&l1, Light, &mut r).unwrap(), vec![l1]);
    assert_eq!(s.group().unwrap().unwrap().epoch, 1, "key at the first one");
    let sw = dev(&mut s, 20, Switch);
    let aff = s.auto_enrol(&sw, Switch, &mut r).unwrap();
    assert_eq!(aff, vec![l1, sw]);
    let l2 = dev(&mut s, 11, Light);
    let aff = s.auto_enrol(&l2, Light, &mut r).unwrap();
    assert_eq!(aff, vec![l2, sw]);
    let mut g = s.grants().unwrap();
    g.sort();
    assert_eq!(g, vec![(sw, l1), (sw, l2)]);
    // Idempotent.
    s.auto_enrol(&l2, Light, &mut r).unwrap();
    assert_eq!(s.grants().unwrap().len(), 2);
    assert!(s.current_sender_id(&sw).unwrap().is_some());
}

/// A domain written by the version-2 code (the schema and the rows as it
/// wrote them: one group, Sender IDs, grants, pair-wise keys) opens as
/// version 3: the group is `all` (id 1), rekeyed (epoch + 1, new Sender
/// IDs, the old ones kept revoked), the grants and pair-wise keys are
/// kept, its devices are stale (their credentials and groups resource are
/// to be written), the rest is untouched.
#[test]
fn migrates_a_version_2_domain() {
    let (_d, p) = tmp("v2");
    let secret = [0x42u8; 32];
    {
        let c = Connection::open(&p).unwrap();
        c.execute_batch(&format!(
            "BEGIN; {SCHEMA_V1} PRAGMA user_version = 1; COMMIT;"
        ))
        .unwrap();
        c.execute_batch(&format!(
            "BEGIN; {SCHEMA_V2} PRAGMA user_version = 2; COMMIT;"
        ))
        .unwrap();
        c.execute_batch(
            "INSERT INTO obt VALUES (1, '11111111-2222-4333-8444-555555555555', 'old');
             INSERT INTO devices (uuid, name, endpoint, role, state, owner_psk) VALUES
               ('00000000-0000-0000-0000-00000000000a', 'l1', 'coap://127.0.0.1:1', 'light', 'provisioned', x'07070707070707070707070707070707'),
               ('00000000-0000-0000-0000-00000000000b', 'l2', 'coap://127.0.0.1:2', 'light', 'owned', x'08080808080808080808080808080808'),
               ('00000000-0000-0000-0000-000000000014', 'sw', 'coap://127.0.0.1:3', 'switch', 'provisioned', x'09090909090909090909090909090909');
             INSERT INTO sender_ids (sender_id, client_uuid, epoch, revoked) VALUES
               ('02aaaaaaaaaaaa', '00000000-0000-0000-0000-000000000014', 1, 1),
               ('02bbbbbbbbbbbb', '00000000-0000-0000-0000-000000000014', 2, 0);
             INSERT INTO grants (client_uuid, light_uuid) VALUES
               ('00000000-0000-0000-0000-000000000014', '00000000-0000-0000-0000-00000000000a');
             INSERT INTO pairwise VALUES ('00000000-0000-0000-0000-000000000014', '00000000-0000-0000-0000-00000000000a',
               x'0101010101010101010101010101010101010101010101010101010101010101', '01aaaaaaaaaaaa', '01bbbbbbbbbbbb');",
        )
        .unwrap();
        c.execute(
            "INSERT INTO ssm_group (id, secret, epoch) VALUES (1, ?1, 2)",
            params![&secret[..]],
        )
        .unwrap();
    }
    let mut s = Store::open(&p).unwrap();
    let v: i64 = s
        .conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    // Migrated through v3 (groups), v4 (SSM hrefs) and v5 (profiles:
    // every group stays ocf-ssm).
    assert_eq!(v, super::SCHEMA_VERSION);
    for g in s.groups().unwrap() {
        assert_eq!(g.profile, Profile::OcfSsm, "{}", g.name);
    }
    let (l1, l2, sw) = (
        Uuid::from_u128(10),
        Uuid::from_u128(11),
        Uuid::from_u128(20),
    );
    // The group is `all`, rekeyed by the migration: its credentials are
    // re-issued under its name, never with the same key and Sender ID.
    let g = s.group().unwrap().unwrap();
    assert_eq!((g.id, g.name.as_str(), g.epoch), (1, "all", 3));
    assert_ne!(*g.secret, secret);
    let sid = s.current_sender_id(&sw).unwrap().unwrap();
    assert!(!["02aaaaaaaaaaaa", "02bbbbbbbbbbbb"].contains(&sid.as_str()));
    assert_eq!(s.grants().unwrap(), vec![(sw, l1)]);
    assert_eq!(s.pairwise_keys(&l1).unwrap().len(), 1);
    let info = s.group_info(ALL_GROUP).unwrap();
    assert_eq!((info.members, info.switches), (vec![l1], vec![sw]));
    assert_eq!(s.device("l1").unwrap().state, DeviceState::Stale);
    assert_eq!(s.device("sw").unwrap().state, DeviceState::Stale);
    assert_eq!(s.device("l2").unwrap().state, DeviceState::Owned);
    // It works as a v3 domain: the old Sender IDs are never given again.
    s.add_to_group(ALL_GROUP, &[(l2, DeviceRole::Light)], &mut rng())
        .unwrap();
    let (epoch, _) = s.rekey(&mut rng(), "after migration").unwrap();
    assert_eq!(epoch, 4);
    let ids = all_sender_ids(&s);
    assert_eq!(ids.len(), 4);
    assert!(ids.contains(&"02aaaaaaaaaaaa".to_string()));
    drop(s);
    // A v2 domain that never had a group has none after the migration.
    let (_d2, p2) = tmp("v2-empty");
    {
        let c = Connection::open(&p2).unwrap();
        c.execute_batch(&format!(
            "{SCHEMA_V1} {SCHEMA_V2} INSERT INTO obt VALUES (1, '11111111-2222-4333-8444-555555555555', 'e'); PRAGMA user_version = 2;"
        ))
        .unwrap();
    }
    let s = Store::open(&p2).unwrap();
    assert!(s.groups().unwrap().is_empty());
    assert!(s.group().unwrap().is_none());
}

/// A domain file written by the version-2 `ssm obt` itself (the build
/// before groups: `init`, three devices onboarded, `ssm grant --all`, a
/// revoke and a grant again, `ssm rekey`; epoch 2, Sender IDs of epochs 1
/// and 2) opens as version 3, its devices and keys intact, the group `all`
/// rekeyed. The test works on a copy. (Made with the `ssm` of main at
/// c1d59b1 on `lo`; those devices then took the migrated domain's sync and
/// obeyed the switch again.)
#[test]
fn migrates_the_domain_file_of_the_v2_obt() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/v2-domain.sqlite");
    let (_d, p) = tmp("v2-real");
    std::fs::copy(&fixture, &p).unwrap();
    let before: (Vec<u8>, i64) = {
        let c = Connection::open(&p).unwrap();
        let v: i64 = c
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, 2, "the fixture is a version-2 domain");
        c.query_row("SELECT secret, epoch FROM ssm_group", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap()
    };
    assert_eq!(before.1, 2);
    let s = Store::open(&p).unwrap();
    assert_eq!(s.obt().unwrap().1, "v2-hallway");
    let names: Vec<(String, DeviceRole, DeviceState)> = s
        .devices()
        .unwrap()
        .into_iter()
        .map(|d| (d.name, d.role, d.state))
        .collect();
    assert_eq!(
        names,
        [
            ("light-1".into(), DeviceRole::Light, DeviceState::Stale),
            ("light-2".into(), DeviceRole::Light, DeviceState::Stale),
            ("hall-switch".into(), DeviceRole::Switch, DeviceState::Stale),
        ]
    );
    let sw = s.device("hall-switch").unwrap().uuid;
    let lights: Vec<Uuid> = ["light-1", "light-2"]
        .iter()
        .map(|n| s.device(n).unwrap().uuid)
        .collect();
    let mut grants = s.grants().unwrap();
    grants.sort();
    let mut want: Vec<(Uuid, Uuid)> = lights.iter().map(|l| (sw, *l)).collect();
    want.sort();
    assert_eq!(grants, want);
    assert_eq!(
        s.pairwise_keys(&sw).unwrap().len(),
        2,
        "pair-wise keys kept"
    );
    let g = s.group().unwrap().unwrap();
    assert_eq!((g.id, g.name.as_str(), g.epoch), (1, "all", 3));
    assert_ne!(&g.secret[..], &before.0[..], "rekeyed by the migration");
    let ids = all_sender_ids(&s);
    assert_eq!(ids.len(), 3, "epochs 1, 2 kept (revoked), 3 new: {ids:?}");
    let current = s.current_sender_id(&sw).unwrap().unwrap();
    assert!(["029ea290571f0e", "02c4e575f005ee"]
        .iter()
        .all(|old| *old != current));
    let d = crate::plan::desired(&s, &lights[0]).unwrap();
    assert_eq!(d.groups, vec![1]);
    let descs: Vec<String> = d
        .creds
        .iter()
        .filter_map(|c| c.oscore.as_ref()?.desc.clone())
        .collect();
    assert_eq!(descs, ["SSM group all (1) epoch 3"]);
}

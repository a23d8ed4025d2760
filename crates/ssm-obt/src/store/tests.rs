//! The store's tests.
use super::schema::SCHEMA_V1;
use super::*;
use ssm_testkit::TempDir;

/// A domain path in a fresh temp dir that lives as long as the guard.
fn tmp(name: &str) -> (TempDir, PathBuf) {
    let d = TempDir::new(&format!("store-{name}"));
    let p = d.join("domain.sqlite");
    (d, p)
}

/// Every owner PSK and the group secret live in the domain: its
/// directory is 0700 and every file of it 0600 (the WAL and
/// shared-memory files too, while the OBT has it open).
#[cfg(unix)]
#[test]
fn domain_is_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    let (base, _) = tmp("modes");
    let p = base.join("new-dir/domain.sqlite");
    let mut s = Store::init(&p, Uuid::from_u128(1), "hall").unwrap();
    dev(&mut s, 10, "light");
    assert_eq!(mode(p.parent().unwrap()), 0o700);
    for f in domain_files(&p) {
        assert!(f.exists(), "{} exists while the store is open", f.display());
        assert_eq!(mode(&f), 0o600, "{}", f.display());
    }
    assert!(domain_open_to_others(&p).is_empty());
    drop(s);
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    let w = domain_open_to_others(&p);
    assert_eq!(w.len(), 1);
    assert_eq!(
        w[0].to_string(),
        format!(
            "{} is readable by others (mode 0644): run chmod 600 {}",
            p.display(),
            p.display()
        )
    );
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn lifecycle_lock_and_versions() {
    let (_d, p) = tmp("life");
    let obt = Uuid::from_u128(0x1111_2222_3333_4444_5555_6666_7777_8888);
    let mut rng = {
        let mut n = 1u8;
        move |b: &mut [u8]| {
            b.iter_mut().for_each(|x| {
                n = n.wrapping_mul(37).wrapping_add(11);
                *x = n;
            })
        }
    };
    {
        let mut s = Store::init(&p, obt, "hall").unwrap();
        assert!(
            matches!(Store::open(&p), Err(StoreError::Locked(_))),
            "second OBT refused"
        );
        let d = DeviceRecord {
            uuid: Uuid::from_u128(5),
            name: "light 1".into(),
            endpoint: "coap://127.0.0.1:1".into(),
            role: DeviceRole::Light,
            state: DeviceState::Owned,
            last_seen: None,
        };
        s.add_device(&d, &[7; 16]).unwrap();
        s.grant_lights(&Uuid::from_u128(9), &[d.uuid], &mut rng)
            .unwrap();
        let g = s.group().unwrap().unwrap();
        assert_eq!(g.epoch, 1);
        let id1 = s.current_sender_id(&Uuid::from_u128(9)).unwrap().unwrap();
        s.grant_lights(&Uuid::from_u128(9), &[d.uuid], &mut rng)
            .unwrap();
        assert_eq!(
            s.current_sender_id(&Uuid::from_u128(9)).unwrap().unwrap(),
            id1,
            "stable"
        );
        assert_eq!(*s.group().unwrap().unwrap().secret, *g.secret);
    }
    let s = Store::open(&p).unwrap();
    assert_eq!(s.obt().unwrap().0, obt);
    assert_eq!(s.devices().unwrap().len(), 1);
    assert_eq!(*s.owner_psk(&Uuid::from_u128(5)).unwrap(), [7; 16]);
    assert_eq!(s.grants().unwrap().len(), 1);
    assert!(s.audit_len().unwrap() >= 5);
    assert!(matches!(
        s.device("nope"),
        Err(StoreError::UnknownDevice(_))
    ));
    drop(s);
    // A file from a newer version is refused.
    let c = Connection::open(&p).unwrap();
    c.pragma_update(None, "user_version", 99).unwrap();
    drop(c);
    assert!(matches!(
        Store::open(&p),
        Err(StoreError::TooNew { found: 99, .. })
    ));
    assert!(matches!(
        Store::open(&p.with_extension("none")),
        Err(StoreError::Missing(_))
    ));
}

fn counter_rng() -> impl FnMut(&mut [u8]) {
    seeded_rng(7)
}

fn seeded_rng(mut n: u32) -> impl FnMut(&mut [u8]) {
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

fn states(s: &Store) -> Vec<(String, String)> {
    s.devices()
        .unwrap()
        .into_iter()
        .map(|d| (d.name, d.state.to_string()))
        .collect()
}

#[test]
fn grant_revoke_offboard_rekey() {
    let (_d, p) = tmp("group");
    let mut rng = counter_rng();
    let mut s = Store::init(&p, Uuid::from_u128(1), "hall").unwrap();
    let lights: Vec<Uuid> = (10..14).map(|n| dev(&mut s, n, "light")).collect();
    let (a, b) = (dev(&mut s, 20, "switch"), dev(&mut s, 21, "switch"));
    let affected = s.grant_lights(&a, &lights, &mut rng).unwrap();
    assert_eq!(affected.len(), 5);
    s.grant_lights(&b, &lights[..2], &mut rng).unwrap();
    assert!(states(&s).iter().all(|(_, st)| st == "stale"));
    let g1 = s.group().unwrap().unwrap();
    assert_eq!(g1.epoch, 1);
    let a1 = s.current_sender_id(&a).unwrap().unwrap();
    let b1 = s.current_sender_id(&b).unwrap().unwrap();
    assert_ne!(a1, b1);
    // Granting again adds nothing.
    let pw = s.pairwise_keys(&a).unwrap().len();
    s.grant_lights(&a, &lights, &mut rng).unwrap();
    assert_eq!(s.pairwise_keys(&a).unwrap().len(), pw);
    assert_eq!(s.grants().unwrap().len(), 6);
    // The desired state of a light granted to both switches.
    let d = crate::plan::desired(&s, &lights[0]).unwrap();
    let types: Vec<u32> = d.creds.iter().map(|c| c.credtype.as_u32()).collect();
    assert_eq!(types.iter().filter(|t| **t == 256).count(), 2);
    assert_eq!(types.iter().filter(|t| **t == 64).count(), 2);
    // One ACE per switch, and one letting the OBT read and observe it.
    assert_eq!(d.aces.len(), 3);
    let da = crate::plan::desired(&s, &a).unwrap();
    assert_eq!(
        da.creds
            .iter()
            .filter(|c| c.credtype == ssm_ocf::cred::CredType::SsmClient)
            .count(),
        1
    );
    assert_eq!(
        da.creds
            .iter()
            .filter(|c| c.credtype == ssm_ocf::cred::CredType::PairwiseOscore)
            .count(),
        4
    );
    // Partial revoke: no rekey (b keeps light 0).
    let (aff, epoch) = s.revoke_lights(&b, &lights[1..2], &mut rng).unwrap();
    assert_eq!((aff.len(), epoch), (2, None));
    // Full revoke: b leaves the group, which is rekeyed.
    let (_, epoch) = s.revoke_lights(&b, &lights[..1], &mut rng).unwrap();
    assert_eq!(epoch, Some(2));
    assert_eq!(s.current_sender_id(&b).unwrap(), None);
    let a2 = s.current_sender_id(&a).unwrap().unwrap();
    assert_ne!(a2, a1, "a new Sender ID per epoch");
    assert_ne!(*s.group().unwrap().unwrap().secret, *g1.secret);
    assert!(crate::plan::desired(&s, &b).unwrap().is_empty());
    // Offboarding a light rekeys; its keys are gone from the domain.
    let (epoch, members) = s.remove_device(&lights[3], &mut rng).unwrap();
    assert_eq!(epoch, Some(3));
    assert_eq!(members.len(), 4, "a and three lights");
    assert!(s.pairwise_keys(&lights[3]).unwrap().is_empty());
    let a3 = s.current_sender_id(&a).unwrap().unwrap();
    // Sender IDs are never reused, across epochs too.
    let used: i64 = s
        .conn
        .query_row(
            "SELECT COUNT(DISTINCT sender_id) FROM sender_ids",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(used, 4, "a1, b1, a2, a3: one new ID per client and epoch");
    assert!(![a1, a2, b1].contains(&a3));
    // Offboarding a device outside the group does not rekey.
    let lone = dev(&mut s, 30, "light");
    assert_eq!(s.remove_device(&lone, &mut rng).unwrap().0, None);
    assert!(matches!(
        s.remove_device(&lone, &mut rng),
        Err(StoreError::UnknownDevice(_))
    ));
    drop(s);
    // Reopened: the same group.
    let s = Store::open(&p).unwrap();
    assert_eq!(s.group().unwrap().unwrap().epoch, 3);
    assert_eq!(s.current_sender_id(&a).unwrap().unwrap(), a3);
}

/// Review side note: a pair-wise ID that collides with one given to
/// another pair is drawn again; before, `INSERT OR IGNORE` dropped the
/// row and the grant silently had no pair-wise key.
#[test]
fn pairwise_id_collision_draws_again() {
    let (_d, p) = tmp("pwcollide");
    let mut s = Store::init(&p, Uuid::from_u128(1), "hall").unwrap();
    let (l1, l2) = (dev(&mut s, 10, "light"), dev(&mut s, 11, "light"));
    let sw = dev(&mut s, 20, "switch");
    // A random source that repeats its first draws for the second
    // light: secret, client_id, light_id all as before, then fresh.
    let mut log: Vec<Vec<u8>> = Vec::new();
    let mut inner = counter_rng();
    let mut recording = |b: &mut [u8]| {
        inner(b);
        log.push(b.to_vec());
    };
    s.grant_lights(&sw, &[l1], &mut recording).unwrap();
    let first = s.pairwise_keys(&l1).unwrap();
    assert_eq!(first.len(), 1);
    // Draws of the first pair-wise key: the last three (secret, a, b).
    let replay: Vec<Vec<u8>> = log[log.len() - 3..].to_vec();
    assert_eq!(replay.iter().map(Vec::len).collect::<Vec<_>>(), [32, 7, 7]);
    let mut i = 0;
    let mut fresh = seeded_rng(99);
    let mut colliding = |b: &mut [u8]| {
        match replay.get(i) {
            Some(r) => b.copy_from_slice(r),
            None => fresh(b),
        }
        i += 1;
    };
    s.grant_lights(&sw, &[l2], &mut colliding).unwrap();
    assert!(i > 3, "the colliding IDs were drawn, then fresh ones");
    let second = s.pairwise_keys(&l2).unwrap();
    assert_eq!(second.len(), 1, "the grant has its pair-wise key");
    let all = s.pairwise_keys(&sw).unwrap();
    assert_eq!(all.len(), 2);
    let ids = |k: &PairwiseKey| (k.client_id.clone(), k.light_id.clone());
    assert_ne!(ids(&all[0]).0, ids(&all[1]).0);
    assert_ne!(ids(&all[0]).1, ids(&all[1]).1);
    // A true duplicate grant stays idempotent: same key, no error.
    s.grant_lights(&sw, &[l1, l2], &mut counter_rng()).unwrap();
    let again = s.pairwise_keys(&sw).unwrap();
    assert_eq!(again.len(), 2);
    assert_eq!(ids(&again[0]), ids(&all[0]));
    assert_eq!(ids(&again[1]), ids(&all[1]));
    // A source that only ever repeats an ID in use ends with an error,
    // not a loop.
    let l3 = dev(&mut s, 12, "light");
    let mut stuck = |b: &mut [u8]| {
        if b.len() == replay[1].len() {
            b.copy_from_slice(&replay[1]);
        }
    };
    assert!(s.grant_lights(&sw, &[l3], &mut stuck).is_err());
    assert!(s.pairwise_keys(&l3).unwrap().is_empty());
}

#[test]
fn migrates_a_version_1_domain() {
    let (_d, p) = tmp("v1");
    {
        let c = Connection::open(&p).unwrap();
        c.execute_batch(SCHEMA_V1).unwrap();
        c.execute_batch(
            "INSERT INTO obt VALUES (1, '11111111-2222-4333-8444-555555555555', 'old');
             INSERT INTO devices (uuid, name, endpoint, role, state, owner_psk)
               VALUES ('00000000-0000-0000-0000-000000000005', 'l', 'coap://127.0.0.1:1', 'light', 'provisioned', x'07070707070707070707070707070707');
             PRAGMA user_version = 1;",
        )
        .unwrap();
    }
    let mut s = Store::open(&p).unwrap();
    assert_eq!(s.devices().unwrap()[0].last_seen, None);
    s.touch(&Uuid::from_u128(5), Some("coap://127.0.0.1:2"))
        .unwrap();
    let d = s.device("l").unwrap();
    assert!(d.last_seen.is_some());
    assert_eq!(d.endpoint, "coap://127.0.0.1:2");
    let v: i64 = s
        .conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(v, SCHEMA_VERSION);
}

/// The typed role and state are the schema's text, unchanged: a domain
/// written before the types reads back, and what is written now is the
/// same words in the same columns. A row with an unknown word is refused
/// as corrupt, not read as something else.
#[test]
fn role_and_state_are_the_same_sql_text() {
    let (_d, p) = tmp("text");
    let mut s = Store::init(&p, Uuid::from_u128(1), "hall").unwrap();
    let sw = dev(&mut s, 20, "switch");
    let l = dev(&mut s, 10, "light");
    s.set_state(&sw, DeviceState::Stale).unwrap();
    s.set_state(&l, DeviceState::Provisioned).unwrap();
    let raw = |s: &Store, u: &Uuid| -> (String, String) {
        s.conn
            .query_row(
                "SELECT role, state FROM devices WHERE uuid = ?1",
                params![u.to_string()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap()
    };
    assert_eq!(raw(&s, &sw), ("switch".into(), "stale".into()));
    assert_eq!(raw(&s, &l), ("light".into(), "provisioned".into()));
    let d = s.device("switch-20").unwrap();
    assert_eq!((d.role, d.state), (DeviceRole::Switch, DeviceState::Stale));
    // The onboarding record and its settlement use the same words.
    let rec = DeviceRecord {
        uuid: Uuid::from_u128(30),
        name: "new".into(),
        endpoint: "coap://127.0.0.1:30".into(),
        role: DeviceRole::Light,
        state: DeviceState::Onboarding,
        last_seen: None,
    };
    s.add_device(&rec, &[3; 16]).unwrap();
    assert_eq!(raw(&s, &rec.uuid).1, "onboarding");
    s.forget_onboarding(&rec.uuid).unwrap();
    assert!(s.device("new").is_err());
    s.conn
        .execute(
            "UPDATE devices SET state = 'lost' WHERE uuid = ?1",
            params![l.to_string()],
        )
        .unwrap();
    assert!(matches!(s.devices(), Err(StoreError::Sqlite { .. })));
}

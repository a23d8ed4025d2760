//! The engine's external-member calls: the CCS file, registration,
//! material contents and its refusals, what our lights are given for an
//! external switch, removal with rekey, and the calls that would reach a
//! device refused for an external member.
use super::*;
use crate::engine::{inspect, no_progress, offboard};
use crate::plan::desired;
use crate::store::StoreError;
use ssm_ocf::cred::CredType;
use ssm_ocf::group_cred::ccs_of_ed25519;
use ssm_ocf::security::acl2::AceSubject;
use uuid::Uuid;

fn ccs(seed: u8) -> Vec<u8> {
    let pk = ed25519_dalek::SigningKey::from_bytes(&[seed; 32])
        .verifying_key()
        .to_bytes();
    ccs_of_ed25519(&pk).to_vec()
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

#[test]
fn the_authcred_file_is_hex_or_raw_and_checked() {
    let c = ccs(1);
    let spaced: String = hex::encode(&c)
        .as_bytes()
        .chunks(8)
        .map(|w| format!("{}\n ", std::str::from_utf8(w).unwrap()))
        .collect();
    assert_eq!(read_authcred(spaced.as_bytes()).unwrap(), c);
    assert_eq!(read_authcred(&c).unwrap(), c);
    let mut p256 = c.clone();
    p256[10] = 0x01; // crv 1 (P-256)
    for bad in [&p256[..], b"", b"a1b", &c[..20]] {
        let e = read_authcred(bad).unwrap_err();
        assert!(
            matches!(e, EngineError::BadAuthCred(_)) && e.is_usage(),
            "{e}"
        );
    }
    assert!(read_authcred(&p256)
        .unwrap_err()
        .to_string()
        .contains("Ed25519"));
}

/// A group-oscore group with `aeadalg` of our light and switch, an
/// external switch and an external light: our light's credentials for the
/// external switch; each member's material; the refusals.
#[tokio::test]
async fn material_and_what_our_lights_hold() {
    use DeviceRole::{Light, Switch};
    let d = ssm_testkit::TempDir::new("engine-external");
    let mut s = Store::init(&d.join("domain.sqlite"), Uuid::from_u128(1), "t").unwrap();
    let l = our(&mut s, 10, Light);
    let sw = our(&mut s, 20, Switch);
    s.set_auth_cred(&sw, &ccs(2)).unwrap();
    let e = external_add(&mut s, "bms", Switch, &ccs(5)).unwrap();
    assert_eq!(e.state, DeviceState::External);
    let xl = external_add(&mut s, "ext-light", Light, &ccs(6)).unwrap();
    let lone = external_add(&mut s, "lone", Switch, &ccs(7)).unwrap();
    assert!(matches!(
        external_add(&mut s, "two words", Switch, &ccs(8)),
        Err(EngineError::BadName(_))
    ));
    assert!(matches!(
        external_add(&mut s, "x", Switch, &[0xa0]),
        Err(EngineError::BadAuthCred(_))
    ));
    assert!(matches!(
        external_add(&mut s, "bms", Light, &ccs(9)),
        Err(EngineError::Store(StoreError::DuplicateName { .. }))
    ));
    super::super::group_create_with(&mut s, "hall", false, Profile::GroupOscore, Some(10)).unwrap();
    super::super::group_create(&mut s, "east", false).unwrap();
    let hall = s.group_info("hall").unwrap().id;
    s.add_to_group(
        "hall",
        &[(l, Light), (xl.uuid, Light), (sw, Switch), (e.uuid, Switch)],
        &mut rng,
    )
    .unwrap();

    // Our light: a group-mode recipient credential per switch, with
    // aeadalg 10, the external switch's CCS and an ACE for its UUID; no
    // pair-wise key with it.
    let want = desired(&s, &l).unwrap();
    let of = |u: &Uuid| -> Vec<&ssm_ocf::cred::Credential> {
        want.creds
            .iter()
            .filter(|c| c.subjectuuid == u.to_string())
            .collect()
    };
    let ext = of(&e.uuid);
    assert_eq!(ext.len(), 1, "{:?}", want.creds);
    assert_eq!(ext[0].credtype, CredType::GroupOscoreRecipient);
    let g = ext[0].oscore.as_ref().unwrap().group.as_ref().unwrap();
    assert_eq!(g.aeadalg, Some(10));
    assert_eq!(g.authcred.as_deref(), Some(hex::encode(ccs(5)).as_str()));
    assert_eq!(of(&sw).len(), 2, "a recipient and a pair-wise credential");
    assert!(want
        .aces
        .iter()
        .any(|a| a.subject == AceSubject::Uuid { uuid: e.uuid }));
    assert!(want.creds.iter().all(|c| c.oscore().is_ok()));

    // The external switch's material.
    let m = material(&mut s, "bms", "hall").unwrap();
    let k = s.group_state(hall).unwrap().unwrap();
    assert_eq!(
        (m.group.as_str(), m.member.as_str(), m.role),
        ("hall", "bms", Switch)
    );
    assert_eq!(m.epoch, 1);
    assert_eq!(m.gid, gid_of(hall as u32, 1));
    assert_eq!(*m.secret, *k.secret);
    assert_eq!(
        Some(m.sender_id.clone()),
        s.sender_id_in(hall, &e.uuid).unwrap()
    );
    assert_eq!(
        (m.aead_alg, m.enc_alg, m.sign_alg, m.salt.clone()),
        (Some(10), 10, -8, None)
    );
    assert_eq!(m.gm_cred, s.gm_cred(&mut rng).unwrap());
    assert_eq!(m.own_ccs, ccs(5));
    let sw_sid = s.sender_id_in(hall, &sw).unwrap().unwrap();
    assert_eq!(
        m.peers,
        vec![(sw_sid.clone(), ccs(2))],
        "ext-light has no Sender ID yet"
    );
    let dbg = format!("{m:?}");
    assert!(
        !dbg.contains(&hex::encode(*k.secret)) && !dbg.contains("66, "),
        "{dbg}"
    );
    // The external light's: a Sender ID of its own, the switches as peers.
    let ml = material(&mut s, "ext-light", "hall").unwrap();
    assert_ne!(ml.sender_id, m.sender_id);
    assert_ne!(ml.sender_id, sw_sid);
    let mut peers: Vec<String> = ml.peers.iter().map(|p| p.0.clone()).collect();
    peers.sort();
    let mut want_peers = vec![m.sender_id.clone(), sw_sid.clone()];
    want_peers.sort();
    assert_eq!(peers, want_peers);
    assert_eq!(
        material(&mut s, "ext-light", "hall").unwrap().sender_id,
        ml.sender_id
    );

    // Refusals.
    assert!(matches!(
        material(&mut s, "light-10", "hall"),
        Err(EngineError::NotExternal(_))
    ));
    assert!(matches!(
        material(&mut s, "bms", "east"),
        Err(EngineError::NotGroupMode(_))
    ));
    assert!(matches!(
        material(&mut s, "lone", "hall"),
        Err(EngineError::NotInGroup { .. })
    ));
    assert!(matches!(
        material(&mut s, "nobody", "hall"),
        Err(EngineError::Store(StoreError::UnknownDevice(_)))
    ));
    assert!(matches!(
        material(&mut s, "bms", "north"),
        Err(EngineError::Store(StoreError::UnknownGroup(_)))
    ));
    let reach = Reach::link("lo", 1, false);
    assert!(matches!(
        offboard(&mut s, "bms", &reach, 1, &no_progress).await,
        Err(EngineError::IsExternal(_))
    ));
    assert!(matches!(
        inspect(&s, "bms", std::time::Duration::from_millis(10)).await,
        Err(EngineError::IsExternal(_))
    ));
    assert!(matches!(
        external_remove(&mut s, "light-10", &reach, 1, &no_progress).await,
        Err(EngineError::NotExternal(_))
    ));
    assert!(s.device("bms").is_ok() && s.device("light-10").is_ok());

    // A group of external members only: removal rekeys it, nothing to
    // sync (the OBT never reaches them); the remaining member's material
    // is of the new epoch.
    s.create_group_with("solo", false, Profile::GroupOscore, None)
        .unwrap();
    s.add_to_group("solo", &[(xl.uuid, Light), (lone.uuid, Switch)], &mut rng)
        .unwrap();
    let before = material(&mut s, "ext-light", "solo").unwrap();
    assert_eq!(before.aead_alg, None);
    let r = external_remove(&mut s, "lone", &reach, 1, &no_progress)
        .await
        .unwrap();
    assert_eq!(r.rekeyed, vec![("solo".to_string(), 2)]);
    assert!(r.synced.is_empty(), "{:?}", r.synced);
    let after = material(&mut s, "ext-light", "solo").unwrap();
    assert_eq!(after.epoch, 2);
    assert_ne!(after.gid, before.gid);
    assert_ne!(*after.secret, *before.secret);
    assert_ne!(after.sender_id, before.sender_id);
    assert!(after.peers.is_empty());
    assert_eq!(s.group_info("hall").unwrap().epoch, 1, "hall untouched");
}

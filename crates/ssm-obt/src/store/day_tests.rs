//! The store's part of the commissioning day: unique names and rename,
//! the read-only view beside a writer, where a device came from, export
//! and import.
use super::*;
use ssm_testkit::TempDir;

fn rec(n: u128, name: &str) -> DeviceRecord {
    DeviceRecord {
        uuid: Uuid::from_u128(n),
        name: name.into(),
        endpoint: format!("coap://127.0.0.1:{n}"),
        role: DeviceRole::Light,
        state: DeviceState::Owned,
        last_seen: None,
    }
}

#[test]
fn names_are_unique_and_renames_keep_them_so() {
    let d = TempDir::new("store-names");
    let p = d.join("domain.sqlite");
    let mut s = Store::init(&p, Uuid::from_u128(1), "hall").unwrap();
    s.add_device(&rec(10, "light-0"), &[1; 16]).unwrap();
    let e = s.add_device(&rec(11, "light-0"), &[2; 16]).unwrap_err();
    assert!(
        matches!(&e, StoreError::DuplicateName { name, uuid } if name == "light-0" && *uuid == Uuid::from_u128(10)),
        "{e}"
    );
    // Re-recording the same device (same UUID) is an update, not a clash.
    s.add_device(&rec(10, "light-0"), &[3; 16]).unwrap();
    assert_eq!(*s.owner_psk(&Uuid::from_u128(10)).unwrap(), [3; 16]);
    s.add_device(&rec(11, "light-1"), &[2; 16]).unwrap();
    assert!(matches!(
        s.rename("light-1", "light-0"),
        Err(StoreError::DuplicateName { .. })
    ));
    let before = s.rename("light-1", "hall-north").unwrap();
    assert_eq!(before.name, "light-1");
    assert_eq!(s.device("hall-north").unwrap().uuid, Uuid::from_u128(11));
    assert!(s.device("light-1").is_err());
    // A name cannot shadow a UUID.
    s.rename("hall-north", &Uuid::from_u128(10).to_string())
        .unwrap();
    assert_eq!(
        s.device(&Uuid::from_u128(10).to_string()).unwrap().name,
        "light-0"
    );
    // The sheet's UUID (before the owner transfer) finds the device.
    let was = Uuid::from_u128(0xabc);
    s.set_onboarded_from(&Uuid::from_u128(10), &was).unwrap();
    assert_eq!(
        s.by_onboarded_from(&was).unwrap().map(|d| d.name),
        Some("light-0".into())
    );
    assert!(s
        .by_onboarded_from(&Uuid::from_u128(0xdef))
        .unwrap()
        .is_none());
}

#[test]
fn read_only_view_beside_a_writer() {
    let d = TempDir::new("store-ro");
    let p = d.join("domain.sqlite");
    let mut w = Store::init(&p, Uuid::from_u128(1), "hall").unwrap();
    w.add_device(&rec(10, "light-0"), &[1; 16]).unwrap();
    assert!(matches!(Store::open(&p), Err(StoreError::Locked(_))));
    assert!(Store::locked_by_other(&p));
    let r = Store::open_read_only(&p).unwrap();
    assert!(r.is_read_only() && !w.is_read_only());
    assert_eq!(r.devices().unwrap().len(), 1);
    // The writer goes on; the reader sees its commits.
    w.add_device(&rec(11, "light-1"), &[2; 16]).unwrap();
    assert_eq!(r.devices().unwrap().len(), 2);
    assert!(r.audit("x", "y").is_err(), "a read-only view cannot write");
    drop(w);
    assert!(!Store::locked_by_other(&p));
    assert!(matches!(
        Store::open_read_only(&d.join("none.sqlite")),
        Err(StoreError::Missing(_))
    ));
}

#[test]
fn export_import_round_trip() {
    let d = TempDir::new("store-backup");
    let p = d.join("domain.sqlite");
    let mut s = Store::init(&p, Uuid::from_u128(1), "hall").unwrap();
    s.add_device(&rec(10, "light-0"), &[7; 16]).unwrap();
    let sealed = s.export(b"pass phrase").unwrap();
    assert!(
        !sealed.windows(16).any(|w| w == [7u8; 16]),
        "no owner PSK in clear"
    );
    let f = d.join("x.ssmdom");
    let q = d.join("fresh/domain.sqlite");
    assert!(matches!(
        Store::import(&q, &sealed, b"wrong", &f, false),
        Err(backup::BackupError::WrongPassphrase)
    ));
    assert!(!q.exists(), "nothing written on a wrong passphrase");
    let t = Store::import(&q, &sealed, b"pass phrase", &f, false).unwrap();
    assert_eq!(t.obt().unwrap(), (Uuid::from_u128(1), "hall".to_string()));
    assert_eq!(*t.owner_psk(&Uuid::from_u128(10)).unwrap(), [7; 16]);
    drop(t);
    assert!(matches!(
        Store::import(&q, &sealed, b"pass phrase", &f, false),
        Err(backup::BackupError::Exists(_))
    ));
    // --force replaces it, not while another OBT holds it.
    let held = Store::open(&q).unwrap();
    assert!(matches!(
        Store::import(&q, &sealed, b"pass phrase", &f, true),
        Err(backup::BackupError::Store(StoreError::Locked(_)))
    ));
    drop(held);
    Store::import(&q, &sealed, b"pass phrase", &f, true).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&q).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}

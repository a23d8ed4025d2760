use super::*;
use ssm_oscore::SequenceNumber;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ssm-store-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

/// Under the usual umask 022 files come out 0600 and directories 0700,
/// also over an old 0644 file and a stale 0644 temporary file.
#[cfg(unix)]
#[test]
fn owner_only_files_and_dirs() {
    use std::os::unix::fs::PermissionsExt;
    let base = std::env::temp_dir().join(format!("ssm-store-modes-{}", std::process::id()));
    let _ = fs::remove_dir_all(&base);
    let dir = base.join("a/b");
    create_private_dir(&dir).unwrap();
    assert_eq!(mode(&base.join("a")), 0o700);
    assert_eq!(mode(&dir), 0o700);
    let p = dir.join("svr.json");
    atomic_write(&p, b"{}").unwrap();
    assert_eq!(mode(&p), 0o600);
    fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
    let stale = dir.join(format!("svr.json.tmp{}", std::process::id()));
    fs::write(&stale, b"old").unwrap();
    fs::set_permissions(&stale, fs::Permissions::from_mode(0o644)).unwrap();
    atomic_write(&p, b"{}").unwrap();
    assert_eq!(mode(&p), 0o600, "the rewrite is private again");
    assert!(state_dir_open_to_others(&dir).is_empty());
    // A directory holding only the identity (no secret) is not
    // reported; the identity file itself is.
    let id_only = base.join("id-only");
    create_private_dir(&id_only).unwrap();
    atomic_write(&id_only.join("device.json"), b"{}").unwrap();
    fs::set_permissions(&id_only, fs::Permissions::from_mode(0o755)).unwrap();
    assert!(state_dir_open_to_others(&id_only).is_empty());
    fs::set_permissions(
        id_only.join("device.json"),
        fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    assert_eq!(state_dir_open_to_others(&id_only).len(), 1);
    // What is found and how it is reported.
    fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(dir.join("notes.txt"), b"not ours").unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    let w: Vec<String> = state_dir_open_to_others(&dir)
        .iter()
        .map(ToString::to_string)
        .collect();
    let (d, f) = (dir.display(), p.display());
    assert_eq!(
        w,
        [
            format!("{d} is readable by others (mode 0755): run chmod 700 {d}"),
            format!("{f} is readable by others (mode 0644): run chmod 600 {f}"),
        ]
    );
    fs::remove_dir_all(&base).unwrap();
}

#[test]
fn state_file_names() {
    for n in [
        "svr.json",
        "creds.json",
        "device.json",
        "pin",
        "ssn-3",
        "ssn-3.tmp77",
        "svr.json.tmp12",
        "ssm-replay-floors.json",
        "floors.journal",
        "ssn-3.lock",
    ] {
        assert!(is_state_file(n), "{n}");
    }
    for n in ["notes.txt", "pins.txt", "pinboard", "svr.jsonx"] {
        assert!(!is_state_file(n), "{n}");
    }
}

#[test]
fn sequence_survives_restart() {
    let dir = scratch("restart");
    let path = dir.join("ssn");
    let mut store = FileSequenceStore::new(&path);
    let mut s = SequenceNumber::resume(store.load().unwrap(), 16);
    let mut last = 0;
    for _ in 0..40 {
        s.reserve(&mut store).unwrap();
        last = s.take().unwrap().value();
    }
    assert_eq!(last, 39);
    // "Crash" (SIGKILL: nothing flushed) and resume in the same boot: the
    // counter continues without a gap.
    let mut store2 = FileSequenceStore::new(&path);
    let mut s2 = SequenceNumber::resume(store2.load().unwrap(), 16);
    s2.reserve(&mut store2).unwrap();
    assert_eq!(s2.take().unwrap().value(), last + 1);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn after_a_reboot_resumes_above_the_durable_limit() {
    let dir = scratch("reboot");
    let path = dir.join("ssn");
    let mut store = FileSequenceStore::new(&path);
    let mut s = SequenceNumber::resume(0, 16);
    for _ in 0..20 {
        s.reserve(&mut store).unwrap();
        s.take().unwrap();
    }
    drop(store);
    // Another boot: the page-cache counter is not trusted.
    fs::write(
        with_suffix(&path, ".lock"),
        "another-boot 00000000000000000019\n",
    )
    .unwrap();
    let limit = read_limit(&path).unwrap();
    assert_eq!(limit, 32, "reserved 16 ahead twice");
    let mut store = FileSequenceStore::new(&path);
    assert_eq!(store.load().unwrap(), 32);
    let mut s = SequenceNumber::resume(store.load().unwrap(), 16);
    s.reserve(&mut store).unwrap();
    assert_eq!(s.take().unwrap().value(), 32);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn concurrent_users_never_get_the_same_number() {
    let dir = scratch("concurrent");
    let path = dir.join("ssn");
    // Each thread opens its own lock file description, as separate
    // processes do: flock excludes them from each other.
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let path = path.clone();
            std::thread::spawn(move || {
                let mut store = FileSequenceStore::new(&path);
                let mut s = SequenceNumber::resume(store.load().unwrap(), 4);
                (0..200)
                    .map(|_| {
                        s.reserve(&mut store).unwrap();
                        s.take().unwrap().value()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut all: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let n = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), n, "a number was handed out twice");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn stale_temporaries_are_removed_and_files_are_private() {
    let dir = scratch("tmp");
    let path = dir.join("ssn-3");
    fs::write(dir.join("ssn-3.tmp1234"), "99\n").unwrap();
    fs::write(dir.join("ssn-30.tmp77"), "1\n").unwrap(); // another credential's
    let mut store = FileSequenceStore::new(&path);
    let mut s = SequenceNumber::resume(0, 4);
    s.reserve(&mut store).unwrap();
    assert!(!dir.join("ssn-3.tmp1234").exists());
    assert!(dir.join("ssn-30.tmp77").exists());
    assert!(!dir.join("ssn-3.tmp").exists(), "renamed over the target");
    #[cfg(unix)]
    for f in ["ssn-3", "ssn-3.lock"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(dir.join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
    fs::remove_dir_all(&dir).unwrap();
}

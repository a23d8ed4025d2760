//! A device's or client's state directory and its file layout, in one
//! place for the device runtime, the clients and the CLI:
//!
//! | file | what |
//! |---|---|
//! | `device.json` | identity ([`Identity`]: the UUID to start with, the name) |
//! | `creds.json` | `/oic/sec/cred` in JSON (pre-shared credentials) |
//! | `svr.json` | the security resources (doxm, pstat, cred, acl2, sp) |
//! | `ssm-replay-floors.json` | the SSM replay floors, persisted before apply |
//! | `pin` | the Random PIN shown while unowned (RFOTM) |
//! | `device.lock` | held by the one device running on the directory |
//! | `ssn-<credid>` | a sender's sequence numbers ([`FileSequenceStore`]) |
//! | `group-signing-key` | the device's own Ed25519 private key (Group OSCORE), generated here, never sent |
//! | `resources.json` | the application resources' last state (a light's on/off) |
//!
//! Every file is owner-only ([`crate::store`]).
use crate::store::{atomic_write, FileSequenceStore};
use ssm_ocf::cred::CredResource;
use ssm_ocf::security::SecurityState;
use ssm_ocf::ssm::ReplayFloors;
use std::io;
use std::path::{Path, PathBuf};

/// A state file that exists but cannot be decoded.
#[derive(Debug)]
pub struct Corrupt {
    /// The file.
    pub path: PathBuf,
    /// Why it does not decode.
    pub error: serde_json::Error,
}

impl std::fmt::Display for Corrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.error)
    }
}

impl std::error::Error for Corrupt {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

impl From<Corrupt> for io::Error {
    fn from(c: Corrupt) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, c)
    }
}

/// Loading a state file: it cannot be read, or it does not decode.
#[derive(Debug)]
pub enum LoadError {
    /// Reading failed.
    Io(io::Error),
    /// It does not decode.
    Corrupt(Corrupt),
    /// `creds.json` decodes but breaks the credential rules.
    Credentials {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        error: ssm_ocf::cred::CredError,
    },
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::Io(e) => e.fmt(f),
            LoadError::Corrupt(c) => c.fmt(f),
            LoadError::Credentials { path, error } => write!(f, "in {}: {error}", path.display()),
        }
    }
}

impl std::error::Error for LoadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LoadError::Io(e) => Some(e),
            LoadError::Corrupt(c) => Some(c),
            LoadError::Credentials { error, .. } => Some(error),
        }
    }
}

impl From<io::Error> for LoadError {
    fn from(e: io::Error) -> Self {
        LoadError::Io(e)
    }
}

impl From<LoadError> for io::Error {
    fn from(e: LoadError) -> io::Error {
        match e {
            LoadError::Io(e) => e,
            LoadError::Corrupt(c) => c.into(),
            e @ LoadError::Credentials { .. } => {
                io::Error::new(io::ErrorKind::InvalidData, e.to_string())
            }
        }
    }
}

/// `device.json`: who the device is when it starts. After an owner
/// transfer the current UUID is `doxm.deviceuuid` in `svr.json` (the OBT
/// gives the device a new one); this one is where a new or reset device
/// starts from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Identity {
    /// `doxm.deviceuuid` / `/oic/d` `di` of an unowned device.
    pub deviceuuid: uuid::Uuid,
    /// The device name (`n` of `/oic/d` and `/oic/con`).
    pub name: String,
}

/// A state directory (see the module doc for its files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// The state directory at `root` (nothing is created yet).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        StateDir { root: root.into() }
    }

    /// The directory itself.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Creates the directory (owner-only) if it does not exist.
    pub fn create(&self) -> io::Result<()> {
        crate::store::create_private_dir(&self.root)
    }

    /// `device.json`: the identity.
    pub fn identity_path(&self) -> PathBuf {
        self.root.join("device.json")
    }

    /// `creds.json`: pre-shared credentials.
    pub fn creds_path(&self) -> PathBuf {
        self.root.join("creds.json")
    }

    /// `svr.json`: the security resources.
    pub fn svr_path(&self) -> PathBuf {
        self.root.join("svr.json")
    }

    /// `ssm-replay-floors.json`: the SSM replay floors.
    pub fn floors_path(&self) -> PathBuf {
        self.root.join("ssm-replay-floors.json")
    }

    /// `pin`: the Random PIN shown while unowned.
    pub fn pin_path(&self) -> PathBuf {
        self.root.join("pin")
    }

    /// `device.lock`: held by the running device.
    pub fn lock_path(&self) -> PathBuf {
        self.root.join("device.lock")
    }

    /// `group-signing-key`: the device's own Ed25519 private key (the
    /// RFC 8032 seed, hex) for Group OSCORE group mode.
    pub fn signing_key_path(&self) -> PathBuf {
        self.root.join("group-signing-key")
    }

    /// The device's Group OSCORE private key; `None` if it has none yet.
    pub fn load_signing_key(&self) -> io::Result<Option<zeroize::Zeroizing<[u8; 32]>>> {
        let text = match std::fs::read_to_string(self.signing_key_path()) {
            Ok(t) => zeroize::Zeroizing::new(t),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut k = zeroize::Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(text.trim(), &mut k[..]).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} is not a 32-byte hex key",
                    self.signing_key_path().display()
                ),
            )
        })?;
        Ok(Some(k))
    }

    /// The device's Group OSCORE private key, generated on first use from
    /// the system's CSPRNG and written owner-only (0600, fsynced) before it
    /// is used: the key pair is made on the device and the private key
    /// never leaves it.
    pub fn load_or_create_signing_key(&self) -> io::Result<zeroize::Zeroizing<[u8; 32]>> {
        if let Some(k) = self.load_signing_key()? {
            return Ok(k);
        }
        let k = zeroize::Zeroizing::new(crate::random_bytes::<32>());
        let text = zeroize::Zeroizing::new(hex::encode(&k[..]));
        atomic_write(&self.signing_key_path(), text.as_bytes())?;
        Ok(k)
    }

    /// `resources.json`: the last state of the application resources.
    pub fn resources_path(&self) -> PathBuf {
        self.root.join("resources.json")
    }

    /// Reads `device.json`, if there is one.
    pub fn load_identity(&self) -> Result<Option<Identity>, LoadError> {
        read_json(&self.identity_path())
    }

    /// Writes `device.json` atomically (0600).
    pub fn save_identity(&self, id: &Identity) -> io::Result<()> {
        let json = serde_json::to_string_pretty(id).map_err(io::Error::other)?;
        atomic_write(&self.identity_path(), json.as_bytes())
    }

    /// Persists a new device name in `device.json` (the owner renamed the
    /// device through `/oic/con`); `current` is the device's UUID now.
    pub fn save_name(&self, name: &str, current: uuid::Uuid) -> io::Result<()> {
        let mut id = self.load_identity()?.unwrap_or(Identity {
            deviceuuid: current,
            name: String::new(),
        });
        id.name = name.into();
        self.save_identity(&id)
    }

    /// The last persisted representation of each application resource
    /// (href → JSON); none yet is an empty map.
    pub fn load_resources(
        &self,
    ) -> Result<std::collections::BTreeMap<String, serde_json::Value>, LoadError> {
        Ok(read_json(&self.resources_path())?.unwrap_or_default())
    }

    /// Writes the representations of the application resources atomically
    /// (0600): what a light restores at power-on.
    pub fn save_resources(
        &self,
        reps: &std::collections::BTreeMap<String, serde_json::Value>,
    ) -> io::Result<()> {
        let json = serde_json::to_vec(reps).map_err(io::Error::other)?;
        atomic_write(&self.resources_path(), &json)
    }

    /// Factory reset of a state directory whose device is not running (the
    /// caller holds [`Self::lock`]): every secret and every trace of the
    /// secure domain goes (credentials, ACLs, owner, pstat/doxm: an
    /// unowned device again; the SSM replay floors, every sender's
    /// sequence numbers; the PIN; the resources' state; its Group OSCORE
    /// signing key), and the device
    /// gets the new identity `new_uuid` with its name kept (`default_name`
    /// if it had none). Its next start shows a new PIN. Returns the new
    /// identity.
    ///
    /// Files are removed, not overwritten: on a journaling or copy-on-write
    /// file system an overwrite would not reach the old blocks either.
    pub fn factory_reset(&self, new_uuid: uuid::Uuid, default_name: &str) -> io::Result<Identity> {
        let name = match self.load_identity() {
            Ok(Some(id)) => id.name,
            // A corrupt device.json is reset too.
            _ => default_name.to_string(),
        };
        let fixed = [
            self.svr_path(),
            self.creds_path(),
            self.floors_path(),
            self.pin_path(),
            self.resources_path(),
            // Its Group OSCORE key pair: a new one is made at the next start.
            self.signing_key_path(),
        ];
        for p in fixed {
            remove_if_present(&p)?;
        }
        for entry in std::fs::read_dir(&self.root)? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with("ssn-") {
                remove_if_present(&entry.path())?;
            }
        }
        let id = Identity {
            deviceuuid: new_uuid,
            name,
        };
        self.save_identity(&id)?;
        self.save_security(&SecurityState::new(new_uuid))?;
        std::fs::File::open(&self.root)?.sync_all()?;
        Ok(id)
    }

    /// `ssn-<credid>`: the sequence numbers of the sender context of
    /// credential `credid`.
    pub fn sequence_path(&self, credid: u32) -> PathBuf {
        self.root.join(format!("ssn-{credid}"))
    }

    /// The sequence-number store of credential `credid`.
    pub fn sequence_store(&self, credid: u32) -> FileSequenceStore {
        FileSequenceStore::new(self.sequence_path(credid))
    }

    /// Reads `svr.json`, if there is one (it is never created here; see
    /// [`Self::load_or_provision_security`] for that).
    pub fn load_security(&self) -> Result<Option<SecurityState>, LoadError> {
        read_json(&self.svr_path())
    }

    /// The device's credentials: `svr.json`'s if an onboarding tool
    /// provisioned some, else the pre-shared `creds.json`; neither is an
    /// empty set.
    pub fn load_creds(&self) -> Result<CredResource, LoadError> {
        if let Some(s) = self.load_security()? {
            if !s.cred.creds.is_empty() {
                return Ok(s.cred);
            }
        }
        let path = self.creds_path();
        match std::fs::read_to_string(&path) {
            Ok(s) => {
                CredResource::from_json(&s).map_err(|error| LoadError::Credentials { path, error })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(CredResource::default()),
            Err(e) => Err(LoadError::Io(e)),
        }
    }

    /// The security resources a device starts with: `svr.json` if present;
    /// otherwise, with pre-shared credentials in `creds.json`, an owned
    /// device in normal operation with the default ACEs for `app_hrefs`
    /// (saved as `svr.json`; the policy is `ssm_ocf::provision`'s);
    /// otherwise a new, unowned device waiting for an onboarding tool.
    pub fn load_or_provision_security(
        &self,
        device_uuid: uuid::Uuid,
        app_hrefs: &[&str],
    ) -> Result<SecurityState, LoadError> {
        if let Some(s) = self.load_security()? {
            return Ok(s);
        }
        let creds = self.load_creds()?;
        if creds.creds.is_empty() {
            return Ok(SecurityState::new(device_uuid));
        }
        let owner: uuid::Uuid = creds.rowneruuid.parse().unwrap_or(uuid::Uuid::nil());
        let aces = ssm_ocf::provision::default_aces(&creds, app_hrefs, true);
        let s = ssm_ocf::provision::provisioned_state(device_uuid, owner, creds, aces);
        self.save_security(&s)?;
        Ok(s)
    }

    /// Persists the security resources atomically to `svr.json`.
    pub fn save_security(&self, s: &SecurityState) -> io::Result<()> {
        atomic_write(
            &self.svr_path(),
            serde_json::to_string_pretty(s)
                .map_err(io::Error::other)?
                .as_bytes(),
        )
    }

    /// Reads the replay floors; none persisted yet is an empty set.
    pub fn load_floors(&self) -> Result<ReplayFloors, LoadError> {
        Ok(read_json(&self.floors_path())?.unwrap_or_default())
    }

    /// Writes the PIN file (0600).
    pub fn save_pin(&self, pin: &str) -> io::Result<()> {
        atomic_write(&self.pin_path(), pin.as_bytes())
    }

    /// Removes the PIN file (none is fine).
    pub fn remove_pin(&self) {
        let _ = std::fs::remove_file(self.pin_path());
    }

    /// Takes the directory for one running device: a second device on the
    /// same dir would keep its own copy of the security state and replay
    /// floors and answer with the same sequence numbers' contexts. (Clients
    /// on the dir, `ssm client`, share it safely through the sequence
    /// store's lock.) The returned file holds the lock until dropped.
    pub fn lock(&self) -> io::Result<std::fs::File> {
        use std::io::{Read, Seek, Write};
        let mut f = crate::store::private_options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(self.lock_path())?;
        match f.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = f.read_to_string(&mut pid);
                let pid = pid.trim();
                return Err(io::Error::new(
                    io::ErrorKind::ResourceBusy,
                    format!(
                        "{} is in use by another running device{}: stop it first (one device per state dir)",
                        self.root.display(),
                        if pid.is_empty() {
                            String::new()
                        } else {
                            format!(" (pid {pid})")
                        }
                    ),
                ));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
        f.set_len(0)?;
        f.seek(io::SeekFrom::Start(0))?;
        writeln!(f, "{}", std::process::id())?;
        Ok(f)
    }
}

fn remove_if_present(p: &Path) -> io::Result<()> {
    match std::fs::remove_file(p) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// `path` decoded from JSON; `None` if it does not exist.
fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, LoadError> {
    match std::fs::read_to_string(path) {
        Ok(s) => serde_json::from_str(&s).map(Some).map_err(|error| {
            LoadError::Corrupt(Corrupt {
                path: path.to_path_buf(),
                error,
            })
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(LoadError::Io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> StateDir {
        let d = std::env::temp_dir().join(format!("ssm-statedir-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let d = StateDir::new(d);
        d.create().unwrap();
        d
    }

    #[test]
    fn layout() {
        let d = StateDir::new("/s");
        assert_eq!(d.svr_path(), Path::new("/s/svr.json"));
        assert_eq!(d.creds_path(), Path::new("/s/creds.json"));
        assert_eq!(d.identity_path(), Path::new("/s/device.json"));
        assert_eq!(d.floors_path(), Path::new("/s/ssm-replay-floors.json"));
        assert_eq!(d.pin_path(), Path::new("/s/pin"));
        assert_eq!(d.lock_path(), Path::new("/s/device.lock"));
        assert_eq!(d.sequence_path(7), Path::new("/s/ssn-7"));
    }

    #[test]
    fn missing_files_are_empty_corrupt_ones_errors() {
        let d = tmp("load");
        assert!(d.load_security().unwrap().is_none());
        assert!(d.load_floors().unwrap().0.is_empty());
        std::fs::write(d.svr_path(), "{").unwrap();
        std::fs::write(d.floors_path(), "[").unwrap();
        let e = d.load_security().unwrap_err();
        assert!(matches!(e, LoadError::Corrupt(_)), "{e}");
        assert!(e.to_string().contains("svr.json"), "{e}");
        assert!(matches!(d.load_floors(), Err(LoadError::Corrupt(_))));
        let s = SecurityState::new(ssm_ocf::Uuid::from_u128(1));
        d.save_security(&s).unwrap();
        assert_eq!(
            d.load_security().unwrap().unwrap().device_uuid(),
            s.device_uuid()
        );
        let _ = std::fs::remove_dir_all(d.path());
    }

    #[test]
    fn factory_reset_leaves_an_unowned_device_with_a_new_uuid() {
        let d = tmp("reset");
        let old = uuid::Uuid::from_u128(1);
        d.save_identity(&Identity {
            deviceuuid: old,
            name: "hall-1".into(),
        })
        .unwrap();
        let mut owned = SecurityState::new(uuid::Uuid::from_u128(2));
        owned.doxm.owned = true;
        d.save_security(&owned).unwrap();
        for f in [
            "creds.json",
            "ssm-replay-floors.json",
            "pin",
            "resources.json",
            "ssn-3",
            "ssn-3.lock",
            "ssn-4",
        ] {
            std::fs::write(d.path().join(f), "x").unwrap();
        }
        std::fs::write(d.path().join("notes.txt"), "mine").unwrap();
        let new = uuid::Uuid::from_u128(3);
        let id = d.factory_reset(new, "light").unwrap();
        assert_eq!(
            id,
            Identity {
                deviceuuid: new,
                name: "hall-1".into()
            }
        );
        assert_eq!(d.load_identity().unwrap(), Some(id));
        assert_eq!(d.load_security().unwrap(), Some(SecurityState::new(new)));
        let mut left: Vec<String> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["device.json", "notes.txt", "svr.json"]);
        // A corrupt identity: the default name.
        std::fs::write(d.identity_path(), "{").unwrap();
        assert_eq!(d.factory_reset(new, "light").unwrap().name, "light");
        let _ = std::fs::remove_dir_all(d.path());
    }

    #[test]
    fn name_and_resources_round_trip() {
        let d = tmp("name");
        let di = uuid::Uuid::from_u128(9);
        // No device.json yet (a library device): one is written.
        d.save_name("east 1", di).unwrap();
        assert_eq!(
            d.load_identity().unwrap(),
            Some(Identity {
                deviceuuid: di,
                name: "east 1".into()
            })
        );
        assert!(d.load_resources().unwrap().is_empty());
        let reps = std::collections::BTreeMap::from([(
            "/BinarySwitchResURI".to_string(),
            serde_json::json!({"value": true}),
        )]);
        d.save_resources(&reps).unwrap();
        assert_eq!(d.load_resources().unwrap(), reps);
        std::fs::write(d.resources_path(), "[").unwrap();
        assert!(matches!(d.load_resources(), Err(LoadError::Corrupt(_))));
        let _ = std::fs::remove_dir_all(d.path());
    }

    #[test]
    fn one_lock_per_dir() {
        let d = tmp("lock");
        let held = d.lock().unwrap();
        let e = d.lock().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ResourceBusy);
        assert!(
            e.to_string().contains(&std::process::id().to_string()),
            "{e}"
        );
        drop(held);
        d.lock().unwrap();
        let _ = std::fs::remove_dir_all(d.path());
    }

    #[test]
    fn the_signing_key_is_made_once_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let d = tmp("gkey");
        assert!(d.load_signing_key().unwrap().is_none());
        let k = d.load_or_create_signing_key().unwrap();
        let mode = std::fs::metadata(d.signing_key_path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(*d.load_or_create_signing_key().unwrap(), *k, "made once");
        assert_eq!(*d.load_signing_key().unwrap().unwrap(), *k);
        assert!(crate::store::is_state_file("group-signing-key"));
        std::fs::write(d.signing_key_path(), "xyz").unwrap();
        assert!(d.load_signing_key().is_err());
        let _ = std::fs::remove_dir_all(d.path());
    }
}

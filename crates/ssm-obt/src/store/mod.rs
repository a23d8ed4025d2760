//! The secure-domain store.
use rusqlite::{params, Connection, OptionalExtension};
use std::fs::File;
use std::path::{Path, PathBuf};
use uuid::Uuid;
use zeroize::Zeroizing;

pub use crate::model::{DeviceRole, DeviceState};

mod audit;
pub mod backup;
mod devices;
mod external;
mod gm;
mod grants;
mod groups;
mod schema;

use audit::audit_on;
pub use external::GroupPeer;
pub use gm::Profile;
pub use grants::ALL_GROUP;
pub use groups::{valid_group_name, GroupInfo, Rekeyed};

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = 6;

/// Store errors, each saying what to do.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another OBT has the domain open.
    #[error("the domain {0} is in use by another ssm obt process (close it, then retry)")]
    Locked(PathBuf),
    /// The file was written by a newer version.
    #[error("the domain {path} has schema version {found}; this ssm understands up to {SCHEMA_VERSION}: upgrade ssm")]
    TooNew {
        /// File.
        path: PathBuf,
        /// Its version.
        found: i64,
    },
    /// No domain yet.
    #[error("no domain at {0}: run `ssm obt init` first")]
    Missing(PathBuf),
    /// SQLite error (corrupt file, disk full…).
    #[error("domain store {path}: {source}")]
    Sqlite {
        /// File.
        path: PathBuf,
        /// Cause.
        source: rusqlite::Error,
    },
    /// File system.
    #[error("domain store: {0}")]
    Io(#[from] std::io::Error),
    /// Unknown device.
    #[error("no device {0} in the domain: see `ssm obt list`")]
    UnknownDevice(String),
    /// A name another device of the domain already has.
    #[error(
        "the name {name} is taken by device {uuid}: choose another (--name), or `ssm obt rename`"
    )]
    DuplicateName {
        /// The name.
        name: String,
        /// The device that has it.
        uuid: Uuid,
    },
    /// Unknown group.
    #[error("no SSM group {0} in the domain: see `ssm obt group list`")]
    UnknownGroup(String),
    /// A group of that name exists.
    #[error("the SSM group {0} exists already: see `ssm obt group show {0}`")]
    GroupExists(String),
    /// An external member in a group that cannot take one.
    #[error("{device} is an external member: only a `group-oscore` group takes one (the group {group} is `ocf-ssm`: no source authentication, and OCF devices are onboarded)")]
    ExternalNeedsGroupMode {
        /// The member.
        device: String,
        /// The group.
        group: String,
    },
    /// An authentication credential another member has.
    #[error("this authentication credential (public key) is {0}'s already: each member needs its own key pair")]
    AuthCredInUse(String),
    /// `--aead-alg` for a group that is not `group-oscore`.
    #[error(
        "an AEAD Algorithm is for `group-oscore` groups only (the group {0} would be `ocf-ssm`)"
    )]
    AeadNeedsGroupMode(String),
    /// Not a group name.
    #[error(
        "{0:?} is not a group name: 1 to 32 letters, digits, '-', '_', '.' (not starting with '-')"
    )]
    BadGroupName(String),
}

impl StoreError {
    /// An error about what was asked for (a device or group name), not
    /// about the store itself.
    pub fn is_request(&self) -> bool {
        matches!(
            self,
            StoreError::UnknownDevice(_)
                | StoreError::DuplicateName { .. }
                | StoreError::UnknownGroup(_)
                | StoreError::GroupExists(_)
                | StoreError::BadGroupName(_)
                | StoreError::ExternalNeedsGroupMode { .. }
                | StoreError::AeadNeedsGroupMode(_)
                | StoreError::AuthCredInUse(_)
        )
    }
}

/// A device the OBT owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRecord {
    /// Device UUID (assigned at onboarding).
    pub uuid: Uuid,
    /// Name.
    pub name: String,
    /// Last known unicast endpoint.
    pub endpoint: String,
    /// Light or switch.
    pub role: DeviceRole,
    /// `onboarding` (PIN session stood; the OBT has not seen the transfer
    /// end), `owned` (nothing to provision), `provisioned` (holds what the
    /// domain says), `stale` (the domain changed; the device has not been
    /// brought up to date yet: `ssm obt sync`).
    pub state: DeviceState,
    /// When the OBT last completed an exchange with it (UTC), if ever.
    pub last_seen: Option<String>,
}

/// A pair-wise OSCORE key between a switch and a light (credtype 64).
#[derive(Clone, PartialEq, Eq)]
pub struct PairwiseKey {
    /// The switch.
    pub client: Uuid,
    /// The light.
    pub light: Uuid,
    /// The shared master secret.
    pub secret: Zeroizing<Vec<u8>>,
    /// The switch's Sender ID (the light's Recipient ID), hex.
    pub client_id: String,
    /// The light's Sender ID (the switch's Recipient ID), hex.
    pub light_id: String,
}

impl std::fmt::Debug for PairwiseKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PairwiseKey")
            .field("client", &self.client)
            .field("light", &self.light)
            .field("client_id", &self.client_id)
            .field("light_id", &self.light_id)
            .finish_non_exhaustive()
    }
}

/// An SSM group's key as the domain has it now.
#[derive(Clone)]
pub struct GroupState {
    /// The group's id (its `oic.r.groups` number).
    pub id: i64,
    /// Its name.
    pub name: String,
    /// The group's master secret of this epoch.
    pub secret: Zeroizing<[u8; 32]>,
    /// The epoch (1 at creation, +1 per rekey).
    pub epoch: i64,
    /// Its security profile.
    pub profile: Profile,
    /// The AEAD Algorithm of its Common Context (COSE number), if set.
    pub aead_alg: Option<i64>,
}

impl std::fmt::Debug for GroupState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "GroupState {{ id: {}, name: {:?}, epoch: {}, profile: {} }}",
            self.id, self.name, self.epoch, self.profile
        )
    }
}

/// Maps a SQLite error to one naming the domain file.
fn sqlite_err(path: PathBuf) -> impl Fn(rusqlite::Error) -> StoreError {
    move |source| StoreError::Sqlite {
        path: path.clone(),
        source,
    }
}

/// The open domain.
pub struct Store {
    conn: Connection,
    path: PathBuf,
    /// The exclusive lock of a writer; `None` for a read-only view.
    _lock: Option<File>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({})", self.path.display())
    }
}

/// The files of the domain store at `path`: the database, its WAL and
/// shared-memory files and the lock file. All are created 0600: the
/// database by [`Store::init`] before SQLite opens it, the lock file here,
/// and SQLite gives `-wal` and `-shm` the database's mode.
pub fn domain_files(path: &Path) -> [PathBuf; 4] {
    let with = |suffix: &str| {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        PathBuf::from(p)
    };
    [
        path.to_path_buf(),
        with("-wal"),
        with("-shm"),
        with(".lock"),
    ]
}

/// Which of the domain's files others may read (every owner PSK and the
/// group secret are in them): for a warning with the `chmod` to run.
pub fn domain_open_to_others(path: &Path) -> Vec<ssm_runtime::store::OpenToOthers> {
    domain_files(path)
        .iter()
        .filter_map(|p| ssm_runtime::store::open_to_others(p))
        .collect()
}

fn lock(path: &Path) -> Result<File, StoreError> {
    let mut lp = path.as_os_str().to_owned();
    lp.push(".lock");
    let f = ssm_runtime::store::private_options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(PathBuf::from(lp))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked(path.to_path_buf())),
        Err(std::fs::TryLockError::Error(e)) => Err(e.into()),
    }
}

impl Store {
    /// Creates a new domain with a fresh OBT identity (`obt_uuid` must be
    /// usable as a DTLS PSK identity: no zero byte).
    pub fn init(path: &Path, obt_uuid: Uuid, name: &str) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            ssm_runtime::store::create_private_dir(dir)?;
        }
        // Owner-only before SQLite opens (creates) it; its -wal and -shm
        // files get the same mode. An existing file is not truncated.
        ssm_runtime::store::private_options()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let s = Self::open_inner(path, true)?;
        let sq = sqlite_err(path.to_path_buf());
        s.conn
            .execute(
                "INSERT OR IGNORE INTO obt (id, uuid, name) VALUES (1, ?1, ?2)",
                params![obt_uuid.to_string(), name],
            )
            .map_err(&sq)?;
        s.audit("init", &format!("domain {name}, OBT {obt_uuid}"))?;
        Ok(s)
    }

    /// Opens an existing domain.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if !path.exists() {
            return Err(StoreError::Missing(path.to_path_buf()));
        }
        Self::open_inner(path, false)
    }

    /// Opens an existing domain for reading only, without its lock: works
    /// while another `ssm obt` holds it (SQLite read-only connection; WAL
    /// readers do not block the writer). Every write fails.
    pub fn open_read_only(path: &Path) -> Result<Store, StoreError> {
        if !path.exists() {
            return Err(StoreError::Missing(path.to_path_buf()));
        }
        let ro = Self::open_ro_inner(path)?;
        if ro.schema_version()? < SCHEMA_VERSION {
            // A domain of an older version: migrated first when nobody
            // holds it (a read-only view cannot), else read as it is.
            drop(ro);
            match Self::open_inner(path, false) {
                Ok(s) => drop(s),
                Err(StoreError::Locked(_)) => {}
                Err(e) => return Err(e),
            }
            return Self::open_ro_inner(path);
        }
        Ok(ro)
    }

    fn schema_version(&self) -> Result<i64, StoreError> {
        self.conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(self.sq())
    }

    /// Whether this is a read-only view.
    pub fn is_read_only(&self) -> bool {
        self._lock.is_none()
    }

    /// Whether another `ssm obt` holds the domain's write lock now.
    pub fn locked_by_other(path: &Path) -> bool {
        matches!(lock(path), Err(StoreError::Locked(_)))
    }

    /// The domain file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The OBT's identity.
    pub fn obt(&self) -> Result<(Uuid, String), StoreError> {
        let sq = sqlite_err(self.path.clone());
        let (u, n): (String, String) = self
            .conn
            .query_row("SELECT uuid, name FROM obt WHERE id = 1", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .map_err(&sq)?;
        Ok((
            u.parse()
                .map_err(|_| StoreError::Missing(self.path.clone()))?,
            n,
        ))
    }

    fn sq(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        move |e| StoreError::Sqlite {
            path: self.path.clone(),
            source: e,
        }
    }
}

#[cfg(test)]
mod day_tests;
#[cfg(test)]
mod external_tests;
#[cfg(test)]
mod group_tests;
#[cfg(test)]
mod tests;

//! The secure-domain store.
use rusqlite::{params, Connection, OptionalExtension};
use std::fs::File;
use std::path::{Path, PathBuf};
use uuid::Uuid;
use zeroize::Zeroizing;

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = 1;

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
    /// `light` or `switch`.
    pub role: String,
    /// `owned`, `provisioned`, `stale`, `removed`.
    pub state: String,
}

/// The open domain.
pub struct Store {
    conn: Connection,
    path: PathBuf,
    _lock: File,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({})", self.path.display())
    }
}

fn lock(path: &Path) -> Result<File, StoreError> {
    let mut lp = path.as_os_str().to_owned();
    lp.push(".lock");
    let f = File::options()
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
            std::fs::create_dir_all(dir)?;
        }
        let s = Self::open_inner(path, true)?;
        let sq = |e| StoreError::Sqlite {
            path: path.to_path_buf(),
            source: e,
        };
        s.conn
            .execute(
                "INSERT OR IGNORE INTO obt (id, uuid, name) VALUES (1, ?1, ?2)",
                params![obt_uuid.to_string(), name],
            )
            .map_err(sq)?;
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

    fn open_inner(path: &Path, create: bool) -> Result<Store, StoreError> {
        let lock = lock(path)?;
        let sq = |e| StoreError::Sqlite {
            path: path.to_path_buf(),
            source: e,
        };
        let conn = Connection::open(path).map_err(sq)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(sq)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sq)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(sq)?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(sq)?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                path: path.to_path_buf(),
                found: version,
            });
        }
        if version == 0 && !create {
            return Err(StoreError::Missing(path.to_path_buf()));
        }
        let s = Store {
            conn,
            path: path.to_path_buf(),
            _lock: lock,
        };
        s.migrate(version)?;
        Ok(s)
    }

    fn migrate(&self, from: i64) -> Result<(), StoreError> {
        let sq = |e| StoreError::Sqlite {
            path: self.path.clone(),
            source: e,
        };
        if from < 1 {
            self.conn
                .execute_batch(
                    "BEGIN;
                     CREATE TABLE obt (id INTEGER PRIMARY KEY CHECK (id = 1), uuid TEXT NOT NULL, name TEXT NOT NULL);
                     CREATE TABLE devices (uuid TEXT PRIMARY KEY, name TEXT NOT NULL, endpoint TEXT NOT NULL, role TEXT NOT NULL,
                                           state TEXT NOT NULL, owner_psk BLOB NOT NULL, updated TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP);
                     CREATE TABLE ssm_group (id INTEGER PRIMARY KEY CHECK (id = 1), secret BLOB NOT NULL, epoch INTEGER NOT NULL);
                     CREATE TABLE sender_ids (sender_id TEXT PRIMARY KEY, client_uuid TEXT NOT NULL, epoch INTEGER NOT NULL,
                                              revoked INTEGER NOT NULL DEFAULT 0);
                     CREATE TABLE grants (client_uuid TEXT NOT NULL, light_uuid TEXT NOT NULL, PRIMARY KEY (client_uuid, light_uuid));
                     CREATE TABLE audit (id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
                                         action TEXT NOT NULL, detail TEXT NOT NULL);
                     PRAGMA user_version = 1;
                     COMMIT;",
                )
                .map_err(sq)?;
        }
        Ok(())
    }

    fn audit(&self, action: &str, detail: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO audit (action, detail) VALUES (?1, ?2)",
                params![action, detail],
            )
            .map_err(|e| StoreError::Sqlite {
                path: self.path.clone(),
                source: e,
            })?;
        Ok(())
    }

    /// The OBT's identity.
    pub fn obt(&self) -> Result<(Uuid, String), StoreError> {
        let sq = |e| StoreError::Sqlite {
            path: self.path.clone(),
            source: e,
        };
        let (u, n): (String, String) = self
            .conn
            .query_row("SELECT uuid, name FROM obt WHERE id = 1", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .map_err(sq)?;
        Ok((
            u.parse()
                .map_err(|_| StoreError::Missing(self.path.clone()))?,
            n,
        ))
    }

    /// Records an onboarded device (one transaction with its audit entry).
    pub fn add_device(&mut self, d: &DeviceRecord, owner_psk: &[u8; 16]) -> Result<(), StoreError> {
        let path = self.path.clone();
        let sq = |e| StoreError::Sqlite {
            path: path.clone(),
            source: e,
        };
        let tx = self.conn.transaction().map_err(sq)?;
        tx.execute(
            "INSERT OR REPLACE INTO devices (uuid, name, endpoint, role, state, owner_psk) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![d.uuid.to_string(), d.name, d.endpoint, d.role, d.state, &owner_psk[..]],
        )
        .map_err(sq)?;
        tx.execute(
            "INSERT INTO audit (action, detail) VALUES ('onboard', ?1)",
            params![format!("{} {} at {}", d.role, d.uuid, d.endpoint)],
        )
        .map_err(sq)?;
        tx.commit().map_err(sq)
    }

    /// Updates a device's state (and audits it).
    pub fn set_state(&mut self, uuid: &Uuid, state: &str) -> Result<(), StoreError> {
        let n = self
            .conn
            .execute(
                "UPDATE devices SET state = ?2, updated = CURRENT_TIMESTAMP WHERE uuid = ?1",
                params![uuid.to_string(), state],
            )
            .map_err(|e| StoreError::Sqlite {
                path: self.path.clone(),
                source: e,
            })?;
        if n == 0 {
            return Err(StoreError::UnknownDevice(uuid.to_string()));
        }
        self.audit("state", &format!("{uuid} -> {state}"))
    }

    /// Every device.
    pub fn devices(&self) -> Result<Vec<DeviceRecord>, StoreError> {
        let sq = |e| StoreError::Sqlite {
            path: self.path.clone(),
            source: e,
        };
        let mut st = self
            .conn
            .prepare("SELECT uuid, name, endpoint, role, state FROM devices ORDER BY role, name")
            .map_err(sq)?;
        let rows = st
            .query_map([], |r| {
                Ok(DeviceRecord {
                    uuid: r.get::<_, String>(0)?.parse().unwrap_or(Uuid::nil()),
                    name: r.get(1)?,
                    endpoint: r.get(2)?,
                    role: r.get(3)?,
                    state: r.get(4)?,
                })
            })
            .map_err(sq)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(sq)
    }

    /// A device by UUID or name.
    pub fn device(&self, key: &str) -> Result<DeviceRecord, StoreError> {
        self.devices()?
            .into_iter()
            .find(|d| d.uuid.to_string() == key || d.name == key)
            .ok_or_else(|| StoreError::UnknownDevice(key.into()))
    }

    /// A device's owner PSK.
    pub fn owner_psk(&self, uuid: &Uuid) -> Result<Zeroizing<[u8; 16]>, StoreError> {
        let v: Option<Vec<u8>> = self
            .conn
            .query_row(
                "SELECT owner_psk FROM devices WHERE uuid = ?1",
                params![uuid.to_string()],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| StoreError::Sqlite {
                path: self.path.clone(),
                source: e,
            })?;
        let v = v.ok_or_else(|| StoreError::UnknownDevice(uuid.to_string()))?;
        let mut out = Zeroizing::new([0u8; 16]);
        if v.len() == 16 {
            out.copy_from_slice(&v);
        }
        Ok(out)
    }

    /// The SSM group secret, created on first use (epoch 1).
    pub fn group_secret(
        &mut self,
        random: &mut dyn FnMut(&mut [u8]),
    ) -> Result<(Zeroizing<[u8; 32]>, i64), StoreError> {
        let sq = |e| StoreError::Sqlite {
            path: self.path.clone(),
            source: e,
        };
        let row: Option<(Vec<u8>, i64)> = self
            .conn
            .query_row(
                "SELECT secret, epoch FROM ssm_group WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(sq)?;
        let (secret, epoch) = match row {
            Some(r) => r,
            None => {
                let mut s = [0u8; 32];
                random(&mut s);
                self.conn
                    .execute(
                        "INSERT INTO ssm_group (id, secret, epoch) VALUES (1, ?1, 1)",
                        params![&s[..]],
                    )
                    .map_err(sq)?;
                self.audit("ssm-group", "created (epoch 1)")?;
                (s.to_vec(), 1)
            }
        };
        let mut out = Zeroizing::new([0u8; 32]);
        out.copy_from_slice(&secret);
        Ok((out, epoch))
    }

    /// The Sender ID of `client` in the current epoch, allocating one (never
    /// reused, across epochs too) if it has none.
    pub fn sender_id(
        &mut self,
        client: &Uuid,
        epoch: i64,
        random: &mut dyn FnMut(&mut [u8]),
    ) -> Result<[u8; 7], StoreError> {
        let sq = |e| StoreError::Sqlite {
            path: self.path.clone(),
            source: e,
        };
        let existing: Option<String> = self
            .conn
            .query_row(
                "SELECT sender_id FROM sender_ids WHERE client_uuid = ?1 AND epoch = ?2 AND revoked = 0",
                params![client.to_string(), epoch],
                |r| r.get(0),
            )
            .optional()
            .map_err(sq)?;
        if let Some(h) = existing {
            let mut id = [0u8; 7];
            hex::decode_to_slice(&h, &mut id).map_err(|_| StoreError::UnknownDevice(h.clone()))?;
            return Ok(id);
        }
        loop {
            let mut id = [0u8; 7];
            random(&mut id);
            id[0] = 0x02;
            let h = hex::encode(id);
            let n = self
                .conn
                .execute("INSERT OR IGNORE INTO sender_ids (sender_id, client_uuid, epoch) VALUES (?1, ?2, ?3)", params![h, client.to_string(), epoch])
                .map_err(sq)?;
            if n == 1 {
                self.audit("sender-id", &format!("{h} for {client} (epoch {epoch})"))?;
                return Ok(id);
            }
        }
    }

    /// Records that `client` may command `light`.
    pub fn grant(&mut self, client: &Uuid, light: &Uuid) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT OR IGNORE INTO grants (client_uuid, light_uuid) VALUES (?1, ?2)",
                params![client.to_string(), light.to_string()],
            )
            .map_err(|e| StoreError::Sqlite {
                path: self.path.clone(),
                source: e,
            })?;
        self.audit("grant", &format!("{client} -> {light}"))
    }

    /// Every (client, light) grant.
    pub fn grants(&self) -> Result<Vec<(Uuid, Uuid)>, StoreError> {
        let sq = |e| StoreError::Sqlite {
            path: self.path.clone(),
            source: e,
        };
        let mut st = self
            .conn
            .prepare("SELECT client_uuid, light_uuid FROM grants")
            .map_err(sq)?;
        let rows = st
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(sq)?;
        Ok(rows
            .filter_map(|r| r.ok())
            .filter_map(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
            .collect())
    }

    /// Number of audit entries.
    pub fn audit_len(&self) -> Result<i64, StoreError> {
        self.conn
            .query_row("SELECT COUNT(*) FROM audit", [], |r| r.get(0))
            .map_err(|e| StoreError::Sqlite {
                path: self.path.clone(),
                source: e,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ssm-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d.join("domain.sqlite")
    }

    #[test]
    fn lifecycle_lock_and_versions() {
        let p = tmp("life");
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
                role: "light".into(),
                state: "owned".into(),
            };
            s.add_device(&d, &[7; 16]).unwrap();
            let (sec, epoch) = s.group_secret(&mut rng).unwrap();
            assert_eq!(epoch, 1);
            let id1 = s.sender_id(&Uuid::from_u128(9), epoch, &mut rng).unwrap();
            assert_eq!(
                s.sender_id(&Uuid::from_u128(9), epoch, &mut rng).unwrap(),
                id1,
                "stable"
            );
            assert_ne!(
                s.sender_id(&Uuid::from_u128(10), epoch, &mut rng).unwrap(),
                id1
            );
            assert_eq!(s.group_secret(&mut rng).unwrap().0, sec);
            s.grant(&Uuid::from_u128(9), &d.uuid).unwrap();
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
}

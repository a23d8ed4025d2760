//! The schema and its forward migrations (`PRAGMA user_version`).
use super::*;

/// The version-1 schema (the migration path starts here).
pub(super) const SCHEMA_V1: &str = "CREATE TABLE obt (id INTEGER PRIMARY KEY CHECK (id = 1), uuid TEXT NOT NULL, name TEXT NOT NULL);
     CREATE TABLE devices (uuid TEXT PRIMARY KEY, name TEXT NOT NULL, endpoint TEXT NOT NULL, role TEXT NOT NULL,
     state TEXT NOT NULL, owner_psk BLOB NOT NULL, updated TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP);
     CREATE TABLE ssm_group (id INTEGER PRIMARY KEY CHECK (id = 1), secret BLOB NOT NULL, epoch INTEGER NOT NULL);
     CREATE TABLE sender_ids (sender_id TEXT PRIMARY KEY, client_uuid TEXT NOT NULL, epoch INTEGER NOT NULL,
     revoked INTEGER NOT NULL DEFAULT 0);
     CREATE TABLE grants (client_uuid TEXT NOT NULL, light_uuid TEXT NOT NULL, PRIMARY KEY (client_uuid, light_uuid));
     CREATE TABLE audit (id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
     action TEXT NOT NULL, detail TEXT NOT NULL);";

/// Version 2: when a device was last seen, pair-wise keys.
pub(super) const SCHEMA_V2: &str = "ALTER TABLE devices ADD COLUMN last_seen TEXT;
     CREATE TABLE pairwise (client_uuid TEXT NOT NULL, light_uuid TEXT NOT NULL, secret BLOB NOT NULL,
                            client_id TEXT NOT NULL UNIQUE, light_id TEXT NOT NULL UNIQUE,
                            PRIMARY KEY (client_uuid, light_uuid));";

/// Version 3: several SSM groups per domain. The single group of version 2
/// becomes the group `all` (id 1) with its secret, epoch, Sender IDs and
/// grants; the lights it was granted on become its members. Group ids
/// (their `oic.r.groups` numbers) are never reused (AUTOINCREMENT), nor
/// are Sender IDs (one table, across groups). A group's key is created by
/// the first change that puts a device in it (`secret` NULL, epoch 0
/// until then). The devices of the old group become stale: a sync writes
/// their `/groupsResURI` and the group's credentials, rekeyed by the
/// migration (see `migrate`), under its name.
pub(super) const SCHEMA_V3: &str = "CREATE TABLE ssm_groups (id INTEGER PRIMARY KEY AUTOINCREMENT CHECK (id BETWEEN 1 AND 65535),
       name TEXT NOT NULL UNIQUE, secret BLOB, epoch INTEGER NOT NULL DEFAULT 0, auto INTEGER NOT NULL DEFAULT 0,
       created TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP);
     INSERT INTO ssm_groups (id, name, secret, epoch) SELECT 1, 'all', secret, epoch FROM ssm_group WHERE id = 1;
     CREATE TABLE group_members (group_id INTEGER NOT NULL, light_uuid TEXT NOT NULL, PRIMARY KEY (group_id, light_uuid));
     CREATE TABLE group_switches (group_id INTEGER NOT NULL, client_uuid TEXT NOT NULL, PRIMARY KEY (group_id, client_uuid));
     ALTER TABLE sender_ids ADD COLUMN group_id INTEGER NOT NULL DEFAULT 1;
     CREATE TABLE group_grants (group_id INTEGER NOT NULL, client_uuid TEXT NOT NULL, light_uuid TEXT NOT NULL,
       PRIMARY KEY (group_id, client_uuid, light_uuid));
     INSERT INTO group_grants (group_id, client_uuid, light_uuid) SELECT 1, client_uuid, light_uuid FROM grants
       WHERE EXISTS (SELECT 1 FROM ssm_groups WHERE id = 1);
     INSERT OR IGNORE INTO group_members (group_id, light_uuid) SELECT group_id, light_uuid FROM group_grants;
     UPDATE devices SET state = 'stale', updated = CURRENT_TIMESTAMP WHERE state = 'provisioned' AND uuid IN
       (SELECT client_uuid FROM group_grants UNION SELECT light_uuid FROM group_grants);
     DROP TABLE grants;
     DROP TABLE ssm_group;
     INSERT INTO audit (action, detail) SELECT 'migrate', 'schema 3: the SSM group is now the group all (id 1)'
       FROM ssm_groups WHERE id = 1;";

/// Version 4: where each light serves its SSM resource (from its
/// /oic/res): the href its ACEs name and its switches send to.
pub(super) const SCHEMA_V4: &str =
    "CREATE TABLE ssm_hrefs (uuid TEXT PRIMARY KEY, href TEXT NOT NULL);";

/// Version 5: a security profile per group (`ocf-ssm`, the default and
/// every existing group, or `group-oscore`: RFC 10021 group mode), the
/// public authentication credentials (CCS) the devices made themselves,
/// and the Group Manager's own Ed25519 key (its seed; its CCS enters every
/// group-mode `external_aad`). Nothing is rekeyed: existing groups keep
/// their profile and credentials.
pub(super) const SCHEMA_V5: &str =
    "ALTER TABLE ssm_groups ADD COLUMN profile TEXT NOT NULL DEFAULT 'ocf-ssm'
       CHECK (profile IN ('ocf-ssm', 'group-oscore'));
     CREATE TABLE auth_creds (uuid TEXT PRIMARY KEY, ccs BLOB NOT NULL);
     CREATE TABLE group_manager (id INTEGER PRIMARY KEY CHECK (id = 1), seed BLOB NOT NULL);";

/// Version 6: the AEAD Algorithm of a `group-oscore` group's Common
/// Context (RFC 10021 §2.1.1: set only where members need it; aiocoap
/// 0.4.17, draft -23, always sets it and it enters the `external_aad`):
/// NULL (unset) for every existing group, 10 (AES-CCM-16-64-128) if
/// asked for at `group create --aead-alg`. External members (state
/// `external`) need no column: they are devices that are never reached.
pub(super) const SCHEMA_V6: &str = "ALTER TABLE ssm_groups ADD COLUMN aead_alg INTEGER
       CHECK (aead_alg IS NULL OR (aead_alg = 10 AND profile = 'group-oscore'));";

impl Store {
    pub(super) fn open_inner(path: &Path, create: bool) -> Result<Store, StoreError> {
        let lock = lock(path)?;
        let sq = sqlite_err(path.to_path_buf());
        let conn = Connection::open(path).map_err(&sq)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(&sq)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(&sq)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(&sq)?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(&sq)?;
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
            _lock: Some(lock),
        };
        s.migrate(version)?;
        s.ensure_columns()?;
        s.ensure_unique_names();
        Ok(s)
    }

    pub(super) fn open_ro_inner(path: &Path) -> Result<Store, StoreError> {
        let sq = sqlite_err(path.to_path_buf());
        let conn = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(&sq)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(&sq)?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(&sq)?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                path: path.to_path_buf(),
                found: version,
            });
        }
        if version == 0 {
            return Err(StoreError::Missing(path.to_path_buf()));
        }
        Ok(Store {
            conn,
            path: path.to_path_buf(),
            _lock: None,
        })
    }

    /// Columns added beside the versioned schema, each only if missing
    /// (`PRAGMA table_info`), so that they compose with any schema version:
    /// `devices.onboarded_from`, the UUID a device had before its owner
    /// transfer (the one a commissioning sheet names).
    fn ensure_columns(&self) -> Result<(), StoreError> {
        let sq = sqlite_err(self.path.clone());
        let mut st = self
            .conn
            .prepare("SELECT name FROM pragma_table_info('devices')")
            .map_err(&sq)?;
        let cols: Vec<String> = st
            .query_map([], |r| r.get(0))
            .map_err(&sq)?
            .collect::<Result<_, _>>()
            .map_err(&sq)?;
        if !cols.iter().any(|c| c == "onboarded_from") {
            self.conn
                .execute_batch("ALTER TABLE devices ADD COLUMN onboarded_from TEXT")
                .map_err(&sq)?;
        }
        Ok(())
    }

    /// Device names are unique (an index, created idempotently beside the
    /// versioned schema so that it composes with any schema version). A
    /// domain that already holds two devices of one name keeps working:
    /// the index waits until one is renamed, and a warning says so.
    fn ensure_unique_names(&self) {
        if let Err(e) = self.conn.execute_batch(
            "CREATE UNIQUE INDEX IF NOT EXISTS devices_name_unique ON devices (name)",
        ) {
            tracing::warn!(error = %e, "two devices share a name: rename one (`ssm obt rename`)");
        }
    }

    fn migrate(&self, from: i64) -> Result<(), StoreError> {
        let sq = sqlite_err(self.path.clone());
        if from < 1 {
            self.conn
                .execute_batch(&format!(
                    "BEGIN; {SCHEMA_V1} PRAGMA user_version = 1; COMMIT;"
                ))
                .map_err(&sq)?;
        }
        if from < 2 {
            self.conn
                .execute_batch(&format!(
                    "BEGIN; {SCHEMA_V2} PRAGMA user_version = 2; COMMIT;"
                ))
                .map_err(&sq)?;
        }
        if from < 3 {
            // One transaction: the new tables, and a rekey of the group
            // `all`. Its credentials now name the group in their `desc`; a
            // device would take that as a new credential with the same key
            // and Sender ID, and a switch keeps its sequence numbers per
            // credential: re-issuing the same key and ID could restart them
            // (nonce reuse). A new epoch (new secret, new Sender IDs) makes
            // every re-issued credential a new key.
            let tx = self.conn.unchecked_transaction().map_err(&sq)?;
            tx.execute_batch(&format!("{SCHEMA_V3} PRAGMA user_version = 3;"))
                .map_err(&sq)?;
            super::grants::rekey_on(
                &tx,
                1,
                &mut |b: &mut [u8]| crate::engine::rng(b),
                "schema 3: the group's credentials are re-issued under its name",
            )
            .map_err(&sq)?;
            tx.commit().map_err(&sq)?;
        }
        for (v, sql) in [(4, SCHEMA_V4), (5, SCHEMA_V5), (6, SCHEMA_V6)] {
            if from < v {
                self.conn
                    .execute_batch(&format!("BEGIN; {sql} PRAGMA user_version = {v}; COMMIT;"))
                    .map_err(&sq)?;
            }
        }
        Ok(())
    }
}

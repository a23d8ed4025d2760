//! Devices: records, states, owner PSKs.
use super::*;

/// A role or state column: the text the schema keeps, parsed at the store
/// boundary (an unknown text is a corrupt row, reported as such).
fn text_column<T>(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<T>
where
    T: std::str::FromStr<Err = crate::model::UnknownName>,
{
    let s: String = r.get(i)?;
    s.parse().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
    })
}

impl Store {
    /// Records an onboarded device (one transaction with its audit entry).
    pub fn add_device(&mut self, d: &DeviceRecord, owner_psk: &[u8; 16]) -> Result<(), StoreError> {
        let sq = sqlite_err(self.path.clone());
        if let Some(other) = self.name_owner(&d.name)?.filter(|u| *u != d.uuid) {
            return Err(StoreError::DuplicateName {
                name: d.name.clone(),
                uuid: other,
            });
        }
        let tx = self.conn.transaction().map_err(&sq)?;
        // An upsert on the UUID only: a REPLACE would also delete a row
        // whose name collides.
        tx.execute(
            "INSERT INTO devices (uuid, name, endpoint, role, state, owner_psk, last_seen) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (uuid) DO UPDATE SET name = excluded.name, endpoint = excluded.endpoint, role = excluded.role,
             state = excluded.state, owner_psk = excluded.owner_psk, last_seen = excluded.last_seen",
            params![d.uuid.to_string(), d.name, d.endpoint, d.role.as_str(), d.state.as_str(), &owner_psk[..], d.last_seen],
        )
        .map_err(&sq)?;
        audit_on(
            &tx,
            if d.state == DeviceState::Onboarding {
                "onboarding"
            } else {
                "onboard"
            },
            &format!("{} {} ({}) at {}", d.role, d.uuid, d.name, d.endpoint),
        )
        .map_err(&sq)?;
        tx.commit().map_err(&sq)
    }

    /// Updates a device's state (and audits it).
    pub fn set_state(&mut self, uuid: &Uuid, state: DeviceState) -> Result<(), StoreError> {
        let n = self
            .conn
            .execute(
                "UPDATE devices SET state = ?2, updated = CURRENT_TIMESTAMP WHERE uuid = ?1",
                params![uuid.to_string(), state.as_str()],
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
        let sq = sqlite_err(self.path.clone());
        let mut st = self
            .conn
            .prepare("SELECT uuid, name, endpoint, role, state, last_seen FROM devices ORDER BY role, name")
            .map_err(&sq)?;
        let rows = st
            .query_map([], |r| {
                Ok(DeviceRecord {
                    uuid: r.get::<_, String>(0)?.parse().unwrap_or(Uuid::nil()),
                    name: r.get(1)?,
                    endpoint: r.get(2)?,
                    role: text_column(r, 3)?,
                    state: text_column(r, 4)?,
                    last_seen: r.get(5)?,
                })
            })
            .map_err(&sq)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(&sq)
    }

    /// A device by UUID or name (a UUID first: names cannot shadow one).
    pub fn device(&self, key: &str) -> Result<DeviceRecord, StoreError> {
        let all = self.devices()?;
        let by_uuid = all.iter().position(|d| d.uuid.to_string() == key);
        by_uuid
            .or_else(|| all.iter().position(|d| d.name == key))
            .map(|i| all[i].clone())
            .ok_or_else(|| StoreError::UnknownDevice(key.into()))
    }

    /// The device that has `name`, if any.
    pub fn name_owner(&self, name: &str) -> Result<Option<Uuid>, StoreError> {
        let u: Option<String> = self
            .conn
            .query_row(
                "SELECT uuid FROM devices WHERE name = ?1",
                params![name],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.sq())?;
        Ok(u.and_then(|u| u.parse().ok()))
    }

    /// Renames a device (refused if another has `new`). Returns the record
    /// as it was.
    pub fn rename(&mut self, key: &str, new: &str) -> Result<DeviceRecord, StoreError> {
        let d = self.device(key)?;
        if let Some(other) = self.name_owner(new)?.filter(|u| *u != d.uuid) {
            return Err(StoreError::DuplicateName {
                name: new.into(),
                uuid: other,
            });
        }
        let sq = sqlite_err(self.path.clone());
        let tx = self.conn.transaction().map_err(&sq)?;
        tx.execute(
            "UPDATE devices SET name = ?2, updated = CURRENT_TIMESTAMP WHERE uuid = ?1",
            params![d.uuid.to_string(), new],
        )
        .map_err(&sq)?;
        audit_on(&tx, "rename", &format!("{} {} -> {new}", d.uuid, d.name)).map_err(&sq)?;
        tx.commit().map_err(&sq)?;
        Ok(d)
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

    /// Removes a device from the domain in one transaction: its record,
    /// grants, group memberships, pair-wise keys and Sender IDs (kept,
    /// revoked: never reused). Every group it was in is rekeyed (those
    /// only) and every device they concern becomes stale. Returns the new
    /// epoch of the first group rekeyed (by id: `all` first) and the
    /// devices to sync.
    pub fn remove_device(
        &mut self,
        uuid: &Uuid,
        random: &mut dyn FnMut(&mut [u8]),
    ) -> Result<(Option<i64>, Vec<Uuid>), StoreError> {
        let sq = sqlite_err(self.path.clone());
        let tx = self.conn.transaction().map_err(&sq)?;
        let u = uuid.to_string();
        let n = tx
            .execute("DELETE FROM devices WHERE uuid = ?1", params![u])
            .map_err(&sq)?;
        if n == 0 {
            return Err(StoreError::UnknownDevice(u));
        }
        tx.execute("DELETE FROM ssm_hrefs WHERE uuid = ?1", params![u])
            .map_err(&sq)?;
        audit_on(&tx, "offboard", &u).map_err(&sq)?;
        let (rekeyed, m) = groups::leave_all_groups(&tx, uuid, random).map_err(&sq)?;
        tx.commit().map_err(&sq)?;
        Ok((rekeyed.first().map(|r| r.1), m))
    }

    /// Remembers the hrefs of a light's SSM-enabled resources (from its
    /// discovery, in its order), replacing the ones known; true if the set
    /// changed. An empty list changes nothing (a discovery that listed no
    /// SSM resource is not taken as the light serving none: its ACEs keep
    /// the hrefs known). The switches granted on the light become stale in
    /// the same transaction (their credential lists the hrefs they send
    /// to); the light's own ACEs are the caller's to sync.
    pub fn set_ssm_hrefs(&mut self, uuid: &Uuid, hrefs: &[String]) -> Result<bool, StoreError> {
        if hrefs.is_empty() || self.ssm_hrefs(uuid)? == hrefs {
            return Ok(false);
        }
        let sq = sqlite_err(self.path.clone());
        let u = uuid.to_string();
        let tx = self.conn.transaction().map_err(&sq)?;
        tx.execute("DELETE FROM ssm_hrefs WHERE uuid = ?1", params![u])
            .map_err(&sq)?;
        let mut pos = 0i64;
        for h in hrefs {
            pos += tx
                .execute(
                    "INSERT OR IGNORE INTO ssm_hrefs (uuid, href, pos) VALUES (?1, ?2, ?3)",
                    params![u, h, pos],
                )
                .map_err(&sq)? as i64;
        }
        tx.execute(
            "UPDATE devices SET state = 'stale', updated = CURRENT_TIMESTAMP WHERE state = 'provisioned'
             AND uuid IN (SELECT client_uuid FROM group_grants WHERE light_uuid = ?1)",
            params![u],
        )
        .map_err(&sq)?;
        audit_on(&tx, "ssm-hrefs", &format!("{u} {}", hrefs.join(" "))).map_err(&sq)?;
        tx.commit().map_err(&sq)?;
        Ok(true)
    }

    /// The hrefs of a light's SSM-enabled resources, in its discovery's
    /// order (empty if none is known).
    pub fn ssm_hrefs(&self, uuid: &Uuid) -> Result<Vec<String>, StoreError> {
        let sq = sqlite_err(self.path.clone());
        let mut st = self
            .conn
            .prepare("SELECT href FROM ssm_hrefs WHERE uuid = ?1 ORDER BY pos, href")
            .map_err(&sq)?;
        let rows = st
            .query_map(params![uuid.to_string()], |r| r.get(0))
            .map_err(&sq)?;
        rows.collect::<Result<Vec<String>, _>>().map_err(&sq)
    }

    /// Records a completed exchange with a device (and where it answered).
    pub fn touch(&mut self, uuid: &Uuid, endpoint: Option<&str>) -> Result<(), StoreError> {
        let u = uuid.to_string();
        self.conn
            .execute(
                "UPDATE devices SET last_seen = strftime('%Y-%m-%dT%H:%M:%SZ', 'now'),
                 endpoint = COALESCE(?2, endpoint) WHERE uuid = ?1",
                params![u, endpoint],
            )
            .map_err(self.sq())?;
        Ok(())
    }

    /// Removes the record of an onboarding that did not happen (the device
    /// refused the stored key: it undid the transfer).
    pub fn forget_onboarding(&mut self, uuid: &Uuid) -> Result<(), StoreError> {
        let sq = sqlite_err(self.path.clone());
        let tx = self.conn.transaction().map_err(&sq)?;
        tx.execute(
            "DELETE FROM devices WHERE uuid = ?1 AND state = ?2",
            params![uuid.to_string(), DeviceState::Onboarding.as_str()],
        )
        .map_err(&sq)?;
        audit_on(&tx, "onboarding-undone", &uuid.to_string()).map_err(&sq)?;
        tx.commit().map_err(&sq)
    }

    /// Remembers the UUID a device had before its owner transfer.
    pub fn set_onboarded_from(&mut self, uuid: &Uuid, from: &Uuid) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE devices SET onboarded_from = ?2 WHERE uuid = ?1",
                params![uuid.to_string(), from.to_string()],
            )
            .map_err(self.sq())?;
        Ok(())
    }

    /// The device of the domain that had UUID `from` before its owner
    /// transfer (a commissioning sheet's row), if any.
    pub fn by_onboarded_from(&self, from: &Uuid) -> Result<Option<DeviceRecord>, StoreError> {
        let u: Option<String> = self
            .conn
            .query_row(
                "SELECT uuid FROM devices WHERE onboarded_from = ?1",
                params![from.to_string()],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.sq())?;
        match u {
            Some(u) => Ok(Some(self.device(&u)?)),
            None => Ok(None),
        }
    }

    /// The UUID a device had before its owner transfer, if known (a domain
    /// written before this was kept has none).
    pub fn onboarded_from(&self, uuid: &Uuid) -> Option<Uuid> {
        self.conn
            .query_row(
                "SELECT onboarded_from FROM devices WHERE uuid = ?1",
                params![uuid.to_string()],
                |r| r.get::<_, Option<String>>(0),
            )
            .ok()
            .flatten()
            .and_then(|u| u.parse().ok())
    }
}

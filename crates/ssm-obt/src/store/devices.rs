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
        let tx = self.conn.transaction().map_err(&sq)?;
        tx.execute(
            "INSERT OR REPLACE INTO devices (uuid, name, endpoint, role, state, owner_psk, last_seen) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
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

    /// Remembers the href of a light's SSM-enabled resource (from its
    /// discovery).
    pub fn set_ssm_href(&mut self, uuid: &Uuid, href: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO ssm_hrefs (uuid, href) VALUES (?1, ?2)",
                params![uuid.to_string(), href],
            )
            .map_err(self.sq())?;
        Ok(())
    }

    /// The href of a light's SSM-enabled resource, if known.
    pub fn ssm_href(&self, uuid: &Uuid) -> Result<Option<String>, StoreError> {
        self.conn
            .query_row(
                "SELECT href FROM ssm_hrefs WHERE uuid = ?1",
                params![uuid.to_string()],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.sq())
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
}

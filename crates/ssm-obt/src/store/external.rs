//! External members of `group-oscore` groups: RFC 10021 group-mode
//! members that are not OCF devices (a building-management system, another
//! vendor's device). They are never onboarded and never reached by the OBT:
//! a device row in state `external` (no endpoint, no owner PSK) in the
//! devices' name space, with the CCS the administrator registered for it.
//! They take part through the usual group calls (a light as a member, a
//! switch granted the group: a Sender ID from the one never-reused
//! allocator); they fetch their keys themselves (`ssm obt external
//! material`), again after every rekey.
use super::grants::{group_lights, new_sender_id};
use super::groups::{leave_all_groups, Rekeyed};
use super::*;

/// A group-mode member of a group's current epoch: its Sender ID and its
/// authentication credential (CCS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupPeer {
    /// Its Sender ID (hex).
    pub sender_id: String,
    /// Its UUID in the domain.
    pub uuid: Uuid,
    /// Its CCS.
    pub ccs: Vec<u8>,
}

impl Store {
    /// Registers an external member `name` (unique among the devices) with
    /// role `role` and CCS `ccs` (checked by the caller; refused if another
    /// member has it: one key pair each), under `uuid`, in one transaction
    /// with its audit entry.
    pub fn add_external(
        &mut self,
        uuid: Uuid,
        name: &str,
        role: DeviceRole,
        ccs: &[u8],
    ) -> Result<DeviceRecord, StoreError> {
        if let Some(other) = self.name_owner(name)? {
            return Err(StoreError::DuplicateName {
                name: name.into(),
                uuid: other,
            });
        }
        let holder: Option<String> = self
            .conn
            .query_row(
                "SELECT uuid FROM auth_creds WHERE ccs = ?1",
                params![ccs],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.sq())?;
        if let Some(h) = holder {
            let name = self.device(&h).map(|d| d.name).unwrap_or(h);
            return Err(StoreError::AuthCredInUse(name));
        }
        let sq = sqlite_err(self.path.clone());
        let tx = self.conn.transaction().map_err(&sq)?;
        // No endpoint, and no owner PSK (an empty one: never used, as the
        // OBT never opens a session to it).
        tx.execute(
            "INSERT INTO devices (uuid, name, endpoint, role, state, owner_psk) VALUES (?1, ?2, '', ?3, ?4, x'')",
            params![uuid.to_string(), name, role.as_str(), DeviceState::External.as_str()],
        )
        .map_err(&sq)?;
        tx.execute(
            "INSERT INTO auth_creds (uuid, ccs) VALUES (?1, ?2)
             ON CONFLICT (uuid) DO UPDATE SET ccs = excluded.ccs",
            params![uuid.to_string(), ccs],
        )
        .map_err(&sq)?;
        audit_on(
            &tx,
            "external-add",
            &format!("{role} {uuid} ({name}): CCS registered by the administrator"),
        )
        .map_err(&sq)?;
        tx.commit().map_err(&sq)?;
        self.device(&uuid.to_string())
    }

    /// Whether `uuid` is an external member.
    pub fn is_external(&self, uuid: &Uuid) -> Result<bool, StoreError> {
        let st: Option<String> = self
            .conn
            .query_row(
                "SELECT state FROM devices WHERE uuid = ?1",
                params![uuid.to_string()],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.sq())?;
        Ok(st.as_deref() == Some(DeviceState::External.as_str()))
    }

    /// Refuses external members among `uuids` for group `gid` unless it is
    /// a `group-oscore` group.
    pub(super) fn refuse_externals(&self, gid: i64, uuids: &[Uuid]) -> Result<(), StoreError> {
        let name: String = self
            .conn
            .query_row(
                "SELECT name FROM ssm_groups WHERE id = ?1",
                params![gid],
                |r| r.get(0),
            )
            .map_err(self.sq())?;
        self.check_externals(&name, self.profile_of(gid)?, uuids)
    }

    /// Refuses external members among `uuids` for group `group` of
    /// `profile` unless it is `group-oscore`.
    pub(super) fn check_externals(
        &self,
        group: &str,
        profile: Profile,
        uuids: &[Uuid],
    ) -> Result<(), StoreError> {
        if profile == Profile::GroupOscore {
            return Ok(());
        }
        for u in uuids {
            if self.is_external(u)? {
                return Err(StoreError::ExternalNeedsGroupMode {
                    device: self.device(&u.to_string())?.name,
                    group: group.into(),
                });
            }
        }
        Ok(())
    }

    /// `uuid`'s Sender ID in group `gid`'s current epoch; an external
    /// member (a light) without one gets one now, from the allocator every Sender ID
    /// comes from (never reused, across groups and epochs): an external
    /// light answers with it. `None` for a device that is neither a member
    /// nor a switch of the group.
    pub fn member_sender_id(
        &mut self,
        gid: i64,
        uuid: &Uuid,
        random: &mut dyn FnMut(&mut [u8]),
    ) -> Result<Option<String>, StoreError> {
        if let Some(sid) = self.sender_id_in(gid, uuid)? {
            return Ok(Some(sid));
        }
        // Only an external member: our lights send nothing.
        let member = self.is_external(uuid)?
            && group_lights(&self.conn, gid)
                .map_err(self.sq())?
                .contains(uuid);
        let Some(state) = self.group_state(gid)?.filter(|_| member) else {
            return Ok(None);
        };
        let sq = sqlite_err(self.path.clone());
        let tx = self.conn.transaction().map_err(&sq)?;
        let sid = new_sender_id(&tx, gid, uuid, state.epoch, random).map_err(&sq)?;
        tx.commit().map_err(&sq)?;
        Ok(Some(sid))
    }

    /// Every member of group `gid`'s current epoch that has a Sender ID
    /// and a CCS (the authorised switches, ours and external, and external
    /// lights that fetched their material), by Sender ID.
    pub fn group_peers(&self, gid: i64) -> Result<Vec<GroupPeer>, StoreError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT s.sender_id, s.client_uuid, a.ccs FROM sender_ids s
                 JOIN ssm_groups g ON g.id = s.group_id AND s.epoch = g.epoch
                 JOIN auth_creds a ON a.uuid = s.client_uuid
                 WHERE s.group_id = ?1 AND s.revoked = 0 ORDER BY s.sender_id",
            )
            .map_err(self.sq())?;
        let rows = st
            .query_map(params![gid], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                ))
            })
            .map_err(self.sq())?;
        let mut out = Vec::new();
        for row in rows {
            let (sender_id, u, ccs) = row.map_err(self.sq())?;
            if let Ok(uuid) = u.parse() {
                out.push(GroupPeer {
                    sender_id,
                    uuid,
                    ccs,
                });
            }
        }
        Ok(out)
    }

    /// Forgets external member `uuid` in one transaction: its record, its
    /// CCS, its memberships and grants (its Sender IDs stay recorded,
    /// revoked: never reused); every group it was in is rekeyed (RFC 10021
    /// §12) and the devices those groups concern become stale. Returns the
    /// groups rekeyed (id, new epoch) and the devices to sync.
    pub fn remove_external(
        &mut self,
        uuid: &Uuid,
        random: &mut dyn FnMut(&mut [u8]),
    ) -> Result<(Vec<Rekeyed>, Vec<Uuid>), StoreError> {
        if !self.is_external(uuid)? {
            return Err(StoreError::UnknownDevice(uuid.to_string()));
        }
        let sq = sqlite_err(self.path.clone());
        let tx = self.conn.transaction().map_err(&sq)?;
        let u = uuid.to_string();
        for sql in [
            "DELETE FROM devices WHERE uuid = ?1",
            "DELETE FROM auth_creds WHERE uuid = ?1",
        ] {
            tx.execute(sql, params![u]).map_err(&sq)?;
        }
        audit_on(&tx, "external-remove", &u).map_err(&sq)?;
        let (rekeyed, affected) = leave_all_groups(&tx, uuid, random).map_err(&sq)?;
        tx.commit().map_err(&sq)?;
        Ok((rekeyed, affected))
    }
}

//! The SSM groups of the domain (schema v3): each has a name, a small
//! integer id (its number in the devices' `oic.r.groups` resource), its own
//! master secret and epoch, its members (lights) and the switches allowed
//! to command it. A light may be in several groups, a switch may command
//! several; every Sender ID is unique across groups and epochs.
use super::grants::{
    add_member_on, ensure_group, grant_on, group_followers, group_id, group_lights, key_holders,
    leave_if_idle, mark_stale, rekey_on, ungrant_on,
};
use super::*;

/// What the domain knows of one group (no secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    /// Its id (the `oic.r.groups` number; never reused).
    pub id: i64,
    /// Its name.
    pub name: String,
    /// The epoch (0 until its key is created, 1 at creation, +1 per rekey).
    pub epoch: i64,
    /// Onboarded SSM devices join it.
    pub auto: bool,
    /// Its lights.
    pub members: Vec<Uuid>,
    /// The switches that command it: those with a Sender ID of this epoch.
    pub switches: Vec<Uuid>,
    /// The switches that follow its membership (granted on every member).
    pub followers: Vec<Uuid>,
    /// Its security profile.
    pub profile: Profile,
    /// The AEAD Algorithm of its Common Context (COSE number, 10), if set
    /// (`group create --aead-alg`; RFC 10021 §2.1.1 sets it only for
    /// pairwise mode, aiocoap 0.4.17 always).
    pub aead_alg: Option<i64>,
}

/// The one rule for a group name (it is also typed on a switch's command
/// line): 1 to 32 letters, digits, `-`, `_`, `.`, not starting with `-`.
pub fn valid_group_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl Store {
    fn gid(&self, name: &str) -> Result<i64, StoreError> {
        group_id(&self.conn, name)
            .map_err(self.sq())?
            .ok_or_else(|| StoreError::UnknownGroup(name.into()))
    }

    /// Group `gid`'s key and epoch, if its key was created.
    pub fn group_state(&self, gid: i64) -> Result<Option<GroupState>, StoreError> {
        type Row = (Option<Vec<u8>>, i64, String, String, Option<i64>);
        let row: Option<Row> = self
            .conn
            .query_row(
                "SELECT secret, epoch, name, profile, aead_alg FROM ssm_groups WHERE id = ?1",
                params![gid],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .optional()
            .map_err(self.sq())?;
        Ok(row.and_then(|(secret, epoch, name, profile, aead_alg)| {
            let profile = Profile::parse(&profile)?;
            let secret = Zeroizing::new(secret?);
            let mut out = Zeroizing::new([0u8; 32]);
            (secret.len() == 32).then(|| {
                out.copy_from_slice(&secret);
                GroupState {
                    id: gid,
                    name,
                    secret: out,
                    epoch,
                    profile,
                    aead_alg,
                }
            })
        }))
    }

    /// The switches granted on `light` in group `gid`.
    pub fn clients_of_light(&self, gid: i64, light: &Uuid) -> Result<Vec<Uuid>, StoreError> {
        super::grants::uuids(
            &self.conn,
            "SELECT client_uuid FROM group_grants WHERE group_id = ?1 AND light_uuid = ?2",
            params![gid, light.to_string()],
        )
        .map_err(self.sq())
    }

    /// The ids of the groups whose key was created.
    pub fn keyed_group_ids(&self) -> Result<Vec<i64>, StoreError> {
        let mut st = self
            .conn
            .prepare("SELECT id FROM ssm_groups WHERE secret IS NOT NULL ORDER BY id")
            .map_err(self.sq())?;
        let rows = st.query_map([], |r| r.get(0)).map_err(self.sq())?;
        rows.collect::<Result<_, _>>().map_err(self.sq())
    }

    /// Every group, by id.
    pub fn groups(&self) -> Result<Vec<GroupInfo>, StoreError> {
        let rows: Vec<(i64, String, i64, bool, Option<i64>)> = {
            let mut st = self
                .conn
                .prepare("SELECT id, name, epoch, auto, aead_alg FROM ssm_groups ORDER BY id")
                .map_err(self.sq())?;
            let rows = st
                .query_map([], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })
                .map_err(self.sq())?;
            rows.collect::<Result<_, _>>().map_err(self.sq())?
        };
        let mut out = Vec::new();
        for (id, name, epoch, auto, aead_alg) in rows {
            let members = group_lights(&self.conn, id).map_err(self.sq())?;
            let followers = group_followers(&self.conn, id).map_err(self.sq())?;
            let mut switches = Vec::new();
            // A member (a light) may hold a Sender ID too (an external
            // one, for its responses): it is not a switch of the group.
            for d in key_holders(&self.conn, id).map_err(self.sq())? {
                if !members.contains(&d) && self.sender_id_in(id, &d)?.is_some() {
                    switches.push(d);
                }
            }
            let profile = self.profile_of(id)?;
            out.push(GroupInfo {
                profile,
                aead_alg,
                id,
                name,
                epoch,
                auto,
                members,
                switches,
                followers,
            });
        }
        Ok(out)
    }

    /// One group by name.
    pub fn group_info(&self, name: &str) -> Result<GroupInfo, StoreError> {
        let id = self.gid(name)?;
        self.groups()?
            .into_iter()
            .find(|g| g.id == id)
            .ok_or_else(|| StoreError::UnknownGroup(name.into()))
    }

    /// The groups `uuid` belongs to (the ids its `/groupsResURI` lists): a
    /// light's groups, and the groups a switch commands.
    pub fn device_groups(&self, uuid: &Uuid) -> Result<Vec<i64>, StoreError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT group_id FROM group_members WHERE light_uuid = ?1
                 UNION SELECT s.group_id FROM sender_ids s JOIN ssm_groups g ON g.id = s.group_id
                   WHERE s.client_uuid = ?1 AND s.revoked = 0 AND s.epoch = g.epoch
                 ORDER BY 1",
            )
            .map_err(self.sq())?;
        let rows = st
            .query_map(params![uuid.to_string()], |r| r.get(0))
            .map_err(self.sq())?;
        rows.collect::<Result<_, _>>().map_err(self.sq())
    }

    /// A new group (no key yet: it is created by the first device added).
    /// With `auto`, every SSM device onboarded later joins it.
    pub fn create_group(&mut self, name: &str, auto: bool) -> Result<GroupInfo, StoreError> {
        if !valid_group_name(name) {
            return Err(StoreError::BadGroupName(name.into()));
        }
        let sq = sqlite_err(self.path.clone());
        let tx = self.conn.transaction().map_err(&sq)?;
        if group_id(&tx, name).map_err(&sq)?.is_some() {
            return Err(StoreError::GroupExists(name.into()));
        }
        ensure_group(&tx, name, auto).map_err(&sq)?;
        tx.commit().map_err(&sq)?;
        self.group_info(name)
    }

    /// The group `all`, created with auto-enrolment (`ssm obt init
    /// --auto-ssm`); an existing one is switched to auto-enrolment.
    pub fn auto_all(&mut self) -> Result<GroupInfo, StoreError> {
        let sq = sqlite_err(self.path.clone());
        let tx = self.conn.transaction().map_err(&sq)?;
        let gid = ensure_group(&tx, grants::ALL_GROUP, true).map_err(&sq)?;
        tx.execute("UPDATE ssm_groups SET auto = 1 WHERE id = ?1", params![gid])
            .map_err(&sq)?;
        tx.commit().map_err(&sq)?;
        self.group_info(grants::ALL_GROUP)
    }

    /// Deletes a group in one transaction: its grants, members, followers
    /// and key go (its Sender IDs stay recorded, revoked); every device it
    /// concerned becomes stale (a sync takes its credentials away). Returns
    /// those devices.
    pub fn delete_group(&mut self, name: &str) -> Result<Vec<Uuid>, StoreError> {
        let gid = self.gid(name)?;
        let sq = sqlite_err(self.path.clone());
        let tx = self.conn.transaction().map_err(&sq)?;
        let affected = key_holders(&tx, gid).map_err(&sq)?;
        let pairs: Vec<(Uuid, Uuid)> = self_grants(&tx, gid).map_err(&sq)?;
        for sql in [
            "DELETE FROM group_grants WHERE group_id = ?1",
            "DELETE FROM group_members WHERE group_id = ?1",
            "DELETE FROM group_switches WHERE group_id = ?1",
            "UPDATE sender_ids SET revoked = 1 WHERE group_id = ?1",
            "DELETE FROM ssm_groups WHERE id = ?1",
        ] {
            tx.execute(sql, params![gid]).map_err(&sq)?;
        }
        for (c, l) in pairs {
            tx.execute(
                "DELETE FROM pairwise WHERE client_uuid = ?1 AND light_uuid = ?2 AND NOT EXISTS
                 (SELECT 1 FROM group_grants WHERE client_uuid = ?1 AND light_uuid = ?2)",
                params![c.to_string(), l.to_string()],
            )
            .map_err(&sq)?;
        }
        mark_stale(&tx, &affected).map_err(&sq)?;
        audit_on(&tx, "group-delete", &format!("{name} (id {gid})")).map_err(&sq)?;
        tx.commit().map_err(&sq)?;
        Ok(affected)
    }

    /// Adds devices to a group in one transaction: a light becomes a member
    /// (granted to every switch that follows the group), a switch follows
    /// the group (granted on every member). The group's key is created by
    /// the first. Returns the devices to sync.
    pub fn add_to_group(
        &mut self,
        name: &str,
        devices: &[(Uuid, DeviceRole)],
        random: &mut dyn FnMut(&mut [u8]),
    ) -> Result<Vec<Uuid>, StoreError> {
        let gid = self.gid(name)?;
        let uuids: Vec<Uuid> = devices.iter().map(|d| d.0).collect();
        self.refuse_externals(gid, &uuids)?;
        let sq = sqlite_err(self.path.clone());
        let tx = self.conn.transaction().map_err(&sq)?;
        let affected = add_on(&tx, gid, devices, random).map_err(&sq)?;
        mark_stale(&tx, &affected).map_err(&sq)?;
        tx.commit().map_err(&sq)?;
        Ok(affected)
    }

    /// Removes devices from a group in one transaction: a light's
    /// membership and grants there go, a switch stops following it and
    /// loses its grants there; the group (that group only) is rekeyed, as
    /// the device held its key. Returns the devices to sync and the new
    /// epoch.
    pub fn remove_from_group(
        &mut self,
        name: &str,
        devices: &[(Uuid, DeviceRole)],
        random: &mut dyn FnMut(&mut [u8]),
    ) -> Result<(Vec<Uuid>, Option<i64>), StoreError> {
        let gid = self.gid(name)?;
        let sq = sqlite_err(self.path.clone());
        let tx = self.conn.transaction().map_err(&sq)?;
        let mut affected = Vec::new();
        let mut was_in = false;
        for (d, role) in devices {
            affected.push(*d);
            let u = d.to_string();
            match role {
                DeviceRole::Light => {
                    let clients: Vec<Uuid> = self_grants(&tx, gid)
                        .map_err(&sq)?
                        .into_iter()
                        .filter(|(_, l)| l == d)
                        .map(|g| g.0)
                        .collect();
                    for c in &clients {
                        affected.extend(ungrant_on(&tx, gid, c, &[*d]).map_err(&sq)?);
                        // A switch left with nothing here leaves too (the
                        // rekey below covers it).
                        leave_if_idle(&tx, gid, c).map_err(&sq)?;
                    }
                    let n = tx
                        .execute(
                            "DELETE FROM group_members WHERE group_id = ?1 AND light_uuid = ?2",
                            params![gid, u],
                        )
                        .map_err(&sq)?;
                    was_in |= n > 0 || !clients.is_empty();
                }
                DeviceRole::Switch => {
                    let n = tx
                        .execute(
                            "DELETE FROM group_switches WHERE group_id = ?1 AND client_uuid = ?2",
                            params![gid, u],
                        )
                        .map_err(&sq)?;
                    let lights: Vec<Uuid> = self_grants(&tx, gid)
                        .map_err(&sq)?
                        .into_iter()
                        .filter(|(c, _)| c == d)
                        .map(|g| g.1)
                        .collect();
                    affected.extend(ungrant_on(&tx, gid, d, &lights).map_err(&sq)?);
                    let held = leave_if_idle(&tx, gid, d).map_err(&sq)?;
                    was_in |= n > 0 || held;
                }
            }
            audit_on(&tx, "group-remove", &format!("{u} from group {gid}")).map_err(&sq)?;
        }
        let epoch = if was_in {
            rekey_on(&tx, gid, random, "a member was removed").map_err(&sq)?
        } else {
            None
        };
        affected.extend(key_holders(&tx, gid).map_err(&sq)?);
        affected.sort();
        affected.dedup();
        mark_stale(&tx, &affected).map_err(&sq)?;
        tx.commit().map_err(&sq)?;
        Ok((affected, epoch))
    }

    /// A new key (epoch + 1) for one group and new Sender IDs for its
    /// switches; the other groups are untouched. Returns the epoch (`None`
    /// if the group has no key yet) and the devices to sync.
    pub fn rekey_group(
        &mut self,
        name: &str,
        random: &mut dyn FnMut(&mut [u8]),
        why: &str,
    ) -> Result<(Option<i64>, Vec<Uuid>), StoreError> {
        let gid = self.gid(name)?;
        let sq = sqlite_err(self.path.clone());
        let tx = self.conn.transaction().map_err(&sq)?;
        let epoch = rekey_on(&tx, gid, random, why).map_err(&sq)?;
        let m = key_holders(&tx, gid).map_err(&sq)?;
        tx.commit().map_err(&sq)?;
        Ok((epoch, m))
    }

    /// Auto-enrolment of a device just onboarded: it joins every group
    /// made with `--auto` (a light as a member, with the server credentials
    /// of the group's switches; a switch granted all the group's lights).
    /// The group's key is created by the first. Returns the devices to
    /// sync (empty when no group is automatic).
    pub fn auto_enrol(
        &mut self,
        uuid: &Uuid,
        role: DeviceRole,
        random: &mut dyn FnMut(&mut [u8]),
    ) -> Result<Vec<Uuid>, StoreError> {
        let sq = sqlite_err(self.path.clone());
        let tx = self.conn.transaction().map_err(&sq)?;
        let auto: Vec<i64> = {
            let mut st = tx
                .prepare("SELECT id FROM ssm_groups WHERE auto = 1 ORDER BY id")
                .map_err(&sq)?;
            let rows = st.query_map([], |r| r.get(0)).map_err(&sq)?;
            rows.collect::<Result<_, _>>().map_err(&sq)?
        };
        let mut affected = Vec::new();
        for gid in auto {
            affected.extend(add_on(&tx, gid, &[(*uuid, role)], random).map_err(&sq)?);
        }
        affected.sort();
        affected.dedup();
        mark_stale(&tx, &affected).map_err(&sq)?;
        tx.commit().map_err(&sq)?;
        Ok(affected)
    }
}

fn self_grants(c: &Connection, gid: i64) -> rusqlite::Result<Vec<(Uuid, Uuid)>> {
    let mut st =
        c.prepare("SELECT client_uuid, light_uuid FROM group_grants WHERE group_id = ?1")?;
    let rows = st.query_map(params![gid], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
    })?;
    Ok(rows
        .filter_map(|r| r.ok())
        .filter_map(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
        .collect())
}

/// Adds devices to group `gid` (see [`Store::add_to_group`]).
fn add_on(
    c: &Connection,
    gid: i64,
    devices: &[(Uuid, DeviceRole)],
    random: &mut dyn FnMut(&mut [u8]),
) -> rusqlite::Result<Vec<Uuid>> {
    let mut affected = Vec::new();
    for (d, role) in devices {
        match role {
            DeviceRole::Light => {
                add_member_on(c, gid, d, random)?;
                affected.push(*d);
                for s in group_followers(c, gid)? {
                    affected.extend(grant_on(c, gid, &s, &[*d], random)?);
                }
            }
            DeviceRole::Switch => {
                let n = c.execute(
                    "INSERT OR IGNORE INTO group_switches (group_id, client_uuid) VALUES (?1, ?2)",
                    params![gid, d.to_string()],
                )?;
                if n == 1 {
                    audit_on(c, "group-follow", &format!("{d} commands group {gid}"))?;
                }
                let lights = group_lights(c, gid)?;
                affected.extend(grant_on(c, gid, d, &lights, random)?);
            }
        }
    }
    affected.sort();
    affected.dedup();
    Ok(affected)
}

/// A group rekeyed by a change: (group id, new epoch).
pub type Rekeyed = (i64, i64);

/// Everything of `uuid` leaves every group (grants, membership, following,
/// pair-wise keys; its Sender IDs are kept, revoked: never reused), and
/// each group it was in is rekeyed. Returns (group id, new epoch) per
/// rekeyed group and the devices concerned.
pub(super) fn leave_all_groups(
    c: &Connection,
    uuid: &Uuid,
    random: &mut dyn FnMut(&mut [u8]),
) -> rusqlite::Result<(Vec<Rekeyed>, Vec<Uuid>)> {
    let u = uuid.to_string();
    let groups: Vec<i64> = {
        let mut st = c.prepare(
            "SELECT group_id FROM group_grants WHERE client_uuid = ?1 OR light_uuid = ?1
             UNION SELECT group_id FROM group_switches WHERE client_uuid = ?1
             UNION SELECT group_id FROM group_members WHERE light_uuid = ?1
             UNION SELECT group_id FROM sender_ids WHERE client_uuid = ?1 AND revoked = 0
             ORDER BY 1",
        )?;
        let rows = st.query_map(params![u], |r| r.get(0))?;
        rows.collect::<Result<_, _>>()?
    };
    for sql in [
        "DELETE FROM group_grants WHERE client_uuid = ?1 OR light_uuid = ?1",
        "DELETE FROM group_switches WHERE client_uuid = ?1",
        "DELETE FROM group_members WHERE light_uuid = ?1",
        "DELETE FROM pairwise WHERE client_uuid = ?1 OR light_uuid = ?1",
        "UPDATE sender_ids SET revoked = 1 WHERE client_uuid = ?1",
    ] {
        c.execute(sql, params![u])?;
    }
    let mut rekeyed = Vec::new();
    let mut affected = Vec::new();
    for gid in groups {
        if let Some(e) = rekey_on(c, gid, random, &format!("{u} removed"))? {
            rekeyed.push((gid, e));
        }
        affected.extend(key_holders(c, gid)?);
    }
    affected.sort();
    affected.dedup();
    Ok((rekeyed, affected))
}

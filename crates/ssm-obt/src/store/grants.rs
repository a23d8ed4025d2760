//! SSM groups, Sender IDs, grants and pair-wise keys: the helpers every
//! change runs inside its transaction, and the calls on the group `all`
//! (what `ssm obt ssm grant|revoke|rekey` does without `--group`).
use super::*;

/// The group that grants, revokes and rekeys without a group name work on
/// (created at the first grant, so a fresh domain behaves as one with a
/// single group).
pub const ALL_GROUP: &str = "all";

/// How many fresh IDs a change draws before it gives up on collisions with
/// IDs already given out (each has a chance of about 2^-48; more means the
/// random source is broken).
const ID_ATTEMPTS: u32 = 16;

/// Marks `uuids` stale (an onboarding stays one; an external member is
/// never stale: the OBT never reaches it).
pub(super) fn mark_stale(c: &Connection, uuids: &[Uuid]) -> rusqlite::Result<()> {
    for u in uuids {
        c.execute(
            "UPDATE devices SET state = ?2, updated = CURRENT_TIMESTAMP
             WHERE uuid = ?1 AND state NOT IN (?3, ?4)",
            params![
                u.to_string(),
                DeviceState::Stale.as_str(),
                DeviceState::Onboarding.as_str(),
                DeviceState::External.as_str()
            ],
        )?;
    }
    Ok(())
}

pub(super) fn uuids(
    c: &Connection,
    sql: &str,
    p: impl rusqlite::Params,
) -> rusqlite::Result<Vec<Uuid>> {
    let mut st = c.prepare(sql)?;
    let rows = st.query_map(p, |r| r.get::<_, String>(0))?;
    let mut out: Vec<Uuid> = rows.filter_map(|r| r.ok()?.parse().ok()).collect();
    out.sort();
    out.dedup();
    Ok(out)
}

/// Every device group `gid` concerns: its switches (by grant or by
/// following the group), the lights granted to them (they hold the key)
/// and its members.
pub(super) fn key_holders(c: &Connection, gid: i64) -> rusqlite::Result<Vec<Uuid>> {
    uuids(
        c,
        "SELECT client_uuid FROM group_grants WHERE group_id = ?1
         UNION SELECT light_uuid FROM group_grants WHERE group_id = ?1
         UNION SELECT client_uuid FROM group_switches WHERE group_id = ?1
         UNION SELECT light_uuid FROM group_members WHERE group_id = ?1",
        params![gid],
    )
}

/// The switches that command something in group `gid`.
fn group_clients(c: &Connection, gid: i64) -> rusqlite::Result<Vec<Uuid>> {
    uuids(
        c,
        "SELECT client_uuid FROM group_grants WHERE group_id = ?1
         UNION SELECT client_uuid FROM group_switches WHERE group_id = ?1",
        params![gid],
    )
}

/// The members (lights) of group `gid`.
pub(super) fn group_lights(c: &Connection, gid: i64) -> rusqlite::Result<Vec<Uuid>> {
    uuids(
        c,
        "SELECT light_uuid FROM group_members WHERE group_id = ?1",
        params![gid],
    )
}

/// The switches that follow group `gid`'s membership (granted on every
/// member, present and future).
pub(super) fn group_followers(c: &Connection, gid: i64) -> rusqlite::Result<Vec<Uuid>> {
    uuids(
        c,
        "SELECT client_uuid FROM group_switches WHERE group_id = ?1",
        params![gid],
    )
}

pub(super) fn group_id(c: &Connection, name: &str) -> rusqlite::Result<Option<i64>> {
    c.query_row(
        "SELECT id FROM ssm_groups WHERE name = ?1",
        params![name],
        |r| r.get(0),
    )
    .optional()
}

/// The group `name`, created (without a key yet) if missing.
pub(super) fn ensure_group(c: &Connection, name: &str, auto: bool) -> rusqlite::Result<i64> {
    if let Some(id) = group_id(c, name)? {
        return Ok(id);
    }
    c.execute(
        "INSERT INTO ssm_groups (name, auto) VALUES (?1, ?2)",
        params![name, auto as i64],
    )?;
    let id = c.last_insert_rowid();
    let how = if auto { ", auto-enrolment" } else { "" };
    audit_on(c, "group-create", &format!("{name} (id {id}{how})"))?;
    Ok(id)
}

/// The group's epoch; its key is created (epoch 1) if it has none yet.
fn ensure_key(
    c: &Connection,
    gid: i64,
    random: &mut dyn FnMut(&mut [u8]),
) -> rusqlite::Result<i64> {
    let (keyed, epoch): (bool, i64) = c.query_row(
        "SELECT secret IS NOT NULL, epoch FROM ssm_groups WHERE id = ?1",
        params![gid],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    if keyed {
        return Ok(epoch);
    }
    let mut secret = Zeroizing::new([0u8; 32]);
    random(&mut secret[..]);
    c.execute(
        "UPDATE ssm_groups SET secret = ?1, epoch = 1 WHERE id = ?2",
        params![&secret[..], gid],
    )?;
    audit_on(
        c,
        "ssm-group",
        &format!("group {gid} key created (epoch 1)"),
    )?;
    Ok(1)
}

/// A fresh OSCORE ID of 7 bytes with `prefix` as its first byte.
fn fresh_id(prefix: u8, random: &mut dyn FnMut(&mut [u8])) -> [u8; 7] {
    let mut id = [0u8; 7];
    random(&mut id);
    id[0] = prefix;
    id
}

fn exhausted(what: &str) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(Box::new(std::io::Error::other(format!(
        "the random source keeps repeating {what} already given out"
    ))))
}

/// A new Sender ID for `client` in group `gid` at `epoch`: never one given
/// out before, in any group or epoch (the table's key).
pub(super) fn new_sender_id(
    c: &Connection,
    gid: i64,
    client: &Uuid,
    epoch: i64,
    random: &mut dyn FnMut(&mut [u8]),
) -> rusqlite::Result<String> {
    for _ in 0..ID_ATTEMPTS {
        let h = hex::encode(fresh_id(0x02, random));
        let n = c.execute(
            "INSERT OR IGNORE INTO sender_ids (sender_id, client_uuid, epoch, group_id) VALUES (?1, ?2, ?3, ?4)",
            params![h, client.to_string(), epoch, gid],
        )?;
        if n == 1 {
            audit_on(
                c,
                "sender-id",
                &format!("{h} for {client} (group {gid}, epoch {epoch})"),
            )?;
            return Ok(h);
        }
    }
    Err(exhausted("Sender IDs"))
}

fn current_sender_on(c: &Connection, gid: i64, client: &Uuid) -> rusqlite::Result<Option<String>> {
    c.query_row(
        "SELECT s.sender_id FROM sender_ids s JOIN ssm_groups g ON g.id = s.group_id
         WHERE s.group_id = ?1 AND s.client_uuid = ?2 AND s.epoch = g.epoch AND s.revoked = 0",
        params![gid, client.to_string()],
        |r| r.get(0),
    )
    .optional()
}

/// The pair-wise key of (client, light), drawn if the pair has none (a
/// grant given before keeps its key: idempotent).
fn ensure_pairwise(
    c: &Connection,
    client: &Uuid,
    light: &Uuid,
    random: &mut dyn FnMut(&mut [u8]),
) -> rusqlite::Result<()> {
    let keyed = c
        .query_row(
            "SELECT 1 FROM pairwise WHERE client_uuid = ?1 AND light_uuid = ?2",
            params![client.to_string(), light.to_string()],
            |_| Ok(()),
        )
        .optional()?
        .is_some();
    if keyed {
        return Ok(());
    }
    let mut attempt = 0;
    loop {
        let mut secret = Zeroizing::new([0u8; 32]);
        random(&mut secret[..]);
        let (a, mut b) = (fresh_id(0x01, random), fresh_id(0x01, random));
        if a == b {
            b[6] ^= 0xff;
        }
        // A plain INSERT: an ID already given to another pair (UNIQUE
        // client_id/light_id) must fail, not be ignored.
        match c.execute(
            "INSERT INTO pairwise (client_uuid, light_uuid, secret, client_id, light_id) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![client.to_string(), light.to_string(), &secret[..], hex::encode(a), hex::encode(b)],
        ) {
            Ok(_) => return Ok(()),
            // An ID collision: draw again (a few times).
            Err(rusqlite::Error::SqliteFailure(e, m))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                attempt += 1;
                if attempt >= ID_ATTEMPTS {
                    return Err(rusqlite::Error::SqliteFailure(e, m));
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// Whether `uuid` is an external member (never reached by the OBT).
fn external_on(c: &Connection, uuid: &Uuid) -> rusqlite::Result<bool> {
    Ok(c.query_row(
        "SELECT 1 FROM devices WHERE uuid = ?1 AND state = ?2",
        params![uuid.to_string(), DeviceState::External.as_str()],
        |_| Ok(()),
    )
    .optional()?
    .is_some())
}

/// The pair-wise key of (client, light) goes once no group grants the pair.
fn drop_unused_pairwise(c: &Connection, client: &Uuid, light: &Uuid) -> rusqlite::Result<()> {
    c.execute(
        "DELETE FROM pairwise WHERE client_uuid = ?1 AND light_uuid = ?2 AND NOT EXISTS
         (SELECT 1 FROM group_grants WHERE client_uuid = ?1 AND light_uuid = ?2)",
        params![client.to_string(), light.to_string()],
    )?;
    Ok(())
}

/// Lets `client` command `lights` in group `gid`: the group's key (created
/// at its first use), the client's Sender ID of this epoch, the lights as
/// members, the grants and a pair-wise key per pair. Returns the devices
/// it concerns.
pub(super) fn grant_on(
    c: &Connection,
    gid: i64,
    client: &Uuid,
    lights: &[Uuid],
    random: &mut dyn FnMut(&mut [u8]),
) -> rusqlite::Result<Vec<Uuid>> {
    let epoch = ensure_key(c, gid, random)?;
    if current_sender_on(c, gid, client)?.is_none() {
        new_sender_id(c, gid, client, epoch, random)?;
    }
    let mut affected = vec![*client];
    for light in lights {
        add_member_on(c, gid, light, random)?;
        let new = c.execute(
            "INSERT OR IGNORE INTO group_grants (group_id, client_uuid, light_uuid) VALUES (?1, ?2, ?3)",
            params![gid, client.to_string(), light.to_string()],
        )?;
        // An external member holds no pair-wise key: nothing brings it one.
        if !external_on(c, client)? && !external_on(c, light)? {
            ensure_pairwise(c, client, light, random)?;
        }
        if new == 1 {
            audit_on(c, "grant", &format!("{client} -> {light} (group {gid})"))?;
        }
        affected.push(*light);
    }
    Ok(affected)
}

/// Makes `light` a member of group `gid` (true if it was not one).
pub(super) fn add_member_on(
    c: &Connection,
    gid: i64,
    light: &Uuid,
    random: &mut dyn FnMut(&mut [u8]),
) -> rusqlite::Result<bool> {
    ensure_key(c, gid, random)?;
    let n = c.execute(
        "INSERT OR IGNORE INTO group_members (group_id, light_uuid) VALUES (?1, ?2)",
        params![gid, light.to_string()],
    )?;
    if n == 1 {
        audit_on(c, "group-add", &format!("{light} to group {gid}"))?;
    }
    Ok(n == 1)
}

/// Deletes `client`'s grants on `lights` in group `gid` (and the pair-wise
/// keys no group needs any more). Returns the devices concerned.
pub(super) fn ungrant_on(
    c: &Connection,
    gid: i64,
    client: &Uuid,
    lights: &[Uuid],
) -> rusqlite::Result<Vec<Uuid>> {
    let mut affected = vec![*client];
    for light in lights {
        let n = c.execute(
            "DELETE FROM group_grants WHERE group_id = ?1 AND client_uuid = ?2 AND light_uuid = ?3",
            params![gid, client.to_string(), light.to_string()],
        )?;
        drop_unused_pairwise(c, client, light)?;
        if n > 0 {
            audit_on(c, "revoke", &format!("{client} -/-> {light} (group {gid})"))?;
        }
        affected.push(*light);
    }
    Ok(affected)
}

/// A client that commands nothing in group `gid` any more (no grant, does
/// not follow it) leaves it: its Sender IDs there are revoked. True if it
/// held one of this epoch (the group must be rekeyed: it holds the key).
pub(super) fn leave_if_idle(c: &Connection, gid: i64, client: &Uuid) -> rusqlite::Result<bool> {
    let commands: i64 = c.query_row(
        "SELECT (SELECT COUNT(*) FROM group_grants WHERE group_id = ?1 AND client_uuid = ?2)
              + (SELECT COUNT(*) FROM group_switches WHERE group_id = ?1 AND client_uuid = ?2)",
        params![gid, client.to_string()],
        |r| r.get(0),
    )?;
    if commands > 0 || current_sender_on(c, gid, client)?.is_none() {
        return Ok(false);
    }
    c.execute(
        "UPDATE sender_ids SET revoked = 1 WHERE client_uuid = ?1 AND group_id = ?2",
        params![client.to_string(), gid],
    )?;
    Ok(true)
}

/// Takes `lights` from `client` in group `gid`. A client left commanding
/// nothing in the group leaves it and the group is rekeyed (it still holds
/// the key). Returns the devices concerned and the new epoch if there was
/// a rekey.
pub(super) fn revoke_on(
    c: &Connection,
    gid: i64,
    client: &Uuid,
    lights: &[Uuid],
    random: &mut dyn FnMut(&mut [u8]),
) -> rusqlite::Result<(Vec<Uuid>, Option<i64>)> {
    let mut affected = ungrant_on(c, gid, client, lights)?;
    let mut epoch = None;
    if !lights.is_empty() && leave_if_idle(c, gid, client)? {
        epoch = rekey_on(c, gid, random, &format!("{client} left the group"))?;
        affected.extend(key_holders(c, gid)?);
    }
    affected.sort();
    affected.dedup();
    Ok((affected, epoch))
}

/// Group `gid`'s new secret (epoch + 1), a new Sender ID for every switch
/// still in it, every device it concerns stale: inside the caller's
/// transaction. `None` if the group has no key yet.
pub(super) fn rekey_on(
    c: &Connection,
    gid: i64,
    random: &mut dyn FnMut(&mut [u8]),
    why: &str,
) -> rusqlite::Result<Option<i64>> {
    let row: Option<(bool, i64, String)> = c
        .query_row(
            "SELECT secret IS NOT NULL, epoch, name FROM ssm_groups WHERE id = ?1",
            params![gid],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let Some((true, epoch, name)) = row else {
        return Ok(None);
    };
    let mut secret = Zeroizing::new([0u8; 32]);
    random(&mut secret[..]);
    let next = epoch + 1;
    c.execute(
        "UPDATE ssm_groups SET secret = ?1, epoch = ?2 WHERE id = ?3",
        params![&secret[..], next, gid],
    )?;
    c.execute(
        "UPDATE sender_ids SET revoked = 1 WHERE group_id = ?1 AND epoch < ?2",
        params![gid, next],
    )?;
    for client in group_clients(c, gid)? {
        new_sender_id(c, gid, &client, next, random)?;
    }
    mark_stale(c, &key_holders(c, gid)?)?;
    audit_on(
        c,
        "rekey",
        &format!("group {name}: epoch {epoch} -> {next}: {why}"),
    )?;
    Ok(Some(next))
}

impl Store {
    /// Every (client, light) pair some group grants (each pair once).
    pub fn grants(&self) -> Result<Vec<(Uuid, Uuid)>, StoreError> {
        self.grant_rows(
            "SELECT DISTINCT client_uuid, light_uuid FROM group_grants",
            params![],
        )
    }

    /// The (client, light) grants of group `gid`.
    pub fn grants_in(&self, gid: i64) -> Result<Vec<(Uuid, Uuid)>, StoreError> {
        self.grant_rows(
            "SELECT client_uuid, light_uuid FROM group_grants WHERE group_id = ?1",
            params![gid],
        )
    }

    fn grant_rows(
        &self,
        sql: &str,
        p: impl rusqlite::Params,
    ) -> Result<Vec<(Uuid, Uuid)>, StoreError> {
        let mut st = self.conn.prepare(sql).map_err(self.sq())?;
        let rows = st
            .query_map(p, |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(self.sq())?;
        Ok(rows
            .filter_map(|r| r.ok())
            .filter_map(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
            .collect())
    }

    /// The group `all` of this epoch, if its key was created.
    pub fn group(&self) -> Result<Option<GroupState>, StoreError> {
        match group_id(&self.conn, ALL_GROUP).map_err(self.sq())? {
            Some(gid) => self.group_state(gid),
            None => Ok(None),
        }
    }

    /// `client`'s Sender ID in the group `all` this epoch (hex), if any.
    pub fn current_sender_id(&self, client: &Uuid) -> Result<Option<String>, StoreError> {
        match group_id(&self.conn, ALL_GROUP).map_err(self.sq())? {
            Some(gid) => self.sender_id_in(gid, client),
            None => Ok(None),
        }
    }

    /// `client`'s Sender ID in group `gid` this epoch (hex), if any.
    pub fn sender_id_in(&self, gid: i64, client: &Uuid) -> Result<Option<String>, StoreError> {
        current_sender_on(&self.conn, gid, client).map_err(self.sq())
    }

    /// Lets `client` command `lights` by SSM in the group `all`, in one
    /// transaction: the group (created at the first grant, epoch 1), the
    /// client's Sender ID in this epoch, the lights as members, a pair-wise
    /// key per light, the grants; the client and the lights become stale
    /// (to be brought up to date by a sync). Granting again changes
    /// nothing. Returns the devices to sync.
    pub fn grant_lights(
        &mut self,
        client: &Uuid,
        lights: &[Uuid],
        random: &mut dyn FnMut(&mut [u8]),
    ) -> Result<Vec<Uuid>, StoreError> {
        // The group `all` is made `ocf-ssm`: it takes no external member.
        let profile = match group_id(&self.conn, ALL_GROUP).map_err(self.sq())? {
            Some(gid) => self.profile_of(gid)?,
            None => Profile::OcfSsm,
        };
        let mut all = vec![*client];
        all.extend_from_slice(lights);
        self.check_externals(ALL_GROUP, profile, &all)?;
        let sq = sqlite_err(self.path.clone());
        let tx = self.conn.transaction().map_err(&sq)?;
        let gid = ensure_group(&tx, ALL_GROUP, false).map_err(&sq)?;
        let affected = grant_on(&tx, gid, client, lights, random).map_err(&sq)?;
        mark_stale(&tx, &affected).map_err(&sq)?;
        tx.commit().map_err(&sq)?;
        Ok(affected)
    }

    /// Takes `lights` from `client` in the group `all`, in one transaction:
    /// the grants go (and the pair-wise keys no other group needs), and the
    /// devices become stale. A client left without any light there leaves
    /// the group: the group is rekeyed (it still holds the old key).
    /// Returns the devices to sync and the new epoch if there was a rekey.
    pub fn revoke_lights(
        &mut self,
        client: &Uuid,
        lights: &[Uuid],
        random: &mut dyn FnMut(&mut [u8]),
    ) -> Result<(Vec<Uuid>, Option<i64>), StoreError> {
        let sq = sqlite_err(self.path.clone());
        let tx = self.conn.transaction().map_err(&sq)?;
        let Some(gid) = group_id(&tx, ALL_GROUP).map_err(&sq)? else {
            let mut affected = vec![*client];
            affected.extend_from_slice(lights);
            return Ok((affected, None));
        };
        let (affected, epoch) = revoke_on(&tx, gid, client, lights, random).map_err(&sq)?;
        mark_stale(&tx, &affected).map_err(&sq)?;
        tx.commit().map_err(&sq)?;
        Ok((affected, epoch))
    }

    /// A new secret for the group `all` (epoch + 1) and new Sender IDs for
    /// its switches; every device it concerns becomes stale. Returns the
    /// epoch (0 without a group) and those devices.
    pub fn rekey(
        &mut self,
        random: &mut dyn FnMut(&mut [u8]),
        why: &str,
    ) -> Result<(i64, Vec<Uuid>), StoreError> {
        let sq = sqlite_err(self.path.clone());
        let tx = self.conn.transaction().map_err(&sq)?;
        let Some(gid) = group_id(&tx, ALL_GROUP).map_err(&sq)? else {
            return Ok((0, Vec::new()));
        };
        let epoch = rekey_on(&tx, gid, random, why).map_err(&sq)?.unwrap_or(0);
        let m = key_holders(&tx, gid).map_err(&sq)?;
        tx.commit().map_err(&sq)?;
        Ok((epoch, m))
    }

    /// The pair-wise keys a device takes part in (as switch or light).
    pub fn pairwise_keys(&self, uuid: &Uuid) -> Result<Vec<PairwiseKey>, StoreError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT client_uuid, light_uuid, secret, client_id, light_id FROM pairwise
                 WHERE client_uuid = ?1 OR light_uuid = ?1 ORDER BY client_uuid, light_uuid",
            )
            .map_err(self.sq())?;
        let rows = st
            .query_map(params![uuid.to_string()], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    Zeroizing::new(r.get::<_, Vec<u8>>(2)?),
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                ))
            })
            .map_err(self.sq())?;
        let mut out = Vec::new();
        for row in rows {
            let (c, l, secret, client_id, light_id) = row.map_err(self.sq())?;
            if let (Ok(client), Ok(light)) = (c.parse(), l.parse()) {
                out.push(PairwiseKey {
                    client,
                    light,
                    secret,
                    client_id,
                    light_id,
                });
            }
        }
        Ok(out)
    }
}

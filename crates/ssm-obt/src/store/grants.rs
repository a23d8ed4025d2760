//! The SSM group, Sender IDs, grants and pair-wise keys.
use super::*;

pub(super) fn mark_stale(c: &Connection, uuids: &[Uuid]) -> rusqlite::Result<()> {
    for u in uuids {
        c.execute(
            "UPDATE devices SET state = ?2, updated = CURRENT_TIMESTAMP WHERE uuid = ?1 AND state != ?3",
            params![
                u.to_string(),
                DeviceState::Stale.as_str(),
                DeviceState::Onboarding.as_str()
            ],
        )?;
    }
    Ok(())
}

/// Every device that holds the group key: clients and lights of a grant.
pub(super) fn members(c: &Connection) -> rusqlite::Result<Vec<Uuid>> {
    let mut st = c.prepare("SELECT client_uuid FROM grants UNION SELECT light_uuid FROM grants")?;
    let rows = st.query_map([], |r| r.get::<_, String>(0))?;
    Ok(rows.filter_map(|r| r.ok()?.parse().ok()).collect())
}

/// A fresh OSCORE ID of 7 bytes with `prefix` as its first byte.
/// How many fresh pair-wise ID pairs a grant draws before it gives up on
/// collisions with IDs already given out (each has a chance of about 2^-48).
const PAIRWISE_ID_ATTEMPTS: u32 = 16;

fn fresh_id(prefix: u8, random: &mut dyn FnMut(&mut [u8])) -> [u8; 7] {
    let mut id = [0u8; 7];
    random(&mut id);
    id[0] = prefix;
    id
}

/// New secret, epoch + 1, a new Sender ID for every remaining client, every
/// member stale: inside the caller's transaction.
pub(super) fn rekey_on(
    c: &Connection,
    random: &mut dyn FnMut(&mut [u8]),
    why: &str,
) -> rusqlite::Result<i64> {
    let epoch: Option<i64> = c
        .query_row("SELECT epoch FROM ssm_group WHERE id = 1", [], |r| r.get(0))
        .optional()?;
    let Some(epoch) = epoch else { return Ok(0) };
    let mut secret = Zeroizing::new([0u8; 32]);
    random(&mut secret[..]);
    let next = epoch + 1;
    c.execute(
        "UPDATE ssm_group SET secret = ?1, epoch = ?2 WHERE id = 1",
        params![&secret[..], next],
    )?;
    c.execute(
        "UPDATE sender_ids SET revoked = 1 WHERE epoch < ?1",
        params![next],
    )?;
    let clients: Vec<String> = {
        let mut st = c.prepare("SELECT DISTINCT client_uuid FROM grants")?;
        let rows = st.query_map([], |r| r.get(0))?;
        rows.collect::<Result<_, _>>()?
    };
    for client in clients {
        loop {
            let h = hex::encode(fresh_id(0x02, random));
            let n = c.execute(
                "INSERT OR IGNORE INTO sender_ids (sender_id, client_uuid, epoch) VALUES (?1, ?2, ?3)",
                params![h, client, next],
            )?;
            if n == 1 {
                break;
            }
        }
    }
    mark_stale(c, &members(c)?)?;
    audit_on(c, "rekey", &format!("epoch {epoch} -> {next}: {why}"))?;
    Ok(next)
}

impl Store {
    /// Every (client, light) grant.
    pub fn grants(&self) -> Result<Vec<(Uuid, Uuid)>, StoreError> {
        let sq = sqlite_err(self.path.clone());
        let mut st = self
            .conn
            .prepare("SELECT client_uuid, light_uuid FROM grants")
            .map_err(&sq)?;
        let rows = st
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(&sq)?;
        Ok(rows
            .filter_map(|r| r.ok())
            .filter_map(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
            .collect())
    }

    /// The SSM group of this epoch, if one was created.
    pub fn group(&self) -> Result<Option<GroupState>, StoreError> {
        let row: Option<(Vec<u8>, i64)> = self
            .conn
            .query_row(
                "SELECT secret, epoch FROM ssm_group WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(self.sq())?;
        Ok(row.and_then(|(secret, epoch)| {
            let secret = Zeroizing::new(secret);
            let mut out = Zeroizing::new([0u8; 32]);
            (secret.len() == 32).then(|| {
                out.copy_from_slice(&secret);
                GroupState { secret: out, epoch }
            })
        }))
    }

    /// `client`'s Sender ID in the current epoch (hex), if it is a member.
    pub fn current_sender_id(&self, client: &Uuid) -> Result<Option<String>, StoreError> {
        self.conn
            .query_row(
                "SELECT s.sender_id FROM sender_ids s JOIN ssm_group g ON g.id = 1
                 WHERE s.client_uuid = ?1 AND s.epoch = g.epoch AND s.revoked = 0",
                params![client.to_string()],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.sq())
    }

    /// Lets `client` command `lights` by SSM, in one transaction: the group
    /// (created at the first grant, epoch 1), the client's Sender ID in
    /// this epoch, a pair-wise key per light, the grants; the client and
    /// the lights become stale (to be brought up to date by a sync).
    /// Granting again changes nothing. Returns the devices to sync.
    pub fn grant_lights(
        &mut self,
        client: &Uuid,
        lights: &[Uuid],
        random: &mut dyn FnMut(&mut [u8]),
    ) -> Result<Vec<Uuid>, StoreError> {
        let sq = sqlite_err(self.path.clone());
        let tx = self.conn.transaction().map_err(&sq)?;
        let epoch: Option<i64> = tx
            .query_row("SELECT epoch FROM ssm_group WHERE id = 1", [], |r| r.get(0))
            .optional()
            .map_err(&sq)?;
        let epoch = match epoch {
            Some(e) => e,
            None => {
                let mut secret = Zeroizing::new([0u8; 32]);
                random(&mut secret[..]);
                tx.execute(
                    "INSERT INTO ssm_group (id, secret, epoch) VALUES (1, ?1, 1)",
                    params![&secret[..]],
                )
                .map_err(&sq)?;
                audit_on(&tx, "ssm-group", "created (epoch 1)").map_err(&sq)?;
                1
            }
        };
        let has_id: bool = tx
            .query_row(
                "SELECT COUNT(*) FROM sender_ids WHERE client_uuid = ?1 AND epoch = ?2 AND revoked = 0",
                params![client.to_string(), epoch],
                |r| r.get::<_, i64>(0),
            )
            .map_err(&sq)?
            > 0;
        if !has_id {
            loop {
                let h = hex::encode(fresh_id(0x02, random));
                let n = tx
                    .execute(
                        "INSERT OR IGNORE INTO sender_ids (sender_id, client_uuid, epoch) VALUES (?1, ?2, ?3)",
                        params![h, client.to_string(), epoch],
                    )
                    .map_err(&sq)?;
                if n == 1 {
                    audit_on(
                        &tx,
                        "sender-id",
                        &format!("{h} for {client} (epoch {epoch})"),
                    )
                    .map_err(&sq)?;
                    break;
                }
            }
        }
        let mut affected = vec![*client];
        for light in lights {
            let new = tx
                .execute(
                    "INSERT OR IGNORE INTO grants (client_uuid, light_uuid) VALUES (?1, ?2)",
                    params![client.to_string(), light.to_string()],
                )
                .map_err(&sq)?;
            // A grant given before keeps its pair-wise key (idempotent).
            let keyed = tx
                .query_row(
                    "SELECT 1 FROM pairwise WHERE client_uuid = ?1 AND light_uuid = ?2",
                    params![client.to_string(), light.to_string()],
                    |_| Ok(()),
                )
                .optional()
                .map_err(&sq)?
                .is_some();
            if !keyed {
                let mut attempt = 0;
                loop {
                    let mut secret = Zeroizing::new([0u8; 32]);
                    random(&mut secret[..]);
                    let (a, mut b) = (fresh_id(0x01, random), fresh_id(0x01, random));
                    if a == b {
                        b[6] ^= 0xff;
                    }
                    // A plain INSERT: an ID already given to another pair
                    // (UNIQUE client_id/light_id) must fail, not be ignored.
                    match tx.execute(
                        "INSERT INTO pairwise (client_uuid, light_uuid, secret, client_id, light_id) VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![client.to_string(), light.to_string(), &secret[..], hex::encode(a), hex::encode(b)],
                    ) {
                        Ok(_) => break,
                        // An ID collision: draw again (a few times; more means
                        // the random source is broken).
                        Err(rusqlite::Error::SqliteFailure(e, m))
                            if e.code == rusqlite::ErrorCode::ConstraintViolation =>
                        {
                            attempt += 1;
                            if attempt >= PAIRWISE_ID_ATTEMPTS {
                                return Err(sq(rusqlite::Error::SqliteFailure(e, m)));
                            }
                        }
                        Err(e) => return Err(sq(e)),
                    }
                }
            }
            if new == 1 {
                audit_on(&tx, "grant", &format!("{client} -> {light}")).map_err(&sq)?;
            }
            affected.push(*light);
        }
        mark_stale(&tx, &affected).map_err(&sq)?;
        tx.commit().map_err(&sq)?;
        Ok(affected)
    }

    /// Takes `lights` from `client`, in one transaction: the grants and
    /// their pair-wise keys go, and the devices become stale. A client
    /// left without any light leaves the group: the group is rekeyed (it
    /// still holds the old key). Returns the devices to sync and the new
    /// epoch if there was a rekey.
    pub fn revoke_lights(
        &mut self,
        client: &Uuid,
        lights: &[Uuid],
        random: &mut dyn FnMut(&mut [u8]),
    ) -> Result<(Vec<Uuid>, Option<i64>), StoreError> {
        let sq = sqlite_err(self.path.clone());
        let tx = self.conn.transaction().map_err(&sq)?;
        let mut affected = vec![*client];
        for light in lights {
            let n = tx
                .execute(
                    "DELETE FROM grants WHERE client_uuid = ?1 AND light_uuid = ?2",
                    params![client.to_string(), light.to_string()],
                )
                .map_err(&sq)?;
            tx.execute(
                "DELETE FROM pairwise WHERE client_uuid = ?1 AND light_uuid = ?2",
                params![client.to_string(), light.to_string()],
            )
            .map_err(&sq)?;
            if n > 0 {
                audit_on(&tx, "revoke", &format!("{client} -/-> {light}")).map_err(&sq)?;
            }
            affected.push(*light);
        }
        let left: i64 = tx
            .query_row(
                "SELECT COUNT(*) FROM grants WHERE client_uuid = ?1",
                params![client.to_string()],
                |r| r.get(0),
            )
            .map_err(&sq)?;
        let mut epoch = None;
        if left == 0 && !lights.is_empty() {
            tx.execute(
                "UPDATE sender_ids SET revoked = 1 WHERE client_uuid = ?1",
                params![client.to_string()],
            )
            .map_err(&sq)?;
            epoch = Some(rekey_on(&tx, random, &format!("{client} left the group")).map_err(&sq)?);
            affected.extend(members(&tx).map_err(&sq)?);
        }
        mark_stale(&tx, &affected).map_err(&sq)?;
        tx.commit().map_err(&sq)?;
        affected.sort();
        affected.dedup();
        Ok((affected, epoch))
    }

    /// A new group secret (epoch + 1) and new Sender IDs for every member;
    /// every member becomes stale. Returns the epoch and the members.
    pub fn rekey(
        &mut self,
        random: &mut dyn FnMut(&mut [u8]),
        why: &str,
    ) -> Result<(i64, Vec<Uuid>), StoreError> {
        let sq = sqlite_err(self.path.clone());
        let tx = self.conn.transaction().map_err(&sq)?;
        let epoch = rekey_on(&tx, random, why).map_err(&sq)?;
        let m = members(&tx).map_err(&sq)?;
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

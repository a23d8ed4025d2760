//! The group operations (`ssm obt group …`, `ssm obt ssm grant|revoke
//! --group`): each writes the store first (one transaction that marks what
//! it touches stale), then syncs those devices, and returns a typed report.
use super::{rng, sync_devices, EngineError, Granted, Progress, Reach, Revoked, Synced};
use crate::store::{GroupInfo, Store};
use crate::DeviceRole;
use uuid::Uuid;

/// What a group change did.
#[derive(Debug)]
pub struct GroupChanged {
    /// The group as it is now.
    pub group: GroupInfo,
    /// The devices named.
    pub devices: Vec<Uuid>,
    /// The new epoch if the group was rekeyed.
    pub rekeyed: Option<i64>,
    /// The devices brought up to date.
    pub synced: Vec<Synced>,
}

/// What `group delete` did.
#[derive(Debug)]
pub struct GroupDeleted {
    /// The group as it was.
    pub group: GroupInfo,
    /// The devices brought up to date (its credentials taken away).
    pub synced: Vec<Synced>,
}

/// `ssm obt group create NAME [--auto]`: no device changes (the key is
/// made by the first device added).
pub fn group_create(s: &mut Store, name: &str, auto: bool) -> Result<GroupInfo, EngineError> {
    Ok(s.create_group(name, auto)?)
}

/// `ssm obt group create NAME --profile P [--aead-alg A]`: a group with a
/// security profile (`group-oscore`: the OBT is its Group Manager) and,
/// for `group-oscore` only, the AEAD Algorithm its Common Context sets.
pub fn group_create_with(
    s: &mut Store,
    name: &str,
    auto: bool,
    profile: crate::store::Profile,
    aead_alg: Option<i64>,
) -> Result<GroupInfo, EngineError> {
    Ok(s.create_group_with(name, auto, profile, aead_alg)?)
}

fn named(s: &Store, devices: &[String]) -> Result<Vec<(Uuid, DeviceRole)>, EngineError> {
    if devices.is_empty() {
        return Err(EngineError::NoDevicesNamed);
    }
    devices
        .iter()
        .map(|d| s.device(d).map(|r| (r.uuid, r.role)))
        .collect::<Result<_, _>>()
        .map_err(EngineError::from)
}

/// `ssm obt group add NAME DEVICE…`: lights become members (granted to
/// the switches that follow the group), switches follow it (granted on
/// every member).
pub async fn group_add(
    s: &mut Store,
    name: &str,
    devices: &[String],
    reach: &Reach,
    jobs: usize,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<GroupChanged, EngineError> {
    let (obt, _) = s.obt()?;
    s.group_info(name)?;
    let ds = named(s, devices)?;
    let affected = s.add_to_group(name, &ds, &mut rng)?;
    let synced = sync_devices(s, obt, &affected, reach, jobs, progress).await?;
    Ok(GroupChanged {
        group: s.group_info(name)?,
        devices: ds.iter().map(|d| d.0).collect(),
        rekeyed: None,
        synced,
    })
}

/// `ssm obt group remove NAME DEVICE…`: the devices leave the group, which
/// (and only which) is rekeyed.
pub async fn group_remove(
    s: &mut Store,
    name: &str,
    devices: &[String],
    reach: &Reach,
    jobs: usize,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<GroupChanged, EngineError> {
    let (obt, _) = s.obt()?;
    s.group_info(name)?;
    let ds = named(s, devices)?;
    let (affected, rekeyed) = s.remove_from_group(name, &ds, &mut rng)?;
    let synced = sync_devices(s, obt, &affected, reach, jobs, progress).await?;
    Ok(GroupChanged {
        group: s.group_info(name)?,
        devices: ds.iter().map(|d| d.0).collect(),
        rekeyed,
        synced,
    })
}

/// `ssm obt group rekey NAME`: a new key for that group only.
pub async fn group_rekey(
    s: &mut Store,
    name: &str,
    reach: &Reach,
    jobs: usize,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<GroupChanged, EngineError> {
    let (obt, _) = s.obt()?;
    let (rekeyed, affected) = s.rekey_group(name, &mut rng, "requested")?;
    if rekeyed.is_none() {
        return Err(EngineError::NoGroupKey(name.into()));
    }
    let synced = sync_devices(s, obt, &affected, reach, jobs, progress).await?;
    Ok(GroupChanged {
        group: s.group_info(name)?,
        devices: Vec::new(),
        rekeyed,
        synced,
    })
}

/// `ssm obt group delete NAME`: the group goes; its devices lose its
/// credentials.
pub async fn group_delete(
    s: &mut Store,
    name: &str,
    reach: &Reach,
    jobs: usize,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<GroupDeleted, EngineError> {
    let (obt, _) = s.obt()?;
    let group = s.group_info(name)?;
    let affected = s.delete_group(name)?;
    let synced = sync_devices(s, obt, &affected, reach, jobs, progress).await?;
    Ok(GroupDeleted { group, synced })
}

fn switch(s: &Store, client: &str) -> Result<crate::store::DeviceRecord, EngineError> {
    let c = s.device(client)?;
    if c.role != DeviceRole::Switch {
        return Err(EngineError::NotASwitch {
            name: c.name,
            role: c.role,
        });
    }
    Ok(c)
}

/// `ssm obt ssm grant SWITCH --group NAME`: the switch commands the whole
/// group (its members now and later).
pub async fn grant_group(
    s: &mut Store,
    client: &str,
    group: &str,
    reach: &Reach,
    jobs: usize,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<Granted, EngineError> {
    let (obt, _) = s.obt()?;
    let c = switch(s, client)?;
    let g = s.group_info(group)?;
    let affected = s.add_to_group(group, &[(c.uuid, DeviceRole::Switch)], &mut rng)?;
    let synced = sync_devices(s, obt, &affected, reach, jobs, progress).await?;
    Ok(Granted {
        sender_id: s.sender_id_in(g.id, &c.uuid)?,
        epoch: s.group_state(g.id)?.map(|k| k.epoch),
        lights: s.group_info(group)?.members,
        hrefs: super::ops::hrefs_commanded(s, &c.uuid)?,
        client: c,
        synced,
    })
}

/// `ssm obt ssm revoke SWITCH --group NAME`: the switch no longer commands
/// the group, which is rekeyed.
pub async fn revoke_group(
    s: &mut Store,
    client: &str,
    group: &str,
    reach: &Reach,
    jobs: usize,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<Revoked, EngineError> {
    let (obt, _) = s.obt()?;
    let c = switch(s, client)?;
    let g = s.group_info(group)?;
    let lights: Vec<Uuid> = s
        .grants_in(g.id)?
        .into_iter()
        .filter(|(cl, _)| *cl == c.uuid)
        .map(|(_, l)| l)
        .collect();
    if lights.is_empty() && !g.followers.contains(&c.uuid) && !g.switches.contains(&c.uuid) {
        return Err(EngineError::NoGrants(c.name));
    }
    let (affected, epoch) =
        s.remove_from_group(group, &[(c.uuid, DeviceRole::Switch)], &mut rng)?;
    let synced = sync_devices(s, obt, &affected, reach, jobs, progress).await?;
    Ok(Revoked {
        client: c,
        lights,
        epoch,
        synced,
    })
}

/// Auto-enrolment after onboarding: every SSM-capable device just
/// onboarded joins the `--auto` groups (see [`Store::auto_enrol`]): a
/// light that hosts an SSM-enabled resource (its `/oic/res`), a switch
/// that can send SSM (credtype 128 in its doxm `sct`). Returns the devices
/// to sync.
pub async fn auto_enrol(s: &mut Store, onboarded: &[Uuid]) -> Result<Vec<Uuid>, EngineError> {
    let mut affected = Vec::new();
    if !s.groups()?.iter().any(|g| g.auto) {
        return Ok(affected);
    }
    for u in onboarded {
        let d = s.device(&u.to_string())?;
        let capable = match ssm_runtime::netif::parse_ep(&d.endpoint) {
            Ok(peer) => ssm_runtime::obt_transport::ssm_capabilities(peer)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let joins = match (&capable, d.role) {
            (Ok((member, _)), DeviceRole::Light) => *member,
            (Ok((_, sender)), DeviceRole::Switch) => *sender,
            (Err(_), _) => false,
        };
        if !joins {
            tracing::warn!(device = %d.name, result = ?capable,
                "not SSM-capable as a {}: not enrolled in the auto groups", d.role);
            continue;
        }
        affected.extend(s.auto_enrol(&d.uuid, d.role, &mut rng)?);
    }
    affected.sort();
    affected.dedup();
    Ok(affected)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::no_progress;
    use crate::store::{DeviceRecord, StoreError};
    use crate::DeviceState;

    /// The group requests refused before any device is reached change
    /// nothing: no device named (a usage error), an unknown group, a rekey
    /// of a group without a key, a light granted a group, a revoke of a
    /// switch that does not command the group.
    #[tokio::test]
    async fn refused_group_requests_change_nothing() {
        let d = ssm_testkit::TempDir::new("engine-groups");
        let mut s = Store::init(&d.join("domain.sqlite"), Uuid::from_u128(1), "t").unwrap();
        for (n, role) in [(10, DeviceRole::Light), (20, DeviceRole::Switch)] {
            let r = DeviceRecord {
                uuid: Uuid::from_u128(n),
                name: format!("{role}-{n}"),
                endpoint: format!("coap://127.0.0.1:{n}"),
                role,
                state: DeviceState::Owned,
                last_seen: None,
            };
            s.add_device(&r, &[n as u8; 16]).unwrap();
        }
        let reach = Reach::link("lo", 1, false);
        group_create(&mut s, "east", false).unwrap();
        let audit = s.audit_len().unwrap();
        let e = group_add(&mut s, "east", &[], &reach, 1, &no_progress)
            .await
            .unwrap_err();
        assert!(matches!(e, EngineError::NoDevicesNamed) && e.is_usage());
        let e = group_add(
            &mut s,
            "north",
            &["light-10".into()],
            &reach,
            1,
            &no_progress,
        )
        .await
        .unwrap_err();
        assert!(matches!(e, EngineError::Store(StoreError::UnknownGroup(_))));
        let e = group_rekey(&mut s, "east", &reach, 1, &no_progress)
            .await
            .unwrap_err();
        assert!(matches!(e, EngineError::NoGroupKey(_)));
        let e = grant_group(&mut s, "light-10", "east", &reach, 1, &no_progress)
            .await
            .unwrap_err();
        assert!(matches!(e, EngineError::NotASwitch { .. }));
        let e = revoke_group(&mut s, "switch-20", "east", &reach, 1, &no_progress)
            .await
            .unwrap_err();
        assert!(matches!(e, EngineError::NoGrants(_)));
        let e = group_remove(&mut s, "east", &["nobody".into()], &reach, 1, &no_progress)
            .await
            .unwrap_err();
        assert!(matches!(
            e,
            EngineError::Store(StoreError::UnknownDevice(_))
        ));
        assert_eq!(s.audit_len().unwrap(), audit);
        let g = s.group_info("east").unwrap();
        assert_eq!((g.epoch, g.members.len()), (0, 0));
        assert!(matches!(
            group_create(&mut s, "east", true),
            Err(EngineError::Store(StoreError::GroupExists(_)))
        ));
    }
}

//! The domain operations: each writes the store first (one transaction),
//! then syncs the devices it concerns, and returns a typed report.
use super::{rng, sync_devices, EngineError, Progress, Reach, Synced};
use crate::store::{DeviceRecord, Store};
use crate::{DeviceRole, DeviceState};
use ssm_runtime::obt_transport::{discover_devices, hard_reset};
use std::net::SocketAddr;
use std::time::Duration;
use uuid::Uuid;

/// The lights named (by name or UUID), or with `all` every light of the
/// domain (its OCF lights: not the external members).
pub fn lights_of(
    s: &Store,
    lights: &[String],
    all: bool,
) -> Result<Vec<DeviceRecord>, EngineError> {
    let v: Vec<DeviceRecord> = if all {
        s.devices()?
            .into_iter()
            .filter(|d| d.role == DeviceRole::Light && d.state != DeviceState::External)
            .collect()
    } else {
        lights
            .iter()
            .map(|l| s.device(l))
            .collect::<Result<_, _>>()?
    };
    if v.is_empty() && !all {
        return Err(EngineError::NoLightsNamed);
    }
    if v.is_empty() {
        return Err(EngineError::NoLights);
    }
    Ok(v)
}

/// One device that answered discovery.
#[derive(Debug, Clone)]
pub struct Discovered {
    /// Where it answered.
    pub ep: SocketAddr,
    /// Its device UUID.
    pub uuid: Uuid,
    /// Whether it is owned (by this domain or another).
    pub owned: bool,
    /// Its name, if it is a device of this domain.
    pub name: Option<String>,
}

/// Finds devices by multicast on `reach` for `wait`; those of this domain
/// (when a store is given) get their endpoint refreshed.
pub async fn discover(
    store: Option<&mut Store>,
    reach: &Reach,
    wait: Duration,
) -> Result<Vec<Discovered>, EngineError> {
    let mut store = store;
    let found = discover_devices(&reach.targets()?, wait).await?;
    let mut rows = Vec::new();
    for (ep, id, owned) in found {
        let known = store.as_ref().and_then(|s| s.device(&id.to_string()).ok());
        if let (Some(s), Some(_)) = (store.as_mut(), &known) {
            s.touch(&id, Some(&format!("coap://{ep}")))?;
        }
        rows.push(Discovered {
            ep,
            uuid: id,
            owned,
            name: known.map(|k| k.name),
        });
    }
    Ok(rows)
}

/// Which devices a sync brings up to date (interrupted onboardings the
/// devices confirm are always included).
#[derive(Debug, Clone)]
pub enum SyncScope {
    /// The stale ones.
    Stale,
    /// Every device of the domain.
    All,
    /// These (names or UUIDs).
    Named(Vec<String>),
}

/// Settles interrupted onboardings, then syncs `scope`.
pub async fn sync(
    s: &mut Store,
    scope: &SyncScope,
    reach: &Reach,
    jobs: usize,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<Vec<Synced>, EngineError> {
    let (obt, _) = s.obt()?;
    let mut targets = super::settle_onboarding(s, obt).await?;
    match scope {
        SyncScope::All => targets.extend(s.devices()?.iter().map(|d| d.uuid)),
        SyncScope::Stale => targets.extend(
            s.devices()?
                .iter()
                .filter(|d| d.state == DeviceState::Stale)
                .map(|d| d.uuid),
        ),
        SyncScope::Named(devices) => {
            for d in devices {
                targets.push(s.device(d)?.uuid);
            }
        }
    }
    sync_devices(s, obt, &targets, reach, jobs, progress).await
}

/// Why an offboarded device was not reset: it was never (or no longer)
/// owned by this domain (an onboarding interrupted and undone by it).
pub const NOT_OWNED: &str =
    "it is not owned by this domain (its interrupted onboarding was undone): nothing to reset";

/// What `offboard` did.
#[derive(Debug)]
pub struct Offboarded {
    /// The device removed.
    pub device: DeviceRecord,
    /// Whether it was hard-reset (else why not).
    pub reset: Result<(), String>,
    /// The new epoch, if it was a group member (the group was rekeyed; of
    /// the first such group by id, `all` first).
    pub epoch: Option<i64>,
    /// Every group rekeyed: (name, new epoch).
    pub rekeyed: Vec<(String, i64)>,
    /// The remaining members brought up to date.
    pub synced: Vec<Synced>,
}

/// Removes a device: hard-reset first (if that fails the device is still
/// ours to retry; once forgotten, nothing could reach it any more), then
/// forgotten, and the group it belonged to rekeyed and synced.
pub async fn offboard(
    s: &mut Store,
    device: &str,
    reach: &Reach,
    jobs: usize,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<Offboarded, EngineError> {
    let (obt, _) = s.obt()?;
    let d = s.device(device)?;
    if d.state == DeviceState::External {
        return Err(EngineError::IsExternal(d.name));
    }
    let peer = ssm_runtime::netif::parse_ep(&d.endpoint);
    // An interrupted onboarding: the device undid it (it refuses the
    // owner key) unless it got far enough to be ours.
    let undone = d.state == DeviceState::Onboarding
        && match &peer {
            Ok(p) => matches!(
                ssm_runtime::obt_transport::owns(*p, obt, &*s.owner_psk(&d.uuid)?).await,
                Ok(false)
            ),
            Err(_) => false,
        };
    let reset = match (&peer, undone) {
        (_, true) => Err(NOT_OWNED.to_string()),
        (Ok(peer), false) => hard_reset(*peer, obt, &*s.owner_psk(&d.uuid)?)
            .await
            .map_err(|e| e.to_string()),
        (Err(e), false) => Err(e.to_string()),
    };
    if let (Err(e), false) = (&reset, undone) {
        tracing::warn!(device = %d.name, error = %e, "hard reset failed; removing it anyway (its keys are rekeyed away)");
    }
    let before = s.groups()?;
    let (epoch, members) = s.remove_device(&d.uuid, &mut rng)?;
    let rekeyed = s
        .groups()?
        .into_iter()
        .filter(|g| before.iter().any(|b| b.id == g.id && b.epoch != g.epoch))
        .map(|g| (g.name, g.epoch))
        .collect();
    let synced = sync_devices(s, obt, &members, reach, jobs, progress).await?;
    Ok(Offboarded {
        device: d,
        reset,
        epoch,
        rekeyed,
        synced,
    })
}

/// What `grant` did.
#[derive(Debug)]
pub struct Granted {
    /// The switch.
    pub client: DeviceRecord,
    /// The lights granted.
    pub lights: Vec<Uuid>,
    /// The switch's Sender ID in this epoch (hex).
    pub sender_id: Option<String>,
    /// The group's epoch.
    pub epoch: Option<i64>,
    /// The devices brought up to date.
    pub synced: Vec<Synced>,
    /// The hrefs the lights the switch commands serve SSM at: more than
    /// one means one datagram per href for each command (the seed wants
    /// one URI for all implementations; the reference sample uses
    /// `/lights`).
    pub hrefs: Vec<String>,
}

/// Lets switch `client` command `lights` (or every light) by SSM.
pub async fn grant(
    s: &mut Store,
    client: &str,
    lights: &[String],
    all: bool,
    reach: &Reach,
    jobs: usize,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<Granted, EngineError> {
    let (obt, _) = s.obt()?;
    let c = s.device(client)?;
    if c.role != DeviceRole::Switch {
        return Err(EngineError::NotASwitch {
            name: c.name,
            role: c.role,
        });
    }
    let ids: Vec<Uuid> = lights_of(s, lights, all)?.iter().map(|t| t.uuid).collect();
    let affected = s.grant_lights(&c.uuid, &ids, &mut rng)?;
    let synced = sync_devices(s, obt, &affected, reach, jobs, progress).await?;
    let sender_id = s.current_sender_id(&c.uuid)?;
    let epoch = s.group()?.map(|g| g.epoch);
    let hrefs = hrefs_commanded(s, &c.uuid)?;
    Ok(Granted {
        client: c,
        lights: ids,
        sender_id,
        epoch,
        synced,
        hrefs,
    })
}

/// The hrefs at which the lights `client` commands (in any group) serve
/// SSM, each once.
pub(super) fn hrefs_commanded(s: &Store, client: &Uuid) -> Result<Vec<String>, EngineError> {
    let commanded: Vec<Uuid> = s
        .grants()?
        .into_iter()
        .filter(|(cl, _)| cl == client)
        .map(|(_, l)| l)
        .collect();
    Ok(crate::plan::hrefs_of(s, &commanded)?)
}

/// What `revoke` did.
#[derive(Debug)]
pub struct Revoked {
    /// The switch.
    pub client: DeviceRecord,
    /// The lights taken from it.
    pub lights: Vec<Uuid>,
    /// The new epoch, if it left the group (the group was rekeyed).
    pub epoch: Option<i64>,
    /// The devices brought up to date.
    pub synced: Vec<Synced>,
}

/// Takes `lights` (or, with `all`, every light it may command) from
/// switch `client`.
pub async fn revoke(
    s: &mut Store,
    client: &str,
    lights: &[String],
    all: bool,
    reach: &Reach,
    jobs: usize,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<Revoked, EngineError> {
    let (obt, _) = s.obt()?;
    let c = s.device(client)?;
    let ids: Vec<Uuid> = if all {
        // Its lights in the group `all` (grants in named groups are taken
        // with `revoke --group`).
        let all_group = s
            .groups()?
            .into_iter()
            .find(|g| g.name == crate::store::ALL_GROUP);
        let grants = match all_group {
            Some(g) => s.grants_in(g.id)?,
            None => Vec::new(),
        };
        grants
            .into_iter()
            .filter(|g| g.0 == c.uuid)
            .map(|g| g.1)
            .collect()
    } else {
        lights_of(s, lights, false)?
            .iter()
            .map(|l| l.uuid)
            .collect()
    };
    if ids.is_empty() {
        return Err(EngineError::NoGrants(c.name));
    }
    let (affected, epoch) = s.revoke_lights(&c.uuid, &ids, &mut rng)?;
    let synced = sync_devices(s, obt, &affected, reach, jobs, progress).await?;
    Ok(Revoked {
        client: c,
        lights: ids,
        epoch,
        synced,
    })
}

/// What `rekey` did.
#[derive(Debug)]
pub struct Rekeyed {
    /// The new epoch.
    pub epoch: i64,
    /// The members brought up to date.
    pub synced: Vec<Synced>,
}

/// A new group key (new epoch) for every member.
pub async fn rekey(
    s: &mut Store,
    reach: &Reach,
    jobs: usize,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<Rekeyed, EngineError> {
    let (obt, _) = s.obt()?;
    if s.group()?.is_none() {
        return Err(EngineError::NoGroup);
    }
    let (epoch, members) = s.rekey(&mut rng, "requested")?;
    let synced = sync_devices(s, obt, &members, reach, jobs, progress).await?;
    Ok(Rekeyed { epoch, synced })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreError;

    fn store(name: &str) -> Store {
        let d = std::env::temp_dir().join(format!("ssm-engine-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        Store::init(&d.join("domain.sqlite"), Uuid::from_u128(1), "t").unwrap()
    }

    fn add(s: &mut Store, n: u128, role: DeviceRole) {
        let d = DeviceRecord {
            uuid: Uuid::from_u128(n),
            name: format!("{role}-{n}"),
            endpoint: format!("coap://127.0.0.1:{n}"),
            role,
            state: DeviceState::Owned,
            last_seen: None,
        };
        s.add_device(&d, &[n as u8; 16]).unwrap();
    }

    /// The requests the engine refuses before touching a device: no light
    /// named (a usage error), none in the domain, a grant to a light, a
    /// rekey before any group; none of them changes the store.
    #[tokio::test]
    async fn refused_requests_change_nothing() {
        let mut s = store("refused");
        let reach = Reach::link("lo", 1, false);
        assert!(matches!(
            lights_of(&s, &[], true),
            Err(EngineError::NoLights)
        ));
        let e = lights_of(&s, &[], false).unwrap_err();
        assert!(matches!(e, EngineError::NoLightsNamed) && e.is_usage());
        add(&mut s, 10, DeviceRole::Light);
        add(&mut s, 11, DeviceRole::Light);
        add(&mut s, 20, DeviceRole::Switch);
        let all = lights_of(&s, &[], true).unwrap();
        assert_eq!(all.len(), 2);
        assert!(all.iter().all(|d| d.role == DeviceRole::Light));
        let audit = s.audit_len().unwrap();
        let e = grant(
            &mut s,
            "light-10",
            &[],
            true,
            &reach,
            1,
            &super::super::no_progress,
        )
        .await
        .unwrap_err();
        assert!(matches!(
            e,
            EngineError::NotASwitch {
                role: DeviceRole::Light,
                ..
            }
        ));
        assert!(!e.is_usage());
        let e = revoke(
            &mut s,
            "switch-20",
            &[],
            true,
            &reach,
            1,
            &super::super::no_progress,
        )
        .await
        .unwrap_err();
        assert!(matches!(e, EngineError::NoGrants(_)));
        let e = rekey(&mut s, &reach, 1, &super::super::no_progress)
            .await
            .unwrap_err();
        assert!(matches!(e, EngineError::NoGroup));
        assert!(matches!(
            grant(
                &mut s,
                "nobody",
                &[],
                true,
                &reach,
                1,
                &super::super::no_progress
            )
            .await,
            Err(EngineError::Store(StoreError::UnknownDevice(_)))
        ));
        assert_eq!(s.audit_len().unwrap(), audit);
        assert!(s.grants().unwrap().is_empty());
        assert!(s.group().unwrap().is_none());
    }
}

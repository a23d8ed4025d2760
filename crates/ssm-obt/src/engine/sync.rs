//! Bringing devices up to date with the domain: waves, retries,
//! rediscovery.
use super::{EngineError, Progress, Reach};
use crate::plan::desired;
use crate::store::{DeviceRecord, Store};
use crate::{DeviceRole, DeviceState};
use ssm_runtime::obt_transport::{discover_devices, sync_device, Desired};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// What happened to one device in a sync.
#[derive(Debug)]
pub struct Synced {
    /// Its name.
    pub name: String,
    /// Its UUID.
    pub uuid: Uuid,
    /// What changed on it, or why it is still stale.
    pub outcome: Result<ssm_ocf::onboarding::Reconciliation, String>,
}

/// Brings `uuids` up to date with the domain (external members skipped:
/// the OBT never reaches them): lights first (so that the
/// old key stops working before anything else), then switches; at most
/// `jobs` at once. A device that does not answer at its last endpoint is
/// looked for once by multicast on `reach` (it may have restarted on
/// another port). Each success is written to the store at once.
pub async fn sync_devices(
    s: &mut Store,
    obt: Uuid,
    uuids: &[Uuid],
    reach: &Reach,
    jobs: usize,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<Vec<Synced>, EngineError> {
    let mut records: Vec<DeviceRecord> = Vec::new();
    for u in uuids {
        let Ok(r) = s.device(&u.to_string()) else {
            continue;
        };
        // An external member is never reached: it fetches its keys itself.
        if r.state != DeviceState::External && !records.iter().any(|x| x.uuid == r.uuid) {
            records.push(r);
        }
    }
    fetch_auth_creds(s, obt, &records).await?;
    // The lights' SSM hrefs as their discovery shows them now; the
    // switches granted on a light whose set changed send to the new set.
    let lights: Vec<(Uuid, String)> = records
        .iter()
        .filter(|r| r.role == DeviceRole::Light)
        .map(|r| (r.uuid, r.endpoint.clone()))
        .collect();
    let restaled = refresh_hrefs(s, &lights, jobs).await?;
    add_records(s, &mut records, &restaled);
    progress(Progress::Start {
        total: records.len(),
        what: "devices up to date",
    });
    let mut results = Vec::new();
    let mut found: Option<Vec<(SocketAddr, Uuid, bool)>> = None;
    for wave in [DeviceRole::Light, DeviceRole::Switch] {
        let mut todo: Vec<(DeviceRecord, String)> = records
            .iter()
            .filter(|r| r.role == wave)
            .map(|r| (r.clone(), r.endpoint.clone()))
            .collect();
        for attempt in 0..2 {
            let retry = attempt_wave(
                s,
                obt,
                &mut todo,
                jobs,
                attempt == 0,
                &mut results,
                progress,
            )
            .await?;
            if retry.is_empty() {
                break;
            }
            // Not at its last endpoint: look for it once by multicast.
            if found.is_none() {
                found = Some(match reach.targets() {
                    Ok(t) => discover_devices(&t, Duration::from_millis(800))
                        .await
                        .unwrap_or_default(),
                    Err(_) => Vec::new(),
                });
            }
            let seen = found.as_deref().unwrap_or_default();
            for (r, why) in retry {
                match seen.iter().find(|(_, id, owned)| *id == r.uuid && *owned) {
                    Some((addr, _, _)) if format!("coap://{addr}") != r.endpoint => {
                        let ep = format!("coap://{addr}");
                        if r.role == DeviceRole::Light {
                            // Found again: its hrefs where it is now.
                            let moved = [(r.uuid, ep.clone())];
                            let restaled = refresh_hrefs(s, &moved, jobs).await?;
                            add_records(s, &mut records, &restaled);
                        }
                        todo.push((r, ep));
                    }
                    Some(_) => {
                        progress(Progress::Step);
                        results.push(Synced {
                            name: r.name.clone(),
                            uuid: r.uuid,
                            outcome: Err(why),
                        });
                    }
                    _ => {
                        progress(Progress::Step);
                        results.push(Synced {
                            name: r.name.clone(),
                            uuid: r.uuid,
                            outcome: Err(format!(
                                "{why} (not found by multicast on {} either)",
                                reach.iface
                            )),
                        });
                    }
                }
            }
            if todo.is_empty() {
                break;
            }
        }
    }
    progress(Progress::Finish);
    Ok(results)
}

/// The OBT as Group Manager: before any light is synced, the CCS of every
/// switch of `records` that commands a `group-oscore` group and whose
/// credential the domain does not have yet is read from the switch (it
/// made the key pair itself; the private key stays there). A switch that
/// does not answer gets no recipient contexts on the lights this time; the
/// next sync that reaches it brings them.
async fn fetch_auth_creds(
    s: &mut Store,
    obt: Uuid,
    records: &[DeviceRecord],
) -> Result<(), EngineError> {
    for r in records.iter().filter(|r| r.role == DeviceRole::Switch) {
        if !s.needs_auth_cred(&r.uuid)? {
            continue;
        }
        let psk = s.owner_psk(&r.uuid)?;
        let Ok(peer) = ssm_runtime::netif::parse_ep(&r.endpoint) else {
            continue;
        };
        if let Ok(ccs) = ssm_runtime::obt_transport::read_auth_cred(peer, obt, &psk).await {
            s.set_auth_cred(&r.uuid, &ccs)?;
        }
    }
    Ok(())
}

/// Adds the devices `uuids` to `records` (those not in it yet; external
/// members never: the OBT does not reach them): the switches a changed
/// set of hrefs made stale are synced in the same run.
fn add_records(s: &Store, records: &mut Vec<DeviceRecord>, uuids: &[Uuid]) {
    for u in uuids {
        if records.iter().any(|x| x.uuid == *u) {
            continue;
        }
        if let Ok(r) = s.device(&u.to_string()) {
            if r.state != DeviceState::External {
                records.push(r);
            }
        }
    }
}

/// Reads the `/oic/res` of every light of `lights` at its endpoint (plain
/// unicast, at most `jobs` at once; a light that does not answer keeps
/// the hrefs known) and stores the hrefs of its SSM-enabled resources.
/// Returns the switches granted on a light whose set changed.
async fn refresh_hrefs(
    s: &mut Store,
    lights: &[(Uuid, String)],
    jobs: usize,
) -> Result<Vec<Uuid>, EngineError> {
    let sem = Arc::new(tokio::sync::Semaphore::new(jobs.max(1)));
    let mut set = tokio::task::JoinSet::new();
    for (uuid, ep) in lights {
        let Ok(peer) = ssm_runtime::netif::parse_ep(ep) else {
            continue;
        };
        let (sem, uuid) = (sem.clone(), *uuid);
        set.spawn(async move {
            let _permit = sem.acquire_owned().await;
            let socket = ssm_runtime::client::socket_for(peer).await.ok()?;
            let links = ssm_runtime::obt_reach::device_links(&socket, peer)
                .await
                .ok()?;
            Some((uuid, ssm_ocf::discovery::ssm_hrefs(&links)))
        });
    }
    let mut switches = Vec::new();
    while let Some(j) = set.join_next().await {
        let Some((light, hrefs)) =
            j.map_err(|e| EngineError::Task(format!("discovery task failed: {e}")))?
        else {
            continue;
        };
        if s.set_ssm_hrefs(&light, &hrefs)? {
            tracing::info!(%light, hrefs = %hrefs.join(" "), "the light's SSM hrefs changed");
            for (c, _) in s.grants()?.into_iter().filter(|(_, l)| *l == light) {
                if !switches.contains(&c) {
                    switches.push(c);
                }
            }
        }
    }
    Ok(switches)
}

/// One pass over `todo` (emptied), at most `jobs` at once. Successes and
/// final failures go to `results`; with `may_retry`, a device that did not
/// answer (rather than refused a step) is returned with the reason, to be
/// looked for again.
async fn attempt_wave(
    s: &mut Store,
    obt: Uuid,
    todo: &mut Vec<(DeviceRecord, String)>,
    jobs: usize,
    may_retry: bool,
    results: &mut Vec<Synced>,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<Vec<(DeviceRecord, String)>, EngineError> {
    let sem = Arc::new(tokio::sync::Semaphore::new(jobs.max(1)));
    let mut set = tokio::task::JoinSet::new();
    for (r, ep) in todo.drain(..) {
        let want = desired(s, &r.uuid)?;
        let psk = s.owner_psk(&r.uuid)?;
        let sem = sem.clone();
        set.spawn(async move {
            let _permit = sem.acquire_owned().await;
            let out = match ssm_runtime::netif::parse_ep(&ep) {
                Ok(peer) => sync_device(
                    peer,
                    obt,
                    &psk,
                    Desired {
                        creds: &want.creds,
                        aces: &want.aces,
                        groups: &want.groups,
                    },
                    &mut |_, _| {},
                )
                .await
                .map_err(|e| {
                    (
                        e.to_string(),
                        matches!(e, ssm_runtime::obt_transport::ObtError::Step(_)),
                    )
                }),
                Err(e) => Err((e.to_string(), false)),
            };
            (r, ep, want.is_empty(), out)
        });
    }
    let mut retry = Vec::new();
    while let Some(j) = set.join_next().await {
        let (r, ep, empty, out) =
            j.map_err(|e| EngineError::Task(format!("sync task failed: {e}")))?;
        match out {
            Ok(plan) => {
                let state = if empty {
                    DeviceState::Owned
                } else {
                    DeviceState::Provisioned
                };
                s.set_state(&r.uuid, state)?;
                s.touch(&r.uuid, Some(&ep))?;
                progress(Progress::Step);
                results.push(Synced {
                    name: r.name.clone(),
                    uuid: r.uuid,
                    outcome: Ok(plan),
                });
            }
            Err((why, refused)) => {
                if may_retry && !refused {
                    retry.push((r, why));
                } else {
                    progress(Progress::Step);
                    results.push(Synced {
                        name: r.name.clone(),
                        uuid: r.uuid,
                        outcome: Err(why),
                    });
                }
            }
        }
    }
    Ok(retry)
}

/// The sequence of every operation that changes the domain and then its
/// devices (group operations, grant, revoke, rekey): the OBT's identity;
/// `write`, which resolves what is named and changes the store in one
/// transaction that marks the devices it touches stale, returning them
/// (and what the report needs); then those devices synced.
pub(super) async fn write_then_sync<T>(
    s: &mut Store,
    (reach, jobs, progress): (&Reach, usize, &(dyn Fn(Progress) + Sync)),
    write: impl FnOnce(&mut Store) -> Result<(Vec<Uuid>, T), EngineError>,
) -> Result<(Vec<Synced>, T), EngineError> {
    let (obt, _) = s.obt()?;
    let (affected, t) = write(s)?;
    let synced = sync_devices(s, obt, &affected, reach, jobs, progress).await?;
    Ok((synced, t))
}

/// The device `client`, which must be a switch.
pub(super) fn switch(s: &Store, client: &str) -> Result<crate::store::DeviceRecord, EngineError> {
    let c = s.device(client)?;
    if c.role != DeviceRole::Switch {
        return Err(EngineError::NotASwitch {
            name: c.name,
            role: c.role,
        });
    }
    Ok(c)
}

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

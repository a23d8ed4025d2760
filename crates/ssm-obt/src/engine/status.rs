//! `status` and `watch`: every device of the domain as it is now, read
//! over the OBT's owner sessions (DTLS, PSK = the device's owner PSK): is
//! it there, is the light on, and (watching) each change as it arrives,
//! by a secured OBSERVE of every light. Reads only: works on a read-only
//! view of the store while another `ssm obt` holds it.
use super::EngineError;
use crate::store::{DeviceRecord, Store};
use crate::{DeviceRole, DeviceState};
use ssm_runtime::owner_session::OwnerSession;
use std::time::{Duration, SystemTime};
use tokio::time::Instant;
use uuid::Uuid;

/// One device as `status` saw it.
#[derive(Debug, Clone)]
pub struct DeviceStatus {
    /// The domain's record.
    pub record: DeviceRecord,
    /// The names of the SSM groups it belongs to.
    pub groups: Vec<String>,
    /// Whether an owner session opened.
    pub reachable: bool,
    /// A light's on/off state, if it could be read.
    pub on: Option<bool>,
    /// Why something could not be read (unreachable, no read ACE …).
    pub note: Option<String>,
    /// Time to open the session and read (ms), if reachable.
    pub rtt_ms: Option<f64>,
}

/// The names of the SSM groups each device is in (a light a member, a
/// switch commanding it).
fn groups_of(s: &Store) -> Result<Vec<(Uuid, Vec<String>)>, EngineError> {
    let names: Vec<(i64, String)> = s.groups()?.into_iter().map(|g| (g.id, g.name)).collect();
    let mut out = Vec::new();
    for d in s.devices()? {
        let g = s
            .device_groups(&d.uuid)?
            .iter()
            .filter_map(|id| names.iter().find(|(i, _)| i == id).map(|n| n.1.clone()))
            .collect();
        out.push((d.uuid, g));
    }
    Ok(out)
}

/// Why an external member is not read.
pub const EXTERNAL_NOTE: &str = "external member: the OBT never reaches it \
    (it fetches its keys with `ssm obt external material`)";

/// How many devices `status` reads at once (each an owner session).
const STATUS_JOBS: usize = 32;

/// What reading one device gave: (on/off, note), or why it is not
/// reachable; and how long it took (ms).
type Read = (Result<(Option<bool>, Option<String>), String>, f64);

/// Reads `records` (at most [`STATUS_JOBS`] at once), each bounded by
/// `timeout`.
async fn read_all(
    s: &Store,
    obt: Uuid,
    records: &[DeviceRecord],
    timeout: Duration,
) -> Result<Vec<Read>, EngineError> {
    let mut set = tokio::task::JoinSet::new();
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(STATUS_JOBS));
    for (i, d) in records.iter().enumerate() {
        let psk = s.owner_psk(&d.uuid)?;
        let href = crate::plan::href_of(s, &d.uuid)?;
        let d = d.clone();
        let sem = sem.clone();
        set.spawn(async move {
            if d.state == DeviceState::External {
                return (i, Err(EXTERNAL_NOTE.to_string()), 0.0);
            }
            let _permit = sem.acquire_owned().await;
            let start = Instant::now();
            let r = match tokio::time::timeout(timeout, read_one(&d, &href, obt, &psk, timeout))
                .await
            {
                Ok(r) => r,
                Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
            };
            (i, r, start.elapsed().as_secs_f64() * 1e3)
        });
    }
    let mut out: Vec<Read> = vec![(Err(String::new()), 0.0); records.len()];
    while let Some(j) = set.join_next().await {
        let (i, r, ms) = j.map_err(|e| EngineError::Task(format!("status task failed: {e}")))?;
        out[i] = (r, ms);
    }
    Ok(out)
}

/// Every device as it is now. One that does not answer at its recorded
/// endpoint is looked for once by multicast on `reach` (it may have
/// restarted on another port) and read there; the store is not changed
/// (`ssm obt discover` records the new endpoint).
pub async fn status(
    s: &Store,
    timeout: Duration,
    reach: Option<&super::Reach>,
) -> Result<Vec<DeviceStatus>, EngineError> {
    let (obt, _) = s.obt()?;
    let groups = groups_of(s)?;
    let mut records = s.devices()?;
    let mut reads = read_all(s, obt, &records, timeout).await?;
    let lost: Vec<usize> = (0..records.len())
        .filter(|&i| {
            reads[i].0.is_err()
                && !matches!(
                    records[i].state,
                    DeviceState::Onboarding | DeviceState::External
                )
        })
        .collect();
    if let (Some(reach), false) = (reach, lost.is_empty()) {
        let found = match reach.targets() {
            Ok(t) => ssm_runtime::obt_transport::discover_devices(&t, Duration::from_millis(800))
                .await
                .unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        let mut moved: Vec<(usize, DeviceRecord)> = Vec::new();
        for i in lost {
            let ep = found
                .iter()
                .find(|(_, id, owned)| *id == records[i].uuid && *owned)
                .map(|(a, _, _)| format!("coap://{a}"));
            if let Some(ep) = ep.filter(|ep| *ep != records[i].endpoint) {
                let mut r = records[i].clone();
                r.endpoint = ep;
                moved.push((i, r));
            }
        }
        let again: Vec<DeviceRecord> = moved.iter().map(|m| m.1.clone()).collect();
        for ((i, r), (read, ms)) in moved
            .into_iter()
            .zip(read_all(s, obt, &again, timeout).await?)
        {
            if let Ok((on, note)) = read {
                let was = std::mem::replace(&mut records[i], r);
                let mut moved = format!(
                    "moved from {} (`ssm obt discover` records it)",
                    was.endpoint
                );
                if let Some(n) = note {
                    moved = format!("{moved}; {n}");
                }
                let note = moved;
                reads[i] = (Ok((on, Some(note))), ms);
            }
        }
    }
    Ok(records
        .into_iter()
        .zip(reads)
        .map(|(d, (r, ms))| {
            let (reachable, on, note) = match r {
                Ok((on, note)) => (true, on, note),
                Err(why) => (false, None, Some(why)),
            };
            let g = groups
                .iter()
                .find(|(u, _)| *u == d.uuid)
                .map(|g| g.1.clone())
                .unwrap_or_default();
            DeviceStatus {
                record: d,
                groups: g,
                reachable,
                on,
                note,
                rtt_ms: reachable.then_some(ms),
            }
        })
        .collect())
}

/// One device: an owner session; for a light, RETRIEVE of its switch.
async fn read_one(
    d: &DeviceRecord,
    href: &str,
    obt: Uuid,
    psk: &[u8; 16],
    timeout: Duration,
) -> Result<(Option<bool>, Option<String>), String> {
    let peer = ssm_runtime::netif::parse_ep(&d.endpoint).map_err(|e| e.to_string())?;
    let mut sess = match OwnerSession::open(peer, obt, psk, timeout).await {
        Ok(s) => s,
        Err(e) => {
            return Err(if d.state == DeviceState::Onboarding {
                "interrupted onboarding: re-run `ssm obt onboard` (or `ssm obt sync`)".into()
            } else {
                format!("not reachable at {}: {e}", d.endpoint)
            })
        }
    };
    let r = if d.role == DeviceRole::Light {
        match sess.get(href).await {
            Ok(Ok(v)) => Ok((value_of(&v), None)),
            Ok(Err(code)) if code == ssm_coap::Code::FORBIDDEN => Ok((
                None,
                Some(if d.state == DeviceState::Stale {
                    "on/off not readable by the OBT until it is up to date (`ssm obt sync`)".into()
                } else {
                    "on/off not readable by the OBT until the light is granted".into()
                }),
            )),
            Ok(Err(code)) => Ok((None, Some(format!("on/off: {code}")))),
            Err(e) => Ok((None, Some(format!("on/off: {e}")))),
        }
    } else {
        Ok((None, None))
    };
    sess.close().await;
    r
}

fn value_of(v: &ciborium::Value) -> Option<bool> {
    ssm_ocf::cbor::get(v, "value").and_then(|b| b.as_bool())
}

/// One notification while watching.
#[derive(Debug, Clone)]
pub struct Arrival {
    /// The light.
    pub name: String,
    /// Its UUID.
    pub uuid: Uuid,
    /// Its state now.
    pub on: Option<bool>,
    /// Wall-clock time it arrived.
    pub at: SystemTime,
    /// The first answer to the OBSERVE (the state when watching began),
    /// not a change.
    pub initial: bool,
    /// Time since the first arrival of this burst (one SSM command reaches
    /// every light within a few ms; arrivals 500 ms apart are separate
    /// commands).
    pub since_first_ms: f64,
}

/// How long one burst of arrivals (one SSM command) may last.
const BURST: Duration = Duration::from_millis(500);
/// Observations are registered again before the device's DTLS idle limit.
const REFRESH: Duration = Duration::from_secs(30);

/// Observes every light of the domain over its owner session until
/// `duration` has passed or `count` changes (not counting the initial
/// states) have arrived; `on` gets each arrival, in order. Lights that do
/// not answer are reported once each (`on` with `on: None`, `initial`).
pub async fn watch(
    s: &Store,
    duration: Duration,
    count: Option<usize>,
    timeout: Duration,
    on: &mut (dyn FnMut(&Arrival) + Send),
) -> Result<usize, EngineError> {
    let (obt, _) = s.obt()?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(DeviceRecord, Option<bool>, bool)>(256);
    let end = Instant::now() + duration;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    for d in s
        .devices()?
        .into_iter()
        .filter(|d| d.role == DeviceRole::Light && d.state != DeviceState::External)
    {
        let psk = s.owner_psk(&d.uuid)?;
        let href = crate::plan::href_of(s, &d.uuid)?;
        let tx = tx.clone();
        let mut stop = stop_rx.clone();
        tasks.spawn(async move {
            let Ok(peer) = ssm_runtime::netif::parse_ep(&d.endpoint) else {
                let _ = tx.send((d, None, true)).await;
                return;
            };
            let Ok(mut sess) = OwnerSession::open(peer, obt, &psk, timeout).await else {
                let _ = tx.send((d, None, true)).await;
                return;
            };
            let first = sess.observe(&href).await;
            let v = first.ok().and_then(|m| ssm_ocf::message::payload(&m).ok());
            let _ = tx
                .send((d.clone(), v.as_ref().and_then(value_of), true))
                .await;
            let mut refresh = Instant::now() + REFRESH;
            while Instant::now() < end {
                let next = tokio::select! {
                    n = sess.next_notification(refresh.min(end)) => n,
                    _ = stop.changed() => break,
                };
                match next {
                    Ok(Some(m)) => {
                        let v = ssm_ocf::message::payload(&m).ok();
                        if tx
                            .send((d.clone(), v.as_ref().and_then(value_of), false))
                            .await
                            .is_err()
                        {
                            break;
                        }
                    }
                    Ok(None) if Instant::now() >= refresh => {
                        // Re-registering answers with the current state:
                        // not an arrival.
                        if sess.observe(&href).await.is_err() {
                            break;
                        }
                        refresh = Instant::now() + REFRESH;
                    }
                    Ok(None) => {}
                    Err(_) => break,
                }
            }
            sess.close().await;
        });
    }
    drop(tx);
    let mut changes = 0;
    let mut burst: Option<Instant> = None;
    loop {
        let Ok(Some((d, value, initial))) = tokio::time::timeout_at(end, rx.recv()).await else {
            break;
        };
        let now = Instant::now();
        let since = if initial {
            0.0
        } else {
            let start = match burst {
                Some(b) if now.duration_since(b) < BURST => b,
                _ => {
                    burst = Some(now);
                    now
                }
            };
            now.duration_since(start).as_secs_f64() * 1e3
        };
        on(&Arrival {
            name: d.name,
            uuid: d.uuid,
            on: value,
            at: SystemTime::now(),
            initial,
            since_first_ms: since,
        });
        if !initial {
            changes += 1;
            if count.is_some_and(|c| changes >= c) {
                break;
            }
        }
    }
    // Every session ends with a close_notify (the device frees it at once).
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    tasks.abort_all();
    Ok(changes)
}

//! Onboarding: owner transfer by Random PIN, recorded crash-safely.
//!
//! Each device is recorded `onboarding` (with its owner PSK) before the
//! transfer changes it; once the transfer is seen to end it becomes
//! `owned`. A record left `onboarding` (a crash, a lost last answer) is
//! settled later by asking the device whether it accepts the stored owner
//! key ([`settle_onboarding`]).
use super::{sync_devices, EngineError, Progress, Reach, Synced};
use crate::store::{DeviceRecord, Store};
use crate::{DeviceRole, DeviceState};
use ssm_runtime::obt_transport::{onboard_with, owns, zero_free_uuid, Onboarded};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use uuid::Uuid;

/// Where the Random PIN of a device comes from.
#[derive(Clone)]
pub enum Pin {
    /// Known beforehand: a device with a fixed PIN, a commissioning sheet.
    Given(String),
    /// Asked for once the device was told to use Random PIN (`oxmsel`), as
    /// OCF orders it: a device may show a new PIN for each `oxmsel` (the
    /// reference stack does), so a PIN read before it is stale.
    Ask(Arc<dyn Fn() -> Result<String, String> + Send + Sync>),
}

impl std::fmt::Debug for Pin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A PIN is a secret: never in Debug output.
        f.write_str(match self {
            Pin::Given(_) => "Pin::Given(<secret>)",
            Pin::Ask(_) => "Pin::Ask",
        })
    }
}

/// One device to onboard.
#[derive(Debug, Clone)]
pub struct OnboardJob {
    /// Its unicast endpoint.
    pub peer: SocketAddr,
    /// The Random PIN it shows.
    pub pin: Pin,
    /// The name to remember it by (default: `<role>-<uuid prefix>`).
    pub name: Option<String>,
    /// What it is.
    pub role: DeviceRole,
}

/// What happened to one device: its endpoint (`coap://…`) and its new
/// UUID, or why it was not onboarded.
pub type Onboarding = (String, Result<Uuid, String>);

/// Settles onboardings the OBT did not see end (it crashed, or the last
/// answer was lost): a device that accepts the stored owner key is ours
/// (marked stale, so a sync finishes its provisioning); one that refuses it
/// undid the transfer, and its record goes. Returns the devices kept.
pub async fn settle_onboarding(s: &mut Store, obt: Uuid) -> Result<Vec<Uuid>, EngineError> {
    let mut kept = Vec::new();
    for d in s
        .devices()?
        .into_iter()
        .filter(|d| d.state == DeviceState::Onboarding)
    {
        let psk = s.owner_psk(&d.uuid)?;
        let Ok(peer) = ssm_runtime::netif::parse_ep(&d.endpoint) else {
            continue;
        };
        match owns(peer, obt, &psk).await {
            Ok(true) => {
                s.set_state(&d.uuid, DeviceState::Stale)?;
                kept.push(d.uuid);
            }
            Ok(false) => s.forget_onboarding(&d.uuid)?,
            Err(e) => {
                tracing::warn!(device = %d.uuid, error = %e, "cannot settle an interrupted onboarding yet")
            }
        }
    }
    Ok(kept)
}

/// The work of `onboard --all`: the unowned devices found on `reach`
/// matched to the rows of a commissioning sheet (`<device uuid> <PIN>
/// [name] [light|switch]` per line; `role` for rows that name none).
/// Returns the jobs and, per device the sheet cannot onboard, why.
pub async fn plan_sheet(
    sheet: &str,
    reach: &Reach,
    role: DeviceRole,
) -> Result<(Vec<OnboardJob>, Vec<Onboarding>), EngineError> {
    let row_of = |id: &Uuid| {
        sheet.lines().find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.first() == Some(&id.to_string().as_str()) && f.len() >= 2).then(|| {
                (
                    f[1].to_string(),
                    f.get(2).map(|s| s.to_string()),
                    f.get(3).map(|s| s.to_string()),
                )
            })
        })
    };
    let found = reach.unowned(Duration::from_millis(1000)).await?;
    let mut work = Vec::new();
    let mut missing = Vec::new();
    for (peer, current) in found {
        match row_of(&current) {
            Some((pin, name, r)) => match r.map(|r| r.parse::<DeviceRole>().map_err(|_| r)) {
                Some(Err(r)) => missing.push((
                    format!("coap://{peer}"),
                    Err(format!(
                        "role {r:?} for device {current} in the PIN file: light or switch"
                    )),
                )),
                r => work.push(OnboardJob {
                    peer,
                    pin: Pin::Given(pin),
                    name,
                    role: r.and_then(Result::ok).unwrap_or(role),
                }),
            },
            None => missing.push((
                format!("coap://{peer}"),
                Err(format!("no PIN for device {current} in the PIN file")),
            )),
        }
    }
    Ok((work, missing))
}

/// Onboards `work` with at most `jobs` at once. Each device is recorded
/// (`onboarding`, with its owner PSK) before it is changed and marked
/// `owned` when the transfer completed. Returns the store and (endpoint,
/// uuid or reason) per device.
pub async fn onboard_many(
    s: Store,
    obt: Uuid,
    domain_name: &str,
    work: Vec<OnboardJob>,
    jobs: usize,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<(Store, Vec<Onboarding>), EngineError> {
    let store = Arc::new(Mutex::new(s));
    progress(Progress::Start {
        total: work.len(),
        what: "onboarded",
    });
    let sem = Arc::new(tokio::sync::Semaphore::new(jobs.max(1)));
    let mut set = tokio::task::JoinSet::new();
    for job in work {
        let sem = sem.clone();
        let domain_name = domain_name.to_string();
        let store = store.clone();
        set.spawn(async move {
            let _permit = sem.acquire_owned().await;
            onboard_one(job, obt, &domain_name, &store).await
        });
    }
    let mut report = Vec::new();
    while let Some(j) = set.join_next().await {
        let (ep, r) = j
            .map_err(|e| EngineError::Task(format!("onboarding task failed: {e}")))?
            .map_err(|e| EngineError::Task(format!("domain store: {e}")))?;
        report.push((ep, r));
        progress(Progress::Step);
    }
    progress(Progress::Finish);
    let s = Arc::try_unwrap(store)
        .map_err(|_| EngineError::Task("onboarding tasks still hold the store".into()))?
        .into_inner()
        .map_err(|_| EngineError::Task("domain store poisoned".into()))?;
    Ok((s, report))
}

/// One owner transfer, recorded before it changes the device; an error
/// after the record asks the device whether the transfer took.
async fn onboard_one(
    job: OnboardJob,
    obt: Uuid,
    domain_name: &str,
    store: &Mutex<Store>,
) -> Result<Onboarding, String> {
    let OnboardJob {
        peer,
        pin,
        name,
        role,
    } = job;
    let ep = format!("coap://{peer}");
    let new_uuid = zero_free_uuid();
    let name = name.unwrap_or_else(|| format!("{role}-{}", &new_uuid.to_string()[..8]));
    let mut recorded: Option<Onboarded> = None;
    let mut pin = move || match &pin {
        Pin::Given(p) => Ok(p.clone()),
        Pin::Ask(ask) => ask(),
    };
    let r = onboard_with(
        peer,
        &mut pin,
        obt,
        new_uuid,
        (obt, domain_name),
        &mut |_, _| {},
        &mut |done: &Onboarded| {
            let rec = DeviceRecord {
                uuid: done.device_uuid,
                name: name.clone(),
                endpoint: ep.clone(),
                role,
                state: DeviceState::Onboarding,
                last_seen: None,
            };
            let mut st = store.lock().map_err(|_| "store poisoned".to_string())?;
            st.add_device(&rec, &done.owner_psk)
                .map_err(|e| e.to_string())?;
            recorded = Some(done.clone());
            Ok(())
        },
    )
    .await;
    let r = match (r, recorded) {
        (Ok(done), _) => Ok(done),
        // Recorded but not seen to complete: ask the device.
        (Err(e), Some(done)) => match owns(peer, obt, &done.owner_psk).await {
            Ok(true) => Ok(done),
            Ok(false) => {
                if let Ok(mut st) = store.lock() {
                    let _ = st.forget_onboarding(&done.device_uuid);
                }
                Err(e.to_string())
            }
            Err(_) => Err(format!(
                "{e} (left as `onboarding`: run `ssm obt sync` when it is back)"
            )),
        },
        (Err(e), None) => Err(e.to_string()),
    };
    if let Ok(done) = &r {
        let id = &done.device_uuid;
        if let Ok(mut st) = store.lock() {
            st.set_state(id, DeviceState::Owned)
                .map_err(|e| e.to_string())?;
            st.touch(id, Some(&ep)).map_err(|e| e.to_string())?;
            // Its ACEs name the href it serves SSM at (the reference
            // sample: `/lights`), not a fixed one.
            if let (DeviceRole::Light, Some(h)) = (role, done.ssm_hrefs.first()) {
                st.set_ssm_href(id, h).map_err(|e| e.to_string())?;
            }
        }
    }
    Ok((ep, r.map(|d| d.device_uuid)))
}

/// Where the devices to onboard come from.
#[derive(Debug, Clone)]
pub enum OnboardSource<'a> {
    /// One device, its endpoint and PIN given.
    One(OnboardJob),
    /// Every unowned device found on the link that a commissioning sheet
    /// has a row for (see [`plan_sheet`]).
    Sheet {
        /// The sheet's text.
        sheet: &'a str,
        /// The role of rows that name none.
        role: DeviceRole,
    },
}

/// What `onboard` did.
#[derive(Debug)]
pub struct OnboardReport {
    /// Per device: its endpoint and new UUID, or why it was not onboarded
    /// (devices the sheet cannot onboard first).
    pub devices: Vec<Onboarding>,
    /// Interrupted earlier onboardings the devices confirmed, and the
    /// devices auto-enrolment concerned, brought up to date.
    pub resumed: Vec<Synced>,
}

/// Onboarding as `ssm obt onboard` does it: interrupted onboardings are
/// settled first, then the devices of `source` are onboarded (at most
/// `jobs` at once), then the settled ones are synced.
pub async fn onboard(
    s: Store,
    source: OnboardSource<'_>,
    reach: &Reach,
    jobs: usize,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<(Store, OnboardReport), EngineError> {
    let mut s = s;
    let (obt, domain_name) = s.obt()?;
    let settled = settle_onboarding(&mut s, obt).await?;
    let (work, mut devices) = match source {
        OnboardSource::One(job) => (vec![job], Vec::new()),
        OnboardSource::Sheet { sheet, role } => plan_sheet(sheet, reach, role).await?,
    };
    let (mut s, done) = onboard_many(s, obt, &domain_name, work, jobs, progress).await?;
    // Auto-enrolment (groups made with `--auto`): the new devices join
    // them, and they and the group's devices are provisioned now.
    let mut new: Vec<Uuid> = done
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok().copied())
        .collect();
    new.extend(&settled);
    let mut to_sync = super::auto_enrol(&mut s, &new).await?;
    to_sync.extend(&settled);
    devices.extend(done);
    let resumed = sync_devices(&mut s, obt, &to_sync, reach, jobs, &super::no_progress).await?;
    Ok((s, OnboardReport { devices, resumed }))
}

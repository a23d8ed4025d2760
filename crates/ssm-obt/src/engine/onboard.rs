//! Onboarding: owner transfer by Random PIN, recorded crash-safely.
//!
//! Each device is recorded `onboarding` (with its owner PSK) before the
//! transfer changes it; once the transfer is seen to end it becomes
//! `owned`. A record left `onboarding` (a crash, a lost last answer) is
//! settled later by asking the device whether it accepts the stored owner
//! key ([`settle_onboarding`]).
use super::sheet::{parse_sheet, plan_rows, SheetReport};
use super::{sync_devices, EngineError, Progress, Reach, Synced};
use crate::store::{DeviceRecord, Store};
use crate::{DeviceRole, DeviceState};
use ssm_runtime::device::OTM_IDLE;
use ssm_runtime::obt_transport::{onboard_with, owns, zero_free_uuid, ObtError, Onboarded};
use ssm_runtime::owner_session::{device_identity, plain_get, DeviceIdentity};
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
#[derive(Clone)]
pub struct OnboardJob {
    /// Its unicast endpoint.
    pub peer: SocketAddr,
    /// The Random PIN it shows.
    pub pin: Pin,
    /// The name to remember it by (default: the device's own `n` from
    /// `/oic/d`, else `<role>-<uuid prefix>`).
    pub name: Option<String>,
    /// What it is (default: what its `/oic/d` says; a role given here that
    /// disagrees is kept, with a warning).
    pub role: Option<DeviceRole>,
}

impl std::fmt::Debug for OnboardJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The PIN never reaches a log.
        f.debug_struct("OnboardJob")
            .field("peer", &self.peer)
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// What happened to one device.
#[derive(Debug, Clone)]
pub struct Onboarding {
    /// Its endpoint (`coap://…`).
    pub ep: String,
    /// Its new UUID, or why it was not onboarded.
    pub result: Result<Uuid, String>,
    /// The name it was recorded under.
    pub name: Option<String>,
    /// The role it was recorded with.
    pub role: Option<DeviceRole>,
    /// Its UUID before the owner transfer (the one a sheet names).
    pub was: Option<Uuid>,
    /// Things the engineer should know (a flag that disagrees with the
    /// device, a name taken).
    pub warnings: Vec<String>,
}

impl Onboarding {
    fn failed(ep: String, why: String) -> Onboarding {
        Onboarding {
            ep,
            result: Err(why),
            name: None,
            role: None,
            was: None,
            warnings: Vec::new(),
        }
    }
}

/// The role a device advertises in its `/oic/d` `rt`.
pub fn advertised_role(rt: &[String]) -> Option<DeviceRole> {
    if rt.iter().any(|t| t == "oic.d.switch") {
        Some(DeviceRole::Switch)
    } else if rt.iter().any(|t| t == "oic.d.light") {
        Some(DeviceRole::Light)
    } else {
        None
    }
}

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
                tracing::warn!(device = %d.name, uuid = %d.uuid, error = %e, "cannot settle an interrupted onboarding yet")
            }
        }
    }
    Ok(kept)
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
        let o = j
            .map_err(|e| EngineError::Task(format!("onboarding task failed: {e}")))?
            .map_err(|e| EngineError::Task(format!("domain store: {e}")))?;
        report.push(o);
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
    let ident = match device_identity(peer).await {
        Ok(Some(i)) => i,
        Ok(None) => {
            return Ok(Onboarding::failed(
                ep.clone(),
                format!("no response from {ep}: is the device on, and is this its address?"),
            ))
        }
        Err(e) => return Ok(Onboarding::failed(ep, format!("network: {e}"))),
    };
    let mut warnings = Vec::new();
    let role = resolve_role(role, advertised_role(&ident.rt), &mut warnings);
    if let Some(why) = name.as_deref().and_then(|n| taken(store, n)) {
        return Ok(Onboarding::failed(ep, why));
    }
    let new_uuid = zero_free_uuid();
    let mut recorded: Option<(Onboarded, String)> = None;
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
            let mut st = store.lock().map_err(|_| "store poisoned".to_string())?;
            let chosen = match (&name, &ident.name) {
                (Some(n), _) => n.clone(),
                (None, Some(n)) if st.name_owner(n).ok().flatten().is_none() => n.clone(),
                (None, dev) => {
                    let fallback = format!("{role}-{}", &new_uuid.to_string()[..8]);
                    if let Some(n) = dev {
                        warnings.push(format!(
                            "the device calls itself {n}, a name another device has: recorded as {fallback}"
                        ));
                    }
                    fallback
                }
            };
            let rec = DeviceRecord {
                uuid: done.device_uuid,
                name: chosen.clone(),
                endpoint: ep.clone(),
                role,
                state: DeviceState::Onboarding,
                last_seen: None,
            };
            st.add_device(&rec, &done.owner_psk)
                .map_err(|e| e.to_string())?;
            if let Some(was) = ident.di {
                st.set_onboarded_from(&done.device_uuid, &was)
                    .map_err(|e| e.to_string())?;
            }
            recorded = Some((done.clone(), chosen));
            Ok(())
        },
    )
    .await;
    let chosen = recorded.as_ref().map(|r| r.1.clone());
    let result = match (r, recorded) {
        (Ok(done), _) => Ok(done),
        // Recorded but not seen to complete: ask the device.
        (Err(e), Some((done, _))) => match owns(peer, obt, &done.owner_psk).await {
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
        (Err(ObtError::Handshake { .. }), None) => Err(pin_refused_or_gone(peer, &ident).await),
        (Err(e), None) => Err(e.to_string()),
    };
    if let Ok(done) = &result {
        let given = chosen.as_deref();
        let its = ident.name.as_deref();
        finish(store, done, role, &ep, peer, obt, given, its, &mut warnings).await?;
    }
    Ok(Onboarding {
        ep,
        result: result.map(|d| d.device_uuid),
        name: chosen,
        role: Some(role),
        was: ident.di,
        warnings,
    })
}

/// Why `name` cannot be given: another device of the domain has it.
fn taken(store: &Mutex<Store>, name: &str) -> Option<String> {
    let other = store.lock().ok()?.name_owner(name).ok()??;
    Some(format!(
        "the name {name} is taken by device {other}: choose another (or `ssm obt rename`)"
    ))
}

/// A transfer seen to complete: the device is `owned`, and calls itself
/// what the domain calls it (`n` of `/oic/con`).
#[allow(clippy::too_many_arguments)]
async fn finish(
    store: &Mutex<Store>,
    done: &Onboarded,
    role: DeviceRole,
    ep: &str,
    peer: SocketAddr,
    obt: Uuid,
    name: Option<&str>,
    its_name: Option<&str>,
    warnings: &mut Vec<String>,
) -> Result<(), String> {
    let id = &done.device_uuid;
    let psk = {
        let mut st = store.lock().map_err(|_| "store poisoned")?;
        st.set_state(id, DeviceState::Owned)
            .map_err(|e| e.to_string())?;
        st.touch(id, Some(ep)).map_err(|e| e.to_string())?;
        // Its ACEs name every href it serves SSM at (the reference
        // sample: `/lights`; a two-gang relay: two), not a fixed one.
        if role == DeviceRole::Light {
            st.set_ssm_hrefs(id, &done.ssm_hrefs)
                .map_err(|e| e.to_string())?;
        }
        st.owner_psk(id).map_err(|e| e.to_string())?
    };
    if let Some(n) = name.filter(|n| its_name != Some(*n)) {
        match super::maint::set_device_name(peer, obt, &psk, n, HANDSHAKE).await {
            Ok(()) => {}
            Err(e) if e == super::maint::NO_CON => {}
            Err(e) => warnings.push(format!(
                "it still calls itself {}: {e}",
                its_name.unwrap_or("by no name")
            )),
        }
    }
    Ok(())
}

/// The role to record: the one asked for, else the device's own (a light
/// when it says neither); a disagreement is kept as a warning.
fn resolve_role(
    asked: Option<DeviceRole>,
    said: Option<DeviceRole>,
    warnings: &mut Vec<String>,
) -> DeviceRole {
    match (asked, said) {
        (Some(r), Some(d)) if r != d => {
            warnings.push(format!(
                "--role {r}: the device says it is a {d} (oic.d.{d} in /oic/d); recorded as {r}"
            ));
            r
        }
        (Some(r), _) => r,
        (None, Some(d)) => d,
        (None, None) => DeviceRole::Light,
    }
}

/// How long the owner session that names a new device may take to open.
const HANDSHAKE: Duration = Duration::from_secs(4);

/// After a failed PIN handshake: why, from the device's doxm read now
/// (plain, public): it is gone; another OBT's owner transfer holds it (the
/// device takes no second PIN session while one runs, and only its end
/// frees it); that transfer completed meanwhile; or it refused the PIN.
async fn pin_refused_or_gone(peer: SocketAddr, ident: &DeviceIdentity) -> String {
    let doxm = plain_get(peer, "/oic/sec/doxm", Duration::from_millis(300), 2).await;
    let answered = matches!(doxm, Ok(Some(_)));
    let doxm = match doxm {
        Ok(Some(Ok(v))) => Some(v),
        _ => None,
    };
    handshake_failed(peer, ident, answered, doxm.as_ref())
}

/// [`pin_refused_or_gone`]'s answer for what the device said: `answered`
/// at all, and its doxm if that was it. `ident` is what it said before
/// the transfer began.
fn handshake_failed(
    peer: SocketAddr,
    ident: &DeviceIdentity,
    answered: bool,
    doxm: Option<&ciborium::Value>,
) -> String {
    if !answered {
        return format!(
            "no answer from coap://{peer} during the secure handshake: is the device on and reachable?"
        );
    }
    let field = |k: &str| {
        doxm.and_then(|d| ssm_ocf::cbor::get(d, k))
            .and_then(|v| v.as_text())
            .and_then(|t| t.parse::<Uuid>().ok())
    };
    let owned = doxm
        .and_then(|d| ssm_ocf::cbor::get(d, "owned"))
        .and_then(|v| v.as_bool());
    let owner = field("devowneruuid").filter(|u| !u.is_nil());
    // Another transfer's first writes set the owner, then a new UUID.
    let changed = matches!((field("deviceuuid"), ident.di), (Some(now), Some(was)) if now != was);
    let device = match (&ident.name, ident.di) {
        (Some(n), Some(u)) => format!("device {n} ({u}) at coap://{peer}"),
        (None, Some(u)) => format!("device {u} at coap://{peer}"),
        (Some(n), None) => format!("device {n} at coap://{peer}"),
        (None, None) => format!("the device at coap://{peer}"),
    };
    let by = owner.map(|o| format!(" (owner {o})")).unwrap_or_default();
    match owned {
        Some(true) => format!(
            "another onboarding tool{by} took ownership of {device} meanwhile: it is owned \
             now; offboard it from that tool's domain (or hard-reset it) to onboard it here"
        ),
        Some(false) if owner.is_some() || changed => format!(
            "another onboarding tool{by} is transferring ownership of {device} right now, and \
             the device takes no other PIN session until that ends: wait {} s and retry (a \
             transfer that went silent is undone after {} s; one that completed leaves the \
             device owned by that tool)",
            OTM_IDLE.as_secs() + 1,
            OTM_IDLE.as_secs()
        ),
        _ => format!(
            "the device at coap://{peer} refused the PIN: check the PIN it shows now \
             (after 3 wrong PINs it waits and shows a new one)"
        ),
    }
}

/// Where the devices to onboard come from.
#[derive(Debug, Clone)]
pub enum OnboardSource<'a> {
    /// One device, its endpoint and PIN given.
    One(OnboardJob),
    /// The rows of a commissioning sheet (see [`super::sheet`]).
    Sheet {
        /// The sheet's text.
        sheet: &'a str,
        /// The role of rows that name none (`None`: the device's own).
        role: Option<DeviceRole>,
    },
}

/// What `onboard` did.
#[derive(Debug)]
pub struct OnboardReport {
    /// Per device worked on: its endpoint and new UUID, or why not.
    pub devices: Vec<Onboarding>,
    /// With a sheet: every row's outcome, and the unowned devices found
    /// that it has no row for (left alone).
    pub sheet: Option<SheetReport>,
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
    let (mut s, devices, sheet) = match source {
        OnboardSource::One(job) => {
            let (s, done) = onboard_many(s, obt, &domain_name, vec![job], jobs, progress).await?;
            (s, done, None)
        }
        OnboardSource::Sheet { sheet, role } => {
            let lines = parse_sheet(sheet).map_err(EngineError::BadSheet)?;
            let plan = plan_rows(&s, &lines, reach, role).await?;
            let (s, done) =
                onboard_many(s, obt, &domain_name, plan.jobs.clone(), jobs, progress).await?;
            let report = plan.account(&done);
            (s, done, Some(report))
        }
    };
    // Auto-enrolment (groups made with `--auto`): the new devices join
    // them, and they and the group's devices are provisioned now.
    let mut new: Vec<Uuid> = devices
        .iter()
        .filter_map(|o| o.result.as_ref().ok().copied())
        .collect();
    new.extend(&settled);
    let mut to_sync = super::auto_enrol(&mut s, &new).await?;
    to_sync.extend(&settled);
    let resumed = sync_devices(&mut s, obt, &to_sync, reach, jobs, &super::no_progress).await?;
    Ok((
        s,
        OnboardReport {
            devices,
            sheet,
            resumed,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A failed PIN handshake is told apart by the device's doxm: gone, a
    /// wrong PIN, another OBT's transfer running (its owner set, or the
    /// device's UUID changed), or completed meanwhile.
    #[test]
    fn a_refused_pin_session_says_why() {
        let peer: SocketAddr = "127.0.0.1:5683".parse().unwrap();
        let (factory, other, renamed) =
            (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        let ident = DeviceIdentity {
            rt: Vec::new(),
            name: Some("hall light".into()),
            di: Some(factory),
        };
        let doxm = |owned: bool, owner: Uuid, di: Uuid| {
            ssm_ocf::cbor::map([
                ("owned", ciborium::Value::Bool(owned)),
                ("devowneruuid", ciborium::Value::Text(owner.to_string())),
                ("deviceuuid", ciborium::Value::Text(di.to_string())),
            ])
        };
        let why = |answered, d: Option<ciborium::Value>| {
            handshake_failed(peer, &ident, answered, d.as_ref())
        };
        assert!(why(false, None).contains("no answer from coap://127.0.0.1:5683"));
        let wrong = why(true, Some(doxm(false, Uuid::nil(), factory)));
        assert!(wrong.contains("refused the PIN: check the PIN"), "{wrong}");
        assert!(why(true, None).contains("refused the PIN"));
        let busy = [
            (Some(doxm(false, other, factory)), true),
            (Some(doxm(false, other, renamed)), true),
            (Some(doxm(false, Uuid::nil(), renamed)), false),
        ];
        for (d, names_owner) in busy {
            let m = why(true, d);
            assert!(
                m.contains(&format!(
                    "is transferring ownership of device hall light ({factory}) at coap://127.0.0.1:5683 right now"
                )) && m.contains(&format!("wait {} s and retry", OTM_IDLE.as_secs() + 1)),
                "{m}"
            );
            assert_eq!(m.contains(&format!("(owner {other})")), names_owner, "{m}");
            assert!(!m.contains("PIN:"), "{m}");
        }
        let taken = why(true, Some(doxm(true, other, renamed)));
        assert!(
            taken.contains(&format!(
                "(owner {other}) took ownership of device hall light"
            )),
            "{taken}"
        );
    }

    #[test]
    fn the_role_comes_from_the_device_unless_asked() {
        let rt = |t: &[&str]| t.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            advertised_role(&rt(&["oic.wk.d", "oic.d.switch"])),
            Some(DeviceRole::Switch)
        );
        assert_eq!(
            advertised_role(&rt(&["oic.wk.d", "oic.d.light"])),
            Some(DeviceRole::Light)
        );
        assert_eq!(advertised_role(&rt(&["oic.wk.d"])), None);
        let mut w = Vec::new();
        assert_eq!(
            resolve_role(None, Some(DeviceRole::Switch), &mut w),
            DeviceRole::Switch
        );
        assert_eq!(resolve_role(None, None, &mut w), DeviceRole::Light);
        assert_eq!(
            resolve_role(Some(DeviceRole::Switch), Some(DeviceRole::Switch), &mut w),
            DeviceRole::Switch
        );
        assert!(w.is_empty());
        assert_eq!(
            resolve_role(Some(DeviceRole::Light), Some(DeviceRole::Switch), &mut w),
            DeviceRole::Light
        );
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("the device says it is a switch"), "{w:?}");
    }
}

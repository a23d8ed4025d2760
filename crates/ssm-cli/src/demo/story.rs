//! The story of `ssm demo`, one function per step: devices, discovery,
//! onboarding, SSM provisioning, the switch's application, ON/OFF rounds,
//! attacks.
use super::{collect, drain, ms, notifications, on_off, read_back, switch_value, Args, Light, Out};
use crate::engine_ui::{engine_err, progress};
use anyhow::{anyhow, bail, Context, Result};
use ssm_coap::{Code, MessageType, Token};
use ssm_obt::engine::{onboard_many, rng, sync_devices, OnboardJob, Reach};
use ssm_obt::store::{DeviceRecord, Store};
use ssm_obt::DeviceRole;
use ssm_ocf::cred::CredType;
use ssm_ocf::device::{Device, DeviceInfo};
use ssm_ocf::security::SecurityState;
use ssm_ocf::ssm::{DropReason, SignatureCache};
use ssm_ocf::switch::{BinarySwitch, HREF};
use ssm_ocf::{message, Uuid};
use ssm_runtime::client::{socket_for, MulticastTargets, SsmSender};
use ssm_runtime::device::{start, DeviceConfig, DeviceEvent, DeviceHandle};
use ssm_runtime::obt_transport::discover_unowned;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::broadcast::Receiver;

/// Where the demo runs: its options, state directory and interface.
pub(super) struct Stage<'a> {
    pub(super) args: &'a Args,
    pub(super) dir: &'a Path,
    pub(super) out: Out,
    /// Number of lights.
    pub(super) n: usize,
    /// IPv6 in a namespace (else IPv4 on lo).
    pub(super) v6: bool,
    pub(super) iface: String,
}

/// The devices, unowned, with the PINs they show.
pub(super) struct Devices {
    pub(super) lights: Vec<Light>,
    pub(super) switch: DeviceHandle,
    pub(super) pins: HashMap<Uuid, String>,
    /// Device UUID (before onboarding) → index of the light, `None` for
    /// the switch.
    pub(super) by_uuid: HashMap<Uuid, Option<usize>>,
}

/// Step 1: Devices, unowned (RFOTM), each showing a Random PIN.
pub(super) async fn start_devices(st: &Stage<'_>) -> Result<Devices> {
    let (args, dir, iface, v6) = (st.args, st.dir, &st.iface, st.v6);
    // The lights of this process share one replay-floor journal: one
    // fsync per command for all of them (ssm_runtime::journal).
    let journal = ssm_runtime::journal::FloorJournal::open(dir.join("floors.journal"))
        .with_context(|| format!("cannot create the floor journal in {}", dir.display()))?;
    // And one memo of verified group-mode signatures: a signed command is
    // verified once, not once per light.
    let signatures = Arc::new(SignatureCache::new(SignatureCache::DEFAULT_CAPACITY));
    let cfg = |name: &str| DeviceConfig {
        interfaces: vec![iface.clone()],
        ipv4: !v6,
        ipv6: v6,
        ipv6_scopes: vec![2],
        port: args.port,
        state_dir: dir.join(name),
        floor_journal: Some(journal.clone()),
        signature_cache: Some(signatures.clone()),
        site_prefixes: Vec::new(),
        group_hub: None,
        unicast_port: 0,
        persist_resources: false,
    };
    let mut lights = Vec::new();
    let mut pins: HashMap<Uuid, String> = HashMap::new();
    let mut by_uuid: HashMap<Uuid, Option<usize>> = HashMap::new();
    for i in 0..st.n {
        let name = format!("light-{i}");
        let uuid = Uuid::new_v4();
        let mut d = Device::new(DeviceInfo::light(&name, uuid));
        d.add_resource(HREF, Box::new(BinarySwitch::default()), true);
        d.set_security(SecurityState::new(uuid));
        let handle = start(d, &cfg(&name)).await.with_context(|| {
            format!(
                "cannot start {name} on {iface} port {} (another --port?)",
                args.port
            )
        })?;
        let pin = handle
            .pin()
            .ok_or_else(|| anyhow!("{name} shows no Random PIN"))?;
        pins.insert(uuid, pin);
        by_uuid.insert(uuid, Some(i));
        lights.push(Light {
            name,
            peer: handle.unicast,
            first_uuid: uuid,
            handle,
            record: None,
            client: None,
            observe: None,
        });
    }
    let switch_uuid = Uuid::new_v4();
    let mut d = Device::new(DeviceInfo::switch("wall-switch", switch_uuid));
    d.set_security(SecurityState::new(switch_uuid));
    let switch = start(d, &cfg("wall-switch"))
        .await
        .with_context(|| format!("cannot start the wall switch on {iface}"))?;
    pins.insert(
        switch_uuid,
        switch
            .pin()
            .ok_or_else(|| anyhow!("the switch shows no Random PIN"))?,
    );
    by_uuid.insert(switch_uuid, None);
    Ok(Devices {
        lights,
        switch,
        pins,
        by_uuid,
    })
}

/// Step 2a: The onboarding tool finds every device of this demo by multicast
/// (only ours: another demo on the same port is not ours).
pub(super) async fn discover(
    st: &Stage<'_>,
    targets: &MulticastTargets,
    devices: &mut Devices,
) -> Result<(HashMap<Uuid, SocketAddr>, Duration)> {
    let (n, iface) = (st.n, &st.iface);
    let t_discover = Instant::now();
    let mut found: HashMap<Uuid, SocketAddr> = HashMap::new();
    for _ in 0..5 {
        for (ep, id) in discover_unowned(targets, Duration::from_millis(200)).await? {
            if devices.by_uuid.contains_key(&id) {
                found.insert(id, ep);
            }
        }
        if found.len() == n + 1 {
            break;
        }
    }
    if found.len() != n + 1 {
        bail!(
            "only {} of {} devices answered discovery on {iface} port {}: is multicast enabled on {iface}? (try another --port)",
            found.len(),
            n + 1,
            st.args.port
        );
    }
    for l in devices.lights.iter_mut() {
        // The address the device answered from (IPv6: link-local + zone).
        l.peer = found[&l.first_uuid];
    }
    Ok((found, t_discover.elapsed()))
}

/// Step 2b: Every device onboarded by Random PIN (what the person
/// commissioning reads off each device: its PIN; the domain gets the
/// names shown in the table). Returns the store, the switch's record and
/// the lights' records (also kept in `devices.lights`).
pub(super) async fn onboard(
    st: &Stage<'_>,
    store: Store,
    found: &HashMap<Uuid, SocketAddr>,
    devices: &mut Devices,
) -> Result<(Store, DeviceRecord, Vec<DeviceRecord>)> {
    let (obt, domain_name) = store.obt()?;
    let show_progress = !st.args.json && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let work: Vec<_> = found
        .iter()
        .map(|(id, ep)| {
            let (name, role) = match devices.by_uuid[id] {
                Some(i) => (devices.lights[i].name.clone(), DeviceRole::Light),
                None => ("wall-switch".to_string(), DeviceRole::Switch),
            };
            OnboardJob {
                peer: *ep,
                pin: ssm_obt::engine::Pin::Given(devices.pins[id].clone()),
                name: Some(name),
                role: Some(role),
            }
        })
        .collect();
    let (store, report) = onboard_many(store, obt, &domain_name, work, 8, &progress(show_progress))
        .await
        .map_err(engine_err)?;
    let failed: Vec<String> = report
        .iter()
        .filter_map(|o| o.result.as_ref().err().map(|e| format!("{}: {e}", o.ep)))
        .collect();
    if !failed.is_empty() {
        bail!("onboarding failed for {}", failed.join("; "));
    }
    let by_ep: HashMap<String, Option<usize>> = found
        .iter()
        .map(|(id, ep)| (format!("coap://{ep}"), devices.by_uuid[id]))
        .collect();
    let mut switch_rec = None;
    for o in &report {
        let (ep, Ok(new_uuid)) = (&o.ep, &o.result) else {
            continue;
        };
        let rec = store.device(&new_uuid.to_string())?;
        match by_ep.get(ep) {
            Some(Some(i)) => devices.lights[*i].record = Some(rec),
            Some(None) => switch_rec = Some(rec),
            None => bail!("onboarded an unknown device at {ep}"),
        }
    }
    let switch_rec = switch_rec.context("the switch was not onboarded")?;
    let light_recs: Vec<DeviceRecord> = devices
        .lights
        .iter()
        .filter_map(|l| l.record.clone())
        .collect();
    if light_recs.len() != st.n {
        bail!("{} of {} lights onboarded", light_recs.len(), st.n);
    }
    Ok((store, switch_rec, light_recs))
}

/// Step 3: SSM provisioning, as `ssm obt ssm grant wall-switch --all`: the
/// domain records the grant (group key, the switch's Sender ID, the
/// pair-wise keys the status display reads and observes with), then every
/// affected device is brought up to date. Returns the lights granted and
/// the switch's Sender ID.
pub(super) async fn grant(
    st: &Stage<'_>,
    store: &mut Store,
    switch_rec: &DeviceRecord,
    light_recs: &[DeviceRecord],
) -> Result<(Vec<Uuid>, String)> {
    let (obt, _) = store.obt()?;
    let ids: Vec<Uuid> = light_recs.iter().map(|r| r.uuid).collect();
    let affected = store.grant_lights(&switch_rec.uuid, &ids, &mut rng)?;
    let reach = Reach::link(&st.iface, st.args.port, st.v6);
    let synced = sync_devices(
        store,
        obt,
        &affected,
        &reach,
        8,
        &ssm_obt::engine::no_progress,
    )
    .await
    .map_err(engine_err)?;
    let failures: Vec<String> = synced
        .iter()
        .filter_map(|r| r.outcome.as_ref().err().map(|e| format!("{}: {e}", r.name)))
        .collect();
    if !failures.is_empty() {
        bail!("SSM provisioning failed: {}", failures.join("; "));
    }
    let sender_id = store
        .current_sender_id(&switch_rec.uuid)?
        .context("the domain gave the switch no Sender ID")?;
    Ok((ids, sender_id))
}

/// The switch's application, with the credentials the OBT gave it: its
/// SSM sender, and a status display that observes every light with the
/// switch's pair-wise OSCORE context (RFC 8613 §4.1.3.5): protected
/// notifications, no public read/observe ACE.
pub(super) async fn switch_app(dir: &Path, devices: &mut Devices) -> Result<SsmSender> {
    let sec = devices
        .switch
        .security()
        .context("the switch has no security state")?;
    let creds = sec.cred.oscore_creds()?;
    let ssm_cred = creds
        .iter()
        .find(|c| c.credtype == CredType::SsmClient)
        .context("the OBT gave the switch no SSM client credential")?;
    let app_dir = dir.join("wall-switch-app");
    ssm_runtime::store::create_private_dir(&app_dir)?;
    let sender = SsmSender::new(
        ssm_cred,
        ssm_runtime::state_dir::StateDir::new(&app_dir).sequence_store(ssm_cred.credid),
    )?;
    for l in devices.lights.iter_mut() {
        let uuid = l.record.as_ref().map(|r| r.uuid);
        let cred = creds
            .iter()
            .find(|c| c.credtype == CredType::PairwiseOscore && c.subject == uuid)
            .with_context(|| format!("no pair-wise credential for {}", l.name))?;
        l.client = Some(crate::client::pairwise_client(
            &app_dir,
            cred,
            socket_for(l.peer).await?,
        )?);
    }
    for l in devices.lights.iter_mut() {
        let client = l.client.as_mut().context("light without client")?;
        let reg = message::request(MessageType::Confirmable, Code::GET, HREF, None);
        let (_, o) = client
            .observe(l.peer, reg)
            .await
            .with_context(|| format!("{} refused the secured observation", l.name))?;
        l.observe = Some(o);
    }
    Ok(sender)
}

/// What the ON/OFF rounds showed.
pub(super) struct Rounds {
    pub(super) all_ok: bool,
    /// Every light's apply latency, sorted.
    pub(super) latencies: Vec<Duration>,
    pub(super) worst_skew: Duration,
    /// Per light: switched every time.
    pub(super) switched: Vec<bool>,
    /// Per command, for the JSON report.
    pub(super) commands: Vec<serde_json::Value>,
}

/// Step 4: ON, OFF: one multicast datagram each; every light's state confirmed
/// by a RETRIEVE and an OBSERVE notification.
pub(super) async fn rounds(
    st: &Stage<'_>,
    sender: &mut SsmSender,
    targets: &MulticastTargets,
    events: &mut [Receiver<DeviceEvent>],
    lights: &mut [Light],
) -> Result<Rounds> {
    st.out.say(format!(
        "\n{:<5} {:<4} {:<10} {:>6} {:>12} {:>8}",
        "round", "cmd", "light", "state", "applied (ms)", "observe"
    ));
    let mut r = Rounds {
        all_ok: true,
        latencies: Vec::new(),
        worst_skew: Duration::ZERO,
        switched: vec![true; st.n],
        commands: Vec::new(),
    };
    for round in 1..=st.args.rounds {
        for value in [true, false] {
            drain(events);
            let sent_at = Instant::now();
            let sent = sender
                .send(targets, HREF, &switch_value(value), true)
                .await?;
            let applied = collect(events, Duration::from_secs(3), |e| match e {
                DeviceEvent::SsmApplied { at, .. } => Some(at.duration_since(sent_at)),
                _ => None,
            })
            .await;
            let notified = notifications(lights, value, Duration::from_secs(2)).await?;
            let mut rows = Vec::new();
            for (i, l) in lights.iter_mut().enumerate() {
                let state = read_back(l).await;
                let ok = applied[i].is_some() && state == Some(value) && notified[i];
                r.switched[i] &= ok;
                rows.push(serde_json::json!({
                    "light": l.name, "applied_us": applied[i].map(|d| d.as_micros() as u64),
                    "read_value": state, "notified": notified[i], "ok": ok,
                }));
                st.out.say(format!(
                    "{:<5} {:<4} {:<10} {:>6} {:>12} {:>8}",
                    round,
                    on_off(value),
                    l.name,
                    state.map(on_off).unwrap_or("?"),
                    applied[i]
                        .map(|d| format!("{:.3}", ms(d)))
                        .unwrap_or_else(|| "missed".into()),
                    if notified[i] { "yes" } else { "NO" }
                ));
            }
            let mut lat: Vec<Duration> = applied.iter().flatten().copied().collect();
            lat.sort();
            let skew = match (lat.first(), lat.last()) {
                (Some(a), Some(b)) => *b - *a,
                _ => Duration::ZERO,
            };
            r.worst_skew = r.worst_skew.max(skew);
            let ok = sent.len() == 1 && rows.iter().all(|r| r["ok"] == true);
            r.all_ok &= ok;
            r.commands.push(serde_json::json!({
                "round": round, "value": value, "datagrams": sent.len(), "applied": lat.len(),
                "all_applied_us": lat.last().map(|d| d.as_micros() as u64),
                "skew_us": skew.as_micros() as u64,
                "read_back_ok": rows.iter().all(|r| r["read_value"] == value),
                "notify_ok": rows.iter().all(|r| r["notified"] == true),
                "ok": ok, "lights": rows,
            }));
            r.latencies.extend(lat);
        }
    }
    r.latencies.sort();
    Ok(r)
}

/// What the attacks showed: per attack (name, what stops it, how many
/// lights rejected it), and whether every light's state is unchanged.
pub(super) type Attacks = (Vec<(&'static str, &'static str, usize)>, bool);

/// Step 5: Attacks: a replay of a genuine datagram, and a forged one.
pub(super) async fn attacks(
    sender: &mut SsmSender,
    targets: &MulticastTargets,
    events: &mut [Receiver<DeviceEvent>],
    lights: &mut [Light],
) -> Result<Attacks> {
    let (genuine, _) = sender.protect(&ssm_ocf::ssm::update_request(
        HREF,
        &switch_value(true),
        1,
        Token::default(),
        true,
    ))?;
    let (sock, dests) = targets
        .targets
        .first()
        .context("no multicast destination")?;
    let group = *dests.first().context("no multicast destination")?;
    drain(events);
    sock.send_to(&genuine, group).await?;
    let first = collect(events, Duration::from_secs(3), |e| {
        matches!(e, DeviceEvent::SsmApplied { .. }).then_some(())
    })
    .await;
    if first.iter().any(Option::is_none) {
        bail!("a light did not apply the genuine datagram before the attack");
    }
    // A forger without the key: a fresh, never-seen Partial IV (so the
    // replay window lets it through to the AEAD) and one changed bit, as
    // any change made without the key: the authentication tag fails.
    let (mut forged, _) = sender.protect(&ssm_ocf::ssm::update_request(
        HREF,
        &switch_value(true),
        2,
        Token::default(),
        true,
    ))?;
    if let Some(b) = forged.last_mut() {
        *b ^= 0x01;
    }
    let mut rejected = Vec::new();
    for (dgram, name, why, expected) in [
        (&genuine, "replay", "replay window", DropReason::Replay),
        (
            &forged,
            "forgery",
            "authentication tag",
            DropReason::DecryptionFailed,
        ),
    ] {
        sock.send_to(dgram, group).await?;
        // Other drops (say, another demo's datagrams on the same port, with
        // a key nobody here knows) are not this attack's verdict.
        let r = collect(events, Duration::from_secs(3), |e| match e {
            DeviceEvent::Dropped(r) if *r == expected => Some(true),
            DeviceEvent::SsmApplied { .. } => Some(false), // must not happen
            _ => None,
        })
        .await;
        let n_rej = r.iter().filter(|x| **x == Some(true)).count();
        rejected.push((name, why, n_rej));
    }
    let mut unchanged = true;
    for l in lights.iter_mut() {
        unchanged &= read_back(l).await == Some(true);
    }
    Ok((rejected, unchanged))
}

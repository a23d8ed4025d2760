//! `ssm demo`: the whole SSM story on one machine, in this process.
//!
//! 1. N lights and one wall switch start as real OCF devices in RFOTM
//!    (unowned, each showing a Random PIN), on loopback (IPv4 multicast
//!    224.0.1.187 on `lo` only) or, with `--ipv6`, in a network namespace
//!    of their own.
//! 2. An onboarding tool with a fresh secure domain (the SQLite store of
//!    `ssm obt`) discovers them by multicast, onboards every one by Random
//!    PIN and provisions SSM: the group key, the switch's Sender ID, and a
//!    grant of the switch on every light (`ssm obt ssm grant --all`).
//! 3. The switch sends ON, then OFF, each as ONE OSCORE-protected
//!    multicast UPDATE; every light applies it; its state is confirmed by a
//!    unicast RETRIEVE (pair-wise OSCORE) and by an OBSERVE notification.
//! 4. A replayed and a forged datagram are shown rejected by every light.
use crate::obt::{engine_err, progress};
use anyhow::{anyhow, bail, Context, Result};
use ciborium::Value;
use ssm_coap::{Code, MessageType, Token};
use ssm_obt::engine::{onboard_many, rng, sync_devices, OnboardJob, Reach};
use ssm_obt::store::{DeviceRecord, Store};
use ssm_obt::DeviceRole;
use ssm_ocf::cred::CredType;
use ssm_ocf::device::{Device, DeviceInfo};
use ssm_ocf::security::SecurityState;
use ssm_ocf::ssm::DropReason;
use ssm_ocf::switch::{BinarySwitch, HREF};
use ssm_ocf::{cbor, message, Uuid};
use ssm_runtime::client::{socket_for, MulticastScope, MulticastTargets, SsmSender};
use ssm_runtime::device::{start, DeviceConfig, DeviceEvent, DeviceHandle};
use ssm_runtime::multicast::COAP_PORT;
use ssm_runtime::obt::{discover_unowned, zero_free_uuid};
use ssm_runtime::random_bytes;
use ssm_runtime::store::FileSequenceStore;
use ssm_runtime::udp::{Observation, OscoreClient};
use std::collections::HashMap;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::sync::broadcast::Receiver;

/// Options of `ssm demo`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Number of lights.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=200))]
    lights: u32,
    /// ON/OFF rounds (each is two multicast UPDATEs).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    rounds: u32,
    /// UDP port of the multicast group (OCF uses 5683).
    #[arg(long, default_value_t = COAP_PORT)]
    port: u16,
    /// Keep the devices' state and the domain here (must not hold a domain
    /// yet; default: a temporary directory, removed at the end).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Use IPv6 (ff02::158) in a network namespace the demo creates and
    /// removes (needs root: IPv6 multicast does not work on lo).
    #[arg(long)]
    ipv6: bool,
    /// Internal: the interface inside the namespace (set by --ipv6).
    #[arg(long, hide = true)]
    netns_iface: Option<String>,
    /// Machine-readable output: one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

fn switch_value(v: bool) -> Value {
    cbor::map([("value", Value::Bool(v))])
}

fn on_off(v: bool) -> &'static str {
    if v {
        "ON"
    } else {
        "OFF"
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Waits for each light's next event matching `pick`; returns what it
/// picked (`None` for a light that timed out).
async fn collect<T>(
    rxs: &mut [Receiver<DeviceEvent>],
    limit: Duration,
    pick: impl Fn(&DeviceEvent) -> Option<T>,
) -> Vec<Option<T>> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    for rx in rxs.iter_mut() {
        let mut got = None;
        while let Ok(Ok(ev)) = tokio::time::timeout_at(deadline, rx.recv()).await {
            if let Some(t) = pick(&ev) {
                got = Some(t);
                break;
            }
        }
        out.push(got);
    }
    out
}

fn drain(rxs: &mut [Receiver<DeviceEvent>]) {
    for rx in rxs {
        while rx.try_recv().is_ok() {}
    }
}

struct TempDir(PathBuf, bool);
impl Drop for TempDir {
    fn drop(&mut self) {
        if self.1 {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Prints human output unless `--json`.
struct Out(bool);
impl Out {
    fn say(&self, s: impl AsRef<str>) {
        if !self.0 {
            println!("{}", s.as_ref());
        }
    }
}

pub async fn run(args: Args) -> Result<bool> {
    if args.ipv6 && args.netns_iface.is_none() {
        return netns::run(&args).await;
    }
    let dir = match &args.data_dir {
        Some(d) => {
            if d.join("domain.sqlite").exists() {
                bail!(
                    "{} already holds a demo domain: remove the directory or choose another --data-dir",
                    d.display()
                );
            }
            TempDir(d.clone(), false)
        }
        None => TempDir(
            std::env::temp_dir().join(format!("ssm-demo-{}-{}", std::process::id(), hex_id())),
            true,
        ),
    };
    ssm_runtime::store::create_private_dir(&dir.0).with_context(|| {
        format!(
            "cannot create {} (set TMPDIR or --data-dir)",
            dir.0.display()
        )
    })?;
    // Every device, socket and task lives inside `demo`: dropping it (on
    // Ctrl-C) stops them all; `dir` is removed after.
    tokio::select! {
        r = demo(&args, &dir.0) => r,
        _ = crate::device::shutdown() => {
            eprintln!("ssm demo: interrupted; every device stopped{}", if dir.1 { ", temporary state removed" } else { "" });
            Ok(false)
        }
    }
}

/// A light as the demo sees it.
struct Light {
    name: String,
    handle: DeviceHandle,
    peer: SocketAddr,
    first_uuid: Uuid,
    record: Option<DeviceRecord>,
    client: Option<OscoreClient<FileSequenceStore>>,
    observe: Option<Observation>,
}

async fn demo(args: &Args, dir: &Path) -> Result<bool> {
    let out = Out(args.json);
    let n = args.lights as usize;
    let v6 = args.netns_iface.is_some();
    let iface = args.netns_iface.clone().unwrap_or_else(|| "lo".into());
    let transport = if v6 {
        format!(
            "IPv6 ff02::158 port {} on {iface} (network namespace)",
            args.port
        )
    } else {
        format!("IPv4 224.0.1.187 port {} on lo", args.port)
    };
    // The lights of this process share one replay-floor journal: one
    // fsync per command for all of them (ssm_runtime::journal).
    let journal = ssm_runtime::journal::FloorJournal::open(dir.join("floors.journal"))
        .with_context(|| format!("cannot create the floor journal in {}", dir.display()))?;
    let cfg = |name: &str| DeviceConfig {
        interfaces: vec![iface.clone()],
        ipv4: !v6,
        ipv6: v6,
        ipv6_scopes: vec![2],
        port: args.port,
        state_dir: dir.join(name),
        floor_journal: Some(journal.clone()),
    };
    let t_start = Instant::now();

    // 1. Devices, unowned (RFOTM), each showing a Random PIN.
    out.say(format!(
        "ssm demo: {n} lights and 1 wall switch, {transport}"
    ));
    let mut lights = Vec::new();
    let mut pins: HashMap<Uuid, String> = HashMap::new();
    let mut by_uuid: HashMap<Uuid, Option<usize>> = HashMap::new();
    for i in 0..n {
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
    let mut d = Device::new(DeviceInfo::light("wall-switch", switch_uuid));
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
    let mut events: Vec<_> = lights.iter().map(|l| l.handle.events.subscribe()).collect();

    // 2. The onboarding tool: a fresh domain, discovery, Random PIN.
    let domain = dir.join("domain.sqlite");
    let store = Store::init(&domain, zero_free_uuid(), "ssm demo")
        .with_context(|| format!("cannot create the domain {}", domain.display()))?;
    let (obt, domain_name) = store.obt()?;
    let scope = MulticastScope {
        interfaces: vec![iface.clone()],
        ipv4: !v6,
        ipv6_scopes: if v6 { vec![2] } else { vec![] },
        port: args.port,
        hops: 1,
    };
    let targets = MulticastTargets::open(&scope)
        .with_context(|| format!("cannot open a multicast sender on {iface}"))?;
    let t_discover = Instant::now();
    let mut found: HashMap<Uuid, SocketAddr> = HashMap::new();
    for _ in 0..5 {
        // Only our own devices: another demo on the same port is not ours.
        for (ep, id) in discover_unowned(&targets, Duration::from_millis(200)).await? {
            if by_uuid.contains_key(&id) {
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
            args.port
        );
    }
    let discover_time = t_discover.elapsed();
    for l in lights.iter_mut() {
        // The address the device answered from (IPv6: link-local + zone).
        l.peer = found[&l.first_uuid];
    }
    out.say(format!(
        "OBT {obt}: new domain, discovered {} unowned devices in {:.0} ms",
        n + 1,
        ms(discover_time)
    ));
    let t_onboard = Instant::now();
    // What the person commissioning reads off each device: its PIN; the
    // domain gets the names shown in the table below.
    let show_progress = !args.json && std::io::stderr().is_terminal();
    let work: Vec<_> = found
        .iter()
        .map(|(id, ep)| {
            let (name, role) = match by_uuid[id] {
                Some(i) => (lights[i].name.clone(), DeviceRole::Light),
                None => ("wall-switch".to_string(), DeviceRole::Switch),
            };
            OnboardJob {
                peer: *ep,
                pin: pins[id].clone(),
                name: Some(name),
                role,
            }
        })
        .collect();
    let (mut store, report) =
        onboard_many(store, obt, &domain_name, work, 8, &progress(show_progress))
            .await
            .map_err(engine_err)?;
    let failed: Vec<String> = report
        .iter()
        .filter_map(|(ep, r)| r.as_ref().err().map(|e| format!("{ep}: {e}")))
        .collect();
    if !failed.is_empty() {
        bail!("onboarding failed for {}", failed.join("; "));
    }
    let onboard_time = t_onboard.elapsed();
    let by_ep: HashMap<String, Option<usize>> = found
        .iter()
        .map(|(id, ep)| (format!("coap://{ep}"), by_uuid[id]))
        .collect();
    let mut switch_rec = None;
    for (ep, r) in &report {
        let Ok(new_uuid) = r else { continue };
        let rec = store.device(&new_uuid.to_string())?;
        match by_ep.get(ep) {
            Some(Some(i)) => lights[*i].record = Some(rec),
            Some(None) => switch_rec = Some(rec),
            None => bail!("onboarded an unknown device at {ep}"),
        }
    }
    let switch_rec = switch_rec.context("the switch was not onboarded")?;
    let light_recs: Vec<DeviceRecord> = lights.iter().filter_map(|l| l.record.clone()).collect();
    if light_recs.len() != n {
        bail!("{} of {n} lights onboarded", light_recs.len());
    }
    out.say(format!(
        "onboarded {} devices by Random PIN in {:.0} ms (DTLS owner transfer, owner PSK)",
        n + 1,
        ms(onboard_time)
    ));

    // 3. SSM provisioning, as `ssm obt ssm grant wall-switch --all`: the
    // domain records the grant (group key, the switch's Sender ID, the
    // pair-wise keys the status display below reads and observes with),
    // then every affected device is brought up to date.
    let t_grant = Instant::now();
    let ids: Vec<Uuid> = light_recs.iter().map(|r| r.uuid).collect();
    let affected = store.grant_lights(&switch_rec.uuid, &ids, &mut rng)?;
    let reach = Reach {
        iface: iface.clone(),
        port: args.port,
        ipv6: v6,
    };
    let synced = sync_devices(
        &mut store,
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
    let grant_time = t_grant.elapsed();
    out.say(format!(
        "provisioned SSM in {:.0} ms: switch {} (Sender ID {}) may command all {n} lights",
        ms(grant_time),
        switch_rec.name,
        sender_id
    ));

    // The switch's application uses the credentials the OBT gave it.
    let sec = switch
        .security()
        .context("the switch has no security state")?;
    let creds = sec.cred.oscore_creds()?;
    let ssm_cred = creds
        .iter()
        .find(|c| c.credtype == CredType::SsmClient)
        .context("the OBT gave the switch no SSM client credential")?;
    let app_dir = dir.join("wall-switch-app");
    ssm_runtime::store::create_private_dir(&app_dir)?;
    let mut sender = SsmSender::new(
        ssm_cred,
        FileSequenceStore::new(app_dir.join(format!("ssn-{}", ssm_cred.credid))),
    )?;
    for l in lights.iter_mut() {
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

    // A status display observes every light, with the switch's pair-wise
    // OSCORE context (RFC 8613 §4.1.3.5): protected notifications, no
    // public read/observe ACE.
    for l in lights.iter_mut() {
        let client = l.client.as_mut().context("light without client")?;
        let reg = message::request(MessageType::Confirmable, Code::GET, HREF, None);
        let (_, o) = client
            .observe(l.peer, reg)
            .await
            .with_context(|| format!("{} refused the secured observation", l.name))?;
        l.observe = Some(o);
    }

    // 4. ON, OFF: one multicast datagram each.
    out.say(format!(
        "\n{:<5} {:<4} {:<10} {:>6} {:>12} {:>8}",
        "round", "cmd", "light", "state", "applied (ms)", "observe"
    ));
    let mut all_ok = true;
    let mut latencies = Vec::new();
    let mut worst_skew = Duration::ZERO;
    let mut switched = vec![true; n];
    let mut commands = Vec::new();
    for round in 1..=args.rounds {
        for value in [true, false] {
            drain(&mut events);
            let sent_at = Instant::now();
            let sent = sender
                .send(&targets, HREF, &switch_value(value), true)
                .await?;
            let applied = collect(&mut events, Duration::from_secs(3), |e| match e {
                DeviceEvent::SsmApplied { at, .. } => Some(at.duration_since(sent_at)),
                _ => None,
            })
            .await;
            let notified = notifications(&mut lights, value, Duration::from_secs(2)).await?;
            let mut rows = Vec::new();
            for (i, l) in lights.iter_mut().enumerate() {
                let state = read_back(l).await;
                let ok = applied[i].is_some() && state == Some(value) && notified[i];
                switched[i] &= ok;
                rows.push(serde_json::json!({
                    "light": l.name, "applied_us": applied[i].map(|d| d.as_micros() as u64),
                    "read_back": state, "notified": notified[i], "ok": ok,
                }));
                out.say(format!(
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
            worst_skew = worst_skew.max(skew);
            let ok = sent.len() == 1 && rows.iter().all(|r| r["ok"] == true);
            all_ok &= ok;
            commands.push(serde_json::json!({
                "round": round, "value": value, "datagrams": sent.len(), "applied": lat.len(),
                "all_applied_us": lat.last().map(|d| d.as_micros() as u64),
                "skew_us": skew.as_micros() as u64,
                "read_back_ok": rows.iter().all(|r| r["read_back"] == value),
                "notify_ok": rows.iter().all(|r| r["notified"] == true),
                "ok": ok, "lights": rows,
            }));
            latencies.extend(lat);
        }
    }

    // 5. Attacks: a replay of a genuine datagram, and a forged one.
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
    drain(&mut events);
    sock.send_to(&genuine, group).await?;
    let first = collect(&mut events, Duration::from_secs(3), |e| {
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
        let r = collect(&mut events, Duration::from_secs(3), |e| match e {
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
    let attacks_ok = rejected.iter().all(|(_, _, k)| *k == n) && unchanged;
    all_ok &= attacks_ok;

    latencies.sort();
    let p50 = latencies
        .get(latencies.len() / 2)
        .copied()
        .unwrap_or_default();
    let max = latencies.last().copied().unwrap_or_default();
    let lights_switched = switched.iter().filter(|s| **s).count();
    let total = t_start.elapsed();
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "lights": n, "rounds": args.rounds, "commands": args.rounds * 2,
                "transport": if v6 { "ipv6" } else { "ipv4" },
                "domain": {"obt": obt, "devices": store.devices()?.len()},
                "onboarded": {"lights": light_recs.len(), "switches": 1, "method": "random-pin",
                              "discover_ms": ms(discover_time), "onboard_ms": ms(onboard_time)},
                "granted": ids.len(), "sender_id": sender_id,
                "lights_switched": lights_switched,
                "all_switched": lights_switched == n,
                "notify_ok": commands.iter().all(|c| c["notify_ok"] == true),
                "latency_us": {"p50": p50.as_micros() as u64, "max": max.as_micros() as u64,
                               "skew_max": worst_skew.as_micros() as u64},
                "replay_rejected_by": rejected[0].2, "forgery_rejected_by": rejected[1].2,
                "unchanged_by_attacks": unchanged,
                "commands_detail": commands, "total_ms": ms(total), "ok": all_ok,
            })
        );
    } else {
        println!();
        for (name, why, k) in &rejected {
            println!("{name}: rejected by {k}/{n} lights ({why})");
        }
        println!(
            "states unchanged by the attacks: {}",
            if unchanged { "yes" } else { "NO" }
        );
        println!(
            "summary: {lights_switched}/{n} lights switched ON and OFF x{}, one datagram per command; \
             latency p50 {:.3} ms, max {:.3} ms, skew {:.3} ms; {:.2} s in all: {}",
            args.rounds,
            ms(p50),
            ms(max),
            ms(worst_skew),
            total.as_secs_f64(),
            if all_ok { "OK" } else { "FAILED" }
        );
        if !all_ok {
            println!("run with -v for the devices' logs");
        }
    }
    drop(lights);
    drop(switch);
    Ok(all_ok)
}

/// The light's state by a unicast RETRIEVE, protected with the switch's
/// pair-wise OSCORE context.
async fn read_back(l: &mut Light) -> Option<bool> {
    let client = l.client.as_mut()?;
    let r = client
        .request(
            l.peer,
            message::request(MessageType::Confirmable, Code::GET, HREF, None),
        )
        .await
        .ok()?;
    message::payload(&r)
        .ok()
        .and_then(|v| cbor::get(&v, "value").and_then(Value::as_bool))
}

/// Which lights notified `value` (a verified, in-order OSCORE
/// notification of their observation) before `limit`.
async fn notifications(lights: &mut [Light], value: bool, limit: Duration) -> Result<Vec<bool>> {
    let mut got = vec![false; lights.len()];
    let deadline = tokio::time::Instant::now() + limit;
    // One light after the other until the shared deadline: notifications
    // queue in each client's socket meanwhile.
    for (i, l) in lights.iter_mut().enumerate() {
        let (Some(client), Some(obs)) = (l.client.as_mut(), l.observe.as_mut()) else {
            continue;
        };
        while let Some(m) = client.next_notification(obs, deadline).await? {
            let v = message::payload(&m)
                .ok()
                .and_then(|v| cbor::get(&v, "value").and_then(Value::as_bool));
            if v == Some(value) {
                got[i] = true;
                break;
            }
        }
    }
    Ok(got)
}

fn hex_id() -> String {
    hex::encode(random_bytes::<4>())
}

/// `--ipv6`: the demo again, inside a network namespace of its own with a
/// veth pair (IPv6 multicast needs a real interface; lo has none).
mod netns {
    use super::Args;
    use anyhow::{bail, Context, Result};
    use std::process::Stdio;

    pub async fn run(args: &Args) -> Result<bool> {
        if !is_root() {
            bail!(
                "--ipv6 needs root: IPv6 multicast does not work on lo, so the demo \
                 creates a network namespace with an interface of its own, and that \
                 takes CAP_NET_ADMIN. Run `sudo ssm demo --ipv6`, or `ssm demo` for IPv4 on lo"
            );
        }
        if which("ip").is_none() {
            bail!("--ipv6 needs the `ip` tool (Debian/Ubuntu: apt-get install iproute2)");
        }
        let ns = format!("ssmdemo{}", std::process::id());
        let guard = Ns(ns.clone());
        let ip = |a: &[&str]| -> Result<()> {
            let st = std::process::Command::new("ip")
                .args(a)
                .stdout(Stdio::null())
                .status()
                .with_context(|| format!("ip {}", a.join(" ")))?;
            if !st.success() {
                bail!("`ip {}` failed", a.join(" "));
            }
            Ok(())
        };
        ip(&["netns", "add", &ns])?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        // No duplicate address detection: the link-local address is usable
        // at once.
        ip(&[
            "netns",
            "exec",
            &ns,
            "sysctl",
            "-q",
            "-w",
            "net.ipv6.conf.default.accept_dad=0",
        ])?;
        ip(&[
            "-n", &ns, "link", "add", "ssm0", "type", "veth", "peer", "name", "ssm1",
        ])?;
        ip(&["-n", &ns, "link", "set", "ssm1", "up"])?;
        ip(&["-n", &ns, "link", "set", "ssm0", "up"])?;
        // The route for ff00::/8 on ssm0 exists once the link is up.
        let exe = std::env::current_exe().context("cannot find the ssm binary")?;
        let mut cmd = tokio::process::Command::new("ip");
        cmd.args(["netns", "exec", &ns])
            .arg(exe)
            .args(["demo", "--netns-iface", "ssm0"])
            .args(["--lights", &args.lights.to_string()])
            .args(["--rounds", &args.rounds.to_string()])
            .args(["--port", &args.port.to_string()])
            .kill_on_drop(true);
        if let Some(d) = &args.data_dir {
            cmd.arg("--data-dir").arg(d);
        }
        if args.json {
            cmd.arg("--json");
        }
        let mut child = cmd
            .spawn()
            .context("cannot start the demo in the namespace")?;
        let ok = tokio::select! {
            st = child.wait() => st?.success(),
            _ = crate::device::shutdown() => {
                // Let the inner demo clean up its own state first.
                if let Some(pid) = child.id() {
                    let _ = std::process::Command::new("kill")
                        .args(["-INT", &pid.to_string()])
                        .status();
                }
                if tokio::time::timeout(std::time::Duration::from_secs(3), child.wait())
                    .await
                    .is_err()
                {
                    let _ = child.kill().await;
                }
                eprintln!("ssm demo: interrupted; namespace {ns} removed");
                false
            }
        };
        drop(guard);
        Ok(ok)
    }

    struct Ns(String);
    impl Drop for Ns {
        fn drop(&mut self) {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", &self.0])
                .status();
        }
    }

    fn is_root() -> bool {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("Uid:"))
                    .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
            })
            .unwrap_or(false)
    }

    fn which(tool: &str) -> Option<std::path::PathBuf> {
        std::env::var_os("PATH").and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(tool))
                .find(|f| f.is_file())
        })
    }
}

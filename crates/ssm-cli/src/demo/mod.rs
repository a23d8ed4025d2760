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
use anyhow::{bail, Context, Result};
use ciborium::Value;
use ssm_coap::{Code, MessageType};
use ssm_obt::store::{DeviceRecord, Store};
use ssm_ocf::switch::HREF;
use ssm_ocf::{cbor, message, Uuid};
use ssm_runtime::client::{MulticastScope, MulticastTargets};
use ssm_runtime::device::{DeviceEvent, DeviceHandle};
use ssm_runtime::multicast::COAP_PORT;
use ssm_runtime::obt_transport::zero_free_uuid;
use ssm_runtime::random_bytes;
use ssm_runtime::store::FileSequenceStore;
use ssm_runtime::udp::{Observation, OscoreClient};
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

/// The story, step by step (see the module documentation).
async fn demo(args: &Args, dir: &Path) -> Result<bool> {
    let v6 = args.netns_iface.is_some();
    let st = Stage {
        args,
        dir,
        out: Out(args.json),
        n: args.lights as usize,
        v6,
        iface: args.netns_iface.clone().unwrap_or_else(|| "lo".into()),
    };
    let (n, iface) = (st.n, &st.iface);
    let transport = if v6 {
        format!(
            "IPv6 ff02::158 port {} on {iface} (network namespace)",
            args.port
        )
    } else {
        format!("IPv4 224.0.1.187 port {} on lo", args.port)
    };
    let t_start = Instant::now();
    st.out.say(format!(
        "ssm demo: {n} lights and 1 wall switch, {transport}"
    ));
    let mut devices = story::start_devices(&st).await?;
    let mut events: Vec<_> = devices
        .lights
        .iter()
        .map(|l| l.handle.events.subscribe())
        .collect();

    // 2. The onboarding tool: a fresh domain, discovery, Random PIN.
    let domain = dir.join("domain.sqlite");
    let store = Store::init(&domain, zero_free_uuid(), "ssm demo")
        .with_context(|| format!("cannot create the domain {}", domain.display()))?;
    let (obt, _) = store.obt()?;
    let scope = MulticastScope {
        interfaces: vec![iface.clone()],
        ipv4: !v6,
        ipv6_scopes: if v6 { vec![2] } else { vec![] },
        port: args.port,
        hops: 1,
    };
    let targets = MulticastTargets::open(&scope)
        .with_context(|| format!("cannot open a multicast sender on {iface}"))?;
    let (found, discover_time) = story::discover(&st, &targets, &mut devices).await?;
    st.out.say(format!(
        "OBT {obt}: new domain, discovered {} unowned devices in {:.0} ms",
        n + 1,
        ms(discover_time)
    ));
    let t_onboard = Instant::now();
    let (mut store, switch_rec, light_recs) =
        story::onboard(&st, store, &found, &mut devices).await?;
    let onboard_time = t_onboard.elapsed();
    st.out.say(format!(
        "onboarded {} devices by Random PIN in {:.0} ms (DTLS owner transfer, owner PSK)",
        n + 1,
        ms(onboard_time)
    ));

    // 3. SSM provisioning.
    let t_grant = Instant::now();
    let (ids, sender_id) = story::grant(&st, &mut store, &switch_rec, &light_recs).await?;
    st.out.say(format!(
        "provisioned SSM in {:.0} ms: switch {} (Sender ID {}) may command all {n} lights",
        ms(t_grant.elapsed()),
        switch_rec.name,
        sender_id
    ));
    let mut sender = story::switch_app(dir, &mut devices).await?;

    // 4. ON, OFF; 5. attacks.
    let rounds =
        story::rounds(&st, &mut sender, &targets, &mut events, &mut devices.lights).await?;
    let attacks = story::attacks(&mut sender, &targets, &mut events, &mut devices.lights).await?;
    let facts = report::Facts {
        obt,
        domain_devices: store.devices()?.len(),
        lights_onboarded: light_recs.len(),
        discover_time,
        onboard_time,
        granted: ids.len(),
        sender_id,
        total: t_start.elapsed(),
    };
    let all_ok = report::report(&st, &facts, &rounds, &attacks);
    drop(devices);
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
mod netns;
mod report;
mod story;

use story::Stage;

//! `ssm device`: run one light or wall switch (`events.rs` prints what it
//! reports); `ssm device reset`: a factory reset of its state dir.
mod events;
mod reset;

use crate::state::{load_identity, load_or_provision_security};
use anyhow::{Context, Result};
use events::{print_drops, print_event};
use ssm_ocf::device::{Device, DeviceInfo};
use ssm_ocf::switch::{BinarySwitch, PowerOn, HREF};
use ssm_runtime::device::{start, DeviceConfig, DeviceEvent};
use ssm_runtime::state_dir::StateDir;
use std::path::PathBuf;

/// Options of `ssm device`.
#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Args {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    run: RunArgs,
}

/// `ssm device` subcommands.
#[derive(clap::Subcommand, Debug)]
enum Cmd {
    /// Factory reset of a device's state dir (the device must not run):
    /// credentials, ACLs, owner, replay floors and sequence numbers wiped,
    /// unowned again with a new UUID; the name is kept.
    Reset(reset::Args),
}

/// Options of `ssm device` (running a device).
#[derive(clap::Args, Debug)]
struct RunArgs {
    /// State directory (device.json, creds.json, persisted counters).
    // An `Option` only so that `ssm device reset` parses without it.
    #[arg(long, required = true)]
    state_dir: Option<PathBuf>,
    /// Device name (stored on first start; the owner may rename it later).
    #[arg(long, value_parser = parse_name)]
    name: Option<String>,
    /// Interface to join the multicast groups on (repeatable). Only named
    /// interfaces are ever used.
    #[arg(long = "iface", default_value = "lo")]
    ifaces: Vec<String>,
    /// Disable IPv4 (224.0.1.187).
    #[arg(long)]
    no_ipv4: bool,
    /// Disable IPv6 (ff02/ff03/ff05::158; never on lo).
    #[arg(long)]
    no_ipv6: bool,
    /// Multicast port.
    #[arg(long, default_value_t = ssm_runtime::multicast::COAP_PORT)]
    port: u16,
    /// Unicast port (0: a new ephemeral port each start).
    #[arg(long, default_value_t = 0)]
    unicast_port: u16,
    /// href of the switch.
    #[arg(long, default_value = HREF)]
    href: String,
    /// `light` (hosts the switch resource) or `switch` (a wall switch: an
    /// OCF device that only sends; onboard it, then use `ssm client`).
    #[arg(long, default_value = "light", value_parser = ["light", "switch"])]
    role: String,
    /// A light's state at start: `last` (as it was, kept in the state
    /// dir), `on` or `off`.
    #[arg(long, default_value = "last", value_parser = ["last", "on", "off"])]
    power_on: String,
    /// Also answer discovery from this routed prefix of the site
    /// (repeatable; e.g. fd00::/16): `ssm obt discover --scope site`
    /// through a multicast router. Default: on-link sources only.
    #[arg(long = "site-prefix", value_name = "PREFIX")]
    site_prefixes: Vec<ssm_runtime::discovery::SitePrefix>,
    /// JSON lines on stdout.
    #[arg(long)]
    json: bool,
}

fn parse_name(s: &str) -> Result<String, String> {
    if ssm_ocf::device::valid_name(s) {
        Ok(s.to_string())
    } else {
        Err(format!(
            "a device name has 1 to {} characters, no control characters and no spaces at either end",
            ssm_ocf::device::MAX_NAME_LEN
        ))
    }
}

pub async fn run(a: Args) -> Result<bool> {
    match a.cmd {
        Some(Cmd::Reset(r)) => reset::run(r),
        None => run_device(a.run).await,
    }
}

/// The light's switch at power-on: `--power-on`, from the state kept in
/// the state dir for `last`.
fn initial_switch(a: &RunArgs, state_dir: &std::path::Path) -> BinarySwitch {
    let policy: PowerOn = a.power_on.parse().unwrap_or_default();
    let last = match StateDir::new(state_dir).load_resources() {
        Ok(r) => r
            .get(&a.href)
            .and_then(|v| v.get("value"))
            .and_then(|v| v.as_bool()),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the light's last state; starting off");
            None
        }
    };
    BinarySwitch {
        value: policy.initial(last),
    }
}

async fn run_device(a: RunArgs) -> Result<bool> {
    let state_dir = a
        .state_dir
        .clone()
        .ok_or_else(|| anyhow::anyhow!("--state-dir is required"))?;
    let light = a.role == "light";
    let id = load_identity(
        &state_dir,
        a.name
            .as_deref()
            .unwrap_or(if light { "light" } else { "switch" }),
    )?;
    let security = load_or_provision_security(&state_dir, &id, &[a.href.as_str()])?;
    let creds = security.cred.clone();
    let info = if light {
        DeviceInfo::light(&id.name, id.deviceuuid)
    } else {
        DeviceInfo::switch(&id.name, id.deviceuuid)
    };
    let mut device = Device::new(info);
    if light {
        device.add_resource(&a.href, Box::new(initial_switch(&a, &state_dir)), true);
    }
    device.set_security(security);
    // The current identity: after an owner transfer the OBT's UUID
    // (doxm.deviceuuid), not the one device.json started with.
    let di = device.info().di;
    let cfg = DeviceConfig {
        interfaces: a.ifaces.clone(),
        ipv4: !a.no_ipv4,
        ipv6: !a.no_ipv6,
        ipv6_scopes: vec![2, 3, 5],
        port: a.port,
        state_dir,
        floor_journal: None,
        // One light per process: nothing to share.
        signature_cache: None,
        unicast_port: a.unicast_port,
        persist_resources: light,
        site_prefixes: a.site_prefixes.clone(),
        group_hub: None,
    };
    let handle = start(device, &cfg)
        .await
        .with_context(|| format!("cannot start the device on {}", a.ifaces.join(",")))?;
    // Subscribed before `ready` is printed: whoever starts sending on
    // `ready` sees every event.
    let mut events = handle.events.subscribe();
    let ssm_creds = creds
        .creds
        .iter()
        .filter(|c| c.credtype == ssm_ocf::cred::CredType::SsmServer)
        .count();
    print_ready(&a, &handle, &id.name, di, ssm_creds);
    let current = || handle.security().map(|s| s.device_uuid()).unwrap_or(di);
    if let Some(pin) = handle.pin() {
        print_event(&DeviceEvent::Pin(pin), a.json, current());
    }
    // Drops are printed coalesced (one line per reason and 10 ms, with a
    // count): a flood must not turn into one write per datagram.
    // 10 ms keeps the counts timely for whoever watches them.
    let mut drops: std::collections::BTreeMap<String, u64> = Default::default();
    let mut flush = tokio::time::interval(std::time::Duration::from_millis(10));
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown() => break,
            _ = flush.tick(), if !drops.is_empty() => print_drops(&mut drops, a.json),
            ev = events.recv() => match ev {
                Ok(DeviceEvent::Dropped(r)) => *drops.entry(format!("{r:?}")).or_default() += 1,
                Ok(ev) => {
                    print_drops(&mut drops, a.json);
                    print_event(&ev, a.json, current())
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "event output lagged");
                    if a.json {
                        // Counters stay exact: see the `stopped` event.
                        println!("{}", serde_json::json!({"event": "lagged", "missed": n}));
                    }
                }
                Err(_) => break,
            },
        }
    }
    print_drops(&mut drops, a.json);
    if a.json {
        let drops: serde_json::Map<String, serde_json::Value> = handle
            .drops()
            .0
            .iter()
            .map(|(r, n)| (format!("{r:?}"), (*n).into()))
            .collect();
        println!(
            "{}",
            serde_json::json!({"event": "stopped", "drops": drops, "ssm_applied": handle.ssm_applied()})
        );
    }
    Ok(true)
}

/// The first line(s) `ssm device` prints: `ready`, with the current UUID
/// and, for a light, its state after the power-on setting.
fn print_ready(
    a: &RunArgs,
    handle: &ssm_runtime::device::DeviceHandle,
    name: &str,
    di: ssm_ocf::Uuid,
    ssm_creds: usize,
) {
    let light = a.role == "light";
    if a.json {
        let state = light.then(|| handle.representation(&a.href)).flatten();
        println!(
            "{}",
            serde_json::json!({"event": "ready", "name": name, "uuid": di, "di": di, "role": a.role, "endpoints": handle.endpoints, "unicast_port": handle.unicast.port(), "ssm_server_creds": ssm_creds, "state": state})
        );
    } else {
        println!("{} '{}' ({di}) ready", a.role, name);
        println!("  unicast: {}", handle.endpoints.join(", "));
        if light {
            let on = handle
                .representation(&a.href)
                .and_then(|v| v.get("value").and_then(|v| v.as_bool()));
            println!(
                "  SSM: {} on {} ({} SSM server credential(s)); {} (power-on: {})",
                a.href,
                a.ifaces.join(","),
                ssm_creds,
                if on == Some(true) { "on" } else { "off" },
                a.power_on
            );
            if ssm_creds == 0 {
                println!("  warning: no SSM server credential (credtype 256) in creds.json: run `ssm creds generate`, or onboard it with `ssm obt`");
            }
        }
    }
}

pub(crate) async fn shutdown() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(t) => t,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
}

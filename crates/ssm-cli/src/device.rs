//! `ssm device`: run one light.
use crate::state::{load_identity, load_or_provision_security};
use anyhow::{Context, Result};
use ssm_ocf::device::{Device, DeviceInfo};
use ssm_ocf::switch::{BinarySwitch, HREF};
use ssm_runtime::device::{start, DeviceConfig, DeviceEvent};
use std::path::PathBuf;

/// Options of `ssm device`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// State directory (device.json, creds.json, persisted counters).
    #[arg(long)]
    state_dir: PathBuf,
    /// Device name (stored on first start).
    #[arg(long)]
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
    /// href of the switch.
    #[arg(long, default_value = HREF)]
    href: String,
    /// `light` (hosts the switch resource) or `switch` (a wall switch: an
    /// OCF device that only sends; onboard it, then use `ssm client`).
    #[arg(long, default_value = "light", value_parser = ["light", "switch"])]
    role: String,
    /// JSON lines on stdout.
    #[arg(long)]
    json: bool,
}

pub async fn run(a: Args) -> Result<bool> {
    let id = load_identity(&a.state_dir, a.name.as_deref().unwrap_or("light"))?;
    let security = load_or_provision_security(&a.state_dir, &id, &[a.href.as_str()])?;
    let creds = security.cred.clone();
    let mut info = DeviceInfo::light(&id.name, id.deviceuuid);
    if a.role == "switch" {
        // /oic/d says what it is: the OBT takes the role from there.
        info.device_type = "oic.d.switch".into();
    }
    let mut device = Device::new(info);
    if a.role == "light" {
        device.add_resource(&a.href, Box::new(BinarySwitch::default()), true);
    }
    device.set_security(security);
    let cfg = DeviceConfig {
        interfaces: a.ifaces.clone(),
        ipv4: !a.no_ipv4,
        ipv6: !a.no_ipv6,
        ipv6_scopes: vec![2, 3, 5],
        port: a.port,
        state_dir: a.state_dir.clone(),
        floor_journal: None,
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
    if a.json {
        println!(
            "{}",
            serde_json::json!({"event": "ready", "name": id.name, "di": id.deviceuuid, "endpoints": handle.endpoints, "unicast_port": handle.unicast.port(), "ssm_server_creds": ssm_creds})
        );
    } else {
        println!("light '{}' ({}) ready", id.name, id.deviceuuid);
        println!("  unicast: {}", handle.endpoints.join(", "));
        println!(
            "  SSM: {} on {} ({} SSM server credential(s))",
            a.href,
            a.ifaces.join(","),
            ssm_creds
        );
        if ssm_creds == 0 {
            println!("  warning: no SSM server credential (credtype 256) in creds.json: run `ssm creds generate`");
        }
    }
    if let Some(pin) = handle.pin() {
        print_event(&DeviceEvent::Pin(pin), a.json);
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
                    print_event(&ev, a.json)
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

/// Prints and clears the drop counts gathered since the last call.
fn print_drops(drops: &mut std::collections::BTreeMap<String, u64>, json: bool) {
    for (reason, count) in std::mem::take(drops) {
        if json {
            println!(
                "{}",
                serde_json::json!({"event": "dropped", "reason": reason, "count": count})
            );
        } else {
            tracing::info!(%reason, count, "multicast datagrams dropped");
        }
    }
}

fn print_event(ev: &DeviceEvent, json: bool) {
    match (ev, json) {
        (DeviceEvent::Pin(pin), true) => {
            println!("{}", serde_json::json!({"event": "pin", "pin": pin}))
        }
        (DeviceEvent::Pin(pin), false) => {
            println!("unowned: give the onboarding tool this PIN: {pin}")
        }
        (DeviceEvent::Owned { device_uuid, owner }, true) => {
            println!(
                "{}",
                serde_json::json!({"event": "owned", "di": device_uuid, "owner": owner})
            )
        }
        (DeviceEvent::Owned { device_uuid, owner }, false) => {
            println!("onboarded: now {device_uuid}, owned by {owner}")
        }
        (DeviceEvent::Provisioned { creds }, true) => {
            println!(
                "{}",
                serde_json::json!({"event": "provisioned", "creds": creds})
            )
        }
        (DeviceEvent::Provisioned { creds }, false) => {
            println!("provisioned: holds {creds} credential(s)")
        }
        (
            DeviceEvent::SsmApplied {
                href,
                state,
                from,
                piv,
                at,
            },
            true,
        ) => {
            println!(
                "{}",
                serde_json::json!({"event": "ssm_applied", "href": href, "state": state, "from": from, "piv": piv, "at_mono_ns": mono_ns(*at)})
            )
        }
        (
            DeviceEvent::SsmApplied {
                href,
                state,
                from,
                piv,
                ..
            },
            false,
        ) => {
            println!(
                "SSM update {href} -> {state} (from {}, seq {piv})",
                from.map(|u| u.to_string()).unwrap_or_else(|| "?".into())
            )
        }
        (DeviceEvent::UnicastApplied { href, state }, true) => println!(
            "{}",
            serde_json::json!({"event": "unicast_applied", "href": href, "state": state})
        ),
        (DeviceEvent::UnicastApplied { href, state }, false) => {
            println!("unicast update {href} -> {state}")
        }
        (DeviceEvent::Dropped(r), _) => {
            let mut one = std::collections::BTreeMap::from([(format!("{r:?}"), 1)]);
            print_drops(&mut one, json)
        }
        (DeviceEvent::Refused(why), true) => {
            println!(
                "{}",
                serde_json::json!({"event": "refused", "why": why.to_string()})
            )
        }
        (DeviceEvent::Refused(why), false) => println!("verified SSM update refused: {why}"),
    }
}

/// `at` as CLOCK_MONOTONIC nanoseconds, the clock every process on the
/// host shares (benchmarks compare apply times across light processes).
fn mono_ns(at: std::time::Instant) -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    let now_ns = now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64;
    now_ns.saturating_sub(at.elapsed().as_nanos() as u64)
}

//! `ssm demo`: N lights and one wall switch as real OCF devices on
//! loopback, in this process. The switch sends each command as ONE
//! OSCORE-protected multicast UPDATE (224.0.1.187 on `lo` only); every
//! light verifies and applies it; the state is confirmed by unicast
//! RETRIEVE and by an OBSERVE notification; then a replayed and a forged
//! datagram are shown rejected by every light.
//!
//! Credentials come from the same generator as `ssm creds generate`;
//! onboarding by an OBT takes its place when the OBT lands.
use anyhow::{bail, Context, Result};
use ciborium::Value;
use ssm_coap::{Code, MessageType, OptionNumber, Token};
use ssm_ocf::cred::CredType;
use ssm_ocf::device::{Device, DeviceInfo};
use ssm_ocf::provision::generate_group;
use ssm_ocf::ssm::DropReason;
use ssm_ocf::switch::{BinarySwitch, HREF};
use ssm_ocf::{cbor, message, Uuid};
use ssm_runtime::client::{
    next_notification, request, MulticastScope, MulticastTargets, SsmSender,
};
use ssm_runtime::device::{start, DeviceConfig, DeviceEvent, DeviceHandle};
use ssm_runtime::multicast::COAP_PORT;
use ssm_runtime::random_bytes;
use ssm_runtime::store::FileSequenceStore;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::sync::broadcast::Receiver;

/// Options of `ssm demo`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Number of lights.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1000))]
    lights: u32,
    /// ON/OFF rounds.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    rounds: u32,
    /// UDP port of the multicast group (OCF uses 5683).
    #[arg(long, default_value_t = COAP_PORT)]
    port: u16,
    /// Keep the devices' state here (default: a temporary directory,
    /// removed at the end): `light-N/svr.json` and `switch-0/creds.json`
    /// hold the generated credentials.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

fn switch_value(v: bool) -> Value {
    cbor::map([("value", Value::Bool(v))])
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

async fn read_back(light: &DeviceHandle) -> Result<Option<bool>> {
    let peer: SocketAddr = ([127, 0, 0, 1], light.unicast.port()).into();
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    let r = request(
        &sock,
        peer,
        message::request(MessageType::Confirmable, Code::GET, HREF, None),
        Duration::from_millis(300),
        4,
    )
    .await?;
    Ok(message::payload(&r)
        .ok()
        .and_then(|v| cbor::get(&v, "value").and_then(Value::as_bool)))
}

struct TempDir(PathBuf, bool);
impl Drop for TempDir {
    fn drop(&mut self) {
        if self.1 {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

pub async fn run(args: Args) -> Result<bool> {
    let dir = match &args.data_dir {
        Some(d) => TempDir(d.clone(), false),
        None => TempDir(
            std::env::temp_dir().join(format!("ssm-demo-{}-{}", std::process::id(), hex_id())),
            true,
        ),
    };
    let mut rng = |b: &mut [u8]| b.copy_from_slice(&random_bytes::<64>()[..b.len()]);
    let (lights, switches) = generate_group(args.lights as usize, 1, Uuid::new_v4(), &mut rng);

    let mut handles = Vec::new();
    for (i, l) in lights.iter().enumerate() {
        let mut d = Device::new(DeviceInfo::light(&format!("light {i}"), l.uuid));
        d.add_resource(HREF, Box::new(BinarySwitch::default()), true);
        let aces = ssm_ocf::provision::default_aces(&l.creds, &[HREF], true);
        d.set_security(ssm_ocf::provision::provisioned_state(
            l.uuid,
            Uuid::new_v4(),
            l.creds.clone(),
            aces,
        ));
        let mut cfg = DeviceConfig::loopback(dir.0.join(format!("light-{i}")));
        if args.data_dir.is_some() {
            // A kept data dir is a set of real state dirs: `svr.json` per
            // light (what `ssm device --state-dir` would load).
            std::fs::create_dir_all(&cfg.state_dir)?;
            if let Some(s) = d.security() {
                ssm_runtime::device::save_security(&cfg.state_dir, s)?;
            }
        }
        cfg.port = args.port;
        handles.push(
            start(d, &cfg)
                .await
                .with_context(|| format!("cannot start light {i} on lo port {}", args.port))?,
        );
    }
    let mut events: Vec<_> = handles.iter().map(|h| h.events.subscribe()).collect();
    if args.data_dir.is_some() {
        let sd = dir.0.join("switch-0");
        std::fs::create_dir_all(&sd)?;
        ssm_runtime::store::atomic_write(
            &sd.join("creds.json"),
            switches[0].creds.to_json().as_bytes(),
        )?;
    }
    let creds = switches[0].creds.oscore_creds()?;
    let cred = creds
        .iter()
        .find(|c| c.credtype == CredType::SsmClient)
        .context("generated switch has no SSM client credential")?;
    let mut switch = SsmSender::new(cred, FileSequenceStore::new(dir.0.join("switch.ssn")))?;
    let scope = MulticastScope {
        interfaces: vec!["lo".into()],
        ipv4: true,
        ipv6_scopes: vec![],
        port: args.port,
        hops: 1,
    };
    let targets =
        MulticastTargets::open(&scope).context("cannot open the multicast sender on lo")?;

    // An observer on the first light, to show NOTIFY.
    let obs = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    let mut reg = message::request(MessageType::Confirmable, Code::GET, HREF, None);
    reg.add_option_uint(OptionNumber::OBSERVE, 0);
    let first_light: SocketAddr = ([127, 0, 0, 1], handles[0].unicast.port()).into();
    let registration = request(&obs, first_light, reg, Duration::from_millis(300), 4).await?;
    let obs_token: Token = registration.token;

    if !args.json {
        println!(
            "ssm demo: {} lights on lo (multicast 224.0.1.187:{}), one wall switch (Sender ID {})",
            args.lights,
            args.port,
            cred.sender_id
                .map(|i| i
                    .as_bytes()
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>())
                .unwrap_or_default()
        );
        println!(
            "{:<6} {:>4} {:>10} {:>10} {:>8}",
            "round", "cmd", "all (ms)", "skew (ms)", "ok"
        );
    }
    let mut all_ok = true;
    let mut latencies = Vec::new();
    let mut rounds_json = Vec::new();
    for round in 1..=args.rounds {
        for value in [true, false] {
            let sent_at = Instant::now();
            let sent = switch
                .send(&targets, HREF, &switch_value(value), true)
                .await?;
            let applied = collect(&mut events, Duration::from_secs(3), |e| match e {
                DeviceEvent::SsmApplied { at, .. } => Some(*at),
                _ => None,
            })
            .await;
            let mut lat: Vec<Duration> = applied
                .iter()
                .flatten()
                .map(|t| t.duration_since(sent_at))
                .collect();
            lat.sort();
            let mut states_ok = applied.iter().all(Option::is_some);
            for h in &handles {
                states_ok &= read_back(h).await? == Some(value);
            }
            let note = next_notification(
                &obs,
                &obs_token,
                tokio::time::Instant::now() + Duration::from_secs(2),
            )
            .await?;
            let note_ok = note
                .and_then(|n| message::payload(&n).ok())
                .and_then(|v| cbor::get(&v, "value").and_then(Value::as_bool))
                == Some(value);
            let ok = states_ok && note_ok && sent.len() == 1;
            all_ok &= ok;
            let (max, min) = (
                lat.last().copied().unwrap_or_default(),
                lat.first().copied().unwrap_or_default(),
            );
            if !args.json {
                println!(
                    "{:<6} {:>4} {:>10.3} {:>10.3} {:>8}",
                    round,
                    if value { "ON" } else { "OFF" },
                    max.as_secs_f64() * 1e3,
                    (max - min).as_secs_f64() * 1e3,
                    if ok { "yes" } else { "NO" }
                );
            }
            rounds_json.push(serde_json::json!({
                "round": round, "value": value, "datagrams": sent.len(), "applied": lat.len(),
                "all_applied_us": max.as_micros() as u64, "skew_us": (max - min).as_micros() as u64,
                "read_back_ok": states_ok, "notify_ok": note_ok,
            }));
            latencies.extend(lat);
        }
    }

    // Attacks: replay of a genuine datagram, and a forged one.
    let (genuine, _) = switch.protect(&ssm_ocf::ssm::update_request(
        HREF,
        &switch_value(true),
        1,
        Token::default(),
        true,
    ))?;
    let (sock, dests) = &targets.targets[0];
    sock.send_to(&genuine, dests[0]).await?;
    let first = collect(&mut events, Duration::from_secs(3), |e| {
        matches!(e, DeviceEvent::SsmApplied { .. }).then_some(())
    })
    .await;
    if first.iter().any(Option::is_none) {
        bail!("a light did not apply the genuine datagram before the attack");
    }
    let mut forged = genuine.clone();
    if let Some(b) = forged.last_mut() {
        *b ^= 0x01;
    }
    forged[2] ^= 0x55; // a different Message ID, as a forger would send
    let mut rejected = Vec::new();
    for (dgram, name) in [(&genuine, "replay"), (&forged, "forgery")] {
        sock.send_to(dgram, dests[0]).await?;
        let r = collect(&mut events, Duration::from_secs(3), |e| match e {
            DeviceEvent::Dropped(r) => Some(*r),
            DeviceEvent::SsmApplied { .. } => Some(DropReason::Malformed), // must not happen
            _ => None,
        })
        .await;
        let n = r
            .iter()
            .filter(|x| {
                matches!(
                    x,
                    Some(DropReason::Replay) | Some(DropReason::DecryptionFailed)
                )
            })
            .count();
        rejected.push((name, n));
    }
    let mut unchanged = true;
    for h in &handles {
        unchanged &= read_back(h).await? == Some(true);
    }
    let attacks_ok = rejected.iter().all(|(_, n)| *n == args.lights as usize) && unchanged;
    all_ok &= attacks_ok;
    latencies.sort();
    let p50 = latencies
        .get(latencies.len() / 2)
        .copied()
        .unwrap_or_default();
    let max = latencies.last().copied().unwrap_or_default();
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "lights": args.lights, "rounds": args.rounds, "commands": args.rounds * 2,
                "all_switched": rounds_json.iter().all(|r| r["read_back_ok"] == true),
                "notify_ok": rounds_json.iter().all(|r| r["notify_ok"] == true),
                "latency_us": {"p50": p50.as_micros() as u64, "max": max.as_micros() as u64},
                "replay_rejected_by": rejected[0].1, "forgery_rejected_by": rejected[1].1,
                "commands_detail": rounds_json, "ok": all_ok,
            })
        );
    } else {
        for (name, n) in &rejected {
            println!("{name}: rejected by {n}/{} lights", args.lights);
        }
        println!("states unchanged by the attacks: {unchanged}");
        println!(
            "summary: {} commands x {} lights, one datagram each, apply latency p50 {:.3} ms, max {:.3} ms: {}",
            args.rounds * 2,
            args.lights,
            p50.as_secs_f64() * 1e3,
            max.as_secs_f64() * 1e3,
            if all_ok { "OK" } else { "FAILED" }
        );
    }
    drop(handles);
    Ok(all_ok)
}

fn hex_id() -> String {
    random_bytes::<4>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

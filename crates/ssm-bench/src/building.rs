//! A building: Z zones × L lights (50 × 20 = 1,000), one switch and one
//! group key per zone, every light listening on the same group address
//! (224.0.1.187 on `lo`). A zone's command must be applied by exactly its
//! L lights; the others find no recipient context for the switch's kid
//! and drop the datagram before any AEAD work. Measured, in one run:
//!
//! * a baseline: one zone of L lights alone (same journal, same loop);
//! * the building with its lights as tasks of this process sharing one
//!   floor journal (`--mode tasks`), or spread over P `building-host`
//!   processes of this binary, a journal each (`--mode procs`);
//! * the sans-IO cost of the drop (unknown kid) against the receive of a
//!   valid datagram (unprotect, replay window) by the same light.
//!
//! The SSM contexts come straight from `ssm_ocf::provision` (no OBT).
use crate::common::*;
use anyhow::{bail, Context, Result};
use ssm_ocf::provision::Member;
use ssm_ocf::switch::HREF;
use ssm_ocf::Uuid;
use ssm_runtime::client::{MulticastScope, MulticastTargets, SsmSender};
use ssm_runtime::device::DeviceEvent;
use ssm_runtime::store::FileSequenceStore;
use std::time::{Duration, Instant};

mod host;
mod sansio;
pub use host::{host, HostArgs};

/// Options of `ssm-bench building`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Zones (one switch and one group key each).
    #[arg(long, default_value_t = 50)]
    pub zones: usize,
    /// Lights per zone.
    #[arg(long, default_value_t = 20)]
    pub per_zone: usize,
    /// Measured commands per zone (after one unmeasured warm-up command
    /// per zone).
    #[arg(long, default_value_t = 4)]
    pub rounds: usize,
    /// `tasks` (every light a task of this process, one floor journal) or
    /// `procs` (`--procs` processes, a journal each).
    #[arg(long, default_value = "tasks")]
    pub mode: String,
    /// Light processes for `--mode procs`.
    #[arg(long, default_value_t = 10)]
    pub procs: usize,
    /// The lights of a process share one socket per group
    /// (`DeviceConfig::group_hub`) instead of one each.
    #[arg(long)]
    pub hub: bool,
    /// Datagrams for the sans-IO drop-cost measurement.
    #[arg(long, default_value_t = 200_000)]
    pub count: usize,
    /// Multicast port (default: pid-based).
    #[arg(long)]
    pub port: Option<u16>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

/// One zone: its lights and its switch (credentials).
pub struct Zone {
    pub lights: Vec<Member>,
    pub switch: Member,
}

/// `zones` zones of `per_zone` lights, each with its own group secret and
/// its switch's Sender ID, distinct across the building.
pub fn zones(zones: usize, per_zone: usize) -> Result<Vec<Zone>> {
    let mut kids = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(zones);
    for z in 0..zones {
        let (lights, switch) = group(per_zone);
        let kid = ssm_cred(&switch.creds)?
            .sender_id
            .context("an SSM client credential without a Sender ID")?;
        if !kids.insert(kid) {
            bail!("zone {z}: a Sender ID collided with another zone's");
        }
        out.push(Zone { lights, switch });
    }
    Ok(out)
}

/// The figures of one building (or baseline) run.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Run {
    pub mode: String,
    pub zones: usize,
    pub per_zone: usize,
    /// Light processes (0: tasks of the measuring process).
    pub procs: usize,
    /// Commands measured (zones × rounds).
    pub commands: usize,
    /// Per command: send → the zone's last light applied (µs).
    pub all_applied_us: Vec<f64>,
    /// Per command: first → last light of the zone applied (µs).
    pub skew_us: Vec<f64>,
    /// Per command: how long the switch's send took (µs): on `lo` the
    /// kernel copies the datagram to every light's socket in that call.
    #[serde(default)]
    pub send_us: Vec<f64>,
    /// Zone lights that did not apply a command within the timeout.
    pub missing: usize,
    /// Applies by lights outside the command's zone (must be 0).
    pub wrong_applies: u64,
    /// Drops for an unknown kid, summed over the lights, and how many
    /// there must be (every command at every light outside its zone).
    pub unknown_kid_drops: u64,
    pub expected_unknown_kid_drops: u64,
    /// Drops that cost AEAD work (forged tag, bad plaintext): must be 0.
    pub aead_drops: u64,
    /// RSS of the light processes (or of this process) with the lights
    /// running, and before any light started (KiB).
    pub rss_kib: u64,
    pub base_rss_kib: u64,
}

impl Run {
    pub fn p(&self, v: &[f64], p: f64) -> f64 {
        percentile(&sorted(v), p)
    }
}

/// Everything `ssm-bench building` measures in one run.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Building {
    /// One zone of `per_zone` lights alone, lights as tasks, one journal.
    pub baseline: Run,
    pub building: Run,
    /// Sans-IO: ns per datagram dropped for an unknown kid, and per valid
    /// datagram received (unprotect + replay window) by the same light.
    pub drop_ns: f64,
    pub receive_ns: f64,
}

/// One switch per zone: its sender (a sequence file of its own).
fn senders(zs: &[Zone], dir: &std::path::Path) -> Result<Vec<SsmSender>> {
    zs.iter()
        .enumerate()
        .map(|(z, zone)| {
            let store = FileSequenceStore::new(dir.join(format!("switch-{z}.ssn")));
            Ok(SsmSender::new(&ssm_cred(&zone.switch.creds)?, store)?)
        })
        .collect()
}

fn lo_targets(port: u16) -> Result<MulticastTargets> {
    let scope = MulticastScope {
        interfaces: vec!["lo".into()],
        ipv4: true,
        ipv6_scopes: vec![],
        port,
        hops: 1,
    };
    MulticastTargets::open(&scope).context("cannot open the multicast sender on lo")
}

/// Where the apply events of a run come from.
trait Applies {
    /// The apply instants (CLOCK_MONOTONIC ns) of command `piv` from
    /// `switch` at the lights `members` (global indices), waiting at most
    /// `limit`; lights that did not apply it are missing from the result.
    async fn collect(
        &mut self,
        members: &[usize],
        switch: Uuid,
        piv: u64,
        limit: Duration,
    ) -> Vec<u64>;
}

/// The measured loop: round 0 warms every zone up, then `rounds` commands
/// per zone, zone after zone.
async fn commands(
    zs: &[Zone],
    senders: &mut [SsmSender],
    targets: &MulticastTargets,
    rounds: usize,
    events: &mut impl Applies,
    run: &mut Run,
) -> Result<()> {
    let per = run.per_zone;
    for round in 0..=rounds {
        for (z, zone) in zs.iter().enumerate() {
            let members: Vec<usize> = (z * per..(z + 1) * per).collect();
            let value = round % 2 == 0;
            let sent_at = mono_ns();
            let sent = senders[z]
                .send(targets, HREF, &switch_value(value), true)
                .await?;
            let send_us = mono_ns().saturating_sub(sent_at) as f64 / 1e3;
            let at = events
                .collect(
                    &members,
                    zone.switch.uuid,
                    sent[0].piv,
                    Duration::from_secs(5),
                )
                .await;
            if round == 0 {
                if at.len() < per {
                    bail!("warm-up: {}/{per} lights of zone {z} applied", at.len());
                }
                continue;
            }
            run.missing += per - at.len();
            run.send_us.push(send_us);
            let lat = sorted(
                &at.iter()
                    .map(|t| t.saturating_sub(sent_at) as f64 / 1e3)
                    .collect::<Vec<_>>(),
            );
            if let (Some(first), Some(last)) = (lat.first(), lat.last()) {
                run.all_applied_us.push(*last);
                run.skew_us.push(last - first);
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    run.commands = zs.len() * rounds;
    Ok(())
}

/// Lights as tasks of this process: their event streams.
struct TaskEvents {
    rxs: Vec<tokio::sync::broadcast::Receiver<DeviceEvent>>,
}

/// An `Instant` on CLOCK_MONOTONIC in ns (Linux: the clock `Instant` reads).
fn instant_ns(at: Instant) -> u64 {
    mono_ns().saturating_sub(at.elapsed().as_nanos() as u64)
}

impl Applies for TaskEvents {
    async fn collect(
        &mut self,
        members: &[usize],
        switch: Uuid,
        piv: u64,
        limit: Duration,
    ) -> Vec<u64> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut out = Vec::with_capacity(members.len());
        for &i in members {
            loop {
                match tokio::time::timeout_at(deadline, self.rxs[i].recv()).await {
                    Ok(Ok(DeviceEvent::SsmApplied {
                        piv: p, from, at, ..
                    })) if p == piv && from == Some(switch) => {
                        out.push(instant_ns(at));
                        break;
                    }
                    Ok(Ok(_)) | Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {}
                    _ => break,
                }
            }
        }
        // The other lights' events (their drops) are not needed: read them
        // so the channels hold nothing.
        for rx in &mut self.rxs {
            while !matches!(
                rx.try_recv(),
                Err(tokio::sync::broadcast::error::TryRecvError::Empty)
                    | Err(tokio::sync::broadcast::error::TryRecvError::Closed)
            ) {}
        }
        out
    }
}

/// The building (or a single zone) with every light a task of this
/// process, all sharing one floor journal.
pub async fn tasks(zs: &[Zone], rounds: usize, port: u16, mode: &str, hub: bool) -> Result<Run> {
    let dir = TempDir::new("building")?;
    let per = zs[0].lights.len();
    let (base, _) = rss_kib("self")?;
    let journal = ssm_runtime::journal::FloorJournal::open(dir.0.join("floors.journal"))?;
    let all: Vec<Member> = zs.iter().flat_map(|z| z.lights.iter().cloned()).collect();
    let hub = hub.then(ssm_runtime::device::GroupHub::new);
    let handles = start_lights(&all, &dir.0, port, Some(journal), hub).await?;
    drop(all);
    let mut events = TaskEvents {
        rxs: handles.iter().map(|h| h.events.subscribe()).collect(),
    };
    let mut senders = senders(zs, &dir.0)?;
    let targets = lo_targets(port)?;
    let mut run = Run {
        mode: mode.into(),
        zones: zs.len(),
        per_zone: per,
        base_rss_kib: base,
        ..Run::default()
    };
    commands(zs, &mut senders, &targets, rounds, &mut events, &mut run).await?;
    // Let the last drops land, then count from the lights' own counters
    // (exact even when an event stream lagged).
    tokio::time::sleep(Duration::from_millis(100)).await;
    let own = (rounds + 1) as u64;
    for h in &handles {
        run.wrong_applies += h.ssm_applied().saturating_sub(own);
        let d = h.drops();
        run.unknown_kid_drops +=
            d.0.get(&ssm_ocf::ssm::DropReason::UnknownKid)
                .copied()
                .unwrap_or(0);
        run.aead_drops += d.total() - d.cheap();
    }
    run.expected_unknown_kid_drops = ((zs.len() - 1) * per * zs.len()) as u64 * own;
    run.rss_kib = rss_kib("self")?.0;
    drop(handles);
    Ok(run)
}

pub async fn measure(a: &Args) -> Result<Building> {
    if a.zones < 2 || a.per_zone == 0 || a.rounds == 0 {
        bail!("need at least 2 zones, 1 light per zone and 1 round");
    }
    let port = a.port.unwrap_or_else(default_port);
    let zs = zones(a.zones, a.per_zone)?;
    let (drop_ns, receive_ns) = sansio::drop_cost(&zs, a.count)?;
    // The baseline: the first zone alone, as many commands as the building.
    let baseline = tasks(&zs[..1], a.rounds * a.zones, port, "baseline", false).await?;
    let hub = if a.hub { "-hub" } else { "" };
    let building = match a.mode.as_str() {
        "tasks" => tasks(&zs, a.rounds, port, &format!("tasks{hub}"), a.hub).await?,
        "procs" => host::procs(&zs, a.rounds, port, a.procs, a.hub).await?,
        m => bail!("unknown mode {m} (tasks or procs)"),
    };
    Ok(Building {
        baseline,
        building,
        drop_ns,
        receive_ns,
    })
}

pub async fn run(a: Args) -> Result<bool> {
    let b = measure(&a).await?;
    if a.json {
        println!("{}", serde_json::json!({ "building": b }));
    } else {
        print_building(&b);
    }
    Ok(ok(&b))
}

/// Every command applied by exactly its zone.
pub fn ok(b: &Building) -> bool {
    [&b.baseline, &b.building]
        .iter()
        .all(|r| r.missing == 0 && r.wrong_applies == 0 && r.aead_drops == 0)
        && b.building.unknown_kid_drops == b.building.expected_unknown_kid_drops
}

pub fn print_building(b: &Building) {
    let ms = |v: f64| v / 1e3;
    for r in [&b.baseline, &b.building] {
        println!(
            "building {} {}x{} ({} procs) {} cmds: all applied p50 {:.3} ms p99 {:.3} ms, skew p50 {:.3} ms p99 {:.3} ms, send p50 {:.3} ms, missing {}, wrong applies {}, unknown-kid drops {}/{}, AEAD drops {}, RSS {:.1} MiB",
            r.mode,
            r.zones,
            r.per_zone,
            r.procs,
            r.commands,
            ms(r.p(&r.all_applied_us, 50.0)),
            ms(r.p(&r.all_applied_us, 99.0)),
            ms(r.p(&r.skew_us, 50.0)),
            ms(r.p(&r.skew_us, 99.0)),
            ms(r.p(&r.send_us, 50.0)),
            r.missing,
            r.wrong_applies,
            r.unknown_kid_drops,
            r.expected_unknown_kid_drops,
            r.aead_drops,
            r.rss_kib as f64 / 1024.0
        );
    }
    println!(
        "building sans-IO: unknown-kid drop {:.0} ns, valid receive (unprotect + replay window) {:.0} ns ({:.1}x the drop)",
        b.drop_ns,
        b.receive_ns,
        b.receive_ns / b.drop_ns.max(1e-3)
    );
}

//! `ssm-bench report`: every scenario, repeated, into `results.json`, a
//! Markdown section and an SVG plot of latency against N.
use crate::common::*;
use crate::fanout::{self, Point};
use crate::footprint::Footprint;
use crate::throughput::{self, Throughput};
use anyhow::{bail, Context, Result};
use std::fmt::Write as _;
use std::path::PathBuf;

mod building;
mod markdown;
mod plot;
use markdown::markdown;
use plot::plot;

/// Options of `ssm-bench report`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Output directory (results.json, report.md, fanout.svg).
    #[arg(long, default_value = "target/bench-report")]
    pub out: PathBuf,
    /// Repeated runs of every measurement (min/median/max over them).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Commands per N per run.
    #[arg(long, default_value_t = 30)]
    pub rounds: usize,
    /// Lights as tasks in one process.
    #[arg(long, value_delimiter = ',', default_value = "1,10,100,500")]
    pub n: Vec<usize>,
    /// Lights as separate `ssm device` processes (0: none).
    #[arg(long, value_delimiter = ',', default_value = "1,10,50")]
    pub procs_n: Vec<usize>,
    /// The floor reservation measured beside the product's default (0).
    #[arg(long, default_value_t = 64)]
    pub reserve: u64,
    /// Lights in one process for the footprint.
    #[arg(long, default_value_t = 1000)]
    pub footprint_lights: usize,
    /// Seconds per socket throughput measurement.
    #[arg(long, default_value_t = 2.0)]
    pub seconds: f64,
    /// Datagrams for the sans-IO throughput measurement.
    #[arg(long, default_value_t = 200_000)]
    pub count: usize,
    /// The `ssm` binary (default: next to this one).
    #[arg(long)]
    pub ssm_bin: Option<PathBuf>,
    /// The command line to print as "the command" (the script passes its
    /// own).
    #[arg(long, default_value = "bash scripts/bench-report.sh")]
    pub command: String,
    /// Markdown fragments to append (criterion ratios, onboarding, sizes).
    #[arg(long)]
    pub include: Vec<PathBuf>,
    /// Multicast port (default: pid-based).
    #[arg(long)]
    pub port: Option<u16>,
    /// Building: zones (0: no building run).
    #[arg(long, default_value_t = 50)]
    pub building_zones: usize,
    /// Building: lights per zone.
    #[arg(long, default_value_t = 20)]
    pub building_per_zone: usize,
    /// Building: measured commands per zone.
    #[arg(long, default_value_t = 4)]
    pub building_rounds: usize,
    /// Building over this many light processes, a `GroupHub` each (0:
    /// lights as tasks only).
    #[arg(long, default_value_t = 10)]
    pub building_procs: usize,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Results {
    machine: Machine,
    /// Per run, every point.
    fanout: Vec<Vec<Point>>,
    throughput: Vec<Throughput>,
    footprint: Vec<Footprint>,
    /// Per run: the building with its lights as tasks (and its baseline).
    #[serde(default)]
    building: Vec<crate::building::Building>,
    /// Per run: the building, lights as tasks sharing one socket per group.
    #[serde(default)]
    building_hub: Vec<crate::building::Building>,
    /// Per run: the building over light processes (one group socket each).
    #[serde(default)]
    building_procs: Vec<crate::building::Building>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Machine {
    cpu: String,
    cores: usize,
    mem_gib: f64,
    rustc: String,
    date: String,
    load_before: String,
    load_after: String,
    commit: String,
}

fn cmd_out(cmd: &str, args: &[&str]) -> String {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "?".into())
}

fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "?".into());
    let cores = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let mem_kib: f64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    Machine {
        cpu,
        cores,
        mem_gib: mem_kib / 1024.0 / 1024.0,
        rustc: cmd_out("rustc", &["-V"]),
        date: cmd_out("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        load_before: loadavg(),
        load_after: String::new(),
        commit: cmd_out("git", &["rev-parse", "--short", "HEAD"]),
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// min / median / max of `f` over the runs, formatted with `unit`.
fn mmm(v: &[f64], scale: f64, prec: usize) -> String {
    let (a, b, c) = min_med_max(v);
    format!(
        "{:.p$} ({:.p$}–{:.p$})",
        b / scale,
        a / scale,
        c / scale,
        p = prec
    )
}

fn med(v: &[f64]) -> f64 {
    min_med_max(v).1
}

/// Figures of one (mode, N) across runs.
struct Agg {
    all_p50: Vec<f64>,
    all_p99: Vec<f64>,
    skew_p50: Vec<f64>,
    skew_p99: Vec<f64>,
    unicast_p50: Vec<f64>,
    ratio: Vec<f64>,
    missing: usize,
    commands: usize,
    rss: Vec<f64>,
    anon: Vec<f64>,
    pss: Vec<f64>,
}

fn agg(r: &Results, mode: &str, n: usize) -> Option<Agg> {
    let pts: Vec<&Point> = r
        .fanout
        .iter()
        .flatten()
        .filter(|p| p.mode == mode && p.n == n)
        .collect();
    if pts.is_empty() {
        return None;
    }
    let f = |g: &dyn Fn(&Point) -> f64| pts.iter().map(|p| g(p)).collect::<Vec<f64>>();
    Some(Agg {
        all_p50: f(&|p| p.p(&p.all_applied_us, 50.0)),
        all_p99: f(&|p| p.p(&p.all_applied_us, 99.0)),
        skew_p50: f(&|p| p.p(&p.skew_us, 50.0)),
        skew_p99: f(&|p| p.p(&p.skew_us, 99.0)),
        unicast_p50: pts
            .iter()
            .filter(|p| !p.unicast_us.is_empty())
            .map(|p| p.p(&p.unicast_us, 50.0))
            .collect(),
        ratio: pts
            .iter()
            .filter(|p| !p.unicast_us.is_empty())
            .map(|p| p.p(&p.unicast_us, 50.0) / p.p(&p.all_applied_us, 50.0).max(1e-3))
            .collect(),
        missing: pts.iter().map(|p| p.missing).sum(),
        commands: pts.iter().map(|p| p.commands).sum(),
        rss: pts
            .iter()
            .flat_map(|p| p.rss_kib.iter().map(|k| *k as f64))
            .collect(),
        anon: pts
            .iter()
            .flat_map(|p| p.rss_anon_kib.iter().map(|k| *k as f64))
            .collect(),
        pss: pts
            .iter()
            .flat_map(|p| p.pss_kib.iter().map(|k| *k as f64))
            .collect(),
    })
}

pub async fn run(a: Args) -> Result<bool> {
    if a.runs == 0 || a.rounds == 0 {
        bail!("--runs and --rounds must be at least 1");
    }
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create {}", a.out.display()))?;
    let port = a.port.unwrap_or_else(default_port);
    let bin = a.ssm_bin.clone().unwrap_or_else(fanout::default_ssm_bin);
    let mut res = Results {
        machine: machine(),
        fanout: Vec::new(),
        throughput: Vec::new(),
        footprint: Vec::new(),
        building: Vec::new(),
        building_hub: Vec::new(),
        building_procs: Vec::new(),
    };
    for run in 1..=a.runs {
        let mut pts = Vec::new();
        for &n in &a.n {
            eprintln!("run {run}/{}: fan-out N={n} (tasks)", a.runs);
            let p = fanout::tasks(n, a.rounds, port, true, 0, false).await?;
            fanout::print_point(&p);
            pts.push(p);
            eprintln!(
                "run {run}/{}: fan-out N={n} (tasks, shared floor journal)",
                a.runs
            );
            let p = fanout::tasks(n, a.rounds, port, false, 0, true).await?;
            fanout::print_point(&p);
            pts.push(p);
            if a.reserve > 0 {
                let p = fanout::tasks(n, a.rounds, port, false, a.reserve, false).await?;
                fanout::print_point(&p);
                pts.push(p);
            }
        }
        for &n in a.procs_n.iter().filter(|n| **n > 0) {
            eprintln!("run {run}/{}: fan-out N={n} (processes)", a.runs);
            let p = fanout::procs(n, a.rounds, port, &bin).await?;
            fanout::print_point(&p);
            pts.push(p);
        }
        res.fanout.push(pts);
        eprintln!("run {run}/{}: throughput", a.runs);
        let t = throughput::measure(&throughput::Args {
            seconds: a.seconds,
            count: a.count,
            port: Some(port),
            json: true,
        })
        .await?;
        throughput::print_throughput(&t);
        res.throughput.push(t);
        eprintln!(
            "run {run}/{}: footprint of {} lights",
            a.runs, a.footprint_lights
        );
        let exe = std::env::current_exe()?;
        let o = tokio::process::Command::new(exe)
            .args(["footprint", "--json", "--lights"])
            .arg(a.footprint_lights.to_string())
            .arg("--port")
            .arg(port.to_string())
            .output()
            .await?;
        if !o.status.success() {
            bail!("footprint: {}", String::from_utf8_lossy(&o.stderr));
        }
        let v: serde_json::Value = serde_json::from_slice(&o.stdout)?;
        res.footprint
            .push(serde_json::from_value(v["footprint"].clone())?);
        building_runs(&a, port, run, &mut res).await?;
    }
    res.machine.load_after = loadavg();
    std::fs::write(
        a.out.join("results.json"),
        serde_json::to_string_pretty(&res)?,
    )?;
    plot(&res, &a, &a.out.join("fanout.svg"))?;
    let md = markdown(&res, &a)?;
    std::fs::write(a.out.join("report.md"), &md)?;
    println!("{md}");
    eprintln!(
        "wrote {}/results.json, report.md, fanout.svg",
        a.out.display()
    );
    let ok = res.fanout.iter().flatten().all(|p| p.missing == 0)
        && res
            .building
            .iter()
            .chain(&res.building_hub)
            .chain(&res.building_procs)
            .all(crate::building::ok);
    Ok(ok)
}

/// The building, lights as tasks and (with `--building-procs`) over
/// processes, into `res`.
async fn building_runs(a: &Args, port: u16, run: usize, res: &mut Results) -> Result<()> {
    if a.building_zones == 0 {
        return Ok(());
    }
    let mut b = crate::building::Args {
        zones: a.building_zones,
        per_zone: a.building_per_zone,
        rounds: a.building_rounds,
        mode: "tasks".into(),
        procs: a.building_procs,
        hub: false,
        count: a.count,
        port: Some(port),
        json: true,
    };
    eprintln!(
        "run {run}/{}: building {} x {} (tasks)",
        a.runs, b.zones, b.per_zone
    );
    let m = crate::building::measure(&b).await?;
    crate::building::print_building(&m);
    res.building.push(m);
    b.hub = true;
    eprintln!(
        "run {run}/{}: building {} x {} (tasks, one socket per group)",
        a.runs, b.zones, b.per_zone
    );
    let m = crate::building::measure(&b).await?;
    crate::building::print_building(&m);
    res.building_hub.push(m);
    if a.building_procs > 0 {
        b.mode = "procs".into();
        eprintln!(
            "run {run}/{}: building {} x {} ({} processes)",
            a.runs, b.zones, b.per_zone, b.procs
        );
        let m = crate::building::measure(&b).await?;
        crate::building::print_building(&m);
        res.building_procs.push(m);
    }
    Ok(())
}

fn goal(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "**missed**"
    }
}

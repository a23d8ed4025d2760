//! `ssm-bench report`: every scenario, repeated, into `results.json`, a
//! Markdown section and an SVG plot of latency against N.
use crate::common::*;
use crate::fanout::{self, Point};
use crate::footprint::Footprint;
use crate::throughput::{self, Throughput};
use anyhow::{bail, Context, Result};
use std::fmt::Write as _;
use std::path::PathBuf;

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
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Results {
    machine: Machine,
    /// Per run, every point.
    fanout: Vec<Vec<Point>>,
    throughput: Vec<Throughput>,
    footprint: Vec<Footprint>,
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
    let ok = res.fanout.iter().flatten().all(|p| p.missing == 0);
    Ok(ok)
}

fn goal(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "**missed**"
    }
}

fn markdown(r: &Results, a: &Args) -> Result<String> {
    let m = &r.machine;
    let mut s = String::new();
    let ms = 1e3;
    writeln!(s, "**Command:** `{}` (writes this section and `fanout.svg`; raw figures in `target/bench-report/results.json`).\n", a.command)?;
    writeln!(
        s,
        "**Machine:** {} × {}, {:.0} GiB, {}, release build; {}; commit {}. Load average (1/5/15 min) {} before, {} after: this machine is shared, so the figures are noisy; each is the median over {} runs with (min–max).\n",
        m.cores, m.cpu, m.mem_gib, m.rustc, m.date, m.commit, m.load_before, m.load_after, a.runs
    )?;
    writeln!(s, "All traffic is IPv4 multicast 224.0.1.187 on `lo` (TTL 1) and unicast on 127.0.0.1; no root needed. Every SSM command is ONE datagram (one configured scope). \"All applied\" is the time from just before the switch protects and sends the command until the last light applied it (its `SsmApplied` event instant; for light processes the `at_mono_ns` they print, CLOCK_MONOTONIC); skew is last − first light. {} commands per N per run after one unmeasured warm-up command. The unicast baseline sends one confirmable pair-wise OSCORE UPDATE to each light in turn, each answered 2.04 before the next (after an unmeasured warm-up round that does the Echo exchange).\n", a.rounds)?;

    // Goals.
    let n100 = agg(r, "tasks", 100);
    let n100r = agg(r, &format!("tasks-reserve{}", a.reserve), 100);
    let tp: Vec<&Throughput> = r.throughput.iter().collect();
    let tpv = |f: &dyn Fn(&Throughput) -> f64| tp.iter().map(|t| f(t)).collect::<Vec<f64>>();
    let one_proc = agg(r, "procs", 1);
    writeln!(s, "| goal | measured: median (min–max) | |")?;
    writeln!(s, "| --- | --- | --- |")?;
    if let Some(g) = &n100 {
        writeln!(s, "| N=100 all applied p99 ≤ 5 ms (product: exact floor fsynced per update) | {} ms | {} |", mmm(&g.all_p99, ms, 2), goal(med(&g.all_p99) <= 5000.0))?;
        writeln!(
            s,
            "| N=100 skew p99 ≤ 2 ms (product) | {} ms | {} |",
            mmm(&g.skew_p99, ms, 2),
            goal(med(&g.skew_p99) <= 2000.0)
        )?;
        writeln!(s, "| N=100 ≥ 10× faster than sequential unicast (product; unicast p50 / SSM p50, same run) | {}× | {} |", mmm(&g.ratio, 1.0, 2), goal(med(&g.ratio) >= 10.0))?;
    }
    if let (Some(g), Some(u)) = (agg(r, "tasks-journal", 100), &n100) {
        let ratio: Vec<f64> = g
            .all_p50
            .iter()
            .zip(&u.unicast_p50)
            .map(|(s, u)| u / s.max(1e-3))
            .collect();
        writeln!(s, "| N=100, the lights share one floor journal (every floor durable before apply; one fsync per command): all applied p99 ≤ 5 ms | {} ms | {} |", mmm(&g.all_p99, ms, 2), goal(med(&g.all_p99) <= 5000.0))?;
        writeln!(
            s,
            "| … skew p99 ≤ 2 ms | {} ms | {} |",
            mmm(&g.skew_p99, ms, 2),
            goal(med(&g.skew_p99) <= 2000.0)
        )?;
        writeln!(
            s,
            "| … ≥ 10× faster than sequential unicast | {}× | {} |",
            mmm(&ratio, 1.0, 2),
            goal(med(&ratio) >= 10.0)
        )?;
    }
    if let (Some(g), Some(u)) = (&n100r, &n100) {
        let ratio: Vec<f64> = g
            .all_p50
            .iter()
            .zip(&u.unicast_p50)
            .map(|(s, u)| u / s.max(1e-3))
            .collect();
        writeln!(
            s,
            "| N=100, commands that write no floor (reserved {} ahead; 1 command in {} still writes and costs as above): all applied p99 ≤ 5 ms | {} ms | {} |",
            a.reserve,
            a.reserve + 1,
            mmm(&g.all_p99, ms, 2),
            goal(med(&g.all_p99) <= 5000.0)
        )?;
        writeln!(
            s,
            "| … skew p99 ≤ 2 ms | {} ms | {} |",
            mmm(&g.skew_p99, ms, 2),
            goal(med(&g.skew_p99) <= 2000.0)
        )?;
        writeln!(
            s,
            "| … ≥ 10× faster than sequential unicast | {}× | {} |",
            mmm(&ratio, 1.0, 2),
            goal(med(&ratio) >= 10.0)
        )?;
    }
    if !tp.is_empty() {
        let v = tpv(&|t| t.sansio_valid);
        writeln!(s, "| valid SSM datagrams/s on one core ≥ 200 k/s: sans-IO receive + apply | {} k/s | {} |", mmm(&v, 1e3, 0), goal(med(&v) >= 200e3))?;
        let v = tpv(&|t| t.socket_valid_applied);
        writeln!(
            s,
            "| … socket path as the product (floor fsynced per update) | {} k/s | {} |",
            mmm(&v, 1e3, 2),
            goal(med(&v) >= 200e3)
        )?;
        let v = tpv(&|t| t.socket_valid_applied_no_fsync);
        writeln!(
            s,
            "| … socket path, floor written once (measurement only) | {} k/s | {} |",
            mmm(&v, 1e3, 1),
            goal(med(&v) >= 200e3)
        )?;
        let v = tpv(&|t| t.sansio_garbage_unknown_kid);
        writeln!(
            s,
            "| garbage dropped/s ≥ 1 M/s: sans-IO (unknown kid) | {} M/s | {} |",
            mmm(&v, 1e6, 1),
            goal(med(&v) >= 1e6)
        )?;
        let v = tpv(&|t| t.socket_garbage_dropped);
        writeln!(
            s,
            "| … socket path (unknown kid) | {} k/s | {} |",
            mmm(&v, 1e3, 0),
            goal(med(&v) >= 1e6)
        )?;
    }
    if let Some(g) = &one_proc {
        writeln!(
            s,
            "| RSS of one light process ≤ 4 MB (`ssm device`, after {} commands) | {} MiB | {} |",
            g.commands / a.runs.max(1),
            mmm(&g.rss, 1024.0, 1),
            goal(med(&g.rss) <= 4.0 * 1024.0)
        )?;
    }
    if !r.footprint.is_empty() {
        let v: Vec<f64> = r.footprint.iter().map(|f| f.rss_kib as f64).collect();
        writeln!(
            s,
            "| RSS of {} lights in one process ≤ 300 MB | {} MiB | {} |",
            a.footprint_lights,
            mmm(&v, 1024.0, 1),
            goal(med(&v) <= 300.0 * 1024.0)
        )?;
    }

    // Fan-out table.
    writeln!(
        s,
        "\n### Fan-out: one SSM command to N lights vs sequential unicast\n"
    )?;
    writeln!(s, "Milliseconds, median over runs of each run's percentile over its {} commands (min–max over runs).\n", a.rounds)?;
    writeln!(s, "| lights | N | all applied p50 | all applied p99 | skew p50 | skew p99 | sequential unicast (p50) | unicast / SSM p50 | not applied |")?;
    writeln!(s, "| --- | --- | --- | --- | --- | --- | --- | --- | --- |")?;
    let mut modes = vec![
        ("tasks".to_string(), "tasks, product".to_string()),
        (
            "tasks-journal".to_string(),
            "tasks, one floor journal (group commit)".to_string(),
        ),
    ];
    if a.reserve > 0 {
        modes.push((
            format!("tasks-reserve{}", a.reserve),
            format!(
                "tasks, floor reserved {} ahead (commands that write no floor)",
                a.reserve
            ),
        ));
    }
    modes.push(("procs".into(), "`ssm device` processes, product".into()));
    for (mode, label) in &modes {
        let ns: Vec<usize> = if mode == "procs" {
            a.procs_n.clone()
        } else {
            a.n.clone()
        };
        for n in ns {
            let Some(g) = agg(r, mode, n) else { continue };
            let (u, ratio) = if g.unicast_p50.is_empty() {
                ("".into(), "".into())
            } else {
                (
                    mmm(&g.unicast_p50, ms, 3),
                    format!("{}×", mmm(&g.ratio, 1.0, 2)),
                )
            };
            writeln!(
                s,
                "| {label} | {n} | {} | {} | {} | {} | {u} | {ratio} | {}/{} |",
                mmm(&g.all_p50, ms, 3),
                mmm(&g.all_p99, ms, 3),
                mmm(&g.skew_p50, ms, 3),
                mmm(&g.skew_p99, ms, 3),
                g.missing,
                g.commands * n
            )?;
        }
    }

    // Model.
    writeln!(
        s,
        "\n### Model: datagrams on the wire and projected time on a building network\n"
    )?;
    writeln!(s, "Loopback has no network delay (and this kernel has no `netem`), so this projects: SSM ≈ one one-way trip (RTT/2) + the measured local all-applied p50 (product, lights as tasks); sequential unicast ≈ N × (RTT + the measured local cost per confirmed request, unicast p50 / N). Datagrams: SSM sends one per configured scope (here 1: IPv4; a light joined to 224.0.1.187 and ff02/ff03/ff05::158 is reached by up to 4, one per scope, and the switch sends only to the scopes it is configured for); unicast sends 2N (request + response; an Echo exchange after a light restarts adds 2 more).\n")?;
    writeln!(s, "| N | SSM datagrams | unicast datagrams | SSM @ RTT 5 ms | unicast @ RTT 5 ms | SSM @ RTT 20 ms | unicast @ RTT 20 ms | ratio @ 20 ms |")?;
    writeln!(s, "| --- | --- | --- | --- | --- | --- | --- | --- |")?;
    for &n in &a.n {
        let Some(g) = agg(r, "tasks", n) else {
            continue;
        };
        if g.unicast_p50.is_empty() {
            continue;
        }
        let local_ssm = med(&g.all_p50) / 1e3;
        let per_req = med(&g.unicast_p50) / 1e3 / n as f64;
        let ssm = |rtt: f64| rtt / 2.0 + local_ssm;
        let uc = |rtt: f64| n as f64 * (rtt + per_req);
        let fmt = |v: f64| {
            if v >= 1000.0 {
                format!("{:.2} s", v / 1e3)
            } else {
                format!("{v:.1} ms")
            }
        };
        writeln!(
            s,
            "| {n} | 1 | {} | {} | {} | {} | {} | {:.0}× |",
            2 * n,
            fmt(ssm(5.0)),
            fmt(uc(5.0)),
            fmt(ssm(20.0)),
            fmt(uc(20.0)),
            uc(20.0) / ssm(20.0)
        )?;
    }

    // Throughput.
    writeln!(s, "\n### Receive throughput of one light\n")?;
    writeln!(s, "Sans-IO: `SsmReceiver::receive` + `Device::apply_ssm` on one thread over pre-protected UPDATEs (each with a fresh sequence number), or over garbage. Socket: one light running as in the product (`ssm_runtime::device::start`, multi-thread tokio runtime) while a blaster thread in the same process sends to 224.0.1.187 on `lo` as fast as it can for {} s; the blaster shares the 2 cores (loopback delivery is charged to the sender).\n", a.seconds)?;
    writeln!(s, "| path | per second: median (min–max) |")?;
    writeln!(s, "| --- | --- |")?;
    if !tp.is_empty() {
        let rows: Vec<(&str, Vec<f64>)> = vec![
            (
                "sans-IO valid, floor kept in memory (the CPU cost)",
                tpv(&|t| t.sansio_valid),
            ),
            (
                "sans-IO valid, floor written + fsynced before each apply (as the runtime does)",
                tpv(&|t| t.sansio_valid_fsync_each),
            ),
            (
                "sans-IO valid, one floor write per 64 (group commit)",
                tpv(&|t| t.sansio_valid_group_commit_64),
            ),
            (
                "sans-IO garbage: not CoAP",
                tpv(&|t| t.sansio_garbage_not_coap),
            ),
            (
                "sans-IO garbage: OSCORE, unknown kid",
                tpv(&|t| t.sansio_garbage_unknown_kid),
            ),
            (
                "sans-IO garbage: known kid, forged tag (one AES-CCM open each)",
                tpv(&|t| t.sansio_garbage_bad_tag),
            ),
            (
                "socket, valid, applied (product)",
                tpv(&|t| t.socket_valid_applied),
            ),
            (
                "… sent by the blaster meanwhile",
                tpv(&|t| t.socket_valid_sent),
            ),
            (
                "socket, valid, applied, floor written once (measurement only)",
                tpv(&|t| t.socket_valid_applied_no_fsync),
            ),
            (
                "… sent by the blaster meanwhile",
                tpv(&|t| t.socket_valid_sent_no_fsync),
            ),
            (
                "socket, garbage (unknown kid), dropped",
                tpv(&|t| t.socket_garbage_dropped),
            ),
            (
                "… sent by the blaster meanwhile",
                tpv(&|t| t.socket_garbage_sent),
            ),
        ];
        for (what, v) in rows {
            let (lo, mid, hi) = min_med_max(&v);
            let f = |x: f64| {
                if x >= 1e6 {
                    format!("{:.2} M", x / 1e6)
                } else if x >= 1e3 {
                    format!("{:.1} k", x / 1e3)
                } else {
                    format!("{x:.0}")
                }
            };
            writeln!(s, "| {what} | {} ({}–{}) |", f(mid), f(lo), f(hi))?;
        }
    }

    // Footprint.
    writeln!(s, "\n### Footprint\n")?;
    if let Some(g) = &one_proc {
        writeln!(s, "- One light process (`ssm device` on `lo`, IPv4, after the fan-out commands): RSS {} MiB, of which anonymous (heap, stacks: the light's own memory) {} MiB; the rest is file-backed pages of the `ssm` binary and libc.", mmm(&g.rss, 1024.0, 1), mmm(&g.anon, 1024.0, 2))?;
    }
    for &n in a.procs_n.iter().filter(|n| **n > 1) {
        if let Some(g) = agg(r, "procs", n) {
            writeln!(s, "- {n} light processes side by side: RSS {} MiB each, PSS (shared code pages split between them) {} MiB each, anonymous {} MiB each.", mmm(&g.rss, 1024.0, 1), mmm(&g.pss, 1024.0, 2), mmm(&g.anon, 1024.0, 2))?;
        }
    }
    if !r.footprint.is_empty() {
        let v: Vec<f64> = r.footprint.iter().map(|f| f.rss_kib as f64).collect();
        let b: Vec<f64> = r.footprint.iter().map(|f| f.base_rss_kib as f64).collect();
        let per: Vec<f64> = r
            .footprint
            .iter()
            .map(|f| (f.rss_kib.saturating_sub(f.base_rss_kib)) as f64 / f.lights.max(1) as f64)
            .collect();
        writeln!(s, "- {} lights as tasks in one process (`ssm-bench footprint --lights {}`, after 3 commands all applied): RSS {} MiB ({} MiB before any light started), {} KiB per light.", a.footprint_lights, a.footprint_lights, mmm(&v, 1024.0, 1), mmm(&b, 1024.0, 1), mmm(&per, 1.0, 0))?;
    }
    for inc in &a.include {
        let text = std::fs::read_to_string(inc)
            .with_context(|| format!("cannot read {}", inc.display()))?;
        writeln!(s, "\n{}", text.trim_end())?;
    }
    writeln!(s, "\n![latency vs N](bench/fanout.svg)")?;
    Ok(s)
}

/// (label, points, colour, dashed).
type Series = (String, Vec<(f64, f64)>, plotters::style::RGBColor, bool);

fn plot(r: &Results, a: &Args, path: &std::path::Path) -> Result<()> {
    use plotters::prelude::*;
    let mut series: Vec<Series> = Vec::new();
    let mut line = |label: &str,
                    mode: &str,
                    ns: &[usize],
                    pick: &dyn Fn(&Agg) -> Vec<f64>,
                    color: RGBColor,
                    dashed: bool| {
        let pts: Vec<(f64, f64)> = ns
            .iter()
            .filter_map(|&n| {
                let g = agg(r, mode, n)?;
                let v = pick(&g);
                (!v.is_empty()).then(|| (n as f64, med(&v) / 1e3))
            })
            .collect();
        if !pts.is_empty() {
            series.push((label.to_string(), pts, color, dashed));
        }
    };
    let rmode = format!("tasks-reserve{}", a.reserve);
    line(
        "SSM all applied p50 (product, tasks)",
        "tasks",
        &a.n,
        &|g| g.all_p50.clone(),
        RGBColor(200, 30, 30),
        false,
    );
    line(
        "SSM all applied p99 (product, tasks)",
        "tasks",
        &a.n,
        &|g| g.all_p99.clone(),
        RGBColor(240, 130, 40),
        false,
    );
    line(
        &format!(
            "SSM all applied p50 (no floor write: reserved {} ahead)",
            a.reserve
        ),
        &rmode,
        &a.n,
        &|g| g.all_p50.clone(),
        RGBColor(150, 0, 150),
        false,
    );
    line(
        "SSM all applied p50 (light processes)",
        "procs",
        &a.procs_n,
        &|g| g.all_p50.clone(),
        RGBColor(0, 140, 140),
        false,
    );
    line(
        "sequential unicast OSCORE p50 (loopback)",
        "tasks",
        &a.n,
        &|g| g.unicast_p50.clone(),
        RGBColor(30, 60, 200),
        false,
    );
    // Projections at RTT 5 ms.
    let proj: Vec<(f64, f64, f64)> =
        a.n.iter()
            .filter_map(|&n| {
                let g = agg(r, "tasks", n)?;
                if g.unicast_p50.is_empty() {
                    return None;
                }
                let per = med(&g.unicast_p50) / 1e3 / n as f64;
                Some((
                    n as f64,
                    2.5 + med(&g.all_p50) / 1e3,
                    n as f64 * (5.0 + per),
                ))
            })
            .collect();
    if !proj.is_empty() {
        series.push((
            "SSM projected, RTT 5 ms".into(),
            proj.iter().map(|p| (p.0, p.1)).collect(),
            RGBColor(200, 30, 30),
            true,
        ));
        series.push((
            "unicast projected, RTT 5 ms".into(),
            proj.iter().map(|p| (p.0, p.2)).collect(),
            RGBColor(30, 60, 200),
            true,
        ));
    }
    let all: Vec<(f64, f64)> = series.iter().flat_map(|s| s.1.iter().copied()).collect();
    let (mut ymin, mut ymax) = all
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
    if all.is_empty() {
        (ymin, ymax) = (0.01, 1.0);
    }
    let xmax = all.iter().map(|p| p.0).fold(1.0, f64::max);
    let root = SVGBackend::new(path, (960, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "One command to N lights: time until the last light applied it",
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(
            (0.8f64..xmax * 1.25).log_scale(),
            ((ymin / 2.0).max(0.001)..ymax * 2.0).log_scale(),
        )
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    chart
        .configure_mesh()
        .x_desc("lights N (log)")
        .y_desc("milliseconds (log)")
        .draw()
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    for (label, pts, color, dashed) in series {
        let style = color.stroke_width(2);
        if dashed {
            chart
                .draw_series(DashedLineSeries::new(pts.clone(), 6, 4, style))
                .map_err(|e| anyhow::anyhow!("{e:?}"))?
                .label(label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
        } else {
            chart
                .draw_series(LineSeries::new(pts.clone(), style))
                .map_err(|e| anyhow::anyhow!("{e:?}"))?
                .label(label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
            chart
                .draw_series(pts.iter().map(|p| Circle::new(*p, 3, color.filled())))
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    root.present().map_err(|e| anyhow::anyhow!("{e:?}"))?;
    Ok(())
}

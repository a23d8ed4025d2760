//! The Markdown report, one function per section.
use super::*;

pub(super) fn markdown(r: &Results, a: &Args) -> Result<String> {
    let mut s = String::new();
    header(&mut s, r, a)?;
    goals_fanout(&mut s, r, a)?;
    goals_receive(&mut s, r, a)?;
    super::building::goals(&mut s, r)?;
    fanout_table(&mut s, r, a)?;
    model(&mut s, r, a)?;
    throughput(&mut s, r, a)?;
    super::building::section(&mut s, r)?;
    footprint(&mut s, r, a)?;
    Ok(s)
}

/// The command, the machine and the method.
fn header(s: &mut String, r: &Results, a: &Args) -> Result<()> {
    let m = &r.machine;
    writeln!(s, "**Command:** `{}` (writes this section and `fanout.svg`; raw figures in `target/bench-report/results.json`).\n", a.command)?;
    writeln!(
        s,
        "**Machine:** {} × {}, {:.0} GiB, {}, release build; {}; commit {}. Load average (1/5/15 min) {} before, {} after: this machine is shared, so the figures are noisy; each is the median over {} runs with (min–max).\n",
        m.cores, m.cpu, m.mem_gib, m.rustc, m.date, m.commit, m.load_before, m.load_after, a.runs
    )?;
    writeln!(s, "All traffic is IPv4 multicast 224.0.1.187 on `lo` (TTL 1) and unicast on 127.0.0.1; no root needed. Every SSM command is ONE datagram (one configured scope). \"All applied\" is the time from just before the switch protects and sends the command until the last light applied it (its `SsmApplied` event instant; for light processes the `at_mono_ns` they print, CLOCK_MONOTONIC); skew is last − first light. {} commands per N per run after one unmeasured warm-up command. The unicast baseline sends one confirmable pair-wise OSCORE UPDATE to each light in turn, each answered 2.04 before the next (after an unmeasured warm-up round that does the Echo exchange).\n", a.rounds)?;

    Ok(())
}

/// The goals table: its head and the fan-out rows.
fn goals_fanout(s: &mut String, r: &Results, a: &Args) -> Result<()> {
    let ms = 1e3;
    let n100 = agg(r, "tasks", 100);
    let n100r = agg(r, &format!("tasks-reserve{}", a.reserve), 100);
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
    Ok(())
}

/// The goals table: receive throughput and memory rows.
fn goals_receive(s: &mut String, r: &Results, a: &Args) -> Result<()> {
    let tp: Vec<&Throughput> = r.throughput.iter().collect();
    let tpv = |f: &dyn Fn(&Throughput) -> f64| tp.iter().map(|t| f(t)).collect::<Vec<f64>>();
    let one_proc = agg(r, "procs", 1);
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

    Ok(())
}

/// Fan-out: one SSM command to N lights vs sequential unicast.
fn fanout_table(s: &mut String, r: &Results, a: &Args) -> Result<()> {
    let ms = 1e3;
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

    Ok(())
}

/// Model: datagrams on the wire and projected time on a network.
fn model(s: &mut String, r: &Results, a: &Args) -> Result<()> {
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

    Ok(())
}

/// Receive throughput of one light.
fn throughput(s: &mut String, r: &Results, a: &Args) -> Result<()> {
    let tp: Vec<&Throughput> = r.throughput.iter().collect();
    let tpv = |f: &dyn Fn(&Throughput) -> f64| tp.iter().map(|t| f(t)).collect::<Vec<f64>>();
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

    Ok(())
}

/// Footprint, the included texts and the plot.
fn footprint(s: &mut String, r: &Results, a: &Args) -> Result<()> {
    let one_proc = agg(r, "procs", 1);
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
    Ok(())
}

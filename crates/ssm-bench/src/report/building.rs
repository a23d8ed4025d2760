//! The building rows of the report: 50 zones × 20 lights, a switch and a
//! group key per zone, lights as tasks (one floor journal) and over light
//! processes, against one zone alone in the same run.
use super::*;
use crate::building::{Building, Run};

/// (label, the runs of that kind over the report's runs).
fn kinds(r: &Results) -> Vec<(String, Vec<&Run>)> {
    let tasks: Vec<&Building> = r.building.iter().collect();
    let hub: Vec<&Building> = r.building_hub.iter().collect();
    let procs: Vec<&Building> = r.building_procs.iter().collect();
    let mut out = Vec::new();
    if let Some(b) = tasks.first() {
        out.push((
            format!(
                "baseline: one zone of {} lights alone, tasks, one floor journal",
                b.baseline.per_zone
            ),
            tasks.iter().map(|b| &b.baseline).collect(),
        ));
        out.push((
            format!(
                "{} × {} lights as tasks of one process, one floor journal",
                b.building.zones, b.building.per_zone
            ),
            tasks.iter().map(|b| &b.building).collect(),
        ));
    }
    if let Some(b) = hub.first() {
        out.push((
            format!(
                "{} × {} lights as tasks of one process, one floor journal, one socket per group (`GroupHub`)",
                b.building.zones, b.building.per_zone
            ),
            hub.iter().map(|b| &b.building).collect(),
        ));
    }
    if let Some(b) = procs.first() {
        out.push((
            format!(
                "{} × {} lights over {} processes ({} lights each, a journal and a `GroupHub` each)",
                b.building.zones,
                b.building.per_zone,
                b.building.procs,
                b.building.zones * b.building.per_zone / b.building.procs.max(1)
            ),
            procs.iter().map(|b| &b.building).collect(),
        ));
    }
    out
}

fn pcts(runs: &[&Run], f: &dyn Fn(&Run) -> &Vec<f64>, p: f64) -> Vec<f64> {
    runs.iter().map(|r| r.p(f(r), p)).collect()
}

/// Goal rows (zone command latency, skew, wrong applies, memory).
pub(super) fn goals(s: &mut String, r: &Results) -> Result<()> {
    let ms = 1e3;
    for (label, runs) in kinds(r).iter().skip(1) {
        let all = pcts(runs, &|r| &r.all_applied_us, 99.0);
        let skew = pcts(runs, &|r| &r.skew_us, 99.0);
        let wrong: u64 = runs.iter().map(|r| r.wrong_applies).sum();
        let rss: Vec<f64> = runs.iter().map(|r| r.rss_kib as f64).collect();
        writeln!(
            s,
            "| building, {label}: zone command all applied p99 ≤ 5 ms | {} ms | {} |",
            mmm(&all, ms, 2),
            goal(med(&all) <= 5000.0)
        )?;
        writeln!(
            s,
            "| … skew p99 ≤ 2 ms | {} ms | {} |",
            mmm(&skew, ms, 2),
            goal(med(&skew) <= 2000.0)
        )?;
        writeln!(
            s,
            "| … wrong applies (a light outside the zone applied) = 0 | {wrong} | {} |",
            goal(wrong == 0)
        )?;
        let n = runs.first().map(|r| r.zones * r.per_zone).unwrap_or(0);
        writeln!(
            s,
            "| … RSS of the {n} lights ≤ 300 MB | {} MiB | {} |",
            mmm(&rss, 1024.0, 1),
            goal(med(&rss) * 1024.0 <= 300e6)
        )?;
    }
    Ok(())
}

/// The building section.
pub(super) fn section(s: &mut String, r: &Results) -> Result<()> {
    let kinds = kinds(r);
    if kinds.is_empty() {
        return Ok(());
    }
    let ms = 1e3;
    let b0 = &r.building[0];
    writeln!(
        s,
        "\n### Building: {} zones × {} lights, a switch and a group key per zone\n",
        b0.building.zones, b0.building.per_zone
    )?;
    writeln!(s, "Command: `ssm-bench building [--mode procs]` (the report runs both). Every light listens on 224.0.1.187 on `lo`; each zone's switch has its own group secret and Sender ID (distinct across the building), and its lights an SSM server credential and an ACE for it only (`ssm_ocf::provision`, no OBT). One warm-up command per zone, then {} commands per zone, zone after zone; \"all applied\" is send → the zone's last light applied, skew last − first light of the zone. Wrong applies and drops come from every light's own counters at the end. The baseline is the first zone alone, as many commands, same run. \"send\" is the switch's send call (on `lo` the kernel copies the datagram to every listening socket in it). RSS is the measuring process's for lights as tasks (with whatever it allocated before) and the sum over the light processes otherwise. Milliseconds, median over runs (min–max).\n", b0.building.commands / b0.building.zones.max(1))?;
    writeln!(s, "| lights | commands | all applied p50 | all applied p99 | skew p50 | skew p99 | send p50 | not applied | wrong applies | unknown-kid drops (expected) | AEAD drops | RSS |")?;
    writeln!(
        s,
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    )?;
    for (label, runs) in &kinds {
        let sum = |f: &dyn Fn(&Run) -> u64| runs.iter().map(|r| f(r)).sum::<u64>();
        let rss: Vec<f64> = runs.iter().map(|r| r.rss_kib as f64).collect();
        writeln!(
            s,
            "| {label} | {} | {} | {} | {} | {} | {} | {}/{} | {} | {} ({}) | {} | {} MiB |",
            sum(&|r| r.commands as u64),
            mmm(&pcts(runs, &|r| &r.all_applied_us, 50.0), ms, 3),
            mmm(&pcts(runs, &|r| &r.all_applied_us, 99.0), ms, 3),
            mmm(&pcts(runs, &|r| &r.skew_us, 50.0), ms, 3),
            mmm(&pcts(runs, &|r| &r.skew_us, 99.0), ms, 3),
            mmm(&pcts(runs, &|r| &r.send_us, 50.0), ms, 3),
            sum(&|r| r.missing as u64),
            sum(&|r| (r.commands * r.per_zone) as u64),
            sum(&|r| r.wrong_applies),
            sum(&|r| r.unknown_kid_drops),
            sum(&|r| r.expected_unknown_kid_drops),
            sum(&|r| r.aead_drops),
            mmm(&rss, 1024.0, 1),
        )?;
    }
    let all: Vec<&Building> = r
        .building
        .iter()
        .chain(&r.building_hub)
        .chain(&r.building_procs)
        .collect();
    let drop: Vec<f64> = all.iter().map(|b| b.drop_ns).collect();
    let rx: Vec<f64> = all.iter().map(|b| b.receive_ns).collect();
    let ratio: Vec<f64> = all
        .iter()
        .map(|b| b.receive_ns / b.drop_ns.max(1e-3))
        .collect();
    let others = b0.building.zones.saturating_sub(1) * b0.building.per_zone;
    writeln!(s, "\nThe drop at a light outside the zone, sans-IO (`SsmReceiver::receive`, best of 5 interleaved rounds): {} ns for an unknown kid, against {} ns for the same light receiving a valid datagram of its own zone (kid lookup, AES-CCM unprotect, replay window) — the receive costs {}× the drop. At the {others} lights outside a zone that is {} µs of CPU per command in all, before the kernel's copy of the datagram to each socket and the task wake-ups, which the latencies above include.", mmm(&drop, 1.0, 0), mmm(&rx, 1.0, 0), mmm(&ratio, 1.0, 1), mmm(&drop.iter().map(|d| d * others as f64).collect::<Vec<_>>(), 1e3, 1))?;
    Ok(())
}

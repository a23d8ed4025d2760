//! `ssm-bench` runs on loopback without root: a tiny fan-out (every light
//! applies every command, and the unicast baseline answers), and a tiny
//! report (tables and a plot are written).
use std::process::Command;

fn bench() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ssm-bench"))
}

fn port(offset: u32) -> String {
    ssm_testkit::test_port(offset).to_string()
}

#[test]
fn fanout_reports_every_light_applied() {
    let out = bench()
        .args(["fanout", "--n", "1,4", "--rounds", "3", "--json", "--port"])
        .arg(port(0))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "ssm-bench fanout failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["all_applied"], true, "{v}");
    let points = v["fanout"].as_array().unwrap();
    assert_eq!(points.len(), 2);
    for (p, n) in points.iter().zip([1u64, 4]) {
        assert_eq!(p["n"], n);
        assert_eq!(p["missing"], 0, "{p}");
        assert_eq!(p["ssm_datagrams"], 1, "one datagram per command on lo");
        let all = p["all_applied_us"].as_array().unwrap();
        assert_eq!(all.len(), 3, "one figure per measured command: {p}");
        assert!(all.iter().all(|x| x.as_f64().unwrap() > 0.0));
        let skew = p["skew_us"].as_array().unwrap();
        assert_eq!(skew.len(), 3);
        if n == 1 {
            assert!(skew.iter().all(|x| x.as_f64().unwrap() == 0.0));
        }
        let uc = p["unicast_us"].as_array().unwrap();
        assert_eq!(uc.len(), 3, "the unicast baseline ran: {p}");
        assert!(uc.iter().all(|x| x.as_f64().unwrap() > 0.0));
    }
}

#[test]
fn report_writes_tables_and_plot() {
    let dir = std::env::temp_dir().join(format!("ssm-bench-smoke-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = bench()
        .args([
            "report",
            "--runs",
            "1",
            "--rounds",
            "2",
            "--n",
            "1,2",
            "--procs-n",
            "0",
            "--footprint-lights",
            "3",
            "--seconds",
            "0.2",
            "--count",
            "2000",
            "--building-zones",
            "2",
            "--building-per-zone",
            "2",
            "--building-rounds",
            "1",
            "--building-procs",
            "0",
            "--port",
        ])
        .arg(port(1))
        .arg("--out")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ssm-bench report failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    for needle in [
        "### Fan-out",
        "| tasks, product | 2 |",
        "| tasks, one floor journal (group commit) | 2 |",
        "### Model",
        "### Receive throughput",
        "### Footprint",
        "3 lights as tasks in one process",
        "### Building: 2 zones × 2 lights",
        "| … wrong applies (a light outside the zone applied) = 0 | 0 | met |",
    ] {
        assert!(md.contains(needle), "report lacks {needle:?}:\n{md}");
    }
    let svg = std::fs::read_to_string(dir.join("fanout.svg")).unwrap();
    assert!(svg.starts_with("<svg") && (svg.contains("<polyline") || svg.contains("<path")));
    assert!(svg.contains("sequential unicast"), "legend present");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap()).unwrap();
    assert_eq!(
        json["fanout"][0].as_array().unwrap().len(),
        6,
        "2 N x (product, shared floor journal, reserved)"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A tiny building (3 zones × 2 lights, a key each), in-process and over
/// 2 light processes of `ssm-bench building-host`: every command applied
/// by exactly its zone, every other light dropped it for an unknown kid.
#[test]
fn building_zone_commands_reach_only_their_zone() {
    for (mode, hub) in [("tasks", false), ("tasks", true), ("procs", true)] {
        let out = bench()
            .args([
                "building",
                "--zones",
                "3",
                "--per-zone",
                "2",
                "--rounds",
                "2",
                "--procs",
                "2",
                "--count",
                "2000",
                "--json",
                "--mode",
                mode,
                "--port",
            ])
            .arg(port(3))
            .args(hub.then_some("--hub"))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "building {mode}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
        let b = &v["building"]["building"];
        let label = format!("{mode}{}", if hub { "-hub" } else { "" });
        assert_eq!(b["mode"], label.as_str());
        assert_eq!(b["commands"], 6, "{b}");
        assert_eq!(b["all_applied_us"].as_array().unwrap().len(), 6);
        assert_eq!(b["missing"], 0, "{b}");
        assert_eq!(b["wrong_applies"], 0, "{b}");
        assert_eq!(b["aead_drops"], 0, "{b}");
        // 3 zones x 3 commands (warm-up included) x 4 lights outside.
        assert_eq!(b["unknown_kid_drops"], 36, "{b}");
        assert_eq!(b["expected_unknown_kid_drops"], 36);
        assert!(b["rss_kib"].as_u64().unwrap() > 0);
        assert_eq!(v["building"]["baseline"]["commands"], 6);
        assert!(v["building"]["drop_ns"].as_f64().unwrap() > 0.0);
    }
}

/// Light processes: each `ssm device` reports its apply time on the shared
/// monotonic clock. Needs the `ssm` binary, which `cargo test --workspace`
/// builds (ssm-cli's tests use it); skipped, loudly, when it is absent.
#[test]
fn fanout_to_light_processes() {
    let exe = std::env::current_exe().unwrap();
    let ssm = exe
        .parent()
        .and_then(|d| d.parent())
        .map(|d| d.join("ssm"))
        .unwrap();
    if !ssm.exists() {
        eprintln!(
            "SKIPPED fanout_to_light_processes: {} not built (run cargo test --workspace)",
            ssm.display()
        );
        return;
    }
    let out = bench()
        .args([
            "fanout", "--mode", "procs", "--n", "2", "--rounds", "2", "--json", "--port",
        ])
        .arg(port(2))
        .arg("--ssm-bin")
        .arg(&ssm)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "procs fan-out failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let p = &v["fanout"][0];
    assert_eq!(p["mode"], "procs");
    assert_eq!(p["missing"], 0, "{p}");
    let all = p["all_applied_us"].as_array().unwrap();
    assert_eq!(all.len(), 2);
    // Same clock in every process: positive and below the 10 s timeout.
    assert!(
        all.iter()
            .all(|x| (0.0..10e6).contains(&x.as_f64().unwrap())),
        "{p}"
    );
    assert_eq!(p["rss_kib"].as_array().unwrap().len(), 2);
}

//! `ssm demo` as a real process: devices start unowned, the demo's OBT
//! onboards every one by Random PIN and grants the switch by SSM; every
//! light switches both ways over IPv4 multicast on lo, confirmed by
//! RETRIEVE and OBSERVE; the replay and forgery are rejected by every light.
//! Also as an unprivileged user, and over IPv6 in a namespace when root.
use serde_json::Value;
use ssm_testkit::is_root;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A port of its own per test so parallel runs do not hear each other.
fn port(offset: u32) -> String {
    ssm_testkit::test_port(offset).to_string()
}

fn check_json(out: &Output, lights: u64, commands: u64) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let j: Value = serde_json::from_str(stdout.trim()).expect("one JSON object");
    assert_eq!(j["ok"], true, "{j}");
    assert_eq!(j["all_switched"], true);
    assert_eq!(j["lights"], lights);
    assert_eq!(j["lights_switched"], lights);
    assert_eq!(j["commands"], commands);
    // Onboarded by the demo's OBT, not pre-provisioned.
    assert_eq!(j["onboarded"]["lights"], lights, "{j}");
    assert_eq!(j["onboarded"]["switches"], 1);
    assert_eq!(j["onboarded"]["method"], "random-pin");
    assert_eq!(j["domain"]["devices"], lights + 1);
    assert_eq!(j["granted"], lights);
    assert_eq!(j["notify_ok"], true);
    assert_eq!(j["replay_rejected_by"], lights);
    assert_eq!(j["forgery_rejected_by"], lights);
    assert_eq!(j["unchanged_by_attacks"], true);
    let detail = j["commands_detail"].as_array().expect("commands_detail");
    assert_eq!(detail.len() as u64, commands);
    for (k, c) in detail.iter().enumerate() {
        assert_eq!(c["value"], k % 2 == 0, "ON then OFF: {c}");
        assert_eq!(c["datagrams"], 1, "one multicast datagram per command");
        assert_eq!(c["applied"], lights);
        let rows = c["lights"].as_array().unwrap();
        assert_eq!(rows.len() as u64, lights);
        assert!(rows
            .iter()
            .all(|r| r["read_value"] == c["value"] && r["notified"] == true));
    }
    assert!(j["latency_us"]["max"].as_u64().unwrap() >= j["latency_us"]["p50"].as_u64().unwrap());
    j
}

#[test]
fn demo_json_onboards_and_switches_every_light() {
    let out = Command::new(env!("CARGO_BIN_EXE_ssm"))
        .args(["demo", "--lights", "8", "--rounds", "2", "--json", "--port"])
        .arg(port(0))
        .output()
        .expect("run ssm demo");
    check_json(&out, 8, 4);
}

/// A directory nobody may use, removed at the end.
struct Scratch(PathBuf);
impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn scratch(tag: &str) -> Scratch {
    let d = std::env::temp_dir().join(format!("ssm-demo-test-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("home")).unwrap();
    for p in [d.as_path(), &d.join("home")] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    Scratch(d)
}

/// `ssm` run as an unprivileged user: directly when we are not root, else
/// through setpriv as nobody, with a copy of the binary nobody can read
/// and a temporary HOME and TMPDIR nobody can write.
fn unprivileged(dir: &Path, args: &[&str]) -> Output {
    let home = dir.join("home");
    if !is_root() {
        return Command::new(env!("CARGO_BIN_EXE_ssm"))
            .args(args)
            .env("HOME", &home)
            .env("TMPDIR", &home)
            .output()
            .expect("ssm");
    }
    let bin = dir.join("ssm");
    if !bin.exists() {
        std::fs::copy(env!("CARGO_BIN_EXE_ssm"), &bin).unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    Command::new("setpriv")
        .args([
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "env",
            "-i",
        ])
        .arg(format!("HOME={}", home.display()))
        .arg(format!("TMPDIR={}", home.display()))
        .arg(&bin)
        .args(args)
        .output()
        .expect("setpriv (util-linux) runs ssm as nobody")
}

#[test]
fn demo_runs_unprivileged() {
    let dir = scratch("nobody");
    let p = port(1);
    let out = unprivileged(&dir.0, &["demo", "--lights", "3", "--json", "--port", &p]);
    check_json(&out, 3, 2);
    // Its temporary state is gone.
    let left: Vec<_> = std::fs::read_dir(dir.0.join("home"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    // IPv6 needs a namespace, hence root: a clear refusal, not a crash.
    let out = unprivileged(&dir.0, &["demo", "--ipv6", "--port", &p]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--ipv6 needs root"), "{err}");
    assert!(err.contains("ssm demo"), "says what to do instead: {err}");
}

#[test]
fn demo_ipv6_in_a_namespace() {
    let has_ip = Command::new("ip").arg("-V").output().is_ok();
    if !is_root() || !has_ip {
        eprintln!("SKIPPED demo_ipv6_in_a_namespace: needs root and iproute2 (network namespaces)");
        return;
    }
    let child = Command::new(env!("CARGO_BIN_EXE_ssm"))
        .args(["demo", "--ipv6", "--lights", "4", "--json", "--port"])
        .arg(port(2))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run ssm demo --ipv6");
    let ns = format!("ssmdemo{}", child.id());
    let out = child.wait_with_output().unwrap();
    let j = check_json(&out, 4, 2);
    assert_eq!(j["transport"], "ipv6");
    let list = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(
        !list
            .lines()
            .any(|l| l.split_whitespace().next() == Some(ns.as_str())),
        "namespace {ns} left behind: {list}"
    );
}

/// Ctrl-C in the middle (onboarding 100 lights): a clear message, a
/// non-zero exit, no temporary state left behind.
#[test]
fn demo_interrupted_cleans_up() {
    use std::io::{BufRead, BufReader};
    let dir = scratch("sigint");
    let tmp = dir.0.join("home");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ssm"))
        .args(["demo", "--lights", "100", "--port", &port(3)])
        .env("TMPDIR", &tmp)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run ssm demo");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    for l in lines.by_ref().take(5) {
        let l = l.unwrap();
        let discovered = l.contains("discovered");
        seen.push(l);
        if discovered {
            break;
        }
    }
    assert!(
        seen.iter()
            .any(|l| l.contains("discovered 101 unowned devices")),
        "{seen:?}"
    );
    // While the OBT onboards them.
    let st = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{rest:?}");
    assert!(err.contains("interrupted"), "{err}");
    assert!(
        !rest.iter().any(|l| l.contains("summary")),
        "stopped before the end: {rest:?}"
    );
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

//! `ssm demo` as a real process: every light switches both ways over IPv4
//! multicast on lo, and the replay and forgery are rejected by every light.
use std::process::Command;

#[test]
fn demo_json_switches_every_light() {
    // A port of its own so parallel test runs do not hear each other.
    let port = 20000 + (std::process::id() % 20000) as u16;
    let out = Command::new(env!("CARGO_BIN_EXE_ssm"))
        .args([
            "demo",
            "--lights",
            "8",
            "--rounds",
            "2",
            "--json",
            "--port",
            &port.to_string(),
        ])
        .output()
        .expect("run ssm demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON object");
    assert_eq!(j["ok"], true);
    assert_eq!(j["all_switched"], true);
    assert_eq!(j["lights"], 8);
    assert_eq!(j["commands"], 4);
    assert_eq!(j["replay_rejected_by"], 8);
    assert_eq!(j["forgery_rejected_by"], 8);
}

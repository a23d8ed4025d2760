//! `ssm obt onboard --all`: six light processes on loopback are found by
//! multicast and onboarded three at a time from a PIN file; the domain
//! lists them; a second run finds nothing left to do.
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

struct Dev(Child);
impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ssm(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ssm"))
        .args(args)
        .output()
        .expect("ssm")
}

#[test]
fn bulk_onboarding_with_a_pin_file() {
    let dir = std::env::temp_dir().join(format!("ssm-obt-bulk-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let port = ssm_testkit::free_udp_port().to_string();
    let mut devs = Vec::new();
    let mut pins = String::new();
    for i in 0..6 {
        let sd = dir.join(format!("light-{i}"));
        let mut c = Command::new(env!("CARGO_BIN_EXE_ssm"))
            .args(["device", "--json", "--port", &port, "--state-dir"])
            .arg(&sd)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = c.stdout.take().unwrap();
        let d = Dev(c);
        let mut lines = BufReader::new(out).lines();
        let ready: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        std::thread::spawn(move || for _ in lines.by_ref() {});
        let pin = std::fs::read_to_string(sd.join("pin")).unwrap();
        pins.push_str(&format!(
            "{} {}\n",
            ready["di"].as_str().unwrap(),
            pin.trim()
        ));
        devs.push(d);
    }
    let pin_file = dir.join("pins.txt");
    std::fs::write(&pin_file, pins).unwrap();
    let domain = dir.join("domain.sqlite");
    let d = domain.to_str().unwrap();
    assert!(ssm(&["obt", "--domain", d, "init"]).status.success());
    let out = ssm(&[
        "obt",
        "--domain",
        d,
        "onboard",
        "--all",
        "--pins",
        pin_file.to_str().unwrap(),
        "--port",
        &port,
        "--jobs",
        "3",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["onboarded"].as_u64(), v["failed"].as_u64()),
        (Some(6), Some(0)),
        "{v}"
    );
    let l: Value =
        serde_json::from_slice(&ssm(&["obt", "--domain", d, "list", "--json"]).stdout).unwrap();
    assert_eq!(l["devices"].as_array().unwrap().len(), 6);
    // Idempotent: nothing unowned is left.
    let out = ssm(&[
        "obt",
        "--domain",
        d,
        "onboard",
        "--all",
        "--pins",
        pin_file.to_str().unwrap(),
        "--port",
        &port,
        "--json",
    ]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["onboarded"], 0);
    drop(devs);
    let _ = std::fs::remove_dir_all(&dir);
}

//! Commissioning across network namespaces with real processes: an OBT in
//! one namespace finds 3 lights and 2 switches (each in its own namespace)
//! by multicast, onboards them by Random PIN over DTLS, grants switch 0 SSM
//! on every light; switch 0's multicast then switches every light, and
//! switch 1 (onboarded, no grant) changes nothing. Without root: the same
//! on loopback.
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn ssm() -> &'static str {
    env!("CARGO_BIN_EXE_ssm")
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
        && Command::new("ip").arg("-V").output().is_ok()
}

struct Topology(String);
impl Drop for Topology {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(repo().join("tests/netns/topology.sh"))
            .args(["down", &self.0])
            .status();
    }
}

#[derive(Clone)]
struct Host(Option<String>);
impl Host {
    fn cmd(&self) -> Command {
        match &self.0 {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, ssm()]);
                c
            }
            None => Command::new(ssm()),
        }
    }
    fn run(&self, args: &[&str]) -> Output {
        let mut c = self.cmd();
        c.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        let start = Instant::now();
        loop {
            if child.try_wait().unwrap().is_some() {
                return child.wait_with_output().unwrap();
            }
            if start.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                panic!("timed out: {args:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

struct Dev(Child, String, std::sync::mpsc::Receiver<Value>);
impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(host: &Host, dir: &Path, iface: &str, role: &str) -> Dev {
    let mut c = host.cmd();
    c.args([
        "device",
        "--json",
        "--iface",
        iface,
        "--role",
        role,
        "--state-dir",
    ])
    .arg(dir);
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let mut d = Dev(child, String::new(), rx);
    let mut lines = BufReader::new(out).lines();
    let ready: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    std::thread::spawn(move || {
        for l in lines.map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<Value>(&l) {
                let _ = tx.send(v);
            }
        }
    });
    let eps: Vec<String> = ready["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().to_string())
        .collect();
    d.1 = eps
        .iter()
        .find(|e| e.contains('%'))
        .or_else(|| eps.iter().find(|e| e.contains("127.0.0.1")))
        .unwrap()
        .clone();
    d
}

/// The next SSM verdict a light reports: "ssm_applied" or "refused".
fn verdict(d: &Dev) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match d.2.recv_timeout(left) {
            Ok(v) if v["event"] == "ssm_applied" || v["event"] == "refused" => {
                return v["event"].as_str().map(String::from)
            }
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
    None
}

#[test]
fn obt_commissions_lights_and_switches() {
    let (topo, hosts, iface) = if is_root() {
        let prefix = format!("ssmo{}", std::process::id() % 100000);
        let out = Command::new("bash")
            .arg(repo().join("tests/netns/topology.sh"))
            .args(["up", &prefix, "6"])
            .stderr(Stdio::inherit())
            .output()
            .unwrap();
        assert!(out.status.success());
        let hosts: Vec<Host> = (0..6)
            .map(|i| Host(Some(format!("{prefix}-n{i}"))))
            .collect();
        (Some(Topology(prefix)), hosts, "ssm0")
    } else {
        (None, (0..6).map(|_| Host(None)).collect(), "lo")
    };
    let dir = std::env::temp_dir().join(format!("ssm-netns-obt-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let domain = dir.join("domain.sqlite");
    let domain = domain.to_str().unwrap();
    let obt = &hosts[0];
    let roles = ["light", "light", "light", "switch", "switch"];
    let devs: Vec<Dev> = roles
        .iter()
        .enumerate()
        .map(|(i, r)| start(&hosts[i + 1], &dir.join(format!("d{i}")), iface, r))
        .collect();

    assert!(obt
        .run(&["obt", "--domain", domain, "init", "--name", "hall"])
        .status
        .success());
    let ipv6 = if iface == "lo" {
        vec![]
    } else {
        vec!["--ipv6"]
    };
    let mut args = vec![
        "obt",
        "--domain",
        domain,
        "discover",
        "--json",
        "--iface",
        iface,
        "--wait-ms",
        "800",
    ];
    args.extend(ipv6.iter().copied());
    let v: Value = serde_json::from_slice(&obt.run(&args).stdout).unwrap();
    assert_eq!(v["unowned"].as_array().unwrap().len(), 5, "{v}");

    for (i, d) in devs.iter().enumerate() {
        let pin_file = dir.join(format!("d{i}/pin"));
        let name = format!("{}-{i}", roles[i]);
        let out = obt.run(&[
            "obt",
            "--domain",
            domain,
            "onboard",
            &d.1,
            "--pin-file",
            pin_file.to_str().unwrap(),
            "--name",
            &name,
            "--role",
            roles[i],
        ]);
        assert!(
            out.status.success(),
            "onboard {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = obt.run(&[
        "obt", "--domain", domain, "ssm", "grant", "switch-3", "--all", "--json",
    ]);
    assert!(
        out.status.success(),
        "grant: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Switch 4: SSM credentials for itself (a grant on no light).
    let out = obt.run(&[
        "obt", "--domain", domain, "ssm", "grant", "switch-4", "light-0", "--json",
    ]);
    assert!(
        out.status.success(),
        "grant 4: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: Value = serde_json::from_slice(
        &obt.run(&["obt", "--domain", domain, "list", "--json"])
            .stdout,
    )
    .unwrap();
    assert_eq!(listed["devices"].as_array().unwrap().len(), 5);
    assert!(
        listed["devices"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["state"] == "provisioned"),
        "{listed}"
    );
    for d in &devs[..3] {
        while d.2.try_recv().is_ok() {}
    }

    // Switch 3 (granted on every light) sends from its own namespace.
    let send = |host: &Host, state: &Path, value: &str| {
        let mut mc = vec![
            "client",
            "--state-dir",
            state.to_str().unwrap(),
            "update",
            "--multicast",
            "--iface",
            iface,
            "--value",
            value,
        ];
        if iface != "lo" {
            mc.extend(["--no-ipv4", "--scopes", "2"]);
        }
        let out = host.run(&mc);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    send(&hosts[4], &dir.join("d3"), "on");
    for (i, d) in devs[..3].iter().enumerate() {
        assert_eq!(
            verdict(d).as_deref(),
            Some("ssm_applied"),
            "light {i} applied switch 3's update"
        );
    }
    // Unicast UPDATE with the pair-wise context the OBT provisioned.
    let out = hosts[4].run(&[
        "client",
        "--state-dir",
        dir.join("d3").to_str().unwrap(),
        "update",
        &devs[1].1,
        "--value",
        "off",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "unicast update: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["code"], "2.04", "{v}");
    // Without credentials there is no secured UPDATE.
    let out = hosts[4].run(&[
        "client",
        "--state-dir",
        dir.join("nobody").to_str().unwrap(),
        "update",
        &devs[1].1,
        "--value",
        "on",
    ]);
    assert!(!out.status.success());
    // Switch 4 holds the group key for light 0 only: light 0 applies it,
    // lights 1 and 2 do not know its Sender ID (dropped, no verdict).
    send(&hosts[5], &dir.join("d4"), "off");
    assert_eq!(verdict(&devs[0]).as_deref(), Some("ssm_applied"));
    assert_eq!(verdict(&devs[1]), None, "light 1 ignores switch 4");
    assert_eq!(verdict(&devs[2]), None, "light 2 ignores switch 4");
    drop(devs);
    drop(topo);
    let _ = std::fs::remove_dir_all(&dir);
}

//! Shared by the `ssm obt` process tests: hosts (a network namespace when
//! root, else this host on `lo`), device processes with their JSON events,
//! and bounded waits.
// Compiled into each test binary that uses a part of it: the rest is
// dead code there.
#![allow(dead_code)]
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

pub use ssm_testkit::Host;

pub fn ssm() -> &'static str {
    env!("CARGO_BIN_EXE_ssm")
}

/// How long one `ssm` command of the OBT tests may run.
pub const RUN_LIMIT: Duration = Duration::from_secs(90);

/// `ssm` commands on a host.
pub trait Ssm {
    /// Runs `ssm args…` to the end (at most [`RUN_LIMIT`]).
    fn ssm(&self, args: &[&str]) -> Output;
    /// Runs and parses the JSON it prints; panics with stderr on failure
    /// unless `may_fail`.
    fn json(&self, args: &[&str], may_fail: bool) -> (Option<i32>, Value);
}

impl Ssm for Host {
    fn ssm(&self, args: &[&str]) -> Output {
        self.run(ssm(), args, RUN_LIMIT)
    }
    fn json(&self, args: &[&str], may_fail: bool) -> (Option<i32>, Value) {
        let out = self.ssm(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            may_fail || out.status.success(),
            "{args:?} failed: {err}\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        let v = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {err}"));
        (out.status.code(), v)
    }
}

/// A device process and its JSON events.
pub struct Dev {
    pub child: Child,
    /// Its unicast endpoint (link-local on `ssm0`, or 127.0.0.1).
    pub ep: String,
    /// Every endpoint of its ready line (routable ones first).
    pub eps: Vec<String>,
    pub di: String,
    pub events: Receiver<Value>,
}
impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
impl Dev {
    /// SIGKILL (no clean stop).
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
    pub fn drain(&self) {
        while self.events.try_recv().is_ok() {}
    }
    /// The next event named `name` before `deadline`.
    pub fn next(&self, name: &str, deadline: Instant) -> Option<Value> {
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.events.recv_timeout(left) {
                Ok(v) if v["event"] == name => return Some(v),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
        None
    }
}

pub fn start(host: &Host, dir: &Path, iface: &str, role: &str, port: u16) -> Dev {
    start_with(host, dir, iface, role, port, &[])
}

/// [`start`] with more `ssm device` arguments (e.g. `--href /lights`).
pub fn start_with(
    host: &Host,
    dir: &Path,
    iface: &str,
    role: &str,
    port: u16,
    more: &[&str],
) -> Dev {
    let mut c = host.cmd(ssm());
    c.args(["device", "--json", "--iface", iface, "--role", role])
        .args(more)
        .args(["--port", &port.to_string(), "--state-dir"])
        .arg(dir)
        .stderr(Stdio::null());
    let ssm_testkit::Ready {
        child,
        ready,
        lines,
    } = ssm_testkit::spawn_ready(c, READY_LIMIT);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in lines {
            if let Ok(v) = serde_json::from_str::<Value>(&l) {
                if tx.send(v).is_err() {
                    break;
                }
            }
        }
    });
    let eps: Vec<String> = ready["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().to_string())
        .collect();
    let ep = eps
        .iter()
        .find(|e| e.contains('%'))
        .or_else(|| eps.iter().find(|e| e.contains("127.0.0.1")))
        .unwrap()
        .clone();
    Dev {
        child,
        ep,
        eps,
        di: ready["di"].as_str().unwrap().to_string(),
        events: rx,
    }
}

/// How long a device may take to print its ready line.
pub const READY_LIMIT: Duration = Duration::from_secs(60);

/// Link flags for `ssm obt` and `ssm client` on `iface`.
pub fn link_args(iface: &str, port: u16) -> Vec<String> {
    let mut v = vec![
        "--iface".to_string(),
        iface.to_string(),
        "--port".into(),
        port.to_string(),
    ];
    if iface != "lo" {
        v.push("--ipv6".into());
    }
    v
}

/// What `d` reported until `deadline` (what is queued after it still
/// counts): the last SSM update it applied (its event), and the reason of every
/// datagram it dropped (`ssm device --json` prints drops coalesced, one
/// line per reason and 10 ms with its count).
pub fn reported(d: &Dev, deadline: Instant) -> (Option<Value>, Vec<String>) {
    let (mut applied, mut drops) = (None, Vec::new());
    loop {
        let left = deadline
            .checked_duration_since(Instant::now())
            .unwrap_or(Duration::ZERO);
        match d.events.recv_timeout(left) {
            Ok(v) if v["event"] == "ssm_applied" => applied = Some(v),
            Ok(v) if v["event"] == "dropped" => {
                let n = v["count"].as_u64().unwrap_or(1);
                let reason = v["reason"].as_str().unwrap_or("");
                drops.extend((0..n).map(|_| reason.to_string()));
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    (applied, drops)
}

/// One SSM UPDATE by multicast from the client whose state is `state`,
/// to `group` if given: its exit code and stderr.
pub fn send_group(
    host: &Host,
    state: &Path,
    iface: &str,
    port: u16,
    value: &str,
    group: Option<&str>,
) -> (Option<i32>, String) {
    let port = port.to_string();
    let mut a = vec![
        "client",
        "--state-dir",
        state.to_str().unwrap(),
        "update",
        "--multicast",
        "--iface",
        iface,
        "--port",
        &port,
        "--value",
        value,
    ];
    if let Some(g) = group {
        a.extend(["--group", g]);
    }
    if iface != "lo" {
        a.extend(["--no-ipv4", "--scopes", "2"]);
    }
    let out = host.ssm(&a);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// [`send_group`], which must succeed.
pub fn send_to(
    host: &Host,
    state: &Path,
    iface: &str,
    port: u16,
    value: &str,
    group: Option<&str>,
) {
    let (code, stderr) = send_group(host, state, iface, port, value, group);
    assert_eq!(code, Some(0), "send from {}: {stderr}", state.display());
}

/// One SSM UPDATE by multicast from the client whose state is `state`.
pub fn send(host: &Host, state: &Path, iface: &str, port: u16, value: &str) {
    send_to(host, state, iface, port, value, None)
}

/// For each device: did it apply an SSM update before `deadline`?
pub fn applied(devs: &[&Dev], deadline: Instant) -> Vec<bool> {
    devs.iter()
        .map(|d| d.next("ssm_applied", deadline).is_some())
        .collect()
}

/// The managed credential types (64, 128, 256) in a device's svr.json.
pub fn managed_creds(state: &Path) -> Vec<u64> {
    fn walk(v: &Value, out: &mut Vec<u64>) {
        match v {
            Value::Object(m) => {
                if let Some(t) = m.get("credtype").and_then(Value::as_u64) {
                    if [64, 128, 256].contains(&t) {
                        out.push(t);
                    }
                }
                m.values().for_each(|x| walk(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let text = std::fs::read_to_string(state.join("svr.json")).unwrap_or_default();
    let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let mut out = Vec::new();
    walk(&v, &mut out);
    out
}

/// `<uuid> <PIN> <name> <role>` lines for the devices still unowned.
pub fn pin_sheet(dir: &Path, devs: &[(&Dev, String, &str)]) -> PathBuf {
    let mut s = String::new();
    for (d, name, role) in devs {
        let sd = dir.join(name);
        if let Ok(pin) = std::fs::read_to_string(sd.join("pin")) {
            s.push_str(&format!("{} {} {name} {role}\n", d.di, pin.trim()));
        }
    }
    let p = dir.join("pins.txt");
    std::fs::write(&p, s).unwrap();
    p
}

/// Copies a state directory (a stolen device's files).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

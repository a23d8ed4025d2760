//! Real multicast across hosts: network namespaces joined by a bridge
//! (`tests/netns/topology.sh`), one switch and five lights as separate
//! `ssm` processes. One multicast UPDATE per family/scope (IPv6 ff02, IPv6
//! ff05, IPv4) switches every light; the state is read back by unicast GET
//! and an observer gets the NOTIFY. Without root (no namespaces) the same
//! scenario runs over IPv4 on `lo`.
use serde_json::Value;
use ssm_testkit::{is_root, Host, TempDir, Topology};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const LIGHTS: usize = 5;

fn ssm() -> &'static str {
    env!("CARGO_BIN_EXE_ssm")
}

/// How long one `ssm client` command may run.
const RUN_LIMIT: Duration = Duration::from_secs(20);

struct Light {
    child: Child,
    ep: String,
}

impl Drop for Light {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_light(host: &Host, dir: &Path, iface: &str, port: u16, extra: &[&str]) -> Light {
    let mut c = host.cmd(ssm());
    c.args([
        "device",
        "--json",
        "--iface",
        iface,
        "--port",
        &port.to_string(),
        "--state-dir",
    ])
    .arg(dir)
    .args(extra);
    c.stderr(Stdio::inherit());
    let ssm_testkit::Ready {
        child,
        ready,
        lines,
    } = ssm_testkit::spawn_ready(c, Duration::from_secs(60));
    // From here on the process is killed even if an assertion fails.
    let mut light = Light {
        child,
        ep: String::new(),
    };
    assert_eq!(ready["event"], "ready", "{ready}");
    // Keep draining the event lines so the light never blocks on stdout.
    std::thread::spawn(move || for _ in lines {});
    let eps: Vec<String> = ready["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().to_string())
        .collect();
    // Prefer the link-local IPv6 endpoint (with zone) in namespaces.
    light.ep = eps
        .iter()
        .find(|e| e.contains('%'))
        .or_else(|| eps.iter().find(|e| e.contains("127.0.0.1")))
        .expect("an endpoint")
        .clone();
    light
}

fn value_of(host: &Host, ep: &str) -> Value {
    let out = host.run(ssm(), &["client", "get", ep, "--json"], RUN_LIMIT);
    assert!(
        out.status.success(),
        "get {ep}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["code"], "2.05");
    v["body"]["value"].clone()
}

fn scenario(client: Host, lights_on: Vec<Host>, iface: &str, rounds: &[(&str, Vec<&str>)]) {
    let dir = TempDir::new(&format!("netns-{iface}"));
    let port = 5683;
    let out = Command::new(ssm())
        .args([
            "creds",
            "generate",
            "--lights",
            &LIGHTS.to_string(),
            "--switches",
            "1",
            "--out",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    let lights: Vec<Light> = lights_on
        .iter()
        .enumerate()
        .map(|(i, h)| start_light(h, &dir.join(format!("light-{i}")), iface, port, &[]))
        .collect();
    let switch_dir = dir.join("switch-0");
    let switch = switch_dir.to_str().unwrap();

    // Discovery finds every light and its SSM endpoint.
    let mut args = vec![
        "client",
        "--state-dir",
        switch,
        "discover",
        "--json",
        "--iface",
        iface,
        "--wait-ms",
        "700",
    ];
    args.extend(rounds[0].1.iter().copied());
    let out = client.run(ssm(), &args, RUN_LIMIT);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["devices"], LIGHTS as u64, "{v}");
    assert!(v["links"]
        .as_array()
        .unwrap()
        .iter()
        .all(|l| l["ssm"] == true));

    let mut on = false;
    for (name, flags) in rounds {
        on = !on;
        // An observer on the first light, from the client host.
        let mut obs = client.cmd(ssm());
        obs.args([
            "client",
            "observe",
            &lights[0].ep,
            "--count",
            "1",
            "--timeout-ms",
            "8000",
            "--json",
        ]);
        let obs = obs
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(400));
        let mut args = vec![
            "client",
            "--state-dir",
            switch,
            "update",
            "--multicast",
            "--json",
            "--iface",
            iface,
            "--value",
            if on { "on" } else { "off" },
        ];
        args.extend(flags.iter().copied());
        let out = client.run(ssm(), &args, RUN_LIMIT);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let sent: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            sent["sent"].as_array().unwrap().len(),
            1,
            "{name}: exactly one datagram: {sent}"
        );
        // Read back by unicast; a loaded machine may take a while to apply
        // (the floor is fsynced first), so poll, bounded.
        let deadline = Instant::now() + Duration::from_secs(5);
        for l in &lights {
            let mut v = value_of(&client, &l.ep);
            while v != Value::Bool(on) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
                v = value_of(&client, &l.ep);
            }
            assert_eq!(v, Value::Bool(on), "{name}: light {} switched", l.ep);
        }
        let o = obs.wait_with_output().unwrap();
        let notes: Vec<Value> = String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        assert_eq!(
            notes.len(),
            2,
            "{name}: registration + one NOTIFY: {notes:?}"
        );
        assert_eq!(
            notes[1]["body"]["value"],
            Value::Bool(on),
            "{name}: NOTIFY carries the new state"
        );
    }
    drop(lights);
}

#[test]
fn one_switch_five_lights_every_family() {
    if !is_root() {
        eprintln!("not root: running the scenario over IPv4 on lo instead of namespaces");
        scenario(
            Host(None),
            (0..LIGHTS).map(|_| Host(None)).collect(),
            "lo",
            &[("IPv4 on lo", vec![])],
        );
        return;
    }
    let topo = Topology::up(&format!("ssme{}", std::process::id() % 100000), LIGHTS + 1);
    let client = Host(Some(topo.ns(0).to_string()));
    let lights = (1..=LIGHTS)
        .map(|i| Host(Some(topo.ns(i).to_string())))
        .collect();
    scenario(
        client,
        lights,
        "ssm0",
        &[
            ("IPv6 ff02", vec!["--no-ipv4", "--scopes", "2"]),
            ("IPv6 ff05", vec!["--no-ipv4", "--scopes", "5"]),
            ("IPv4", vec!["--no-ipv6"]),
        ],
    );
}

//! Owner-only secrets at rest: after real commissioning with `ssm obt`
//! (a light and a switch, each a process in its own network namespace when
//! root, else on `lo`; onboarded by Random PIN, the switch granted the
//! light, one SSM UPDATE by multicast and one pair-wise OSCORE UPDATE), and
//! for `ssm creds generate`, every file under the state directories and the
//! domain's directory is 0600 and every directory 0700, under the usual
//! umask 022 (so the modes are set explicitly, not inherited). The domain's
//! WAL and shared-memory files are checked while an OBT has it open. A
//! state file or domain made readable by others gets a warning naming it
//! and the `chmod` to run, once per start.
mod common;
use common::*;
use serde_json::Value;
use ssm_testkit::hosts;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

/// Every file and directory under `root` (itself included).
fn walk(root: &Path, out: &mut Vec<PathBuf>) {
    out.push(root.to_path_buf());
    if std::fs::symlink_metadata(root).unwrap().is_dir() {
        for e in std::fs::read_dir(root).unwrap() {
            walk(&e.unwrap().path(), out);
        }
    }
}

fn assert_owner_only(root: &Path) -> Vec<PathBuf> {
    let mut all = Vec::new();
    walk(root, &mut all);
    for p in &all {
        let want = if p.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(
            mode(p),
            want,
            "{} is {:04o}, want {want:04o}",
            p.display(),
            mode(p)
        );
    }
    all
}

fn names(files: &[PathBuf], dir: &Path) -> Vec<String> {
    files
        .iter()
        .filter(|p| p.parent() == Some(dir))
        .filter_map(|p| p.file_name()?.to_str().map(String::from))
        .collect()
}

/// Starts `ssm device` with stderr captured; returns its stderr once it is
/// ready (the warnings come before `ready`), then stops it.
fn stderr_of_a_start(host: &Host, dir: &Path, iface: &str, port: u16) -> String {
    let mut c = host.cmd(ssm());
    c.args(["device", "--json", "--iface", iface, "--port"])
        .arg(port.to_string())
        .arg("--state-dir")
        .arg(dir)
        .env_remove("SSM_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(first.contains("\"ready\""), "device did not start: {first}");
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    err
}

#[test]
fn every_secret_file_is_owner_only() {
    // The usual default: without explicit modes files would be 0644 and
    // directories 0755. Children (and `ip netns exec`) inherit it.
    // SAFETY: umask has no memory-safety preconditions.
    unsafe { libc::umask(0o022) };
    let pid = std::process::id();
    let (topo, hosts, iface) = hosts(&format!("ssmm{}", pid % 100000), 3);
    let port = ssm_testkit::free_udp_port();
    let dir = std::env::temp_dir().join(format!("ssm-modes-{pid}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // `hall` and `obt` do not exist yet: the commands create them.
    let hall = dir.join("hall");
    let (light_dir, switch_dir) = (hall.join("light-0"), hall.join("switch-0"));
    let obt_dir = dir.join("obt");
    let domain = obt_dir.join("domain.sqlite");
    let domain = domain.to_str().unwrap();
    let (obt, light_host, switch_host) = (&hosts[0], &hosts[1], &hosts[2]);

    let light = start(light_host, &light_dir, iface, "light", port);
    let switch = start(switch_host, &switch_dir, iface, "switch", port);
    // Unowned devices show their PIN in a file: owner-only too.
    assert_eq!(mode(&light_dir.join("pin")), 0o600);
    assert_eq!(mode(&light_dir), 0o700);
    assert_eq!(mode(&hall), 0o700);

    let ok = |out: std::process::Output, what: &str| {
        assert!(
            out.status.success(),
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };
    ok(
        obt.ssm(&["obt", "--domain", domain, "init", "--name", "modes"]),
        "init",
    );
    for (d, sd, name, role) in [
        (&light, &light_dir, "light-0", "light"),
        (&switch, &switch_dir, "switch-0", "switch"),
    ] {
        let pin = sd.join("pin");
        let mut a = vec![
            "obt",
            "--domain",
            domain,
            "onboard",
            &d.ep,
            "--pin-file",
            pin.to_str().unwrap(),
            "--name",
            name,
            "--role",
            role,
        ];
        let link = link_args(iface, port);
        a.extend(link.iter().map(String::as_str));
        ok(obt.ssm(&a), name);
    }
    ok(
        obt.ssm(&[
            "obt", "--domain", domain, "ssm", "grant", "switch-0", "light-0",
        ]),
        "grant",
    );
    // The switch's files: SSM sequence numbers, the pair-wise context's.
    light.drain();
    send(switch_host, &switch_dir, iface, port, "on");
    assert!(
        light
            .next("ssm_applied", Instant::now() + Duration::from_secs(5))
            .is_some(),
        "the light applied the SSM update"
    );
    let out = ok(
        switch_host.ssm(&[
            "client",
            "--state-dir",
            switch_dir.to_str().unwrap(),
            "update",
            &light.ep,
            "--value",
            "off",
            "--json",
        ]),
        "unicast update",
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["code"], "2.04", "{v}");

    // The domain while an OBT has it open: its -wal and -shm files exist
    // and got the database's mode.
    let mut d = obt.cmd(ssm());
    d.args(["obt", "--domain", domain, "discover", "--wait-ms", "3000"])
        .args(link_args(iface, port))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut discover = d.spawn().unwrap();
    let (wal, shm) = (
        PathBuf::from(format!("{domain}-wal")),
        PathBuf::from(format!("{domain}-shm")),
    );
    let deadline = Instant::now() + Duration::from_secs(3);
    while !(wal.exists() && shm.exists()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let open_modes = (wal.exists() && shm.exists()).then(|| (mode(&wal), mode(&shm)));
    let _ = discover.kill();
    let _ = discover.wait();
    assert_eq!(
        open_modes,
        Some((0o600, 0o600)),
        "the domain's -wal and -shm while an OBT has it open"
    );

    // `ssm creds generate` state dirs (and the --out dir it creates).
    let gen = dir.join("gen");
    ok(
        obt.ssm(&["creds", "generate", "--out", gen.to_str().unwrap()]),
        "creds generate",
    );
    drop(light);
    drop(switch);

    let files = assert_owner_only(&hall);
    let lf = names(&files, &light_dir);
    for f in ["device.json", "svr.json", "ssm-replay-floors.json"] {
        assert!(lf.iter().any(|n| n == f), "light has {f}: {lf:?}");
    }
    assert!(lf.iter().any(|n| n.starts_with("ssn-")), "{lf:?}");
    let sf = names(&files, &switch_dir);
    assert!(
        sf.iter().filter(|n| n.starts_with("ssn-")).count() >= 2,
        "the switch's SSM and pair-wise sequence numbers: {sf:?}"
    );
    let of = names(&assert_owner_only(&obt_dir), &obt_dir);
    for f in ["domain.sqlite", "domain.sqlite.lock"] {
        assert!(of.iter().any(|n| n == f), "{of:?}");
    }
    let gf = assert_owner_only(&gen);
    assert!(names(&gf, &gen.join("light-0")).contains(&"creds.json".to_string()));

    // Readable by others: a warning naming the file and the fix, once.
    let svr = light_dir.join("svr.json");
    std::fs::set_permissions(&svr, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(&light_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let err = stderr_of_a_start(light_host, &light_dir, iface, port);
    let (s, l) = (svr.display(), light_dir.display());
    let want_file = format!("warning: {s} is readable by others (mode 0644): run chmod 600 {s}");
    let want_dir = format!("warning: {l} is readable by others (mode 0755): run chmod 700 {l}");
    assert_eq!(err.matches(&want_file).count(), 1, "{err}");
    assert_eq!(err.matches(&want_dir).count(), 1, "{err}");
    // Fixed as told: no warning.
    std::fs::set_permissions(&svr, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(&light_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let err = stderr_of_a_start(light_host, &light_dir, iface, port);
    assert!(!err.contains("warning:"), "{err}");
    // The domain.
    std::fs::set_permissions(domain, std::fs::Permissions::from_mode(0o640)).unwrap();
    let out = ok(obt.ssm(&["obt", "--domain", domain, "list"]), "list");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "warning: {domain} is readable by others (mode 0640): run chmod 600 {domain}"
        )),
        "{err}"
    );
    drop(topo);
    let _ = std::fs::remove_dir_all(&dir);
}

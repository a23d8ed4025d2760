//! Configuration with real processes: `ssm.toml` (per user or `--config`)
//! and `SSM_*` variables, precedence flag > environment > file > default;
//! a bad file is a usage error naming it; an empty discovery on the
//! default `lo` says which interface may have been meant.
use serde_json::Value;
use ssm_testkit::TempDir;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

fn ssm(home: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ssm"));
    // Never the real user's settings.
    c.env("XDG_CONFIG_HOME", home)
        .env_remove("SSM_IFACE")
        .env_remove("SSM_DOMAIN")
        .env_remove("SSM_PORT")
        .env_remove("SSM_UNICAST_PORT")
        .stdin(Stdio::null());
    c
}

/// Four consecutive free ports below the ephemeral range, the same each
/// call (`ssm_testkit::free_udp_ports`).
fn base_port() -> u16 {
    static BASE: std::sync::OnceLock<u16> = std::sync::OnceLock::new();
    *BASE.get_or_init(|| ssm_testkit::free_udp_ports(4))
}

/// Starts `ssm device --json` as `c` says and returns its unicast port.
fn device_port(mut c: Command, dir: &Path) -> u16 {
    c.args(["device", "--json", "--iface", "lo", "--state-dir"])
        .arg(dir)
        .stderr(Stdio::null());
    let mut r = ssm_testkit::spawn_ready(c, Duration::from_secs(30));
    let port = r.ready["unicast_port"].as_u64().unwrap() as u16;
    let _ = r.child.kill();
    let _ = r.child.wait();
    port
}

#[test]
fn flag_beats_env_beats_file_beats_default() {
    let tmp = TempDir::new("daydev-config");
    let home = tmp.path().join("xdg");
    std::fs::create_dir_all(home.join("ssm")).unwrap();
    let p = base_port();
    let (file_port, env_port, flag_port, mport) = (p, p + 1, p + 2, p + 3);
    let dev = tmp.path().join("light");

    // Default: an ephemeral unicast port.
    let eph = device_port(ssm(&home), &dev);
    assert!(![file_port, env_port, flag_port].contains(&eph));
    // The per-user file.
    std::fs::write(
        home.join("ssm/ssm.toml"),
        format!("unicast_port = {file_port}\nport = {mport}\n"),
    )
    .unwrap();
    assert_eq!(device_port(ssm(&home), &dev), file_port);
    // The environment over the file.
    let mut c = ssm(&home);
    c.env("SSM_UNICAST_PORT", env_port.to_string());
    assert_eq!(device_port(c, &dev), env_port);
    // The flag over both.
    let mut c = ssm(&home);
    c.env("SSM_UNICAST_PORT", env_port.to_string())
        .args(["device", "--unicast-port", &flag_port.to_string()])
        .args(["--json", "--iface", "lo", "--state-dir"])
        .arg(&dev)
        .stderr(Stdio::null());
    let mut r = ssm_testkit::spawn_ready(c, Duration::from_secs(30));
    assert_eq!(r.ready["unicast_port"], flag_port);
    let _ = r.child.kill();
    let _ = r.child.wait();

    // --config FILE instead of the per-user file.
    let other = tmp.path().join("other.toml");
    std::fs::write(&other, format!("unicast_port = {env_port}\n")).unwrap();
    let mut c = ssm(&home);
    c.args(["--config", other.to_str().unwrap()]);
    assert_eq!(device_port(c, &dev), env_port);

    // SSM_DOMAIN and `domain =` for `ssm obt`; --domain over both.
    let from_file = tmp.path().join("file.sqlite");
    let from_env = tmp.path().join("env.sqlite");
    let from_flag = tmp.path().join("flag.sqlite");
    std::fs::write(
        &other,
        format!("domain = {:?}\n", from_file.to_str().unwrap()),
    )
    .unwrap();
    let init = |extra_env: Option<&Path>, flag: Option<&Path>| {
        let mut c = ssm(&home);
        c.args(["--config", other.to_str().unwrap()]);
        if let Some(e) = extra_env {
            c.env("SSM_DOMAIN", e);
        }
        c.args(["obt", "init", "--name", "cfg", "--json"]);
        if let Some(f) = flag {
            c.arg("--domain").arg(f);
        }
        let out = ssm_testkit::run_with_timeout(c, Duration::from_secs(30));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    init(None, None);
    assert!(from_file.exists());
    init(Some(&from_env), None);
    assert!(from_env.exists());
    init(Some(&from_env), Some(&from_flag));
    assert!(from_flag.exists());
}

#[test]
fn bad_files_are_usage_errors_naming_the_file() {
    let tmp = TempDir::new("daydev-config-bad");
    let home = tmp.path().join("xdg");
    std::fs::create_dir_all(home.join("ssm")).unwrap();
    let f = home.join("ssm/ssm.toml");
    std::fs::write(&f, "ifase = \"iot1\"\n").unwrap();
    let out = ssm_testkit::run_with_timeout(
        {
            let mut c = ssm(&home);
            c.args(["obt", "list"]);
            c
        },
        Duration::from_secs(30),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("ssm.toml") && err.contains("ifase"), "{err}");
    // With --json: one error object.
    let out = ssm_testkit::run_with_timeout(
        {
            let mut c = ssm(&home);
            c.args(["obt", "list", "--json"]);
            c
        },
        Duration::from_secs(30),
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["exit"], 2, "{v}");
    std::fs::remove_file(&f).unwrap();
    let out = ssm_testkit::run_with_timeout(
        {
            let mut c = ssm(&home);
            c.args(["--config", "/nonexistent/ssm.toml", "obt", "list"]);
            c
        },
        Duration::from_secs(30),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("/nonexistent/ssm.toml"), "{err}");
}

#[test]
fn empty_discovery_on_lo_names_the_interfaces() {
    let tmp = TempDir::new("daydev-config-lo");
    // A port nobody listens on: nothing answers.
    let port = (base_port() + 3).to_string();
    for args in [
        vec!["obt", "discover", "--wait-ms", "300", "--port", &port],
        vec!["client", "discover", "--wait-ms", "300", "--port", &port],
    ] {
        let mut c = ssm(tmp.path());
        c.args(&args).current_dir(tmp.path());
        let out = ssm_testkit::run_with_timeout(c, Duration::from_secs(30));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("no devices found on lo; did you mean --iface"),
            "{args:?}: {err}"
        );
    }
}

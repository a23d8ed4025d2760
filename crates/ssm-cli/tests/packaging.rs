//! Packaging: `ssm --version`, the man pages (`ssm man`), the completion
//! scripts, and the hardened systemd units in `packaging/systemd/`
//! (`systemd-analyze verify` and `security --offline`, when systemd is
//! installed; the install itself is exercised by `scripts/test.sh`).
use serde_json::Value;
use ssm_testkit::TempDir;
use std::process::{Command, Output};
use std::time::Duration;

fn ssm(args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ssm"));
    c.args(args);
    ssm_testkit::run_with_timeout(c, Duration::from_secs(30))
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn version_everywhere() {
    let want = format!("ssm {}", env!("CARGO_PKG_VERSION"));
    for args in [
        &["--version"][..],
        &["device", "--version"],
        &["obt", "--version"],
    ] {
        let out = ssm(args);
        assert!(out.status.success(), "{args:?}");
        let v = String::from_utf8_lossy(&out.stdout);
        assert!(
            v.trim().ends_with(env!("CARGO_PKG_VERSION")),
            "{args:?}: {v}"
        );
    }
    assert!(String::from_utf8_lossy(&ssm(&["--version"]).stdout).starts_with(&want));
}

#[test]
fn man_pages_for_every_subcommand() {
    let tmp = TempDir::new("daydev-man");
    let dir = tmp.path().join("man1");
    let out = ssm(&["man", dir.to_str().unwrap(), "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let pages: Vec<String> = v["pages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().rsplit('/').next().unwrap().to_string())
        .collect();
    for want in [
        "ssm.1",
        "ssm-device.1",
        "ssm-device-reset.1",
        "ssm-obt.1",
        "ssm-obt-onboard.1",
        "ssm-client-update.1",
        "ssm-completions.1",
    ] {
        assert!(
            pages.contains(&want.to_string()),
            "{want} missing: {pages:?}"
        );
    }
    let device = std::fs::read_to_string(dir.join("ssm-device.1")).unwrap();
    assert!(device.contains(".TH ssm-device 1"), "{device}");
    assert!(
        device.contains(env!("CARGO_PKG_VERSION")),
        "version in the title"
    );
    for flag in ["power\\-on", "unicast\\-port", "state\\-dir"] {
        assert!(device.contains(flag), "ssm-device.1 lacks --{flag}");
    }
    if have("groff") {
        let o = Command::new("groff")
            .args(["-man", "-Tutf8", "-ww", "-z"])
            .arg(dir.join("ssm-device.1"))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(
            o.stderr.is_empty(),
            "groff warns: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    } else {
        println!("groff not installed: the pages' syntax is not checked");
    }
}

#[test]
fn completions_know_the_new_flags() {
    // Read while it runs (`output`): a script larger than the pipe's
    // buffer would block a wait-then-read.
    let complete = |shell: &str| {
        Command::new(env!("CARGO_BIN_EXE_ssm"))
            .args(["completions", shell])
            .output()
            .unwrap()
    };
    let out = complete("bash");
    let bash = String::from_utf8(out.stdout).unwrap();
    for w in ["reset", "--power-on", "--unicast-port", "--config", "man"] {
        assert!(bash.contains(w), "bash completion lacks {w}");
    }
    let out = complete("zsh");
    assert!(String::from_utf8_lossy(&out.stdout).contains("--power-on"));
}

#[test]
fn systemd_units_verify_and_are_hardened() {
    if !have("systemd-analyze") {
        println!("systemd-analyze not installed: the units are not checked");
        return;
    }
    let tmp = TempDir::new("daydev-units");
    let units = ssm_testkit::repo().join("packaging/systemd");
    for role in ["light", "switch"] {
        let name = format!("ssm-{role}@.service");
        let text = std::fs::read_to_string(units.join(&name)).unwrap();
        for must in [
            "DynamicUser=yes",
            "StateDirectory=ssm/%i",
            "ProtectSystem=strict",
            "ProtectHome=yes",
            "NoNewPrivileges=yes",
            "CapabilityBoundingSet=\n",
            &format!("--role {role}"),
        ] {
            assert!(text.contains(must), "{name} lacks {must:?}");
        }
        // verify checks that the binary exists: point it at the built one.
        let text = text.replace("/usr/local/bin/ssm", env!("CARGO_BIN_EXE_ssm"));
        std::fs::write(tmp.path().join(&name), text).unwrap();
        let instance = tmp.path().join(format!("ssm-{role}@hall-1.service"));
        let o = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&instance)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success() && err.trim().is_empty(), "{name}: {err}");
        let o = Command::new("systemd-analyze")
            .args(["security", "--offline=true", "--no-pager"])
            .arg(tmp.path().join(&name))
            .output()
            .unwrap();
        let report = String::from_utf8_lossy(&o.stdout);
        let level: f64 = report
            .lines()
            .find_map(|l| l.split("exposure level for ").nth(1))
            .and_then(|l| l.split(": ").nth(1))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{name}: no exposure level in {report}"));
        println!("{name}: systemd-analyze security exposure {level}");
        assert!(level <= 2.0, "{name}: exposure {level}\n{report}");
    }
}

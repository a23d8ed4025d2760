//! Exit statuses a script can rely on: a closed stdout (`ssm … | head`)
//! ends a command quietly (status 0, or killed by SIGPIPE: 141 in a
//! shell), never with a panic; a usage error, hand-made or clap's, exits 2,
//! and with `--json` also prints `{"error": …, "exit": 2}` on stdout.
use serde_json::Value;
use ssm_testkit::TempDir;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

fn ssm() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ssm"));
    c.env_remove("SSM_LOG");
    c
}

/// A port of its own (multicast on lo is shared by parallel tests).
fn port(offset: u32) -> String {
    ssm_testkit::test_port(offset).to_string()
}

/// Runs `ssm args` with stdout a pipe whose reading end is already closed
/// (a `head` that has finished): status and stderr, within 60 s.
fn into_closed_pipe(args: &[&str]) -> (ExitStatus, String) {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut child = ssm()
        .args(args)
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ssm {args:?} still runs with a closed stdout");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    (status, err)
}

fn assert_quiet_end(args: &[&str]) {
    let (status, err) = into_closed_pipe(args);
    assert!(!err.contains("panicked"), "ssm {args:?} panicked: {err}");
    assert!(
        status.code() == Some(0) || status.signal() == Some(libc::SIGPIPE),
        "ssm {args:?} into a closed pipe: {status:?} (want 0 or SIGPIPE); stderr: {err}"
    );
}

#[test]
fn closed_stdout_ends_quietly() {
    let dir = TempDir::new("exit-pipe");
    let domain = dir.join("d.sqlite");
    let domain = domain.to_str().unwrap();
    let out = ssm()
        .args(["obt", "--domain", domain, "init", "--name", "pipes"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_quiet_end(&["obt", "--domain", domain, "list"]);
    assert_quiet_end(&["obt", "--domain", domain, "list", "--json"]);
    let state = dir.join("light");
    let p = port(0);
    assert_quiet_end(&[
        "device",
        "--json",
        "--iface",
        "lo",
        "--port",
        &p,
        "--state-dir",
        state.to_str().unwrap(),
    ]);
    assert_quiet_end(&[
        "client",
        "discover",
        "--iface",
        "lo",
        "--port",
        &p,
        "--wait-ms",
        "100",
    ]);
    let p = port(1);
    assert_quiet_end(&["demo", "--lights", "1", "--port", &p]);
    assert_quiet_end(&["completions", "bash"]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// As a shell runs it: `ssm demo | head -2` prints two lines, and the demo
/// ends at its next write (141) or had nothing more to write (0).
#[test]
fn demo_into_head() {
    let p = port(2);
    let out = Command::new("bash")
        .args([
            "-c",
            &format!(
                "'{}' demo --lights 2 --port {p} | head -2; echo \"status=${{PIPESTATUS[0]}}\"",
                env!("CARGO_BIN_EXE_ssm")
            ),
        ])
        .env_remove("SSM_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(
        lines[2] == "status=141" || lines[2] == "status=0",
        "{stdout}\n{err}"
    );
}

/// `ssm args` (60 s at most): status code, stdout, stderr.
fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let out = ssm().args(args).stdin(Stdio::null()).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn state_dir_with_creds(dir: &Path) -> PathBuf {
    let (code, _, err) = run(&["creds", "generate", "--out", dir.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    dir.join("switch-0")
}

#[test]
fn usage_errors_exit_2_with_json() {
    let dir = TempDir::new("exit-usage");
    let sw = state_dir_with_creds(&dir.join("g"));
    let sw = sw.to_str().unwrap();
    let domain = dir.join("d.sqlite");
    let domain = domain.to_str().unwrap();
    assert_eq!(run(&["obt", "--domain", domain, "init"]).0, Some(0));
    let gen = dir.join("g2");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        // Hand-made checks.
        (
            vec!["client", "--state-dir", sw, "update", "--value", "on"],
            "give a device endpoint, or --multicast",
        ),
        (vec!["client", "get", "not an endpoint"], "coap://host:port"),
        (
            vec!["client", "get", "coap://300.1.1.1:5683"],
            "bad address",
        ),
        (
            vec![
                "client",
                "--state-dir",
                sw,
                "observe",
                "coap://[fe80::1%nosuchif]:5683",
            ],
            "unknown zone",
        ),
        (
            vec![
                "creds",
                "generate",
                "--out",
                gen.to_str().unwrap(),
                "--lights",
                "0",
            ],
            "at least one light",
        ),
        (
            vec!["obt", "--domain", domain, "onboard", "--pin", "12345678"],
            "give the device endpoint, or --all",
        ),
        (
            vec!["obt", "--domain", domain, "onboard", "--all"],
            "--all needs --pins",
        ),
        (
            vec![
                "obt",
                "--domain",
                domain,
                "onboard",
                "coap://127.0.0.1:9",
                "--pin",
                "123",
            ],
            "8 digits",
        ),
        (
            vec!["obt", "--domain", domain, "ssm", "grant", "nobody"],
            "no device nobody",
        ),
        // clap's own.
        (
            vec!["client", "--state-dir", sw, "update", "--value", "maybe"],
            "invalid value 'maybe'",
        ),
        (vec!["device", "--role", "lamp"], "invalid value 'lamp'"),
    ];
    for (args, hint) in cases {
        let (code, _, err) = run(&args);
        assert!(!err.contains("panicked"), "ssm {args:?} panicked: {err}");
        assert!(err.contains(hint), "ssm {args:?}: {err:?} lacks {hint:?}");
        if hint == "no device nobody" {
            // Not a usage error: a device the domain does not know.
            assert_eq!(code, Some(1), "ssm {args:?}: {err}");
            continue;
        }
        assert_eq!(code, Some(2), "ssm {args:?}: {err}");
        let mut j = args.clone();
        j.push("--json");
        let (code, out, err) = run(&j);
        assert_eq!(code, Some(2), "ssm {j:?}: {err}");
        let v: Value = serde_json::from_str(out.trim())
            .unwrap_or_else(|e| panic!("ssm {j:?}: not one JSON object ({e}): {out:?}"));
        assert_eq!(v["exit"], 2, "{v}");
        assert!(
            v["error"].as_str().is_some_and(|e| e.contains(hint)),
            "ssm {j:?}: {v}"
        );
    }
    // Other errors keep their status, under --json too.
    let missing = dir.join("none.sqlite");
    let (code, out, _) = run(&[
        "obt",
        "--domain",
        missing.to_str().unwrap(),
        "list",
        "--json",
    ]);
    assert_eq!(code, Some(3));
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["exit"], 3, "{v}");
    let _ = std::fs::remove_dir_all(&dir);
}

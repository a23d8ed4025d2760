//! The command line is coherent: every subcommand (found by walking
//! `--help`) has help with examples and the global -v/-q flags; commands
//! that print results offer --json; completions are generated; bad input
//! gets a clear error and a non-zero exit, never a panic.
use std::process::{Command, Output};

fn ssm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ssm"))
        .args(args)
        .env_remove("SSM_LOG")
        .output()
        .expect("run ssm")
}

/// Subcommand names listed under "Commands:" in a help text.
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .filter(|n| n != "help")
        .collect()
}

#[test]
fn every_subcommand_has_help_with_examples() {
    let top = ssm(&["--help"]);
    assert!(top.status.success());
    let top = String::from_utf8(top.stdout).unwrap();
    let mut todo: Vec<Vec<String>> = subcommands(&top).into_iter().map(|n| vec![n]).collect();
    for expected in ["demo", "device", "client", "obt", "creds", "completions"] {
        assert!(
            todo.iter().any(|p| p[0] == expected),
            "ssm {expected} missing: {top}"
        );
    }
    let mut seen = 0;
    while let Some(path) = todo.pop() {
        seen += 1;
        assert!(seen < 200, "runaway walk");
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let out = ssm(&args);
        let name = path.join(" ");
        assert!(out.status.success(), "ssm {name} --help failed");
        let help = String::from_utf8(out.stdout).unwrap();
        assert!(
            help.contains(&format!("Usage: ssm {name}")),
            "ssm {name} --help: {help}"
        );
        assert!(
            help.contains("\nExamples:\n  ssm ") || help.contains("\nExamples:\n  sudo ssm "),
            "ssm {name} --help has no examples (add them in src/examples.rs)"
        );
        assert!(
            help.contains("-v, --verbose") && help.contains("-q, --quiet"),
            "ssm {name} --help lacks -v/-q"
        );
        let subs = subcommands(&help);
        if subs.is_empty() && path[0] != "completions" {
            assert!(help.contains("--json"), "ssm {name} has no --json");
        }
        for s in subs {
            let mut p = path.clone();
            p.push(s);
            todo.push(p);
        }
    }
    assert!(seen >= 12, "walked only {seen} subcommands");
}

#[test]
fn completions_for_every_shell() {
    let out = ssm(&["completions", "bash"]);
    assert!(out.status.success());
    let bash = String::from_utf8(out.stdout).unwrap();
    assert!(bash.contains("_ssm()"), "{bash}");
    assert!(bash.contains("complete -F _ssm"), "registers the function");
    for word in [
        "demo",
        "device",
        "client",
        "obt",
        "creds",
        "completions",
        "--lights",
        "--state-dir",
    ] {
        assert!(bash.contains(word), "bash completion lacks {word}");
    }
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let out = ssm(&["completions", shell]);
        assert!(out.status.success(), "{shell}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("demo"),
            "{shell}"
        );
    }
    let out = ssm(&["completions", "tcsh"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("possible values"));
}

#[test]
fn clear_errors_never_panics() {
    let dir = std::env::temp_dir().join(format!("ssm-cli-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let domain = dir.join("none.sqlite");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["demo".into(), "--lights".into(), "0".into()],
            "--lights",
        ),
        (
            vec![
                "obt".into(),
                "--domain".into(),
                domain.display().to_string(),
                "list".into(),
            ],
            "ssm obt init",
        ),
        (
            vec![
                "client".into(),
                "--state-dir".into(),
                dir.display().to_string(),
                "update".into(),
                "--multicast".into(),
                "--value".into(),
                "on".into(),
            ],
            "no SSM client credential",
        ),
        (
            vec!["client".into(), "get".into(), "not an endpoint".into()],
            "coap://host:port",
        ),
        (vec!["device".into()], "--state-dir"),
        (vec!["frobnicate".into()], "unrecognized subcommand"),
    ];
    for (args, hint) in cases {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = ssm(&a);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "ssm {a:?} succeeded");
        assert!(!err.contains("panicked"), "ssm {a:?} panicked: {err}");
        assert!(
            err.contains(hint),
            "ssm {a:?}: {err:?} should mention {hint:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

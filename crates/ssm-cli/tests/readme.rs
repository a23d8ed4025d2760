//! README.md stays true: every command block marked
//! `<!-- runnable ... -->` is executed (in a temporary directory, with this
//! build's `ssm` on the PATH, loopback only, no root, with a timeout, and
//! every process it leaves behind killed); every code excerpt marked
//! `<!-- from FILE ... -->` is found verbatim in FILE; the CLI reference
//! names every subcommand.
use ssm_testkit::repo;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn readme() -> String {
    std::fs::read_to_string(repo().join("README.md")).expect("README.md")
}

/// The fenced blocks that follow a line starting with `marker`:
/// (the marker line, the block's text).
fn marked_blocks(text: &str, marker: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(l) = lines.next() {
        if !l.trim_start().starts_with(marker) {
            continue;
        }
        let fence = lines.next().unwrap_or_default();
        assert!(
            fence.starts_with("```"),
            "{l:?} must be followed by a fenced block"
        );
        let mut body = String::new();
        for b in lines.by_ref() {
            if b.starts_with("```") {
                break;
            }
            body.push_str(b);
            body.push('\n');
        }
        out.push((l.to_string(), body));
    }
    out
}

struct Scratch(PathBuf);
impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn runnable_blocks_run() {
    let blocks = marked_blocks(&readme(), "<!-- runnable");
    assert!(
        (2..=6).contains(&blocks.len()),
        "keep a few runnable blocks (found {})",
        blocks.len()
    );
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_ssm"))
        .parent()
        .unwrap()
        .to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for (k, (_, block)) in blocks.iter().enumerate() {
        // Loopback only, and nothing that needs root.
        for forbidden in ["sudo", "--ipv6", "eth0"] {
            assert!(
                !block.contains(forbidden),
                "block {k} uses {forbidden}: {block}"
            );
        }
        for w in block.split_whitespace().collect::<Vec<_>>().windows(2) {
            if w[0] == "--iface" {
                assert_eq!(w[1], "lo", "block {k} names an interface: {block}");
            }
        }
        let dir =
            Scratch(std::env::temp_dir().join(format!("ssm-readme-{}-{k}", std::process::id())));
        let _ = std::fs::remove_dir_all(&dir.0);
        std::fs::create_dir_all(&dir.0).unwrap();
        std::fs::write(
            dir.0.join("block.sh"),
            format!("set -euo pipefail\n{block}"),
        )
        .unwrap();
        let mut child = Command::new("bash")
            .arg("block.sh")
            .current_dir(&dir.0)
            .env("PATH", &path)
            .env("HOME", &dir.0)
            .env("TMPDIR", &dir.0)
            .env_remove("XDG_DATA_HOME")
            .env_remove("SSM_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("bash");
        let pgid = child.id();
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break Some(st);
            }
            if Instant::now() > deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        // Whatever the block left running (background devices) goes too.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pgid}")])
            .stderr(Stdio::null())
            .status();
        let out = child.wait_with_output().unwrap();
        let report = format!(
            "README block {k}:\n{block}\nstdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        match status {
            None => panic!("timed out after 60 s: {report}"),
            Some(st) => assert!(st.success(), "exit {st}: {report}"),
        }
    }
}

#[test]
fn excerpts_match_their_files() {
    let blocks = marked_blocks(&readme(), "<!-- from ");
    assert!(!blocks.is_empty(), "the library example is shown");
    for (marker, body) in blocks {
        let file = marker
            .trim_start_matches("<!-- from ")
            .split_whitespace()
            .next()
            .unwrap();
        let text =
            std::fs::read_to_string(repo().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(
            text.contains(body.trim_end()),
            "README's excerpt of {file} differs from the file:\n{body}"
        );
    }
}

#[test]
fn cli_reference_names_every_subcommand() {
    let text = readme();
    let help = Command::new(env!("CARGO_BIN_EXE_ssm"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    let names: Vec<&str> = help
        .lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "help")
        .collect();
    assert!(names.len() >= 6, "{help}");
    for n in names {
        assert!(
            text.contains(&format!("`ssm {n}")),
            "README's CLI reference lacks `ssm {n}`"
        );
    }
}

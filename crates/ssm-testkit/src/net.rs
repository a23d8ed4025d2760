//! Where test processes run: network namespaces made by
//! `tests/netns/topology.sh` when root, else this host on `lo`.
use crate::process::run_with_timeout;
use std::ffi::OsStr;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// Root, with `ip` available: namespaces can be made.
pub fn is_root() -> bool {
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

/// A namespace topology (`topology.sh up PREFIX N`), deleted on drop.
/// `nodes` are its `node …` lines split on whitespace (the namespace name
/// is field 2).
pub struct Topology {
    pub prefix: String,
    pub nodes: Vec<Vec<String>>,
}

impl Topology {
    pub fn up(prefix: &str, n: usize) -> Topology {
        let out = Command::new("bash")
            .arg(crate::repo().join("tests/netns/topology.sh"))
            .args(["up", prefix, &n.to_string()])
            .stderr(Stdio::inherit())
            .output()
            .expect("run topology.sh");
        // Torn down on drop even if `up` half failed.
        let t = Topology {
            prefix: prefix.into(),
            nodes: String::from_utf8(out.stdout)
                .unwrap()
                .lines()
                .filter(|l| l.starts_with("node "))
                .map(|l| l.split_whitespace().map(String::from).collect())
                .collect(),
        };
        assert!(out.status.success(), "topology.sh up failed");
        assert_eq!(t.nodes.len(), n);
        t
    }

    /// The namespace of node `i`.
    pub fn ns(&self, i: usize) -> &str {
        &self.nodes[i][2]
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(crate::repo().join("tests/netns/topology.sh"))
            .args(["down", &self.prefix])
            .status();
    }
}

/// `n` hosts: namespaces PREFIX-n0.. on a bridge (interface `ssm0`) when
/// root, else `n` times this host (interface `lo`).
pub fn hosts(prefix: &str, n: usize) -> (Option<Topology>, Vec<Host>, &'static str) {
    if is_root() {
        let t = Topology::up(prefix, n);
        let hosts = (0..n)
            .map(|i| Host(Some(format!("{prefix}-n{i}"))))
            .collect();
        (Some(t), hosts, "ssm0")
    } else {
        eprintln!("not root: running on lo with IPv4 multicast instead of namespaces");
        (None, (0..n).map(|_| Host(None)).collect(), "lo")
    }
}

/// Where a process runs: a namespace, or this host (loopback fallback).
#[derive(Clone, Debug)]
pub struct Host(pub Option<String>);

impl Host {
    /// `bin` in this host's namespace.
    pub fn cmd(&self, bin: impl AsRef<OsStr>) -> Command {
        match &self.0 {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec"]).arg(ns).arg(bin);
                c
            }
            None => Command::new(bin),
        }
    }

    /// Runs `bin args…` to the end; panics with its stderr after `limit`.
    pub fn run(&self, bin: impl AsRef<OsStr>, args: &[&str], limit: Duration) -> Output {
        let mut c = self.cmd(bin);
        c.args(args);
        run_with_timeout(c, limit)
    }
}

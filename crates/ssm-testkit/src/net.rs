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

/// A namespace topology (`topology.sh up PREFIX N`, or `routed PREFIX NA
/// NB NC`), deleted on drop (also its multicast router). `nodes` are its
/// `node …` lines split on whitespace (the namespace name is field 2, the
/// IPv4 address field 5, the IPv6 ULA field 7, the subnet letter of a
/// routed topology field 8).
pub struct Topology {
    pub prefix: String,
    pub nodes: Vec<Vec<String>>,
    /// Routed: the router's namespace and its smcroute configuration file.
    pub router: Option<(String, std::path::PathBuf)>,
}

impl Topology {
    /// One subnet: `n` nodes on one bridge.
    pub fn up(prefix: &str, n: usize) -> Topology {
        let t = Topology::run(prefix, &["up", prefix, &n.to_string()]);
        assert_eq!(t.nodes.len(), n);
        t
    }

    /// Three subnets a, b, c (10.0.1-3.0/24, fd00:a-c::/64) with
    /// `per_subnet[k]` nodes each, numbered across them (a's first), joined
    /// by a router namespace running smcroute with static routes for
    /// ff05::158 and 224.0.1.187; unicast between subnets is routed.
    /// Needs `smcrouted` (Debian package smcroute).
    pub fn routed(prefix: &str, per_subnet: [usize; 3]) -> Topology {
        let n: Vec<String> = per_subnet.iter().map(|k| k.to_string()).collect();
        let t = Topology::run(prefix, &["routed", prefix, &n[0], &n[1], &n[2]]);
        assert_eq!(t.nodes.len(), per_subnet.iter().sum::<usize>());
        assert!(t.router.is_some(), "topology.sh printed no router line");
        t
    }

    fn run(prefix: &str, args: &[&str]) -> Topology {
        let out = Command::new("bash")
            .arg(crate::repo().join("tests/netns/topology.sh"))
            .args(args)
            .stderr(Stdio::inherit())
            .output()
            .expect("run topology.sh");
        let text = String::from_utf8(out.stdout).unwrap();
        // Torn down on drop even if bringing it up half failed.
        let t = Topology {
            prefix: prefix.into(),
            nodes: text
                .lines()
                .filter(|l| l.starts_with("node "))
                .map(|l| l.split_whitespace().map(String::from).collect())
                .collect(),
            router: text.lines().find_map(|l| {
                let f: Vec<&str> = l.strip_prefix("router ")?.split_whitespace().collect();
                Some((f.first()?.to_string(), f.get(1)?.into()))
            }),
        };
        assert!(out.status.success(), "topology.sh {} failed", args[0]);
        t
    }

    /// The namespace of node `i`.
    pub fn ns(&self, i: usize) -> &str {
        &self.nodes[i][2]
    }

    /// The global (ULA) IPv6 address of node `i`.
    pub fn ula(&self, i: usize) -> &str {
        &self.nodes[i][7]
    }

    /// The IPv4 address of node `i`.
    pub fn ipv4(&self, i: usize) -> &str {
        &self.nodes[i][5]
    }

    /// The host of node `i`.
    pub fn host(&self, i: usize) -> Host {
        Host(Some(self.ns(i).to_string()))
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

//! Test support shared by the workspace's tests: the reference vectors,
//! temp dirs, the root check, namespace topologies (`tests/netns/topology.sh`),
//! hosts (a namespace, or this host on `lo`), commands run with a bounded
//! timeout, processes waited for their ready JSON line, and third-party
//! peers driven through their text menus ([`MenuApp`]), and UDP ports
//! for tests on `lo` that no ephemeral bind can take ([`free_udp_port`]).
//!
//! The binary under test is always given by the caller:
//! `env!("CARGO_BIN_EXE_ssm")` exists only inside ssm-cli's tests.
mod menu;
mod net;
mod ports;
mod process;
mod tempdir;
mod vectors;

pub use menu::{menu_index, MenuApp};
pub use net::{hosts, is_root, Host, Topology};
pub use ports::{free_udp_port, free_udp_ports, test_port, udp_port_is_free};
pub use process::{run_with_timeout, spawn_ready, Ready};
pub use tempdir::TempDir;
pub use vectors::{hex, load, opt_hex, shared_dir};

use std::path::PathBuf;

/// The workspace root (canonical: no `..` in it).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

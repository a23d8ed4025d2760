//! `ssm device reset`: factory reset of a device's state dir
//! ([`StateDir::factory_reset`]), while the device is not running.
use anyhow::{Context, Result};
use ssm_runtime::state_dir::StateDir;
use std::path::PathBuf;

/// Options of `ssm device reset`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The device's state directory.
    #[arg(long)]
    state_dir: PathBuf,
    /// JSON on stdout.
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> Result<bool> {
    let dir = StateDir::new(&a.state_dir);
    if !dir.identity_path().exists() && !dir.svr_path().exists() {
        anyhow::bail!(
            "{} is not a device state dir (no device.json or svr.json)",
            a.state_dir.display()
        );
    }
    crate::state::check_state_dir(&a.state_dir);
    // Held for the whole reset: a device cannot start on the dir meanwhile,
    // and a running one makes the reset refuse (it names its pid).
    let _lock = dir.lock().context("cannot reset")?;
    let id = dir
        .factory_reset(ssm_ocf::Uuid::new_v4(), "light")
        .with_context(|| format!("cannot reset {}", a.state_dir.display()))?;
    if a.json {
        println!(
            "{}",
            serde_json::json!({"event": "reset", "uuid": id.deviceuuid, "name": id.name, "state_dir": a.state_dir})
        );
    } else {
        println!(
            "factory reset: '{}' is unowned, new UUID {}",
            id.name, id.deviceuuid
        );
        println!("  credentials, ACLs, owner, replay floors and sequence numbers wiped");
        println!(
            "  a new Random PIN is shown when it starts: ssm device --state-dir {}",
            a.state_dir.display()
        );
    }
    Ok(true)
}

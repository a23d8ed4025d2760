//! `ssm creds generate`: a consistent credential set for one SSM group, so
//! a person can try SSM before onboarding exists.
use crate::state::{creds_path, identity_path, Identity};
use anyhow::{bail, Context, Result};
use ssm_ocf::provision::generate_group;
use ssm_ocf::Uuid;
use ssm_runtime::store::atomic_write;
use std::path::PathBuf;

/// `ssm creds …`
#[derive(clap::Subcommand, Debug)]
pub enum Cmd {
    /// Make state directories with credentials for N lights and M switches.
    ///
    /// Every switch gets its own SSM Sender ID (credtype 128); every light
    /// one SSM Server credential per switch (credtype 256) and a pair-wise
    /// OSCORE credential (64) per switch. Example:
    /// `ssm creds generate --out hall --lights 3 --switches 1`, then
    /// `ssm device --state-dir hall/light-0` and
    /// `ssm client --state-dir hall/switch-0 update --multicast --value on`.
    Generate {
        /// Output directory (light-N/ and switch-N/ are created in it).
        #[arg(long)]
        out: PathBuf,
        /// Number of lights.
        #[arg(long, default_value_t = 3)]
        lights: usize,
        /// Number of switches (clients).
        #[arg(long, default_value_t = 1)]
        switches: usize,
        /// Replace existing state directories.
        #[arg(long)]
        force: bool,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: Cmd) -> Result<bool> {
    let Cmd::Generate {
        out,
        lights,
        switches,
        force,
        json,
    } = cmd;
    if lights == 0 || switches == 0 {
        return Err(crate::usage!(
            "need at least one light and one switch (--lights, --switches)"
        ));
    }
    let mut rng = |b: &mut [u8]| b.copy_from_slice(&ssm_runtime::random_bytes::<64>()[..b.len()]);
    let owner = Uuid::new_v4();
    let (ls, cs) = generate_group(lights, switches, owner, &mut rng);
    let mut written = Vec::new();
    for (kind, members) in [("light", &ls), ("switch", &cs)] {
        for (i, m) in members.iter().enumerate() {
            let dir = out.join(format!("{kind}-{i}"));
            if dir.join("creds.json").exists() && !force {
                bail!(
                    "{} already has credentials (use --force to replace them)",
                    dir.display()
                );
            }
            if force && dir.exists() {
                std::fs::remove_dir_all(&dir)
                    .with_context(|| format!("cannot clear {}", dir.display()))?;
            }
            ssm_runtime::store::create_private_dir(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let id = Identity {
                deviceuuid: m.uuid,
                name: format!("{kind} {i}"),
            };
            atomic_write(
                &identity_path(&dir),
                serde_json::to_string_pretty(&id)?.as_bytes(),
            )?;
            atomic_write(&creds_path(&dir), m.creds.to_json().as_bytes())?;
            written.push(serde_json::json!({"kind": kind, "dir": dir, "deviceuuid": m.uuid, "creds": m.creds.creds.len()}));
        }
    }
    if json {
        println!("{}", serde_json::json!({"group": written}));
    } else {
        for w in &written {
            println!(
                "{:<7} {}  {}  ({} credentials)",
                w["kind"].as_str().unwrap_or(""),
                w["dir"].as_str().unwrap_or(""),
                w["deviceuuid"].as_str().unwrap_or(""),
                w["creds"]
            );
        }
        println!(
            "\nnext: ssm device --state-dir {}/light-0   (one per light, in its own terminal)",
            out.display()
        );
        println!(
            "      ssm client --state-dir {}/switch-0 update --multicast --value on",
            out.display()
        );
    }
    Ok(true)
}

//! `ssm obt`: the onboarding tool.
//!
//! Every change to the domain is first written to the store in one
//! transaction that also marks the devices it concerns `stale`; then those
//! devices are brought up to date (lights first, then switches) and marked
//! `provisioned` one by one. A crash, an offline device or a refused step
//! leaves the truth in the store: `ssm obt list` shows what is stale, and
//! `ssm obt sync` (or re-running the command) finishes the job.
use anyhow::Result;
use ssm_obt::engine::Synced;
use ssm_obt::store::StoreError;
use std::path::PathBuf;

pub(crate) use crate::engine_ui::{engine_err, progress};

mod args;
mod backup;
mod cmd;
mod external;
mod group;
mod live;
mod sheet_out;
mod show;

pub use args::Args;
use args::{Cmd, SsmCmd};

/// Exit status of a command whose domain store could not be used (locked,
/// missing, from a newer version, corrupt): scripts can tell it from a
/// failed operation (1) and a usage error (2).
pub const EXIT_STORE: u8 = 3;

/// The exit status for an error of `ssm obt` (and of every command: 2 for
/// a usage error, else 1).
pub fn exit_code(e: &anyhow::Error) -> u8 {
    if crate::usage::is_usage(e) {
        crate::usage::EXIT_USAGE
    } else if e.chain().any(|c| {
        c.downcast_ref::<StoreError>()
            .is_some_and(|s| !s.is_request())
    }) {
        EXIT_STORE
    } else {
        1
    }
}

fn default_domain() -> PathBuf {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("ssm/domain.sqlite")
}

/// Prints a sync report; true if every device is up to date.
fn report_sync(results: &[Synced], json: bool, what: serde_json::Value) -> bool {
    let failed: Vec<&Synced> = results.iter().filter(|r| r.outcome.is_err()).collect();
    if json {
        let v: Vec<_> = results
            .iter()
            .map(|r| match &r.outcome {
                Ok(p) => serde_json::json!({"name": r.name, "uuid": r.uuid, "synced": true,
                    "creds_added": p.creds_added, "creds_removed": p.creds_removed.len(), "creds_updated": p.creds_updated.len(),
                    "aces_added": p.aces_added, "aces_removed": p.aces_removed.len()}),
                Err(e) => {
                    serde_json::json!({"name": r.name, "uuid": r.uuid, "synced": false, "error": e})
                }
            })
            .collect();
        let mut out = what;
        out["devices"] = serde_json::Value::Array(v);
        out["stale"] = serde_json::json!(failed.len());
        println!("{out}");
    } else {
        println!(
            "{} device(s) up to date, {} stale",
            results.len() - failed.len(),
            failed.len()
        );
        for f in &failed {
            if let Err(e) = &f.outcome {
                println!("  stale {} ({}): {e}", f.name, f.uuid);
            }
        }
        if !failed.is_empty() {
            println!("bring them online, then run `ssm obt sync`");
        }
    }
    failed.is_empty()
}

/// Where `ssm obt onboard` takes the PIN from: `--pin` as given (a device
/// with a fixed PIN), else read once the device was told to use Random PIN
/// (`oxmsel`; the reference stack shows a new PIN for each): from
/// `--pin-file`, or asked for on the terminal, or, without one, one line
/// read from stdin after a prompt line on stderr.
fn pin_source(pin: Option<String>, pin_file: Option<PathBuf>) -> Result<ssm_obt::engine::Pin> {
    use ssm_obt::engine::Pin;
    if let Some(p) = pin {
        check_pin(&p).map_err(|_| crate::usage!("--pin: a Random PIN is 8 digits"))?;
        return Ok(Pin::Given(p));
    }
    Ok(Pin::Ask(std::sync::Arc::new(move || {
        let pin = match &pin_file {
            Some(f) => std::fs::read_to_string(f)
                .map_err(|e| format!("cannot read the PIN from {}: {e}", f.display()))?
                .trim()
                .to_string(),
            None => prompt_pin().map_err(|e| format!("cannot read the PIN: {e}"))?,
        };
        check_pin(&pin)?;
        Ok(pin)
    })))
}

/// The PIN typed on the terminal, or one line of stdin.
fn prompt_pin() -> std::io::Result<String> {
    use std::io::{BufRead, IsTerminal, Write};
    if std::io::stdin().is_terminal() {
        eprint!("PIN shown by the device: ");
    } else {
        eprintln!("PIN shown by the device (one line on stdin):");
    }
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line)? == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "stdin ended (give --pin or --pin-file)",
        ));
    }
    Ok(line.trim().to_string())
}

fn check_pin(pin: &str) -> Result<(), String> {
    if pin.len() != 8 || !pin.bytes().all(|c| c.is_ascii_digit()) {
        return Err("a Random PIN is 8 digits".into());
    }
    Ok(())
}

/// Runs `ssm obt …`; with `--json` an error is also printed as
/// `{"error": "…", "exit": N}` on stdout (by `main`, as for every command).
pub async fn run(a: Args) -> Result<bool> {
    let path = a.domain.clone().unwrap_or_else(default_domain);
    crate::state::warn_open_to_others(ssm_obt::store::domain_open_to_others(&path));
    let json = a.json;
    match a.cmd {
        Cmd::Init { name, auto_ssm } => cmd::init(&path, &name, auto_ssm, json),
        Cmd::Discover { link, wait_ms } => cmd::discover(&path, &link, wait_ms, json).await,
        c @ Cmd::Onboard { .. } => cmd::onboard(&path, c, json).await,
        Cmd::List => show::list(&path, json),
        Cmd::Status {
            watch,
            count,
            for_,
            timeout_ms,
            link,
        } => live::status(&path, watch, count, for_, timeout_ms, &link, json).await,
        Cmd::Rename { old, new } => live::rename(&path, &old, &new, json).await,
        Cmd::Inspect { device, timeout_ms } => {
            live::inspect(&path, &device, timeout_ms, json).await
        }
        Cmd::Export {
            file,
            passphrase_file,
            force,
        } => backup::export(&path, &file, passphrase_file, force, json),
        Cmd::Import {
            file,
            passphrase_file,
            force,
        } => backup::import(&path, &file, passphrase_file, force, json),
        Cmd::Show { device } => show::show(&path, &device, json),
        Cmd::Offboard { device, work } => cmd::offboard(&path, &device, &work, json).await,
        Cmd::Sync { devices, all, work } => cmd::sync(&path, devices, all, &work, json).await,
        Cmd::Ssm(SsmCmd::Grant {
            client,
            group: Some(g),
            work,
            ..
        }) => group::grant(&path, &client, &g, &work, json).await,
        Cmd::Ssm(SsmCmd::Grant {
            client,
            lights,
            all,
            work,
            group: None,
        }) => cmd::grant(&path, &client, &lights, all, &work, json).await,
        Cmd::Ssm(SsmCmd::Revoke {
            client,
            group: Some(g),
            work,
            ..
        }) => group::revoke(&path, &client, &g, &work, json).await,
        Cmd::Ssm(SsmCmd::Revoke {
            client,
            lights,
            all,
            work,
            group: None,
        }) => cmd::revoke(&path, &client, &lights, all, &work, json).await,
        Cmd::Ssm(SsmCmd::Rekey { work }) => cmd::rekey(&path, &work, json).await,
        Cmd::Group(g) => group::run(&path, g, json).await,
        Cmd::External(e) => external::run(&path, e, json).await,
    }
}

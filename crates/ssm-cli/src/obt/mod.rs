//! `ssm obt`: the onboarding tool.
//!
//! Every change to the domain is first written to the store in one
//! transaction that also marks the devices it concerns `stale`; then those
//! devices are brought up to date (lights first, then switches) and marked
//! `provisioned` one by one. A crash, an offline device or a refused step
//! leaves the truth in the store: `ssm obt list` shows what is stale, and
//! `ssm obt sync` (or re-running the command) finishes the job.
use anyhow::{bail, Context, Result};
use ssm_obt::engine::{EngineError, Progress, Synced};
use ssm_obt::store::StoreError;
use std::path::PathBuf;

mod args;
mod cmd;
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
            .is_some_and(|s| !matches!(s, StoreError::UnknownDevice(_)))
    }) {
        EXIT_STORE
    } else {
        1
    }
}

/// An engine error as the CLI reports it: store errors keep their type
/// (exit status [`EXIT_STORE`]), a request that cannot mean anything is a
/// usage error (2).
pub(crate) fn engine_err(e: EngineError) -> anyhow::Error {
    match e {
        EngineError::Store(s) => s.into(),
        e if e.is_usage() => crate::usage!("{e}"),
        e => e.into(),
    }
}

/// A progress callback drawing a bar on a terminal's stderr (when `show`).
pub(crate) fn progress(show: bool) -> impl Fn(Progress) + Sync {
    let bar = std::sync::OnceLock::new();
    move |p| match p {
        Progress::Start { total, what } => {
            let _ = bar.set(progress_bar(total, show, what));
        }
        Progress::Step => {
            if let Some(b) = bar.get() {
                b.inc(1)
            }
        }
        Progress::Finish => {
            if let Some(b) = bar.get() {
                b.finish_and_clear()
            }
        }
    }
}

fn progress_bar(len: usize, show: bool, what: &'static str) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    let bar = indicatif::ProgressBar::new(len as u64);
    if show && std::io::stderr().is_terminal() {
        bar.set_style(
            indicatif::ProgressStyle::with_template(&format!("{{bar:30}} {{pos}}/{{len}} {what}"))
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
    } else {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar
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
                Ok(p) => serde_json::json!({"device": r.name, "uuid": r.uuid, "synced": true,
                    "creds_added": p.creds_added, "creds_removed": p.creds_removed.len(),
                    "aces_added": p.aces_added, "aces_removed": p.aces_removed.len()}),
                Err(e) => serde_json::json!({"device": r.name, "uuid": r.uuid, "synced": false, "error": e}),
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

fn read_pin(pin: Option<String>, pin_file: Option<PathBuf>) -> Result<String> {
    let from_flag = pin.is_some();
    let pin = match (pin, pin_file) {
        (Some(p), _) => p,
        (None, Some(f)) => std::fs::read_to_string(&f)
            .with_context(|| format!("cannot read the PIN from {}", f.display()))?
            .trim()
            .to_string(),
        (None, None) => {
            use std::io::{BufRead, IsTerminal, Write};
            if !std::io::stdin().is_terminal() {
                return Err(crate::usage!(
                    "give the PIN the device shows: --pin 12345678 (or --pin-file)"
                ));
            }
            eprint!("PIN shown by the device: ");
            let _ = std::io::stderr().flush();
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            line.trim().to_string()
        }
    };
    if pin.len() != 8 || !pin.bytes().all(|c| c.is_ascii_digit()) {
        if from_flag {
            return Err(crate::usage!("--pin: a Random PIN is 8 digits"));
        }
        bail!("a Random PIN is 8 digits");
    }
    Ok(pin)
}

/// Runs `ssm obt …`; with `--json` an error is also printed as
/// `{"error": "…", "exit": N}` on stdout (by `main`, as for every command).
pub async fn run(a: Args) -> Result<bool> {
    let path = a.domain.clone().unwrap_or_else(default_domain);
    crate::state::warn_open_to_others(ssm_obt::store::domain_open_to_others(&path));
    let json = a.json;
    match a.cmd {
        Cmd::Init { name } => cmd::init(&path, &name, json),
        Cmd::Discover { link, wait_ms } => cmd::discover(&path, &link, wait_ms, json).await,
        c @ Cmd::Onboard { .. } => cmd::onboard(&path, c, json).await,
        Cmd::List => show::list(&path, json),
        Cmd::Show { device } => show::show(&path, &device, json),
        Cmd::Offboard { device, work } => cmd::offboard(&path, &device, &work, json).await,
        Cmd::Sync { devices, all, work } => cmd::sync(&path, devices, all, &work, json).await,
        Cmd::Ssm(SsmCmd::Grant {
            client,
            lights,
            all,
            work,
        }) => cmd::grant(&path, &client, &lights, all, &work, json).await,
        Cmd::Ssm(SsmCmd::Revoke {
            client,
            lights,
            all,
            work,
        }) => cmd::revoke(&path, &client, &lights, all, &work, json).await,
        Cmd::Ssm(SsmCmd::Rekey { work }) => cmd::rekey(&path, &work, json).await,
    }
}

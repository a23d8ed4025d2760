//! `ssm obt export` / `ssm obt import`: the passphrase (terminal without
//! echo, or a file) and the files; the cryptography is in
//! `ssm_obt::store::backup`.
use anyhow::{bail, Context, Result};
use ssm_obt::store::backup::BackupError;
use ssm_obt::store::Store;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// A passphrase from the first line of `file`, or asked on the terminal
/// without echo (twice when `confirm`).
fn passphrase(file: Option<PathBuf>, confirm: bool) -> Result<Zeroizing<String>> {
    if let Some(f) = file {
        let text = Zeroizing::new(
            std::fs::read_to_string(&f)
                .with_context(|| format!("cannot read the passphrase from {}", f.display()))?,
        );
        let line = Zeroizing::new(text.lines().next().unwrap_or_default().to_string());
        if line.is_empty() {
            bail!("{}: the passphrase (its first line) is empty", f.display());
        }
        return Ok(line);
    }
    if !std::io::stdin().is_terminal() {
        return Err(crate::usage!(
            "no terminal to ask for the passphrase: give --passphrase-file FILE"
        ));
    }
    let first = ask("passphrase: ")?;
    if first.is_empty() {
        bail!("the passphrase is empty");
    }
    if confirm && *ask("passphrase again: ")? != *first {
        bail!("the passphrases differ");
    }
    Ok(first)
}

/// One line from the terminal with echo off (restored on every path).
fn ask(prompt: &str) -> Result<Zeroizing<String>> {
    use rustix::termios::{tcgetattr, tcsetattr, LocalModes, OptionalActions};
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let stdin = std::io::stdin();
    let saved = tcgetattr(&stdin).ok();
    if let Some(t) = &saved {
        let mut quiet = t.clone();
        quiet.local_modes.remove(LocalModes::ECHO);
        let _ = tcsetattr(&stdin, OptionalActions::Now, &quiet);
    }
    let mut line = Zeroizing::new(String::new());
    let r = stdin.lock().read_line(&mut line);
    if let Some(t) = &saved {
        let _ = tcsetattr(&stdin, OptionalActions::Now, t);
    }
    eprintln!();
    r?;
    let trimmed = Zeroizing::new(line.trim_end_matches(['\r', '\n']).to_string());
    Ok(trimmed)
}

fn backup_err(e: BackupError) -> anyhow::Error {
    match e {
        BackupError::Store(s) => s.into(),
        e => e.into(),
    }
}

/// `ssm obt export FILE`.
pub(super) fn export(
    path: &Path,
    file: &Path,
    pass: Option<PathBuf>,
    force: bool,
    json: bool,
) -> Result<bool> {
    let s = Store::open_read_only(path)?;
    if file.exists() && !force {
        bail!("{} exists: choose another file, or --force", file.display());
    }
    let pass = passphrase(pass, true)?;
    let sealed = s.export(pass.as_bytes()).map_err(backup_err)?;
    ssm_runtime::store::atomic_write(file, &sealed)
        .with_context(|| format!("cannot write {}", file.display()))?;
    let devices = s.devices()?.len();
    if json {
        println!(
            "{}",
            serde_json::json!({"file": file, "devices": devices, "bytes": sealed.len()})
        );
    } else {
        println!(
            "exported the domain ({devices} device(s)) to {} (0600, encrypted: keep the passphrase apart from it)",
            file.display()
        );
    }
    Ok(true)
}

/// `ssm obt import FILE`.
pub(super) fn import(
    path: &Path,
    file: &Path,
    pass: Option<PathBuf>,
    force: bool,
    json: bool,
) -> Result<bool> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    if path.exists() && !force {
        return Err(backup_err(BackupError::Exists(path.to_path_buf())));
    }
    let pass = passphrase(pass, false)?;
    let s = Store::import(path, &bytes, pass.as_bytes(), file, force).map_err(backup_err)?;
    let (obt, name) = s.obt()?;
    let devices = s.devices()?.len();
    if json {
        println!(
            "{}",
            serde_json::json!({"domain": path, "name": name, "obt_uuid": obt, "devices": devices})
        );
    } else {
        println!(
            "imported domain '{name}' ({devices} device(s), OBT {obt}) into {}",
            path.display()
        );
    }
    Ok(true)
}

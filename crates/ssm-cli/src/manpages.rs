//! `ssm man DIR`: the manual pages (`ssm.1`, `ssm-device.1`,
//! `ssm-device-reset.1`, …, one per subcommand), generated from the same
//! command definition as `--help` (`clap_mangen`), examples included; for
//! packaging (`packaging/README.md`).
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// Writes every page into `dir` (created if missing); returns the files.
pub fn write_all(cmd: clap::Command, dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    clap_mangen::generate_to(cmd, dir)
        .with_context(|| format!("cannot write the man pages into {}", dir.display()))?;
    let mut pages: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "1"))
        .collect();
    pages.sort();
    Ok(pages)
}

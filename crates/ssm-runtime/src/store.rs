//! Crash-safe persistence.
use ssm_oscore::SequenceNumberStore;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Replaces `path` with `bytes` so that a crash at any instant leaves either
/// the old or the new content: write a temporary file, fsync it, rename it
/// over the target, fsync the directory.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let mut tmp_name = name.to_os_string();
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()
}

/// A sender sequence-number limit in a small text file.
#[derive(Debug)]
pub struct FileSequenceStore {
    path: PathBuf,
}

impl FileSequenceStore {
    /// Uses `path` (created on first store).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileSequenceStore { path: path.into() }
    }

    /// The stored limit, 0 if the file does not exist yet.
    pub fn load(&self) -> io::Result<u64> {
        match fs::read_to_string(&self.path) {
            Ok(s) => s.trim().parse().map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: not a number", self.path.display()),
                )
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(e),
        }
    }
}

impl SequenceNumberStore for FileSequenceStore {
    type Error = io::Error;
    fn store_limit(&mut self, limit: u64) -> io::Result<()> {
        atomic_write(&self.path, format!("{limit}\n").as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ssm_oscore::SequenceNumber;

    #[test]
    fn sequence_survives_restart() {
        let dir = std::env::temp_dir().join(format!("ssm-store-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ssn");
        let _ = fs::remove_file(&path);
        let mut store = FileSequenceStore::new(&path);
        let mut s = SequenceNumber::resume(store.load().unwrap(), 16);
        let mut last = 0;
        for _ in 0..40 {
            s.reserve(&mut store).unwrap();
            last = s.take().unwrap().value();
        }
        // "Crash" and resume: the next number is above every used one.
        let mut s2 = SequenceNumber::resume(store.load().unwrap(), 16);
        s2.reserve(&mut store).unwrap();
        assert!(s2.take().unwrap().value() > last);
        fs::remove_dir_all(&dir).unwrap();
    }
}

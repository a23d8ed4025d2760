//! Crash-safe persistence, owner-only: every file of a state directory
//! (keys, credentials, sequence numbers, replay floors, the PIN) is created
//! 0600 and every directory 0700, from the first write on.
use ssm_oscore::SequenceNumberStore;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The mode of every state file: read and write for the owner only.
pub const PRIVATE_FILE_MODE: u32 = 0o600;
/// The mode of every state directory.
pub const PRIVATE_DIR_MODE: u32 = 0o700;

/// `OpenOptions` that create a file with [`PRIVATE_FILE_MODE`] (the umask
/// can only narrow it). An existing file keeps its mode.
pub fn private_options() -> OpenOptions {
    let mut o = OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, PRIVATE_FILE_MODE);
    o
}

/// Creates `dir` and its missing parents with [`PRIVATE_DIR_MODE`]. A
/// directory that exists already is left as it is ([`open_to_others`]
/// tells whether it is private).
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut b = fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, PRIVATE_DIR_MODE);
    b.create(dir)
}

/// A file or directory that others than its owner may read (or enter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenToOthers {
    /// The path, as given.
    pub path: PathBuf,
    /// Its permission bits.
    pub mode: u32,
    /// A directory (the fix is `chmod 700`), else a file (`chmod 600`).
    pub dir: bool,
}

impl std::fmt::Display for OpenToOthers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = self.path.display();
        let what = if self.mode & 0o044 != 0 {
            "readable"
        } else {
            "accessible"
        };
        let fix = if self.dir { 700 } else { 600 };
        write!(
            f,
            "{p} is {what} by others (mode {:04o}): run chmod {fix} {p}",
            self.mode
        )
    }
}

/// `Some` if `path` exists and its group or other permission bits are set.
pub fn open_to_others(path: &Path) -> Option<OpenToOthers> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let m = fs::metadata(path).ok()?;
        let mode = m.permissions().mode() & 0o7777;
        (mode & 0o077 != 0).then(|| OpenToOthers {
            path: path.to_path_buf(),
            mode,
            dir: m.is_dir(),
        })
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// Names of the files a state directory holds (see the README's state
/// directory section): the identity, credentials, security state, PIN,
/// sequence numbers (`ssn-<credid>`), replay floors, their temporary files
/// and lock files.
pub fn is_state_file(name: &str) -> bool {
    const FILES: [&str; 7] = [
        "device.json",
        "creds.json",
        "svr.json",
        "pin",
        "ssm-replay-floors.json",
        "floors.journal",
        "lock",
    ];
    FILES
        .iter()
        .any(|f| name == *f || name.strip_prefix(f).is_some_and(|r| r.starts_with('.')))
        || name.starts_with("ssn-")
        || name.ends_with(".lock")
}

/// What of a state directory others may read: every state file in it
/// ([`is_state_file`]; other files are not ours), and the directory itself
/// if it holds more than `device.json` (the identity is no secret: a
/// directory that holds nothing else, such as the working directory of an
/// `ssm client` without `--state-dir`, is not reported). Empty if it does
/// not exist.
pub fn state_dir_open_to_others(dir: &Path) -> Vec<OpenToOthers> {
    let mut files: Vec<PathBuf> = match fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_str().is_some_and(is_state_file))
            .map(|e| e.path())
            .collect(),
        Err(_) => return Vec::new(),
    };
    files.sort();
    let secrets = files
        .iter()
        .any(|p| p.file_name().is_some_and(|n| n != "device.json"));
    let mut out: Vec<OpenToOthers> = Vec::new();
    if secrets {
        out.extend(open_to_others(dir));
    }
    out.extend(files.iter().filter_map(|p| open_to_others(p)));
    out
}

/// Replaces `path` with `bytes` so that a crash at any instant leaves either
/// the old or the new content: write a temporary file, fsync it, rename it
/// over the target, fsync the directory. The file is owner-only (0600) from
/// its creation on: the temporary file is created with that mode (a stale
/// one left by a crash is narrowed to it before anything is written).
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
        let mut f = private_options()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            if f.metadata()?.permissions().mode() & 0o077 != 0 {
                f.set_permissions(fs::Permissions::from_mode(PRIVATE_FILE_MODE))?;
            }
        }
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

    #[cfg(unix)]
    fn mode(p: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    /// Under the usual umask 022 files come out 0600 and directories 0700,
    /// also over an old 0644 file and a stale 0644 temporary file.
    #[cfg(unix)]
    #[test]
    fn owner_only_files_and_dirs() {
        use std::os::unix::fs::PermissionsExt;
        let base = std::env::temp_dir().join(format!("ssm-store-modes-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let dir = base.join("a/b");
        create_private_dir(&dir).unwrap();
        assert_eq!(mode(&base.join("a")), 0o700);
        assert_eq!(mode(&dir), 0o700);
        let p = dir.join("svr.json");
        atomic_write(&p, b"{}").unwrap();
        assert_eq!(mode(&p), 0o600);
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        let stale = dir.join(format!("svr.json.tmp{}", std::process::id()));
        fs::write(&stale, b"old").unwrap();
        fs::set_permissions(&stale, fs::Permissions::from_mode(0o644)).unwrap();
        atomic_write(&p, b"{}").unwrap();
        assert_eq!(mode(&p), 0o600, "the rewrite is private again");
        assert!(state_dir_open_to_others(&dir).is_empty());
        // A directory holding only the identity (no secret) is not
        // reported; the identity file itself is.
        let id_only = base.join("id-only");
        create_private_dir(&id_only).unwrap();
        atomic_write(&id_only.join("device.json"), b"{}").unwrap();
        fs::set_permissions(&id_only, fs::Permissions::from_mode(0o755)).unwrap();
        assert!(state_dir_open_to_others(&id_only).is_empty());
        fs::set_permissions(
            id_only.join("device.json"),
            fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        assert_eq!(state_dir_open_to_others(&id_only).len(), 1);
        // What is found and how it is reported.
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        fs::write(dir.join("notes.txt"), b"not ours").unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let w: Vec<String> = state_dir_open_to_others(&dir)
            .iter()
            .map(ToString::to_string)
            .collect();
        let (d, f) = (dir.display(), p.display());
        assert_eq!(
            w,
            [
                format!("{d} is readable by others (mode 0755): run chmod 700 {d}"),
                format!("{f} is readable by others (mode 0644): run chmod 600 {f}"),
            ]
        );
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn state_file_names() {
        for n in [
            "svr.json",
            "creds.json",
            "device.json",
            "pin",
            "ssn-3",
            "ssn-3.tmp77",
            "svr.json.tmp12",
            "ssm-replay-floors.json",
            "floors.journal",
            "ssn-3.lock",
        ] {
            assert!(is_state_file(n), "{n}");
        }
        for n in ["notes.txt", "pins.txt", "pinboard", "svr.jsonx"] {
            assert!(!is_state_file(n), "{n}");
        }
    }

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

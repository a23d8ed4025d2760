//! Crash-safe persistence, owner-only: every file of a state directory
//! (keys, credentials, sequence numbers, replay floors, the PIN) is created
//! 0600 and every directory 0700, from the first write on.
use ssm_oscore::SequenceNumberStore;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::ops::Range;
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
    const FILES: [&str; 9] = [
        "device.json",
        "group-signing-key",
        "resources.json",
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

/// A sender's sequence numbers in a state directory, safe to share between
/// any number of processes (a running switch device and every `ssm client`
/// call on its state dir use the same credential).
///
/// Two files, both owner-only (0600):
/// * `<path>`: the durable limit `L` ("no number ≥ L was ever handed out"),
///   replaced atomically and fsynced before any number at or above the old
///   limit is used: what a sender resumes from after a reboot or power loss.
/// * `<path>.lock`: the lock (an exclusive `flock`, held only while a number
///   is handed out) and this boot's counter, `<boot id> <next>`, written in
///   place and never fsynced: every process of the same boot sees the
///   kernel's page cache, so the counter survives a SIGKILL; after a reboot
///   (another boot id) the durable limit is used instead.
///
/// Every reservation (read, reserve, write) happens under the lock and
/// hands out exactly one number, so no two users ever get the same one, and
/// numbers are handed out in order. Cost: a `flock` and three small file
/// operations per number, and one fsync per K numbers.
#[derive(Debug)]
pub struct FileSequenceStore {
    path: PathBuf,
    lock_path: PathBuf,
    tmp_path: PathBuf,
    lock_file: Option<File>,
}

/// The boot this process runs in (Linux `boot_id`); `None` where unknown,
/// then every process resumes from the durable limit (skipping up to K
/// numbers, never reusing one).
fn boot_id() -> Option<&'static str> {
    static BOOT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    BOOT.get_or_init(|| {
        fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty() && !s.contains(char::is_whitespace))
    })
    .as_deref()
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

/// Opens (creating) a file for reading and writing, owner-only from the
/// first byte.
fn open_private(path: &Path, truncate: bool) -> io::Result<File> {
    private_options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(truncate)
        .open(path)
}

impl FileSequenceStore {
    /// Uses `path` and `path.lock` (created on first use).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        FileSequenceStore {
            lock_path: with_suffix(&path, ".lock"),
            tmp_path: with_suffix(&path, ".tmp"),
            path,
            lock_file: None,
        }
    }

    /// The next number a sender on this store would get now (this boot's
    /// counter, or after a reboot the durable limit); 0 for a new store.
    /// Read without the lock: a floor for [`ssm_oscore::SequenceNumber::resume`],
    /// never above what the next reservation hands out.
    pub fn load(&self) -> io::Result<u64> {
        let limit = read_limit(&self.path)?;
        let counter = match fs::read_to_string(&self.lock_path) {
            Ok(s) => parse_counter(&s),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        Ok(counter.unwrap_or(limit))
    }

    /// Takes the store's lock (blocking until other users release it).
    /// Reservations made through the guard are exclusive; hold it across
    /// protect and send to put datagrams on the wire in sequence-number
    /// order.
    pub fn lock(&mut self) -> io::Result<SequenceLock<'_>> {
        if self.lock_file.is_none() {
            if let Some(dir) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
                create_private_dir(dir)?;
            }
            let f = open_private(&self.lock_path, false)?;
            f.lock()?;
            // Temporary files of writers killed mid-write by older versions
            // (`<name>.tmp<pid>`): nobody can be writing them now.
            remove_stale_temporaries(&self.path);
            self.lock_file = Some(f);
            return Ok(SequenceLock { store: self });
        }
        if let Some(f) = &self.lock_file {
            f.lock()?;
        }
        Ok(SequenceLock { store: self })
    }
}

fn read_limit(path: &Path) -> io::Result<u64> {
    match fs::read_to_string(path) {
        Ok(s) => s.trim().parse().map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: not a number", path.display()),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e),
    }
}

/// `<boot id> <next>` of this boot, else `None`.
fn parse_counter(s: &str) -> Option<u64> {
    let boot = boot_id()?;
    let mut it = s.split_whitespace();
    match (it.next(), it.next().and_then(|n| n.parse().ok())) {
        (Some(b), Some(n)) if b == boot => Some(n),
        _ => None,
    }
}

fn remove_stale_temporaries(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let prefix = format!("{}.tmp", name.to_string_lossy());
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let n = e.file_name();
        let n = n.to_string_lossy();
        if n.len() > prefix.len()
            && n.starts_with(&prefix)
            && n[prefix.len()..].bytes().all(|b| b.is_ascii_digit())
        {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// The exclusive lock of a [`FileSequenceStore`]; released on drop.
#[derive(Debug)]
pub struct SequenceLock<'a> {
    store: &'a mut FileSequenceStore,
}

impl SequenceLock<'_> {
    fn file(&self) -> &File {
        self.store
            .lock_file
            .as_ref()
            .expect("a SequenceLock exists only with an open lock file")
    }

    fn durable_limit(&self) -> io::Result<u64> {
        read_limit(&self.store.path)
    }

    /// This boot's counter, if the lock file holds one of this boot.
    fn counter(&self) -> io::Result<Option<u64>> {
        use std::io::{Read, Seek};
        let mut f = self.file();
        f.seek(io::SeekFrom::Start(0))?;
        let mut s = String::new();
        if f.take(256).read_to_string(&mut s).is_err() {
            return Ok(None);
        }
        Ok(parse_counter(&s))
    }

    fn set_counter(&self, next: u64) -> io::Result<()> {
        use std::io::Seek;
        let Some(boot) = boot_id() else {
            return Ok(());
        };
        let mut f = self.file();
        // Fixed width: the in-place write always covers the old content.
        let line = format!("{boot} {next:020}\n");
        f.seek(io::SeekFrom::Start(0))?;
        f.write_all(line.as_bytes())?;
        f.set_len(line.len() as u64)
    }

    fn store_durable_limit(&self, limit: u64) -> io::Result<()> {
        // The lock makes this the only writer: one fixed temporary name,
        // reused (never piling up after kills).
        let dir = self
            .store
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        {
            let mut f = open_private(&self.store.tmp_path, true)?;
            f.write_all(format!("{limit}\n").as_bytes())?;
            f.sync_all()?;
        }
        fs::rename(&self.store.tmp_path, &self.store.path)?;
        File::open(dir)?.sync_all()
    }
}

impl Drop for SequenceLock<'_> {
    fn drop(&mut self) {
        if let Some(f) = &self.store.lock_file {
            let _ = f.unlock();
        }
    }
}

impl SequenceNumberStore for SequenceLock<'_> {
    type Error = io::Error;
    fn reserve_block(&mut self, next: u64, k: u64) -> io::Result<Range<u64>> {
        let limit = self.durable_limit()?;
        let start = next.max(self.counter()?.unwrap_or(limit));
        if start > ssm_oscore::MAX_SEQUENCE_NUMBER {
            return Ok(start..start);
        }
        if start >= limit {
            // Durable before any number at or above the old limit is used.
            self.store_durable_limit(ssm_oscore::block_ahead(start, k).end)?;
        }
        self.set_counter(start + 1)?;
        Ok(start..start + 1)
    }
}

impl SequenceNumberStore for FileSequenceStore {
    type Error = io::Error;
    fn reserve_block(&mut self, next: u64, k: u64) -> io::Result<Range<u64>> {
        self.lock()?.reserve_block(next, k)
    }
}

#[cfg(test)]
mod tests;

//! A fresh directory per process and name, removed on drop.
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

/// `$TMPDIR/ssm-<name>-<pid>`, emptied if a previous run left it, created
/// mode 0700 (the state it will hold may be secret), removed on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!("ssm-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&d)
            .unwrap_or_else(|e| panic!("{}: {e}", d.display()));
        TempDir(d)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<std::ffi::OsStr> for TempDir {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.0.as_os_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn fresh_private_and_removed_on_drop() {
        let p = {
            let d = TempDir::new("testkit-self");
            std::fs::write(d.join("f"), b"x").unwrap();
            let again = TempDir::new("testkit-self");
            assert!(!again.join("f").exists(), "a second one starts empty");
            let mode = std::fs::metadata(&*again).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700);
            std::mem::forget(d);
            again.to_path_buf()
        };
        assert!(!p.exists());
    }
}

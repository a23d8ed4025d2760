//! Export and import of the whole domain, encrypted with a passphrase.
//!
//! The file is the domain's SQLite image (every table, whatever the schema
//! version) sealed with XChaCha20-Poly1305 under a key derived from the
//! passphrase by Argon2id (RFC 9106; 64 MiB, 3 passes, 1 lane). Layout:
//! `magic (8) | m_cost KiB (u32 LE) | t_cost (u32 LE) | p_cost (u32 LE) |
//! salt (16) | nonce (24) | ciphertext + tag`; the header up to the nonce
//! is the AEAD's associated data, so changed parameters fail like a wrong
//! passphrase. The plaintext image never touches the disk on export; on
//! import it is written owner-only (0600) beside the domain, checked, and
//! renamed into place.
use super::*;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

/// The first bytes of an export file.
pub const EXPORT_MAGIC: &[u8; 8] = b"SSMDOM\x00\x01";
const SALT_LEN: usize = 16;
const NONCE_LEN: usize = 24;
const HEADER_LEN: usize = 8 + 12 + SALT_LEN;

/// Argon2id cost of new exports (memory in KiB, passes, lanes).
const ARGON2_COST: (u32, u32, u32) = (64 * 1024, 3, 1);
/// The largest memory cost an import accepts (a crafted file cannot make
/// the OBT allocate more).
const MAX_M_COST: u32 = 1024 * 1024;

/// Why an export file cannot be imported.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// Not an export of `ssm obt export`.
    #[error("{0} is not a domain export of `ssm obt export`")]
    NotAnExport(PathBuf),
    /// The AEAD tag did not verify.
    #[error("wrong passphrase (or the export file was changed)")]
    WrongPassphrase,
    /// A domain is already there.
    #[error("a domain already exists at {0}: import over it with --force (its devices and keys are replaced)")]
    Exists(PathBuf),
    /// The passphrase is empty.
    #[error("the passphrase is empty")]
    EmptyPassphrase,
    /// The decrypted image is not a usable domain.
    #[error("the export holds no usable domain: {0}")]
    Invalid(String),
    /// The store.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn derive_key(
    passphrase: &[u8],
    salt: &[u8],
    (m, t, p): (u32, u32, u32),
) -> Result<Zeroizing<[u8; 32]>, BackupError> {
    let params = argon2::Params::new(m, t, p, Some(32))
        .map_err(|e| BackupError::Invalid(format!("Argon2 parameters: {e}")))?;
    let kdf = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut key = Zeroizing::new([0u8; 32]);
    kdf.hash_password_into(passphrase, salt, &mut key[..])
        .map_err(|e| BackupError::Invalid(format!("Argon2: {e}")))?;
    Ok(key)
}

/// Seals `image` under `passphrase` (salt and nonce from `random`).
pub fn seal(
    image: &[u8],
    passphrase: &[u8],
    random: &mut dyn FnMut(&mut [u8]),
) -> Result<Vec<u8>, BackupError> {
    if passphrase.is_empty() {
        return Err(BackupError::EmptyPassphrase);
    }
    let (m, t, p) = ARGON2_COST;
    let mut out = Vec::with_capacity(HEADER_LEN + NONCE_LEN + image.len() + 16);
    out.extend_from_slice(EXPORT_MAGIC);
    for v in [m, t, p] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    let mut salt = [0u8; SALT_LEN];
    random(&mut salt);
    out.extend_from_slice(&salt);
    let mut nonce = [0u8; NONCE_LEN];
    random(&mut nonce);
    let key = derive_key(passphrase, &salt, ARGON2_COST)?;
    let aead = XChaCha20Poly1305::new((&*key).into());
    let ct = aead
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: image,
                aad: &out[..HEADER_LEN],
            },
        )
        .map_err(|_| BackupError::Invalid("encryption failed".into()))?;
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Opens a sealed export: the domain image.
pub fn unseal(
    file: &[u8],
    passphrase: &[u8],
    what: &Path,
) -> Result<Zeroizing<Vec<u8>>, BackupError> {
    if file.len() < HEADER_LEN + NONCE_LEN + 16 || &file[..8] != EXPORT_MAGIC {
        return Err(BackupError::NotAnExport(what.to_path_buf()));
    }
    let word = |i: usize| u32::from_le_bytes([file[i], file[i + 1], file[i + 2], file[i + 3]]);
    let cost = (word(8), word(12), word(16));
    if cost.0 > MAX_M_COST {
        return Err(BackupError::NotAnExport(what.to_path_buf()));
    }
    let salt = &file[20..HEADER_LEN];
    let nonce = &file[HEADER_LEN..HEADER_LEN + NONCE_LEN];
    let key = derive_key(passphrase, salt, cost)?;
    let aead = XChaCha20Poly1305::new((&*key).into());
    aead.decrypt(
        XNonce::from_slice(nonce),
        Payload {
            msg: &file[HEADER_LEN + NONCE_LEN..],
            aad: &file[..HEADER_LEN],
        },
    )
    .map(Zeroizing::new)
    .map_err(|_| BackupError::WrongPassphrase)
}

impl Store {
    /// The whole domain as an encrypted export file's bytes.
    pub fn export(&self, passphrase: &[u8]) -> Result<Vec<u8>, BackupError> {
        let image = self.conn.serialize(rusqlite::MAIN_DB).map_err(self.sq())?;
        seal(&image, passphrase, &mut crate::engine::rng)
    }

    /// Writes the domain of an export (`file`, read from `what`) to
    /// `path`: refused if a domain is there unless `force`, and while
    /// another `ssm obt` holds it. The image is checked (schema version,
    /// OBT identity) before it replaces anything.
    pub fn import(
        path: &Path,
        file: &[u8],
        passphrase: &[u8],
        what: &Path,
        force: bool,
    ) -> Result<Store, BackupError> {
        let image = unseal(file, passphrase, what)?;
        if path.exists() && !force {
            return Err(BackupError::Exists(path.to_path_buf()));
        }
        if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            ssm_runtime::store::create_private_dir(dir).map_err(StoreError::Io)?;
        }
        let held = lock(path)?;
        let [_, wal, shm, _] = domain_files(path);
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(format!(".import{}", std::process::id()));
        let tmp = PathBuf::from(tmp);
        ssm_runtime::store::atomic_write(&tmp, &image).map_err(StoreError::Io)?;
        let checked = check_image(&tmp);
        for f in &domain_files(&tmp)[1..3] {
            let _ = std::fs::remove_file(f);
        }
        if let Err(e) = checked {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        // The old domain's journal files belong to the old image.
        for f in [&wal, &shm] {
            match std::fs::remove_file(f) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::Io(e).into()),
            }
        }
        std::fs::rename(&tmp, path).map_err(StoreError::Io)?;
        drop(held);
        let s = Store::open(path)?;
        s.audit("import", &format!("from {}", what.display()))?;
        Ok(s)
    }
}

/// Whether the image at `tmp` is a domain this build can use.
fn check_image(tmp: &Path) -> Result<(), BackupError> {
    let bad = |e: rusqlite::Error| BackupError::Invalid(e.to_string());
    let c = Connection::open_with_flags(tmp, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(bad)?;
    let version: i64 = c
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(bad)?;
    if !(1..=SCHEMA_VERSION).contains(&version) {
        return Err(BackupError::Invalid(format!(
            "schema version {version} (this ssm understands 1 to {SCHEMA_VERSION})"
        )));
    }
    let n: i64 = c
        .query_row("SELECT COUNT(*) FROM obt", [], |r| r.get(0))
        .map_err(bad)?;
    if n != 1 {
        return Err(BackupError::Invalid("no OBT identity".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_round_trip_and_refusals() {
        let mut n = 0u8;
        let mut rnd = |b: &mut [u8]| {
            for x in b {
                n = n.wrapping_add(1);
                *x = n;
            }
        };
        let sealed = seal(b"domain image", b"correct horse", &mut rnd).unwrap();
        let p = Path::new("x.ssmdom");
        assert_eq!(
            &unseal(&sealed, b"correct horse", p).unwrap()[..],
            b"domain image"
        );
        assert!(matches!(
            unseal(&sealed, b"wrong", p),
            Err(BackupError::WrongPassphrase)
        ));
        let mut changed = sealed.clone();
        changed[12] ^= 1; // t_cost: authenticated as associated data
        assert!(unseal(&changed, b"correct horse", p).is_err());
        assert!(matches!(
            unseal(b"SQLite format 3\0", b"x", p),
            Err(BackupError::NotAnExport(_))
        ));
        assert!(matches!(
            seal(b"x", b"", &mut rnd),
            Err(BackupError::EmptyPassphrase)
        ));
    }
}

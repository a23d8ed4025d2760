//! The CLI's use of a state directory ([`StateDir`] owns the layout):
//! the identity (`device.json`), the pre-shared credentials
//! (`creds.json`), and the security resources a device starts with.
use anyhow::{Context, Result};
use ssm_ocf::cred::CredResource;
use ssm_runtime::state_dir::StateDir;
use std::path::{Path, PathBuf};

pub use ssm_runtime::state_dir::Identity;

/// `device.json` of `dir`.
pub fn identity_path(dir: &Path) -> PathBuf {
    StateDir::new(dir).identity_path()
}

/// `creds.json` of `dir`.
pub fn creds_path(dir: &Path) -> PathBuf {
    StateDir::new(dir).creds_path()
}

/// Prints a warning on stderr for each of `found` (a state file or
/// directory, or a domain file, that others may read), each path once per
/// process.
pub fn warn_open_to_others(found: Vec<ssm_runtime::store::OpenToOthers>) {
    use std::sync::{Mutex, OnceLock};
    static WARNED: OnceLock<Mutex<std::collections::BTreeSet<PathBuf>>> = OnceLock::new();
    let mut warned = WARNED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    for w in found {
        if warned.insert(w.path.clone()) {
            eprintln!("warning: {w}");
        }
    }
}

/// Warns about the state directory `dir` and its files if others may read
/// them (see [`ssm_runtime::store::state_dir_open_to_others`]).
pub fn check_state_dir(dir: &Path) {
    warn_open_to_others(ssm_runtime::store::state_dir_open_to_others(dir));
}

/// Loads the identity, creating one (random UUID) if missing.
pub fn load_identity(dir: &Path, default_name: &str) -> Result<Identity> {
    check_state_dir(dir);
    let sd = StateDir::new(dir);
    let p = sd.identity_path();
    match sd.load_identity() {
        Ok(Some(id)) => Ok(id),
        Ok(None) => {
            sd.create()
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let id = Identity {
                // Zero-free: the UUID is the DTLS PSK identity hint (see
                // `ssm_runtime::obt_transport::zero_free_uuid`).
                deviceuuid: ssm_runtime::obt_transport::zero_free_uuid(),
                name: default_name.into(),
            };
            sd.save_identity(&id)
                .with_context(|| format!("cannot write {}", p.display()))?;
            Ok(id)
        }
        Err(e @ ssm_runtime::state_dir::LoadError::Corrupt(_)) => Err(anyhow::anyhow!("{e}"))
            .with_context(|| format!("{} is not a valid identity file", p.display())),
        Err(e) => {
            Err(anyhow::anyhow!("{e}")).with_context(|| format!("cannot read {}", p.display()))
        }
    }
}

/// The device's credentials: from `svr.json` (provisioned by an OBT) if
/// present, else `creds.json`; none is an empty set.
pub fn load_creds(dir: &Path) -> Result<CredResource> {
    check_state_dir(dir);
    StateDir::new(dir)
        .load_creds()
        .with_context(|| format!("cannot load the credentials of {}", dir.display()))
}

/// The device's security resources: `svr.json` if present; otherwise built
/// from `creds.json` as an owned device in normal operation with the
/// default ACEs (and saved as `svr.json`); otherwise a new, unowned device
/// waiting for an onboarding tool. (Only reading `svr.json` is
/// [`StateDir::load_security`].)
pub fn load_or_provision_security(
    dir: &Path,
    id: &Identity,
    app_hrefs: &[&str],
) -> Result<ssm_ocf::security::SecurityState> {
    check_state_dir(dir);
    StateDir::new(dir)
        .load_or_provision_security(id.deviceuuid, app_hrefs)
        .with_context(|| format!("cannot load the security state of {}", dir.display()))
}

//! A device's or client's state directory: `device.json` (identity),
//! `creds.json` (`/oic/sec/cred` in JSON), and the runtime's persisted
//! sequence numbers and replay floors.
use anyhow::{Context, Result};
use ssm_ocf::cred::CredResource;
use ssm_ocf::Uuid;
use std::path::{Path, PathBuf};

/// `device.json`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Identity {
    /// `doxm.deviceuuid` / `/oic/d` `di`.
    pub deviceuuid: Uuid,
    /// Device name.
    pub name: String,
}

pub fn identity_path(dir: &Path) -> PathBuf {
    dir.join("device.json")
}

pub fn creds_path(dir: &Path) -> PathBuf {
    dir.join("creds.json")
}

/// Loads the identity, creating one (random UUID) if missing.
pub fn load_identity(dir: &Path, default_name: &str) -> Result<Identity> {
    let p = identity_path(dir);
    match std::fs::read_to_string(&p) {
        Ok(s) => serde_json::from_str(&s)
            .with_context(|| format!("{} is not a valid identity file", p.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let id = Identity {
                deviceuuid: Uuid::new_v4(),
                name: default_name.into(),
            };
            ssm_runtime::store::atomic_write(&p, serde_json::to_string_pretty(&id)?.as_bytes())?;
            Ok(id)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", p.display())),
    }
}

/// The device's credentials: from `svr.json` (provisioned by an OBT) if
/// present, else `creds.json`; none is an empty set.
pub fn load_creds(dir: &Path) -> Result<CredResource> {
    if let Some(s) = ssm_runtime::device::load_security(dir)? {
        if !s.cred.creds.is_empty() {
            return Ok(s.cred);
        }
    }
    let p = creds_path(dir);
    match std::fs::read_to_string(&p) {
        Ok(s) => CredResource::from_json(&s).with_context(|| format!("in {}", p.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(CredResource::default()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", p.display())),
    }
}

/// The device's security resources: `svr.json` if present; otherwise built
/// from `creds.json` as an owned device in normal operation with the
/// default ACEs (and saved as `svr.json`); otherwise a new, unowned device
/// waiting for an onboarding tool.
pub fn load_security(
    dir: &Path,
    id: &Identity,
    app_hrefs: &[&str],
) -> Result<ssm_ocf::security::SecurityState> {
    if let Some(s) = ssm_runtime::device::load_security(dir)? {
        return Ok(s);
    }
    let creds = load_creds(dir)?;
    if creds.creds.is_empty() {
        return Ok(ssm_ocf::security::SecurityState::new(id.deviceuuid));
    }
    let owner: Uuid = creds.rowneruuid.parse().unwrap_or(Uuid::nil());
    let aces = ssm_ocf::provision::default_aces(&creds, app_hrefs, true);
    let s = ssm_ocf::provision::provisioned_state(id.deviceuuid, owner, creds, aces);
    ssm_runtime::device::save_security(dir, &s)?;
    Ok(s)
}

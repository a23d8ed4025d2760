//! External members of `group-oscore` groups (`ssm obt external …`):
//! RFC 10021 group-mode members that are not OCF devices (a
//! building-management system, another vendor's device, aiocoap). The
//! administrator registers each with its CCS; it is never onboarded and
//! the OBT never reaches it: it takes part through the group commands (a
//! light `group add`, a switch `ssm grant --group`) and fetches its keys
//! itself ([`material`]), again after every rekey (the OBT cannot push
//! them). Its removal rekeys every group it was in.
use super::{rng, sync_devices, EngineError, Progress, Reach, Synced};
use crate::store::{DeviceRecord, Profile, Store};
use crate::{DeviceRole, DeviceState};
use ssm_ocf::group_cred::{check_authcred, gid_of, ALG_AES_CCM_16_64_128, ALG_EDDSA};
use zeroize::Zeroizing;

/// An authentication credential file as the administrator has it: hex
/// text (whitespace ignored) or the raw CCS bytes, checked as the OBT
/// checks a device's CCS (a CWT Claims Set with an Ed25519 key).
pub fn read_authcred(file: &[u8]) -> Result<Vec<u8>, EngineError> {
    let text = file
        .iter()
        .all(|b| b.is_ascii_hexdigit() || b.is_ascii_whitespace());
    let ccs = if text {
        let digits: Vec<u8> = file
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        hex::decode(digits).map_err(|e| EngineError::BadAuthCred(format!("hex text: {e}")))?
    } else {
        file.to_vec()
    };
    if ccs.is_empty() {
        return Err(EngineError::BadAuthCred("the file is empty".into()));
    }
    check_authcred(&ccs).map_err(EngineError::BadAuthCred)?;
    Ok(ccs)
}

/// `ssm obt external add NAME --role R --authcred FILE`: registers an
/// external member with a new subject UUID (`ccs` checked as
/// [`read_authcred`] does).
pub fn external_add(
    s: &mut Store,
    name: &str,
    role: DeviceRole,
    ccs: &[u8],
) -> Result<DeviceRecord, EngineError> {
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(EngineError::BadName(name.into()));
    }
    check_authcred(ccs).map_err(EngineError::BadAuthCred)?;
    let uuid = ssm_runtime::obt_transport::zero_free_uuid();
    Ok(s.add_external(uuid, name, role, ccs)?)
}

/// The external member `name` (refused for a device of the domain).
pub fn external(s: &Store, name: &str) -> Result<DeviceRecord, EngineError> {
    let d = s.device(name)?;
    if d.state != DeviceState::External {
        return Err(EngineError::NotExternal(d.name));
    }
    Ok(d)
}

/// What `external remove` did.
#[derive(Debug)]
pub struct ExternalRemoved {
    /// The member as it was.
    pub device: DeviceRecord,
    /// Every group rekeyed: (name, new epoch).
    pub rekeyed: Vec<(String, i64)>,
    /// The devices of those groups brought up to date.
    pub synced: Vec<Synced>,
}

/// `ssm obt external remove NAME`: forgets the member and rekeys every
/// group it was in (RFC 10021 §12), then syncs their devices.
pub async fn external_remove(
    s: &mut Store,
    name: &str,
    reach: &Reach,
    jobs: usize,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<ExternalRemoved, EngineError> {
    let (obt, _) = s.obt()?;
    let device = external(s, name)?;
    let names: Vec<(i64, String)> = s.groups()?.into_iter().map(|g| (g.id, g.name)).collect();
    let (rekeyed, affected) = s.remove_external(&device.uuid, &mut rng)?;
    let rekeyed = rekeyed
        .into_iter()
        .filter_map(|(id, e)| names.iter().find(|n| n.0 == id).map(|n| (n.1.clone(), e)))
        .collect();
    let synced = sync_devices(s, obt, &affected, reach, jobs, progress).await?;
    Ok(ExternalRemoved {
        device,
        rekeyed,
        synced,
    })
}

/// What an external member needs of one group's current epoch (the
/// `ssm obt external material` document). Holds the master secret: not
/// printed by `Debug`.
pub struct Material {
    /// The group's name.
    pub group: String,
    /// The member's name.
    pub member: String,
    /// Its role.
    pub role: DeviceRole,
    /// The group's epoch.
    pub epoch: i64,
    /// The Group ID (ID Context) of this epoch.
    pub gid: [u8; 8],
    /// The master secret of this epoch.
    pub secret: Zeroizing<[u8; 32]>,
    /// The Master Salt (none: the empty salt).
    pub salt: Option<Vec<u8>>,
    /// The member's Sender ID in this epoch (hex).
    pub sender_id: String,
    /// The AEAD Algorithm of the Common Context, if the group sets it.
    pub aead_alg: Option<i64>,
    /// The Group Encryption Algorithm (10, AES-CCM-16-64-128).
    pub enc_alg: i64,
    /// The Signature Algorithm (-8, EdDSA).
    pub sign_alg: i64,
    /// The Group Manager's CCS.
    pub gm_cred: Vec<u8>,
    /// The member's own CCS (as registered).
    pub own_ccs: Vec<u8>,
    /// Every other member with a Sender ID and a CCS in this epoch:
    /// (Sender ID hex, CCS).
    pub peers: Vec<(String, Vec<u8>)>,
}

impl std::fmt::Debug for Material {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Material")
            .field("group", &self.group)
            .field("member", &self.member)
            .field("epoch", &self.epoch)
            .field("sender_id", &self.sender_id)
            .field("peers", &self.peers.len())
            .finish_non_exhaustive()
    }
}

/// `ssm obt external material NAME --group G`: the member's keys in the
/// group's current epoch. An external light without a Sender ID in this
/// epoch gets one now (for its responses; never reused).
pub fn material(s: &mut Store, member: &str, group: &str) -> Result<Material, EngineError> {
    let d = external(s, member)?;
    let g = s.group_info(group)?;
    if g.profile != Profile::GroupOscore {
        return Err(EngineError::NotGroupMode(g.name));
    }
    let not_in = || EngineError::NotInGroup {
        member: d.name.clone(),
        group: g.name.clone(),
    };
    let in_group = match d.role {
        DeviceRole::Light => g.members.contains(&d.uuid),
        DeviceRole::Switch => s.sender_id_in(g.id, &d.uuid)?.is_some(),
    };
    if !in_group {
        return Err(not_in());
    }
    let state = s
        .group_state(g.id)?
        .ok_or_else(|| EngineError::NoGroupKey(g.name.clone()))?;
    let sender_id = s
        .member_sender_id(g.id, &d.uuid, &mut rng)?
        .ok_or_else(not_in)?;
    let own_ccs = s.auth_cred(&d.uuid)?.unwrap_or_default();
    let gm_cred = s.gm_cred(&mut rng)?;
    let peers = s
        .group_peers(g.id)?
        .into_iter()
        .filter(|p| p.uuid != d.uuid)
        .map(|p| (p.sender_id, p.ccs))
        .collect();
    Ok(Material {
        group: g.name,
        member: d.name,
        role: d.role,
        epoch: state.epoch,
        gid: gid_of(state.id as u32, state.epoch as u32),
        secret: state.secret,
        salt: None,
        sender_id,
        aead_alg: state.aead_alg,
        enc_alg: ALG_AES_CCM_16_64_128 as i64,
        sign_alg: ALG_EDDSA as i64,
        gm_cred,
        own_ccs,
        peers,
    })
}

#[cfg(test)]
#[path = "external_tests.rs"]
mod tests;

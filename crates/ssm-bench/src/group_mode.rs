//! The same lights and switch under the Group OSCORE group-mode profile
//! (RFC 10021): the generated SSM credentials (128/256) turned into
//! group-mode ones (65536/131072) with the switch's own Ed25519 key, for
//! the signed fan-out measured against plain SSM in the same run.
use anyhow::{Context, Result};
use ssm_ocf::cred::CredType;
use ssm_ocf::group_cred::{ccs_of_ed25519, fields, gid_of, public_key};
use ssm_ocf::provision::Member;
use ssm_runtime::client::{MulticastTargets, Sent, SsmSender};
use ssm_runtime::device::SignatureCache;
use ssm_runtime::group_client::GroupSsmSender;
use ssm_runtime::random_bytes;
use ssm_runtime::store::FileSequenceStore;
use std::path::Path;
use std::sync::Arc;

/// The security profile of a fan-out run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// OCF SSM.
    Ssm,
    /// Group OSCORE group mode, the lights sharing one signature memo.
    Group,
    /// Group OSCORE group mode, each light verifying every signature.
    GroupNoCache,
}

impl Profile {
    /// The name of a fan-out run's mode.
    pub fn mode(self, journal: bool, floor_reserve: u64) -> String {
        let j = if journal { "-journal" } else { "" };
        match self {
            Profile::Group => format!("tasks-group-oscore{j}"),
            Profile::GroupNoCache => format!("tasks-group-oscore{j}-no-sigcache"),
            Profile::Ssm if journal => "tasks-journal".into(),
            Profile::Ssm if floor_reserve == 0 => "tasks".into(),
            Profile::Ssm => format!("tasks-reserve{floor_reserve}"),
        }
    }

    /// The lights' shared memo of verified signatures: one for every
    /// profile but [`Profile::GroupNoCache`] (plain SSM never uses it).
    pub fn signature_cache(self) -> Option<Arc<SignatureCache>> {
        (self != Profile::GroupNoCache)
            .then(|| Arc::new(SignatureCache::new(SignatureCache::DEFAULT_CAPACITY)))
    }
}

/// A switch of either profile.
pub enum Switch {
    /// OCF SSM.
    Ssm(Box<SsmSender>),
    /// Group OSCORE group mode (signed).
    Group(Box<GroupSsmSender>),
}

impl Switch {
    pub async fn send(
        &mut self,
        targets: &MulticastTargets,
        href: &str,
        props: &ciborium::Value,
        no_response: bool,
    ) -> std::io::Result<Vec<Sent>> {
        match self {
            Switch::Ssm(s) => s.send(targets, href, props, no_response).await,
            Switch::Group(s) => s.send(targets, href, props, no_response).await,
        }
    }
}

/// Turns the group's SSM credentials into group-mode ones (the group's
/// secret and IDs kept; Gid of group 1 epoch 1; a fresh GM key and switch
/// key) and returns the switch's sender.
pub fn convert(lights: &mut [Member], switch: &mut Member, dir: &Path) -> Result<Switch> {
    let gm = ccs_of_ed25519(&public_key(&random_bytes::<32>())).to_vec();
    let key = random_bytes::<32>();
    let ccs = ccs_of_ed25519(&public_key(&key)).to_vec();
    let gid = gid_of(1, 1);
    for l in lights.iter_mut() {
        for c in l.creds.creds.iter_mut() {
            if c.credtype == CredType::SsmServer {
                c.credtype = CredType::GroupOscoreRecipient;
                if let Some(o) = c.oscore.as_mut() {
                    o.group = Some(fields(&gid, &gm, Some(&ccs)));
                }
            }
        }
    }
    for c in switch.creds.creds.iter_mut() {
        if c.credtype == CredType::SsmClient {
            c.credtype = CredType::GroupOscoreSender;
            if let Some(o) = c.oscore.as_mut() {
                o.group = Some(fields(&gid, &gm, None));
            }
        }
    }
    let cred = switch
        .creds
        .oscore_creds()?
        .into_iter()
        .find(|c| c.credtype == CredType::GroupOscoreSender)
        .context("the switch has no group-mode sender credential")?;
    Ok(Switch::Group(Box::new(GroupSsmSender::new(
        &cred,
        &key,
        FileSequenceStore::new(dir.join("switch-group.ssn")),
    )?)))
}

//! What a device of the domain should hold: the managed credentials
//! (credtypes 64, 128, 256) and UUID-subject ACEs that follow from the
//! domain's grants, SSM group epoch and pair-wise keys. The OBT brings a
//! device to exactly this with [`ssm_runtime::obt_transport::sync_device`].
use crate::store::{Profile, Store, StoreError};
use ssm_ocf::cred::{CredType, Credential, OscoreFields, PrivateData};
use ssm_ocf::group_cred::{fields, gid_of};
use ssm_ocf::security::acl2::{Ace, AceResource, AceSubject, PERM_N, PERM_R, PERM_U};
use ssm_ocf::switch::HREF;
use uuid::Uuid;

/// A device's desired security state.
#[derive(Debug, Clone, Default)]
pub struct Desired {
    /// Managed credentials (carry secrets: `Credential` does not print them).
    pub creds: Vec<Credential>,
    /// UUID-subject ACEs.
    pub aces: Vec<Ace>,
    /// The ids of the SSM groups it belongs to (its `/groupsResURI`).
    pub groups: Vec<u32>,
}

impl Desired {
    /// Nothing to provision beyond ownership.
    pub fn is_empty(&self) -> bool {
        self.creds.is_empty() && self.aces.is_empty() && self.groups.is_empty()
    }
}

pub use ssm_ocf::groups::group_of_desc;

/// Where a light serves SSM: the href its discovery showed, else the
/// resource type's example URI (what our lights use by default).
pub fn href_of(store: &Store, light: &Uuid) -> Result<String, StoreError> {
    Ok(store.ssm_href(light)?.unwrap_or_else(|| HREF.to_string()))
}

/// The distinct hrefs of `lights`, in order.
pub fn hrefs_of(store: &Store, lights: &[Uuid]) -> Result<Vec<String>, StoreError> {
    let mut out: Vec<String> = Vec::new();
    for l in lights {
        let h = href_of(store, l)?;
        if !out.contains(&h) {
            out.push(h);
        }
    }
    Ok(out)
}

/// The description of a switch's SSM Client credential: the group's, and,
/// when its lights do not all serve SSM at the example URI, the hrefs it
/// must send one datagram each to (`ssm client update --multicast` reads
/// them back: the credential is what the OBT gives a switch; a change of
/// hrefs updates it in place, see [`ssm_ocf::onboarding::SSM_HREFS_TAG`]).
/// `desc` is free text the device keeps and returns for credtypes 128 and
/// 256 (REFERENCE-SSM §1, per-type rules and `oc_sec_encode_cred`).
fn client_desc(base: &str, hrefs: &[String]) -> String {
    if hrefs.iter().all(|h| h == HREF) {
        base.to_string()
    } else {
        format!(
            "{base}{}{}",
            ssm_ocf::onboarding::SSM_HREFS_TAG,
            hrefs.join(" ")
        )
    }
}

/// The Group ID, the Group Manager's CCS and the AEAD Algorithm (if the
/// group sets it) of a `group-oscore` group.
type GroupMode = ([u8; 8], Vec<u8>, Option<i64>);

/// The `oscore.group` object of a credential of a group-mode group (with
/// the authorised sender's CCS on a recipient).
fn group_fields(m: &GroupMode, auth_cred: Option<&[u8]>) -> ssm_ocf::group_cred::GroupFields {
    let mut f = fields(&m.0, &m.1, auth_cred);
    f.aeadalg = m.2;
    f
}

/// A group's group-mode material: `None` for `ocf-ssm`; for `group-oscore`
/// the Group ID of this epoch and the Group Manager's CCS (made once,
/// cached in `gm_cred`).
fn group_mode(
    store: &Store,
    g: &crate::store::GroupState,
    gm_cred: &mut Option<Vec<u8>>,
) -> Result<Option<GroupMode>, StoreError> {
    Ok(match g.profile {
        Profile::OcfSsm => None,
        Profile::GroupOscore => {
            if gm_cred.is_none() {
                *gm_cred = Some(store.gm_cred(&mut crate::engine::rng)?);
            }
            let gid = gid_of(g.id as u32, g.epoch as u32);
            Some((gid, gm_cred.clone().unwrap_or_default(), g.aead_alg))
        }
    })
}

/// The credtype and group material of a light's recipient credential for
/// `client`: SSM (256), or group mode (131072) only with the switch's own
/// credential (read from it before the lights are synced; without it the
/// light holds no context for that switch yet: `None`).
#[allow(clippy::type_complexity)]
fn recipient_kind(
    store: &Store,
    mode: &Option<GroupMode>,
    client: &Uuid,
) -> Result<Option<(CredType, Option<ssm_ocf::group_cred::GroupFields>)>, StoreError> {
    Ok(match mode {
        None => Some((CredType::SsmServer, None)),
        Some(m) => store.auth_cred(client)?.map(|ccs| {
            (
                CredType::GroupOscoreRecipient,
                Some(group_fields(m, Some(&ccs))),
            )
        }),
    })
}

/// The desired state of device `uuid`, per group with a key (for a group
/// with the profile `group-oscore` the group-mode credtypes 65536 and
/// 131072 instead of 128 and 256, with the Group ID of this epoch, the
/// Group Manager's CCS, the group's AEAD Algorithm if it sets one and, on
/// a light, each switch's own CCS):
/// * a switch that commands the group: its SSM Client credential
///   (credtype 128, its Sender ID of this epoch in that group, subject
///   derived from the ID as the reference stack does);
/// * a light: per client granted on it in the group, an SSM Server
///   credential (256, subject = that client, Recipient ID = the client's
///   Sender ID there): one recipient context per (group, switch);
///
/// and, across groups: a pair-wise credential (64) per (switch, light)
/// pair, one ACE per client letting it R/U/N the binary switch, the ids
/// of its groups, and for a light in a group an ACE letting the OBT itself
/// R/N the binary switch (over its owner session: `ssm obt status` reads
/// and observes the lights it commissioned).
pub fn desired(store: &Store, uuid: &Uuid) -> Result<Desired, StoreError> {
    let mut out = Desired::default();
    let mut clients: Vec<Uuid> = Vec::new();
    let mut gm_cred = None;
    for gid in store.keyed_group_ids()? {
        let Some(g) = store.group_state(gid)? else {
            continue;
        };
        let desc = ssm_ocf::groups::desc(&g.name, g.id, g.epoch);
        let mode = group_mode(store, &g, &mut gm_cred)?;
        if let Some(sid) = store.sender_id_in(g.id, uuid)? {
            let lights: Vec<Uuid> = store
                .grants_in(g.id)?
                .into_iter()
                .filter(|(c, _)| c == uuid)
                .map(|(_, l)| l)
                .collect();
            let hrefs = hrefs_of(store, &lights)?;
            let mut id = [0u8; 7];
            if hex::decode_to_slice(&sid, &mut id).is_ok() {
                out.creds.push(Credential {
                    credid: 0,
                    subjectuuid: ssm_ocf::provision::client_cred_subject(&id).to_string(),
                    credtype: if mode.is_some() {
                        CredType::GroupOscoreSender
                    } else {
                        CredType::SsmClient
                    },
                    privatedata: Some(PrivateData::raw(&g.secret[..])),
                    oscore: Some(OscoreFields {
                        senderid: Some(sid),
                        desc: Some(client_desc(&desc, &hrefs)),
                        group: mode.as_ref().map(|m| group_fields(m, None)),
                        ..Default::default()
                    }),
                });
            }
        }
        for client in &store.clients_of_light(g.id, uuid)? {
            let Some(sid) = store.sender_id_in(g.id, client)? else {
                continue;
            };
            let Some((credtype, group)) = recipient_kind(store, &mode, client)? else {
                continue;
            };
            out.creds.push(Credential {
                credid: 0,
                subjectuuid: client.to_string(),
                credtype,
                privatedata: Some(PrivateData::raw(&g.secret[..])),
                oscore: Some(OscoreFields {
                    recipientid: Some(sid),
                    desc: Some(desc.clone()),
                    group,
                    ..Default::default()
                }),
            });
            if !clients.contains(client) {
                clients.push(*client);
            }
        }
    }
    let commanded = !clients.is_empty();
    // The href the light's discovery showed (the reference sample serves
    // `/lights`), not a fixed one.
    let href = href_of(store, uuid)?;
    for client in clients {
        out.aces.push(Ace {
            aceid: 0,
            subject: AceSubject::Uuid { uuid: client },
            resources: vec![AceResource::Href { href: href.clone() }],
            permission: PERM_R | PERM_U | PERM_N,
        });
    }
    out.groups = store
        .device_groups(uuid)?
        .into_iter()
        .filter_map(|g| u32::try_from(g).ok())
        .collect();
    // A light in a group (or commanded by a switch): the OBT may read and
    // observe it over its owner session (`ssm obt status`).
    let light = store
        .device(&uuid.to_string())
        .is_ok_and(|d| d.role == crate::DeviceRole::Light);
    if light && (commanded || !out.groups.is_empty()) {
        let (obt, _) = store.obt()?;
        out.aces.push(Ace {
            aceid: 0,
            subject: AceSubject::Uuid { uuid: obt },
            resources: vec![AceResource::Href { href: href.clone() }],
            permission: PERM_R | PERM_N,
        });
    }
    for k in store.pairwise_keys(uuid)? {
        let (subject, sender, recipient) = if k.client == *uuid {
            (k.light, k.client_id.clone(), k.light_id.clone())
        } else {
            (k.client, k.light_id.clone(), k.client_id.clone())
        };
        out.creds.push(Credential {
            credid: 0,
            subjectuuid: subject.to_string(),
            credtype: CredType::PairwiseOscore,
            privatedata: Some(PrivateData::raw(&k.secret)),
            oscore: Some(OscoreFields {
                senderid: Some(sender),
                recipientid: Some(recipient),
                ..Default::default()
            }),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod href_tests {
    use super::*;

    #[test]
    fn client_desc_lists_hrefs_only_when_needed() {
        let base = ssm_ocf::groups::desc("all", 1, 3);
        assert_eq!(client_desc(&base, &[HREF.to_string()]), base);
        let d = client_desc(&base, &["/lights".into(), HREF.into()]);
        assert_eq!(
            ssm_ocf::onboarding::hrefs_in_desc(&d),
            vec!["/lights".to_string(), HREF.to_string()]
        );
        assert!(d.starts_with(&base));
        assert_eq!(group_of_desc(&d), Some(("all", 1)));
    }
}

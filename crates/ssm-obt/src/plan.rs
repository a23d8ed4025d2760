//! What a device of the domain should hold: the managed credentials
//! (credtypes 64, 128, 256) and UUID-subject ACEs that follow from the
//! domain's grants, SSM group epoch and pair-wise keys. The OBT brings a
//! device to exactly this with [`ssm_runtime::obt_transport::sync_device`].
use crate::store::{Store, StoreError};
use ssm_ocf::cred::{CredType, Credential, OscoreFields, PrivateData};
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
}

impl Desired {
    /// Nothing to provision beyond ownership.
    pub fn is_empty(&self) -> bool {
        self.creds.is_empty() && self.aces.is_empty()
    }
}

fn ssm_desc(epoch: i64) -> String {
    format!("SSM epoch {epoch}")
}

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

/// The description of a switch's SSM Client credential: the epoch, and,
/// when its lights do not all serve SSM at the example URI, the hrefs it
/// must send one datagram each to (`ssm client update --multicast` reads
/// them back: the credential is what the OBT gives a switch; a change of
/// hrefs updates it in place, see [`ssm_ocf::onboarding::SSM_HREFS_TAG`]).
/// `desc` is free text the device keeps and returns for credtypes 128 and
/// 256 (REFERENCE-SSM §1, per-type rules and `oc_sec_encode_cred`).
fn client_desc(epoch: i64, hrefs: &[String]) -> String {
    if hrefs.iter().all(|h| h == HREF) {
        ssm_desc(epoch)
    } else {
        format!(
            "{}{}{}",
            ssm_desc(epoch),
            ssm_ocf::onboarding::SSM_HREFS_TAG,
            hrefs.join(" ")
        )
    }
}

/// The desired state of device `uuid`:
/// * a switch with grants: its SSM Client credential (credtype 128, Sender
///   ID of this epoch, subject derived from the ID as the reference stack
///   does) and a pair-wise credential (64) per granted light;
/// * a light: per client granted on it, an SSM Server credential (256,
///   subject = that client, Recipient ID = the client's Sender ID), a
///   pair-wise credential (64), and an ACE letting that client R/U/N the
///   binary switch.
pub fn desired(store: &Store, uuid: &Uuid) -> Result<Desired, StoreError> {
    let mut out = Desired::default();
    let group = store.group()?;
    let grants = store.grants()?;
    let as_client: Vec<Uuid> = grants
        .iter()
        .filter(|(c, _)| c == uuid)
        .map(|g| g.1)
        .collect();
    let as_light: Vec<Uuid> = grants
        .iter()
        .filter(|(_, l)| l == uuid)
        .map(|g| g.0)
        .collect();
    if let (Some(g), false) = (&group, as_client.is_empty()) {
        let hrefs = hrefs_of(store, &as_client)?;
        if let Some(sid) = store.current_sender_id(uuid)? {
            let mut id = [0u8; 7];
            if hex::decode_to_slice(&sid, &mut id).is_ok() {
                out.creds.push(Credential {
                    credid: 0,
                    subjectuuid: ssm_ocf::provision::client_cred_subject(&id).to_string(),
                    credtype: CredType::SsmClient,
                    privatedata: Some(PrivateData::raw(&g.secret[..])),
                    oscore: Some(OscoreFields {
                        senderid: Some(sid),
                        desc: Some(client_desc(g.epoch, &hrefs)),
                        ..Default::default()
                    }),
                });
            }
        }
    }
    if let Some(g) = &group {
        for client in &as_light {
            if let Some(sid) = store.current_sender_id(client)? {
                out.creds.push(Credential {
                    credid: 0,
                    subjectuuid: client.to_string(),
                    credtype: CredType::SsmServer,
                    privatedata: Some(PrivateData::raw(&g.secret[..])),
                    oscore: Some(OscoreFields {
                        recipientid: Some(sid),
                        desc: Some(ssm_desc(g.epoch)),
                        ..Default::default()
                    }),
                });
            }
            out.aces.push(Ace {
                aceid: 0,
                subject: AceSubject::Uuid { uuid: *client },
                resources: vec![AceResource::Href {
                    href: href_of(store, uuid)?,
                }],
                permission: PERM_R | PERM_U | PERM_N,
            });
        }
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
mod tests {
    use super::*;

    #[test]
    fn client_desc_lists_hrefs_only_when_needed() {
        assert_eq!(client_desc(3, &[HREF.to_string()]), "SSM epoch 3");
        let d = client_desc(3, &["/lights".into(), HREF.into()]);
        assert_eq!(
            ssm_ocf::onboarding::hrefs_in_desc(&d),
            vec!["/lights".to_string(), HREF.to_string()]
        );
        assert!(d.starts_with("SSM epoch 3"));
    }
}

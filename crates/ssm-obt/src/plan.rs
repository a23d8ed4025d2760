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

/// The desired state of device `uuid`:
/// * a switch with grants: its SSM Client credential (credtype 128, Sender
///   ID of this epoch, subject derived from the ID as the reference stack
///   does) and a pair-wise credential (64) per granted light;
/// * a light: per client granted on it, an SSM Server credential (256,
///   subject = that client, Recipient ID = the client's Sender ID), a
///   pair-wise credential (64), and an ACE letting that client R/U/N the
///   binary switch; and, once it is in the group, an ACE letting the OBT
///   itself R/N the binary switch (over its owner session: `ssm obt
///   status` reads and observes the lights it commissioned).
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
                        desc: Some(ssm_desc(g.epoch)),
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
                resources: vec![AceResource::Href { href: HREF.into() }],
                permission: PERM_R | PERM_U | PERM_N,
            });
        }
        if !as_light.is_empty() {
            let (obt, _) = store.obt()?;
            out.aces.push(Ace {
                aceid: 0,
                subject: AceSubject::Uuid { uuid: obt },
                resources: vec![AceResource::Href { href: HREF.into() }],
                permission: PERM_R | PERM_N,
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

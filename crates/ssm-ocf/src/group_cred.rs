//! `/oic/sec/cred` encoding of Group OSCORE group-mode material (RFC 10021).
//! OCF defines none; this project's encoding (README "Group OSCORE",
//! SECURITY.md) is:
//!
//! * two `credtype` values outside OCF's bitmask (whose highest bit is 256,
//!   the SSM server): [`CREDTYPE_GROUP_SENDER`] = 65536 (2^16), the
//!   group-mode Sender Context of a switch, and [`CREDTYPE_GROUP_RECIPIENT`]
//!   = 131072 (2^17), a light's Recipient Context for one authorised switch
//!   (`subjectuuid` = that switch);
//! * `privatedata`: the group's Master Secret (32 bytes), as for 128/256;
//! * `oscore`: `senderid` (sender) or `recipientid` (recipient) and `desc`
//!   as for 128/256, plus an object `group` ([`GroupFields`]):
//!   `gid` (Group ID = ID Context, hex, 1–32 bytes, RFC 10021 §2.1.3),
//!   `salt` (Master Salt, hex, optional), `signalg` (-8, EdDSA, §2.1.8),
//!   `encalg` (10, AES-CCM-16-64-128, the Group Encryption Algorithm,
//!   §2.1.7), `gmcred` (the Group Manager's authentication credential, a
//!   CCS in hex, §2.1.6) and, in a recipient credential only, `authcred`
//!   (the authorised switch's CCS, hex, §2.4); `aeadalg` (10, the AEAD
//!   Algorithm, §2.1.1) only where members need it set (aiocoap).
//!
//! The sender's private key is never in a credential: the switch generates
//! its Ed25519 key pair itself and keeps it in its state directory (0600);
//! the onboarding tool (the Group Manager) reads only the public CCS back
//! and gives it to the lights.
use crate::cred::{CredError, CredType};
use crate::ssm::ContextError;
use serde::{Deserialize, Serialize};
use ssm_oscore::group::{
    ccs_ed25519_public_key, GroupCommon, GroupParams, GroupSenderContext, MAX_CRED_LEN,
};
pub use ssm_oscore::group::{ccs_of_ed25519, ALG_EDDSA};
pub use ssm_oscore::ALG_AES_CCM_16_64_128;
use ssm_oscore::{IdContext, MAX_ID_CONTEXT_LEN};

/// Where a device serves its own authentication credential (CCS) to its
/// owner ([`crate::device::Device::set_auth_cred`]).
pub const AUTHCRED_HREF: &str = "/ssm/authcred";

/// The owner's RETRIEVE of a device's authentication credential.
pub fn authcred_read() -> ssm_coap::Message {
    crate::message::request(
        ssm_coap::MessageType::Confirmable,
        ssm_coap::Code::GET,
        AUTHCRED_HREF,
        None,
    )
}

/// The CCS of an [`authcred_read`] answer, checked (an Ed25519 key).
pub fn parse_authcred(body: &ciborium::Value) -> Option<Vec<u8>> {
    let b = crate::cbor::get(body, "authcred")?.as_bytes()?.clone();
    check_authcred(&b).is_ok().then_some(b)
}

/// Checks a member's authentication credential as the Group Manager takes
/// it (from a device's `/ssm/authcred`, or registered by the administrator
/// for an external member): a CWT Claims Set (RFC 8392) whose `cnf` holds
/// an Ed25519 COSE_Key (kty 1 OKP, crv 6 Ed25519, a 32-byte x; alg absent
/// or -8), at most [`MAX_CRED_LEN`] bytes. Returns the public key, or why
/// not.
pub fn check_authcred(ccs: &[u8]) -> Result<[u8; 32], String> {
    if ccs.len() > MAX_CRED_LEN {
        return Err(format!(
            "{} bytes: a credential is at most {MAX_CRED_LEN} bytes",
            ccs.len()
        ));
    }
    ccs_ed25519_public_key(ccs).map_err(|_| {
        "not a CWT Claims Set (RFC 8392) with an Ed25519 public key in its cnf \
         (COSE_Key kty 1 OKP, crv 6 Ed25519, a 32-byte x): the group's signature \
         algorithm is EdDSA with Ed25519"
            .to_string()
    })
}

/// `credtype` of a group-mode sender (a switch).
pub const CREDTYPE_GROUP_SENDER: u32 = 1 << 16;
/// `credtype` of a group-mode recipient context (a light, per switch).
pub const CREDTYPE_GROUP_RECIPIENT: u32 = 1 << 17;

/// The `oscore.group` object on the wire (JSON and CBOR: text keys, hex
/// text for byte strings). Public values only.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub struct GroupFields {
    /// Group ID (ID Context), hex.
    pub gid: String,
    /// Master Salt, hex; absent is the empty salt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salt: Option<String>,
    /// Signature Algorithm (COSE): -8 (EdDSA).
    pub signalg: i64,
    /// Group Encryption Algorithm (COSE): 10 (AES-CCM-16-64-128).
    pub encalg: i64,
    /// The Group Manager's authentication credential (CCS), hex.
    pub gmcred: String,
    /// The subject's (the authorised sender's) CCS, hex: recipient only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authcred: Option<String>,
    /// AEAD Algorithm of the Common Context (RFC 10021 §2.1.1), 10 when
    /// set: absent for a group-mode-only group (the RFC's rule, and what
    /// the onboarding tool writes); set where the other members need it
    /// (aiocoap 0.4.17 always has it; it enters the `external_aad`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aeadalg: Option<i64>,
}

/// Group-mode material of a checked credential.
#[derive(Clone, PartialEq, Eq)]
pub struct GroupMaterial {
    /// Group ID.
    pub gid: IdContext,
    /// Master Salt (public, but kept with the secret).
    pub salt: Option<Vec<u8>>,
    /// The Group Manager's CCS.
    pub gm_cred: Vec<u8>,
    /// The authorised sender's CCS (recipient credentials).
    pub auth_cred: Option<Vec<u8>>,
    /// The AEAD Algorithm, if the group sets it.
    pub alg_aead: Option<i32>,
}

impl std::fmt::Debug for GroupMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupMaterial")
            .field("gid", &hex::encode(self.gid.as_bytes()))
            .field("gm_cred", &format_args!("{} bytes", self.gm_cred.len()))
            .field(
                "auth_cred",
                &self
                    .auth_cred
                    .as_ref()
                    .map(|c| format!("{} bytes", c.len())),
            )
            .finish()
    }
}

fn ccs(credid: u32, what: &str, hex_ccs: &str) -> Result<Vec<u8>, CredError> {
    let bad = |why: String| CredError::Invalid { credid, why };
    let b = hex::decode(hex_ccs).map_err(|_| bad(format!("{what} is not hex")))?;
    if b.len() > MAX_CRED_LEN || ccs_ed25519_public_key(&b).is_err() {
        return Err(bad(format!(
            "{what} is not a CWT Claims Set with an Ed25519 key"
        )));
    }
    Ok(b)
}

/// Checks the `group` object against the credtype: required for the two
/// group-mode types (with `authcred` exactly for the recipient), refused
/// for every other type.
pub fn check(
    credid: u32,
    t: CredType,
    g: &Option<GroupFields>,
) -> Result<Option<GroupMaterial>, CredError> {
    let bad = |why: &str| CredError::Invalid {
        credid,
        why: why.to_string(),
    };
    let recipient = match t {
        CredType::GroupOscoreSender => false,
        CredType::GroupOscoreRecipient => true,
        _ if g.is_some() => return Err(bad("oscore.group is only for the group-mode credtypes")),
        _ => return Ok(None),
    };
    let g = g
        .as_ref()
        .ok_or_else(|| bad("a group-mode credential needs oscore.group"))?;
    if g.signalg != ALG_EDDSA as i64 {
        return Err(bad("oscore.group.signalg must be -8 (EdDSA)"));
    }
    if g.encalg != ALG_AES_CCM_16_64_128 as i64 {
        return Err(bad("oscore.group.encalg must be 10 (AES-CCM-16-64-128)"));
    }
    let alg_aead = match g.aeadalg {
        None => None,
        Some(a) if a == ALG_AES_CCM_16_64_128 as i64 => Some(ALG_AES_CCM_16_64_128 as i32),
        Some(_) => return Err(bad("oscore.group.aeadalg must be 10 (AES-CCM-16-64-128)")),
    };
    let gid = hex::decode(&g.gid).map_err(|_| bad("oscore.group.gid is not hex"))?;
    if gid.is_empty() || gid.len() > MAX_ID_CONTEXT_LEN {
        return Err(bad("oscore.group.gid must be 1 to 32 bytes"));
    }
    let gid = IdContext::new(&gid).map_err(|e| bad(&e.to_string()))?;
    let salt = g
        .salt
        .as_deref()
        .map(|s| hex::decode(s).map_err(|_| bad("oscore.group.salt is not hex")))
        .transpose()?;
    let gm_cred = ccs(credid, "oscore.group.gmcred", &g.gmcred)?;
    let auth_cred = match (&g.authcred, recipient) {
        (Some(a), true) => Some(ccs(credid, "oscore.group.authcred", a)?),
        (None, true) => return Err(bad("a group-mode recipient needs oscore.group.authcred")),
        (Some(_), false) => {
            return Err(bad(
                "a group-mode sender has no authcred (its key never leaves the device)",
            ))
        }
        (None, false) => None,
    };
    Ok(Some(GroupMaterial {
        gid,
        salt,
        gm_cred,
        auth_cred,
        alg_aead,
    }))
}

/// The Group ID of group `group` at `epoch` (RFC 10021 §12: a rekey gives
/// the group a new Gid; the epoch only grows, so a Gid is never reused):
/// the group id and the epoch, 4 bytes each, big-endian.
pub fn gid_of(group: u32, epoch: u32) -> [u8; 8] {
    let mut g = [0u8; 8];
    g[..4].copy_from_slice(&group.to_be_bytes());
    g[4..].copy_from_slice(&epoch.to_be_bytes());
    g
}

/// The `group` object for group `gid` with the Group Manager's CCS
/// `gm_cred`, and for a recipient the sender's CCS.
pub fn fields(gid: &[u8], gm_cred: &[u8], auth_cred: Option<&[u8]>) -> GroupFields {
    GroupFields {
        gid: hex::encode(gid),
        salt: None,
        signalg: ALG_EDDSA as i64,
        encalg: ALG_AES_CCM_16_64_128 as i64,
        gmcred: hex::encode(gm_cred),
        authcred: auth_cred.map(hex::encode),
        aeadalg: None,
    }
}

/// The group-mode Sender Context of a sender credential (credtype 65536)
/// with the switch's own key pair (`private_key`, the Ed25519 seed from its
/// state directory), and the group's Common Context. The switch's CCS is
/// built from the key ([`ccs_of_ed25519`]), as the switch gave it to the
/// Group Manager.
pub fn sender_context(
    cred: &crate::cred::OscoreCred,
    private_key: &[u8; 32],
    sequence: ssm_oscore::SequenceNumber,
) -> Result<(GroupCommon, GroupSenderContext), ContextError> {
    let (CredType::GroupOscoreSender, Some(sid), Some(g)) =
        (cred.credtype, cred.sender_id, cred.group.as_ref())
    else {
        return Err(ContextError::NotGroupSender(cred.credid));
    };
    let derive = |error| ContextError::Derive {
        credid: cred.credid,
        error,
    };
    let params = GroupParams {
        master_secret: &cred.secret,
        master_salt: g.salt.as_deref(),
        group_id: g.gid,
        gm_cred: &g.gm_cred,
        alg_aead: g.alg_aead,
        alg_pairwise_key_agreement: None,
    };
    let own = ccs_of_ed25519(&public_key(private_key));
    let common = GroupCommon::derive(&params).map_err(derive)?;
    let ctx =
        GroupSenderContext::derive(&params, sid, private_key, &own, sequence).map_err(derive)?;
    Ok((common, ctx))
}

/// The Ed25519 public key of a private key (seed).
pub fn public_key(private_key: &[u8; 32]) -> [u8; 32] {
    ed25519_dalek::SigningKey::from_bytes(private_key)
        .verifying_key()
        .to_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cred::{CredResource, Credential, OscoreFields, PrivateData};

    fn key_ccs(b: u8) -> Vec<u8> {
        let sk = ed25519_dalek::SigningKey::from_bytes(&[b; 32]);
        ccs_of_ed25519(&sk.verifying_key().to_bytes()).to_vec()
    }

    fn cred(t: CredType, auth: Option<&[u8]>) -> Credential {
        let (s, r) = match t {
            CredType::GroupOscoreSender => (Some("02000000000001".to_string()), None),
            _ => (None, Some("02000000000001".to_string())),
        };
        Credential {
            credid: 3,
            subjectuuid: "00000000-0000-0000-0000-000000000001".into(),
            credtype: t,
            privatedata: Some(PrivateData::raw(&[9; 32])),
            oscore: Some(OscoreFields {
                senderid: s,
                recipientid: r,
                desc: Some("SSM group east (2) epoch 1".into()),
                group: Some(fields(&gid_of(2, 1), &key_ccs(1), auth)),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn check_authcred_takes_ed25519_only() {
        let c = key_ccs(3);
        let pk = ed25519_dalek::SigningKey::from_bytes(&[3; 32])
            .verifying_key()
            .to_bytes();
        assert_eq!(check_authcred(&c), Ok(pk));
        // crv 1 (P-256) instead of 6, kty 2 (EC2) instead of 1.
        let mut p256 = c.clone();
        p256[10] = 0x01;
        assert!(check_authcred(&p256).unwrap_err().contains("Ed25519"));
        let mut ec2 = c.clone();
        ec2[6] = 0x02;
        assert!(check_authcred(&ec2).is_err());
        assert!(check_authcred(&c[..c.len() - 1]).is_err());
        assert!(check_authcred(&[]).is_err());
        assert!(check_authcred(&vec![0xa0; MAX_CRED_LEN + 1])
            .unwrap_err()
            .contains("at most"));
    }

    #[test]
    fn credtypes_are_outside_the_ocf_bitmask() {
        assert_eq!(CredType::from_u32(65536), CredType::GroupOscoreSender);
        assert_eq!(CredType::from_u32(131072), CredType::GroupOscoreRecipient);
        assert_eq!(CredType::GroupOscoreRecipient.as_u32(), 131072);
        // No bit of OCF's credtype bitmask (1 to 256) is set.
        for t in [CREDTYPE_GROUP_SENDER, CREDTYPE_GROUP_RECIPIENT] {
            assert_eq!(t & 0x1ff, 0, "{t}");
            assert!(matches!(
                CredType::from_u32(t),
                CredType::GroupOscoreSender | CredType::GroupOscoreRecipient
            ));
        }
    }

    #[test]
    fn sender_and_recipient_parse_from_json() {
        let sw = key_ccs(2);
        let set = CredResource {
            creds: vec![
                cred(CredType::GroupOscoreSender, None),
                cred(CredType::GroupOscoreRecipient, Some(&sw)),
            ],
            rowneruuid: String::new(),
        };
        let json = set.to_json();
        assert!(json.contains("\"credtype\": 65536"), "{json}");
        assert!(json.contains("\"signalg\": -8"), "{json}");
        let back = CredResource::from_json(&json).unwrap();
        assert_eq!(back, set);
        let o = back.oscore_creds().unwrap();
        assert_eq!(o.len(), 2);
        let g = o[1].group.as_ref().unwrap();
        assert_eq!(g.gid.as_bytes(), &gid_of(2, 1));
        assert_eq!(g.auth_cred.as_deref(), Some(&sw[..]));
        assert_eq!(g.gm_cred, key_ccs(1));
        assert!(o[0].group.as_ref().unwrap().auth_cred.is_none());
        assert_eq!(o[0].sender_id.unwrap().as_bytes(), &[2, 0, 0, 0, 0, 0, 1]);
    }

    #[test]
    fn the_rules_refuse_what_does_not_fit() {
        let sw = key_ccs(2);
        let err = |c: Credential| c.oscore().unwrap_err().to_string();
        assert!(err(cred(CredType::GroupOscoreRecipient, None)).contains("authcred"));
        assert!(err(cred(CredType::GroupOscoreSender, Some(&sw))).contains("never leaves"));
        let mut c = cred(CredType::GroupOscoreRecipient, Some(&sw));
        c.oscore.as_mut().unwrap().group.as_mut().unwrap().signalg = -7;
        assert!(err(c).contains("signalg"));
        let mut c = cred(CredType::GroupOscoreRecipient, Some(&[0xa0]));
        c.oscore.as_mut().unwrap().group.as_mut().unwrap().authcred = Some("a0".into());
        assert!(err(c).contains("Ed25519"));
        let mut c = cred(CredType::GroupOscoreSender, None);
        c.oscore.as_mut().unwrap().group.as_mut().unwrap().gid = String::new();
        assert!(err(c).contains("gid"));
        let mut c = cred(CredType::GroupOscoreSender, None);
        c.oscore.as_mut().unwrap().group = None;
        assert!(err(c).contains("needs oscore.group"));
        // An SSM credential with group material is refused.
        let mut c = cred(CredType::GroupOscoreRecipient, Some(&sw));
        c.credtype = CredType::SsmServer;
        assert!(err(c).contains("only for the group-mode"));
    }

    #[test]
    fn cbor_wire_form_round_trips_without_secrets_in_a_retrieve() {
        let sw = key_ccs(2);
        let set = CredResource {
            creds: vec![cred(CredType::GroupOscoreRecipient, Some(&sw))],
            rowneruuid: String::new(),
        };
        let v = crate::security::codec::cred_value(&set, true);
        let creds = crate::cbor::get(&v, "creds").unwrap().as_array().unwrap();
        let back = crate::security::codec::cred_from_value(&creds[0]).unwrap();
        assert_eq!(back, set.creds[0]);
        let pub_only = crate::security::codec::cred_value(&set, false);
        let c = &crate::cbor::get(&pub_only, "creds")
            .unwrap()
            .as_array()
            .unwrap()[0];
        assert!(crate::cbor::get(c, "privatedata").is_none());
        let back = crate::security::codec::cred_from_value(c).unwrap();
        assert_eq!(back.oscore, set.creds[0].oscore);
        let dbg = format!("{:?} {:?}", set.creds[0], set.creds[0].oscore().unwrap());
        assert!(!dbg.contains(&hex::encode([9u8; 32])), "{dbg}");
        assert!(!dbg.contains("9, 9, 9"), "{dbg}");
    }
}

//! `/oic/sec/cred` credentials (OCF Security `oic.r.cred`; DIGEST §5,
//! REFERENCE-SSM §1) as far as SSM needs them: the OSCORE credtypes 64
//! (pair-wise), 128 (SSM client) and 256 (SSM server), their per-type field
//! rules, and the OSCORE contexts they define.
//!
//! In the JSON form (files a person can write or `ssm creds generate`
//! makes), raw private data (`oic.sec.encoding.raw`) is hex; base64
//! (`oic.sec.encoding.base64`) is accepted too. OSCORE IDs are 7 bytes
//! written as 14 hex digits, the master secret 32 bytes (wire-compatible
//! with the reference stack).
use serde::{Deserialize, Serialize};
use ssm_oscore::Id;
use std::fmt;
use uuid::Uuid;

/// The OSCORE ID length OCF uses.
pub const OSCORE_ID_LEN: usize = 7;
/// The master-secret length OCF uses.
pub const MASTER_SECRET_LEN: usize = 32;

/// `credtype` values (a bitmask in the data model; one bit per credential).
/// On the wire (JSON and CBOR) the number; everywhere else this enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "u32", into = "u32")]
pub enum CredType {
    /// 1: pair-wise symmetric key (e.g. the owner PSK).
    PairwiseSymmetric,
    /// 64: pair-wise OSCORE context.
    PairwiseOscore,
    /// 128: SSM client (multicast sender).
    SsmClient,
    /// 256: SSM server (multicast recipient).
    SsmServer,
    /// 65536 (2^16, outside OCF's bitmask, which ends at 256): a Group
    /// OSCORE group-mode sender (RFC 10021) — this project's extension, see
    /// [`crate::group_cred`].
    GroupOscoreSender,
    /// 131072 (2^17): a Group OSCORE group-mode recipient context for one
    /// authorised sender (its authentication credential included).
    GroupOscoreRecipient,
    /// Anything else (kept, not used here).
    Other(u32),
}

/// The number, as the data model writes it.
impl fmt::Display for CredType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.as_u32())
    }
}

impl From<u32> for CredType {
    fn from(v: u32) -> Self {
        CredType::from_u32(v)
    }
}

impl From<CredType> for u32 {
    fn from(t: CredType) -> u32 {
        t.as_u32()
    }
}

impl CredType {
    /// From the numeric `credtype`.
    pub fn from_u32(v: u32) -> Self {
        match v {
            1 => CredType::PairwiseSymmetric,
            64 => CredType::PairwiseOscore,
            128 => CredType::SsmClient,
            256 => CredType::SsmServer,
            crate::group_cred::CREDTYPE_GROUP_SENDER => CredType::GroupOscoreSender,
            crate::group_cred::CREDTYPE_GROUP_RECIPIENT => CredType::GroupOscoreRecipient,
            v => CredType::Other(v),
        }
    }

    /// An OSCORE credential: 64, 128, 256 or one of the group-mode types.
    pub fn is_oscore(self) -> bool {
        matches!(
            self,
            CredType::PairwiseOscore
                | CredType::SsmClient
                | CredType::SsmServer
                | CredType::GroupOscoreSender
                | CredType::GroupOscoreRecipient
        )
    }

    /// The numeric `credtype`.
    pub fn as_u32(self) -> u32 {
        match self {
            CredType::PairwiseSymmetric => 1,
            CredType::PairwiseOscore => 64,
            CredType::SsmClient => 128,
            CredType::SsmServer => 256,
            CredType::GroupOscoreSender => crate::group_cred::CREDTYPE_GROUP_SENDER,
            CredType::GroupOscoreRecipient => crate::group_cred::CREDTYPE_GROUP_RECIPIENT,
            CredType::Other(v) => v,
        }
    }
}

/// Why a credential is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredError {
    /// Bad JSON or a missing field.
    #[error("cannot read credentials: {0}")]
    Parse(String),
    /// A field breaks the rules of its credtype.
    #[error("credential {credid}: {why}")]
    Invalid {
        /// The credential.
        credid: u32,
        /// What is wrong.
        why: String,
    },
}

/// `privatedata`.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PrivateData {
    /// The key: hex for `oic.sec.encoding.raw`, base64 for `…base64`.
    pub data: String,
    /// `oic.sec.encoding.raw` or `oic.sec.encoding.base64`.
    pub encoding: String,
}

impl fmt::Debug for PrivateData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateData({}, <secret>)", self.encoding)
    }
}

impl PrivateData {
    /// Raw bytes, hex-encoded in JSON.
    pub fn raw(bytes: &[u8]) -> Self {
        PrivateData {
            data: hex::encode(bytes),
            encoding: "oic.sec.encoding.raw".into(),
        }
    }

    /// The key bytes.
    pub fn bytes(&self) -> Result<zeroize::Zeroizing<Vec<u8>>, PrivateDataError> {
        use base64::Engine;
        let v = match self.encoding.as_str() {
            "oic.sec.encoding.raw" => {
                hex::decode(&self.data).map_err(|_| PrivateDataError::NotHex)?
            }
            "oic.sec.encoding.base64" => base64::engine::general_purpose::STANDARD
                .decode(&self.data)
                .map_err(|_| PrivateDataError::NotBase64)?,
            e => return Err(PrivateDataError::Encoding(e.to_string())),
        };
        Ok(zeroize::Zeroizing::new(v))
    }
}

/// Why `privatedata` holds no usable key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrivateDataError {
    /// `oic.sec.encoding.raw` data that is not hex.
    #[error("privatedata.data is not hex")]
    NotHex,
    /// `oic.sec.encoding.base64` data that is not base64.
    #[error("privatedata.data is not base64")]
    NotBase64,
    /// An encoding this implementation does not read.
    #[error("unsupported privatedata encoding {0:?}")]
    Encoding(String),
}

/// The `oscore` object of a credential.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub struct OscoreFields {
    /// Sender ID, 14 hex digits (types 64, 128).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub senderid: Option<String>,
    /// Recipient ID, 14 hex digits (types 64, 256).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipientid: Option<String>,
    /// Sender sequence number (read-only; types 64, 128).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssn: Option<u64>,
    /// Description (types 128, 256 and the group-mode types).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub desc: Option<String>,
    /// Group-mode material (credtypes 65536 and 131072 only; see
    /// [`crate::group_cred`]): Group ID, salt, algorithms, credentials.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<crate::group_cred::GroupFields>,
}

/// One credential.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Credential {
    /// `credid`.
    pub credid: u32,
    /// `subjectuuid`: a UUID or `*`.
    pub subjectuuid: String,
    /// `credtype`.
    pub credtype: CredType,
    /// `privatedata`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub privatedata: Option<PrivateData>,
    /// `oscore`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oscore: Option<OscoreFields>,
}

/// The `/oic/sec/cred` resource: `{"creds": [...], "rowneruuid": ...}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct CredResource {
    /// The credentials.
    pub creds: Vec<Credential>,
    /// Resource owner.
    pub rowneruuid: String,
}

/// What an OSCORE credential says, checked.
#[derive(Clone)]
pub struct OscoreCred {
    /// `credid`.
    pub credid: u32,
    /// 64, 128 or 256.
    pub credtype: CredType,
    /// The subject: for 64 the peer, for 256 the client allowed to multicast.
    pub subject: Option<Uuid>,
    /// The master secret (32 bytes).
    pub secret: zeroize::Zeroizing<Vec<u8>>,
    /// Sender ID (64, 128).
    pub sender_id: Option<Id>,
    /// Recipient ID (64, 256).
    pub recipient_id: Option<Id>,
    /// Stored sender sequence number, if any.
    pub ssn: Option<u64>,
    /// Group-mode material (credtypes 65536, 131072).
    pub group: Option<crate::group_cred::GroupMaterial>,
}

impl fmt::Debug for OscoreCred {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OscoreCred")
            .field("credid", &self.credid)
            .field("credtype", &self.credtype)
            .field("subject", &self.subject)
            .field("secret", &"<secret>")
            .field("sender_id", &self.sender_id)
            .field("recipient_id", &self.recipient_id)
            .field("group", &self.group)
            .finish()
    }
}

fn parse_id(credid: u32, what: &str, hex_id: &str) -> Result<Id, CredError> {
    let bad = |why: String| CredError::Invalid { credid, why };
    let b = hex::decode(hex_id).map_err(|_| bad(format!("{what} {hex_id:?} is not hex")))?;
    if b.len() != OSCORE_ID_LEN {
        return Err(bad(format!(
            "{what} must be {OSCORE_ID_LEN} bytes (14 hex digits), got {}",
            b.len()
        )));
    }
    Id::new(&b).map_err(|e| bad(e.to_string()))
}

impl Credential {
    /// The credtype.
    pub fn cred_type(&self) -> CredType {
        self.credtype
    }

    /// Checks an OSCORE credential against the rules of its type
    /// (REFERENCE-SSM §1) and returns what it defines. `Ok(None)` for
    /// credentials that are not OSCORE.
    pub fn oscore(&self) -> Result<Option<OscoreCred>, CredError> {
        let t = self.cred_type();
        if !t.is_oscore() {
            return Ok(None);
        }
        let bad = |why: &str| CredError::Invalid {
            credid: self.credid,
            why: why.to_string(),
        };
        let o = self
            .oscore
            .as_ref()
            .ok_or_else(|| bad("OSCORE credential without an oscore object"))?;
        let (need_s, need_r) = match t {
            CredType::PairwiseOscore => (true, true),
            CredType::SsmClient | CredType::GroupOscoreSender => (true, false),
            _ => (false, true),
        };
        let group = crate::group_cred::check(self.credid, t, &o.group)?;
        if o.senderid.is_some() != need_s {
            return Err(bad(if need_s {
                "senderid is required"
            } else {
                "senderid is not allowed for this credtype"
            }));
        }
        if o.recipientid.is_some() != need_r {
            return Err(bad(if need_r {
                "recipientid is required"
            } else {
                "recipientid is not allowed for this credtype"
            }));
        }
        if t == CredType::PairwiseOscore && o.desc.is_some() {
            return Err(bad("desc is not allowed for a pair-wise OSCORE credential"));
        }
        let secret = self
            .privatedata
            .as_ref()
            .ok_or_else(|| bad("privatedata missing"))?
            .bytes()
            .map_err(|e| bad(&e.to_string()))?;
        if secret.len() != MASTER_SECRET_LEN {
            return Err(bad("the master secret must be 32 bytes"));
        }
        let subject = if self.subjectuuid == "*" {
            None
        } else {
            Some(
                self.subjectuuid
                    .parse::<Uuid>()
                    .map_err(|_| bad("subjectuuid is not a UUID"))?,
            )
        };
        let sender_id = o
            .senderid
            .as_deref()
            .map(|s| parse_id(self.credid, "senderid", s))
            .transpose()?;
        let recipient_id = o
            .recipientid
            .as_deref()
            .map(|s| parse_id(self.credid, "recipientid", s))
            .transpose()?;
        // RFC 8613 §3.3: the Sender IDs of the endpoints sharing a master
        // secret are unique. The same ID both ways gives both directions
        // one key and one nonce space (a nonce reuse across them).
        if sender_id.is_some() && sender_id == recipient_id {
            return Err(bad(
                "senderid and recipientid must differ (the same ID both ways shares one key and nonce between the two directions)",
            ));
        }
        Ok(Some(OscoreCred {
            credid: self.credid,
            credtype: t,
            subject,
            secret,
            sender_id,
            recipient_id,
            ssn: o.ssn,
            group,
        }))
    }
}

impl CredResource {
    /// Parses the JSON form.
    pub fn from_json(text: &str) -> Result<Self, CredError> {
        serde_json::from_str(text).map_err(|e| CredError::Parse(e.to_string()))
    }

    /// The JSON form.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Every OSCORE credential, checked; the first invalid one is an error.
    pub fn oscore_creds(&self) -> Result<Vec<OscoreCred>, CredError> {
        let mut out = Vec::new();
        for c in &self.creds {
            if let Some(o) = c.oscore()? {
                out.push(o);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cred(credtype: CredType, s: Option<&str>, r: Option<&str>) -> Credential {
        Credential {
            credid: 1,
            subjectuuid: "63867d7e-d149-48bb-5f60-72aab3ca024c".into(),
            credtype,
            privatedata: Some(PrivateData::raw(&[7; 32])),
            oscore: Some(OscoreFields {
                senderid: s.map(String::from),
                recipientid: r.map(String::from),
                ssn: None,
                desc: None,
                group: None,
            }),
        }
    }

    #[test]
    fn per_type_rules() {
        let id = Some("029e1b4b90f1cd");
        assert!(cred(CredType::SsmServer, None, id)
            .oscore()
            .unwrap()
            .is_some());
        assert!(cred(CredType::SsmServer, id, id).oscore().is_err());
        assert!(cred(CredType::SsmServer, None, None).oscore().is_err());
        assert!(cred(CredType::SsmClient, id, None)
            .oscore()
            .unwrap()
            .is_some());
        assert!(cred(CredType::SsmClient, None, id).oscore().is_err());
        assert!(cred(CredType::PairwiseOscore, id, Some("01aabbccddeeff"))
            .oscore()
            .unwrap()
            .is_some());
        assert!(cred(CredType::PairwiseOscore, id, None).oscore().is_err());
        assert!(cred(CredType::SsmServer, None, Some("0102"))
            .oscore()
            .is_err());
        let mut c = cred(CredType::SsmServer, None, id);
        c.privatedata = Some(PrivateData::raw(&[1; 16]));
        assert!(c.oscore().is_err());
        assert!(cred(CredType::PairwiseSymmetric, None, None)
            .oscore()
            .unwrap()
            .is_none());
    }

    #[test]
    fn pairwise_same_id_both_ways_is_refused() {
        // Review side note: one key and nonce space for both directions.
        for (s, r) in [
            ("029e1b4b90f1cd", "029e1b4b90f1cd"),
            ("029E1B4B90F1CD", "029e1b4b90f1cd"), // same bytes, other case
        ] {
            let err = cred(CredType::PairwiseOscore, Some(s), Some(r))
                .oscore()
                .unwrap_err();
            assert!(
                err.to_string()
                    .contains("senderid and recipientid must differ"),
                "{err}"
            );
        }
        assert!(cred(
            CredType::PairwiseOscore,
            Some("029e1b4b90f1cd"),
            Some("029e1b4b90f1ce")
        )
        .oscore()
        .unwrap()
        .is_some());
        // A credential set holding one is refused as a whole.
        let set = CredResource {
            creds: vec![cred(
                CredType::PairwiseOscore,
                Some("01aabbccddeeff"),
                Some("01aabbccddeeff"),
            )],
            rowneruuid: String::new(),
        };
        assert!(set.oscore_creds().is_err());
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let c = cred(CredType::SsmServer, None, Some("029e1b4b90f1cd"));
        let dbg = format!("{:?} {:?}", c, c.oscore().unwrap().unwrap());
        assert!(!dbg.contains(&hex::encode([7u8; 32])), "{dbg}");
        assert!(!dbg.contains("7, 7, 7"), "{dbg}");
    }
}

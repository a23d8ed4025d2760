//! `/oic/sec/doxm` (`oic.r.doxm`): ownership (DIGEST §5). Only owner
//! transfer methods that are implemented are listed in `oxms`: Random PIN
//! (1). Just Works needs a cipher suite no DTLS library has.
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Random PIN owner transfer (`oic.sec.doxm.rdp`).
pub const OXM_RANDOM_PIN: u32 = 1;
/// `sct` bits this device supports: PSK (1), pair-wise OSCORE (64), SSM
/// client (128), SSM server (256).
pub const SCT_SUPPORTED: u32 = 1 | 64 | 128 | 256;

/// The doxm resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Doxm {
    /// Supported owner transfer methods.
    pub oxms: Vec<u32>,
    /// Selected method.
    pub oxmsel: u32,
    /// Supported credential types (bitmask).
    pub sct: u32,
    /// Owned.
    pub owned: bool,
    /// The device UUID (replaced by the OBT during owner transfer).
    #[serde(with = "crate::security::uuid_text")]
    pub deviceuuid: Uuid,
    /// The owner.
    #[serde(with = "crate::security::uuid_text")]
    pub devowneruuid: Uuid,
    /// Resource owner.
    #[serde(with = "crate::security::uuid_text")]
    pub rowneruuid: Uuid,
}

impl Doxm {
    /// An unowned device with identity `deviceuuid`.
    pub fn unowned(deviceuuid: Uuid) -> Self {
        Doxm {
            oxms: vec![OXM_RANDOM_PIN],
            oxmsel: OXM_RANDOM_PIN,
            sct: SCT_SUPPORTED,
            owned: false,
            deviceuuid,
            devowneruuid: Uuid::nil(),
            rowneruuid: Uuid::nil(),
        }
    }
}

//! The domain's names as types: what a device is and where it stands.
//!
//! The store keeps them as text (`light`, `switch`; `onboarding`, `owned`,
//! `provisioned`, `stale`, `external`): the database schema is unchanged, the mapping
//! is here and nowhere else.
use std::fmt;
use std::str::FromStr;

/// What a device is in the domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DeviceRole {
    /// A light: an SSM server (credtype 256), a pair-wise responder.
    Light,
    /// A switch: an SSM client (credtype 128), a pair-wise requester.
    Switch,
}

impl DeviceRole {
    /// The text the store and the CLI use.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceRole::Light => "light",
            DeviceRole::Switch => "switch",
        }
    }
}

/// Where a device stands with the domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceState {
    /// The PIN session stood; the OBT has not seen the owner transfer end
    /// (settled at the next start: `ssm obt` asks the device).
    Onboarding,
    /// Owned, nothing to provision.
    Owned,
    /// Holds what the domain says.
    Provisioned,
    /// The domain changed; the device has not been brought up to date yet
    /// (`ssm obt sync`).
    Stale,
    /// An external member of `group-oscore` groups (not an OCF device:
    /// never onboarded, no endpoint, never reached by the OBT; its CCS was
    /// registered by the administrator, it fetches its keys with `ssm obt
    /// external material`). Never stale.
    External,
}

impl DeviceState {
    /// The text the store and the CLI use.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceState::Onboarding => "onboarding",
            DeviceState::Owned => "owned",
            DeviceState::Provisioned => "provisioned",
            DeviceState::Stale => "stale",
            DeviceState::External => "external",
        }
    }
}

/// A role or state text that names none.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {text:?}")]
pub struct UnknownName {
    /// `role` or `state`.
    pub what: &'static str,
    /// The text.
    pub text: String,
}

impl FromStr for DeviceRole {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, UnknownName> {
        match s {
            "light" => Ok(DeviceRole::Light),
            "switch" => Ok(DeviceRole::Switch),
            _ => Err(UnknownName {
                what: "role",
                text: s.into(),
            }),
        }
    }
}

impl FromStr for DeviceState {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, UnknownName> {
        match s {
            "onboarding" => Ok(DeviceState::Onboarding),
            "owned" => Ok(DeviceState::Owned),
            "provisioned" => Ok(DeviceState::Provisioned),
            "stale" => Ok(DeviceState::Stale),
            "external" => Ok(DeviceState::External),
            _ => Err(UnknownName {
                what: "state",
                text: s.into(),
            }),
        }
    }
}

impl fmt::Display for DeviceRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl fmt::Display for DeviceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for r in [DeviceRole::Light, DeviceRole::Switch] {
            assert_eq!(r.as_str().parse::<DeviceRole>(), Ok(r));
        }
        for s in [
            DeviceState::Onboarding,
            DeviceState::Owned,
            DeviceState::Provisioned,
            DeviceState::Stale,
            DeviceState::External,
        ] {
            assert_eq!(s.as_str().parse::<DeviceState>(), Ok(s));
        }
        assert!("lamp".parse::<DeviceRole>().is_err());
        assert!("gone".parse::<DeviceState>().is_err());
        assert_eq!(format!("{:<8}|", DeviceRole::Light), "light   |");
    }
}

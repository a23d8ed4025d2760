//! Why a device did not start ([`super::start`]).
use crate::state_dir::{Corrupt, LoadError};
use std::io;

/// Why a device did not start.
#[derive(Debug)]
pub enum DeviceError {
    /// The [`Device`](ssm_ocf::device::Device) was given no security state.
    NoSecurityState,
    /// A state file (`svr.json`, the replay floors) does not decode.
    StateFile(Corrupt),
    /// The latest floor-journal record of the device does not decode.
    FloorJournal(serde_json::Error),
    /// The credentials do not decode.
    Credentials(ssm_ocf::cred::CredError),
    /// The SSM contexts cannot be derived from the credentials.
    SsmContext(ssm_oscore::Error),
    /// A pair-wise OSCORE context cannot be derived from its credential.
    PairwiseContext {
        /// The credential.
        credid: u32,
        /// Why.
        reason: ssm_ocf::ssm::ContextError,
    },
    /// Files, interfaces, sockets.
    Io(io::Error),
}

impl std::fmt::Display for DeviceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceError::NoSecurityState => f.write_str("the device has no security state"),
            DeviceError::StateFile(c) => c.fmt(f),
            DeviceError::FloorJournal(e) => write!(f, "floor journal: {e}"),
            DeviceError::Credentials(e) => e.fmt(f),
            DeviceError::SsmContext(e) => e.fmt(f),
            DeviceError::PairwiseContext { credid, reason } => {
                write!(f, "credential {credid}: {reason}")
            }
            DeviceError::Io(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for DeviceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DeviceError::StateFile(c) => Some(c),
            DeviceError::FloorJournal(e) => Some(e),
            DeviceError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for DeviceError {
    fn from(e: io::Error) -> Self {
        DeviceError::Io(e)
    }
}

impl From<LoadError> for DeviceError {
    fn from(e: LoadError) -> Self {
        match e {
            LoadError::Io(e) => DeviceError::Io(e),
            LoadError::Corrupt(c) => DeviceError::StateFile(c),
            LoadError::Credentials { error, .. } => DeviceError::Credentials(error),
        }
    }
}

impl From<DeviceError> for io::Error {
    fn from(e: DeviceError) -> io::Error {
        match e {
            DeviceError::Io(e) => e,
            DeviceError::NoSecurityState => io::Error::new(io::ErrorKind::InvalidInput, e),
            e => io::Error::new(io::ErrorKind::InvalidData, e),
        }
    }
}

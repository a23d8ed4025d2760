//! The OBT engine: every operation of `ssm obt` as a library call.
//!
//! Every change to the domain is first written to the store in one
//! transaction that also marks the devices it concerns `stale`; then those
//! devices are brought up to date (lights first, then switches) and marked
//! `provisioned` one by one ([`sync_devices`]). A crash, an offline device
//! or a refused step leaves the truth in the store: a later sync finishes
//! the job. Each operation returns a typed report; progress goes to a
//! caller-given callback (a terminal progress bar is the caller's).
use ssm_runtime::client::{MulticastScope, MulticastTargets};
use ssm_runtime::random_bytes;
use std::net::SocketAddr;
use std::time::Duration;
use uuid::Uuid;

use crate::store::StoreError;

pub mod external;
mod groups;
pub mod maint;
mod onboard;
mod ops;
pub mod sheet;
pub mod status;
mod sync;

pub use external::{
    external_add, external_remove, material, read_authcred, ExternalRemoved, Material,
};
pub use groups::{
    auto_enrol, grant_group, group_add, group_create, group_create_with, group_delete, group_rekey,
    group_remove, revoke_group, GroupChanged, GroupDeleted,
};
pub use maint::{inspect, rename, Inspection, Renamed};
pub use onboard::{
    advertised_role, onboard, onboard_many, settle_onboarding, OnboardJob, OnboardReport,
    OnboardSource, Onboarding, Pin,
};
pub use ops::{
    discover, grant, lights_of, offboard, rekey, revoke, sync, Discovered, Granted, Offboarded,
    Rekeyed, Revoked, SyncScope, NOT_OWNED,
};
pub use sheet::{RowOutcome, SheetLine, SheetReport};
pub use status::{status, watch, Arrival, DeviceStatus};
pub use sync::{sync_devices, Synced};

/// How far a long operation is, for a progress display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// `total` devices to work on; `what` names the unit done
    /// (`devices up to date`, `onboarded`).
    Start {
        /// Devices to work on.
        total: usize,
        /// What one step means.
        what: &'static str,
    },
    /// One more device done (succeeded or failed).
    Step,
    /// Every device done.
    Finish,
}

/// A progress callback that shows nothing.
pub fn no_progress(_: Progress) {}

/// Engine errors. Store errors keep their own type (a caller maps them to
/// an exit status); the rest say what the request lacked.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The domain store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A device exchange outside the per-device reports.
    #[error(transparent)]
    Obt(#[from] ssm_runtime::obt_transport::ObtError),
    /// A socket error (opening the multicast sockets, discovery).
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A bad endpoint.
    #[error(transparent)]
    Endpoint(#[from] ssm_runtime::netif::EndpointError),
    /// No lights were named (and `--all` was not given).
    #[error("no lights: name them or use --all")]
    NoLightsNamed,
    /// The domain has no light.
    #[error("no lights in the domain: onboard some first (`ssm obt onboard`)")]
    NoLights,
    /// A grant names a device that is not a switch.
    #[error("{name} is a {role}; grant a switch (a client) to lights")]
    NotASwitch {
        /// Its name.
        name: String,
        /// Its role.
        role: crate::DeviceRole,
    },
    /// A revoke for a switch that commands no light.
    #[error("{0} may command no light")]
    NoGrants(String),
    /// A rekey before the first grant.
    #[error("no SSM group `all` yet: grant a switch first (`ssm obt ssm grant`), or rekey a named group (`ssm obt group rekey NAME`)")]
    NoGroup,
    /// A commissioning sheet with malformed lines (number, why).
    #[error("the sheet has malformed lines (nothing was onboarded):{}", .0.iter().map(|(n, w)| format!("\n  line {n}: {w}")).collect::<String>())]
    BadSheet(Vec<(usize, String)>),
    /// A group command without devices.
    #[error("no devices: name lights or switches")]
    NoDevicesNamed,
    /// A rekey of a group that has no key yet.
    #[error(
        "the SSM group {0} has no key yet: add a device first (`ssm obt group add {0} DEVICE`)"
    )]
    NoGroupKey(String),
    /// An authentication credential that is not an Ed25519 CCS.
    #[error("the authentication credential: {0}")]
    BadAuthCred(String),
    /// A name no device may have.
    #[error("{0:?} is not a name: give a name without spaces")]
    BadName(String),
    /// An external-member command for a device of the domain.
    #[error("{0} is an OCF device of this domain, not an external member: the OBT brings it its keys (`ssm obt sync`)")]
    NotExternal(String),
    /// A command that reaches the device, for an external member.
    #[error("{0} is an external member: the OBT never reaches it (`ssm obt external material` gives its keys, `ssm obt external remove` forgets it)")]
    IsExternal(String),
    /// External material of a group that is not `group-oscore`.
    #[error(
        "the group {0} is `ocf-ssm`: external members take part in `group-oscore` groups only"
    )]
    NotGroupMode(String),
    /// External material of a group the member is not in.
    #[error("{member} is not in the group {group}: `ssm obt group add {group} {member}` (a light) or `ssm obt ssm grant {member} --group {group}` (a switch)")]
    NotInGroup {
        /// The member.
        member: String,
        /// The group.
        group: String,
    },
    /// A worker task ended abnormally.
    #[error("{0}")]
    Task(String),
}

impl EngineError {
    /// Whether the request itself was wrong (a usage error), not the
    /// domain or a device.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            EngineError::NoLightsNamed
                | EngineError::NoDevicesNamed
                | EngineError::Endpoint(_)
                | EngineError::BadSheet(_)
                | EngineError::BadAuthCred(_)
                | EngineError::BadName(_)
        )
    }
}

/// Where the OBT looks for devices by multicast.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reach {
    /// Interface (only named interfaces are used).
    pub iface: String,
    /// Multicast port.
    pub port: u16,
    /// IPv6 ff02::158 instead of IPv4 224.0.1.187.
    pub ipv6: bool,
    /// Site scope through multicast routers: IPv6 ff05::158 (or IPv4
    /// 224.0.1.187) with this hop limit (TTL). `None`: the link only (hop
    /// limit 1, IPv6 ff02::158).
    pub site_hops: Option<u32>,
}

impl Reach {
    /// The link only (hop limit 1).
    pub fn link(iface: &str, port: u16, ipv6: bool) -> Reach {
        Reach {
            iface: iface.into(),
            port,
            ipv6,
            site_hops: None,
        }
    }

    /// The multicast sockets: this interface only, hop limit 1 (or the
    /// site's).
    pub fn targets(&self) -> Result<MulticastTargets, EngineError> {
        let v6_scope = if self.site_hops.is_some() { 5 } else { 2 };
        let scope = MulticastScope {
            interfaces: vec![self.iface.clone()],
            ipv4: !self.ipv6,
            ipv6_scopes: if self.ipv6 { vec![v6_scope] } else { vec![] },
            port: self.port,
            hops: self.site_hops.unwrap_or(1),
        };
        Ok(MulticastTargets::open(&scope)?)
    }

    /// Unowned devices answering within `wait`.
    pub async fn unowned(&self, wait: Duration) -> Result<Vec<(SocketAddr, Uuid)>, EngineError> {
        Ok(ssm_runtime::obt_transport::discover_unowned(&self.targets()?, wait).await?)
    }
}

/// Fills `b` from the system's CSPRNG (the store's `random` source).
pub fn rng(b: &mut [u8]) {
    for chunk in b.chunks_mut(32) {
        let r = random_bytes::<32>();
        chunk.copy_from_slice(&r[..chunk.len()]);
    }
}

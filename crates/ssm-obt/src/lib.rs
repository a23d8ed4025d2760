//! The onboarding tool (OBT) as a library: the secure-domain store
//! ([`store`]) and the engine that works on devices ([`engine`]: onboard,
//! grant, revoke, rekey, offboard, sync, the group operations and
//! auto-enrolment); `ssm obt` only parses and prints.
//!
//! One SQLite file (bundled SQLite, WAL, busy timeout) holds the OBT's
//! identity, the devices it owns with their owner PSKs, the SSM groups
//! (zones: each with its name, id, secret, epoch, members and switches; the
//! group `all` for grants without a group) and every Sender ID ever
//! allocated (never reused, across groups too), and an audit log. The schema is versioned (`PRAGMA user_version`) and
//! migrated forward; a file from a newer version is refused. A second OBT
//! process on the same domain gets a clear "locked" error (an exclusive
//! lock on `<domain>.lock`). Every multi-step change is one transaction.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod engine;
pub mod model;
pub mod plan;
pub mod store;

pub use engine::Reach;
pub use model::{DeviceRole, DeviceState};

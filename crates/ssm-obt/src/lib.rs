//! The onboarding tool (OBT) application layer: the secure-domain store.
//!
//! One SQLite file (bundled SQLite, WAL, busy timeout) holds the OBT's
//! identity, the devices it owns with their owner PSKs, the SSM group
//! (secret, epoch) and every Sender ID ever allocated (never reused), and
//! an audit log. The schema is versioned (`PRAGMA user_version`) and
//! migrated forward; a file from a newer version is refused. A second OBT
//! process on the same domain gets a clear "locked" error (an exclusive
//! lock on `<domain>.lock`). Every multi-step change is one transaction.
#![forbid(unsafe_code)]

pub mod plan;
pub mod store;

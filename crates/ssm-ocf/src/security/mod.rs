//! The OCF security virtual resources (OCF Security; DIGEST §5) and the
//! access rules every request passes (sans-IO):
//!
//! * `/oic/sec/doxm`, `/oic/sec/pstat` (the onboarding state machine),
//!   `/oic/sec/cred`, `/oic/sec/acl2`, `/oic/sec/sdi`, `/oic/sec/sp`.
//! * Unsecured requests reach only `/oic/res`, `/oic/d`, `/oic/p` and
//!   `doxm` (plus what an `anon-clear` ACE grants); application resources
//!   need a secured request (DTLS or OSCORE), RFNOP and an ACE; security
//!   resources are written only by the owner, in the states that allow it.
//! * An SSM request is authorised as coming from its credential's
//!   `subjectuuid`.
pub mod acl2;
pub mod doxm;
pub mod otm;
pub mod pstat;
pub mod svr;
pub mod uuid_text;

pub use svr::{Access, OwnerTransferEnd, Peer, SecurityState, SvrOutcome};

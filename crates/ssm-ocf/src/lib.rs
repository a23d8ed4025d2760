//! The OCF model layer of ocf-ssm (sans-IO): what a device, a client and
//! (later) an onboarding tool know about OCF, with no sockets, clocks or
//! files.
//!
//! * [`message`]: OCF content format 10000 and the version options
//!   2049/2053 (OCF Core; `shared/ocf/DIGEST.md` §1), the 4.15 rule.
//! * [`resource`]: the [`resource::Resource`] trait a device maker implements
//!   for a new resource type, interfaces and representations (DIGEST §3).
//! * [`switch`]: `oic.r.switch.binary`.
//! * [`discovery`]: `/oic/res` links, `eps` with the SSM multicast entries
//!   (REFERENCE-SSM §5), and the client-side parser.
//! * [`device`]: a device's request handling: `/oic/res`, `/oic/d`,
//!   `/oic/p`, `/introspection`, application resources, Observe.
//! * [`cred`]: `/oic/sec/cred` credentials (credtypes 64, 128, 256) and the
//!   OSCORE contexts they define.
//! * [`ssm`]: the SSM receive rule (verify, replay, POST only, SSM-enabled
//!   resource, never answer) and the sender.
#![forbid(unsafe_code)]

pub mod cbor;
pub mod cred;
pub mod device;
pub mod discovery;
pub mod message;
pub mod obt;
pub mod provision;
pub mod resource;
pub mod security;
pub mod ssm;
pub mod switch;

pub use uuid::Uuid;

//! The OCF model layer of ocf-ssm (sans-IO): what a device, a client and
//! an onboarding tool know about OCF, with no sockets, clocks or files.
//!
//! * [`message`]: OCF content format 10000 and the version options
//!   2049/2053 (OCF Core; `shared/ocf/DIGEST.md` §1), the 4.15 rule.
//! * [`resource`]: the [`resource::Resource`] trait a device maker implements
//!   for a new resource type, interfaces and representations (DIGEST §3).
//! * [`switch`], the binary switch `oic.r.switch.binary` a light hosts.
//! * [`discovery`]: `/oic/res` links, `eps` with the SSM multicast entries
//!   (REFERENCE-SSM §5), and the client-side parser.
//! * [`device`]: a device's request handling: `/oic/res`, `/oic/d`,
//!   `/oic/p`, `/introspection`, application resources, Observe.
//! * [`groups`]: the grouping resource `oic.r.groups` (`/groupsResURI`):
//!   the SSM groups a device belongs to.
//! * [`cred`]: `/oic/sec/cred` credentials (credtypes 64, 128, 256) and the
//!   OSCORE contexts they define.
//! * [`ssm`]: the SSM receive rule (verify, replay, POST only, SSM-enabled
//!   resource, never answer) and the sender.
//! * [`security`]: `/oic/sec/doxm`, `pstat`, `cred`, `acl2`, `sdi` and the
//!   access rule every request passes (DIGEST §5); owner-transfer keys.
//! * [`onboarding`]: the onboarding tool's owner transfer, provisioning and
//!   reconciliation as request sequences (DIGEST §6–§7).
//! * [`provision`]: consistent SSM credential sets (REFERENCE-SSM §6).
//! * [`cbor`]: CBOR helpers for OCF payloads.
//!
//! References: RFC 7252 (CoAP), RFC 7641 (Observe), RFC 8613 (OSCORE) and
//! the OCF resource types by name (`oic.r.*`, `oic.wk.*`). The OCF Core and
//! Security texts may not be quoted, so "DIGEST §n" points to the
//! implementer's digest `shared/ocf/DIGEST.md` (section n, which names the
//! OCF specification clause) and "REFERENCE-SSM §n" to the description of
//! the reference stack's SSM, `shared/ocf/REFERENCE-SSM.md`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cbor;
pub mod cred;
pub mod device;
pub mod discovery;
pub mod group_cred;
pub mod groups;
pub mod message;
pub mod observe;
pub mod onboarding;
pub mod provision;
pub mod resource;
pub mod security;
pub mod ssm;
pub mod switch;

pub use uuid::Uuid;

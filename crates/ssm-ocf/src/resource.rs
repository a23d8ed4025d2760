//! The resource model a device maker implements (OCF Core: resources,
//! interfaces, representations; DIGEST §3).
//!
//! A resource type is a [`Resource`]: its resource types, interfaces, its
//! properties as a CBOR map, and an UPDATE rule that validates everything
//! before it changes anything. The device adds the common properties (`rt`,
//! `if`, `n`) and routes requests; adding, say, a dimming resource needs no
//! change to the device or the runtime.
use ciborium::Value;

/// `oic.if.baseline`: all properties including `rt` and `if`.
pub const IF_BASELINE: &str = "oic.if.baseline";
/// `oic.if.a`: actuator (RETRIEVE and UPDATE).
pub const IF_A: &str = "oic.if.a";
/// `oic.if.s`: sensor (RETRIEVE only).
pub const IF_S: &str = "oic.if.s";
/// `oic.if.rw`: read-write.
pub const IF_RW: &str = "oic.if.rw";
/// `oic.if.r`: read-only.
pub const IF_R: &str = "oic.if.r";
/// `oic.if.ll`: links list.
pub const IF_LL: &str = "oic.if.ll";

/// Why an UPDATE was refused (mapped to 4.00 or 4.05 by the device).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpdateError {
    /// A property this resource does not have.
    #[error("unknown property {0:?}")]
    UnknownProperty(String),
    /// A read-only property.
    #[error("property {0:?} is read-only")]
    ReadOnly(String),
    /// A property of the wrong type or out of range.
    #[error("property {0:?} has the wrong type or value")]
    BadValue(String),
    /// The resource accepts no UPDATE.
    #[error("UPDATE not allowed")]
    NotAllowed,
}

/// An OCF resource type implementation.
pub trait Resource: Send {
    /// Resource types (`rt`), e.g. `["oic.r.switch.binary"]`.
    fn resource_types(&self) -> &[&'static str];
    /// Interfaces (`if`); the first is the default.
    fn interfaces(&self) -> &[&'static str];
    /// The resource's own properties as `(name, value)` pairs (not `rt`,
    /// `if`, `n`).
    fn properties(&self) -> Vec<(&'static str, Value)>;
    /// Applies the properties of an UPDATE (common properties already
    /// removed). Must check every property before changing anything.
    /// Returns whether the state changed.
    fn update(&mut self, props: &[(String, Value)]) -> Result<bool, UpdateError>;
    /// A swagger 2.0 document describing the resource (for introspection);
    /// its single path is renamed to the resource's href by the device.
    fn introspection(&self) -> Option<serde_json::Value> {
        None
    }
}

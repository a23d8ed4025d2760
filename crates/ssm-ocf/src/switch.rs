//! `oic.r.switch.binary` (OCF IoTDataModels, `models/BinarySwitchResURI.swagger.json`):
//! one boolean property `value`, interfaces `oic.if.a` and `oic.if.baseline`.
use crate::resource::{Resource, UpdateError, IF_A, IF_BASELINE};
use ciborium::Value;

/// The resource type.
pub const RT_SWITCH_BINARY: &str = "oic.r.switch.binary";
/// The href the data model uses.
pub const HREF: &str = "/BinarySwitchResURI";

/// The OCF data model of the switch, served as introspection data.
pub const SWAGGER: &str = include_str!("../models/BinarySwitchResURI.swagger.json");

/// A binary switch (a light's on/off).
#[derive(Debug, Default, Clone)]
pub struct BinarySwitch {
    /// On (`true`) or off.
    pub value: bool,
}

impl Resource for BinarySwitch {
    fn resource_types(&self) -> &[&'static str] {
        &[RT_SWITCH_BINARY]
    }

    fn interfaces(&self) -> &[&'static str] {
        &[IF_A, IF_BASELINE]
    }

    fn properties(&self) -> Vec<(&'static str, Value)> {
        vec![("value", Value::Bool(self.value))]
    }

    fn update(&mut self, props: &[(String, Value)]) -> Result<bool, UpdateError> {
        let mut new = None;
        for (k, v) in props {
            match (k.as_str(), v) {
                ("value", Value::Bool(b)) => new = Some(*b),
                ("value", _) => return Err(UpdateError::BadValue(k.clone())),
                _ => return Err(UpdateError::UnknownProperty(k.clone())),
            }
        }
        let Some(v) = new else { return Ok(false) };
        let changed = v != self.value;
        self.value = v;
        Ok(changed)
    }

    fn introspection(&self) -> Option<serde_json::Value> {
        serde_json::from_str(SWAGGER).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_rules() {
        let mut s = BinarySwitch::default();
        assert_eq!(s.update(&[("value".into(), Value::Bool(true))]), Ok(true));
        assert_eq!(s.update(&[("value".into(), Value::Bool(true))]), Ok(false));
        assert!(matches!(
            s.update(&[("value".into(), Value::Integer(1.into()))]),
            Err(UpdateError::BadValue(_))
        ));
        // A bad property anywhere changes nothing.
        assert!(s
            .update(&[
                ("value".into(), Value::Bool(false)),
                ("dim".into(), Value::Bool(true))
            ])
            .is_err());
        assert!(s.value);
        assert!(s.introspection().is_some());
    }
}

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

/// What a light is at power-on (as the OCF power-on behaviour of a
/// luminaire: the last state, or a fixed one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PowerOn {
    /// The state it had when it went off (off if it never had one).
    #[default]
    Last,
    /// Always on.
    On,
    /// Always off.
    Off,
}

impl PowerOn {
    /// The value at power-on, given the last persisted one (`None`: never
    /// persisted, or unreadable).
    pub fn initial(self, last: Option<bool>) -> bool {
        match self {
            PowerOn::Last => last.unwrap_or(false),
            PowerOn::On => true,
            PowerOn::Off => false,
        }
    }
}

impl std::str::FromStr for PowerOn {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "last" => Ok(PowerOn::Last),
            "on" => Ok(PowerOn::On),
            "off" => Ok(PowerOn::Off),
            _ => Err(format!("{s:?}: expected last, on or off")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_on() {
        for last in [None, Some(false), Some(true)] {
            assert!(PowerOn::On.initial(last));
            assert!(!PowerOn::Off.initial(last));
        }
        assert!(!PowerOn::Last.initial(None));
        assert!(!PowerOn::Last.initial(Some(false)));
        assert!(PowerOn::Last.initial(Some(true)));
        assert_eq!("last".parse(), Ok(PowerOn::Last));
        assert_eq!("on".parse(), Ok(PowerOn::On));
        assert!("dim".parse::<PowerOn>().is_err());
        assert_eq!(PowerOn::default(), PowerOn::Last);
    }

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

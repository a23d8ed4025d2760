//! The grouping resource of the OCF core extensions (`oic.r.groups` at
//! `/groupsResURI`, "to be used in conjunction with SSM"): the ids of the
//! SSM groups a device belongs to. Interfaces `oic.if.rw` (default) and
//! `oic.if.baseline`; property `groups`, an array of integers. The device
//! serves it from its security state (it is reset with it): readable by
//! authenticated members of the domain, written only by the owner (the
//! onboarding tool keeps it equal to its store).
use crate::cbor;
use crate::message;
use crate::resource::{IF_BASELINE, IF_RW};
use ciborium::Value;
use ssm_coap::{Code, Message, MessageType};

/// Where the resource is.
pub const HREF: &str = "/groupsResURI";
/// Its resource type.
pub const RT: &str = "oic.r.groups";
/// Its interfaces, the default first.
pub const INTERFACES: [&str; 2] = [IF_RW, IF_BASELINE];
/// Most groups one device lists (a bound on what an UPDATE may carry).
pub const MAX_GROUPS: usize = 64;

/// The representation; with `baseline`, `rt` and `if` too.
pub fn value(groups: &[u32], baseline: bool) -> Value {
    let g = Value::Array(groups.iter().map(|&i| Value::Integer(i.into())).collect());
    if baseline {
        cbor::map([
            ("rt", cbor::text_array(&[RT])),
            ("if", cbor::text_array(&INTERFACES)),
            ("groups", g),
        ])
    } else {
        cbor::map([("groups", g)])
    }
}

/// The `groups` of an UPDATE body or a RETRIEVE answer: sorted, without
/// duplicates. `None` if it is not a map with an array of at most
/// [`MAX_GROUPS`] non-negative integers below 2^32 (`rt` and `if` are
/// accepted only in a RETRIEVE answer, `readonly_ok`).
pub fn parse(body: &Value, readonly_ok: bool) -> Option<Vec<u32>> {
    let m = body.as_map()?;
    let mut out = None;
    for (k, v) in m {
        match k.as_text()? {
            "groups" => {
                let a = v.as_array()?;
                if a.len() > MAX_GROUPS {
                    return None;
                }
                let mut g = a
                    .iter()
                    .map(|x| u32::try_from(x.as_integer()?).ok())
                    .collect::<Option<Vec<u32>>>()?;
                g.sort_unstable();
                g.dedup();
                out = Some(g);
            }
            "rt" | "if" | "n" | "id" if readonly_ok => {}
            _ => return None,
        }
    }
    out
}

/// The onboarding tool's RETRIEVE of the resource.
pub fn read() -> Message {
    message::request(MessageType::Confirmable, Code::GET, HREF, None)
}

/// The onboarding tool's UPDATE setting every group.
pub fn write(groups: &[u32]) -> Message {
    message::update(MessageType::Confirmable, HREF, &value(groups, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let v = value(&[5, 2], false);
        assert_eq!(parse(&v, false), Some(vec![2, 5]));
        assert_eq!(parse(&value(&[1, 1, 3], true), true), Some(vec![1, 3]));
        assert_eq!(parse(&value(&[1], true), false), None, "rt is read-only");
        let neg = cbor::map([("groups", Value::Array(vec![Value::Integer((-1).into())]))]);
        assert_eq!(parse(&neg, false), None);
        let text = cbor::map([("groups", Value::Text("1".into()))]);
        assert_eq!(parse(&text, false), None);
        let many: Vec<u32> = (0..=MAX_GROUPS as u32).collect();
        assert_eq!(parse(&value(&many, false), false), None);
        assert_eq!(parse(&cbor::map([("x", Value::Bool(true))]), false), None);
        assert_eq!(parse(&Value::Null, false), None);
    }
}

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

/// The `desc` of an SSM credential (credtypes 128 and 256) given by the
/// onboarding tool: which group and epoch. A switch finds the sender
/// credential of `--group NAME` by it; the reference stack keeps the text
/// as it is. The text must not change while the key lives: a device takes
/// the same key and Sender ID under another `desc` as a new credential,
/// and a switch keeps its sequence numbers per credential (a group renamed
/// must be rekeyed).
pub fn desc(group: &str, id: i64, epoch: i64) -> String {
    format!("SSM group {group} ({id}) epoch {epoch}")
}

/// The group name and id a [`desc`] names.
pub fn group_of_desc(desc: &str) -> Option<(&str, u32)> {
    let rest = desc.strip_prefix("SSM group ")?;
    let (name, rest) = rest.split_once(' ')?;
    let id = rest.strip_prefix('(')?.split_once(')')?.0.parse().ok()?;
    Some((name, id))
}

/// Why no sender credential was chosen for a multicast command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SenderChoice {
    /// No SSM client credential at all.
    #[error("no SSM client credential (credtype 128)")]
    None,
    /// Several, and no group named.
    #[error("this switch commands several groups ({}): name one with --group", .0.join(", "))]
    Ambiguous(Vec<String>),
    /// The named group is not one this switch commands.
    #[error("this switch does not command the group {group} (it commands: {})", if .have.is_empty() { "none by name".to_string() } else { .have.join(", ") })]
    NotCommanded {
        /// The group named.
        group: String,
        /// The groups it commands.
        have: Vec<String>,
    },
}

/// The SSM client credential (credtype 128, or a Group OSCORE group-mode
/// sender, 65536, for a group with that profile) to send with: that of
/// `group`, or without a group the only one.
pub fn choose_sender<'a>(
    creds: &'a [crate::cred::Credential],
    group: Option<&str>,
) -> Result<&'a crate::cred::Credential, SenderChoice> {
    let senders: Vec<&crate::cred::Credential> = creds
        .iter()
        .filter(|c| {
            matches!(
                c.credtype,
                crate::cred::CredType::SsmClient | crate::cred::CredType::GroupOscoreSender
            )
        })
        .collect();
    let name = |c: &crate::cred::Credential| {
        c.oscore
            .as_ref()
            .and_then(|o| o.desc.as_deref())
            .and_then(group_of_desc)
            .map(|g| g.0.to_string())
    };
    let named: Vec<String> = senders.iter().filter_map(|c| name(c)).collect();
    match group {
        Some(g) => senders
            .iter()
            .find(|c| name(c).as_deref() == Some(g))
            .copied()
            .ok_or_else(|| SenderChoice::NotCommanded {
                group: g.into(),
                have: named,
            }),
        None => match senders.as_slice() {
            [] => Err(SenderChoice::None),
            [one] => Ok(one),
            _ => Err(SenderChoice::Ambiguous(
                senders
                    .iter()
                    .map(|c| name(c).unwrap_or_else(|| format!("credid {}", c.credid)))
                    .collect(),
            )),
        },
    }
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

    fn sender(credid: u32, desc: Option<String>) -> crate::cred::Credential {
        crate::cred::Credential {
            credid,
            subjectuuid: "00000000-0000-0000-0000-000000000001".into(),
            credtype: crate::cred::CredType::SsmClient,
            privatedata: None,
            oscore: Some(crate::cred::OscoreFields {
                senderid: Some("02000000000001".into()),
                desc,
                ..Default::default()
            }),
        }
    }

    #[test]
    fn the_sender_of_a_group_is_chosen_by_name() {
        assert_eq!(group_of_desc(&desc("east", 3, 7)), Some(("east", 3)));
        assert_eq!(group_of_desc("SSM epoch 2"), None);
        let one = [sender(2, Some(desc("all", 1, 1)))];
        assert_eq!(choose_sender(&one, None).unwrap().credid, 2);
        assert_eq!(choose_sender(&one, Some("all")).unwrap().credid, 2);
        assert_eq!(
            choose_sender(&one, Some("west")).unwrap_err(),
            SenderChoice::NotCommanded {
                group: "west".into(),
                have: vec!["all".into()]
            }
        );
        let two = [
            sender(2, Some(desc("east", 2, 1))),
            sender(3, Some(desc("west", 3, 4))),
        ];
        assert_eq!(choose_sender(&two, Some("west")).unwrap().credid, 3);
        let e = choose_sender(&two, None).unwrap_err();
        assert_eq!(
            e,
            SenderChoice::Ambiguous(vec!["east".into(), "west".into()])
        );
        assert!(e.to_string().contains("east, west"));
        // A credential from elsewhere (no group in its desc) still works alone.
        assert_eq!(choose_sender(&[sender(4, None)], None).unwrap().credid, 4);
        assert_eq!(choose_sender(&[], None).unwrap_err(), SenderChoice::None);
    }
}

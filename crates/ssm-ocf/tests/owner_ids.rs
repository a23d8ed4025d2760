//! Review side note: ids the owner writes are taken as they are, so an
//! owner-written `credid`/`aceid` of `u32::MAX` must not make the next
//! assigned id overflow (a panic in a debug build poisons the device's
//! state; a wrap to 0 in a release build).
use ciborium::Value;
use ssm_coap::{Code, MessageType};
use ssm_ocf::security::pstat::DeviceOnboardingState as Dos;
use ssm_ocf::security::{Peer, SecurityState};
use ssm_ocf::switch::HREF;
use ssm_ocf::{cbor, message, Uuid};

fn text(s: impl ToString) -> Value {
    Value::Text(s.to_string())
}

fn post(s: &mut SecurityState, href: &str, body: Value, peer: &Peer) -> Code {
    let mut m = message::request(MessageType::Confirmable, Code::POST, href, None);
    message::set_payload(&mut m, &body);
    s.handle(&m, peer, false)
        .map(|o| o.code)
        .unwrap_or(Code::EMPTY)
}

/// An owned device in RFPRO and its owner.
fn owned() -> (SecurityState, Peer) {
    let owner = Uuid::from_u128(0x0b7);
    let mut s = SecurityState::new(Uuid::from_u128(0xd));
    s.doxm.owned = true;
    s.doxm.devowneruuid = owner;
    s.pstat.enter(Dos::Rfpro);
    (
        s,
        Peer::Authenticated {
            subject: Some(owner),
        },
    )
}

fn cred(credid: u32, subject: u128) -> Value {
    let mut m = vec![
        ("credtype", Value::Integer(1.into())),
        ("subjectuuid", text(Uuid::from_u128(subject))),
        (
            "privatedata",
            cbor::map([
                ("encoding", text("oic.sec.encoding.raw")),
                ("data", Value::Bytes(vec![7; 16])),
            ]),
        ),
    ];
    if credid != 0 {
        m.push(("credid", Value::Integer(credid.into())));
    }
    cbor::map(m)
}

fn ace(aceid: u32, subject: u128) -> Value {
    let mut m = vec![
        (
            "subject",
            cbor::map([("uuid", text(Uuid::from_u128(subject)))]),
        ),
        (
            "resources",
            Value::Array(vec![cbor::map([("href", text(HREF))])]),
        ),
        ("permission", Value::Integer(6.into())),
    ];
    if aceid != 0 {
        m.push(("aceid", Value::Integer(aceid.into())));
    }
    cbor::map(m)
}

#[test]
fn credid_after_u32_max_does_not_overflow() {
    let (mut s, owner) = owned();
    let body = |c: Vec<Value>| cbor::map([("creds", Value::Array(c))]);
    assert_eq!(
        post(
            &mut s,
            "/oic/sec/cred",
            body(vec![cred(u32::MAX, 1)]),
            &owner
        ),
        Code::CHANGED
    );
    // Two credentials without an id: each gets a free one, none wraps to 0
    // or replaces the owner's.
    assert_eq!(
        post(
            &mut s,
            "/oic/sec/cred",
            body(vec![cred(0, 2), cred(0, 3)]),
            &owner
        ),
        Code::CHANGED
    );
    let mut ids: Vec<u32> = s.cred.creds.iter().map(|c| c.credid).collect();
    ids.sort_unstable();
    assert_eq!(ids, [1, 2, u32::MAX]);
}

#[test]
fn aceid_after_u32_max_does_not_overflow() {
    let (mut s, owner) = owned();
    let body = |a: Vec<Value>| cbor::map([("aclist2", Value::Array(a))]);
    assert_eq!(
        post(
            &mut s,
            "/oic/sec/acl2",
            body(vec![ace(u32::MAX, 1)]),
            &owner
        ),
        Code::CHANGED
    );
    assert_eq!(
        post(
            &mut s,
            "/oic/sec/acl2",
            body(vec![ace(0, 2), ace(0, 3)]),
            &owner
        ),
        Code::CHANGED
    );
    let mut ids: Vec<u32> = s.acl.aclist2.iter().map(|a| a.aceid).collect();
    ids.sort_unstable();
    assert_eq!(ids, [1, 2, u32::MAX]);
}

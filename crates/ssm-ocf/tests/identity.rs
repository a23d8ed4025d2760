//! Device identity as an onboarding tool reads and changes it: the role in
//! `/oic/d` `rt`, the name `n`, and `/oic/con` (UPDATE of `n` by the owner
//! only).
use ciborium::Value;
use ssm_coap::{Code, Message, MessageType};
use ssm_ocf::cbor;
use ssm_ocf::device::{Channel, Device, DeviceInfo, RequestMeta, Security};
use ssm_ocf::message;
use ssm_ocf::provision::provisioned_state;
use ssm_ocf::security::SecurityState;
use ssm_ocf::switch::{BinarySwitch, HREF};
use ssm_ocf::Uuid;

const OWNER: Uuid = Uuid::from_u128(0x0b7);

fn meta(security: Security, multicast: bool) -> RequestMeta {
    RequestMeta {
        multicast,
        security,
        peer: Channel::Plain(([127, 0, 0, 1], 1).into()),
    }
}

fn request(code: Code, href: &str, query: Option<&str>, body: Option<Value>) -> Message {
    let mut m = message::request(MessageType::Confirmable, code, href, query);
    if let Some(b) = body {
        message::set_payload(&mut m, &b);
    }
    m
}

fn owned_light(name: &str) -> Device {
    let id = Uuid::from_u128(0x11);
    let mut d = Device::new(DeviceInfo::light(name, id));
    d.add_resource(HREF, Box::new(BinarySwitch::default()), true);
    d.set_security(provisioned_state(id, OWNER, Default::default(), vec![]));
    d
}

fn get(d: &mut Device, href: &str, query: Option<&str>) -> (Code, Value) {
    let r = d
        .handle(
            &request(Code::GET, href, query, None),
            &meta(Security::None, false),
        )
        .response
        .unwrap();
    let body = message::payload(&r).unwrap_or(Value::Null);
    (r.code, body)
}

fn field<'a>(v: &'a Value, k: &str) -> Option<&'a Value> {
    v.as_map()?
        .iter()
        .find(|(key, _)| key.as_text() == Some(k))
        .map(|(_, v)| v)
}

fn rt(v: &Value) -> Vec<String> {
    field(v, "rt")
        .and_then(|a| a.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_text().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn rename(d: &mut Device, name: &str, security: Security) -> (Code, Option<String>) {
    let body = cbor::map([("n", Value::Text(name.into()))]);
    let o = d.handle(
        &request(Code::POST, "/oic/con", None, Some(body)),
        &meta(security, false),
    );
    (o.response.map(|r| r.code).unwrap_or(Code::EMPTY), o.renamed)
}

#[test]
fn oic_d_advertises_the_role_and_name() {
    let mut light = owned_light("light-3");
    let (code, d) = get(&mut light, "/oic/d", None);
    assert_eq!(code, Code::CONTENT);
    assert_eq!(rt(&d), ["oic.wk.d", "oic.d.light"]);
    assert_eq!(field(&d, "n").and_then(|n| n.as_text()), Some("light-3"));

    let id = Uuid::from_u128(0x22);
    let mut switch = Device::new(DeviceInfo::switch("hall switch", id));
    switch.set_security(SecurityState::new(id));
    let (_, d) = get(&mut switch, "/oic/d", None);
    assert_eq!(rt(&d), ["oic.wk.d", "oic.d.switch"]);
    assert_eq!(
        field(&d, "n").and_then(|n| n.as_text()),
        Some("hall switch")
    );
    // `/oic/res` lists the role too, and `/oic/con`.
    let (_, res) = get(&mut switch, "/oic/res", None);
    let links = res.as_array().unwrap();
    let link = |href: &str| {
        links
            .iter()
            .find(|l| field(l, "href").and_then(|h| h.as_text()) == Some(href))
            .unwrap_or_else(|| panic!("{href} not in /oic/res"))
    };
    assert_eq!(rt(link("/oic/d")), ["oic.wk.d", "oic.d.switch"]);
    assert_eq!(rt(link("/oic/con")), ["oic.wk.con"]);
    let ifs = field(link("/oic/con"), "if").unwrap().as_array().unwrap();
    assert_eq!(ifs.len(), 2, "{ifs:?}");
}

#[test]
fn only_the_owner_renames() {
    let mut d = owned_light("light-0");
    let owner_dtls = Security::Dtls {
        subject: Some(OWNER),
    };
    let other = Security::Dtls {
        subject: Some(Uuid::from_u128(0x99)),
    };
    // Anyone reads it (the name is public in /oic/d as well).
    let (code, con) = get(&mut d, "/oic/con", None);
    assert_eq!(code, Code::CONTENT);
    assert_eq!(field(&con, "n").and_then(|n| n.as_text()), Some("light-0"));
    let (_, con) = get(&mut d, "/oic/con", Some("if=oic.if.baseline"));
    assert_eq!(rt(&con), ["oic.wk.con"]);

    assert_eq!(
        rename(&mut d, "x", Security::None),
        (Code::UNAUTHORIZED, None)
    );
    assert_eq!(rename(&mut d, "x", other), (Code::FORBIDDEN, None));
    let oscore_other = Security::Oscore {
        subject: Some(Uuid::from_u128(0x98)),
        credtype: ssm_ocf::cred::CredType::PairwiseOscore,
    };
    assert_eq!(rename(&mut d, "x", oscore_other), (Code::FORBIDDEN, None));
    // Multicast: never answered, never applied.
    let body = cbor::map([("n", Value::Text("m".into()))]);
    let o = d.handle(
        &request(Code::POST, "/oic/con", None, Some(body)),
        &meta(owner_dtls.clone(), true),
    );
    assert!(o.response.is_none() && o.renamed.is_none());

    assert_eq!(
        rename(&mut d, "hall east 1", owner_dtls.clone()),
        (Code::CHANGED, Some("hall east 1".into()))
    );
    let (_, dev) = get(&mut d, "/oic/d", None);
    assert_eq!(
        field(&dev, "n").and_then(|n| n.as_text()),
        Some("hall east 1")
    );
    // The same name again changes nothing to persist.
    assert_eq!(
        rename(&mut d, "hall east 1", owner_dtls.clone()),
        (Code::CHANGED, None)
    );
    // By pair-wise OSCORE as the owner too.
    let oscore_owner = Security::Oscore {
        subject: Some(OWNER),
        credtype: ssm_ocf::cred::CredType::PairwiseOscore,
    };
    assert_eq!(rename(&mut d, "e1", oscore_owner).0, Code::CHANGED);
}

#[test]
fn bad_names_are_refused() {
    let mut d = owned_light("light-0");
    let owner = Security::Dtls {
        subject: Some(OWNER),
    };
    let too_long = "x".repeat(65);
    for bad in ["", " padded", "tab\there", "new\nline", too_long.as_str()] {
        assert_eq!(
            rename(&mut d, bad, owner.clone()),
            (Code::BAD_REQUEST, None),
            "{bad:?}"
        );
    }
    assert_eq!(
        rename(&mut d, &"x".repeat(64), owner.clone()).0,
        Code::CHANGED
    );
    // Only `n`, and a text.
    for body in [
        cbor::map([("n", Value::Integer(1.into()))]),
        cbor::map([
            ("n", Value::Text("a".into())),
            ("rt", Value::Text("b".into())),
        ]),
        Value::Array(vec![]),
    ] {
        let o = d.handle(
            &request(Code::POST, "/oic/con", None, Some(body)),
            &meta(owner.clone(), false),
        );
        assert_eq!(o.response.unwrap().code, Code::BAD_REQUEST);
    }
    // Unowned: nobody is the owner yet, not even an owner-transfer peer.
    let id = Uuid::from_u128(0x33);
    let mut fresh = Device::new(DeviceInfo::light("l", id));
    fresh.set_security(SecurityState::new(id));
    assert_eq!(rename(&mut fresh, "x", owner).0, Code::FORBIDDEN);
}

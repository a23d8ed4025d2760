//! What the reference stack's onboarding tool and client look for in our
//! `/oic/res` (issue 14): the security resources with `coap://` and
//! `coaps://` endpoints (its OBT asks `GET /oic/res?rt=oic.r.doxm` by
//! unicast and drops a device that answers 4.00), secure endpoints first
//! for an application resource, and new credentials and ACEs posted
//! without ids.
use ssm_coap::{Code, MessageType, Token};
use ssm_ocf::cbor;
use ssm_ocf::cred::{CredType, Credential, OscoreFields, PrivateData};
use ssm_ocf::device::{Channel, Device, DeviceInfo, RequestMeta, Security};
use ssm_ocf::discovery::{parse_links, secure_port, ssm_hrefs};
use ssm_ocf::message;
use ssm_ocf::security::acl2::{Ace, AceResource, AceSubject, PERM_R};
use ssm_ocf::security::SecurityState;
use ssm_ocf::switch::BinarySwitch;
use ssm_ocf::Uuid;

fn light() -> Device {
    let id = Uuid::from_u128(0x1234_5678_9abc_4def_9123_4567_89ab_cdef);
    let mut d = Device::new(DeviceInfo::light("l", id));
    d.add_resource("/lights", Box::new(BinarySwitch::default()), true);
    d.set_endpoints(vec!["coap://[fe80::58:ff:fe00:2]:40000".into()]);
    d.set_security(SecurityState::new(id));
    d
}

fn discover(d: &mut Device, query: Option<&str>) -> (Code, Vec<ssm_ocf::discovery::Link>) {
    let mut m = message::request(MessageType::Confirmable, Code::GET, "/oic/res", query);
    m.token = Token::new(&[1]).unwrap();
    let meta = RequestMeta {
        multicast: false,
        security: Security::None,
        peer: Channel::Plain(([127, 0, 0, 1], 1).into()),
    };
    let r = d.handle(&m, &meta).response.unwrap();
    let links = message::payload(&r)
        .map(|p| parse_links(&p))
        .unwrap_or_default();
    (r.code, links)
}

#[test]
fn doxm_link_with_plain_and_secure_endpoints() {
    let mut d = light();
    let (code, links) = discover(&mut d, Some("rt=oic.r.doxm"));
    assert_eq!(code, Code::CONTENT);
    assert_eq!(links.len(), 1);
    assert_eq!(links[0].href, "/oic/sec/doxm");
    let eps: Vec<&str> = links[0].eps.iter().map(|e| e.ep.as_str()).collect();
    assert_eq!(
        eps,
        [
            "coap://[fe80::58:ff:fe00:2]:40000",
            "coaps://[fe80::58:ff:fe00:2]:40000"
        ]
    );
    assert_eq!(secure_port(&links, "fe80::58:ff:fe00:2%ssm0"), Some(40000));
    for rt in ["oic.r.pstat", "oic.r.cred", "oic.r.acl2"] {
        let (code, links) = discover(&mut d, Some(&format!("rt={rt}")));
        assert_eq!((code, links.len()), (Code::CONTENT, 1), "{rt}");
    }
}

#[test]
fn application_resource_secure_endpoint_first_then_ssm() {
    let mut d = light();
    let (_, links) = discover(&mut d, Some("rt=oic.r.switch.binary"));
    let eps: Vec<&str> = links[0].eps.iter().map(|e| e.ep.as_str()).collect();
    assert_eq!(eps[0], "coaps://[fe80::58:ff:fe00:2]:40000");
    assert_eq!(eps[1], "coap://[fe80::58:ff:fe00:2]:40000");
    assert!(links[0].accepts_ssm());
    assert_eq!(ssm_hrefs(&links), ["/lights"]);
    // Nothing in an `ep` names a zone.
    let (_, all) = discover(&mut d, None);
    assert!(all.iter().flat_map(|l| &l.eps).all(|e| !e.ep.contains('%')));
}

#[test]
fn new_entries_are_posted_without_ids() {
    let cred = Credential {
        credid: 0,
        subjectuuid: Uuid::from_u128(5).to_string(),
        credtype: CredType::SsmServer,
        privatedata: Some(PrivateData::raw(&[1; 32])),
        oscore: Some(OscoreFields {
            recipientid: Some("02aaaaaaaaaaaa".into()),
            ..Default::default()
        }),
    };
    let ace = Ace {
        aceid: 0,
        subject: AceSubject::Uuid {
            uuid: Uuid::from_u128(5),
        },
        resources: vec![AceResource::Href {
            href: "/lights".into(),
        }],
        permission: PERM_R,
    };
    let seq = ssm_ocf::onboarding::provision(vec![cred.clone(), cred], vec![ace]);
    let mut seq = seq;
    let mut posted = 0;
    while let Some(step) = seq.next_step().cloned() {
        let body = message::payload(&step.request).unwrap_or(ciborium::Value::Null);
        for list in ["creds", "aclist2"] {
            for e in cbor::get(&body, list)
                .and_then(|v| v.as_array().cloned())
                .unwrap_or_default()
            {
                posted += 1;
                assert!(cbor::get(&e, "credid").is_none(), "{e:?}");
                assert!(cbor::get(&e, "aceid").is_none(), "{e:?}");
            }
        }
        let ok = ssm_coap::Message::new(
            MessageType::Acknowledgement,
            Code::CHANGED,
            0,
            Token::default(),
        );
        seq.on_response(&ok).unwrap();
    }
    assert_eq!(posted, 3);
}

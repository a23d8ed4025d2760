//! The security resources and access rules, driven as an onboarding tool
//! would (without DTLS: the transport's verdict is given as `Security`).
use ciborium::Value;
use ssm_coap::{Code, Message, MessageType};
use ssm_ocf::cbor;
use ssm_ocf::cred::CredType;
use ssm_ocf::device::{Device, DeviceInfo, RequestMeta, Security, SsmRefusal};
use ssm_ocf::message;
use ssm_ocf::provision::{default_aces, generate_group, provisioned_state};
use ssm_ocf::security::pstat::DeviceOnboardingState as Dos;
use ssm_ocf::security::SecurityState;
use ssm_ocf::ssm::{sender_context, update_request, ReplayFloors, SsmReceiver};
use ssm_ocf::switch::{BinarySwitch, HREF};
use ssm_ocf::Uuid;
use ssm_oscore::SequenceNumber;

fn meta(security: Security, multicast: bool) -> RequestMeta {
    RequestMeta {
        multicast,
        security,
        peer: ssm_ocf::device::Channel::Plain(([127, 0, 0, 1], 1).into()),
    }
}

fn req(code: Code, href: &str, query: Option<&str>, body: Option<Value>) -> Message {
    let mut m = message::request(MessageType::Confirmable, code, href, query);
    if let Some(b) = body {
        message::set_payload(&mut m, &b);
    }
    m
}

fn code(d: &mut Device, m: &Message, s: Security) -> Code {
    d.handle(m, &meta(s, false))
        .response
        .map(|r| r.code)
        .unwrap_or(Code::EMPTY)
}

fn text(s: impl ToString) -> Value {
    Value::Text(s.to_string())
}

#[test]
fn onboarding_sequence_and_access_rules() {
    let factory_id = Uuid::from_u128(0xf);
    let mut d = Device::new(DeviceInfo::light("l", factory_id));
    d.add_resource(HREF, Box::new(BinarySwitch::default()), true);
    d.set_security(SecurityState::new(factory_id));
    let anon = Security::None;
    let obt = Uuid::from_u128(0x0b7);
    let otm = Security::OwnerTransfer {
        keys: std::sync::Arc::new(otm_keys()),
        session: 1,
    };

    // Unowned: doxm is open, filters work, application resources are not.
    assert_eq!(
        code(
            &mut d,
            &req(Code::GET, "/oic/sec/doxm", Some("owned=FALSE"), None),
            anon.clone()
        ),
        Code::CONTENT
    );
    assert_eq!(
        code(
            &mut d,
            &req(Code::GET, "/oic/sec/doxm", Some("owned=TRUE"), None),
            anon.clone()
        ),
        Code::BAD_REQUEST
    );
    assert!(d
        .handle(
            &req(Code::GET, "/oic/sec/doxm", Some("owned=TRUE"), None),
            &meta(anon.clone(), true)
        )
        .response
        .is_none());
    assert!(d
        .handle(
            &req(Code::GET, "/oic/sec/doxm", Some("owned=FALSE"), None),
            &meta(anon.clone(), true)
        )
        .response
        .is_some());
    assert_eq!(
        code(&mut d, &req(Code::GET, HREF, None, None), anon.clone()),
        Code::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        code(&mut d, &req(Code::GET, "/oic/d", None, None), anon.clone()),
        Code::CONTENT
    );
    // Only oxmsel may be written without the owner-transfer session.
    assert_eq!(
        code(
            &mut d,
            &req(
                Code::POST,
                "/oic/sec/doxm",
                None,
                Some(cbor::map([("oxmsel", Value::Integer(1.into()))]))
            ),
            anon.clone()
        ),
        Code::CHANGED
    );
    assert_eq!(
        code(
            &mut d,
            &req(
                Code::POST,
                "/oic/sec/doxm",
                None,
                Some(cbor::map([("oxmsel", Value::Integer(0.into()))]))
            ),
            anon.clone()
        ),
        Code::BAD_REQUEST,
        "Just Works is not offered"
    );
    assert_eq!(
        code(
            &mut d,
            &req(
                Code::POST,
                "/oic/sec/doxm",
                None,
                Some(cbor::map([("devowneruuid", text(obt))]))
            ),
            anon.clone()
        ),
        Code::UNAUTHORIZED
    );
    assert_eq!(
        code(
            &mut d,
            &req(
                Code::POST,
                "/oic/sec/pstat",
                None,
                Some(cbor::map([("om", Value::Integer(4.into()))]))
            ),
            anon.clone()
        ),
        Code::UNAUTHORIZED
    );

    // The owner-transfer session (steps 4–15 of the sequence).
    let new_id = Uuid::from_u128(0x1d1d_1d1d_1d1d_4d1d_9d1d_1d1d_1d1d_1d1d);
    for (href, body) in [
        (
            "/oic/sec/pstat",
            cbor::map([("om", Value::Integer(4.into()))]),
        ),
        ("/oic/sec/doxm", cbor::map([("devowneruuid", text(obt))])),
        ("/oic/sec/doxm", cbor::map([("deviceuuid", text(new_id))])),
        ("/oic/sec/doxm", cbor::map([("rowneruuid", text(obt))])),
        ("/oic/sec/acl2", cbor::map([("rowneruuid", text(obt))])),
        ("/oic/sec/pstat", cbor::map([("rowneruuid", text(obt))])),
    ] {
        assert_eq!(
            code(
                &mut d,
                &req(Code::POST, href, None, Some(body)),
                otm.clone()
            ),
            Code::CHANGED,
            "{href}"
        );
    }
    // Leaving RFOTM before being owned is refused.
    let dos = |s: u8| cbor::map([("dos", cbor::map([("s", Value::Integer(s.into()))]))]);
    assert_eq!(
        code(
            &mut d,
            &req(Code::POST, "/oic/sec/pstat", None, Some(dos(2))),
            otm.clone()
        ),
        Code::FORBIDDEN
    );
    // The owner credential with empty key material: the device fills in its own.
    let owner_cred = cbor::map([
        (
            "creds",
            Value::Array(vec![cbor::map([
                ("credtype", Value::Integer(1.into())),
                ("subjectuuid", text(obt)),
                (
                    "privatedata",
                    cbor::map([
                        ("encoding", text("oic.sec.encoding.raw")),
                        ("data", Value::Bytes(vec![])),
                    ]),
                ),
            ])]),
        ),
        ("rowneruuid", text(obt)),
    ]);
    assert_eq!(
        code(
            &mut d,
            &req(Code::POST, "/oic/sec/cred", None, Some(owner_cred)),
            otm.clone()
        ),
        Code::CHANGED
    );
    assert_eq!(
        code(
            &mut d,
            &req(
                Code::POST,
                "/oic/sec/doxm",
                None,
                Some(cbor::map([("owned", Value::Bool(true))]))
            ),
            otm.clone()
        ),
        Code::CHANGED
    );
    let psk = otm_keys().owner_psk(&obt, &new_id);
    assert_eq!(d.security().unwrap().owner_psk(), Some(psk.to_vec()));
    assert_eq!(d.info().di, new_id, "di follows doxm.deviceuuid");
    assert_eq!(
        code(
            &mut d,
            &req(Code::POST, "/oic/sec/pstat", None, Some(dos(2))),
            otm.clone()
        ),
        Code::CHANGED
    );

    // From now on the owner is the OBT, authenticated by its PSK.
    let owner = Security::Dtls { subject: Some(obt) };
    let client = Uuid::from_u128(0xc1);
    let acl = cbor::map([(
        "aclist2",
        Value::Array(vec![cbor::map([
            ("subject", cbor::map([("uuid", text(client))])),
            (
                "resources",
                Value::Array(vec![cbor::map([("href", text(HREF))])]),
            ),
            ("permission", Value::Integer(6.into())),
        ])]),
    )]);
    assert_eq!(
        code(
            &mut d,
            &req(Code::POST, "/oic/sec/acl2", None, Some(acl)),
            owner.clone()
        ),
        Code::CHANGED
    );
    assert_eq!(
        code(
            &mut d,
            &req(Code::POST, "/oic/sec/pstat", None, Some(dos(3))),
            owner.clone()
        ),
        Code::CHANGED
    );
    assert_eq!(d.security().unwrap().pstat.dos, Dos::Rfnop);

    // RFNOP: the rules.
    let on = || {
        req(
            Code::POST,
            HREF,
            None,
            Some(cbor::map([("value", Value::Bool(true))])),
        )
    };
    assert_eq!(
        code(&mut d, &on(), anon.clone()),
        Code::UNAUTHORIZED,
        "unsecured UPDATE refused"
    );
    assert_eq!(
        code(
            &mut d,
            &on(),
            Security::Dtls {
                subject: Some(Uuid::from_u128(9))
            }
        ),
        Code::FORBIDDEN,
        "no ACE"
    );
    assert_eq!(
        code(
            &mut d,
            &on(),
            Security::Oscore {
                subject: Some(client),
                credtype: CredType::PairwiseOscore
            }
        ),
        Code::CHANGED
    );
    let not_owner = Security::Dtls {
        subject: Some(client),
    };
    let any_cred = cbor::map([("creds", Value::Array(vec![]))]);
    assert_eq!(
        code(
            &mut d,
            &req(Code::POST, "/oic/sec/cred", None, Some(any_cred.clone())),
            not_owner.clone()
        ),
        Code::FORBIDDEN,
        "non-owner write"
    );
    assert_eq!(
        code(
            &mut d,
            &req(Code::POST, "/oic/sec/cred", None, Some(any_cred)),
            owner.clone()
        ),
        Code::FORBIDDEN,
        "no cred writes in RFNOP"
    );
    let r = d
        .handle(
            &req(Code::GET, "/oic/sec/cred", None, None),
            &meta(owner.clone(), false),
        )
        .response
        .unwrap();
    assert_eq!(r.code, Code::CONTENT);
    let creds = message::payload(&r).unwrap();
    let first = &cbor::get(&creds, "creds").unwrap().as_array().unwrap()[0];
    assert!(
        cbor::get(first, "privatedata").is_none(),
        "RETRIEVE never returns private data"
    );
    assert!(!r.payload.windows(16).any(|w| w == &psk[..]));
    assert_eq!(
        code(
            &mut d,
            &req(Code::POST, "/oic/sec/pstat", None, Some(dos(1))),
            owner.clone()
        ),
        Code::FORBIDDEN,
        "RFNOP → RFOTM"
    );

    // Hard reset: back to RFOTM, unowned, no credentials.
    assert_eq!(
        code(
            &mut d,
            &req(Code::POST, "/oic/sec/pstat", None, Some(dos(0))),
            owner.clone()
        ),
        Code::CHANGED
    );
    let s = d.security().unwrap();
    assert_eq!(
        (
            s.pstat.dos,
            s.doxm.owned,
            s.cred.creds.len(),
            s.acl.aclist2.len()
        ),
        (Dos::Rfotm, false, 0, 0)
    );
}

#[test]
fn ssm_updates_need_an_ace_for_the_sender() {
    let mut rng = {
        let mut n = 3u8;
        move |b: &mut [u8]| {
            for x in b.iter_mut() {
                n = n.wrapping_mul(13).wrapping_add(7);
                *x = n;
            }
        }
    };
    let (lights, clients) = generate_group(1, 2, Uuid::from_u128(1), &mut rng);
    let l = &lights[0];
    // ACEs for client 0 only.
    let mut only_first = l.creds.clone();
    only_first
        .creds
        .retain(|c| c.subjectuuid == clients[0].uuid.to_string());
    let aces = default_aces(&only_first, &[HREF], false);
    let mut d = Device::new(DeviceInfo::light("l", l.uuid));
    d.add_resource(HREF, Box::new(BinarySwitch::default()), true);
    d.set_security(provisioned_state(
        l.uuid,
        Uuid::from_u128(1),
        l.creds.clone(),
        aces,
    ));
    let mut rx =
        SsmReceiver::new(&l.creds.oscore_creds().unwrap(), ReplayFloors::default()).unwrap();
    for (i, c) in clients.iter().enumerate() {
        let cc = c.creds.oscore_creds().unwrap();
        let mut s = sender_context(
            cc.iter()
                .find(|c| c.credtype == CredType::SsmClient)
                .unwrap(),
            SequenceNumber::volatile(0),
        )
        .unwrap();
        let m = update_request(
            HREF,
            &cbor::map([("value", Value::Bool(i == 0))]),
            1,
            ssm_coap::Token::default(),
            true,
        );
        let mut out = vec![0u8; 256];
        let (n, _) = s.protect_request(&m.to_vec(), &mut out).unwrap();
        let acc = rx.receive(&mut out[..n]).unwrap().accepted;
        match (i, d.apply_ssm(&acc)) {
            (0, Ok(Some(_))) => {}
            (1, Err(SsmRefusal::Forbidden { .. })) => {}
            (i, other) => panic!("client {i}: {other:?}"),
        }
    }
    assert_eq!(
        d.representation(HREF),
        Some(cbor::map([("value", Value::Bool(true))]))
    );
}

fn otm_keys() -> ssm_ocf::security::otm::OtmKeys {
    ssm_ocf::security::otm::OtmKeys {
        master_secret: [1; 48],
        client_random: [2; 32],
        server_random: [3; 32],
        key_block_len: 96,
    }
}

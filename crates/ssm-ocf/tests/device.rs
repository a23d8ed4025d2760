//! The OCF model end to end without a network: discovery, RETRIEVE,
//! UPDATE rules, Observe, and the SSM receive rule with generated
//! credentials.
use ciborium::Value;
use ssm_coap::{Code, Message, MessageType, OptionNumber, Token};
use ssm_ocf::cbor;
use ssm_ocf::cred::CredType;
use ssm_ocf::device::{Device, DeviceInfo, RequestMeta, Security, SsmRefusal};
use ssm_ocf::discovery::{parse_links, SSM_EP_V4, SSM_EP_V6};
use ssm_ocf::message;
use ssm_ocf::provision::generate_group;
use ssm_ocf::ssm::{
    sender_context, update_request, DropReason, ReplayFloors, SsmReceiver, Verified,
};
use ssm_ocf::switch::{BinarySwitch, HREF};
use ssm_ocf::Uuid;
use ssm_oscore::SequenceNumber;

fn counter_rng(seed: u8) -> impl FnMut(&mut [u8]) {
    let mut n = seed;
    move |b: &mut [u8]| {
        for x in b.iter_mut() {
            n = n.wrapping_mul(31).wrapping_add(17);
            *x = n;
        }
    }
}

fn light() -> Device {
    let mut d = Device::new(DeviceInfo::light("hall light 1", Uuid::from_u128(0x1234)));
    d.add_resource(HREF, Box::new(BinarySwitch::default()), true);
    d.add_resource("/other", Box::new(BinarySwitch::default()), false);
    d.set_endpoints(vec!["coap://127.0.0.1:40000".into()]);
    d
}

fn meta(multicast: bool, secured: bool) -> RequestMeta {
    RequestMeta {
        multicast,
        security: if secured {
            Security::Oscore {
                subject: None,
                credtype: CredType::PairwiseOscore,
            }
        } else {
            Security::None
        },
        peer: ssm_ocf::device::Channel::Plain(([127, 0, 0, 1], 1).into()),
    }
}

fn get(href: &str, query: Option<&str>) -> Message {
    let mut m = message::request(MessageType::Confirmable, Code::GET, href, query);
    m.message_id = 7;
    m.token = Token::new(&[1, 2]).unwrap();
    m
}

fn value(v: bool) -> Value {
    cbor::map([("value", Value::Bool(v))])
}

#[test]
fn discovery_marks_ssm_resources() {
    let mut d = light();
    let r = d
        .handle(&get("/oic/res", None), &meta(false, false))
        .response
        .unwrap();
    assert_eq!(
        (r.ty, r.code, r.message_id),
        (MessageType::Acknowledgement, Code::CONTENT, 7)
    );
    assert_eq!(r.content_format(), Some(10000));
    assert_eq!(
        r.option_uint(OptionNumber::OCF_CONTENT_FORMAT_VERSION),
        Some(2048)
    );
    let links = parse_links(&message::payload(&r).unwrap());
    let sw = links.iter().find(|l| l.href == HREF).unwrap();
    assert!(sw.accepts_ssm());
    let eps: Vec<_> = sw.eps.iter().map(|e| e.ep.as_str()).collect();
    assert_eq!(eps, ["coap://127.0.0.1:40000", SSM_EP_V6, SSM_EP_V4]);
    assert_eq!(sw.device_id(), Some(Uuid::from_u128(0x1234)));
    assert!(!links
        .iter()
        .find(|l| l.href == "/other")
        .unwrap()
        .accepts_ssm());
    // rt filter, baseline form.
    let r = d
        .handle(
            &get(
                "/oic/res",
                Some("rt=oic.r.switch.binary&if=oic.if.baseline"),
            ),
            &meta(false, false),
        )
        .response
        .unwrap();
    let body = message::payload(&r).unwrap();
    assert_eq!(
        cbor::get(&body.as_array().unwrap()[0], "rt").map(cbor::texts),
        Some(vec!["oic.wk.res".to_string()])
    );
    let links = parse_links(&body);
    assert_eq!(links.len(), 2);
    // No match: 4.00 on unicast, silence on multicast.
    let q = get("/oic/res", Some("rt=oic.r.nothing"));
    assert_eq!(
        d.handle(&q, &meta(false, false)).response.unwrap().code,
        Code::BAD_REQUEST
    );
    assert!(d.handle(&q, &meta(true, false)).response.is_none());
    // Multicast discovery is answered.
    assert!(d
        .handle(&get("/oic/res", None), &meta(true, false))
        .response
        .is_some());
    // With IPv4 off, only the IPv6 SSM endpoint.
    d.set_ssm_families(true, false);
    let r = d
        .handle(&get("/oic/res", None), &meta(false, false))
        .response
        .unwrap();
    let links = parse_links(&message::payload(&r).unwrap());
    assert_eq!(links.iter().find(|l| l.href == HREF).unwrap().eps.len(), 2);
}

#[test]
fn core_resources_and_introspection() {
    let mut d = light();
    let r = d
        .handle(&get("/oic/d", None), &meta(false, false))
        .response
        .unwrap();
    let b = message::payload(&r).unwrap();
    assert_eq!(
        cbor::get(&b, "n").and_then(Value::as_text),
        Some("hall light 1")
    );
    assert_eq!(
        cbor::get(&b, "di").and_then(Value::as_text),
        Some(Uuid::from_u128(0x1234).to_string().as_str())
    );
    assert!(cbor::get(&b, "rt")
        .map(cbor::texts)
        .unwrap()
        .contains(&"oic.d.light".to_string()));
    for k in ["icv", "dmv", "piid"] {
        assert!(cbor::get(&b, k).is_some(), "{k}");
    }
    let r = d
        .handle(&get("/oic/p", None), &meta(false, false))
        .response
        .unwrap();
    let b = message::payload(&r).unwrap();
    assert!(cbor::get(&b, "pi").is_some() && cbor::get(&b, "mnmn").is_some());
    let r = d
        .handle(&get("/introspection", None), &meta(false, false))
        .response
        .unwrap();
    let b = message::payload(&r).unwrap();
    let url = cbor::get(
        &cbor::get(&b, "urlInfo").unwrap().as_array().unwrap()[0],
        "url",
    )
    .unwrap()
    .as_text()
    .unwrap()
    .to_string();
    assert_eq!(url, "coap://127.0.0.1:40000/introspection/data");
    let r = d
        .handle(&get("/introspection/data", None), &meta(false, false))
        .response
        .unwrap();
    assert_eq!(r.content_format(), Some(60));
    let idd = cbor::to_json(&cbor::decode(&r.payload).unwrap());
    assert!(idd["paths"][HREF]["post"].is_object(), "{idd}");
    assert!(idd["definitions"]["BinarySwitch"].is_object());
}

#[test]
fn update_rules() {
    let mut d = light();
    let post = |body: &[u8]| {
        let mut m = message::request(MessageType::Confirmable, Code::POST, HREF, None);
        m.set_option_uint(OptionNumber::CONTENT_FORMAT, 10000);
        m.payload = body.to_vec();
        m
    };
    let ok = cbor::encode(&value(true));
    // Unprotected UPDATE of an application resource is refused.
    assert_eq!(
        d.handle(&post(&ok), &meta(false, false))
            .response
            .unwrap()
            .code,
        Code::UNAUTHORIZED
    );
    assert_eq!(d.representation(HREF), Some(value(false)));
    for bad in [
        cbor::encode(&cbor::map([("value", Value::Integer(1.into()))])),
        cbor::encode(&cbor::map([
            ("value", Value::Bool(true)),
            ("brightness", Value::Integer(5.into())),
        ])),
        cbor::encode(&cbor::map([
            ("rt", cbor::text_array(&["x"])),
            ("value", Value::Bool(true)),
        ])),
        vec![0xa1, 0x65],
        vec![0xf5],
    ] {
        let o = d.handle(&post(&bad), &meta(false, true));
        assert_eq!(o.response.unwrap().code, Code::BAD_REQUEST, "{bad:x?}");
        assert!(o.changed.is_none());
        assert_eq!(
            d.representation(HREF),
            Some(value(false)),
            "nothing changed for {bad:x?}"
        );
    }
    let o = d.handle(&post(&ok), &meta(false, true));
    assert_eq!(o.response.unwrap().code, Code::CHANGED);
    assert_eq!(o.changed.as_deref(), Some(HREF));
    assert_eq!(d.representation(HREF), Some(value(true)));
    // Version below 2048 → 4.15.
    let mut old = post(&ok);
    old.set_option_uint(OptionNumber::OCF_CONTENT_FORMAT_VERSION, 2047);
    assert_eq!(
        d.handle(&old, &meta(false, true)).response.unwrap().code,
        Code::UNSUPPORTED_CONTENT_FORMAT
    );
    // Baseline GET has rt/if, default interface only the value.
    let r = d
        .handle(&get(HREF, Some("if=oic.if.baseline")), &meta(false, false))
        .response
        .unwrap();
    let b = message::payload(&r).unwrap();
    assert!(cbor::get(&b, "rt").is_some() && cbor::get(&b, "value").is_some());
    let r = d
        .handle(&get(HREF, Some("if=oic.if.ll")), &meta(false, false))
        .response
        .unwrap();
    assert_eq!(r.code, Code::BAD_REQUEST);
}

#[test]
fn observe_and_notify() {
    let mut d = light();
    let mut reg = get(HREF, None);
    reg.add_option_uint(OptionNumber::OBSERVE, 0);
    let r = d.handle(&reg, &meta(false, false)).response.unwrap();
    assert_eq!(r.option_uint(OptionNumber::OBSERVE), Some(0));
    let mut m = message::update(MessageType::Confirmable, HREF, &value(true));
    m.token = Token::new(&[9]).unwrap();
    let o = d.handle(&m, &meta(false, true));
    let notes = d.notifications(
        o.changed.as_deref().unwrap(),
        std::time::Instant::now(),
        &mut || 1,
    );
    assert_eq!(notes.len(), 1);
    let (peer, n) = &notes[0];
    assert_eq!(
        *peer,
        ssm_ocf::device::Channel::Plain(([127, 0, 0, 1], 1).into())
    );
    assert_eq!(n.message_id, 1);
    assert_eq!(n.token, reg.token);
    assert_eq!(n.option_uint(OptionNumber::OBSERVE), Some(1));
    assert_eq!(message::payload(n).unwrap(), value(true));
    let mut cancel = reg.clone();
    cancel.set_option_uint(OptionNumber::OBSERVE, 1);
    d.handle(&cancel, &meta(false, false));
    assert!(d
        .notifications(HREF, std::time::Instant::now(), &mut || 2)
        .is_empty());
}

#[test]
fn ssm_receive_rule_with_generated_creds() {
    let mut rng = counter_rng(0);
    let (lights, clients) = generate_group(2, 2, Uuid::from_u128(1), &mut rng);
    let light_creds = lights[0].creds.oscore_creds().unwrap();
    assert_eq!(
        light_creds
            .iter()
            .filter(|c| c.credtype == CredType::SsmServer)
            .count(),
        2
    );
    let mut rx = SsmReceiver::new(&light_creds, ReplayFloors::default()).unwrap();
    assert_eq!(rx.len(), 2);
    let mut d = light();
    let c0 = clients[0].creds.oscore_creds().unwrap();
    let ssm0 = c0
        .iter()
        .find(|c| c.credtype == CredType::SsmClient)
        .unwrap();
    let c1 = clients[1].creds.oscore_creds().unwrap();
    let ssm1 = c1
        .iter()
        .find(|c| c.credtype == CredType::SsmClient)
        .unwrap();
    assert_ne!(ssm0.sender_id, ssm1.sender_id, "per-sender IDs");
    let mut s0 = sender_context(ssm0, SequenceNumber::volatile(0)).unwrap();
    let mut s1 = sender_context(ssm1, SequenceNumber::volatile(0)).unwrap();

    let protect = |s: &mut ssm_oscore::SenderContext, m: &Message| {
        let mut out = vec![0u8; 512];
        let (n, _) = s.protect_request(&m.to_vec(), &mut out).unwrap();
        out.truncate(n);
        out
    };
    let on = update_request(HREF, &value(true), 1, Token::new(&[1]).unwrap(), true);
    let wire = protect(&mut s0, &on);
    let v = rx.receive(&mut wire.clone()).unwrap();
    assert_eq!(v.persist, Some(0), "the floor must be persisted first");
    let acc = v.accepted;
    rx.floor_persisted(&acc.kid, 0);
    assert_eq!(acc.subject, Some(clients[0].uuid));
    assert_eq!(acc.request.option_uint(OptionNumber::NO_RESPONSE), Some(26));
    assert_eq!(d.apply_ssm(&acc), Ok(Some(HREF.to_string())));
    assert_eq!(d.representation(HREF), Some(value(true)));
    // Replay.
    assert_eq!(
        rx.receive(&mut wire.clone()).unwrap_err(),
        DropReason::Replay
    );
    // The second client, same sequence number 0: its own ID, so fresh.
    let off = update_request(HREF, &value(false), 2, Token::new(&[2]).unwrap(), true);
    let acc1 = rx.receive(&mut protect(&mut s1, &off)).unwrap().accepted;
    assert_eq!(acc1.subject, Some(clients[1].uuid));
    // A flipped byte.
    let mut bad = protect(&mut s0, &on);
    let last = bad.len() - 1;
    bad[last] ^= 0x40;
    assert_eq!(
        rx.receive(&mut bad).unwrap_err(),
        DropReason::DecryptionFailed
    );
    // A GET via multicast verifies but is not an UPDATE.
    let g = message::request(MessageType::NonConfirmable, Code::GET, HREF, None);
    assert_eq!(
        rx.receive(&mut protect(&mut s0, &g)).unwrap_err(),
        DropReason::NotUpdate
    );
    // An update to a resource that is not SSM-enabled is refused by the device.
    let other = update_request("/other", &value(true), 3, Token::new(&[3]).unwrap(), true);
    let acc = rx.receive(&mut protect(&mut s0, &other)).unwrap().accepted;
    assert_eq!(d.apply_ssm(&acc), Err(SsmRefusal::NotSsm("/other".into())));
    // Unprotected and pair-wise-on-multicast datagrams.
    assert_eq!(
        rx.receive(&mut on.to_vec()).unwrap_err(),
        DropReason::Unprotected
    );
    let pw = c0
        .iter()
        .find(|c| c.credtype == CredType::PairwiseOscore && c.subject == Some(lights[0].uuid))
        .unwrap();
    let mut pctx = ssm_ocf::ssm::pairwise_context(
        pw,
        SequenceNumber::volatile(0),
        ssm_oscore::ReplayState::awaiting_echo(32),
    )
    .unwrap();
    assert_eq!(
        rx.receive(&mut protect(&mut pctx.sender, &on)).unwrap_err(),
        DropReason::PairwiseOnMulticast
    );
    // A light of another group does not know this kid.
    let (other_lights, _) = generate_group(1, 1, Uuid::from_u128(2), &mut counter_rng(99));
    let mut rx2 = SsmReceiver::new(
        &other_lights[0].creds.oscore_creds().unwrap(),
        ReplayFloors::default(),
    )
    .unwrap();
    assert_eq!(
        rx2.receive(&mut protect(&mut s0, &on)).unwrap_err(),
        DropReason::UnknownKid
    );

    // Restart: the floors reject everything accepted before.
    let floors = rx.floors().clone();
    let mut restarted = SsmReceiver::new(&light_creds, floors).unwrap();
    assert_eq!(
        restarted.receive(&mut wire.clone()).unwrap_err(),
        DropReason::Replay
    );
    assert!(
        restarted.receive(&mut protect(&mut s0, &on)).is_ok(),
        "new sequence numbers still work"
    );
}

#[test]
fn every_flipped_bit_is_dropped_or_outside_the_protection() {
    let mut rng = counter_rng(5);
    let (lights, clients) = generate_group(1, 1, Uuid::from_u128(3), &mut rng);
    let light_creds = lights[0].creds.oscore_creds().unwrap();
    let cc = clients[0].creds.oscore_creds().unwrap();
    let mut s = sender_context(
        cc.iter()
            .find(|c| c.credtype == CredType::SsmClient)
            .unwrap(),
        SequenceNumber::volatile(42),
    )
    .unwrap();
    let on = update_request(
        HREF,
        &value(true),
        0x1234,
        Token::new(&[1, 2, 3, 4]).unwrap(),
        true,
    );
    let mut out = vec![0u8; 256];
    let (n, _) = s.protect_request(&on.to_vec(), &mut out).unwrap();
    let genuine = out[..n].to_vec();
    let outer_fields = 2..8; // Message ID and token: not protected by OSCORE
    for bit in 0..genuine.len() * 8 {
        let mut d = light();
        let mut rx = SsmReceiver::new(&light_creds, ReplayFloors::default()).unwrap();
        let mut bad = genuine.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        match rx.receive(&mut bad) {
            Err(_) => assert_eq!(d.representation(HREF), Some(value(false))),
            Ok(Verified { accepted: acc, .. }) => {
                // Only the type bits, MID and token are unprotected (a
                // changed outer code is refused); the update is then the
                // genuine one.
                assert!(
                    outer_fields.contains(&(bit / 8)) || (bit / 8 == 0 && (bit % 8) >= 4),
                    "bit {bit} accepted"
                );
                assert_eq!(d.apply_ssm(&acc), Ok(Some(HREF.to_string())));
            }
        }
    }
}

/// A device maker's own resource type, added without touching the device
/// or the runtime: a dimmer (`oic.r.light.dimming`, `dimmingSetting`).
struct Dimmer(i64);

impl ssm_ocf::resource::Resource for Dimmer {
    fn resource_types(&self) -> &[&'static str] {
        &["oic.r.light.dimming"]
    }
    fn interfaces(&self) -> &[&'static str] {
        &["oic.if.a", "oic.if.baseline"]
    }
    fn properties(&self) -> Vec<(&'static str, Value)> {
        vec![("dimmingSetting", Value::Integer(self.0.into()))]
    }
    fn update(
        &mut self,
        props: &[(String, Value)],
    ) -> Result<bool, ssm_ocf::resource::UpdateError> {
        use ssm_ocf::resource::UpdateError;
        let mut new = self.0;
        for (k, v) in props {
            match (
                k.as_str(),
                v.as_integer().and_then(|i| i64::try_from(i).ok()),
            ) {
                ("dimmingSetting", Some(x)) if (0..=100).contains(&x) => new = x,
                ("dimmingSetting", _) => return Err(UpdateError::BadValue(k.clone())),
                _ => return Err(UpdateError::UnknownProperty(k.clone())),
            }
        }
        let changed = new != self.0;
        self.0 = new;
        Ok(changed)
    }
}

#[test]
fn a_new_resource_type_plugs_in() {
    let mut d = light();
    d.add_resource("/dim", Box::new(Dimmer(0)), true);
    let mut rng = counter_rng(7);
    let (lights, clients) = generate_group(1, 1, Uuid::from_u128(4), &mut rng);
    let mut rx = SsmReceiver::new(
        &lights[0].creds.oscore_creds().unwrap(),
        ReplayFloors::default(),
    )
    .unwrap();
    let cc = clients[0].creds.oscore_creds().unwrap();
    let mut s = sender_context(
        cc.iter()
            .find(|c| c.credtype == CredType::SsmClient)
            .unwrap(),
        SequenceNumber::volatile(0),
    )
    .unwrap();
    let m = update_request(
        "/dim",
        &cbor::map([("dimmingSetting", Value::Integer(60.into()))]),
        1,
        Token::default(),
        true,
    );
    let mut out = vec![0u8; 256];
    let (n, _) = s.protect_request(&m.to_vec(), &mut out).unwrap();
    let acc = rx.receive(&mut out[..n]).unwrap().accepted;
    assert_eq!(d.apply_ssm(&acc), Ok(Some("/dim".into())));
    assert_eq!(
        d.representation("/dim"),
        Some(cbor::map([("dimmingSetting", Value::Integer(60.into()))]))
    );
    let r = d
        .handle(
            &get("/oic/res", Some("rt=oic.r.light.dimming")),
            &meta(false, false),
        )
        .response
        .unwrap();
    let links = parse_links(&message::payload(&r).unwrap());
    assert!(links[0].accepts_ssm());
}

#[test]
fn floor_reservation_persists_once_per_k_and_never_admits_a_replay_after_restart() {
    let (lights, clients) = generate_group(1, 1, Uuid::from_u128(7), &mut counter_rng(11));
    let light_creds = lights[0].creds.oscore_creds().unwrap();
    let cc = clients[0].creds.oscore_creds().unwrap();
    let mut s = sender_context(
        cc.iter()
            .find(|c| c.credtype == CredType::SsmClient)
            .unwrap(),
        SequenceNumber::volatile(100),
    )
    .unwrap();
    let mut rx = SsmReceiver::new(&light_creds, ReplayFloors::default()).unwrap();
    rx.set_floor_reservation(4);
    assert_eq!(rx.floor_reservation(), 4);
    let mut sent = Vec::new();
    let mut persisted = Vec::new();
    for i in 0..10u16 {
        let m = update_request(HREF, &value(i % 2 == 0), i, Token::new(&[1]).unwrap(), true);
        let mut out = vec![0u8; 512];
        let (n, _) = s.protect_request(&m.to_vec(), &mut out).unwrap();
        out.truncate(n);
        sent.push(out.clone());
        let v = rx.receive(&mut out).unwrap();
        let acc = v.accepted;
        assert_eq!(acc.piv, 100 + u64::from(i));
        if let Some(floor) = v.persist {
            // The runtime writes it, then reports it durable.
            rx.floor_persisted(&acc.kid, floor);
            persisted.push((acc.piv, rx.floors().0.values().copied().next().unwrap()));
        }
    }
    // PIVs 100..=109: a write at 100 (floor 104), 105 (109): one per k + 1.
    assert_eq!(persisted, vec![(100, 104), (105, 109)]);
    // A crash at any point restores a floor at or above every accepted
    // PIV: none of the datagrams is accepted again.
    for (_, floor) in &persisted {
        let mut f = ReplayFloors(rx.floors().0.clone());
        for v in f.0.values_mut() {
            *v = *floor;
        }
        let mut restarted = SsmReceiver::new(&light_creds, f).unwrap();
        let accepted_before_crash = sent.iter().take((*floor - 100 + 1).min(10) as usize);
        for d in accepted_before_crash {
            assert_eq!(
                restarted.receive(&mut d.clone()).unwrap_err(),
                DropReason::Replay
            );
        }
    }
}

/// F7 as the attack, on the device model: the switch observes over OSCORE,
/// then 64 spoofed plain registrations from one victim address (different
/// ports and tokens) arrive. One change must still notify the switch over
/// its OSCORE channel, and must not send 64 notifications to the victim.
#[test]
fn spoofed_plain_registrations_keep_the_oscore_observer() {
    use ssm_ocf::device::Channel;
    let mut d = light();
    let binding = ssm_oscore::RequestBinding {
        kid: ssm_oscore::Id::new(&[0x21]).unwrap(),
        partial_iv: ssm_oscore::PartialIv::from_u64(3).unwrap(),
        kid_context: None,
        observe: true,
    };
    let switch = Channel::Oscore {
        addr: ([127, 0, 0, 1], 40000).into(),
        binding,
    };
    let mut reg = get(HREF, None);
    reg.add_option_uint(OptionNumber::OBSERVE, 0);
    let mut m = meta(false, true);
    m.peer = switch;
    assert!(d.handle(&reg, &m).response.is_some());
    for i in 0..64u16 {
        let mut r = get(HREF, None);
        r.token = Token::new(&(1000 + u32::from(i)).to_be_bytes()).unwrap();
        r.add_option_uint(OptionNumber::OBSERVE, 0);
        let mut m = meta(false, false);
        m.peer = Channel::Plain(([10, 0, 0, 9], 2000 + i).into());
        let o = d.handle(&r, &m);
        assert_eq!(
            o.response.unwrap().option_uint(OptionNumber::OBSERVE),
            Some(0)
        );
    }
    let mut u = message::update(MessageType::Confirmable, HREF, &value(true));
    u.token = Token::new(&[9]).unwrap();
    let o = d.handle(&u, &meta(false, true));
    let notes = d.notifications(
        o.changed.as_deref().unwrap(),
        std::time::Instant::now(),
        &mut || 7,
    );
    assert_eq!(
        notes.iter().filter(|(c, _)| *c == switch).count(),
        1,
        "the switch's OSCORE observation is still there"
    );
    let to_victim = notes
        .iter()
        .filter(|(c, _)| c.addr().ip() == std::net::IpAddr::from([10, 0, 0, 9]))
        .count();
    assert!(
        to_victim <= ssm_ocf::observe::MAX_PER_SOURCE,
        "{to_victim} notifications to the victim for one change"
    );
}

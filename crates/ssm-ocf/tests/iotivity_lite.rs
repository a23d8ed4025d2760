//! Interop with the OCF reference stack at the device level, from the real
//! traffic in `shared/vectors/iotivity-lite-ssm.json`:
//! * a light of ours provisioned with the reference server cred (credtype
//!   256) and hosting the switch at the capture's href (`/lights`) applies
//!   every SSM datagram in order, then rejects each one replayed;
//! * our discovery parser finds the SSM endpoint in the reference `/oic/res`
//!   replies;
//! * our client, given the reference client cred (credtype 128) and the
//!   same sequence number, produces datagrams with the reference layout,
//!   option for option.
use ciborium::Value;
use ssm_coap::{Message, Token};
use ssm_ocf::cbor;
use ssm_ocf::cred::{Credential, OscoreFields, PrivateData};
use ssm_ocf::device::{Device, DeviceInfo};
use ssm_ocf::discovery::{parse_links, SSM_EP_V6};
use ssm_ocf::message;
use ssm_ocf::ssm::{sender_context, update_request, DropReason, ReplayFloors, SsmReceiver};
use ssm_ocf::switch::BinarySwitch;
use ssm_ocf::Uuid;
use ssm_oscore::SequenceNumber;
use ssm_testkit::{hex, load};

/// The capture's cred, in our JSON form (raw bytes as hex).
fn cred(v: &serde_json::Value) -> Credential {
    Credential {
        credid: v["credid"].as_u64().unwrap() as u32,
        subjectuuid: v["subjectuuid"].as_str().unwrap().into(),
        credtype: ssm_ocf::cred::CredType::from_u32(v["credtype"].as_u64().unwrap() as u32),
        privatedata: Some(PrivateData::raw(&hex(&v["privatedata"]["data"]))),
        oscore: Some(OscoreFields {
            senderid: v["oscore"]["senderid"].as_str().map(String::from),
            recipientid: v["oscore"]["recipientid"].as_str().map(String::from),
            ssn: None,
            desc: v["oscore"]["desc"].as_str().map(String::from),
            group: None,
        }),
    }
}

fn href(v: &serde_json::Value) -> String {
    v["datagrams"][0]["decrypted"]["uri_path"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn our_light_applies_reference_datagrams_in_order_and_never_twice() {
    let v = load("iotivity-lite-ssm.json");
    let server = cred(&v["server_cred"]).oscore().unwrap().unwrap();
    let mut rx = SsmReceiver::new(std::slice::from_ref(&server), ReplayFloors::default()).unwrap();
    let href = href(&v);
    assert_eq!(href, "/lights");
    let mut light = Device::new(DeviceInfo::light(
        "Room1 lights",
        v["server_uuids"][0].as_str().unwrap().parse().unwrap(),
    ));
    light.add_resource(&href, Box::new(BinarySwitch::default()), true);
    let client: Uuid = v["client_uuid"].as_str().unwrap().parse().unwrap();

    let datagrams = v["datagrams"].as_array().unwrap();
    for g in datagrams {
        let v = rx.receive(&mut hex(&g["hex"])).unwrap();
        let acc = v.accepted;
        // The runtime persists the raised floor, then reports it.
        rx.floor_persisted(&acc.kid, v.persist.expect("a floor to persist"));
        assert_eq!(acc.piv, g["oscore"]["ssn"].as_u64().unwrap());
        assert_eq!(
            acc.subject,
            Some(client),
            "attributed to the reference client"
        );
        light.apply_ssm(&acc).unwrap();
        let want = g["decrypted"]["payload_json"]["value"].as_bool().unwrap();
        assert_eq!(
            light.representation(&href),
            Some(cbor::map([("value", Value::Bool(want))]))
        );
    }
    for g in datagrams {
        assert_eq!(
            rx.receive(&mut hex(&g["hex"])).unwrap_err(),
            DropReason::Replay
        );
    }
    // Restarted from its persisted floor, it still rejects them all.
    let mut restarted =
        SsmReceiver::new(std::slice::from_ref(&server), rx.floors().clone()).unwrap();
    for g in datagrams {
        assert_eq!(
            restarted.receive(&mut hex(&g["hex"])).unwrap_err(),
            DropReason::Replay
        );
    }
}

#[test]
fn our_parser_finds_ssm_in_reference_discovery_replies() {
    let v = load("iotivity-lite-ssm.json");
    let mut replies = vec![&v["discovery_response"]];
    replies.extend(v["discovery"]["responses"].as_array().unwrap());
    assert!(replies.len() >= 3);
    for r in replies {
        let m = Message::parse(&hex(&r["hex"])).unwrap();
        let links = parse_links(&message::payload(&m).unwrap());
        let l = links
            .iter()
            .find(|l| l.href == "/lights")
            .expect("the switch link");
        assert!(l.accepts_ssm(), "{l:?}");
        assert!(l.eps.iter().any(|e| e.ep == SSM_EP_V6));
        assert!(l.device_id().is_some());
    }
}

#[test]
fn our_client_matches_the_reference_layout() {
    let v = load("iotivity-lite-ssm.json");
    let client = cred(&v["client_cred"]).oscore().unwrap().unwrap();
    let server = cred(&v["server_cred"]).oscore().unwrap().unwrap();
    let href = href(&v);
    for g in v["datagrams"].as_array().unwrap() {
        let ssn = g["oscore"]["ssn"].as_u64().unwrap();
        let value = g["decrypted"]["payload_json"]["value"].as_bool().unwrap();
        let mut s = sender_context(&client, SequenceNumber::volatile(ssn)).unwrap();
        let req = update_request(
            &href,
            &cbor::map([("value", Value::Bool(value))]),
            g["outer"]["mid"].as_u64().unwrap() as u16,
            Token::new(&hex(&g["outer"]["token"])).unwrap(),
            false,
        );
        let mut out = [0u8; 256];
        let (n, _) = s.protect_request(&req.to_vec(), &mut out).unwrap();
        let ours = Message::parse(&out[..n]).unwrap();
        let theirs = Message::parse(&hex(&g["hex"])).unwrap();
        // Outer: type, code, MID, token and the single OSCORE option agree.
        assert_eq!(
            (ours.ty, ours.code, ours.message_id, ours.token),
            (theirs.ty, theirs.code, theirs.message_id, theirs.token)
        );
        assert_eq!(
            ours.options, theirs.options,
            "outer options (OSCORE flags, PIV, kid)"
        );
        // Inner: a light decrypts both to the same options and value.
        let mut rx =
            SsmReceiver::new(std::slice::from_ref(&server), ReplayFloors::default()).unwrap();
        let a = rx.receive(&mut out[..n].to_vec()).unwrap().accepted;
        let mut rx =
            SsmReceiver::new(std::slice::from_ref(&server), ReplayFloors::default()).unwrap();
        let b = rx.receive(&mut hex(&g["hex"])).unwrap().accepted;
        assert_eq!(
            a.request.options, b.request.options,
            "inner options, in order"
        );
        assert_eq!(
            message::payload(&a.request).unwrap(),
            message::payload(&b.request).unwrap()
        );
    }
}

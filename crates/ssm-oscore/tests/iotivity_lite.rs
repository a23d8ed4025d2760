//! Byte-level interop with the OCF reference stack (iotivity-lite 2.2.5.16):
//! its real SSM datagrams, read from `shared/vectors/iotivity-lite-ssm.json`,
//! are verified by a recipient context built from its credtype-256 cred,
//! in order (the Partial IV jumps 3 → 160 after the sender's restart), and
//! each is rejected when replayed.

use ssm_oscore::kdf::{info, Label, Prk};
use ssm_oscore::*;
use ssm_testkit::{hex, load};

#[test]
fn reference_stack_datagrams_verify_in_order_and_never_twice() {
    let v = load("iotivity-lite-ssm.json");
    let cred = &v["server_cred"];
    assert_eq!(cred["credtype"], 256);
    let secret = hex(&cred["privatedata"]["data"]);
    assert_eq!(secret.len(), 32);
    let rid = Id::new(&hex(&cred["oscore"]["recipientid"])).unwrap();

    // Our derivation equals the one the capture recorded.
    let dc = &v["derived_context"];
    let (i, n) = info(rid.as_bytes(), None, Label::Key);
    assert_eq!(&i[..n], &hex(&dc["key_info_cbor_hex"])[..]);
    let prk = Prk::extract(&secret, None).unwrap();
    assert_eq!(&prk.key(&rid, None)[..], &hex(&dc["key"])[..]);
    assert_eq!(&prk.common_iv(None)[..], &hex(&dc["common_iv"])[..]);

    let mut light = RecipientContext::derive(
        &secret,
        None,
        None,
        rid,
        ReplayState::Window(ReplayWindow::new(32)),
    )
    .unwrap();
    let datagrams = v["datagrams"].as_array().unwrap();
    assert_eq!(datagrams.len(), 6);
    for g in datagrams {
        let mut wire = hex(&g["hex"]);
        let d = light.unprotect_request(&mut wire).unwrap();
        assert_eq!(
            d.partial_iv.unwrap().value(),
            g["oscore"]["ssn"].as_u64().unwrap()
        );
        let mut plaintext = vec![d.code.0];
        plaintext.extend_from_slice(d.options.as_bytes());
        plaintext.push(0xff);
        plaintext.extend_from_slice(d.payload);
        assert_eq!(
            hex::encode(&plaintext),
            g["decrypted"]["plaintext_hex"].as_str().unwrap()
        );
        let m = d.to_message();
        assert_eq!(m.uri_path(), g["decrypted"]["uri_path"].as_str().unwrap());
        assert_eq!(m.code, ssm_coap::Code::POST);
    }
    for g in datagrams {
        let mut wire = hex(&g["hex"]);
        assert_eq!(
            light.unprotect_request(&mut wire).unwrap_err(),
            Error::Replay,
            "replay of PIV {}",
            g["oscore"]["ssn"]
        );
    }
}

#[test]
fn our_sender_matches_the_reference_layout() {
    // The reference client's cred (credtype 128) and its first datagram: our
    // sender at the same sequence number, given the same inner message,
    // produces the same bytes (token and MID copied from the capture).
    let v = load("iotivity-lite-ssm.json");
    let cred = &v["client_cred"];
    assert_eq!(cred["credtype"], 128);
    let secret = hex(&cred["privatedata"]["data"]);
    let sid = Id::new(&hex(&cred["oscore"]["senderid"])).unwrap();
    for g in v["datagrams"].as_array().unwrap() {
        let ssn = g["oscore"]["ssn"].as_u64().unwrap();
        let mut switch =
            SenderContext::derive(&secret, None, None, sid, SequenceNumber::volatile(ssn)).unwrap();
        let mut plain = ssm_coap::Message::new(
            ssm_coap::MessageType::NonConfirmable,
            ssm_coap::Code(hex(&g["decrypted"]["plaintext_hex"])[0]),
            g["outer"]["mid"].as_u64().unwrap() as u16,
            ssm_coap::Token::new(&hex(&g["outer"]["token"])).unwrap(),
        );
        let pt = hex(&g["decrypted"]["plaintext_hex"]);
        let (opts, payload) = ssm_coap::Options::parse(&pt[1..]).unwrap();
        for o in opts.iter() {
            plain.add_option(o.number, o.value.to_vec());
        }
        plain.payload = payload.to_vec();
        let mut out = [0u8; 256];
        let (n, _) = switch.protect_request(&plain.to_vec(), &mut out).unwrap();
        assert_eq!(
            hex::encode(&out[..n]),
            g["hex"].as_str().unwrap(),
            "datagram with PIV {ssn}"
        );
    }
}

//! RFC 8613 Appendix C, every case, read from `shared/vectors/rfc8613.json`.

use ssm_oscore::crypto::{aad, nonce};
use ssm_oscore::kdf::{info, Label, Prk};
use ssm_oscore::*;
use ssm_testkit::{hex, load, opt_hex};

fn id(v: &serde_json::Value) -> Id {
    Id::new(&hex(v)).unwrap()
}

fn ctx_params(c: &serde_json::Value) -> (Vec<u8>, Option<Vec<u8>>, Option<IdContext>) {
    (
        hex(&c["master_secret"]),
        opt_hex(&c["master_salt"]),
        opt_hex(&c["id_context"]).map(|b| IdContext::new(&b).unwrap()),
    )
}

#[test]
fn c1_c3_key_derivation() {
    let v = load("rfc8613.json");
    let cases = v["key_derivation"].as_array().unwrap();
    assert_eq!(cases.len(), 6);
    for c in cases {
        let name = c["id"].as_str().unwrap();
        let (secret, salt, idctx) = ctx_params(c);
        let sid = id(&c["sender_id"]);
        let rid = id(&c["recipient_id"]);
        let (i, n) = info(sid.as_bytes(), idctx.as_ref(), Label::Key);
        assert_eq!(
            &i[..n],
            &hex(&c["info_sender_key"])[..],
            "{name} info sender"
        );
        let (i, n) = info(rid.as_bytes(), idctx.as_ref(), Label::Key);
        assert_eq!(
            &i[..n],
            &hex(&c["info_recipient_key"])[..],
            "{name} info recipient"
        );
        let (i, n) = info(&[], idctx.as_ref(), Label::Iv);
        assert_eq!(&i[..n], &hex(&c["info_common_iv"])[..], "{name} info iv");
        let prk = Prk::extract(&secret, salt.as_deref()).unwrap();
        assert_eq!(
            &prk.key(&sid, idctx.as_ref())[..],
            &hex(&c["sender_key"])[..],
            "{name} sender key"
        );
        assert_eq!(
            &prk.key(&rid, idctx.as_ref())[..],
            &hex(&c["recipient_key"])[..],
            "{name} recipient key"
        );
        let iv = prk.common_iv(idctx.as_ref());
        assert_eq!(&iv[..], &hex(&c["common_iv"])[..], "{name} common iv");
        let zero = PartialIv::from_u64(0).unwrap();
        assert_eq!(
            &nonce(&sid, &zero, &iv)[..],
            &hex(&c["sender_nonce"])[..],
            "{name} sender nonce"
        );
        assert_eq!(
            &nonce(&rid, &zero, &iv)[..],
            &hex(&c["recipient_nonce"])[..],
            "{name} recipient nonce"
        );
    }
}

fn context(c: &serde_json::Value, ssn: u64) -> SecurityContext {
    let (secret, salt, idctx) = ctx_params(c);
    SecurityContext::derive(
        &ContextParams {
            master_secret: &secret,
            master_salt: salt.as_deref(),
            id_context: idctx,
            sender_id: id(&c["sender_id"]),
            recipient_id: id(&c["recipient_id"]),
        },
        SequenceNumber::volatile(ssn),
        ReplayState::Window(ReplayWindow::new(32)),
    )
    .unwrap()
}

/// The peer's view of a context: sender and recipient swapped.
fn peer(c: &serde_json::Value) -> SecurityContext {
    let (secret, salt, idctx) = ctx_params(c);
    SecurityContext::derive(
        &ContextParams {
            master_secret: &secret,
            master_salt: salt.as_deref(),
            id_context: idctx,
            sender_id: id(&c["recipient_id"]),
            recipient_id: id(&c["sender_id"]),
        },
        SequenceNumber::volatile(0),
        ReplayState::Window(ReplayWindow::new(32)),
    )
    .unwrap()
}

#[test]
fn c4_c6_protect_request() {
    let v = load("rfc8613.json");
    let cases = v["protect_request"].as_array().unwrap();
    assert_eq!(cases.len(), 3);
    for c in cases {
        let name = c["id"].as_str().unwrap();
        let ssn = c["ssn"].as_u64().unwrap();
        let kid = id(&c["kid"]);
        let piv = PartialIv::from_bytes(&hex(&c["partial_iv"])).unwrap();
        assert_eq!(piv.value(), ssn);
        let (a, n) = aad(&kid, &piv);
        assert_eq!(&a[..n], &hex(&c["aad"])[..], "{name} aad");
        let mut ctx = context(c, ssn);
        assert_eq!(
            &nonce(&kid, &piv, ctx.sender.common_iv())[..],
            &hex(&c["nonce"])[..],
            "{name} nonce"
        );
        let mut out = [0u8; 256];
        let (len, binding) = ctx
            .sender
            .protect_request(&hex(&c["unprotected_request"]), &mut out)
            .unwrap();
        assert_eq!(
            hex::encode(&out[..len]),
            c["protected_request"].as_str().unwrap(),
            "{name} protected"
        );
        assert_eq!(binding.partial_iv, piv);
        // The server side decrypts it back to the original (Uri-Host stays outer).
        let mut server = peer(c);
        let mut wire = out[..len].to_vec();
        let d = server.recipient.unprotect_request(&mut wire).unwrap();
        let mut plain = [0u8; 256];
        let plen = d.emit(&mut plain).unwrap();
        assert_eq!(
            hex::encode(&plain[..plen]),
            c["unprotected_request"].as_str().unwrap(),
            "{name} roundtrip"
        );
        // And a replay of it is refused.
        let mut again = out[..len].to_vec();
        assert_eq!(
            server.recipient.unprotect_request(&mut again).unwrap_err(),
            Error::Replay,
            "{name} replay"
        );
    }
}

#[test]
fn c7_c8_protect_response() {
    let v = load("rfc8613.json");
    let cases = v["protect_response"].as_array().unwrap();
    assert_eq!(cases.len(), 2);
    for c in cases {
        let name = c["id"].as_str().unwrap();
        let binding = RequestBinding {
            kid: id(&c["request_kid"]),
            partial_iv: PartialIv::from_bytes(&hex(&c["request_partial_iv"])).unwrap(),
            kid_context: None,
            observe: false,
        };
        let (a, n) = aad(&binding.kid, &binding.partial_iv);
        assert_eq!(&a[..n], &hex(&c["aad"])[..], "{name} aad");
        let mut server = context(c, c["ssn"].as_u64().unwrap());
        let with_piv = c["response_has_partial_iv"].as_bool().unwrap();
        let mode = if with_piv {
            ResponsePiv::Own
        } else {
            ResponsePiv::RequestNonce
        };
        let mut out = [0u8; 256];
        let len = server
            .sender
            .protect_response(&binding, &hex(&c["unprotected_response"]), mode, &mut out)
            .unwrap();
        assert_eq!(
            hex::encode(&out[..len]),
            c["protected_response"].as_str().unwrap(),
            "{name} protected"
        );
        // The client verifies it.
        let client = peer(c);
        let mut wire = out[..len].to_vec();
        let d = client
            .recipient
            .unprotect_response(&binding, &mut wire)
            .unwrap();
        let mut plain = [0u8; 256];
        let plen = d.emit(&mut plain).unwrap();
        assert_eq!(
            hex::encode(&plain[..plen]),
            c["unprotected_response"].as_str().unwrap(),
            "{name} roundtrip"
        );
        assert_eq!(d.partial_iv.is_some(), with_piv);
    }
}

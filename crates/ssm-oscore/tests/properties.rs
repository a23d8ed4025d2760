//! Property tests: round trips over random contexts and messages, tamper
//! rejection, and the replay window against a reference model.

use proptest::prelude::*;
use ssm_coap::{Code, Message, MessageType, OptionNumber, Token};
use ssm_oscore::*;
use std::collections::BTreeSet;

fn ctx(
    secret: &[u8],
    salt: Option<&[u8]>,
    idctx: Option<&[u8]>,
    s: &[u8],
    r: &[u8],
) -> SecurityContext {
    ctx_at(secret, salt, idctx, s, r, 0)
}

/// A context whose sender starts at sequence number `ssn` (a sequence
/// number cannot be set on a live context: that would reuse nonces).
fn ctx_at(
    secret: &[u8],
    salt: Option<&[u8]>,
    idctx: Option<&[u8]>,
    s: &[u8],
    r: &[u8],
    ssn: u64,
) -> SecurityContext {
    SecurityContext::derive(
        &ContextParams {
            master_secret: secret,
            master_salt: salt,
            id_context: idctx.map(|c| IdContext::new(c).unwrap()),
            sender_id: Id::new(s).unwrap(),
            recipient_id: Id::new(r).unwrap(),
        },
        SequenceNumber::volatile(ssn),
        ReplayState::Window(ReplayWindow::new(32)),
    )
    .unwrap()
}

prop_compose! {
    fn arb_request()(
        code in prop::sample::select(vec![Code::GET, Code::POST, Code::PUT, Code::DELETE]),
        ty in prop::sample::select(vec![MessageType::Confirmable, MessageType::NonConfirmable]),
        mid in any::<u16>(),
        token in prop::collection::vec(any::<u8>(), 0..=8),
        host in prop::option::of("[a-z]{1,12}"),
        path in prop::collection::vec("[a-zA-Z0-9]{1,10}", 0..4),
        query in prop::collection::vec("[a-z]{1,5}=[a-z0-9]{0,5}", 0..3),
        cf in prop::option::of(prop::sample::select(vec![0u32, 60, 10000])),
        no_response in any::<bool>(),
        other in prop::collection::vec((300u16..3000, prop::collection::vec(any::<u8>(), 0..20)), 0..3),
        payload in prop::collection::vec(any::<u8>(), 0..64),
    ) -> Message {
        let mut m = Message::new(ty, code, mid, Token::new(&token).unwrap());
        if let Some(h) = host { m.add_option(OptionNumber::URI_HOST, h.into_bytes()); }
        for p in path { m.add_option(OptionNumber::URI_PATH, p.into_bytes()); }
        for q in query { m.add_option(OptionNumber::URI_QUERY, q.into_bytes()); }
        if let Some(cf) = cf { m.add_option_uint(OptionNumber::CONTENT_FORMAT, cf); }
        if no_response { m.add_option_uint(OptionNumber::NO_RESPONSE, 26); }
        for (n, v) in other { m.add_option(OptionNumber(n), v); }
        m.payload = payload;
        m
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn request_response_roundtrip(
        secret in prop::collection::vec(any::<u8>(), 1..48),
        salt in prop::option::of(prop::collection::vec(any::<u8>(), 0..16)),
        idctx in prop::option::of(prop::collection::vec(any::<u8>(), 0..16)),
        cid in prop::collection::vec(any::<u8>(), 0..=7),
        sid in prop::collection::vec(any::<u8>(), 0..=7),
        start in 0u64..(1u64 << 40) - 10,
        req in arb_request(),
        resp_payload in prop::collection::vec(any::<u8>(), 0..64),
        own_piv in any::<bool>(),
    ) {
        let mut client = ctx_at(&secret, salt.as_deref(), idctx.as_deref(), &cid, &sid, start);
        let mut server = ctx(&secret, salt.as_deref(), idctx.as_deref(), &sid, &cid);
        let mut out = [0u8; 1024];
        let (n, binding) = client.sender.protect_request(&req.to_vec(), &mut out).unwrap();
        let mut wire = out[..n].to_vec();
        let d = server.recipient.unprotect_request(&mut wire).unwrap();
        prop_assert_eq!(d.to_message(), req.clone());
        prop_assert_eq!(d.binding.unwrap(), binding);

        let mut resp = Message::new(MessageType::Acknowledgement, Code::CONTENT, req.message_id, req.token);
        resp.add_option_uint(OptionNumber::CONTENT_FORMAT, 10000);
        resp.payload = resp_payload;
        let mode = if own_piv { ResponsePiv::Own } else { ResponsePiv::RequestNonce };
        let n = server.sender.protect_response(&binding, &resp.to_vec(), mode, &mut out).unwrap();
        let mut wire = out[..n].to_vec();
        let d = client.recipient.unprotect_response(&binding, &mut wire).unwrap();
        prop_assert_eq!(d.to_message(), resp);
    }

    #[test]
    fn every_single_byte_change_is_rejected(
        secret in prop::collection::vec(any::<u8>(), 16..33),
        cid in prop::collection::vec(any::<u8>(), 0..=7),
        req in arb_request(),
        flip in 1u8..=255,
    ) {
        let mut client = ctx(&secret, None, None, &cid, &[0x01]);
        let mut out = [0u8; 1024];
        let (n, _) = client.sender.protect_request(&req.to_vec(), &mut out).unwrap();
        let good = out[..n].to_vec();
        for i in 0..good.len() {
            let mut server = ctx(&secret, None, None, &[0x01], &cid);
            let mut bad = good.clone();
            bad[i] ^= flip;
            match server.recipient.unprotect_request(&mut bad) {
                Err(_) => {
                    // A rejected message never moves the window.
                    prop_assert_eq!(server.recipient.replay, ReplayState::Window(ReplayWindow::new(32)));
                }
                Ok(d) => {
                    // Only bytes outside the protection may change: the
                    // message type, Message ID, token and Class U options.
                    // The decrypted request must then equal the original in
                    // everything that is protected.
                    let m = d.to_message();
                    prop_assert_eq!(m.code, req.code);
                    prop_assert_eq!(m.payload.clone(), req.payload.clone());
                    let inner = |x: &Message| x.options.iter().filter(|(n, _)| *n != OptionNumber::URI_HOST).cloned().collect::<Vec<_>>();
                    prop_assert_eq!(inner(&m), inner(&req));
                    prop_assert!(i < 4 + req.token.as_bytes().len() || m.option(OptionNumber::URI_HOST) != req.option(OptionNumber::URI_HOST),
                        "byte {} changed without effect on a protected field", i);
                }
            }
        }
    }

    #[test]
    fn replay_window_matches_model(
        size in prop::sample::select(vec![32u8, 64, 128]),
        ops in prop::collection::vec(prop_oneof![
            0u64..200,                // dense, duplicates and reordering
            (0u64..8).prop_map(|x| x * 1000), // far jumps
            Just((1u64 << 40) - 1),
        ], 1..300),
    ) {
        let mut w = ReplayWindow::new(size);
        let mut seen = BTreeSet::new();
        let mut highest: Option<u64> = None;
        for s in ops {
            let model_fresh = !seen.contains(&s) && highest.is_none_or(|h| s > h || h - s < u64::from(size));
            prop_assert_eq!(w.check(s).is_ok(), model_fresh, "seq {} highest {:?}", s, highest);
            if model_fresh {
                w.accept(s);
                seen.insert(s);
                highest = Some(highest.map_or(s, |h| h.max(s)));
            }
        }
    }
}

#[test]
fn sequence_10_7_10_through_unprotect() {
    let secret = [7u8; 32];
    let mut server = ctx(&secret, None, None, &[0x01], &[0x02]);
    let protect_at = |ssn: u64| {
        let mut c = ctx_at(&secret, None, None, &[0x02], &[0x01], ssn);
        let mut m = Message::new(
            MessageType::NonConfirmable,
            Code::POST,
            1,
            Token::new(&[1]).unwrap(),
        );
        m.set_uri_path("/BinarySwitchResURI");
        m.payload = vec![0xa1, 0x65, b'v', b'a', b'l', b'u', b'e', 0xf5];
        let mut out = [0u8; 256];
        let (n, _) = c.sender.protect_request(&m.to_vec(), &mut out).unwrap();
        out[..n].to_vec()
    };
    assert!(server
        .recipient
        .unprotect_request(&mut protect_at(10))
        .is_ok());
    assert!(server
        .recipient
        .unprotect_request(&mut protect_at(7))
        .is_ok());
    assert_eq!(
        server
            .recipient
            .unprotect_request(&mut protect_at(10))
            .unwrap_err(),
        Error::Replay
    );
}

#[test]
fn forged_messages_do_not_move_the_window() {
    // The weakness of the reference stack (REFERENCE-SSM §9.2): a forged
    // message with a fresh Partial IV must not be recorded.
    let secret = [9u8; 32];
    let mut server = ctx(&secret, None, None, &[0x01], &[0x02]);
    let mut attacker = ctx_at(&[1u8; 32], None, None, &[0x02], &[0x01], 5);
    let m = Message::new(MessageType::NonConfirmable, Code::POST, 1, Token::default());
    let mut out = [0u8; 64];
    let (n, _) = attacker
        .sender
        .protect_request(&m.to_vec(), &mut out)
        .unwrap();
    assert_eq!(
        server
            .recipient
            .unprotect_request(&mut out[..n].to_vec())
            .unwrap_err(),
        Error::DecryptionFailed
    );
    let mut client = ctx_at(&secret, None, None, &[0x02], &[0x01], 5);
    let (n, _) = client
        .sender
        .protect_request(&m.to_vec(), &mut out)
        .unwrap();
    assert!(server
        .recipient
        .unprotect_request(&mut out[..n].to_vec())
        .is_ok());
}

#[test]
fn echo_initialises_window_after_restart() {
    let secret = [3u8; 32];
    let mut client = ctx(&secret, None, None, &[0x02], &[0x01]);
    let mut server = ctx_at(&secret, None, None, &[0x01], &[0x02], 100);
    server.recipient.replay = ReplayState::awaiting_echo(32);
    let mut m = Message::new(
        MessageType::Confirmable,
        Code::GET,
        1,
        Token::new(&[1]).unwrap(),
    );
    m.set_uri_path("/hello");
    let mut out = [0u8; 256];
    let (n, _) = client
        .sender
        .protect_request(&m.to_vec(), &mut out)
        .unwrap();
    let first = out[..n].to_vec();
    let err = server
        .recipient
        .unprotect_request(&mut first.clone())
        .unwrap_err();
    let Error::FreshnessUnknown(binding) = err else {
        panic!("{err:?}")
    };
    // The server answers 4.01 with an Echo, protected with its own PIV.
    server.recipient.replay.set_pending_echo(&[0xee; 8]);
    let mut challenge = Message::new(
        MessageType::Acknowledgement,
        Code::UNAUTHORIZED,
        1,
        Token::new(&[1]).unwrap(),
    );
    challenge.add_option(OptionNumber::ECHO, vec![0xee; 8]);
    let n = server
        .sender
        .protect_response(&binding, &challenge.to_vec(), ResponsePiv::Own, &mut out)
        .unwrap();
    let d = client
        .recipient
        .unprotect_response(&binding, &mut out[..n].to_vec())
        .unwrap()
        .to_message();
    assert_eq!(d.code, Code::UNAUTHORIZED);
    let echo = d.option(OptionNumber::ECHO).unwrap().to_vec();
    // Replaying the first request still gets a challenge, never processing.
    assert!(matches!(
        server.recipient.unprotect_request(&mut first.clone()),
        Err(Error::FreshnessUnknown(_))
    ));
    // The retry with the Echo inside is accepted and anchors the window.
    m.add_option(OptionNumber::ECHO, echo);
    let (n, _) = client
        .sender
        .protect_request(&m.to_vec(), &mut out)
        .unwrap();
    let retry = out[..n].to_vec();
    assert!(server
        .recipient
        .unprotect_request(&mut retry.clone())
        .is_ok());
    assert_eq!(
        server
            .recipient
            .unprotect_request(&mut retry.clone())
            .unwrap_err(),
        Error::Replay
    );
    assert_eq!(
        server
            .recipient
            .unprotect_request(&mut first.clone())
            .unwrap_err(),
        Error::Replay
    );
}

#[test]
fn observe_uses_fetch_and_empty_inner_observe_in_notifications() {
    let secret = [4u8; 32];
    let mut client = ctx(&secret, None, None, &[0x02], &[0x01]);
    let mut server = ctx(&secret, None, None, &[0x01], &[0x02]);
    let mut m = Message::new(
        MessageType::Confirmable,
        Code::GET,
        1,
        Token::new(&[1]).unwrap(),
    );
    m.add_option_uint(OptionNumber::OBSERVE, 0);
    m.set_uri_path("/BinarySwitchResURI");
    let mut out = [0u8; 256];
    let (n, binding) = client
        .sender
        .protect_request(&m.to_vec(), &mut out)
        .unwrap();
    assert_eq!(out[1], Code::FETCH.0);
    assert!(binding.observe);
    let d = server
        .recipient
        .unprotect_request(&mut out[..n].to_vec())
        .unwrap()
        .to_message();
    assert_eq!(d.option_uint(OptionNumber::OBSERVE), Some(0));
    let mut note = Message::new(
        MessageType::NonConfirmable,
        Code::CONTENT,
        9,
        Token::new(&[1]).unwrap(),
    );
    note.add_option_uint(OptionNumber::OBSERVE, 7);
    note.payload = vec![0xa0];
    let n = server
        .sender
        .protect_response(&binding, &note.to_vec(), ResponsePiv::Own, &mut out)
        .unwrap();
    assert_eq!(out[1], Code::CONTENT.0);
    let wire = ssm_coap::Message::parse(&out[..n]).unwrap();
    assert_eq!(wire.option_uint(OptionNumber::OBSERVE), Some(7));
    let mut note_wire = out[..n].to_vec();
    let d = client
        .recipient
        .unprotect_response(&binding, &mut note_wire)
        .unwrap();
    assert_eq!(
        d.options.get(OptionNumber::OBSERVE).unwrap().value,
        &[] as &[u8]
    );
    assert!(d.partial_iv.is_some());
    // A non-observe request must not accept a response with inner Observe.
    let plain_binding = RequestBinding {
        observe: false,
        ..binding
    };
    assert_eq!(
        client
            .recipient
            .unprotect_response(&plain_binding, &mut out[..n].to_vec())
            .unwrap_err(),
        Error::UnexpectedObserve
    );
}

#[test]
fn proxy_uri_is_decomposed() {
    let secret = [5u8; 32];
    let mut client = ctx(&secret, None, None, &[0x02], &[0x01]);
    let mut server = ctx(&secret, None, None, &[0x01], &[0x02]);
    let mut m = Message::new(MessageType::Confirmable, Code::GET, 1, Token::default());
    m.add_option(
        OptionNumber::PROXY_URI,
        b"coap://example.com/res%20ource/x?q=1&r".to_vec(),
    );
    let mut out = [0u8; 256];
    let (n, _) = client
        .sender
        .protect_request(&m.to_vec(), &mut out)
        .unwrap();
    let wire = ssm_coap::Message::parse(&out[..n]).unwrap();
    assert_eq!(
        wire.option(OptionNumber::PROXY_URI),
        Some(&b"coap://example.com"[..])
    );
    assert!(wire.option(OptionNumber::URI_PATH).is_none());
    let d = server
        .recipient
        .unprotect_request(&mut out[..n].to_vec())
        .unwrap()
        .to_message();
    assert_eq!(d.uri_path(), "/res ource/x");
    assert_eq!(d.uri_queries().collect::<Vec<_>>(), ["q=1", "r"]);
    assert_eq!(
        d.option(OptionNumber::PROXY_URI),
        Some(&b"coap://example.com"[..])
    );
}

#[test]
fn unprotected_or_malformed_requests_get_the_rfc_codes() {
    let secret = [6u8; 32];
    let mut server = ctx(&secret, None, None, &[0x01], &[0x02]);
    let plain = Message::new(MessageType::Confirmable, Code::GET, 1, Token::default()).to_vec();
    assert_eq!(
        server
            .recipient
            .unprotect_request(&mut plain.clone())
            .unwrap_err(),
        Error::NotOscore
    );
    // OSCORE option without kid → 4.02.
    let mut m = Message::new(MessageType::Confirmable, Code::POST, 1, Token::default());
    m.add_option(OptionNumber::OSCORE, vec![0x01, 0x05]);
    m.payload = vec![0; 12];
    let e = server
        .recipient
        .unprotect_request(&mut m.to_vec())
        .unwrap_err();
    assert_eq!(e, Error::MissingKid);
    assert_eq!(e.coap_code(), Some(Code::BAD_OPTION));
    // Wrong kid → 4.01.
    m.set_option(OptionNumber::OSCORE, vec![0x09, 0x05, 0x03]);
    let e = server
        .recipient
        .unprotect_request(&mut m.to_vec())
        .unwrap_err();
    assert_eq!(
        (e, e.coap_code()),
        (Error::UnknownKid, Some(Code::UNAUTHORIZED))
    );
    // Right kid, garbage ciphertext → 4.00.
    m.set_option(OptionNumber::OSCORE, vec![0x09, 0x05, 0x02]);
    let e = server
        .recipient
        .unprotect_request(&mut m.to_vec())
        .unwrap_err();
    assert_eq!(
        (e, e.coap_code()),
        (Error::DecryptionFailed, Some(Code::BAD_REQUEST))
    );
}

#[test]
fn debug_output_has_no_key_material() {
    let secret = [0x5au8; 32];
    let c = ctx(&secret, Some(&[0x11; 8]), None, &[0x01], &[0x02]);
    let key = ssm_oscore::kdf::Prk::extract(&secret, Some(&[0x11; 8]))
        .unwrap()
        .key(&Id::new(&[0x01]).unwrap(), None);
    let dbg = format!("{c:?}");
    let key_hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    assert!(!dbg.contains(&key_hex), "{dbg}");
    assert!(!dbg.to_lowercase().contains("5a5a5a5a"), "{dbg}");
    let key_dec = format!("{:?}", &key[..4]);
    assert!(!dbg.contains(key_dec.trim_end_matches(']')), "{dbg}");
}

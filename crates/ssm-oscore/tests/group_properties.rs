//! Property tests of Group OSCORE group mode: round trips over random
//! groups and requests, single-byte tampering, and arbitrary input on the
//! receive path and the credential parser (never a panic, never a moved
//! window).
use ed25519_dalek::SigningKey;
use proptest::prelude::*;
use ssm_coap::{Code, Message, MessageType, OptionNumber, Token};
use ssm_oscore::group::*;
use ssm_oscore::*;

fn ccs(seed: &[u8; 32]) -> Vec<u8> {
    let pk = SigningKey::from_bytes(seed).verifying_key().to_bytes();
    let mut c = vec![
        0xa1, 0x08, 0xa1, 0x01, 0xa4, 0x01, 0x01, 0x03, 0x27, 0x20, 0x06, 0x21, 0x58, 0x20,
    ];
    c.extend_from_slice(&pk);
    c
}

/// Test keys only (printed by proptest on failure).
#[derive(Debug)]
struct Group {
    secret: Vec<u8>,
    gid: Vec<u8>,
    gm: Vec<u8>,
    sid: Vec<u8>,
    seed: [u8; 32],
}

impl Group {
    fn params(&self) -> GroupParams<'_> {
        GroupParams {
            master_secret: &self.secret,
            master_salt: None,
            group_id: IdContext::new(&self.gid).unwrap(),
            gm_cred: &self.gm,
            alg_aead: None,
            alg_pairwise_key_agreement: None,
        }
    }
    fn sender(&self) -> GroupSenderContext {
        GroupSenderContext::derive(
            &self.params(),
            Id::new(&self.sid).unwrap(),
            &self.seed,
            &ccs(&self.seed),
            SequenceNumber::volatile(0),
        )
        .unwrap()
    }
    fn recipient(&self) -> GroupRecipientContext {
        GroupRecipientContext::derive(
            &self.params(),
            Id::new(&self.sid).unwrap(),
            &ccs(&self.seed),
            ReplayState::Window(ReplayWindow::new(32)),
        )
        .unwrap()
    }
}

prop_compose! {
    fn arb_group()(
        secret in prop::collection::vec(any::<u8>(), 16..33),
        gid in prop::collection::vec(any::<u8>(), 0..=8),
        gm in prop::collection::vec(any::<u8>(), 0..100),
        sid in prop::collection::vec(any::<u8>(), 0..=7),
        seed in any::<[u8; 32]>(),
    ) -> Group {
        Group { secret, gid, gm, sid, seed }
    }
}

prop_compose! {
    fn arb_request()(
        ty in prop::sample::select(vec![MessageType::Confirmable, MessageType::NonConfirmable]),
        mid in any::<u16>(),
        token in prop::collection::vec(any::<u8>(), 0..=8),
        path in prop::collection::vec("[a-zA-Z0-9]{1,10}", 0..4),
        cf in prop::option::of(prop::sample::select(vec![0u32, 60, 10000])),
        payload in prop::collection::vec(any::<u8>(), 0..200),
    ) -> Message {
        let mut m = Message::new(ty, Code::POST, mid, Token::new(&token).unwrap());
        for p in path { m.add_option(OptionNumber::URI_PATH, p.into_bytes()); }
        if let Some(cf) = cf { m.add_option_uint(OptionNumber::CONTENT_FORMAT, cf); }
        m.payload = payload;
        m
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn roundtrip_and_single_byte_tamper(g in arb_group(), req in arb_request(), flip in 1u8..=255) {
        let common = GroupCommon::derive(&g.params()).unwrap();
        let mut s = g.sender();
        let mut out = [0u8; 1024];
        let (n, _) = s.protect_request(&common, &req.to_vec(), &mut out, RequestOptions::default()).unwrap();
        let good = out[..n].to_vec();
        let mut buf = good.clone();
        let d = g.recipient().unprotect_request(&common, &mut buf).unwrap();
        prop_assert_eq!(d.to_message(), req.clone());
        // Flipping one byte: rejected, or (only in the unprotected outer
        // header and token) accepted with the protected content unchanged.
        let tkl = req.token.as_bytes().len();
        for i in (0..n).step_by(4) {
            let mut r = g.recipient();
            let mut bad = good.clone();
            bad[i] ^= flip;
            match r.unprotect_request(&common, &mut bad) {
                Ok(d) => {
                    prop_assert!(i < 4 + tkl, "byte {} changed without effect", i);
                    let m = d.to_message();
                    prop_assert_eq!(m.payload, req.payload.clone());
                    prop_assert_eq!(m.options, req.options.clone());
                }
                Err(_) => prop_assert_eq!(*r.replay(), ReplayState::Window(ReplayWindow::new(32))),
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn arbitrary_datagrams_never_panic_nor_move_the_window(
        prefix in prop::sample::select(vec![
            // Header, OSCORE option with Group Flag, PIV 1, Gid 4701, kid 01.
            vec![0x50u8, 0x02, 0x00, 0x01, 0x96, 0x39, 0x01, 0x02, 0x47, 0x01, 0x01, 0xff],
            vec![0x50u8, 0x02, 0x00, 0x01, 0x96, 0x39, 0x01, 0x02, 0x47, 0x01, 0x01],
            vec![0x50u8, 0x02, 0x00, 0x01, 0x92, 0x29, 0x01],
            vec![],
        ]),
        rest in prop::collection::vec(any::<u8>(), 0..160),
    ) {
        let g = Group { secret: vec![1; 32], gid: vec![0x47, 0x01], gm: vec![], sid: vec![0x01], seed: [3; 32] };
        let common = GroupCommon::derive(&g.params()).unwrap();
        let mut r = g.recipient();
        let mut d = prefix;
        d.extend_from_slice(&rest);
        let mut copy = d.clone();
        prop_assert!(r.unprotect_request(&common, &mut copy).is_err());
        prop_assert_eq!(*r.replay(), ReplayState::Window(ReplayWindow::new(32)));
        let binding = RequestBinding { kid: Id::new(&[0x02]).unwrap(), partial_iv: PartialIv::from_u64(0).unwrap(), kid_context: Some(IdContext::new(&[0x47, 0x01]).unwrap()), observe: false };
        prop_assert!(r.unprotect_response(&common, &binding, &mut d).is_err());
    }

    #[test]
    fn credential_parser_never_panics(v in prop::collection::vec(any::<u8>(), 0..80)) {
        if let Ok(pk) = ccs_ed25519_public_key(&v) {
            // Whatever parses carries the key it returns.
            prop_assert!(v.windows(32).any(|w| w == pk));
        }
    }

    #[test]
    fn credential_parser_on_mutated_ccs(i in 0usize..46, x in 1u8..=255) {
        let mut c = ccs(&[9; 32]);
        c[i] ^= x;
        let _ = ccs_ed25519_public_key(&c);
    }
}

//! Arbitrary input never panics the OSCORE receive path, and never changes
//! the replay window unless it verified.
use proptest::prelude::*;
use ssm_oscore::*;

fn server() -> SecurityContext {
    SecurityContext::derive(
        &ContextParams {
            master_secret: &[1u8; 32],
            master_salt: None,
            id_context: None,
            sender_id: Id::new(&[0x01]).unwrap(),
            recipient_id: Id::new(&[0x02]).unwrap(),
        },
        SequenceNumber::volatile(0),
        ReplayState::Window(ReplayWindow::new(32)),
    )
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(5000))]

    #[test]
    fn oscore_option_parse_never_panics(v in prop::collection::vec(any::<u8>(), 0..48)) {
        if let Ok(o) = OscoreOption::parse(&v) {
            // Whatever parses re-encodes to the same bytes.
            let mut buf = [0u8; 64];
            let n = o.emit(&mut buf).unwrap();
            prop_assert_eq!(&buf[..n], &v[..]);
        }
    }

    #[test]
    fn unprotect_arbitrary_datagrams_never_panics(
        // A plausible header + an OSCORE option with our kid, then noise, so
        // the input reaches the AEAD and the plaintext parser.
        prefix in prop::sample::select(vec![
            vec![0x50u8, 0x02, 0x00, 0x01, 0x92, 0x09, 0x02],
            vec![0x50u8, 0x02, 0x00, 0x01, 0x93, 0x09, 0x05, 0x02],
            vec![0x40u8, 0x02, 0x00, 0x01],
            vec![],
        ]),
        rest in prop::collection::vec(any::<u8>(), 0..80),
    ) {
        let mut s = server();
        let before = s.recipient.replay;
        let mut d = prefix;
        d.extend_from_slice(&rest);
        let mut copy = d.clone();
        if s.recipient.unprotect_request(&mut copy).is_err() {
            prop_assert_eq!(s.recipient.replay, before);
        }
        let binding = RequestBinding { kid: Id::new(&[0x02]).unwrap(), partial_iv: PartialIv::from_u64(0).unwrap(), kid_context: None, observe: false };
        let _ = s.recipient.unprotect_response(&binding, &mut d);
    }
}

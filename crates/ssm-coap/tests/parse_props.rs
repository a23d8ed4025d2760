//! Property tests: no input makes the parser panic, and emit/parse agree.
use proptest::prelude::*;
use ssm_coap::{Code, Message, MessageType, OptionNumber, Packet, Token};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
        if let Ok(p) = Packet::new_checked(&bytes[..]) {
            // Every accessor works on whatever passed validation.
            let _ = (p.msg_type(), p.code(), p.message_id(), p.token(), p.payload());
            let n = p.options().iter().count();
            let msg = Message::from_packet(&p).unwrap();
            prop_assert_eq!(msg.options.len(), n);
            // Re-emitting a parsed message gives the same bytes.
            prop_assert_eq!(msg.to_vec(), bytes);
        }
    }

    #[test]
    fn header_like_bytes_never_panic(
        head in (0u8..=255, 0u8..=255, any::<u16>()),
        rest in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        // Bias towards version 1 so the option walker sees more inputs.
        let mut bytes = vec![0x40 | (head.0 & 0x3f), head.1];
        bytes.extend_from_slice(&head.2.to_be_bytes());
        bytes.extend_from_slice(&rest);
        if let Ok(p) = Packet::new_checked(&bytes[..]) {
            let msg = Message::from_packet(&p).unwrap();
            prop_assert_eq!(msg.to_vec(), bytes);
        }
    }

    #[test]
    fn emit_parse_roundtrip(
        ty in 0u8..4,
        code in 1u8..=255,
        mid in any::<u16>(),
        token in proptest::collection::vec(any::<u8>(), 0..=8),
        options in proptest::collection::vec((0u16..3000, proptest::collection::vec(any::<u8>(), 0..300)), 0..8),
        payload in proptest::collection::vec(any::<u8>(), 0..100),
    ) {
        let mut m = Message::new(MessageType::from_bits(ty), Code(code), mid, Token::new(&token).unwrap());
        for (n, v) in options {
            m.add_option(OptionNumber(n), v);
        }
        m.payload = payload;
        let bytes = m.to_vec();
        prop_assert_eq!(bytes.len(), m.encoded_len());
        prop_assert_eq!(Message::parse(&bytes).unwrap(), m);
    }
}

//! The CoAP wire parser (`ssm_coap::Packet`, `Message`): any bytes give a
//! value or an error, never a panic; what parses re-encodes and parses to
//! the same message.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ssm_coap::{Message, Packet};

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = Packet::new_checked(data) {
        let _ = (p.msg_type(), p.code(), p.message_id(), p.token());
        for o in p.options() {
            let _ = (o.number, o.value.len());
        }
        let _ = p.payload();
    }
    if let Ok(m) = Message::parse(data) {
        let _ = m.uri_path();
        let _ = m.uri_queries().count();
        let _ = m.content_format();
        let bytes = m.to_vec();
        assert_eq!(bytes.len(), m.encoded_len());
        let again = Message::parse(&bytes).expect("an emitted message parses");
        assert_eq!(again, m, "parse(emit(m)) == m");
    }
});

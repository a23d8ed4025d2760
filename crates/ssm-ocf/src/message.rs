//! OCF's use of CoAP: Content-Format 10000 (`application/vnd.ocf+cbor`)
//! with OCF-Content-Format-Version (2053), Accept 10000 with
//! OCF-Accept-Content-Format-Version (2049), value 2048 = OCF 1.0.0; a peer
//! announcing a version below 2048 gets 4.15 (DIGEST §1).
use crate::cbor;
use ciborium::Value;
/// Block2 moved to the CoAP layer; re-exported for OCF callers.
pub use ssm_coap::block::{apply_block2, block2};
use ssm_coap::{
    Code, Message, MessageType, OptionNumber, Token, CONTENT_FORMAT_CBOR, CONTENT_FORMAT_OCF_CBOR,
    OCF_VERSION_1_0_0,
};

/// Sets a CBOR payload with Content-Format 10000 and option 2053.
pub fn set_payload(m: &mut Message, v: &Value) {
    m.set_option_uint(
        OptionNumber::CONTENT_FORMAT,
        u32::from(CONTENT_FORMAT_OCF_CBOR),
    );
    m.set_option_uint(
        OptionNumber::OCF_CONTENT_FORMAT_VERSION,
        u32::from(OCF_VERSION_1_0_0),
    );
    m.payload = cbor::encode(v);
}

/// Asks for an OCF CBOR answer: Accept 10000 with option 2049.
pub fn set_accept(m: &mut Message) {
    m.set_option_uint(OptionNumber::ACCEPT, u32::from(CONTENT_FORMAT_OCF_CBOR));
    m.set_option_uint(
        OptionNumber::OCF_ACCEPT_CONTENT_FORMAT_VERSION,
        u32::from(OCF_VERSION_1_0_0),
    );
}

/// A request to `href` (with optional query), Accept set.
pub fn request(ty: MessageType, code: Code, href: &str, query: Option<&str>) -> Message {
    let mut m = Message::new(ty, code, 0, Token::default());
    m.set_uri_path(href);
    if let Some(q) = query {
        m.set_uri_query(q);
    }
    set_accept(&mut m);
    m
}

/// An UPDATE (POST) of `props` to `href`.
pub fn update(ty: MessageType, href: &str, props: &Value) -> Message {
    let mut m = request(ty, Code::POST, href, None);
    set_payload(&mut m, props);
    m
}

/// Checks the OCF version options of a request: `Err(4.15)` if either is
/// below OCF 1.0.0.
pub fn check_version(m: &Message) -> Result<(), Code> {
    for n in [
        OptionNumber::OCF_ACCEPT_CONTENT_FORMAT_VERSION,
        OptionNumber::OCF_CONTENT_FORMAT_VERSION,
    ] {
        if let Some(v) = m.option(n) {
            match ssm_coap::decode_uint(v) {
                Ok(v) if v >= u32::from(OCF_VERSION_1_0_0) => {}
                _ => return Err(Code::UNSUPPORTED_CONTENT_FORMAT),
            }
        }
    }
    Ok(())
}

/// Decodes a CBOR payload (Content-Format 10000 or 60, or absent).
pub fn payload(m: &Message) -> Result<Value, Code> {
    match m.content_format() {
        None | Some(CONTENT_FORMAT_OCF_CBOR) | Some(CONTENT_FORMAT_CBOR) => {}
        Some(_) => return Err(Code::UNSUPPORTED_CONTENT_FORMAT),
    }
    cbor::decode(&m.payload).map_err(|_| Code::BAD_REQUEST)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        let mut m = request(
            MessageType::Confirmable,
            Code::GET,
            "/oic/res",
            Some("rt=oic.r.switch.binary"),
        );
        assert_eq!(check_version(&m), Ok(()));
        assert_eq!(m.option_uint(OptionNumber::ACCEPT), Some(10000));
        m.set_option_uint(OptionNumber::OCF_ACCEPT_CONTENT_FORMAT_VERSION, 2047);
        assert_eq!(check_version(&m), Err(Code::UNSUPPORTED_CONTENT_FORMAT));
        let u = update(
            MessageType::NonConfirmable,
            "/a",
            &cbor::map([("value", Value::Bool(true))]),
        );
        assert_eq!(
            u.option_uint(OptionNumber::OCF_CONTENT_FORMAT_VERSION),
            Some(2048)
        );
        assert_eq!(
            payload(&u).unwrap(),
            cbor::map([("value", Value::Bool(true))])
        );
    }
}

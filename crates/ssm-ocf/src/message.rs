//! OCF's use of CoAP: Content-Format 10000 (`application/vnd.ocf+cbor`)
//! with OCF-Content-Format-Version (2053), Accept 10000 with
//! OCF-Accept-Content-Format-Version (2049), value 2048 = OCF 1.0.0; a peer
//! announcing a version below 2048 gets 4.15 (DIGEST §1).
use crate::cbor;
use ciborium::Value;
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

/// Block-wise transfer of a large response (RFC 7959 §2.2, Block2): if
/// `resp` carries more than `max` bytes of payload, or `req` asks for a
/// block, the answer is the requested block (NUM from the request's Block2,
/// size the smaller of the request's and `max`, at least 16 bytes) with a
/// Block2 option saying whether more follow. The server stays stateless:
/// each block request is answered from a fresh representation. A block
/// past the end is 4.02 Bad Option.
pub fn apply_block2(req: &Message, mut resp: Message, max: usize) -> Message {
    let asked = req.option_uint(OptionNumber::BLOCK2);
    if resp.payload.len() <= max && asked.is_none_or(|b| b >> 4 == 0) {
        return resp;
    }
    // SZX: block size 2^(SZX+4); 6 (1024) at most.
    let max_szx = (0..=6u32)
        .rev()
        .find(|s| (16usize << s) <= max.max(16))
        .unwrap_or(0);
    let (num, szx) = match asked {
        Some(b) => (b >> 4, (b & 7).min(max_szx)),
        None => (0, max_szx),
    };
    let size = 16usize << szx;
    let start = (num as usize).saturating_mul(size);
    if start >= resp.payload.len() && !(start == 0 && resp.payload.is_empty()) {
        resp.code = Code::BAD_OPTION;
        resp.payload.clear();
        resp.remove_option(OptionNumber::CONTENT_FORMAT);
        return resp;
    }
    let end = (start + size).min(resp.payload.len());
    let more = end < resp.payload.len();
    let total = resp.payload.len();
    resp.payload = resp.payload[start..end].to_vec();
    resp.set_option_uint(
        OptionNumber::BLOCK2,
        (num << 4) | (u32::from(more) << 3) | szx,
    );
    if num == 0 {
        resp.set_option_uint(OptionNumber::SIZE2, total as u32);
    }
    resp
}

/// The Block2 option of a response: (NUM, more, block size).
pub fn block2(resp: &Message) -> Option<(u32, bool, usize)> {
    let b = resp.option_uint(OptionNumber::BLOCK2)?;
    Some((b >> 4, b & 8 != 0, 16usize << (b & 7).min(6)))
}

#[cfg(test)]
mod block_tests {
    use super::*;

    #[test]
    fn large_response_in_blocks_reassembles() {
        let req = request(MessageType::Confirmable, Code::GET, "/oic/sec/cred", None);
        let mut resp = Message::new(MessageType::Acknowledgement, Code::CONTENT, 1, req.token);
        resp.payload = (0..3000u32).map(|i| i as u8).collect();
        let full = resp.payload.clone();
        let mut got = Vec::new();
        let mut next = req.clone();
        for n in 0.. {
            assert!(n < 10, "bounded");
            let r = apply_block2(&next, resp.clone(), 1024);
            assert_eq!(r.code, Code::CONTENT);
            let (num, more, size) = block2(&r).unwrap();
            assert_eq!((num, size), (n, 1024));
            got.extend_from_slice(&r.payload);
            if !more {
                break;
            }
            next = req.clone();
            next.set_option_uint(OptionNumber::BLOCK2, ((num + 1) << 4) | 6);
        }
        assert_eq!(got, full);
        // Small responses are untouched; a block past the end is refused.
        let mut small = resp.clone();
        small.payload.truncate(10);
        assert!(block2(&apply_block2(&req, small, 1024)).is_none());
        let mut past = req.clone();
        past.set_option_uint(OptionNumber::BLOCK2, (9 << 4) | 6);
        assert_eq!(apply_block2(&past, resp, 1024).code, Code::BAD_OPTION);
    }
}

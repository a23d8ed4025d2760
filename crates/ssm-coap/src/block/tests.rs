use super::*;
use crate::{MessageType, Token};
use alloc::vec;

fn get() -> Message {
    let mut m = Message::new(
        MessageType::Confirmable,
        Code::GET,
        7,
        Token::new(&[1, 2]).unwrap(),
    );
    m.set_uri_path("/oic/sec/cred");
    m
}

fn content(len: u32) -> Message {
    let mut resp = Message::new(MessageType::Acknowledgement, Code::CONTENT, 1, get().token);
    resp.set_option_uint(OptionNumber::CONTENT_FORMAT, 10000);
    resp.payload = (0..len).map(|i| i as u8).collect();
    resp
}

#[test]
fn large_response_in_blocks_reassembles() {
    let req = get();
    let resp = content(3000);
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

/// Plays a server that answers each block request with `apply_block2` of
/// `resp`, through the reassembler; returns the result and the requests.
fn fetch(resp: &Message, max: usize) -> (Result<Message, BlockError>, Vec<u32>) {
    let req = get();
    let mut asked = vec![];
    let mut step = Block2Reassembler::start(apply_block2(&req, resp.clone(), max));
    loop {
        match step {
            Err(e) => return (Err(e), asked),
            Ok(Block2Progress::Complete(m)) => return (Ok(m), asked),
            Ok(Block2Progress::More(r, value)) => {
                assert!(asked.len() < 100, "bounded");
                asked.push(value);
                let mut next = req.clone();
                next.set_option_uint(OptionNumber::BLOCK2, value);
                step = r.push(apply_block2(&next, resp.clone(), max));
            }
        }
    }
}

#[test]
fn reassembler_fetches_every_block_in_order() {
    let resp = content(3000);
    let (whole, asked) = fetch(&resp, 1024);
    let whole = whole.unwrap();
    assert_eq!(asked, vec![(1 << 4) | 6, (2 << 4) | 6]);
    assert_eq!(whole.payload, resp.payload);
    assert_eq!(whole.code, Code::CONTENT);
    assert_eq!(whole.content_format(), Some(10000));
    assert!(whole.option(OptionNumber::BLOCK2).is_none());
    assert!(whole.option(OptionNumber::SIZE2).is_none());
    // Without Block2 the response is complete as it is.
    let (small, asked) = fetch(&content(10), 1024);
    assert_eq!(small.unwrap(), content(10));
    assert!(asked.is_empty());
}

#[test]
fn reassembler_caps_at_64_blocks() {
    // 64 blocks of 16 B are accepted, 65 are not.
    let (ok, asked) = fetch(&content(64 * 16), 16);
    assert_eq!(ok.unwrap().payload.len(), 64 * 16);
    assert_eq!(asked.len(), 63);
    let (err, asked) = fetch(&content(64 * 16 + 1), 16);
    assert_eq!(err.unwrap_err().0, "response of more than 64 blocks");
    assert_eq!(asked.len(), 63);
}

#[test]
fn reassembler_refuses_blocks_out_of_order_or_of_another_kind() {
    let req = get();
    let resp = content(100);
    let first = apply_block2(&req, resp.clone(), 32);
    let block = |num: u32, szx: u32| {
        let mut r = req.clone();
        r.set_option_uint(OptionNumber::BLOCK2, (num << 4) | szx);
        apply_block2(&r, resp.clone(), 1024)
    };
    let more = |step| match step {
        Ok(Block2Progress::More(r, v)) => (r, v),
        other => panic!("expected More, got {other:?}"),
    };
    // Block 2 where 1 is due.
    let (r, v) = more(Block2Reassembler::start(first.clone()));
    assert_eq!(v, (1 << 4) | 1);
    assert!(r.push(block(2, 1)).is_err());
    // Another block size.
    let (r, _) = more(Block2Reassembler::start(first.clone()));
    assert!(r.push(block(1, 2)).is_err());
    // Another code, or no Block2 at all.
    let (r, _) = more(Block2Reassembler::start(first.clone()));
    let mut bad = block(1, 1);
    bad.code = Code::NOT_FOUND;
    assert!(r.push(bad).is_err());
    let (r, _) = more(Block2Reassembler::start(first.clone()));
    assert!(r.push(content(10)).is_err());
    // A first response that is not block 0.
    assert!(Block2Reassembler::start(block(1, 1)).is_err());
}

//! Block-wise transfer of a large response, RFC 7959 Block2: the server
//! side ([`apply_block2`], stateless) and the client side
//! ([`Block2Reassembler`], sans-IO: it says which block to ask for next and
//! the caller sends the request).
use crate::{Code, Message, OptionNumber};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// The most blocks a [`Block2Reassembler`] accepts for one response: a
/// bound on what one peer can make a client fetch and hold.
pub const MAX_BLOCKS: u32 = 64;

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

/// Why a block-wise response was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockError(pub String);

impl core::fmt::Display for BlockError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What to do after a block arrived.
#[derive(Debug)]
pub enum Block2Progress {
    /// The whole response: the first block's code and options (Block2 and
    /// Size2 removed) with every block's payload.
    Complete(Message),
    /// Ask for the next block: repeat the request with this Block2 option
    /// value (NUM, M = 0, SZX of the first block; RFC 7959 §2.4) and give
    /// the answer to [`Block2Reassembler::push`].
    More(Block2Reassembler, u32),
}

/// Client-side reassembly of a Block2 response (RFC 7959 §2.4, §3.1):
/// blocks must arrive in order, with the first block's code and size, and
/// at most [`MAX_BLOCKS`] of them.
#[derive(Debug)]
pub struct Block2Reassembler {
    first: Message,
    payload: Vec<u8>,
    next: u32,
    size: usize,
}

impl Block2Reassembler {
    /// Starts with the response to the request: without Block2, or with
    /// Block2 and no more blocks, it is complete as it is.
    pub fn start(first: Message) -> Result<Block2Progress, BlockError> {
        let Some((num, more, size)) = block2(&first) else {
            return Ok(Block2Progress::Complete(first));
        };
        if num != 0 {
            return Err(BlockError(format!("block {num}, expected 0")));
        }
        let r = Block2Reassembler {
            payload: first.payload.clone(),
            first,
            next: 1,
            size,
        };
        r.proceed(more)
    }

    /// The next block (the answer to the request [`Block2Progress::More`]
    /// asked for).
    pub fn push(mut self, part: Message) -> Result<Block2Progress, BlockError> {
        let num = self.next;
        let Some((n, more, size)) = block2(&part) else {
            return Err(BlockError(format!(
                "block {num}: {} without Block2",
                part.code
            )));
        };
        if part.code != self.first.code || n != num || size != self.size {
            return Err(BlockError(format!(
                "block {num}: {} block {n} of {size} B",
                part.code
            )));
        }
        self.payload.extend_from_slice(&part.payload);
        self.next += 1;
        self.proceed(more)
    }

    fn proceed(self, more: bool) -> Result<Block2Progress, BlockError> {
        if more {
            if self.next >= MAX_BLOCKS {
                return Err(BlockError(format!(
                    "response of more than {MAX_BLOCKS} blocks"
                )));
            }
            let szx = (self.size / 16).trailing_zeros();
            let value = (self.next << 4) | szx;
            return Ok(Block2Progress::More(self, value));
        }
        let mut whole = self.first;
        whole.payload = self.payload;
        whole.remove_option(OptionNumber::BLOCK2);
        whole.remove_option(OptionNumber::SIZE2);
        Ok(Block2Progress::Complete(whole))
    }
}

#[cfg(test)]
mod tests;

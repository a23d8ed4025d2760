//! Emitting messages into a caller's buffer, without allocating.
use crate::code::{Code, MessageType};
use crate::error::Error;
use crate::option::{encode_uint, OptionNumber};
use crate::packet::{HEADER_LEN, MAX_TOKEN_LEN, PAYLOAD_MARKER};

/// Writes an option sequence (and then a payload) into a buffer from a start
/// offset. Used for whole messages ([`MessageWriter`]) and for the OSCORE
/// plaintext, which is an option sequence without a header.
#[derive(Debug)]
pub struct OptionWriter<'a> {
    buf: &'a mut [u8],
    pos: usize,
    last: u16,
}

impl<'a> OptionWriter<'a> {
    /// Starts writing options at `buf[start..]`.
    pub fn new(buf: &'a mut [u8], start: usize) -> Result<Self, Error> {
        if start > buf.len() {
            return Err(Error::BufferTooSmall);
        }
        Ok(OptionWriter {
            buf,
            pos: start,
            last: 0,
        })
    }

    /// Appends an option; numbers must not decrease.
    pub fn option(&mut self, number: OptionNumber, value: &[u8]) -> Result<(), Error> {
        let delta = number
            .0
            .checked_sub(self.last)
            .ok_or(Error::OptionOutOfOrder)?;
        if value.len() > MAX_OPTION_LEN {
            return Err(Error::OptionTooLong);
        }
        let delta = Ext::new(u32::from(delta));
        let len = Ext::new(value.len() as u32); // ≤ MAX_OPTION_LEN
        let head_len = 1 + delta.len() + len.len();
        let out = self
            .buf
            .get_mut(self.pos..)
            .and_then(|b| b.get_mut(..head_len + value.len()))
            .ok_or(Error::BufferTooSmall)?;
        let (head, body) = out.split_at_mut(head_len);
        head[0] = (delta.nibble << 4) | len.nibble;
        let rest = delta.write(&mut head[1..]);
        len.write(rest);
        body.copy_from_slice(value);
        self.pos += head_len + value.len();
        self.last = number.0;
        Ok(())
    }

    /// Appends an integer option in its minimal encoding.
    pub fn option_uint(&mut self, number: OptionNumber, value: u32) -> Result<(), Error> {
        self.option(number, encode_uint(value).as_bytes())
    }

    /// Writes the payload marker and the payload (nothing if it is empty) and
    /// returns the total length written from the buffer's start.
    pub fn payload(self, payload: &[u8]) -> Result<usize, Error> {
        if payload.is_empty() {
            return Ok(self.pos);
        }
        let end = self.pos + 1 + payload.len();
        let out = self
            .buf
            .get_mut(self.pos..end)
            .ok_or(Error::BufferTooSmall)?;
        out[0] = PAYLOAD_MARKER;
        out[1..].copy_from_slice(payload);
        Ok(end)
    }

    /// Writes the payload marker and reserves `len` bytes after it, returned
    /// for the caller to fill (e.g. encrypt in place); also returns the total
    /// length. `len` must be non-zero.
    pub fn reserve_payload(self, len: usize) -> Result<(&'a mut [u8], usize), Error> {
        if len == 0 {
            return Err(Error::EmptyPayload);
        }
        let end = self.pos + 1 + len;
        let out = self
            .buf
            .get_mut(self.pos..end)
            .ok_or(Error::BufferTooSmall)?;
        out[0] = PAYLOAD_MARKER;
        Ok((&mut out[1..], end))
    }

    /// Ends without a payload; returns the total length.
    pub fn finish(self) -> usize {
        self.pos
    }

    /// Bytes written so far (from the buffer's start).
    pub fn position(&self) -> usize {
        self.pos
    }
}

/// Longest option value the delta/length encoding can express.
const MAX_OPTION_LEN: usize = 65535 + 269;

/// An option delta or length split into its nibble and extended bytes
/// (RFC 7252 §3.1). Written byte by byte: the extended part is 0–2 bytes,
/// and a `copy_from_slice` of such a variable length became a `memcpy` call
/// on the hot path.
#[derive(Clone, Copy)]
struct Ext {
    nibble: u8,
    /// The extended value, big-endian in the low `len()` bytes.
    ext: u16,
}

impl Ext {
    /// `v` must be at most `MAX_OPTION_LEN`.
    fn new(v: u32) -> Self {
        match v {
            0..=12 => Ext {
                nibble: v as u8,
                ext: 0,
            },
            13..=268 => Ext {
                nibble: 13,
                ext: (v - 13) as u16,
            },
            _ => Ext {
                nibble: 14,
                ext: (v - 269) as u16,
            },
        }
    }

    /// Number of extended bytes.
    fn len(self) -> usize {
        match self.nibble {
            13 => 1,
            14 => 2,
            _ => 0,
        }
    }

    /// Writes the extended bytes at the start of `out` (which the caller
    /// sized with [`Ext::len`]); returns the rest.
    fn write(self, out: &mut [u8]) -> &mut [u8] {
        let [hi, lo] = self.ext.to_be_bytes();
        match (self.nibble, out) {
            (13, [b, rest @ ..]) => {
                *b = lo;
                rest
            }
            (14, [b0, b1, rest @ ..]) => {
                *b0 = hi;
                *b1 = lo;
                rest
            }
            (_, out) => out,
        }
    }
}

/// Emits a whole CoAP message: header and token first, then options in
/// ascending order, then the payload.
#[derive(Debug)]
pub struct MessageWriter<'a> {
    options: OptionWriter<'a>,
}

impl<'a> MessageWriter<'a> {
    /// Writes the header and token.
    pub fn new(
        buf: &'a mut [u8],
        ty: MessageType,
        code: Code,
        message_id: u16,
        token: &[u8],
    ) -> Result<Self, Error> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(Error::TokenTooLong);
        }
        let end = HEADER_LEN + token.len();
        let out = buf.get_mut(..end).ok_or(Error::BufferTooSmall)?;
        out[0] = 0x40 | (ty.bits() << 4) | token.len() as u8;
        out[1] = code.0;
        out[2..4].copy_from_slice(&message_id.to_be_bytes());
        out[4..].copy_from_slice(token);
        Ok(MessageWriter {
            options: OptionWriter::new(buf, end)?,
        })
    }

    /// Appends an option; numbers must not decrease.
    pub fn option(&mut self, number: OptionNumber, value: &[u8]) -> Result<(), Error> {
        self.options.option(number, value)
    }

    /// Appends an integer option.
    pub fn option_uint(&mut self, number: OptionNumber, value: u32) -> Result<(), Error> {
        self.options.option_uint(number, value)
    }

    /// Writes the payload (if non-empty) and returns the message length.
    pub fn payload(self, payload: &[u8]) -> Result<usize, Error> {
        self.options.payload(payload)
    }

    /// See [`OptionWriter::reserve_payload`].
    pub fn reserve_payload(self, len: usize) -> Result<(&'a mut [u8], usize), Error> {
        self.options.reserve_payload(len)
    }

    /// Ends the message without payload and returns its length.
    pub fn finish(self) -> usize {
        self.options.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::Packet;

    #[test]
    fn emit_then_parse() {
        let mut buf = [0u8; 64];
        let mut w = MessageWriter::new(
            &mut buf,
            MessageType::NonConfirmable,
            Code::POST,
            0x1234,
            &[1, 2],
        )
        .unwrap();
        w.option(OptionNumber::OSCORE, &[0x09, 0x00]).unwrap();
        w.option(OptionNumber::URI_PATH, b"BinarySwitchResURI")
            .unwrap();
        w.option_uint(OptionNumber::CONTENT_FORMAT, 10000).unwrap();
        w.option_uint(OptionNumber::NO_RESPONSE, 26).unwrap();
        w.option_uint(OptionNumber::OCF_CONTENT_FORMAT_VERSION, 2048)
            .unwrap();
        let n = w.payload(&[0xa1, 0x65]).unwrap();
        let p = Packet::new_checked(&buf[..n]).unwrap();
        let nums: [u16; 5] = {
            let mut it = p.options().iter().map(|o| o.number.0);
            core::array::from_fn(|_| it.next().unwrap())
        };
        assert_eq!(nums, [9, 11, 12, 258, 2053]);
        assert_eq!(
            p.options().get_uint(OptionNumber::NO_RESPONSE),
            Some(Ok(26))
        );
        assert_eq!(p.payload(), &[0xa1, 0x65]);
        assert_eq!(p.token(), &[1, 2]);
    }

    #[test]
    fn refuses_misuse() {
        let mut buf = [0u8; 8];
        assert_eq!(
            MessageWriter::new(&mut buf, MessageType::Confirmable, Code::GET, 0, &[0; 9])
                .unwrap_err(),
            Error::TokenTooLong
        );
        let mut w =
            MessageWriter::new(&mut buf, MessageType::Confirmable, Code::GET, 0, &[]).unwrap();
        w.option(OptionNumber::URI_PATH, b"a").unwrap();
        assert_eq!(
            w.option(OptionNumber::URI_HOST, b"a").unwrap_err(),
            Error::OptionOutOfOrder
        );
        assert_eq!(
            w.option(OptionNumber::URI_PATH, b"abc").unwrap_err(),
            Error::BufferTooSmall
        );
    }

    #[test]
    fn extended_delta_and_length_edges() {
        // Each side of the 13 and 269 boundaries, for deltas and lengths.
        let big = [7u8; 300];
        let mut buf = [0u8; 2048];
        let mut w = OptionWriter::new(&mut buf, 0).unwrap();
        let mut n = 0u16;
        for v in [0usize, 12, 13, 268, 269, 270] {
            n += v as u16;
            w.option(OptionNumber(n), &big[..v]).unwrap();
        }
        let end = w.finish();
        let (opts, payload) = crate::Options::parse(&buf[..end]).unwrap();
        assert!(payload.is_empty());
        let mut n = 0u16;
        let mut it = opts.iter();
        for v in [0usize, 12, 13, 268, 269, 270] {
            n += v as u16;
            let o = it.next().unwrap();
            assert_eq!((o.number.0, o.value.len()), (n, v));
        }
        assert!(it.next().is_none());
        let mut w = OptionWriter::new(&mut buf, 0).unwrap();
        assert_eq!(
            w.option(OptionNumber(65535), &[]).map(|_| w.position()),
            Ok(3)
        );
    }

    #[test]
    fn long_option_values() {
        let mut buf = [0u8; 1024];
        let big = [7u8; 500];
        let mut w =
            MessageWriter::new(&mut buf, MessageType::Confirmable, Code::GET, 0, &[]).unwrap();
        w.option(OptionNumber::URI_PATH, &big[..20]).unwrap();
        w.option(OptionNumber::PROXY_URI, &big).unwrap();
        let n = w.finish();
        let p = Packet::new_checked(&buf[..n]).unwrap();
        assert_eq!(
            p.options()
                .get(OptionNumber::PROXY_URI)
                .unwrap()
                .value
                .len(),
            500
        );
        assert_eq!(
            p.options().get(OptionNumber::URI_PATH).unwrap().value.len(),
            20
        );
    }
}

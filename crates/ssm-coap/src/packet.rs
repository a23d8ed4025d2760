//! The message view (RFC 7252 §3).
use crate::code::{Code, MessageType};
use crate::error::Error;
use crate::option::Options;
use core::fmt;

/// Length of the fixed header.
pub const HEADER_LEN: usize = 4;
/// Longest token (RFC 7252 §3: lengths 9–15 are reserved).
pub const MAX_TOKEN_LEN: usize = 8;
/// The byte that separates options from the payload.
pub const PAYLOAD_MARKER: u8 = 0xff;

/// A zero-copy view of a CoAP message.
///
/// Built only through [`Packet::new_checked`], which validates the whole
/// message; accessors never panic.
#[derive(Clone, Copy)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
    /// End of the option sequence (start of the payload marker, or the end).
    options_end: usize,
    /// Start of the payload (== len when there is none).
    payload_start: usize,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Validates `buffer` as a complete CoAP message.
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let b = buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::TruncatedHeader);
        }
        let version = b[0] >> 6;
        if version != 1 {
            return Err(Error::BadVersion(version));
        }
        let tkl = b[0] & 0x0f;
        if tkl as usize > MAX_TOKEN_LEN {
            return Err(Error::BadTokenLength(tkl));
        }
        let opts_start = HEADER_LEN + tkl as usize;
        if b.len() < opts_start {
            return Err(Error::TruncatedToken);
        }
        if b[1] == 0 && b.len() != HEADER_LEN {
            // RFC 7252 §4.1: an Empty message has nothing after the header.
            return Err(Error::NonEmptyEmptyMessage);
        }
        let (options, payload) = Options::parse(&b[opts_start..])?;
        let options_end = opts_start + options.as_bytes().len();
        let payload_start = b.len() - payload.len();
        Ok(Packet {
            buffer,
            options_end,
            payload_start,
        })
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The whole message.
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// The message type.
    pub fn msg_type(&self) -> MessageType {
        MessageType::from_bits(self.as_bytes()[0] >> 4)
    }

    /// The code.
    pub fn code(&self) -> Code {
        Code(self.as_bytes()[1])
    }

    /// The Message ID.
    pub fn message_id(&self) -> u16 {
        let b = self.as_bytes();
        u16::from_be_bytes([b[2], b[3]])
    }

    /// The token (0–8 bytes).
    pub fn token(&self) -> &[u8] {
        let tkl = (self.as_bytes()[0] & 0x0f) as usize;
        &self.as_bytes()[HEADER_LEN..HEADER_LEN + tkl]
    }

    /// The options, in order.
    pub fn options(&self) -> Options<'_> {
        // Validated once in new_checked: validating again on every call cost
        // more than the iteration itself on the OSCORE hot path.
        self.as_bytes()
            .get(self.options_offset()..self.options_end)
            .map_or(Options::empty(), Options::new_validated)
    }

    /// The payload (empty if there is none).
    pub fn payload(&self) -> &[u8] {
        &self.as_bytes()[self.payload_start..]
    }

    /// Offset of the payload in the buffer (== length when there is none).
    pub fn payload_offset(&self) -> usize {
        self.payload_start
    }

    /// Offset of the first option.
    pub fn options_offset(&self) -> usize {
        HEADER_LEN + self.token().len()
    }
}

impl<T: AsRef<[u8]>> fmt::Debug for Packet<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Packet")
            .field("type", &self.msg_type())
            .field("code", &self.code())
            .field("mid", &self.message_id())
            .field("token", &Hex(self.token()))
            .field("options", &self.options())
            .field("payload_len", &self.payload().len())
            .finish()
    }
}

struct Hex<'a>(&'a [u8]);
impl fmt::Debug for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{:02x}", b)?;
        }
        Ok(())
    }
}

/// A token held by value (0–8 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Token {
    len: u8,
    bytes: [u8; MAX_TOKEN_LEN],
}

impl Token {
    /// A token from up to 8 bytes.
    pub fn new(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() > MAX_TOKEN_LEN {
            return Err(Error::TokenTooLong);
        }
        let mut t = Token {
            len: bytes.len() as u8,
            bytes: [0; MAX_TOKEN_LEN],
        };
        t.bytes[..bytes.len()].copy_from_slice(bytes);
        Ok(t)
    }

    /// The token bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token(")?;
        Hex(self.as_bytes()).fmt(f)?;
        write!(f, ")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::option::OptionNumber;

    // RFC 8613 C.4 unprotected request: GET coap://server/tv1.
    const C4: [u8; 22] = [
        0x44, 0x01, 0x5d, 0x1f, 0x00, 0x00, 0x39, 0x74, 0x39, 0x6c, 0x6f, 0x63, 0x61, 0x6c, 0x68,
        0x6f, 0x73, 0x74, 0x83, 0x74, 0x76, 0x31,
    ];

    #[test]
    fn parse_rfc8613_c4() {
        let p = Packet::new_checked(&C4[..]).unwrap();
        assert_eq!(p.msg_type(), MessageType::Confirmable);
        assert_eq!(p.code(), Code::GET);
        assert_eq!(p.message_id(), 0x5d1f);
        assert_eq!(p.token(), &[0x00, 0x00, 0x39, 0x74]);
        let opts: [_; 2] = {
            let mut it = p.options().iter();
            [it.next().unwrap(), it.next().unwrap()]
        };
        assert_eq!(opts[0].number, OptionNumber::URI_HOST);
        assert_eq!(opts[0].value, b"localhost");
        assert_eq!(opts[1].number, OptionNumber::URI_PATH);
        assert_eq!(opts[1].value, b"tv1");
        assert!(p.payload().is_empty());
    }

    #[test]
    fn malformed_headers() {
        assert_eq!(
            Packet::new_checked(&[0x40, 0x01, 0x00][..]).unwrap_err(),
            Error::TruncatedHeader
        );
        assert_eq!(
            Packet::new_checked(&[0x80, 0x01, 0, 0][..]).unwrap_err(),
            Error::BadVersion(2)
        );
        for tkl in 9..=15u8 {
            let b = [
                0x40 | tkl,
                0x01,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
            ];
            assert_eq!(
                Packet::new_checked(&b[..]).unwrap_err(),
                Error::BadTokenLength(tkl)
            );
        }
        assert_eq!(
            Packet::new_checked(&[0x42, 0x01, 0, 0, 1][..]).unwrap_err(),
            Error::TruncatedToken
        );
        assert_eq!(
            Packet::new_checked(&[0x40, 0x01, 0, 0, 0xff][..]).unwrap_err(),
            Error::EmptyPayload
        );
        assert_eq!(
            Packet::new_checked(&[0x40, 0x00, 0, 0, 0xff, 1][..]).unwrap_err(),
            Error::NonEmptyEmptyMessage
        );
        assert_eq!(
            Packet::new_checked(&[0x40, 0x01, 0, 0, 0xb5, b'a'][..]).unwrap_err(),
            Error::TruncatedOption
        );
        assert_eq!(
            Packet::new_checked(&[0x40, 0x01, 0, 0, 0xf1][..]).unwrap_err(),
            Error::ReservedDelta
        );
        assert_eq!(
            Packet::new_checked(&[0x40, 0x01, 0, 0, 0x1f][..]).unwrap_err(),
            Error::ReservedLength
        );
    }

    #[test]
    fn payload() {
        let b = [0x50, 0x02, 0x12, 0x34, 0xb1, b'x', 0xff, 1, 2, 3];
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.msg_type(), MessageType::NonConfirmable);
        assert_eq!(p.payload(), &[1, 2, 3]);
        assert_eq!(p.payload_offset(), 7);
    }
}

use core::fmt;

/// CoAP message type (RFC 7252 §3, the `T` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    /// CON: needs an acknowledgement.
    Confirmable,
    /// NON: no acknowledgement; multicast requests are always NON.
    NonConfirmable,
    /// ACK.
    Acknowledgement,
    /// RST.
    Reset,
}

impl MessageType {
    /// From the two-bit field.
    pub const fn from_bits(bits: u8) -> Self {
        match bits & 0b11 {
            0 => MessageType::Confirmable,
            1 => MessageType::NonConfirmable,
            2 => MessageType::Acknowledgement,
            _ => MessageType::Reset,
        }
    }

    /// The two-bit field.
    pub const fn bits(self) -> u8 {
        match self {
            MessageType::Confirmable => 0,
            MessageType::NonConfirmable => 1,
            MessageType::Acknowledgement => 2,
            MessageType::Reset => 3,
        }
    }
}

/// A CoAP code `c.dd` (RFC 7252 §3, §12.1).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Code(pub u8);

impl Code {
    /// 0.00, the empty message.
    pub const EMPTY: Code = Code(0x00);
    /// 0.01 GET (OCF RETRIEVE).
    pub const GET: Code = Code(0x01);
    /// 0.02 POST (OCF UPDATE).
    pub const POST: Code = Code(0x02);
    /// 0.03 PUT (OCF CREATE).
    pub const PUT: Code = Code(0x03);
    /// 0.04 DELETE.
    pub const DELETE: Code = Code(0x04);
    /// 0.05 FETCH (RFC 8132), OSCORE's outer code for Observe requests.
    pub const FETCH: Code = Code(0x05);
    /// 2.01 Created.
    pub const CREATED: Code = Code::new(2, 1);
    /// 2.02 Deleted.
    pub const DELETED: Code = Code::new(2, 2);
    /// 2.03 Valid.
    pub const VALID: Code = Code::new(2, 3);
    /// 2.04 Changed.
    pub const CHANGED: Code = Code::new(2, 4);
    /// 2.05 Content.
    pub const CONTENT: Code = Code::new(2, 5);
    /// 4.00 Bad Request.
    pub const BAD_REQUEST: Code = Code::new(4, 0);
    /// 4.01 Unauthorized.
    pub const UNAUTHORIZED: Code = Code::new(4, 1);
    /// 4.02 Bad Option.
    pub const BAD_OPTION: Code = Code::new(4, 2);
    /// 4.03 Forbidden.
    pub const FORBIDDEN: Code = Code::new(4, 3);
    /// 4.04 Not Found.
    pub const NOT_FOUND: Code = Code::new(4, 4);
    /// 4.05 Method Not Allowed.
    pub const METHOD_NOT_ALLOWED: Code = Code::new(4, 5);
    /// 4.06 Not Acceptable.
    pub const NOT_ACCEPTABLE: Code = Code::new(4, 6);
    /// 4.13 Request Entity Too Large.
    pub const REQUEST_ENTITY_TOO_LARGE: Code = Code::new(4, 13);
    /// 4.15 Unsupported Content-Format.
    pub const UNSUPPORTED_CONTENT_FORMAT: Code = Code::new(4, 15);
    /// 5.00 Internal Server Error.
    pub const INTERNAL_SERVER_ERROR: Code = Code::new(5, 0);
    /// 5.03 Service Unavailable.
    pub const SERVICE_UNAVAILABLE: Code = Code::new(5, 3);

    /// Builds `class.detail`.
    pub const fn new(class: u8, detail: u8) -> Self {
        Code(((class & 0x7) << 5) | (detail & 0x1f))
    }
    /// The class (0 request, 2 success, 4 client error, 5 server error).
    pub const fn class(self) -> u8 {
        self.0 >> 5
    }
    /// The detail.
    pub const fn detail(self) -> u8 {
        self.0 & 0x1f
    }
    /// 0.01..=0.31.
    pub const fn is_request(self) -> bool {
        self.class() == 0 && self.0 != 0
    }
    /// 2.xx..=5.xx.
    pub const fn is_response(self) -> bool {
        matches!(self.class(), 2..=5)
    }
    /// 0.00.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.class(), self.detail())
    }
}

impl fmt::Debug for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match *self {
            Code::EMPTY => "Empty",
            Code::GET => "GET",
            Code::POST => "POST",
            Code::PUT => "PUT",
            Code::DELETE => "DELETE",
            Code::FETCH => "FETCH",
            Code::CHANGED => "Changed",
            Code::CONTENT => "Content",
            Code::UNAUTHORIZED => "Unauthorized",
            Code::BAD_REQUEST => "BadRequest",
            _ => "",
        };
        write!(
            f,
            "Code({}{}{})",
            self,
            if name.is_empty() { "" } else { " " },
            name
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_fields() {
        assert_eq!(Code::CONTENT.0, 0x45);
        assert_eq!(Code::CHANGED.0, 0x44);
        assert_eq!(Code::UNSUPPORTED_CONTENT_FORMAT.0, 0x8f);
        assert!(Code::POST.is_request());
        assert!(!Code::EMPTY.is_request());
        assert!(Code::UNAUTHORIZED.is_response());
        extern crate alloc;
        assert_eq!(alloc::format!("{}", Code::BAD_OPTION), "4.02");
    }

    #[test]
    fn type_bits_roundtrip() {
        for b in 0..4 {
            assert_eq!(MessageType::from_bits(b).bits(), b);
        }
    }
}

use core::fmt;

/// Why a CoAP message could not be parsed or emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Fewer than 4 bytes: no complete header.
    TruncatedHeader,
    /// Version field is not 1.
    BadVersion(u8),
    /// Token length nibble 9..=15 (reserved, RFC 7252 §3).
    BadTokenLength(u8),
    /// The token runs past the end of the datagram.
    TruncatedToken,
    /// An option delta nibble of 15 that is not the payload marker (0xFF).
    ReservedDelta,
    /// An option length nibble of 15.
    ReservedLength,
    /// An extended delta/length, or the option value, runs past the end.
    TruncatedOption,
    /// The option number would exceed 65535.
    OptionNumberOverflow,
    /// A payload marker followed by no payload (RFC 7252 §3: a format error).
    EmptyPayload,
    /// An empty message (code 0.00) with a token, options or payload.
    NonEmptyEmptyMessage,
    /// The output buffer is too small.
    BufferTooSmall,
    /// Options must be emitted in ascending number order.
    OptionOutOfOrder,
    /// Token longer than 8 bytes.
    TokenTooLong,
    /// An option value longer than 65804 bytes cannot be encoded.
    OptionTooLong,
    /// An integer option value longer than 4 bytes.
    UintTooLong,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Error::TruncatedHeader => "datagram shorter than the 4-byte CoAP header",
            Error::BadVersion(_) => "CoAP version is not 1",
            Error::BadTokenLength(_) => "token length 9-15 is reserved",
            Error::TruncatedToken => "token runs past the end of the datagram",
            Error::ReservedDelta => "option delta 15 outside the payload marker",
            Error::ReservedLength => "option length 15 is reserved",
            Error::TruncatedOption => "option runs past the end of the datagram",
            Error::OptionNumberOverflow => "option number exceeds 65535",
            Error::EmptyPayload => "payload marker with an empty payload",
            Error::NonEmptyEmptyMessage => "empty message (0.00) carries data",
            Error::BufferTooSmall => "output buffer too small",
            Error::OptionOutOfOrder => "options emitted out of order",
            Error::TokenTooLong => "token longer than 8 bytes",
            Error::OptionTooLong => "option value too long to encode",
            Error::UintTooLong => "integer option value longer than 4 bytes",
        };
        f.write_str(s)
    }
}

#[cfg(feature = "alloc")]
impl core::error::Error for Error {}

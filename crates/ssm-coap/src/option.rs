//! Options: numbers (RFC 7252 §5.10, §12.2 and the later registrations), the
//! delta/length encoding (§3.1) and integer values (§3.2).
use crate::error::Error;
use crate::packet::PAYLOAD_MARKER;
use core::fmt;

/// An option number.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OptionNumber(pub u16);

impl OptionNumber {
    /// If-Match (1), RFC 7252 §5.10.8.1.
    pub const IF_MATCH: Self = Self(1);
    /// Uri-Host (3), RFC 7252 §5.10.1.
    pub const URI_HOST: Self = Self(3);
    /// ETag (4), RFC 7252 §5.10.6.
    pub const ETAG: Self = Self(4);
    /// If-None-Match (5), RFC 7252 §5.10.8.2.
    pub const IF_NONE_MATCH: Self = Self(5);
    /// Observe (6), RFC 7641.
    pub const OBSERVE: Self = Self(6);
    /// Uri-Port (7), RFC 7252 §5.10.1.
    pub const URI_PORT: Self = Self(7);
    /// Location-Path (8), RFC 7252 §5.10.7.
    pub const LOCATION_PATH: Self = Self(8);
    /// OSCORE (9), RFC 8613.
    pub const OSCORE: Self = Self(9);
    /// Uri-Path (11), RFC 7252 §5.10.1.
    pub const URI_PATH: Self = Self(11);
    /// Content-Format (12), RFC 7252 §5.10.3.
    pub const CONTENT_FORMAT: Self = Self(12);
    /// Max-Age (14), RFC 7252 §5.10.5.
    pub const MAX_AGE: Self = Self(14);
    /// Uri-Query (15), RFC 7252 §5.10.1.
    pub const URI_QUERY: Self = Self(15);
    /// Accept (17), RFC 7252 §5.10.4.
    pub const ACCEPT: Self = Self(17);
    /// Location-Query (20), RFC 7252 §5.10.7.
    pub const LOCATION_QUERY: Self = Self(20);
    /// Block2 (23), RFC 7959.
    pub const BLOCK2: Self = Self(23);
    /// Block1 (27), RFC 7959.
    pub const BLOCK1: Self = Self(27);
    /// Size2 (28), RFC 7959.
    pub const SIZE2: Self = Self(28);
    /// Proxy-Uri (35), RFC 7252 §5.10.2.
    pub const PROXY_URI: Self = Self(35);
    /// Proxy-Scheme (39), RFC 7252 §5.10.2.
    pub const PROXY_SCHEME: Self = Self(39);
    /// Size1 (60), RFC 7252 §5.10.9.
    pub const SIZE1: Self = Self(60);
    /// Echo (252), RFC 9175.
    pub const ECHO: Self = Self(252);
    /// No-Response (258), RFC 7967.
    pub const NO_RESPONSE: Self = Self(258);
    /// Request-Tag (292), RFC 9175.
    pub const REQUEST_TAG: Self = Self(292);
    /// OCF-Accept-Content-Format-Version (2049), OCF Core (DIGEST §1).
    pub const OCF_ACCEPT_CONTENT_FORMAT_VERSION: Self = Self(2049);
    /// OCF-Content-Format-Version (2053), OCF Core (DIGEST §1).
    pub const OCF_CONTENT_FORMAT_VERSION: Self = Self(2053);

    /// Critical options have an odd number (RFC 7252 §5.4.1).
    pub const fn is_critical(self) -> bool {
        self.0 & 1 == 1
    }

    /// The registered name, if known.
    pub const fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            1 => "If-Match",
            3 => "Uri-Host",
            4 => "ETag",
            5 => "If-None-Match",
            6 => "Observe",
            7 => "Uri-Port",
            8 => "Location-Path",
            9 => "OSCORE",
            11 => "Uri-Path",
            12 => "Content-Format",
            14 => "Max-Age",
            15 => "Uri-Query",
            17 => "Accept",
            20 => "Location-Query",
            23 => "Block2",
            27 => "Block1",
            28 => "Size2",
            35 => "Proxy-Uri",
            39 => "Proxy-Scheme",
            60 => "Size1",
            252 => "Echo",
            258 => "No-Response",
            292 => "Request-Tag",
            2049 => "OCF-Accept-Content-Format-Version",
            2053 => "OCF-Content-Format-Version",
            _ => return None,
        })
    }
}

impl fmt::Debug for OptionNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => write!(f, "{}({})", n, self.0),
            None => write!(f, "Option({})", self.0),
        }
    }
}

impl From<u16> for OptionNumber {
    fn from(n: u16) -> Self {
        Self(n)
    }
}

/// One option instance borrowed from a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoapOption<'a> {
    /// The option number.
    pub number: OptionNumber,
    /// The raw value.
    pub value: &'a [u8],
}

impl CoapOption<'_> {
    /// The value read as an unsigned integer (RFC 7252 §3.2).
    pub fn uint(&self) -> Result<u32, Error> {
        decode_uint(self.value)
    }
}

/// Reads one option header and value at `bytes[pos..]`.
///
/// Returns `Ok(None)` at the end of the options (end of data or payload
/// marker), otherwise the option and the position after it.
#[inline(always)]
fn read_option(bytes: &[u8], pos: usize, prev: u16) -> Result<Option<(u16, usize, usize)>, Error> {
    let Some(&first) = bytes.get(pos) else {
        return Ok(None);
    };
    if first == PAYLOAD_MARKER {
        return Ok(None);
    }
    // Fast path: delta and length both below 13 (most options).
    let (d, l) = (first >> 4, first & 0x0f);
    if d < 13 && l < 13 {
        let number = prev
            .checked_add(u16::from(d))
            .ok_or(Error::OptionNumberOverflow)?;
        let end = pos + 1 + l as usize;
        if end > bytes.len() {
            return Err(Error::TruncatedOption);
        }
        return Ok(Some((number, pos + 1, end)));
    }
    let mut p = pos + 1;
    let delta = read_ext(bytes, &mut p, first >> 4).map_err(|e| match e {
        Error::ReservedLength => Error::ReservedDelta,
        e => e,
    })?;
    let len = read_ext(bytes, &mut p, first & 0x0f)?;
    let number = u32::from(prev) + delta;
    let number = u16::try_from(number).map_err(|_| Error::OptionNumberOverflow)?;
    let end = p.checked_add(len as usize).ok_or(Error::TruncatedOption)?;
    if end > bytes.len() {
        return Err(Error::TruncatedOption);
    }
    Ok(Some((number, p, end)))
}

/// Decodes an extended delta or length (nibble 13 → +1 byte, 14 → +2 bytes).
#[inline(always)]
fn read_ext(bytes: &[u8], p: &mut usize, nibble: u8) -> Result<u32, Error> {
    match nibble {
        0..=12 => Ok(u32::from(nibble)),
        13 => {
            let b = *bytes.get(*p).ok_or(Error::TruncatedOption)?;
            *p += 1;
            Ok(u32::from(b) + 13)
        }
        14 => {
            let hi = *bytes.get(*p).ok_or(Error::TruncatedOption)?;
            let lo = *bytes.get(*p + 1).ok_or(Error::TruncatedOption)?;
            *p += 2;
            Ok(u32::from(u16::from_be_bytes([hi, lo])) + 269)
        }
        _ => Err(Error::ReservedLength),
    }
}

/// A validated option sequence (the bytes between the token and the payload
/// marker). Iterating it cannot fail.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Options<'a> {
    bytes: &'a [u8],
}

impl<'a> Options<'a> {
    /// Validates an option sequence followed by an optional payload (marker
    /// plus at least one byte), as found after the token of a message or at
    /// the start of an OSCORE plaintext after its code byte.
    ///
    /// Returns the options and the payload (empty if there is none).
    pub fn parse(bytes: &'a [u8]) -> Result<(Options<'a>, &'a [u8]), Error> {
        let mut pos = 0;
        let mut prev = 0u16;
        while let Some((number, _start, end)) = read_option(bytes, pos, prev)? {
            prev = number;
            pos = end;
        }
        let options = Options {
            bytes: &bytes[..pos],
        };
        if pos == bytes.len() {
            return Ok((options, &[]));
        }
        // read_option stopped at a payload marker.
        let payload = &bytes[pos + 1..];
        if payload.is_empty() {
            return Err(Error::EmptyPayload);
        }
        Ok((options, payload))
    }

    /// Wraps an option sequence that was already validated by
    /// [`Options::parse`] (e.g. a region of a checked [`crate::Packet`]), to
    /// avoid validating it twice. Memory-safe for any input: on invalid bytes
    /// iteration merely stops early.
    pub const fn new_validated(bytes: &'a [u8]) -> Self {
        Options { bytes }
    }

    /// The empty option sequence.
    pub const fn empty() -> Self {
        Options { bytes: &[] }
    }

    /// The encoded bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Iterates the options in order.
    pub fn iter(&self) -> OptionIter<'a> {
        OptionIter {
            bytes: self.bytes,
            pos: 0,
            prev: 0,
        }
    }

    /// The first instance of `number`.
    pub fn get(&self, number: OptionNumber) -> Option<CoapOption<'a>> {
        self.iter()
            .take_while(|o| o.number <= number)
            .find(|o| o.number == number)
    }

    /// Every instance of `number`, in order.
    pub fn get_all(&self, number: OptionNumber) -> impl Iterator<Item = CoapOption<'a>> {
        self.iter()
            .skip_while(move |o| o.number < number)
            .take_while(move |o| o.number == number)
    }

    /// The first instance of `number` decoded as an integer.
    pub fn get_uint(&self, number: OptionNumber) -> Option<Result<u32, Error>> {
        self.get(number).map(|o| o.uint())
    }

    /// True if there are no options.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

impl fmt::Debug for Options<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<'a> IntoIterator for Options<'a> {
    type Item = CoapOption<'a>;
    type IntoIter = OptionIter<'a>;
    fn into_iter(self) -> OptionIter<'a> {
        self.iter()
    }
}

/// Iterator over a validated option sequence, in wire order.
#[derive(Clone, Debug)]
pub struct OptionIter<'a> {
    bytes: &'a [u8],
    pos: usize,
    prev: u16,
}

impl<'a> Iterator for OptionIter<'a> {
    type Item = CoapOption<'a>;

    fn next(&mut self) -> Option<CoapOption<'a>> {
        // The sequence was validated by `Options::parse`; an error here cannot
        // happen, and is treated as the end rather than a panic.
        let (number, start, end) = read_option(self.bytes, self.pos, self.prev).ok()??;
        self.prev = number;
        self.pos = end;
        Some(CoapOption {
            number: OptionNumber(number),
            value: &self.bytes[start..end],
        })
    }
}

/// Stack buffer for an encoded integer option value.
#[derive(Clone, Copy)]
pub struct UintBuf {
    bytes: [u8; 4],
    len: u8,
}

impl UintBuf {
    /// The minimal big-endian encoding.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[4 - self.len as usize..]
    }
}

impl AsRef<[u8]> for UintBuf {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

/// Encodes an integer option value in the fewest bytes (0 → empty).
pub fn encode_uint(value: u32) -> UintBuf {
    let bytes = value.to_be_bytes();
    let len = 4 - (value.leading_zeros() / 8) as u8;
    UintBuf { bytes, len }
}

/// Decodes an integer option value (leading zeros are tolerated).
pub fn decode_uint(value: &[u8]) -> Result<u32, Error> {
    if value.len() > 4 {
        return Err(Error::UintTooLong);
    }
    Ok(value.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uint_roundtrip() {
        for v in [0u32, 1, 255, 256, 2048, 10000, 65535, 65536, u32::MAX] {
            let e = encode_uint(v);
            assert_eq!(decode_uint(e.as_bytes()).unwrap(), v);
        }
        assert!(encode_uint(0).as_bytes().is_empty());
        assert_eq!(encode_uint(10000).as_bytes(), &[0x27, 0x10]);
        assert_eq!(decode_uint(&[0, 0, 1]).unwrap(), 1);
        assert_eq!(decode_uint(&[1, 2, 3, 4, 5]), Err(Error::UintTooLong));
    }

    #[test]
    fn extended_deltas() {
        // 2053 after 11: delta 2042 → nibble 14, ext 2042-269 = 1773.
        let bytes = [0xb1, b'a', 0xe1, 0x06, 0xed, 0x08];
        let (opts, payload) = Options::parse(&bytes).unwrap();
        assert!(payload.is_empty());
        let v: alloc::vec::Vec<_> = opts.iter().map(|o| o.number.0).collect();
        assert_eq!(v, [11, 2053]);
        assert_eq!(opts.get(OptionNumber(2053)).unwrap().value, &[0x08]);
        assert!(opts.get(OptionNumber(12)).is_none());
    }

    #[test]
    fn malformed_options() {
        assert_eq!(Options::parse(&[0xf0]).unwrap_err(), Error::ReservedDelta);
        assert_eq!(Options::parse(&[0x0f]).unwrap_err(), Error::ReservedLength);
        assert_eq!(Options::parse(&[0xd0]).unwrap_err(), Error::TruncatedOption);
        assert_eq!(
            Options::parse(&[0xe0, 0x01]).unwrap_err(),
            Error::TruncatedOption
        );
        assert_eq!(
            Options::parse(&[0x03, 1, 2]).unwrap_err(),
            Error::TruncatedOption
        );
        assert_eq!(Options::parse(&[0xff]).unwrap_err(), Error::EmptyPayload);
        // 65535 + 13 overflows u16.
        assert_eq!(
            Options::parse(&[0xe0, 0xfe, 0xf2, 0xd0, 0x00]).unwrap_err(),
            Error::OptionNumberOverflow
        );
    }

    extern crate alloc;
}

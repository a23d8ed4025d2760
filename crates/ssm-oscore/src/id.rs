//! Sender/Recipient IDs, ID Context and Partial IV (RFC 8613 §3.1, §5, §6.1).
use crate::error::Error;
use core::fmt;

/// Longest Sender/Recipient ID with a 13-byte nonce (nonce length − 6).
pub const MAX_ID_LEN: usize = 7;
/// Longest ID Context this implementation keeps (RFC 8613 allows any length;
/// OCF sets none, aiocoap's Appendix B.2 uses 8 bytes).
pub const MAX_ID_CONTEXT_LEN: usize = 32;
/// Longest Partial IV (5 bytes: sequence numbers below 2^40).
pub const MAX_PARTIAL_IV_LEN: usize = 5;

macro_rules! small_bytes {
    ($(#[$m:meta])* $name:ident, $cap:expr, $err:expr) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
        pub struct $name {
            len: u8,
            bytes: [u8; $cap],
        }

        impl $name {
            /// From raw bytes; fails if too long.
            pub fn new(bytes: &[u8]) -> Result<Self, Error> {
                if bytes.len() > $cap {
                    return Err($err);
                }
                let mut v = Self { len: bytes.len() as u8, bytes: [0; $cap] };
                v.bytes[..bytes.len()].copy_from_slice(bytes);
                Ok(v)
            }

            /// The bytes.
            pub fn as_bytes(&self) -> &[u8] {
                &self.bytes[..self.len as usize]
            }

            /// Length in bytes.
            pub fn len(&self) -> usize {
                self.len as usize
            }

            /// True for the zero-length value (a valid ID).
            pub fn is_empty(&self) -> bool {
                self.len == 0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "("))?;
                for b in self.as_bytes() {
                    write!(f, "{:02x}", b)?;
                }
                write!(f, ")")
            }
        }

        impl TryFrom<&[u8]> for $name {
            type Error = Error;
            fn try_from(b: &[u8]) -> Result<Self, Error> {
                Self::new(b)
            }
        }
    };
}

small_bytes!(
    /// A Sender ID, Recipient ID or `kid`: 0–7 bytes. The empty ID is
    /// distinct from the one-byte ID `00`.
    Id,
    MAX_ID_LEN,
    Error::IdTooLong
);

small_bytes!(
    /// An ID Context / `kid context`.
    IdContext,
    MAX_ID_CONTEXT_LEN,
    Error::IdContextTooLong
);

impl Id {
    /// The bytes zero-padded to 7, for fixed-size copies (variable-length
    /// ones became `memcpy` calls on the per-message path).
    pub(crate) fn padded(&self) -> &[u8; MAX_ID_LEN] {
        &self.bytes
    }

    /// The ID as a big-endian number (right-aligned, the way the nonce
    /// left-pads it).
    pub(crate) fn to_u64(self) -> u64 {
        let b = self.bytes;
        u64::from_be_bytes([0, b[0], b[1], b[2], b[3], b[4], b[5], b[6]]) >> (8 * (7 - self.len))
    }
}

/// A Partial IV: a sequence number in network byte order with leading zero
/// bytes removed; 0 is the single byte `00` (RFC 8613 §6.1).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PartialIv {
    len: u8,
    bytes: [u8; MAX_PARTIAL_IV_LEN],
}

impl PartialIv {
    /// Encodes a sequence number (must be below 2^40).
    pub fn from_u64(n: u64) -> Result<Self, Error> {
        if n >= 1 << 40 {
            return Err(Error::SequenceNumberExhausted);
        }
        let len = (8 - (n.leading_zeros() / 8) as usize).max(1);
        // Shift the `len` significant bytes to the top of the low 5 bytes:
        // stored left-aligned for as_bytes.
        let be = (n << (8 * (MAX_PARTIAL_IV_LEN - len))).to_be_bytes();
        let mut bytes = [0u8; MAX_PARTIAL_IV_LEN];
        bytes.copy_from_slice(&be[8 - MAX_PARTIAL_IV_LEN..]);
        Ok(PartialIv {
            len: len as u8,
            bytes,
        })
    }

    /// Takes received bytes (1–5). Leading zeros are kept as received: the
    /// nonce and AAD use the bytes, replay protection uses the value.
    pub fn from_bytes(b: &[u8]) -> Result<Self, Error> {
        if b.is_empty() || b.len() > MAX_PARTIAL_IV_LEN {
            return Err(Error::BadOscoreOption);
        }
        let mut bytes = [0u8; MAX_PARTIAL_IV_LEN];
        bytes[..b.len()].copy_from_slice(b);
        Ok(PartialIv {
            len: b.len() as u8,
            bytes,
        })
    }

    /// The bytes as sent.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    /// The bytes zero-padded to 5, for fixed-size copies.
    pub(crate) fn padded(&self) -> &[u8; MAX_PARTIAL_IV_LEN] {
        &self.bytes
    }

    /// The length in bytes (1–5).
    pub(crate) fn len(&self) -> usize {
        self.len as usize
    }

    /// The sequence number.
    pub fn value(&self) -> u64 {
        // The padding is zero: read all 5 bytes and drop it, without a loop.
        let [b0, b1, b2, b3, b4] = self.bytes;
        u64::from_be_bytes([0, 0, 0, b0, b1, b2, b3, b4]) >> (8 * (MAX_PARTIAL_IV_LEN - self.len()))
    }
}

impl fmt::Debug for PartialIv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PartialIv({})", self.value())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn piv_encoding() {
        assert_eq!(PartialIv::from_u64(0).unwrap().as_bytes(), &[0]);
        assert_eq!(PartialIv::from_u64(20).unwrap().as_bytes(), &[0x14]);
        assert_eq!(PartialIv::from_u64(160).unwrap().as_bytes(), &[0xa0]);
        assert_eq!(PartialIv::from_u64(256).unwrap().as_bytes(), &[1, 0]);
        assert_eq!(
            PartialIv::from_u64((1 << 40) - 1).unwrap().as_bytes(),
            &[0xff; 5]
        );
        assert_eq!(
            PartialIv::from_u64(1 << 40),
            Err(Error::SequenceNumberExhausted)
        );
        assert_eq!(PartialIv::from_bytes(&[0, 5]).unwrap().value(), 5);
        assert!(PartialIv::from_bytes(&[]).is_err());
        assert!(PartialIv::from_bytes(&[1; 6]).is_err());
    }

    #[test]
    fn ids() {
        assert!(Id::new(&[0; 7]).is_ok());
        assert_eq!(Id::new(&[0; 8]), Err(Error::IdTooLong));
        assert_ne!(Id::new(&[]).unwrap(), Id::new(&[0]).unwrap());
    }
}

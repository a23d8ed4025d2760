//! The OSCORE option value (RFC 8613 §6.1).
//!
//! ```text
//!  0 1 2 3 4 5 6 7 <------------- n bytes -------------->
//! |0 0 0|h|k|  n  |       Partial IV (if any) ...
//!  <- 1 byte -> <----- s bytes ------>
//! | s (if any)  | kid context (if any) | kid (if any) ... |
//! ```
use crate::error::Error;
use crate::id::{Id, IdContext, PartialIv};

const FLAG_K: u8 = 0x08;
const FLAG_H: u8 = 0x10;
const RESERVED: u8 = 0xe0;

/// A decoded OSCORE option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OscoreOption {
    /// Partial IV, if present (requests always; responses optionally).
    pub partial_iv: Option<PartialIv>,
    /// kid context, if present.
    pub kid_context: Option<IdContext>,
    /// kid, if present (requests always).
    pub kid: Option<Id>,
}

impl OscoreOption {
    /// Decodes an option value. A `kid` longer than 7 bytes cannot name any
    /// context of ours and is reported as [`Error::UnknownKid`].
    pub fn parse(v: &[u8]) -> Result<Self, Error> {
        let Some((&flags, rest)) = v.split_first() else {
            return Ok(OscoreOption::default());
        };
        if flags & RESERVED != 0 {
            return Err(Error::BadOscoreOption);
        }
        if flags == 0 {
            // §6.1: all-zero flags are sent as an empty option.
            return Err(Error::BadOscoreOption);
        }
        let n = (flags & 0x07) as usize;
        if n > 5 {
            return Err(Error::BadOscoreOption);
        }
        let (piv, mut rest) = rest.split_at_checked(n).ok_or(Error::BadOscoreOption)?;
        let partial_iv = if n > 0 {
            Some(PartialIv::from_bytes(piv)?)
        } else {
            None
        };
        let kid_context = if flags & FLAG_H != 0 {
            let (&s, r) = rest.split_first().ok_or(Error::BadOscoreOption)?;
            let (ctx, r) = r
                .split_at_checked(s as usize)
                .ok_or(Error::BadOscoreOption)?;
            rest = r;
            Some(IdContext::new(ctx).map_err(|_| Error::UnknownKid)?)
        } else {
            None
        };
        let kid = if flags & FLAG_K != 0 {
            Some(Id::new(rest).map_err(|_| Error::UnknownKid)?)
        } else if !rest.is_empty() {
            return Err(Error::BadOscoreOption);
        } else {
            None
        };
        Ok(OscoreOption {
            partial_iv,
            kid_context,
            kid,
        })
    }

    /// Encodes into `out`; returns the length (0 for the empty option).
    pub fn emit(&self, out: &mut [u8]) -> Result<usize, Error> {
        let piv = self
            .partial_iv
            .as_ref()
            .map(|p| p.as_bytes())
            .unwrap_or(&[]);
        let mut flags = piv.len() as u8;
        if self.kid.is_some() {
            flags |= FLAG_K;
        }
        if self.kid_context.is_some() {
            flags |= FLAG_H;
        }
        if flags == 0 {
            return Ok(0);
        }
        let len = self.encoded_len();
        let out = out.get_mut(..len).ok_or(Error::BufferTooSmall)?;
        out[0] = flags;
        let mut p = 1;
        out[p..p + piv.len()].copy_from_slice(piv);
        p += piv.len();
        if let Some(ctx) = &self.kid_context {
            out[p] = ctx.len() as u8;
            out[p + 1..p + 1 + ctx.len()].copy_from_slice(ctx.as_bytes());
            p += 1 + ctx.len();
        }
        if let Some(kid) = &self.kid {
            out[p..p + kid.len()].copy_from_slice(kid.as_bytes());
        }
        Ok(len)
    }

    /// The encoded length.
    pub fn encoded_len(&self) -> usize {
        let piv = self.partial_iv.map(|p| p.as_bytes().len()).unwrap_or(0);
        let ctx = self.kid_context.map(|c| 1 + c.len()).unwrap_or(0);
        let kid = self.kid.map(|k| k.len()).unwrap_or(0);
        if piv == 0 && self.kid.is_none() && self.kid_context.is_none() {
            0
        } else {
            1 + piv + ctx + kid
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn examples() {
        // RFC 8613 C.4: 09 14 (PIV 20, kid empty).
        let o = OscoreOption::parse(&[0x09, 0x14]).unwrap();
        assert_eq!(o.partial_iv.unwrap().value(), 20);
        assert_eq!(o.kid.unwrap().as_bytes(), &[] as &[u8]);
        // C.6: 19 14 08 37cbf3210017a2d3 (kid context, kid empty).
        let v = [
            0x19, 0x14, 0x08, 0x37, 0xcb, 0xf3, 0x21, 0x00, 0x17, 0xa2, 0xd3,
        ];
        let o = OscoreOption::parse(&v).unwrap();
        assert_eq!(o.kid_context.unwrap().len(), 8);
        let mut buf = [0u8; 16];
        let n = o.emit(&mut buf).unwrap();
        assert_eq!(&buf[..n], &v);
        // Empty option.
        assert_eq!(OscoreOption::parse(&[]).unwrap(), OscoreOption::default());
        assert_eq!(OscoreOption::default().emit(&mut buf).unwrap(), 0);
    }

    #[test]
    fn malformed() {
        for bad in [
            &[0x00][..],
            &[0x20],
            &[0x40],
            &[0x80],
            &[0x06, 1, 2, 3, 4, 5, 6],
            &[0x07, 0, 0, 0, 0, 0, 0, 0],
            &[0x02, 1],
            &[0x10],
            &[0x10, 3, 1],
            &[0x01, 5, 1],
        ] {
            assert!(OscoreOption::parse(bad).is_err(), "{bad:x?}");
        }
        assert_eq!(
            OscoreOption::parse(&[0x08, 1, 2, 3, 4, 5, 6, 7, 8]),
            Err(Error::UnknownKid)
        );
    }
}

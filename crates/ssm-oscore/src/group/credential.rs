//! Authentication credentials (RFC 10021 §2.4) and the minimal CBOR reader
//! that takes the Ed25519 public key out of a CWT Claims Set (RFC 8392).
use super::MAX_CRED_LEN;
use crate::error::Error;

/// An authentication credential (RFC 10021 §2.4): opaque bytes, exactly as
/// the Group Manager distributes them (they enter the `external_aad` as they
/// are). For this module a CWT Claims Set whose `cnf` holds an Ed25519
/// COSE_Key.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    len: u16,
    bytes: [u8; MAX_CRED_LEN],
}

impl Credential {
    /// Copies `bytes`; fails with [`Error::BadCredential`] above
    /// [`MAX_CRED_LEN`].
    pub fn new(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() > MAX_CRED_LEN {
            return Err(Error::BadCredential);
        }
        let mut c = Credential {
            len: bytes.len() as u16,
            bytes: [0; MAX_CRED_LEN],
        };
        c.bytes[..bytes.len()].copy_from_slice(bytes);
        Ok(c)
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

impl core::fmt::Debug for Credential {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Public data; the length is enough to tell credentials apart.
        write!(f, "Credential({} bytes)", self.len)
    }
}

/// Length of the CCS [`ccs_of_ed25519`] builds.
pub const ED25519_CCS_LEN: usize = 46;

/// The CWT Claims Set (RFC 8392) of an Ed25519 public key as aiocoap builds
/// it: `{8 (cnf): {1 (COSE_Key): {1 (kty): 1 (OKP), 3 (alg): -8 (EdDSA),
/// -1 (crv): 6 (Ed25519), -2 (x): public_key}}}`, no other claim.
pub fn ccs_of_ed25519(public_key: &[u8; 32]) -> [u8; ED25519_CCS_LEN] {
    let mut c = [0u8; ED25519_CCS_LEN];
    c[..14].copy_from_slice(&[
        0xa1, 0x08, 0xa1, 0x01, 0xa4, 0x01, 0x01, 0x03, 0x27, 0x20, 0x06, 0x21, 0x58, 0x20,
    ]);
    c[14..].copy_from_slice(public_key);
    c
}

/// The public key of a CWT Claims Set (RFC 8392) `{ 8 (cnf): { 1
/// (COSE_Key): { 1 (kty): 1 (OKP), -1 (crv): 6 (Ed25519), -2 (x): bstr .size
/// 32, ? 3 (alg): -8 } } }`, other claims and key parameters skipped. Fails
/// with [`Error::BadCredential`] for anything else (RFC 10021 §2.4: kty and
/// crv identify the public key algorithm, which must be the group's
/// Signature Algorithm).
pub fn ccs_ed25519_public_key(ccs: &[u8]) -> Result<[u8; 32], Error> {
    let mut r = Cbor { b: ccs, p: 0 };
    let mut found = None;
    for _ in 0..r.map()? {
        if r.int()? == 8 {
            for _ in 0..r.map()? {
                if r.int()? == 1 {
                    found = Some(cose_key(&mut r)?);
                } else {
                    r.skip(0)?;
                }
            }
        } else {
            r.skip(0)?;
        }
    }
    if r.p != ccs.len() {
        return Err(Error::BadCredential);
    }
    found.ok_or(Error::BadCredential)
}

fn cose_key(r: &mut Cbor<'_>) -> Result<[u8; 32], Error> {
    let (mut kty, mut crv, mut x, mut alg) = (None, None, None, None);
    for _ in 0..r.map()? {
        match r.int()? {
            1 => kty = Some(r.int()?),
            3 => alg = Some(r.int()?),
            -1 => crv = Some(r.int()?),
            -2 => x = Some(r.bytes()?),
            _ => r.skip(0)?,
        }
    }
    match (kty, crv, x, alg) {
        (Some(1), Some(6), Some(x), None | Some(-8)) if x.len() == 32 => {
            let mut k = [0u8; 32];
            k.copy_from_slice(x);
            Ok(k)
        }
        _ => Err(Error::BadCredential),
    }
}

/// A minimal reader of definite-length CBOR, for credentials.
struct Cbor<'a> {
    b: &'a [u8],
    p: usize,
}

impl<'a> Cbor<'a> {
    fn head(&mut self) -> Result<(u8, u64), Error> {
        let ib = *self.b.get(self.p).ok_or(Error::BadCredential)?;
        self.p += 1;
        let (major, ai) = (ib >> 5, ib & 0x1f);
        let n = match ai {
            0..=23 => return Ok((major, ai as u64)),
            24 => 1,
            25 => 2,
            26 => 4,
            27 => 8,
            _ => return Err(Error::BadCredential), // indefinite or reserved
        };
        let bytes = self.b.get(self.p..self.p + n).ok_or(Error::BadCredential)?;
        self.p += n;
        Ok((major, bytes.iter().fold(0u64, |a, b| a << 8 | *b as u64)))
    }

    fn map(&mut self) -> Result<u64, Error> {
        match self.head()? {
            (5, n) if n <= 64 => Ok(n),
            _ => Err(Error::BadCredential),
        }
    }

    fn int(&mut self) -> Result<i64, Error> {
        match self.head()? {
            (0, n) if n <= i64::MAX as u64 => Ok(n as i64),
            (1, n) if n < i64::MAX as u64 => Ok(-1 - n as i64),
            _ => Err(Error::BadCredential),
        }
    }

    fn bytes(&mut self) -> Result<&'a [u8], Error> {
        match self.head()? {
            (2, n) => self.take(n),
            _ => Err(Error::BadCredential),
        }
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], Error> {
        let n = usize::try_from(n).map_err(|_| Error::BadCredential)?;
        let v = self
            .b
            .get(self.p..self.p.checked_add(n).ok_or(Error::BadCredential)?)
            .ok_or(Error::BadCredential)?;
        self.p += n;
        Ok(v)
    }

    /// Skips one data item (nesting bounded).
    fn skip(&mut self, depth: u8) -> Result<(), Error> {
        if depth > 8 {
            return Err(Error::BadCredential);
        }
        match self.head()? {
            (0 | 1 | 7, _) => Ok(()),
            (2 | 3, n) => self.take(n).map(|_| ()),
            (4, n) => {
                for _ in 0..n.min(256) {
                    self.skip(depth + 1)?;
                }
                if n > 256 {
                    return Err(Error::BadCredential);
                }
                Ok(())
            }
            (5, n) => {
                if n > 256 {
                    return Err(Error::BadCredential);
                }
                for _ in 0..2 * n {
                    self.skip(depth + 1)?;
                }
                Ok(())
            }
            (6, _) => self.skip(depth + 1), // tag: skip the tagged item
            _ => Err(Error::BadCredential),
        }
    }
}

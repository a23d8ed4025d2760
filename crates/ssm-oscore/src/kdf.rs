//! Key derivation, RFC 8613 §3.2.1:
//! `output = HKDF-Expand(HKDF-Extract(Master Salt, Master Secret), info, L)`
//! with `info = [ id: bstr, id_context: bstr / nil, alg_aead: int, type: tstr, L: uint ]`.
use crate::error::Error;
use crate::id::{Id, IdContext};
use crate::{ALG_AES_CCM_16_64_128, KEY_LEN, NONCE_LEN};
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

/// Longest `info` structure: array head, bstr head + 7-byte ID, bstr head +
/// 32-byte context, alg, "Key", L.
const MAX_INFO_LEN: usize = 1 + 1 + 7 + 2 + 32 + 1 + 4 + 1;

/// Encodes the `info` array. Returns the buffer and the used length.
pub fn info(
    id: &[u8],
    id_context: Option<&IdContext>,
    label: Label,
) -> ([u8; MAX_INFO_LEN], usize) {
    let mut b = [0u8; MAX_INFO_LEN];
    let mut p = 0;
    b[p] = 0x85;
    p += 1;
    p += bstr(&mut b[p..], id);
    match id_context {
        Some(c) => p += bstr(&mut b[p..], c.as_bytes()),
        None => {
            b[p] = 0xf6;
            p += 1;
        }
    }
    b[p] = ALG_AES_CCM_16_64_128;
    p += 1;
    let (text, len): (&[u8], u8) = match label {
        Label::Key => (b"Key", KEY_LEN as u8),
        Label::Iv => (b"IV", NONCE_LEN as u8),
    };
    b[p] = 0x60 | text.len() as u8;
    b[p + 1..p + 1 + text.len()].copy_from_slice(text);
    p += 1 + text.len();
    b[p] = len; // 16 and 13 are below 24: a one-byte CBOR uint
    p += 1;
    (b, p)
}

/// Writes a CBOR byte-string head and the bytes (lengths below 256).
fn bstr(out: &mut [u8], v: &[u8]) -> usize {
    if v.len() < 24 {
        out[0] = 0x40 | v.len() as u8;
        out[1..1 + v.len()].copy_from_slice(v);
        1 + v.len()
    } else {
        out[0] = 0x58;
        out[1] = v.len() as u8;
        out[2..2 + v.len()].copy_from_slice(v);
        2 + v.len()
    }
}

/// Which output: a key or the Common IV.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Label {
    /// "Key", 16 bytes.
    Key,
    /// "IV", 13 bytes.
    Iv,
}

/// The HKDF pseudo-random key for a Master Secret and optional Master Salt.
pub struct Prk(Hkdf<Sha256>);

impl Prk {
    /// HKDF-Extract. An absent salt is the empty byte string (RFC 8613
    /// §3.2.1), which HKDF treats as HashLen zero bytes.
    pub fn extract(master_secret: &[u8], master_salt: Option<&[u8]>) -> Result<Self, Error> {
        if master_secret.is_empty() {
            return Err(Error::EmptyMasterSecret);
        }
        Ok(Prk(Hkdf::<Sha256>::new(
            Some(master_salt.unwrap_or(&[])),
            master_secret,
        )))
    }

    /// A Sender or Recipient Key for `id`.
    pub fn key(&self, id: &Id, id_context: Option<&IdContext>) -> Zeroizing<[u8; KEY_LEN]> {
        let (info, n) = info(id.as_bytes(), id_context, Label::Key);
        let mut out = Zeroizing::new([0u8; KEY_LEN]);
        // 16 bytes is far below HKDF's 255 * 32 limit.
        let _ = self.0.expand(&info[..n], &mut out[..]);
        out
    }

    /// HKDF-Expand with a caller-built `info` (Group OSCORE's Signature
    /// Encryption Key, RFC 10021 §2.1.9). `out` is at most 255 × 32 bytes.
    pub(crate) fn expand(&self, info: &[u8], out: &mut [u8]) {
        let _ = self.0.expand(info, out);
    }

    /// The Common IV.
    pub fn common_iv(&self, id_context: Option<&IdContext>) -> [u8; NONCE_LEN] {
        let (info, n) = info(&[], id_context, Label::Iv);
        let mut out = [0u8; NONCE_LEN];
        let _ = self.0.expand(&info[..n], &mut out);
        out
    }
}

impl core::fmt::Debug for Prk {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Prk(<secret>)")
    }
}

//! The AEAD (AES-CCM-16-64-128), the nonce (RFC 8613 §5.2) and the AAD
//! (§5.4).
use crate::error::Error;
use crate::id::{Id, PartialIv};
use crate::{ALG_AES_CCM_16_64_128, KEY_LEN, NONCE_LEN, TAG_LEN};
use aes::Aes128;
use ccm::aead::generic_array::GenericArray;
use ccm::aead::{AeadInPlace, KeyInit};
use ccm::consts::{U13, U8};
use ccm::Ccm;

type AesCcm16_64_128 = Ccm<Aes128, U8, U13>;

/// An AES-CCM-16-64-128 instance with its AES key schedule expanded once.
/// The schedule is zeroized on drop (the `aes` crate's `zeroize` feature).
#[derive(Clone)]
pub struct Aead(AesCcm16_64_128);

impl Aead {
    /// Expands `key`.
    pub fn new(key: &[u8; KEY_LEN]) -> Self {
        Aead(AesCcm16_64_128::new(GenericArray::from_slice(key)))
    }

    /// Encrypts `buf` in place; returns the tag.
    pub fn seal(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
    ) -> Result<[u8; TAG_LEN], Error> {
        let tag = self
            .0
            .encrypt_in_place_detached(GenericArray::from_slice(nonce), aad, buf)
            .map_err(|_| Error::BufferTooSmall)?;
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(&tag);
        Ok(out)
    }

    /// Verifies `tag` and decrypts `buf` in place. On failure the content of
    /// `buf` is unspecified.
    pub fn open(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8],
    ) -> Result<(), Error> {
        if tag.len() != TAG_LEN {
            return Err(Error::DecryptionFailed);
        }
        self.0
            .decrypt_in_place_detached(
                GenericArray::from_slice(nonce),
                aad,
                buf,
                GenericArray::from_slice(tag),
            )
            .map_err(|_| Error::DecryptionFailed)
    }
}

impl core::fmt::Debug for Aead {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Aead(AES-CCM-16-64-128, <key>)")
    }
}

/// The AEAD nonce of §5.2: the ID length, the ID left-padded to 7 bytes and
/// the Partial IV left-padded to 5 bytes, XORed with the Common IV.
pub fn nonce(id_piv: &Id, piv: &PartialIv, common_iv: &[u8; NONCE_LEN]) -> [u8; NONCE_LEN] {
    let mut n = [0u8; NONCE_LEN];
    let id = id_piv.as_bytes();
    let p = piv.as_bytes();
    n[0] = id.len() as u8;
    n[8 - id.len()..8].copy_from_slice(id);
    n[NONCE_LEN - p.len()..].copy_from_slice(p);
    for (a, b) in n.iter_mut().zip(common_iv) {
        *a ^= b;
    }
    n
}

/// Longest AAD: `Enc_structure` head (10) + bstr head (1) + the
/// `aad_array` (1 + 1 + 2 + 8 + 6 + 1).
pub const MAX_AAD_LEN: usize = 32;

/// The AAD of §5.4: `["Encrypt0", h'', bstr(aad_array)]` with
/// `aad_array = [1, [alg], request_kid, request_piv, h'']` (no Class I
/// options exist).
pub fn aad(request_kid: &Id, request_piv: &PartialIv) -> ([u8; MAX_AAD_LEN], usize) {
    let mut ext = [0u8; 20];
    let kid = request_kid.as_bytes();
    let piv = request_piv.as_bytes();
    ext[0] = 0x85;
    ext[1] = 0x01;
    ext[2] = 0x81;
    ext[3] = ALG_AES_CCM_16_64_128;
    let mut p = 4;
    ext[p] = 0x40 | kid.len() as u8;
    ext[p + 1..p + 1 + kid.len()].copy_from_slice(kid);
    p += 1 + kid.len();
    ext[p] = 0x40 | piv.len() as u8;
    ext[p + 1..p + 1 + piv.len()].copy_from_slice(piv);
    p += 1 + piv.len();
    ext[p] = 0x40;
    p += 1;

    let mut out = [0u8; MAX_AAD_LEN];
    out[0] = 0x83;
    out[1] = 0x68;
    out[2..10].copy_from_slice(b"Encrypt0");
    out[10] = 0x40;
    out[11] = 0x40 | p as u8; // p ≤ 19 < 24
    out[12..12 + p].copy_from_slice(&ext[..p]);
    (out, 12 + p)
}

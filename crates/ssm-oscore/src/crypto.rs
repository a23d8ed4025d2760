//! The AEAD (AES-CCM-16-64-128), the nonce (RFC 8613 §5.2) and the AAD
//! (§5.4).
use crate::error::Error;
use crate::id::{Id, PartialIv};
use crate::{ALG_AES_CCM_16_64_128, KEY_LEN, MAX_ID_LEN, MAX_PARTIAL_IV_LEN, NONCE_LEN, TAG_LEN};
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
    nonce_with_piv(&nonce_base(id_piv, common_iv), piv)
}

/// The nonce of `id` with the Partial IV left out (all zero): a context
/// computes it once for its own ID, [`nonce_with_piv`] completes it per
/// message.
pub(crate) fn nonce_base(id: &Id, common_iv: &[u8; NONCE_LEN]) -> [u8; NONCE_LEN] {
    let mut n = *common_iv;
    // Byte 0 the length, bytes 1–7 the ID right-aligned: one 64-bit word.
    let head = (id.len() as u64) << 56 | id.to_u64();
    for (a, b) in n[..8].iter_mut().zip(head.to_be_bytes()) {
        *a ^= b;
    }
    n
}

/// Adds the Partial IV (left-padded to the last 5 bytes) to a
/// [`nonce_base`].
pub(crate) fn nonce_with_piv(base: &[u8; NONCE_LEN], piv: &PartialIv) -> [u8; NONCE_LEN] {
    let mut n = *base;
    let piv = piv.value().to_be_bytes();
    for (a, b) in n[8..].iter_mut().zip(&piv[3..]) {
        *a ^= b;
    }
    n
}

/// Room for the longest AAD (31 bytes: the `Enc_structure` head with
/// "Encrypt0" and the empty protected header (11), the bstr head (1) and the
/// `aad_array` (1 + 1 + 2 + 8 + 6 + 1)), which also fits the fixed-size
/// copies in [`aad`].
pub const MAX_AAD_LEN: usize = 32;

/// The AAD of §5.4: `["Encrypt0", h'', bstr(aad_array)]` with
/// `aad_array = [1, [alg], request_kid, request_piv, h'']` (no Class I
/// options exist).
pub fn aad(request_kid: &Id, request_piv: &PartialIv) -> ([u8; MAX_AAD_LEN], usize) {
    let (kid_len, piv_len) = (request_kid.len(), request_piv.len());
    let mut out = [0u8; MAX_AAD_LEN];
    // Array head, "Encrypt0", the empty protected header, then the bstr
    // head of aad_array (its length ≤ 19 is below 24: one byte).
    out[..11].copy_from_slice(b"\x83\x68Encrypt0\x40");
    out[11] = 0x40 | (7 + kid_len + piv_len) as u8;
    out[12..17].copy_from_slice(&[
        0x85,
        0x01,
        0x81,
        ALG_AES_CCM_16_64_128,
        0x40 | kid_len as u8,
    ]);
    // kid and Partial IV are copied zero-padded at fixed size (a variable
    // length became a `memcpy` call); the padding is overwritten by what
    // follows or lies past the end, which stays zero.
    out[17..17 + MAX_ID_LEN].copy_from_slice(request_kid.padded());
    let p = 17 + kid_len;
    out[p] = 0x40 | piv_len as u8;
    out[p + 1..p + 1 + MAX_PARTIAL_IV_LEN].copy_from_slice(request_piv.padded());
    let p = p + 1 + piv_len;
    out[p] = 0x40; // external_aad's empty Class I options
    (out, p + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// §5.2 and §5.4 written out byte by byte, for comparison.
    fn reference(
        id: &Id,
        piv: &PartialIv,
        iv: &[u8; NONCE_LEN],
    ) -> ([u8; NONCE_LEN], [u8; 31], usize) {
        let (id, p) = (id.as_bytes(), piv.as_bytes());
        let mut n = [0u8; NONCE_LEN];
        n[0] = id.len() as u8;
        n[8 - id.len()..8].copy_from_slice(id);
        n[NONCE_LEN - p.len()..].copy_from_slice(p);
        for (a, b) in n.iter_mut().zip(iv) {
            *a ^= b;
        }
        let mut a = [0u8; 31];
        let mut len = 0;
        let mut push = |b: &[u8]| {
            a[len..len + b.len()].copy_from_slice(b);
            len += b.len();
        };
        push(b"\x83\x68Encrypt0\x40");
        push(&[0x40 | (7 + id.len() + p.len()) as u8]);
        push(&[0x85, 0x01, 0x81, ALG_AES_CCM_16_64_128]);
        push(&[0x40 | id.len() as u8]);
        push(id);
        push(&[0x40 | p.len() as u8]);
        push(p);
        push(&[0x40]);
        (n, a, len)
    }

    #[test]
    fn nonce_and_aad_match_reference() {
        let iv = [0xa5u8, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0xff];
        let ids = [&[][..], &[0], &[1, 2], &[0xff; 5], &[9, 8, 7, 6, 5, 4, 3]];
        let pivs = [
            PartialIv::from_u64(0).unwrap(),
            PartialIv::from_u64(0x1234).unwrap(),
            PartialIv::from_u64((1 << 40) - 1).unwrap(),
            PartialIv::from_bytes(&[0, 0, 7]).unwrap(), // leading zeros as received
        ];
        for id in ids {
            let id = Id::new(id).unwrap();
            for piv in &pivs {
                let (n, a, len) = reference(&id, piv, &iv);
                assert_eq!(nonce(&id, piv, &iv), n);
                let (got, got_len) = aad(&id, piv);
                assert_eq!(&got[..got_len], &a[..len]);
                assert!(got[got_len..].iter().all(|b| *b == 0));
            }
        }
    }
}

//! The CBOR structures that group mode encrypts and signs: the
//! `Enc_structure` with the `aad_array` (RFC 10021 §3.4) and the
//! `Countersign_structure` (RFC 9338 §3.3, RFC 10021 §3.1).
use super::{
    GroupCommon, ALG_EDDSA, ENC_HEAD, MAX_AAD_ARRAY_LEN, MAX_GROUP_CIPHERTEXT_LEN, MAX_TBS_LEN,
};
use crate::error::Error;
use crate::id::{Id, PartialIv};
use crate::protect::RequestBinding;
use crate::ALG_AES_CCM_16_64_128;

/// Writes the `Enc_structure` `["Encrypt0", h'', external_aad]` (RFC 8613
/// §5.4 with the `aad_array` of RFC 10021 §3.4) into `buf`; returns its
/// range. The `aad_array` itself lies at its end, see [`aad_array_of`].
pub(crate) fn enc_structure(
    buf: &mut [u8; ENC_HEAD + MAX_AAD_ARRAY_LEN],
    common: &GroupCommon,
    binding: &RequestBinding,
    opt: &[u8],
    sender_cred: &[u8],
) -> Result<(usize, usize), Error> {
    let n = aad_array(
        &mut buf[ENC_HEAD..],
        common,
        &binding.kid,
        &binding.partial_iv,
        binding
            .kid_context
            .as_ref()
            .map(|c| c.as_bytes())
            .unwrap_or(&[]),
        opt,
        sender_cred,
    )?;
    let mut head = [0u8; ENC_HEAD];
    head[0] = 0x83;
    head[1] = 0x68;
    head[2..10].copy_from_slice(b"Encrypt0");
    head[10] = 0x40;
    let h = 11 + bstr_head(&mut head[11..], n);
    let start = ENC_HEAD - h;
    buf[start..ENC_HEAD].copy_from_slice(&head[..h]);
    Ok((start, ENC_HEAD + n))
}

/// The `aad_array` inside an [`enc_structure`] ending at `end`.
pub(super) fn aad_array_of(buf: &[u8], end: usize) -> &[u8] {
    &buf[ENC_HEAD..end]
}

/// The `aad_array` of RFC 10021 §3.4:
/// `[1, [alg_aead, alg_group_enc, alg_signature, alg_pairwise_key_agreement],
/// request_kid, request_piv, options (h''), request_kid_context,
/// OSCORE_option, sender_cred, gm_cred]`. Returns its length.
#[allow(clippy::too_many_arguments)]
pub fn aad_array(
    out: &mut [u8],
    common: &GroupCommon,
    request_kid: &Id,
    request_piv: &PartialIv,
    request_kid_context: &[u8],
    oscore_option: &[u8],
    sender_cred: &[u8],
) -> Result<usize, Error> {
    let mut w = Writer { out, p: 0 };
    w.raw(&[0x89, 0x01, 0x84])?;
    w.alg(common.alg_aead)?;
    w.alg(Some(ALG_AES_CCM_16_64_128 as i32))?;
    w.alg(Some(ALG_EDDSA))?;
    w.alg(common.alg_pairwise_key_agreement)?;
    w.bstr(request_kid.as_bytes())?;
    w.bstr(request_piv.as_bytes())?;
    w.bstr(&[])?; // no Class I options
    w.bstr(request_kid_context)?;
    w.bstr(oscore_option)?;
    w.bstr(sender_cred)?;
    w.bstr(common.gm_cred.as_bytes())?;
    Ok(w.p)
}

/// The `Countersign_structure` (RFC 9338 §3.3, RFC 10021 §3.1):
/// `["CounterSignature0", body_protected h'', sign_protected h'',
/// external_aad, ciphertext]`. Returns its length.
pub(super) fn countersign_structure(
    out: &mut [u8; MAX_TBS_LEN],
    aad_array: &[u8],
    ciphertext: &[u8],
) -> Result<usize, Error> {
    if ciphertext.len() > MAX_GROUP_CIPHERTEXT_LEN {
        return Err(Error::GroupMessageTooLong);
    }
    let mut w = Writer { out, p: 0 };
    w.raw(&[0x85, 0x71])?;
    w.raw(b"CounterSignature0")?;
    w.raw(&[0x40, 0x40])?;
    w.bstr(aad_array)?;
    w.bstr(ciphertext)?;
    Ok(w.p)
}

struct Writer<'a> {
    out: &'a mut [u8],
    p: usize,
}

impl Writer<'_> {
    fn raw(&mut self, b: &[u8]) -> Result<(), Error> {
        self.out
            .get_mut(self.p..self.p + b.len())
            .ok_or(Error::BufferTooSmall)?
            .copy_from_slice(b);
        self.p += b.len();
        Ok(())
    }

    fn bstr(&mut self, b: &[u8]) -> Result<(), Error> {
        let mut h = [0u8; 3];
        let n = bstr_head(&mut h, b.len());
        self.raw(&h[..n])?;
        self.raw(b)
    }

    /// A COSE algorithm as a CBOR integer, or null.
    fn alg(&mut self, a: Option<i32>) -> Result<(), Error> {
        let Some(a) = a else { return self.raw(&[0xf6]) };
        let (major, v) = if a < 0 {
            (0x20u8, (-1 - a as i64) as u64)
        } else {
            (0, a as u64)
        };
        match v {
            0..=23 => self.raw(&[major | v as u8]),
            24..=0xff => self.raw(&[major | 24, v as u8]),
            0x100..=0xffff => self.raw(&[major | 25, (v >> 8) as u8, v as u8]),
            _ => {
                let b = (v as u32).to_be_bytes();
                self.raw(&[major | 26, b[0], b[1], b[2], b[3]])
            }
        }
    }
}

/// Writes a CBOR byte-string head for `len` (< 65536); returns its length.
fn bstr_head(out: &mut [u8], len: usize) -> usize {
    if len < 24 {
        out[0] = 0x40 | len as u8;
        1
    } else if len < 256 {
        out[0] = 0x58;
        out[1] = len as u8;
        2
    } else {
        out[0] = 0x59;
        out[1] = (len >> 8) as u8;
        out[2] = len as u8;
        3
    }
}

/// Writes a short byte string (< 256 bytes) with its head.
pub(super) fn bstr(out: &mut [u8], v: &[u8]) -> usize {
    let h = bstr_head(out, v.len());
    out[h..h + v.len()].copy_from_slice(v);
    h + v.len()
}

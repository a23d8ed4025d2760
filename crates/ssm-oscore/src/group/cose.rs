//! The CBOR structures that group mode encrypts and signs: the
//! `Enc_structure` with the `aad_array` (RFC 10021 §3.4) and the
//! `Countersign_structure` (RFC 9338 §3.3, RFC 10021 §3.1); and the reading
//! of a received message that keeps its OSCORE option for them (group and
//! pairwise mode alike).
use super::{
    GroupCommon, ALG_EDDSA, ENC_HEAD, GROUP_FLAG, MAX_AAD_ARRAY_LEN, MAX_GROUP_CIPHERTEXT_LEN,
    MAX_TBS_LEN,
};
use crate::error::Error;
use crate::id::{Id, PartialIv};
use crate::option::OscoreOption;
use crate::protect::{Layout, OptionValue, RequestBinding};
use crate::ALG_AES_CCM_16_64_128;

/// The `Enc_structure` `["Encrypt0", h'', external_aad]` (RFC 8613 §5.4
/// with the `aad_array` of RFC 10021 §3.4), built on the stack.
pub(crate) struct EncStructure {
    buf: [u8; ENC_HEAD + MAX_AAD_ARRAY_LEN],
    start: usize,
    end: usize,
}

impl EncStructure {
    /// The structure of a message from the member of `sender_cred`, with
    /// the OSCORE option value `opt` as sent, in the exchange of `binding`.
    pub(crate) fn new(
        common: &GroupCommon,
        binding: &RequestBinding,
        opt: &OptionValue,
        sender_cred: &[u8],
    ) -> Result<Self, Error> {
        let mut buf = [0u8; ENC_HEAD + MAX_AAD_ARRAY_LEN];
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
            opt.as_bytes(),
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
        Ok(EncStructure {
            buf,
            start,
            end: ENC_HEAD + n,
        })
    }

    /// The whole structure: the AEAD's associated data.
    pub(crate) fn aad(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// The `aad_array` inside (the `external_aad` of the
    /// `Countersign_structure`).
    pub(super) fn aad_array(&self) -> &[u8] {
        &self.buf[ENC_HEAD..self.end]
    }
}

/// Reads a received Group OSCORE message (RFC 10021 §6): its layout, and
/// its OSCORE option value as received for the `external_aad`. In group
/// mode (`group`) the Group Flag must be set (§4.1, [`Error::NotGroupMode`])
/// and the rest is the RFC 8613 §6.1 encoding; in pairwise mode it is that
/// encoding, which rejects the flag as a reserved bit.
pub(crate) fn read_group_message(
    datagram: &[u8],
    group: bool,
) -> Result<(Layout, OptionValue), Error> {
    let mut kept = OptionValue::EMPTY;
    let layout = Layout::read_with(datagram, |v| {
        if !group {
            let o = OscoreOption::parse(v)?;
            kept.keep(v)?;
            return Ok(o);
        }
        match v.first() {
            Some(f) if f & GROUP_FLAG != 0 => {}
            _ => return Err(Error::NotGroupMode),
        }
        let c = kept.keep(v)?;
        c[0] &= !GROUP_FLAG;
        let o = OscoreOption::parse(c)?;
        c[0] |= GROUP_FLAG;
        Ok(o)
    })?;
    Ok((layout, kept))
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

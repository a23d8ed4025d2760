//! Protecting and verifying messages in group mode (RFC 10021 §7):
//! encryption as in RFC 8613 §8 with the `aad_array` of §3.4, then the
//! countersignature (§3.1) encrypted with the keystream of §4.2.
use super::cose::{aad_array_of, countersign_structure};
use super::verify::SignatureVerifier;
use super::{
    enc_structure, keystream, GroupCommon, GroupRecipientContext, GroupSenderContext, ENC_HEAD,
    GROUP_FLAG, MAX_AAD_ARRAY_LEN, MAX_GROUP_CIPHERTEXT_LEN, MAX_TBS_LEN, SIGNATURE_LEN,
};
use crate::crypto::{nonce, nonce_with_piv};
use crate::error::Error;
use crate::id::{Id, PartialIv};
use crate::option::OscoreOption;
use crate::protect::{
    open, seal_with, Decrypted, Direction, Layout, RequestBinding, RequestOptions, ResponsePiv,
    MAX_OPTION_LEN,
};
use crate::replay::ReplayState;
use crate::TAG_LEN;
use ed25519_dalek::Signer;
use ssm_coap::{Code, OptionNumber, Packet};

impl GroupSenderContext {
    /// Protects a request in group mode (RFC 10021 §7.1): OSCORE option
    /// with Group Flag, `kid` and `kid context` = Gid; payload = ciphertext
    /// ‖ encrypted countersignature. Returns the length written to `out`
    /// and the binding for the responses.
    pub fn protect_request(
        &mut self,
        common: &GroupCommon,
        request: &[u8],
        out: &mut [u8],
        opts: RequestOptions,
    ) -> Result<(usize, RequestBinding), Error> {
        common.check(self.inner.id_context())?;
        let plain = Packet::new_checked(request)?;
        if !plain.code().is_request() {
            return Err(Error::Coap(ssm_coap::Error::NonEmptyEmptyMessage));
        }
        let piv = self.inner.sequence.take()?;
        let observe = plain.options().get(OptionNumber::OBSERVE).is_some();
        let binding = RequestBinding {
            kid: *self.id(),
            partial_iv: piv,
            kid_context: Some(common.group_id),
            observe,
        };
        let option = OscoreOption {
            partial_iv: Some(piv),
            kid_context: Some(common.group_id),
            kid: Some(*self.id()),
        };
        let no_response = opts.outer_no_response
            && plain.options().get_uint(OptionNumber::NO_RESPONSE) == Some(Ok(26));
        let n = self.seal(
            common,
            &plain,
            if observe { Code::FETCH } else { Code::POST },
            &option,
            &nonce_with_piv(&self.inner.nonce_base, &piv),
            &binding,
            (piv, *self.id(), true),
            out,
            Direction::Request {
                outer_no_response: no_response,
            },
        )?;
        Ok((n, binding))
    }

    /// Protects a response in group mode (RFC 10021 §7.3) to the request of
    /// `binding`: `kid` always present; with [`ResponsePiv::Own`] a fresh
    /// Partial IV of this sender.
    pub fn protect_response(
        &mut self,
        common: &GroupCommon,
        binding: &RequestBinding,
        response: &[u8],
        piv: ResponsePiv,
        out: &mut [u8],
    ) -> Result<usize, Error> {
        common.check(self.inner.id_context())?;
        let plain = Packet::new_checked(response)?;
        if !plain.code().is_response() {
            return Err(Error::Coap(ssm_coap::Error::NonEmptyEmptyMessage));
        }
        let (option, nonce, ks) = match piv {
            ResponsePiv::RequestNonce => (
                OscoreOption {
                    partial_iv: None,
                    kid_context: None,
                    kid: Some(*self.id()),
                },
                nonce(&binding.kid, &binding.partial_iv, &self.inner.common_iv),
                (binding.partial_iv, binding.kid, false),
            ),
            ResponsePiv::Own => {
                let p = self.inner.sequence.take()?;
                (
                    OscoreOption {
                        partial_iv: Some(p),
                        kid_context: None,
                        kid: Some(*self.id()),
                    },
                    nonce_with_piv(&self.inner.nonce_base, &p),
                    (p, *self.id(), false),
                )
            }
        };
        let observe = plain.options().get(OptionNumber::OBSERVE).is_some();
        self.seal(
            common,
            &plain,
            if observe {
                Code::CONTENT
            } else {
                Code::CHANGED
            },
            &option,
            &nonce,
            binding,
            ks,
            out,
            Direction::Response,
        )
    }

    /// §7.1/§7.3: AEAD-encrypts with the group `external_aad`, signs the
    /// ciphertext, appends the signature XOR keystream.
    #[allow(clippy::too_many_arguments)]
    fn seal(
        &self,
        common: &GroupCommon,
        plain: &Packet<&[u8]>,
        outer_code: Code,
        option: &OscoreOption,
        nonce: &[u8; crate::NONCE_LEN],
        binding: &RequestBinding,
        (ks_piv, ks_id, is_request): (PartialIv, Id, bool),
        out: &mut [u8],
        dir: Direction,
    ) -> Result<usize, Error> {
        let mut opt = [0u8; MAX_OPTION_LEN];
        let opt_len = option.emit(&mut opt)?;
        opt[0] |= GROUP_FLAG; // §4.1; a group-mode option is never empty
        let opt = &opt[..opt_len];
        let mut enc = [0u8; ENC_HEAD + MAX_AAD_ARRAY_LEN];
        let (aad_start, aad_end) =
            enc_structure(&mut enc, common, binding, opt, self.cred.as_bytes())?;
        let (ct_start, end) = seal_with(
            &self.inner.aead,
            plain,
            outer_code,
            opt,
            nonce,
            &enc[aad_start..aad_end],
            out,
            dir,
        )?;
        let sig_end = end + SIGNATURE_LEN;
        if out.len() < sig_end {
            return Err(Error::BufferTooSmall);
        }
        let mut tbs = [0u8; MAX_TBS_LEN];
        let tbs_len =
            countersign_structure(&mut tbs, aad_array_of(&enc, aad_end), &out[ct_start..end])?;
        let sig = self.signing_key.sign(&tbs[..tbs_len]).to_bytes();
        let ks = keystream(&common.sekey, &ks_piv, &ks_id, &common.group_id, is_request);
        for ((o, s), k) in out[end..sig_end].iter_mut().zip(sig).zip(ks.iter()) {
            *o = s ^ k;
        }
        Ok(sig_end)
    }
}

impl GroupRecipientContext {
    /// Verifies and decrypts a group-mode request (RFC 10021 §7.2) in place.
    /// The caller picked this context by the request's `kid` and `kid
    /// context`; both are checked again. The countersignature is verified
    /// first ([`Error::BadSignature`]), then the AEAD tag
    /// ([`Error::DecryptionFailed`]); only then does the replay state change.
    /// On error the buffer's content is unspecified. `verifier` decides
    /// the countersignature ([`super::StrictVerifier`] in
    /// [`Self::unprotect_request`]); the AEAD tag is checked either way.
    pub fn unprotect_request_with<'a>(
        &mut self,
        common: &GroupCommon,
        datagram: &'a mut [u8],
        verifier: &dyn SignatureVerifier,
    ) -> Result<Decrypted<'a>, Error> {
        common.check(self.inner.id_context())?;
        let mut opt = [0u8; MAX_OPTION_LEN];
        let mut opt_len = 0;
        let layout =
            Layout::read_with(datagram, |v| parse_group_option(v, &mut opt, &mut opt_len))?;
        if layout.code != Code::POST && layout.code != Code::FETCH {
            return Err(Error::BadOuterCode);
        }
        let kid = layout.option.kid.ok_or(Error::MissingKid)?;
        let piv = layout.option.partial_iv.ok_or(Error::MissingPartialIv)?;
        // §3.2: a group request always carries the Gid as kid context.
        if kid != self.inner.id || layout.option.kid_context != Some(common.group_id) {
            return Err(Error::UnknownKid);
        }
        if let ReplayState::Window(w) = &self.inner.replay {
            w.check(piv.value())?;
        }
        let binding = RequestBinding {
            kid,
            partial_iv: piv,
            kid_context: layout.option.kid_context,
            observe: false,
        };
        let nonce = nonce_with_piv(&self.inner.nonce_base, &piv); // kid == self.id
        let d = self.open(
            common,
            &layout,
            datagram,
            &opt[..opt_len],
            &nonce,
            &binding,
            (piv, kid, true),
            verifier,
        )?;
        // Every check passed (for Group OSCORE the signature too): now,
        // and only now, the replay state may change.
        self.inner.accept_verified(piv, d, binding)
    }

    /// Verifies and decrypts a group-mode response (RFC 10021 §7.4) of this
    /// member to the request of `binding`, in place. Ordering of
    /// notifications is left to the caller, as in
    /// [`crate::RecipientContext::unprotect_response`]. `verifier` as in
    /// [`Self::unprotect_request_with`].
    pub fn unprotect_response_with<'a>(
        &self,
        common: &GroupCommon,
        binding: &RequestBinding,
        datagram: &'a mut [u8],
        verifier: &dyn SignatureVerifier,
    ) -> Result<Decrypted<'a>, Error> {
        common.check(self.inner.id_context())?;
        let mut opt = [0u8; MAX_OPTION_LEN];
        let mut opt_len = 0;
        let layout =
            Layout::read_with(datagram, |v| parse_group_option(v, &mut opt, &mut opt_len))?;
        // §3.2: responses to group requests always carry the server's kid.
        if layout.option.kid != Some(self.inner.id)
            || layout
                .option
                .kid_context
                .is_some_and(|c| c != common.group_id)
        {
            return Err(Error::UnknownKid);
        }
        let (nonce, ks) = match layout.option.partial_iv {
            Some(p) => (
                nonce_with_piv(&self.inner.nonce_base, &p),
                (p, self.inner.id),
            ),
            None => (
                nonce(&binding.kid, &binding.partial_iv, &self.inner.common_iv),
                (binding.partial_iv, binding.kid),
            ),
        };
        let d = self.open(
            common,
            &layout,
            datagram,
            &opt[..opt_len],
            &nonce,
            binding,
            (ks.0, ks.1, false),
            verifier,
        )?;
        if !d.code.is_response() {
            return Err(Error::MalformedPlaintext);
        }
        if !binding.observe && d.options.get(OptionNumber::OBSERVE).is_some() {
            return Err(Error::UnexpectedObserve);
        }
        Ok(d)
    }

    /// Verifies the countersignature over the intact ciphertext, then
    /// decrypts (§7.2, §7.4).
    #[allow(clippy::too_many_arguments)]
    fn open<'a>(
        &self,
        common: &GroupCommon,
        layout: &Layout,
        datagram: &'a mut [u8],
        opt: &[u8],
        nonce: &[u8; crate::NONCE_LEN],
        binding: &RequestBinding,
        (ks_piv, ks_id, is_request): (PartialIv, Id, bool),
        verifier: &dyn SignatureVerifier,
    ) -> Result<Decrypted<'a>, Error> {
        let payload_len = datagram.len() - layout.payload_start;
        // Ciphertext of at least the code byte and the tag, then the
        // signature.
        if payload_len < 1 + TAG_LEN + SIGNATURE_LEN {
            return Err(Error::MissingCiphertext);
        }
        let ct_end = datagram.len() - SIGNATURE_LEN;
        if ct_end - layout.payload_start > MAX_GROUP_CIPHERTEXT_LEN {
            return Err(Error::GroupMessageTooLong);
        }
        let mut enc = [0u8; ENC_HEAD + MAX_AAD_ARRAY_LEN];
        let (aad_start, aad_end) =
            enc_structure(&mut enc, common, binding, opt, self.cred.as_bytes())?;
        let ks = keystream(&common.sekey, &ks_piv, &ks_id, &common.group_id, is_request);
        let mut sig = [0u8; SIGNATURE_LEN];
        for ((s, e), k) in sig.iter_mut().zip(&datagram[ct_end..]).zip(ks.iter()) {
            *s = e ^ k;
        }
        let mut tbs = [0u8; MAX_TBS_LEN];
        let tbs_len = countersign_structure(
            &mut tbs,
            aad_array_of(&enc, aad_end),
            &datagram[layout.payload_start..ct_end],
        )?;
        if !verifier.verify(&self.verifying_key, &tbs[..tbs_len], &sig) {
            return Err(Error::BadSignature);
        }
        open(
            &self.inner.aead,
            layout,
            &mut datagram[..ct_end],
            nonce,
            &enc[aad_start..aad_end],
        )
    }
}

/// Parses a group-mode OSCORE option value: the Group Flag must be set
/// (§4.1, §6); the rest is the RFC 8613 §6.1 encoding. Keeps a copy of the
/// value as received for the `external_aad`.
fn parse_group_option(
    v: &[u8],
    copy: &mut [u8; MAX_OPTION_LEN],
    len: &mut usize,
) -> Result<OscoreOption, Error> {
    match v.first() {
        Some(f) if f & GROUP_FLAG != 0 => {}
        _ => return Err(Error::NotGroupMode),
    }
    let c = copy.get_mut(..v.len()).ok_or(Error::BadOscoreOption)?;
    c.copy_from_slice(v);
    *len = v.len();
    c[0] &= !GROUP_FLAG;
    let o = OscoreOption::parse(c)?;
    c[0] |= GROUP_FLAG;
    Ok(o)
}

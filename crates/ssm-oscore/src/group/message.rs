//! Protecting and verifying messages in group mode (RFC 10021 §7):
//! encryption as in RFC 8613 §8 with the `aad_array` of §3.4, then the
//! countersignature (§3.1) encrypted with the keystream of §4.2.
use super::cose::countersign_structure;
use super::verify::SignatureVerifier;
use super::{
    keystream, read_group_message, EncStructure, GroupCommon, GroupRecipientContext,
    GroupSenderContext, GROUP_FLAG, MAX_GROUP_CIPHERTEXT_LEN, MAX_TBS_LEN, SIGNATURE_LEN,
};
use crate::error::Error;
use crate::protect::{
    open, seal_with, Decrypted, Layout, OptionValue, Outgoing, RequestBinding, RequestOptions,
    ResponsePiv,
};
use crate::TAG_LEN;
use ed25519_dalek::Signer;

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
        let (msg, binding) = self.start_request(common, request, opts)?;
        let n = self.seal(common, &msg, &binding, out)?;
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
        let msg = self.start_response(common, binding, response, piv)?;
        self.seal(common, &msg, binding, out)
    }

    /// A request of this member in the group of `common` (group and
    /// pairwise mode): the RFC 8613 steps; the ID Context is the Gid, so it
    /// is the request's `kid context` (§3.2).
    pub(crate) fn start_request<'a>(
        &mut self,
        common: &GroupCommon,
        request: &'a [u8],
        opts: RequestOptions,
    ) -> Result<(Outgoing<'a>, RequestBinding), Error> {
        common.check(self.inner.id_context())?;
        self.inner.start_request(request, opts)
    }

    /// A response of this member (group and pairwise mode): the RFC 8613
    /// steps, and `kid` always carried (§3.2).
    pub(crate) fn start_response<'a>(
        &mut self,
        common: &GroupCommon,
        binding: &RequestBinding,
        response: &'a [u8],
        piv: ResponsePiv,
    ) -> Result<Outgoing<'a>, Error> {
        common.check(self.inner.id_context())?;
        let mut msg = self.inner.start_response(binding, response, piv)?;
        msg.option.kid = Some(*self.id());
        Ok(msg)
    }

    /// §7.1/§7.3: AEAD-encrypts with the group `external_aad`, signs the
    /// ciphertext, appends the signature XOR keystream.
    fn seal(
        &self,
        common: &GroupCommon,
        msg: &Outgoing<'_>,
        binding: &RequestBinding,
        out: &mut [u8],
    ) -> Result<usize, Error> {
        // §4.1; a group-mode option is never empty.
        let opt = OptionValue::emit(&msg.option, GROUP_FLAG)?;
        let enc = EncStructure::new(common, binding, &opt, self.cred.as_bytes())?;
        let (ct_start, end) = seal_with(&self.inner.aead, msg, opt.as_bytes(), enc.aad(), out)?;
        let sig_end = end + SIGNATURE_LEN;
        if out.len() < sig_end {
            return Err(Error::BufferTooSmall);
        }
        let mut tbs = [0u8; MAX_TBS_LEN];
        let tbs_len = countersign_structure(&mut tbs, enc.aad_array(), &out[ct_start..end])?;
        let sig = self.signing_key.sign(&tbs[..tbs_len]).to_bytes();
        let n = &msg.nonce;
        let ks = keystream(
            &common.sekey,
            &n.piv,
            &n.id,
            &common.group_id,
            msg.is_request(),
        );
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
        let (layout, opt) = read_group_message(datagram, true)?;
        // §3.2: a group request always carries the Gid as kid context.
        let binding = self.inner.check_request(&layout, true)?;
        let d = self.open(common, (&layout, &opt), datagram, &binding, true, verifier)?;
        // Every check passed (for Group OSCORE the signature too): now,
        // and only now, the replay state may change.
        self.inner.accept_verified(d, binding)
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
        let (layout, opt) = read_group_message(datagram, true)?;
        // §3.2: responses to group requests always carry the server's kid.
        if layout.option.kid != Some(self.inner.id)
            || layout
                .option
                .kid_context
                .is_some_and(|c| c != common.group_id)
        {
            return Err(Error::UnknownKid);
        }
        self.open(common, (&layout, &opt), datagram, binding, false, verifier)?
            .response_to(binding)
    }

    /// Verifies the countersignature over the intact ciphertext, then
    /// decrypts (§7.2, §7.4). `(layout, opt)`: the message as
    /// [`read_group_message`] read it.
    fn open<'a>(
        &self,
        common: &GroupCommon,
        (layout, opt): (&Layout, &OptionValue),
        datagram: &'a mut [u8],
        binding: &RequestBinding,
        is_request: bool,
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
        let enc = EncStructure::new(common, binding, opt, self.cred.as_bytes())?;
        let nonce = self.inner.message_nonce(layout, binding);
        let ks = keystream(
            &common.sekey,
            &nonce.piv,
            &nonce.id,
            &common.group_id,
            is_request,
        );
        let mut sig = [0u8; SIGNATURE_LEN];
        for ((s, e), k) in sig.iter_mut().zip(&datagram[ct_end..]).zip(ks.iter()) {
            *s = e ^ k;
        }
        let mut tbs = [0u8; MAX_TBS_LEN];
        let tbs_len = countersign_structure(
            &mut tbs,
            enc.aad_array(),
            &datagram[layout.payload_start..ct_end],
        )?;
        if !verifier.verify(&self.verifying_key, &tbs[..tbs_len], &sig) {
            return Err(Error::BadSignature);
        }
        open(
            &self.inner.aead,
            layout,
            &mut datagram[..ct_end],
            &nonce.bytes,
            enc.aad(),
        )
    }
}

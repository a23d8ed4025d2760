//! Verifying requests and responses, RFC 8613 §8.2 and §8.4, in place.
use super::{Decrypted, MessageNonce, RequestBinding};
use crate::context::RecipientContext;
use crate::crypto::aad;
use crate::error::Error;
use crate::option::OscoreOption;
use crate::replay::{ReplayState, ReplayWindow};
use crate::TAG_LEN;
use ssm_coap::{Code, MessageType, OptionNumber, Options, Packet};

impl RecipientContext {
    /// Verifies and decrypts a request (§8.2) in place. The caller has
    /// already picked this context by the request's `kid` (see
    /// [`OscoreOption::parse`]); it is checked again here.
    ///
    /// On error the buffer's content is unspecified, and the replay state is
    /// unchanged unless the request verified.
    pub fn unprotect_request<'a>(
        &mut self,
        datagram: &'a mut [u8],
    ) -> Result<Decrypted<'a>, Error> {
        let layout = Layout::read(datagram)?;
        let binding = self.check_request(&layout, false)?;
        let nonce = self.message_nonce(&layout, &binding);
        let (aad, aad_len) = aad(&binding.kid, &binding.partial_iv);
        let d = open(&self.aead, &layout, datagram, &nonce.bytes, &aad[..aad_len])?;
        self.accept_verified(d, binding)
    }

    /// The checks of a received request before it is decrypted (§8.2
    /// steps 2–3; RFC 10021 §7.2, §8.4): outer code POST or FETCH, `kid`
    /// (this context's Recipient ID) and Partial IV present, a `kid
    /// context` only if it is this context's ID Context (`kid_context_required`:
    /// always carried, as in a group, RFC 10021 §3.2), and the Partial IV
    /// not seen (the replay window is only read here). Returns what the
    /// response needs.
    pub(crate) fn check_request(
        &self,
        layout: &Layout,
        kid_context_required: bool,
    ) -> Result<RequestBinding, Error> {
        if layout.code != Code::POST && layout.code != Code::FETCH {
            return Err(Error::BadOuterCode);
        }
        let kid = layout.option.kid.ok_or(Error::MissingKid)?;
        let piv = layout.option.partial_iv.ok_or(Error::MissingPartialIv)?;
        let context_ok = match layout.option.kid_context {
            Some(c) => Some(c) == self.id_context,
            None => !kid_context_required,
        };
        if kid != self.id || !context_ok {
            return Err(Error::UnknownKid);
        }
        if let ReplayState::Window(w) = &self.replay {
            w.check(piv.value())?;
        }
        Ok(RequestBinding {
            kid,
            partial_iv: piv,
            kid_context: layout.option.kid_context,
            observe: false,
        })
    }

    /// The nonce of a received message (see [`MessageNonce`]): a request
    /// and a response with its own Partial IV are this peer's, a response
    /// without one takes that of the request of `binding`.
    pub(crate) fn message_nonce(&self, layout: &Layout, binding: &RequestBinding) -> MessageNonce {
        MessageNonce::of(
            layout.option.partial_iv,
            (&self.id, &self.nonce_base),
            &self.common_iv,
            binding,
        )
    }

    /// The end of every request unprotect (RFC 8613, and RFC 10021 group
    /// and pairwise mode): the plaintext must be a request, the binding
    /// learns whether it registers an Observe, and the replay state is
    /// updated (§7.4, App. B.1.2): the window records `piv`, or, while
    /// awaiting an Echo round trip, a request returning the pending Echo
    /// value anchors a new window. Call only after every check of the
    /// request passed (for Group OSCORE also the countersignature, RFC
    /// 10021 §7.2).
    pub(crate) fn accept_verified<'a>(
        &mut self,
        mut d: Decrypted<'a>,
        binding: RequestBinding,
    ) -> Result<Decrypted<'a>, Error> {
        let piv = binding.partial_iv;
        if !d.code.is_request() {
            return Err(Error::MalformedPlaintext);
        }
        let binding = RequestBinding {
            observe: d.options.get(OptionNumber::OBSERVE).is_some(),
            ..binding
        };
        d.binding = Some(binding);
        // Verified: now, and only now, the replay state may change.
        match self.replay {
            ReplayState::Window(ref mut w) => w.accept(piv.value()),
            ReplayState::AwaitingEcho { size, .. } => {
                let echo = d.options.get(OptionNumber::ECHO).map(|o| o.value);
                match (echo, self.replay.pending_echo()) {
                    (Some(got), Some(want)) if got == want => {
                        // App. B.1.2: nothing older than the verified fresh
                        // request may be accepted any more.
                        self.replay =
                            ReplayState::Window(ReplayWindow::from_floor(piv.value(), size));
                    }
                    _ => return Err(Error::FreshnessUnknown(binding)),
                }
            }
        }
        Ok(d)
    }

    /// Verifies and decrypts a response (§8.4) to the request described by
    /// `binding`, in place. Ordering of notifications (§7.4.1) is left to the
    /// caller, which gets the response's Partial IV in the result.
    pub fn unprotect_response<'a>(
        &self,
        binding: &RequestBinding,
        datagram: &'a mut [u8],
    ) -> Result<Decrypted<'a>, Error> {
        let layout = Layout::read(datagram)?;
        let nonce = self.message_nonce(&layout, binding);
        let (aad, aad_len) = aad(&binding.kid, &binding.partial_iv);
        open(&self.aead, &layout, datagram, &nonce.bytes, &aad[..aad_len])?.response_to(binding)
    }
}

/// Offsets of a received OSCORE message.
pub(crate) struct Layout {
    pub(crate) msg_type: MessageType,
    pub(crate) code: Code,
    pub(crate) message_id: u16,
    pub(crate) token_len: usize,
    pub(crate) options_start: usize,
    pub(crate) options_end: usize,
    pub(crate) payload_start: usize,
    pub(crate) option: OscoreOption,
}

impl Layout {
    fn read(datagram: &[u8]) -> Result<Layout, Error> {
        Self::read_with(datagram, OscoreOption::parse)
    }

    /// [`Self::read`] with another parser of the OSCORE option value (Group
    /// OSCORE: one that requires the Group Flag, RFC 10021 §4.1).
    pub(crate) fn read_with(
        datagram: &[u8],
        parse: impl FnOnce(&[u8]) -> Result<OscoreOption, Error>,
    ) -> Result<Layout, Error> {
        let p = Packet::new_checked(datagram)?;
        let options = p.options();
        let mut oscore = options.get_all(OptionNumber::OSCORE);
        let option = match oscore.next() {
            Some(o) => parse(o.value)?,
            None => return Err(Error::NotOscore),
        };
        if oscore.next().is_some() {
            return Err(Error::BadOscoreOption); // repeated
        }
        if p.payload().is_empty() {
            return Err(Error::MissingCiphertext);
        }
        Ok(Layout {
            msg_type: p.msg_type(),
            code: p.code(),
            message_id: p.message_id(),
            token_len: p.token().len(),
            options_start: p.options_offset(),
            options_end: p.options_offset() + options.as_bytes().len(),
            payload_start: p.payload_offset(),
            option,
        })
    }
}

/// Decrypts the payload in place and parses the plaintext.
pub(crate) fn open<'a>(
    aead: &crate::crypto::Aead,
    l: &Layout,
    datagram: &'a mut [u8],
    nonce: &[u8; crate::NONCE_LEN],
    aad: &[u8],
) -> Result<Decrypted<'a>, Error> {
    let (head, body) = datagram.split_at_mut(l.payload_start);
    if body.len() < TAG_LEN + 1 {
        return Err(Error::DecryptionFailed);
    }
    let (ct, tag) = body.split_at_mut(body.len() - TAG_LEN);
    aead.open(nonce, aad, ct, tag)?;
    let ct: &'a [u8] = ct;
    let head: &'a [u8] = head;
    let (&code, rest) = ct.split_first().ok_or(Error::MalformedPlaintext)?;
    let (options, payload) = Options::parse(rest).map_err(|_| Error::MalformedPlaintext)?;
    // Validated by `Layout::read`, and `head` is not written between the two.
    let outer_options = Options::new_validated(&head[l.options_start..l.options_end]);
    Ok(Decrypted {
        msg_type: l.msg_type,
        message_id: l.message_id,
        token: &head[4..4 + l.token_len],
        code: Code(code),
        options,
        outer_options,
        payload,
        partial_iv: l.option.partial_iv,
        binding: None,
    })
}

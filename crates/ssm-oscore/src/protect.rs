//! Protecting and verifying messages, RFC 8613 §8 (with §4.1.3 special
//! options and Appendix B.1.2 Echo).
//!
//! Protect functions read a plain CoAP message and write the OSCORE message
//! into a caller buffer. Unprotect functions decrypt **in place** in the
//! received datagram and return a [`Decrypted`] view into it: no copy, no
//! allocation. The replay window is updated only after the tag verified.
use crate::class::{kept_on_receive, placement, Placement};
use crate::context::{RecipientContext, SenderContext};
use crate::crypto::{aad, nonce, nonce_with_piv};
use crate::error::Error;
use crate::id::{Id, IdContext, PartialIv};
use crate::option::OscoreOption;
use crate::replay::{ReplayState, ReplayWindow};
use crate::TAG_LEN;
use ssm_coap::{
    CoapOption, Code, MessageType, MessageWriter, OptionNumber, OptionWriter, Options, Packet,
    PAYLOAD_MARKER,
};

/// What a response needs from its request (§5.4 `request_kid` and
/// `request_piv`, §8.3 the request nonce).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestBinding {
    /// The request's `kid` (the client's Sender ID).
    pub kid: Id,
    /// The request's Partial IV.
    pub partial_iv: PartialIv,
    /// The request's kid context, if any.
    pub kid_context: Option<IdContext>,
    /// The request carried Observe (registration or cancellation).
    pub observe: bool,
}

/// Which nonce a response uses (§8.3 step 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponsePiv {
    /// Reuse the request's nonce; no Partial IV in the response. Only for
    /// the first response to a request whose freshness is established.
    RequestNonce,
    /// Take a new Sender Sequence Number and send it as Partial IV. Needed
    /// for notifications after the first, and for Echo challenges.
    Own,
}

/// A verified, decrypted message: a view into the datagram buffer.
#[derive(Debug, Clone, Copy)]
pub struct Decrypted<'a> {
    msg_type: MessageType,
    message_id: u16,
    token: &'a [u8],
    /// The inner (real) code.
    pub code: Code,
    /// The inner options (Class E).
    pub options: Options<'a>,
    /// The outer options as received (only Uri-Host, Uri-Port, Proxy-Uri
    /// and Proxy-Scheme are meaningful; see [`Decrypted::emit`]).
    pub outer_options: Options<'a>,
    /// The decrypted payload.
    pub payload: &'a [u8],
    /// This message's Partial IV, if it had one.
    pub partial_iv: Option<PartialIv>,
    /// For requests: what the response needs.
    pub binding: Option<RequestBinding>,
}

impl<'a> Decrypted<'a> {
    /// Message type of the outer message.
    pub fn msg_type(&self) -> MessageType {
        self.msg_type
    }
    /// Message ID of the outer message.
    pub fn message_id(&self) -> u16 {
        self.message_id
    }
    /// Token of the outer message.
    pub fn token(&self) -> &'a [u8] {
        self.token
    }

    /// Options of the decrypted message in order: the inner options merged
    /// with the outer options a receiver keeps (§8.2 step 1, §8.4 step 1).
    pub fn merged_options(&self) -> impl Iterator<Item = CoapOption<'a>> + 'a {
        Merge {
            a: self
                .outer_options
                .iter()
                .filter(|o| kept_on_receive(o.number))
                .peekable(),
            b: self.options.iter().peekable(),
        }
    }

    /// Writes the decrypted message as plain CoAP; returns its length.
    pub fn emit(&self, out: &mut [u8]) -> Result<usize, Error> {
        let mut w = MessageWriter::new(out, self.msg_type, self.code, self.message_id, self.token)?;
        for o in self.merged_options() {
            w.option(o.number, o.value)?;
        }
        Ok(w.payload(self.payload)?)
    }

    /// The decrypted message as an owned [`ssm_coap::Message`].
    #[cfg(feature = "alloc")]
    pub fn to_message(&self) -> ssm_coap::Message {
        let mut m = ssm_coap::Message::new(
            self.msg_type,
            self.code,
            self.message_id,
            // The token came from a validated packet: at most 8 bytes.
            ssm_coap::Token::new(self.token).unwrap_or_default(),
        );
        m.options = self
            .merged_options()
            .map(|o| (o.number, o.value.to_vec()))
            .collect();
        m.payload = self.payload.to_vec();
        m
    }
}

/// Merges two ascending option streams.
struct Merge<A: Iterator, B: Iterator> {
    a: core::iter::Peekable<A>,
    b: core::iter::Peekable<B>,
}

impl<'a, A, B> Iterator for Merge<A, B>
where
    A: Iterator<Item = CoapOption<'a>>,
    B: Iterator<Item = CoapOption<'a>>,
{
    type Item = CoapOption<'a>;
    fn next(&mut self) -> Option<CoapOption<'a>> {
        match (self.a.peek(), self.b.peek()) {
            (Some(x), Some(y)) if x.number <= y.number => self.a.next(),
            (Some(_), Some(_)) => self.b.next(),
            (Some(_), None) => self.a.next(),
            (None, _) => self.b.next(),
        }
    }
}

/// Options for protecting a request.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestOptions {
    /// Also send an outer No-Response 26 when the inner one is 26 (§4.1.3.6),
    /// so OSCORE-unaware proxies do not wait for a response (SSM).
    pub outer_no_response: bool,
}

impl SenderContext {
    /// Protects a request (§8.1). `request` is a plain CoAP request; the
    /// OSCORE message is written to `out`. Returns its length and the
    /// binding needed to verify the response.
    pub fn protect_request(
        &mut self,
        request: &[u8],
        out: &mut [u8],
    ) -> Result<(usize, RequestBinding), Error> {
        self.protect_request_with(request, out, RequestOptions::default())
    }

    /// [`Self::protect_request`] with options.
    pub fn protect_request_with(
        &mut self,
        request: &[u8],
        out: &mut [u8],
        opts: RequestOptions,
    ) -> Result<(usize, RequestBinding), Error> {
        let plain = Packet::new_checked(request)?;
        if !plain.code().is_request() {
            return Err(Error::Coap(ssm_coap::Error::NonEmptyEmptyMessage));
        }
        let piv = self.sequence.take()?;
        let observe = plain.options().get(OptionNumber::OBSERVE).is_some();
        let option = OscoreOption {
            partial_iv: Some(piv),
            kid_context: self.id_context,
            kid: Some(self.id),
        };
        let binding = RequestBinding {
            kid: self.id,
            partial_iv: piv,
            kid_context: self.id_context,
            observe,
        };
        let outer_code = if observe { Code::FETCH } else { Code::POST };
        let nonce = nonce_with_piv(&self.nonce_base, &piv);
        let (aad, aad_len) = aad(&binding.kid, &binding.partial_iv);
        let no_response = opts.outer_no_response
            && plain.options().get_uint(OptionNumber::NO_RESPONSE) == Some(Ok(26));
        let n = seal(
            self,
            &plain,
            outer_code,
            &option,
            &nonce,
            &aad[..aad_len],
            out,
            Direction::Request {
                outer_no_response: no_response,
            },
        )?;
        Ok((n, binding))
    }

    /// Protects a response to the request described by `binding` (§8.3).
    pub fn protect_response(
        &mut self,
        binding: &RequestBinding,
        response: &[u8],
        piv: ResponsePiv,
        out: &mut [u8],
    ) -> Result<usize, Error> {
        let plain = Packet::new_checked(response)?;
        if !plain.code().is_response() {
            return Err(Error::Coap(ssm_coap::Error::NonEmptyEmptyMessage));
        }
        let (option, nonce) = match piv {
            ResponsePiv::RequestNonce => (
                OscoreOption::default(),
                nonce(&binding.kid, &binding.partial_iv, &self.common_iv),
            ),
            ResponsePiv::Own => {
                let p = self.sequence.take()?;
                (
                    OscoreOption {
                        partial_iv: Some(p),
                        kid_context: None,
                        kid: None,
                    },
                    nonce_with_piv(&self.nonce_base, &p),
                )
            }
        };
        let observe = plain.options().get(OptionNumber::OBSERVE).is_some();
        let outer_code = if observe {
            Code::CONTENT
        } else {
            Code::CHANGED
        };
        let (aad, aad_len) = aad(&binding.kid, &binding.partial_iv);
        seal(
            self,
            &plain,
            outer_code,
            &option,
            &nonce,
            &aad[..aad_len],
            out,
            Direction::Response,
        )
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    Request { outer_no_response: bool },
    Response,
}

/// Writes header, outer options, then the encrypted plaintext (§5.3, §6).
#[allow(clippy::too_many_arguments)]
fn seal(
    ctx: &SenderContext,
    plain: &Packet<&[u8]>,
    outer_code: Code,
    option: &OscoreOption,
    nonce: &[u8; crate::NONCE_LEN],
    aad: &[u8],
    out: &mut [u8],
    dir: Direction,
) -> Result<usize, Error> {
    let mut opt_buf = [0u8; MAX_OPTION_LEN];
    let opt_len = option.emit(&mut opt_buf)?;
    let (_, end) = seal_with(
        &ctx.aead,
        plain,
        outer_code,
        &opt_buf[..opt_len],
        nonce,
        aad,
        out,
        dir,
    )?;
    Ok(end)
}

/// The longest OSCORE option value: flags, Partial IV, kid context with its
/// length byte, kid.
pub(crate) const MAX_OPTION_LEN: usize = 1 + 5 + 1 + crate::MAX_ID_CONTEXT_LEN + crate::MAX_ID_LEN;

/// [`seal`] with the OSCORE option value already encoded (Group OSCORE sets
/// its Group Flag, RFC 10021 §4.1) and the AEAD given. Returns where the
/// ciphertext starts and where the message ends.
#[allow(clippy::too_many_arguments)]
pub(crate) fn seal_with(
    aead: &crate::crypto::Aead,
    plain: &Packet<&[u8]>,
    outer_code: Code,
    opt_val: &[u8],
    nonce: &[u8; crate::NONCE_LEN],
    aad: &[u8],
    out: &mut [u8],
    dir: Direction,
) -> Result<(usize, usize), Error> {
    let mut proxy: Option<ProxyUri<'_>> = None;

    // Outer message.
    let mut w = MessageWriter::new(
        out,
        plain.msg_type(),
        outer_code,
        plain.message_id(),
        plain.token(),
    )?;
    let mut oscore_written = false;
    for o in plain.options().iter() {
        if o.number == OptionNumber::OSCORE {
            continue; // never carried over from the plain message
        }
        let outer_value = match placement(o.number) {
            Placement::Outer => o.value,
            Placement::Both => o.value,
            Placement::ProxyUri => {
                if proxy.is_some() {
                    return Err(Error::BadProxyUri);
                }
                let p = ProxyUri::split(o.value)?;
                proxy = Some(p);
                p.outer
            }
            Placement::Inner => continue,
        };
        if !oscore_written && o.number > OptionNumber::OSCORE {
            w.option(OptionNumber::OSCORE, opt_val)?;
            oscore_written = true;
        }
        w.option(o.number, outer_value)?;
    }
    if !oscore_written {
        w.option(OptionNumber::OSCORE, opt_val)?;
    }
    if let Direction::Request {
        outer_no_response: true,
    } = dir
    {
        w.option_uint(OptionNumber::NO_RESPONSE, 26)?;
    }
    let header_len = w.finish();

    // Plaintext: code, inner options, payload (§5.3).
    let pt_start = header_len + 1;
    let code_slot = out
        .get_mut(header_len..pt_start + 1)
        .ok_or(Error::BufferTooSmall)?;
    code_slot[0] = PAYLOAD_MARKER;
    code_slot[1] = plain.code().0;
    let mut iw = OptionWriter::new(&mut out[pt_start..], 1)?;
    let mut path_done = proxy.is_none();
    let mut query_done = proxy.is_none();
    for o in plain.options().iter() {
        if let Some(p) = &proxy {
            if !path_done && o.number > OptionNumber::URI_PATH {
                p.write_path(&mut iw)?;
                path_done = true;
            }
            if !query_done && o.number > OptionNumber::URI_QUERY {
                p.write_query(&mut iw)?;
                query_done = true;
            }
        }
        match placement(o.number) {
            Placement::Inner => iw.option(o.number, o.value)?,
            Placement::Both => {
                // §4.1.3.5: requests carry the value inside too;
                // notifications carry an empty inner Observe.
                let v = if dir == Direction::Response {
                    &[][..]
                } else {
                    o.value
                };
                iw.option(o.number, v)?
            }
            Placement::Outer | Placement::ProxyUri => {}
        }
    }
    if let Some(p) = &proxy {
        if !path_done {
            p.write_path(&mut iw)?;
        }
        if !query_done {
            p.write_query(&mut iw)?;
        }
    }
    let pt_len = iw.payload(plain.payload())?;
    let end = pt_start + pt_len + TAG_LEN;
    let body = out.get_mut(pt_start..end).ok_or(Error::BufferTooSmall)?;
    let (pt, tag_slot) = body.split_at_mut(pt_len);
    let tag = aead.seal(nonce, aad, pt)?;
    tag_slot.copy_from_slice(&tag);
    Ok((pt_start, end))
}

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
        if layout.code != Code::POST && layout.code != Code::FETCH {
            return Err(Error::BadOuterCode);
        }
        let kid = layout.option.kid.ok_or(Error::MissingKid)?;
        let piv = layout.option.partial_iv.ok_or(Error::MissingPartialIv)?;
        if kid != self.id
            || layout.option.kid_context.is_some() && layout.option.kid_context != self.id_context
        {
            return Err(Error::UnknownKid);
        }
        if let ReplayState::Window(w) = &self.replay {
            w.check(piv.value())?;
        }
        let binding = RequestBinding {
            kid,
            partial_iv: piv,
            kid_context: layout.option.kid_context,
            observe: false,
        };
        let nonce = nonce_with_piv(&self.nonce_base, &piv); // kid == self.id
        let (aad, aad_len) = aad(&kid, &piv);
        let mut d = open(&self.aead, &layout, datagram, &nonce, &aad[..aad_len])?;
        if !d.code.is_request() {
            return Err(Error::MalformedPlaintext);
        }
        let binding = RequestBinding {
            observe: d.options.get(OptionNumber::OBSERVE).is_some(),
            ..binding
        };
        d.binding = Some(binding);
        self.accept_verified(piv, &d, binding)?;
        Ok(d)
    }

    /// The replay-state update after a request verified (§7.4, App. B.1.2):
    /// the window records `piv`, or, while awaiting an Echo round trip, a
    /// request returning the pending Echo value anchors a new window. Call
    /// only after every check of the request passed (for Group OSCORE also
    /// the countersignature, RFC 10021 §7.2).
    pub(crate) fn accept_verified(
        &mut self,
        piv: PartialIv,
        d: &Decrypted<'_>,
        binding: RequestBinding,
    ) -> Result<(), Error> {
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
        Ok(())
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
        let nonce = match layout.option.partial_iv {
            Some(p) => nonce_with_piv(&self.nonce_base, &p),
            None => nonce(&binding.kid, &binding.partial_iv, &self.common_iv),
        };
        let (aad, aad_len) = aad(&binding.kid, &binding.partial_iv);
        let d = open(&self.aead, &layout, datagram, &nonce, &aad[..aad_len])?;
        if !d.code.is_response() {
            return Err(Error::MalformedPlaintext);
        }
        if !binding.observe && d.options.get(OptionNumber::OBSERVE).is_some() {
            return Err(Error::UnexpectedObserve);
        }
        Ok(d)
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

/// A Proxy-Uri split per §4.1.3.3: the outer `scheme://authority` and the
/// path and query that become inner Uri-Path/Uri-Query options.
#[derive(Clone, Copy)]
struct ProxyUri<'a> {
    outer: &'a [u8],
    path: &'a [u8],
    query: &'a [u8],
}

impl<'a> ProxyUri<'a> {
    fn split(v: &'a [u8]) -> Result<Self, Error> {
        let sep = v
            .windows(3)
            .position(|w| w == b"://")
            .ok_or(Error::BadProxyUri)?;
        let auth_start = sep + 3;
        let auth_end = v[auth_start..]
            .iter()
            .position(|b| *b == b'/' || *b == b'?' || *b == b'#')
            .map_or(v.len(), |i| auth_start + i);
        if auth_end == auth_start {
            return Err(Error::BadProxyUri);
        }
        let rest = &v[auth_end..];
        let rest = match rest.iter().position(|b| *b == b'#') {
            Some(i) => &rest[..i],
            None => rest,
        };
        let (path, query) = match rest.iter().position(|b| *b == b'?') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &[][..]),
        };
        Ok(ProxyUri {
            outer: &v[..auth_end],
            path,
            query,
        })
    }

    fn write_path(&self, w: &mut OptionWriter<'_>) -> Result<(), Error> {
        let path = self.path.strip_prefix(b"/").unwrap_or(self.path);
        if path.is_empty() {
            return Ok(());
        }
        for seg in path.split(|b| *b == b'/') {
            write_decoded(w, OptionNumber::URI_PATH, seg)?;
        }
        Ok(())
    }

    fn write_query(&self, w: &mut OptionWriter<'_>) -> Result<(), Error> {
        if self.query.is_empty() {
            return Ok(());
        }
        for q in self.query.split(|b| *b == b'&') {
            write_decoded(w, OptionNumber::URI_QUERY, q)?;
        }
        Ok(())
    }
}

/// Percent-decodes one URI component into an option (RFC 7252 §6.4).
fn write_decoded(w: &mut OptionWriter<'_>, n: OptionNumber, s: &[u8]) -> Result<(), Error> {
    let mut buf = [0u8; 255];
    let mut len = 0;
    let mut i = 0;
    while i < s.len() {
        let b = if s[i] == b'%' {
            let hi = s
                .get(i + 1)
                .and_then(|c| (*c as char).to_digit(16))
                .ok_or(Error::BadProxyUri)?;
            let lo = s
                .get(i + 2)
                .and_then(|c| (*c as char).to_digit(16))
                .ok_or(Error::BadProxyUri)?;
            i += 3;
            (hi * 16 + lo) as u8
        } else {
            i += 1;
            s[i - 1]
        };
        *buf.get_mut(len).ok_or(Error::BadProxyUri)? = b;
        len += 1;
    }
    Ok(w.option(n, &buf[..len])?)
}

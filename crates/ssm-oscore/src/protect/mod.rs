//! Protecting and verifying messages, RFC 8613 §8 (with §4.1.3 special
//! options and Appendix B.1.2 Echo).
//!
//! Protect functions read a plain CoAP message and write the OSCORE message
//! into a caller buffer. Unprotect functions decrypt **in place** in the
//! received datagram and return a [`Decrypted`] view into it: no copy, no
//! allocation. The replay window is updated only after the tag verified.

mod proxy_uri;
mod recipient;
mod sender;

pub(crate) use recipient::{open, Layout};
pub(crate) use sender::{seal_with, Outgoing};

use crate::class::kept_on_receive;
use crate::crypto::{nonce, nonce_with_piv};
use crate::error::Error;
use crate::id::{Id, IdContext, PartialIv};
use crate::option::OscoreOption;
use crate::NONCE_LEN;
use ssm_coap::{CoapOption, Code, MessageType, MessageWriter, OptionNumber, Options};

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

    /// The end of every response unprotect (§8.4 steps 6–8; RFC 10021 §7.4,
    /// §8.6): the plaintext must be a response, and may carry Observe only
    /// if the request of `binding` did.
    pub(crate) fn response_to(self, binding: &RequestBinding) -> Result<Self, Error> {
        if !self.code.is_response() {
            return Err(Error::MalformedPlaintext);
        }
        if !binding.observe && self.options.get(OptionNumber::OBSERVE).is_some() {
            return Err(Error::UnexpectedObserve);
        }
        Ok(self)
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

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    Request { outer_no_response: bool },
    Response,
}

/// A message's AEAD nonce (§5.2) and the Partial IV and ID it is made of:
/// the message's own Partial IV with its sender's ID, or, for a response
/// without one, its request's (§8.3 step 3, §8.4 step 3). The group-mode
/// keystream (RFC 10021 §4.2) takes the same pair.
#[derive(Clone, Copy)]
pub(crate) struct MessageNonce {
    pub(crate) bytes: [u8; NONCE_LEN],
    pub(crate) piv: PartialIv,
    pub(crate) id: Id,
}

impl MessageNonce {
    /// The nonce of a message from the sender `id` (whose nonce part is
    /// `nonce_base`, see [`crate::crypto::nonce_base`]) that carries
    /// `partial_iv`, answering or being the request of `binding`.
    pub(crate) fn of(
        partial_iv: Option<PartialIv>,
        (id, nonce_base): (&Id, &[u8; NONCE_LEN]),
        common_iv: &[u8; NONCE_LEN],
        binding: &RequestBinding,
    ) -> Self {
        match partial_iv {
            Some(p) => MessageNonce {
                bytes: nonce_with_piv(nonce_base, &p),
                piv: p,
                id: *id,
            },
            None => MessageNonce {
                bytes: nonce(&binding.kid, &binding.partial_iv, common_iv),
                piv: binding.partial_iv,
                id: binding.kid,
            },
        }
    }
}

/// An OSCORE option value as sent or received, on the stack: Group OSCORE
/// puts it into the `external_aad` as it is on the wire (RFC 10021 §3.4).
#[derive(Clone, Copy)]
pub(crate) struct OptionValue {
    buf: [u8; MAX_OPTION_LEN],
    len: usize,
}

impl OptionValue {
    pub(crate) const EMPTY: OptionValue = OptionValue {
        buf: [0; MAX_OPTION_LEN],
        len: 0,
    };

    /// `option` encoded (§6.1), `flags` set in its first byte if it has one
    /// (the Group Flag of RFC 10021 §4.1; 0 for none).
    pub(crate) fn emit(option: &OscoreOption, flags: u8) -> Result<Self, Error> {
        let mut v = Self::EMPTY;
        v.len = option.emit(&mut v.buf)?;
        if let Some(f) = v.buf[..v.len].first_mut() {
            *f |= flags;
        }
        Ok(v)
    }

    /// Keeps a copy of the received value `v`; returns it to work on.
    pub(crate) fn keep(&mut self, v: &[u8]) -> Result<&mut [u8], Error> {
        let c = self.buf.get_mut(..v.len()).ok_or(Error::BadOscoreOption)?;
        c.copy_from_slice(v);
        self.len = v.len();
        Ok(c)
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// The longest OSCORE option value: flags, Partial IV, kid context with its
/// length byte, kid.
pub(crate) const MAX_OPTION_LEN: usize = 1 + 5 + 1 + crate::MAX_ID_CONTEXT_LEN + crate::MAX_ID_LEN;

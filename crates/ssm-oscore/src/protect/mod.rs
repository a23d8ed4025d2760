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
pub(crate) use sender::seal_with;

use crate::class::kept_on_receive;
use crate::error::Error;
use crate::id::{Id, IdContext, PartialIv};
use ssm_coap::{CoapOption, Code, MessageType, MessageWriter, Options};

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

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    Request { outer_no_response: bool },
    Response,
}

/// The longest OSCORE option value: flags, Partial IV, kid context with its
/// length byte, kid.
pub(crate) const MAX_OPTION_LEN: usize = 1 + 5 + 1 + crate::MAX_ID_CONTEXT_LEN + crate::MAX_ID_LEN;

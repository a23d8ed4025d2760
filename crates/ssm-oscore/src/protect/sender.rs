//! Protecting requests and responses, RFC 8613 §8.1 and §8.3.
use super::proxy_uri::ProxyUri;
use super::{Direction, MessageNonce, OptionValue, RequestBinding, RequestOptions, ResponsePiv};
use crate::class::{placement, Placement};
use crate::context::SenderContext;
use crate::crypto::aad;
use crate::error::Error;
use crate::id::PartialIv;
use crate::option::OscoreOption;
use crate::TAG_LEN;
use ssm_coap::{Code, MessageWriter, OptionNumber, OptionWriter, Packet, PAYLOAD_MARKER};

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
        let (msg, binding) = self.start_request(request, opts)?;
        let n = seal(self, &msg, &binding, out)?;
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
        let msg = self.start_response(binding, response, piv)?;
        seal(self, &msg, binding, out)
    }

    /// The steps every request protect begins with (§8.1 steps 1–3; RFC
    /// 10021 §7.1, §8.3): a plain request, a new Sender Sequence Number as
    /// Partial IV, the outer code (§4.2), the option with `kid` and this
    /// context's ID Context as `kid context`, and the binding of the
    /// responses.
    pub(crate) fn start_request<'a>(
        &mut self,
        request: &'a [u8],
        opts: RequestOptions,
    ) -> Result<(Outgoing<'a>, RequestBinding), Error> {
        let plain = Packet::new_checked(request)?;
        if !plain.code().is_request() {
            return Err(Error::Coap(ssm_coap::Error::NonEmptyEmptyMessage));
        }
        let piv = self.sequence.take()?;
        let observe = plain.options().get(OptionNumber::OBSERVE).is_some();
        let binding = RequestBinding {
            kid: self.id,
            partial_iv: piv,
            kid_context: self.id_context,
            observe,
        };
        let no_response = opts.outer_no_response
            && plain.options().get_uint(OptionNumber::NO_RESPONSE) == Some(Ok(26));
        let msg = Outgoing {
            plain,
            outer_code: if observe { Code::FETCH } else { Code::POST },
            option: OscoreOption {
                partial_iv: Some(piv),
                kid_context: self.id_context,
                kid: Some(self.id),
            },
            nonce: self.message_nonce(Some(piv), &binding),
            dir: Direction::Request {
                outer_no_response: no_response,
            },
        };
        Ok((msg, binding))
    }

    /// The steps every response protect begins with (§8.3 steps 1–3; RFC
    /// 10021 §7.3, §8.5): a plain response, the request's nonce or a new
    /// Partial IV, the outer code (§4.2), the option with that Partial IV
    /// only (group and pairwise mode add `kid`).
    pub(crate) fn start_response<'a>(
        &mut self,
        binding: &RequestBinding,
        response: &'a [u8],
        piv: ResponsePiv,
    ) -> Result<Outgoing<'a>, Error> {
        let plain = Packet::new_checked(response)?;
        if !plain.code().is_response() {
            return Err(Error::Coap(ssm_coap::Error::NonEmptyEmptyMessage));
        }
        let partial_iv = match piv {
            ResponsePiv::RequestNonce => None,
            ResponsePiv::Own => Some(self.sequence.take()?),
        };
        let observe = plain.options().get(OptionNumber::OBSERVE).is_some();
        Ok(Outgoing {
            plain,
            outer_code: if observe {
                Code::CONTENT
            } else {
                Code::CHANGED
            },
            option: OscoreOption {
                partial_iv,
                ..OscoreOption::default()
            },
            nonce: self.message_nonce(partial_iv, binding),
            dir: Direction::Response,
        })
    }

    fn message_nonce(&self, partial_iv: Option<PartialIv>, b: &RequestBinding) -> MessageNonce {
        MessageNonce::of(partial_iv, (&self.id, &self.nonce_base), &self.common_iv, b)
    }
}

/// A plain message on its way to be protected: what RFC 8613 and both
/// Group OSCORE modes decide alike before they encrypt.
pub(crate) struct Outgoing<'a> {
    pub(crate) plain: Packet<&'a [u8]>,
    pub(crate) outer_code: Code,
    pub(crate) option: OscoreOption,
    pub(crate) nonce: MessageNonce,
    pub(crate) dir: Direction,
}

impl Outgoing<'_> {
    pub(crate) fn is_request(&self) -> bool {
        matches!(self.dir, Direction::Request { .. })
    }
}

/// Writes header, outer options, then the encrypted plaintext (§5.3, §6),
/// with the `external_aad` of §5.4.
fn seal(
    ctx: &SenderContext,
    msg: &Outgoing<'_>,
    binding: &RequestBinding,
    out: &mut [u8],
) -> Result<usize, Error> {
    let opt = OptionValue::emit(&msg.option, 0)?;
    let (aad, aad_len) = aad(&binding.kid, &binding.partial_iv);
    let (_, end) = seal_with(&ctx.aead, msg, opt.as_bytes(), &aad[..aad_len], out)?;
    Ok(end)
}

/// [`seal`] with the OSCORE option value already encoded (Group OSCORE sets
/// its Group Flag, RFC 10021 §4.1) and the AEAD given. Returns where the
/// ciphertext starts and where the message ends.
pub(crate) fn seal_with(
    aead: &crate::crypto::Aead,
    msg: &Outgoing<'_>,
    opt_val: &[u8],
    aad: &[u8],
    out: &mut [u8],
) -> Result<(usize, usize), Error> {
    let Outgoing {
        plain,
        outer_code,
        dir,
        ..
    } = msg;
    let (outer_code, dir) = (*outer_code, *dir);
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
    let tag = aead.seal(&msg.nonce.bytes, aad, pt)?;
    tag_slot.copy_from_slice(&tag);
    Ok((pt_start, end))
}

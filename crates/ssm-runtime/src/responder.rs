//! The OSCORE server's decisions for one datagram (RFC 8613 §8.2–8.3,
//! App. B.1.2), without I/O: bytes in, bytes out. Randomness (the Echo
//! value) and Message IDs come from the caller.
use ssm_coap::{Code, Message, MessageType, OptionNumber, Packet, Token};
use ssm_oscore::{Error, OscoreOption, ResponsePiv, SecurityContext, SequenceNumberStore};

/// Counters of what the responder did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Requests verified and handed to the application.
    pub accepted: u64,
    /// Echo challenges sent.
    pub echo_challenges: u64,
    /// Requests refused with an OSCORE error code.
    pub refused: u64,
    /// Datagrams dropped without an answer (malformed, not a request).
    pub dropped: u64,
}

/// Serves one unicast OSCORE security context.
pub struct OscoreResponder<S: SequenceNumberStore> {
    ctx: SecurityContext,
    store: S,
    /// What happened so far.
    pub stats: Stats,
}

impl<S: SequenceNumberStore> OscoreResponder<S>
where
    S::Error: core::fmt::Display,
{
    /// Serves `ctx`; `store` persists the sender sequence number used for
    /// responses that carry their own Partial IV.
    pub fn new(ctx: SecurityContext, store: S) -> Self {
        OscoreResponder {
            ctx,
            store,
            stats: Stats::default(),
        }
    }

    /// Handles one datagram. `echo` is a fresh random value used if an Echo
    /// challenge is due; `mid` is a Message ID for a NON response. Returns
    /// the datagram to send back, if any.
    pub fn handle(
        &mut self,
        datagram: &mut [u8],
        echo: [u8; 8],
        mid: u16,
        app: &mut dyn FnMut(&Message) -> Message,
    ) -> Option<Vec<u8>> {
        let (ty, req_mid, token, is_oscore, kid_ok) = {
            let Ok(p) = Packet::new_checked(&*datagram) else {
                self.stats.dropped += 1;
                return None;
            };
            if !p.code().is_request() {
                self.stats.dropped += 1;
                return None;
            }
            let opt = p
                .options()
                .get(OptionNumber::OSCORE)
                .map(|o| OscoreOption::parse(o.value));
            let kid_ok =
                matches!(&opt, Some(Ok(o)) if o.kid.as_ref() == Some(self.ctx.recipient.id()));
            (
                p.msg_type(),
                p.message_id(),
                Token::new(p.token()).ok()?,
                opt.is_some(),
                kid_ok,
            )
        };
        let (rty, rmid) = match ty {
            MessageType::Confirmable => (MessageType::Acknowledgement, req_mid),
            _ => (MessageType::NonConfirmable, mid),
        };
        let plain_error = |code: Code, diag: &str| {
            let mut m = Message::new(rty, code, rmid, token);
            m.add_option_uint(OptionNumber::MAX_AGE, 0);
            m.payload = diag.as_bytes().to_vec();
            m.to_vec()
        };
        if !is_oscore {
            self.stats.refused += 1;
            return Some(plain_error(Code::UNAUTHORIZED, "OSCORE required"));
        }
        if !kid_ok {
            self.stats.refused += 1;
            let e = Error::UnknownKid;
            return Some(plain_error(
                e.coap_code().unwrap_or(Code::UNAUTHORIZED),
                e.diagnostic(),
            ));
        }
        match self.ctx.recipient.unprotect_request(datagram) {
            Ok(d) => {
                self.stats.accepted += 1;
                let binding = d.binding?;
                let request = d.to_message();
                let mut resp = app(&request);
                resp.ty = rty;
                resp.message_id = rmid;
                resp.token = token;
                self.protect(&binding, &resp, ResponsePiv::RequestNonce)
            }
            Err(Error::FreshnessUnknown(binding)) => {
                self.stats.echo_challenges += 1;
                self.ctx.recipient.replay.set_pending_echo(&echo);
                let mut resp = Message::new(rty, Code::UNAUTHORIZED, rmid, token);
                resp.add_option(OptionNumber::ECHO, echo.to_vec());
                // A request of unknown freshness may be a replay of one
                // answered before the restart: never reuse its nonce.
                self.protect(&binding, &resp, ResponsePiv::Own)
            }
            Err(e) => match e.coap_code() {
                Some(code) => {
                    self.stats.refused += 1;
                    tracing::debug!(error = %e, "OSCORE request refused");
                    Some(plain_error(code, e.diagnostic()))
                }
                None => {
                    self.stats.dropped += 1;
                    None
                }
            },
        }
    }

    fn protect(
        &mut self,
        binding: &ssm_oscore::RequestBinding,
        resp: &Message,
        piv: ResponsePiv,
    ) -> Option<Vec<u8>> {
        if piv == ResponsePiv::Own {
            if let Err(e) = self.ctx.sender.sequence.reserve(&mut self.store) {
                tracing::warn!(error = %e, "cannot persist the sender sequence number; response not sent");
                return None;
            }
        }
        let mut out = vec![0u8; resp.encoded_len() + 64];
        match self
            .ctx
            .sender
            .protect_response(binding, &resp.to_vec(), piv, &mut out)
        {
            Ok(n) => {
                out.truncate(n);
                Some(out)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot protect response");
                None
            }
        }
    }
}

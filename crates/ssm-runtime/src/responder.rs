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
    /// challenge is due and none is outstanding; `mid` is a Message ID for a NON response. Returns
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
                // The outstanding value if there is one: a replayed old
                // request (it verifies, so it is challenged too) must not
                // replace the value the real client is about to return.
                let echo = self
                    .ctx
                    .recipient
                    .replay
                    .echo_challenge(&echo)
                    .map_or_else(|| echo.to_vec(), <[u8]>::to_vec);
                let mut resp = Message::new(rty, Code::UNAUTHORIZED, rmid, token);
                resp.add_option(OptionNumber::ECHO, echo);
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
            if let Err(e) = self.ctx.sender.reserve_sequence(&mut self.store) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use ssm_oscore::{ContextParams, ReplayState, ReplayWindow, RequestBinding, SequenceNumber};

    struct NoStore;
    impl SequenceNumberStore for NoStore {
        type Error = core::convert::Infallible;
        fn reserve_block(
            &mut self,
            next: u64,
            k: u64,
        ) -> Result<core::ops::Range<u64>, Self::Error> {
            Ok(ssm_oscore::block_ahead(next, k))
        }
    }

    const SECRET: [u8; 16] = [0x42; 16];

    fn context(sender: &[u8], recipient: &[u8], seq: u64, replay: ReplayState) -> SecurityContext {
        SecurityContext::derive(
            &ContextParams {
                master_secret: &SECRET,
                master_salt: None,
                id_context: None,
                sender_id: ssm_oscore::Id::new(sender).unwrap(),
                recipient_id: ssm_oscore::Id::new(recipient).unwrap(),
            },
            SequenceNumber::volatile(seq),
            replay,
        )
        .unwrap()
    }

    fn app(_: &Message) -> Message {
        Message::new(
            MessageType::Acknowledgement,
            Code::CHANGED,
            0,
            Token::default(),
        )
    }

    /// The switch's side: a protected POST, and the answer decrypted.
    fn request(client: &mut SecurityContext, echo: Option<&[u8]>) -> (Vec<u8>, RequestBinding) {
        let mut m = Message::new(
            MessageType::Confirmable,
            Code::POST,
            7,
            Token::new(&[1, 2]).unwrap(),
        );
        m.set_uri_path("/BinarySwitchResURI");
        if let Some(e) = echo {
            m.add_option(OptionNumber::ECHO, e.to_vec());
        }
        let mut out = vec![0u8; 256];
        let (n, b) = client
            .sender
            .protect_request(&m.to_vec(), &mut out)
            .unwrap();
        out.truncate(n);
        (out, b)
    }

    fn answer(client: &SecurityContext, b: &RequestBinding, mut resp: Vec<u8>) -> Message {
        client
            .recipient
            .unprotect_response(b, &mut resp)
            .unwrap()
            .to_message()
    }

    /// Review finding F4, as the attack: after the light restarts, an
    /// attacker replays one old recorded request between the light's Echo
    /// challenge to the real switch and the switch's retry. The retry with
    /// the Echo value it was given must still be accepted.
    #[test]
    fn replay_between_challenge_and_retry_does_not_stop_echo_recovery() {
        let mut client = context(
            &[0x01],
            &[0x02],
            0,
            ReplayState::Window(ReplayWindow::new(32)),
        );
        // Before the restart: one request, recorded by the attacker.
        let mut light = OscoreResponder::new(
            context(
                &[0x02],
                &[0x01],
                0,
                ReplayState::Window(ReplayWindow::new(32)),
            ),
            NoStore,
        );
        let (recorded, b) = request(&mut client, None);
        let r = light
            .handle(&mut recorded.clone(), [0; 8], 1, &mut app)
            .unwrap();
        assert_eq!(answer(&client, &b, r).code, Code::CHANGED);

        // The light restarts: its replay window is unknown (App. B.1.2).
        let mut light = OscoreResponder::new(
            context(&[0x02], &[0x01], 100, ReplayState::awaiting_echo(32)),
            NoStore,
        );
        let (req, b) = request(&mut client, None);
        let r = light
            .handle(&mut req.clone(), [0xe1; 8], 2, &mut app)
            .unwrap();
        let challenge = answer(&client, &b, r);
        assert_eq!(challenge.code, Code::UNAUTHORIZED);
        let e1 = challenge.option(OptionNumber::ECHO).unwrap().to_vec();

        // The attacker replays the old request, again and again: each one
        // verifies and is challenged, never applied.
        for i in 0..20u8 {
            let r = light
                .handle(&mut recorded.clone(), [i; 8], 3, &mut app)
                .expect("a replay of unknown freshness is challenged");
            let Ok(p) = Packet::new_checked(&r[..]) else {
                panic!("not CoAP")
            };
            assert!(p.options().get(OptionNumber::OSCORE).is_some());
        }
        assert_eq!(light.stats.accepted, 0);

        // The switch's retry with E1 is accepted.
        let (retry, b) = request(&mut client, Some(&e1));
        let r = light
            .handle(&mut retry.clone(), [0xe3; 8], 4, &mut app)
            .unwrap();
        assert_eq!(
            answer(&client, &b, r).code,
            Code::CHANGED,
            "legit retry with E1"
        );
        assert_eq!(light.stats.accepted, 1);
        // Freshness is established: the recorded request is now a replay
        // (refused), the retry is not accepted twice.
        for d in [&recorded, &retry] {
            let r = light.handle(&mut d.clone(), [0; 8], 5, &mut app).unwrap();
            let p = Packet::new_checked(&r[..]).unwrap();
            assert_eq!(p.code(), Code::UNAUTHORIZED);
            assert!(
                p.options().get(OptionNumber::OSCORE).is_none(),
                "plain 4.01 Replay"
            );
        }
        assert_eq!(light.stats.accepted, 1);
    }
}

//! The OSCORE server's decisions for one datagram (RFC 8613 §8.2–8.3,
//! App. B.1.2), without I/O: bytes in, bytes out. Randomness (the Echo
//! value), Message IDs and the time come from the caller.
//!
//! Message deduplication (RFC 7252 §4.5): a retransmitted request (the
//! identical datagram with the same Message ID from the same endpoint,
//! within [`EXCHANGE_LIFETIME`]) gets the cached protected response again;
//! it is not handed to the application a second time and does not hit the
//! replay window (which would answer a plain "4.01 Replay detected" to an
//! update that was applied).
use ssm_coap::{Code, Message, MessageType, OptionNumber, Packet, Token};
use ssm_oscore::{
    Error, OscoreOption, RequestBinding, ResponsePiv, SecurityContext, SequenceNumberStore,
};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How long a response is kept for retransmissions of its request (RFC
/// 7252 §4.8.2 EXCHANGE_LIFETIME, 247 s with the default parameters).
pub const EXCHANGE_LIFETIME: Duration = Duration::from_secs(247);
/// Most responses kept for deduplication per security context (the oldest
/// goes first).
pub const DEDUP_ENTRIES: usize = 32;

/// A recent exchange: the request as received and the response sent.
struct Exchange {
    from: SocketAddr,
    mid: u16,
    request: Vec<u8>,
    response: Vec<u8>,
    at: Instant,
}

/// The bounded, expiring deduplication cache (RFC 7252 §4.5).
#[derive(Default)]
struct Dedup {
    entries: std::collections::VecDeque<Exchange>,
}

impl Dedup {
    fn lookup(
        &mut self,
        from: SocketAddr,
        mid: u16,
        datagram: &[u8],
        now: Instant,
    ) -> Option<&[u8]> {
        self.entries
            .retain(|e| now.saturating_duration_since(e.at) < EXCHANGE_LIFETIME);
        self.entries
            .iter()
            .find(|e| e.from == from && e.mid == mid && e.request == datagram)
            .map(|e| e.response.as_slice())
    }

    fn insert(&mut self, e: Exchange) {
        // A new request with a reused Message ID replaces the old one.
        self.entries
            .retain(|x| !(x.from == e.from && x.mid == e.mid));
        if self.entries.len() >= DEDUP_ENTRIES {
            self.entries.pop_front();
        }
        self.entries.push_back(e);
    }
}

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
    /// Retransmissions answered from the deduplication cache.
    pub duplicates: u64,
}

/// Serves one unicast OSCORE security context.
pub struct OscoreResponder<S: SequenceNumberStore> {
    ctx: SecurityContext,
    store: S,
    dedup: Dedup,
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
            dedup: Dedup::default(),
            stats: Stats::default(),
        }
    }

    /// Handles one datagram. `echo` is a fresh random value used if an Echo
    /// challenge is due and none is outstanding; `mid` is a Message ID for a
    /// NON response. Returns the datagram to send back, if any. No
    /// deduplication (see [`Self::handle_from`]).
    pub fn handle(
        &mut self,
        datagram: &mut [u8],
        echo: [u8; 8],
        mid: u16,
        app: &mut dyn FnMut(&Message) -> Message,
    ) -> Option<Vec<u8>> {
        self.respond(datagram, echo, mid, &mut |m, _| app(m))
    }

    /// Handles one datagram from `from` at `now`, with deduplication (RFC
    /// 7252 §4.5): the identical datagram with the same Message ID from the
    /// same endpoint within [`EXCHANGE_LIFETIME`] gets the response sent
    /// before, byte for byte, and `app` is not called again. `app` also
    /// gets the request's binding (kid, Partial IV), which a notification
    /// of an observation it registers needs (RFC 8613 §8.3).
    pub fn handle_from(
        &mut self,
        datagram: &mut [u8],
        from: SocketAddr,
        now: Instant,
        echo: [u8; 8],
        mid: u16,
        app: &mut dyn FnMut(&Message, &RequestBinding) -> Message,
    ) -> Option<Vec<u8>> {
        let req_mid = Packet::new_checked(&*datagram).ok()?.message_id();
        if let Some(cached) = self.dedup.lookup(from, req_mid, datagram, now) {
            let cached = cached.to_vec();
            self.stats.duplicates += 1;
            return Some(cached);
        }
        let request = datagram.to_vec();
        let protected_before = self.stats.accepted + self.stats.echo_challenges;
        let out = self.respond(datagram, echo, mid, app)?;
        if self.stats.accepted + self.stats.echo_challenges > protected_before {
            // Only protected answers: a refused request is refused again.
            self.dedup.insert(Exchange {
                from,
                mid: req_mid,
                request,
                response: out.clone(),
                at: now,
            });
        }
        Some(out)
    }

    /// Protects a notification of the observation registered by the request
    /// `binding` with the server's own Partial IV (RFC 8613 §4.1.3.5.2,
    /// §8.3.1: every notification after the first carries one; the request
    /// nonce is never used again). The sequence number is reserved on disk
    /// first; `None` if that fails (nothing is sent then).
    pub fn protect_notification(
        &mut self,
        binding: &RequestBinding,
        notification: &Message,
    ) -> Option<Vec<u8>> {
        self.protect(binding, notification, ResponsePiv::Own)
    }

    fn respond(
        &mut self,
        datagram: &mut [u8],
        echo: [u8; 8],
        mid: u16,
        app: &mut dyn FnMut(&Message, &RequestBinding) -> Message,
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
                let mut resp = app(&request, &binding);
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
    use ssm_oscore::{
        ContextParams, Id, NotificationOrder, ReplayState, ReplayWindow, SequenceNumber,
    };

    struct Mem(u64);
    impl SequenceNumberStore for Mem {
        type Error = &'static str;
        fn reserve_block(
            &mut self,
            next: u64,
            k: u64,
        ) -> Result<core::ops::Range<u64>, Self::Error> {
            let b = ssm_oscore::block_ahead(next.max(self.0), k);
            self.0 = b.end;
            Ok(b)
        }
    }

    fn ctx(sender: u8, recipient: u8) -> SecurityContext {
        SecurityContext::derive(
            &ContextParams {
                master_secret: &[0x42; 32],
                master_salt: None,
                id_context: None,
                sender_id: Id::new(&[sender]).unwrap(),
                recipient_id: Id::new(&[recipient]).unwrap(),
            },
            SequenceNumber::resume(0, 8),
            ReplayState::Window(ReplayWindow::new(32)),
        )
        .unwrap()
    }

    fn con_request(
        client: &mut SecurityContext,
        mid: u16,
        observe: bool,
    ) -> (Vec<u8>, RequestBinding) {
        let mut m = Message::new(
            MessageType::Confirmable,
            Code::POST,
            mid,
            Token::new(&[7, 7]).unwrap(),
        );
        m.add_option(OptionNumber::URI_PATH, b"a".to_vec());
        if observe {
            m.code = Code::GET;
            m.add_option_uint(OptionNumber::OBSERVE, 0);
        }
        m.payload = b"\xa1\x65value\xf5".to_vec();
        let mut out = vec![0u8; 256];
        client.sender.reserve_sequence(&mut Mem(0)).unwrap();
        let (n, b) = client
            .sender
            .protect_request(&m.to_vec(), &mut out)
            .unwrap();
        out.truncate(n);
        (out, b)
    }

    fn app_counting(calls: &mut u32) -> impl FnMut(&Message, &RequestBinding) -> Message + '_ {
        move |req: &Message, _: &RequestBinding| {
            *calls += 1;
            let mut r = Message::new(MessageType::Acknowledgement, Code::CHANGED, 0, req.token);
            if req.option_uint(OptionNumber::OBSERVE).is_some() {
                r.code = Code::CONTENT;
                r.add_option_uint(OptionNumber::OBSERVE, 0);
            }
            r.payload = b"ok".to_vec();
            r
        }
    }

    /// F8 as the attack (here: the network): a CON request whose response
    /// is lost is retransmitted byte for byte; the server must answer the
    /// same protected response again (not a plain "4.01 Replay detected")
    /// and must not run the handler a second time.
    #[test]
    fn retransmitted_con_request_gets_the_cached_protected_response() {
        let mut server = OscoreResponder::new(ctx(2, 1), Mem(0));
        let mut client = ctx(1, 2);
        let from: SocketAddr = ([127, 0, 0, 1], 5000).into();
        let now = Instant::now();
        let (wire, binding) = con_request(&mut client, 0x1234, false);
        let mut calls = 0;
        let first = {
            let mut app = app_counting(&mut calls);
            server
                .handle_from(&mut wire.clone(), from, now, [1; 8], 9, &mut app)
                .unwrap()
        };
        // Response lost; the client retransmits the identical datagram.
        let again = {
            let mut app = app_counting(&mut calls);
            server
                .handle_from(
                    &mut wire.clone(),
                    from,
                    now + Duration::from_secs(2),
                    [2; 8],
                    10,
                    &mut app,
                )
                .unwrap()
        };
        assert_eq!(calls, 1, "the handler ran once");
        assert_eq!(first, again, "the cached protected response");
        let mut buf = again.clone();
        let d = client
            .recipient
            .unprotect_response(&binding, &mut buf)
            .unwrap();
        assert_eq!(d.code, Code::CHANGED);
        assert_eq!(server.stats.duplicates, 1);
        assert_eq!(server.stats.accepted, 1);
    }

    #[test]
    fn dedup_is_per_endpoint_and_expires() {
        let mut server = OscoreResponder::new(ctx(2, 1), Mem(0));
        let mut client = ctx(1, 2);
        let from: SocketAddr = ([127, 0, 0, 1], 5000).into();
        let other: SocketAddr = ([127, 0, 0, 1], 5001).into();
        let now = Instant::now();
        let (wire, _) = con_request(&mut client, 1, false);
        let mut calls = 0;
        let mut app = app_counting(&mut calls);
        assert!(server
            .handle_from(&mut wire.clone(), from, now, [1; 8], 9, &mut app)
            .is_some());
        // The same bytes from another endpoint are not a retransmission:
        // the replay window refuses them (plain 4.01).
        let r = server
            .handle_from(&mut wire.clone(), other, now, [1; 8], 9, &mut app)
            .unwrap();
        assert!(Packet::new_checked(&r[..])
            .unwrap()
            .options()
            .get(OptionNumber::OSCORE)
            .is_none());
        // After EXCHANGE_LIFETIME the cache has forgotten it.
        let r = server
            .handle_from(
                &mut wire.clone(),
                from,
                now + EXCHANGE_LIFETIME,
                [1; 8],
                9,
                &mut app,
            )
            .unwrap();
        assert!(Packet::new_checked(&r[..])
            .unwrap()
            .options()
            .get(OptionNumber::OSCORE)
            .is_none());
        drop(app);
        assert_eq!(calls, 1);
    }

    #[test]
    fn dedup_cache_is_bounded() {
        let mut server = OscoreResponder::new(ctx(2, 1), Mem(0));
        let mut client = ctx(1, 2);
        let from: SocketAddr = ([127, 0, 0, 1], 5000).into();
        let now = Instant::now();
        let mut calls = 0;
        let mut app = app_counting(&mut calls);
        let (first, _) = con_request(&mut client, 0, false);
        server.handle_from(&mut first.clone(), from, now, [1; 8], 9, &mut app);
        for mid in 1..=DEDUP_ENTRIES as u16 {
            let (w, _) = con_request(&mut client, mid, false);
            server.handle_from(&mut w.clone(), from, now, [1; 8], 9, &mut app);
        }
        assert!(server.dedup.entries.len() <= DEDUP_ENTRIES);
        // The oldest was evicted: its copy now meets the replay window.
        let r = server
            .handle_from(&mut first.clone(), from, now, [1; 8], 9, &mut app)
            .unwrap();
        assert!(Packet::new_checked(&r[..])
            .unwrap()
            .options()
            .get(OptionNumber::OSCORE)
            .is_none());
    }

    /// Notifications carry the server's own, increasing Partial IV (never
    /// the request nonce after the first response), verify against the
    /// registration, and are ordered by it on the client.
    #[test]
    fn notifications_use_own_partial_iv() {
        let mut server = OscoreResponder::new(ctx(2, 1), Mem(0));
        let mut client = ctx(1, 2);
        let from: SocketAddr = ([127, 0, 0, 1], 5000).into();
        let (wire, binding) = con_request(&mut client, 5, true);
        let mut got = None;
        let first = server
            .handle_from(
                &mut wire.clone(),
                from,
                Instant::now(),
                [1; 8],
                9,
                &mut |req, b| {
                    got = Some(*b);
                    let mut r =
                        Message::new(MessageType::Acknowledgement, Code::CONTENT, 0, req.token);
                    r.add_option_uint(OptionNumber::OBSERVE, 0);
                    r
                },
            )
            .unwrap();
        let server_binding = got.unwrap();
        assert_eq!(server_binding.kid, binding.kid);
        assert_eq!(server_binding.partial_iv, binding.partial_iv);
        assert!(server_binding.observe);
        let mut order = NotificationOrder::new();
        let mut b = first.clone();
        let d = client
            .recipient
            .unprotect_response(&binding, &mut b)
            .unwrap();
        assert!(
            d.partial_iv.is_none(),
            "the first response may use the request nonce"
        );
        assert!(order.accept(None));
        let mut notes = Vec::new();
        for seq in 1..=3u32 {
            let mut n = Message::new(
                MessageType::NonConfirmable,
                Code::CONTENT,
                100 + seq as u16,
                Token::new(&[7, 7]).unwrap(),
            );
            n.add_option_uint(OptionNumber::OBSERVE, seq);
            n.payload = vec![seq as u8];
            notes.push(server.protect_notification(&server_binding, &n).unwrap());
        }
        let mut pivs = Vec::new();
        for n in &notes {
            // The outer Observe is there (RFC 8613 §4.1.3.5.2).
            assert!(Packet::new_checked(&n[..])
                .unwrap()
                .options()
                .get(OptionNumber::OBSERVE)
                .is_some());
            let mut b = n.clone();
            let d = client
                .recipient
                .unprotect_response(&binding, &mut b)
                .unwrap();
            let piv = d.partial_iv.expect("own Partial IV").value();
            assert!(order.accept(Some(piv)));
            pivs.push(piv);
        }
        assert!(pivs.windows(2).all(|w| w[0] < w[1]));
        // A replayed (older) notification is dropped by the order check.
        let mut b = notes[0].clone();
        let d = client
            .recipient
            .unprotect_response(&binding, &mut b)
            .unwrap();
        assert!(!order.accept(d.partial_iv.map(|p| p.value())));
        assert!(server.store.0 > pivs[2], "reserved on disk ahead");
    }
}

#[cfg(test)]
mod echo_tests {
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

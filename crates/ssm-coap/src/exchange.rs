//! One client request exchange, sans-IO (in the style of quinn-proto): the
//! caller owns the socket and the clock, and drives the state machine with
//! [`Exchange::poll_transmit`], [`Exchange::handle_datagram`],
//! [`Exchange::poll_timeout`] and [`Exchange::handle_timeout`], each given
//! `now`. The request is given as bytes (plain CoAP, or an OSCORE message
//! whose outer header carries the type, Message ID and token).
//!
//! What it decides (RFC 7252):
//!
//! * **Retransmission** of a Confirmable request (§4.2): the first timeout
//!   is random between ACK_TIMEOUT and ACK_TIMEOUT × ACK_RANDOM_FACTOR (the
//!   caller gives the random number), doubled after each retransmission;
//!   after MAX_RETRANSMIT retransmissions (§4.8) and the last timeout, the
//!   exchange has timed out. A Non-confirmable request is sent once (§4.3).
//! * **Matching** (§5.3.2, §4.4): an ACK matches by Message ID; an Empty ACK
//!   stops retransmission and a separate response follows (§5.2.2); a
//!   response (piggybacked in the ACK, or separate as CON/NON) matches by
//!   token. A Reset with the request's Message ID ends the exchange (§4.2).
//! * **Source address**: a response to a unicast request must come from the
//!   endpoint the request went to (§5.3.2: "the source endpoint of the
//!   response MUST be the same as the destination endpoint of the original
//!   request"). A response to a multicast request comes from the unicast
//!   address of each responding server (§8.2), so any unicast source is
//!   accepted and a multicast source is not; the exchange then keeps
//!   listening until its deadline, one response per server and more.
//! * **Acknowledging** a Confirmable response (§5.2.2): an Empty ACK with the
//!   response's Message ID is queued for [`Exchange::poll_transmit`], again
//!   for a retransmitted copy (our ACK was lost, §4.5).
use crate::{Code, Error, MessageType, Packet, Token};
use core::net::SocketAddr;
use core::ops::Add;
use core::time::Duration;

/// Transmission parameters, RFC 7252 §4.8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransmissionParams {
    /// ACK_TIMEOUT: the initial retransmission timeout (at least).
    pub ack_timeout: Duration,
    /// ACK_RANDOM_FACTOR in thousandths (1500 = 1.5): the initial timeout
    /// is at most ACK_TIMEOUT × ACK_RANDOM_FACTOR. 1000 turns the
    /// randomisation off.
    pub ack_random_factor_milli: u32,
    /// MAX_RETRANSMIT: retransmissions after the first transmission.
    pub max_retransmit: u32,
}

impl TransmissionParams {
    /// The defaults of RFC 7252 §4.8: 2 s, 1.5, 4.
    pub const RFC7252: TransmissionParams = TransmissionParams {
        ack_timeout: Duration::from_secs(2),
        ack_random_factor_milli: 1500,
        max_retransmit: 4,
    };

    /// The initial timeout for a uniformly random `jitter`: from
    /// ACK_TIMEOUT (`jitter` 0) to ACK_TIMEOUT × ACK_RANDOM_FACTOR
    /// (`jitter` `u16::MAX`), §4.2.
    pub fn initial_timeout(&self, jitter: u16) -> Duration {
        let extra = u128::from(self.ack_random_factor_milli.saturating_sub(1000));
        let base = self.ack_timeout.as_nanos();
        let nanos = base + base * extra * u128::from(jitter) / (1000 * u128::from(u16::MAX));
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// How long after the first transmission a Confirmable exchange with
    /// initial timeout `initial` gives up: the last retransmission's
    /// timeout included, `initial` × (2^(MAX_RETRANSMIT + 1) − 1); with the
    /// largest initial timeout this is MAX_TRANSMIT_WAIT (§4.8.2).
    pub fn give_up_after(&self, initial: Duration) -> Duration {
        let factor = 1u32
            .checked_shl(self.max_retransmit.saturating_add(1))
            .unwrap_or(u32::MAX)
            .saturating_sub(1);
        initial.saturating_mul(factor)
    }

    /// MAX_TRANSMIT_WAIT (§4.8.2).
    pub fn max_transmit_wait(&self) -> Duration {
        self.give_up_after(self.initial_timeout(u16::MAX))
    }
}

impl Default for TransmissionParams {
    fn default() -> Self {
        TransmissionParams::RFC7252
    }
}

/// Where the request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// One endpoint: responses only from it.
    Unicast(SocketAddr),
    /// A group (Non-confirmable requests only, §8.1): responses from any
    /// unicast source, until the deadline.
    Multicast(SocketAddr),
}

impl Destination {
    /// The address the request is sent to.
    pub fn addr(&self) -> SocketAddr {
        match *self {
            Destination::Unicast(a) | Destination::Multicast(a) => a,
        }
    }

    /// Whether a response from `from` may answer a request sent here.
    pub fn accepts_source(&self, from: SocketAddr) -> bool {
        match *self {
            Destination::Unicast(peer) => same_endpoint(peer, from),
            Destination::Multicast(group) => {
                !from.ip().is_multicast() && from.is_ipv4() == group.is_ipv4()
            }
        }
    }
}

/// Whether `a` and `b` are one endpoint: the same port and address (an
/// IPv4-mapped IPv6 address is its IPv4 address), and for IPv6 the same
/// zone where both name one (a socket may report a global address without
/// scope, or a flow label the request did not have).
fn same_endpoint(a: SocketAddr, b: SocketAddr) -> bool {
    let zone = |s: SocketAddr| match s {
        SocketAddr::V6(v6) => v6.scope_id(),
        SocketAddr::V4(_) => 0,
    };
    a.port() == b.port()
        && a.ip().to_canonical() == b.ip().to_canonical()
        && (zone(a) == 0 || zone(b) == 0 || zone(a) == zone(b))
}

/// Why a request cannot start an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeError {
    /// The request does not parse.
    Malformed(Error),
    /// Not a CON or NON request.
    NotARequest,
    /// A multicast request must be Non-confirmable (RFC 7252 §8.1).
    MulticastMustBeNon,
}

impl core::fmt::Display for ExchangeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ExchangeError::Malformed(e) => write!(f, "malformed request: {e}"),
            ExchangeError::NotARequest => f.write_str("not a CON or NON request"),
            ExchangeError::MulticastMustBeNon => {
                f.write_str("a multicast request must be Non-confirmable")
            }
        }
    }
}

/// A datagram to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit<'a> {
    /// Destination.
    pub to: SocketAddr,
    /// The bytes.
    pub bytes: &'a [u8],
}

/// What a received datagram was to the exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// A response to the request: the caller reads it from the bytes it
    /// passed. If it was Confirmable, its ACK is queued.
    Response,
    /// An Empty ACK: retransmission stopped, a separate response follows.
    EmptyAck,
    /// A Reset of the request: the exchange failed.
    Reset,
    /// Not for this exchange (or a duplicate): dropped.
    Ignored(Ignored),
}

/// Why a datagram was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    /// Not a well-formed CoAP message.
    NotCoap,
    /// From an endpoint the request did not go to.
    WrongSource,
    /// A response with another token (perhaps another exchange's, or a
    /// notification of an observation on the same socket).
    WrongToken,
    /// An ACK or Reset with another Message ID.
    WrongMessageId,
    /// A request or an Empty message other than an ACK/Reset of ours.
    NotAResponse,
    /// A copy of a Confirmable response already accepted (its ACK is queued
    /// again).
    Duplicate,
    /// The exchange is over.
    Finished,
}

/// Where the exchange is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Waiting for (more) responses.
    Waiting,
    /// The response came (unicast).
    Answered,
    /// The deadline passed: for a unicast request, without a response; for
    /// a multicast one, the end of listening.
    TimedOut,
    /// The peer reset the request.
    Reset,
}

/// Checks a response against the rules of §5.3.2 outside an exchange's
/// Message ID: from a source `to` accepts, with `token`, a response code.
/// For notifications of an observation (RFC 7641 §3.2) and separate
/// responses. On a match, a Confirmable response's ACK is returned.
pub fn match_response(
    to: &Destination,
    token: &Token,
    from: SocketAddr,
    bytes: &[u8],
) -> Result<Option<[u8; 4]>, Ignored> {
    let p = Packet::new_checked(bytes).map_err(|_| Ignored::NotCoap)?;
    if !to.accepts_source(from) {
        return Err(Ignored::WrongSource);
    }
    if !p.code().is_response() {
        return Err(Ignored::NotAResponse);
    }
    if p.token() != token.as_bytes() {
        return Err(Ignored::WrongToken);
    }
    Ok(match p.msg_type() {
        MessageType::Confirmable => Some(empty_ack(p.message_id())),
        _ => None,
    })
}

/// An Empty ACK of Message ID `mid` (RFC 7252 §3: version 1, type 2, no
/// token, code 0.00).
pub fn empty_ack(mid: u16) -> [u8; 4] {
    let [hi, lo] = mid.to_be_bytes();
    [0x60, Code::EMPTY.0, hi, lo]
}

/// One request's exchange; `I` is the caller's clock (`std::time::Instant`,
/// `tokio::time::Instant`, or a `Duration` since any origin in tests).
#[derive(Debug)]
pub struct Exchange<I, B> {
    request: B,
    to: Destination,
    confirmable: bool,
    mid: u16,
    token: Token,
    status: Status,
    /// The request is due on the wire.
    send_due: bool,
    /// When the next retransmission is due (CON, neither acknowledged nor
    /// answered).
    retransmit_at: Option<I>,
    timeout: Duration,
    retransmits: u32,
    max_retransmit: u32,
    deadline: I,
    acked: bool,
    /// An ACK to send, and the last one sent.
    ack: Option<(SocketAddr, [u8; 4])>,
    ack_out: [u8; 4],
    sent: u32,
    /// The last Confirmable response accepted (source, MID), to recognise
    /// its retransmissions.
    last: Option<(SocketAddr, u16)>,
}

impl<I, B> Exchange<I, B>
where
    I: Copy + Ord + Add<Duration, Output = I>,
    B: AsRef<[u8]>,
{
    /// An exchange for `request` (a CON or NON request) to `to`, starting
    /// at `now`; `jitter` is a uniformly random number for the initial
    /// timeout. A CON request gives up after its retransmissions
    /// ([`TransmissionParams::give_up_after`]), a NON one after
    /// MAX_TRANSMIT_WAIT; [`Self::set_deadline`] changes that (e.g. how
    /// long to collect multicast responses).
    pub fn new(
        now: I,
        request: B,
        to: Destination,
        params: TransmissionParams,
        jitter: u16,
    ) -> Result<Self, ExchangeError> {
        let p = Packet::new_checked(request.as_ref()).map_err(ExchangeError::Malformed)?;
        if !p.code().is_request() {
            return Err(ExchangeError::NotARequest);
        }
        let confirmable = match p.msg_type() {
            MessageType::Confirmable => true,
            MessageType::NonConfirmable => false,
            _ => return Err(ExchangeError::NotARequest),
        };
        if confirmable && matches!(to, Destination::Multicast(_)) {
            return Err(ExchangeError::MulticastMustBeNon);
        }
        let (mid, token) = (p.message_id(), Token::new(p.token()).unwrap_or_default());
        let timeout = params.initial_timeout(jitter);
        let deadline = if confirmable {
            now + params.give_up_after(timeout)
        } else {
            now + params.max_transmit_wait()
        };
        Ok(Exchange {
            request,
            to,
            confirmable,
            mid,
            token,
            status: Status::Waiting,
            send_due: true,
            retransmit_at: confirmable.then(|| now + timeout),
            timeout,
            retransmits: 0,
            max_retransmit: params.max_retransmit,
            deadline,
            acked: false,
            ack: None,
            ack_out: [0; 4],
            sent: 0,
            last: None,
        })
    }

    /// Gives up (or, multicast, stops listening) at `at` instead.
    pub fn set_deadline(&mut self, at: I) {
        self.deadline = at;
    }

    /// The request's token.
    pub fn token(&self) -> &Token {
        &self.token
    }

    /// The request's Message ID.
    pub fn message_id(&self) -> u16 {
        self.mid
    }

    /// Where the exchange is.
    pub fn status(&self) -> Status {
        self.status
    }

    /// Whether an Empty ACK came (a separate response is awaited).
    pub fn acked(&self) -> bool {
        self.acked
    }

    /// How often the request went out so far.
    pub fn transmissions(&self) -> u32 {
        self.sent
    }

    /// The next datagram to send at `now`: a queued ACK, or the request
    /// when it is due. Call until `None`.
    pub fn poll_transmit(&mut self, now: I) -> Option<Transmit<'_>> {
        self.handle_timeout(now);
        if let Some((to, bytes)) = self.ack.take() {
            self.ack_out = bytes;
            return Some(Transmit {
                to,
                bytes: &self.ack_out,
            });
        }
        if self.send_due && self.status == Status::Waiting {
            self.send_due = false;
            self.sent += 1;
            return Some(Transmit {
                to: self.to.addr(),
                bytes: self.request.as_ref(),
            });
        }
        None
    }

    /// When [`Self::handle_timeout`] is due next (`None`: the exchange is
    /// over). A receive waits at most until then.
    pub fn poll_timeout(&self) -> Option<I> {
        if self.status != Status::Waiting {
            return None;
        }
        Some(match self.retransmit_at {
            Some(t) => t.min(self.deadline),
            None => self.deadline,
        })
    }

    /// Advances the timers to `now`: a retransmission becomes due, or the
    /// exchange times out.
    pub fn handle_timeout(&mut self, now: I) {
        if self.status != Status::Waiting {
            return;
        }
        if let Some(at) = self.retransmit_at {
            if now >= at {
                if self.retransmits < self.max_retransmit {
                    // §4.2: the timeout is doubled for each retransmission.
                    self.retransmits += 1;
                    self.timeout = self.timeout.saturating_mul(2);
                    self.retransmit_at = Some(at + self.timeout);
                    self.send_due = true;
                } else {
                    self.retransmit_at = None;
                }
            }
        }
        if now >= self.deadline {
            self.status = Status::TimedOut;
            self.retransmit_at = None;
            self.send_due = false;
        }
    }

    /// A datagram `bytes` from `from` at `now`.
    pub fn handle_datagram(&mut self, now: I, from: SocketAddr, bytes: &[u8]) -> Received {
        self.handle_timeout(now);
        let Ok(p) = Packet::new_checked(bytes) else {
            return Received::Ignored(Ignored::NotCoap);
        };
        if !self.to.accepts_source(from) {
            return Received::Ignored(Ignored::WrongSource);
        }
        let (ty, mid, code) = (p.msg_type(), p.message_id(), p.code());
        if ty == MessageType::Confirmable && self.last == Some((from, mid)) {
            // §4.5: a duplicate; acknowledged again, processed once.
            self.ack = Some((from, empty_ack(mid)));
            return Received::Ignored(Ignored::Duplicate);
        }
        let many = matches!(self.to, Destination::Multicast(_));
        if self.status != Status::Waiting {
            return Received::Ignored(Ignored::Finished);
        }
        match ty {
            MessageType::Acknowledgement | MessageType::Reset if mid != self.mid => {
                Received::Ignored(Ignored::WrongMessageId)
            }
            MessageType::Reset => {
                self.status = Status::Reset;
                self.stop_retransmitting();
                Received::Reset
            }
            MessageType::Acknowledgement if code.is_empty() => {
                if !self.confirmable {
                    return Received::Ignored(Ignored::NotAResponse);
                }
                self.acked = true;
                self.stop_retransmitting();
                Received::EmptyAck
            }
            _ if !code.is_response() => Received::Ignored(Ignored::NotAResponse),
            _ if p.token() != self.token.as_bytes() => Received::Ignored(Ignored::WrongToken),
            _ => {
                if ty == MessageType::Confirmable {
                    self.ack = Some((from, empty_ack(mid)));
                    self.last = Some((from, mid));
                }
                self.stop_retransmitting();
                if !many {
                    self.status = Status::Answered;
                }
                Received::Response
            }
        }
    }

    fn stop_retransmitting(&mut self) {
        self.retransmit_at = None;
        self.send_due = false;
    }
}

#[cfg(all(test, feature = "alloc"))]
mod tests;

//! A small tokio UDP endpoint for unicast OSCORE: a server loop and a
//! confirmable client (RFC 7252 §4.2 retransmission, RFC 8613 App. B.1.2
//! Echo retry).
use crate::random_bytes;
use crate::responder::OscoreResponder;
use ssm_coap::exchange::{match_response, Destination, Exchange, Ignored, Received};
use ssm_coap::{Code, Message, MessageType, OptionNumber, Packet, Token};
use ssm_oscore::{
    Error as OscoreError, NotificationOrder, RequestBinding, SecurityContext, SequenceNumberStore,
};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::time::{timeout_at, Instant};

/// Largest datagram handled.
pub const MAX_DATAGRAM: usize = 1500;

/// How many Echo challenges (each with a new value) [`OscoreClient::request`]
/// answers before it gives up.
pub const MAX_ECHO_RETRIES: u32 = 2;

/// Runs an OSCORE server on `socket` until the task is dropped or the
/// socket fails.
pub async fn serve<S>(
    socket: UdpSocket,
    mut responder: OscoreResponder<S>,
    mut app: impl FnMut(&Message) -> Message + Send,
) -> std::io::Result<()>
where
    S: SequenceNumberStore + Send,
    S::Error: core::fmt::Display,
{
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (n, peer) = socket.recv_from(&mut buf).await?;
        let echo = random_bytes::<8>();
        let mid = u16::from_be_bytes(random_bytes::<2>());
        let now = std::time::Instant::now();
        if let Some(reply) =
            responder.handle_from(&mut buf[..n], peer, now, echo, mid, &mut |m, _| app(m))
        {
            socket.send_to(&reply, peer).await?;
        }
    }
}

/// Client failures.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Socket error.
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    /// No response within the exchange lifetime.
    #[error("no response from {0} after {1} transmissions")]
    Timeout(SocketAddr, u32),
    /// The server answered without OSCORE (an OSCORE-level error).
    #[error("server answered {code} without OSCORE: {diagnostic}")]
    Unprotected {
        /// Response code.
        code: Code,
        /// Diagnostic payload.
        diagnostic: String,
    },
    /// Protecting or verifying failed.
    #[error("OSCORE: {0}")]
    Oscore(#[from] OscoreError),
    /// The sequence number could not be persisted.
    #[error("cannot persist the sequence number: {0}")]
    Store(String),
    /// The server reset the request (RFC 7252 §4.2).
    #[error("{0} reset the request")]
    Reset(SocketAddr),
    /// The server did not accept the observation (no Observe option in its
    /// verified answer).
    #[error("the server did not accept the observation ({0})")]
    NotObserved(Code),
}

/// An OSCORE observation (RFC 8613 §4.1.3.5): the registration's binding
/// (every notification is verified against it) and the Notification Number
/// (§7.4.1).
#[derive(Debug, Clone)]
pub struct Observation {
    /// The server.
    pub peer: SocketAddr,
    /// The registration's token.
    pub token: Token,
    binding: RequestBinding,
    order: NotificationOrder,
    /// Notifications dropped as replayed or older than one accepted.
    pub out_of_order: u64,
}

/// Datagrams from the server kept while an exchange waits for its own
/// response (notifications of an observation on the same socket).
const MAX_PENDING: usize = 16;

/// Transmission parameters (RFC 7252 §4.8 defaults, shortened for LANs).
#[derive(Debug, Clone, Copy)]
pub struct ClientConfig {
    /// Initial retransmission timeout.
    pub ack_timeout: Duration,
    /// Retransmissions after the first transmission.
    pub max_retransmit: u32,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            ack_timeout: Duration::from_secs(2),
            max_retransmit: 4,
        }
    }
}

/// A confirmable OSCORE client for one security context.
pub struct OscoreClient<S: SequenceNumberStore> {
    socket: UdpSocket,
    ctx: SecurityContext,
    store: S,
    next_mid: u16,
    /// Transmission parameters.
    pub config: ClientConfig,
    /// How many times a 4.01 + Echo challenge was answered (App. B.1.2).
    pub echo_retries: u64,
    pending: std::collections::VecDeque<(SocketAddr, Vec<u8>)>,
}

impl<S: SequenceNumberStore> OscoreClient<S>
where
    S::Error: core::fmt::Display,
{
    /// A client on `socket` (bound by the caller).
    pub fn new(socket: UdpSocket, ctx: SecurityContext, store: S) -> Self {
        OscoreClient {
            socket,
            ctx,
            store,
            next_mid: u16::from_be_bytes(random_bytes::<2>()),
            config: ClientConfig::default(),
            echo_retries: 0,
            pending: Default::default(),
        }
    }

    /// The security context (e.g. to inspect the sequence number).
    pub fn context(&self) -> &SecurityContext {
        &self.ctx
    }

    /// Sends `request` (its type, MID and token are set here) protected with
    /// OSCORE and returns the verified response. A 4.01 carrying Echo is
    /// answered by repeating the request with the Echo value inside (RFC
    /// 8613 App. B.1.2): at most [`MAX_ECHO_RETRIES`] times, and only with a
    /// value not tried yet (the server restarted again in between), so a
    /// server that keeps refusing one value ends the exchange.
    pub async fn request(
        &mut self,
        peer: SocketAddr,
        request: Message,
    ) -> Result<Message, ClientError> {
        Ok(self.request_bound(peer, request).await?.0)
    }

    /// Registers an observation (RFC 8613 §4.1.3.5.1): `request` is a GET
    /// to which Observe 0 is added, sent protected (inner and outer
    /// Observe). Returns the verified first response and the observation
    /// whose notifications [`Self::next_notification`] verifies.
    pub async fn observe(
        &mut self,
        peer: SocketAddr,
        mut request: Message,
    ) -> Result<(Message, Observation), ClientError> {
        request.set_option_uint(OptionNumber::OBSERVE, 0);
        let (first, binding, piv) = self.request_bound(peer, request).await?;
        if first.option_uint(OptionNumber::OBSERVE).is_none() {
            return Err(ClientError::NotObserved(first.code));
        }
        let mut order = NotificationOrder::new();
        order.accept(piv);
        Ok((
            first.clone(),
            Observation {
                peer,
                token: first.token,
                binding,
                order,
                out_of_order: 0,
            },
        ))
    }

    /// The next verified, in-order notification of `obs` before `deadline`
    /// (`None`: none came). Datagrams that are not OSCORE, do not verify
    /// against the registration, or carry a Partial IV not above the
    /// Notification Number (a replay or an older notification, RFC 8613
    /// §7.4.1, RFC 7641 §3.4) are dropped. Confirmable ones are
    /// acknowledged.
    pub async fn next_notification(
        &mut self,
        obs: &mut Observation,
        deadline: Instant,
    ) -> Result<Option<Message>, ClientError> {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            let (len, from) = match self.pending.iter().position(|(f, _)| *f == obs.peer) {
                Some(i) => {
                    let Some((from, d)) = self.pending.remove(i) else {
                        continue;
                    };
                    let n = d.len().min(buf.len());
                    buf[..n].copy_from_slice(&d[..n]);
                    (n, from)
                }
                None => match timeout_at(deadline, self.socket.recv_from(&mut buf)).await {
                    Ok(r) => r?,
                    Err(_) => return Ok(None),
                },
            };
            let source = Destination::Unicast(obs.peer);
            let Ok(ack) = match_response(&source, &obs.token, from, &buf[..len]) else {
                continue;
            };
            let is_oscore = Packet::new_checked(&buf[..len])
                .is_ok_and(|p| p.options().get(OptionNumber::OSCORE).is_some());
            if !is_oscore {
                continue;
            }
            let verified = self
                .ctx
                .recipient
                .unprotect_response(&obs.binding, &mut buf[..len])
                .map(|d| (d.partial_iv.map(|p| p.value()), d.to_message()));
            let Ok((piv, m)) = verified else {
                tracing::debug!(peer = %obs.peer, "notification does not verify; dropped");
                continue;
            };
            if let Some(ack) = ack {
                self.socket.send_to(&ack, obs.peer).await?;
            }
            if !obs.order.accept(piv) {
                obs.out_of_order += 1;
                tracing::debug!(peer = %obs.peer, ?piv, "replayed or older notification; dropped");
                continue;
            }
            return Ok(Some(m));
        }
    }

    async fn request_bound(
        &mut self,
        peer: SocketAddr,
        mut request: Message,
    ) -> Result<(Message, RequestBinding, Option<u64>), ClientError> {
        let mut echo_retries = 0;
        loop {
            let (response, binding, piv) = self.exchange(peer, &request).await?;
            if response.code == Code::UNAUTHORIZED && echo_retries < MAX_ECHO_RETRIES {
                if let Some(echo) = response.option(OptionNumber::ECHO) {
                    if request.option(OptionNumber::ECHO) != Some(echo) {
                        request.set_option(OptionNumber::ECHO, echo.to_vec());
                        echo_retries += 1;
                        self.echo_retries += 1;
                        continue;
                    }
                }
            }
            return Ok((response, binding, piv));
        }
    }

    async fn exchange(
        &mut self,
        peer: SocketAddr,
        request: &Message,
    ) -> Result<(Message, RequestBinding, Option<u64>), ClientError> {
        let mut req = request.clone();
        req.ty = MessageType::Confirmable;
        req.message_id = self.next_mid;
        self.next_mid = self.next_mid.wrapping_add(1);
        req.token = Token::new(&random_bytes::<8>()).unwrap_or_default();
        self.ctx
            .sender
            .reserve_sequence(&mut self.store)
            .map_err(|e| ClientError::Store(e.to_string()))?;
        let mut wire = vec![0u8; req.encoded_len() + 64];
        let (n, binding) = self.ctx.sender.protect_request(&req.to_vec(), &mut wire)?;
        wire.truncate(n);

        let params = crate::client::lan_params(self.config.ack_timeout, self.config.max_retransmit);
        let to = Destination::Unicast(peer);
        let mut ex = Exchange::new(Instant::now(), wire, to, params, 0)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            let sent = ex.transmissions();
            crate::client::send_due(&self.socket, &mut ex).await?;
            if sent > 0 && ex.transmissions() > sent {
                tracing::debug!(attempt = sent, %peer, "retransmitting");
            }
            let Some(wake) = ex.poll_timeout() else {
                break;
            };
            let Ok(r) = timeout_at(wake, self.socket.recv_from(&mut buf)).await else {
                ex.handle_timeout(Instant::now());
                continue;
            };
            let (len, from) = r?;
            match ex.handle_datagram(Instant::now(), from, &buf[..len]) {
                Received::Response => {}
                Received::Reset => return Err(ClientError::Reset(peer)),
                Received::Ignored(Ignored::WrongToken) => {
                    // Perhaps a notification of an observation on this
                    // socket: kept for `next_notification`.
                    let is_oscore = Packet::new_checked(&buf[..len])
                        .is_ok_and(|p| p.options().get(OptionNumber::OSCORE).is_some());
                    if is_oscore {
                        if self.pending.len() >= MAX_PENDING {
                            self.pending.pop_front();
                        }
                        self.pending.push_back((from, buf[..len].to_vec()));
                    }
                    continue;
                }
                _ => continue,
            }
            crate::client::send_due(&self.socket, &mut ex).await?;
            let has_oscore = Packet::new_checked(&buf[..len])
                .is_ok_and(|p| p.options().get(OptionNumber::OSCORE).is_some());
            if !has_oscore {
                let m = Message::parse(&buf[..len]).map_err(OscoreError::from)?;
                return Err(ClientError::Unprotected {
                    code: m.code,
                    diagnostic: String::from_utf8_lossy(&m.payload).into_owned(),
                });
            }
            let d = self
                .ctx
                .recipient
                .unprotect_response(&binding, &mut buf[..len])?;
            return Ok((d.to_message(), binding, d.partial_iv.map(|p| p.value())));
        }
        Err(ClientError::Timeout(peer, self.config.max_retransmit + 1))
    }
}

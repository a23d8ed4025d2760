//! Client side: discovery by multicast, plain unicast requests and Observe,
//! and the SSM sender (one OSCORE-protected multicast UPDATE per command,
//! the same datagram sent to every configured group; its sequence number
//! comes from a store shared safely by every process on the state dir).
use crate::multicast::{all_ocf_nodes, sender_v4, sender_v6, ALL_COAP_NODES_V4};
use crate::netif::for_socket;
use crate::netif::NetIf;
use crate::random_bytes;
use crate::store::FileSequenceStore;
use ssm_coap::block::{Block2Progress, Block2Reassembler, BlockError};
use ssm_coap::exchange::{
    match_response, Destination, Exchange, ExchangeError, Ignored, Received, TransmissionParams,
};
use ssm_coap::{Code, Message, MessageType, Token};
use ssm_ocf::discovery::{parse_links, Link};
use ssm_ocf::{message, ssm};
use ssm_oscore::{SenderContext, SequenceNumber};
use std::io;
use std::net::{IpAddr, SocketAddr, SocketAddrV6};
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::time::{timeout_at, Instant};

/// How far ahead a client reserves SSM sequence numbers.
pub const SSN_K: u64 = 64;

/// Where multicast goes: which interfaces, families and IPv6 scopes.
#[derive(Debug, Clone)]
pub struct MulticastScope {
    /// Interfaces (named by the user).
    pub interfaces: Vec<String>,
    /// Send to 224.0.1.187.
    pub ipv4: bool,
    /// IPv6 scopes to send to (2 = ff02, 3 = ff03, 5 = ff05).
    pub ipv6_scopes: Vec<u8>,
    /// Destination port (5683).
    pub port: u16,
    /// TTL / hop limit (1 keeps it on the link).
    pub hops: u32,
}

/// One sender socket per (interface, family) with the group addresses it
/// sends to.
pub struct MulticastTargets {
    /// (socket, destinations).
    pub targets: Vec<(UdpSocket, Vec<SocketAddr>)>,
}

impl MulticastTargets {
    /// Opens the sender sockets, each pinned to its interface.
    pub fn open(scope: &MulticastScope) -> io::Result<Self> {
        let mut targets = Vec::new();
        for name in &scope.interfaces {
            let nif = NetIf::by_name(name)?;
            if !scope.ipv6_scopes.is_empty() && !nif.is_loopback() {
                let s = sender_v6(nif.index, scope.hops)?;
                let dests = scope
                    .ipv6_scopes
                    .iter()
                    .map(|sc| {
                        SocketAddr::V6(SocketAddrV6::new(
                            all_ocf_nodes(*sc),
                            scope.port,
                            0,
                            if *sc <= 2 { nif.index } else { 0 },
                        ))
                    })
                    .collect();
                targets.push((s, dests));
            }
            if scope.ipv4 {
                targets.push((
                    sender_v4(nif.ipv4_addr()?, scope.hops)?,
                    vec![SocketAddr::from((ALL_COAP_NODES_V4, scope.port))],
                ));
            }
        }
        if targets.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "no multicast destination (IPv6 multicast does not work on lo: use --ipv4)",
            ));
        }
        Ok(MulticastTargets { targets })
    }

    /// Every destination.
    pub fn destinations(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.targets.iter().flat_map(|(_, d)| d.iter().copied())
    }
}

/// Multicast discovery: NON `GET /oic/res?<query>` to every target, then
/// the unicast replies that arrive within `wait`, by responder. A device
/// answers a multicast request with the first Block2 block only
/// ([`crate::discovery`]); the rest is fetched from it by unicast.
pub async fn discover(
    targets: &MulticastTargets,
    query: Option<&str>,
    wait: Duration,
) -> io::Result<Vec<(SocketAddr, Vec<Link>)>> {
    let mut out = Vec::new();
    for (from, m) in multicast_get(targets, "/oic/res", query, wait).await? {
        match rest_by_unicast(from, "/oic/res", query, m).await {
            Ok(m) => {
                if let Ok(p) = message::payload(&m) {
                    out.push((from, parse_links(&p)));
                }
            }
            Err(e) => tracing::debug!(%from, error = %e, "discovery: the rest of the answer"),
        }
    }
    Ok(out)
}

/// If `first` is block 0 of a Block2 response with more to come (RFC 7959
/// §2.2), fetches the other blocks of `href?query` from `peer` by unicast
/// (same block size, at most 64 blocks) and returns the whole response;
/// otherwise `first` as it is.
pub async fn rest_by_unicast(
    peer: SocketAddr,
    href: &str,
    query: Option<&str>,
    first: Message,
) -> io::Result<Message> {
    let bad = |e: BlockError| io::Error::new(io::ErrorKind::InvalidData, format!("{href}: {e}"));
    let mut step = Block2Reassembler::start(first).map_err(bad)?;
    let mut socket = None;
    // Bounded: the reassembler refuses more than MAX_BLOCKS blocks.
    loop {
        match step {
            Block2Progress::Complete(m) => return Ok(m),
            Block2Progress::More(r, value) => {
                let socket = match &socket {
                    Some(s) => s,
                    None => socket.insert(socket_for(peer).await?),
                };
                let mut req = message::request(MessageType::Confirmable, Code::GET, href, query);
                req.set_option_uint(ssm_coap::OptionNumber::BLOCK2, value);
                let part = request(socket, peer, req, Duration::from_millis(500), 3).await?;
                step = r.push(part).map_err(bad)?;
            }
        }
    }
}

/// NON `GET href?query` to every target; the successful unicast replies
/// that arrive within `wait`, one per responder. One
/// [`Exchange`] per sender socket, its datagram sent once (NON, RFC 7252
/// §8.1) to each group of that socket; replies from any unicast source
/// (§8.2).
pub async fn multicast_get(
    targets: &MulticastTargets,
    href: &str,
    query: Option<&str>,
    wait: Duration,
) -> io::Result<Vec<(SocketAddr, Message)>> {
    let mut req = message::request(MessageType::NonConfirmable, Code::GET, href, query);
    req.message_id = u16::from_be_bytes(random_bytes::<2>());
    req.token = Token::new(&random_bytes::<8>()).unwrap_or_default();
    let bytes = req.to_vec();
    let start = Instant::now();
    let mut exchanges = Vec::new();
    for (s, dests) in &targets.targets {
        let Some(group) = dests.first() else {
            continue;
        };
        let to = Destination::Multicast(*group);
        let mut ex = Exchange::new(start, bytes.as_slice(), to, TransmissionParams::RFC7252, 0)
            .map_err(invalid_input)?;
        ex.set_deadline(start + wait);
        if let Some(t) = ex.poll_transmit(start) {
            for d in dests {
                s.send_to(t.bytes, *d).await?;
            }
        }
        exchanges.push((s, ex));
    }
    let mut found: Vec<(SocketAddr, Message)> = Vec::new();
    // Replies queue in each socket meanwhile; collecting one socket after
    // the other until the shared deadline loses none.
    for (s, ex) in exchanges {
        for (from, m) in collect(s, ex).await? {
            if !found.iter().any(|(f, _)| *f == from) {
                found.push((from, m));
            }
        }
    }
    Ok(found)
}

async fn collect(
    s: &UdpSocket,
    mut ex: Exchange<Instant, &[u8]>,
) -> io::Result<Vec<(SocketAddr, Message)>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 2048];
    while let Some(wake) = ex.poll_timeout() {
        match timeout_at(wake, s.recv_from(&mut buf)).await {
            Err(_) => ex.handle_timeout(Instant::now()),
            Ok(r) => {
                let (n, from) = r?;
                let got = ex.handle_datagram(Instant::now(), from, &buf[..n]);
                send_acks(s, &mut ex).await;
                if got != Received::Response {
                    continue;
                }
                if let Ok(m) = Message::parse(&buf[..n]) {
                    if m.code.class() == 2 {
                        out.push((from, m));
                    }
                }
            }
        }
    }
    Ok(out)
}

/// A socket for unicast requests to `peer`'s family.
pub async fn socket_for(peer: SocketAddr) -> io::Result<UdpSocket> {
    match peer.ip() {
        IpAddr::V4(_) => UdpSocket::bind("0.0.0.0:0").await,
        IpAddr::V6(_) => UdpSocket::bind("[::]:0").await,
    }
}

/// The transmission parameters of this runtime's plain requests: RFC 7252
/// §4.2 back-off from `ack_timeout` with `retransmits` retransmissions, and
/// ACK_RANDOM_FACTOR 1 (the timings the CLI documents stay exact).
pub(crate) fn lan_params(ack_timeout: Duration, retransmits: u32) -> TransmissionParams {
    TransmissionParams {
        ack_timeout,
        ack_random_factor_milli: 1000,
        max_retransmit: retransmits,
    }
}

pub(crate) fn invalid_input(e: ExchangeError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, e.to_string())
}

/// Sends what `ex` has due (the request or a retransmission); errors are
/// the socket's.
pub(crate) async fn send_due<B: AsRef<[u8]>>(
    socket: &UdpSocket,
    ex: &mut Exchange<Instant, B>,
) -> io::Result<()> {
    while let Some(t) = ex.poll_transmit(Instant::now()) {
        socket.send_to(t.bytes, t.to).await?;
    }
    Ok(())
}

/// Sends the ACKs `ex` has queued. Best effort: a lost ACK only makes the
/// peer retransmit (RFC 7252 §4.2), and the exchange acknowledges the copy.
pub(crate) async fn send_acks<B: AsRef<[u8]>>(socket: &UdpSocket, ex: &mut Exchange<Instant, B>) {
    while let Some(t) = ex.poll_transmit(Instant::now()) {
        let _ = socket.send_to(t.bytes, t.to).await;
    }
}

/// A confirmable plain request with retransmission (RFC 7252 §4.2:
/// `attempts` transmissions, the first timeout `ack_timeout`, doubled
/// after each); returns the response, which must come from `peer`. An
/// Empty ACK stops retransmission and the separate response is awaited
/// until the retransmissions would have ended; a Reset ends the exchange.
pub async fn request(
    socket: &UdpSocket,
    peer: SocketAddr,
    mut req: Message,
    ack_timeout: Duration,
    attempts: u32,
) -> io::Result<Message> {
    req.ty = MessageType::Confirmable;
    req.message_id = u16::from_be_bytes(random_bytes::<2>());
    req.token = Token::new(&random_bytes::<8>()).unwrap_or_default();
    let to = Destination::Unicast(for_socket(socket, peer));
    let params = lan_params(ack_timeout, attempts.max(1) - 1);
    let started = Instant::now();
    let mut ex = Exchange::new(started, req.to_vec(), to, params, 0).map_err(invalid_input)?;
    let mut buf = vec![0u8; 2048];
    let mut garbage = 0u32;
    loop {
        send_due(socket, &mut ex).await?;
        let Some(wake) = ex.poll_timeout() else {
            break;
        };
        let Ok(r) = timeout_at(wake, socket.recv_from(&mut buf)).await else {
            ex.handle_timeout(Instant::now());
            continue;
        };
        let (n, from) = r?;
        match ex.handle_datagram(Instant::now(), from, &buf[..n]) {
            Received::Response => {
                send_acks(socket, &mut ex).await;
                return Message::parse(&buf[..n])
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()));
            }
            Received::Reset => {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionReset,
                    format!("{peer} reset the request (RFC 7252 §4.2)"),
                ))
            }
            Received::Ignored(Ignored::NotCoap) => garbage += 1,
            _ => {}
        }
    }
    if garbage > 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{peer} answered {garbage} datagram(s) that are not CoAP: is it an OCF device?"
            ),
        ));
    }
    Err(io::Error::new(
        io::ErrorKind::TimedOut,
        format!(
            "no response from {peer} ({} attempt(s) in {:.1} s): is the device on, and is this its address?",
            ex.transmissions(),
            started.elapsed().as_secs_f32()
        ),
    ))
}

/// Waits for the next notification of an observation started with
/// `token` (acknowledging confirmable ones), from any source: prefer
/// [`next_notification_from`], which holds notifications to the source
/// rule of RFC 7252 §5.3.2.
pub async fn next_notification(
    socket: &UdpSocket,
    token: &Token,
    deadline: Instant,
) -> io::Result<Option<Message>> {
    next_notification_inner(socket, None, token, deadline).await
}

/// Waits for the next notification from `peer` of an observation started
/// with `token` (RFC 7641 §3.2; confirmable ones acknowledged).
pub async fn next_notification_from(
    socket: &UdpSocket,
    peer: SocketAddr,
    token: &Token,
    deadline: Instant,
) -> io::Result<Option<Message>> {
    let peer = for_socket(socket, peer);
    next_notification_inner(socket, Some(peer), token, deadline).await
}

async fn next_notification_inner(
    socket: &UdpSocket,
    peer: Option<SocketAddr>,
    token: &Token,
    deadline: Instant,
) -> io::Result<Option<Message>> {
    let mut buf = vec![0u8; 2048];
    while let Ok(r) = timeout_at(deadline, socket.recv_from(&mut buf)).await {
        let (n, from) = r?;
        // Without a peer, the source is taken as it comes.
        let source = Destination::Unicast(peer.unwrap_or(from));
        let Ok(ack) = match_response(&source, token, from, &buf[..n]) else {
            continue;
        };
        let Ok(m) = Message::parse(&buf[..n]) else {
            continue;
        };
        if let Some(ack) = ack {
            let _ = socket.send_to(&ack, from).await;
        }
        return Ok(Some(m));
    }
    Ok(None)
}

/// An SSM client: the credtype-128 sender context and its sequence-number
/// store.
pub struct SsmSender {
    ctx: SenderContext,
    store: FileSequenceStore,
}

/// One datagram sent.
#[derive(Debug, Clone)]
pub struct Sent {
    /// Group address.
    pub to: SocketAddr,
    /// Its Partial IV.
    pub piv: u64,
    /// Its size.
    pub len: usize,
}

impl SsmSender {
    /// From a checked SSM client credential; the sequence number resumes
    /// from `store` (never below a stored `ssn` in the credential).
    pub fn new(cred: &ssm_ocf::cred::OscoreCred, store: FileSequenceStore) -> io::Result<Self> {
        let stored = store.load()?.max(cred.ssn.unwrap_or(0));
        let ctx = ssm::sender_context(cred, SequenceNumber::resume(stored, SSN_K))
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        Ok(SsmSender { ctx, store })
    }

    /// The next sequence number.
    pub fn next_sequence_number(&self) -> u64 {
        self.ctx.sequence().peek()
    }

    /// Protects `request` with a fresh sequence number (reserved on disk
    /// first, under the store's lock).
    pub fn protect(&mut self, request: &Message) -> io::Result<(Vec<u8>, u64)> {
        let mut lock = self.store.lock()?;
        protect_reserved(&mut self.ctx, &mut lock, request)
    }

    /// Sends one SSM UPDATE of `props` to `href`: protected **once** (one
    /// Partial IV per command) and the identical datagram sent to every
    /// destination (scope and family). Identical bytes are no nonce reuse;
    /// a light joined to several groups applies the first copy and drops
    /// the others as duplicates. The sequence store stays locked from the
    /// reservation until the last copy is sent, so concurrent senders on
    /// one state dir put their datagrams on the wire in sequence-number
    /// order (a light's replay window sees them in order).
    pub async fn send(
        &mut self,
        targets: &MulticastTargets,
        href: &str,
        props: &ciborium::Value,
        no_response: bool,
    ) -> io::Result<Vec<Sent>> {
        let mid = u16::from_be_bytes(random_bytes::<2>());
        let token = Token::new(&random_bytes::<8>()).unwrap_or_default();
        let req = ssm::update_request(href, props, mid, token, no_response);
        let mut lock = self.store.lock()?;
        let (bytes, piv) = protect_reserved(&mut self.ctx, &mut lock, &req)?;
        let mut sent = Vec::new();
        for (s, dests) in &targets.targets {
            for d in dests {
                s.send_to(&bytes, *d).await?;
                sent.push(Sent {
                    to: *d,
                    piv,
                    len: bytes.len(),
                });
            }
        }
        drop(lock);
        Ok(sent)
    }
}

fn protect_reserved(
    ctx: &mut SenderContext,
    lock: &mut crate::store::SequenceLock<'_>,
    request: &Message,
) -> io::Result<(Vec<u8>, u64)> {
    ctx.reserve_sequence(lock)?;
    let piv = ctx.sequence().peek();
    let mut out = vec![0u8; request.encoded_len() + 64];
    let (n, _) = ctx
        .protect_request(&request.to_vec(), &mut out)
        .map_err(|e| io::Error::other(e.to_string()))?;
    out.truncate(n);
    Ok((out, piv))
}

/// The response code and CBOR body of a response, for display.
pub fn describe(m: &Message) -> (Code, Option<serde_json::Value>) {
    let body = if m.payload.is_empty() {
        None
    } else {
        message::payload(m).ok().map(|v| ssm_ocf::cbor::to_json(&v))
    };
    (m.code, body)
}

//! Client side: discovery by multicast, plain unicast requests and Observe,
//! and the SSM sender (one OSCORE-protected multicast UPDATE per command,
//! the same datagram sent to every configured group; its sequence number
//! comes from a store shared safely by every process on the state dir).
use crate::multicast::{all_ocf_nodes, sender_v4, sender_v6, ALL_COAP_NODES_V4};
use crate::netif::for_socket;
use crate::netif::NetIf;
use crate::random_bytes;
use crate::store::FileSequenceStore;
use ssm_coap::{Code, Message, MessageType, Packet, Token};
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
    let Some((0, true, size)) = message::block2(&first) else {
        return Ok(first);
    };
    let bad = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
    let socket = socket_for(peer).await?;
    let szx = (size / 16).trailing_zeros();
    let mut payload = first.payload.clone();
    for num in 1..64u32 {
        let mut req = message::request(MessageType::Confirmable, Code::GET, href, query);
        req.set_option_uint(ssm_coap::OptionNumber::BLOCK2, (num << 4) | szx);
        let r = request(&socket, peer, req, Duration::from_millis(500), 3).await?;
        let Some((n, more, got)) = message::block2(&r) else {
            return Err(bad(format!(
                "block {num} of {href}: {} without Block2",
                r.code
            )));
        };
        if r.code != first.code || n != num || got != size {
            return Err(bad(format!("block {num} of {href}: {} block {n}", r.code)));
        }
        payload.extend_from_slice(&r.payload);
        if !more {
            let mut whole = first;
            whole.payload = payload;
            whole.remove_option(ssm_coap::OptionNumber::BLOCK2);
            whole.remove_option(ssm_coap::OptionNumber::SIZE2);
            return Ok(whole);
        }
    }
    Err(bad(format!("{href}: more than 64 blocks")))
}

/// NON `GET href?query` to every target; the successful unicast replies
/// that arrive within `wait`, one per responder.
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
    for (s, dests) in &targets.targets {
        for d in dests {
            s.send_to(&bytes, *d).await?;
        }
    }
    let deadline = Instant::now() + wait;
    let mut found: Vec<(SocketAddr, Message)> = Vec::new();
    // Replies queue in each socket meanwhile; collecting one socket after
    // the other until the shared deadline loses none.
    for (s, _) in &targets.targets {
        for (from, m) in collect(s, &req, deadline).await? {
            if !found.iter().any(|(f, _)| *f == from) {
                found.push((from, m));
            }
        }
    }
    Ok(found)
}

async fn collect(
    s: &UdpSocket,
    req: &Message,
    deadline: Instant,
) -> io::Result<Vec<(SocketAddr, Message)>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 2048];
    while let Ok(r) = timeout_at(deadline, s.recv_from(&mut buf)).await {
        let (n, from) = r?;
        let Ok(m) = Message::parse(&buf[..n]) else {
            continue;
        };
        if m.token != req.token || !m.code.is_response() {
            continue;
        }
        ack_if_confirmable(s, &m, from).await;
        if m.code.class() == 2 {
            out.push((from, m));
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

/// A confirmable plain request with retransmission (RFC 7252 §4.2);
/// returns the response.
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
    let bytes = req.to_vec();
    let mut buf = vec![0u8; 2048];
    let mut wait = ack_timeout;
    let mut garbage = 0u32;
    let started = Instant::now();
    for _ in 0..attempts.max(1) {
        socket.send_to(&bytes, for_socket(socket, peer)).await?;
        let deadline = Instant::now() + wait;
        wait *= 2;
        while let Ok(r) = timeout_at(deadline, socket.recv_from(&mut buf)).await {
            let (n, _) = r?;
            let Ok(m) = Message::parse(&buf[..n]) else {
                garbage += 1;
                continue;
            };
            if m.token == req.token && m.code.is_response() {
                ack_if_confirmable(socket, &m, peer).await;
                return Ok(m);
            }
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
            attempts.max(1),
            started.elapsed().as_secs_f32()
        ),
    ))
}

/// Waits for the next notification of an observation started with
/// `token` (acknowledging confirmable ones).
pub async fn next_notification(
    socket: &UdpSocket,
    token: &Token,
    deadline: Instant,
) -> io::Result<Option<Message>> {
    let mut buf = vec![0u8; 2048];
    while let Ok(r) = timeout_at(deadline, socket.recv_from(&mut buf)).await {
        let (n, from) = r?;
        let Ok(m) = Message::parse(&buf[..n]) else {
            continue;
        };
        if m.token != *token || !m.code.is_response() {
            continue;
        }
        ack_if_confirmable(socket, &m, from).await;
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

/// Parses a datagram's header only (for tests that count replies).
pub fn is_coap(bytes: &[u8]) -> bool {
    Packet::new_checked(bytes).is_ok()
}

/// Acknowledges a confirmable response (RFC 7252 §4.2). Best effort: a lost
/// ACK only makes the peer retransmit.
async fn ack_if_confirmable(socket: &UdpSocket, m: &Message, to: SocketAddr) {
    if m.ty == MessageType::Confirmable {
        let ack = Message::new(
            MessageType::Acknowledgement,
            Code::EMPTY,
            m.message_id,
            Token::default(),
        );
        let _ = socket.send_to(&ack.to_vec(), for_socket(socket, to)).await;
    }
}

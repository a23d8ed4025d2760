//! The unicast socket: plain requests, pair-wise OSCORE requests (credtype
//! 64, RFC 8613 §8.2) through the peer's [`OscoreResponder`](crate::responder::OscoreResponder),
//! Observe resets (RFC 7641 §3.6); DTLS records are handed to [`super::dtls`].
use super::notify::{notify, send_all};
use super::{after_request, renamed, Datagrams, DeviceEvent, PairwiseContext, State, BLOCK_SIZE};
use crate::netif::normalise;
use crate::random_bytes;
use ssm_coap::{Code, Message, MessageType, OptionNumber, Packet};
use ssm_ocf::cred::CredType;
use ssm_ocf::device::{reply, Channel, RequestMeta, Security};
use ssm_oscore::OscoreOption;
use std::io;
use std::net::{Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use tokio::net::UdpSocket;
use tokio::sync::broadcast;

/// The unicast socket on `port` (0: an ephemeral one), IPv6 dual-stack
/// where available.
pub(super) fn socket(port: u16) -> io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = match Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP)) {
        Ok(s) => {
            s.set_only_v6(false)?;
            s.bind(&SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)).into())?;
            s
        }
        Err(_) => {
            // No IPv6 on this host.
            let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
            s.bind(&SocketAddr::from(([0, 0, 0, 0], port)).into())?;
            s
        }
    };
    s.set_nonblocking(true)?;
    UdpSocket::from_std(s.into())
}

/// Receives unicast datagrams: DTLS records go to [`super::dtls`], CoAP
/// (plain or OSCORE) to [`handle_unicast`].
pub(super) async fn receive_loop(
    socket: Arc<UdpSocket>,
    state: Arc<Mutex<State>>,
    events: broadcast::Sender<DeviceEvent>,
) {
    let mut buf = vec![0u8; 1500];
    loop {
        let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
            return;
        };
        let peer = normalise(peer);
        let out = {
            let Ok(mut st) = state.lock() else { return };
            if matches!(buf.first(), Some(20..=25)) {
                super::dtls::handle_dtls(&mut st, &buf[..n], peer, &events)
            } else {
                handle_unicast(&mut st, &mut buf[..n], peer, &events)
            }
        };
        send_all(&socket, out).await;
    }
}

fn handle_unicast(
    st: &mut State,
    datagram: &mut [u8],
    peer: SocketAddr,
    events: &broadcast::Sender<DeviceEvent>,
) -> Datagrams {
    let (kid, ty, is_request, mid) = match Packet::new_checked(&*datagram) {
        Ok(p) => (
            p.options()
                .get(OptionNumber::OSCORE)
                .and_then(|o| OscoreOption::parse(o.value).ok())
                .and_then(|o| o.kid),
            p.msg_type(),
            p.code().is_request(),
            p.message_id(),
        ),
        Err(_) => return Vec::new(),
    };
    if ty == MessageType::Reset {
        // RFC 7641 §3.6: matched by the Message ID of the notification.
        st.device.reset(peer, mid);
        return Vec::new();
    }
    if !is_request {
        return Vec::new();
    }
    let mut changed = None;
    let mut new_name = None;
    let mut svr = (false, false);
    let mut out = Vec::new();
    if let Some(kid) = kid {
        let State { device, oscore, .. } = st;
        let Some(PairwiseContext {
            subject, responder, ..
        }) = oscore.pairwise_mut(&kid)
        else {
            // Unknown kid: 4.01 (RFC 8613 §8.2), plain.
            if let Ok(req) = Message::parse(datagram) {
                let mut r = reply(&req, Code::UNAUTHORIZED);
                r.message_id = if r.ty == MessageType::Acknowledgement {
                    r.message_id
                } else {
                    u16::from_be_bytes(random_bytes::<2>())
                };
                r.payload = b"Security context not found".to_vec();
                out.push((peer, r.to_vec()));
            }
            return out;
        };
        let subject = *subject;
        let mid = u16::from_be_bytes(random_bytes::<2>());
        let mut app = |req: &Message, binding: &ssm_oscore::RequestBinding| {
            let meta = RequestMeta {
                multicast: false,
                security: Security::Oscore {
                    subject,
                    credtype: CredType::PairwiseOscore,
                },
                peer: Channel::Oscore {
                    addr: peer,
                    binding: *binding,
                },
            };
            let o = device.handle(req, &meta);
            changed = o.changed;
            new_name = o.renamed;
            svr = (o.svr_changed, o.creds_changed);
            o.response.unwrap_or_else(|| reply(req, Code::NOT_FOUND))
        };
        let now = std::time::Instant::now();
        if let Some(bytes) =
            responder.handle_from(datagram, peer, now, random_bytes::<8>(), mid, &mut app)
        {
            out.push((peer, bytes));
        }
    } else {
        let Ok(req) = Message::parse(datagram) else {
            return out;
        };
        let meta = RequestMeta {
            multicast: false,
            security: Security::None,
            peer: Channel::Plain(peer),
        };
        let o = st.device.handle(&req, &meta);
        changed = o.changed;
        new_name = o.renamed;
        svr = (o.svr_changed, o.creds_changed);
        if let Some(r) = o.response {
            let mut r = ssm_ocf::message::apply_block2(&req, r, BLOCK_SIZE);
            if r.ty == MessageType::NonConfirmable {
                r.message_id = u16::from_be_bytes(random_bytes::<2>());
            }
            out.push((peer, r.to_vec()));
        }
    }
    after_request(st, svr.0, svr.1);
    if let Some(name) = new_name {
        renamed(st, name, events);
    }
    if let Some(href) = changed {
        let state = st
            .device
            .representation(&href)
            .map(|v| ssm_ocf::cbor::to_json(&v))
            .unwrap_or_default();
        let _ = events.send(DeviceEvent::UnicastApplied {
            href: href.clone(),
            state,
        });
        out.extend(notify(st, &href));
    }
    out
}

//! The multicast sockets: SSM updates (verified, the replay floor made
//! durable *before* the update is applied, never answered) and plain
//! discovery (on-link sources and the named site prefixes only,
//! rate-limited, after a Leisure, RFC 7252 §8.2).
use super::notify::{notify, send_all};
use super::{Datagrams, DeviceEvent, State};
use crate::discovery::{leisure, OnLink, MULTICAST_BLOCK_SIZE};
use crate::journal::FloorJournal;
use crate::netif::{for_socket, normalise};
use crate::random_bytes;
use crate::store::atomic_write;
use ssm_coap::{Code, Message, MessageType, OptionNumber, Packet};
use ssm_ocf::device::{Channel, RequestMeta, Security};
use ssm_ocf::ssm::{DropReason, Verified};
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::net::UdpSocket;
use tokio::sync::broadcast;

/// Where a device's datagrams of one group come from: its own socket, or
/// its queue of a [`super::hub::GroupHub`] shared with the other devices of
/// the process.
pub(super) enum GroupInput {
    Socket(UdpSocket),
    Hub(tokio::sync::mpsc::Receiver<super::hub::Datagram>),
}

impl GroupInput {
    async fn next(&mut self, buf: &mut [u8]) -> Option<(usize, SocketAddr)> {
        match self {
            GroupInput::Socket(s) => s.recv_from(buf).await.ok(),
            GroupInput::Hub(rx) => {
                let (d, peer) = rx.recv().await?;
                let n = d.len().min(buf.len());
                buf[..n].copy_from_slice(&d[..n]);
                Some((n, peer))
            }
        }
    }
}

/// Receives on one multicast group: SSM updates (verified, floor
/// persisted, applied; never answered) and plain discovery.
pub(super) async fn receive_loop(
    mut input: GroupInput,
    link: Arc<OnLink>,
    unicast: Arc<UdpSocket>,
    state: Arc<Mutex<State>>,
    events: broadcast::Sender<DeviceEvent>,
    ssm_order: Arc<tokio::sync::Mutex<()>>,
) {
    let mut buf = vec![0u8; 1500];
    loop {
        let Some((n, peer)) = input.next(&mut buf).await else {
            return;
        };
        let peer = normalise(peer);
        let order = ssm_order.lock().await;
        let step = {
            let Ok(mut st) = state.lock() else { return };
            handle_multicast(&mut st, &mut buf[..n], peer, &link, &events)
        };
        let out = match step {
            MulticastStep::Done(out) => out,
            MulticastStep::Persist {
                accepted,
                journal,
                path,
                floor,
                bytes,
            } => {
                // The floor must be durable before the update is applied.
                // The write runs on tokio's blocking pool, not on a worker
                // and without the state lock: the floor writes of many
                // devices in one process (and the other processes') then
                // overlap, and the file system commits them together.
                let written = match journal {
                    // One commit for every device of the process.
                    Some((j, key)) => j.write(&key, bytes).await,
                    None => tokio::task::spawn_blocking(move || atomic_write(&path, &bytes))
                        .await
                        .map_err(io::Error::other)
                        .and_then(|r| r),
                };
                match written {
                    Ok(()) => {
                        let Ok(mut st) = state.lock() else { return };
                        // Only now does the receiver's floor rise.
                        st.oscore.ssm.floor_persisted(&accepted.kid, floor);
                        apply_accepted(&mut st, &accepted, &events)
                    }
                    Err(e) => {
                        // Without a durable floor a restart could accept
                        // this datagram again: do not apply it.
                        tracing::error!(error = %e, "cannot persist the SSM replay floor; update not applied");
                        Vec::new()
                    }
                }
            }
        };
        drop(order);
        send_all(&unicast, out).await;
    }
}

/// What to do with a multicast datagram after the verification step.
enum MulticastStep {
    /// Handled (sent back: discovery replies and notifications).
    Done(Datagrams),
    /// A verified SSM update whose replay floor must be persisted before
    /// it is applied.
    Persist {
        accepted: ssm_ocf::ssm::Accepted,
        journal: Option<(Arc<FloorJournal>, String)>,
        path: PathBuf,
        /// The floor of `accepted.kid` to make durable, and the encoded
        /// floors with it.
        floor: u64,
        bytes: Vec<u8>,
    },
}

fn handle_multicast(
    st: &mut State,
    datagram: &mut [u8],
    peer: SocketAddr,
    link: &OnLink,
    events: &broadcast::Sender<DeviceEvent>,
) -> MulticastStep {
    let is_oscore = match Packet::new_checked(&*datagram) {
        // Multicast requests are NON (RFC 7252 §8.1): a CON one is not
        // answered, acknowledged or applied.
        Ok(p) if p.msg_type() == MessageType::Confirmable => {
            drop_one(st, DropReason::ConfirmableMulticast, events);
            return MulticastStep::Done(Vec::new());
        }
        Ok(p) => p.options().get(OptionNumber::OSCORE).is_some(),
        Err(_) => {
            drop_one(st, DropReason::Malformed, events);
            return MulticastStep::Done(Vec::new());
        }
    };
    if !is_oscore {
        // Plain multicast (discovery) is unauthenticated, so its answers
        // must not make the device a reflection amplifier (discovery.rs):
        // only on-link sources, a token bucket per source, the first
        // Block2 block only, after a random Leisure (RFC 7252 §8.2).
        let Ok(req) = Message::parse(datagram) else {
            return MulticastStep::Done(Vec::new());
        };
        if !link.contains(peer) && !st.discovery.site.iter().any(|p| p.contains(peer)) {
            tracing::trace!(%peer, "plain multicast request from an off-link source ignored");
            if req.code != Code::GET {
                // Counted as before: an unprotected multicast update.
                drop_one(st, DropReason::Unprotected, events);
            }
            return MulticastStep::Done(Vec::new());
        }
        let meta = RequestMeta {
            multicast: true,
            security: Security::None,
            peer: Channel::Plain(peer),
        };
        let o = st.device.handle(&req, &meta);
        match o.response {
            Some(r)
                if st
                    .discovery
                    .limiter
                    .allow(peer.ip(), std::time::Instant::now()) =>
            {
                let mut r = ssm_ocf::message::apply_block2(&req, r, MULTICAST_BLOCK_SIZE);
                r.message_id = u16::from_be_bytes(random_bytes::<2>());
                let (socket, bytes) = (st.discovery.leisure_socket.clone(), r.to_vec());
                let delay = leisure(random_bytes::<4>());
                // At most GLOBAL_BURST + GLOBAL_RATE × LEISURE of these
                // wait at a time (the rate limiter's global bucket).
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    if let Err(e) = socket.send_to(&bytes, for_socket(&socket, peer)).await {
                        tracing::debug!(%peer, error = %e, "send failed");
                    }
                });
            }
            Some(_) => tracing::trace!(%peer, "multicast answer rate-limited"),
            None => {
                if req.code != Code::GET {
                    drop_one(st, DropReason::Unprotected, events);
                }
            }
        }
        return MulticastStep::Done(Vec::new());
    }
    // SSM: whatever happens below, nothing is sent to the peer.
    match st.oscore.ssm.receive(datagram) {
        Ok(Verified {
            accepted,
            persist: Some(floor),
        }) => MulticastStep::Persist {
            journal: st.persist.floor_journal.clone(),
            path: st.persist.dir.floors_path(),
            bytes: serde_json::to_vec(&st.oscore.ssm.floors_with(&accepted.kid, floor))
                .unwrap_or_default(),
            floor,
            accepted,
        },
        // The durable floor already covers it.
        Ok(Verified {
            accepted,
            persist: None,
        }) => MulticastStep::Done(apply_accepted(st, &accepted, events)),
        Err(reason) => {
            drop_one(st, reason, events);
            MulticastStep::Done(Vec::new())
        }
    }
}

/// Applies a verified SSM update whose floor is durable; returns the
/// Observe notifications to send.
fn apply_accepted(
    st: &mut State,
    accepted: &ssm_ocf::ssm::Accepted,
    events: &broadcast::Sender<DeviceEvent>,
) -> Datagrams {
    match st.device.apply_ssm(accepted) {
        Ok(changed) => {
            st.stats.ssm_applied += 1;
            let href = accepted.request.uri_path();
            let state = st
                .device
                .representation(&href)
                .map(|v| ssm_ocf::cbor::to_json(&v))
                .unwrap_or_default();
            let _ = events.send(DeviceEvent::SsmApplied {
                href: href.clone(),
                state,
                from: accepted.subject,
                piv: accepted.piv,
                at: std::time::Instant::now(),
            });
            match changed {
                Some(h) => notify(st, &h),
                None => Vec::new(),
            }
        }
        Err(refusal) => {
            tracing::debug!(%refusal, "verified SSM update refused");
            let _ = events.send(DeviceEvent::Refused(refusal));
            Vec::new()
        }
    }
}

pub(super) fn drop_one(
    st: &mut State,
    reason: DropReason,
    events: &broadcast::Sender<DeviceEvent>,
) {
    st.stats.drops.count(reason);
    let n = st.stats.drops.total();
    // Rate-limited: the first few, then every 1000th.
    if n <= 16 || n.is_multiple_of(1000) {
        tracing::debug!(?reason, total = n, "multicast datagram dropped");
    }
    let _ = events.send(DeviceEvent::Dropped(reason));
}

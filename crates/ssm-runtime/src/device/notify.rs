//! Observe notifications (RFC 7641), each over its observer's channel.
use super::{Datagrams, PairwiseContext, State};
use crate::netif::for_socket;
use crate::random_bytes;
use ssm_ocf::device::Channel;
use tokio::net::UdpSocket;

/// Sends each datagram to its peer (in the socket's address family).
pub(super) async fn send_all(socket: &UdpSocket, out: Datagrams) {
    for (peer, bytes) in out {
        if let Err(e) = socket.send_to(&bytes, for_socket(socket, peer)).await {
            tracing::debug!(%peer, error = %e, "send failed");
        }
    }
}

/// `href` changed. Notifications for it, each over its observer's channel: plain as a
/// plain datagram; OSCORE protected with that observer's pair-wise context
/// and the device's own Partial IV (reserved on disk first); DTLS in its
/// session. A secured observer whose context or session is gone gets
/// nothing, never plaintext.
pub(super) fn notify(st: &mut State, href: &str) -> Datagrams {
    // Called for every change: the state to restore at power-on, too.
    super::resources::changed(st);
    let mut mid = || u16::from_be_bytes(random_bytes::<2>());
    let due = st
        .device
        .notifications(href, std::time::Instant::now(), &mut mid);
    let mut out = Vec::new();
    for (channel, m) in due {
        match channel {
            Channel::Plain(addr) => out.push((addr, m.to_vec())),
            Channel::Oscore { addr, binding } => {
                let Some(PairwiseContext { responder, .. }) = st.oscore.pairwise_mut(&binding.kid)
                else {
                    tracing::debug!(%addr, "OSCORE observer without context; not notified");
                    continue;
                };
                if let Some(bytes) = responder.protect_notification(&binding, &m) {
                    out.push((addr, bytes));
                }
            }
            Channel::Dtls(addr) => {
                let Some(p) = st.dtls.get_mut(&addr).map(|e| &mut e.session) else {
                    tracing::debug!(%addr, "DTLS observer without session; not notified");
                    continue;
                };
                if let Err(e) = p.session.send_app_data(&m.to_vec()) {
                    tracing::debug!(%addr, error = %e, "DTLS notification");
                }
                while let Some(d) = p.session.poll_transmit() {
                    out.push((addr, d));
                }
            }
        }
    }
    out
}

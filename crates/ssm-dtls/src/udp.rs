//! Minimal async glue for driving a [`DtlsSession`] over a real UDP socket.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::time::Instant;

use crate::config::DtlsConfig;
use crate::error::{Error, Result};
use crate::session::DtlsSession;

/// Sends everything `session` has queued for `peer`
/// ([`DtlsSession::poll_transmit`]) on `socket`.
pub async fn send_pending(
    session: &mut DtlsSession,
    socket: &UdpSocket,
    peer: SocketAddr,
) -> Result<()> {
    while let Some(datagram) = session.poll_transmit() {
        socket.send_to(&datagram, peer).await?;
    }
    Ok(())
}

/// Runs a client handshake with `peer` over `socket` and returns the
/// established session.
///
/// Datagrams from other addresses are ignored (left unread would block the
/// socket, so they are read and dropped), as are datagrams larger than the
/// configured maximum. Retransmissions follow OpenSSL's DTLS timer. Fails with
/// [`Error::Timeout`] after `timeout` or the config's handshake timeout,
/// whichever is shorter, and with the session's error if the handshake fails
/// (any final alert is sent first).
pub async fn connect(
    socket: &UdpSocket,
    peer: SocketAddr,
    cfg: &DtlsConfig,
    timeout: Duration,
) -> Result<DtlsSession> {
    let deadline = Instant::now() + timeout;
    let mut session = DtlsSession::client(cfg)?;
    // One byte more than allowed, so an oversized datagram is detected rather
    // than silently truncated.
    let mut buf = vec![0u8; cfg.max_datagram() + 1];
    loop {
        send_pending(&mut session, socket, peer).await?;
        if session.is_established() {
            return Ok(session);
        }
        if let Some(e) = session.failure() {
            return Err(e.clone());
        }
        if session.is_closed() {
            return Err(Error::Closed);
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(Error::Timeout);
        }
        let left = deadline - now;
        let wait = session.next_timeout().map_or(left, |t| t.min(left));
        match tokio::time::timeout(wait, socket.recv_from(&mut buf)).await {
            Ok(Ok((n, from))) => {
                if from == peer {
                    // Failures are reported at the top of the loop, after any
                    // alert has been sent; oversized datagrams are dropped.
                    let _ = session.handle_datagram(&buf[..n]);
                }
            }
            Ok(Err(e)) => return Err(e.into()),
            Err(_elapsed) => {
                // Reported at the top of the loop, like above.
                let _ = session.handle_timeout();
            }
        }
    }
}

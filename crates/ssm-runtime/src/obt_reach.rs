//! What an onboarding tool reads off devices without a session: their
//! `/oic/res` (where they serve DTLS, which resources accept SSM) and who
//! answers a multicast `GET /oic/sec/doxm`.
use crate::client::request;
use crate::obt_transport::ObtError;
use ssm_coap::block::{Block2Progress, Block2Reassembler, BlockError};
use ssm_coap::{Code, MessageType};
use ssm_ocf::discovery::{parse_links, secure_port, Link};
use ssm_ocf::{cbor, message, Uuid};
use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::UdpSocket;

/// The device's links: its whole `/oic/res` (plain unicast, every Block2
/// block).
pub async fn device_links(socket: &UdpSocket, peer: SocketAddr) -> Result<Vec<Link>, ObtError> {
    let get = message::request(MessageType::Confirmable, Code::GET, "/oic/res", None);
    let first = request(socket, peer, get.clone(), Duration::from_millis(400), 2).await?;
    let bad = |e: BlockError| ObtError::Protocol(peer, format!("/oic/res: {}", e.0));
    let mut step = Block2Reassembler::start(first).map_err(bad)?;
    // The later blocks from the same socket: the reference stack keeps its
    // block-wise state per client endpoint and resets a block request from
    // another port. Bounded: the reassembler refuses more than 64 blocks.
    let whole = loop {
        match step {
            Block2Progress::Complete(m) => break m,
            Block2Progress::More(r, value) => {
                let mut more = get.clone();
                more.set_option_uint(ssm_coap::OptionNumber::BLOCK2, value);
                // A later block lost is not a silent device.
                let part = request(socket, peer, more, Duration::from_millis(400), 2)
                    .await
                    .map_err(|e| ObtError::Protocol(peer, format!("/oic/res: {e}")))?;
                step = r.push(part).map_err(bad)?;
            }
        }
    };
    let p =
        message::payload(&whole).map_err(|c| ObtError::Protocol(peer, format!("/oic/res: {c}")))?;
    Ok(parse_links(&p))
}

/// Where the device at `peer` (its plain CoAP address) serves DTLS: the
/// `coaps://` endpoint of its doxm link (the reference devices use a port
/// of their own; ours list the same port), else `peer` itself.
pub fn secure_peer(links: &[Link], peer: SocketAddr) -> SocketAddr {
    let mut at = peer;
    if let Some(p) = secure_port(links, &peer.ip().to_string()) {
        at.set_port(p);
    }
    at
}

/// [`secure_peer`] from the device's `/oic/res`; `peer` when it does not
/// tell (a device that lists nothing serves DTLS beside plain CoAP). A
/// device that does not answer at all is not asked for DTLS either: the
/// error is what a handshake with it would end in, a second sooner than
/// the plain request's timeout plus the handshake's.
pub(crate) async fn find_secure_peer(
    socket: &UdpSocket,
    peer: SocketAddr,
) -> Result<(SocketAddr, Vec<Link>), ObtError> {
    match device_links(socket, peer).await {
        Ok(l) => Ok((secure_peer(&l, peer), l)),
        Err(ObtError::Io(e)) if e.kind() == io::ErrorKind::TimedOut => Err(ObtError::Handshake {
            peer,
            reason: format!("no answer to plain CoAP either: {e}"),
        }),
        Err(e) => {
            tracing::debug!(%peer, error = %e, "no /oic/res: DTLS at the plain CoAP port");
            Ok((peer, Vec::new()))
        }
    }
}

/// What a device says of SSM in its unsecured resources: whether it hosts
/// a resource that accepts SSM UPDATEs (a link of its `/oic/res` with the
/// SSM endpoints, REFERENCE-SSM §5: it can be a group member), and whether
/// it can send SSM (credtype 128 in its doxm `sct`: it can command a group).
pub async fn ssm_capabilities(peer: SocketAddr) -> Result<(bool, bool), ObtError> {
    let socket = crate::client::socket_for(peer).await?;
    let get = |href: &str| message::request(MessageType::Confirmable, Code::GET, href, None);
    // Every block from this socket (the reference stack resets a block
    // request from another port).
    let member = match device_links(&socket, peer).await {
        Ok(links) => links.iter().any(|l| l.accepts_ssm()),
        // An answer that does not decode lists no SSM resource.
        Err(ObtError::Protocol(..)) => false,
        Err(e) => return Err(e),
    };
    let d = request(
        &socket,
        peer,
        get("/oic/sec/doxm"),
        Duration::from_millis(500),
        3,
    )
    .await?;
    let sender = message::payload(&d)
        .ok()
        .and_then(|v| cbor::get(&v, "sct")?.as_integer())
        .and_then(|i| u32::try_from(i).ok())
        .is_some_and(|sct| sct & 128 != 0);
    Ok((member, sender))
}

/// Every device answering a multicast `GET /oic/sec/doxm` on the given
/// targets: (unicast address, device UUID, owned).
pub async fn discover_devices(
    targets: &crate::client::MulticastTargets,
    wait: Duration,
) -> io::Result<Vec<(SocketAddr, Uuid, bool)>> {
    let replies = crate::client::multicast_get(targets, "/oic/sec/doxm", None, wait).await?;
    let mut out: Vec<(SocketAddr, Uuid, bool)> = replies
        .into_iter()
        .filter_map(|(from, m)| {
            let d = message::payload(&m).ok()?;
            let id = cbor::get(&d, "deviceuuid")?.as_text()?.parse().ok()?;
            let owned = cbor::get(&d, "owned")?.as_bool()?;
            Some((from, id, owned))
        })
        .collect();
    out.sort_by_key(|d| d.1);
    out.dedup_by_key(|d| d.1);
    Ok(out)
}

/// Unowned devices answering a multicast `GET /oic/sec/doxm?owned=FALSE`
/// on the given targets: (unicast address, current device UUID).
pub async fn discover_unowned(
    targets: &crate::client::MulticastTargets,
    wait: Duration,
) -> io::Result<Vec<(SocketAddr, Uuid)>> {
    let replies =
        crate::client::multicast_get(targets, "/oic/sec/doxm", Some("owned=FALSE"), wait).await?;
    Ok(replies
        .into_iter()
        .filter_map(|(from, m)| {
            let d = message::payload(&m).ok()?;
            let id = cbor::get(&d, "deviceuuid")?.as_text()?.parse().ok()?;
            Some((from, id))
        })
        .collect())
}

//! Which multicast groups a device joins on its interfaces, and how it
//! listens to each: a socket of its own, or its queue of a
//! [`GroupHub`](super::GroupHub).
use super::multicast::GroupInput;
use super::{DeviceConfig, DeviceEvent, State};
use crate::discovery::OnLink;
use crate::multicast::{all_ocf_nodes, join_v4, join_v6, ALL_COAP_NODES_V4};
use crate::netif::NetIf;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::UdpSocket;
use tokio::sync::broadcast;

/// A multicast group to join on an interface.
pub(super) struct GroupSpec {
    ifindex: u32,
    group: SocketAddr,
    /// The interface's IPv4 address (IPv4 groups are joined by address).
    v4_iface: Option<std::net::Ipv4Addr>,
}

impl GroupSpec {
    fn open(&self) -> io::Result<UdpSocket> {
        match (self.group, self.v4_iface) {
            (SocketAddr::V4(g), Some(a)) => join_v4(*g.ip(), g.port(), a),
            (SocketAddr::V6(g), _) => join_v6(*g.ip(), g.port(), self.ifindex),
            _ => Err(io::Error::other(
                "an IPv4 group without an interface address",
            )),
        }
    }
}

/// A multicast group and the on-link prefixes of its interface.
pub(super) type GroupSocket = (GroupSpec, Arc<OnLink>);

/// The multicast groups to join on each configured interface (with the
/// interface's on-link prefixes) and the unicast endpoints to announce
/// for `port`.
pub(super) fn join_groups(
    config: &DeviceConfig,
    port: u16,
) -> io::Result<(Vec<GroupSocket>, Vec<String>)> {
    let mut mcast = Vec::new();
    let mut endpoints = Vec::new();
    for name in &config.interfaces {
        let nif = NetIf::by_name(name)?;
        let v6 = config.ipv6 && !nif.is_loopback();
        let link = Arc::new(nif.on_link());
        if config.ipv4 {
            let spec = GroupSpec {
                ifindex: nif.index,
                group: SocketAddr::from((ALL_COAP_NODES_V4, config.port)),
                v4_iface: Some(nif.ipv4_addr()?),
            };
            mcast.push((spec, link.clone()));
        }
        if v6 {
            for scope in &config.ipv6_scopes {
                let spec = GroupSpec {
                    ifindex: nif.index,
                    group: SocketAddr::from((all_ocf_nodes(*scope), config.port)),
                    v4_iface: None,
                };
                mcast.push((spec, link.clone()));
            }
        }
        endpoints.extend(nif.endpoints(
            port,
            config.ipv4,
            v6 || (config.ipv6 && nif.is_loopback()),
        ));
    }
    Ok((mcast, endpoints))
}

/// Each group's input for the device whose state is `state`: joined now
/// (its own socket) or subscribed to `config.group_hub`.
pub(super) fn inputs(
    mcast: Vec<GroupSocket>,
    config: &DeviceConfig,
    state: &Arc<Mutex<State>>,
    events: &broadcast::Sender<DeviceEvent>,
) -> io::Result<Vec<(GroupInput, Arc<OnLink>)>> {
    mcast
        .into_iter()
        .map(|(spec, link)| {
            let input = match &config.group_hub {
                Some(hub) => GroupInput::Hub(hub.subscribe(
                    spec.ifindex,
                    spec.group,
                    || spec.open(),
                    state,
                    events,
                )?),
                None => GroupInput::Socket(spec.open()?),
            };
            Ok((input, link))
        })
        .collect()
}

/// Starts the receive task of each group input. One SSM update of the
/// device at a time from receive to apply, across its groups, so floor
/// writes land in order.
pub(super) fn receivers(
    inputs: Vec<(GroupInput, Arc<OnLink>)>,
    unicast: &Arc<UdpSocket>,
    state: &Arc<Mutex<State>>,
    events: &broadcast::Sender<DeviceEvent>,
    span: &tracing::Span,
) -> Vec<tokio::task::JoinHandle<()>> {
    use tracing::Instrument;
    let ssm_order = Arc::new(tokio::sync::Mutex::new(()));
    inputs
        .into_iter()
        .map(|(input, link)| {
            tokio::spawn(
                super::multicast::receive_loop(
                    input,
                    link,
                    unicast.clone(),
                    state.clone(),
                    events.clone(),
                    ssm_order.clone(),
                )
                .instrument(span.clone()),
            )
        })
        .collect()
}

//! Multicast sockets for the All OCF Nodes groups, always pinned to an
//! interface somebody named: joining or sending on an unnamed interface
//! would reach every device of a real building network.
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use tokio::net::UdpSocket;

/// IPv4 All CoAP Nodes, which OCF uses for IPv4 (224.0.1.187).
pub const ALL_COAP_NODES_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 1, 187);
/// The CoAP port every OCF multicast uses.
pub const COAP_PORT: u16 = 5683;

/// A socket that receives `group`:`port` on the interface with address
/// `iface` only. Several can share the port (SO_REUSEADDR/SO_REUSEPORT), so
/// many devices can live on one host.
pub fn join_v4(group: Ipv4Addr, port: u16, iface: Ipv4Addr) -> io::Result<UdpSocket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    // Binding to the group address (not INADDR_ANY) keeps unicast traffic
    // for this port on other sockets.
    s.bind(&SocketAddr::V4(SocketAddrV4::new(group, port)).into())?;
    s.join_multicast_v4(&group, &iface)?;
    s.set_multicast_if_v4(&iface)?;
    UdpSocket::from_std(s.into())
}

/// A socket for sending to IPv4 multicast groups out of interface `iface`
/// only, with the given TTL (1 keeps it on the link). Bound to an ephemeral
/// port on `iface`.
pub fn sender_v4(iface: Ipv4Addr, ttl: u32) -> io::Result<UdpSocket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_nonblocking(true)?;
    s.set_multicast_if_v4(&iface)?;
    s.set_multicast_ttl_v4(ttl)?;
    s.set_multicast_loop_v4(true)?;
    s.bind(&SocketAddr::V4(SocketAddrV4::new(iface, 0)).into())?;
    UdpSocket::from_std(s.into())
}

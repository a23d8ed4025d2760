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
    s.set_multicast_all_v4(false)?;
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

/// The IPv6 All OCF Nodes groups of a scope: 2 link-local, 3 realm-local,
/// 5 site-local (`ff0X::158`).
pub fn all_ocf_nodes(scope: u8) -> std::net::Ipv6Addr {
    std::net::Ipv6Addr::new(0xff00 | u16::from(scope & 0xf), 0, 0, 0, 0, 0, 0, 0x158)
}

/// A socket that receives IPv6 `group`:`port` on interface `ifindex` only
/// (bound to the group, the join and the receive pinned to the interface,
/// IPV6_MULTICAST_ALL off so groups joined elsewhere are not delivered).
pub fn join_v6(group: std::net::Ipv6Addr, port: u16, ifindex: u32) -> io::Result<UdpSocket> {
    let s = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_only_v6(true)?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    s.set_multicast_all_v6(false)?;
    s.bind(&SocketAddr::V6(std::net::SocketAddrV6::new(group, port, 0, ifindex)).into())?;
    s.join_multicast_v6(&group, ifindex)?;
    s.set_multicast_if_v6(ifindex)?;
    UdpSocket::from_std(s.into())
}

/// A socket for sending to IPv6 multicast groups out of interface
/// `ifindex` only, with the given hop limit.
pub fn sender_v6(ifindex: u32, hops: u32) -> io::Result<UdpSocket> {
    let s = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_only_v6(true)?;
    s.set_nonblocking(true)?;
    s.set_multicast_if_v6(ifindex)?;
    s.set_multicast_hops_v6(hops)?;
    s.set_multicast_loop_v6(true)?;
    s.bind(
        &SocketAddr::V6(std::net::SocketAddrV6::new(
            std::net::Ipv6Addr::UNSPECIFIED,
            0,
            0,
            0,
        ))
        .into(),
    )?;
    UdpSocket::from_std(s.into())
}

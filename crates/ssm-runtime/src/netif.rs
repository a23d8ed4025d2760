//! Named network interfaces: index and addresses. Multicast is only ever
//! joined or sent on interfaces resolved here from a name someone gave.
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use tokio::net::UdpSocket;

/// An interface with its addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetIf {
    /// Name, e.g. `lo` or `ssm0`.
    pub name: String,
    /// Index (for IPv6 multicast and zone IDs).
    pub index: u32,
    /// IPv4 addresses.
    pub ipv4: Vec<Ipv4Addr>,
    /// IPv6 addresses (link-local and others).
    pub ipv6: Vec<Ipv6Addr>,
}

impl NetIf {
    /// Resolves `name`; an error names the interfaces that exist.
    pub fn by_name(name: &str) -> io::Result<NetIf> {
        let all = if_addrs::get_if_addrs()?;
        let mine: Vec<_> = all.iter().filter(|i| i.name == name).collect();
        let index = mine.iter().find_map(|i| i.index).or_else(|| {
            std::fs::read_to_string(format!("/sys/class/net/{name}/ifindex"))
                .ok()?
                .trim()
                .parse()
                .ok()
        });
        let Some(index) = index else {
            let mut names: Vec<_> = all.iter().map(|i| i.name.clone()).collect();
            names.dedup();
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "no network interface {name:?} with an address (have: {})",
                    names.join(", ")
                ),
            ));
        };
        let mut nif = NetIf {
            name: name.into(),
            index,
            ipv4: Vec::new(),
            ipv6: Vec::new(),
        };
        for i in mine {
            match &i.addr {
                if_addrs::IfAddr::V4(a) => nif.ipv4.push(a.ip),
                if_addrs::IfAddr::V6(a) => nif.ipv6.push(a.ip),
            }
        }
        // if-addrs omits link-local IPv6 addresses; Linux lists them all.
        for a in proc_if_inet6(name) {
            if !nif.ipv6.contains(&a) {
                nif.ipv6.push(a);
            }
        }
        Ok(nif)
    }

    /// The first IPv4 address (needed to join and send IPv4 multicast).
    pub fn ipv4_addr(&self) -> io::Result<Ipv4Addr> {
        self.ipv4.first().copied().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                format!("interface {} has no IPv4 address", self.name),
            )
        })
    }

    /// The subnets of this interface (addresses with prefix lengths, read
    /// again from the system), for the on-link check of multicast requests
    /// ([`crate::discovery::OnLink`]).
    pub fn on_link(&self) -> crate::discovery::OnLink {
        let mut link = crate::discovery::OnLink {
            ifindex: self.index,
            loopback: self.is_loopback(),
            ..Default::default()
        };
        for i in if_addrs::get_if_addrs().unwrap_or_default() {
            if i.name != self.name {
                continue;
            }
            match &i.addr {
                if_addrs::IfAddr::V4(a) => link.v4.push((a.ip, a.prefixlen)),
                if_addrs::IfAddr::V6(a) => link.v6.push((a.ip, a.prefixlen)),
            }
        }
        for (a, len) in proc_if_inet6_prefixes(&self.name) {
            if !link.v6.iter().any(|(x, _)| *x == a) {
                link.v6.push((a, len));
            }
        }
        link
    }

    /// The loopback interface cannot carry IPv6 multicast on Linux.
    pub fn is_loopback(&self) -> bool {
        self.name == "lo" || self.ipv4.iter().any(|a| a.is_loopback())
    }

    /// `coap://` endpoints for a unicast port on this interface: every
    /// IPv4 address, link-local IPv6 with a zone, other IPv6 as is.
    pub fn endpoints(&self, port: u16, ipv4: bool, ipv6: bool) -> Vec<String> {
        let mut eps = Vec::new();
        if ipv6 {
            for a in &self.ipv6 {
                if a.segments()[0] & 0xffc0 == 0xfe80 {
                    eps.push(format!("coap://[{a}%{}]:{port}", self.name));
                } else {
                    eps.push(format!("coap://[{a}]:{port}"));
                }
            }
        }
        if ipv4 {
            eps.extend(self.ipv4.iter().map(|a| format!("coap://{a}:{port}")));
        }
        eps
    }
}

/// IPv6 addresses of `name` from `/proc/net/if_inet6` (empty elsewhere).
fn proc_if_inet6(name: &str) -> Vec<Ipv6Addr> {
    proc_if_inet6_prefixes(name)
        .into_iter()
        .map(|(a, _)| a)
        .collect()
}

/// IPv6 addresses of `name` with their prefix lengths (third column, hex)
/// from `/proc/net/if_inet6`.
fn proc_if_inet6_prefixes(name: &str) -> Vec<(Ipv6Addr, u8)> {
    let Ok(text) = std::fs::read_to_string("/proc/net/if_inet6") else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 6 || f[5] != name || f[0].len() != 32 {
                return None;
            }
            let len = u8::from_str_radix(f[2], 16).ok()?;
            u128::from_str_radix(f[0], 16)
                .ok()
                .map(|a| (Ipv6Addr::from(a), len))
        })
        .collect()
}

/// The names of the interfaces that are up, multicast-capable and not
/// loopback (Linux: `/sys/class/net/*/flags`), sorted: what a user who
/// left `--iface` at `lo` may have meant. Listing them joins nothing.
pub fn multicast_interfaces() -> Vec<String> {
    const IFF_UP: u32 = 0x1;
    const IFF_LOOPBACK: u32 = 0x8;
    const IFF_MULTICAST: u32 = 0x1000;
    let Ok(dir) = std::fs::read_dir("/sys/class/net") else {
        return Vec::new();
    };
    let mut names: Vec<String> = dir
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let flags = std::fs::read_to_string(e.path().join("flags")).ok()?;
            let flags = u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16).ok()?;
            let wanted =
                flags & IFF_UP != 0 && flags & IFF_MULTICAST != 0 && flags & IFF_LOOPBACK == 0;
            wanted.then_some(name)
        })
        .collect();
    names.sort();
    names
}

/// `addr` in the family of `socket` (IPv4 peers become v4-mapped on a
/// dual-stack socket).
pub fn for_socket(socket: &UdpSocket, addr: SocketAddr) -> SocketAddr {
    match (socket.local_addr(), addr) {
        (Ok(SocketAddr::V6(_)), SocketAddr::V4(a)) => {
            SocketAddr::V6(SocketAddrV6::new(a.ip().to_ipv6_mapped(), a.port(), 0, 0))
        }
        _ => addr,
    }
}

/// `peer` as received on a dual-stack socket, with a v4-mapped IPv6
/// address turned back into IPv4 (the form peers are known by).
pub fn normalise(peer: SocketAddr) -> SocketAddr {
    match peer {
        SocketAddr::V6(a) => match a.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::from((IpAddr::V4(v4), a.port())),
            None => peer,
        },
        v4 => v4,
    }
}

/// An endpoint text that names no unicast CoAP endpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    /// Not `coap://host:port` (nor `host:port`).
    #[error("{0:?} is not coap://host:port")]
    Form(String),
    /// The host is not an IP address.
    #[error("bad address in {ep}: {reason}")]
    Address {
        /// The endpoint text.
        ep: String,
        /// Why.
        reason: String,
    },
    /// The `%zone` of an IPv6 link-local address names no interface.
    #[error("unknown zone {zone} in {ep}")]
    Zone {
        /// The endpoint text.
        ep: String,
        /// The zone.
        zone: String,
    },
}

/// Parses a unicast endpoint: `coap://host:port` or `host:port`, an IPv6
/// host in brackets, optionally with a `%zone` (an interface name or
/// index; RFC 6874) that becomes the socket address's scope id.
pub fn parse_ep(ep: &str) -> Result<std::net::SocketAddr, EndpointError> {
    use std::net::{IpAddr, SocketAddr, SocketAddrV6};
    let with_scheme = if ep.starts_with("coap://") {
        ep.to_string()
    } else {
        format!("coap://{ep}")
    };
    let (host, port) = ssm_ocf::discovery::split_ep(&with_scheme)
        .ok_or_else(|| EndpointError::Form(ep.to_string()))?;
    let bad = |e: std::net::AddrParseError| EndpointError::Address {
        ep: ep.to_string(),
        reason: e.to_string(),
    };
    if let Some((addr, zone)) = host.split_once('%') {
        let ip: Ipv6Addr = addr.parse().map_err(bad)?;
        let index = NetIf::by_name(zone)
            .map(|i| i.index)
            .or_else(|_| zone.parse::<u32>())
            .map_err(|_| EndpointError::Zone {
                ep: ep.to_string(),
                zone: zone.to_string(),
            })?;
        return Ok(SocketAddr::V6(SocketAddrV6::new(ip, port, 0, index)));
    }
    let ip: IpAddr = host.parse().map_err(bad)?;
    Ok(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod parse_ep_tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(
            parse_ep("coap://127.0.0.1:5683").unwrap(),
            "127.0.0.1:5683".parse().unwrap()
        );
        assert_eq!(
            parse_ep("127.0.0.1:40000").unwrap(),
            "127.0.0.1:40000".parse().unwrap()
        );
        let v6 = parse_ep("coap://[fe80::1%1]:5683").unwrap();
        assert!(matches!(v6, std::net::SocketAddr::V6(a) if a.scope_id() == 1));
        assert!(matches!(parse_ep("nonsense"), Err(EndpointError::Form(_))));
        assert!(matches!(
            parse_ep("coap://host.example:5683"),
            Err(EndpointError::Address { .. })
        ));
        assert!(matches!(
            parse_ep("coap://[fe80::1%no-such-if0]:5683"),
            Err(EndpointError::Zone { .. })
        ));
    }
}

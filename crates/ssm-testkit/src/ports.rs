//! UDP ports for tests that share this host's network stack (`lo`).
//!
//! A test that picks a fixed port from its pid can lose it to any socket
//! bound to port 0 in the meantime, by itself or by another test running
//! beside it: Linux hands out those from `ip_local_port_range` (32768–60999
//! by default), and a port picked in that range was taken once in CI
//! ("Address already in use" when `ssm demo` bound its group port). The
//! ports given here lie below that range, so no ephemeral bind can take
//! them, are free on both families when handed out, and differ between the
//! calls of one process.
use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

/// The lowest port handed out.
const LOWEST: u32 = 10_000;

/// Calls so far in this process: each starts its search further on.
static CALLS: AtomicU32 = AtomicU32::new(0);

/// Ports handed out in this process. The search runs under this lock and
/// never probes one of them: a probe binds the port for a moment, which
/// made a port just handed to another thread of the test binary look taken
/// when that thread bound it (seen in CI: "Address already in use").
static HANDED: Mutex<Option<std::collections::HashSet<u16>>> = Mutex::new(None);

/// The first port of the kernel's ephemeral range (32768 if unreadable).
fn ephemeral_start() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .filter(|&p| p > LOWEST + 1_000)
        .unwrap_or(32_768)
}

/// Whether nobody holds UDP `port`, on IPv4 and (where the host has it)
/// IPv6. A socket bound with `SO_REUSEADDR` by another test counts as
/// holding it.
pub fn udp_port_is_free(port: u16) -> bool {
    let v4 = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)).is_ok();
    let v6 = match UdpSocket::bind((Ipv6Addr::UNSPECIFIED, port)) {
        Ok(_) => true,
        Err(e) => e.kind() == std::io::ErrorKind::AddrNotAvailable,
    };
    v4 && v6
}

/// A UDP port that is free now, below the ephemeral range, and not given
/// to an earlier call of this process. Panics only if none of 4,000
/// candidates is free (a host in trouble).
pub fn free_udp_port() -> u16 {
    let mut handed = HANDED.lock().unwrap_or_else(|e| e.into_inner());
    let handed = handed.get_or_insert_with(Default::default);
    let span = ephemeral_start() - LOWEST;
    let call = CALLS.fetch_add(1, Ordering::Relaxed);
    // Spread processes apart by pid, calls of one process by 7 ports (a
    // test may use a few ports above the one it gets, see `free_udp_ports`).
    let start = std::process::id().wrapping_mul(7_919) % span;
    for probe in 0..4_000u32 {
        let off = (start + call.wrapping_mul(7) * 101 + probe * 13) % span;
        let port = (LOWEST + off) as u16;
        if !handed.contains(&port) && udp_port_is_free(port) {
            handed.insert(port);
            return port;
        }
    }
    panic!("no free UDP port below {} after 4,000 tries", LOWEST + span)
}

/// The port of `slot` for this process: the first call for a slot takes a
/// [`free_udp_port`], later calls for the same slot give the same port (a
/// test that names its group port in several places asks by slot).
pub fn test_port(slot: u32) -> u16 {
    static SLOTS: Mutex<Option<HashMap<u32, u16>>> = Mutex::new(None);
    let mut slots = SLOTS.lock().unwrap_or_else(|e| e.into_inner());
    *slots
        .get_or_insert_with(HashMap::new)
        .entry(slot)
        .or_insert_with(free_udp_port)
}

/// `n` consecutive UDP ports, all free now, below the ephemeral range.
pub fn free_udp_ports(n: u16) -> u16 {
    for _ in 0..1_000 {
        let base = free_udp_port();
        let mut handed = HANDED.lock().unwrap_or_else(|e| e.into_inner());
        let handed = handed.get_or_insert_with(Default::default);
        if u32::from(base) + u32::from(n) < ephemeral_start()
            && (1..n).all(|i| !handed.contains(&(base + i)) && udp_port_is_free(base + i))
        {
            handed.extend((1..n).map(|i| base + i));
            return base;
        }
    }
    panic!("no {n} consecutive free UDP ports after 1,000 tries")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_free_distinct_and_below_the_ephemeral_range() {
        let end = ephemeral_start();
        let ports: Vec<u16> = (0..50).map(|_| free_udp_port()).collect();
        let mut seen = std::collections::HashSet::new();
        for p in &ports {
            assert!(u32::from(*p) >= LOWEST && u32::from(*p) < end, "{p}");
            assert!(seen.insert(*p), "{p} handed out twice");
        }
    }

    #[test]
    fn a_slot_keeps_its_port() {
        let (a, b) = (test_port(900), test_port(901));
        assert_ne!(a, b);
        assert_eq!(test_port(900), a);
        assert_eq!(test_port(901), b);
    }

    #[test]
    fn a_held_port_is_not_free_and_runs_are_free() {
        let p = free_udp_port();
        let _held = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, p)).unwrap();
        assert!(!udp_port_is_free(p));
        let base = free_udp_ports(6);
        assert!(u32::from(base) + 6 <= ephemeral_start());
        let _run: Vec<UdpSocket> = (0..6)
            .map(|i| UdpSocket::bind((Ipv4Addr::UNSPECIFIED, base + i)).expect("free"))
            .collect();
    }
}

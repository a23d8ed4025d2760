//! How a device answers plain (unauthenticated) multicast requests —
//! discovery (`/oic/res`, `/oic/sec/doxm`) — without being a reflection
//! amplifier (SECURITY-REVIEW F3). Sans-IO: every decision takes `now` and
//! the caller's randomness.
//!
//! * **Only on-link sources** ([`OnLink`]): the source address must lie in
//!   a subnet of the interface the request arrived on (IPv6 link-local:
//!   scoped to that interface; loopback on `lo`). A spoofed or routed
//!   source from elsewhere gets nothing, unless it lies in a routed prefix
//!   of the site the operator named ([`SitePrefix`]: site-wide discovery
//!   through a multicast router).
//! * **Rate-limited per source** ([`RateLimiter`]): a token bucket per
//!   source address ([`PER_SOURCE_BURST`], refilled at
//!   [`PER_SOURCE_RATE`] per second) and one for all sources together
//!   ([`GLOBAL_BURST`], [`GLOBAL_RATE`]). The table of sources is bounded.
//! * **Block-wise capped**: the response is the first
//!   [`MULTICAST_BLOCK_SIZE`]-byte Block2 block (RFC 7959 §2.2); the
//!   requester fetches the rest by unicast.
//! * **After a random Leisure** ([`leisure`], RFC 7252 §8.2): uniform in
//!   `[0, LEISURE]`, so the answers of many devices do not arrive at once.
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

/// Largest payload of a multicast response: the requester fetches the rest
/// by unicast (Block2). Half the unicast cap: a multicast request reaches
/// every device of the link at once.
pub const MULTICAST_BLOCK_SIZE: usize = 512;

/// Upper bound of the random Leisure delay (RFC 7252 §8.2:
/// `Leisure = S × G / R`). The RFC's default of 5 s is sized for
/// constrained networks; for a LAN, S = 0.6 kB (one capped response),
/// G = 100 devices and R = 1 MB/s (a tenth of 100 Mbit/s Ethernet) give
/// 60 ms, rounded up to 100 ms. Requesters collect answers for at least
/// 200 ms (`ssm obt discover` and `ssm client discover`: 1 s, OBT sync
/// rediscovery: 800 ms, the demo: 5 × 200 ms).
pub const LEISURE: Duration = Duration::from_millis(100);

/// Answers to one source in a burst.
pub const PER_SOURCE_BURST: f64 = 8.0;
/// Answers to one source per second, sustained.
pub const PER_SOURCE_RATE: f64 = 2.0;
/// Answers to all sources in a burst.
pub const GLOBAL_BURST: f64 = 64.0;
/// Answers to all sources per second, sustained.
pub const GLOBAL_RATE: f64 = 20.0;
/// Sources tracked at once; past it the least recently seen is forgotten
/// (the global bucket still bounds the total).
pub const MAX_SOURCES: usize = 256;

/// The random Leisure delay for a response, from 4 random bytes: uniform
/// in `[0, LEISURE]`.
pub fn leisure(random: [u8; 4]) -> Duration {
    let r = u64::from(u32::from_be_bytes(random));
    let max = LEISURE.as_micros() as u64;
    Duration::from_micros(r * max / u64::from(u32::MAX))
}

/// The subnets of one interface: who is "on-link" for requests received
/// on it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OnLink {
    /// IPv4 addresses with prefix lengths.
    pub v4: Vec<(Ipv4Addr, u8)>,
    /// IPv6 addresses with prefix lengths (link-local ones included).
    pub v6: Vec<(Ipv6Addr, u8)>,
    /// The interface index (IPv6 link-local sources must carry it as their
    /// scope).
    pub ifindex: u32,
    /// The loopback interface: loopback sources are on-link.
    pub loopback: bool,
}

fn prefix_eq(a: u128, b: u128, len: u8, bits: u32) -> bool {
    let len = u32::from(len).min(bits);
    if len == 0 {
        return true;
    }
    let shift = bits - len;
    (a >> shift) == (b >> shift)
}

impl OnLink {
    /// Whether `src` (as received, IPv4-mapped IPv6 already normalised to
    /// IPv4) is on this link.
    pub fn contains(&self, src: SocketAddr) -> bool {
        match src {
            SocketAddr::V4(a) => {
                let ip = *a.ip();
                if ip.is_loopback() {
                    return self.loopback;
                }
                if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() {
                    return false;
                }
                self.v4.iter().any(|(net, len)| {
                    prefix_eq(
                        u128::from(u32::from(ip)),
                        u128::from(u32::from(*net)),
                        *len,
                        32,
                    )
                })
            }
            SocketAddr::V6(a) => {
                let ip = *a.ip();
                if ip.is_loopback() {
                    return self.loopback;
                }
                if ip.is_unspecified() || ip.is_multicast() {
                    return false;
                }
                if ip.segments()[0] & 0xffc0 == 0xfe80 {
                    // Link-local: valid only on the interface it came in on.
                    return a.scope_id() == self.ifindex;
                }
                self.v6
                    .iter()
                    .any(|(net, len)| prefix_eq(u128::from(ip), u128::from(*net), *len, 128))
            }
        }
    }
}

/// A routed prefix of the site whose sources a device answers besides its
/// on-link ones (`DeviceConfig::site_prefixes`, `ssm device --site-prefix`):
/// site-wide discovery (`ssm obt discover --scope site`, ff05::158 through
/// a multicast router) comes from another subnet. Only what the operator
/// names is admitted; the rate limits and the Block2 cap still apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SitePrefix {
    /// The network address.
    pub addr: IpAddr,
    /// The prefix length.
    pub len: u8,
}

/// A `--site-prefix` that is not `ADDRESS/LENGTH` of a unicast network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a site prefix (ADDRESS/LENGTH, e.g. fd00::/16 or 10.0.0.0/16; not link-local, multicast or /0)")]
pub struct SitePrefixError(pub String);

impl std::str::FromStr for SitePrefix {
    type Err = SitePrefixError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || SitePrefixError(s.to_string());
        let (a, l) = s.split_once('/').ok_or_else(bad)?;
        let addr: IpAddr = a.parse().map_err(|_| bad())?;
        let len: u8 = l.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let link_local = match addr {
            IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 == 0xfe80,
            IpAddr::V4(v4) => v4.is_link_local(),
        };
        // /0 would admit every source: the reflection the on-link rule stops.
        if len == 0 || len > max || addr.is_multicast() || addr.is_unspecified() || link_local {
            return Err(bad());
        }
        Ok(SitePrefix { addr, len })
    }
}

impl std::fmt::Display for SitePrefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl SitePrefix {
    /// Whether `src` lies in this prefix (link-local and loopback sources
    /// never do: they are the on-link rule's to judge).
    pub fn contains(&self, src: SocketAddr) -> bool {
        match (self.addr, src.ip()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                !ip.is_loopback()
                    && !ip.is_broadcast()
                    && !ip.is_multicast()
                    && prefix_eq(
                        u128::from(u32::from(ip)),
                        u128::from(u32::from(net)),
                        self.len,
                        32,
                    )
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                ip.segments()[0] & 0xffc0 != 0xfe80
                    && !ip.is_loopback()
                    && !ip.is_multicast()
                    && prefix_eq(u128::from(ip), u128::from(net), self.len, 128)
            }
            _ => false,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(burst: f64, now: Instant) -> Self {
        Bucket {
            tokens: burst,
            at: now,
        }
    }

    /// Refills up to `now`, then takes one token if there is one.
    fn take(&mut self, burst: f64, rate: f64, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + dt * rate).min(burst);
        self.at = self.at.max(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Token buckets per source address and for all sources.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    sources: HashMap<IpAddr, Bucket>,
    global: Bucket,
}

impl RateLimiter {
    /// Full buckets.
    pub fn new(now: Instant) -> Self {
        RateLimiter {
            sources: HashMap::new(),
            global: Bucket::full(GLOBAL_BURST, now),
        }
    }

    /// Whether one more answer may go to `src` at `now` (consumes a token
    /// of its bucket and of the global one if so).
    pub fn allow(&mut self, src: IpAddr, now: Instant) -> bool {
        if !self.sources.contains_key(&src) && self.sources.len() >= MAX_SOURCES {
            // Forget the least recently served source.
            if let Some(oldest) = self
                .sources
                .iter()
                .min_by_key(|(_, b)| b.at)
                .map(|(ip, _)| *ip)
            {
                self.sources.remove(&oldest);
            }
        }
        let b = self
            .sources
            .entry(src)
            .or_insert_with(|| Bucket::full(PER_SOURCE_BURST, now));
        // Peek the source bucket first so a refused source does not drain
        // the global one.
        let mut probe = *b;
        if !probe.take(PER_SOURCE_BURST, PER_SOURCE_RATE, now) {
            *b = probe;
            return false;
        }
        if !self.global.take(GLOBAL_BURST, GLOBAL_RATE, now) {
            return false;
        }
        *b = probe;
        true
    }

    /// Sources tracked now.
    pub fn sources(&self) -> usize {
        self.sources.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddrV6;

    fn v4(s: &str) -> SocketAddr {
        SocketAddr::new(s.parse().unwrap(), 5683)
    }

    #[test]
    fn on_link_means_in_a_subnet_of_the_receiving_interface() {
        let link = OnLink {
            v4: vec![(Ipv4Addr::new(10, 158, 0, 1), 24)],
            v6: vec![
                ("fd58::1".parse().unwrap(), 64),
                ("fe80::58:ff:fe00:1".parse().unwrap(), 64),
            ],
            ifindex: 7,
            loopback: false,
        };
        assert!(link.contains(v4("10.158.0.200")));
        assert!(!link.contains(v4("10.158.1.2")));
        assert!(!link.contains(v4("10.99.0.2")));
        assert!(!link.contains(v4("127.0.0.1")), "loopback only on lo");
        assert!(!link.contains(v4("0.0.0.0")));
        assert!(!link.contains(v4("255.255.255.255")));
        assert!(!link.contains(v4("224.0.1.187")));
        let v6 = |s: &str, scope: u32| {
            SocketAddr::V6(SocketAddrV6::new(s.parse().unwrap(), 5683, 0, scope))
        };
        assert!(link.contains(v6("fd58::abcd", 0)));
        assert!(!link.contains(v6("fd59::1", 0)));
        assert!(link.contains(v6("fe80::1", 7)));
        assert!(
            !link.contains(v6("fe80::1", 8)),
            "link-local of another link"
        );
        assert!(!link.contains(v6("::1", 0)));
        assert!(!link.contains(v6("ff02::158", 7)));
        let lo = OnLink {
            v4: vec![(Ipv4Addr::LOCALHOST, 8)],
            loopback: true,
            ..OnLink::default()
        };
        assert!(lo.contains(v4("127.0.0.1")));
        assert!(lo.contains(v4("127.9.8.7")));
        assert!(!lo.contains(v4("10.158.0.200")));
        // A /0 or /32 prefix works without overflow.
        let odd = OnLink {
            v4: vec![
                (Ipv4Addr::new(10, 0, 0, 1), 32),
                (Ipv4Addr::new(1, 2, 3, 4), 0),
            ],
            ..OnLink::default()
        };
        assert!(odd.contains(v4("8.8.8.8")));
    }

    #[test]
    fn site_prefixes_admit_only_their_routed_sources() {
        let p: SitePrefix = "fd00::/16".parse().unwrap();
        let v6 = |s: &str, scope: u32| {
            SocketAddr::V6(SocketAddrV6::new(s.parse().unwrap(), 5683, 0, scope))
        };
        assert!(p.contains(v6("fd00:a::2", 0)));
        assert!(!p.contains(v6("fd01::2", 0)));
        assert!(
            !p.contains(v6("fe80::1", 3)),
            "link-local: the on-link rule's"
        );
        assert!(!p.contains(v4("10.0.1.2")), "other family");
        let q: SitePrefix = "10.0.0.0/16".parse().unwrap();
        assert!(q.contains(v4("10.0.3.2")));
        assert!(!q.contains(v4("10.1.0.2")));
        assert_eq!(q.to_string(), "10.0.0.0/16");
        for bad in [
            "fd00::",
            "fd00::/0",
            "0.0.0.0/0",
            "10.0.0.0/33",
            "fe80::/10",
            "ff05::/16",
            "169.254.0.0/16",
            "224.0.0.0/4",
            "x/8",
            "::/64",
        ] {
            assert!(bad.parse::<SitePrefix>().is_err(), "{bad}");
        }
    }

    #[test]
    fn token_buckets_per_source_and_global() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(t0);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let burst = PER_SOURCE_BURST as usize;
        for i in 0..burst {
            assert!(r.allow(a, t0), "{i}");
        }
        assert!(!r.allow(a, t0), "burst spent");
        // 2 per second sustained.
        assert!(!r.allow(a, t0 + Duration::from_millis(400)));
        assert!(r.allow(a, t0 + Duration::from_millis(500)));
        let mut n = 0;
        for ms in (600..10_600).step_by(10) {
            n += usize::from(r.allow(a, t0 + Duration::from_millis(ms)));
        }
        assert_eq!(n, 20, "{n} answers in 10 s");
        // Other sources have their own buckets, until the global one is
        // spent (64 in a burst, then 20/s).
        let t1 = t0 + Duration::from_secs(100);
        let mut r = RateLimiter::new(t1);
        let mut granted = 0;
        for i in 0..100u32 {
            let src = IpAddr::V4(Ipv4Addr::from(0x0a00_0100 + i));
            for _ in 0..2 {
                granted += usize::from(r.allow(src, t1));
            }
        }
        assert_eq!(granted, GLOBAL_BURST as usize);
        // The source table is bounded.
        for i in 0..1000u32 {
            r.allow(IpAddr::V4(Ipv4Addr::from(0x0b00_0000 + i)), t1);
        }
        assert!(r.sources() <= MAX_SOURCES);
    }

    #[test]
    fn leisure_is_within_bounds() {
        assert_eq!(leisure([0; 4]), Duration::ZERO);
        assert_eq!(leisure([0xff; 4]), LEISURE);
        let mid = leisure([0x80, 0, 0, 0]);
        assert!(mid > LEISURE / 3 && mid < LEISURE * 2 / 3, "{mid:?}");
    }
}

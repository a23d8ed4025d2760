//! The observer table of a device (RFC 7641), sans-IO: who observes what,
//! over which channel, with bounded quotas and expiry.
//!
//! * Each observer is kept with its **channel** ([`Channel`]): plain CoAP to
//!   an address, pair-wise OSCORE (with the registration's request binding,
//!   so every notification's AAD is right, RFC 8613 §5.4 / §8.3), or a DTLS
//!   session. The runtime sends each notification over that channel; a
//!   secured observation is never notified in plaintext.
//! * **Quotas** (the review's F7): plain and secured observers have
//!   separate quotas ([`MAX_PLAIN`], [`MAX_SECURED`]), so unauthenticated
//!   registrations can never evict a secured one. Per source (the IP
//!   address of a plain or DTLS observer, the kid of an OSCORE one) at most
//!   [`MAX_PER_SOURCE`] observations are kept, so spoofed registrations can
//!   make one victim receive at most that many notifications per change. A
//!   full quota evicts its own oldest entry (of that source first).
//! * **Expiry**: notifications are NON and never confirmed, so a server
//!   cannot tell whether a plain observer is still there (RFC 7641 §4.5
//!   asks for a CON notification at least every 24 h for that). Instead a
//!   plain observation lives [`PLAIN_LIFETIME`] (24 h) after its
//!   (re-)registration; secured ones end by cancellation, an RST, or their
//!   own source's quota.
//! * **RST** (RFC 7641 §3.6): an RST is an Empty message matched by the
//!   Message ID of the notification it answers; the last [`RECENT_MIDS`]
//!   Message IDs of each observer are kept, and an RST from the observer's
//!   address with one of them ends the observation.
use ssm_coap::Token;
use ssm_oscore::{Id, RequestBinding};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// Most observations kept per source (address or kid).
pub const MAX_PER_SOURCE: usize = 4;
/// Most plain (unauthenticated) observations kept in all.
pub const MAX_PLAIN: usize = 32;
/// Most secured (OSCORE or DTLS) observations kept in all.
pub const MAX_SECURED: usize = 64;
/// How long a plain observation lives after its (re-)registration (RFC 7641
/// §4.5: a server must check at least every 24 h that a client is still
/// interested; a bounded lifetime does that without CON notifications).
pub const PLAIN_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// Message IDs of recent notifications kept per observer (to match RSTs).
pub const RECENT_MIDS: usize = 4;

/// How an observer's notifications are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// Plain CoAP datagrams to this address.
    Plain(SocketAddr),
    /// Protected with the pair-wise OSCORE context of `binding.kid`, with
    /// the server's own Partial IV, bound to the registration `binding`
    /// (RFC 8613 §8.3); sent to `addr`.
    Oscore {
        /// Where the registration came from.
        addr: SocketAddr,
        /// The registration request's kid, Partial IV and kid context.
        binding: RequestBinding,
    },
    /// Over the DTLS session with this peer.
    Dtls(SocketAddr),
}

/// Who an observation is counted against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Ip(IpAddr),
    Kid(Id),
    DtlsIp(IpAddr),
}

impl Channel {
    /// The transport address notifications go to.
    pub fn addr(&self) -> SocketAddr {
        match self {
            Channel::Plain(a) | Channel::Dtls(a) => *a,
            Channel::Oscore { addr, .. } => *addr,
        }
    }

    /// OSCORE or DTLS.
    pub fn is_secured(&self) -> bool {
        !matches!(self, Channel::Plain(_))
    }

    /// The same client endpoint (with the token: the same observation, RFC
    /// 7641 §4.1).
    fn same_endpoint(&self, other: &Channel) -> bool {
        match (self, other) {
            (Channel::Plain(a), Channel::Plain(b)) | (Channel::Dtls(a), Channel::Dtls(b)) => a == b,
            (
                Channel::Oscore {
                    addr: a,
                    binding: x,
                },
                Channel::Oscore {
                    addr: b,
                    binding: y,
                },
            ) => a == b && x.kid == y.kid && x.kid_context == y.kid_context,
            _ => false,
        }
    }

    fn source(&self) -> Source {
        match self {
            Channel::Plain(a) => Source::Ip(a.ip()),
            Channel::Oscore { binding, .. } => Source::Kid(binding.kid),
            Channel::Dtls(a) => Source::DtlsIp(a.ip()),
        }
    }
}

/// One observation.
#[derive(Debug, Clone)]
struct Observer {
    channel: Channel,
    token: Token,
    href: String,
    seq: u32,
    registered: Instant,
    mids: [Option<u16>; RECENT_MIDS],
    next_mid_slot: usize,
}

/// A notification due: to whom, with which token, Observe value and
/// Message ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// Its channel.
    pub channel: Channel,
    /// The observation's token.
    pub token: Token,
    /// The Observe option value (24 bits, increasing).
    pub seq: u32,
    /// The Message ID to send it with (remembered for RSTs).
    pub mid: u16,
}

/// The observer table.
#[derive(Debug, Default)]
pub struct Observers {
    list: Vec<Observer>,
}

impl Observers {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of observations.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// No observations.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Observations of one kind: secured (OSCORE, DTLS) or plain.
    pub fn count(&self, secured: bool) -> usize {
        self.list
            .iter()
            .filter(|o| o.channel.is_secured() == secured)
            .count()
    }

    /// Registers (or refreshes: same endpoint and token, RFC 7641 §4.1) an
    /// observation of `href`. Keeps the quotas: the oldest observation of
    /// the same source, then the oldest of the same kind (plain or
    /// secured), makes room. A plain registration never removes a secured
    /// observation.
    pub fn register(&mut self, channel: Channel, token: Token, href: &str, now: Instant) {
        self.expire(now);
        self.list
            .retain(|o| !(o.token == token && o.channel.same_endpoint(&channel)));
        let source = channel.source();
        let secured = channel.is_secured();
        let same_source: Vec<usize> = self
            .list
            .iter()
            .enumerate()
            .filter(|(_, o)| o.channel.source() == source)
            .map(|(i, _)| i)
            .collect();
        if same_source.len() >= MAX_PER_SOURCE {
            // The list is in registration order: the first is the oldest.
            self.list.remove(same_source[0]);
        }
        let cap = if secured { MAX_SECURED } else { MAX_PLAIN };
        if self.count(secured) >= cap {
            if let Some(i) = self
                .list
                .iter()
                .position(|o| o.channel.is_secured() == secured)
            {
                self.list.remove(i);
            }
        }
        self.list.push(Observer {
            channel,
            token,
            href: href.into(),
            seq: 0,
            registered: now,
            mids: [None; RECENT_MIDS],
            next_mid_slot: 0,
        });
    }

    /// Ends the observation of `channel` with `token` (a GET with Observe
    /// 1, RFC 7641 §3.6).
    pub fn cancel(&mut self, channel: &Channel, token: &Token) {
        self.list
            .retain(|o| !(o.token == *token && o.channel.same_endpoint(channel)));
    }

    /// An RST from `from` with Message ID `mid` (RFC 7641 §3.6): ends the
    /// observation whose recent notification had that Message ID, if it
    /// went to `from`. Returns whether one ended.
    pub fn reset(&mut self, from: SocketAddr, mid: u16) -> bool {
        let before = self.list.len();
        self.list
            .retain(|o| !(o.channel.addr() == from && o.mids.contains(&Some(mid))));
        self.list.len() != before
    }

    /// Drops plain observations older than [`PLAIN_LIFETIME`].
    pub fn expire(&mut self, now: Instant) {
        self.list.retain(|o| {
            o.channel.is_secured() || now.saturating_duration_since(o.registered) < PLAIN_LIFETIME
        });
    }

    /// The notifications due for a change of `href`: one per observation,
    /// each with the next Observe value and a Message ID from `mid`
    /// (remembered for RSTs).
    pub fn notify(&mut self, href: &str, now: Instant, mid: &mut dyn FnMut() -> u16) -> Vec<Due> {
        self.expire(now);
        let mut out = Vec::new();
        for o in self.list.iter_mut().filter(|o| o.href == href) {
            o.seq = (o.seq + 1) & 0xff_ffff;
            let m = mid();
            o.mids[o.next_mid_slot] = Some(m);
            o.next_mid_slot = (o.next_mid_slot + 1) % RECENT_MIDS;
            out.push(Due {
                channel: o.channel,
                token: o.token,
                seq: o.seq,
                mid: m,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ssm_oscore::PartialIv;

    fn plain(ip: [u8; 4], port: u16) -> Channel {
        Channel::Plain(SocketAddr::from((ip, port)))
    }

    fn oscore(kid: u8, port: u16) -> Channel {
        Channel::Oscore {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            binding: RequestBinding {
                kid: Id::new(&[kid]).unwrap(),
                partial_iv: PartialIv::from_u64(7).unwrap(),
                kid_context: None,
                observe: true,
            },
        }
    }

    fn tok(n: u32) -> Token {
        Token::new(&n.to_be_bytes()).unwrap()
    }

    fn counter() -> impl FnMut() -> u16 {
        let mut n = 0u16;
        move || {
            n += 1;
            n
        }
    }

    /// F7 as the attack: 64 spoofed plain registrations from one victim
    /// address (different ports and tokens) neither push the switch's
    /// OSCORE observation off the list nor make one change send 64
    /// notifications to the victim.
    #[test]
    fn spoofed_plain_registrations_keep_secured_observer_and_spare_victim() {
        let now = Instant::now();
        let mut t = Observers::new();
        let switch = oscore(0x21, 40000);
        t.register(switch, tok(1), "/switch", now);
        for i in 0..64u32 {
            t.register(
                plain([10, 0, 0, 9], 1000 + i as u16),
                tok(100 + i),
                "/switch",
                now,
            );
        }
        let due = t.notify("/switch", now, &mut counter());
        assert_eq!(due.iter().filter(|d| d.channel == switch).count(), 1);
        let to_victim = due
            .iter()
            .filter(|d| d.channel.addr().ip() == IpAddr::from([10, 0, 0, 9]))
            .count();
        assert!(
            to_victim <= MAX_PER_SOURCE,
            "{to_victim} notifications to the victim"
        );
    }

    /// The same from 64 different spoofed addresses: they only compete
    /// with each other for the plain quota.
    #[test]
    fn plain_quota_never_evicts_secured() {
        let now = Instant::now();
        let mut t = Observers::new();
        for k in 0..3u8 {
            t.register(
                oscore(k, 40000 + u16::from(k)),
                tok(u32::from(k)),
                "/switch",
                now,
            );
        }
        for i in 0..200u32 {
            t.register(
                plain([10, 0, (i / 250) as u8, (i % 250) as u8], 5683),
                tok(i),
                "/switch",
                now,
            );
        }
        assert_eq!(t.count(true), 3);
        assert_eq!(t.count(false), MAX_PLAIN);
        let due = t.notify("/switch", now, &mut counter());
        assert_eq!(due.len(), 3 + MAX_PLAIN);
    }

    #[test]
    fn per_source_quota_evicts_that_sources_oldest() {
        let now = Instant::now();
        let mut t = Observers::new();
        let other = plain([10, 0, 0, 2], 9);
        t.register(other, tok(0), "/a", now);
        for i in 1..=(MAX_PER_SOURCE as u32 + 2) {
            t.register(plain([10, 0, 0, 1], i as u16), tok(i), "/a", now);
        }
        assert_eq!(t.len(), MAX_PER_SOURCE + 1);
        let due = t.notify("/a", now, &mut counter());
        assert!(
            due.iter().any(|d| d.channel == other),
            "another source kept"
        );
        let tokens: Vec<Token> = due.iter().map(|d| d.token).collect();
        assert!(!tokens.contains(&tok(1)) && !tokens.contains(&tok(2)));
        assert!(tokens.contains(&tok(MAX_PER_SOURCE as u32 + 2)));
    }

    #[test]
    fn secured_quota_is_per_kid() {
        let now = Instant::now();
        let mut t = Observers::new();
        t.register(oscore(1, 1), tok(0), "/a", now);
        for i in 0..10u32 {
            t.register(oscore(2, 2), tok(100 + i), "/a", now);
        }
        assert_eq!(t.count(true), 1 + MAX_PER_SOURCE);
        assert!(t
            .notify("/a", now, &mut counter())
            .iter()
            .any(|d| d.token == tok(0)));
    }

    #[test]
    fn reregistration_refreshes_not_duplicates() {
        let now = Instant::now();
        let mut t = Observers::new();
        let c = plain([10, 0, 0, 1], 1);
        t.register(c, tok(1), "/a", now);
        t.register(c, tok(1), "/a", now + Duration::from_secs(3600));
        assert_eq!(t.len(), 1);
        // Lives 24 h from the refresh.
        t.expire(now + PLAIN_LIFETIME + Duration::from_secs(1));
        assert_eq!(t.len(), 1);
        t.expire(now + PLAIN_LIFETIME + Duration::from_secs(3601));
        assert!(t.is_empty());
    }

    #[test]
    fn plain_observers_expire_secured_do_not() {
        let now = Instant::now();
        let mut t = Observers::new();
        t.register(plain([10, 0, 0, 1], 1), tok(1), "/a", now);
        t.register(oscore(1, 2), tok(2), "/a", now);
        let later = now + PLAIN_LIFETIME - Duration::from_secs(1);
        assert_eq!(t.notify("/a", later, &mut counter()).len(), 2);
        let expired = now + PLAIN_LIFETIME;
        let due = t.notify("/a", expired, &mut counter());
        assert_eq!(due.len(), 1);
        assert!(due[0].channel.is_secured());
    }

    #[test]
    fn rst_by_message_id_from_that_peer_cancels() {
        let now = Instant::now();
        let mut t = Observers::new();
        let a = plain([10, 0, 0, 1], 1);
        let b = oscore(1, 2);
        t.register(a, tok(1), "/a", now);
        t.register(b, tok(2), "/a", now);
        let mut mid = counter();
        let due = t.notify("/a", now, &mut mid);
        let mid_a = due.iter().find(|d| d.channel == a).unwrap().mid;
        let mid_b = due.iter().find(|d| d.channel == b).unwrap().mid;
        // Wrong peer, or a Message ID never sent: nothing happens.
        assert!(!t.reset(SocketAddr::from(([10, 0, 0, 7], 1)), mid_a));
        assert!(!t.reset(a.addr(), 999));
        assert!(!t.reset(a.addr(), mid_b));
        assert_eq!(t.len(), 2);
        assert!(t.reset(a.addr(), mid_a));
        assert_eq!(t.len(), 1);
        // An OSCORE observer's RST is plain too (RFC 8613 §4.2: Empty
        // messages are not protected), from its address.
        assert!(t.reset(b.addr(), mid_b));
        assert!(t.is_empty());
    }

    #[test]
    fn rst_matches_only_recent_notifications() {
        let now = Instant::now();
        let mut t = Observers::new();
        let a = plain([10, 0, 0, 1], 1);
        t.register(a, tok(1), "/a", now);
        let mut mid = counter();
        let first = t.notify("/a", now, &mut mid)[0].mid;
        for _ in 0..RECENT_MIDS {
            t.notify("/a", now, &mut mid);
        }
        assert!(!t.reset(a.addr(), first), "too old to match");
        let last = t.notify("/a", now, &mut mid)[0].mid;
        assert!(t.reset(a.addr(), last));
    }

    #[test]
    fn cancel_by_token_and_endpoint() {
        let now = Instant::now();
        let mut t = Observers::new();
        let a = oscore(1, 2);
        t.register(a, tok(1), "/a", now);
        t.cancel(&plain([127, 0, 0, 1], 2), &tok(1));
        assert_eq!(
            t.len(),
            1,
            "a plain cancel does not end an OSCORE observation"
        );
        t.cancel(&a, &tok(1));
        assert!(t.is_empty());
    }

    #[test]
    fn observe_values_increase_per_observer() {
        let now = Instant::now();
        let mut t = Observers::new();
        t.register(plain([10, 0, 0, 1], 1), tok(1), "/a", now);
        t.register(plain([10, 0, 0, 1], 2), tok(2), "/b", now);
        let mut mid = counter();
        assert_eq!(t.notify("/a", now, &mut mid)[0].seq, 1);
        assert_eq!(t.notify("/a", now, &mut mid)[0].seq, 2);
        assert_eq!(t.notify("/b", now, &mut mid)[0].seq, 1);
        assert!(t.notify("/c", now, &mut mid).is_empty());
    }
}

//! The device's DTLS session table, sans-IO (every decision takes `now`):
//! which peers may get a session, and when a session ends.
//!
//! * No entry exists before a verified cookie (RFC 6347 §4.2.1): the
//!   caller answers every other ClientHello statelessly with
//!   [`ssm_dtls::check_client_hello`] under [`DtlsTable::cookie_keys`],
//!   whose secret is random per process and rotates every
//!   [`COOKIE_ROTATION`].
//! * At most [`Limits::max_sessions`] sessions, and at most
//!   [`Limits::per_source`] per source IP address, so one host cannot take
//!   every slot even with completed cookie exchanges.
//! * A session whose handshake has not finished ends
//!   [`Limits::handshake_lifetime`] after it was created (long enough for
//!   the RFC 6347 §4.2.4 retransmissions of a real client: 1 s, then 2 s);
//!   an established one after [`Limits::idle`] (owner transfer:
//!   [`Limits::owner_transfer_idle`]) without a datagram.
use ssm_dtls::CookieKeys;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// How often the cookie secret is replaced (the previous one stays valid
/// for one more period, so a handshake never straddles two rotations).
pub const COOKIE_ROTATION: Duration = Duration::from_secs(60);

/// The table's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Sessions in all.
    pub max_sessions: usize,
    /// Sessions per source IP address.
    pub per_source: usize,
    /// Lifetime of a session whose handshake has not finished.
    pub handshake_lifetime: Duration,
    /// Idle time after which an established session ends.
    pub idle: Duration,
    /// Idle time after which an established owner-transfer session ends.
    pub owner_transfer_idle: Duration,
}

/// Why a verified ClientHello got no session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// [`Limits::max_sessions`] reached.
    Full,
    /// [`Limits::per_source`] reached for this source address.
    PerSource,
}

/// One session and its bookkeeping.
#[derive(Debug)]
pub struct Entry<S> {
    /// The session (for the device: the DTLS session and what it exported).
    pub session: S,
    /// Unique per table for the process lifetime.
    pub id: u64,
    /// A Random PIN owner-transfer session.
    pub owner_transfer: bool,
    created: Instant,
    last_active: Instant,
    established: bool,
}

impl<S> Entry<S> {
    /// The handshake finished (set by [`DtlsTable::established`]).
    pub fn is_established(&self) -> bool {
        self.established
    }
}

/// The sessions of one device, by peer address.
#[derive(Debug)]
pub struct DtlsTable<S> {
    limits: Limits,
    peers: HashMap<SocketAddr, Entry<S>>,
    keys: CookieKeys,
    keys_since: Instant,
    next_id: u64,
}

impl<S> DtlsTable<S> {
    /// An empty table with a first cookie secret.
    pub fn new(limits: Limits, secret: [u8; 32], now: Instant) -> Self {
        DtlsTable {
            limits,
            peers: HashMap::new(),
            keys: CookieKeys::new(secret),
            keys_since: now,
            next_id: 1,
        }
    }

    /// The cookie keys; past [`COOKIE_ROTATION`] they rotate to `fresh()`.
    pub fn cookie_keys(&mut self, now: Instant, fresh: impl FnOnce() -> [u8; 32]) -> &CookieKeys {
        if now.saturating_duration_since(self.keys_since) >= COOKIE_ROTATION {
            self.keys.rotate(fresh());
            self.keys_since = now;
        }
        &self.keys
    }

    /// Whether `peer` (which has a verified cookie) may get a session now.
    pub fn admit(&self, peer: SocketAddr) -> Result<(), Refusal> {
        if self.peers.len() >= self.limits.max_sessions {
            return Err(Refusal::Full);
        }
        if self.sessions_of(peer.ip()) >= self.limits.per_source {
            return Err(Refusal::PerSource);
        }
        Ok(())
    }

    fn sessions_of(&self, ip: IpAddr) -> usize {
        self.peers.keys().filter(|p| p.ip() == ip).count()
    }

    /// Adds an admitted session; returns its id.
    pub fn insert(
        &mut self,
        peer: SocketAddr,
        session: S,
        owner_transfer: bool,
        now: Instant,
    ) -> Result<u64, Refusal> {
        self.admit(peer)?;
        let id = self.next_id;
        self.next_id += 1;
        self.peers.insert(
            peer,
            Entry {
                session,
                id,
                owner_transfer,
                created: now,
                last_active: now,
                established: false,
            },
        );
        Ok(id)
    }

    /// True if `peer` has a session.
    pub fn contains(&self, peer: &SocketAddr) -> bool {
        self.peers.contains_key(peer)
    }

    /// Number of sessions.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// No session at all.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// The entry of `peer`, marked active at `now` (a datagram came).
    pub fn touch(&mut self, peer: &SocketAddr, now: Instant) -> Option<&mut Entry<S>> {
        let e = self.peers.get_mut(peer)?;
        e.last_active = now;
        Some(e)
    }

    /// The entry of `peer`.
    pub fn get_mut(&mut self, peer: &SocketAddr) -> Option<&mut Entry<S>> {
        self.peers.get_mut(peer)
    }

    /// Records that `peer`'s handshake finished (its lifetime is then the
    /// idle limit).
    pub fn established(&mut self, peer: &SocketAddr) {
        if let Some(e) = self.peers.get_mut(peer) {
            e.established = true;
        }
    }

    /// Every entry, to drive timers.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&SocketAddr, &mut Entry<S>)> {
        self.peers.iter_mut()
    }

    /// Removes and returns the entries that end at `now`: `dead` (failed or
    /// closed), unfinished past the handshake lifetime, or idle too long.
    pub fn sweep(
        &mut self,
        now: Instant,
        dead: impl Fn(&S) -> bool,
    ) -> Vec<(SocketAddr, Entry<S>)> {
        let l = self.limits;
        let ends = |e: &Entry<S>| {
            if dead(&e.session) {
                return true;
            }
            if !e.established {
                return now.saturating_duration_since(e.created) >= l.handshake_lifetime;
            }
            let idle = if e.owner_transfer {
                l.owner_transfer_idle
            } else {
                l.idle
            };
            now.saturating_duration_since(e.last_active) > idle
        };
        let gone: Vec<SocketAddr> = self
            .peers
            .iter()
            .filter(|(_, e)| ends(e))
            .map(|(p, _)| *p)
            .collect();
        gone.into_iter()
            .filter_map(|p| self.peers.remove(&p).map(|e| (p, e)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_sessions: 16,
        per_source: 4,
        handshake_lifetime: Duration::from_secs(3),
        idle: Duration::from_secs(60),
        owner_transfer_idle: Duration::from_secs(12),
    };

    fn addr(ip: u8, port: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, ip], port))
    }

    #[test]
    fn per_source_and_total_caps() {
        let t0 = Instant::now();
        let mut t: DtlsTable<()> = DtlsTable::new(LIMITS, [1; 32], t0);
        for port in 0..4 {
            t.insert(addr(1, port), (), false, t0).unwrap();
        }
        assert_eq!(t.admit(addr(1, 99)), Err(Refusal::PerSource));
        assert_eq!(
            t.insert(addr(1, 99), (), false, t0),
            Err(Refusal::PerSource)
        );
        // Other sources still get in, up to the total.
        for ip in 2..5 {
            for port in 0..4 {
                t.insert(addr(ip, port), (), false, t0).unwrap();
            }
        }
        assert_eq!(t.len(), 16);
        assert_eq!(t.admit(addr(9, 1)), Err(Refusal::Full));
        // Ids are unique.
        let mut ids: Vec<u64> = t.iter_mut().map(|(_, e)| e.id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 16);
    }

    #[test]
    fn unfinished_handshakes_end_early_established_sessions_when_idle() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut t: DtlsTable<()> = DtlsTable::new(LIMITS, [1; 32], t0);
        t.insert(addr(1, 1), (), false, t0).unwrap(); // never finishes
        t.insert(addr(1, 2), (), false, t0).unwrap(); // established
        t.insert(addr(1, 3), (), true, t0).unwrap(); // owner transfer
        t.established(&addr(1, 2));
        t.established(&addr(1, 3));
        // Datagrams keep an unfinished handshake no longer than its lifetime.
        t.touch(&addr(1, 1), t0 + s(2));
        assert!(t.sweep(t0 + s(2), |_| false).is_empty());
        let gone = t.sweep(t0 + s(3), |_| false);
        assert_eq!(gone.iter().map(|g| g.0).collect::<Vec<_>>(), [addr(1, 1)]);
        // The owner transfer ends after 12 s idle, the other after 60 s.
        t.touch(&addr(1, 2), t0 + s(10));
        assert!(t.sweep(t0 + s(12), |_| false).is_empty());
        let gone = t.sweep(t0 + s(13), |_| false);
        assert_eq!(gone.len(), 1);
        assert!(gone[0].1.owner_transfer && gone[0].1.is_established());
        assert!(t.sweep(t0 + s(70), |_| false).is_empty());
        assert_eq!(t.sweep(t0 + s(71), |_| false).len(), 1);
        assert!(t.is_empty());
        // A dead session ends at once; its slot is free again.
        t.insert(addr(1, 4), (), false, t0).unwrap();
        assert_eq!(t.sweep(t0, |_| true).len(), 1);
        assert!(!t.contains(&addr(1, 4)));
    }

    #[test]
    fn cookie_secret_rotates_and_previous_stays_valid() {
        let t0 = Instant::now();
        let mut t: DtlsTable<()> = DtlsTable::new(LIMITS, [1; 32], t0);
        let peer = addr(1, 5);
        // A minimal ClientHello without a cookie.
        let hello = |cookie: &[u8]| {
            let mut body = vec![0xfe, 0xfd];
            body.extend_from_slice(&[7; 32]);
            body.push(0);
            body.push(cookie.len() as u8);
            body.extend_from_slice(cookie);
            body.extend_from_slice(&[0, 2, 0xc0, 0xa8, 1, 0]);
            let l = (body.len() as u32).to_be_bytes();
            let mut hs = vec![1, l[1], l[2], l[3], 0, 0, 0, 0, 0, l[1], l[2], l[3]];
            hs.extend_from_slice(&body);
            let mut d = vec![22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0];
            d.extend_from_slice(&(hs.len() as u16).to_be_bytes());
            d.extend_from_slice(&hs);
            d
        };
        let mut rotations = 0;
        let keys = t.cookie_keys(t0, || unreachable!());
        let ssm_dtls::HelloCheck::SendHelloVerify(hvr) =
            ssm_dtls::check_client_hello(keys, peer, &hello(&[]))
        else {
            panic!()
        };
        let cookie = hvr[hvr.len() - 32..].to_vec();
        let verified = |t: &mut DtlsTable<()>, now, rotations: &mut u32| {
            let keys = t.cookie_keys(now, || {
                *rotations += 1;
                [2 + *rotations as u8; 32]
            });
            matches!(
                ssm_dtls::check_client_hello(keys, peer, &hello(&cookie)),
                ssm_dtls::HelloCheck::Verified(_)
            )
        };
        assert!(verified(
            &mut t,
            t0 + Duration::from_secs(59),
            &mut rotations
        ));
        assert_eq!(rotations, 0);
        assert!(verified(&mut t, t0 + COOKIE_ROTATION, &mut rotations));
        assert_eq!(rotations, 1);
        assert!(!verified(&mut t, t0 + 2 * COOKIE_ROTATION, &mut rotations));
        assert_eq!(rotations, 2);
    }
}

//! The device runtime: sockets and persistence around the sans-IO
//! [`ssm_ocf::device::Device`] and [`ssm_ocf::ssm::SsmReceiver`].
//!
//! * One unicast socket (ephemeral port, IPv6 dual-stack where available):
//!   plain requests, pair-wise OSCORE requests (credtype 64, through an
//!   [`OscoreResponder`] per peer), Observe notifications.
//! * Per named interface, one multicast socket per group: `224.0.1.187`
//!   and `ff02::158`, `ff03::158`, `ff05::158` on port 5683. SSM datagrams
//!   are verified, the replay floor is persisted *before* the update is
//!   applied, and nothing is ever sent back; plain multicast is discovery.
//!
//! By job, as quinn splits its endpoint: `unicast` (plain and pair-wise
//! OSCORE requests), `multicast` (SSM and discovery), `dtls` (the DTLS
//! server: onboarding and provisioning sessions), `notify` (Observe
//! notifications per channel). This module starts them and holds what they
//! share.
mod dtls;
mod error;
mod hub;
mod join;
mod keys;
mod multicast;
mod notify;
mod pin;
mod resources;
mod unicast;
use pin::new_pin_if_needed;
use resources::renamed;

use dtls::DtlsPeer;
pub use dtls::{
    DTLS_HANDSHAKE_LIFETIME, DTLS_IDLE, DTLS_LIMITS, MAX_DTLS_SESSIONS,
    MAX_DTLS_SESSIONS_PER_SOURCE, OTM_IDLE,
};
pub use error::DeviceError;

use crate::discovery::{RateLimiter, SitePrefix};
use crate::dtls_table::DtlsTable;
use crate::journal::FloorJournal;
use crate::multicast::COAP_PORT;
use crate::netif::NetIf;
use crate::random_bytes;
use crate::responder::OscoreResponder;
use crate::state_dir::StateDir;
use crate::store::FileSequenceStore;
pub use hub::GroupHub;
use ssm_ocf::cred::CredType;
use ssm_ocf::device::Device;
pub use ssm_ocf::ssm::SignatureCache;
use ssm_ocf::ssm::{DropCounters, DropReason, ReplayFloors, SsmReceiver};
use ssm_oscore::{ReplayState, SequenceNumber};
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::net::UdpSocket;
use tokio::sync::broadcast;
use uuid::Uuid;

/// Datagrams to send, each with its destination.
type Datagrams = Vec<(SocketAddr, Vec<u8>)>;

/// Largest response payload sent in one piece; larger ones (a switch's
/// `/oic/sec/cred` with a pair-wise credential per light) go block-wise
/// (RFC 7959 Block2).
const BLOCK_SIZE: usize = 1024;

/// How far ahead a device reserves its response sequence numbers.
const SSN_K: u64 = 64;

/// Where and how a device listens.
#[derive(Debug, Clone)]
pub struct DeviceConfig {
    /// Interfaces to join the multicast groups on (never any other).
    pub interfaces: Vec<String>,
    /// Use IPv4 (224.0.1.187).
    pub ipv4: bool,
    /// Use IPv6 (ff0X::158); not possible on `lo`.
    pub ipv6: bool,
    /// IPv6 scopes to join (2, 3, 5).
    pub ipv6_scopes: Vec<u8>,
    /// Multicast port (5683).
    pub port: u16,
    /// Directory for persisted state (replay floors, sequence numbers).
    pub state_dir: PathBuf,
    /// Persist the SSM replay floors in this journal, shared with the other
    /// devices of the process (one fsync per command for all of them),
    /// instead of one file per device. `None`: the device's own file.
    pub floor_journal: Option<Arc<FloorJournal>>,
    /// Verify each group-mode signature once for all the devices of the
    /// process that share this memo (see [`SignatureCache`]); the AEAD tag
    /// and the replay window stay each device's. `None`: every signature
    /// is verified by the device itself (one device per process).
    pub signature_cache: Option<Arc<SignatureCache>>,
    /// Routed prefixes of the site whose sources discovery is answered for,
    /// besides on-link ones (site-wide discovery through a multicast
    /// router). Empty: on-link sources only.
    pub site_prefixes: Vec<SitePrefix>,
    /// Share one socket per multicast group with the other devices of the
    /// process that use this hub (see [`GroupHub`]). `None`: a socket of
    /// the device's own.
    pub group_hub: Option<Arc<GroupHub>>,
    /// The unicast port (0: an ephemeral one).
    pub unicast_port: u16,
    /// Keep the application resources' state in the state dir
    /// (`resources.json`, written after each change): what a light
    /// restores at power-on ([`StateDir::load_resources`]).
    pub persist_resources: bool,
}

impl DeviceConfig {
    /// Loopback, IPv4 only, port 5683.
    pub fn loopback(state_dir: PathBuf) -> Self {
        DeviceConfig {
            interfaces: vec!["lo".into()],
            ipv4: true,
            ipv6: false,
            ipv6_scopes: vec![2, 3, 5],
            port: COAP_PORT,
            state_dir,
            floor_journal: None,
            signature_cache: None,
            site_prefixes: Vec::new(),
            group_hub: None,
            unicast_port: 0,
            persist_resources: false,
        }
    }
}

/// What a running device reports.
#[derive(Debug, Clone)]
pub enum DeviceEvent {
    /// An SSM update was applied.
    SsmApplied {
        /// The resource.
        href: String,
        /// Its new representation (JSON).
        state: serde_json::Value,
        /// The client (credential subject).
        from: Option<Uuid>,
        /// The Partial IV.
        piv: u64,
        /// When it was applied.
        at: std::time::Instant,
    },
    /// A unicast UPDATE changed a resource.
    UnicastApplied {
        /// The resource.
        href: String,
        /// Its new representation (JSON).
        state: serde_json::Value,
    },
    /// A multicast datagram was dropped.
    Dropped(DropReason),
    /// A verified SSM update was not applied (resource not SSM-enabled,
    /// bad body).
    Refused(ssm_ocf::device::SsmRefusal),
    /// The Random PIN to give the onboarding tool (shown while unowned).
    Pin(String),
    /// A provisioning session ended: the device went from RFPRO back to
    /// RFNOP, holding `creds` credentials.
    Provisioned {
        /// Number of credentials it holds now.
        creds: usize,
    },
    /// A Random PIN attempt failed (the handshake did not verify under
    /// the PIN).
    PinFailed {
        /// Who tried.
        peer: SocketAddr,
        /// Failures in a row, this one included.
        in_a_row: u32,
    },
    /// Too many failed PIN attempts in a row: the PIN is void and no PIN
    /// session is accepted for `backoff`; then a new [`DeviceEvent::Pin`].
    PinBackOff {
        /// How long.
        backoff: std::time::Duration,
        /// Back-off rounds since the last successful PIN session.
        round: u32,
    },
    /// The owner renamed the device (`/oic/con`); persisted.
    Renamed {
        /// The new name.
        name: String,
    },
    /// The device was onboarded (owner transfer completed).
    Owned {
        /// Its new identity.
        device_uuid: Uuid,
        /// Its owner.
        owner: Uuid,
    },
}

/// What the device's tasks share, behind one lock.
struct State {
    /// The sans-IO OCF model.
    device: Device,
    /// The live OSCORE contexts, rebuilt from the credentials.
    oscore: Contexts,
    /// Where the device persists what it must not lose.
    persist: Persistence,
    /// Counters read through the handle.
    stats: Stats,
    /// DTLS sessions (onboarding, provisioning).
    dtls: DtlsTable<DtlsPeer>,
    /// The Random PIN shown while unowned.
    pin: Option<String>,
    /// Failed Random PIN attempts and the back-off.
    pin_guard: ssm_ocf::security::pin_guard::PinGuard,
    /// Answering plain multicast (discovery).
    discovery: Discovery,
}

/// The OSCORE contexts built from the device's credentials, with the
/// receiver settings that survive a rebuild.
struct Contexts {
    /// SSM (credtype 256): the multicast receiver.
    ssm: SsmReceiver,
    /// Pair-wise OSCORE (credtype 64): one responder per peer.
    pairwise: Vec<PairwiseContext>,
    /// See [`DeviceHandle::set_floor_reservation`].
    floor_reservation: u64,
    /// Identical copies of an SSM datagram expected through the device's
    /// other multicast groups.
    duplicate_copies: u8,
    /// See [`DeviceConfig::signature_cache`].
    signature_cache: Option<Arc<SignatureCache>>,
}

/// A pair-wise OSCORE context (credtype 64) and its peer.
struct PairwiseContext {
    /// The peer's Sender ID (our Recipient ID): the kid its requests carry.
    kid: ssm_oscore::Id,
    /// The peer (credential subject).
    subject: Option<Uuid>,
    responder: OscoreResponder<FileSequenceStore>,
}

impl Contexts {
    fn pairwise_mut(&mut self, kid: &ssm_oscore::Id) -> Option<&mut PairwiseContext> {
        self.pairwise.iter_mut().find(|p| p.kid == *kid)
    }
}

/// The device's persistence.
struct Persistence {
    dir: StateDir,
    /// The process's floor journal and this device's key in it.
    floor_journal: Option<(Arc<FloorJournal>, String)>,
    /// The resources' state for the writer task (`persist_resources`).
    resources: Option<tokio::sync::watch::Sender<Option<resources::Snapshot>>>,
}

/// Counters.
#[derive(Default)]
struct Stats {
    drops: DropCounters,
    /// Verified SSM updates applied (or already in that state).
    ssm_applied: u64,
}

/// Answering plain multicast (discovery).
struct Discovery {
    /// Per-source rate limit of the answers.
    limiter: RateLimiter,
    /// The unicast socket, for answers sent after their Leisure.
    leisure_socket: Arc<UdpSocket>,
    /// Routed sources answered besides on-link ones.
    site: Vec<SitePrefix>,
}

/// Builds the live OSCORE contexts from the device's credentials.
fn contexts(
    device: &Device,
    dir: &StateDir,
    floors: ReplayFloors,
) -> Result<(SsmReceiver, Vec<PairwiseContext>), DeviceError> {
    let creds = device
        .security()
        .map(|s| s.cred.clone())
        .unwrap_or_default();
    let oscore = creds.oscore_creds().map_err(DeviceError::Credentials)?;
    let ssm = SsmReceiver::new(&oscore, floors).map_err(DeviceError::SsmContext)?;
    let mut pairwise = Vec::new();
    for c in oscore
        .iter()
        .filter(|c| c.credtype == CredType::PairwiseOscore)
    {
        let store = dir.sequence_store(c.credid);
        let seq = SequenceNumber::resume(store.load()?, SSN_K);
        // The unicast replay window is not persisted: after a restart the
        // first request from each peer goes through an Echo round trip.
        let ctx = ssm_ocf::ssm::pairwise_context(c, seq, ReplayState::awaiting_echo(32)).map_err(
            |reason| DeviceError::PairwiseContext {
                credid: c.credid,
                reason,
            },
        )?;
        pairwise.push(PairwiseContext {
            kid: *ctx.recipient.id(),
            subject: c.subject,
            responder: OscoreResponder::new(ctx, store),
        });
    }
    Ok((ssm, pairwise))
}

/// After a request: persist changed security resources, rebuild contexts
/// when OSCORE credentials changed. A failed write is logged and the
/// in-memory state kept (the next change retries).
fn after_request(st: &mut State, svr_changed: bool, creds_changed: bool) {
    if svr_changed {
        if let Some(sec) = st.device.security() {
            if let Err(e) = st.persist.dir.save_security(sec) {
                tracing::error!(error = %e, "cannot persist the security resources");
            }
        }
    }
    if creds_changed {
        let o = &mut st.oscore;
        match contexts(&st.device, &st.persist.dir, o.ssm.floors().clone()) {
            Ok((mut ssm, pairwise)) => {
                ssm.set_floor_reservation(o.floor_reservation);
                ssm.set_expected_copies(o.duplicate_copies);
                ssm.set_signature_cache(o.signature_cache.clone());
                o.ssm = ssm;
                o.pairwise = pairwise;
            }
            Err(e) => tracing::error!(error = %e, "cannot rebuild OSCORE contexts"),
        }
    }
}

/// A running device.
pub struct DeviceHandle {
    /// The unicast endpoints it announces.
    pub endpoints: Vec<String>,
    /// Its unicast socket address.
    pub unicast: SocketAddr,
    /// Device events.
    pub events: broadcast::Sender<DeviceEvent>,
    state: Arc<Mutex<State>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The state dir's lock, released when the handle goes.
    _lock: std::fs::File,
    /// The shared group sockets live while a device uses them.
    _hub: Option<Arc<GroupHub>>,
}

impl DeviceHandle {
    /// The representation of `href` now.
    pub fn representation(&self, href: &str) -> Option<serde_json::Value> {
        let st = self.state.lock().ok()?;
        st.device
            .representation(href)
            .map(|v| ssm_ocf::cbor::to_json(&v))
    }

    /// The Random PIN shown now (while unowned).
    pub fn pin(&self) -> Option<String> {
        self.state.lock().ok()?.pin.clone()
    }

    /// The security resources now.
    pub fn security(&self) -> Option<ssm_ocf::security::SecurityState> {
        self.state.lock().ok()?.device.security().cloned()
    }

    /// DTLS sessions the device holds now (none exists before a verified
    /// cookie exchange).
    pub fn dtls_sessions(&self) -> usize {
        self.state.lock().map(|s| s.dtls.len()).unwrap_or(0)
    }

    /// Dropped multicast datagrams by reason.
    pub fn drops(&self) -> DropCounters {
        self.state
            .lock()
            .map(|s| s.stats.drops.clone())
            .unwrap_or_default()
    }

    /// SSM updates applied since start (counted even when the event
    /// stream lags).
    pub fn ssm_applied(&self) -> u64 {
        self.state.lock().map(|s| s.stats.ssm_applied).unwrap_or(0)
    }

    /// Reserves the persisted SSM replay floor `k` ahead (see
    /// [`ssm_ocf::ssm::ReplayFloors::reserve`]): one floor write per `k + 1`
    /// accepted updates of a sender instead of one per update; after a
    /// crash the device ignores up to `k` fresh updates of each sender and
    /// never accepts a replay. 0 (the default) writes the exact floor
    /// before every update.
    pub fn set_floor_reservation(&self, k: u64) {
        if let Ok(mut st) = self.state.lock() {
            st.oscore.floor_reservation = k;
            st.oscore.ssm.set_floor_reservation(k);
        }
    }

    /// Stops every task (sockets close).
    pub fn stop(self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Drop for DeviceHandle {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Starts `device`; its OSCORE contexts come from the credentials in its
/// security state (`Device::set_security`).
pub async fn start(mut device: Device, config: &DeviceConfig) -> Result<DeviceHandle, DeviceError> {
    let dir = StateDir::new(&config.state_dir);
    dir.create()?;
    let lock = dir.lock()?;
    if device.security().is_none() {
        return Err(DeviceError::NoSecurityState);
    }
    // A crash in the middle of an owner transfer left part of it on disk
    // (every step is persisted): undo it as the end of the session would
    // have, so the device is never half-owned and can be onboarded again.
    if let Some(mut s) = device.security().cloned() {
        if s.owner_transfer_ended() {
            tracing::warn!("an owner transfer was interrupted: back to unowned (RFOTM)");
            dir.save_security(&s)?;
            device.set_security(s);
        }
    }
    let journal = config
        .floor_journal
        .clone()
        .map(|j| (j, config.state_dir.to_string_lossy().into_owned()));
    let floors = load_floors(&dir, journal.as_ref())?;
    keys::own_key_pair(&mut device, &dir)?;
    let (mut ssm, pairwise) = contexts(&device, &dir, floors)?;
    let unicast = Arc::new(unicast::socket(config.unicast_port)?);
    let (mcast, endpoints) = join::join_groups(config, unicast.local_addr()?.port())?;
    let any_v6 = config.ipv6
        && config
            .interfaces
            .iter()
            .any(|n| NetIf::by_name(n).map(|i| !i.is_loopback()).unwrap_or(false));
    // Advertised without an IPv6 zone: a zone means something only on this
    // host, and the reference client drops an `ep` that has one (issue 14).
    // A client takes the zone of the interface the answer came in on.
    device.set_endpoints(endpoints.iter().map(|e| without_zone(e)).collect());
    device.set_ssm_families(any_v6, config.ipv4);
    // A sender sends one identical copy per group: the copies that arrive
    // through the other groups are duplicates, not replays.
    let duplicate_copies = u8::try_from(mcast.len().saturating_sub(1)).unwrap_or(u8::MAX);
    ssm.set_expected_copies(duplicate_copies);
    ssm.set_signature_cache(config.signature_cache.clone());

    let (events, _) = broadcast::channel(1024);
    let now = std::time::Instant::now();
    // Every log line of the device's tasks names it (a span at error
    // level is enabled whatever the filter).
    let span = tracing::error_span!("device", name = %device.info().name);
    let mut tasks = Vec::new();
    let resources = config.persist_resources.then(|| {
        let (tx, rx) = tokio::sync::watch::channel(None);
        let task = resources::writer(dir.clone(), rx);
        tasks.push(tokio::spawn(tracing::Instrument::instrument(
            task,
            span.clone(),
        )));
        tx
    });
    let state = Arc::new(Mutex::new(State {
        device,
        oscore: Contexts {
            ssm,
            pairwise,
            floor_reservation: 0,
            duplicate_copies,
            signature_cache: config.signature_cache.clone(),
        },
        persist: Persistence {
            dir,
            floor_journal: journal,
            resources,
        },
        stats: Stats::default(),
        dtls: DtlsTable::new(DTLS_LIMITS, random_bytes::<32>(), now),
        pin: None,
        pin_guard: Default::default(),
        discovery: Discovery {
            limiter: RateLimiter::new(now),
            leisure_socket: unicast.clone(),
            site: config.site_prefixes.clone(),
        },
    }));
    {
        let mut st = state
            .lock()
            .map_err(|_| io::Error::other("state poisoned"))?;
        new_pin_if_needed(&mut st, &events);
        resources::started(&st);
    }

    // Every group joined (or subscribed) before any task listens on it.
    let inputs = join::inputs(mcast, config, &state, &events)?;
    use tracing::Instrument;
    tasks.push(tokio::spawn(
        dtls::timer_loop(unicast.clone(), state.clone(), events.clone()).instrument(span.clone()),
    ));
    tasks.push(tokio::spawn(
        unicast::receive_loop(unicast.clone(), state.clone(), events.clone())
            .instrument(span.clone()),
    ));
    tasks.extend(join::receivers(inputs, &unicast, &state, &events, &span));
    Ok(DeviceHandle {
        endpoints,
        unicast: unicast.local_addr()?,
        events,
        state,
        tasks,
        _lock: lock,
        _hub: config.group_hub.clone(),
    })
}

/// The persisted replay floors: with a journal, per sender, the higher of
/// the own file (written before the journal was used) and the latest
/// journal record.
fn load_floors(
    dir: &StateDir,
    journal: Option<&(Arc<FloorJournal>, String)>,
) -> Result<ReplayFloors, DeviceError> {
    let mut floors = dir.load_floors()?;
    if let Some((j, key)) = journal {
        if let Some(bytes) = j.latest(key) {
            let recorded: ReplayFloors =
                serde_json::from_slice(&bytes).map_err(DeviceError::FloorJournal)?;
            for (kid, piv) in recorded.0 {
                let e = floors.0.entry(kid).or_insert(0);
                *e = (*e).max(piv);
            }
        }
    }
    Ok(floors)
}

/// `ep` without its IPv6 zone (`coap://[fe80::1%iot0]:5683` →
/// `coap://[fe80::1]:5683`).
fn without_zone(ep: &str) -> String {
    match (ep.find('%'), ep.find(']')) {
        (Some(p), Some(b)) if p < b => format!("{}{}", &ep[..p], &ep[b..]),
        _ => ep.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn advertised_endpoints_carry_no_zone() {
        assert_eq!(
            super::without_zone("coap://[fe80::58:ff:fe00:2%ssm0]:34549"),
            "coap://[fe80::58:ff:fe00:2]:34549"
        );
        assert_eq!(
            super::without_zone("coap://[fd58::2]:1"),
            "coap://[fd58::2]:1"
        );
        assert_eq!(
            super::without_zone("coap://10.0.0.1:5683"),
            "coap://10.0.0.1:5683"
        );
    }
}

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
use crate::discovery::{leisure, OnLink, RateLimiter, MULTICAST_BLOCK_SIZE};
use crate::dtls_table::{DtlsTable, Limits};
use crate::journal::FloorJournal;
use crate::multicast::{all_ocf_nodes, join_v4, join_v6, ALL_COAP_NODES_V4, COAP_PORT};
use crate::netif::NetIf;
use crate::random_bytes;
use crate::responder::OscoreResponder;
use crate::store::{atomic_write, FileSequenceStore};
use ssm_coap::{Code, Message, MessageType, OptionNumber, Packet};
use ssm_ocf::cred::CredType;
use ssm_ocf::device::{reply, Channel, Device, RequestMeta, Security};
use ssm_ocf::ssm::{DropCounters, DropReason, ReplayFloors, SsmReceiver, Verified};
use ssm_oscore::{OscoreOption, ReplayState, SequenceNumber};
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::net::UdpSocket;
use tokio::sync::broadcast;
use uuid::Uuid;

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
    Refused(String),
    /// The Random PIN to give the onboarding tool (shown while unowned).
    Pin(String),
    /// A provisioning session ended: the device went from RFPRO back to
    /// RFNOP, holding `creds` credentials.
    Provisioned {
        /// Number of credentials it holds now.
        creds: usize,
    },
    /// The device was onboarded (owner transfer completed).
    Owned {
        /// Its new identity.
        device_uuid: Uuid,
        /// Its owner.
        owner: Uuid,
    },
}

struct State {
    device: Device,
    ssm: SsmReceiver,
    pairwise: Vec<(
        ssm_oscore::Id,
        Option<Uuid>,
        OscoreResponder<FileSequenceStore>,
    )>,
    drops: DropCounters,
    /// Verified SSM updates applied (or already in that state).
    ssm_applied: u64,
    floors_path: PathBuf,
    /// The process's floor journal and this device's key in it.
    floor_journal: Option<(Arc<FloorJournal>, String)>,
    state_dir: PathBuf,
    dtls: DtlsTable<DtlsPeer>,
    pin: Option<String>,
    floor_reservation: u64,
    /// Identical copies of an SSM datagram expected through the device's
    /// other multicast groups.
    duplicate_copies: u8,
    /// Per-source rate limit of plain multicast answers (discovery).
    discovery: RateLimiter,
    /// The unicast socket, for discovery answers sent after their Leisure.
    leisure_socket: Arc<UdpSocket>,
}

/// Longest number of concurrent DTLS sessions a device keeps.
pub const MAX_DTLS_SESSIONS: usize = 16;
/// Most concurrent DTLS sessions from one source IP address.
pub const MAX_DTLS_SESSIONS_PER_SOURCE: usize = 4;
/// A session whose handshake has not finished this long after its
/// verified ClientHello is dropped (a real handshake takes a few round
/// trips; this leaves room for the 1 s and 2 s retransmissions of RFC 6347
/// §4.2.4.1 on a lossy link).
pub const DTLS_HANDSHAKE_LIFETIME: std::time::Duration = std::time::Duration::from_secs(3);
/// A DTLS session idle this long is dropped.
pub const DTLS_IDLE: std::time::Duration = std::time::Duration::from_secs(60);
/// An owner transfer silent this long is abandoned (its OBT went away):
/// what it wrote is undone and a new PIN is shown. A transfer takes well
/// under a second; the OBT waits at most 10 s for one answer.
pub const OTM_IDLE: std::time::Duration = std::time::Duration::from_secs(12);

/// The device's DTLS table bounds.
pub const DTLS_LIMITS: Limits = Limits {
    max_sessions: MAX_DTLS_SESSIONS,
    per_source: MAX_DTLS_SESSIONS_PER_SOURCE,
    handshake_lifetime: DTLS_HANDSHAKE_LIFETIME,
    idle: DTLS_IDLE,
    owner_transfer_idle: OTM_IDLE,
};

struct DtlsPeer {
    session: ssm_dtls::DtlsSession,
    /// An owner-transfer session's exported keys, derived once when its
    /// handshake finished and shared with each of its requests.
    otm_keys: Option<Arc<ssm_ocf::security::otm::OtmKeys>>,
}

/// Converts a session's exported keys for the owner-PSK derivation (the
/// result wipes itself on drop).
pub fn otm_keys(k: &ssm_dtls::KeyMaterial) -> ssm_ocf::security::otm::OtmKeys {
    ssm_ocf::security::otm::OtmKeys {
        master_secret: *k.master_secret,
        client_random: k.client_random,
        server_random: k.server_random,
        key_block_len: ssm_ocf::security::otm::key_block_len(&k.cipher),
    }
}

/// The security state file of a device.
pub fn svr_path(state_dir: &std::path::Path) -> PathBuf {
    state_dir.join("svr.json")
}

/// Loads `svr.json`, if there is one.
pub fn load_security(
    state_dir: &std::path::Path,
) -> io::Result<Option<ssm_ocf::security::SecurityState>> {
    match std::fs::read_to_string(svr_path(state_dir)) {
        Ok(s) => serde_json::from_str(&s)
            .map(Some)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("svr.json: {e}"))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Persists the security state atomically.
pub fn save_security(
    state_dir: &std::path::Path,
    s: &ssm_ocf::security::SecurityState,
) -> io::Result<()> {
    atomic_write(
        &svr_path(state_dir),
        serde_json::to_string_pretty(s)
            .map_err(io::Error::other)?
            .as_bytes(),
    )
}

type Pairwise = Vec<(
    ssm_oscore::Id,
    Option<Uuid>,
    OscoreResponder<FileSequenceStore>,
)>;

/// Builds the live OSCORE contexts from the device's credentials.
fn contexts(
    device: &Device,
    state_dir: &std::path::Path,
    floors: ReplayFloors,
) -> io::Result<(SsmReceiver, Pairwise)> {
    let bad = |e: String| io::Error::new(io::ErrorKind::InvalidData, e);
    let creds = device
        .security()
        .map(|s| s.cred.clone())
        .unwrap_or_default();
    let oscore = creds.oscore_creds().map_err(|e| bad(e.to_string()))?;
    let ssm = SsmReceiver::new(&oscore, floors).map_err(|e| bad(e.to_string()))?;
    let mut pairwise = Vec::new();
    for c in oscore
        .iter()
        .filter(|c| c.credtype == CredType::PairwiseOscore)
    {
        let store = FileSequenceStore::new(state_dir.join(format!("ssn-{}", c.credid)));
        let seq = SequenceNumber::resume(store.load()?, SSN_K);
        // The unicast replay window is not persisted: after a restart the
        // first request from each peer goes through an Echo round trip.
        let ctx =
            ssm_ocf::ssm::pairwise_context(c, seq, ReplayState::awaiting_echo(32)).map_err(bad)?;
        pairwise.push((
            *ctx.recipient.id(),
            c.subject,
            OscoreResponder::new(ctx, store),
        ));
    }
    Ok((ssm, pairwise))
}

/// After a request: persist changed security resources, rebuild contexts
/// when OSCORE credentials changed. A failed write is logged and the
/// in-memory state kept (the next change retries).
fn after_request(st: &mut State, svr_changed: bool, creds_changed: bool) {
    if svr_changed {
        if let Some(sec) = st.device.security() {
            if let Err(e) = save_security(&st.state_dir, sec) {
                tracing::error!(error = %e, "cannot persist the security resources");
            }
        }
    }
    if creds_changed {
        match contexts(&st.device, &st.state_dir, st.ssm.floors().clone()) {
            Ok((mut ssm, pairwise)) => {
                ssm.set_floor_reservation(st.floor_reservation);
                ssm.set_expected_copies(st.duplicate_copies);
                st.ssm = ssm;
                st.pairwise = pairwise;
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
            .map(|s| s.drops.clone())
            .unwrap_or_default()
    }

    /// SSM updates applied since start (counted even when the event
    /// stream lags).
    pub fn ssm_applied(&self) -> u64 {
        self.state.lock().map(|s| s.ssm_applied).unwrap_or(0)
    }

    /// Reserves the persisted SSM replay floor `k` ahead (see
    /// [`ssm_ocf::ssm::ReplayFloors::reserve`]): one floor write per `k + 1`
    /// accepted updates of a sender instead of one per update; after a
    /// crash the device ignores up to `k` fresh updates of each sender and
    /// never accepts a replay. 0 (the default) writes the exact floor
    /// before every update.
    pub fn set_floor_reservation(&self, k: u64) {
        if let Ok(mut st) = self.state.lock() {
            st.floor_reservation = k;
            st.ssm.set_floor_reservation(k);
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

/// The replay floors file of a device.
pub fn floors_path(state_dir: &std::path::Path) -> PathBuf {
    state_dir.join("ssm-replay-floors.json")
}

fn load_floors(path: &std::path::Path) -> io::Result<ReplayFloors> {
    match std::fs::read_to_string(path) {
        Ok(s) => serde_json::from_str(&s).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(ReplayFloors::default()),
        Err(e) => Err(e),
    }
}

fn unicast_socket() -> io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = match Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP)) {
        Ok(s) => {
            s.set_only_v6(false)?;
            s.bind(&SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)).into())?;
            s
        }
        Err(_) => {
            // No IPv6 on this host.
            let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
            s.bind(&SocketAddr::from(([0, 0, 0, 0], 0)).into())?;
            s
        }
    };
    s.set_nonblocking(true)?;
    UdpSocket::from_std(s.into())
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

/// Starts `device`; its OSCORE contexts come from the credentials in its
/// security state (`Device::set_security`).
pub async fn start(mut device: Device, config: &DeviceConfig) -> io::Result<DeviceHandle> {
    crate::store::create_private_dir(&config.state_dir)?;
    let lock = lock_state_dir(&config.state_dir)?;
    if device.security().is_none() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the device has no security state",
        ));
    }
    // A crash in the middle of an owner transfer left part of it on disk
    // (every step is persisted): undo it as the end of the session would
    // have, so the device is never half-owned and can be onboarded again.
    if let Some(mut s) = device.security().cloned() {
        if s.owner_transfer_ended() {
            tracing::warn!("an owner transfer was interrupted: back to unowned (RFOTM)");
            save_security(&config.state_dir, &s)?;
            device.set_security(s);
        }
    }
    let floors_path = floors_path(&config.state_dir);
    let mut floors = load_floors(&floors_path)?;
    // With a journal: per sender, the higher of the own file (written
    // before the journal was used) and the latest journal record.
    let journal = config
        .floor_journal
        .clone()
        .map(|j| (j, config.state_dir.to_string_lossy().into_owned()));
    if let Some((j, key)) = &journal {
        if let Some(bytes) = j.latest(key) {
            let recorded: ReplayFloors = serde_json::from_slice(&bytes).map_err(|e| {
                io::Error::new(io::ErrorKind::InvalidData, format!("floor journal: {e}"))
            })?;
            for (kid, piv) in recorded.0 {
                let e = floors.0.entry(kid).or_insert(0);
                *e = (*e).max(piv);
            }
        }
    }
    let (mut ssm, pairwise) = contexts(&device, &config.state_dir, floors)?;
    let unicast = Arc::new(unicast_socket()?);
    let port = unicast.local_addr()?.port();
    let mut mcast = Vec::new();
    let mut endpoints = Vec::new();
    for name in &config.interfaces {
        let nif = NetIf::by_name(name)?;
        let v6 = config.ipv6 && !nif.is_loopback();
        let link = Arc::new(nif.on_link());
        if config.ipv4 {
            mcast.push((
                join_v4(ALL_COAP_NODES_V4, config.port, nif.ipv4_addr()?)?,
                link.clone(),
            ));
        }
        if v6 {
            for scope in &config.ipv6_scopes {
                mcast.push((
                    join_v6(all_ocf_nodes(*scope), config.port, nif.index)?,
                    link.clone(),
                ));
            }
        }
        endpoints.extend(nif.endpoints(
            port,
            config.ipv4,
            v6 || (config.ipv6 && nif.is_loopback()),
        ));
    }
    let any_v6 = config.ipv6
        && config
            .interfaces
            .iter()
            .any(|n| NetIf::by_name(n).map(|i| !i.is_loopback()).unwrap_or(false));
    device.set_endpoints(endpoints.clone());
    device.set_ssm_families(any_v6, config.ipv4);
    // A sender sends one identical copy per group: the copies that arrive
    // through the other groups are duplicates, not replays.
    let duplicate_copies = u8::try_from(mcast.len().saturating_sub(1)).unwrap_or(u8::MAX);
    ssm.set_expected_copies(duplicate_copies);

    let (events, _) = broadcast::channel(1024);
    let state = Arc::new(Mutex::new(State {
        device,
        ssm,
        pairwise,
        drops: DropCounters::default(),
        ssm_applied: 0,
        floors_path,
        floor_journal: journal,
        state_dir: config.state_dir.clone(),
        dtls: DtlsTable::new(DTLS_LIMITS, random_bytes::<32>(), std::time::Instant::now()),
        pin: None,
        floor_reservation: 0,
        duplicate_copies,
        discovery: RateLimiter::new(std::time::Instant::now()),
        leisure_socket: unicast.clone(),
    }));
    {
        let mut st = state
            .lock()
            .map_err(|_| io::Error::other("state poisoned"))?;
        new_pin_if_needed(&mut st, &events);
    }

    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(dtls_timer_loop(
        unicast.clone(),
        state.clone(),
        events.clone(),
    )));
    tasks.push(tokio::spawn(unicast_loop(
        unicast.clone(),
        state.clone(),
        events.clone(),
    )));
    // One SSM update of this device at a time from receive to apply, across
    // its multicast sockets, so floor writes land in order.
    let ssm_order = Arc::new(tokio::sync::Mutex::new(()));
    for (s, link) in mcast {
        tasks.push(tokio::spawn(multicast_loop(
            s,
            link,
            unicast.clone(),
            state.clone(),
            events.clone(),
            ssm_order.clone(),
        )));
    }
    Ok(DeviceHandle {
        endpoints,
        unicast: unicast.local_addr()?,
        events,
        state,
        tasks,
        _lock: lock,
    })
}

/// The lock a running device holds on its state dir.
pub fn device_lock_path(state_dir: &std::path::Path) -> PathBuf {
    state_dir.join("device.lock")
}

/// Takes the state dir for one running device: a second device on the same
/// dir would keep its own copy of the security state and replay floors and
/// answer with the same sequence numbers' contexts. (Clients on the dir,
/// `ssm client`, share it safely through the sequence store's lock.)
fn lock_state_dir(state_dir: &std::path::Path) -> io::Result<std::fs::File> {
    use std::io::{Read, Seek, Write};
    let path = device_lock_path(state_dir);
    let mut f = crate::store::private_options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)?;
    match f.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = f.read_to_string(&mut pid);
            let pid = pid.trim();
            return Err(io::Error::new(
                io::ErrorKind::ResourceBusy,
                format!(
                    "{} is in use by another running device{}: stop it first (one device per state dir)",
                    state_dir.display(),
                    if pid.is_empty() {
                        String::new()
                    } else {
                        format!(" (pid {pid})")
                    }
                ),
            ));
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(e),
    }
    f.set_len(0)?;
    f.seek(io::SeekFrom::Start(0))?;
    writeln!(f, "{}", std::process::id())?;
    Ok(f)
}

async fn send_all(socket: &UdpSocket, out: Vec<(SocketAddr, Vec<u8>)>) {
    for (peer, bytes) in out {
        if let Err(e) = socket.send_to(&bytes, for_socket(socket, peer)).await {
            tracing::debug!(%peer, error = %e, "send failed");
        }
    }
}

/// Notifications for `href`, each over its observer's channel: plain as a
/// plain datagram; OSCORE protected with that observer's pair-wise context
/// and the device's own Partial IV (reserved on disk first); DTLS in its
/// session. A secured observer whose context or session is gone gets
/// nothing, never plaintext.
fn notify(st: &mut State, href: &str) -> Vec<(SocketAddr, Vec<u8>)> {
    let mut mid = || u16::from_be_bytes(random_bytes::<2>());
    let due = st
        .device
        .notifications(href, std::time::Instant::now(), &mut mid);
    let mut out = Vec::new();
    for (channel, m) in due {
        match channel {
            Channel::Plain(addr) => out.push((addr, m.to_vec())),
            Channel::Oscore { addr, binding } => {
                let Some((_, _, responder)) =
                    st.pairwise.iter_mut().find(|(id, _, _)| *id == binding.kid)
                else {
                    tracing::debug!(%addr, "OSCORE observer without context; not notified");
                    continue;
                };
                if let Some(bytes) = responder.protect_notification(&binding, &m) {
                    out.push((addr, bytes));
                }
            }
            Channel::Dtls(addr) => {
                let Some(p) = st.dtls.get_mut(&addr).map(|e| &mut e.session) else {
                    tracing::debug!(%addr, "DTLS observer without session; not notified");
                    continue;
                };
                if let Err(e) = p.session.send_app_data(&m.to_vec()) {
                    tracing::debug!(%addr, error = %e, "DTLS notification");
                }
                while let Some(d) = p.session.poll_transmit() {
                    out.push((addr, d));
                }
            }
        }
    }
    out
}

fn normalise(peer: SocketAddr) -> SocketAddr {
    match peer {
        SocketAddr::V6(a) => match a.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::from((IpAddr::V4(v4), a.port())),
            None => peer,
        },
        v4 => v4,
    }
}

async fn unicast_loop(
    socket: Arc<UdpSocket>,
    state: Arc<Mutex<State>>,
    events: broadcast::Sender<DeviceEvent>,
) {
    let mut buf = vec![0u8; 1500];
    loop {
        let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
            return;
        };
        let peer = normalise(peer);
        let out = {
            let Ok(mut st) = state.lock() else { return };
            if matches!(buf.first(), Some(20..=25)) {
                handle_dtls(&mut st, &buf[..n], peer, &events)
            } else {
                handle_unicast(&mut st, &mut buf[..n], peer, &events)
            }
        };
        send_all(&socket, out).await;
    }
}

fn handle_unicast(
    st: &mut State,
    datagram: &mut [u8],
    peer: SocketAddr,
    events: &broadcast::Sender<DeviceEvent>,
) -> Vec<(SocketAddr, Vec<u8>)> {
    let (kid, ty, is_request, mid) = match Packet::new_checked(&*datagram) {
        Ok(p) => (
            p.options()
                .get(OptionNumber::OSCORE)
                .and_then(|o| OscoreOption::parse(o.value).ok())
                .and_then(|o| o.kid),
            p.msg_type(),
            p.code().is_request(),
            p.message_id(),
        ),
        Err(_) => return Vec::new(),
    };
    if ty == MessageType::Reset {
        // RFC 7641 §3.6: matched by the Message ID of the notification.
        st.device.reset(peer, mid);
        return Vec::new();
    }
    if !is_request {
        return Vec::new();
    }
    let mut changed = None;
    let mut svr = (false, false);
    let mut out = Vec::new();
    if let Some(kid) = kid {
        let State {
            device, pairwise, ..
        } = st;
        let Some((_, subject, responder)) = pairwise.iter_mut().find(|(id, _, _)| *id == kid)
        else {
            // Unknown kid: 4.01 (RFC 8613 §8.2), plain.
            if let Ok(req) = Message::parse(datagram) {
                let mut r = reply(&req, Code::UNAUTHORIZED);
                r.message_id = if r.ty == MessageType::Acknowledgement {
                    r.message_id
                } else {
                    u16::from_be_bytes(random_bytes::<2>())
                };
                r.payload = b"Security context not found".to_vec();
                out.push((peer, r.to_vec()));
            }
            return out;
        };
        let subject = *subject;
        let mid = u16::from_be_bytes(random_bytes::<2>());
        let mut app = |req: &Message, binding: &ssm_oscore::RequestBinding| {
            let meta = RequestMeta {
                multicast: false,
                security: Security::Oscore {
                    subject,
                    credtype: CredType::PairwiseOscore,
                },
                peer: Channel::Oscore {
                    addr: peer,
                    binding: *binding,
                },
            };
            let o = device.handle(req, &meta);
            changed = o.changed;
            svr = (o.svr_changed, o.creds_changed);
            o.response.unwrap_or_else(|| reply(req, Code::NOT_FOUND))
        };
        let now = std::time::Instant::now();
        if let Some(bytes) =
            responder.handle_from(datagram, peer, now, random_bytes::<8>(), mid, &mut app)
        {
            out.push((peer, bytes));
        }
    } else {
        let Ok(req) = Message::parse(datagram) else {
            return out;
        };
        let meta = RequestMeta {
            multicast: false,
            security: Security::None,
            peer: Channel::Plain(peer),
        };
        let o = st.device.handle(&req, &meta);
        changed = o.changed;
        svr = (o.svr_changed, o.creds_changed);
        if let Some(r) = o.response {
            let mut r = ssm_ocf::message::apply_block2(&req, r, BLOCK_SIZE);
            if r.ty == MessageType::NonConfirmable {
                r.message_id = u16::from_be_bytes(random_bytes::<2>());
            }
            out.push((peer, r.to_vec()));
        }
    }
    after_request(st, svr.0, svr.1);
    if let Some(href) = changed {
        let state = st
            .device
            .representation(&href)
            .map(|v| ssm_ocf::cbor::to_json(&v))
            .unwrap_or_default();
        let _ = events.send(DeviceEvent::UnicastApplied {
            href: href.clone(),
            state,
        });
        out.extend(notify(st, &href));
    }
    out
}

async fn multicast_loop(
    socket: UdpSocket,
    link: Arc<OnLink>,
    unicast: Arc<UdpSocket>,
    state: Arc<Mutex<State>>,
    events: broadcast::Sender<DeviceEvent>,
    ssm_order: Arc<tokio::sync::Mutex<()>>,
) {
    let mut buf = vec![0u8; 1500];
    loop {
        let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
            return;
        };
        let peer = normalise(peer);
        let order = ssm_order.lock().await;
        let step = {
            let Ok(mut st) = state.lock() else { return };
            handle_multicast(&mut st, &mut buf[..n], peer, &link, &events)
        };
        let out = match step {
            Step::Done(out) => out,
            Step::Persist {
                accepted,
                journal,
                path,
                floor,
                bytes,
            } => {
                // The floor must be durable before the update is applied.
                // The write runs on tokio's blocking pool, not on a worker
                // and without the state lock: the floor writes of many
                // devices in one process (and the other processes') then
                // overlap, and the file system commits them together.
                let written = match journal {
                    // One commit for every device of the process.
                    Some((j, key)) => j.write(&key, bytes).await,
                    None => tokio::task::spawn_blocking(move || atomic_write(&path, &bytes))
                        .await
                        .map_err(io::Error::other)
                        .and_then(|r| r),
                };
                match written {
                    Ok(()) => {
                        let Ok(mut st) = state.lock() else { return };
                        // Only now does the receiver's floor rise.
                        st.ssm.floor_persisted(&accepted.kid, floor);
                        apply_accepted(&mut st, &accepted, &events)
                    }
                    Err(e) => {
                        // Without a durable floor a restart could accept
                        // this datagram again: do not apply it.
                        tracing::error!(error = %e, "cannot persist the SSM replay floor; update not applied");
                        Vec::new()
                    }
                }
            }
        };
        drop(order);
        send_all(&unicast, out).await;
    }
}

/// What to do with a multicast datagram after the verification step.
enum Step {
    /// Handled (sent back: discovery replies and notifications).
    Done(Vec<(SocketAddr, Vec<u8>)>),
    /// A verified SSM update whose replay floor must be persisted before
    /// it is applied.
    Persist {
        accepted: ssm_ocf::ssm::Accepted,
        journal: Option<(Arc<FloorJournal>, String)>,
        path: PathBuf,
        /// The floor of `accepted.kid` to make durable, and the encoded
        /// floors with it.
        floor: u64,
        bytes: Vec<u8>,
    },
}

fn handle_multicast(
    st: &mut State,
    datagram: &mut [u8],
    peer: SocketAddr,
    link: &OnLink,
    events: &broadcast::Sender<DeviceEvent>,
) -> Step {
    let is_oscore = match Packet::new_checked(&*datagram) {
        // Multicast requests are NON (RFC 7252 §8.1): a CON one is not
        // answered, acknowledged or applied.
        Ok(p) if p.msg_type() == MessageType::Confirmable => {
            drop_one(st, DropReason::ConfirmableMulticast, events);
            return Step::Done(Vec::new());
        }
        Ok(p) => p.options().get(OptionNumber::OSCORE).is_some(),
        Err(_) => {
            drop_one(st, DropReason::Malformed, events);
            return Step::Done(Vec::new());
        }
    };
    if !is_oscore {
        // Plain multicast (discovery) is unauthenticated, so its answers
        // must not make the device a reflection amplifier (discovery.rs):
        // only on-link sources, a token bucket per source, the first
        // Block2 block only, after a random Leisure (RFC 7252 §8.2).
        let Ok(req) = Message::parse(datagram) else {
            return Step::Done(Vec::new());
        };
        if !link.contains(peer) {
            tracing::trace!(%peer, "plain multicast request from an off-link source ignored");
            if req.code != Code::GET {
                // Counted as before: an unprotected multicast update.
                drop_one(st, DropReason::Unprotected, events);
            }
            return Step::Done(Vec::new());
        }
        let meta = RequestMeta {
            multicast: true,
            security: Security::None,
            peer: Channel::Plain(peer),
        };
        let o = st.device.handle(&req, &meta);
        match o.response {
            Some(r) if st.discovery.allow(peer.ip(), std::time::Instant::now()) => {
                let mut r = ssm_ocf::message::apply_block2(&req, r, MULTICAST_BLOCK_SIZE);
                r.message_id = u16::from_be_bytes(random_bytes::<2>());
                let (socket, bytes) = (st.leisure_socket.clone(), r.to_vec());
                let delay = leisure(random_bytes::<4>());
                // At most GLOBAL_BURST + GLOBAL_RATE × LEISURE of these
                // wait at a time (the rate limiter's global bucket).
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    if let Err(e) = socket.send_to(&bytes, for_socket(&socket, peer)).await {
                        tracing::debug!(%peer, error = %e, "send failed");
                    }
                });
            }
            Some(_) => tracing::trace!(%peer, "multicast answer rate-limited"),
            None => {
                if req.code != Code::GET {
                    drop_one(st, DropReason::Unprotected, events);
                }
            }
        }
        return Step::Done(Vec::new());
    }
    // SSM: whatever happens below, nothing is sent to the peer.
    match st.ssm.receive(datagram) {
        Ok(Verified {
            accepted,
            persist: Some(floor),
        }) => Step::Persist {
            journal: st.floor_journal.clone(),
            path: st.floors_path.clone(),
            bytes: serde_json::to_vec(&st.ssm.floors_with(&accepted.kid, floor))
                .unwrap_or_default(),
            floor,
            accepted,
        },
        // The durable floor already covers it.
        Ok(Verified {
            accepted,
            persist: None,
        }) => Step::Done(apply_accepted(st, &accepted, events)),
        Err(reason) => {
            drop_one(st, reason, events);
            Step::Done(Vec::new())
        }
    }
}

/// Applies a verified SSM update whose floor is durable; returns the
/// Observe notifications to send.
fn apply_accepted(
    st: &mut State,
    accepted: &ssm_ocf::ssm::Accepted,
    events: &broadcast::Sender<DeviceEvent>,
) -> Vec<(SocketAddr, Vec<u8>)> {
    match st.device.apply_ssm(accepted) {
        Ok(changed) => {
            st.ssm_applied += 1;
            let href = accepted.request.uri_path();
            let state = st
                .device
                .representation(&href)
                .map(|v| ssm_ocf::cbor::to_json(&v))
                .unwrap_or_default();
            let _ = events.send(DeviceEvent::SsmApplied {
                href: href.clone(),
                state,
                from: accepted.subject,
                piv: accepted.piv,
                at: std::time::Instant::now(),
            });
            match changed {
                Some(h) => notify(st, &h),
                None => Vec::new(),
            }
        }
        Err(refusal) => {
            tracing::debug!(%refusal, "verified SSM update refused");
            let _ = events.send(DeviceEvent::Refused(refusal.to_string()));
            Vec::new()
        }
    }
}

fn drop_one(st: &mut State, reason: DropReason, events: &broadcast::Sender<DeviceEvent>) {
    st.drops.count(reason);
    let n = st.drops.total();
    // Rate-limited: the first few, then every 1000th.
    if n <= 16 || n.is_multiple_of(1000) {
        tracing::debug!(?reason, total = n, "multicast datagram dropped");
    }
    let _ = events.send(DeviceEvent::Dropped(reason));
}

/// Shows a new Random PIN while the device is unowned (RFOTM): as an event
/// and in `<state_dir>/pin` (for headless setups).
fn new_pin_if_needed(st: &mut State, events: &broadcast::Sender<DeviceEvent>) {
    let unowned = st
        .device
        .security()
        .is_some_and(|s| s.pstat.dos == ssm_ocf::security::pstat::DeviceOnboardingState::Rfotm);
    if !unowned {
        st.pin = None;
        let _ = std::fs::remove_file(st.state_dir.join("pin"));
        return;
    }
    let mut rng = |b: &mut [u8]| b.copy_from_slice(&random_bytes::<4>()[..b.len()]);
    let pin = ssm_ocf::security::otm::random_pin(&mut rng);
    if let Err(e) = atomic_write(&st.state_dir.join("pin"), pin.as_bytes()) {
        tracing::warn!(error = %e, "cannot write the PIN file");
    }
    // The PIN is a secret: never logged at any level. It is shown once on
    // the event stream (`ssm device` prints it) and in the 0600 `pin` file.
    tracing::info!("a new Random PIN is shown for onboarding");
    let _ = events.send(DeviceEvent::Pin(pin.clone()));
    st.pin = Some(pin);
}

fn dtls_server_config(st: &State) -> Option<(ssm_dtls::DtlsConfig, bool)> {
    let sec = st.device.security()?;
    if sec.pstat.dos == ssm_ocf::security::pstat::DeviceOnboardingState::Rfotm {
        let pin = st.pin.as_ref()?;
        let id = sec.device_uuid();
        let psk = ssm_ocf::security::otm::pin_psk(pin, &id);
        return Some((
            ssm_dtls::DtlsConfig::random_pin_server(*id.as_bytes(), *psk)
                .with_handshake_timeout(DTLS_HANDSHAKE_LIFETIME),
            true,
        ));
    }
    // Owner (and other) PSK sessions: the identity is the peer's UUID, the
    // key its credtype-1 credential.
    let creds: Vec<(Vec<u8>, Vec<u8>)> = sec
        .cred
        .creds
        .iter()
        .filter(|c| c.credtype == CredType::PairwiseSymmetric)
        .filter_map(|c| {
            let id: Uuid = c.subjectuuid.parse().ok()?;
            Some((
                id.as_bytes().to_vec(),
                c.privatedata.as_ref()?.bytes().ok()?.to_vec(),
            ))
        })
        .collect();
    Some((
        ssm_dtls::DtlsConfig::psk_server(move |identity: &[u8]| {
            creds
                .iter()
                .find(|(i, _)| i == identity)
                .map(|(_, k)| k.clone())
        })
        .with_handshake_timeout(DTLS_HANDSHAKE_LIFETIME),
        false,
    ))
}

fn handle_dtls(
    st: &mut State,
    datagram: &[u8],
    peer: SocketAddr,
    events: &broadcast::Sender<DeviceEvent>,
) -> Vec<(SocketAddr, Vec<u8>)> {
    let now = std::time::Instant::now();
    if !st.dtls.contains(&peer) {
        // No per-peer state before a verified cookie (RFC 6347 §4.2.1).
        let keys = st.dtls.cookie_keys(now, random_bytes::<32>);
        let hello = match ssm_dtls::check_client_hello(keys, peer, datagram) {
            ssm_dtls::HelloCheck::Verified(hello) => hello,
            // Stateless, and no larger than the ClientHello it answers.
            ssm_dtls::HelloCheck::SendHelloVerify(hvr) => return vec![(peer, hvr)],
            ssm_dtls::HelloCheck::Drop => return Vec::new(),
        };
        if let Err(why) = st.dtls.admit(peer) {
            tracing::debug!(%peer, ?why, "DTLS session refused");
            return Vec::new();
        }
        let Some((cfg, otm)) = dtls_server_config(st) else {
            return Vec::new();
        };
        if otm
            && st
                .device
                .security()
                .is_some_and(|s| s.owner_transfer_in_progress())
        {
            tracing::debug!(%peer, "an owner transfer is in progress; PIN session refused");
            return Vec::new();
        }
        match ssm_dtls::DtlsSession::accept(&cfg, hello) {
            Ok(session) => {
                let p = DtlsPeer {
                    session,
                    otm_keys: None,
                };
                if let Err(why) = st.dtls.insert(peer, p, otm, now) {
                    tracing::debug!(%peer, ?why, "DTLS session refused");
                    return Vec::new();
                }
            }
            Err(e) => {
                tracing::debug!(%peer, error = %e, "DTLS session not started");
                return Vec::new();
            }
        }
    } else if let Some(e) = st.dtls.touch(&peer, now) {
        if let Err(e) = e.session.session.handle_datagram(datagram) {
            tracing::debug!(%peer, error = %e, "DTLS");
        }
    }
    let mut requests = Vec::new();
    let (security, mut out) = {
        let Some(e) = st.dtls.get_mut(&peer) else {
            return Vec::new();
        };
        let (otm, id) = (e.owner_transfer, e.id);
        let finished = !e.is_established() && e.session.session.cipher().is_some();
        let p = &mut e.session;
        if finished && otm {
            // Derived once per session (F9: no copy of the master secret
            // per request).
            p.otm_keys = p.session.key_material().map(|k| Arc::new(otm_keys(&k)));
        }
        while let Some(app) = p.session.poll_app_data() {
            requests.push(app);
        }
        let security = match (otm, &p.otm_keys, p.session.cipher().is_some()) {
            (true, Some(k), _) => Some(Security::OwnerTransfer {
                keys: k.clone(),
                session: id,
            }),
            (false, _, true) => Some(Security::Dtls {
                subject: p
                    .session
                    .peer_identity()
                    .and_then(|i| Uuid::from_slice(&i).ok()),
            }),
            _ => None,
        };
        let mut out = Vec::new();
        while let Some(d) = p.session.poll_transmit() {
            out.push((peer, d));
        }
        if finished {
            st.dtls.established(&peer);
        }
        (security, out)
    };
    let Some(security) = security else { return out };
    for app in requests {
        let Ok(req) = Message::parse(&app) else {
            continue;
        };
        let meta = RequestMeta {
            multicast: false,
            security: security.clone(),
            peer: Channel::Dtls(peer),
        };
        let was_owned = st.device.security().is_some_and(|s| {
            s.doxm.owned && s.pstat.dos != ssm_ocf::security::pstat::DeviceOnboardingState::Rfotm
        });
        let dos_before = st.device.security().map(|s| s.pstat.dos);
        let o = st.device.handle(&req, &meta);
        let dos_after = st.device.security().map(|s| s.pstat.dos);
        if dos_before == Some(ssm_ocf::security::pstat::DeviceOnboardingState::Rfpro)
            && dos_after == Some(ssm_ocf::security::pstat::DeviceOnboardingState::Rfnop)
        {
            let creds = st
                .device
                .security()
                .map(|s| s.cred.creds.len())
                .unwrap_or(0);
            let _ = events.send(DeviceEvent::Provisioned { creds });
        }
        after_request(st, o.svr_changed, o.creds_changed);
        let now_owned = st.device.security().map(|s| {
            (
                s.doxm.owned
                    && s.pstat.dos != ssm_ocf::security::pstat::DeviceOnboardingState::Rfotm,
                s.device_uuid(),
                s.doxm.devowneruuid,
            )
        });
        match now_owned {
            Some((true, id, owner)) if !was_owned => {
                let _ = events.send(DeviceEvent::Owned {
                    device_uuid: id,
                    owner,
                });
                new_pin_if_needed(st, events);
            }
            // Hard reset: unowned again, so a PIN is shown.
            Some((false, _, _)) if was_owned => new_pin_if_needed(st, events),
            _ => {}
        }
        if let Some(r) = o.response {
            let r = ssm_ocf::message::apply_block2(&req, r, BLOCK_SIZE);
            if let Some(p) = st.dtls.get_mut(&peer).map(|e| &mut e.session) {
                if let Err(e) = p.session.send_app_data(&r.to_vec()) {
                    tracing::debug!(%peer, error = %e, "DTLS send");
                }
                while let Some(d) = p.session.poll_transmit() {
                    out.push((peer, d));
                }
            }
        }
        if let Some(href) = o.changed {
            out.extend(notify(st, &href));
        }
    }
    out
}

/// Drives DTLS retransmission timers and drops failed, closed, idle and
/// unfinished sessions ([`DtlsTable::sweep`]). The end of the
/// owner-transfer session the transfer in progress is bound to, before the
/// device left RFOTM, undoes what it wrote; the end of any other (an
/// abandoned attempt) leaves that transfer alone. A new PIN is shown.
async fn dtls_timer_loop(
    socket: Arc<UdpSocket>,
    state: Arc<Mutex<State>>,
    events: broadcast::Sender<DeviceEvent>,
) {
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
    loop {
        tick.tick().await;
        let out = {
            let Ok(mut st) = state.lock() else { return };
            let mut out = Vec::new();
            for (peer, e) in st.dtls.iter_mut() {
                let s = &mut e.session.session;
                if s.next_timeout().is_some_and(|t| t.is_zero()) {
                    let _ = s.handle_timeout();
                }
                while let Some(d) = s.poll_transmit() {
                    out.push((*peer, d));
                }
            }
            let ended = st.dtls.sweep(std::time::Instant::now(), |p| {
                p.session.is_failed() || p.session.is_closed()
            });
            for (peer, e) in ended {
                // A handshake that never completed (e.g. a wrong PIN)
                // wrote nothing; only an established owner-transfer
                // session can have something to undo.
                if !(e.owner_transfer && e.is_established()) {
                    continue;
                }
                if let Some(mut sec) = st.device.security().cloned() {
                    use ssm_ocf::security::OwnerTransferEnd;
                    match sec.owner_transfer_session_ended(e.id) {
                        OwnerTransferEnd::Undone => {
                            st.device.set_security(sec);
                            after_request(&mut st, true, true);
                            tracing::info!(%peer, "owner transfer did not complete; undone");
                        }
                        OwnerTransferEnd::Completed => st.device.set_security(sec),
                        OwnerTransferEnd::NotTheTransfer => {}
                    }
                }
                new_pin_if_needed(&mut st, &events);
            }
            out
        };
        send_all(&socket, out).await;
    }
}

//! The onboarding tool's runtime: it runs the sans-IO sequences of
//! [`ssm_ocf::onboarding`] over plain CoAP and DTLS sessions to one device.
use crate::client::request;
use crate::otm::otm_keys;
use crate::random_bytes;
use ssm_coap::block::{Block2Progress, Block2Reassembler, BlockError};
use ssm_coap::exchange::{Destination, Exchange, Received};
use ssm_coap::{Code, Message, MessageType, Token};
use ssm_dtls::{connect, send_pending, DtlsConfig, DtlsSession};
use ssm_ocf::onboarding::{owner_transfer, Channel, Sequence};
use ssm_ocf::security::otm::pin_psk;
use ssm_ocf::{cbor, message, Uuid};
use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::time::{timeout_at, Instant};

/// How long a DTLS handshake may take (a wrong PIN shows as a timeout).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(4);

/// How long one request may take (retransmissions included).
pub const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// Onboarding errors, each naming what to do next.
#[derive(Debug, thiserror::Error)]
pub enum ObtError {
    /// Socket error.
    #[error("network: {0}")]
    Io(#[from] io::Error),
    /// The DTLS handshake failed (for Random PIN: usually a wrong PIN).
    #[error("secure session with {peer} failed ({reason}): is the device on and reachable? (when onboarding: check the PIN it shows)")]
    Handshake {
        /// Device.
        peer: SocketAddr,
        /// Why.
        reason: String,
    },
    /// The device refused a step.
    #[error("{0}")]
    Step(#[from] ssm_ocf::onboarding::StepError),
    /// The device is already owned.
    #[error("device {0} is already owned: hard-reset it first")]
    AlreadyOwned(SocketAddr),
    /// The device answered something unexpected.
    #[error("device {0} answered unexpectedly: {1}")]
    Protocol(SocketAddr, String),
}

use crate::obt_reach::find_secure_peer;
pub use crate::obt_reach::{
    device_links, discover_devices, discover_unowned, secure_peer, ssm_capabilities,
};

/// A device after owner transfer.
#[derive(Clone)]
pub struct Onboarded {
    /// Its new UUID.
    pub device_uuid: Uuid,
    /// The owner PSK (kept by the OBT as the device's credtype-1 credential).
    pub owner_psk: [u8; 16],
    /// The hrefs of its SSM-enabled resources (from its `/oic/res`).
    pub ssm_hrefs: Vec<String>,
}

impl std::fmt::Debug for Onboarded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The owner PSK never reaches a log.
        f.debug_struct("Onboarded")
            .field("device_uuid", &self.device_uuid)
            .field("owner_psk", &"<secret>")
            .field("ssm_hrefs", &self.ssm_hrefs)
            .finish()
    }
}

/// A UUID with no zero byte: OpenSSL cuts PSK identities at a 0x00 byte,
/// and DTLS identities in this domain are UUIDs.
pub fn zero_free_uuid() -> Uuid {
    let mut b = random_bytes::<16>();
    for x in b.iter_mut() {
        if *x == 0 {
            *x = 0x5a;
        }
    }
    // Setting the version and variant bits keeps those bytes non-zero.
    uuid::Builder::from_random_bytes(b).into_uuid()
}

/// One CoAP request inside a DTLS session; returns the response, with a
/// block-wise (Block2) response reassembled (at most 64 blocks).
pub async fn dtls_request(
    socket: &UdpSocket,
    peer: SocketAddr,
    s: &mut DtlsSession,
    req: Message,
) -> Result<Message, ObtError> {
    let first = dtls_request_once(socket, peer, s, req.clone()).await?;
    let bad = |e: BlockError| ObtError::Protocol(peer, e.0);
    let mut step = Block2Reassembler::start(first).map_err(bad)?;
    // Bounded: the reassembler refuses more than MAX_BLOCKS blocks.
    loop {
        match step {
            Block2Progress::Complete(m) => return Ok(m),
            Block2Progress::More(r, value) => {
                let mut more_req = req.clone();
                more_req.set_option_uint(ssm_coap::OptionNumber::BLOCK2, value);
                let part = dtls_request_once(socket, peer, s, more_req).await?;
                step = r.push(part).map_err(bad)?;
            }
        }
    }
}

/// One exchange inside the session: the request is sent once (DTLS
/// carries it; no CoAP retransmission, the step's timeout bounds the
/// wait), the response must match its token (or be the Empty ACK and a
/// separate response, acknowledged in the session).
async fn dtls_request_once(
    socket: &UdpSocket,
    peer: SocketAddr,
    s: &mut DtlsSession,
    mut req: Message,
) -> Result<Message, ObtError> {
    req.ty = MessageType::Confirmable;
    req.message_id = u16::from_be_bytes(random_bytes::<2>());
    req.token = Token::new(&random_bytes::<8>()).unwrap_or_default();
    let failed = |e: &dyn std::fmt::Display| ObtError::Protocol(peer, e.to_string());
    let params = crate::client::lan_params(STEP_TIMEOUT, 0);
    let mut ex = Exchange::new(
        Instant::now(),
        req.to_vec(),
        Destination::Unicast(peer),
        params,
        0,
    )
    .map_err(|e| failed(&e))?;
    let mut buf = vec![0u8; 2048];
    loop {
        while let Some(t) = ex.poll_transmit(Instant::now()) {
            s.send_app_data(t.bytes).map_err(|e| failed(&e))?;
        }
        send_pending(s, socket, peer)
            .await
            .map_err(|e| failed(&e))?;
        let Some(deadline) = ex.poll_timeout() else {
            return Err(ObtError::Protocol(
                peer,
                "no response in the secure session".into(),
            ));
        };
        let wait = s
            .next_timeout()
            .map(|t| Instant::now() + t)
            .unwrap_or(deadline)
            .min(deadline);
        match timeout_at(wait, socket.recv_from(&mut buf)).await {
            Ok(r) => {
                let (n, from) = r?;
                if from != peer {
                    continue;
                }
                let _ = s.handle_datagram(&buf[..n]);
            }
            Err(_) => {
                ex.handle_timeout(Instant::now());
                let _ = s.handle_timeout();
            }
        }
        send_pending(s, socket, peer)
            .await
            .map_err(|e| failed(&e))?;
        while let Some(app) = s.poll_app_data() {
            match ex.handle_datagram(Instant::now(), peer, &app) {
                Received::Response => {
                    while let Some(t) = ex.poll_transmit(Instant::now()) {
                        let _ = s.send_app_data(t.bytes);
                    }
                    let _ = send_pending(s, socket, peer).await;
                    return Message::parse(&app).map_err(|e| failed(&e));
                }
                Received::Reset => {
                    return Err(ObtError::Protocol(peer, "request reset".into()));
                }
                _ => {}
            }
        }
        if s.is_failed() || s.is_closed() {
            return Err(ObtError::Protocol(peer, "secure session closed".into()));
        }
    }
}

async fn run(
    seq: &mut Sequence,
    socket: &UdpSocket,
    peer: SocketAddr,
    dtls: &mut Option<DtlsSession>,
    progress: &mut (dyn FnMut(usize, usize) + Send),
) -> Result<(), ObtError> {
    while let Some(step) = seq.next_step().cloned() {
        let resp = match step.channel {
            Channel::Plain => {
                request(socket, peer, step.request, Duration::from_millis(500), 5).await?
            }
            Channel::OwnerTransfer | Channel::Owner => {
                let s = dtls
                    .as_mut()
                    .ok_or_else(|| ObtError::Protocol(peer, "no secure session".into()))?;
                dtls_request(socket, peer, s, step.request).await?
            }
        };
        seq.on_response(&resp)?;
        let (d, t) = seq.progress();
        progress(d, t);
    }
    Ok(())
}

/// Random PIN owner transfer of the device at `peer` (DIGEST §6). The
/// device becomes `new_uuid`, owned by `obt`.
pub async fn onboard(
    peer: SocketAddr,
    pin: &str,
    obt: Uuid,
    new_uuid: Uuid,
    domain: (Uuid, &str),
    progress: &mut (dyn FnMut(usize, usize) + Send),
) -> Result<Onboarded, ObtError> {
    let pin = pin.to_string();
    onboard_with(
        peer,
        &mut || Ok(pin.clone()),
        obt,
        new_uuid,
        domain,
        progress,
        &mut |_| Ok(()),
    )
    .await
}

/// [`onboard`], asking `pin` for the Random PIN once the device was told
/// to use Random PIN (`oxmsel`: a device may show a new PIN for each, as the
/// reference stack does, so a PIN read before it is stale), and calling
/// `record` with the device's new identity and owner PSK once the PIN
/// session stands and before the device is changed. An
/// OBT stores it there (as "onboarding"), so that however the transfer
/// ends, even by a crash of the OBT, no device is owned by an OBT that does
/// not know its key. An error from `record` stops the transfer before it
/// starts.
#[allow(clippy::too_many_arguments)]
pub async fn onboard_with(
    peer: SocketAddr,
    pin: &mut (dyn FnMut() -> Result<String, String> + Send),
    obt: Uuid,
    new_uuid: Uuid,
    domain: (Uuid, &str),
    progress: &mut (dyn FnMut(usize, usize) + Send),
    record: &mut (dyn FnMut(&Onboarded) -> Result<(), String> + Send),
) -> Result<Onboarded, ObtError> {
    let socket = crate::client::socket_for(peer).await?;
    // The PIN PSK is salted with the device's current UUID.
    let r = request(
        &socket,
        peer,
        message::request(MessageType::Confirmable, Code::GET, "/oic/sec/doxm", None),
        Duration::from_millis(500),
        3,
    )
    .await?;
    let doxm = message::payload(&r).map_err(|c| ObtError::Protocol(peer, format!("doxm: {c}")))?;
    if cbor::get(&doxm, "owned").and_then(|v| v.as_bool()) == Some(true) {
        return Err(ObtError::AlreadyOwned(peer));
    }
    let current: Uuid = cbor::get(&doxm, "deviceuuid")
        .and_then(|v| v.as_text())
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ObtError::Protocol(peer, "doxm without deviceuuid".into()))?;
    // Where it serves DTLS, and its SSM resources: asked before `oxmsel`
    // (the reference device resets plain requests once an owner transfer
    // method is selected).
    let (secure, links) = find_secure_peer(&socket, peer).await?;
    let mut seq = owner_transfer(obt, new_uuid, domain);
    // Step 0 (plain): select Random PIN.
    let first = seq
        .next_step()
        .cloned()
        .ok_or_else(|| ObtError::Protocol(peer, "empty sequence".into()))?;
    let resp = request(&socket, peer, first.request, Duration::from_millis(500), 5).await?;
    seq.on_response(&resp)?;
    // OCF's order: select the method, then the user reads the PIN off the
    // device.
    let pin = pin().map_err(|e| ObtError::Protocol(peer, format!("no PIN: {e}")))?;
    let cfg = DtlsConfig::random_pin_client(*pin_psk(&pin, &current))
        .with_handshake_timeout(HANDSHAKE_TIMEOUT);
    let session = connect(&socket, secure, &cfg, HANDSHAKE_TIMEOUT)
        .await
        .map_err(|e| ObtError::Handshake {
            peer: secure,
            reason: e.to_string(),
        })?;
    let keys = otm_keys(
        &session
            .key_material()
            .ok_or_else(|| ObtError::Protocol(peer, "no key material".into()))?,
    );
    let done = Onboarded {
        device_uuid: new_uuid,
        owner_psk: *keys.owner_psk(&obt, &new_uuid),
        ssm_hrefs: ssm_ocf::discovery::ssm_hrefs(&links),
    };
    let mut dtls = Some(session);
    let result = match record(&done) {
        Ok(()) => run(&mut seq, &socket, secure, &mut dtls, progress).await,
        Err(e) => Err(ObtError::Protocol(peer, format!("not recorded: {e}"))),
    };
    if let Some(s) = dtls {
        close(s, &socket, secure).await;
    }
    result?;
    Ok(done)
}

/// Runs `seq` (provisioning) over an owner session (PSK identity = `obt`).
pub async fn provision(
    peer: SocketAddr,
    obt: Uuid,
    owner_psk: &[u8; 16],
    mut seq: Sequence,
    progress: &mut (dyn FnMut(usize, usize) + Send),
) -> Result<(), ObtError> {
    let (socket, session, peer) = owner_session(peer, obt, owner_psk).await?;
    let mut dtls = Some(session);
    let result = run(&mut seq, &socket, peer, &mut dtls, progress).await;
    if let Some(s) = dtls {
        close(s, &socket, peer).await;
    }
    result
}

/// Ends a session with a close_notify (best effort: the device also drops
/// idle sessions).
async fn close(mut s: DtlsSession, socket: &UdpSocket, peer: SocketAddr) {
    s.close();
    let _ = send_pending(&mut s, socket, peer).await;
}

/// Opens an owner session (PSK identity = `obt`) with the device whose
/// plain CoAP address is `peer`, at its DTLS endpoint (returned).
async fn owner_session(
    peer: SocketAddr,
    obt: Uuid,
    owner_psk: &[u8; 16],
) -> Result<(UdpSocket, DtlsSession, SocketAddr), ObtError> {
    let socket = crate::client::socket_for(peer).await?;
    let (peer, _) = find_secure_peer(&socket, peer).await?;
    let cfg = DtlsConfig::psk_client(obt.as_bytes().to_vec(), owner_psk.to_vec())
        .with_handshake_timeout(HANDSHAKE_TIMEOUT);
    let session = connect(&socket, peer, &cfg, HANDSHAKE_TIMEOUT)
        .await
        .map_err(|e| ObtError::Handshake {
            peer,
            reason: e.to_string(),
        })?;
    Ok((socket, session, peer))
}

/// Brings the device at `peer` to exactly `creds` (its managed credentials:
/// types 64, 128, 256) and `aces` (its UUID-subject ACEs) in one owner
/// session: it reads `/oic/sec/cred` and `/oic/sec/acl2`, then deletes,
/// adds and leaves alone as [`ssm_ocf::onboarding::reconcile`] plans, inside
/// RFPRO → RFNOP; then its `/groupsResURI` is set to `groups` if it lists
/// others (a device without that resource, such as the reference stack's,
/// is left as it is). Idempotent: re-running it after any interruption
/// finishes the job.
pub async fn sync_device(
    peer: SocketAddr,
    obt: Uuid,
    owner_psk: &[u8; 16],
    want: Desired<'_>,
    progress: &mut (dyn FnMut(usize, usize) + Send),
) -> Result<ssm_ocf::onboarding::Reconciliation, ObtError> {
    let Desired {
        creds,
        aces,
        groups,
    } = want;
    let (socket, session, peer) = owner_session(peer, obt, owner_psk).await?;
    let mut dtls = Some(session);
    let result = async {
        let s = dtls.as_mut().expect("session");
        let [get_cred, get_acl] = ssm_ocf::onboarding::read_state();
        let mut answers = Vec::new();
        for req in [get_cred, get_acl] {
            let r = dtls_request(&socket, peer, s, req).await?;
            if r.code != Code::CONTENT {
                return Err(ObtError::Protocol(peer, format!("read state: {}", r.code)));
            }
            answers.push(
                message::payload(&r)
                    .map_err(|c| ObtError::Protocol(peer, format!("read state: {c}")))?,
            );
        }
        let (mut seq, plan) = ssm_ocf::onboarding::reconcile(&answers[0], &answers[1], creds, aces)
            .ok_or_else(|| {
                ObtError::Protocol(peer, "cannot decode its /oic/sec/cred or acl2".into())
            })?;
        run(&mut seq, &socket, peer, &mut dtls, progress).await?;
        let mut plan = plan;
        let s = dtls
            .as_mut()
            .ok_or_else(|| ObtError::Protocol(peer, "no secure session".into()))?;
        plan.groups_written = sync_groups(&socket, peer, s, groups).await?;
        Ok(plan)
    }
    .await;
    if let Some(s) = dtls {
        close(s, &socket, peer).await;
    }
    result
}

/// What [`sync_device`] brings a device to.
#[derive(Debug, Clone, Copy)]
pub struct Desired<'a> {
    /// Its managed credentials (types 64, 128, 256).
    pub creds: &'a [ssm_ocf::cred::Credential],
    /// Its UUID-subject ACEs.
    pub aces: &'a [ssm_ocf::security::acl2::Ace],
    /// The ids of its SSM groups (`/groupsResURI`).
    pub groups: &'a [u32],
}

/// Sets the device's `/groupsResURI` to `groups` unless it lists exactly
/// those; true if it was written. A device that does not serve the
/// resource (any answer but 2.05, e.g. the reference stack's 4.04) is left
/// alone: its SSM credentials are all it needs.
async fn sync_groups(
    socket: &UdpSocket,
    peer: SocketAddr,
    s: &mut DtlsSession,
    groups: &[u32],
) -> Result<bool, ObtError> {
    let r = dtls_request(socket, peer, s, ssm_ocf::groups::read()).await?;
    if r.code != Code::CONTENT {
        return Ok(false);
    }
    let current = message::payload(&r)
        .ok()
        .and_then(|v| ssm_ocf::groups::parse(&v, true));
    if current.as_deref() == Some(groups) {
        return Ok(false);
    }
    let w = dtls_request(socket, peer, s, ssm_ocf::groups::write(groups)).await?;
    if w.code != Code::CHANGED {
        return Err(ObtError::Protocol(
            peer,
            format!("{} refused: {}", ssm_ocf::groups::HREF, w.code),
        ));
    }
    Ok(true)
}

/// Reads the device's own Group OSCORE authentication credential (the CCS
/// of the key pair it made itself; [`ssm_ocf::group_cred::AUTHCRED_HREF`])
/// over an owner session: what the Group Manager gives the lights. The
/// private key stays on the device.
pub async fn read_auth_cred(
    peer: SocketAddr,
    obt: Uuid,
    owner_psk: &[u8; 16],
) -> Result<Vec<u8>, ObtError> {
    let (socket, mut s, peer) = owner_session(peer, obt, owner_psk).await?;
    let r = dtls_request(&socket, peer, &mut s, ssm_ocf::group_cred::authcred_read()).await;
    close(s, &socket, peer).await;
    let r = r?;
    if r.code != Code::CONTENT {
        return Err(ObtError::Protocol(
            peer,
            format!(
                "{} refused: {} (a device without Group OSCORE cannot command a group-oscore group)",
                ssm_ocf::group_cred::AUTHCRED_HREF,
                r.code
            ),
        ));
    }
    message::payload(&r)
        .ok()
        .and_then(|v| ssm_ocf::group_cred::parse_authcred(&v))
        .ok_or_else(|| {
            ObtError::Protocol(
                peer,
                "its authentication credential is not an Ed25519 CCS".into(),
            )
        })
}

/// Hard reset of an owned device (pstat RESET over an owner session): it
/// wipes its credentials and ACEs and returns to RFOTM with a new PIN.
pub async fn hard_reset(peer: SocketAddr, obt: Uuid, owner_psk: &[u8; 16]) -> Result<(), ObtError> {
    provision(
        peer,
        obt,
        owner_psk,
        ssm_ocf::onboarding::hard_reset(),
        &mut |_, _| {},
    )
    .await
}

/// Whether `owner_psk` opens an owner session with the device at `peer`
/// (used to settle an onboarding the OBT did not see finish).
pub async fn owns(peer: SocketAddr, obt: Uuid, owner_psk: &[u8; 16]) -> Result<bool, ObtError> {
    match owner_session(peer, obt, owner_psk).await {
        Ok((socket, mut s, peer)) => {
            let r = dtls_request(
                &socket,
                peer,
                &mut s,
                message::request(MessageType::Confirmable, Code::GET, "/oic/sec/pstat", None),
            )
            .await;
            close(s, &socket, peer).await;
            Ok(r.map(|m| m.code == Code::CONTENT).unwrap_or(false))
        }
        Err(ObtError::Handshake { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

//! The DTLS server on the unicast socket: Random PIN owner transfer and
//! owner-PSK provisioning sessions, bounded by the sans-IO [`DtlsTable`]
//! (no state before a verified cookie, RFC 6347 §4.2.1).
use super::notify::{notify, send_all};
use super::{
    after_request, new_pin_if_needed, pin, renamed, Datagrams, DeviceEvent, State, BLOCK_SIZE,
};
use crate::dtls_table::Limits;
use crate::otm::otm_keys;
use crate::random_bytes;
use ssm_coap::Message;
use ssm_ocf::cred::CredType;
use ssm_ocf::device::{Channel, RequestMeta, Security};
use ssm_ocf::security::Transition;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::UdpSocket;
use tokio::sync::broadcast;
use uuid::Uuid;

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

pub(super) struct DtlsPeer {
    pub(super) session: ssm_dtls::DtlsSession,
    /// An owner-transfer session's exported keys, derived once when its
    /// handshake finished and shared with each of its requests.
    otm_keys: Option<Arc<ssm_ocf::security::otm::OtmKeys>>,
    /// A Random PIN session that failed on the PIN, or was cut short by
    /// the back-off: it ends at the next sweep ([`pin`]).
    pub(super) pin_rejected: bool,
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
    // The hint is the 16 raw bytes of the device UUID, as the reference
    // stack sends it (`security/oc_tls.c`, `oc_tls_populate_ssl_config`):
    // its OBT picks the owner credential by the hint and, without one, never
    // finishes the handshake (issue 14). A UUID with a 0x00 byte would be cut
    // by OpenSSL; the device refuses such a UUID at owner transfer.
    let hint = sec.device_uuid().as_bytes().to_vec();
    Some((
        ssm_dtls::DtlsConfig::psk_server(move |identity: &[u8]| {
            creds
                .iter()
                .find(|(i, _)| i == identity)
                .map(|(_, k)| k.clone())
        })
        .with_identity_hint(hint)
        .with_handshake_timeout(DTLS_HANDSHAKE_LIFETIME),
        false,
    ))
}

/// A DTLS record from `peer`: a stateless cookie exchange until the
/// ClientHello is verified, then the session's records and requests.
pub(super) fn handle_dtls(
    st: &mut State,
    datagram: &[u8],
    peer: SocketAddr,
    events: &broadcast::Sender<DeviceEvent>,
) -> Datagrams {
    let now = std::time::Instant::now();
    if !st.dtls.contains(&peer) {
        if let Err(out) = accept(st, datagram, peer, now) {
            return out;
        }
    } else if let Some(e) = st.dtls.touch(&peer, now) {
        if e.session.pin_rejected {
            return Vec::new();
        }
        if let Err(e) = e.session.session.handle_datagram(datagram) {
            tracing::debug!(%peer, error = %e, "DTLS");
        }
        pin::check_attempt(st, peer, pin::carries_finished(datagram), now, events);
    }
    let Some((security, requests, mut out)) = drain(st, peer) else {
        return Vec::new();
    };
    let Some(security) = security else { return out };
    for app in requests {
        let Ok(req) = Message::parse(&app) else {
            continue;
        };
        serve(st, &req, peer, &security, events, &mut out);
    }
    out
}

/// A record from a peer without a session: the cookie exchange (no
/// per-peer state before a verified cookie, RFC 6347 §4.2.1), then a new
/// session within the table's limits. `Err` holds what to send instead
/// (a HelloVerifyRequest, or nothing).
fn accept(
    st: &mut State,
    datagram: &[u8],
    peer: SocketAddr,
    now: std::time::Instant,
) -> Result<(), Datagrams> {
    let keys = st.dtls.cookie_keys(now, random_bytes::<32>);
    let hello = match ssm_dtls::check_client_hello(keys, peer, datagram) {
        ssm_dtls::HelloCheck::Verified(hello) => hello,
        // Stateless, and no larger than the ClientHello it answers.
        ssm_dtls::HelloCheck::SendHelloVerify(hvr) => return Err(vec![(peer, hvr)]),
        ssm_dtls::HelloCheck::Drop => return Err(Vec::new()),
    };
    if let Err(why) = st.dtls.admit(peer) {
        tracing::debug!(%peer, ?why, "DTLS session refused");
        return Err(Vec::new());
    }
    let Some((cfg, otm)) = dtls_server_config(st) else {
        return Err(Vec::new());
    };
    if otm && !st.pin_guard.allows(now) {
        tracing::debug!(%peer, "backing off after failed PIN attempts; PIN session refused");
        return Err(Vec::new());
    }
    if otm
        && st
            .device
            .security()
            .is_some_and(|s| s.owner_transfer_in_progress())
    {
        tracing::debug!(%peer, "an owner transfer is in progress; PIN session refused");
        return Err(Vec::new());
    }
    match ssm_dtls::DtlsSession::accept(&cfg, hello) {
        Ok(session) => {
            let p = DtlsPeer {
                session,
                otm_keys: None,
                pin_rejected: false,
            };
            if let Err(why) = st.dtls.insert(peer, p, otm, now) {
                tracing::debug!(%peer, ?why, "DTLS session refused");
                return Err(Vec::new());
            }
            Ok(())
        }
        Err(e) => {
            tracing::debug!(%peer, error = %e, "DTLS session not started");
            Err(Vec::new())
        }
    }
}

/// The session's decrypted requests, what it has to send, and how its
/// requests are secured (`None` until the handshake finished).
fn drain(st: &mut State, peer: SocketAddr) -> Option<(Option<Security>, Vec<Vec<u8>>, Datagrams)> {
    let e = st.dtls.get_mut(&peer)?;
    let (otm, id) = (e.owner_transfer, e.id);
    let finished = !e.is_established() && e.session.session.cipher().is_some();
    let p = &mut e.session;
    if finished && otm {
        // Derived once per session (F9: no copy of the master secret
        // per request).
        p.otm_keys = p.session.key_material().map(|k| Arc::new(otm_keys(&k)));
    }
    let mut requests = Vec::new();
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
        if otm {
            pin::succeeded(st);
        }
    }
    Some((security, requests, out))
}

/// One request of a DTLS session: handled by the model, the response sent
/// in the session, the transition it made acted on.
fn serve(
    st: &mut State,
    req: &Message,
    peer: SocketAddr,
    security: &Security,
    events: &broadcast::Sender<DeviceEvent>,
    out: &mut Datagrams,
) {
    let meta = RequestMeta {
        multicast: false,
        security: security.clone(),
        peer: Channel::Dtls(peer),
    };
    let mut o = st.device.handle(req, &meta);
    if let Some(name) = o.renamed.take() {
        renamed(st, name, events);
    }
    if let Some(t @ Transition::Provisioned { .. }) = o.transition {
        on_transition(st, t, events);
    }
    after_request(st, o.svr_changed, o.creds_changed);
    if let Some(t) = o
        .transition
        .filter(|t| !matches!(t, Transition::Provisioned { .. }))
    {
        on_transition(st, t, events);
    }
    if let Some(r) = o.response {
        let r = ssm_ocf::message::apply_block2(req, r, BLOCK_SIZE);
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

/// Acts on an onboarding transition of the model: the events, and the PIN
/// shown (or removed) when ownership changed. (Persistence is the
/// outcome's `svr_changed`.)
fn on_transition(st: &mut State, t: Transition, events: &broadcast::Sender<DeviceEvent>) {
    match t {
        Transition::Provisioned { creds } => {
            let _ = events.send(DeviceEvent::Provisioned { creds });
        }
        Transition::Owned { device_uuid, owner } => {
            let _ = events.send(DeviceEvent::Owned { device_uuid, owner });
            new_pin_if_needed(st, events);
        }
        // Unowned again, so a PIN is shown.
        Transition::HardReset => new_pin_if_needed(st, events),
        Transition::OwnerTransferUndone => {
            after_request(st, true, true);
            new_pin_if_needed(st, events);
        }
    }
}

/// Drives DTLS retransmission timers and drops failed, closed, idle and
/// unfinished sessions ([`DtlsTable::sweep`]). The end of the
/// owner-transfer session the transfer in progress is bound to, before the
/// device left RFOTM, undoes what it wrote; the end of any other (an
/// abandoned attempt) leaves that transfer alone. A new PIN is shown.
pub(super) async fn timer_loop(
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
            let now = std::time::Instant::now();
            let ended = st.dtls.sweep(now, |p| {
                p.session.is_failed() || p.session.is_closed() || p.pin_rejected
            });
            pin::poll(&mut st, now, &events);
            for (peer, e) in ended {
                // A handshake that never completed (e.g. a wrong PIN)
                // wrote nothing; only an established owner-transfer
                // session can have something to undo.
                if !(e.owner_transfer && e.is_established()) {
                    continue;
                }
                match st.device.owner_transfer_session_ended(e.id) {
                    Some(t) => {
                        tracing::info!(%peer, "owner transfer did not complete; undone");
                        on_transition(&mut st, t, &events);
                    }
                    // Completed, or not the transfer: no change, but a
                    // PIN if the device is unowned.
                    None => new_pin_if_needed(&mut st, &events),
                }
            }
            out
        };
        send_all(&socket, out).await;
    }
}

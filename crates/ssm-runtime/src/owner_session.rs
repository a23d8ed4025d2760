//! One DTLS owner session (PSK identity = the OBT's UUID, key = the
//! device's owner PSK) kept open for reading a device: RETRIEVE of any
//! resource an ACE lets the owner read, an UPDATE, and OBSERVE with the
//! notifications delivered inside the session (RFC 7641 over DTLS, the
//! way the device notifies a DTLS observer).
use crate::obt_transport::{dtls_request, ObtError};
use crate::random_bytes;
use ssm_coap::{Code, Message, MessageType, OptionNumber, Token};
use ssm_dtls::{connect, send_pending, DtlsConfig, DtlsSession};
use ssm_ocf::{message, Uuid};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::time::{timeout_at, Instant};

/// An open owner session to one device.
pub struct OwnerSession {
    socket: UdpSocket,
    session: DtlsSession,
    peer: SocketAddr,
    observe_token: Option<Token>,
}

impl std::fmt::Debug for OwnerSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OwnerSession({})", self.peer)
    }
}

impl OwnerSession {
    /// Opens the session; the handshake may take at most `handshake`.
    pub async fn open(
        peer: SocketAddr,
        obt: Uuid,
        owner_psk: &[u8; 16],
        handshake: Duration,
    ) -> Result<OwnerSession, ObtError> {
        let socket = crate::client::socket_for(peer).await?;
        let cfg = DtlsConfig::psk_client(obt.as_bytes().to_vec(), owner_psk.to_vec())
            .with_handshake_timeout(handshake);
        let session =
            connect(&socket, peer, &cfg, handshake)
                .await
                .map_err(|e| ObtError::Handshake {
                    peer,
                    reason: e.to_string(),
                })?;
        Ok(OwnerSession {
            socket,
            session,
            peer,
            observe_token: None,
        })
    }

    /// Where it is connected.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// One request in the session; the response (Block2 reassembled).
    pub async fn request(&mut self, req: Message) -> Result<Message, ObtError> {
        dtls_request(&self.socket, self.peer, &mut self.session, req).await
    }

    /// RETRIEVE `href`: the CBOR payload of a 2.05, else the code.
    pub async fn get(&mut self, href: &str) -> Result<Result<ciborium::Value, Code>, ObtError> {
        let r = self
            .request(message::request(
                MessageType::Confirmable,
                Code::GET,
                href,
                None,
            ))
            .await?;
        if r.code != Code::CONTENT {
            return Ok(Err(r.code));
        }
        Ok(message::payload(&r))
    }

    /// UPDATE `href` with `body`: the response code.
    pub async fn post(&mut self, href: &str, body: &ciborium::Value) -> Result<Code, ObtError> {
        let mut req = message::request(MessageType::Confirmable, Code::POST, href, None);
        message::set_payload(&mut req, body);
        Ok(self.request(req).await?.code)
    }

    /// Registers (or refreshes) an observation of `href`: the first
    /// response (its code and payload). Later notifications come from
    /// [`OwnerSession::next_notification`].
    pub async fn observe(&mut self, href: &str) -> Result<Message, ObtError> {
        let token = self
            .observe_token
            .unwrap_or_else(|| Token::new(&random_bytes::<8>()).unwrap_or_default());
        self.observe_token = Some(token);
        let mut req = message::request(MessageType::NonConfirmable, Code::GET, href, None);
        req.set_option_uint(OptionNumber::OBSERVE, 0);
        req.message_id = u16::from_be_bytes(random_bytes::<2>());
        req.token = token;
        self.session
            .send_app_data(&req.to_vec())
            .map_err(|e| ObtError::Protocol(self.peer, e.to_string()))?;
        self.flush().await?;
        let deadline = Instant::now() + crate::obt_transport::STEP_TIMEOUT;
        self.next_notification(deadline)
            .await?
            .ok_or_else(|| ObtError::Protocol(self.peer, "no answer to OBSERVE".into()))
    }

    /// The next message of the observation before `deadline` (None: none
    /// came). A confirmable one is acknowledged in the session.
    pub async fn next_notification(
        &mut self,
        deadline: Instant,
    ) -> Result<Option<Message>, ObtError> {
        let Some(token) = self.observe_token else {
            return Ok(None);
        };
        let mut buf = vec![0u8; 2048];
        loop {
            while let Some(app) = self.session.poll_app_data() {
                let Ok(m) = Message::parse(&app) else {
                    continue;
                };
                if m.token != token {
                    continue;
                }
                if m.ty == MessageType::Confirmable {
                    let ack = Message::new(
                        MessageType::Acknowledgement,
                        Code::EMPTY,
                        m.message_id,
                        Token::default(),
                    );
                    let _ = self.session.send_app_data(&ack.to_vec());
                    self.flush().await?;
                }
                return Ok(Some(m));
            }
            if self.session.is_failed() || self.session.is_closed() {
                return Err(ObtError::Protocol(
                    self.peer,
                    "secure session closed".into(),
                ));
            }
            let wait = self
                .session
                .next_timeout()
                .map(|t| (Instant::now() + t).min(deadline))
                .unwrap_or(deadline);
            match timeout_at(wait, self.socket.recv_from(&mut buf)).await {
                Ok(r) => {
                    let (n, from) = r?;
                    if from == self.peer {
                        let _ = self.session.handle_datagram(&buf[..n]);
                        self.flush().await?;
                    }
                }
                Err(_) if Instant::now() >= deadline => return Ok(None),
                Err(_) => {
                    let _ = self.session.handle_timeout();
                    self.flush().await?;
                }
            }
        }
    }

    async fn flush(&mut self) -> Result<(), ObtError> {
        send_pending(&mut self.session, &self.socket, self.peer)
            .await
            .map_err(|e| ObtError::Protocol(self.peer, e.to_string()))
    }

    /// Ends the session with a close_notify (best effort).
    pub async fn close(mut self) {
        self.session.close();
        let _ = self.flush().await;
    }
}

/// What a device says about itself in `/oic/d` (readable by anyone).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceIdentity {
    /// Its resource types (`oic.wk.d` and its device type, e.g.
    /// `oic.d.light`, `oic.d.switch`).
    pub rt: Vec<String>,
    /// Its name (`n`).
    pub name: Option<String>,
    /// Its current UUID (`di`).
    pub di: Option<Uuid>,
}

/// A plain CoAP RETRIEVE of `href` at `peer` (`attempts` tries of `each`):
/// its CBOR payload, `Ok(None)` when nothing answered.
pub async fn plain_get(
    peer: SocketAddr,
    href: &str,
    each: Duration,
    attempts: u32,
) -> std::io::Result<Option<Result<ciborium::Value, Code>>> {
    let socket = crate::client::socket_for(peer).await?;
    let req = message::request(MessageType::Confirmable, Code::GET, href, None);
    match crate::client::request(&socket, peer, req, each, attempts).await {
        Ok(r) if r.code == Code::CONTENT => Ok(Some(message::payload(&r))),
        Ok(r) => Ok(Some(Err(r.code))),
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => Ok(None),
        Err(e) => Err(e),
    }
}

/// The device's `/oic/d` (plain: core resources are public); `Ok(None)`
/// when nothing answered.
pub async fn device_identity(peer: SocketAddr) -> std::io::Result<Option<DeviceIdentity>> {
    let Some(r) = plain_get(peer, "/oic/d", Duration::from_millis(500), 3).await? else {
        return Ok(None);
    };
    let Ok(v) = r else {
        return Ok(Some(DeviceIdentity::default()));
    };
    let rt = ssm_ocf::cbor::get(&v, "rt")
        .and_then(|a| a.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|t| t.as_text().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let text = |k: &str| {
        ssm_ocf::cbor::get(&v, k)
            .and_then(|t| t.as_text())
            .map(String::from)
    };
    Ok(Some(DeviceIdentity {
        rt,
        name: text("n").filter(|n| !n.is_empty()),
        di: text("di").and_then(|d| d.parse().ok()),
    }))
}

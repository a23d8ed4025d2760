//! Real UDP on 127.0.0.1: a server task driving a `DtlsSession` and echoing
//! application data, a client using `ssm_dtls::connect`.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{CLIENT_UUID, DEVICE_UUID};
use ssm_dtls::{connect, send_pending, DtlsConfig, DtlsSession, Error, KeyMaterial};
use tokio::net::UdpSocket;
use tokio::time::{timeout, Instant};

const LIMIT: Duration = Duration::from_secs(5);

struct ServerResult {
    peer_identity: Option<Vec<u8>>,
    key_material: KeyMaterial,
    echoed: usize,
}

/// Serves the first peer that writes to `sock`: handshake, echo every
/// application datagram prefixed with "echo:", stop at close_notify.
async fn serve_one(sock: UdpSocket, cfg: DtlsConfig) -> ServerResult {
    let deadline = Instant::now() + LIMIT;
    let mut buf = vec![0u8; cfg.max_datagram() + 1];
    let mut peer: Option<(DtlsSession, SocketAddr)> = None;
    let mut echoed = 0;
    loop {
        assert!(Instant::now() < deadline, "server gave up");
        let wait = peer
            .as_ref()
            .and_then(|(s, _)| s.next_timeout())
            .unwrap_or(Duration::from_millis(200));
        match timeout(wait, sock.recv_from(&mut buf)).await {
            Ok(Ok((n, from))) => {
                let (session, addr) =
                    peer.get_or_insert_with(|| (DtlsSession::server(&cfg).unwrap(), from));
                if from != *addr {
                    continue;
                }
                let _ = session.handle_datagram(&buf[..n]);
                while let Some(msg) = session.poll_app_data() {
                    let mut reply = b"echo:".to_vec();
                    reply.extend_from_slice(&msg);
                    session.send_app_data(&reply).unwrap();
                    echoed += 1;
                }
            }
            Ok(Err(e)) => panic!("server recv: {e}"),
            Err(_) => {
                if let Some((session, _)) = peer.as_mut() {
                    let _ = session.handle_timeout();
                }
            }
        }
        if let Some((session, addr)) = peer.as_mut() {
            send_pending(session, &sock, *addr).await.unwrap();
            assert!(!session.is_failed(), "server failed: {session:?}");
            if session.is_closed() {
                return ServerResult {
                    peer_identity: session.peer_identity(),
                    key_material: session.key_material().unwrap(),
                    echoed,
                };
            }
        }
    }
}

/// Sends `msg` and waits for the echoed application datagram.
async fn request(sock: &UdpSocket, server: SocketAddr, c: &mut DtlsSession, msg: &[u8]) -> Vec<u8> {
    c.send_app_data(msg).unwrap();
    send_pending(c, sock, server).await.unwrap();
    let mut buf = vec![0u8; 1501];
    loop {
        if let Some(reply) = c.poll_app_data() {
            return reply;
        }
        let (n, from) = timeout(LIMIT, sock.recv_from(&mut buf))
            .await
            .expect("no reply")
            .unwrap();
        assert_eq!(from, server);
        c.handle_datagram(&buf[..n]).unwrap();
        send_pending(c, sock, server).await.unwrap();
    }
}

async fn run(
    client_cfg: DtlsConfig,
    server_cfg: DtlsConfig,
    expected_cipher: &str,
) -> (DtlsSession, ServerResult) {
    let server_sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let server_addr = server_sock.local_addr().unwrap();
    let server = tokio::spawn(serve_one(server_sock, server_cfg));

    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut c = connect(&sock, server_addr, &client_cfg, LIMIT)
        .await
        .expect("connect");
    assert!(c.is_established());
    assert_eq!(c.cipher(), Some(expected_cipher));
    for i in 0..3 {
        let msg = format!("coap message {i}");
        let reply = request(&sock, server_addr, &mut c, msg.as_bytes()).await;
        assert_eq!(reply, format!("echo:{msg}").into_bytes());
    }
    c.close();
    send_pending(&mut c, &sock, server_addr).await.unwrap();
    let result = timeout(LIMIT, server)
        .await
        .expect("server timed out")
        .expect("server panicked");
    assert_eq!(result.echoed, 3);
    let kc = c.key_material().unwrap();
    assert_eq!(*kc.master_secret, *result.key_material.master_secret);
    assert_eq!(kc.client_random, result.key_material.client_random);
    assert_eq!(kc.server_random, result.key_material.server_random);
    assert_eq!(result.key_material.cipher, expected_cipher);
    (c, result)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psk_session_over_udp_loopback() {
    let psk = [0x77u8; 16];
    let server_cfg = DtlsConfig::psk_server(move |id| (id == CLIENT_UUID).then(|| psk.to_vec()));
    let (_, result) = run(
        DtlsConfig::psk_client(CLIENT_UUID, psk),
        server_cfg,
        "PSK-AES128-CCM8",
    )
    .await;
    assert_eq!(result.peer_identity, Some(CLIENT_UUID.to_vec()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_pin_over_udp_loopback() {
    let psk = *b"0123456789abcdef";
    let (c, result) = run(
        DtlsConfig::random_pin_client(psk),
        DtlsConfig::random_pin_server(DEVICE_UUID, psk),
        "ECDHE-PSK-AES128-CBC-SHA256",
    )
    .await;
    assert_eq!(
        result.peer_identity.as_deref(),
        Some(ssm_dtls::RDP_IDENTITY)
    );
    assert!(c.psk_identity_hint().unwrap().ends_with(&DEVICE_UUID));
}

#[tokio::test]
async fn connect_to_silent_peer_times_out() {
    // A bound socket that never answers.
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let start = std::time::Instant::now();
    let cfg = DtlsConfig::psk_client(CLIENT_UUID, [1u8; 16]);
    let err = connect(
        &sock,
        silent.local_addr().unwrap(),
        &cfg,
        Duration::from_millis(300),
    )
    .await
    .unwrap_err();
    assert_eq!(err, Error::Timeout);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    // The ClientHello did go out.
    let mut buf = [0u8; 1500];
    let (n, _) = silent.try_recv_from(&mut buf).unwrap();
    assert_eq!(buf[0], 22);
    assert!(n > 13);
}

#[tokio::test]
async fn connect_with_wrong_psk_fails_within_handshake_timeout() {
    let server_sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let server_addr = server_sock.local_addr().unwrap();
    let server_cfg = DtlsConfig::random_pin_server(DEVICE_UUID, [1u8; 16]);
    let server = tokio::spawn(async move {
        // Serve until the client stops talking; the handshake never completes.
        let mut s = DtlsSession::server(&server_cfg).unwrap();
        let mut buf = [0u8; 1501];
        while let Ok(Ok((n, from))) =
            timeout(Duration::from_millis(1500), server_sock.recv_from(&mut buf)).await
        {
            let _ = s.handle_datagram(&buf[..n]);
            send_pending(&mut s, &server_sock, from).await.unwrap();
        }
        s.is_established()
    });
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let cfg =
        DtlsConfig::random_pin_client([2u8; 16]).with_handshake_timeout(Duration::from_millis(700));
    let start = std::time::Instant::now();
    let err = connect(&sock, server_addr, &cfg, LIMIT).await.unwrap_err();
    assert_eq!(err, Error::Timeout);
    assert!(start.elapsed() < Duration::from_secs(2));
    assert!(!server.await.unwrap());
}

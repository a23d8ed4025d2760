//! Our OSCORE client against our OSCORE server over real UDP sockets on
//! 127.0.0.1, including restarts of either side.
use ssm_coap::{Code, Message, MessageType, OptionNumber, Token};
use ssm_testkit::TempDir;
mod common;

use ssm_oscore::*;
use ssm_runtime::store::FileSequenceStore;
use ssm_runtime::udp::{ClientError, OscoreClient};
use std::net::SocketAddr;
use std::path::Path;
use tokio::net::UdpSocket;

const SECRET: [u8; 32] = [0x21; 32];

fn context(sender: u8, recipient: u8, ssn: SequenceNumber, replay: ReplayState) -> SecurityContext {
    SecurityContext::derive(
        &ContextParams {
            master_secret: &SECRET,
            master_salt: None,
            id_context: None,
            sender_id: Id::new(&[sender]).unwrap(),
            recipient_id: Id::new(&[recipient]).unwrap(),
        },
        ssn,
        replay,
    )
    .unwrap()
}

async fn start_server(
    dir: &Path,
    restarted: bool,
) -> (SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>) {
    common::start_server(dir, restarted, |ssn, replay| {
        context(0x01, 0x02, ssn, replay)
    })
    .await
}

async fn client(dir: &Path) -> OscoreClient<FileSequenceStore> {
    let store = FileSequenceStore::new(dir.join("client.ssn"));
    let ssn = SequenceNumber::resume(store.load().unwrap(), 8);
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    OscoreClient::new(
        socket,
        context(0x02, 0x01, ssn, ReplayState::Window(ReplayWindow::new(32))),
        store,
    )
}

fn get(path: &str) -> Message {
    let mut m = Message::new(MessageType::Confirmable, Code::GET, 0, Token::default());
    m.set_uri_path(path);
    m
}

#[tokio::test]
async fn request_response_and_restarts() {
    let dir = TempDir::new("test-rr");
    let (addr, server) = start_server(&dir, false).await;
    let mut c = client(&dir).await;

    let r = c.request(addr, get("/hello")).await.unwrap();
    assert_eq!(
        (r.code, r.payload.as_slice()),
        (Code::CONTENT, &b"hello from ocf-ssm"[..])
    );
    let mut post = Message::new(MessageType::Confirmable, Code::POST, 0, Token::default());
    post.set_uri_path("/echo");
    post.payload = b"payload 123".to_vec();
    let r = c.request(addr, post).await.unwrap();
    assert_eq!(
        (r.code, r.payload.as_slice()),
        (Code::CHANGED, &b"payload 123"[..])
    );

    // Server restart without its replay window: Echo round trip, then normal.
    server.abort();
    let (addr, server) = start_server(&dir, true).await;
    let r = c.request(addr, get("/hello")).await.unwrap();
    assert_eq!(r.code, Code::CONTENT, "the Echo retry succeeded");
    let r = c.request(addr, get("/hello")).await.unwrap();
    assert_eq!(r.code, Code::CONTENT);

    // Client restart: its sequence numbers continue above the old ones, so
    // the server (whose window is initialised) accepts them.
    let before = c.context().sender.sequence().peek();
    drop(c);
    let mut c = client(&dir).await;
    let r = c.request(addr, get("/hello")).await.unwrap();
    assert_eq!(r.code, Code::CONTENT);
    assert!(c.context().sender.sequence().peek() > before);
    server.abort();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn wrong_key_gets_unprotected_error() {
    let dir = TempDir::new("test-wrong");
    let (addr, server) = start_server(&dir, false).await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let ctx = SecurityContext::derive(
        &ContextParams {
            master_secret: &[0x99; 32],
            master_salt: None,
            id_context: None,
            sender_id: Id::new(&[0x02]).unwrap(),
            recipient_id: Id::new(&[0x01]).unwrap(),
        },
        SequenceNumber::volatile(0),
        ReplayState::Window(ReplayWindow::new(32)),
    )
    .unwrap();
    let mut c = OscoreClient::new(socket, ctx, FileSequenceStore::new(dir.join("x.ssn")));
    match c.request(addr, get("/hello")).await {
        Err(ClientError::Unprotected { code, diagnostic }) => {
            assert_eq!(code, Code::BAD_REQUEST);
            assert_eq!(diagnostic, "Decryption failed");
        }
        other => panic!("{other:?}"),
    }
    server.abort();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A replayed request (its Partial IV already seen) is refused with an
/// unprotected 4.01, whether it comes from another endpoint or with another
/// Message ID. Only the identical datagram from the same endpoint is a
/// retransmission (RFC 7252 §4.5), which gets the same protected response
/// again (the review's F8): that is not a second acceptance.
#[tokio::test]
async fn replayed_datagram_is_refused() {
    let dir = TempDir::new("test-replay");
    let (addr, server) = start_server(&dir, false).await;
    // Capture one protected request and send it again by hand.
    let mut ctx = context(
        0x02,
        0x01,
        SequenceNumber::volatile(0),
        ReplayState::Window(ReplayWindow::new(32)),
    );
    let mut req = get("/hello");
    req.token = Token::new(&[7]).unwrap();
    let mut wire = [0u8; 128];
    let (n, _) = ctx
        .sender
        .protect_request(&req.to_vec(), &mut wire)
        .unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let other = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut other_mid = wire[..n].to_vec();
    other_mid[2] ^= 0x5a; // the Message ID is outside the AEAD: a replay
    let mut buf = [0u8; 1500];
    let mut answers = vec![];
    for (s, bytes) in [
        (&sock, &wire[..n]),
        (&sock, &wire[..n]),
        (&other, &wire[..n]),
        (&sock, &other_mid[..]),
    ] {
        s.send_to(bytes, addr).await.unwrap();
        let (len, _) =
            tokio::time::timeout(std::time::Duration::from_secs(5), s.recv_from(&mut buf))
                .await
                .unwrap()
                .unwrap();
        let m = Message::parse(&buf[..len]).unwrap();
        answers.push((
            (m.code, m.option(OptionNumber::OSCORE).is_some()),
            buf[..len].to_vec(),
        ));
    }
    assert_eq!(
        answers[0].0,
        (Code::CHANGED, true),
        "first is answered with a protected response"
    );
    assert_eq!(
        answers[1].1, answers[0].1,
        "a retransmission gets the same protected response"
    );
    assert_eq!(
        answers[2].0,
        (Code::UNAUTHORIZED, false),
        "the replay from another endpoint gets an unprotected 4.01"
    );
    assert_eq!(
        answers[3].0,
        (Code::UNAUTHORIZED, false),
        "the replay with another Message ID gets an unprotected 4.01"
    );
    server.abort();
    std::fs::remove_dir_all(&dir).unwrap();
}

//! The client's side of the Echo round trip (RFC 8613 App. B.1.2) over real
//! UDP on 127.0.0.1: a server that restarts again between its challenge and
//! the client's retry challenges with a new value, which the client answers
//! too; a server that keeps sending the value the client already returned
//! ends the exchange (no loop).
use ssm_coap::{Code, Message, MessageType, Token};
use ssm_testkit::TempDir;
mod common;

use common::test_app;
use ssm_oscore::*;
use ssm_runtime::responder::OscoreResponder;
use ssm_runtime::store::FileSequenceStore;
use ssm_runtime::udp::OscoreClient;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::net::UdpSocket;

const SECRET: [u8; 32] = [0x37; 32];

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

/// A server that comes back from a restart (a new context awaiting Echo)
/// before each of the first `restarts` datagrams. Its challenge for
/// datagram `i` carries `echo(i)`. Counts the datagrams it got.
async fn restarting_server(
    dir: &std::path::Path,
    restarts: usize,
    echo: fn(usize) -> [u8; 8],
) -> (SocketAddr, Arc<AtomicUsize>) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    let store_path = dir.join("server.ssn");
    tokio::spawn(async move {
        let mut app = test_app();
        let new = |n: u64| {
            OscoreResponder::new(
                context(
                    0x01,
                    0x02,
                    SequenceNumber::volatile(1000 * n),
                    ReplayState::awaiting_echo(32),
                ),
                FileSequenceStore::new(&store_path),
            )
        };
        let mut responder = new(0);
        let mut buf = vec![0u8; 1500];
        for i in 0.. {
            let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                return;
            };
            count.fetch_add(1, Ordering::SeqCst);
            if i < restarts {
                responder = new(i as u64 + 1);
            }
            if let Some(r) = responder.handle(&mut buf[..n], echo(i), i as u16, &mut app) {
                let _ = socket.send_to(&r, from).await;
            }
        }
    });
    (addr, seen)
}

async fn client(dir: &std::path::Path) -> OscoreClient<FileSequenceStore> {
    let store = FileSequenceStore::new(dir.join("client.ssn"));
    let ssn = SequenceNumber::resume(store.load().unwrap(), 8);
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut c = OscoreClient::new(
        socket,
        context(0x02, 0x01, ssn, ReplayState::Window(ReplayWindow::new(32))),
        store,
    );
    c.config.ack_timeout = std::time::Duration::from_millis(300);
    c
}

fn get() -> Message {
    let mut m = Message::new(MessageType::Confirmable, Code::GET, 0, Token::default());
    m.set_uri_path("/hello");
    m
}

#[tokio::test]
async fn a_second_restart_between_challenge_and_retry() {
    let dir = TempDir::new("test-echo-twice");
    // Restarted before the request and again before the retry: the retry's
    // Echo is unknown to the new context, which challenges with another.
    let (addr, seen) = restarting_server(&dir, 2, |i| [i as u8 + 1; 8]).await;
    let mut c = client(&dir).await;
    let r = c.request(addr, get()).await.unwrap();
    assert_eq!(r.code, Code::CONTENT, "answered the second challenge");
    assert_eq!(c.echo_retries, 2);
    assert_eq!(seen.load(Ordering::SeqCst), 3);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn the_same_value_again_ends_the_exchange() {
    let dir = TempDir::new("test-echo-same");
    // A new context before every datagram, each challenging with the same
    // value: returning it again cannot help.
    let (addr, seen) = restarting_server(&dir, usize::MAX, |_| [9; 8]).await;
    let mut c = client(&dir).await;
    let r = c.request(addr, get()).await.unwrap();
    assert_eq!(r.code, Code::UNAUTHORIZED);
    assert_eq!(c.echo_retries, 1);
    assert_eq!(seen.load(Ordering::SeqCst), 2, "request and one retry");
    std::fs::remove_dir_all(&dir).unwrap();
}

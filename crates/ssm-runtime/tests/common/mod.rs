//! Shared by the runtime's integration tests: a small test
//! application and an OSCORE server whose state lives in a directory.
// Compiled into each test binary that uses a part of it: the rest is
// dead code there.
#![allow(dead_code)]
use ssm_coap::{Code, Message, MessageType, Token};
use ssm_oscore::{ReplayState, ReplayWindow, SecurityContext, SequenceNumber};
use ssm_runtime::responder::OscoreResponder;
use ssm_runtime::store::FileSequenceStore;
use ssm_runtime::udp::serve;
use std::net::SocketAddr;
use std::path::Path;
use tokio::net::UdpSocket;

/// GET /hello, POST /echo, and a binary switch at /BinarySwitchResURI.
pub fn test_app() -> impl FnMut(&Message) -> Message + Send {
    let mut state = false;
    move |req: &Message| {
        let mut resp = Message::new(
            MessageType::Acknowledgement,
            Code::CONTENT,
            0,
            Token::default(),
        );
        match (req.code, req.uri_path().as_str()) {
            (Code::GET, "/hello") => resp.payload = b"hello from ocf-ssm".to_vec(),
            (Code::POST, "/echo") => {
                resp.code = Code::CHANGED;
                resp.payload = req.payload.clone();
            }
            (Code::POST, "/BinarySwitchResURI") => {
                state = req.payload.last() == Some(&0xf5);
                resp.code = Code::CHANGED;
            }
            (Code::GET, "/BinarySwitchResURI") => {
                resp.payload = b"\xa1\x65value".to_vec();
                resp.payload.push(if state { 0xf5 } else { 0xf4 });
            }
            _ => resp.code = Code::NOT_FOUND,
        }
        resp
    }
}

/// Starts an OSCORE server on 127.0.0.1 whose sequence number lives in
/// `dir`; `restarted` means its replay window is unknown (App. B.1.2).
pub async fn start_server(
    dir: &Path,
    restarted: bool,
    context: impl FnOnce(SequenceNumber, ReplayState) -> SecurityContext,
) -> (SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>) {
    let store = FileSequenceStore::new(dir.join("server.ssn"));
    let ssn = SequenceNumber::resume(store.load().unwrap(), 8);
    let replay = if restarted {
        ReplayState::awaiting_echo(32)
    } else {
        ReplayState::Window(ReplayWindow::new(32))
    };
    let responder = OscoreResponder::new(context(ssn, replay), store);
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    (addr, tokio::spawn(serve(socket, responder, test_app())))
}

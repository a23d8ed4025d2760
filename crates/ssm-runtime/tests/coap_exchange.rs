//! The plain client's exchange over real UDP on 127.0.0.1, against a
//! scripted server: the rules `ssm_coap::exchange` decides, seen from the
//! runtime shell (`client::request`).
//!
//! * A response with the right token from another endpoint (an on-path
//!   attacker who saw the request) is not the response (RFC 7252 §5.3.2).
//! * An Empty ACK stops retransmission; the separate response that follows
//!   is taken and acknowledged with its own Message ID (§5.2.2).
//! * A Reset of the request ends it at once (§4.2).
use ssm_coap::{Code, Message, MessageType, Token};
use ssm_ocf::message;
use ssm_runtime::client::request;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::time::{timeout, Instant};

const ACK_TIMEOUT: Duration = Duration::from_millis(200);

async fn bound() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").await.unwrap()
}

fn get() -> Message {
    message::request(MessageType::Confirmable, Code::GET, "/a/light", None)
}

fn content(ty: MessageType, mid: u16, token: Token, body: u8) -> Vec<u8> {
    let mut m = Message::new(ty, Code::CONTENT, mid, token);
    m.payload = vec![body];
    m.to_vec()
}

/// The next datagram on `s` (bounded wait).
async fn recv(s: &UdpSocket, within: Duration) -> Option<(Message, std::net::SocketAddr)> {
    let mut buf = vec![0u8; 2048];
    let (n, from) = timeout(within, s.recv_from(&mut buf)).await.ok()?.ok()?;
    Some((Message::parse(&buf[..n]).unwrap(), from))
}

#[tokio::test]
async fn a_response_from_another_endpoint_is_not_the_response() {
    let server = bound().await;
    let attacker = bound().await;
    let peer = server.local_addr().unwrap();
    let client = bound().await;
    let script = tokio::spawn(async move {
        let (req, from) = recv(&server, Duration::from_secs(5)).await.unwrap();
        // The attacker answers first, with the request's MID and token, from
        // another port of the same host.
        let forged = content(
            MessageType::Acknowledgement,
            req.message_id,
            req.token,
            0xee,
        );
        attacker.send_to(&forged, from).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let genuine = content(
            MessageType::Acknowledgement,
            req.message_id,
            req.token,
            0x01,
        );
        server.send_to(&genuine, from).await.unwrap();
    });
    let r = request(&client, peer, get(), ACK_TIMEOUT, 3).await.unwrap();
    assert_eq!(r.payload, vec![0x01], "the forged response was taken");
    script.await.unwrap();
}

#[tokio::test]
async fn empty_ack_stops_retransmission_and_the_separate_response_is_acked() {
    let server = bound().await;
    let peer = server.local_addr().unwrap();
    let client = bound().await;
    let script = tokio::spawn(async move {
        let (req, from) = recv(&server, Duration::from_secs(5)).await.unwrap();
        let ack = Message::new(
            MessageType::Acknowledgement,
            Code::EMPTY,
            req.message_id,
            Token::default(),
        );
        server.send_to(&ack.to_vec(), from).await.unwrap();
        // The separate response comes after what would have been three
        // retransmissions (200 + 400 + 800 ms); none may arrive meanwhile.
        let quiet = recv(&server, Duration::from_millis(1600)).await;
        assert!(
            quiet.is_none(),
            "retransmitted after the Empty ACK: {quiet:?}"
        );
        let sep = content(MessageType::Confirmable, 0x4242, req.token, 0x02);
        server.send_to(&sep, from).await.unwrap();
        let (ack, _) = recv(&server, Duration::from_secs(2))
            .await
            .expect("the separate response acknowledged");
        assert_eq!(
            (ack.ty, ack.code, ack.message_id),
            (MessageType::Acknowledgement, Code::EMPTY, 0x4242)
        );
    });
    let r = request(&client, peer, get(), ACK_TIMEOUT, 4).await.unwrap();
    assert_eq!(r.payload, vec![0x02]);
    script.await.unwrap();
}

#[tokio::test]
async fn a_reset_ends_the_request() {
    let server = bound().await;
    let peer = server.local_addr().unwrap();
    let client = bound().await;
    let script = tokio::spawn(async move {
        let (req, from) = recv(&server, Duration::from_secs(5)).await.unwrap();
        let rst = Message::new(
            MessageType::Reset,
            Code::EMPTY,
            req.message_id,
            Token::default(),
        );
        server.send_to(&rst.to_vec(), from).await.unwrap();
    });
    let started = Instant::now();
    let e = request(&client, peer, get(), ACK_TIMEOUT, 4)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
    assert!(started.elapsed() < Duration::from_secs(2), "not waited out");
    script.await.unwrap();
}

#[tokio::test]
async fn retransmits_on_the_back_off_schedule_then_times_out() {
    let server = bound().await;
    let peer = server.local_addr().unwrap();
    let client = bound().await;
    let script = tokio::spawn(async move {
        let mut at = Vec::new();
        let start = Instant::now();
        while let Some((_, _)) = recv(&server, Duration::from_secs(3)).await {
            at.push(start.elapsed());
            assert!(at.len() <= 3, "more than 3 transmissions");
        }
        at
    });
    let started = Instant::now();
    let e = request(&client, peer, get(), ACK_TIMEOUT, 3)
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e}");
    // 200 ms, doubled: sent at 0, 200, 600 ms; given up at 1400 ms.
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_millis(2400),
        "{took:?}"
    );
    let at = script.await.unwrap();
    assert_eq!(at.len(), 3, "{at:?}");
    let gap = |i: usize| at[i] - at[i - 1];
    assert!(gap(1) >= Duration::from_millis(180), "{at:?}");
    assert!(gap(2) >= Duration::from_millis(380), "{at:?}");
}

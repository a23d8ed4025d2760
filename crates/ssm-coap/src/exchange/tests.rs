//! The exchange driven by an injected clock (`Duration` since the start).
use super::*;
use crate::Message;
use alloc::vec;
use alloc::vec::Vec;

const PEER: &str = "127.0.0.1:5683";
const OTHER: &str = "127.0.0.2:5683";
const GROUP: &str = "224.0.1.187:5683";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn token() -> Token {
    Token::new(&[0xa1, 0xb2, 0xc3]).unwrap()
}

fn request(ty: MessageType) -> Vec<u8> {
    let mut m = Message::new(ty, Code::GET, 0x1234, token());
    m.set_uri_path("/a/light");
    m.to_vec()
}

fn response(ty: MessageType, mid: u16, token: Token) -> Vec<u8> {
    let mut m = Message::new(ty, Code::CONTENT, mid, token);
    m.payload = vec![0xa0];
    m.to_vec()
}

fn con(params: TransmissionParams, jitter: u16) -> Exchange<Duration, Vec<u8>> {
    let to = Destination::Unicast(addr(PEER));
    Exchange::new(
        Duration::ZERO,
        request(MessageType::Confirmable),
        to,
        params,
        jitter,
    )
    .unwrap()
}

/// Runs the exchange with nothing arriving: the times it sent the request
/// and the time it gave up.
fn silent_run(ex: &mut Exchange<Duration, Vec<u8>>) -> (Vec<u64>, Duration) {
    let mut sent = vec![];
    let mut now = Duration::ZERO;
    for _ in 0..100 {
        while let Some(t) = ex.poll_transmit(now) {
            assert_eq!(t.to, addr(PEER));
            sent.push(now.as_millis() as u64);
        }
        let Some(wake) = ex.poll_timeout() else {
            return (sent, now);
        };
        assert!(wake >= now, "the clock never goes back");
        now = wake;
        ex.handle_timeout(now);
    }
    panic!("bounded")
}

#[test]
fn retransmission_schedule_doubles_the_timeout() {
    // ACK_TIMEOUT 2 s with no randomisation: 0, 2, 6, 14, 30, give up at 62.
    let mut ex = con(TransmissionParams::RFC7252, 0);
    let (sent, end) = silent_run(&mut ex);
    assert_eq!(sent, vec![0, 2000, 6000, 14000, 30000]);
    assert_eq!(end, secs(62));
    assert_eq!(ex.status(), Status::TimedOut);
    assert_eq!(ex.transmissions(), 5);
    // The largest random initial timeout (2 s × 1.5 = 3 s) ends at
    // MAX_TRANSMIT_WAIT, 93 s (RFC 7252 §4.8.2).
    let mut ex = con(TransmissionParams::RFC7252, u16::MAX);
    let (sent, end) = silent_run(&mut ex);
    assert_eq!(sent, vec![0, 3000, 9000, 21000, 45000]);
    assert_eq!(end, secs(93));
    assert_eq!(TransmissionParams::RFC7252.max_transmit_wait(), secs(93));
    // In between for a jitter in between.
    let mid = TransmissionParams::RFC7252.initial_timeout(u16::MAX / 2);
    assert!(mid > secs(2) && mid < secs(3), "{mid:?}");
    // Another MAX_RETRANSMIT and ACK_TIMEOUT.
    let p = TransmissionParams {
        ack_timeout: Duration::from_millis(500),
        ack_random_factor_milli: 1000,
        max_retransmit: 2,
    };
    let (sent, end) = silent_run(&mut con(p, u16::MAX));
    assert_eq!(sent, vec![0, 500, 1500]);
    assert_eq!(end, Duration::from_millis(3500));
}

#[test]
fn timeout_sends_nothing_more_and_ignores_late_answers() {
    let mut ex = con(TransmissionParams::RFC7252, 0);
    silent_run(&mut ex);
    assert_eq!(ex.status(), Status::TimedOut);
    assert_eq!(ex.poll_timeout(), None);
    assert!(ex.poll_transmit(secs(100)).is_none());
    let late = response(MessageType::Acknowledgement, 0x1234, token());
    assert_eq!(
        ex.handle_datagram(secs(100), addr(PEER), &late),
        Received::Ignored(Ignored::Finished)
    );
}

#[test]
fn piggybacked_response_after_a_lost_one() {
    let mut ex = con(TransmissionParams::RFC7252, 0);
    assert!(ex.poll_transmit(Duration::ZERO).is_some());
    // The first answer is lost: at 2 s the request goes out again.
    assert_eq!(ex.poll_timeout(), Some(secs(2)));
    ex.handle_timeout(secs(2));
    let t = ex.poll_transmit(secs(2)).unwrap();
    assert_eq!(t.bytes, request(MessageType::Confirmable));
    // The answer to the retransmission (same MID) is the response; a
    // piggybacked response needs no ACK.
    let r = response(MessageType::Acknowledgement, 0x1234, token());
    assert_eq!(
        ex.handle_datagram(secs(3), addr(PEER), &r),
        Received::Response
    );
    assert_eq!(ex.status(), Status::Answered);
    assert!(ex.poll_transmit(secs(3)).is_none());
    assert_eq!(ex.poll_timeout(), None);
    assert_eq!(ex.transmissions(), 2);
}

#[test]
fn empty_ack_then_separate_response() {
    let mut ex = con(TransmissionParams::RFC7252, 0);
    assert!(ex.poll_transmit(Duration::ZERO).is_some());
    let ack = empty_ack(0x1234);
    assert_eq!(
        ex.handle_datagram(secs(1), addr(PEER), &ack),
        Received::EmptyAck
    );
    assert!(ex.acked());
    // No retransmission after the Empty ACK: the next wake-up is the end.
    assert_eq!(ex.poll_timeout(), Some(secs(62)));
    ex.handle_timeout(secs(30));
    assert!(ex.poll_transmit(secs(30)).is_none());
    // The separate response: CON with the server's MID, our token; it is
    // acknowledged with its own MID, to its source.
    let sep = response(MessageType::Confirmable, 0x7777, token());
    assert_eq!(
        ex.handle_datagram(secs(31), addr(PEER), &sep),
        Received::Response
    );
    assert_eq!(ex.status(), Status::Answered);
    let t = ex.poll_transmit(secs(31)).unwrap();
    assert_eq!((t.to, t.bytes), (addr(PEER), &empty_ack(0x7777)[..]));
    assert!(ex.poll_transmit(secs(31)).is_none());
    // Our ACK was lost: the copy is acknowledged again, not processed again.
    assert_eq!(
        ex.handle_datagram(secs(33), addr(PEER), &sep),
        Received::Ignored(Ignored::Duplicate)
    );
    let t = ex.poll_transmit(secs(33)).unwrap();
    assert_eq!(t.bytes, &empty_ack(0x7777)[..]);
    // A Message decoded from the ACK is an Empty ACK.
    let m = Message::parse(t.bytes).unwrap();
    assert_eq!((m.ty, m.code), (MessageType::Acknowledgement, Code::EMPTY));
}

#[test]
fn separate_response_without_ack_stops_retransmission() {
    // The Empty ACK was lost, the separate NON response came.
    let mut ex = con(TransmissionParams::RFC7252, 0);
    assert!(ex.poll_transmit(Duration::ZERO).is_some());
    let sep = response(MessageType::NonConfirmable, 0x0042, token());
    assert_eq!(
        ex.handle_datagram(secs(1), addr(PEER), &sep),
        Received::Response
    );
    assert!(
        ex.poll_transmit(secs(2)).is_none(),
        "a NON response needs no ACK"
    );
}

#[test]
fn acked_but_never_answered_times_out() {
    let mut ex = con(TransmissionParams::RFC7252, 0);
    assert!(ex.poll_transmit(Duration::ZERO).is_some());
    ex.handle_datagram(secs(1), addr(PEER), &empty_ack(0x1234));
    let (sent, end) = silent_run(&mut ex);
    assert!(sent.is_empty());
    assert_eq!(end, secs(62));
    assert_eq!(ex.status(), Status::TimedOut);
}

#[test]
fn wrong_token_mid_source_and_non_responses_are_ignored() {
    let mut ex = con(TransmissionParams::RFC7252, 0);
    assert!(ex.poll_transmit(Duration::ZERO).is_some());
    let now = secs(1);
    let other_token = Token::new(&[9, 9]).unwrap();
    let cases: [(&str, Vec<u8>, Ignored); 6] = [
        (
            OTHER,
            response(MessageType::Acknowledgement, 0x1234, token()),
            Ignored::WrongSource,
        ),
        (OTHER, empty_ack(0x1234).to_vec(), Ignored::WrongSource),
        (
            PEER,
            response(MessageType::Acknowledgement, 0x1235, token()),
            Ignored::WrongMessageId,
        ),
        (
            PEER,
            response(MessageType::Confirmable, 0x1234, other_token),
            Ignored::WrongToken,
        ),
        (
            PEER,
            request(MessageType::Confirmable),
            Ignored::NotAResponse,
        ),
        (PEER, vec![0x40, 0x01], Ignored::NotCoap),
    ];
    for (from, bytes, why) in cases {
        assert_eq!(
            ex.handle_datagram(now, addr(from), &bytes),
            Received::Ignored(why),
            "{from} {bytes:02x?}"
        );
        assert!(ex.poll_transmit(now).is_none(), "nothing acknowledged");
    }
    // A Reset of another MID is ignored too; the exchange goes on.
    let mut rst = empty_ack(0x1235);
    rst[0] = 0x70;
    assert_eq!(
        ex.handle_datagram(now, addr(PEER), &rst),
        Received::Ignored(Ignored::WrongMessageId)
    );
    assert_eq!(ex.status(), Status::Waiting);
    assert_eq!(ex.poll_timeout(), Some(secs(2)), "still retransmitting");
    // A Reset of ours ends it.
    let mut rst = empty_ack(0x1234);
    rst[0] = 0x70;
    assert_eq!(ex.handle_datagram(now, addr(PEER), &rst), Received::Reset);
    assert_eq!(ex.status(), Status::Reset);
    assert_eq!(ex.poll_timeout(), None);
}

#[test]
fn multicast_collects_responses_from_any_unicast_source() {
    let to = Destination::Multicast(addr(GROUP));
    let params = TransmissionParams::RFC7252;
    assert_eq!(
        Exchange::new(
            Duration::ZERO,
            request(MessageType::Confirmable),
            to,
            params,
            0
        )
        .unwrap_err(),
        ExchangeError::MulticastMustBeNon
    );
    let mut ex = Exchange::new(
        Duration::ZERO,
        request(MessageType::NonConfirmable),
        to,
        params,
        0,
    )
    .unwrap();
    ex.set_deadline(secs(2));
    let t = ex.poll_transmit(Duration::ZERO).unwrap();
    assert_eq!(t.to, addr(GROUP));
    assert!(ex.poll_transmit(Duration::ZERO).is_none());
    assert_eq!(ex.poll_timeout(), Some(secs(2)), "NON: no retransmission");
    let non = response(MessageType::NonConfirmable, 1, token());
    let con = response(MessageType::Confirmable, 2, token());
    let now = Duration::from_millis(300);
    assert_eq!(
        ex.handle_datagram(now, addr(PEER), &non),
        Received::Response
    );
    assert_eq!(
        ex.handle_datagram(now, addr(OTHER), &con),
        Received::Response
    );
    let t = ex.poll_transmit(now).unwrap();
    assert_eq!((t.to, t.bytes), (addr(OTHER), &empty_ack(2)[..]));
    // Not from a multicast source, nor another family, nor another token.
    assert_eq!(
        ex.handle_datagram(now, addr(GROUP), &non),
        Received::Ignored(Ignored::WrongSource)
    );
    assert_eq!(
        ex.handle_datagram(now, addr("[::1]:5683"), &non),
        Received::Ignored(Ignored::WrongSource)
    );
    let stray = response(MessageType::NonConfirmable, 3, Token::new(&[1]).unwrap());
    assert_eq!(
        ex.handle_datagram(now, addr(PEER), &stray),
        Received::Ignored(Ignored::WrongToken)
    );
    assert_eq!(ex.status(), Status::Waiting);
    ex.handle_timeout(secs(2));
    assert_eq!(ex.status(), Status::TimedOut);
    assert_eq!(
        ex.handle_datagram(secs(3), addr(PEER), &non),
        Received::Ignored(Ignored::Finished)
    );
}

#[test]
fn not_a_request_is_refused() {
    let to = Destination::Unicast(addr(PEER));
    let p = TransmissionParams::RFC7252;
    let r = response(MessageType::Confirmable, 1, token());
    assert_eq!(
        Exchange::<Duration, _>::new(Duration::ZERO, r, to, p, 0).unwrap_err(),
        ExchangeError::NotARequest
    );
    assert!(matches!(
        Exchange::<Duration, _>::new(Duration::ZERO, vec![1u8], to, p, 0),
        Err(ExchangeError::Malformed(_))
    ));
}

#[test]
fn notifications_match_by_token_and_source() {
    let to = Destination::Unicast(addr(PEER));
    let con = response(MessageType::Confirmable, 5, token());
    assert_eq!(
        match_response(&to, &token(), addr(PEER), &con),
        Ok(Some(empty_ack(5)))
    );
    let non = response(MessageType::NonConfirmable, 6, token());
    assert_eq!(match_response(&to, &token(), addr(PEER), &non), Ok(None));
    assert_eq!(
        match_response(&to, &token(), addr(OTHER), &non),
        Err(Ignored::WrongSource)
    );
    assert_eq!(
        match_response(&to, &Token::default(), addr(PEER), &non),
        Err(Ignored::WrongToken)
    );
    assert_eq!(
        match_response(
            &to,
            &token(),
            addr(PEER),
            &request(MessageType::Confirmable)
        ),
        Err(Ignored::NotAResponse)
    );
}

#[test]
fn one_endpoint_in_its_several_spellings() {
    let to = Destination::Unicast(addr(PEER));
    assert!(to.accepts_source(addr("[::ffff:127.0.0.1]:5683")));
    assert!(!to.accepts_source(addr("127.0.0.1:5684")));
    let ll = Destination::Unicast(addr("[fe80::1%3]:5683"));
    assert!(ll.accepts_source(addr("[fe80::1%3]:5683")));
    assert!(!ll.accepts_source(addr("[fe80::1%4]:5683")));
    assert!(!ll.accepts_source(addr("[fe80::2%3]:5683")));
}

use super::*;
use ssm_coap::{MessageType, Token};
use ssm_oscore::{SenderContext, SequenceNumber};

const SECRET: [u8; 32] = [0x5a; 32];

fn kid() -> Id {
    Id::new(&[0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff]).unwrap()
}

fn server_cred(credid: u32, subject: u128, secret: &[u8]) -> OscoreCred {
    OscoreCred {
        credid,
        credtype: CredType::SsmServer,
        subject: Some(Uuid::from_u128(subject)),
        secret: zeroize::Zeroizing::new(secret.to_vec()),
        sender_id: None,
        recipient_id: Some(kid()),
        ssn: None,
        group: None,
    }
}

fn sender(start: u64) -> SenderContext {
    SenderContext::derive(&SECRET, None, None, kid(), SequenceNumber::volatile(start)).unwrap()
}

fn update(s: &mut SenderContext, on: bool) -> Vec<u8> {
    let props = crate::cbor::map([("value", ciborium::Value::Bool(on))]);
    let m = update_request(
        "/BinarySwitchResURI",
        &props,
        7,
        Token::new(&[1]).unwrap(),
        true,
    );
    let mut out = vec![0u8; 256];
    let (n, _) = s.protect_request(&m.to_vec(), &mut out).unwrap();
    out.truncate(n);
    out
}

/// What the runtime does with a verified update: persist, report.
fn settle(rx: &mut SsmReceiver, v: &Verified) {
    if let Some(floor) = v.persist {
        rx.floor_persisted(&v.accepted.kid, floor);
    }
}

/// F1 (security review): a light provisioned the reference way holds N
/// credtype-256 credentials with one kid and key. A recorded datagram,
/// replayed long after, must not be accepted once more per extra
/// credential.
#[test]
fn a_replay_is_refused_however_many_credentials_share_the_kid() {
    let creds = [
        server_cred(1, 1, &SECRET),
        server_cred(2, 2, &SECRET),
        server_cred(3, 3, &SECRET),
    ];
    let mut rx = SsmReceiver::new(&creds, ReplayFloors::default()).unwrap();
    assert_eq!(rx.len(), 1, "one context (one window) per kid and key");
    let mut s = sender(10);
    let captured = update(&mut s, false);
    let v = rx.receive(&mut captured.clone()).unwrap();
    assert_eq!(v.accepted.piv, 10);
    assert_eq!(v.accepted.credid, 1, "credited to the first credential");
    settle(&mut rx, &v);
    let mut recent = Vec::new();
    for _ in 0..40 {
        recent = update(&mut s, true);
        let v = rx.receive(&mut recent.clone()).unwrap();
        settle(&mut rx, &v);
    }
    for _ in 0..3 {
        assert_eq!(
            rx.receive(&mut captured.clone()).unwrap_err(),
            DropReason::Replay
        );
    }
    // A recent one too (inside the window).
    for _ in 0..3 {
        assert_eq!(
            rx.receive(&mut recent.clone()).unwrap_err(),
            DropReason::Replay
        );
    }
}

/// Same kid, different keys: each key keeps its own context and window,
/// and a datagram under the second key still verifies.
#[test]
fn same_kid_different_keys_stay_separate() {
    let other = [0x11u8; 32];
    let creds = [server_cred(1, 1, &SECRET), server_cred(2, 2, &other)];
    let mut rx = SsmReceiver::new(&creds, ReplayFloors::default()).unwrap();
    assert_eq!(rx.len(), 2);
    let mut s2 =
        SenderContext::derive(&other, None, None, kid(), SequenceNumber::volatile(5)).unwrap();
    let d = update(&mut s2, true);
    let v = rx.receive(&mut d.clone()).unwrap();
    assert_eq!(v.accepted.credid, 2);
    settle(&mut rx, &v);
    assert_eq!(rx.receive(&mut d.clone()).unwrap_err(), DropReason::Replay);
}

/// F6 (security review): the in-memory floor rises only once it is
/// durable. After a failed floor write (the update is not applied), a
/// reordered older datagram must again ask for a write before it may be
/// applied; one covered by a durable floor may be applied at once.
#[test]
fn the_floor_rises_only_once_durable() {
    let creds = [server_cred(1, 1, &SECRET)];
    let mut rx = SsmReceiver::new(&creds, ReplayFloors::default()).unwrap();
    let mut s = sender(10);
    let d10 = update(&mut s, true);
    let d11 = update(&mut s, false);
    let d12 = update(&mut s, true);
    let v10 = rx.receive(&mut d10.clone()).unwrap();
    assert_eq!(v10.persist, Some(10));
    settle(&mut rx, &v10);
    // PIV 12: its floor write fails (EIO): the runtime does not report
    // it persisted and does not apply it.
    let v12 = rx.receive(&mut d12.clone()).unwrap();
    assert_eq!(v12.persist, Some(12));
    assert_eq!(rx.floors().get(&kid()), Some(10), "not durable, not raised");
    // Reordered PIV 11: above the durable floor, so it needs a write.
    let v11 = rx.receive(&mut d11.clone()).unwrap();
    assert_eq!(v11.persist, Some(11), "must not be applied without a write");
    settle(&mut rx, &v11);
    // A restart from the durable floors rejects what was applied.
    let mut restarted = SsmReceiver::new(&creds, rx.floors().clone()).unwrap();
    assert_eq!(
        restarted.receive(&mut d11.clone()).unwrap_err(),
        DropReason::Replay
    );
    // With a reservation, a datagram under the durable floor needs no
    // write.
    let mut rx = SsmReceiver::new(&creds, ReplayFloors::default()).unwrap();
    rx.set_floor_reservation(4);
    let mut s = sender(20);
    let v = rx.receive(&mut update(&mut s, true)).unwrap();
    assert_eq!(v.persist, Some(24));
    settle(&mut rx, &v);
    let v = rx.receive(&mut update(&mut s, true)).unwrap();
    assert_eq!(v.persist, None, "21 is under the durable floor 24");
}

/// One command is one datagram sent to several groups: the copies that
/// arrive through the light's other groups are duplicates, not replays;
/// beyond one per other group the same bytes are replays.
#[test]
fn identical_copies_are_duplicates_within_the_expected_count() {
    let creds = [server_cred(1, 1, &SECRET)];
    let mut rx = SsmReceiver::new(&creds, ReplayFloors::default()).unwrap();
    rx.set_expected_copies(2); // 224.0.1.187, ff02::158, ff05::158
    let mut s = sender(0);
    let d = update(&mut s, true);
    let v = rx.receive(&mut d.clone()).unwrap();
    settle(&mut rx, &v);
    assert_eq!(
        rx.receive(&mut d.clone()).unwrap_err(),
        DropReason::DuplicateCopy
    );
    assert_eq!(
        rx.receive(&mut d.clone()).unwrap_err(),
        DropReason::DuplicateCopy
    );
    assert_eq!(rx.receive(&mut d.clone()).unwrap_err(), DropReason::Replay);
    // A modified datagram with the same PIV is never a "copy".
    let mut forged = d.clone();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    assert_eq!(rx.receive(&mut forged).unwrap_err(), DropReason::Replay);
    // Without expected copies (one group), a copy is a replay.
    let mut rx = SsmReceiver::new(&creds, ReplayFloors::default()).unwrap();
    let v = rx.receive(&mut d.clone()).unwrap();
    settle(&mut rx, &v);
    assert_eq!(rx.receive(&mut d.clone()).unwrap_err(), DropReason::Replay);
}

/// Multicast requests are NON (RFC 7252 §8.1).
#[test]
fn a_confirmable_multicast_request_is_dropped() {
    let creds = [server_cred(1, 1, &SECRET)];
    let mut rx = SsmReceiver::new(&creds, ReplayFloors::default()).unwrap();
    let mut s = sender(0);
    let props = crate::cbor::map([("value", ciborium::Value::Bool(true))]);
    let mut m = update_request(
        "/BinarySwitchResURI",
        &props,
        7,
        Token::new(&[1]).unwrap(),
        true,
    );
    m.ty = MessageType::Confirmable;
    let mut out = vec![0u8; 256];
    let (n, _) = s.protect_request(&m.to_vec(), &mut out).unwrap();
    out.truncate(n);
    // The outer type follows the inner one.
    assert_eq!(
        rx.receive(&mut out).unwrap_err(),
        DropReason::ConfirmableMulticast
    );
}

/// What a group socket shared by many devices looks at first: the kid of
/// a NON OSCORE datagram, and whether a receiver has a context for it.
#[test]
fn datagram_kid_and_admits() {
    let rx = SsmReceiver::new(&[server_cred(1, 1, &SECRET)], ReplayFloors::default()).unwrap();
    let d = update(&mut sender(0), true);
    assert_eq!(datagram_kid(&d), Some(kid()));
    assert!(rx.admits(&kid()));
    let other = Id::new(&[0x02, 1, 2, 3, 4, 5, 6]).unwrap();
    assert!(!rx.admits(&other));
    // Not OSCORE, not CoAP, or confirmable: for the full receive path.
    let plain = crate::message::request(
        MessageType::NonConfirmable,
        ssm_coap::Code::GET,
        "/oic/res",
        None,
    );
    assert_eq!(datagram_kid(&plain.to_vec()), None);
    assert_eq!(datagram_kid(&[0xff, 0x00]), None);
    let mut con = d.clone();
    con[0] = (con[0] & !0x30) | ((MessageType::Confirmable as u8) << 4);
    assert_eq!(datagram_kid(&con), None);
}

/// Zones: one switch commanding two groups has one Sender ID (and key) in
/// each; a light in both holds one recipient context per (group, switch)
/// and applies both; a light of one group only drops the other group's
/// datagrams before any AEAD work (unknown kid), also one protected under
/// its own group's key with the other group's kid fails the tag.
#[test]
fn one_recipient_per_group_and_switch() {
    let (east, west) = ([0x0e; 32], [0x77; 32]);
    let kid_e = Id::new(&[0x02, 1, 1, 1, 1, 1, 1]).unwrap();
    let kid_w = Id::new(&[0x02, 2, 2, 2, 2, 2, 2]).unwrap();
    let server = |credid, secret: &[u8], kid: Id| OscoreCred {
        recipient_id: Some(kid),
        ..server_cred(credid, 1, secret)
    };
    let mut both = SsmReceiver::new(
        &[server(1, &east, kid_e), server(2, &west, kid_w)],
        ReplayFloors::default(),
    )
    .unwrap();
    assert_eq!(both.len(), 2);
    let mut east_only =
        SsmReceiver::new(&[server(1, &east, kid_e)], ReplayFloors::default()).unwrap();
    let sender = |secret: &[u8], kid: Id| {
        SenderContext::derive(secret, None, None, kid, SequenceNumber::volatile(0)).unwrap()
    };
    let (mut se, mut sw) = (sender(&east, kid_e), sender(&west, kid_w));
    let de = update(&mut se, true);
    let dw = update(&mut sw, false);
    let v = both.receive(&mut de.clone()).unwrap();
    assert_eq!((v.accepted.credid, v.accepted.kid), (1, kid_e));
    let v = both.receive(&mut dw.clone()).unwrap();
    assert_eq!((v.accepted.credid, v.accepted.kid), (2, kid_w));
    assert!(east_only.receive(&mut de.clone()).is_ok());
    let e = east_only.receive(&mut dw.clone()).unwrap_err();
    assert_eq!(e, DropReason::UnknownKid);
    assert!(e.is_cheap());
    // A member of east forging for west: east's key under west's kid.
    // (A fresh Partial IV: a used one is refused as a replay before AEAD.)
    let mut forger =
        SenderContext::derive(&east, None, None, kid_w, SequenceNumber::volatile(100)).unwrap();
    let forged = update(&mut forger, true);
    assert_eq!(
        both.receive(&mut forged.clone()).unwrap_err(),
        DropReason::DecryptionFailed
    );
}

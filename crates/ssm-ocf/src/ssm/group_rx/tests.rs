use super::super::{update_request, DropReason, ReplayFloors, SsmReceiver, Verified};
use crate::cred::{CredResource, CredType, Credential, OscoreCred, OscoreFields, PrivateData};
use crate::group_cred::{ccs_of_ed25519, fields, gid_of, public_key, sender_context};
use ssm_coap::Token;
use ssm_oscore::{RequestOptions, SequenceNumber};

const SECRET: [u8; 32] = [0x3c; 32];
const SWITCH_KEY: [u8; 32] = [0x11; 32];
const GM_KEY: [u8; 32] = [0x77; 32];
const SID: &str = "02000000000009";
const SWITCH: &str = "00000000-0000-0000-0000-00000000000a";

fn ccs(k: &[u8; 32]) -> Vec<u8> {
    ccs_of_ed25519(&public_key(k)).to_vec()
}

fn cred(t: CredType, epoch: u32, sid: &str) -> OscoreCred {
    let auth = ccs(&SWITCH_KEY);
    let (s, r, a) = match t {
        CredType::GroupOscoreSender => (Some(sid.to_string()), None, None),
        _ => (None, Some(sid.to_string()), Some(&auth[..])),
    };
    let c = Credential {
        credid: 4,
        subjectuuid: SWITCH.into(),
        credtype: t,
        privatedata: Some(PrivateData::raw(&SECRET)),
        oscore: Some(OscoreFields {
            senderid: s,
            recipientid: r,
            desc: Some(format!("SSM group hall (3) epoch {epoch}")),
            group: Some(fields(&gid_of(3, epoch), &ccs(&GM_KEY), a)),
            ..Default::default()
        }),
    };
    c.oscore().unwrap().unwrap()
}

/// A group-mode UPDATE signed with `key` under the sender credential.
fn signed(key: &[u8; 32], epoch: u32, sid: &str, piv: u64, on: bool) -> Vec<u8> {
    let sc = cred(CredType::GroupOscoreSender, epoch, sid);
    // A forger's own key does not match the CCS the light holds; the
    // sender context is built with the forger's own credential.
    let (common, mut ctx) = sender_context(&sc, key, SequenceNumber::volatile(piv)).unwrap();
    let props = crate::cbor::map([("value", ciborium::Value::Bool(on))]);
    let m = update_request(
        "/BinarySwitchResURI",
        &props,
        9,
        Token::new(&[2]).unwrap(),
        true,
    );
    let mut out = vec![0u8; 512];
    let (n, _) = ctx
        .protect_request(
            &common,
            &m.to_vec(),
            &mut out,
            RequestOptions {
                outer_no_response: true,
            },
        )
        .unwrap();
    out.truncate(n);
    out
}

fn light(floors: ReplayFloors) -> SsmReceiver {
    SsmReceiver::new(&[cred(CredType::GroupOscoreRecipient, 1, SID)], floors).unwrap()
}

fn settle(rx: &mut SsmReceiver, v: &Verified) {
    if let Some(f) = v.persist {
        rx.floor_persisted(&v.accepted.kid, f);
    }
}

#[test]
fn a_signed_update_is_applied_once_and_credited_to_its_switch() {
    let mut rx = light(ReplayFloors::default());
    assert_eq!(rx.len(), 1);
    let d = signed(&SWITCH_KEY, 1, SID, 5, true);
    let v = rx.receive(&mut d.clone()).unwrap();
    assert_eq!(v.accepted.subject.unwrap().to_string(), SWITCH);
    assert_eq!(v.accepted.piv, 5);
    assert_eq!(v.persist, Some(5));
    settle(&mut rx, &v);
    assert_eq!(rx.receive(&mut d.clone()).unwrap_err(), DropReason::Replay);
}

/// The attack: a light holding the group's full key material (the
/// master secret, the Gid, every credential) forges a command under the
/// switch's Sender ID. Only its own key can sign: 0 accepted, each a
/// BadSignature, and the window did not move (the genuine command with the
/// same Partial IV is still accepted afterwards).
#[test]
fn a_member_with_the_full_key_material_cannot_forge_the_switch() {
    let mut rx = light(ReplayFloors::default());
    let member_key = [0x42u8; 32];
    let mut accepted = 0;
    for piv in 1..=20 {
        let mut f = signed(&member_key, 1, SID, piv, true);
        match rx.receive(&mut f) {
            Ok(_) => accepted += 1,
            Err(e) => assert_eq!(e, DropReason::BadSignature),
        }
    }
    assert_eq!(accepted, 0);
    let v = rx
        .receive(&mut signed(&SWITCH_KEY, 1, SID, 1, false))
        .unwrap();
    assert_eq!(v.accepted.piv, 1);
}

/// Every byte of a captured group-mode datagram flipped (two bits each),
/// each to a fresh light: never a different command accepted (OSCORE
/// leaves the outer header and class U options unprotected, RFC 8613 §4:
/// a flip of the Message ID, token or the outer No-Response may pass with
/// the same protected command), and a
/// light that already accepted the original drops every flip.
#[test]
fn every_byte_tampered_is_dropped() {
    let d = signed(&SWITCH_KEY, 1, SID, 8, true);
    let original = light(ReplayFloors::default())
        .receive(&mut d.clone())
        .unwrap()
        .accepted
        .request;
    let mut seen = light(ReplayFloors::default());
    let v = seen.receive(&mut d.clone()).unwrap();
    settle(&mut seen, &v);
    let (mut bad_sig, mut header_only) = (0, 0);
    for i in 0..d.len() {
        for x in [0x01u8, 0x80] {
            let mut t = d.clone();
            t[i] ^= x;
            match light(ReplayFloors::default()).receive(&mut t.clone()) {
                Ok(v) => {
                    let r = v.accepted.request;
                    assert_eq!(r.payload, original.payload, "byte {i} ^ {x:#x}");
                    assert_eq!(r.code, original.code, "byte {i} ^ {x:#x}");
                    let inner = |m: &ssm_coap::Message| {
                        m.options
                            .iter()
                            .filter(|(n, _)| *n != ssm_coap::OptionNumber::NO_RESPONSE)
                            .cloned()
                            .collect::<Vec<_>>()
                    };
                    assert_eq!(inner(&r), inner(&original), "byte {i} ^ {x:#x}");
                    header_only += 1;
                }
                Err(DropReason::BadSignature) => bad_sig += 1,
                Err(_) => {}
            }
            assert!(seen.receive(&mut t).is_err(), "byte {i} ^ {x:#x}");
        }
    }
    assert!(
        header_only < d.len() / 4,
        "{header_only} unprotected-byte flips"
    );
    assert!(
        bad_sig > d.len() / 2,
        "the signature catches most flips ({bad_sig})"
    );
}

/// No downgrade: the same Sender ID in an SSM (credtype 256) datagram under
/// the group's master secret is not taken by the group-mode context.
#[test]
fn an_ssm_datagram_never_reaches_a_group_mode_context() {
    let mut rx = light(ReplayFloors::default());
    let sid = ssm_oscore::Id::new(&hex::decode(SID).unwrap()).unwrap();
    let mut s =
        ssm_oscore::SenderContext::derive(&SECRET, None, None, sid, SequenceNumber::volatile(3))
            .unwrap();
    let props = crate::cbor::map([("value", ciborium::Value::Bool(true))]);
    let m = update_request(
        "/BinarySwitchResURI",
        &props,
        9,
        Token::new(&[2]).unwrap(),
        true,
    );
    let mut out = vec![0u8; 256];
    let (n, _) = s.protect_request(&m.to_vec(), &mut out).unwrap();
    assert_eq!(
        rx.receive(&mut out[..n]).unwrap_err(),
        DropReason::UnknownKid
    );
}

/// Restart safety: the persisted floor survives; after a rekey (new Gid,
/// new Sender ID) the removed switch's datagrams under the old Gid are
/// unknown.
#[test]
fn floors_survive_a_restart_and_a_rekey_leaves_the_old_gid_unknown() {
    let mut rx = light(ReplayFloors::default());
    let d = signed(&SWITCH_KEY, 1, SID, 30, true);
    let v = rx.receive(&mut d.clone()).unwrap();
    settle(&mut rx, &v);
    let floors = rx.floors().clone();
    let mut restarted = light(floors);
    assert_eq!(
        restarted.receive(&mut d.clone()).unwrap_err(),
        DropReason::Replay
    );
    let older = signed(&SWITCH_KEY, 1, SID, 29, true);
    assert_eq!(
        restarted.receive(&mut older.clone()).unwrap_err(),
        DropReason::Replay
    );
    // Rekeyed (epoch 2, another Sender ID for the remaining switch).
    let mut rekeyed = SsmReceiver::new(
        &[cred(CredType::GroupOscoreRecipient, 2, "0200000000000a")],
        ReplayFloors::default(),
    )
    .unwrap();
    let stale = signed(&SWITCH_KEY, 1, SID, 31, true);
    assert_eq!(
        rekeyed.receive(&mut stale.clone()).unwrap_err(),
        DropReason::UnknownKid
    );
    let v = rekeyed
        .receive(&mut signed(&SWITCH_KEY, 2, "0200000000000a", 0, true))
        .unwrap();
    assert_eq!(v.accepted.piv, 0);
}

#[test]
fn a_recipient_credential_from_json_builds_a_context() {
    let c = cred(CredType::GroupOscoreRecipient, 1, SID);
    assert!(c.group.is_some());
    let set = CredResource::default();
    assert!(
        SsmReceiver::new(&set.oscore_creds().unwrap(), ReplayFloors::default())
            .unwrap()
            .is_empty()
    );
}

#[test]
fn receivers_sharing_a_cache_verify_a_signature_once() {
    use super::super::signature_cache::tests::counting;
    use std::sync::atomic::Ordering;
    let (cache, calls) = counting(16);
    let cache = std::sync::Arc::new(cache);
    let (mut a, mut b) = (
        light(ReplayFloors::default()),
        light(ReplayFloors::default()),
    );
    a.set_signature_cache(Some(cache.clone()));
    b.set_signature_cache(Some(cache.clone()));
    let d = signed(&SWITCH_KEY, 1, SID, 5, true);
    let va = a.receive(&mut d.clone()).unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // The second light's receive of the same datagram: no check run.
    let vb = b.receive(&mut d.clone()).unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(cache.stats(), (1, 1));
    assert_eq!((va.accepted.piv, vb.accepted.piv), (5, 5));
    // Each light keeps its own replay window: a replay is refused before
    // any signature work, by both.
    settle(&mut a, &va);
    assert_eq!(a.receive(&mut d.clone()).unwrap_err(), DropReason::Replay);
    assert_eq!(b.receive(&mut d.clone()).unwrap_err(), DropReason::Replay);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // A forgery (a member's own key) is checked and refused by each, never
    // remembered.
    let forged = signed(&[0x99; 32], 1, SID, 6, false);
    for rx in [&mut a, &mut b] {
        assert_eq!(
            rx.receive(&mut forged.clone()).unwrap_err(),
            DropReason::BadSignature
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    // A light without the cache is unaffected.
    let mut c = light(ReplayFloors::default());
    assert!(c.receive(&mut d.clone()).is_ok());
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

/// With a cache that already holds the genuine datagram's signature,
/// every tampered copy meets the same fate as without any cache: a
/// changed byte of the ciphertext or the signature misses and is refused
/// by the strict check; only the unprotected header passes, as it does
/// anyway.
#[test]
fn a_primed_cache_changes_no_verdict_on_tampered_datagrams() {
    let d = signed(&SWITCH_KEY, 1, SID, 8, true);
    let cache = std::sync::Arc::new(super::SignatureCache::new(16));
    let mut primer = light(ReplayFloors::default());
    primer.set_signature_cache(Some(cache.clone()));
    primer.receive(&mut d.clone()).unwrap();
    assert_eq!(cache.len(), 1);
    let mut bad_sig = 0;
    for i in 0..d.len() {
        let mut t = d.clone();
        t[i] ^= 0x04;
        let plain = light(ReplayFloors::default())
            .receive(&mut t.clone())
            .map(|v| v.accepted.piv);
        let mut cached = light(ReplayFloors::default());
        cached.set_signature_cache(Some(cache.clone()));
        let with_cache = cached.receive(&mut t).map(|v| v.accepted.piv);
        assert_eq!(with_cache, plain, "byte {i}");
        bad_sig += usize::from(plain == Err(DropReason::BadSignature));
    }
    assert!(bad_sig > d.len() / 2, "{bad_sig}");
    // No failure was remembered.
    assert_eq!(cache.len(), 1);
}

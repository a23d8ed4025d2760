use super::*;
use crate::context::{RecipientContext, SenderContext};
use crate::error::Error;
use crate::id::{Id, IdContext};
use crate::protect::{RequestOptions, ResponsePiv};
use crate::replay::{ReplayState, ReplayWindow};
use crate::sequence::SequenceNumber;
use ed25519_dalek::SigningKey;
use ssm_coap::{Code, MessageType, MessageWriter, OptionNumber, Packet};
extern crate alloc;

const SECRET: [u8; 32] = [0x42; 32];
const GM_CRED: &[u8] = b"group manager credential";
const SWITCH: [u8; 1] = [0x01];
const LIGHT: [u8; 1] = [0x02];

fn gid() -> IdContext {
    IdContext::new(&[0x47, 0x01]).unwrap()
}

fn params() -> GroupParams<'static> {
    GroupParams {
        master_secret: &SECRET,
        master_salt: None,
        group_id: gid(),
        gm_cred: GM_CRED,
        alg_aead: None,
        alg_pairwise_key_agreement: None,
    }
}

fn seed(id: &[u8]) -> [u8; 32] {
    let mut s = [0x5au8; 32];
    s[0] = id[0];
    s
}

/// A CCS `{8: {1: {1: 1, 3: -8, -1: 6, -2: pub}}}`, as aiocoap builds
/// them.
fn ccs(pk: &[u8; 32]) -> [u8; 46] {
    let mut c = [0u8; 46];
    c[..14].copy_from_slice(&[
        0xa1, 0x08, 0xa1, 0x01, 0xa4, 0x01, 0x01, 0x03, 0x27, 0x20, 0x06, 0x21, 0x58, 0x20,
    ]);
    c[14..].copy_from_slice(pk);
    c
}

fn cred_of(id: &[u8]) -> [u8; 46] {
    ccs(&SigningKey::from_bytes(&seed(id)).verifying_key().to_bytes())
}

fn sender(id: &[u8], seq: u64) -> GroupSenderContext {
    GroupSenderContext::derive(
        &params(),
        Id::new(id).unwrap(),
        &seed(id),
        &cred_of(id),
        SequenceNumber::volatile(seq),
    )
    .unwrap()
}

fn recipient(id: &[u8]) -> GroupRecipientContext {
    GroupRecipientContext::derive(
        &params(),
        Id::new(id).unwrap(),
        &cred_of(id),
        ReplayState::Window(ReplayWindow::new(32)),
    )
    .unwrap()
}

/// The SSM UPDATE: NON POST /BinarySwitchResURI {"value": true}.
fn update(buf: &mut [u8; 128]) -> usize {
    let mut w = MessageWriter::new(
        buf,
        MessageType::NonConfirmable,
        Code::POST,
        0x1234,
        &[1, 2, 3, 4],
    )
    .unwrap();
    w.option(OptionNumber::URI_PATH, b"BinarySwitchResURI")
        .unwrap();
    w.option_uint(OptionNumber::CONTENT_FORMAT, 10000).unwrap();
    w.option_uint(OptionNumber::NO_RESPONSE, 26).unwrap();
    w.payload(&[0xa1, 0x65, b'v', b'a', b'l', b'u', b'e', 0xf5])
        .unwrap()
}

fn protected(s: &mut GroupSenderContext, common: &GroupCommon) -> ([u8; 256], usize) {
    let mut req = [0u8; 128];
    let n = update(&mut req);
    let mut out = [0u8; 256];
    let (len, _) = s
        .protect_request(common, &req[..n], &mut out, RequestOptions::default())
        .unwrap();
    (out, len)
}

#[test]
fn roundtrip_and_replay() {
    let common = GroupCommon::derive(&params()).unwrap();
    let mut s = sender(&SWITCH, 7);
    let mut r = recipient(&SWITCH);
    let (wire, n) = protected(&mut s, &common);
    // §4.1: Group Flag, kid context = Gid, kid = Sender ID.
    let p = Packet::new_checked(&wire[..n]).unwrap();
    let opt = p.options().get(OptionNumber::OSCORE).unwrap().value;
    assert_eq!(opt, &[0x39, 7, 2, 0x47, 0x01, 0x01]);
    let mut buf = wire;
    let d = r.unprotect_request(&common, &mut buf[..n]).unwrap();
    assert_eq!(d.payload, &[0xa1, 0x65, b'v', b'a', b'l', b'u', b'e', 0xf5]);
    assert_eq!(
        d.options.get(OptionNumber::URI_PATH).unwrap().value,
        b"BinarySwitchResURI"
    );
    let mut buf = wire;
    assert_eq!(
        r.unprotect_request(&common, &mut buf[..n]).err(),
        Some(Error::Replay)
    );
    // The next request is fresh.
    let (wire2, n2) = protected(&mut s, &common);
    let mut buf = wire2;
    assert!(r.unprotect_request(&common, &mut buf[..n2]).is_ok());
}

#[test]
fn every_byte_flipped_is_rejected_and_the_window_stays() {
    let common = GroupCommon::derive(&params()).unwrap();
    let mut s = sender(&SWITCH, 1000);
    let (wire, n) = protected(&mut s, &common);
    // `r` has accepted an earlier request (sequence number 999).
    let mut earlier = sender(&SWITCH, 999);
    let (w0, n0) = protected(&mut earlier, &common);
    let mut r = recipient(&SWITCH);
    let mut buf = w0;
    r.unprotect_request(&common, &mut buf[..n0]).unwrap();
    let accepted = *r.replay();
    let before = ReplayState::Window(ReplayWindow::new(32));
    let mut signature_errors = 0;
    for i in 0..n {
        for bit in [0x01u8, 0x80] {
            let mut buf = wire;
            buf[i] ^= bit;
            let mut fresh = recipient(&SWITCH);
            match fresh.unprotect_request(&common, &mut buf[..n]) {
                // OSCORE leaves the outer header unprotected (RFC 8613
                // §4: message type, Message ID, token): a change there
                // may pass, with every protected field unchanged.
                Ok(d) => {
                    assert!(i < 4 + 4, "byte {i} bit {bit:#x} accepted");
                    assert_eq!(d.payload, &[0xa1, 0x65, b'v', b'a', b'l', b'u', b'e', 0xf5]);
                    assert_eq!(d.code, Code::POST);
                    assert_eq!(d.options.iter().count(), 3);
                }
                Err(e) => {
                    if e == Error::BadSignature {
                        signature_errors += 1;
                    }
                    // A rejected message never moves the window.
                    assert_eq!(fresh.replay(), &before, "window moved at byte {i}");
                }
            }
            // Nor does it move the window of a receiver that already
            // accepted messages.
            if r.unprotect_request(&common, &mut buf[..n]).is_err() {
                assert_eq!(r.replay(), &accepted, "window moved at byte {i}");
            } else {
                // Accepted (an unprotected header byte): undo, so the
                // next flip meets the same window.
                r = recipient(&SWITCH);
                let mut buf = w0;
                r.unprotect_request(&common, &mut buf[..n0]).unwrap();
            }
        }
    }
    // Every ciphertext and signature byte is covered by the signature:
    // a flip there is reported as a bad signature.
    let payload_start = Packet::new_checked(&wire[..n]).unwrap().payload_offset();
    assert!(signature_errors >= 2 * (n - payload_start));
    // The untouched message is still accepted afterwards.
    let mut buf = wire;
    assert!(r.unprotect_request(&common, &mut buf[..n]).is_ok());
}

/// The attack group mode exists for (issue 16, SECURITY.md's threat
/// model): a light holding the group's full key material (Master Secret,
/// Salt, Gid, hence every Sender Key, the Signature Encryption Key and
/// every public credential) sends a command under the switch's Sender
/// ID. With OCF SSM (RFC 8613 contexts) it is accepted; in group mode
/// it fails on the signature, and the window does not move.
#[test]
fn member_forging_under_another_sender_id_is_rejected() {
    let mut req = [0u8; 128];
    let n = update(&mut req);

    // OCF SSM: the light derives the switch's Sender Context itself.
    let switch_id = Id::new(&SWITCH).unwrap();
    let mut forged_ssm = SenderContext::derive(
        &SECRET,
        None,
        Some(gid()),
        switch_id,
        SequenceNumber::volatile(500),
    )
    .unwrap();
    let mut out = [0u8; 256];
    let (m, _) = forged_ssm.protect_request(&req[..n], &mut out).unwrap();
    let mut victim_ssm = RecipientContext::derive(
        &SECRET,
        None,
        Some(gid()),
        switch_id,
        ReplayState::Window(ReplayWindow::new(32)),
    )
    .unwrap();
    assert!(
        victim_ssm.unprotect_request(&mut out[..m]).is_ok(),
        "with a shared key alone the forgery is accepted"
    );

    // Group mode: the light builds the switch's Sender Context with the
    // switch's public credential (so the external_aad and the AEAD tag
    // are right) and signs with the only private key it has, its own.
    let common = GroupCommon::derive(&params()).unwrap();
    let mut forger = GroupSenderContext {
        inner: SenderContext::derive(
            &SECRET,
            None,
            Some(gid()),
            switch_id,
            SequenceNumber::volatile(500),
        )
        .unwrap(),
        signing_key: SigningKey::from_bytes(&seed(&LIGHT)),
        cred: Credential::new(&cred_of(&SWITCH)).unwrap(),
    };
    let (wire, len) = protected(&mut forger, &common);
    let mut victim = recipient(&SWITCH);
    let before = *victim.replay();
    let mut buf = wire;
    assert_eq!(
        victim.unprotect_request(&common, &mut buf[..len]).err(),
        Some(Error::BadSignature)
    );
    assert_eq!(victim.replay(), &before);
    // Nor can it sign with its own credential in the AAD: the receiver
    // uses the switch's.
    let mut forger2 = GroupSenderContext::derive(
        &params(),
        switch_id,
        &seed(&LIGHT),
        &cred_of(&LIGHT),
        SequenceNumber::volatile(501),
    )
    .unwrap();
    let (wire, len) = protected(&mut forger2, &common);
    let mut buf = wire;
    assert_eq!(
        victim.unprotect_request(&common, &mut buf[..len]).err(),
        Some(Error::BadSignature)
    );
    assert_eq!(victim.replay(), &before);
    // The real switch at the same sequence number is accepted.
    let mut real = sender(&SWITCH, 500);
    let (wire, len) = protected(&mut real, &common);
    let mut buf = wire;
    assert!(victim.unprotect_request(&common, &mut buf[..len]).is_ok());
}

#[test]
fn small_order_keys_are_refused() {
    // The identity (y = 1) and the point of order 2 (y = -1): §2.5.2.1
    // requires aborting for them; they also make signatures meaningless.
    let mut one = [0u8; 32];
    one[0] = 1;
    let mut minus_one = [0xffu8; 32];
    minus_one[0] = 0xec;
    minus_one[31] = 0x7f;
    for pk in [one, minus_one] {
        assert_eq!(
            GroupRecipientContext::derive(
                &params(),
                Id::new(&SWITCH).unwrap(),
                &ccs(&pk),
                ReplayState::Window(ReplayWindow::new(32)),
            )
            .err(),
            Some(Error::BadCredential)
        );
    }
}

#[test]
fn a_credential_must_match_the_private_key() {
    assert_eq!(
        GroupSenderContext::derive(
            &params(),
            Id::new(&SWITCH).unwrap(),
            &seed(&SWITCH),
            &cred_of(&LIGHT),
            SequenceNumber::volatile(0),
        )
        .err(),
        Some(Error::BadCredential)
    );
}

#[test]
fn credentials() {
    let pk = [7u8; 32];
    let c = ccs(&pk);
    assert_eq!(ccs_ed25519_public_key(&c), Ok(pk));
    // Other claims around cnf are skipped; alg may be absent.
    let mut with_sub = alloc_vec(&[0xa2, 0x02, 0x63, b'a', b'b', b'c']);
    with_sub.extend_from_slice(&c[1..]);
    assert_eq!(ccs_ed25519_public_key(&with_sub), Ok(pk));
    let mut no_alg = alloc_vec(&[0xa1, 0x08, 0xa1, 0x01, 0xa3, 0x01, 0x01, 0x20, 0x06, 0x21]);
    no_alg.extend_from_slice(&c[12..]);
    assert_eq!(ccs_ed25519_public_key(&no_alg), Ok(pk));
    // Wrong kty, crv, alg, key length; trailing bytes; truncation.
    for (i, v) in [(6, 0x02), (10, 0x01), (8, 0x26), (13, 0x1f)] {
        let mut b = c;
        b[i] = v;
        assert_eq!(ccs_ed25519_public_key(&b), Err(Error::BadCredential), "{i}");
    }
    // A tagged CCS (tag 61, CWT) is not what the Security Context stores.
    let mut tagged = alloc_vec(&[0xd8, 0x3d]);
    tagged.extend_from_slice(&c);
    assert_eq!(ccs_ed25519_public_key(&tagged), Err(Error::BadCredential));
    let mut long = alloc_vec(&c);
    long.push(0);
    assert_eq!(ccs_ed25519_public_key(&long), Err(Error::BadCredential));
    for n in 0..c.len() {
        assert_eq!(ccs_ed25519_public_key(&c[..n]), Err(Error::BadCredential));
    }
    assert_eq!(
        Credential::new(&[0; MAX_CRED_LEN + 1]).err(),
        Some(Error::BadCredential)
    );
}

fn alloc_vec(b: &[u8]) -> alloc::vec::Vec<u8> {
    b.to_vec()
}

#[test]
fn sequence_numbers_come_from_the_store() {
    struct Store(u64);
    impl crate::SequenceNumberStore for Store {
        type Error = ();
        fn reserve_block(&mut self, next: u64, k: u64) -> Result<core::ops::Range<u64>, ()> {
            let b = crate::block_ahead(next.max(self.0), k);
            self.0 = b.end;
            Ok(b)
        }
    }
    let common = GroupCommon::derive(&params()).unwrap();
    let mut s = GroupSenderContext::derive(
        &params(),
        Id::new(&SWITCH).unwrap(),
        &seed(&SWITCH),
        &cred_of(&SWITCH),
        SequenceNumber::resume(40, 2),
    )
    .unwrap();
    let mut req = [0u8; 128];
    let n = update(&mut req);
    let mut out = [0u8; 256];
    assert_eq!(
        s.protect_request(&common, &req[..n], &mut out, RequestOptions::default())
            .err(),
        Some(Error::SequenceNumberNotReserved)
    );
    let mut store = Store(0);
    let mut seen = [0u64; 5];
    for v in &mut seen {
        s.sequence().reserve(&mut store).unwrap();
        let (_, b) = s
            .protect_request(&common, &req[..n], &mut out, RequestOptions::default())
            .unwrap();
        *v = b.partial_iv.value();
    }
    assert_eq!(seen, [40, 41, 42, 43, 44]);
    assert_eq!(store.0, 46);
}

#[test]
fn echo_recovery_after_restart() {
    let common = GroupCommon::derive(&params()).unwrap();
    let mut s = sender(&SWITCH, 9);
    let mut r = GroupRecipientContext::derive(
        &params(),
        Id::new(&SWITCH).unwrap(),
        &cred_of(&SWITCH),
        ReplayState::awaiting_echo(32),
    )
    .unwrap();
    let (wire, n) = protected(&mut s, &common);
    let mut buf = wire;
    assert!(matches!(
        r.unprotect_request(&common, &mut buf[..n]),
        Err(Error::FreshnessUnknown(_))
    ));
    // A forged request is not even challenged: the signature fails.
    let mut bad = wire;
    bad[n - 1] ^= 1;
    assert_eq!(
        r.unprotect_request(&common, &mut bad[..n]).err(),
        Some(Error::BadSignature)
    );
    let echo = r.replay_mut().echo_challenge(&[9; 8]).unwrap().to_vec();
    let mut req = [0u8; 128];
    let mut w =
        MessageWriter::new(&mut req, MessageType::NonConfirmable, Code::POST, 1, &[1]).unwrap();
    w.option(OptionNumber::URI_PATH, b"BinarySwitchResURI")
        .unwrap();
    w.option(OptionNumber::ECHO, &echo).unwrap();
    let m = w.payload(&[0xf5]).unwrap();
    let mut out = [0u8; 256];
    let (len, _) = s
        .protect_request(&common, &req[..m], &mut out, RequestOptions::default())
        .unwrap();
    assert!(r.unprotect_request(&common, &mut out[..len]).is_ok());
    assert!(matches!(r.replay(), ReplayState::Window(_)));
    // The first request (older) is now a replay.
    let mut buf = wire;
    assert_eq!(
        r.unprotect_request(&common, &mut buf[..n]).err(),
        Some(Error::Replay)
    );
}

#[test]
fn wrong_group_and_wrong_kid() {
    let common = GroupCommon::derive(&params()).unwrap();
    let other = GroupCommon::derive(&GroupParams {
        group_id: IdContext::new(&[0x47, 0x02]).unwrap(),
        ..params()
    })
    .unwrap();
    let mut s = sender(&SWITCH, 3);
    let mut req = [0u8; 128];
    let n = update(&mut req);
    let mut out = [0u8; 256];
    assert_eq!(
        s.protect_request(&other, &req[..n], &mut out, RequestOptions::default())
            .err(),
        Some(Error::UnknownKid)
    );
    let (wire, len) = protected(&mut s, &common);
    let mut buf = wire;
    assert_eq!(
        recipient(&LIGHT)
            .unprotect_request(&common, &mut buf[..len])
            .err(),
        Some(Error::UnknownKid)
    );
    let mut buf = wire;
    assert_eq!(
        recipient(&SWITCH)
            .unprotect_request(&other, &mut buf[..len])
            .err(),
        Some(Error::UnknownKid)
    );
    // A message too short to hold a signature.
    let mut buf = wire;
    assert_eq!(
        recipient(&SWITCH)
            .unprotect_request(&common, &mut buf[..len - SIGNATURE_LEN])
            .err(),
        Some(Error::MissingCiphertext)
    );
}

#[test]
fn response_roundtrip_both_nonces() {
    let common = GroupCommon::derive(&params()).unwrap();
    let mut s = sender(&SWITCH, 3);
    let mut light = sender(&LIGHT, 0);
    let (wire, n) = protected(&mut s, &common);
    let mut buf = wire;
    let binding = recipient(&SWITCH)
        .unprotect_request(&common, &mut buf[..n])
        .unwrap()
        .binding
        .unwrap();
    for piv in [ResponsePiv::RequestNonce, ResponsePiv::Own] {
        let mut resp = [0u8; 64];
        let w = MessageWriter::new(
            &mut resp,
            MessageType::NonConfirmable,
            Code::CHANGED,
            5,
            &[1, 2, 3, 4],
        )
        .unwrap();
        let m = w.payload(b"ok").unwrap();
        let mut out = [0u8; 256];
        let len = light
            .protect_response(&common, &binding, &resp[..m], piv, &mut out)
            .unwrap();
        let mut buf = out;
        let d = recipient(&LIGHT)
            .unprotect_response(&common, &binding, &mut buf[..len])
            .unwrap();
        assert_eq!(d.payload, b"ok");
        let mut bad = out;
        bad[len - 10] ^= 4;
        assert_eq!(
            recipient(&LIGHT)
                .unprotect_response(&common, &binding, &mut bad[..len])
                .err(),
            Some(Error::BadSignature)
        );
    }
}

#[test]
fn debug_shows_no_secrets() {
    extern crate alloc;
    use alloc::format;
    let common = GroupCommon::derive(&params()).unwrap();
    let s = sender(&SWITCH, 0);
    let sekey = signature_encryption_key(&SECRET, None, &gid()).unwrap();
    let text = format!("{common:?} {s:?} {:?} {:?}", recipient(&SWITCH), params());
    let hex = |b: &[u8]| {
        b.iter()
            .map(|x| format!("{x:02x}"))
            .collect::<alloc::string::String>()
    };
    for secret in [&sekey[..], &seed(&SWITCH)[..], &SECRET[..]] {
        assert!(!text.contains(&hex(secret)), "{text}");
    }
    assert!(!text.contains("90, 90, 90"), "{text}"); // seed bytes 0x5a as decimals
    assert!(text.contains("<secret>"));
}

#[test]
fn ccs_builder_matches_aiocoap_layout_and_parses_back() {
    let pk = SigningKey::from_bytes(&seed(b"\x01"))
        .verifying_key()
        .to_bytes();
    let c = super::ccs_of_ed25519(&pk);
    assert_eq!(c, ccs(&pk));
    assert_eq!(super::ccs_ed25519_public_key(&c).unwrap(), pk);
}

/// A verifier with a fixed answer, counting its calls.
struct Fixed(bool, core::cell::Cell<u32>);

impl SignatureVerifier for Fixed {
    fn verify(&self, _: &VerifyingKey, _: &[u8], _: &[u8; SIGNATURE_LEN]) -> bool {
        self.1.set(self.1.get() + 1);
        self.0
    }
}

#[test]
fn a_refusing_verifier_fails_a_valid_message_as_bad_signature() {
    let common = GroupCommon::derive(&params()).unwrap();
    let mut s = sender(&SWITCH, 7);
    let (wire, n) = protected(&mut s, &common);
    let mut r = recipient(&SWITCH);
    let before = *r.replay();
    let refuse = Fixed(false, Default::default());
    let mut buf = wire;
    assert_eq!(
        r.unprotect_request_with(&common, &mut buf[..n], &refuse)
            .err(),
        Some(Error::BadSignature)
    );
    assert_eq!(refuse.1.get(), 1);
    assert_eq!(r.replay(), &before, "the window moved without a signature");
    // The same message with the default (strict) verifier is accepted.
    let mut buf = wire;
    assert!(r.unprotect_request(&common, &mut buf[..n]).is_ok());
}

#[test]
fn an_accepting_verifier_does_not_make_a_forged_tag_pass() {
    let common = GroupCommon::derive(&params()).unwrap();
    let mut s = sender(&SWITCH, 7);
    let (wire, n) = protected(&mut s, &common);
    let accept = Fixed(true, Default::default());
    // One byte changed in the ciphertext (its tag's last byte, just before
    // the encrypted signature): the verifier says yes, the AEAD decides.
    let mut forged = wire;
    forged[n - SIGNATURE_LEN - 1] ^= 0x01;
    let mut r = recipient(&SWITCH);
    let before = *r.replay();
    assert_eq!(
        r.unprotect_request_with(&common, &mut forged[..n], &accept)
            .err(),
        Some(Error::DecryptionFailed)
    );
    assert_eq!(accept.1.get(), 1);
    assert_eq!(r.replay(), &before);
    // The strict verifier refuses the same bytes on the signature.
    let mut forged = wire;
    forged[n - SIGNATURE_LEN - 1] ^= 0x01;
    assert_eq!(
        r.unprotect_request(&common, &mut forged[..n]).err(),
        Some(Error::BadSignature)
    );
    // A replay is refused before any verifier is asked.
    let mut buf = wire;
    r.unprotect_request_with(&common, &mut buf[..n], &accept)
        .unwrap();
    let mut buf = wire;
    assert_eq!(
        r.unprotect_request_with(&common, &mut buf[..n], &accept)
            .err(),
        Some(Error::Replay)
    );
    assert_eq!(accept.1.get(), 2);
}

#[test]
fn responses_take_the_verifier_too() {
    let common = GroupCommon::derive(&params()).unwrap();
    let mut s = sender(&SWITCH, 3);
    let mut light = sender(&LIGHT, 0);
    let (wire, n) = protected(&mut s, &common);
    let mut buf = wire;
    let binding = recipient(&SWITCH)
        .unprotect_request(&common, &mut buf[..n])
        .unwrap()
        .binding
        .unwrap();
    let mut resp = [0u8; 64];
    let w = MessageWriter::new(
        &mut resp,
        MessageType::NonConfirmable,
        Code::CHANGED,
        5,
        &[1, 2, 3, 4],
    )
    .unwrap();
    let m = w.payload(b"ok").unwrap();
    let mut out = [0u8; 256];
    let len = light
        .protect_response(&common, &binding, &resp[..m], ResponsePiv::Own, &mut out)
        .unwrap();
    let refuse = Fixed(false, Default::default());
    let mut buf = out;
    assert_eq!(
        recipient(&LIGHT)
            .unprotect_response_with(&common, &binding, &mut buf[..len], &refuse)
            .err(),
        Some(Error::BadSignature)
    );
    assert_eq!(refuse.1.get(), 1);
    let mut buf = out;
    let d = recipient(&LIGHT)
        .unprotect_response_with(&common, &binding, &mut buf[..len], &StrictVerifier)
        .unwrap();
    assert_eq!(d.payload, b"ok");
}

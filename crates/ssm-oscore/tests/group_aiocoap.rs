//! Group OSCORE group mode against `shared/vectors/group-oscore-aiocoap.json`
//! (aiocoap 0.4.17, draft-ietf-core-oscore-groupcomm-23; not normative).
//!
//! Every group-mode value of the file is reproduced byte for byte: the
//! derived keys, the protected request and both group-mode responses. The
//! module documentation of `ssm_oscore::group` lists the draft -23 vs RFC
//! 10021 differences; none of them touches these bytes, and
//! `draft23_and_rfc10021_agree_on_every_field` shows it field by field.
//! The pairwise-mode case (RFC 10021 §8) is reproduced too: the Pairwise
//! Sender Key, the request and the response; and group-mode processing
//! refuses pairwise messages, as §6 requires.
use ssm_coap::Packet;
use ssm_oscore::group::*;
use ssm_oscore::kdf::Prk;
use ssm_oscore::pairwise::*;
use ssm_oscore::*;
use ssm_testkit::{hex, load};

struct Vectors {
    v: serde_json::Value,
    secret: Vec<u8>,
    salt: Vec<u8>,
    gid: IdContext,
    gm_cred: Vec<u8>,
}

impl Vectors {
    fn load() -> Self {
        let v = load("group-oscore-aiocoap.json");
        let g = &v["group"];
        assert_eq!(g["alg_aead"], "AES-CCM-16-64-128 (10)");
        assert_eq!(g["alg_group_enc"], "AES-CCM-16-64-128 (10)");
        assert_eq!(g["alg_signature"], "EdDSA/Ed25519 (-8)");
        Vectors {
            secret: hex(&g["master_secret"]),
            salt: hex(&g["master_salt"]),
            gid: IdContext::new(&hex(&g["group_id"])).unwrap(),
            gm_cred: hex(&g["gm_cred"]),
            v,
        }
    }

    /// aiocoap's groups set all four algorithms: AEAD and Pairwise Key
    /// Agreement enter the external_aad even in group mode (§3.4).
    fn params(&self) -> GroupParams<'_> {
        GroupParams {
            master_secret: &self.secret,
            master_salt: Some(&self.salt),
            group_id: self.gid,
            gm_cred: &self.gm_cred,
            alg_aead: Some(ALG_AES_CCM_16_64_128 as i32),
            alg_pairwise_key_agreement: Some(ALG_ECDH_SS_HKDF_256),
        }
    }

    fn member(&self, sid: &str) -> &serde_json::Value {
        &self.v["members"][sid]
    }

    fn sender(&self, sid: &str, ssn: u64) -> GroupSenderContext {
        let m = self.member(sid);
        let seed: [u8; 32] = hex(&m["ed25519_private_seed"]).try_into().unwrap();
        GroupSenderContext::derive(
            &self.params(),
            Id::new(&hex_str(sid)).unwrap(),
            &seed,
            &hex(&m["auth_cred_ccs"]),
            SequenceNumber::volatile(ssn),
        )
        .unwrap()
    }

    fn recipient(&self, sid: &str) -> GroupRecipientContext {
        GroupRecipientContext::derive(
            &self.params(),
            Id::new(&hex_str(sid)).unwrap(),
            &hex(&self.member(sid)["auth_cred_ccs"]),
            ReplayState::Window(ReplayWindow::new(32)),
        )
        .unwrap()
    }

    fn request(&self) -> &serde_json::Value {
        &self.v["cases"][0]["request"]
    }
}

fn hex_str(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

#[test]
fn derived_keys() {
    let t = Vectors::load();
    let prk = Prk::extract(&t.secret, Some(&t.salt)).unwrap();
    // §2.3: with AES-CCM-16-64-128 as Group Encryption Algorithm, info's
    // alg_aead is 10 and the Common IV 13 bytes, exactly as in RFC 8613.
    assert_eq!(
        &prk.common_iv(Some(&t.gid))[..],
        &hex(&t.v["group"]["common_iv"])[..]
    );
    for sid in ["25", "52", "53"] {
        let m = t.member(sid);
        let id = Id::new(&hex_str(sid)).unwrap();
        assert_eq!(
            &prk.key(&id, Some(&t.gid))[..],
            &hex(&m["sender_key"])[..],
            "sender key of {sid}"
        );
        // The credential's key is the seed's public key.
        assert_eq!(
            &ccs_ed25519_public_key(&hex(&m["auth_cred_ccs"])).unwrap()[..],
            &hex(&m["ed25519_public"])[..],
            "public key of {sid}"
        );
        // And a sender context accepts it with that seed.
        let _ = t.sender(sid, 0);
    }
    // §2.1.9.
    let sekey = signature_encryption_key(&t.secret, Some(&t.salt), &t.gid).unwrap();
    assert_eq!(
        &sekey[..],
        &hex(&t.v["group"]["signature_encryption_key"])[..]
    );
}

#[test]
fn group_request_byte_for_byte_and_verified_by_both_servers() {
    let t = Vectors::load();
    let common = GroupCommon::derive(&t.params()).unwrap();
    let r = t.request();
    assert_eq!(r["ssn"], 20);
    let mut client = t.sender("25", 20);
    let mut out = [0u8; 512];
    let (n, binding) = client
        .protect_request(
            &common,
            &hex(&r["unprotected"]),
            &mut out,
            RequestOptions::default(),
        )
        .unwrap();
    let want = hex(&r["protected"]);
    assert_eq!(hex::encode(&out[..n]), hex::encode(&want));
    let p = Packet::new_checked(&out[..n]).unwrap();
    assert_eq!(
        p.options()
            .get(ssm_coap::OptionNumber::OSCORE)
            .unwrap()
            .value,
        &hex(&r["oscore_option"])[..]
    );
    assert_eq!(
        p.payload().len(),
        r["payload_len"].as_u64().unwrap() as usize
    );
    assert_eq!(binding.partial_iv.value(), 20);

    for srv in ["52", "53"] {
        let mut from_client = t.recipient("25");
        let mut buf = want.clone();
        let d = from_client.unprotect_request(&common, &mut buf).unwrap();
        assert_eq!(d.payload, b"twenty-byte-payload!", "server {srv}");
        assert_eq!(d.code, ssm_coap::Code::POST);
        assert_eq!(d.binding.unwrap().kid_context, Some(t.gid));
        // Replayed: rejected, window unchanged.
        let mut buf = want.clone();
        assert_eq!(
            from_client.unprotect_request(&common, &mut buf).err(),
            Some(Error::Replay)
        );
    }
}

#[test]
fn group_responses_byte_for_byte() {
    let t = Vectors::load();
    let common = GroupCommon::derive(&t.params()).unwrap();
    let req = t.request();
    let mut client = t.sender("25", 20);
    let mut out = [0u8; 512];
    let (_, binding) = client
        .protect_request(
            &common,
            &hex(&req["unprotected"]),
            &mut out,
            RequestOptions::default(),
        )
        .unwrap();
    let responses = t.v["cases"][0]["responses"].as_array().unwrap();
    let group: Vec<_> = responses
        .iter()
        .filter(|r| r["mode"].as_str().unwrap().starts_with("group"))
        .collect();
    assert_eq!(group.len(), 2);
    for r in group {
        let srv = r["server"].as_str().unwrap();
        let want = hex(&r["protected"]);
        // Rebuild the plain response from the vector's wire header (type,
        // MID, token) and its unprotected code and payload.
        let w = Packet::new_checked(&want[..]).unwrap();
        assert_eq!(r["unprotected_code"], "2.04");
        let mut plain = ssm_coap::Message::new(
            w.msg_type(),
            ssm_coap::Code::CHANGED,
            w.message_id(),
            ssm_coap::Token::new(w.token()).unwrap(),
        );
        plain.payload = hex(&r["unprotected_payload"]);
        let mut server = t.sender(srv, r["server_ssn_used"].as_u64().unwrap());
        let mut out = [0u8; 512];
        let n = server
            .protect_response(
                &common,
                &binding,
                &plain.to_vec(),
                ResponsePiv::Own,
                &mut out,
            )
            .unwrap();
        assert_eq!(hex::encode(&out[..n]), hex::encode(&want), "server {srv}");
        // The client verifies it with the server's credential.
        let from_server = t.recipient(srv);
        let mut buf = want.clone();
        let d = from_server
            .unprotect_response(&common, &binding, &mut buf)
            .unwrap();
        assert_eq!(d.payload, &hex(&r["unprotected_payload"])[..]);
        // Another member's Recipient Context does not take it.
        let other = t.recipient(if srv == "52" { "53" } else { "52" });
        let mut buf = want.clone();
        assert_eq!(
            other.unprotect_response(&common, &binding, &mut buf).err(),
            Some(Error::UnknownKid)
        );
    }
}

/// The fields in which draft -23 (aiocoap) and RFC 10021 could differ,
/// each recomputed from the RFC text and compared with what aiocoap's
/// message carries. A difference would show here as a named field.
#[test]
fn draft23_and_rfc10021_agree_on_every_field() {
    let t = Vectors::load();
    let common = GroupCommon::derive(&t.params()).unwrap();
    let req = t.request();
    let wire = hex(&req["protected"]);
    let p = Packet::new_checked(&wire[..]).unwrap();
    let opt = p
        .options()
        .get(ssm_coap::OptionNumber::OSCORE)
        .unwrap()
        .value;
    // §4.1: Group Flag 0x20, h and k set, 1-byte Partial IV, s = 2, Gid, kid.
    assert_eq!(
        opt,
        &[GROUP_FLAG | 0x10 | 0x08 | 1, 20, 2, 0xdd, 0x11, 0x25]
    );
    // §4.1: payload = AEAD ciphertext (plaintext + 8) ‖ 64-byte encrypted
    // signature.
    let plain = hex(&req["unprotected"]);
    let pp = Packet::new_checked(&plain[..]).unwrap();
    let mut inner = ssm_coap::Message::new(
        pp.msg_type(),
        pp.code(),
        pp.message_id(),
        ssm_coap::Token::new(pp.token()).unwrap(),
    );
    for o in pp.options().iter() {
        inner.options.push((o.number, o.value.to_vec()));
    }
    let ct_len = p.payload().len() - SIGNATURE_LEN;
    // code + Uri-Path "light" (6) + Content-Format 50 (2) + marker + payload.
    assert_eq!(ct_len, 1 + 6 + 2 + 1 + pp.payload().len() + TAG_LEN);
    let (ct, enc_sig) = p.payload().split_at(ct_len);

    // §3.4 external_aad, written out from the RFC's CDDL.
    let cred25 = hex(&t.member("25")["auth_cred_ccs"]);
    let mut want = vec![
        0x89, 0x01, 0x84, 0x0a, 0x0a, 0x27, 0x38, 0x1a, 0x41, 0x25, 0x41, 20,
    ];
    want.push(0x40); // options
    want.extend([0x42, 0xdd, 0x11]); // request_kid_context
    want.push(0x40 | opt.len() as u8);
    want.extend(opt);
    want.extend([0x58, cred25.len() as u8]);
    want.extend(&cred25);
    want.push(0x40 | t.gm_cred.len() as u8);
    want.extend(&t.gm_cred);
    let mut aad = [0u8; MAX_AAD_ARRAY_LEN];
    let n = aad_array(
        &mut aad,
        &common,
        &Id::new(&[0x25]).unwrap(),
        &PartialIv::from_u64(20).unwrap(),
        t.gid.as_bytes(),
        opt,
        &cred25,
    )
    .unwrap();
    assert_eq!(hex::encode(&aad[..n]), hex::encode(&want), "aad_array");

    // §4.2 keystream, §3.1 countersignature over
    // ["CounterSignature0", h'', h'', external_aad, ciphertext].
    let sekey = signature_encryption_key(&t.secret, Some(&t.salt), &t.gid).unwrap();
    let ks = keystream(
        &sekey,
        &PartialIv::from_u64(20).unwrap(),
        &Id::new(&[0x25]).unwrap(),
        &t.gid,
        true,
    );
    let sig: Vec<u8> = enc_sig.iter().zip(ks.iter()).map(|(a, b)| a ^ b).collect();
    let mut tbs = vec![0x85, 0x71];
    tbs.extend(b"CounterSignature0");
    tbs.extend([0x40, 0x40]);
    tbs.extend([0x58, n as u8]);
    tbs.extend(&aad[..n]);
    assert!((24..256).contains(&ct.len()));
    tbs.extend([0x58, ct.len() as u8]);
    tbs.extend(ct);
    let pk: [u8; 32] = hex(&t.member("25")["ed25519_public"]).try_into().unwrap();
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&pk).unwrap();
    let sig = ed25519_dalek::Signature::from_slice(&sig).unwrap();
    assert!(
        vk.verify_strict(&tbs, &sig).is_ok(),
        "signature over the Countersign_structure with sign_protected = h''"
    );
    // Without the sign_protected element (the other reading of RFC 9338
    // §3.3 for an abbreviated countersignature) aiocoap's signature does
    // not verify: this implementation follows aiocoap's structure.
    let mut short = vec![0x84, 0x71];
    short.extend(b"CounterSignature0");
    short.push(0x40);
    short.extend(&tbs[2 + 17 + 2..]);
    assert!(vk.verify_strict(&short, &sig).is_err());
    // And the keystream's type flag: the same bytes with "false" (a
    // response) do not give a valid signature.
    let ks_resp = keystream(
        &sekey,
        &PartialIv::from_u64(20).unwrap(),
        &Id::new(&[0x25]).unwrap(),
        &t.gid,
        false,
    );
    let wrong: Vec<u8> = enc_sig
        .iter()
        .zip(ks_resp.iter())
        .map(|(a, b)| a ^ b)
        .collect();
    let wrong = ed25519_dalek::Signature::from_slice(&wrong).unwrap();
    assert!(vk.verify_strict(&tbs, &wrong).is_err());
}

#[test]
fn negative_checks_and_pairwise_refused() {
    let t = Vectors::load();
    let common = GroupCommon::derive(&t.params()).unwrap();
    let neg = &t.v["negative_checks"];
    assert!(neg["tampered_signature"]
        .as_str()
        .unwrap()
        .starts_with("rejected"));
    // Flipping a bit of the encrypted signature (as the vector's generator
    // did): a bad signature, and the window has not moved.
    let mut bad = hex(&t.request()["protected"]);
    *bad.last_mut().unwrap() ^= 1;
    let mut r = t.recipient("25");
    assert_eq!(
        r.unprotect_request(&common, &mut bad).err(),
        Some(Error::BadSignature)
    );
    assert_eq!(r.replay(), &ReplayState::Window(ReplayWindow::new(32)));
    // Then the genuine request is still accepted.
    let mut good = hex(&t.request()["protected"]);
    assert!(r.unprotect_request(&common, &mut good).is_ok());

    // The pairwise-mode request (Group Flag 0) is not for group mode
    // (§6), and the RFC 8613 path does not know the group either.
    let pw = &t.v["cases"][1]["request"];
    assert_eq!(hex(&pw["oscore_option"])[0] & GROUP_FLAG, 0);
    let mut buf = hex(&pw["protected"]);
    assert_eq!(
        t.recipient("25").unprotect_request(&common, &mut buf).err(),
        Some(Error::NotGroupMode)
    );
    // A group-mode request given to an RFC 8613 context: the Group Flag is
    // a reserved bit there.
    let mut plain_ctx = RecipientContext::derive(
        &t.secret,
        Some(&t.salt),
        Some(t.gid),
        Id::new(&[0x25]).unwrap(),
        ReplayState::Window(ReplayWindow::new(32)),
    )
    .unwrap();
    let mut buf = hex(&t.request()["protected"]);
    assert_eq!(
        plain_ctx.unprotect_request(&mut buf).err(),
        Some(Error::BadOscoreOption)
    );
}

/// Rewrites the header of a plain message: the generator protected
/// `unprotected` and then set the wire's type, Message ID and token.
fn with_header(plain: &[u8], wire: &[u8]) -> Vec<u8> {
    let w = Packet::new_checked(wire).unwrap();
    let p = Packet::new_checked(plain).unwrap();
    let mut m = ssm_coap::Message::new(
        w.msg_type(),
        p.code(),
        w.message_id(),
        ssm_coap::Token::new(w.token()).unwrap(),
    );
    for o in p.options().iter() {
        m.options.push((o.number, o.value.to_vec()));
    }
    m.payload = p.payload().to_vec();
    m.to_vec()
}

#[test]
fn pairwise_request_and_response_byte_for_byte() {
    let t = Vectors::load();
    let common = GroupCommon::derive(&t.params()).unwrap();
    let case = &t.v["cases"][1];
    assert_eq!(case["id"], "pairwise-mode-request-and-response");
    let req = &case["request"];
    let ssn = req["ssn"].as_u64().unwrap();
    let mut client = t.sender("25", ssn);
    let to_52 = t.recipient("52");
    // §2.5.1, §2.5.2.1.
    let (sk, _) = pairwise_keys(&t.params(), &client, &to_52).unwrap();
    assert_eq!(&sk[..], &hex(&case["client_pairwise_sender_key_to_52"])[..]);
    let keys = PairwiseKeys::derive(&t.params(), &client, &to_52).unwrap();
    let want = hex(&req["protected"]);
    let plain = with_header(&hex(&req["unprotected"]), &want);
    let mut out = [0u8; 256];
    let (n, binding) = client
        .protect_request_pairwise(&common, &keys, &plain, &mut out)
        .unwrap();
    assert_eq!(hex::encode(&out[..n]), hex::encode(&want));

    // Server 52: its keys with 25 are the mirror image.
    let mut server = t.sender("52", 0);
    let from_25 = t.recipient("25");
    let server_keys = PairwiseKeys::derive(&t.params(), &server, &from_25).unwrap();
    let (s_sk, s_rk) = pairwise_keys(&t.params(), &server, &from_25).unwrap();
    let (c_sk, c_rk) = pairwise_keys(&t.params(), &client, &to_52).unwrap();
    assert_eq!((&s_sk[..], &s_rk[..]), (&c_rk[..], &c_sk[..]));
    let mut r = from_25;
    let mut buf = want.clone();
    let d = r
        .unprotect_request_pairwise(&common, &server_keys, &mut buf)
        .unwrap();
    assert_eq!(d.payload, b"pairwise-hello");
    let srv_binding = d.binding.unwrap();
    // Replay refused.
    let mut buf = want.clone();
    assert_eq!(
        r.unprotect_request_pairwise(&common, &server_keys, &mut buf)
            .err(),
        Some(Error::Replay)
    );
    // Not group mode: the group-mode path refuses it (§6).
    let mut buf = want.clone();
    assert_eq!(
        t.recipient("25").unprotect_request(&common, &mut buf).err(),
        Some(Error::NotGroupMode)
    );

    // The response: request nonce, kid 52.
    let resp = &case["response"];
    let want = hex(&resp["protected"]);
    let w = Packet::new_checked(&want[..]).unwrap();
    let mut plain = ssm_coap::Message::new(
        w.msg_type(),
        ssm_coap::Code::CHANGED,
        w.message_id(),
        ssm_coap::Token::new(w.token()).unwrap(),
    );
    plain.payload = b"pw-ok".to_vec();
    let mut out = [0u8; 256];
    let n = server
        .protect_response_pairwise(
            &common,
            &server_keys,
            &srv_binding,
            &plain.to_vec(),
            ResponsePiv::RequestNonce,
            &mut out,
        )
        .unwrap();
    assert_eq!(hex::encode(&out[..n]), hex::encode(&want));
    let mut buf = want.clone();
    let d = to_52
        .unprotect_response_pairwise(&common, &keys, &binding, &mut buf)
        .unwrap();
    assert_eq!(d.payload, b"pw-ok");
    // Another member's keys do not open it.
    let to_53 = t.recipient("53");
    let keys_53 = PairwiseKeys::derive(&t.params(), &client, &to_53).unwrap();
    let mut buf = want.clone();
    assert!(to_52
        .unprotect_response_pairwise(&common, &keys_53, &binding, &mut buf)
        .is_err());
}

//! Group OSCORE group mode (RFC 10021) per message, for the SSM UPDATE
//! `POST /BinarySwitchResURI {"value": true}` of `benches/oscore.rs`:
//! protect (sign) and unprotect (verify) against the raw Ed25519 sign and
//! verify of the very bytes group mode signs (the `Countersign_structure`),
//! and against plain OCF SSM (RFC 8613) protect and unprotect.
//!
//! Criterion measures each operation; the closing block measures the
//! floors and the group operations again, interleaved in the same run, and
//! prints the ratios (goal: unprotect ≤ 1.2× the verify floor) and the
//! bytes group mode adds on the wire.
use criterion::{black_box, criterion_group, Criterion};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use ssm_coap::{Code, Message, MessageType, OptionNumber, Packet, Token};
use ssm_oscore::group::*;
use ssm_oscore::*;
use std::time::Instant;

const SECRET: [u8; 32] = [0x42; 32];
const KID: [u8; 7] = [0x02, 0x9e, 0x1b, 0x4b, 0x90, 0xf1, 0xcd];
/// A 4-byte Group ID (SSM itself has no ID Context).
const GID: [u8; 4] = [0x5a, 0x01, 0x00, 0x07];
const SEED: [u8; 32] = [0x17; 32];
const GM_SEED: [u8; 32] = [0x99; 32];

fn update() -> Vec<u8> {
    let mut m = Message::new(
        MessageType::NonConfirmable,
        Code::POST,
        0x1234,
        Token::new(&[1, 2, 3, 4, 5, 6, 7, 8]).unwrap(),
    );
    m.set_uri_path("/BinarySwitchResURI");
    m.add_option_uint(OptionNumber::CONTENT_FORMAT, 10000);
    m.add_option_uint(OptionNumber::ACCEPT, 10000);
    m.add_option_uint(OptionNumber::OCF_ACCEPT_CONTENT_FORMAT_VERSION, 2048);
    m.add_option_uint(OptionNumber::OCF_CONTENT_FORMAT_VERSION, 2048);
    m.payload = vec![0xa1, 0x65, b'v', b'a', b'l', b'u', b'e', 0xf5];
    m.to_vec()
}

/// A CWT Claims Set with the Ed25519 key of `seed`, as aiocoap builds it.
fn ccs(seed: &[u8; 32]) -> Vec<u8> {
    let mut c = vec![
        0xa1, 0x08, 0xa1, 0x01, 0xa4, 0x01, 0x01, 0x03, 0x27, 0x20, 0x06, 0x21, 0x58, 0x20,
    ];
    c.extend_from_slice(&SigningKey::from_bytes(seed).verifying_key().to_bytes());
    c
}

struct Setup {
    cred: Vec<u8>,
    gm_cred: Vec<u8>,
}

impl Setup {
    fn new() -> Self {
        Setup {
            cred: ccs(&SEED),
            gm_cred: ccs(&GM_SEED),
        }
    }
    fn params(&self) -> GroupParams<'_> {
        GroupParams {
            master_secret: &SECRET,
            master_salt: None,
            group_id: IdContext::new(&GID).unwrap(),
            gm_cred: &self.gm_cred,
            alg_aead: None,
            alg_pairwise_key_agreement: None,
        }
    }
    fn sender(&self, seq: u64) -> GroupSenderContext {
        GroupSenderContext::derive(
            &self.params(),
            Id::new(&KID).unwrap(),
            &SEED,
            &self.cred,
            SequenceNumber::volatile(seq),
        )
        .unwrap()
    }
    fn recipient(&self) -> GroupRecipientContext {
        GroupRecipientContext::derive(
            &self.params(),
            Id::new(&KID).unwrap(),
            &self.cred,
            ReplayState::Window(ReplayWindow::new(32)),
        )
        .unwrap()
    }
}

fn ssm_contexts() -> (SenderContext, RecipientContext) {
    let id = Id::new(&KID).unwrap();
    let s =
        SenderContext::derive(&SECRET, None, None, id, SequenceNumber::volatile(1 << 16)).unwrap();
    let r = RecipientContext::derive(
        &SECRET,
        None,
        None,
        id,
        ReplayState::Window(ReplayWindow::new(32)),
    )
    .unwrap();
    (s, r)
}

/// The bytes group mode signs for a protected UPDATE (RFC 10021 §3.1:
/// `["CounterSignature0", h'', h'', external_aad, ciphertext]`), rebuilt
/// from the datagram; checked below against the datagram's own signature.
fn countersign_structure(s: &Setup, common: &GroupCommon, wire: &[u8]) -> Vec<u8> {
    let p = Packet::new_checked(wire).unwrap();
    let opt = p.options().get(OptionNumber::OSCORE).unwrap().value;
    let o = {
        let mut v = opt.to_vec();
        v[0] &= !GROUP_FLAG;
        OscoreOption::parse(&v).unwrap()
    };
    let mut aad = [0u8; MAX_AAD_ARRAY_LEN];
    let n = aad_array(
        &mut aad,
        common,
        &o.kid.unwrap(),
        &o.partial_iv.unwrap(),
        &GID,
        opt,
        &s.cred,
    )
    .unwrap();
    let ct = &p.payload()[..p.payload().len() - SIGNATURE_LEN];
    let mut tbs = vec![0x85, 0x71];
    tbs.extend(b"CounterSignature0");
    tbs.extend([0x40, 0x40]);
    for part in [&aad[..n], ct] {
        assert!((24..256).contains(&part.len()));
        tbs.extend([0x58, part.len() as u8]);
        tbs.extend(part);
    }
    tbs
}

struct Floors {
    key: SigningKey,
    vk: VerifyingKey,
    tbs: Vec<u8>,
    sig: Signature,
}

impl Floors {
    fn new(s: &Setup, common: &GroupCommon, wire: &[u8]) -> Self {
        let key = SigningKey::from_bytes(&SEED);
        let tbs = countersign_structure(s, common, wire);
        let sig = key.sign(&tbs);
        // The datagram's encrypted signature is this signature: the floor
        // signs and verifies exactly what group mode does.
        let p = Packet::new_checked(wire).unwrap();
        let o = {
            let v = p.options().get(OptionNumber::OSCORE).unwrap().value;
            let mut v = v.to_vec();
            v[0] &= !GROUP_FLAG;
            OscoreOption::parse(&v).unwrap()
        };
        let sekey =
            signature_encryption_key(&SECRET, None, &IdContext::new(&GID).unwrap()).unwrap();
        let ks = keystream(
            &sekey,
            &o.partial_iv.unwrap(),
            &o.kid.unwrap(),
            &IdContext::new(&GID).unwrap(),
            true,
        );
        let enc = &p.payload()[p.payload().len() - SIGNATURE_LEN..];
        let dec: Vec<u8> = enc.iter().zip(ks.iter()).map(|(a, b)| a ^ b).collect();
        assert_eq!(&dec[..], &sig.to_bytes()[..], "floor signs other bytes");
        Floors {
            vk: key.verifying_key(),
            key,
            tbs,
            sig,
        }
    }
    fn sign(&self) -> Signature {
        self.key.sign(&self.tbs)
    }
    fn verify(&self) {
        self.vk.verify_strict(&self.tbs, &self.sig).unwrap()
    }
}

fn benches(c: &mut Criterion) {
    let req = update();
    let s = Setup::new();
    let common = GroupCommon::derive(&s.params()).unwrap();
    let mut out = [0u8; 512];
    let mut sender = s.sender(1 << 16);
    let (n, _) = sender
        .protect_request(&common, &req, &mut out, RequestOptions::default())
        .unwrap();
    let wire = out[..n].to_vec();
    let floors = Floors::new(&s, &common, &wire);
    let recipient = s.recipient();

    let mut g = c.benchmark_group("group_update");
    g.bench_function("ed25519_sign_floor", |b| {
        b.iter(|| black_box(floors.sign()))
    });
    g.bench_function("ed25519_verify_floor", |b| b.iter(|| floors.verify()));
    g.bench_function("group_protect", |b| {
        b.iter(|| {
            black_box(
                sender
                    .protect_request(
                        &common,
                        black_box(&req),
                        &mut out,
                        RequestOptions::default(),
                    )
                    .unwrap(),
            )
        })
    });
    let mut buf = wire.clone();
    g.bench_function("group_unprotect", |b| {
        b.iter(|| {
            // A fresh window each time: measures verification, not rejection.
            let mut r = recipient.clone();
            buf.copy_from_slice(&wire);
            black_box(
                r.unprotect_request(&common, &mut buf)
                    .unwrap()
                    .payload
                    .len(),
            )
        })
    });
    let (mut ssm_s, ssm_r) = ssm_contexts();
    g.bench_function("ssm_protect", |b| {
        b.iter(|| black_box(ssm_s.protect_request(black_box(&req), &mut out).unwrap()))
    });
    let (m, _) = ssm_s.protect_request(&req, &mut out).unwrap();
    let ssm_wire = out[..m].to_vec();
    let mut buf = ssm_wire.clone();
    g.bench_function("ssm_unprotect", |b| {
        b.iter(|| {
            let mut r = ssm_r.clone();
            buf.copy_from_slice(&ssm_wire);
            black_box(r.unprotect_request(&mut buf).unwrap().payload.len())
        })
    });
    g.finish();
}

/// Minimum over rounds of the mean time per iteration, `f` and `g`
/// interleaved.
fn interleaved(rounds: u32, n: u32, mut f: impl FnMut(), mut g: impl FnMut()) -> (f64, f64) {
    let (mut bf, mut bg) = (f64::MAX, f64::MAX);
    for _ in 0..rounds {
        let t = Instant::now();
        for _ in 0..n {
            f();
        }
        bf = bf.min(t.elapsed().as_nanos() as f64 / f64::from(n));
        let t = Instant::now();
        for _ in 0..n {
            g();
        }
        bg = bg.min(t.elapsed().as_nanos() as f64 / f64::from(n));
    }
    (bf, bg)
}

fn ratio() {
    let req = update();
    let s = Setup::new();
    let common = GroupCommon::derive(&s.params()).unwrap();
    let mut out = [0u8; 512];
    let mut sender = s.sender(1 << 16);
    let (n, _) = sender
        .protect_request(&common, &req, &mut out, RequestOptions::default())
        .unwrap();
    let wire = out[..n].to_vec();
    let floors = Floors::new(&s, &common, &wire);
    let recipient = s.recipient();
    const ROUNDS: u32 = 7;
    const N: u32 = 2_000;

    let mut buf = wire.clone();
    let (verify, unprotect) = interleaved(
        ROUNDS,
        N,
        || floors.verify(),
        || {
            let mut r = recipient.clone();
            buf.copy_from_slice(&wire);
            black_box(
                r.unprotect_request(&common, &mut buf)
                    .unwrap()
                    .payload
                    .len(),
            );
        },
    );
    let mut o = [0u8; 512];
    let (sign, protect) = interleaved(
        ROUNDS,
        N,
        || {
            black_box(floors.sign());
        },
        || {
            black_box(
                sender
                    .protect_request(&common, &req, &mut o, RequestOptions::default())
                    .unwrap(),
            );
        },
    );
    let (mut ssm_s, ssm_r) = ssm_contexts();
    let (m, _) = ssm_s.protect_request(&req, &mut o).unwrap();
    let ssm_wire = o[..m].to_vec();
    let mut sbuf = ssm_wire.clone();
    let mut o2 = [0u8; 512];
    let (ssm_protect, ssm_unprotect) = interleaved(
        ROUNDS,
        N * 20,
        || {
            black_box(ssm_s.protect_request(&req, &mut o2).unwrap());
        },
        || {
            let mut r = ssm_r.clone();
            sbuf.copy_from_slice(&ssm_wire);
            black_box(r.unprotect_request(&mut sbuf).unwrap().payload.len());
        },
    );
    println!(
        "\nSSM UPDATE in group mode ({} B datagram; OCF SSM: {} B, +{} B: 64 B signature, {} B kid context, {} B longer option header):\n  \
         signed Countersign_structure {} B\n  \
         unprotect {:.0} ns vs Ed25519 verify floor {:.0} ns: {:.3}x (goal <= 1.2x); OCF SSM unprotect {:.0} ns\n  \
         protect   {:.0} ns vs Ed25519 sign floor   {:.0} ns: {:.3}x; OCF SSM protect {:.0} ns",
        wire.len(),
        ssm_wire.len(),
        wire.len() - ssm_wire.len(),
        1 + GID.len(),
        wire.len() - ssm_wire.len() - SIGNATURE_LEN - (1 + GID.len()),
        floors.tbs.len(),
        unprotect,
        verify,
        unprotect / verify,
        ssm_unprotect,
        protect,
        sign,
        protect / sign,
        ssm_protect,
    );
}

criterion_group!(group, benches);

fn main() {
    group();
    Criterion::default().configure_from_args().final_summary();
    ratio();
}

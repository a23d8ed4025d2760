//! The full SSM receive path of one light, sans-IO, against the AES-CCM
//! floor in the same run: parse + OSCORE option + kid lookup + unprotect
//! (AES-CCM open) + replay window + floor record + decoding the inner
//! request + CBOR decode + ACL check + apply, for the UPDATE a wall switch
//! sends (`POST /BinarySwitchResURI {"value": true}`).
//!
//! Not included (runtime, `ssm-runtime`): the `recv_from` syscall, the
//! fsync of the replay floor before applying, the event and notifications.
//!
//! The closing block measures the floor and the receive path again,
//! interleaved, and prints their ratio (goal: ≤ 4×).
use criterion::{black_box, criterion_group, Criterion};
use ssm_coap::{Packet, Token};
use ssm_ocf::cred::CredType;
use ssm_ocf::device::{Device, DeviceInfo};
use ssm_ocf::provision::{default_aces, generate_group, provisioned_state};
use ssm_ocf::ssm::{update_request, SsmReceiver};
use ssm_ocf::switch::{BinarySwitch, HREF};
use ssm_ocf::{cbor, Uuid};
use ssm_oscore::crypto::{aad, nonce, Aead};
use ssm_oscore::{Id, PartialIv, SequenceNumber, NONCE_LEN, TAG_LEN};
use std::time::{Duration, Instant};

/// A deterministic "random" source: the bench needs no entropy.
fn rng() -> impl FnMut(&mut [u8]) {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    move |b: &mut [u8]| {
        for v in b.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *v = x as u8;
        }
    }
}

/// One light (device + receiver) and `n` protected UPDATEs from its switch
/// with increasing sequence numbers, alternating ON and OFF.
struct Setup {
    light_creds: Vec<ssm_ocf::cred::OscoreCred>,
    device: Device,
    datagrams: Vec<Vec<u8>>,
    plaintext_len: usize,
    inner_len: usize,
}

fn setup(n: usize) -> Setup {
    let mut r = rng();
    let (lights, switches) = generate_group(1, 1, Uuid::from_u128(1), &mut r);
    let l = &lights[0];
    let mut device = Device::new(DeviceInfo::light("bench light", l.uuid));
    device.add_resource(HREF, Box::new(BinarySwitch::default()), true);
    device.set_security(provisioned_state(
        l.uuid,
        Uuid::from_u128(1),
        l.creds.clone(),
        default_aces(&l.creds, &[HREF], true),
    ));
    let light_creds = l.creds.oscore_creds().unwrap();
    let sw = switches[0].creds.oscore_creds().unwrap();
    let cred = sw
        .iter()
        .find(|c| c.credtype == CredType::SsmClient)
        .unwrap();
    // Start at 2^16 so every Partial IV has 3 bytes, like a switch in use.
    let mut s = ssm_ocf::ssm::sender_context(cred, SequenceNumber::volatile(1 << 16)).unwrap();
    let mut datagrams = Vec::with_capacity(n);
    let mut inner_len = 0;
    for i in 0..n {
        let v = ciborium::Value::Bool(i % 2 == 0);
        let req = update_request(
            HREF,
            &cbor::map([("value", v)]),
            i as u16,
            Token::new(&[1, 2, 3, 4, 5, 6, 7, 8]).unwrap(),
            true,
        );
        let bytes = req.to_vec();
        inner_len = bytes.len();
        let mut out = vec![0u8; bytes.len() + 64];
        let (len, _) = s.protect_request(&bytes, &mut out).unwrap();
        out.truncate(len);
        datagrams.push(out);
    }
    let plaintext_len = Packet::new_checked(&datagrams[0]).unwrap().payload().len() - TAG_LEN;
    Setup {
        light_creds,
        device,
        datagrams,
        plaintext_len,
        inner_len,
    }
}

/// Receives and applies datagrams in order; a fresh receiver (new replay
/// window) is built, untimed, whenever the pool wraps.
struct Light {
    s: Setup,
    rx: SsmReceiver,
    next: usize,
    buf: Vec<u8>,
}

impl Light {
    fn new(pool: usize) -> Self {
        let s = setup(pool);
        let rx = SsmReceiver::new(&s.light_creds, Default::default()).unwrap();
        Light {
            rx,
            next: 0,
            buf: Vec::with_capacity(256),
            s,
        }
    }
    /// Times `iters` receive+apply steps.
    fn run(&mut self, iters: u64) -> Duration {
        let mut total = Duration::ZERO;
        let mut left = iters;
        while left > 0 {
            if self.next == self.s.datagrams.len() {
                self.rx = SsmReceiver::new(&self.s.light_creds, Default::default()).unwrap();
                self.next = 0;
            }
            let chunk = left.min((self.s.datagrams.len() - self.next) as u64) as usize;
            let t = Instant::now();
            for d in &self.s.datagrams[self.next..self.next + chunk] {
                self.buf.clear();
                self.buf.extend_from_slice(d);
                let v = self.rx.receive(&mut self.buf).unwrap();
                if let Some(floor) = v.persist {
                    // The floor record (the runtime's encoding and write of
                    // the floors file are outside this path, as before).
                    self.rx.floor_persisted(&v.accepted.kid, floor);
                }
                black_box(self.s.device.apply_ssm(&v.accepted).unwrap());
            }
            total += t.elapsed();
            self.next += chunk;
            left -= chunk as u64;
        }
        total
    }
}

struct Floor {
    aead: Aead,
    nonce: [u8; NONCE_LEN],
    aad: ([u8; 32], usize),
    pt: Vec<u8>,
}

impl Floor {
    fn new(pt_len: usize) -> Self {
        let id = Id::new(&[0x02, 0x9e, 0x1b, 0x4b, 0x90, 0xf1, 0xcd]).unwrap();
        let piv = PartialIv::from_u64(1 << 16).unwrap();
        Floor {
            aead: Aead::new(&[7u8; 16]),
            nonce: nonce(&id, &piv, &[3u8; 13]),
            aad: aad(&id, &piv),
            pt: vec![0x55; pt_len],
        }
    }
    fn seal_open(&mut self) {
        let aad = &self.aad.0[..self.aad.1];
        let tag = self.aead.seal(&self.nonce, aad, &mut self.pt).unwrap();
        self.aead
            .open(&self.nonce, aad, &mut self.pt, &tag)
            .unwrap();
    }
    /// Open only (what a receiver pays): seal once, open many times.
    fn open_only(&mut self, iters: u64) -> Duration {
        let aad = &self.aad.0[..self.aad.1];
        let mut ct = self.pt.clone();
        let tag = self.aead.seal(&self.nonce, aad, &mut ct).unwrap();
        let mut buf = ct.clone();
        let t = Instant::now();
        for _ in 0..iters {
            buf.copy_from_slice(&ct);
            self.aead.open(&self.nonce, aad, &mut buf, &tag).unwrap();
            black_box(&buf);
        }
        t.elapsed()
    }
}

const POOL: usize = 1 << 16;

fn benches(c: &mut Criterion) {
    let mut light = Light::new(POOL);
    let mut floor = Floor::new(light.s.plaintext_len);
    let mut g = c.benchmark_group("ssm_receive");
    g.bench_function("aes_ccm_seal_open_floor", |b| b.iter(|| floor.seal_open()));
    g.bench_function("aes_ccm_open_floor", |b| {
        b.iter_custom(|n| floor.open_only(n))
    });
    g.bench_function("full_receive_path", |b| b.iter_custom(|n| light.run(n)));
    g.finish();
}

/// Min-of-rounds per-iteration time, floor and receive path interleaved.
fn ratio() {
    let mut light = Light::new(POOL);
    let mut floor = Floor::new(light.s.plaintext_len);
    const N: u64 = 100_000;
    let (mut best_floor, mut best_open, mut best_rx) = (f64::MAX, f64::MAX, f64::MAX);
    for _ in 0..7 {
        let t = Instant::now();
        for _ in 0..N {
            floor.seal_open();
        }
        best_floor = best_floor.min(t.elapsed().as_nanos() as f64 / N as f64);
        best_open = best_open.min(floor.open_only(N).as_nanos() as f64 / N as f64);
        best_rx = best_rx.min(light.run(N).as_nanos() as f64 / N as f64);
    }
    println!(
        "\nSSM receive path ({} B datagram, {} B inner request, {} B plaintext): AES-CCM seal+open floor {:.0} ns, open only {:.0} ns, full receive path {:.0} ns, ratio {:.2}x seal+open floor (goal <= 4x), {:.2}x open-only",
        light.s.datagrams[0].len(),
        light.s.inner_len,
        light.s.plaintext_len,
        best_floor,
        best_open,
        best_rx,
        best_rx / best_floor,
        best_rx / best_open,
    );
}

criterion_group!(group, benches);

fn main() {
    group();
    Criterion::default().configure_from_args().final_summary();
    ratio();
}

//! A provisioned light's whole receive path, sans-IO, for a sequence of
//! datagrams: `[mode][len_hi][len_lo][datagram]...` (a bare datagram is one
//! multicast record). Multicast with an OSCORE option goes through
//! `SsmReceiver::receive` then `Device::apply_ssm`; everything else through
//! `Device::handle` with the transport verdict `mode` names (plain, DTLS as
//! the owner, pair-wise OSCORE, DTLS as a client). A credential change
//! rebuilds the receiver, as the runtime does. Invariant: nothing panics
//! and a multicast datagram never produces a response.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ssm_coap::{Message, OptionNumber, Packet};

fn records(data: &[u8]) -> Vec<(u8, &[u8])> {
    // A seed that is a raw CoAP datagram (version 1) is one multicast record.
    if data.first().is_some_and(|b| b >> 6 == 1) {
        return vec![(1, data)];
    }
    let mut out = Vec::new();
    let mut rest = data;
    while rest.len() >= 3 && out.len() < 16 {
        let n = usize::from(u16::from_be_bytes([rest[1], rest[2]])).min(rest.len() - 3);
        out.push((rest[0], &rest[3..3 + n]));
        rest = &rest[3 + n..];
    }
    out
}

static SELF_CHECK: std::sync::Once = std::sync::Once::new();

fuzz_target!(|data: &[u8]| {
    SELF_CHECK.call_once(ssm_fuzz::self_check);
    let (mut device, mut rx) = ssm_fuzz::light();
    for (mode, datagram) in records(data) {
        let meta = ssm_fuzz::meta(mode);
        let oscore = Packet::new_checked(datagram)
            .map(|p| p.options().get(OptionNumber::OSCORE).is_some())
            .unwrap_or(false);
        if meta.multicast && oscore {
            let mut d = datagram.to_vec();
            if let Ok(v) = rx.receive(&mut d) {
                if let Some(floor) = v.persist {
                    rx.floor_persisted(&v.accepted.kid, floor);
                }
                let _ = device.apply_ssm(&v.accepted);
            }
            continue;
        }
        let Ok(req) = Message::parse(datagram) else {
            continue;
        };
        let o = device.handle(&req, &meta);
        if meta.multicast {
            if let Some(r) = &o.response {
                let path = req.uri_path();
                assert!(
                    path == "/oic/res" || path == "/oic/sec/doxm",
                    "multicast answered on {path}: {r:?}"
                );
            }
        }
        if let Some(href) = o.changed {
            let _ = device.notifications(&href, std::time::Instant::now(), &mut || 0);
        }
        if o.creds_changed {
            rx = ssm_fuzz::receiver(&device);
        }
    }
});

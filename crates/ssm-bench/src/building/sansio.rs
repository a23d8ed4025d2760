//! The sans-IO cost of a datagram at a light outside the command's zone
//! (no recipient context for the kid: dropped before any AEAD work),
//! against the same light receiving a valid datagram of its own zone
//! (kid lookup, unprotect, replay window): the baseline, same run.
use super::Zone;
use crate::common::*;
use anyhow::{anyhow, Result};
use ssm_coap::Token;
use ssm_ocf::ssm::{update_request, DropReason, SsmReceiver};
use ssm_ocf::switch::HREF;
use ssm_oscore::{SenderContext, SequenceNumber};
use std::time::Instant;

const ROUNDS: usize = 5;

fn sender(zone: &Zone) -> Result<SenderContext> {
    ssm_ocf::ssm::sender_context(
        &ssm_cred(&zone.switch.creds)?,
        SequenceNumber::volatile(1 << 32),
    )
    .map_err(|e| anyhow!(e))
}

fn protect(s: &mut SenderContext, i: usize) -> Result<Vec<u8>> {
    let token = Token::new(&(i as u64).to_be_bytes()).unwrap_or_default();
    let req = update_request(
        HREF,
        &switch_value(i.is_multiple_of(2)),
        i as u16,
        token,
        true,
    )
    .to_vec();
    let mut out = vec![0u8; req.len() + 64];
    let (n, _) = s
        .protect_request(&req, &mut out)
        .map_err(|e| anyhow!("{e:?}"))?;
    out.truncate(n);
    Ok(out)
}

/// (ns per unknown-kid drop, ns per valid receive), each the best of
/// [`ROUNDS`] interleaved rounds (`count` drops, `count / 10` receives).
pub fn drop_cost(zs: &[Zone], count: usize) -> Result<(f64, f64)> {
    let light = &zs[0].lights[0];
    let mut rx = SsmReceiver::new(&light.creds.oscore_creds()?, Default::default())?;
    let foreign = protect(&mut sender(&zs[1])?, 0)?;
    let mut own = sender(&zs[0])?;
    let valid = (count / 10).max(1);
    let mut buf = Vec::with_capacity(256);
    let (mut best_drop, mut best_rx) = (f64::MAX, f64::MAX);
    for round in 0..ROUNDS {
        let t = Instant::now();
        for _ in 0..count {
            buf.clear();
            buf.extend_from_slice(&foreign);
            match rx.receive(&mut buf) {
                Err(DropReason::UnknownKid) => {}
                other => return Err(anyhow!("foreign zone's datagram: {:?}", other.err())),
            }
        }
        best_drop = best_drop.min(t.elapsed().as_nanos() as f64 / count as f64);
        let pool: Vec<Vec<u8>> = (0..valid)
            .map(|i| protect(&mut own, round * valid + i))
            .collect::<Result<_>>()?;
        let t = Instant::now();
        for d in &pool {
            buf.clear();
            buf.extend_from_slice(d);
            let v = rx
                .receive(&mut buf)
                .map_err(|r| anyhow!("own zone's datagram: {r:?}"))?;
            if let Some(floor) = v.persist {
                rx.floor_persisted(&v.accepted.kid, floor);
            }
        }
        best_rx = best_rx.min(t.elapsed().as_nanos() as f64 / valid as f64);
    }
    Ok((best_drop, best_rx))
}

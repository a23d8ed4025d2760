//! `ssm demo`: N lights and one wall switch on loopback. The switch sends
//! each command as ONE OSCORE-protected NON POST to 224.0.1.187 on `lo`;
//! every light decrypts it with its own recipient context and applies it.
//! Then a replayed and a forged datagram are sent and must change nothing.
//!
//! This is the data path of OCF SSM in one process, with keys generated
//! here. Onboarding by an OBT and unicast read-back arrive with later
//! layers.
use anyhow::{bail, Context, Result};
use ssm_coap::{Code, Message, MessageType, OptionNumber, Token};
use ssm_oscore::{Id, RecipientContext, ReplayState, ReplayWindow, SenderContext, SequenceNumber};
use ssm_runtime::multicast::{join_v4, sender_v4, ALL_COAP_NODES_V4, COAP_PORT};
use ssm_runtime::random_bytes;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Options of `ssm demo`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Number of lights.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1000))]
    lights: u32,
    /// ON/OFF rounds.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    rounds: u32,
    /// UDP port of the multicast group (OCF uses 5683).
    #[arg(long, default_value_t = COAP_PORT)]
    port: u16,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

const HREF: &str = "/BinarySwitchResURI";

/// What a light reports to the demo.
#[derive(Debug)]
enum Event {
    Applied {
        light: u32,
        value: bool,
        at: Instant,
    },
    Rejected {
        light: u32,
        reason: String,
    },
}

/// The SSM receive rule of one light: decrypt, require POST to the switch,
/// decode `{"value": bool}`, apply. Returns the new value.
fn receive(ctx: &mut RecipientContext, datagram: &mut [u8]) -> Result<bool, String> {
    let d = ctx.unprotect_request(datagram).map_err(|e| e.to_string())?;
    if d.code != Code::POST {
        return Err(format!("inner method {} is not UPDATE", d.code));
    }
    let m = d.to_message();
    if m.uri_path() != HREF {
        return Err(format!("{} does not accept SSM", m.uri_path()));
    }
    decode_value(&m.payload).ok_or_else(|| "payload is not {\"value\": bool}".into())
}

fn decode_value(cbor: &[u8]) -> Option<bool> {
    let mut d = minicbor::Decoder::new(cbor);
    let n = d.map().ok()?;
    let mut value = None;
    let mut i = 0u64;
    loop {
        if n.is_some_and(|n| i >= n) {
            break;
        }
        if n.is_none() && d.datatype().ok()? == minicbor::data::Type::Break {
            break;
        }
        let k = d.str().ok()?;
        if k == "value" {
            value = Some(d.bool().ok()?);
        } else {
            d.skip().ok()?;
        }
        i += 1;
    }
    value
}

fn update(value: bool, mid: u16) -> Vec<u8> {
    let mut m = Message::new(
        MessageType::NonConfirmable,
        Code::POST,
        mid,
        Token::new(&random_bytes::<8>()).unwrap_or_default(),
    );
    m.set_uri_path(HREF);
    m.add_option_uint(
        OptionNumber::CONTENT_FORMAT,
        u32::from(ssm_coap::CONTENT_FORMAT_OCF_CBOR),
    );
    m.add_option_uint(
        OptionNumber::ACCEPT,
        u32::from(ssm_coap::CONTENT_FORMAT_OCF_CBOR),
    );
    m.add_option_uint(OptionNumber::NO_RESPONSE, 26);
    m.add_option_uint(
        OptionNumber::OCF_ACCEPT_CONTENT_FORMAT_VERSION,
        u32::from(ssm_coap::OCF_VERSION_1_0_0),
    );
    m.add_option_uint(
        OptionNumber::OCF_CONTENT_FORMAT_VERSION,
        u32::from(ssm_coap::OCF_VERSION_1_0_0),
    );
    let mut e = minicbor::Encoder::new(Vec::new());
    // Writing into a Vec cannot fail.
    let _ = e
        .map(1)
        .and_then(|e| e.str("value"))
        .and_then(|e| e.bool(value));
    m.payload = e.into_writer();
    m.to_vec()
}

pub async fn run(args: Args) -> Result<bool> {
    let lo = Ipv4Addr::LOCALHOST;
    let secret = random_bytes::<32>();
    let mut client_id = random_bytes::<7>();
    client_id[0] = 0x02;
    let client_id = Id::new(&client_id)?;

    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut tasks = Vec::new();
    for light in 0..args.lights {
        let socket = join_v4(ALL_COAP_NODES_V4, args.port, lo)
            .with_context(|| format!("cannot join {ALL_COAP_NODES_V4}:{} on lo", args.port))?;
        let mut ctx = RecipientContext::derive(
            &secret,
            None,
            None,
            client_id,
            ReplayState::Window(ReplayWindow::new(32)),
        )?;
        let tx = tx.clone();
        tasks.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 1500];
            loop {
                let Ok((n, _)) = socket.recv_from(&mut buf).await else {
                    return;
                };
                // SSM: whatever happens, nothing is sent back.
                let ev = match receive(&mut ctx, &mut buf[..n]) {
                    Ok(value) => Event::Applied {
                        light,
                        value,
                        at: Instant::now(),
                    },
                    Err(reason) => Event::Rejected { light, reason },
                };
                if tx.send(ev).is_err() {
                    return;
                }
            }
        }));
    }
    drop(tx);

    let mut switch =
        SenderContext::derive(&secret, None, None, client_id, SequenceNumber::volatile(0))?;
    let sock = sender_v4(lo, 1).context("cannot open the multicast sender on lo")?;
    let group = SocketAddr::from((ALL_COAP_NODES_V4, args.port));
    let mut states = vec![false; args.lights as usize];
    let mut latencies = Vec::new();
    let mut all_ok = true;
    let mut last_datagram = Vec::new();
    if !args.json {
        println!(
            "ssm demo: {} lights joined {group} on lo; one wall switch (kid {:?})",
            args.lights, client_id
        );
    }
    let mut mid = u16::from_be_bytes(random_bytes::<2>());
    for round in 0..args.rounds {
        for value in [true, false] {
            mid = mid.wrapping_add(1);
            let mut out = vec![0u8; 256];
            let (n, _) = switch.protect_request(&update(value, mid), &mut out)?;
            out.truncate(n);
            let sent = Instant::now();
            sock.send_to(&out, group).await?;
            let mut got = 0;
            let mut lat = Vec::new();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
            while got < args.lights {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(Event::Applied {
                        light,
                        value: v,
                        at,
                    })) => {
                        states[light as usize] = v;
                        lat.push(at.duration_since(sent));
                        got += 1;
                    }
                    Ok(Some(Event::Rejected { light, reason })) => {
                        bail!("light {light} rejected a genuine command: {reason}")
                    }
                    _ => break,
                }
            }
            let ok = got == args.lights && states.iter().all(|s| *s == value);
            all_ok &= ok;
            lat.sort();
            let (p50, max) = (
                lat.get(lat.len() / 2).copied().unwrap_or_default(),
                lat.last().copied().unwrap_or_default(),
            );
            if !args.json {
                println!(
                    "round {} {:>3}: one datagram ({} B) -> {}/{} lights applied, p50 {:?}, max {:?}{}",
                    round + 1,
                    if value { "ON" } else { "OFF" },
                    out.len(),
                    got,
                    args.lights,
                    p50,
                    max,
                    if ok { "" } else { "  MISMATCH" }
                );
            }
            latencies.extend(lat);
            last_datagram = out;
        }
    }

    // Attacks: an exact replay, and a forged (one byte flipped) copy.
    let mut forged = last_datagram.clone();
    if let Some(b) = forged.last_mut() {
        *b ^= 0x01;
    }
    let mut rejected = [0u32; 2];
    for (i, dgram) in [&last_datagram, &forged].into_iter().enumerate() {
        sock.send_to(dgram, group).await?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        while rejected[i] < args.lights {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(Event::Rejected { .. })) => rejected[i] += 1,
                Ok(Some(Event::Applied { light, .. })) => {
                    bail!("light {light} accepted an attack datagram")
                }
                _ => break,
            }
        }
    }
    let attacks_ok = rejected == [args.lights; 2] && states.iter().all(|s| !*s);
    all_ok &= attacks_ok;
    for t in &tasks {
        t.abort();
    }
    latencies.sort();
    let p50 = latencies
        .get(latencies.len() / 2)
        .copied()
        .unwrap_or_default();
    let max = latencies.last().copied().unwrap_or_default();
    if args.json {
        let j = serde_json::json!({
            "lights": args.lights,
            "rounds": args.rounds,
            "commands": args.rounds * 2,
            "all_switched": all_ok,
            "latency_us": {"p50": p50.as_micros() as u64, "max": max.as_micros() as u64},
            "replay_rejected_by": rejected[0],
            "forgery_rejected_by": rejected[1],
            "ok": all_ok,
        });
        println!("{j}");
    } else {
        println!(
            "replay rejected by {}/{} lights, forgery rejected by {}/{} lights; states unchanged: {}",
            rejected[0], args.lights, rejected[1], args.lights, attacks_ok
        );
        println!(
            "summary: {} commands x {} lights, p50 {:?}, max {:?}: {}",
            args.rounds * 2,
            args.lights,
            p50,
            max,
            if all_ok { "OK" } else { "FAILED" }
        );
    }
    Ok(all_ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_definite_and_indefinite_maps() {
        assert_eq!(
            decode_value(&[0xa1, 0x65, b'v', b'a', b'l', b'u', b'e', 0xf5]),
            Some(true)
        );
        // The reference stack's indefinite-length form.
        assert_eq!(
            decode_value(&[0xbf, 0x65, b'v', b'a', b'l', b'u', b'e', 0xf4, 0xff]),
            Some(false)
        );
        assert_eq!(
            decode_value(&[0xa1, 0x65, b'v', b'a', b'l', b'u', b'e', 0x01]),
            None
        );
        assert_eq!(decode_value(&[0xff]), None);
    }
}

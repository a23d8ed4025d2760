//! `ssm client update --multicast --confirm`: every granted light read
//! back by a secured RETRIEVE (at the first of the switch's hrefs the
//! light serves).
use super::pairwise_client;
use anyhow::{anyhow, Result};
use ciborium::Value;
use ssm_coap::{Code, MessageType};
use ssm_ocf::cred::CredType;
use ssm_ocf::{cbor, message, Uuid};
use ssm_runtime::client::{socket_for, MulticastTargets};
use std::net::{SocketAddr, SocketAddrV6};
use std::time::Duration;

/// One light's confirmation.
struct Confirmed {
    di: Uuid,
    name: Option<String>,
    ep: Option<String>,
    /// The href it answered with its state at.
    href: Option<String>,
    state: Option<bool>,
    confirmed: bool,
    ms: u128,
    error: Option<String>,
}

/// `update --multicast --confirm`: every light the state dir holds a
/// pair-wise credential for (credtype 64 subjects) is located by multicast
/// discovery and read back by a secured RETRIEVE until it shows `want` or
/// `window` has passed (applies are asynchronous). Lights may serve SSM at
/// different hrefs (ours at the example URI, the reference sample at
/// `/lights`): each is read at the hrefs of `hrefs` in order until one
/// answers with a value (a 4.04 or 4.01 for an href it does not serve:
/// the next), and the row names that href. With `group` (the id
/// of the group commanded), a light whose `/groupsResURI` (read first,
/// with the same credential) does not list it is left out: it was not
/// meant to change. Prints a table (or JSON); `Ok(false)` (exit 1) if any
/// light did not confirm.
#[allow(clippy::too_many_arguments)]
pub(super) async fn confirm_lights(
    state_dir: &std::path::Path,
    oscore: &[ssm_ocf::cred::OscoreCred],
    targets: &MulticastTargets,
    hrefs: &[String],
    want: bool,
    window: Duration,
    sent: &[(&str, ssm_runtime::client::Sent)],
    group: Option<u32>,
    json: bool,
) -> Result<bool> {
    let started = tokio::time::Instant::now();
    let lights: Vec<&ssm_ocf::cred::OscoreCred> = oscore
        .iter()
        .filter(|c| c.credtype == CredType::PairwiseOscore && c.subject.is_some())
        .collect();
    let wanted: Vec<Uuid> = lights.iter().filter_map(|c| c.subject).collect();
    // Discovery ends as soon as every granted light answered (a light may
    // answer multicast after a random Leisure, RFC 7252 §8.2); a light found
    // late still gets one RETRIEVE.
    let found = locate(targets, &wanted, window).await?;
    let mut rows = Vec::new();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, cred) in lights.iter().enumerate() {
        let di = cred.subject.unwrap_or_default();
        let Some(peer) = endpoint_of(&found, di) else {
            rows.push((
                i,
                Confirmed {
                    di,
                    name: None,
                    ep: None,
                    href: None,
                    state: None,
                    confirmed: false,
                    ms: 0,
                    error: Some("not found by discovery".into()),
                },
            ));
            continue;
        };
        let sock = socket_for(peer).await?;
        let mut client = pairwise_client(state_dir, cred, sock)?;
        client.config.max_retransmit = 2;
        let hrefs = hrefs.to_vec();
        tasks.spawn(async move {
            if let Some(g) = group {
                if !in_group(&mut client, peer, g).await {
                    return None;
                }
            }
            let c = read_until(&mut client, peer, &hrefs, want, started, window).await;
            Some((i, Confirmed { di, ..c }))
        });
    }
    while let Some(r) = tasks.join_next().await {
        if let Some(row) = r.map_err(|e| anyhow!("confirm task failed: {e}"))? {
            rows.push(row);
        }
    }
    rows.sort_by_key(|(i, _)| *i);
    let rows: Vec<Confirmed> = rows.into_iter().map(|(_, r)| r).collect();
    let all = !rows.is_empty() && rows.iter().all(|r| r.confirmed);
    print_confirmed(&rows, sent, hrefs, want, all, state_dir, json);
    Ok(all)
}

/// Whether the light at `peer` is in group `g` by its `/groupsResURI`; a
/// light that does not serve the resource (or does not answer) counts as
/// in it: it is then confirmed (or reported) as before.
async fn in_group(
    client: &mut ssm_runtime::udp::OscoreClient<ssm_runtime::store::FileSequenceStore>,
    peer: SocketAddr,
    g: u32,
) -> bool {
    match client.request(peer, ssm_ocf::groups::read()).await {
        Ok(r) if r.code == Code::CONTENT => message::payload(&r)
            .ok()
            .and_then(|v| ssm_ocf::groups::parse(&v, true))
            .is_none_or(|ids| ids.contains(&g)),
        _ => true,
    }
}

/// A light's endpoint: the discovery reply whose link names device `di`;
/// the address it answered from, with the port of its endpoint (and the
/// reply's IPv6 scope).
fn endpoint_of(
    found: &[(SocketAddr, Vec<ssm_ocf::discovery::Link>)],
    di: Uuid,
) -> Option<SocketAddr> {
    // Its endpoint: the discovery reply whose link names this device;
    // the address it answered from, with the port of its endpoint.
    let at = found.iter().find_map(|(from, links)| {
        links
            .iter()
            .find(|l| l.device_id() == Some(di))
            .map(|l| (*from, l.clone()))
    });
    let (from, link) = at?;
    let port = link
        .eps
        .iter()
        .filter_map(|e| ssm_ocf::discovery::split_ep(&e.ep))
        .map(|(_, p)| p)
        .next()
        .unwrap_or(from.port());
    let peer = SocketAddr::new(from.ip(), port);
    let peer = match peer {
        SocketAddr::V6(a) => SocketAddr::V6(SocketAddrV6::new(
            *a.ip(),
            a.port(),
            0,
            match from {
                SocketAddr::V6(f) => f.scope_id(),
                _ => 0,
            },
        )),
        v4 => v4,
    };
    Some(peer)
}

/// RETRIEVEs the light at `peer` until it shows `want` or `window` from
/// `started` has passed (applies are asynchronous), then its name; the
/// caller fills in `di`. The href read is the first of `hrefs` that
/// answers with a value; an href answered with anything else (4.04: not
/// served, 4.01: not granted there) gives way to the next at once, and
/// after the last the round starts again. No answer at all is not a
/// reason to try another href: the light is retried where it was.
async fn read_until(
    client: &mut ssm_runtime::udp::OscoreClient<ssm_runtime::store::FileSequenceStore>,
    peer: SocketAddr,
    hrefs: &[String],
    want: bool,
    started: tokio::time::Instant,
    window: Duration,
) -> Confirmed {
    let deadline = started + window;
    let mut last: Option<bool> = None;
    let mut error: Option<String> = None;
    // The href that answered with a value, else the one to try next.
    let (mut at, mut next) = (None::<usize>, 0usize);
    // This round's refusals (href: code), for the error shown.
    let mut refused: Vec<String> = Vec::new();
    while !hrefs.is_empty() {
        let href = &hrefs[at.unwrap_or(next)];
        let get = message::request(MessageType::Confirmable, Code::GET, href, None);
        let mut again_at_once = false;
        match client.request(peer, get).await {
            Ok(r) if r.code.class() == 2 => {
                let v = message::payload(&r)
                    .ok()
                    .and_then(|v| cbor::get(&v, "value").and_then(Value::as_bool));
                if v.is_some() {
                    (last, error) = (v, None);
                    at = Some(at.unwrap_or(next));
                } else if at.is_none() {
                    refused.push(format!("{href}: {} without a value", r.code));
                    again_at_once = true;
                }
            }
            Ok(r) if at.is_none() => {
                refused.push(format!("{href}: answered {}", r.code));
                again_at_once = true;
            }
            Ok(r) => error = Some(format!("{href}: answered {}", r.code)),
            Err(e) => error = Some(e.to_string()),
        }
        if again_at_once {
            next += 1;
            if next == hrefs.len() {
                // Every href refused this round.
                error = Some(refused.join(", "));
                (next, again_at_once) = (0, false);
                refused.clear();
            }
        }
        // Past the deadline, the hrefs left of this round are still tried
        // (each answered at once): a light found late gets its one read.
        if last == Some(want) || (tokio::time::Instant::now() >= deadline && !again_at_once) {
            break;
        }
        if !again_at_once {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let ms = started.elapsed().as_millis();
    // Its name, if it answered at all.
    let mut name = None;
    if last.is_some() {
        let d = message::request(MessageType::Confirmable, Code::GET, "/oic/d", None);
        if let Ok(r) = client.request(peer, d).await {
            name = message::payload(&r)
                .ok()
                .and_then(|v| cbor::get(&v, "n").and_then(|x| x.as_text().map(String::from)));
        }
    }
    Confirmed {
        di: Uuid::nil(),
        name,
        ep: Some(peer.to_string()),
        href: at.map(|i| hrefs[i].clone()),
        state: last,
        confirmed: last == Some(want),
        ms,
        error: if last == Some(want) { None } else { error },
    }
}

/// The table (or JSON) of `update --multicast --confirm`.
fn print_confirmed(
    rows: &[Confirmed],
    sent: &[(&str, ssm_runtime::client::Sent)],
    hrefs: &[String],
    want: bool,
    all: bool,
    state_dir: &std::path::Path,
    json: bool,
) {
    let value = if want { "on" } else { "off" };
    if json {
        let s: Vec<_> = sent
            .iter()
            .map(|(h, s)| serde_json::json!({"href": h, "to": s.to.to_string(), "piv": s.piv, "bytes": s.len}))
            .collect();
        let l: Vec<_> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "di": r.di.to_string(), "name": r.name, "ep": r.ep, "href": r.href,
                    "state": r.state, "confirmed": r.confirmed, "ms": r.ms as u64,
                    "security": "oscore", "error": r.error,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({"sent": s, "hrefs": hrefs, "value": want, "lights": l, "confirmed": rows.iter().filter(|r| r.confirmed).count(), "all_confirmed": all})
        );
    } else {
        if hrefs.len() > 1 {
            println!(
                "the lights serve SSM at {} hrefs: one datagram per href ({})",
                hrefs.len(),
                hrefs.join(", ")
            );
        }
        for (href, s) in sent {
            println!(
                "sent SSM UPDATE {href} {value} to {} (seq {}, {} bytes)",
                s.to, s.piv, s.len
            );
        }
        println!(
            "{:<36} {:<12} {:<20} {:<6} {:<10} {:>6}",
            "light", "name", "href", "state", "confirmed", "ms"
        );
        for r in rows {
            let state = match r.state {
                Some(true) => "on",
                Some(false) => "off",
                None => "?",
            };
            println!(
                "{:<36} {:<12} {:<20} {:<6} {:<10} {:>6}{}",
                r.di.to_string(),
                r.name.as_deref().unwrap_or("?"),
                r.href.as_deref().unwrap_or("?"),
                state,
                if r.confirmed { "yes" } else { "no" },
                r.ms,
                r.error
                    .as_ref()
                    .map(|e| format!("  ({e})"))
                    .unwrap_or_default()
            );
        }
        if rows.is_empty() {
            println!(
                "no light to confirm: {} holds no pair-wise credential (credtype 64)",
                state_dir.display()
            );
        }
    }
}

/// The query of the discovery that locates the lights.
const RT: &str = "rt=oic.r.switch.binary";

/// Multicast discovery of the switch resources (`GET
/// /oic/res?rt=oic.r.switch.binary`) until every device of `wanted` has
/// answered or `wait` has passed: the replies by responder.
async fn locate(
    targets: &MulticastTargets,
    wanted: &[Uuid],
    wait: Duration,
) -> Result<Vec<(SocketAddr, Vec<ssm_ocf::discovery::Link>)>> {
    let mut req = message::request(MessageType::NonConfirmable, Code::GET, "/oic/res", Some(RT));
    req.message_id = u16::from_be_bytes(ssm_runtime::random_bytes::<2>());
    req.token = ssm_coap::Token::new(&ssm_runtime::random_bytes::<8>()).unwrap_or_default();
    let bytes = req.to_vec();
    for (s, dests) in &targets.targets {
        for d in dests {
            s.send_to(&bytes, *d).await?;
        }
    }
    let deadline = tokio::time::Instant::now() + wait;
    let mut found: Vec<(SocketAddr, Vec<ssm_ocf::discovery::Link>)> = Vec::new();
    let mut buf = vec![0u8; 2048];
    let all_found = |found: &[(SocketAddr, Vec<ssm_ocf::discovery::Link>)]| {
        wanted.iter().all(|w| {
            found
                .iter()
                .any(|(_, ls)| ls.iter().any(|l| l.device_id() == Some(*w)))
        })
    };
    // The sockets in turn, a short wait each, until the deadline.
    while !all_found(&found) && tokio::time::Instant::now() < deadline {
        for (s, _) in &targets.targets {
            let slice = (tokio::time::Instant::now() + Duration::from_millis(10)).min(deadline);
            while let Ok(r) = tokio::time::timeout_at(slice, s.recv_from(&mut buf)).await {
                let (n, from) = r?;
                let Ok(m) = ssm_coap::Message::parse(&buf[..n]) else {
                    continue;
                };
                if m.token != req.token || m.code != Code::CONTENT {
                    continue;
                }
                if found.iter().any(|(f, _)| *f == from) {
                    continue;
                }
                // A multicast answer is its first Block2 block (a light
                // with several SSM resources lists more than one block
                // holds): the rest by unicast.
                let m = match ssm_runtime::client::rest_by_unicast(from, "/oic/res", Some(RT), m)
                    .await
                {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::debug!(%from, error = %e, "confirm: the rest of a discovery answer");
                        continue;
                    }
                };
                let links = message::payload(&m)
                    .map(|p| ssm_ocf::discovery::parse_links(&p))
                    .unwrap_or_default();
                if !found.iter().any(|(f, _)| *f == from) {
                    found.push((from, links));
                }
            }
        }
    }
    Ok(found)
}

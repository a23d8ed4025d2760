//! `ssm client`: discover, get, update (unicast with pair-wise OSCORE, or
//! SSM by multicast, optionally confirmed by a secured RETRIEVE of every
//! granted light), observe. `get` and `observe` use the state dir's
//! pair-wise OSCORE credential for the device when there is one, plain
//! CoAP otherwise.
use crate::state::{load_creds, load_identity};
use anyhow::{anyhow, bail, Context, Result};
use ciborium::Value;
use ssm_coap::{Code, MessageType, OptionNumber};
use ssm_ocf::cred::CredType;
use ssm_ocf::switch::HREF;
use ssm_ocf::{cbor, message, Uuid};
use ssm_runtime::client::{
    describe, discover, request, socket_for, MulticastScope, MulticastTargets, SsmSender,
};
use ssm_runtime::store::FileSequenceStore;
use std::net::{SocketAddr, SocketAddrV6};
use std::path::PathBuf;
use std::time::Duration;

/// Options of `ssm client`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// State directory (device.json, creds.json, sequence numbers).
    #[arg(long, global = true, default_value = ".")]
    state_dir: PathBuf,
    /// JSON output.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args, Debug, Clone)]
struct Net {
    /// Interface for multicast (repeatable); only named interfaces are used.
    #[arg(long = "iface", default_value = "lo")]
    ifaces: Vec<String>,
    /// Do not use IPv4 (224.0.1.187).
    #[arg(long)]
    no_ipv4: bool,
    /// Do not use IPv6.
    #[arg(long)]
    no_ipv6: bool,
    /// IPv6 scopes to use: 2 (ff02), 3 (ff03), 5 (ff05); none on lo.
    #[arg(long, value_delimiter = ',', default_value = "2")]
    scopes: Vec<u8>,
    /// Multicast port.
    #[arg(long, default_value_t = ssm_runtime::multicast::COAP_PORT)]
    port: u16,
    /// Hop limit / TTL of multicast datagrams.
    #[arg(long, default_value_t = 1)]
    hops: u32,
}

impl Net {
    fn scope(&self) -> MulticastScope {
        let on_lo = self.ifaces.iter().all(|i| i == "lo");
        MulticastScope {
            interfaces: self.ifaces.clone(),
            ipv4: !self.no_ipv4,
            ipv6_scopes: if on_lo || self.no_ipv6 {
                vec![]
            } else {
                self.scopes.clone()
            },
            port: self.port,
            hops: self.hops,
        }
    }
}

#[derive(clap::Subcommand, Debug)]
enum Cmd {
    /// Find devices by multicast GET /oic/res (example: `ssm client discover --iface lo`).
    Discover {
        #[command(flatten)]
        net: Net,
        /// Resource type filter.
        #[arg(long, default_value = "oic.r.switch.binary")]
        rt: String,
        /// How long to collect replies (ms).
        #[arg(long, default_value_t = 1000)]
        wait_ms: u64,
    },
    /// RETRIEVE a resource by unicast, with the state dir's pair-wise OSCORE
    /// credential for that device if there is one, else plain (example:
    /// `ssm client get coap://127.0.0.1:40000`).
    Get {
        /// The device endpoint, `coap://host:port`.
        ep: String,
        /// Resource.
        #[arg(long, default_value = HREF)]
        href: String,
    },
    /// UPDATE the switch: unicast to one device (pair-wise OSCORE), or with
    /// --multicast one SSM datagram to every light of the group.
    Update {
        /// The device endpoint (unicast only).
        ep: Option<String>,
        /// on or off.
        #[arg(long)]
        value: OnOff,
        /// Send one OSCORE-protected multicast UPDATE (SSM).
        #[arg(long)]
        multicast: bool,
        /// Resource.
        #[arg(long, default_value = HREF)]
        href: String,
        /// Omit the inner No-Response option (the reference stack's layout).
        #[arg(long)]
        no_no_response: bool,
        /// With --multicast: then confirm, by a secured RETRIEVE, that every
        /// light this state dir holds a pair-wise credential for reached the
        /// value (found by multicast discovery); exit 1 if one did not.
        #[arg(long, requires = "multicast")]
        confirm: bool,
        /// How long --confirm retries a light that has not applied yet (ms).
        #[arg(long, default_value_t = 1000)]
        confirm_ms: u64,
        #[command(flatten)]
        net: Net,
    },
    /// OBSERVE a resource and print notifications (pair-wise OSCORE with
    /// the state dir's credential for that device if there is one, else
    /// plain).
    Observe {
        /// The device endpoint.
        ep: String,
        /// Resource.
        #[arg(long, default_value = HREF)]
        href: String,
        /// Stop after this many notifications.
        #[arg(long, default_value_t = 1)]
        count: u32,
        /// Stop after this long (ms).
        #[arg(long, default_value_t = 30_000)]
        timeout_ms: u64,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum OnOff {
    On,
    Off,
}

/// Parses `coap://host:port` (IPv6 in brackets, optional `%zone`).
pub fn parse_ep(ep: &str) -> Result<SocketAddr> {
    ssm_runtime::netif::parse_ep(ep).map_err(|e| crate::usage!("{e}"))
}

/// A pair-wise OSCORE (credtype 64) client over `sock`, its sequence
/// numbers kept in `state_dir/ssn-<credid>`.
pub fn pairwise_client(
    state_dir: &std::path::Path,
    cred: &ssm_ocf::cred::OscoreCred,
    sock: tokio::net::UdpSocket,
) -> Result<ssm_runtime::udp::OscoreClient<FileSequenceStore>> {
    let store = FileSequenceStore::new(state_dir.join(format!("ssn-{}", cred.credid)));
    let seq = ssm_oscore::SequenceNumber::resume(store.load()?, ssm_runtime::client::SSN_K);
    let ctx = ssm_ocf::ssm::pairwise_context(
        cred,
        seq,
        ssm_oscore::ReplayState::Window(ssm_oscore::ReplayWindow::new(32)),
    )
    .map_err(|e| anyhow!(e))?;
    let mut client = ssm_runtime::udp::OscoreClient::new(sock, ctx, store);
    client.config.ack_timeout = Duration::from_millis(500);
    Ok(client)
}

pub async fn run(a: Args) -> Result<bool> {
    let json = a.json;
    match a.cmd {
        Cmd::Discover { net, rt, wait_ms } => {
            let targets = MulticastTargets::open(&net.scope())?;
            let found = discover(
                &targets,
                Some(&format!("rt={rt}")),
                Duration::from_millis(wait_ms),
            )
            .await?;
            let mut out = Vec::new();
            for (from, links) in &found {
                for l in links {
                    out.push(serde_json::json!({
                        "from": from.to_string(), "di": l.device_id(), "href": l.href, "rt": l.rt,
                        "ssm": l.accepts_ssm(), "eps": l.eps.iter().map(|e| e.ep.clone()).collect::<Vec<_>>(),
                    }));
                }
            }
            if json {
                println!(
                    "{}",
                    serde_json::json!({"devices": found.len(), "links": out})
                );
            } else {
                println!("{} device(s) answered", found.len());
                for l in &out {
                    println!(
                        "  {}  {}  ssm={}  {}",
                        l["di"].as_str().unwrap_or("?"),
                        l["href"].as_str().unwrap_or(""),
                        l["ssm"],
                        l["eps"]
                    );
                }
            }
            Ok(!found.is_empty())
        }
        Cmd::Get { ep, href } => {
            let peer = parse_ep(&ep)?;
            let get = message::request(MessageType::Confirmable, Code::GET, &href, None);
            let r = match connect(&a.state_dir, &ep, peer).await? {
                Conn::Oscore(mut client) => Secured::Oscore(
                    client
                        .request(peer, get)
                        .await
                        .with_context(|| format!("secured RETRIEVE {href} from {ep}"))?,
                ),
                Conn::Plain(sock) => Secured::Plain(
                    request(&sock, peer, get, Duration::from_millis(500), 4)
                        .await
                        .with_context(|| format!("RETRIEVE {href} from {ep}: is the device running? (`ssm client discover` lists endpoints)"))?,
                ),
            };
            let security = r.security();
            let (code, body) = describe(r.message());
            if json {
                println!(
                    "{}",
                    serde_json::json!({"code": code.to_string(), "body": body, "security": security})
                );
            } else {
                println!(
                    "{code} {} ({security})",
                    body.map(|b| b.to_string()).unwrap_or_default()
                );
            }
            Ok(code.is_response() && code.class() == 2)
        }
        Cmd::Update {
            ep,
            value,
            multicast,
            href,
            no_no_response,
            confirm,
            confirm_ms,
            net,
        } => {
            let props = cbor::map([("value", Value::Bool(matches!(value, OnOff::On)))]);
            let creds = load_creds(&a.state_dir)?;
            let oscore = creds.oscore_creds()?;
            if multicast {
                let cred = oscore.iter().find(|c| c.credtype == CredType::SsmClient).ok_or_else(|| {
                    anyhow!("no SSM client credential (credtype 128) in {}: run `ssm creds generate`", crate::state::creds_path(&a.state_dir).display())
                })?;
                let store =
                    FileSequenceStore::new(a.state_dir.join(format!("ssn-{}", cred.credid)));
                let mut sender = SsmSender::new(cred, store)?;
                let targets = MulticastTargets::open(&net.scope())?;
                let sent = sender
                    .send(&targets, &href, &props, !no_no_response)
                    .await?;
                if confirm {
                    return confirm_lights(
                        &a.state_dir,
                        &oscore,
                        &targets,
                        &href,
                        matches!(value, OnOff::On),
                        Duration::from_millis(confirm_ms),
                        &sent,
                        json,
                    )
                    .await;
                }
                if json {
                    let s: Vec<_> = sent.iter().map(|s| serde_json::json!({"to": s.to.to_string(), "piv": s.piv, "bytes": s.len})).collect();
                    println!("{}", serde_json::json!({"sent": s}));
                } else {
                    for s in &sent {
                        println!(
                            "sent SSM UPDATE {href} {:?} to {} (seq {}, {} bytes)",
                            value, s.to, s.piv, s.len
                        );
                    }
                }
                return Ok(true);
            }
            let ep = ep.ok_or_else(|| crate::usage!("give a device endpoint, or --multicast"))?;
            let peer = parse_ep(&ep)?;
            let sock = socket_for(peer).await?;
            // Which device is it? Its pair-wise credential is keyed by UUID.
            let d = request(
                &sock,
                peer,
                message::request(MessageType::Confirmable, Code::GET, "/oic/d", None),
                Duration::from_millis(500),
                4,
            )
            .await
            .with_context(|| format!("{ep} did not answer: is the device running? (`ssm client discover` lists endpoints)"))?;
            let di: Uuid = message::payload(&d)
                .ok()
                .and_then(|v| cbor::get(&v, "di").and_then(|x| x.as_text().map(String::from)))
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| anyhow!("{ep} did not tell its device ID"))?;
            let cred = oscore
                .iter()
                .find(|c| c.credtype == CredType::PairwiseOscore && c.subject == Some(di))
                .ok_or_else(|| anyhow!("no pair-wise OSCORE credential (credtype 64) for device {di}: use --multicast, or provision one"))?;
            let mut client = pairwise_client(&a.state_dir, cred, sock)?;
            let r = client
                .request(
                    peer,
                    message::update(MessageType::Confirmable, &href, &props),
                )
                .await?;
            let (code, body) = describe(&r);
            if json {
                println!(
                    "{}",
                    serde_json::json!({"code": code.to_string(), "body": body})
                );
            } else {
                println!("{code} {}", body.map(|b| b.to_string()).unwrap_or_default());
            }
            Ok(code.class() == 2)
        }
        Cmd::Observe {
            ep,
            href,
            count,
            timeout_ms,
        } => {
            let _ = load_identity(&a.state_dir, "client").ok();
            let peer = parse_ep(&ep)?;
            let reg = message::request(MessageType::Confirmable, Code::GET, &href, None);
            let show = |m: &ssm_coap::Message, security: &str, seq: Option<u32>| {
                let (code, body) = describe(m);
                if json {
                    println!(
                        "{}",
                        serde_json::json!({"code": code.to_string(), "observe": seq, "body": body, "security": security})
                    );
                } else {
                    println!(
                        "{code} observe={} {} ({security})",
                        seq.map(|s| s.to_string()).unwrap_or_default(),
                        body.map(|b| b.to_string()).unwrap_or_default()
                    );
                }
            };
            let deadline = tokio::time::Instant::now() + Duration::from_millis(timeout_ms);
            let mut got = 0;
            match connect(&a.state_dir, &ep, peer).await? {
                Conn::Oscore(mut client) => {
                    let (first, mut obs) = client
                        .observe(peer, reg)
                        .await
                        .with_context(|| format!("secured OBSERVE {href} on {ep}"))?;
                    // The order of OSCORE notifications is their Partial
                    // IV's (RFC 8613 §4.1.3.5.2): the inner Observe is
                    // empty, so the count of notifications is shown.
                    show(&first, "oscore", Some(0));
                    while got < count {
                        match client.next_notification(&mut obs, deadline).await? {
                            Some(n) => {
                                got += 1;
                                show(&n, "oscore", Some(got));
                            }
                            None => break,
                        }
                    }
                }
                Conn::Plain(sock) => {
                    let mut reg = reg;
                    reg.add_option_uint(OptionNumber::OBSERVE, 0);
                    let first = request(&sock, peer, reg, Duration::from_millis(500), 4).await
                    .with_context(|| format!("OBSERVE {href} on {ep}: is the device running? (`ssm client discover` lists endpoints)"))?;
                    if first.option_uint(OptionNumber::OBSERVE).is_none() {
                        bail!("{ep} did not accept the observation ({}, plain CoAP: no pair-wise credential for it in {})", first.code, a.state_dir.display());
                    }
                    show(&first, "plain", first.option_uint(OptionNumber::OBSERVE));
                    while got < count {
                        match ssm_runtime::client::next_notification(&sock, &first.token, deadline)
                            .await?
                        {
                            Some(n) => {
                                show(&n, "plain", n.option_uint(OptionNumber::OBSERVE));
                                got += 1;
                            }
                            None => break,
                        }
                    }
                }
            }
            Ok(got == count)
        }
    }
}

/// How a device is reached: pair-wise OSCORE with the state dir's
/// credential for it, or plain CoAP.
enum Conn {
    Oscore(Box<ssm_runtime::udp::OscoreClient<FileSequenceStore>>),
    Plain(tokio::net::UdpSocket),
}

/// A response and how it came.
enum Secured {
    Oscore(ssm_coap::Message),
    Plain(ssm_coap::Message),
}

impl Secured {
    fn message(&self) -> &ssm_coap::Message {
        match self {
            Secured::Oscore(m) | Secured::Plain(m) => m,
        }
    }
    fn security(&self) -> &'static str {
        match self {
            Secured::Oscore(_) => "oscore",
            Secured::Plain(_) => "plain",
        }
    }
}

/// The device's UUID (`di` of `/oic/d`, readable by anyone).
async fn device_id(sock: &tokio::net::UdpSocket, peer: SocketAddr, ep: &str) -> Result<Uuid> {
    let d = request(
        sock,
        peer,
        message::request(MessageType::Confirmable, Code::GET, "/oic/d", None),
        Duration::from_millis(500),
        4,
    )
    .await
    .with_context(|| {
        format!(
            "{ep} did not answer: is the device running? (`ssm client discover` lists endpoints)"
        )
    })?;
    message::payload(&d)
        .ok()
        .and_then(|v| cbor::get(&v, "di").and_then(|x| x.as_text().map(String::from)))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("{ep} did not tell its device ID"))
}

/// Pair-wise OSCORE when `state_dir` holds a credtype-64 credential for the
/// device at `peer` (found by its UUID); plain CoAP only when there is none
/// (e.g. the device is unowned).
async fn connect(state_dir: &std::path::Path, ep: &str, peer: SocketAddr) -> Result<Conn> {
    let sock = socket_for(peer).await?;
    let creds = load_creds(state_dir)?;
    let oscore = creds.oscore_creds()?;
    if !oscore
        .iter()
        .any(|c| c.credtype == CredType::PairwiseOscore)
    {
        return Ok(Conn::Plain(sock));
    }
    let di = device_id(&sock, peer, ep).await?;
    match oscore
        .iter()
        .find(|c| c.credtype == CredType::PairwiseOscore && c.subject == Some(di))
    {
        Some(cred) => Ok(Conn::Oscore(Box::new(pairwise_client(
            state_dir, cred, sock,
        )?))),
        None => Ok(Conn::Plain(sock)),
    }
}

/// One light's confirmation.
struct Confirmed {
    di: Uuid,
    name: Option<String>,
    ep: Option<String>,
    state: Option<bool>,
    confirmed: bool,
    ms: u128,
    error: Option<String>,
}

/// `update --multicast --confirm`: every light the state dir holds a
/// pair-wise credential for (credtype 64 subjects) is located by multicast
/// discovery and read back by a secured RETRIEVE until it shows `want` or
/// `window` has passed (applies are asynchronous). Prints a table (or
/// JSON); `Ok(false)` (exit 1) if any light did not confirm.
#[allow(clippy::too_many_arguments)]
async fn confirm_lights(
    state_dir: &std::path::Path,
    oscore: &[ssm_ocf::cred::OscoreCred],
    targets: &MulticastTargets,
    href: &str,
    want: bool,
    window: Duration,
    sent: &[ssm_runtime::client::Sent],
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
        // Its endpoint: the discovery reply whose link names this device;
        // the address it answered from, with the port of its endpoint.
        let at = found.iter().find_map(|(from, links)| {
            links
                .iter()
                .find(|l| l.device_id() == Some(di))
                .map(|l| (*from, l.clone()))
        });
        let Some((from, link)) = at else {
            rows.push((
                i,
                Confirmed {
                    di,
                    name: None,
                    ep: None,
                    state: None,
                    confirmed: false,
                    ms: 0,
                    error: Some("not found by discovery".into()),
                },
            ));
            continue;
        };
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
        let sock = socket_for(peer).await?;
        let mut client = pairwise_client(state_dir, cred, sock)?;
        client.config.max_retransmit = 2;
        let href = href.to_string();
        tasks.spawn(async move {
            let deadline = started + window;
            let mut last: Option<bool> = None;
            let mut error: Option<String>;
            loop {
                let get = message::request(MessageType::Confirmable, Code::GET, &href, None);
                match client.request(peer, get).await {
                    Ok(r) if r.code.class() == 2 => {
                        last = message::payload(&r)
                            .ok()
                            .and_then(|v| cbor::get(&v, "value").and_then(Value::as_bool));
                        error = None;
                    }
                    Ok(r) => error = Some(format!("answered {}", r.code)),
                    Err(e) => error = Some(e.to_string()),
                }
                if last == Some(want) || tokio::time::Instant::now() >= deadline {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let ms = started.elapsed().as_millis();
            // Its name, if it answered at all.
            let mut name = None;
            if last.is_some() {
                let d = message::request(MessageType::Confirmable, Code::GET, "/oic/d", None);
                if let Ok(r) = client.request(peer, d).await {
                    name = message::payload(&r).ok().and_then(|v| {
                        cbor::get(&v, "n").and_then(|x| x.as_text().map(String::from))
                    });
                }
            }
            (
                i,
                Confirmed {
                    di,
                    name,
                    ep: Some(peer.to_string()),
                    state: last,
                    confirmed: last == Some(want),
                    ms,
                    error: if last == Some(want) { None } else { error },
                },
            )
        });
    }
    while let Some(r) = tasks.join_next().await {
        rows.push(r.map_err(|e| anyhow!("confirm task failed: {e}"))?);
    }
    rows.sort_by_key(|(i, _)| *i);
    let rows: Vec<Confirmed> = rows.into_iter().map(|(_, r)| r).collect();
    let all = !rows.is_empty() && rows.iter().all(|r| r.confirmed);
    let value = if want { "on" } else { "off" };
    if json {
        let s: Vec<_> = sent
            .iter()
            .map(|s| serde_json::json!({"to": s.to.to_string(), "piv": s.piv, "bytes": s.len}))
            .collect();
        let l: Vec<_> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "di": r.di.to_string(), "name": r.name, "ep": r.ep,
                    "state": r.state, "confirmed": r.confirmed, "ms": r.ms as u64,
                    "security": "oscore", "error": r.error,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({"sent": s, "value": want, "lights": l, "confirmed": rows.iter().filter(|r| r.confirmed).count(), "all_confirmed": all})
        );
    } else {
        for s in sent {
            println!(
                "sent SSM UPDATE {href} {value} to {} (seq {}, {} bytes)",
                s.to, s.piv, s.len
            );
        }
        println!(
            "{:<36} {:<12} {:<6} {:<10} {:>6}",
            "light", "name", "state", "confirmed", "ms"
        );
        for r in &rows {
            let state = match r.state {
                Some(true) => "on",
                Some(false) => "off",
                None => "?",
            };
            println!(
                "{:<36} {:<12} {:<6} {:<10} {:>6}{}",
                r.di.to_string(),
                r.name.as_deref().unwrap_or("?"),
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
    Ok(all)
}

/// Multicast discovery of the switch resources (`GET
/// /oic/res?rt=oic.r.switch.binary`) until every device of `wanted` has
/// answered or `wait` has passed: the replies by responder.
async fn locate(
    targets: &MulticastTargets,
    wanted: &[Uuid],
    wait: Duration,
) -> Result<Vec<(SocketAddr, Vec<ssm_ocf::discovery::Link>)>> {
    let mut req = message::request(
        MessageType::NonConfirmable,
        Code::GET,
        "/oic/res",
        Some("rt=oic.r.switch.binary"),
    );
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

//! `ssm client`: discover, get, update (unicast with pair-wise OSCORE, or
//! SSM by multicast), observe.
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
use ssm_runtime::netif::NetIf;
use ssm_runtime::store::FileSequenceStore;
use std::net::{IpAddr, SocketAddr, SocketAddrV6};
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
    /// RETRIEVE a resource by unicast (example: `ssm client get coap://127.0.0.1:40000`).
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
        #[command(flatten)]
        net: Net,
    },
    /// OBSERVE a resource and print notifications.
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
    let with_scheme = if ep.starts_with("coap://") {
        ep.to_string()
    } else {
        format!("coap://{ep}")
    };
    let (host, port) = ssm_ocf::discovery::split_ep(&with_scheme)
        .ok_or_else(|| crate::usage!("{ep:?} is not coap://host:port"))?;
    if let Some((addr, zone)) = host.split_once('%') {
        let ip: std::net::Ipv6Addr = addr
            .parse()
            .map_err(|e| crate::usage!("bad address in {ep}: {e}"))?;
        let index = NetIf::by_name(zone)
            .map(|i| i.index)
            .or_else(|_| zone.parse::<u32>())
            .map_err(|_| crate::usage!("unknown zone {zone} in {ep}"))?;
        return Ok(SocketAddr::V6(SocketAddrV6::new(ip, port, 0, index)));
    }
    let ip: IpAddr = host
        .parse()
        .map_err(|e| crate::usage!("bad address in {ep}: {e}"))?;
    Ok(SocketAddr::new(ip, port))
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
            let sock = socket_for(peer).await?;
            let r = request(
                &sock,
                peer,
                message::request(MessageType::Confirmable, Code::GET, &href, None),
                Duration::from_millis(500),
                4,
            )
            .await
            .with_context(|| format!("RETRIEVE {href} from {ep}: is the device running? (`ssm client discover` lists endpoints)"))?;
            let (code, body) = describe(&r);
            if json {
                println!(
                    "{}",
                    serde_json::json!({"code": code.to_string(), "body": body})
                );
            } else {
                println!("{code} {}", body.map(|b| b.to_string()).unwrap_or_default());
            }
            Ok(code.is_response() && code.class() == 2)
        }
        Cmd::Update {
            ep,
            value,
            multicast,
            href,
            no_no_response,
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
            let sock = socket_for(peer).await?;
            let mut reg = message::request(MessageType::Confirmable, Code::GET, &href, None);
            reg.add_option_uint(OptionNumber::OBSERVE, 0);
            let first = request(&sock, peer, reg, Duration::from_millis(500), 4).await
            .with_context(|| format!("OBSERVE {href} on {ep}: is the device running? (`ssm client discover` lists endpoints)"))?;
            if first.option_uint(OptionNumber::OBSERVE).is_none() {
                bail!("{ep} did not accept the observation ({})", first.code);
            }
            let show = |m: &ssm_coap::Message| {
                let (code, body) = describe(m);
                let seq = m.option_uint(OptionNumber::OBSERVE);
                if json {
                    println!(
                        "{}",
                        serde_json::json!({"code": code.to_string(), "observe": seq, "body": body})
                    );
                } else {
                    println!(
                        "{code} observe={} {}",
                        seq.map(|s| s.to_string()).unwrap_or_default(),
                        body.map(|b| b.to_string()).unwrap_or_default()
                    );
                }
            };
            show(&first);
            let deadline = tokio::time::Instant::now() + Duration::from_millis(timeout_ms);
            let mut got = 0;
            while got < count {
                match ssm_runtime::client::next_notification(&sock, &first.token, deadline).await? {
                    Some(n) => {
                        show(&n);
                        got += 1;
                    }
                    None => break,
                }
            }
            Ok(got == count)
        }
    }
}

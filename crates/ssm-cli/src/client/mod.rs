//! `ssm client`: discover, get, update (unicast with pair-wise OSCORE, or
//! SSM by multicast, optionally confirmed by a secured RETRIEVE of every
//! granted light), observe. `get` and `observe` use the state dir's
//! pair-wise OSCORE credential for the device when there is one, plain
//! CoAP otherwise.
use crate::state::load_creds;
use anyhow::{anyhow, Context, Result};
use ssm_coap::{Code, MessageType};
use ssm_ocf::cred::CredType;
use ssm_ocf::switch::HREF;
use ssm_ocf::{cbor, message, Uuid};
use ssm_runtime::client::{request, socket_for, MulticastScope};
use ssm_runtime::store::FileSequenceStore;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

mod cmd;
mod confirm;

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
        /// Resource (default: /BinarySwitchResURI; with --multicast, the
        /// hrefs the OBT named in the SSM credential, one datagram each).
        #[arg(long)]
        href: Option<String>,
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
        /// With --multicast: the SSM group to command (default: the
        /// switch's only group; with several, name one).
        #[arg(long, requires = "multicast")]
        group: Option<String>,
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
    let store = ssm_runtime::state_dir::StateDir::new(state_dir).sequence_store(cred.credid);
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

/// Runs `ssm client …`.
pub async fn run(a: Args) -> Result<bool> {
    let json = a.json;
    let dir = &a.state_dir;
    match a.cmd {
        Cmd::Discover { net, rt, wait_ms } => cmd::discover(&net, &rt, wait_ms, json).await,
        Cmd::Get { ep, href } => cmd::get(dir, &ep, &href, json).await,
        Cmd::Update {
            ep,
            value,
            multicast,
            href,
            no_no_response,
            confirm,
            confirm_ms,
            group,
            net,
        } => {
            let m = cmd::Multicast {
                href: href.as_deref(),
                value,
                no_no_response,
                confirm,
                confirm_ms,
                group: group.as_deref(),
                net: &net,
            };
            cmd::update(dir, ep, multicast, m, json).await
        }
        Cmd::Observe {
            ep,
            href,
            count,
            timeout_ms,
        } => cmd::observe(dir, &ep, &href, count, timeout_ms, json).await,
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

//! Fan-out: one SSM command to N lights, against sequential pair-wise
//! OSCORE unicast UPDATEs to the same N lights (each confirmed), in the
//! same run.
use crate::common::*;
pub use crate::group_mode::Profile;
use anyhow::{bail, Context, Result};
use ssm_coap::MessageType;
use ssm_ocf::cred::{CredResource, CredType};
use ssm_ocf::switch::HREF;
use ssm_runtime::device::DeviceEvent;
use ssm_runtime::store::FileSequenceStore;
use ssm_runtime::udp::OscoreClient;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::sync::broadcast::error::TryRecvError;

/// Options of `ssm-bench fanout`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Numbers of lights (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1,10,100,500")]
    pub n: Vec<usize>,
    /// Measured commands per N (after one unmeasured warm-up command).
    #[arg(long, default_value_t = 20)]
    pub rounds: usize,
    /// `tasks` (lights as tasks in this process) or `procs` (each light an
    /// `ssm device` process).
    #[arg(long, default_value = "tasks")]
    pub mode: String,
    /// Reserve each light's persisted replay floor K ahead (0: the exact
    /// floor is written before every update, as the product does by
    /// default).
    #[arg(long, default_value_t = 0)]
    pub floor_reserve: u64,
    /// Lights as tasks share one replay-floor journal (group commit: one
    /// fsync per command for all of them; `ssm_runtime::journal`).
    #[arg(long)]
    pub journal: bool,
    /// Skip the sequential unicast baseline.
    #[arg(long)]
    pub no_unicast: bool,
    /// Also measure each N under the Group OSCORE group-mode profile
    /// (every command signed, Ed25519), right after plain SSM in the same
    /// run (tasks mode).
    #[arg(long)]
    pub group_oscore: bool,
    /// With `--group-oscore`: every light verifies every signature itself
    /// (without it the lights share one memo of verified signatures,
    /// `DeviceConfig::signature_cache`).
    #[arg(long)]
    pub no_signature_cache: bool,
    /// Multicast port (default: pid-based).
    #[arg(long)]
    pub port: Option<u16>,
    /// The `ssm` binary for `--mode procs` (default: next to this one).
    #[arg(long)]
    pub ssm_bin: Option<PathBuf>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

/// The figures of one N.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Point {
    pub n: usize,
    pub mode: String,
    /// Commands measured.
    pub commands: usize,
    /// Datagrams on the wire per SSM command.
    pub ssm_datagrams: usize,
    /// Per command: send → last light applied (µs).
    pub all_applied_us: Vec<f64>,
    /// Per command: first → last light applied (µs).
    pub skew_us: Vec<f64>,
    /// Lights that did not apply a command within the timeout, summed.
    pub missing: usize,
    /// Per round: all N sequential unicast UPDATEs, each confirmed (µs).
    pub unicast_us: Vec<f64>,
    /// Resident set size per light process (KiB), procs mode only.
    #[serde(default)]
    pub rss_kib: Vec<u64>,
    /// Anonymous RSS per light process (KiB), procs mode only.
    #[serde(default)]
    pub rss_anon_kib: Vec<u64>,
    /// Proportional set size per light process (KiB), procs mode only.
    #[serde(default)]
    pub pss_kib: Vec<u64>,
    /// The lights' shared signature memo after the run: [hits, misses]
    /// (group mode with the memo only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature_cache: Option<[u64; 2]>,
}

impl Point {
    /// No figures yet.
    pub fn new(n: usize, mode: String, commands: usize, ssm_datagrams: usize) -> Self {
        Point {
            n,
            mode,
            commands,
            ssm_datagrams,
            all_applied_us: Vec::new(),
            skew_us: Vec::new(),
            missing: 0,
            unicast_us: Vec::new(),
            rss_kib: Vec::new(),
            rss_anon_kib: Vec::new(),
            pss_kib: Vec::new(),
            signature_cache: None,
        }
    }

    pub fn p(&self, v: &[f64], p: f64) -> f64 {
        percentile(&sorted(v), p)
    }
}

/// Waits until every light reported the command with Partial IV `piv`
/// applied; returns each light's apply instant (None: timed out).
async fn collect_applied(
    rxs: &mut [tokio::sync::broadcast::Receiver<DeviceEvent>],
    piv: u64,
    limit: Duration,
) -> Vec<Option<Instant>> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut out = Vec::with_capacity(rxs.len());
    for rx in rxs.iter_mut() {
        let mut got = None;
        loop {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Ok(DeviceEvent::SsmApplied { piv: p, at, .. })) if p == piv => {
                    got = Some(at);
                    break;
                }
                Ok(Ok(_)) | Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {}
                _ => break,
            }
        }
        out.push(got);
    }
    out
}

fn drain(rxs: &mut [tokio::sync::broadcast::Receiver<DeviceEvent>]) {
    for rx in rxs {
        while let Ok(_) | Err(TryRecvError::Lagged(_)) = rx.try_recv() {}
    }
}

/// Pair-wise OSCORE clients of the switch, one per light, in light order.
async fn unicast_clients(
    switch: &CredResource,
    lights: &[ssm_ocf::provision::Member],
    dir: &std::path::Path,
) -> Result<Vec<OscoreClient<FileSequenceStore>>> {
    let creds = switch.oscore_creds()?;
    let mut out = Vec::with_capacity(lights.len());
    for (i, l) in lights.iter().enumerate() {
        let c = creds
            .iter()
            .find(|c| c.credtype == CredType::PairwiseOscore && c.subject == Some(l.uuid))
            .with_context(|| format!("no pair-wise credential for light {i}"))?;
        let store = FileSequenceStore::new(dir.join(format!("uc-{i}.ssn")));
        let seq = ssm_oscore::SequenceNumber::resume(store.load()?, ssm_runtime::client::SSN_K);
        let ctx = ssm_ocf::ssm::pairwise_context(
            c,
            seq,
            ssm_oscore::ReplayState::Window(ssm_oscore::ReplayWindow::new(32)),
        )
        .map_err(|e| anyhow::anyhow!(e))?;
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
        let mut client = OscoreClient::new(sock, ctx, store);
        client.config.ack_timeout = Duration::from_millis(500);
        out.push(client);
    }
    Ok(out)
}

/// Sequential unicast: one confirmed pair-wise OSCORE UPDATE to each light
/// in turn; returns the total time.
async fn unicast_round(
    clients: &mut [OscoreClient<FileSequenceStore>],
    peers: &[SocketAddr],
    value: bool,
) -> Result<Duration> {
    let props = switch_value(value);
    let t = Instant::now();
    for (c, p) in clients.iter_mut().zip(peers) {
        let r = c
            .request(
                *p,
                ssm_ocf::message::update(MessageType::Confirmable, HREF, &props),
            )
            .await?;
        if r.code != ssm_coap::Code::CHANGED {
            bail!("unicast UPDATE to {p} answered {}", r.code);
        }
    }
    Ok(t.elapsed())
}

/// One N, lights as tasks in this process.
pub async fn tasks(
    n: usize,
    rounds: usize,
    port: u16,
    unicast: bool,
    floor_reserve: u64,
    journal: bool,
) -> Result<Point> {
    tasks_with(
        n,
        rounds,
        port,
        unicast,
        floor_reserve,
        journal,
        Profile::Ssm,
    )
    .await
}

/// [`tasks`] under `profile`; in group mode (signed commands) the unicast
/// baseline is skipped.
pub async fn tasks_with(
    n: usize,
    rounds: usize,
    port: u16,
    unicast: bool,
    floor_reserve: u64,
    journal: bool,
    profile: Profile,
) -> Result<Point> {
    let group_mode = profile != Profile::Ssm;
    let dir = TempDir::new("fanout")?;
    let (mut lights, mut switch) = group(n);
    let group_sender = if group_mode {
        Some(crate::group_mode::convert(
            &mut lights,
            &mut switch,
            &dir.0,
        )?)
    } else {
        None
    };
    let unicast = unicast && !group_mode;
    let j = if journal {
        Some(ssm_runtime::journal::FloorJournal::open(
            dir.0.join("floors.journal"),
        )?)
    } else {
        None
    };
    let cache = profile.signature_cache();
    let handles = start_lights_with(&lights, &dir.0, port, j, None, cache.clone()).await?;
    for h in &handles {
        h.set_floor_reservation(floor_reserve);
    }
    let mut rxs: Vec<_> = handles.iter().map(|h| h.events.subscribe()).collect();
    let (mut sender, targets) = if let Some(g) = group_sender {
        (g, ssm_switch_targets(port)?)
    } else {
        let (s, t) = ssm_switch(&switch.creds, &dir.0, port)?;
        (crate::group_mode::Switch::Ssm(Box::new(s)), t)
    };
    let mode = profile.mode(journal, floor_reserve);
    let mut point = Point::new(n, mode, rounds, targets.destinations().count());
    // Round 0 is the unmeasured warm-up (creates every floor file).
    for round in 0..=rounds {
        drain(&mut rxs);
        let value = round % 2 == 0;
        let sent_at = Instant::now();
        let sent = sender
            .send(&targets, HREF, &switch_value(value), true)
            .await?;
        let applied = collect_applied(&mut rxs, sent[0].piv, Duration::from_secs(10)).await;
        if round == 0 {
            if applied.iter().any(Option::is_none) {
                bail!("warm-up: not every light applied the first command");
            }
            continue;
        }
        point.missing += applied.iter().filter(|a| a.is_none()).count();
        let lat: Vec<f64> = applied
            .iter()
            .flatten()
            .map(|t| t.duration_since(sent_at).as_secs_f64() * 1e6)
            .collect();
        let s = sorted(&lat);
        if let (Some(first), Some(last)) = (s.first(), s.last()) {
            point.all_applied_us.push(*last);
            point.skew_us.push(last - first);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    if unicast {
        let peers: Vec<SocketAddr> = handles
            .iter()
            .map(|h| SocketAddr::from(([127, 0, 0, 1], h.unicast.port())))
            .collect();
        let mut clients = unicast_clients(&switch.creds, &lights, &dir.0).await?;
        // Unmeasured warm-up: the first request to each light goes through
        // an Echo round trip (its replay window starts empty).
        unicast_round(&mut clients, &peers, true).await?;
        // Sequential unicast at N = 500 takes long: fewer rounds there.
        let ur = if n >= 200 { rounds.min(5) } else { rounds };
        for round in 0..ur {
            let d = unicast_round(&mut clients, &peers, round % 2 == 1).await?;
            point.unicast_us.push(d.as_secs_f64() * 1e6);
        }
    }
    drop(handles);
    if group_mode {
        point.signature_cache = cache.map(|c| {
            let (hits, misses) = c.stats();
            [hits, misses]
        });
    }
    Ok(point)
}

/// Generates the credentials of one switch and `n` lights in `dir` and
/// starts the lights as `ssm device --json` processes on `lo`; their JSON
/// lines arrive on the channel, by light index.
async fn spawn_lights(
    n: usize,
    port: u16,
    ssm_bin: &std::path::Path,
    dir: &std::path::Path,
) -> Result<(Vec<tokio::process::Child>, LightEvents)> {
    use tokio::io::AsyncBufReadExt;
    let out = tokio::process::Command::new(ssm_bin)
        .args(["creds", "generate", "--json", "--switches", "1", "--lights"])
        .arg(n.to_string())
        .arg("--out")
        .arg(dir)
        .output()
        .await
        .with_context(|| format!("cannot run {}", ssm_bin.display()))?;
    if !out.status.success() {
        bail!(
            "ssm creds generate failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<(usize, serde_json::Value)>();
    let mut children = Vec::new();
    for i in 0..n {
        let mut c = tokio::process::Command::new(ssm_bin)
            .args(["device", "--json", "--iface", "lo", "--no-ipv6", "--port"])
            .arg(port.to_string())
            .arg("--state-dir")
            .arg(dir.join(format!("light-{i}")))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start ssm device")?;
        let stdout = c.stdout.take().context("no stdout")?;
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stdout).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&l) {
                    let _ = tx.send((i, v));
                }
            }
        });
        children.push(c);
    }
    Ok((children, rx))
}

/// The JSON lines of light processes, by light index.
type LightEvents = tokio::sync::mpsc::UnboundedReceiver<(usize, serde_json::Value)>;

/// One N, each light an `ssm device` process; apply times come from each
/// light's `--json` output (`at_mono_ns`, CLOCK_MONOTONIC).
pub async fn procs(n: usize, rounds: usize, port: u16, ssm_bin: &std::path::Path) -> Result<Point> {
    let dir = TempDir::new("procs")?;
    let (mut children, mut rx) = spawn_lights(n, port, ssm_bin, &dir.0).await?;
    let result = async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30 + n as u64 / 5);
        let mut ready = 0;
        while ready < n {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some((_, v))) if v["event"] == "ready" => ready += 1,
                Ok(Some(_)) => {}
                _ => bail!("only {ready}/{n} light processes became ready"),
            }
        }
        let switch = CredResource::from_json(
            &std::fs::read_to_string(dir.0.join("switch-0").join("creds.json"))
                .context("switch creds")?,
        )?;
        let (mut sender, targets) = ssm_switch(&switch, &dir.0, port)?;
        let mut point = Point::new(n, "procs".into(), rounds, targets.destinations().count());
        for round in 0..=rounds {
            while rx.try_recv().is_ok() {}
            let value = round % 2 == 0;
            let sent_at = mono_ns();
            let sent = sender
                .send(&targets, HREF, &switch_value(value), true)
                .await?;
            let piv = sent[0].piv;
            let mut at: HashMap<usize, u64> = HashMap::new();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while at.len() < n {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some((i, v))) if v["event"] == "ssm_applied" && v["piv"] == piv => {
                        if let Some(t) = v["at_mono_ns"].as_u64() {
                            at.insert(i, t);
                        }
                    }
                    Ok(Some(_)) => {}
                    _ => break,
                }
            }
            if round == 0 {
                if at.len() < n {
                    bail!("warm-up: only {}/{n} light processes applied", at.len());
                }
                continue;
            }
            point.missing += n - at.len();
            let lat: Vec<f64> = at
                .values()
                .map(|t| t.saturating_sub(sent_at) as f64 / 1e3)
                .collect();
            let s = sorted(&lat);
            if let (Some(first), Some(last)) = (s.first(), s.last()) {
                point.all_applied_us.push(*last);
                point.skew_us.push(last - first);
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        for c in &children {
            if let Some(pid) = c.id() {
                if let Ok((rss, _)) = rss_kib(&pid.to_string()) {
                    point.rss_kib.push(rss);
                }
                if let Ok((anon, pss)) = anon_pss_kib(&pid.to_string()) {
                    point.rss_anon_kib.push(anon);
                    point.pss_kib.push(pss);
                }
            }
        }
        Ok(point)
    }
    .await;
    for c in children.iter_mut() {
        let _ = c.start_kill();
    }
    for c in children.iter_mut() {
        let _ = tokio::time::timeout(Duration::from_secs(5), c.wait()).await;
    }
    result
}

pub fn default_ssm_bin() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("ssm")))
        .unwrap_or_else(|| PathBuf::from("ssm"))
}

pub async fn run(a: Args) -> Result<bool> {
    let port = a.port.unwrap_or_else(default_port);
    let mut points = Vec::new();
    for &n in &a.n {
        if n == 0 {
            bail!("N must be at least 1");
        }
        if a.group_oscore && a.mode == "tasks" {
            let p = tasks_with(
                n,
                a.rounds,
                port,
                !a.no_unicast,
                a.floor_reserve,
                a.journal,
                Profile::Ssm,
            )
            .await?;
            if !a.json {
                print_point(&p);
            }
            points.push(p);
            let profile = if a.no_signature_cache {
                Profile::GroupNoCache
            } else {
                Profile::Group
            };
            let g = tasks_with(
                n,
                a.rounds,
                port,
                false,
                a.floor_reserve,
                a.journal,
                profile,
            )
            .await?;
            if !a.json {
                print_point(&g);
            }
            points.push(g);
            continue;
        }
        let p = match a.mode.as_str() {
            "tasks" => tasks(n, a.rounds, port, !a.no_unicast, a.floor_reserve, a.journal).await?,
            "procs" => {
                let bin = a.ssm_bin.clone().unwrap_or_else(default_ssm_bin);
                procs(n, a.rounds, port, &bin).await?
            }
            m => bail!("unknown mode {m} (tasks or procs)"),
        };
        if !a.json {
            print_point(&p);
        }
        points.push(p);
    }
    let ok = points.iter().all(|p| p.missing == 0);
    if a.json {
        println!(
            "{}",
            serde_json::json!({"fanout": points, "all_applied": ok})
        );
    }
    Ok(ok)
}

pub fn print_point(p: &Point) {
    let ms = |v: f64| v / 1e3;
    print!(
        "fanout {} N={:<4} {} cmds: all applied p50 {:.3} ms p99 {:.3} ms, skew p50 {:.3} ms p99 {:.3} ms, missing {}",
        p.mode,
        p.n,
        p.commands,
        ms(p.p(&p.all_applied_us, 50.0)),
        ms(p.p(&p.all_applied_us, 99.0)),
        ms(p.p(&p.skew_us, 50.0)),
        ms(p.p(&p.skew_us, 99.0)),
        p.missing
    );
    if !p.unicast_us.is_empty() {
        let u = p.p(&p.unicast_us, 50.0);
        print!(
            "; sequential unicast p50 {:.3} ms ({:.1}x SSM p50)",
            ms(u),
            u / p.p(&p.all_applied_us, 50.0).max(1.0)
        );
    }
    if let Some([hits, misses]) = p.signature_cache {
        print!("; signature memo {hits} hits, {misses} checks");
    }
    if !p.rss_kib.is_empty() {
        print!(
            "; RSS per light process max {} KiB",
            p.rss_kib.iter().max().unwrap_or(&0)
        );
    }
    println!();
}

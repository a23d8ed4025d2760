//! `ssm obt`: the onboarding tool.
//!
//! Every change to the domain is first written to the store in one
//! transaction that also marks the devices it concerns `stale`; then those
//! devices are brought up to date (lights first, then switches) and marked
//! `provisioned` one by one. A crash, an offline device or a refused step
//! leaves the truth in the store: `ssm obt list` shows what is stale, and
//! `ssm obt sync` (or re-running the command) finishes the job.
use anyhow::{anyhow, bail, Context, Result};
use ssm_obt::plan::desired;
use ssm_obt::store::{DeviceRecord, Store, StoreError};
use ssm_runtime::client::{MulticastScope, MulticastTargets};
use ssm_runtime::obt::{
    discover_devices, discover_unowned, hard_reset, onboard_with, owns, sync_device,
    zero_free_uuid, Onboarded,
};
use ssm_runtime::random_bytes;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use uuid::Uuid;

/// Exit status of a command whose domain store could not be used (locked,
/// missing, from a newer version, corrupt): scripts can tell it from a
/// failed operation (1) and a usage error (2).
pub const EXIT_STORE: u8 = 3;

/// The exit status for an error of `ssm obt` (and of every command: 2 for
/// a usage error, else 1).
pub fn exit_code(e: &anyhow::Error) -> u8 {
    if crate::usage::is_usage(e) {
        crate::usage::EXIT_USAGE
    } else if e.chain().any(|c| {
        c.downcast_ref::<StoreError>()
            .is_some_and(|s| !matches!(s, StoreError::UnknownDevice(_)))
    }) {
        EXIT_STORE
    } else {
        1
    }
}

/// Options of `ssm obt`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The secure-domain store (default: ~/.local/share/ssm/domain.sqlite).
    #[arg(long, global = true)]
    domain: Option<PathBuf>,
    /// JSON output.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Subcommand, Debug)]
enum Cmd {
    /// Create the secure domain (example: `ssm obt init --name hallway`).
    Init {
        /// Domain name.
        #[arg(long, default_value = "ssm domain")]
        name: String,
    },
    /// Find devices by multicast on an interface: unowned ones, and owned
    /// ones (those of this domain by name; their endpoints are refreshed).
    Discover {
        #[command(flatten)]
        link: Link,
        /// How long to collect replies (ms).
        #[arg(long, default_value_t = 1000)]
        wait_ms: u64,
    },
    /// Onboard one device by Random PIN (example: `ssm obt onboard 127.0.0.1:40000 --pin 12345678 --name hall-1`),
    /// or every unowned device on an interface with `--all --pins FILE`.
    Onboard {
        /// The device's unicast endpoint (`coap://host:port` or `host:port`).
        ep: Option<String>,
        /// Onboard every unowned device found on `--iface`.
        #[arg(long)]
        all: bool,
        /// With --all: a file of `<device uuid> <PIN> [name] [light|switch]`
        /// lines (the PINs the devices show; a commissioning sheet).
        #[arg(long)]
        pins: Option<PathBuf>,
        /// With --all: where to discover.
        #[command(flatten)]
        link: Link,
        /// Devices worked on at once.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
        jobs: u32,
        /// The PIN the device shows (without it and --pin-file: asked for on the terminal).
        #[arg(long)]
        pin: Option<String>,
        /// Read the PIN from this file (headless devices write `<state>/pin`).
        #[arg(long)]
        pin_file: Option<PathBuf>,
        /// Name to remember it by.
        #[arg(long)]
        name: Option<String>,
        /// light or switch (with --all: for rows of the PIN file that name no role).
        #[arg(long, default_value = "light", value_parser = ["light", "switch"])]
        role: String,
    },
    /// List the devices of the domain (state, role, last seen).
    List,
    /// One device: state, role, SSM group, grants, last seen, recent audit.
    ///
    /// Example: `ssm obt show hall-switch`
    Show {
        /// Name or UUID.
        device: String,
    },
    /// Remove a device: hard-reset it if reachable, forget it, and rekey
    /// the SSM group it belonged to (the new key is pushed to every
    /// remaining member; offline ones become stale).
    ///
    /// Example: `ssm obt offboard light-3`
    Offboard {
        /// Name or UUID.
        device: String,
        #[command(flatten)]
        work: Work,
    },
    /// Bring devices up to date with the domain (default: every stale one;
    /// devices that moved are found again by multicast on `--iface`).
    ///
    /// Example: `ssm obt sync` or `ssm obt sync --all`
    Sync {
        /// Names or UUIDs (default: the stale ones).
        devices: Vec<String>,
        /// Every device of the domain.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        work: Work,
    },
    /// SSM group management: grant, revoke, rekey.
    #[command(subcommand)]
    Ssm(SsmCmd),
}

/// Where and how many devices at once (every command that changes devices).
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct Work {
    #[command(flatten)]
    link: Link,
    /// Devices worked on at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=64))]
    jobs: u32,
}

/// Where the OBT looks for devices.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct Link {
    /// Interface (only named interfaces are used).
    #[arg(long, default_value = "lo")]
    pub(crate) iface: String,
    /// Multicast port.
    #[arg(long, default_value_t = ssm_runtime::multicast::COAP_PORT)]
    pub(crate) port: u16,
    /// Use IPv6 ff02::158 instead of IPv4 (not on lo).
    #[arg(long)]
    pub(crate) ipv6: bool,
}

impl Link {
    fn targets(&self) -> Result<MulticastTargets> {
        let scope = MulticastScope {
            interfaces: vec![self.iface.clone()],
            ipv4: !self.ipv6,
            ipv6_scopes: if self.ipv6 { vec![2] } else { vec![] },
            port: self.port,
            hops: 1,
        };
        Ok(MulticastTargets::open(&scope)?)
    }

    async fn unowned(&self, wait: Duration) -> Result<Vec<(std::net::SocketAddr, Uuid)>> {
        Ok(discover_unowned(&self.targets()?, wait).await?)
    }
}

#[derive(clap::Subcommand, Debug)]
enum SsmCmd {
    /// Let a switch command lights by SSM (example: `ssm obt ssm grant hall-switch --all`).
    Grant {
        /// The switch (name or UUID).
        client: String,
        /// Lights (names or UUIDs).
        lights: Vec<String>,
        /// Every light of the domain.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        work: Work,
    },
    /// Take lights from a switch; a switch left with none leaves the group,
    /// which is rekeyed (example: `ssm obt ssm revoke hall-switch light-2`).
    Revoke {
        /// The switch (name or UUID).
        client: String,
        /// Lights (names or UUIDs).
        lights: Vec<String>,
        /// Every light it may command.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        work: Work,
    },
    /// A new group key (new epoch) for every member (example: `ssm obt ssm rekey`).
    Rekey {
        #[command(flatten)]
        work: Work,
    },
}

fn default_domain() -> PathBuf {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("ssm/domain.sqlite")
}

fn rng(b: &mut [u8]) {
    for chunk in b.chunks_mut(32) {
        let r = random_bytes::<32>();
        chunk.copy_from_slice(&r[..chunk.len()]);
    }
}

fn progress_bar(len: usize, show: bool, what: &'static str) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    let bar = indicatif::ProgressBar::new(len as u64);
    if show && std::io::stderr().is_terminal() {
        bar.set_style(
            indicatif::ProgressStyle::with_template(&format!("{{bar:30}} {{pos}}/{{len}} {what}"))
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
    } else {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar
}

/// What happened to one device in a sync.
pub(crate) struct Synced {
    pub(crate) name: String,
    pub(crate) uuid: Uuid,
    pub(crate) outcome: Result<ssm_ocf::obt::Reconciliation, String>,
}

/// Brings `uuids` up to date with the domain: lights first (so that the
/// old key stops working before anything else), then switches; at most
/// `jobs` at once. A device that does not answer at its last endpoint is
/// looked for once by multicast on `link` (it may have restarted on
/// another port). Each success is written to the store at once.
pub(crate) async fn sync_devices(
    s: &mut Store,
    obt: Uuid,
    uuids: &[Uuid],
    link: &Link,
    jobs: usize,
    show_progress: bool,
) -> Result<Vec<Synced>> {
    let mut records: Vec<DeviceRecord> = Vec::new();
    for u in uuids {
        if let Ok(r) = s.device(&u.to_string()) {
            if !records.iter().any(|x| x.uuid == r.uuid) {
                records.push(r);
            }
        }
    }
    let bar = progress_bar(records.len(), show_progress, "devices up to date");
    let mut results = Vec::new();
    let mut found: Option<Vec<(std::net::SocketAddr, Uuid, bool)>> = None;
    for wave in [false, true] {
        let mut todo: Vec<(DeviceRecord, String)> = records
            .iter()
            .filter(|r| (r.role == "switch") == wave)
            .map(|r| (r.clone(), r.endpoint.clone()))
            .collect();
        for attempt in 0..2 {
            let sem = Arc::new(tokio::sync::Semaphore::new(jobs.max(1)));
            let mut set = tokio::task::JoinSet::new();
            for (r, ep) in todo.drain(..) {
                let want = desired(s, &r.uuid)?;
                let psk = s.owner_psk(&r.uuid)?;
                let sem = sem.clone();
                set.spawn(async move {
                    let _permit = sem.acquire_owned().await;
                    let out = match crate::client::parse_ep(&ep) {
                        Ok(peer) => {
                            sync_device(peer, obt, &psk, &want.creds, &want.aces, &mut |_, _| {})
                                .await
                                .map_err(|e| {
                                    (
                                        e.to_string(),
                                        matches!(e, ssm_runtime::obt::ObtError::Step(_)),
                                    )
                                })
                        }
                        Err(e) => Err((e.to_string(), false)),
                    };
                    (r, ep, want.is_empty(), out)
                });
            }
            let mut retry = Vec::new();
            while let Some(j) = set.join_next().await {
                let (r, ep, empty, out) = j.map_err(|e| anyhow!("sync task failed: {e}"))?;
                match out {
                    Ok(plan) => {
                        s.set_state(&r.uuid, if empty { "owned" } else { "provisioned" })?;
                        s.touch(&r.uuid, Some(&ep))?;
                        bar.inc(1);
                        results.push(Synced {
                            name: r.name.clone(),
                            uuid: r.uuid,
                            outcome: Ok(plan),
                        });
                    }
                    Err((why, refused)) => {
                        if attempt == 0 && !refused {
                            retry.push((r, why));
                        } else {
                            bar.inc(1);
                            results.push(Synced {
                                name: r.name.clone(),
                                uuid: r.uuid,
                                outcome: Err(why),
                            });
                        }
                    }
                }
            }
            if retry.is_empty() {
                break;
            }
            // Not at its last endpoint: look for it once by multicast.
            if found.is_none() {
                found = Some(match link.targets() {
                    Ok(t) => discover_devices(&t, Duration::from_millis(800))
                        .await
                        .unwrap_or_default(),
                    Err(_) => Vec::new(),
                });
            }
            let seen = found.as_deref().unwrap_or_default();
            for (r, why) in retry {
                match seen.iter().find(|(_, id, owned)| *id == r.uuid && *owned) {
                    Some((addr, _, _)) if format!("coap://{addr}") != r.endpoint => {
                        let ep = format!("coap://{addr}");
                        todo.push((r, ep));
                    }
                    Some(_) => {
                        bar.inc(1);
                        results.push(Synced {
                            name: r.name.clone(),
                            uuid: r.uuid,
                            outcome: Err(why),
                        });
                    }
                    _ => {
                        bar.inc(1);
                        results.push(Synced {
                            name: r.name.clone(),
                            uuid: r.uuid,
                            outcome: Err(format!(
                                "{why} (not found by multicast on {} either)",
                                link.iface
                            )),
                        });
                    }
                }
            }
            if todo.is_empty() {
                break;
            }
        }
    }
    bar.finish_and_clear();
    Ok(results)
}

/// Prints a sync report; true if every device is up to date.
fn report_sync(results: &[Synced], json: bool, what: serde_json::Value) -> bool {
    let failed: Vec<&Synced> = results.iter().filter(|r| r.outcome.is_err()).collect();
    if json {
        let v: Vec<_> = results
            .iter()
            .map(|r| match &r.outcome {
                Ok(p) => serde_json::json!({"device": r.name, "uuid": r.uuid, "synced": true,
                    "creds_added": p.creds_added, "creds_removed": p.creds_removed.len(),
                    "aces_added": p.aces_added, "aces_removed": p.aces_removed.len()}),
                Err(e) => serde_json::json!({"device": r.name, "uuid": r.uuid, "synced": false, "error": e}),
            })
            .collect();
        let mut out = what;
        out["devices"] = serde_json::Value::Array(v);
        out["stale"] = serde_json::json!(failed.len());
        println!("{out}");
    } else {
        println!(
            "{} device(s) up to date, {} stale",
            results.len() - failed.len(),
            failed.len()
        );
        for f in &failed {
            if let Err(e) = &f.outcome {
                println!("  stale {} ({}): {e}", f.name, f.uuid);
            }
        }
        if !failed.is_empty() {
            println!("bring them online, then run `ssm obt sync`");
        }
    }
    failed.is_empty()
}

/// Settles onboardings the OBT did not see end (it crashed, or the last
/// answer was lost): a device that accepts the stored owner key is ours
/// (marked stale, so a sync finishes its provisioning); one that refuses it
/// undid the transfer, and its record goes. Returns the devices kept.
async fn settle_onboarding(s: &mut Store, obt: Uuid) -> Result<Vec<Uuid>> {
    let mut kept = Vec::new();
    for d in s.devices()?.into_iter().filter(|d| d.state == "onboarding") {
        let psk = s.owner_psk(&d.uuid)?;
        let Ok(peer) = crate::client::parse_ep(&d.endpoint) else {
            continue;
        };
        match owns(peer, obt, &psk).await {
            Ok(true) => {
                s.set_state(&d.uuid, "stale")?;
                kept.push(d.uuid);
            }
            Ok(false) => s.forget_onboarding(&d.uuid)?,
            Err(e) => {
                tracing::warn!(device = %d.uuid, error = %e, "cannot settle an interrupted onboarding yet")
            }
        }
    }
    Ok(kept)
}

/// Onboards `found` devices with at most `jobs` at once. Each device is
/// recorded (`onboarding`, with its owner PSK) before it is changed and
/// marked `owned` when the transfer completed. Returns (endpoint, uuid or
/// reason) per device.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn onboard_many(
    s: Store,
    obt: Uuid,
    domain_name: &str,
    work: Vec<(std::net::SocketAddr, String, Option<String>, String)>,
    jobs: usize,
    show_progress: bool,
) -> Result<(Store, Vec<(String, Result<Uuid, String>)>)> {
    let store = Arc::new(Mutex::new(s));
    let bar = progress_bar(work.len(), show_progress, "onboarded");
    let sem = Arc::new(tokio::sync::Semaphore::new(jobs.max(1)));
    let mut set = tokio::task::JoinSet::new();
    for (peer, pin, name, role) in work {
        let sem = sem.clone();
        let domain_name = domain_name.to_string();
        let store = store.clone();
        set.spawn(async move {
            let _permit = sem.acquire_owned().await;
            let ep = format!("coap://{peer}");
            let new_uuid = zero_free_uuid();
            let name = name.unwrap_or_else(|| format!("{role}-{}", &new_uuid.to_string()[..8]));
            let mut recorded: Option<Onboarded> = None;
            let r = onboard_with(
                peer,
                &pin,
                obt,
                new_uuid,
                (obt, &domain_name),
                &mut |_, _| {},
                &mut |done: &Onboarded| {
                    let rec = DeviceRecord {
                        uuid: done.device_uuid,
                        name: name.clone(),
                        endpoint: ep.clone(),
                        role: role.clone(),
                        state: "onboarding".into(),
                        last_seen: None,
                    };
                    let mut st = store.lock().map_err(|_| "store poisoned".to_string())?;
                    st.add_device(&rec, &done.owner_psk)
                        .map_err(|e| e.to_string())?;
                    recorded = Some(done.clone());
                    Ok(())
                },
            )
            .await;
            let r = match (r, recorded) {
                (Ok(done), _) => Ok(done.device_uuid),
                // Recorded but not seen to complete: ask the device.
                (Err(e), Some(done)) => match owns(peer, obt, &done.owner_psk).await {
                    Ok(true) => Ok(done.device_uuid),
                    Ok(false) => {
                        if let Ok(mut st) = store.lock() {
                            let _ = st.forget_onboarding(&done.device_uuid);
                        }
                        Err(e.to_string())
                    }
                    Err(_) => Err(format!(
                        "{e} (left as `onboarding`: run `ssm obt sync` when it is back)"
                    )),
                },
                (Err(e), None) => Err(e.to_string()),
            };
            if let Ok(id) = &r {
                if let Ok(mut st) = store.lock() {
                    st.set_state(id, "owned").map_err(|e| e.to_string())?;
                    st.touch(id, Some(&ep)).map_err(|e| e.to_string())?;
                }
            }
            Ok::<_, String>((ep, r))
        });
    }
    let mut report = Vec::new();
    while let Some(j) = set.join_next().await {
        let (ep, r) = j
            .map_err(|e| anyhow!("onboarding task failed: {e}"))?
            .map_err(|e| anyhow!("domain store: {e}"))?;
        report.push((ep, r));
        bar.inc(1);
    }
    bar.finish_and_clear();
    let s = Arc::try_unwrap(store)
        .map_err(|_| anyhow!("onboarding tasks still hold the store"))?
        .into_inner()
        .map_err(|_| anyhow!("domain store poisoned"))?;
    Ok((s, report))
}

fn read_pin(pin: Option<String>, pin_file: Option<PathBuf>) -> Result<String> {
    let from_flag = pin.is_some();
    let pin = match (pin, pin_file) {
        (Some(p), _) => p,
        (None, Some(f)) => std::fs::read_to_string(&f)
            .with_context(|| format!("cannot read the PIN from {}", f.display()))?
            .trim()
            .to_string(),
        (None, None) => {
            use std::io::{BufRead, IsTerminal, Write};
            if !std::io::stdin().is_terminal() {
                return Err(crate::usage!(
                    "give the PIN the device shows: --pin 12345678 (or --pin-file)"
                ));
            }
            eprint!("PIN shown by the device: ");
            let _ = std::io::stderr().flush();
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            line.trim().to_string()
        }
    };
    if pin.len() != 8 || !pin.bytes().all(|c| c.is_ascii_digit()) {
        if from_flag {
            return Err(crate::usage!("--pin: a Random PIN is 8 digits"));
        }
        bail!("a Random PIN is 8 digits");
    }
    Ok(pin)
}

fn lights_of(s: &Store, lights: &[String], all: bool) -> Result<Vec<DeviceRecord>> {
    let v: Vec<DeviceRecord> = if all {
        s.devices()?
            .into_iter()
            .filter(|d| d.role == "light")
            .collect()
    } else {
        lights
            .iter()
            .map(|l| s.device(l))
            .collect::<Result<_, _>>()?
    };
    if v.is_empty() && !all {
        return Err(crate::usage!("no lights: name them or use --all"));
    }
    if v.is_empty() {
        bail!("no lights in the domain: onboard some first (`ssm obt onboard`)");
    }
    Ok(v)
}

/// Runs `ssm obt …`; with `--json` an error is also printed as
/// `{"error": "…", "exit": N}` on stdout (by `main`, as for every command).
pub async fn run(a: Args) -> Result<bool> {
    run_inner(a).await
}

async fn run_inner(a: Args) -> Result<bool> {
    let path = a.domain.clone().unwrap_or_else(default_domain);
    crate::state::warn_open_to_others(ssm_obt::store::domain_open_to_others(&path));
    match a.cmd {
        Cmd::Init { name } => {
            let s = Store::init(&path, zero_free_uuid(), &name)?;
            let (obt, _) = s.obt()?;
            if a.json {
                println!(
                    "{}",
                    serde_json::json!({"domain": path, "obt": obt, "name": name})
                );
            } else {
                println!("domain '{name}' at {} (OBT {obt})", path.display());
            }
            Ok(true)
        }
        Cmd::Discover { link, wait_ms } => {
            // Owned devices of this domain: by name, endpoint refreshed.
            let mut store = if path.exists() {
                Some(Store::open(&path)?)
            } else {
                None
            };
            let found = discover_devices(&link.targets()?, Duration::from_millis(wait_ms)).await?;
            let mut rows = Vec::new();
            for (ep, id, owned) in &found {
                let known = store.as_ref().and_then(|s| s.device(&id.to_string()).ok());
                if let (Some(s), Some(_)) = (store.as_mut(), &known) {
                    s.touch(id, Some(&format!("coap://{ep}")))?;
                }
                rows.push((ep, id, owned, known.map(|k| k.name)));
            }
            let unowned = rows.iter().filter(|r| !*r.2).count();
            if a.json {
                let u: Vec<_> = rows
                    .iter()
                    .filter(|r| !*r.2)
                    .map(|(ep, id, _, _)| serde_json::json!({"ep": ep.to_string(), "deviceuuid": id}))
                    .collect();
                let o: Vec<_> = rows
                    .iter()
                    .filter(|r| *r.2)
                    .map(|(ep, id, _, name)| serde_json::json!({"ep": ep.to_string(), "deviceuuid": id, "name": name}))
                    .collect();
                println!("{}", serde_json::json!({"unowned": u, "owned": o}));
            } else {
                println!(
                    "{unowned} unowned, {} owned device(s)",
                    rows.len() - unowned
                );
                for (ep, id, owned, name) in &rows {
                    let what = match (owned, name) {
                        (false, _) => "unowned".to_string(),
                        (true, Some(n)) => format!("owned: {n}"),
                        (true, None) => "owned by another domain".to_string(),
                    };
                    println!("  {ep}  {id}  {what}");
                }
            }
            Ok(true)
        }
        Cmd::Onboard {
            ep,
            all,
            pins,
            link,
            jobs,
            pin,
            pin_file,
            name,
            role,
        } => {
            let mut s = Store::open(&path)?;
            let (obt, domain_name) = s.obt()?;
            let settled = settle_onboarding(&mut s, obt).await?;
            let work = if all {
                let pins = pins.ok_or_else(|| {
                    crate::usage!("--all needs --pins FILE with `<device uuid> <PIN>` lines")
                })?;
                let table = std::fs::read_to_string(&pins)
                    .with_context(|| format!("cannot read {}", pins.display()))?;
                // `<device uuid> <PIN> [name] [light|switch]` per line.
                let row_of = |id: &Uuid| {
                    table.lines().find_map(|l| {
                        let f: Vec<&str> = l.split_whitespace().collect();
                        (f.first() == Some(&id.to_string().as_str()) && f.len() >= 2).then(|| {
                            (
                                f[1].to_string(),
                                f.get(2).map(|s| s.to_string()),
                                f.get(3).map(|s| s.to_string()),
                            )
                        })
                    })
                };
                let found = link.unowned(Duration::from_millis(1000)).await?;
                let mut work = Vec::new();
                let mut missing = Vec::new();
                for (peer, current) in found {
                    match row_of(&current) {
                        Some((_, _, Some(r))) if r != "light" && r != "switch" => missing.push((
                            format!("coap://{peer}"),
                            Err(format!(
                                "role {r:?} for device {current} in the PIN file: light or switch"
                            )),
                        )),
                        Some((p, n, r)) => {
                            work.push((peer, p, n, r.unwrap_or_else(|| role.clone())))
                        }
                        None => missing.push((
                            format!("coap://{peer}"),
                            Err(format!("no PIN for device {current} in the PIN file")),
                        )),
                    }
                }
                (work, missing)
            } else {
                let ep = ep.ok_or_else(|| crate::usage!("give the device endpoint, or --all"))?;
                let pin = read_pin(pin, pin_file)?;
                let peer = crate::client::parse_ep(&ep)?;
                (vec![(peer, pin, name, role.clone())], Vec::new())
            };
            let (work, mut report) = work;
            let (mut s, done) =
                onboard_many(s, obt, &domain_name, work, jobs as usize, !a.json && all).await?;
            report.extend(done);
            // Interrupted earlier onboardings the devices confirmed: finish them.
            let synced = sync_devices(&mut s, obt, &settled, &link, jobs as usize, false).await?;
            let ok = report.iter().filter(|r| r.1.is_ok()).count();
            let names: Vec<Option<String>> = report
                .iter()
                .map(|(_, r)| {
                    r.as_ref()
                        .ok()
                        .and_then(|u| s.device(&u.to_string()).ok())
                        .map(|d| d.name)
                })
                .collect();
            if a.json {
                let v: Vec<_> = report
                    .iter()
                    .zip(&names)
                    .map(|((ep, r), name)| match r {
                        Ok(u) => serde_json::json!({"ep": ep, "onboarded": u, "name": name}),
                        Err(e) => serde_json::json!({"ep": ep, "error": e}),
                    })
                    .collect();
                println!(
                    "{}",
                    serde_json::json!({"onboarded": ok, "failed": report.len() - ok, "resumed": synced.len(), "devices": v})
                );
            } else {
                if !all && report.len() == 1 {
                    if let (Ok(u), Some(n)) = (&report[0].1, &names[0]) {
                        println!("onboarded {} as {n} ({u})", report[0].0);
                    }
                } else {
                    println!("onboarded {ok} of {} device(s)", report.len());
                }
                if !synced.is_empty() {
                    println!("finished {} interrupted onboarding(s)", synced.len());
                }
                for (ep, r) in &report {
                    if let Err(e) = r {
                        println!("  failed {ep}: {e}");
                    }
                }
            }
            if !all && ok == 0 {
                if let Some((ep, Err(e))) = report.first() {
                    bail!("onboarding {ep}: {e}");
                }
            }
            Ok(ok == report.len() && synced.iter().all(|r| r.outcome.is_ok()))
        }
        Cmd::List => {
            let s = Store::open(&path)?;
            let devs = s.devices()?;
            if a.json {
                let v: Vec<_> = devs.iter().map(|d| serde_json::json!({"uuid": d.uuid, "name": d.name, "role": d.role, "state": d.state, "ep": d.endpoint, "last_seen": d.last_seen})).collect();
                let g = s.group()?.map(|g| g.epoch);
                println!("{}", serde_json::json!({"devices": v, "ssm_epoch": g}));
            } else {
                println!(
                    "{:<20} {:<7} {:<12} {:<21} {:<37} endpoint",
                    "name", "role", "state", "last seen", "uuid"
                );
                for d in &devs {
                    println!(
                        "{:<20} {:<7} {:<12} {:<21} {:<37} {}",
                        d.name,
                        d.role,
                        d.state,
                        d.last_seen.as_deref().unwrap_or("-"),
                        d.uuid,
                        d.endpoint
                    );
                }
            }
            Ok(true)
        }
        Cmd::Show { device } => {
            let s = Store::open(&path)?;
            let d = s.device(&device)?;
            let grants = s.grants()?;
            let name = |u: &Uuid| {
                s.device(&u.to_string())
                    .map(|d| d.name)
                    .unwrap_or_else(|_| u.to_string())
            };
            let commands: Vec<String> = grants
                .iter()
                .filter(|g| g.0 == d.uuid)
                .map(|g| name(&g.1))
                .collect();
            let commanded_by: Vec<String> = grants
                .iter()
                .filter(|g| g.1 == d.uuid)
                .map(|g| name(&g.0))
                .collect();
            let group = s.group()?;
            let member = !commands.is_empty() || !commanded_by.is_empty();
            let sid = s.current_sender_id(&d.uuid)?;
            let audit = s.audit_of(&d.uuid.to_string(), 10)?;
            if a.json {
                println!(
                    "{}",
                    serde_json::json!({
                        "uuid": d.uuid, "name": d.name, "role": d.role, "state": d.state,
                        "ep": d.endpoint, "last_seen": d.last_seen,
                        "ssm": {"member": member, "epoch": group.as_ref().filter(|_| member).map(|g| g.epoch), "sender_id": sid,
                                "commands": commands, "commanded_by": commanded_by},
                        "audit": audit.iter().map(|(at, what, detail)| serde_json::json!({"at": at, "action": what, "detail": detail})).collect::<Vec<_>>(),
                    })
                );
            } else {
                println!("{} ({})", d.name, d.uuid);
                println!("  role       {}", d.role);
                println!("  state      {}", d.state);
                println!("  endpoint   {}", d.endpoint);
                println!("  last seen  {}", d.last_seen.as_deref().unwrap_or("never"));
                match (&group, member) {
                    (Some(g), true) => println!(
                        "  SSM group  member, epoch {}{}",
                        g.epoch,
                        sid.map(|s| format!(", Sender ID {s}")).unwrap_or_default()
                    ),
                    _ => println!("  SSM group  not a member"),
                }
                if !commands.is_empty() {
                    println!("  commands   {}", commands.join(", "));
                }
                if !commanded_by.is_empty() {
                    println!("  commanded by {}", commanded_by.join(", "));
                }
                if !audit.is_empty() {
                    println!("  recent changes:");
                    for (at, what, detail) in audit.iter().rev() {
                        println!("    {at}  {what}  {detail}");
                    }
                }
            }
            Ok(true)
        }
        Cmd::Offboard {
            device,
            work: Work { link, jobs },
        } => {
            let mut s = Store::open(&path)?;
            let (obt, _) = s.obt()?;
            let d = s.device(&device)?;
            // Reset first: if that fails the device is still ours to retry;
            // once forgotten, nothing could reach it any more.
            let reset = match crate::client::parse_ep(&d.endpoint) {
                Ok(peer) => hard_reset(peer, obt, &*s.owner_psk(&d.uuid)?)
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = &reset {
                tracing::warn!(device = %d.name, error = %e, "hard reset failed; removing it anyway (its keys are rekeyed away)");
            }
            let (epoch, members) = s.remove_device(&d.uuid, &mut rng)?;
            let results =
                sync_devices(&mut s, obt, &members, &link, jobs as usize, !a.json).await?;
            if !a.json {
                println!(
                    "removed {} ({}); {}",
                    d.name,
                    d.uuid,
                    match &reset {
                        Ok(()) => "it was hard-reset (holds no keys of this domain)".to_string(),
                        Err(e) => format!("it could not be reset ({e}): reset it by hand"),
                    }
                );
                if let Some(e) = epoch {
                    println!("SSM group rekeyed to epoch {e}");
                }
            }
            Ok(report_sync(
                &results,
                a.json,
                serde_json::json!({"removed": d.uuid, "name": d.name, "reset": reset.is_ok(), "epoch": epoch}),
            ))
        }
        Cmd::Sync {
            devices,
            all,
            work: Work { link, jobs },
        } => {
            let mut s = Store::open(&path)?;
            let (obt, _) = s.obt()?;
            let mut targets = settle_onboarding(&mut s, obt).await?;
            if all {
                targets.extend(s.devices()?.iter().map(|d| d.uuid));
            } else if devices.is_empty() {
                targets.extend(
                    s.devices()?
                        .iter()
                        .filter(|d| d.state == "stale")
                        .map(|d| d.uuid),
                );
            } else {
                for d in &devices {
                    targets.push(s.device(d)?.uuid);
                }
            }
            let results =
                sync_devices(&mut s, obt, &targets, &link, jobs as usize, !a.json).await?;
            Ok(report_sync(&results, a.json, serde_json::json!({})))
        }
        Cmd::Ssm(SsmCmd::Grant {
            client,
            lights,
            all,
            work: Work { link, jobs },
        }) => {
            let mut s = Store::open(&path)?;
            let (obt, _) = s.obt()?;
            let c = s.device(&client)?;
            if c.role != "switch" {
                bail!(
                    "{} is a {}; grant a switch (a client) to lights",
                    c.name,
                    c.role
                );
            }
            let targets = lights_of(&s, &lights, all)?;
            let ids: Vec<Uuid> = targets.iter().map(|t| t.uuid).collect();
            let affected = s.grant_lights(&c.uuid, &ids, &mut rng)?;
            let results =
                sync_devices(&mut s, obt, &affected, &link, jobs as usize, !a.json).await?;
            let sid = s.current_sender_id(&c.uuid)?;
            let epoch = s.group()?.map(|g| g.epoch);
            if !a.json {
                println!(
                    "{} may command {} light(s) by SSM (epoch {}, Sender ID {})",
                    c.name,
                    ids.len(),
                    epoch.unwrap_or(0),
                    sid.as_deref().unwrap_or("-")
                );
            }
            Ok(report_sync(
                &results,
                a.json,
                serde_json::json!({"client": c.uuid, "sender_id": sid, "epoch": epoch, "granted": ids.len()}),
            ))
        }
        Cmd::Ssm(SsmCmd::Revoke {
            client,
            lights,
            all,
            work: Work { link, jobs },
        }) => {
            let mut s = Store::open(&path)?;
            let (obt, _) = s.obt()?;
            let c = s.device(&client)?;
            let ids: Vec<Uuid> = if all {
                s.grants()?
                    .into_iter()
                    .filter(|g| g.0 == c.uuid)
                    .map(|g| g.1)
                    .collect()
            } else {
                lights_of(&s, &lights, false)?
                    .iter()
                    .map(|l| l.uuid)
                    .collect()
            };
            if ids.is_empty() {
                bail!("{} may command no light", c.name);
            }
            let (affected, epoch) = s.revoke_lights(&c.uuid, &ids, &mut rng)?;
            let results =
                sync_devices(&mut s, obt, &affected, &link, jobs as usize, !a.json).await?;
            if !a.json {
                println!("{} may no longer command {} light(s)", c.name, ids.len());
                if let Some(e) = epoch {
                    println!("it left the SSM group: rekeyed to epoch {e}");
                }
            }
            Ok(report_sync(
                &results,
                a.json,
                serde_json::json!({"client": c.uuid, "revoked": ids.len(), "epoch": epoch}),
            ))
        }
        Cmd::Ssm(SsmCmd::Rekey {
            work: Work { link, jobs },
        }) => {
            let mut s = Store::open(&path)?;
            let (obt, _) = s.obt()?;
            if s.group()?.is_none() {
                bail!("no SSM group yet: grant a switch first (`ssm obt ssm grant`)");
            }
            let (epoch, members) = s.rekey(&mut rng, "requested")?;
            let results =
                sync_devices(&mut s, obt, &members, &link, jobs as usize, !a.json).await?;
            if !a.json {
                println!("SSM group rekeyed to epoch {epoch}");
            }
            Ok(report_sync(
                &results,
                a.json,
                serde_json::json!({"epoch": epoch}),
            ))
        }
    }
}

//! The building over light processes: `ssm-bench building-host` runs a
//! share of the lights (tasks sharing one floor journal) and reports each
//! apply on stdout with its CLOCK_MONOTONIC instant; on `report` (a stdin
//! line) it prints its counters. The lights of a zone are spread over the
//! processes (light g runs in process g mod P), so every command needs
//! all of them.
use super::{commands, lo_targets, senders, Applies, Run, Zone};
use crate::common::*;
use anyhow::{bail, Context, Result};
use ssm_ocf::cred::CredResource;
use ssm_ocf::provision::Member;
use ssm_ocf::ssm::DropReason;
use ssm_ocf::Uuid;
use ssm_runtime::device::DeviceEvent;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

/// Options of `ssm-bench building-host` (started by `building --mode procs`).
#[derive(clap::Args, Debug, Clone)]
pub struct HostArgs {
    /// The lights to run: a JSON array of {"index", "uuid", "creds"} (0600).
    #[arg(long)]
    pub lights: PathBuf,
    /// Their state (light dirs and the floor journal).
    #[arg(long)]
    pub dir: PathBuf,
    /// Multicast port.
    #[arg(long)]
    pub port: u16,
    /// One socket per group for all the lights (`DeviceConfig::group_hub`).
    #[arg(long)]
    pub hub: bool,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct HostLight {
    index: usize,
    uuid: Uuid,
    creds: String,
}

/// `ssm-bench building-host`.
pub async fn host(a: HostArgs) -> Result<bool> {
    let list: Vec<HostLight> = serde_json::from_str(&std::fs::read_to_string(&a.lights)?)?;
    let members: Vec<Member> = list
        .iter()
        .map(|l| {
            Ok(Member {
                uuid: l.uuid,
                creds: CredResource::from_json(&l.creds)?,
            })
        })
        .collect::<Result<_>>()?;
    let journal = ssm_runtime::journal::FloorJournal::open(a.dir.join("floors.journal"))?;
    let hub = a.hub.then(ssm_runtime::device::GroupHub::new);
    let handles = start_lights(&members, &a.dir, a.port, Some(journal), hub).await?;
    drop(members);
    let (tx, mut out) = tokio::sync::mpsc::unbounded_channel::<String>();
    for (h, l) in handles.iter().zip(&list) {
        let mut rx = h.events.subscribe();
        let (tx, index) = (tx.clone(), l.index);
        tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(DeviceEvent::SsmApplied { piv, from, at, .. }) => {
                        let at = super::instant_ns(at);
                        let line = serde_json::json!({"event": "applied", "light": index, "piv": piv, "from": from, "at_mono_ns": at});
                        if tx.send(line.to_string()).is_err() {
                            return;
                        }
                    }
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => return,
                }
            }
        });
    }
    drop(tx);
    let printer = tokio::spawn(async move {
        while let Some(l) = out.recv().await {
            let mut o = std::io::stdout().lock();
            if writeln!(o, "{l}").and_then(|_| o.flush()).is_err() {
                return;
            }
        }
    });
    println!(
        "{}",
        serde_json::json!({"event": "ready", "lights": handles.len()})
    );
    // stdin lines, read on a thread of their own; its end stops the host.
    let (cmd_tx, mut cmds) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for l in std::io::stdin().lines().map_while(Result::ok) {
            if cmd_tx.send(l).is_err() {
                return;
            }
        }
    });
    while let Some(cmd) = cmds.recv().await {
        if cmd.trim() != "report" {
            continue;
        }
        let applied: Vec<u64> = handles.iter().map(|h| h.ssm_applied()).collect();
        let (mut unknown, mut aead) = (0, 0);
        for h in &handles {
            let d = h.drops();
            unknown += d.0.get(&DropReason::UnknownKid).copied().unwrap_or(0);
            aead += d.total() - d.cheap();
        }
        let index: Vec<usize> = list.iter().map(|l| l.index).collect();
        let line = serde_json::json!({"event": "counters", "light": index, "applied": applied, "unknown_kid": unknown, "aead": aead});
        // Printed directly: the applies before it are all out (the command
        // loop waited for them).
        let mut o = std::io::stdout().lock();
        let _ = writeln!(o, "{line}");
        let _ = o.flush();
    }
    drop(handles);
    printer.abort();
    Ok(true)
}

/// A line of a host, parsed.
enum Msg {
    Ready,
    Applied {
        light: usize,
        piv: u64,
        from: Option<Uuid>,
        at: u64,
    },
    Counters(serde_json::Value),
}

fn parse(v: serde_json::Value) -> Option<Msg> {
    match v["event"].as_str()? {
        "ready" => Some(Msg::Ready),
        "applied" => Some(Msg::Applied {
            light: v["light"].as_u64()? as usize,
            piv: v["piv"].as_u64()?,
            from: v["from"].as_str().and_then(|s| s.parse().ok()),
            at: v["at_mono_ns"].as_u64()?,
        }),
        "counters" => Some(Msg::Counters(v)),
        _ => None,
    }
}

struct ProcEvents(tokio::sync::mpsc::UnboundedReceiver<Msg>);

impl Applies for ProcEvents {
    async fn collect(
        &mut self,
        members: &[usize],
        switch: Uuid,
        piv: u64,
        limit: Duration,
    ) -> Vec<u64> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut got = std::collections::HashMap::new();
        while got.len() < members.len() {
            match tokio::time::timeout_at(deadline, self.0.recv()).await {
                Ok(Some(Msg::Applied {
                    light,
                    piv: p,
                    from,
                    at,
                })) if p == piv && from == Some(switch) && members.contains(&light) => {
                    got.insert(light, at);
                }
                Ok(Some(_)) => {}
                _ => break,
            }
        }
        got.into_values().collect()
    }
}

/// Writes a file only its owner may read (the lights' keys).
fn write_private(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(bytes)?;
    Ok(())
}

/// Starts one `building-host` with `lights`; its lines go to `tx`.
fn spawn_host(
    exe: &std::path::Path,
    d: &std::path::Path,
    lights: &[HostLight],
    port: u16,
    hub: bool,
    tx: &tokio::sync::mpsc::UnboundedSender<Msg>,
) -> Result<(tokio::process::Child, tokio::process::ChildStdin)> {
    std::fs::create_dir_all(d)?;
    let file = d.join("lights.json");
    write_private(&file, &serde_json::to_vec(lights)?)?;
    let mut c = tokio::process::Command::new(exe)
        .arg("building-host")
        .arg("--lights")
        .arg(&file)
        .arg("--dir")
        .arg(d)
        .args(["--port", &port.to_string()])
        .args(hub.then_some("--hub"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start ssm-bench building-host")?;
    let stdin = c.stdin.take().context("no stdin")?;
    let stdout = c.stdout.take().context("no stdout")?;
    let tx = tx.clone();
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        while let Ok(Some(l)) = lines.next_line().await {
            if let Some(m) = serde_json::from_str(&l).ok().and_then(parse) {
                if tx.send(m).is_err() {
                    return;
                }
            }
        }
    });
    Ok((c, stdin))
}

/// The building over `procs` `building-host` processes.
pub async fn procs(zs: &[Zone], rounds: usize, port: u16, procs: usize, hub: bool) -> Result<Run> {
    let dir = TempDir::new("building-procs")?;
    let per = zs[0].lights.len();
    let exe = std::env::current_exe()?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Msg>();
    let mut children = Vec::new();
    let mut stdins = Vec::new();
    for p in 0..procs {
        let mine: Vec<HostLight> = zs
            .iter()
            .flat_map(|z| z.lights.iter())
            .enumerate()
            .filter(|(g, _)| g % procs == p)
            .map(|(index, l)| HostLight {
                index,
                uuid: l.uuid,
                creds: l.creds.to_json(),
            })
            .collect();
        let (c, stdin) = spawn_host(
            &exe,
            &dir.0.join(format!("host-{p}")),
            &mine,
            port,
            hub,
            &tx,
        )?;
        stdins.push(stdin);
        children.push(c);
    }
    drop(tx);
    let mut events = ProcEvents(rx);
    let result = async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        let mut ready = 0;
        while ready < procs {
            match tokio::time::timeout_at(deadline, events.0.recv()).await {
                Ok(Some(Msg::Ready)) => ready += 1,
                Ok(Some(_)) => {}
                _ => bail!("only {ready}/{procs} light processes became ready"),
            }
        }
        let rss = |children: &[tokio::process::Child]| -> u64 {
            children
                .iter()
                .filter_map(|c| c.id())
                .filter_map(|pid| rss_kib(&pid.to_string()).ok())
                .map(|(r, _)| r)
                .sum()
        };
        let mut run = Run {
            mode: if hub { "procs-hub" } else { "procs" }.into(),
            zones: zs.len(),
            per_zone: per,
            procs,
            base_rss_kib: rss(&children),
            ..Run::default()
        };
        let mut senders = senders(zs, &dir.0)?;
        let targets = lo_targets(port)?;
        commands(zs, &mut senders, &targets, rounds, &mut events, &mut run).await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
        run.rss_kib = rss(&children);
        for s in &mut stdins {
            s.write_all(b"report\n").await?;
            s.flush().await?;
        }
        let own = (rounds + 1) as u64;
        let mut reports = 0;
        while reports < procs {
            match tokio::time::timeout_at(deadline, events.0.recv()).await {
                Ok(Some(Msg::Counters(v))) => {
                    reports += 1;
                    for a in v["applied"].as_array().into_iter().flatten() {
                        run.wrong_applies += a.as_u64().unwrap_or(0).saturating_sub(own);
                    }
                    run.unknown_kid_drops += v["unknown_kid"].as_u64().unwrap_or(0);
                    run.aead_drops += v["aead"].as_u64().unwrap_or(0);
                }
                Ok(Some(_)) => {}
                _ => bail!("only {reports}/{procs} light processes reported their counters"),
            }
        }
        run.expected_unknown_kid_drops = ((zs.len() - 1) * per * zs.len()) as u64 * own;
        Ok(run)
    }
    .await;
    drop(stdins);
    for c in children.iter_mut() {
        if tokio::time::timeout(Duration::from_secs(5), c.wait())
            .await
            .is_err()
        {
            let _ = c.start_kill();
            let _ = c.wait().await;
        }
    }
    result
}

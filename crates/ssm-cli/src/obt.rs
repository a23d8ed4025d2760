//! `ssm obt`: the onboarding tool.
use anyhow::{anyhow, bail, Context, Result};
use ssm_obt::store::{DeviceRecord, Store};
use ssm_ocf::cred::{Credential, OscoreFields, PrivateData};
use ssm_ocf::security::acl2::{Ace, AceResource, AceSubject, PERM_N, PERM_R, PERM_U};
use ssm_ocf::switch::HREF;

use ssm_runtime::client::{MulticastScope, MulticastTargets};
use ssm_runtime::obt::{discover_unowned, onboard, provision, zero_free_uuid};
use ssm_runtime::random_bytes;
use std::path::PathBuf;
use std::time::Duration;

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
    /// Find unowned devices by multicast on an interface.
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
        /// With --all: a file of `<device uuid> <PIN>` lines (the PINs the
        /// devices show).
        #[arg(long)]
        pins: Option<PathBuf>,
        /// With --all: where to discover.
        #[command(flatten)]
        link: Link,
        /// With --all: devices onboarded at once.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
        jobs: u32,
        /// The PIN the device shows.
        #[arg(long)]
        pin: Option<String>,
        /// Read the PIN from this file (headless devices write `<state>/pin`).
        #[arg(long)]
        pin_file: Option<PathBuf>,
        /// Name to remember it by.
        #[arg(long)]
        name: Option<String>,
        /// light or switch.
        #[arg(long, default_value = "light")]
        role: String,
    },
    /// List the devices of the domain.
    List,
    /// SSM group management.
    #[command(subcommand)]
    Ssm(SsmCmd),
}

/// Where the OBT looks for unowned devices.
#[derive(clap::Args, Debug)]
struct Link {
    /// Interface (only named interfaces are used).
    #[arg(long, default_value = "lo")]
    iface: String,
    /// Multicast port.
    #[arg(long, default_value_t = ssm_runtime::multicast::COAP_PORT)]
    port: u16,
    /// Use IPv6 ff02::158 instead of IPv4 (not on lo).
    #[arg(long)]
    ipv6: bool,
}

impl Link {
    async fn unowned(&self, wait: Duration) -> Result<Vec<(std::net::SocketAddr, ssm_ocf::Uuid)>> {
        let scope = MulticastScope {
            interfaces: vec![self.iface.clone()],
            ipv4: !self.ipv6,
            ipv6_scopes: if self.ipv6 { vec![2] } else { vec![] },
            port: self.port,
            hops: 1,
        };
        Ok(discover_unowned(&MulticastTargets::open(&scope)?, wait).await?)
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

pub async fn run(a: Args) -> Result<bool> {
    let path = a.domain.clone().unwrap_or_else(default_domain);
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
            let found = link.unowned(Duration::from_millis(wait_ms)).await?;
            if a.json {
                let v: Vec<_> = found
                    .iter()
                    .map(|(ep, id)| serde_json::json!({"ep": ep.to_string(), "deviceuuid": id}))
                    .collect();
                println!("{}", serde_json::json!({"unowned": v}));
            } else {
                println!("{} unowned device(s)", found.len());
                for (ep, id) in &found {
                    println!("  {ep}  {id}");
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
            if all {
                let pins = pins.ok_or_else(|| {
                    anyhow!("--all needs --pins FILE with `<device uuid> <PIN>` lines")
                })?;
                let table = std::fs::read_to_string(&pins)
                    .with_context(|| format!("cannot read {}", pins.display()))?;
                let found = link.unowned(Duration::from_millis(1000)).await?;
                let report = bulk_onboard(
                    &mut s,
                    obt,
                    &domain_name,
                    &role,
                    found,
                    &table,
                    jobs as usize,
                    !a.json,
                )
                .await?;
                let ok = report.iter().filter(|r| r.1.is_ok()).count();
                if a.json {
                    let v: Vec<_> = report
                        .iter()
                        .map(|(ep, r)| match r {
                            Ok(u) => serde_json::json!({"ep": ep, "onboarded": u}),
                            Err(e) => serde_json::json!({"ep": ep, "error": e}),
                        })
                        .collect();
                    println!(
                        "{}",
                        serde_json::json!({"onboarded": ok, "failed": report.len() - ok, "devices": v})
                    );
                } else {
                    println!("onboarded {ok} of {} device(s)", report.len());
                    for (ep, r) in &report {
                        if let Err(e) = r {
                            println!("  failed {ep}: {e}");
                        }
                    }
                }
                return Ok(ok == report.len());
            }
            let ep = ep.ok_or_else(|| anyhow!("give the device endpoint, or --all"))?;
            let pin = match (pin, pin_file) {
                (Some(p), _) => p,
                (None, Some(f)) => std::fs::read_to_string(&f)
                    .with_context(|| format!("cannot read the PIN from {}", f.display()))?
                    .trim()
                    .to_string(),
                (None, None) => {
                    bail!("give the PIN the device shows: --pin 12345678 (or --pin-file)")
                }
            };
            if pin.len() != 8 || !pin.bytes().all(|c| c.is_ascii_digit()) {
                bail!("a Random PIN is 8 digits");
            }
            let peer = crate::client::parse_ep(&ep)?;
            let new_id = zero_free_uuid();
            let done = onboard(peer, &pin, obt, new_id, (obt, &domain_name), &mut |_, _| {})
                .await
                .with_context(|| format!("onboarding {ep}"))?;
            let rec = DeviceRecord {
                uuid: done.device_uuid,
                name: name
                    .unwrap_or_else(|| format!("{role}-{}", &done.device_uuid.to_string()[..8])),
                endpoint: format!("coap://{peer}"),
                role,
                state: "owned".into(),
            };
            s.add_device(&rec, &done.owner_psk)?;
            if a.json {
                println!(
                    "{}",
                    serde_json::json!({"onboarded": rec.uuid, "name": rec.name, "ep": rec.endpoint})
                );
            } else {
                println!("onboarded {} as {} ({})", ep, rec.name, rec.uuid);
            }
            Ok(true)
        }
        Cmd::List => {
            let s = Store::open(&path)?;
            let devs = s.devices()?;
            if a.json {
                let v: Vec<_> = devs.iter().map(|d| serde_json::json!({"uuid": d.uuid, "name": d.name, "role": d.role, "state": d.state, "ep": d.endpoint})).collect();
                println!("{}", serde_json::json!({"devices": v}));
            } else {
                println!(
                    "{:<20} {:<8} {:<12} {:<38} {}",
                    "name", "role", "state", "uuid", "endpoint"
                );
                for d in &devs {
                    println!(
                        "{:<20} {:<8} {:<12} {:<38} {}",
                        d.name, d.role, d.state, d.uuid, d.endpoint
                    );
                }
            }
            Ok(true)
        }
        Cmd::Ssm(SsmCmd::Grant {
            client,
            lights,
            all,
        }) => {
            let mut s = Store::open(&path)?;
            let (obt, _) = s.obt()?;
            let c = s.device(&client)?;
            let targets: Vec<DeviceRecord> = if all {
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
            if targets.is_empty() {
                bail!("no lights to grant: name them or use --all");
            }
            let Granted {
                sender_id: sid_hex,
                failures,
            } = grant_ssm(&mut s, obt, &c, &targets).await?;
            if a.json {
                println!(
                    "{}",
                    serde_json::json!({"client": c.uuid, "sender_id": sid_hex, "granted": targets.len() - failures.len(), "failed": failures})
                );
            } else {
                println!(
                    "{} may command {} light(s) by SSM (Sender ID {sid_hex})",
                    c.name,
                    targets.len() - failures.len()
                );
                for f in &failures {
                    println!("  failed: {f}");
                }
            }
            if !failures.is_empty() {
                return Err(anyhow!(
                    "{} light(s) not provisioned; re-run the same command to finish",
                    failures.len()
                ));
            }
            Ok(true)
        }
    }
}

/// What [`grant_ssm`] did.
pub(crate) struct Granted {
    /// The switch's SSM Sender ID (hex).
    pub sender_id: String,
    /// `name: reason` of every light not provisioned.
    pub failures: Vec<String>,
}

/// Provisions the SSM client credential (and a pair-wise context per
/// light) on switch `c`, and the SSM server credential, the pair-wise
/// context and an ACE for `c` on every light of `targets`; records the
/// grants. Shared by `ssm obt ssm grant` and `ssm demo`.
pub(crate) async fn grant_ssm(
    s: &mut Store,
    obt: ssm_ocf::Uuid,
    c: &DeviceRecord,
    targets: &[DeviceRecord],
) -> Result<Granted> {
    let (secret, epoch) = s.group_secret(&mut rng)?;
    let sid = s.sender_id(&c.uuid, epoch, &mut rng)?;
    let sid_hex = hex::encode(sid);
    let client_cred = Credential {
        credid: 0,
        subjectuuid: ssm_ocf::provision::client_cred_subject(&sid).to_string(),
        credtype: 128,
        privatedata: Some(PrivateData::raw(&secret[..])),
        oscore: Some(OscoreFields {
            senderid: Some(sid_hex.clone()),
            desc: Some(format!("SSM epoch {epoch}")),
            ..Default::default()
        }),
    };
    // A pair-wise OSCORE context (credtype 64) per light, for
    // unicast UPDATE and read-back.
    let pairs: Vec<_> = targets.iter().map(|l| pairwise(c.uuid, l.uuid)).collect();
    let mut switch_creds = vec![client_cred];
    switch_creds.extend(pairs.iter().map(|(for_switch, _)| for_switch.clone()));
    let cpeer = crate::client::parse_ep(&c.endpoint)?;
    provision(
        cpeer,
        obt,
        &*s.owner_psk(&c.uuid)?,
        ssm_ocf::obt::provision(switch_creds, vec![]),
        &mut |_, _| {},
    )
    .await
    .with_context(|| format!("provisioning switch {}", c.name))?;
    s.set_state(&c.uuid, "provisioned")?;
    let mut failures = Vec::new();
    for (l, (_, for_light)) in targets.iter().zip(pairs.iter()) {
        let server = Credential {
            credid: 0,
            subjectuuid: c.uuid.to_string(),
            credtype: 256,
            privatedata: Some(PrivateData::raw(&secret[..])),
            oscore: Some(OscoreFields {
                recipientid: Some(sid_hex.clone()),
                desc: Some(format!("SSM epoch {epoch}")),
                ..Default::default()
            }),
        };
        let ace = Ace {
            aceid: 0,
            subject: AceSubject::Uuid { uuid: c.uuid },
            resources: vec![AceResource::Href { href: HREF.into() }],
            permission: PERM_R | PERM_U | PERM_N,
        };
        let peer = crate::client::parse_ep(&l.endpoint)?;
        let r = provision(
            peer,
            obt,
            &*s.owner_psk(&l.uuid)?,
            ssm_ocf::obt::provision(vec![server, for_light.clone()], vec![ace]),
            &mut |_, _| {},
        )
        .await;
        match r {
            Ok(()) => {
                s.grant(&c.uuid, &l.uuid)?;
                s.set_state(&l.uuid, "provisioned")?;
            }
            Err(e) => failures.push(format!("{}: {e}", l.name)),
        }
    }
    Ok(Granted {
        sender_id: sid_hex,
        failures,
    })
}

/// A pair-wise OSCORE credential pair (credtype 64): (the switch's, the
/// light's), with one fresh 32-byte secret and two fresh IDs (prefix 0x01).
fn pairwise(switch: ssm_ocf::Uuid, light: ssm_ocf::Uuid) -> (Credential, Credential) {
    let mut secret = [0u8; 32];
    rng(&mut secret);
    let mut a = [0u8; 7];
    let mut b = [0u8; 7];
    rng(&mut a);
    rng(&mut b);
    a[0] = 0x01;
    b[0] = 0x01;
    if a == b {
        b[6] ^= 0xff;
    }
    let cred = |subject: ssm_ocf::Uuid, s: [u8; 7], r: [u8; 7]| Credential {
        credid: 0,
        subjectuuid: subject.to_string(),
        credtype: 64,
        privatedata: Some(PrivateData::raw(&secret)),
        oscore: Some(OscoreFields {
            senderid: Some(hex::encode(s)),
            recipientid: Some(hex::encode(r)),
            ..Default::default()
        }),
    };
    (cred(light, a, b), cred(switch, b, a))
}

/// Onboards `found` devices with at most `jobs` at once, a progress bar on
/// a terminal, and one store write per success (the store is only touched
/// from this task). Returns (endpoint, uuid or reason) per device.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn bulk_onboard(
    s: &mut Store,
    obt: ssm_ocf::Uuid,
    domain_name: &str,
    role: &str,
    found: Vec<(std::net::SocketAddr, ssm_ocf::Uuid)>,
    pins: &str,
    jobs: usize,
    show_progress: bool,
) -> Result<Vec<(String, Result<ssm_ocf::Uuid, String>)>> {
    let pin_of = |id: &ssm_ocf::Uuid| {
        pins.lines().find_map(|l| {
            let mut f = l.split_whitespace();
            if f.next()? == id.to_string() {
                f.next().map(String::from)
            } else {
                None
            }
        })
    };
    let bar = indicatif::ProgressBar::new(found.len() as u64);
    if show_progress {
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} onboarded")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
    } else {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(jobs));
    let mut set = tokio::task::JoinSet::new();
    let mut report = Vec::new();
    for (peer, current) in found {
        let Some(pin) = pin_of(&current) else {
            report.push((
                format!("coap://{peer}"),
                Err(format!("no PIN for device {current} in the PIN file")),
            ));
            continue;
        };
        let sem = sem.clone();
        let domain_name = domain_name.to_string();
        set.spawn(async move {
            let _permit = sem.acquire_owned().await;
            let r = onboard(
                peer,
                &pin,
                obt,
                zero_free_uuid(),
                (obt, &domain_name),
                &mut |_, _| {},
            )
            .await;
            (peer, r)
        });
    }
    while let Some(j) = set.join_next().await {
        let (peer, r) = j.map_err(|e| anyhow!("onboarding task failed: {e}"))?;
        let ep = format!("coap://{peer}");
        match r {
            Ok(done) => {
                let rec = DeviceRecord {
                    uuid: done.device_uuid,
                    name: format!("{role}-{}", &done.device_uuid.to_string()[..8]),
                    endpoint: ep.clone(),
                    role: role.to_string(),
                    state: "owned".into(),
                };
                s.add_device(&rec, &done.owner_psk)?;
                report.push((ep, Ok(done.device_uuid)));
            }
            Err(e) => report.push((ep, Err(e.to_string()))),
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(report)
}

//! Shared pieces: an SSM group of lights started as tasks, the switch,
//! statistics and the host clock.
use anyhow::{Context, Result};
use ssm_ocf::cred::{CredType, OscoreCred};
use ssm_ocf::device::{Device, DeviceInfo};
use ssm_ocf::provision::{default_aces, generate_group, provisioned_state, Member};
use ssm_ocf::switch::{BinarySwitch, HREF};
use ssm_ocf::Uuid;
use ssm_runtime::client::{MulticastScope, MulticastTargets, SsmSender};
use ssm_runtime::device::{start, DeviceConfig, DeviceHandle, SignatureCache};
use ssm_runtime::random_bytes;
use ssm_runtime::store::FileSequenceStore;
use std::path::{Path, PathBuf};

/// CLOCK_MONOTONIC in nanoseconds: the clock every process on this host
/// shares (`std::time::Instant` reads the same clock on Linux).
pub fn mono_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// A scratch directory removed on drop.
pub struct TempDir(pub PathBuf);
impl TempDir {
    pub fn new(tag: &str) -> Result<Self> {
        let hex: String = random_bytes::<4>()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let d = std::env::temp_dir().join(format!("ssm-bench-{tag}-{}-{hex}", std::process::id()));
        std::fs::create_dir_all(&d).with_context(|| format!("cannot create {}", d.display()))?;
        Ok(TempDir(d))
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        // A floor write still running on the blocking pool of a stopped
        // light can recreate a file meanwhile: retry a few times.
        for _ in 0..10 {
            let _ = std::fs::remove_dir_all(&self.0);
            if !self.0.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

/// N lights and one switch of one SSM group (the same generator as
/// `ssm creds generate`).
pub fn group(n: usize) -> (Vec<Member>, Member) {
    let mut rng = |b: &mut [u8]| b.copy_from_slice(&random_bytes::<64>()[..b.len()]);
    let (lights, mut switches) = generate_group(n, 1, Uuid::new_v4(), &mut rng);
    (lights, switches.remove(0))
}

/// Starts each light as tasks of this process, on `lo` (IPv4 only), with
/// its state (replay floors) in `dir/light-i`, as `ssm demo` does.
/// With `journal`, they share one replay-floor journal (one fsync per
/// command for all of them) instead of a floor file each.
/// With `hub`, they share one socket per group (`DeviceConfig::group_hub`).
/// They share one memo of verified group-mode signatures, as `ssm demo`'s
/// lights do (`DeviceConfig::signature_cache`).
pub async fn start_lights(
    lights: &[Member],
    dir: &Path,
    port: u16,
    journal: Option<std::sync::Arc<ssm_runtime::journal::FloorJournal>>,
    hub: Option<std::sync::Arc<ssm_runtime::device::GroupHub>>,
) -> Result<Vec<DeviceHandle>> {
    let cache = SignatureCache::new(SignatureCache::DEFAULT_CAPACITY);
    start_lights_with(lights, dir, port, journal, hub, Some(cache.into())).await
}

/// [`start_lights`] with the signature memo `cache` (`None`: each light
/// verifies every group-mode signature itself).
pub async fn start_lights_with(
    lights: &[Member],
    dir: &Path,
    port: u16,
    journal: Option<std::sync::Arc<ssm_runtime::journal::FloorJournal>>,
    hub: Option<std::sync::Arc<ssm_runtime::device::GroupHub>>,
    cache: Option<std::sync::Arc<SignatureCache>>,
) -> Result<Vec<DeviceHandle>> {
    let mut handles = Vec::with_capacity(lights.len());
    for (i, l) in lights.iter().enumerate() {
        let mut d = Device::new(DeviceInfo::light(&format!("light {i}"), l.uuid));
        d.add_resource(HREF, Box::new(BinarySwitch::default()), true);
        let aces = default_aces(&l.creds, &[HREF], true);
        d.set_security(provisioned_state(
            l.uuid,
            Uuid::new_v4(),
            l.creds.clone(),
            aces,
        ));
        let mut cfg = DeviceConfig::loopback(dir.join(format!("light-{i}")));
        cfg.port = port;
        cfg.floor_journal = journal.clone();
        cfg.group_hub = hub.clone();
        cfg.signature_cache = cache.clone();
        handles.push(
            start(d, &cfg)
                .await
                .with_context(|| format!("cannot start light {i} on lo port {port}"))?,
        );
    }
    Ok(handles)
}

/// The switch's SSM client credential (credtype 128).
pub fn ssm_cred(switch: &ssm_ocf::cred::CredResource) -> Result<OscoreCred> {
    switch
        .oscore_creds()?
        .into_iter()
        .find(|c| c.credtype == CredType::SsmClient)
        .context("the switch has no SSM client credential")
}

/// The switch's SSM sender and its multicast target (224.0.1.187 on `lo`,
/// TTL 1).
pub fn ssm_switch(
    switch: &ssm_ocf::cred::CredResource,
    dir: &Path,
    port: u16,
) -> Result<(SsmSender, MulticastTargets)> {
    let cred = ssm_cred(switch)?;
    let sender = SsmSender::new(&cred, FileSequenceStore::new(dir.join("switch.ssn")))?;
    Ok((sender, ssm_switch_targets(port)?))
}

/// The multicast sender sockets on `lo` (IPv4 224.0.1.187, hop limit 1).
pub fn ssm_switch_targets(port: u16) -> Result<MulticastTargets> {
    let scope = MulticastScope {
        interfaces: vec!["lo".into()],
        ipv4: true,
        ipv6_scopes: vec![],
        port,
        hops: 1,
    };
    MulticastTargets::open(&scope).context("cannot open the multicast sender on lo")
}

/// `{"value": v}`.
pub fn switch_value(v: bool) -> ciborium::Value {
    ssm_ocf::cbor::map([("value", ciborium::Value::Bool(v))])
}

/// Nearest-rank percentile of a sorted slice (0 when empty).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Sorted copy.
pub fn sorted(v: &[f64]) -> Vec<f64> {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s
}

/// (min, median, max).
pub fn min_med_max(v: &[f64]) -> (f64, f64, f64) {
    let s = sorted(v);
    if s.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    (s[0], s[(s.len() - 1) / 2], s[s.len() - 1])
}

/// A multicast port for this run: pid-based so parallel runs do not
/// collide, and below Linux's ephemeral range (32768–60999), where a
/// socket bound to port 0 could take it first.
pub fn default_port() -> u16 {
    10000 + (std::process::id() % 20000) as u16
}

/// Resident set size and its peak, in KiB, of a process (from
/// `/proc/<pid>/status`).
pub fn rss_kib(pid: &str) -> Result<(u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok((field("VmRSS:"), field("VmHWM:")))
}

/// (anonymous RSS, proportional set size) in KiB of a process: the part of
/// its RSS that is its own, and its share of pages it shares with others
/// (the binary's code when several light processes run).
pub fn anon_pss_kib(pid: &str) -> Result<(u64, u64)> {
    let field = |text: &str, name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))?;
    Ok((field(&status, "RssAnon:"), field(&rollup, "Pss:")))
}

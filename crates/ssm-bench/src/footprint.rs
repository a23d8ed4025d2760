//! Footprint: the resident memory of N lights as tasks in this process
//! (measured on itself after the lights applied a few SSM commands).
use crate::common::*;
use anyhow::{bail, Result};
use ssm_ocf::switch::HREF;
use std::time::Duration;

/// Options of `ssm-bench footprint`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Lights in this process.
    #[arg(long, default_value_t = 1000)]
    pub lights: usize,
    /// Multicast port (default: pid-based).
    #[arg(long)]
    pub port: Option<u16>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Footprint {
    pub lights: usize,
    /// RSS of this process before starting any light (KiB).
    pub base_rss_kib: u64,
    /// RSS with the lights running, after 3 commands (KiB).
    pub rss_kib: u64,
    /// Peak RSS (KiB).
    pub hwm_kib: u64,
}

pub async fn run(a: Args) -> Result<bool> {
    let port = a.port.unwrap_or_else(default_port);
    let (base, _) = rss_kib("self")?;
    let dir = TempDir::new("footprint")?;
    let (lights, switch) = group(a.lights);
    let handles = start_lights(&lights, &dir.0, port, None, None).await?;
    drop(lights);
    let mut rxs: Vec<_> = handles.iter().map(|h| h.events.subscribe()).collect();
    let (mut sender, targets) = ssm_switch(&switch.creds, &dir.0, port)?;
    drop(switch);
    for round in 0..3 {
        let sent = sender
            .send(&targets, HREF, &switch_value(round % 2 == 0), true)
            .await?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        for rx in rxs.iter_mut() {
            loop {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Ok(ssm_runtime::device::DeviceEvent::SsmApplied { piv, .. }))
                        if piv == sent[0].piv =>
                    {
                        break
                    }
                    Ok(Ok(_)) | Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {}
                    _ => bail!("not every light applied command {round}"),
                }
            }
        }
    }
    let (rss, hwm) = rss_kib("self")?;
    let f = Footprint {
        lights: a.lights,
        base_rss_kib: base,
        rss_kib: rss,
        hwm_kib: hwm,
    };
    if a.json {
        println!("{}", serde_json::json!({ "footprint": f }));
    } else {
        println!(
            "{} lights in one process: RSS {:.1} MiB (peak {:.1} MiB, {:.1} MiB before the lights started), {:.1} KiB per light",
            f.lights,
            f.rss_kib as f64 / 1024.0,
            f.hwm_kib as f64 / 1024.0,
            f.base_rss_kib as f64 / 1024.0,
            (f.rss_kib - f.base_rss_kib.min(f.rss_kib)) as f64 / f.lights.max(1) as f64
        );
    }
    drop(handles);
    Ok(true)
}

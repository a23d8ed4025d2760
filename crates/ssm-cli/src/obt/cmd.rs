//! The commands of `ssm obt` that change the domain or its devices: each
//! opens the store, calls the engine and prints its report.
use super::args::{Cmd, Link, Work};
use super::{engine_err, pin_source, progress, report_sync};
use anyhow::{bail, Context, Result};
use ssm_obt::engine::{self, OnboardJob, OnboardSource, SyncScope};
use ssm_obt::store::Store;
use ssm_obt::DeviceRole;
use ssm_runtime::obt_transport::zero_free_uuid;
use std::path::Path;
use std::time::Duration;

/// `ssm obt init`.
pub(super) fn init(path: &Path, name: &str, auto_ssm: bool, json: bool) -> Result<bool> {
    let mut s = Store::init(path, zero_free_uuid(), name)?;
    let (obt, _) = s.obt()?;
    if auto_ssm {
        s.auto_all()?;
    }
    if json {
        println!(
            "{}",
            serde_json::json!({"domain": path, "obt": obt, "name": name, "auto_ssm": auto_ssm})
        );
    } else {
        println!("domain '{name}' at {} (OBT {obt})", path.display());
        if auto_ssm {
            println!("every SSM device onboarded joins the group `all`");
        }
    }
    Ok(true)
}

/// `ssm obt discover`: owned devices of this domain by name, their
/// endpoints refreshed.
pub(super) async fn discover(path: &Path, link: &Link, wait_ms: u64, json: bool) -> Result<bool> {
    let mut store = if path.exists() {
        Some(Store::open(path)?)
    } else {
        None
    };
    let rows = engine::discover(
        store.as_mut(),
        &link.reach(),
        Duration::from_millis(wait_ms),
    )
    .await
    .map_err(engine_err)?;
    if let Some(hint) = crate::config::lo_hint(std::slice::from_ref(&link.iface), rows.len()) {
        eprintln!("warning: {hint}");
    }
    let unowned = rows.iter().filter(|r| !r.owned).count();
    if json {
        let u: Vec<_> = rows
            .iter()
            .filter(|r| !r.owned)
            .map(|r| serde_json::json!({"ep": r.ep.to_string(), "deviceuuid": r.uuid}))
            .collect();
        let o: Vec<_> = rows
            .iter()
            .filter(|r| r.owned)
            .map(|r| serde_json::json!({"ep": r.ep.to_string(), "deviceuuid": r.uuid, "name": r.name}))
            .collect();
        println!("{}", serde_json::json!({"unowned": u, "owned": o}));
    } else {
        println!(
            "{unowned} unowned, {} owned device(s)",
            rows.len() - unowned
        );
        for r in &rows {
            let what = match (r.owned, &r.name) {
                (false, _) => "unowned".to_string(),
                (true, Some(n)) => format!("owned: {n}"),
                (true, None) => "owned by another domain".to_string(),
            };
            println!("  {}  {}  {what}", r.ep, r.uuid);
        }
    }
    Ok(true)
}

/// `ssm obt onboard`: one device by endpoint and PIN, or `--all` from a
/// commissioning sheet.
pub(super) async fn onboard(path: &Path, c: Cmd, json: bool) -> Result<bool> {
    let Cmd::Onboard {
        ep,
        all,
        pins,
        link,
        jobs,
        pin,
        pin_file,
        name,
        role,
    } = c
    else {
        unreachable!("onboard is called for Cmd::Onboard")
    };
    let role: DeviceRole = role.parse().map_err(|e| crate::usage!("--role: {e}"))?;
    let s = Store::open(path)?;
    let table;
    let source = if all {
        let pins = pins.ok_or_else(|| {
            crate::usage!("--all needs --pins FILE with `<device uuid> <PIN>` lines")
        })?;
        table = std::fs::read_to_string(&pins)
            .with_context(|| format!("cannot read {}", pins.display()))?;
        OnboardSource::Sheet {
            sheet: &table,
            role,
        }
    } else {
        let ep = ep.ok_or_else(|| crate::usage!("give the device endpoint, or --all"))?;
        let pin = pin_source(pin, pin_file)?;
        let peer = crate::client::parse_ep(&ep)?;
        OnboardSource::One(OnboardJob {
            peer,
            pin,
            name,
            role,
        })
    };
    let (s, r) = engine::onboard(
        s,
        source,
        &link.reach(),
        jobs as usize,
        &progress(!json && all),
    )
    .await
    .map_err(engine_err)?;
    let (report, synced) = (r.devices, r.resumed);
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
    if json {
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

/// `ssm obt offboard DEVICE`.
pub(super) async fn offboard(path: &Path, device: &str, w: &Work, json: bool) -> Result<bool> {
    let mut s = Store::open(path)?;
    let r = engine::offboard(
        &mut s,
        device,
        &w.link.reach(),
        w.jobs as usize,
        &progress(!json),
    )
    .await
    .map_err(engine_err)?;
    let d = &r.device;
    if !json {
        println!(
            "removed {} ({}); {}",
            d.name,
            d.uuid,
            match &r.reset {
                Ok(()) => "it was hard-reset (holds no keys of this domain)".to_string(),
                Err(e) => format!("it could not be reset ({e}): reset it by hand"),
            }
        );
        for (g, e) in &r.rekeyed {
            println!("SSM group {g} rekeyed to epoch {e}");
        }
    }
    let rekeyed: Vec<_> = r
        .rekeyed
        .iter()
        .map(|(g, e)| serde_json::json!({"group": g, "epoch": e}))
        .collect();
    Ok(report_sync(
        &r.synced,
        json,
        serde_json::json!({"removed": d.uuid, "name": d.name, "reset": r.reset.is_ok(), "epoch": r.epoch, "rekeyed": rekeyed}),
    ))
}

/// `ssm obt sync [DEVICE…] [--all]`.
pub(super) async fn sync(
    path: &Path,
    devices: Vec<String>,
    all: bool,
    w: &Work,
    json: bool,
) -> Result<bool> {
    let mut s = Store::open(path)?;
    let scope = if all {
        SyncScope::All
    } else if devices.is_empty() {
        SyncScope::Stale
    } else {
        SyncScope::Named(devices)
    };
    let results = engine::sync(
        &mut s,
        &scope,
        &w.link.reach(),
        w.jobs as usize,
        &progress(!json),
    )
    .await
    .map_err(engine_err)?;
    Ok(report_sync(&results, json, serde_json::json!({})))
}

/// `ssm obt ssm grant SWITCH [LIGHT…] [--all]`.
pub(super) async fn grant(
    path: &Path,
    client: &str,
    lights: &[String],
    all: bool,
    w: &Work,
    json: bool,
) -> Result<bool> {
    let mut s = Store::open(path)?;
    let r = engine::grant(
        &mut s,
        client,
        lights,
        all,
        &w.link.reach(),
        w.jobs as usize,
        &progress(!json),
    )
    .await
    .map_err(engine_err)?;
    if r.hrefs.len() > 1 {
        // On stderr, also with --json (stdout stays one JSON document).
        eprintln!(
            "warning: the lights {} commands serve SSM at different hrefs ({}): each command is sent as one datagram per href",
            r.client.name,
            r.hrefs.join(", ")
        );
    }
    if !json {
        println!(
            "{} may command {} light(s) by SSM (epoch {}, Sender ID {})",
            r.client.name,
            r.lights.len(),
            r.epoch.unwrap_or(0),
            r.sender_id.as_deref().unwrap_or("-")
        );
    }
    Ok(report_sync(
        &r.synced,
        json,
        serde_json::json!({"client": r.client.uuid, "sender_id": r.sender_id, "epoch": r.epoch, "granted": r.lights.len(), "hrefs": r.hrefs}),
    ))
}

/// `ssm obt ssm revoke SWITCH [LIGHT…] [--all]`.
pub(super) async fn revoke(
    path: &Path,
    client: &str,
    lights: &[String],
    all: bool,
    w: &Work,
    json: bool,
) -> Result<bool> {
    let mut s = Store::open(path)?;
    let r = engine::revoke(
        &mut s,
        client,
        lights,
        all,
        &w.link.reach(),
        w.jobs as usize,
        &progress(!json),
    )
    .await
    .map_err(engine_err)?;
    if !json {
        println!(
            "{} may no longer command {} light(s)",
            r.client.name,
            r.lights.len()
        );
        if let Some(e) = r.epoch {
            println!("it left the SSM group: rekeyed to epoch {e}");
        }
    }
    Ok(report_sync(
        &r.synced,
        json,
        serde_json::json!({"client": r.client.uuid, "revoked": r.lights.len(), "epoch": r.epoch}),
    ))
}

/// `ssm obt ssm rekey`.
pub(super) async fn rekey(path: &Path, w: &Work, json: bool) -> Result<bool> {
    let mut s = Store::open(path)?;
    let r = engine::rekey(&mut s, &w.link.reach(), w.jobs as usize, &progress(!json))
        .await
        .map_err(engine_err)?;
    if !json {
        println!("SSM group rekeyed to epoch {}", r.epoch);
    }
    Ok(report_sync(
        &r.synced,
        json,
        serde_json::json!({"epoch": r.epoch}),
    ))
}

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
            serde_json::json!({"domain": path, "obt_uuid": obt, "name": name, "auto_ssm": auto_ssm})
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
            .map(|r| serde_json::json!({"ep": format!("coap://{}", r.ep), "uuid": r.uuid}))
            .collect();
        let o: Vec<_> = rows
            .iter()
            .filter(|r| r.owned)
            .map(|r| serde_json::json!({"ep": format!("coap://{}", r.ep), "uuid": r.uuid, "name": r.name}))
            .collect();
        println!("{}", serde_json::json!({"unowned": u, "owned": o}));
    } else {
        println!(
            "{unowned} unowned, {} owned device(s)",
            rows.len() - unowned
        );
        if rows.is_empty() {
            println!(
                "nothing answered on {}: are the devices on this link? (--iface names the interface)",
                link.iface
            );
        }
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
    let role: Option<DeviceRole> = role
        .map(|r| r.parse().map_err(|e| crate::usage!("--role: {e}")))
        .transpose()?;
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
    let bar = progress(!json && all);
    let reach = link.reach();
    let work = engine::onboard(s, source, &reach, jobs as usize, &bar);
    let (_s, r) = tokio::select! {
        r = work => r.map_err(engine_err)?,
        // The work (and the store's lock) is dropped here; what it left
        // `onboarding` is settled at once.
        _ = tokio::signal::ctrl_c() => return interrupted(path, json).await,
    };
    for o in &r.devices {
        for w in &o.warnings {
            eprintln!("warning: {}: {w}", o.name.as_deref().unwrap_or(&o.ep));
        }
    }
    let resumed_ok = r.resumed.iter().all(|x| x.outcome.is_ok());
    match &r.sheet {
        Some(sheet) => Ok(super::sheet_out::print(sheet, &r, &link.iface, json) && resumed_ok),
        None => {
            let o = r
                .devices
                .first()
                .ok_or_else(|| anyhow::anyhow!("nothing was onboarded"))?;
            // A failure is one error (one line; with --json one object).
            let u = match &o.result {
                Ok(u) => *u,
                Err(e) => bail!("onboarding {}: {e}", o.ep),
            };
            let name = o.name.clone().unwrap_or_default();
            let role = o.role.map(|r| r.as_str());
            if json {
                println!(
                    "{}",
                    serde_json::json!({"onboarded": 1, "failed": 0, "uuid": u, "name": name, "role": role, "ep": o.ep, "was_uuid": o.was,
                        "warnings": o.warnings, "resumed": r.resumed.len()})
                );
            } else {
                println!(
                    "onboarded {} as {name} ({}, {u})",
                    o.ep,
                    role.unwrap_or("?")
                );
                if !r.resumed.is_empty() {
                    println!("finished {} interrupted onboarding(s)", r.resumed.len());
                }
            }
            Ok(resumed_ok)
        }
    }
}

/// Ctrl-C during `onboard`: each onboarding it left half done is settled
/// now (the device is asked whether the transfer took: kept, or its row
/// forgotten); one that cannot be asked yet stays, shown as interrupted.
async fn interrupted(path: &Path, json: bool) -> Result<bool> {
    // The aborted tasks let go of the store (and its lock) as the runtime
    // drops them: shortly.
    let mut tries = 0;
    let mut s = loop {
        match Store::open(path) {
            Err(ssm_obt::store::StoreError::Locked(_)) if tries < 40 => {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(25)).await;
            }
            r => break r?,
        }
    };
    let pending = |s: &Store| -> Result<usize> {
        Ok(s.devices()?
            .iter()
            .filter(|d| d.state == ssm_obt::DeviceState::Onboarding)
            .count())
    };
    let before = pending(&s)?;
    let (obt, _) = s.obt()?;
    let kept = engine::settle_onboarding(&mut s, obt)
        .await
        .map_err(engine_err)?;
    let left = pending(&s)?;
    let forgotten = before - kept.len() - left;
    let msg = format!(
        "interrupted: {} onboarding(s) in progress: {} kept (finish with `ssm obt sync`), \
         {forgotten} undone by the device, {left} to settle: re-run `ssm obt onboard`",
        before,
        kept.len()
    );
    if json {
        println!("{}", serde_json::json!({"error": msg, "exit": 130}));
    } else {
        eprintln!("{msg}");
    }
    std::process::exit(130)
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
                Err(e) if e == engine::NOT_OWNED => e.clone(),
                Err(e) => format!(
                    "it could not be reset ({e}): it keeps this domain's old keys (the group is \
                     rekeyed away from them) until it is factory-reset on the spot \
                     (`ssm device reset --state-dir …`)"
                ),
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
        serde_json::json!({"uuid": d.uuid, "name": d.name, "removed": true, "reset": r.reset.is_ok(), "epoch": r.epoch, "rekeyed": rekeyed}),
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
        serde_json::json!({"uuid": r.client.uuid, "name": r.client.name, "sender_id": r.sender_id, "epoch": r.epoch, "granted": r.lights.len(), "hrefs": r.hrefs}),
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
        serde_json::json!({"uuid": r.client.uuid, "name": r.client.name, "revoked": r.lights.len(), "epoch": r.epoch}),
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

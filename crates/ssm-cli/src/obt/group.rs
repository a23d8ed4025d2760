//! `ssm obt group …` and `ssm obt ssm grant|revoke --group`: open the
//! store, call the engine, print its report (`--json`: the same field
//! names as the other commands: `uuid`, `name`, `epoch`, `sender_id`, and
//! the sync report's `devices` and `stale`).
use super::args::{GroupCmd, Work};
use super::{engine_err, progress, report_sync};
use anyhow::Result;
use ssm_obt::engine;
use ssm_obt::store::{GroupInfo, Store};
use std::path::Path;
use uuid::Uuid;

fn names(s: &Store, ids: &[Uuid]) -> Vec<String> {
    ids.iter()
        .map(|u| {
            s.device(&u.to_string())
                .map(|d| d.name)
                .unwrap_or_else(|_| u.to_string())
        })
        .collect()
}

fn group_json(s: &Store, g: &GroupInfo) -> serde_json::Value {
    let devs = |ids: &[Uuid]| -> Vec<serde_json::Value> {
        ids.iter()
            .zip(names(s, ids))
            .map(|(u, n)| serde_json::json!({"uuid": u, "name": n}))
            .collect()
    };
    let sender_ids: Vec<serde_json::Value> = g
        .switches
        .iter()
        .map(
            |u| serde_json::json!({"uuid": u, "sender_id": s.sender_id_in(g.id, u).ok().flatten()}),
        )
        .collect();
    serde_json::json!({
        "id": g.id, "name": g.name, "epoch": g.epoch, "auto": g.auto, "profile": g.profile.as_str(),
        "aead_alg": g.aead_alg,
        "members": devs(&g.members), "switches": devs(&g.switches),
        "followers": devs(&g.followers), "sender_ids": sender_ids,
    })
}

fn print_group(s: &Store, g: &GroupInfo) {
    println!("group {} (id {})", g.name, g.id);
    println!("  profile    {}", g.profile);
    if let Some(a) = g.aead_alg {
        println!("  aead alg   {a} (AES-CCM-16-64-128, in every group-mode credential)");
    }
    if g.epoch == 0 {
        println!("  epoch      - (no key yet: add a device)");
    } else {
        println!("  epoch      {}", g.epoch);
    }
    println!(
        "  auto       {}",
        if g.auto {
            "yes (onboarded devices join)"
        } else {
            "no"
        }
    );
    println!("  members    {}", list(&names(s, &g.members)));
    println!("  switches   {}", list(&names(s, &g.switches)));
    if !g.followers.is_empty() {
        println!(
            "  following  {} (granted on every member)",
            list(&names(s, &g.followers))
        );
    }
}

fn list(v: &[String]) -> String {
    if v.is_empty() {
        "-".into()
    } else {
        v.join(", ")
    }
}

/// Runs `ssm obt group …`.
pub(super) async fn run(path: &Path, cmd: GroupCmd, json: bool) -> Result<bool> {
    let mut s = Store::open(path)?;
    match cmd {
        GroupCmd::Create { .. } | GroupCmd::List | GroupCmd::Show { .. } => read(&mut s, cmd, json),
        cmd => change(&mut s, cmd, json).await,
    }
}

/// The commands that reach no device.
fn read(s: &mut Store, cmd: GroupCmd, json: bool) -> Result<bool> {
    match cmd {
        GroupCmd::Create {
            name,
            auto,
            profile,
            aead_alg,
        } => {
            let profile = ssm_obt::store::Profile::parse(&profile).unwrap_or_default();
            if aead_alg.is_some() && profile != ssm_obt::store::Profile::GroupOscore {
                return Err(crate::usage!(
                    "--aead-alg is for `--profile group-oscore` groups only"
                ));
            }
            // The one value the parser takes: AES-CCM-16-64-128 (COSE 10).
            let aead = aead_alg.map(|_| i64::from(ssm_ocf::group_cred::ALG_AES_CCM_16_64_128));
            let g = engine::group_create_with(s, &name, auto, profile, aead).map_err(engine_err)?;
            if json {
                println!("{}", serde_json::json!({"group": group_json(s, &g)}));
            } else {
                println!(
                    "created group {} (id {}, profile {}){}",
                    g.name,
                    g.id,
                    g.profile,
                    if auto {
                        ": every SSM device onboarded joins it"
                    } else {
                        ""
                    }
                );
            }
            Ok(true)
        }
        GroupCmd::List => {
            let gs = s.groups()?;
            if json {
                let v: Vec<_> = gs.iter().map(|g| group_json(s, g)).collect();
                println!("{}", serde_json::json!({"groups": v}));
            } else {
                println!(
                    "{:<4} {:<20} {:<6} {:<5} {:<8} {:<9} profile",
                    "id", "name", "epoch", "auto", "members", "switches"
                );
                for g in &gs {
                    let aead = if g.aead_alg.is_some() {
                        " (aead-alg)"
                    } else {
                        ""
                    };
                    println!(
                        "{:<4} {:<20} {:<6} {:<5} {:<8} {:<9} {}{aead}",
                        g.id,
                        g.name,
                        g.epoch,
                        if g.auto { "yes" } else { "no" },
                        g.members.len(),
                        g.switches.len(),
                        g.profile
                    );
                }
            }
            Ok(true)
        }
        GroupCmd::Show { name } => {
            let g = s.group_info(&name)?;
            if json {
                println!("{}", serde_json::json!({"group": group_json(s, &g)}));
            } else {
                print_group(s, &g);
            }
            Ok(true)
        }
        _ => unreachable!("read is called for create, list and show"),
    }
}

/// The commands that change devices (then synced).
async fn change(s: &mut Store, cmd: GroupCmd, json: bool) -> Result<bool> {
    let at = |w: &Work| (w.link.reach(), w.jobs as usize);
    match cmd {
        GroupCmd::Add {
            name,
            devices,
            work,
        } => {
            let (reach, jobs) = at(&work);
            let r = engine::group_add(s, &name, &devices, &reach, jobs, &progress(!json))
                .await
                .map_err(engine_err)?;
            if !json {
                println!(
                    "added {} to group {} (epoch {})",
                    names(s, &r.devices).join(", "),
                    r.group.name,
                    r.group.epoch
                );
            }
            let out = serde_json::json!({"group": group_json(s, &r.group), "added": r.devices, "epoch": r.group.epoch});
            Ok(report_sync(&r.synced, json, out))
        }
        GroupCmd::Remove {
            name,
            devices,
            work,
        } => {
            let (reach, jobs) = at(&work);
            let r = engine::group_remove(s, &name, &devices, &reach, jobs, &progress(!json))
                .await
                .map_err(engine_err)?;
            if !json {
                println!(
                    "removed {} from group {}",
                    names(s, &r.devices).join(", "),
                    r.group.name
                );
                if let Some(e) = r.rekeyed {
                    println!(
                        "group {} rekeyed to epoch {e} (other groups untouched)",
                        r.group.name
                    );
                }
            }
            let out = serde_json::json!({"group": group_json(s, &r.group), "removed": r.devices, "epoch": r.rekeyed});
            Ok(report_sync(&r.synced, json, out))
        }
        GroupCmd::Delete { name, work } => {
            let (reach, jobs) = at(&work);
            let r = engine::group_delete(s, &name, &reach, jobs, &progress(!json))
                .await
                .map_err(engine_err)?;
            if !json {
                println!("deleted group {} (id {})", r.group.name, r.group.id);
            }
            let out = serde_json::json!({"deleted": r.group.name, "id": r.group.id});
            Ok(report_sync(&r.synced, json, out))
        }
        GroupCmd::Rekey { name, work } => {
            let (reach, jobs) = at(&work);
            let r = engine::group_rekey(s, &name, &reach, jobs, &progress(!json))
                .await
                .map_err(engine_err)?;
            if !json {
                println!("group {} rekeyed to epoch {}", r.group.name, r.group.epoch);
            }
            let out =
                serde_json::json!({"group": r.group.name, "id": r.group.id, "epoch": r.rekeyed});
            Ok(report_sync(&r.synced, json, out))
        }
        _ => unreachable!("change is called for add, remove, delete and rekey"),
    }
}

/// `ssm obt ssm grant SWITCH --group NAME`.
pub(super) async fn grant(
    path: &Path,
    client: &str,
    group: &str,
    w: &Work,
    json: bool,
) -> Result<bool> {
    let mut s = Store::open(path)?;
    let r = engine::grant_group(
        &mut s,
        client,
        group,
        &w.link.reach(),
        w.jobs as usize,
        &progress(!json),
    )
    .await
    .map_err(engine_err)?;
    if !json {
        println!(
            "{} commands group {} ({} light(s), epoch {}, Sender ID {})",
            r.client.name,
            group,
            r.lights.len(),
            r.epoch.unwrap_or(0),
            r.sender_id.as_deref().unwrap_or("-")
        );
    }
    Ok(report_sync(
        &r.synced,
        json,
        serde_json::json!({"uuid": r.client.uuid, "name": r.client.name, "group": group, "sender_id": r.sender_id, "epoch": r.epoch, "granted": r.lights.len()}),
    ))
}

/// `ssm obt ssm revoke SWITCH --group NAME`.
pub(super) async fn revoke(
    path: &Path,
    client: &str,
    group: &str,
    w: &Work,
    json: bool,
) -> Result<bool> {
    let mut s = Store::open(path)?;
    let r = engine::revoke_group(
        &mut s,
        client,
        group,
        &w.link.reach(),
        w.jobs as usize,
        &progress(!json),
    )
    .await
    .map_err(engine_err)?;
    if !json {
        println!("{} no longer commands group {group}", r.client.name);
        if let Some(e) = r.epoch {
            println!("group {group} rekeyed to epoch {e}");
        }
    }
    Ok(report_sync(
        &r.synced,
        json,
        serde_json::json!({"uuid": r.client.uuid, "name": r.client.name, "group": group, "revoked": r.lights.len(), "epoch": r.epoch}),
    ))
}

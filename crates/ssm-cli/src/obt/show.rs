//! `ssm obt list` and `ssm obt show`: read the store, print.
use anyhow::Result;
use ssm_obt::store::Store;
use std::path::Path;
use uuid::Uuid;

/// `ssm obt list`.
pub(super) fn list(path: &Path, json: bool) -> Result<bool> {
    let s = Store::open_read_only(path)?;
    let busy = Store::locked_by_other(path);
    let devs = s.devices()?;
    let state = |d: &ssm_obt::store::DeviceRecord| match (d.state, busy) {
        (ssm_obt::DeviceState::Onboarding, false) => "interrupted".to_string(),
        (st, _) => st.to_string(),
    };
    if json {
        // `groups` holds names, as in `status`; the `oic.r.groups` numbers
        // are `group_ids` (one contract: the same field, the same thing).
        let all = s.groups()?;
        let mut v = Vec::new();
        for d in &devs {
            let ids = s.device_groups(&d.uuid)?;
            let names: Vec<&str> = ids
                .iter()
                .filter_map(|id| all.iter().find(|g| g.id == *id).map(|g| g.name.as_str()))
                .collect();
            let mut row = serde_json::json!({"uuid": d.uuid, "name": d.name, "role": d.role.as_str(), "state": state(d), "last_seen": d.last_seen, "groups": names, "group_ids": ids});
            // An external member has no endpoint (the OBT never reaches it).
            if !d.endpoint.is_empty() {
                row["ep"] = serde_json::json!(d.endpoint);
            }
            v.push(row);
        }
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
                state(d),
                d.last_seen.as_deref().unwrap_or("-"),
                d.uuid,
                if d.endpoint.is_empty() {
                    "-"
                } else {
                    d.endpoint.as_str()
                }
            );
        }
        if devs
            .iter()
            .any(|d| d.state == ssm_obt::DeviceState::External)
        {
            println!("external: a group-oscore member that is not an OCF device (never reached; `ssm obt external material` gives its keys)");
        }
        if devs.iter().any(|d| state(d) == "interrupted") {
            println!("interrupted: an onboarding was stopped; re-run `ssm obt onboard` (or `ssm obt sync`) to settle it");
        }
    }
    Ok(true)
}

/// `ssm obt show DEVICE`.
pub(super) fn show(path: &Path, device: &str, json: bool) -> Result<bool> {
    let s = Store::open_read_only(path)?;
    let d = s.device(device)?;
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
    let ids = s.device_groups(&d.uuid)?;
    let groups: Vec<(i64, String, i64, Option<String>)> = s
        .groups()?
        .into_iter()
        .filter(|g| ids.contains(&g.id))
        .map(|g| {
            let sid = s.sender_id_in(g.id, &d.uuid).ok().flatten();
            (g.id, g.name, g.epoch, sid)
        })
        .collect();
    if json {
        let mut v = serde_json::json!({
                "uuid": d.uuid, "name": d.name, "role": d.role.as_str(), "state": d.state.as_str(),
                "last_seen": d.last_seen, "was_uuid": s.onboarded_from(&d.uuid),
                "ssm": {"member": member, "epoch": group.as_ref().filter(|_| member).map(|g| g.epoch), "sender_id": sid,
                        "commands": commands, "commanded_by": commanded_by},
                "groups": groups.iter().map(|(id, n, e, sid)| serde_json::json!({"id": id, "name": n, "epoch": e, "sender_id": sid})).collect::<Vec<_>>(),
                "audit": audit.iter().map(|(at, what, detail)| serde_json::json!({"at": rfc3339_sql(at), "action": what, "detail": detail})).collect::<Vec<_>>(),
        });
        // An external member has no endpoint (the OBT never reaches it).
        if !d.endpoint.is_empty() {
            v["ep"] = serde_json::json!(d.endpoint);
        }
        println!("{v}");
        return Ok(true);
    }
    println!("{} ({})", d.name, d.uuid);
    println!("  role       {}", d.role);
    println!("  state      {}", d.state);
    if d.endpoint.is_empty() {
        println!("  endpoint   - (an external member: the OBT never reaches it)");
    } else {
        println!("  endpoint   {}", d.endpoint);
    }
    println!("  last seen  {}", d.last_seen.as_deref().unwrap_or("never"));
    if let Some(was) = s.onboarded_from(&d.uuid) {
        println!("  was        {was} (before onboarding: the UUID on the sheet)");
    }
    match (&group, member) {
        (Some(g), true) => println!(
            "  SSM group  member, epoch {}{}",
            g.epoch,
            sid.map(|s| format!(", Sender ID {s}")).unwrap_or_default()
        ),
        _ if groups.is_empty() => println!("  SSM group  not a member"),
        _ => {}
    }
    for (id, n, e, sid) in &groups {
        println!(
            "  group      {n} (id {id}), epoch {e}{}",
            sid.as_ref()
                .map(|s| format!(", Sender ID {s}"))
                .unwrap_or_default()
        );
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
    Ok(true)
}

/// SQLite's `CURRENT_TIMESTAMP` (`2026-12-01 22:31:16`, UTC) as RFC 3339.
fn rfc3339_sql(at: &str) -> String {
    match at.split_once(' ') {
        Some((d, t)) if !t.ends_with('Z') => format!("{d}T{t}Z"),
        _ => at.to_string(),
    }
}

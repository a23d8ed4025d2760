//! `ssm obt status [--watch]`, `rename`, `inspect`: the commands that
//! read devices as they are now (over the OBT's owner sessions).
use anyhow::Result;
use ssm_obt::engine::{self, Arrival, DeviceStatus};
use ssm_obt::store::Store;
use std::path::Path;
use std::time::Duration;

/// A wall-clock time as RFC 3339 UTC with milliseconds.
pub(crate) fn rfc3339(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

fn on_off(on: Option<bool>) -> &'static str {
    match on {
        Some(true) => "on",
        Some(false) => "off",
        None => "-",
    }
}

/// The state column: `onboarding` rows not being worked on now are
/// interrupted ones.
fn state_text(d: &ssm_obt::store::DeviceRecord, busy: bool) -> String {
    match (d.state, busy) {
        (ssm_obt::DeviceState::Onboarding, false) => "interrupted".into(),
        (s, _) => s.to_string(),
    }
}

/// When the OBT last completed an exchange with it: now, if it answered
/// (status reads only: the store keeps its older time).
fn last_seen(d: &DeviceStatus, now: &str) -> Option<String> {
    if d.reachable {
        Some(now.to_string())
    } else {
        d.record.last_seen.clone()
    }
}

fn status_json(d: &DeviceStatus, busy: bool, now: &str) -> serde_json::Value {
    let r = &d.record;
    let mut v = serde_json::json!({
        "uuid": r.uuid, "name": r.name, "role": r.role.as_str(), "groups": d.groups,
        "state": state_text(r, busy), "reachable": d.reachable, "on": d.on,
        "last_seen": last_seen(d, now), "rtt_ms": d.rtt_ms, "note": d.note,
    });
    // An external member has no endpoint (the OBT never reaches it).
    if !r.endpoint.is_empty() {
        v["ep"] = serde_json::json!(r.endpoint);
    }
    v
}

/// `ssm obt status [--watch]`.
pub(super) async fn status(
    path: &Path,
    watch: bool,
    count: Option<usize>,
    for_: Option<Duration>,
    timeout_ms: u64,
    link: &super::args::Link,
    json: bool,
) -> Result<bool> {
    let s = Store::open_read_only(path)?;
    let busy = Store::locked_by_other(path);
    let timeout = Duration::from_millis(timeout_ms.max(1));
    if watch {
        let limit = for_.unwrap_or(Duration::from_secs(365 * 86_400));
        let mut print = |a: &Arrival| {
            let at = rfc3339(a.at);
            if json {
                println!(
                    "{}",
                    serde_json::json!({"event": if a.initial { "state" } else { "changed" },
                        "at": at, "uuid": a.uuid, "name": a.name, "on": a.on,
                        "since_first_ms": (!a.initial).then_some(a.since_first_ms)})
                );
            } else if a.initial {
                println!("{at}  {:<20} {}", a.name, on_off(a.on));
            } else {
                println!(
                    "{at}  {:<20} {:<3}  (+{:.1} ms)",
                    a.name,
                    on_off(a.on),
                    a.since_first_ms
                );
            }
        };
        if !json {
            let lights = s
                .devices()?
                .iter()
                .filter(|d| {
                    d.role == ssm_obt::DeviceRole::Light
                        && d.state != ssm_obt::DeviceState::External
                })
                .count();
            eprintln!("watching {lights} light(s) over their owner sessions (Ctrl-C stops)");
        }
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::select! {
            r = engine::watch(&s, limit, count, timeout, &mut print) => {
                r.map_err(super::engine_err)?;
            }
            _ = ctrl_c => {}
        }
        return Ok(true);
    }
    let rows = engine::status(&s, timeout, Some(&link.reach()))
        .await
        .map_err(super::engine_err)?;
    let epoch = s.group()?.map(|g| g.epoch);
    // Seconds, as the store keeps them.
    let now = rfc3339(std::time::SystemTime::now());
    let now = format!("{}Z", &now[..19]);
    if json {
        let v: Vec<_> = rows.iter().map(|d| status_json(d, busy, &now)).collect();
        println!(
            "{}",
            serde_json::json!({"devices": v, "ssm_epoch": epoch, "reachable": rows.iter().filter(|d| d.reachable).count()})
        );
        return Ok(true);
    }
    println!(
        "{:<16} {:<6} {:<8} {:<9} {:<6} {:<12} {:<20} uuid",
        "name", "role", "groups", "reachable", "on/off", "state", "last seen"
    );
    for d in &rows {
        let r = &d.record;
        let groups = if d.groups.is_empty() {
            "-".to_string()
        } else {
            d.groups.join(",")
        };
        println!(
            "{:<16} {:<6} {:<8} {:<9} {:<6} {:<12} {:<20} {}",
            r.name,
            r.role,
            groups,
            match (d.reachable, r.state) {
                (true, _) => "yes",
                (false, ssm_obt::DeviceState::External) => "-",
                (false, _) => "NO",
            },
            on_off(d.on),
            state_text(r, busy),
            last_seen(d, &now).as_deref().unwrap_or("never"),
            r.uuid
        );
    }
    for d in rows.iter().filter(|d| d.note.is_some()) {
        println!(
            "  {}: {}",
            d.record.name,
            d.note.as_deref().unwrap_or_default()
        );
    }
    summary(&rows);
    Ok(true)
}

/// The last lines of `status`: how many are reachable, stale, external.
fn summary(rows: &[DeviceStatus]) {
    let external = |d: &&DeviceStatus| d.record.state == ssm_obt::DeviceState::External;
    let externals = rows.iter().filter(external).count();
    let down = rows.iter().filter(|d| !d.reachable).count() - externals;
    let stale = rows
        .iter()
        .filter(|d| d.record.state == ssm_obt::DeviceState::Stale)
        .count();
    if externals > 0 {
        println!("{externals} external member(s) (never reached by the OBT)");
    }
    println!(
        "{} device(s): {} reachable, {down} not; {stale} stale{}",
        rows.len() - externals,
        rows.len() - externals - down,
        if stale > 0 {
            " (`ssm obt sync` when they are back)"
        } else {
            ""
        }
    );
}

/// `ssm obt rename OLD NEW`.
pub(super) async fn rename(path: &Path, old: &str, new: &str, json: bool) -> Result<bool> {
    if new.trim().is_empty() || new.chars().any(char::is_whitespace) {
        return Err(crate::usage!("NEW: a name without spaces"));
    }
    let mut s = Store::open(path)?;
    let r = engine::rename(&mut s, old, new, Duration::from_secs(4))
        .await
        .map_err(super::engine_err)?;
    if json {
        println!(
            "{}",
            serde_json::json!({"uuid": r.before.uuid, "name": r.name, "old_name": r.before.name,
                "device_updated": r.device.is_ok(), "error": r.device.as_ref().err()})
        );
    } else {
        println!(
            "renamed {} to {} ({})",
            r.before.name, r.name, r.before.uuid
        );
        if let Err(e) = &r.device {
            println!("  the device still shows its old name: {e}");
        }
    }
    Ok(true)
}

fn cred_json(c: &ssm_ocf::cred::Credential) -> serde_json::Value {
    let o = c.oscore.clone().unwrap_or_default();
    serde_json::json!({"credid": c.credid, "credtype": c.credtype.as_u32(), "subjectuuid": c.subjectuuid,
        "sender_id": o.senderid, "recipient_id": o.recipientid, "desc": o.desc})
}

fn ace_json(a: &ssm_ocf::security::acl2::Ace) -> serde_json::Value {
    serde_json::to_value(a).unwrap_or_default()
}

/// `ssm obt inspect DEVICE`.
pub(super) async fn inspect(
    path: &Path,
    device: &str,
    timeout_ms: u64,
    json: bool,
) -> Result<bool> {
    let s = Store::open_read_only(path)?;
    let i = engine::inspect(&s, device, Duration::from_millis(timeout_ms))
        .await
        .map_err(super::engine_err)?;
    let c = &i.comparison;
    let dos = ssm_ocf::cbor::get(&i.pstat, "dos")
        .and_then(|d| ssm_ocf::cbor::get(d, "s"))
        .and_then(|v| v.as_integer())
        .and_then(|v| i64::try_from(v).ok());
    let owner = ssm_ocf::cbor::get(&i.doxm, "devowneruuid")
        .and_then(|v| v.as_text())
        .map(String::from);
    if json {
        let list = |v: &[ssm_ocf::cred::Credential]| v.iter().map(cred_json).collect::<Vec<_>>();
        let aces = |v: &[ssm_ocf::security::acl2::Ace]| v.iter().map(ace_json).collect::<Vec<_>>();
        println!(
            "{}",
            serde_json::json!({"uuid": i.record.uuid, "name": i.record.name, "dos": dos, "devowneruuid": owner,
                "creds": list(&c.creds), "aces": aces(&c.aces),
                "missing_creds": list(&c.missing_creds), "extra_creds": list(&c.extra_creds),
                "missing_aces": aces(&c.missing_aces), "extra_aces": aces(&c.extra_aces),
                "matches": c.matches()})
        );
        return Ok(c.matches());
    }
    println!("{} ({})", i.record.name, i.record.uuid);
    println!(
        "  pstat dos  {}   devowneruuid {}",
        dos.map(|d| d.to_string()).unwrap_or("?".into()),
        owner.as_deref().unwrap_or("?")
    );
    println!("  credentials ({}, without secrets):", c.creds.len());
    for cr in &c.creds {
        let o = cr.oscore.clone().unwrap_or_default();
        println!(
            "    {:>3}  type {:<3}  subject {}  {}{}",
            cr.credid,
            cr.credtype.as_u32(),
            cr.subjectuuid,
            o.senderid
                .map(|s| format!("sender {s} "))
                .unwrap_or_default(),
            o.recipientid
                .map(|s| format!("recipient {s}"))
                .unwrap_or_default(),
        );
    }
    println!("  ACEs ({}):", c.aces.len());
    for a in &c.aces {
        println!("    {}", ace_json(a));
    }
    if c.matches() {
        println!("  matches the domain");
    } else {
        for cr in &c.missing_creds {
            println!(
                "  MISSING credential type {} for {}",
                cr.credtype.as_u32(),
                cr.subjectuuid
            );
        }
        for cr in &c.extra_creds {
            println!(
                "  EXTRA credential {} type {} for {}",
                cr.credid,
                cr.credtype.as_u32(),
                cr.subjectuuid
            );
        }
        for a in &c.missing_aces {
            println!("  MISSING ACE {}", ace_json(a));
        }
        for a in &c.extra_aces {
            println!("  EXTRA ACE {}", ace_json(a));
        }
        println!(
            "  run `ssm obt sync {}` to bring it to the domain's state",
            i.record.name
        );
    }
    Ok(c.matches())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn rfc3339_utc_with_milliseconds() {
        let at = |ms: u64| super::rfc3339(UNIX_EPOCH + Duration::from_millis(ms));
        assert_eq!(at(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(1_796_164_281_020), "2026-12-01T22:31:21.020Z");
        assert_eq!(at(951_868_799_999), "2000-02-29T23:59:59.999Z");
    }
}

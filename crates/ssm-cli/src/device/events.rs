//! What `ssm device` prints for its device's events: a line for people,
//! or one JSON object per line (`--json`).
use ssm_runtime::device::DeviceEvent;

/// Prints `ev`; `uuid` is the device's UUID now (shown with a PIN: after a
/// hard or factory reset the commissioning sheet needs both).
pub(super) fn print_event(ev: &DeviceEvent, json: bool, uuid: ssm_ocf::Uuid) {
    match (ev, json) {
        (DeviceEvent::Pin(pin), true) => {
            println!(
                "{}",
                serde_json::json!({"event": "pin", "pin": pin, "uuid": uuid})
            )
        }
        (DeviceEvent::Pin(pin), false) => {
            println!("unowned ({uuid}): give the onboarding tool this PIN: {pin}")
        }
        (DeviceEvent::Owned { device_uuid, owner }, true) => {
            println!(
                "{}",
                serde_json::json!({"event": "owned", "uuid": device_uuid, "di": device_uuid, "owner": owner})
            )
        }
        (DeviceEvent::Owned { device_uuid, owner }, false) => {
            println!("onboarded: now {device_uuid}, owned by {owner}")
        }
        (DeviceEvent::Provisioned { creds }, true) => {
            println!(
                "{}",
                serde_json::json!({"event": "provisioned", "creds": creds})
            )
        }
        (DeviceEvent::Provisioned { creds }, false) => {
            println!("provisioned: holds {creds} credential(s)")
        }
        (
            DeviceEvent::SsmApplied {
                href,
                state,
                from,
                piv,
                at,
            },
            true,
        ) => {
            println!(
                "{}",
                serde_json::json!({"event": "ssm_applied", "href": href, "state": state, "from": from, "piv": piv, "at_mono_ns": mono_ns(*at)})
            )
        }
        (
            DeviceEvent::SsmApplied {
                href,
                state,
                from,
                piv,
                ..
            },
            false,
        ) => {
            println!(
                "SSM update {href} -> {state} (from {}, seq {piv})",
                from.map(|u| u.to_string()).unwrap_or_else(|| "?".into())
            )
        }
        (DeviceEvent::UnicastApplied { href, state }, true) => println!(
            "{}",
            serde_json::json!({"event": "unicast_applied", "href": href, "state": state})
        ),
        (DeviceEvent::UnicastApplied { href, state }, false) => {
            println!("unicast update {href} -> {state}")
        }
        (DeviceEvent::Dropped(r), _) => {
            let mut one = std::collections::BTreeMap::from([(format!("{r:?}"), 1)]);
            print_drops(&mut one, json)
        }
        (DeviceEvent::Refused(why), true) => {
            println!(
                "{}",
                serde_json::json!({"event": "refused", "why": why.to_string()})
            )
        }
        (DeviceEvent::Refused(why), false) => println!("verified SSM update refused: {why}"),
        (DeviceEvent::PinFailed { peer, in_a_row }, true) => println!(
            "{}",
            serde_json::json!({"event": "pin_failed", "peer": peer.to_string(), "in_a_row": in_a_row})
        ),
        (DeviceEvent::PinFailed { peer, in_a_row }, false) => {
            println!("a Random PIN attempt from {peer} failed (wrong PIN; {in_a_row} in a row)")
        }
        (DeviceEvent::PinBackOff { backoff, round }, true) => println!(
            "{}",
            serde_json::json!({"event": "pin_backoff", "backoff_ms": backoff.as_secs_f64() * 1e3, "round": round})
        ),
        (DeviceEvent::PinBackOff { backoff, .. }, false) => println!(
            "too many wrong PINs: no onboarding for {} s, then a new PIN",
            backoff.as_secs()
        ),
        (DeviceEvent::Renamed { name }, true) => {
            println!("{}", serde_json::json!({"event": "renamed", "name": name}))
        }
        (DeviceEvent::Renamed { name }, false) => println!("renamed by the owner: now '{name}'"),
    }
}

/// `at` as CLOCK_MONOTONIC nanoseconds, the clock every process on the
/// host shares (benchmarks compare apply times across light processes).
fn mono_ns(at: std::time::Instant) -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    let now_ns = now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64;
    now_ns.saturating_sub(at.elapsed().as_nanos() as u64)
}

/// Prints and clears the drop counts gathered since the last call.
pub(super) fn print_drops(drops: &mut std::collections::BTreeMap<String, u64>, json: bool) {
    for (reason, count) in std::mem::take(drops) {
        if json {
            println!(
                "{}",
                serde_json::json!({"event": "dropped", "reason": reason, "count": count})
            );
        } else {
            tracing::info!(%reason, count, "multicast datagrams dropped");
        }
    }
}

//! The end of `ssm demo`: the summary, as text or one JSON object.
use super::ms;
use super::story::{Attacks, Rounds, Stage};
use std::time::Duration;

/// What the report tells, besides the rounds and the attacks.
pub(super) struct Facts {
    pub(super) obt: uuid::Uuid,
    pub(super) domain_devices: usize,
    pub(super) lights_onboarded: usize,
    pub(super) discover_time: Duration,
    pub(super) onboard_time: Duration,
    pub(super) granted: usize,
    pub(super) sender_id: String,
    pub(super) total: Duration,
}

/// Prints the summary; true if everything worked.
pub(super) fn report(st: &Stage<'_>, f: &Facts, r: &Rounds, a: &Attacks) -> bool {
    let (args, n) = (st.args, st.n);
    let (rejected, unchanged) = (&a.0, a.1);
    let attacks_ok = rejected.iter().all(|(_, _, k)| *k == n) && unchanged;
    let all_ok = r.all_ok && attacks_ok;
    let latencies = &r.latencies;
    let p50 = latencies
        .get(latencies.len() / 2)
        .copied()
        .unwrap_or_default();
    let max = latencies.last().copied().unwrap_or_default();
    let lights_switched = r.switched.iter().filter(|s| **s).count();
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "lights": n, "rounds": args.rounds, "commands": args.rounds * 2,
                "transport": if st.v6 { "ipv6" } else { "ipv4" },
                "domain": {"obt": f.obt, "devices": f.domain_devices},
                "onboarded": {"lights": f.lights_onboarded, "switches": 1, "method": "random-pin",
                              "discover_ms": ms(f.discover_time), "onboard_ms": ms(f.onboard_time)},
                "granted": f.granted, "sender_id": f.sender_id,
                "lights_switched": lights_switched,
                "all_switched": lights_switched == n,
                "notify_ok": r.commands.iter().all(|c| c["notify_ok"] == true),
                "latency_us": {"p50": p50.as_micros() as u64, "max": max.as_micros() as u64,
                               "skew_max": r.worst_skew.as_micros() as u64},
                "replay_rejected_by": rejected[0].2, "forgery_rejected_by": rejected[1].2,
                "unchanged_by_attacks": unchanged,
                "commands_detail": r.commands, "total_ms": ms(f.total), "ok": all_ok,
            })
        );
    } else {
        println!();
        for (name, why, k) in rejected {
            println!("{name}: rejected by {k}/{n} lights ({why})");
        }
        println!(
            "states unchanged by the attacks: {}",
            if unchanged { "yes" } else { "NO" }
        );
        println!(
            "summary: {lights_switched}/{n} lights switched ON and OFF x{}, one datagram per command; \
             latency p50 {:.3} ms, max {:.3} ms, skew {:.3} ms; {:.2} s in all: {}",
            args.rounds,
            ms(p50),
            ms(max),
            ms(r.worst_skew),
            f.total.as_secs_f64(),
            if all_ok { "OK" } else { "FAILED" }
        );
        if !all_ok {
            println!("run with -v for the devices' logs");
        }
    }
    all_ok
}

//! An onboarding that was interrupted and undone by the device (the OBT
//! was killed after recording it; the device never finished the transfer,
//! so it refuses the recorded owner key): `list` and `status` show it as
//! interrupted with what to do, `offboard` says there is nothing to reset
//! (not "reset it by hand"), and `sync` settles such a row by forgetting
//! it. Loopback only; no root needed.
mod common;
use common::*;
use ssm_testkit::{Host, TempDir};

/// A row as an OBT killed mid-onboarding leaves it: `onboarding`, with an
/// owner PSK the device does not know.
fn ghost_row(domain: &std::path::Path, name: &str, ep: &str) {
    let c = rusqlite::Connection::open(domain).unwrap();
    let uuid = uuid::Uuid::new_v4().to_string();
    c.execute(
        "INSERT INTO devices (uuid, name, endpoint, role, state, owner_psk) VALUES (?1, ?2, ?3, 'light', 'onboarding', ?4)",
        rusqlite::params![uuid, name, ep, &[7u8; 16][..]],
    )
    .unwrap();
}

#[test]
fn interrupted_onboarding_rows_tell_the_truth() {
    let h = Host(None);
    let tmp = TempDir::new("ssm-interrupted");
    let dir = tmp.path();
    let port = ssm_testkit::free_udp_port();
    let light = start_with(&h, &dir.join("l"), "lo", "light", port, &["--name", "l"]);
    let domain = dir.join("domain.sqlite");
    let d = domain.to_str().unwrap();
    let ports = port.to_string();
    assert!(h.ssm(&["obt", "--domain", d, "init"]).status.success());
    ghost_row(&domain, "ghost", &light.ep);

    let out = h.ssm(&["obt", "--domain", d, "list"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(text.contains("interrupted"), "{text}");
    assert!(text.contains("re-run `ssm obt onboard`"), "{text}");
    let (_, v) = h.json(&["obt", "--domain", d, "status", "--json"], false);
    let row = &v["devices"][0];
    assert_eq!(
        (row["state"].as_str(), row["reachable"].as_bool()),
        (Some("interrupted"), Some(false)),
        "{v}"
    );
    assert!(
        row["note"]
            .as_str()
            .unwrap()
            .contains("interrupted onboarding"),
        "{v}"
    );

    // Offboarding it: the device is not ours; nothing to reset by hand.
    let out = h.ssm(&[
        "obt", "--domain", d, "offboard", "ghost", "--iface", "lo", "--port", &ports,
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("not owned by this domain"), "{text}");
    assert!(
        !text.contains("by hand") && !text.contains("could not be reset"),
        "{text}"
    );
    let (_, v) = h.json(&["obt", "--domain", d, "list", "--json"], false);
    assert!(v["devices"].as_array().unwrap().is_empty(), "{v}");

    // Re-running settles it too: the device refuses the key, the row goes.
    ghost_row(&domain, "ghost-2", &light.ep);
    let out = h.ssm(&[
        "obt", "--domain", d, "sync", "--iface", "lo", "--port", &ports,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, v) = h.json(&["obt", "--domain", d, "list", "--json"], false);
    assert!(v["devices"].as_array().unwrap().is_empty(), "{v}");
    // And the device is still there to onboard, unowned.
    let (_, v) = h.json(
        &[
            "obt",
            "--domain",
            d,
            "discover",
            "--json",
            "--iface",
            "lo",
            "--port",
            &ports,
            "--wait-ms",
            "500",
        ],
        false,
    );
    assert_eq!(v["unowned"].as_array().unwrap().len(), 1, "{v}");
    drop(light);
}

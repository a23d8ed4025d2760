//! External (non-OCF) members of a `group-oscore` group managed by `ssm
//! obt`, every device its own process (each in its own network namespace
//! when root, IPv6 ff02::158; else on `lo`, IPv4 224.0.1.187):
//!
//! * our OBT commissions a group `hall --profile group-oscore --aead-alg
//!   AES-CCM-16-64-128` of two of our lights and our switch, registers an
//!   external switch by its CCS (an Ed25519 key made here), grants it the
//!   group and exports its material (0600);
//! * with nothing but that material, this test (as the external switch:
//!   `ssm_ocf::group_cred` and `ssm_runtime::group_client::GroupSsmSender`)
//!   signs and protects an UPDATE and sends it to the group from its own
//!   host (pinned to the test's interface, hop limit 1): both lights apply
//!   it, credited to the external member's UUID (the same without the
//!   AEAD Algorithm: dropped as `BadSignature`);
//! * `material` of a light of ours and of a member not in the group fail;
//!   `sync` and `status` go past the external member;
//! * `external remove` rekeys the group: an UPDATE made from the old
//!   material is applied by no light, and our switch still switches them.
mod common;
use common::*;
use serde_json::Value;
use socket2::{Domain, Protocol, Socket, Type};
use ssm_ocf::cred::{CredType, Credential, OscoreFields, PrivateData};
use ssm_ocf::group_cred::{ccs_of_ed25519, public_key, GroupFields};
use ssm_runtime::group_client::GroupSsmSender;
use ssm_runtime::store::FileSequenceStore;
use ssm_testkit::hosts;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
use std::path::Path;
use std::time::{Duration, Instant};

/// Per light until `deadline`: applied (with the `from` of the event)?,
/// drop reasons.
fn observe(lights: &[&Dev], deadline: Instant) -> Vec<(Option<Value>, Vec<String>)> {
    lights.iter().map(|d| reported(d, deadline)).collect()
}

/// One datagram to the All OCF Nodes group from `host`: IPv6 ff02::158 on
/// `iface` inside its namespace, or IPv4 224.0.1.187 on `lo`; hop limit 1.
fn send_datagram(host: &Host, iface: &str, port: u16, bytes: &[u8]) {
    let (ns, iface, bytes) = (host.0.clone(), iface.to_string(), bytes.to_vec());
    std::thread::spawn(move || {
        if let Some(ns) = &ns {
            let f = std::fs::File::open(format!("/var/run/netns/{ns}")).expect("netns file");
            use std::os::fd::AsRawFd;
            // SAFETY: setns on a valid namespace fd affects only this thread.
            let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {ns}: {}", std::io::Error::last_os_error());
        }
        if iface == "lo" {
            let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
            s.set_multicast_if_v4(&Ipv4Addr::LOCALHOST).unwrap();
            s.set_multicast_ttl_v4(1).unwrap();
            let to = SocketAddrV4::new(Ipv4Addr::new(224, 0, 1, 187), port);
            s.send_to(&bytes, &to.into()).unwrap();
        } else {
            let name = std::ffi::CString::new(iface.clone()).unwrap();
            // SAFETY: a valid C string.
            let idx = unsafe { libc::if_nametoindex(name.as_ptr()) };
            assert!(idx > 0, "no {iface} in {ns:?}");
            let s = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP)).unwrap();
            s.set_multicast_if_v6(idx).unwrap();
            s.set_multicast_hops_v6(1).unwrap();
            let group = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x158);
            let to = SocketAddrV6::new(group, port, 0, idx);
            s.send_to(&bytes, &to.into()).unwrap();
        }
    })
    .join()
    .unwrap();
}

fn send_hall(host: &Host, state: &Path, iface: &str, port: u16, value: &str) {
    send_to(host, state, iface, port, value, Some("hall"))
}

/// The external switch's sender, built from its material document alone.
fn sender_of(material: &Value, key: &[u8; 32], ssn: &Path) -> GroupSsmSender {
    let hex_of = |k: &str| material[k].as_str().unwrap().to_string();
    let cred = Credential {
        credid: 1,
        subjectuuid: "11111111-2222-4333-8444-555555555555".into(),
        credtype: CredType::GroupOscoreSender,
        privatedata: Some(PrivateData::raw(&hex::decode(hex_of("secret")).unwrap())),
        oscore: Some(OscoreFields {
            senderid: Some(hex_of("sender_id")),
            desc: Some("external".into()),
            group: Some(GroupFields {
                gid: hex_of("gid"),
                salt: material["salt"].as_str().map(str::to_string),
                signalg: material["signalg"].as_i64().unwrap(),
                encalg: material["encalg"].as_i64().unwrap(),
                gmcred: hex_of("gm_cred"),
                authcred: None,
                aeadalg: material["aeadalg"].as_i64(),
            }),
            ..Default::default()
        }),
    };
    let oc = cred.oscore().unwrap().unwrap();
    GroupSsmSender::new(&oc, key, FileSequenceStore::new(ssn)).unwrap()
}

fn update(sender: &mut GroupSsmSender, value: bool, mid: u16) -> Vec<u8> {
    let req = ssm_ocf::ssm::update_request(
        ssm_ocf::switch::HREF,
        &ssm_ocf::cbor::map([("value", ciborium::Value::Bool(value))]),
        mid,
        ssm_coap::Token::new(&mid.to_be_bytes()).unwrap(),
        true,
    );
    sender.protect(&req, true).unwrap().0
}

fn credtypes(state: &Path) -> Vec<u64> {
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(state.join("svr.json")).unwrap()).unwrap();
    let mut t: Vec<u64> = v["cred"]["creds"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["credtype"].as_u64())
        .filter(|t| *t != 1)
        .collect();
    t.sort();
    t
}

#[test]
fn an_external_member_switches_our_lights_until_it_is_removed() {
    let pid = std::process::id();
    let (topo, hosts, iface) = hosts(&format!("ssmex{}", pid % 100000), 5);
    let port = ssm_testkit::free_udp_port();
    let dir = ssm_testkit::TempDir::new("ssm-obt-external");
    let domain = dir.join("domain.sqlite");
    let domain = domain.to_str().unwrap().to_string();
    let link = link_args(iface, port);
    let link: Vec<&str> = link.iter().map(String::as_str).collect();
    let obt = &hosts[0];
    let run = |args: &[&str], with_link: bool, may_fail: bool| {
        let mut a = vec!["obt", "--domain", &domain, "--json"];
        a.extend_from_slice(args);
        if with_link {
            a.extend(&link);
        }
        obt.json(&a, may_fail)
    };
    let obt_cmd = |args: &[&str]| run(args, true, false).1;
    let plain = |args: &[&str]| run(args, false, false).1;
    let names = ["l1", "l2", "sw"];
    let role = |n: &str| if n == "sw" { "switch" } else { "light" };
    let devs: Vec<Dev> = names
        .iter()
        .enumerate()
        .map(|(i, n)| start(&hosts[i + 1], &dir.join(n), iface, role(n), port))
        .collect();
    let sheet: Vec<_> = devs
        .iter()
        .zip(names)
        .map(|(d, n)| (d, n.to_string(), role(n)))
        .collect();
    let pins = pin_sheet(&dir, &sheet);
    let lights: Vec<&Dev> = devs[..2].iter().collect();
    let drain = || devs.iter().for_each(Dev::drain);
    let soon = || Instant::now() + Duration::from_millis(2000);
    plain(&["init", "--name", "site"]);
    let v = obt_cmd(&["onboard", "--all", "--pins", pins.to_str().unwrap()]);
    assert_eq!(v["onboarded"], 3, "{v}");

    // The group, with the AEAD Algorithm aiocoap needs.
    let (code, v) = run(
        &["group", "create", "east", "--aead-alg", "AES-CCM-16-64-128"],
        false,
        true,
    );
    assert_eq!((code, v["exit"].as_i64()), (Some(2), Some(2)), "{v}");
    let g = plain(&[
        "group",
        "create",
        "hall",
        "--profile",
        "group-oscore",
        "--aead-alg",
        "AES-CCM-16-64-128",
    ])["group"]
        .clone();
    assert_eq!(
        (g["profile"].as_str(), g["aead_alg"].as_i64()),
        (Some("group-oscore"), Some(10)),
        "{g}"
    );
    plain(&["group", "create", "east"]);
    let v = obt_cmd(&["group", "add", "hall", "l1", "l2"]);
    assert_eq!(v["stale"], 0, "{v}");
    let v = obt_cmd(&["ssm", "grant", "sw", "--group", "hall"]);
    assert_eq!(v["stale"], 0, "{v}");

    // The external switch: its own key, its CCS registered (hex text).
    let key = ssm_runtime::random_bytes::<32>();
    let ccs = ccs_of_ed25519(&public_key(&key)).to_vec();
    let ccs_file = dir.join("bms.ccs");
    let spaced: Vec<String> = hex::encode(&ccs)
        .as_bytes()
        .chunks(16)
        .map(|c| String::from_utf8(c.to_vec()).unwrap())
        .collect();
    std::fs::write(&ccs_file, spaced.join("\n")).unwrap();
    let mut bad = ccs.clone();
    bad[10] = 0x01; // crv P-256
    let bad_file = dir.join("bad.ccs");
    std::fs::write(&bad_file, &bad).unwrap();
    let (code, v) = run(
        &[
            "external",
            "add",
            "bad",
            "--role",
            "switch",
            "--authcred",
            bad_file.to_str().unwrap(),
        ],
        false,
        true,
    );
    assert_eq!(code, Some(2), "{v}");
    assert!(v["error"].as_str().unwrap().contains("Ed25519"), "{v}");
    let bms = plain(&[
        "external",
        "add",
        "bms",
        "--role",
        "switch",
        "--authcred",
        ccs_file.to_str().unwrap(),
    ]);
    assert_eq!(
        (bms["state"].as_str(), bms["role"].as_str()),
        (Some("external"), Some("switch")),
        "{bms}"
    );
    let bms_uuid = bms["uuid"].as_str().unwrap().to_string();
    let (code, v) = run(
        &[
            "external",
            "add",
            "copy",
            "--role",
            "switch",
            "--authcred",
            ccs_file.to_str().unwrap(),
        ],
        false,
        true,
    );
    assert_eq!(code, Some(1), "one key pair per member: {v}");
    let other = ccs_of_ed25519(&public_key(&ssm_runtime::random_bytes::<32>()));
    let other_file = dir.join("other.ccs");
    std::fs::write(&other_file, other).unwrap();
    plain(&[
        "external",
        "add",
        "other",
        "--role",
        "switch",
        "--authcred",
        other_file.to_str().unwrap(),
    ]);
    let (code, v) = run(&["group", "add", "east", "other"], true, true);
    assert_eq!(
        code,
        Some(1),
        "an ocf-ssm group takes no external member: {v}"
    );
    let v = obt_cmd(&["ssm", "grant", "bms", "--group", "hall"]);
    assert_eq!(
        (v["stale"].as_u64(), v["granted"].as_u64()),
        (Some(0), Some(2)),
        "{v}"
    );
    for l in ["l1", "l2"] {
        assert_eq!(
            credtypes(&dir.join(l)),
            [64, 131072, 131072],
            "{l}: no pair-wise key for bms"
        );
        let svr = std::fs::read_to_string(dir.join(l).join("svr.json")).unwrap();
        assert!(svr.contains(&hex::encode(&ccs)), "{l} holds bms's CCS");
    }

    // Its material, 0600, and the same on stdout.
    let out = dir.join("bms-hall.json");
    let v = plain(&[
        "external",
        "material",
        "bms",
        "--group",
        "hall",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(
        (v["epoch"].as_i64(), v["member"].as_str()),
        (Some(1), Some("bms")),
        "{v}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&out).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let m: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let printed = plain(&["external", "material", "bms", "--group", "hall"]);
    assert_eq!(printed, m);
    // The master secret is in the document only: not in the trace log,
    // nor in the --json report of `--out`.
    let secret = m["secret"].as_str().unwrap().to_string();
    let o = obt.ssm(&[
        "-vv",
        "obt",
        "--domain",
        &domain,
        "--json",
        "external",
        "material",
        "bms",
        "--group",
        "hall",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success());
    for (what, text) in [("log", &o.stderr), ("--json report", &o.stdout)] {
        let text = String::from_utf8_lossy(text);
        assert!(
            !text.contains(&secret) && !text.contains(&secret[..16]),
            "the secret in the {what}"
        );
    }
    let show = plain(&["group", "show", "hall"])["group"].clone();
    let sw_sid = show["sender_ids"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["uuid"] != bms_uuid.as_str())
        .unwrap()["sender_id"]
        .clone();
    assert_eq!(
        (
            m["group"].as_str(),
            m["role"].as_str(),
            m["aeadalg"].as_i64(),
            m["encalg"].as_i64(),
            m["signalg"].as_i64(),
            m["hkdf"].as_str()
        ),
        (
            Some("hall"),
            Some("switch"),
            Some(10),
            Some(10),
            Some(-8),
            Some("sha256")
        ),
        "{m}"
    );
    assert_eq!(m["own_ccs"], hex::encode(&ccs));
    let peers = m["peers"].as_object().unwrap();
    assert_eq!(peers.len(), 1, "our switch: {m}");
    assert!(peers.contains_key(sw_sid.as_str().unwrap()), "{m} {show}");
    assert!(show["sender_ids"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["sender_id"] == m["sender_id"]));

    // Errors: a light of ours, a member not in the group.
    for who in ["l1", "other"] {
        let (code, v) = run(
            &["external", "material", who, "--group", "hall"],
            false,
            true,
        );
        assert_eq!((code, v["exit"].as_i64()), (Some(1), Some(1)), "{who}: {v}");
    }
    // The OBT goes past it: listed as external, never stale, not read.
    let list = plain(&["list"]);
    let row = list["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "bms")
        .unwrap()
        .clone();
    assert_eq!(
        (row["state"].as_str(), row["ep"].is_null()),
        (Some("external"), true),
        "{row}"
    );
    let v = obt_cmd(&["sync", "--all"]);
    assert_eq!(v["stale"], 0, "{v}");
    let st = obt_cmd(&["status"]);
    let row = st["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "bms")
        .unwrap()
        .clone();
    assert_eq!(
        (row["state"].as_str(), row["reachable"].as_bool()),
        (Some("external"), Some(false)),
        "{row}"
    );

    // Without the AEAD Algorithm (what our OBT gave before --aead-alg),
    // its external_aad differs: both lights drop it. Both senders share
    // one sequence store: no sequence number is used twice.
    let mut without = m.clone();
    without["aeadalg"] = Value::Null;
    let mut wrong = sender_of(&without, &key, &dir.join("bms.ssn"));
    drain();
    send_datagram(&hosts[4], iface, port, &update(&mut wrong, true, 9));
    let seen = observe(&lights, soon());
    for (n, (applied, drops)) in ["l1", "l2"].iter().zip(&seen) {
        assert!(
            applied.is_none() && drops == &["BadSignature"],
            "{n}: {seen:?}"
        );
    }
    drop(wrong);

    // The external switch commands the lights.
    let mut sender = sender_of(&m, &key, &dir.join("bms.ssn"));
    drain();
    send_datagram(&hosts[4], iface, port, &update(&mut sender, true, 1));
    let seen = observe(&lights, soon());
    for (n, (applied, _)) in ["l1", "l2"].iter().zip(&seen) {
        let ev = applied
            .as_ref()
            .unwrap_or_else(|| panic!("{n} did not apply bms's UPDATE: {seen:?}"));
        assert_eq!(
            (ev["state"]["value"].as_bool(), ev["from"].as_str()),
            (Some(true), Some(bms_uuid.as_str())),
            "{n}"
        );
    }

    // Removal: rekeyed; the old material switches nothing, ours still does.
    let v = obt_cmd(&["external", "remove", "bms"]);
    assert_eq!(v["stale"], 0, "{v}");
    assert_eq!(
        v["rekeyed"],
        serde_json::json!([{"group": "hall", "epoch": 2}]),
        "{v}"
    );
    let list = plain(&["list"]);
    assert!(
        !list["devices"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["name"] == "bms"),
        "{list}"
    );
    for l in ["l1", "l2"] {
        assert_eq!(
            credtypes(&dir.join(l)),
            [64, 131072],
            "{l}: bms's context gone"
        );
    }
    drain();
    for mid in 2..5 {
        send_datagram(&hosts[4], iface, port, &update(&mut sender, false, mid));
    }
    let seen = observe(&lights, soon());
    for (n, (applied, drops)) in ["l1", "l2"].iter().zip(&seen) {
        assert!(
            applied.is_none(),
            "{n} applied the removed member's UPDATE: {seen:?}"
        );
        assert!(
            !drops.is_empty(),
            "{n} saw the removed member's datagrams: {seen:?}"
        );
    }
    drain();
    send_hall(&hosts[3], &dir.join("sw"), iface, port, "off");
    let seen = observe(&lights, soon());
    assert!(
        seen.iter().all(|o| o.0.is_some()),
        "our switch commands the rekeyed group: {seen:?}"
    );
    drop(devs);
    drop(topo);
}

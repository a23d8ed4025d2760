//! An onboarding tool commissions a small hallway on loopback: it finds
//! the unowned devices by multicast `GET /oic/sec/doxm?owned=FALSE`,
//! onboards 3 lights and 2 switches by Random PIN, creates the SSM group,
//! gives both switches a Sender ID, every light the server credentials and
//! an ACE for switch 0 only. Switch 0's multicast switches every light;
//! switch 1's verifies but is denied by the ACL.

use ciborium::Value;
use ssm_ocf::cred::CredType;
use ssm_ocf::device::{Device, DeviceInfo};
use ssm_ocf::provision::{default_aces, SsmGroup};
use ssm_ocf::security::SecurityState;
use ssm_ocf::switch::{BinarySwitch, HREF};
use ssm_ocf::{cbor, Uuid};
use ssm_runtime::client::{MulticastScope, MulticastTargets, SsmSender};
use ssm_runtime::device::{start, DeviceConfig, DeviceEvent, DeviceHandle};
use ssm_runtime::obt_transport::{discover_unowned, onboard, provision, zero_free_uuid};
use ssm_runtime::random_bytes;
use ssm_runtime::store::FileSequenceStore;
use ssm_testkit::TempDir;
use std::net::SocketAddr;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commission_a_hallway() {
    let dir = TempDir::new("test-hallway");
    let port = ssm_testkit::free_udp_port();
    let mut devices: Vec<(DeviceHandle, bool)> = Vec::new();
    for i in 0..5 {
        let is_light = i < 3;
        let id = Uuid::new_v4();
        let mut d = Device::new(DeviceInfo::light(&format!("dev {i}"), id));
        if is_light {
            d.add_resource(HREF, Box::new(BinarySwitch::default()), true);
        }
        d.set_security(SecurityState::new(id));
        let mut cfg = DeviceConfig::loopback(dir.join(format!("dev-{i}")));
        cfg.port = port;
        devices.push((start(d, &cfg).await.unwrap(), is_light));
    }
    let targets = MulticastTargets::open(&MulticastScope {
        interfaces: vec!["lo".into()],
        ipv4: true,
        ipv6_scopes: vec![],
        port,
        hops: 1,
    })
    .unwrap();
    let found = discover_unowned(&targets, Duration::from_millis(500))
        .await
        .unwrap();
    assert_eq!(found.len(), 5, "{found:?}");

    // Onboard each (the PIN is read off the device, as a person would).
    let obt = zero_free_uuid();
    let domain = (Uuid::new_v4(), "hallway");
    let mut owned = Vec::new();
    for (h, is_light) in &devices {
        let peer = SocketAddr::from(([127, 0, 0, 1], h.unicast.port()));
        assert!(found.iter().any(|(a, _)| a.port() == peer.port()));
        let pin = h.pin().unwrap();
        let done = onboard(peer, &pin, obt, zero_free_uuid(), domain, &mut |_, _| {})
            .await
            .unwrap();
        owned.push((peer, done, *is_light));
    }
    assert!(discover_unowned(&targets, Duration::from_millis(300))
        .await
        .unwrap()
        .is_empty());

    // SSM group: both switches get Sender IDs; lights get server creds for
    // both, but an ACE only for switch 0.
    let mut rng = |b: &mut [u8]| b.copy_from_slice(&random_bytes::<64>()[..b.len()]);
    let mut group = SsmGroup::new(&mut rng);
    let switches: Vec<_> = owned.iter().filter(|o| !o.2).collect();
    for (peer, done, _) in &switches {
        let cred = group.add_client(done.device_uuid, &mut rng);
        provision(
            *peer,
            obt,
            &done.owner_psk,
            ssm_ocf::onboarding::provision(vec![cred], vec![]),
            &mut |_, _| {},
        )
        .await
        .unwrap();
    }
    let allowed = switches[0].1.device_uuid;
    for (peer, done, _) in owned.iter().filter(|o| o.2) {
        let creds = group.server_creds();
        let only_allowed = ssm_ocf::cred::CredResource {
            creds: creds
                .iter()
                .filter(|c| c.subjectuuid == allowed.to_string())
                .cloned()
                .collect(),
            rowneruuid: String::new(),
        };
        let aces = default_aces(&only_allowed, &[HREF], false);
        provision(
            *peer,
            obt,
            &done.owner_psk,
            ssm_ocf::onboarding::provision(creds, aces),
            &mut |_, _| {},
        )
        .await
        .unwrap();
    }

    let lights: Vec<&DeviceHandle> = devices.iter().filter(|d| d.1).map(|d| &d.0).collect();
    let switch_handles: Vec<&DeviceHandle> =
        devices.iter().filter(|d| !d.1).map(|d| &d.0).collect();
    for (i, sw) in switch_handles.iter().enumerate() {
        let sec = sw.security().unwrap();
        let oscore = sec.cred.oscore_creds().unwrap();
        let cred = oscore
            .iter()
            .find(|c| c.credtype == CredType::SsmClient)
            .unwrap();
        let mut sender = SsmSender::new(
            cred,
            FileSequenceStore::new(dir.join(format!("switch-{i}.ssn"))),
        )
        .unwrap();
        let mut rxs: Vec<_> = lights.iter().map(|l| l.events.subscribe()).collect();
        sender
            .send(
                &targets,
                HREF,
                &cbor::map([("value", Value::Bool(true))]),
                true,
            )
            .await
            .unwrap();
        for rx in rxs.iter_mut() {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
            let mut verdict = None;
            while let Ok(Ok(ev)) = tokio::time::timeout_at(deadline, rx.recv()).await {
                match ev {
                    DeviceEvent::SsmApplied { .. } => verdict = Some("applied"),
                    DeviceEvent::Refused(why) if why.to_string().contains("not authorised") => {
                        verdict = Some("denied")
                    }
                    DeviceEvent::Dropped(_) | DeviceEvent::Refused(_) => verdict = Some("dropped"),
                    _ => continue,
                }
                break;
            }
            assert_eq!(
                verdict,
                Some(if i == 0 { "applied" } else { "denied" }),
                "switch {i}"
            );
        }
    }
    for l in &lights {
        assert_eq!(
            l.representation(HREF),
            Some(serde_json::json!({"value": true}))
        );
    }
    drop(devices);
    std::fs::remove_dir_all(&dir).unwrap();
}

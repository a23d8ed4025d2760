//! Onboarding over real sockets on 127.0.0.1: Random PIN owner transfer in
//! DTLS (a wrong PIN fails and leaves the device unowned, the right one
//! succeeds), SSM provisioning in an owner session, an SSM update that the
//! light then accepts, a restart that keeps everything, and a hard reset.

use ciborium::Value;
use ssm_ocf::cred::CredType;
use ssm_ocf::device::{Device, DeviceInfo};
use ssm_ocf::onboarding::provision as provisioning;
use ssm_ocf::provision::{default_aces, generate_group};
use ssm_ocf::security::pstat::DeviceOnboardingState as Dos;
use ssm_ocf::security::SecurityState;
use ssm_ocf::switch::{BinarySwitch, HREF};
use ssm_ocf::{cbor, Uuid};
use ssm_runtime::client::{MulticastScope, MulticastTargets, SsmSender};
use ssm_runtime::device::{start, DeviceConfig, DeviceEvent, DeviceHandle};
use ssm_runtime::obt_transport::{onboard, provision, zero_free_uuid, ObtError};
use ssm_runtime::state_dir::StateDir;
use ssm_runtime::store::FileSequenceStore;
use ssm_testkit::TempDir;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

fn light(sec: SecurityState) -> Device {
    let mut d = Device::new(DeviceInfo::light("hall light", sec.device_uuid()));
    d.add_resource(HREF, Box::new(BinarySwitch::default()), true);
    d.set_security(sec);
    d
}

async fn start_light(dir: &Path, sec: SecurityState, port: u16) -> (DeviceHandle, SocketAddr) {
    let mut cfg = DeviceConfig::loopback(dir.to_path_buf());
    cfg.port = port;
    let h = start(light(sec), &cfg).await.unwrap();
    let peer = SocketAddr::from(([127, 0, 0, 1], h.unicast.port()));
    (h, peer)
}

async fn applied(h: &DeviceHandle, rx: &mut tokio::sync::broadcast::Receiver<DeviceEvent>) -> bool {
    let _ = h;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while let Ok(Ok(ev)) = tokio::time::timeout_at(deadline, rx.recv()).await {
        match ev {
            DeviceEvent::SsmApplied { .. } => return true,
            DeviceEvent::Refused(_) | DeviceEvent::Dropped(_) => return false,
            _ => {}
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_pin_onboarding_provisioning_restart_and_reset() {
    let dir = TempDir::new("test-onboard");
    let port = ssm_testkit::free_udp_port();
    let factory = zero_free_uuid();
    let (h, peer) = start_light(&dir, SecurityState::new(factory), port).await;
    let pin = h.pin().expect("an unowned device shows a PIN");
    assert_eq!(std::fs::read_to_string(dir.join("pin")).unwrap(), pin);
    let obt = zero_free_uuid();
    let new_id = zero_free_uuid();
    let domain = (Uuid::new_v4(), "hall");

    // Wrong PIN: the handshake fails; the device stays unowned in RFOTM.
    let wrong = if pin == "12345678" {
        "87654321"
    } else {
        "12345678"
    };
    match onboard(peer, wrong, obt, new_id, domain, &mut |_, _| {}).await {
        Err(ObtError::Handshake { .. }) => {}
        other => panic!("wrong PIN: {other:?}"),
    }
    let s = h.security().unwrap();
    assert_eq!((s.doxm.owned, s.pstat.dos), (false, Dos::Rfotm));

    // Right PIN.
    let mut steps = 0;
    let done = onboard(peer, &pin, obt, new_id, domain, &mut |d, _| steps = d)
        .await
        .unwrap();
    assert!(steps >= 13, "progress reported");
    let s = h.security().unwrap();
    assert_eq!(
        (
            s.doxm.owned,
            s.pstat.dos,
            s.device_uuid(),
            s.doxm.devowneruuid
        ),
        (true, Dos::Rfnop, new_id, obt)
    );
    assert_eq!(
        s.owner_psk(),
        Some(done.owner_psk.to_vec()),
        "both sides derived the same owner PSK"
    );
    assert!(h.pin().is_none(), "no PIN once owned");

    // An owner session's PSK identity hint: the 16 raw bytes of the device
    // UUID (the reference OBT picks the owner credential by it).
    let sock = ssm_runtime::client::socket_for(peer).await.unwrap();
    let cfg = ssm_dtls::DtlsConfig::psk_client(obt.as_bytes().to_vec(), done.owner_psk.to_vec());
    let mut session = ssm_dtls::connect(&sock, peer, &cfg, Duration::from_secs(4))
        .await
        .unwrap();
    assert_eq!(
        session.psk_identity_hint(),
        Some(new_id.as_bytes().to_vec())
    );
    session.close();
    let _ = ssm_dtls::send_pending(&mut session, &sock, peer).await;

    // SSM provisioning in an owner session.
    let mut rng = |b: &mut [u8]| b.copy_from_slice(&ssm_runtime::random_bytes::<64>()[..b.len()]);
    let (lights, switches) = generate_group(1, 1, obt, &mut rng);
    let creds: Vec<_> = lights[0]
        .creds
        .creds
        .iter()
        .filter(|c| c.credtype == ssm_ocf::cred::CredType::SsmServer)
        .cloned()
        .collect();
    let aces = default_aces(&lights[0].creds, &[HREF], false);
    provision(
        peer,
        obt,
        &done.owner_psk,
        provisioning(creds, aces),
        &mut |_, _| {},
    )
    .await
    .unwrap();
    assert_eq!(
        h.security()
            .unwrap()
            .cred
            .creds
            .iter()
            .filter(|c| c.credtype == ssm_ocf::cred::CredType::SsmServer)
            .count(),
        1
    );

    // The switch's multicast is now accepted.
    let sc = switches[0].creds.oscore_creds().unwrap();
    let mut sender = SsmSender::new(
        sc.iter()
            .find(|c| c.credtype == CredType::SsmClient)
            .unwrap(),
        FileSequenceStore::new(dir.join("switch.ssn")),
    )
    .unwrap();
    let targets = MulticastTargets::open(&MulticastScope {
        interfaces: vec!["lo".into()],
        ipv4: true,
        ipv6_scopes: vec![],
        port,
        hops: 1,
    })
    .unwrap();
    let on = cbor::map([("value", Value::Bool(true))]);
    let mut rx = h.events.subscribe();
    sender.send(&targets, HREF, &on, true).await.unwrap();
    assert!(applied(&h, &mut rx).await);

    // Restart from disk: still owned, in RFNOP, with its credentials.
    h.stop();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let sec = StateDir::new(&dir)
        .load_security()
        .unwrap()
        .expect("svr.json");
    assert_eq!(
        (sec.doxm.owned, sec.pstat.dos, sec.device_uuid()),
        (true, Dos::Rfnop, new_id)
    );
    let (h, peer) = start_light(&dir, sec, port).await;
    let mut rx = h.events.subscribe();
    sender
        .send(
            &targets,
            HREF,
            &cbor::map([("value", Value::Bool(false))]),
            true,
        )
        .await
        .unwrap();
    assert!(applied(&h, &mut rx).await);

    // Hard reset by the owner: back to RFOTM without credentials, a new PIN.
    provision(
        peer,
        obt,
        &done.owner_psk,
        ssm_ocf::onboarding::hard_reset(),
        &mut |_, _| {},
    )
    .await
    .unwrap();
    let s = h.security().unwrap();
    assert_eq!(
        (s.doxm.owned, s.pstat.dos, s.cred.creds.len()),
        (false, Dos::Rfotm, 0)
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(h.pin().is_some());
    // And it can be onboarded again.
    let pin = h.pin().unwrap();
    onboard(peer, &pin, obt, zero_free_uuid(), domain, &mut |_, _| {})
        .await
        .unwrap();
    assert!(h.security().unwrap().doxm.owned);
    drop(h);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A crash in the middle of an owner transfer leaves its first steps in
/// svr.json (each is persisted): the device starts unowned and clean, never
/// half-owned (found by crates/ssm-cli/tests/crash_store.rs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_done_owner_transfer_on_disk_is_undone_at_start() {
    let dir = TempDir::new("test-half-owned");
    let id = Uuid::from_u128(0x4a1f);
    let mut s = SecurityState::new(id);
    s.acl.rowneruuid = Uuid::from_u128(0x0b7);
    s.doxm.devowneruuid = Uuid::from_u128(0x0b7);
    assert_eq!(s.pstat.dos, Dos::Rfotm);
    StateDir::new(&dir).save_security(&s).unwrap();
    let loaded = StateDir::new(&dir).load_security().unwrap().unwrap();
    assert_ne!(loaded, SecurityState::new(id), "the fixture is half-owned");
    let port = ssm_testkit::free_udp_port();
    let (h, _) = start_light(&dir, loaded, port).await;
    let mut fresh = SecurityState::new(id);
    fresh.reset();
    assert_eq!(h.security().unwrap(), fresh);
    assert_eq!(
        StateDir::new(&dir).load_security().unwrap().unwrap(),
        fresh,
        "and on disk"
    );
    assert!(h.pin().is_some(), "onboardable again: it shows a PIN");
    h.stop();
}

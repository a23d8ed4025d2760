//! Onboarding a device while another OBT transfers its ownership (issue 18
//! F5: the device binds an owner transfer to the first PIN session that
//! writes and refuses every other PIN session until that one ends). The
//! engine's answer says what is happening, to which device, and how long
//! to wait; not "refused the PIN". Over real sockets on 127.0.0.1; the
//! device's multicast port is an ephemeral one (nothing here uses it).
use ssm_obt::engine::{no_progress, onboard_many, OnboardJob, Pin};
use ssm_obt::store::Store;
use ssm_ocf::device::{Device, DeviceInfo};
use ssm_ocf::security::SecurityState;
use ssm_ocf::switch::{BinarySwitch, HREF};
use ssm_runtime::device::{start, DeviceConfig, OTM_IDLE};
use ssm_runtime::obt_transport::{onboard_with, zero_free_uuid};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How long the other OBT stops in the middle of its transfer: longer
/// than our whole attempt (a 4 s handshake timeout), shorter than the
/// device's idle limit for a transfer.
const HOLD: Duration = Duration::from_secs(8);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_another_obt_is_transferring_is_said_to_be_busy() {
    assert!(HOLD < OTM_IDLE);
    let dir = ssm_testkit::TempDir::new("obt-busy");
    let factory = zero_free_uuid();
    let mut d = Device::new(DeviceInfo::light("hall light", factory));
    d.add_resource(HREF, Box::new(BinarySwitch::default()), true);
    d.set_security(SecurityState::new(factory));
    let mut cfg = DeviceConfig::loopback(dir.join("light"));
    cfg.port = 0;
    let h = start(d, &cfg).await.unwrap();
    let peer = SocketAddr::from(([127, 0, 0, 1], h.unicast.port()));
    let pin = h.pin().expect("an unowned device shows a PIN");

    // The other OBT (its own thread and runtime) stops after its first
    // writes (pstat om, doxm devowneruuid) for HOLD.
    let other = zero_free_uuid();
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let theirs = {
        let pin = pin.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let mut pin = move || Ok(pin.clone());
            let mut held = false;
            let mut progress = |done: usize, _: usize| {
                if done >= 3 && !held {
                    held = true;
                    let _ = held_tx.send(());
                    std::thread::sleep(HOLD);
                }
            };
            rt.block_on(onboard_with(
                peer,
                &mut pin,
                other,
                zero_free_uuid(),
                (other, "theirs"),
                &mut progress,
                &mut |_| Ok(()),
            ))
        })
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while held_rx.try_recv().is_err() {
        assert!(
            Instant::now() < deadline,
            "the other OBT's transfer did not get going"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(h.security().unwrap().owner_transfer_in_progress());

    // Ours, meanwhile.
    let store = Store::init(&dir.join("domain.sqlite"), zero_free_uuid(), "ours").unwrap();
    let (obt, _) = store.obt().unwrap();
    let job = OnboardJob {
        peer,
        pin: Pin::Given(pin),
        name: None,
        role: None,
    };
    let started = Instant::now();
    let (store, report) = onboard_many(store, obt, "ours", vec![job], 1, &no_progress)
        .await
        .unwrap();
    assert!(started.elapsed() < HOLD, "ours ended while theirs was held");
    let why = report[0].result.clone().unwrap_err();
    let want = format!(
        "another onboarding tool (owner {other}) is transferring ownership of device \
         hall light ({factory}) at coap://{peer} right now"
    );
    assert!(why.contains(&want), "{why}");
    let wait = format!("wait {} s and retry", OTM_IDLE.as_secs() + 1);
    assert!(why.contains(&wait), "{why}");
    assert!(!why.contains("refused the PIN"), "{why}");
    assert!(store.devices().unwrap().is_empty(), "nothing recorded");

    // Their transfer was not disturbed: it completes.
    let done = tokio::task::spawn_blocking(move || theirs.join().unwrap())
        .await
        .unwrap()
        .expect("the other OBT's transfer completes");
    let s = h.security().unwrap();
    assert_eq!(
        (s.doxm.owned, s.doxm.devowneruuid, s.device_uuid()),
        (true, other, done.device_uuid)
    );
    h.stop();
}

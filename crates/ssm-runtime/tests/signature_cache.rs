//! Lights of one process sharing one memo of verified group-mode
//! signatures (`DeviceConfig::signature_cache`), on `lo` (224.0.1.187, hop
//! limit 1), on sockets of their own and through a `GroupHub`: three
//! lights apply a signed command with one signature check between them;
//! the next command with one signature byte changed is dropped as
//! `BadSignature` by all three (the memo never lets it through), and the
//! genuine one is applied after it.
use ssm_ocf::cred::CredType;
use ssm_ocf::device::{Device, DeviceInfo};
use ssm_ocf::group_cred::{ccs_of_ed25519, fields, gid_of, public_key};
use ssm_ocf::provision::{default_aces, generate_group, provisioned_state, Member};
use ssm_ocf::ssm::{update_request, DropReason};
use ssm_ocf::switch::{BinarySwitch, HREF};
use ssm_ocf::{cbor, Uuid};
use ssm_runtime::client::{MulticastScope, MulticastTargets};
use ssm_runtime::device::{start, DeviceConfig, DeviceEvent, GroupHub, SignatureCache};
use ssm_runtime::group_client::GroupSsmSender;
use ssm_runtime::random_bytes;
use ssm_runtime::store::FileSequenceStore;
use ssm_testkit::TempDir;
use std::sync::Arc;
use std::time::Duration;

/// Three lights and the switch of one group, turned into group mode
/// (credtypes 131072/65536) with the switch's own Ed25519 key.
fn group_mode(dir: &std::path::Path) -> (Vec<Member>, GroupSsmSender) {
    let mut rng = |b: &mut [u8]| b.copy_from_slice(&random_bytes::<64>()[..b.len()]);
    let (mut lights, mut switches) = generate_group(3, 1, Uuid::new_v4(), &mut rng);
    let gm = ccs_of_ed25519(&public_key(&random_bytes::<32>())).to_vec();
    let key = random_bytes::<32>();
    let ccs = ccs_of_ed25519(&public_key(&key)).to_vec();
    let gid = gid_of(5, 1);
    for c in lights.iter_mut().flat_map(|l| l.creds.creds.iter_mut()) {
        if c.credtype == CredType::SsmServer {
            c.credtype = CredType::GroupOscoreRecipient;
            c.oscore.as_mut().unwrap().group = Some(fields(&gid, &gm, Some(&ccs)));
        }
    }
    let switch = &mut switches[0];
    for c in switch.creds.creds.iter_mut() {
        if c.credtype == CredType::SsmClient {
            c.credtype = CredType::GroupOscoreSender;
            c.oscore.as_mut().unwrap().group = Some(fields(&gid, &gm, None));
        }
    }
    let cred = switch
        .creds
        .oscore_creds()
        .unwrap()
        .into_iter()
        .find(|c| c.credtype == CredType::GroupOscoreSender)
        .unwrap();
    let sender =
        GroupSsmSender::new(&cred, &key, FileSequenceStore::new(dir.join("switch.ssn"))).unwrap();
    (lights, sender)
}

fn command(s: &mut GroupSsmSender, on: bool, mid: u16) -> Vec<u8> {
    let req = update_request(
        HREF,
        &cbor::map([("value", ciborium::Value::Bool(on))]),
        mid,
        ssm_coap::Token::new(&[mid as u8]).unwrap(),
        true,
    );
    s.protect(&req, true).unwrap().0
}

/// The next SSM event of a light: applied (its value) or dropped.
async fn outcome(
    rx: &mut tokio::sync::broadcast::Receiver<DeviceEvent>,
) -> Result<bool, DropReason> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let ev = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .expect("no SSM event from a light within 5 s")
            .unwrap();
        match ev {
            DeviceEvent::SsmApplied { state, .. } => return Ok(state["value"] == true),
            DeviceEvent::Dropped(r) => return Err(r),
            _ => {}
        }
    }
}

async fn three_lights_share_one_check(hub: bool) {
    let dir = TempDir::new(if hub {
        "test-sigcache-hub"
    } else {
        "test-sigcache"
    });
    let (lights, mut switch) = group_mode(dir.path());
    let port = ssm_testkit::free_udp_port();
    let cache = Arc::new(SignatureCache::new(SignatureCache::DEFAULT_CAPACITY));
    let hub = hub.then(GroupHub::new);
    let mut handles = Vec::new();
    for (i, l) in lights.iter().enumerate() {
        let mut d = Device::new(DeviceInfo::light(&format!("light {i}"), l.uuid));
        d.add_resource(HREF, Box::new(BinarySwitch::default()), true);
        d.set_security(provisioned_state(
            l.uuid,
            Uuid::from_u128(0xb7),
            l.creds.clone(),
            default_aces(&l.creds, &[HREF], true),
        ));
        let mut cfg = DeviceConfig::loopback(dir.path().join(format!("light-{i}")));
        cfg.port = port;
        cfg.group_hub = hub.clone();
        cfg.signature_cache = Some(cache.clone());
        handles.push(start(d, &cfg).await.unwrap());
    }
    let mut events: Vec<_> = handles.iter().map(|h| h.events.subscribe()).collect();
    let targets = MulticastTargets::open(&MulticastScope {
        interfaces: vec!["lo".into()],
        ipv4: true,
        ipv6_scopes: vec![],
        port,
        hops: 1,
    })
    .unwrap();
    let (sock, dests) = &targets.targets[0];

    let on = command(&mut switch, true, 1);
    let off = command(&mut switch, false, 2);
    let mut forged = off.clone();
    *forged.last_mut().unwrap() ^= 0x40; // inside the encrypted signature
                                         // (datagram, what every light does, the memo's (hits, checks) after)
    for (bytes, expect, stats, what) in [
        (&on, Ok(true), (2, 1), "the signed command"),
        (
            &forged,
            Err(DropReason::BadSignature),
            (2, 4),
            "the next one with a changed signature byte",
        ),
        (&off, Ok(false), (4, 5), "the genuine next one"),
    ] {
        sock.send_to(bytes, dests[0]).await.unwrap();
        for (i, rx) in events.iter_mut().enumerate() {
            assert_eq!(outcome(rx).await, expect, "{what}: light {i}");
        }
        // Each light verified or looked up exactly once; only a success
        // was remembered.
        assert_eq!(cache.stats(), stats, "{what}");
    }
    assert_eq!(cache.len(), 2);
    for h in &handles {
        assert_eq!(h.representation(HREF).unwrap()["value"], false);
        assert_eq!(h.drops().0.get(&DropReason::BadSignature), Some(&1));
    }
}

// One thread: the lights take turns, so the first to receive a datagram
// checks its signature before the others look it up (the counts are
// exact).
#[tokio::test(flavor = "current_thread")]
async fn lights_on_their_own_sockets_share_one_signature_check() {
    three_lights_share_one_check(false).await;
}

#[tokio::test(flavor = "current_thread")]
async fn lights_behind_a_group_hub_share_one_signature_check() {
    three_lights_share_one_check(true).await;
}

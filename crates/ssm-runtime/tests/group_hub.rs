//! Lights of one process sharing one socket per group (`GroupHub`; 4
//! lights, 1 socket on the group's port): two
//! zones, a key and a switch each. A zone's command is applied by its
//! lights only; the other zone's lights count it as an unknown-kid drop
//! without receiving it, also after a light of the zone stopped (it leaves
//! the hub); a plain multicast request (discovery) reaches every light.
use ssm_coap::Token;
use ssm_ocf::device::{Device, DeviceInfo};
use ssm_ocf::provision::{default_aces, generate_group, provisioned_state, Member};
use ssm_ocf::ssm::{update_request, DropReason};
use ssm_ocf::switch::{BinarySwitch, HREF};
use ssm_ocf::{cbor, Uuid};
use ssm_oscore::{SenderContext, SequenceNumber};
use ssm_runtime::device::{start, DeviceConfig, DeviceEvent, DeviceHandle, GroupHub};
use ssm_runtime::multicast::{sender_v4, ALL_COAP_NODES_V4};
use ssm_runtime::netif::NetIf;
use ssm_testkit::TempDir;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

fn port() -> u16 {
    ssm_testkit::test_port(0)
}

async fn light(l: &Member, dir: &std::path::Path, hub: &Arc<GroupHub>) -> DeviceHandle {
    let mut d = Device::new(DeviceInfo::light("light", l.uuid));
    d.add_resource(HREF, Box::new(BinarySwitch::default()), true);
    d.set_security(provisioned_state(
        l.uuid,
        Uuid::from_u128(0xb7),
        l.creds.clone(),
        default_aces(&l.creds, &[HREF], true),
    ));
    let mut cfg = DeviceConfig::loopback(dir.to_path_buf());
    cfg.port = port();
    cfg.group_hub = Some(hub.clone());
    start(d, &cfg).await.unwrap()
}

fn command(s: &mut SenderContext, v: bool) -> Vec<u8> {
    let piv = s.sequence().peek();
    let req = update_request(
        HREF,
        &cbor::map([("value", ciborium::Value::Bool(v))]),
        piv as u16,
        Token::new(&[7]).unwrap(),
        true,
    )
    .to_vec();
    let mut out = vec![0u8; req.len() + 64];
    let (n, _) = s.protect_request(&req, &mut out).unwrap();
    out.truncate(n);
    out
}

/// Whether the light applied an SSM update within `limit`.
async fn applied(rx: &mut tokio::sync::broadcast::Receiver<DeviceEvent>, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while let Ok(Ok(ev)) = tokio::time::timeout_at(deadline, rx.recv()).await {
        if matches!(ev, DeviceEvent::SsmApplied { .. }) {
            return true;
        }
    }
    false
}

fn unknown_kid(h: &DeviceHandle) -> u64 {
    h.drops()
        .0
        .get(&DropReason::UnknownKid)
        .copied()
        .unwrap_or(0)
}

/// UDP sockets of this process bound to `port` (from /proc: the socket
/// inodes among our file descriptors).
fn sockets_on(port: u16) -> usize {
    let inodes: std::collections::HashSet<String> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    let udp = std::fs::read_to_string("/proc/self/net/udp").unwrap();
    udp.lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 9 && f[1].ends_with(&format!(":{port:04X}")) && inodes.contains(f[9])
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zone_commands_reach_only_their_zone_through_one_socket() {
    let dir = TempDir::new("group-hub");
    let mut rng = |b: &mut [u8]| b.copy_from_slice(&ssm_runtime::random_bytes::<64>()[..b.len()]);
    let zones: Vec<(Vec<Member>, Member)> = (0..2)
        .map(|_| {
            let (lights, mut switches) = generate_group(2, 1, Uuid::from_u128(0xb7), &mut rng);
            (lights, switches.remove(0))
        })
        .collect();
    let hub = GroupHub::new();
    let mut lights = Vec::new();
    for (z, (ls, _)) in zones.iter().enumerate() {
        for (i, l) in ls.iter().enumerate() {
            lights.push(light(l, &dir.join(format!("z{z}-{i}")), &hub).await);
        }
    }
    let mut rxs: Vec<_> = lights.iter().map(|h| h.events.subscribe()).collect();
    assert_eq!(sockets_on(port()), 1, "4 lights, one group socket");
    let mut senders: Vec<SenderContext> = zones
        .iter()
        .map(|(_, s)| {
            let cred = s
                .creds
                .oscore_creds()
                .unwrap()
                .into_iter()
                .find(|c| c.credtype == ssm_ocf::cred::CredType::SsmClient)
                .unwrap();
            ssm_ocf::ssm::sender_context(&cred, SequenceNumber::volatile(0)).unwrap()
        })
        .collect();
    let lo = NetIf::by_name("lo").unwrap().ipv4_addr().unwrap();
    let sock = sender_v4(lo, 1).unwrap();
    let group = SocketAddr::from((ALL_COAP_NODES_V4, port()));

    // Zone 0's command: lights 0 and 1 apply, 2 and 3 drop it unseen.
    sock.send_to(&command(&mut senders[0], true), group)
        .await
        .unwrap();
    assert!(applied(&mut rxs[0], Duration::from_secs(3)).await);
    assert!(applied(&mut rxs[1], Duration::from_secs(3)).await);
    assert!(!applied(&mut rxs[2], Duration::from_millis(200)).await);
    assert!(!applied(&mut rxs[3], Duration::from_millis(10)).await);
    assert_eq!([0, 0, 1, 1], [0, 1, 2, 3].map(|i| unknown_kid(&lights[i])));
    assert_eq!([1, 1, 0, 0], [0, 1, 2, 3].map(|i| lights[i].ssm_applied()));

    // A light of zone 1 stops: the hub lets it go, its zone mate still
    // gets zone 1's command, zone 0 drops it.
    let stopped = lights.remove(3);
    stopped.stop();
    rxs.remove(3);
    sock.send_to(&command(&mut senders[1], false), group)
        .await
        .unwrap();
    assert!(applied(&mut rxs[2], Duration::from_secs(3)).await);
    assert!(!applied(&mut rxs[0], Duration::from_millis(200)).await);
    assert_eq!([1, 1, 1], [0, 1, 2].map(|i| unknown_kid(&lights[i])));
    assert_eq!([1, 1, 1], [0, 1, 2].map(|i| lights[i].ssm_applied()));

    // Plain multicast (discovery) goes to every light: each answers.
    let get = ssm_ocf::message::request(
        ssm_coap::MessageType::NonConfirmable,
        ssm_coap::Code::GET,
        "/oic/res",
        None,
    );
    let client = sock;
    client.send_to(&get.to_vec(), group).await.unwrap();
    let mut from = std::collections::HashSet::new();
    let mut buf = [0u8; 1500];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while from.len() < 3 {
        match tokio::time::timeout_at(deadline, client.recv_from(&mut buf)).await {
            Ok(Ok((_, peer))) => {
                from.insert(peer);
            }
            _ => break,
        }
    }
    assert_eq!(from.len(), 3, "every running light answered discovery");
}

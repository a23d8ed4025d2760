//! Secured read-back after real commissioning (issue 12 item 3): two lights
//! and a switch, each its own process started unowned (each in its own
//! network namespace on a bridge when root, IPv6 ff02::158; else on `lo`,
//! IPv4), onboarded by `ssm obt onboard --all` from a PIN sheet and granted
//! by `ssm obt ssm grant`. Then, with the switch's state dir:
//!
//! * `ssm client get EP` and `ssm client observe EP` work over pair-wise
//!   OSCORE (`"security": "oscore"`), the notifications too;
//! * `ssm client update --multicast --confirm` reports every light
//!   confirmed (exit 0), and exit 1 with the stopped light not confirmed;
//! * a client without credentials gets 4.01 for a plain RETRIEVE and a
//!   plain OBSERVE (RFNOP, no anonymous ACE);
//! * a packet capture (AF_PACKET on the light's interface in its
//!   namespace) of every datagram from or to the light's unicast port while
//!   get/observe/notify/confirm run holds no plaintext state: no CBOR
//!   `value` key in any of them.
mod common;
use common::*;
use serde_json::Value;
use ssm_testkit::hosts;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The CBOR text string "value" (0x65 + 5 bytes): the key of the switch
/// state; `{"value": true}` is `a1 65 76 61 6c 75 65 f5`.
const VALUE_KEY: &[u8] = b"\x65value";

/// UDP payloads seen on one interface of a namespace, from or to `port`.
struct Capture {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<Vec<u8>>>,
}

impl Capture {
    /// An AF_PACKET socket on `ifname` inside namespace `ns` (a thread of
    /// its own enters the namespace).
    fn start(ns: &str, ifname: &str, port: u16) -> Capture {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (ns, ifname, s) = (ns.to_string(), ifname.to_string(), stop.clone());
        let thread = std::thread::spawn(move || {
            let f = std::fs::File::open(format!("/var/run/netns/{ns}")).expect("netns file");
            use std::os::fd::AsRawFd;
            // SAFETY: setns on a valid namespace fd affects only this thread.
            let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {ns}");
            let proto = (libc::ETH_P_ALL as u16).to_be();
            // SAFETY: plain socket calls with valid arguments; the fd is
            // closed at the end of this thread.
            let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto)) };
            assert!(
                fd >= 0,
                "AF_PACKET socket: {}",
                std::io::Error::last_os_error()
            );
            let name = std::ffi::CString::new(ifname.clone()).unwrap();
            // SAFETY: a valid C string.
            let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
            assert!(index > 0, "no {ifname} in {ns}");
            // SAFETY: sockaddr_ll is plain data; zeroed is a valid value.
            let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = proto;
            sll.sll_ifindex = index as i32;
            // SAFETY: `sll` is a valid sockaddr_ll of the size given.
            let rc = unsafe {
                libc::bind(
                    fd,
                    &sll as *const _ as *const libc::sockaddr,
                    std::mem::size_of::<libc::sockaddr_ll>() as u32,
                )
            };
            assert_eq!(rc, 0, "bind AF_PACKET");
            let tv = libc::timeval {
                tv_sec: 0,
                tv_usec: 100_000,
            };
            // SAFETY: a valid timeval for SO_RCVTIMEO.
            unsafe {
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_RCVTIMEO,
                    &tv as *const _ as *const libc::c_void,
                    std::mem::size_of::<libc::timeval>() as u32,
                )
            };
            ready_tx.send(()).unwrap();
            let mut out = Vec::new();
            let mut buf = vec![0u8; 65536];
            let limit = Instant::now() + Duration::from_secs(180);
            while !s.load(Ordering::Relaxed) && Instant::now() < limit {
                // SAFETY: `buf` is valid for its length.
                let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
                if n <= 0 {
                    continue;
                }
                if let Some(p) = udp_payload(&buf[..n as usize], port) {
                    out.push(p.to_vec());
                }
            }
            // SAFETY: our fd.
            unsafe { libc::close(fd) };
            out
        });
        ready_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("capture ready");
        Capture { stop, thread }
    }

    fn finish(self) -> Vec<Vec<u8>> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

/// The UDP payload of an Ethernet frame (IPv4, or IPv6 without extension
/// headers) whose source or destination port is `port`.
fn udp_payload(frame: &[u8], port: u16) -> Option<&[u8]> {
    let ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    let (proto, udp) = match ethertype {
        0x0800 => {
            let ihl = usize::from(frame.get(14)? & 0x0f) * 4;
            (*frame.get(14 + 9)?, frame.get(14 + ihl..)?)
        }
        0x86dd => (*frame.get(14 + 6)?, frame.get(14 + 40..)?),
        _ => return None,
    };
    if proto != 17 || udp.len() < 8 {
        return None;
    }
    let src = u16::from_be_bytes([udp[0], udp[1]]);
    let dst = u16::from_be_bytes([udp[2], udp[3]]);
    (src == port || dst == port).then(|| &udp[8..])
}

fn port_of(ep: &str) -> u16 {
    ep.rsplit(':').next().unwrap().parse().unwrap()
}

#[test]
fn secured_get_observe_confirm_after_obt_commissioning() {
    let pid = std::process::id();
    let (topo, hosts, iface) = hosts(&format!("ssmv{}", pid % 100000), 4);
    let port = ssm_testkit::free_udp_port();
    let dir = std::env::temp_dir().join(format!("ssm-obt-observe-{pid}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let domain = dir.join("domain.sqlite");
    let domain = domain.to_str().unwrap().to_string();
    let link = link_args(iface, port);
    let link: Vec<&str> = link.iter().map(String::as_str).collect();
    let obt = &hosts[0];
    let obt_cmd = |args: &[&str]| {
        let mut a = vec!["obt", "--domain", &domain, "--json"];
        a.extend_from_slice(args);
        obt.json(&a, false)
    };
    let names = [("light-0", "light"), ("light-1", "light"), ("sw", "switch")];
    let mut devs: Vec<Option<Dev>> = names
        .iter()
        .enumerate()
        .map(|(i, (n, r))| Some(start(&hosts[i + 1], &dir.join(n), iface, r, port)))
        .collect();
    let sheet: Vec<_> = devs
        .iter()
        .zip(&names)
        .map(|(d, (n, r))| (d.as_ref().unwrap(), n.to_string(), *r))
        .collect();
    let pins = pin_sheet(&dir, &sheet);
    obt_cmd(&["init", "--name", "observe"]);
    let mut a = vec!["onboard", "--all", "--pins", pins.to_str().unwrap()];
    a.extend(&link);
    let (_, v) = obt_cmd(&a);
    assert_eq!(v["onboarded"], 3, "{v}");
    let mut a = vec!["ssm", "grant", "sw", "--all"];
    a.extend(&link);
    let (_, v) = obt_cmd(&a);
    assert_eq!(v["granted"], 2, "{v}");

    let ep0 = devs[0].as_ref().unwrap().ep.clone();
    let sw_host = &hosts[3];
    let sw = dir.join("sw");
    let sw = sw.to_str().unwrap();
    let nobody = dir.join("nobody");
    let nobody = nobody.to_str().unwrap();
    let mut mcast: Vec<String> = vec![
        "--iface".into(),
        iface.into(),
        "--port".into(),
        port.to_string(),
    ];
    if iface != "lo" {
        mcast.extend(["--no-ipv4".into(), "--scopes".into(), "2".into()]);
    }
    let confirm = |value: &str| {
        let mut a = vec![
            "client",
            "--state-dir",
            sw,
            "--json",
            "update",
            "--multicast",
            "--confirm",
            "--value",
            value,
        ];
        a.extend(mcast.iter().map(String::as_str));
        let out = sw_host.ssm(&a);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "confirm: not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.code(), v)
    };

    // Everything from or to light 0's unicast port, from here on.
    let capture = topo
        .as_ref()
        .map(|_| Capture::start(hosts[1].0.as_ref().unwrap(), iface, port_of(&ep0)));
    if capture.is_none() {
        eprintln!("not root: no packet capture (AF_PACKET needs a namespace of the test's own)");
    }

    // A secured RETRIEVE.
    let (_, v) = sw_host.json(&["client", "--state-dir", sw, "--json", "get", &ep0], false);
    assert_eq!(
        (v["code"].as_str(), v["security"].as_str()),
        (Some("2.05"), Some("oscore")),
        "{v}"
    );
    assert!(v["body"]["value"].is_boolean(), "{v}");

    // A secured OBSERVE, then two commands confirmed on every light.
    let mut observer = sw_host
        .cmd(ssm())
        .args([
            "client",
            "--state-dir",
            sw,
            "--json",
            "observe",
            &ep0,
            "--count",
            "2",
            "--timeout-ms",
            "20000",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let lines = BufReader::new(observer.stdout.take().unwrap());
    std::thread::spawn(move || {
        for l in lines.lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let first: Value = serde_json::from_str(
        &rx.recv_timeout(Duration::from_secs(15))
            .expect("the observation is registered"),
    )
    .unwrap();
    assert_eq!(
        (first["code"].as_str(), first["security"].as_str()),
        (Some("2.05"), Some("oscore")),
        "{first}"
    );
    for value in ["on", "off"] {
        let (code, v) = confirm(value);
        assert_eq!(code, Some(0), "confirm {value}: {v}");
        assert_eq!(v["all_confirmed"], true, "{v}");
        let lights = v["lights"].as_array().unwrap();
        assert_eq!(lights.len(), 2, "{v}");
        assert!(
            lights
                .iter()
                .all(|l| l["confirmed"] == true && l["state"] == (value == "on")),
            "{v}"
        );
    }
    let mut notes = Vec::new();
    while notes.len() < 2 {
        let l = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("a notification");
        notes.push(serde_json::from_str::<Value>(&l).unwrap());
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = observer.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "observer did not end");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "observe exit status {status}");
    assert!(
        notes
            .iter()
            .all(|n| n["security"] == "oscore" && n["code"] == "2.05"),
        "{notes:?}"
    );
    assert_eq!(
        (
            notes[0]["body"]["value"].as_bool(),
            notes[1]["body"]["value"].as_bool()
        ),
        (Some(true), Some(false)),
        "{notes:?}"
    );

    // Without credentials: plain, and refused in RFNOP (no anonymous ACE).
    let (_, v) = sw_host.json(
        &["client", "--state-dir", nobody, "--json", "get", &ep0],
        true,
    );
    assert_eq!(
        (v["code"].as_str(), v["security"].as_str()),
        (Some("4.01"), Some("plain")),
        "{v}"
    );
    let out = sw_host.ssm(&[
        "client",
        "--state-dir",
        nobody,
        "observe",
        &ep0,
        "--timeout-ms",
        "1000",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("4.01"), "plain observe: {err}");

    if let Some(c) = capture {
        let seen = c.finish();
        let oscore = seen
            .iter()
            .filter(|p| {
                ssm_coap::Packet::new_checked(&p[..])
                    .is_ok_and(|m| m.options().get(ssm_coap::OptionNumber::OSCORE).is_some())
            })
            .count();
        eprintln!(
            "captured {} datagrams from or to light 0's port, {oscore} of them OSCORE",
            seen.len()
        );
        // get (with /oic/d), observe + 2 notifications, 2 confirms: well
        // over 8 OSCORE datagrams.
        assert!(oscore >= 8, "{oscore} OSCORE datagrams captured");
        let plaintext: Vec<String> = seen
            .iter()
            .filter(|p| p.windows(VALUE_KEY.len()).any(|w| w == VALUE_KEY))
            .map(|p| hex(p))
            .collect();
        assert!(
            plaintext.is_empty(),
            "plaintext state on the wire: {plaintext:?}"
        );
    }

    // A light that is stopped is not confirmed: exit 1.
    devs[1].take().unwrap().kill();
    let (code, v) = confirm("on");
    assert_eq!(code, Some(1), "{v}");
    let lights = v["lights"].as_array().unwrap();
    assert_eq!(
        lights.iter().filter(|l| l["confirmed"] == true).count(),
        1,
        "{v}"
    );
    assert_eq!(v["all_confirmed"], false, "{v}");
    drop(devs);
    drop(topo);
    let _ = std::fs::remove_dir_all(&dir);
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

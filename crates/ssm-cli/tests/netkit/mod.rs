//! Shared kit of the attack and flood tests: namespace topology, light
//! processes with their JSON event streams, an attacker with capture and
//! send sockets, forged OSCORE datagrams.
// Compiled into each test binary that uses a part of it: the rest is
// dead code there.
#![allow(dead_code)]
use serde_json::Value;
use socket2::{Domain, Protocol, Socket, Type};
use ssm_ocf::cred::{CredResource, CredType, OscoreCred};
use std::collections::BTreeMap;

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const V4_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 1, 187);
pub const V6_GROUP: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x158);

pub use ssm_testkit::Host;

pub fn ssm() -> &'static str {
    env!("CARGO_BIN_EXE_ssm")
}

/// How long one `ssm` command of the attack and flood tests may run.
pub const RUN_LIMIT: Duration = Duration::from_secs(20);

/// `ssm` commands on a host.
pub trait Ssm {
    /// Runs `ssm args…` to the end (at most [`RUN_LIMIT`]).
    fn ssm(&self, args: &[&str]) -> Output;
}

impl Ssm for Host {
    fn ssm(&self, args: &[&str]) -> Output {
        self.run(ssm(), args, RUN_LIMIT)
    }
}

/// What a light process reported on its JSON event stream.
#[derive(Default, Debug, Clone)]
pub struct Events {
    pub applied: u64,
    pub unicast_applied: u64,
    pub refused: u64,
    pub dropped: BTreeMap<String, u64>,
    /// Events the light could not print in time (its counters stay exact).
    pub lagged: u64,
    /// The light's final counters (`stopped` event after SIGTERM).
    pub stopped: Option<Value>,
}

impl Events {
    pub fn dropped(&self) -> u64 {
        self.dropped.values().sum()
    }
}

pub struct Light {
    pub child: Child,
    pub ep: String,
    pub events: Arc<Mutex<Events>>,
    pub dir: PathBuf,
    pub host: Host,
}

impl Light {
    pub fn start(host: &Host, dir: &Path, iface: &str, port: u16) -> Light {
        let mut c = host.cmd(ssm());
        c.args([
            "device",
            "--json",
            "--iface",
            iface,
            "--port",
            &port.to_string(),
            "--state-dir",
        ])
        .arg(dir)
        .stderr(Stdio::null());
        let ssm_testkit::Ready {
            child,
            ready,
            lines,
        } = ssm_testkit::spawn_ready(c, Duration::from_secs(60));
        let events = Arc::new(Mutex::new(Events::default()));
        let mut light = Light {
            child,
            ep: String::new(),
            events: events.clone(),
            dir: dir.to_path_buf(),
            host: host.clone(),
        };
        assert_eq!(ready["event"], "ready", "{ready}");
        std::thread::spawn(move || {
            for l in lines {
                let Ok(v) = serde_json::from_str::<Value>(&l) else {
                    continue;
                };
                let mut e = events.lock().unwrap();
                match v["event"].as_str() {
                    Some("ssm_applied") => e.applied += 1,
                    Some("unicast_applied") => e.unicast_applied += 1,
                    Some("refused") => e.refused += 1,
                    Some("lagged") => e.lagged += v["missed"].as_u64().unwrap_or(0),
                    Some("stopped") => e.stopped = Some(v.clone()),
                    Some("dropped") => {
                        *e.dropped
                            .entry(v["reason"].as_str().unwrap_or("?").to_string())
                            .or_default() += v["count"].as_u64().unwrap_or(1)
                    }
                    _ => {}
                }
            }
        });
        let eps: Vec<String> = ready["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e.as_str().unwrap().to_string())
            .collect();
        light.ep = eps
            .iter()
            .find(|e| e.contains('%'))
            .or_else(|| eps.iter().find(|e| e.contains("127.0.0.1")))
            .expect("an endpoint")
            .clone();
        light
    }

    /// SIGTERM; returns the light's final counters (`stopped` event).
    pub fn stop(&mut self) -> Value {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(v) = self.events().stopped {
                let _ = self.child.wait();
                return v;
            }
            assert!(Instant::now() < deadline, "light {} did not stop", self.ep);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Not exited (nor a zombie).
    pub fn child_alive(&self) -> bool {
        std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .map(|s| {
                s.rsplit(')')
                    .next()
                    .and_then(|r| r.split_whitespace().next())
                    .is_some_and(|st| st != "Z" && st != "X")
            })
            .unwrap_or(false)
    }

    pub fn events(&self) -> Events {
        self.events.lock().unwrap().clone()
    }

    /// SIGKILL and start again on the same state dir.
    pub fn crash_and_restart(&mut self, iface: &str, port: u16) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        *self = Light::start(&self.host.clone(), &self.dir.clone(), iface, port);
    }
}

impl Drop for Light {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The attacker: a capture socket per family joined to the groups, and a
/// sending socket per family whose every reply is counted.
pub struct Attacker {
    pub cap4: UdpSocket,
    pub cap6: Option<UdpSocket>,
    pub tx4: UdpSocket,
    pub tx6: Option<UdpSocket>,
    pub port: u16,
    pub ifindex: u32,
    pub own_ports: Vec<u16>,
    pub sent: u64,
}

/// One datagram seen on the wire, with the group it went to.
#[derive(Clone)]
pub struct Captured {
    pub bytes: Vec<u8>,
    pub v6: bool,
}

impl Attacker {
    pub fn new(v4_if: Ipv4Addr, v6_if: Option<u32>, port: u16) -> Attacker {
        let cap4 = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
        cap4.set_reuse_address(true).unwrap();
        cap4.set_reuse_port(true).unwrap();
        let _ = cap4.set_recv_buffer_size(4 << 20);
        cap4.bind(&SocketAddr::from((V4_GROUP, port)).into())
            .unwrap();
        cap4.join_multicast_v4(&V4_GROUP, &v4_if).unwrap();
        let tx4 = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
        tx4.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)).into())
            .unwrap();
        tx4.set_multicast_if_v4(&v4_if).unwrap();
        tx4.set_multicast_ttl_v4(1).unwrap();
        tx4.set_multicast_loop_v4(false).unwrap();
        let (cap6, tx6) = match v6_if {
            Some(idx) => {
                let c = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP)).unwrap();
                c.set_only_v6(true).unwrap();
                c.set_reuse_address(true).unwrap();
                c.set_reuse_port(true).unwrap();
                let _ = c.set_recv_buffer_size(4 << 20);
                c.bind(&SocketAddrV6::new(V6_GROUP, port, 0, idx).into())
                    .unwrap();
                c.join_multicast_v6(&V6_GROUP, idx).unwrap();
                let t = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP)).unwrap();
                t.set_only_v6(true).unwrap();
                t.bind(&SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)).into())
                    .unwrap();
                t.set_multicast_if_v6(idx).unwrap();
                t.set_multicast_hops_v6(1).unwrap();
                t.set_multicast_loop_v6(false).unwrap();
                (Some(c.into()), Some(t.into()))
            }
            None => (None, None),
        };
        let tx4: UdpSocket = tx4.into();
        let own_ports = [Some(&tx4), tx6.as_ref()]
            .into_iter()
            .flatten()
            .map(|s: &UdpSocket| s.local_addr().unwrap().port())
            .collect();
        let a = Attacker {
            cap4: cap4.into(),
            cap6,
            tx4,
            tx6,
            port,
            ifindex: v6_if.unwrap_or(0),
            own_ports,
            sent: 0,
        };
        for s in [Some(&a.cap4), a.cap6.as_ref(), Some(&a.tx4), a.tx6.as_ref()]
            .into_iter()
            .flatten()
        {
            s.set_nonblocking(true).unwrap();
        }
        a
    }

    /// Everything the capture sockets hold now.
    pub fn capture(&self) -> Vec<Captured> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 70_000];
        for (s, v6) in [(Some(&self.cap4), false), (self.cap6.as_ref(), true)] {
            let Some(s) = s else { continue };
            while let Ok((n, from)) = s.recv_from(&mut buf) {
                // On lo the attacker hears itself (multicast loop does not
                // apply there): only others' datagrams are captured.
                if self.own_ports.contains(&from.port()) {
                    continue;
                }
                out.push(Captured {
                    bytes: buf[..n].to_vec(),
                    v6,
                });
            }
        }
        out
    }

    pub fn send(&mut self, bytes: &[u8], v6: bool) {
        let r = if v6 {
            let to = SocketAddrV6::new(V6_GROUP, self.port, 0, self.ifindex);
            self.tx6.as_ref().expect("IPv6").send_to(bytes, to)
        } else {
            self.tx4.send_to(bytes, (V4_GROUP, self.port))
        };
        // EMSGSIZE for the 65 kB datagram over IPv6 without a jumbo MTU
        // is the kernel refusing it: nothing left the attacker.
        if r.is_ok() {
            self.sent += 1;
        }
    }

    /// Datagrams sent back to the attacker's sockets (must stay 0).
    pub fn replies(&self) -> Vec<(SocketAddr, Vec<u8>)> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 70_000];
        for s in [Some(&self.tx4), self.tx6.as_ref()].into_iter().flatten() {
            while let Ok((n, from)) = s.recv_from(&mut buf) {
                out.push((from, buf[..n].to_vec()));
            }
        }
        out
    }
}

/// Enters the named network namespace (this thread only).
pub fn enter_netns(ns: &str) {
    let f = std::fs::File::open(format!("/var/run/netns/{ns}")).expect("netns file");
    use std::os::fd::AsRawFd;
    // SAFETY: setns on a valid namespace fd affects only the calling thread.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {ns}: {}", std::io::Error::last_os_error());
}

pub fn cred(dir: &Path, t: CredType) -> OscoreCred {
    CredResource::from_json(&std::fs::read_to_string(dir.join("creds.json")).unwrap())
        .unwrap()
        .oscore_creds()
        .unwrap()
        .into_iter()
        .find(|c| c.credtype == t)
        .unwrap_or_else(|| panic!("{} has no {t:?} credential", dir.display()))
}

/// An OSCORE-protected multicast request with inner `code` under a secret
/// and Sender ID of the attacker's choosing.
pub fn forge(
    secret: &[u8],
    sid: ssm_oscore::Id,
    piv: u64,
    code: ssm_coap::Code,
    value: bool,
) -> Vec<u8> {
    let mut ctx = ssm_oscore::SenderContext::derive(
        secret,
        None,
        None,
        sid,
        ssm_oscore::SequenceNumber::volatile(piv),
    )
    .unwrap();
    let mut m = ssm_ocf::ssm::update_request(
        ssm_ocf::switch::HREF,
        &ssm_ocf::cbor::map([("value", ciborium::Value::Bool(value))]),
        0x4242,
        ssm_coap::Token::new(&[7; 8]).unwrap(),
        true,
    );
    m.code = code;
    if code == ssm_coap::Code::GET || code == ssm_coap::Code::DELETE {
        m.payload.clear();
    }
    let mut out = vec![0u8; 512];
    let (n, _) = ctx.protect_request(&m.to_vec(), &mut out).unwrap();
    out.truncate(n);
    out
}

pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

//! `ssm obt` on bad input and faults: each a clear error naming the device
//! or file and the next step, the right exit status (1 failed, 2 usage, 3
//! domain store unusable), nothing half-written, and re-running finishes the job.
//! Loopback only; no root needed.
mod common;
use common::*;
use std::net::UdpSocket;
use std::time::Duration;

fn fails(h: &Host, args: &[&str], code: i32, needles: &[&str]) {
    let out = h.ssm(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
    for n in needles {
        assert!(err.contains(n), "{args:?}: {n:?} not in {err:?}");
    }
}

#[test]
fn bad_input_and_faults() {
    let pid = std::process::id();
    let h = Host(None);
    let port = ssm_testkit::free_udp_port().to_string();
    let dir = std::env::temp_dir().join(format!("ssm-obt-faults-{pid}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let domain = dir.join("domain.sqlite");
    let d = domain.to_str().unwrap();

    // No domain yet.
    fails(
        &h,
        &["obt", "--domain", d, "list"],
        3,
        &["no domain", "ssm obt init"],
    );
    h.json(&["obt", "--domain", d, "--json", "init"], false);
    // Unknown device.
    fails(
        &h,
        &["obt", "--domain", d, "show", "nope"],
        1,
        &["no device nope", "ssm obt list"],
    );
    fails(
        &h,
        &["obt", "--domain", d, "ssm", "grant", "nope", "--all"],
        1,
        &["no device nope"],
    );
    fails(
        &h,
        &["obt", "--domain", d, "offboard", "nope"],
        1,
        &["no device nope"],
    );

    // Wrong PIN: refused, nothing recorded; the right PIN then works.
    let light = start(&h, &dir.join("light"), "lo", "light", port.parse().unwrap());
    let pin = std::fs::read_to_string(dir.join("light/pin")).unwrap();
    let wrong = if pin.trim() == "11111111" {
        "22222222"
    } else {
        "11111111"
    };
    fails(
        &h,
        &["obt", "--domain", d, "onboard", &light.ep, "--pin", wrong],
        1,
        &[light.ep.trim_start_matches("coap://"), "check the PIN"],
    );
    fails(
        &h,
        &["obt", "--domain", d, "onboard", &light.ep, "--pin", "12ab"],
        2,
        &["8 digits"],
    );
    let (_, l) = h.json(&["obt", "--domain", d, "--json", "list"], false);
    assert_eq!(l["devices"].as_array().unwrap().len(), 0, "{l}");
    let pin = std::fs::read_to_string(dir.join("light/pin")).unwrap();
    let (_, v) = h.json(
        &[
            "obt",
            "--domain",
            d,
            "--json",
            "onboard",
            &light.ep,
            "--pin",
            pin.trim(),
            "--name",
            "hall-1",
        ],
        false,
    );
    assert_eq!(v["onboarded"], 1, "{v}");
    // Onboarding it again: it is owned now.
    let out = h.ssm(&[
        "obt",
        "--domain",
        d,
        "onboard",
        &light.ep,
        "--pin",
        pin.trim(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already owned"));

    // Nothing listening there: a timeout with retries, and what to check.
    let free = UdpSocket::bind("127.0.0.1:0").unwrap();
    let nobody = free.local_addr().unwrap().to_string();
    drop(free);
    fails(
        &h,
        &[
            "obt", "--domain", d, "onboard", &nobody, "--pin", "12345678",
        ],
        1,
        &[&nobody, "no response", "is the device on"],
    );
    // A peer that answers garbage.
    let junk = UdpSocket::bind("127.0.0.1:0").unwrap();
    junk.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let junk_ep = junk.local_addr().unwrap().to_string();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s2 = stop.clone();
    let t = std::thread::spawn(move || {
        let mut b = [0u8; 2048];
        while !s2.load(std::sync::atomic::Ordering::Relaxed) {
            if let Ok((_, from)) = junk.recv_from(&mut b) {
                let _ = junk.send_to(&[0xff, 0x00, 0x13], from);
            }
        }
    });
    fails(
        &h,
        &[
            "obt", "--domain", d, "onboard", &junk_ep, "--pin", "12345678",
        ],
        1,
        &[&junk_ep, "not CoAP"],
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    t.join().unwrap();
    let (_, l) = h.json(&["obt", "--domain", d, "--json", "list"], false);
    assert_eq!(
        l["devices"].as_array().unwrap().len(),
        1,
        "nothing half-written: {l}"
    );

    // A switch, a grant; granting again changes nothing on the devices.
    let sw = start(
        &h,
        &dir.join("switch"),
        "lo",
        "switch",
        port.parse().unwrap(),
    );
    let pin = std::fs::read_to_string(dir.join("switch/pin")).unwrap();
    h.json(
        &[
            "obt",
            "--domain",
            d,
            "--json",
            "onboard",
            &sw.ep,
            "--pin",
            pin.trim(),
            "--name",
            "sw",
            "--role",
            "switch",
        ],
        false,
    );
    let (_, v) = h.json(
        &[
            "obt", "--domain", d, "--json", "ssm", "grant", "sw", "hall-1", "--port", &port,
        ],
        false,
    );
    assert_eq!(v["stale"], 0, "{v}");
    let (_, v) = h.json(
        &[
            "obt", "--domain", d, "--json", "ssm", "grant", "sw", "hall-1", "--port", &port,
        ],
        false,
    );
    assert!(
        v["devices"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["creds_added"] == 0 && x["creds_removed"] == 0),
        "idempotent: {v}"
    );
    fails(
        &h,
        &["obt", "--domain", d, "ssm", "grant", "hall-1", "--all"],
        1,
        &["grant a switch"],
    );
    drop((light, sw));

    // A domain from a newer ssm, and a corrupt one: refused, file untouched.
    let newer = dir.join("newer.sqlite");
    std::fs::copy(&domain, &newer).unwrap();
    let c = rusqlite::Connection::open(&newer).unwrap();
    c.pragma_update(None, "user_version", 99).unwrap();
    drop(c);
    fails(
        &h,
        &["obt", "--domain", newer.to_str().unwrap(), "list"],
        3,
        &["schema version 99", "upgrade ssm"],
    );
    let corrupt = dir.join("corrupt.sqlite");
    let mut bytes = std::fs::read(&domain).unwrap();
    bytes[..100].iter_mut().for_each(|b| *b = 0x5a);
    std::fs::write(&corrupt, &bytes).unwrap();
    fails(
        &h,
        &["obt", "--domain", corrupt.to_str().unwrap(), "list"],
        3,
        &[corrupt.to_str().unwrap()],
    );
    assert_eq!(
        std::fs::read(&corrupt).unwrap(),
        bytes,
        "a corrupt file is not rewritten"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Without --pin or --pin-file, `ssm obt onboard` asks for the PIN on the
/// terminal (a pseudo-terminal from util-linux `script` here).
#[test]
fn pin_from_the_terminal_prompt() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    use std::time::Instant;
    if Command::new("script").arg("--version").output().is_err() {
        panic!("util-linux `script` is needed for this test (Debian: bsdutils, essential)");
    }
    let pid = std::process::id();
    let h = Host(None);
    let port: u16 = ssm_testkit::free_udp_port();
    let dir = std::env::temp_dir().join(format!("ssm-obt-prompt-{pid}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let domain = dir.join("domain.sqlite");
    let d = domain.to_str().unwrap();
    h.json(&["obt", "--domain", d, "--json", "init"], false);
    let light = start(&h, &dir.join("light"), "lo", "light", port);
    let pin = std::fs::read_to_string(dir.join("light/pin")).unwrap();
    let cmd = format!(
        "{} obt --domain {d} onboard {} --name hall-tty",
        ssm(),
        light.ep
    );
    let mut child = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{}", pin.trim()).unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("onboarding with a prompted PIN did not finish");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("PIN shown by the device"), "{text}");
    assert!(text.contains("as hall-tty"), "{text}");
    let (_, l) = h.json(&["obt", "--domain", d, "--json", "list"], false);
    assert_eq!(l["devices"][0]["name"], "hall-tty");
    drop(light);
    let _ = std::fs::remove_dir_all(&dir);
}

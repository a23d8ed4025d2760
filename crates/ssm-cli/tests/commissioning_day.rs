//! The commissioning engineer's day (README "A commissioning day"): 6
//! lights and 2 wall switches, each in its own network namespace on one
//! bridged LAN, commissioned by an OBT in another with only the README's
//! commands, mistakes included: a sheet with garbage, the wrong interface,
//! a wrong PIN, a duplicate name, Ctrl-C in the middle of onboarding, a
//! light that is off during a grant. Each message and exit status is
//! checked, `ssm obt status` after each step; then the domain goes to a
//! fresh directory by export and import, and status and a grant work from
//! there. Needs root (namespaces); skipped, loudly, without.
mod common;
use common::*;
use serde_json::Value;
use ssm_testkit::{hosts, is_root, TempDir};
use std::path::Path;
use std::time::{Duration, Instant};

struct Run {
    code: Option<i32>,
    out: String,
    err: String,
}

fn run(h: &Host, args: &[&str]) -> Run {
    let o = h.ssm(args);
    Run {
        code: o.status.code(),
        out: String::from_utf8_lossy(&o.stdout).into(),
        err: String::from_utf8_lossy(&o.stderr).into(),
    }
}

/// `ssm obt --domain D ARGS… [link flags]`.
fn obt(h: &Host, domain: &Path, args: &[&str], link: &[String]) -> Run {
    let mut a = vec!["obt", "--domain", domain.to_str().unwrap()];
    a.extend_from_slice(args);
    a.extend(link.iter().map(String::as_str));
    run(h, &a)
}

/// `ssm obt status --json`: name -> (reachable, on, state).
fn status(h: &Host, domain: &Path) -> Vec<(String, bool, Value, String)> {
    let r = obt(
        h,
        domain,
        &["status", "--json", "--timeout-ms", "1500"],
        &[],
    );
    assert_eq!(r.code, Some(0), "status: {}{}", r.out, r.err);
    let v: Value = serde_json::from_str(&r.out).unwrap_or_else(|e| panic!("{e}: {}", r.out));
    v["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["name"].as_str().unwrap().to_string(),
                d["reachable"].as_bool().unwrap(),
                d["on"].clone(),
                d["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn a_commissioning_day() {
    if !is_root() {
        eprintln!("SKIPPED a_commissioning_day: needs root (network namespaces)");
        return;
    }
    let started = Instant::now();
    let (topo, hosts, iface) = hosts(&format!("ssmday{}", std::process::id() % 10000), 9);
    let port = ssm_testkit::free_udp_port();
    let tmp = TempDir::new("ssm-day");
    let dir = tmp.path();
    let domain = dir.join("hall/domain.sqlite");
    let link = link_args(iface, port);
    let o = &hosts[0];
    let names = [
        "light-0", "light-1", "light-2", "light-3", "light-4", "light-5", "switch-0", "switch-1",
    ];
    let sd = |i: usize| dir.join(names[i]);
    let start_dev = |i: usize| {
        let role = if i >= 6 { "switch" } else { "light" };
        start_with(
            &hosts[i + 1],
            &sd(i),
            iface,
            role,
            port,
            &["--name", names[i]],
        )
    };
    let mut devs: Vec<Option<Dev>> = (0..8).map(|i| Some(start_dev(i))).collect();
    // The PINs as the sheet has them (a device shows a new one at each
    // start while unowned).
    let read_pin = |i: usize| {
        std::fs::read_to_string(sd(i).join("pin"))
            .unwrap()
            .trim()
            .to_string()
    };
    let mut pins: Vec<String> = (0..8).map(read_pin).collect();
    let dev =
        |devs: &Vec<Option<Dev>>, i: usize| -> String { devs[i].as_ref().unwrap().ep.clone() };

    let r = obt(o, &domain, &["init", "--name", "hallway"], &[]);
    assert_eq!(r.code, Some(0), "{}", r.err);
    assert!(status(o, &domain).is_empty());

    // Mistake 1: a sheet with garbage is refused, each bad line by number;
    // nothing is onboarded.
    let all: Vec<usize> = (0..8).collect();
    let full = dir.join("sheet.txt");
    // Sheet rows name the UUID a device had before onboarding.
    let first_di: Vec<String> = devs
        .iter()
        .map(|d| d.as_ref().unwrap().di.clone())
        .collect();
    let write_sheet = |pins: &[String], which: &[usize], path: &Path| {
        let mut s = String::from("# commissioning sheet: device uuid, PIN, name\n");
        for &i in which {
            s.push_str(&format!("{} {} {}\n", first_di[i], pins[i], names[i]));
        }
        std::fs::write(path, s).unwrap();
    };
    write_sheet(&pins, &all, &full);
    let garbage = dir.join("garbage.txt");
    let text = std::fs::read_to_string(&full).unwrap();
    std::fs::write(
        &garbage,
        format!(
            "{text}light-9 hello\n{} 1234 extra\n",
            devs[0].as_ref().unwrap().di
        ),
    )
    .unwrap();
    let r = obt(
        o,
        &domain,
        &["onboard", "--all", "--pins", garbage.to_str().unwrap()],
        &link,
    );
    assert_eq!(r.code, Some(2), "garbage sheet: {}{}", r.out, r.err);
    assert!(
        r.err.contains("line 10:") && r.err.contains("line 11:"),
        "{}",
        r.err
    );
    assert!(r.err.contains("nothing was onboarded"), "{}", r.err);
    assert!(status(o, &domain).is_empty());

    // Mistake 2: the wrong interface: every row is named as not found,
    // with a hint, exit 1.
    let r = obt(
        o,
        &domain,
        &[
            "onboard",
            "--all",
            "--pins",
            full.to_str().unwrap(),
            "--iface",
            "lo",
            "--port",
            &port.to_string(),
        ],
        &[],
    );
    assert_eq!(r.code, Some(1), "wrong iface: {}{}", r.out, r.err);
    assert!(r.out.contains("0 of 8 sheet row(s) done"), "{}", r.out);
    assert_eq!(r.out.matches("NOT FOUND").count(), 8, "{}", r.out);
    for n in names {
        assert!(
            r.out.contains(&format!("({n}, ")),
            "row {n} named: {}",
            r.out
        );
    }
    assert!(r.out.contains("nothing answered on lo"), "{}", r.out);

    // Mistake 3: a wrong PIN: the device answers, so it refused the PIN;
    // said once (and with --json as one JSON document).
    let pin0 = std::fs::read_to_string(sd(0).join("pin")).unwrap();
    let wrong = format!(
        "{:08}",
        (pin0.trim().parse::<u64>().unwrap() + 1) % 100_000_000
    );
    let ep0 = dev(&devs, 0);
    let r = obt(o, &domain, &["onboard", &ep0, "--pin", &wrong], &link);
    assert_eq!(r.code, Some(1), "{}{}", r.out, r.err);
    assert_eq!(
        r.err.matches("refused the PIN").count(),
        1,
        "once: {}",
        r.err
    );
    assert!(r.out.is_empty(), "nothing on stdout: {}", r.out);
    let r = obt(
        o,
        &domain,
        &["onboard", &ep0, "--pin", &wrong, "--json"],
        &link,
    );
    assert_eq!(r.code, Some(1));
    let docs: Vec<Value> = serde_json::Deserializer::from_str(&r.out)
        .into_iter()
        .map(|v| v.unwrap())
        .collect();
    assert_eq!(docs.len(), 1, "one JSON document: {}", r.out);
    assert_eq!(docs[0]["exit"], 1);
    assert!(docs[0]["error"]
        .as_str()
        .unwrap()
        .contains("refused the PIN"));

    // The right PIN; the name and role come from the device's /oic/d.
    let pin_file = sd(0).join("pin");
    let r = obt(
        o,
        &domain,
        &["onboard", &ep0, "--pin-file", pin_file.to_str().unwrap()],
        &link,
    );
    assert_eq!(r.code, Some(0), "{}{}", r.out, r.err);
    assert!(r.out.contains("as light-0 (light, "), "{}", r.out);

    // Mistake 4: a duplicate name is refused before the device is touched.
    let pin_file = sd(1).join("pin");
    let r = obt(
        o,
        &domain,
        &[
            "onboard",
            &dev(&devs, 1),
            "--pin-file",
            pin_file.to_str().unwrap(),
            "--name",
            "light-0",
        ],
        &link,
    );
    assert_eq!(r.code, Some(1), "{}{}", r.out, r.err);
    assert!(r.err.contains("the name light-0 is taken"), "{}", r.err);
    let st = status(o, &domain);
    assert_eq!(st.len(), 1);
    assert_eq!(
        (st[0].0.as_str(), st[0].1, st[0].3.as_str()),
        ("light-0", true, "owned")
    );

    // Mistake 5: Ctrl-C in the middle of onboarding light-1: no ghost row
    // (at worst one shown as interrupted, with what to do).
    let one = dir.join("one.txt");
    write_sheet(&pins, &[1], &one);
    let mut c = o.cmd(ssm());
    c.args([
        "obt",
        "--domain",
        domain.to_str().unwrap(),
        "onboard",
        "--all",
        "--pins",
        one.to_str().unwrap(),
    ])
    .args(&link)
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null());
    let mut child = c.spawn().unwrap();
    let owned = devs[1]
        .as_ref()
        .unwrap()
        .next("owned", Instant::now() + Duration::from_secs(20));
    assert!(owned.is_some(), "light-1 was being onboarded");
    // SAFETY: a plain kill(2) of our own child, by its PID.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let code = child.wait().unwrap().code();
    assert!(matches!(code, Some(0) | Some(130)), "Ctrl-C: exit {code:?}");
    let l: Value = serde_json::from_str(&obt(o, &domain, &["list", "--json"], &[]).out).unwrap();
    let states: Vec<&str> = l["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["state"].as_str().unwrap())
        .collect();
    assert!(!states.contains(&"onboarding"), "no ghost row: {states:?}");
    eprintln!("Ctrl-C mid-onboarding: exit {code:?}, then {states:?}");
    let text = obt(o, &domain, &["list"], &[]).out;
    if states.contains(&"interrupted") {
        assert!(text.contains("re-run `ssm obt onboard`"), "{text}");
    }

    // Light 5 is off; switch 1 is not on the sheet (left alone). Every
    // row is accounted for; the roles come from the devices.
    devs[5].take().unwrap().kill();
    let seven: Vec<usize> = (0..7).collect();
    write_sheet(&pins, &seven, &full);
    let r = obt(
        o,
        &domain,
        &["onboard", "--all", "--pins", full.to_str().unwrap()],
        &link,
    );
    assert_eq!(r.code, Some(1), "light-5 is off: {}{}", r.out, r.err);
    assert!(r.out.contains("6 of 7 sheet row(s) done"), "{}", r.out);
    assert!(r.out.contains("already    line 2 (light-0, "), "{}", r.out);
    assert!(r.out.contains("NOT FOUND  line 7 (light-5, "), "{}", r.out);
    assert!(
        r.out
            .contains("1 unowned device(s) not on the sheet, left alone"),
        "{}",
        r.out
    );
    assert!(
        r.out.contains(&devs[7].as_ref().unwrap().di),
        "switch-1 listed: {}",
        r.out
    );
    let st = status(o, &domain);
    assert_eq!(st.len(), 6, "{st:?}");
    assert!(st.iter().all(|d| d.1), "all reachable: {st:?}");
    let l: Value = serde_json::from_str(&obt(o, &domain, &["list", "--json"], &[]).out).unwrap();
    let role = |n: &str| {
        l["devices"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["name"] == n)
            .map(|d| d["role"].clone())
    };
    assert_eq!(
        role("switch-0"),
        Some("switch".into()),
        "role from /oic/d: {l}"
    );

    // Light 5 back (same state, new port), switch 1 added: all done.
    devs[5] = Some(start_dev(5));
    pins[5] = read_pin(5);
    write_sheet(&pins, &all, &full);
    let r = obt(
        o,
        &domain,
        &["onboard", "--all", "--pins", full.to_str().unwrap()],
        &link,
    );
    assert_eq!(r.code, Some(0), "{}{}", r.out, r.err);
    assert!(r.out.contains("8 of 8 sheet row(s) done"), "{}", r.out);
    let st = status(o, &domain);
    assert_eq!(st.len(), 8);
    assert!(
        st.iter().all(|d| d.1 && d.2.is_null()),
        "on/off unreadable before a grant: {st:?}"
    );

    // Mistake 6: light 3 is off during the grant: it stays stale, named.
    devs[3].take().unwrap().kill();
    let r = obt(o, &domain, &["ssm", "grant", "switch-0", "--all"], &link);
    assert_eq!(r.code, Some(1), "{}{}", r.out, r.err);
    assert!(r.out.contains("stale light-3"), "{}", r.out);
    let st = status(o, &domain);
    for (n, reach, on, state) in &st {
        if n == "light-3" {
            assert!(!reach && on.is_null() && state == "stale", "{st:?}");
        } else if n.starts_with("light") {
            assert!(
                *reach && *on == Value::Bool(false) && state == "provisioned",
                "{st:?}"
            );
        }
    }
    devs[3] = Some(start_dev(3));
    // Back on another port: status finds it by multicast and says so.
    let r = obt(o, &domain, &["status", "--json"], &link);
    let v: Value = serde_json::from_str(&r.out).unwrap();
    let l3 = v["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "light-3")
        .unwrap()
        .clone();
    assert_eq!(l3["reachable"], true, "{l3}");
    assert!(
        l3["note"]
            .as_str()
            .unwrap_or_default()
            .contains("moved from"),
        "{l3}"
    );
    let r = obt(o, &domain, &["sync"], &link);
    assert_eq!(r.code, Some(0), "sync: {}{}", r.out, r.err);
    let st = status(o, &domain);
    assert!(
        st.iter()
            .filter(|d| d.0.starts_with("light"))
            .all(|d| d.1 && d.3 == "provisioned"),
        "{st:?}"
    );

    // The switch switches; `status --watch` shows each light's arrival.
    let mut c = o.cmd(ssm());
    c.args([
        "obt",
        "--domain",
        domain.to_str().unwrap(),
        "status",
        "--watch",
        "--count",
        "6",
        "--for",
        "20s",
        "--json",
    ]);
    let w = ssm_testkit::spawn_ready(c, Duration::from_secs(20));
    assert_eq!(w.ready["event"], "state", "{}", w.ready);
    let mut initial = 1;
    while initial < 6 {
        let l = w
            .lines
            .recv_timeout(Duration::from_secs(10))
            .expect("initial states");
        let v: Value = serde_json::from_str(&l).unwrap();
        assert_eq!(v["event"], "state", "{v}");
        initial += 1;
    }
    send(&hosts[7], &sd(6), iface, port, "on");
    let mut arrived = Vec::new();
    while arrived.len() < 6 {
        let l = w
            .lines
            .recv_timeout(Duration::from_secs(10))
            .expect("arrivals");
        let v: Value = serde_json::from_str(&l).unwrap();
        assert_eq!(
            (v["event"].as_str(), v["on"].as_bool()),
            (Some("changed"), Some(true)),
            "{v}"
        );
        assert!(v["since_first_ms"].is_f64(), "{v}");
        arrived.push(v["name"].as_str().unwrap().to_string());
    }
    arrived.sort();
    assert_eq!(arrived, &names[..6]);
    let mut wc = w.child;
    let _ = wc.wait();
    let st = status(o, &domain);
    assert!(
        st.iter()
            .filter(|d| d.0.starts_with("light"))
            .all(|d| d.2 == Value::Bool(true)),
        "{st:?}"
    );

    // Rename; inspect.
    let r = obt(o, &domain, &["rename", "light-2", "hall-2"], &[]);
    assert_eq!(r.code, Some(0), "{}{}", r.out, r.err);
    assert!(r.out.contains("renamed light-2 to hall-2"), "{}", r.out);
    assert!(
        !r.out.contains("still shows its old name"),
        "the device took it: {}",
        r.out
    );
    assert!(status(o, &domain).iter().any(|d| d.0 == "hall-2"));
    let r = obt(o, &domain, &["rename", "hall-2", "light-0"], &[]);
    assert_eq!(r.code, Some(1), "{}", r.err);
    assert!(r.err.contains("the name light-0 is taken"), "{}", r.err);
    let r = obt(o, &domain, &["inspect", "light-0"], &[]);
    assert_eq!(r.code, Some(0), "{}{}", r.out, r.err);
    assert!(r.out.contains("matches the domain"), "{}", r.out);

    // Another `ssm obt` holds the domain: reading works, changing waits.
    let lock = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join("hall/domain.sqlite.lock"))
        .unwrap();
    lock.try_lock().unwrap();
    assert_eq!(obt(o, &domain, &["list"], &[]).code, Some(0));
    assert_eq!(obt(o, &domain, &["show", "light-0"], &[]).code, Some(0));
    assert_eq!(status(o, &domain).len(), 8);
    let r = obt(o, &domain, &["ssm", "grant", "switch-1", "light-0"], &link);
    assert_eq!(r.code, Some(3), "{}", r.err);
    assert!(r.err.contains("in use by another ssm obt"), "{}", r.err);
    drop(lock);

    // Backup: export, then a fresh machine imports it; status and a grant
    // work from there.
    let pass = dir.join("pass");
    std::fs::write(&pass, "a long passphrase for the hallway\n").unwrap();
    let export = dir.join("hallway.ssmdom");
    let r = obt(
        o,
        &domain,
        &[
            "export",
            export.to_str().unwrap(),
            "--passphrase-file",
            pass.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(r.code, Some(0), "{}{}", r.out, r.err);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&export).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let fresh = dir.join("fresh/domain.sqlite");
    std::fs::write(dir.join("bad"), "not it\n").unwrap();
    let bad = dir.join("bad");
    let r = obt(
        o,
        &fresh,
        &[
            "import",
            export.to_str().unwrap(),
            "--passphrase-file",
            bad.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(r.code, Some(1));
    assert!(r.err.contains("wrong passphrase"), "{}", r.err);
    let r = obt(
        o,
        &fresh,
        &[
            "import",
            export.to_str().unwrap(),
            "--passphrase-file",
            pass.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(r.code, Some(0), "{}{}", r.out, r.err);
    let r = obt(
        o,
        &fresh,
        &[
            "import",
            export.to_str().unwrap(),
            "--passphrase-file",
            pass.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(r.code, Some(1));
    assert!(r.err.contains("--force"), "{}", r.err);
    let st = status(o, &fresh);
    assert_eq!(st.len(), 8);
    assert!(st.iter().all(|d| d.1), "{st:?}");
    let r = obt(o, &fresh, &["ssm", "grant", "switch-1", "light-0"], &link);
    assert_eq!(
        r.code,
        Some(0),
        "grant from the imported domain: {}{}",
        r.out,
        r.err
    );
    let l0 = devs[0].as_ref().unwrap();
    l0.drain();
    send(&hosts[8], &sd(7), iface, port, "off");
    assert!(l0
        .next("ssm_applied", Instant::now() + Duration::from_secs(5))
        .is_some());

    // Offboarding a light: reset, forgotten, the group rekeyed.
    let r = obt(o, &fresh, &["offboard", "light-4"], &link);
    assert_eq!(r.code, Some(0), "{}{}", r.out, r.err);
    assert!(r.out.contains("it was hard-reset"), "{}", r.out);
    assert_eq!(status(o, &fresh).len(), 7);
    eprintln!(
        "a_commissioning_day: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    drop(devs);
    drop(topo);
}

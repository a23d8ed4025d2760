use super::Args;
use anyhow::{bail, Context, Result};
use std::process::Stdio;

pub async fn run(args: &Args) -> Result<bool> {
    if !is_root() {
        bail!(
            "--ipv6 needs root: IPv6 multicast does not work on lo, so the demo \
             creates a network namespace with an interface of its own, and that \
             takes CAP_NET_ADMIN. Run `sudo ssm demo --ipv6`, or `ssm demo` for IPv4 on lo"
        );
    }
    if which("ip").is_none() {
        bail!("--ipv6 needs the `ip` tool (Debian/Ubuntu: apt-get install iproute2)");
    }
    let ns = format!("ssmdemo{}", std::process::id());
    let guard = Ns(ns.clone());
    let ip = |a: &[&str]| -> Result<()> {
        let st = std::process::Command::new("ip")
            .args(a)
            .stdout(Stdio::null())
            .status()
            .with_context(|| format!("ip {}", a.join(" ")))?;
        if !st.success() {
            bail!("`ip {}` failed", a.join(" "));
        }
        Ok(())
    };
    ip(&["netns", "add", &ns])?;
    ip(&["-n", &ns, "link", "set", "lo", "up"])?;
    // No duplicate address detection: the link-local address is usable
    // at once.
    ip(&[
        "netns",
        "exec",
        &ns,
        "sysctl",
        "-q",
        "-w",
        "net.ipv6.conf.default.accept_dad=0",
    ])?;
    ip(&[
        "-n", &ns, "link", "add", "ssm0", "type", "veth", "peer", "name", "ssm1",
    ])?;
    ip(&["-n", &ns, "link", "set", "ssm1", "up"])?;
    ip(&["-n", &ns, "link", "set", "ssm0", "up"])?;
    // The route for ff00::/8 on ssm0 exists once the link is up.
    let exe = std::env::current_exe().context("cannot find the ssm binary")?;
    let mut cmd = tokio::process::Command::new("ip");
    cmd.args(["netns", "exec", &ns])
        .arg(exe)
        .args(["demo", "--netns-iface", "ssm0"])
        .args(["--lights", &args.lights.to_string()])
        .args(["--rounds", &args.rounds.to_string()])
        .args(["--port", &args.port.to_string()])
        .kill_on_drop(true);
    if let Some(d) = &args.data_dir {
        cmd.arg("--data-dir").arg(d);
    }
    if args.json {
        cmd.arg("--json");
    }
    let mut child = cmd
        .spawn()
        .context("cannot start the demo in the namespace")?;
    let ok = tokio::select! {
        st = child.wait() => st?.success(),
        _ = crate::device::shutdown() => {
            // Let the inner demo clean up its own state first.
            if let Some(pid) = child.id() {
                let _ = std::process::Command::new("kill")
                    .args(["-INT", &pid.to_string()])
                    .status();
            }
            if tokio::time::timeout(std::time::Duration::from_secs(3), child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
            eprintln!("ssm demo: interrupted; namespace {ns} removed");
            false
        }
    };
    drop(guard);
    Ok(ok)
}

struct Ns(String);
impl Drop for Ns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .status();
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

fn which(tool: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(tool))
            .find(|f| f.is_file())
    })
}

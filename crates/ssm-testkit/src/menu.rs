//! Driving a third-party peer with a text menu (the iotivity-lite sample
//! apps in `shared/peers/iotivity-lite/bin`): it runs in a host's namespace
//! with its own working directory (and an empty `<app>_creds/` storage
//! folder), reads one choice per line on stdin and prints on stdout.
//!
//! Its stdin and stdout are a pseudo-terminal (echo off): those apps print
//! through C's buffered `stdout`, which is flushed line by line, and before
//! each read of a prompt's answer, only on a terminal (into a pipe their
//! output would come at exit). The apps themselves run unchanged.
use crate::Host;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// A running menu app.
pub struct MenuApp {
    /// What it is called (for messages).
    pub name: String,
    child: Child,
    /// The controlling side of its terminal (what it reads).
    stdin: std::fs::File,
    chunks: Receiver<String>,
    /// Output not consumed by an `expect` yet.
    pending: String,
    /// Everything it printed (for failure messages).
    pub transcript: String,
    /// Its working directory.
    pub dir: PathBuf,
    /// Menu choices sent (each answers one prompt).
    choices: usize,
}

/// A pseudo-terminal pair: (controlling side, the app's side).
fn openpty() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let (mut m, mut s) = (-1, -1);
    // SAFETY: openpty writes two new file descriptors into `m` and `s` and
    // reads nothing else (the name, termios and winsize pointers are null,
    // which it allows). On success both are open and owned by nobody else,
    // so each is wrapped exactly once in an OwnedFd.
    let r = unsafe {
        libc::openpty(
            &mut m,
            &mut s,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: see above: fresh descriptors, owned here only.
    let (m, s) = unsafe { (OwnedFd::from_raw_fd(m), OwnedFd::from_raw_fd(s)) };
    // No echo: what the test types is not read back as the app's output.
    // SAFETY: `t` is a plain C struct that tcgetattr fills in; both calls
    // get the valid, open descriptor `s` and a pointer to `t` on our stack.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(s.as_raw_fd(), &mut t) == 0 {
            t.c_lflag &= !(libc::ECHO | libc::ECHONL);
            libc::tcsetattr(s.as_raw_fd(), libc::TCSANOW, &t);
        }
    }
    Ok((m, s))
}

impl MenuApp {
    /// Starts `bin` on `host` in `dir` (created, with an empty
    /// `<app>_creds/` folder: a fresh device or OBT).
    pub fn start(host: &Host, bin: &Path, dir: &Path) -> MenuApp {
        let name = bin.file_name().unwrap().to_string_lossy().into_owned();
        std::fs::create_dir_all(dir.join(format!("{name}_creds"))).unwrap();
        let (master, slave) = openpty().expect("openpty");
        let mut c = host.cmd(bin);
        c.current_dir(dir)
            .stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave));
        let child = c.spawn().unwrap_or_else(|e| panic!("spawn {c:?}: {e}"));
        let stdin = std::fs::File::from(master.try_clone().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        let mut master = std::fs::File::from(master);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // Ends when the app exits (EIO on the controlling side once
            // no process holds the terminal) or the receiver is gone.
            while let Ok(n) = master.read(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).replace('\r', "");
                if n == 0 || tx.send(text).is_err() {
                    break;
                }
            }
        });
        MenuApp {
            name,
            child,
            stdin,
            chunks: rx,
            pending: String::new(),
            transcript: String::new(),
            dir: dir.to_path_buf(),
            choices: 0,
        }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits at most `limit` for `pat` in what it prints next; returns the
    /// output up to and including it (consumed). Panics with the transcript
    /// when it does not come.
    pub fn expect(&mut self, pat: &str, limit: Duration) -> String {
        self.try_expect(pat, limit).unwrap_or_else(|| {
            panic!(
                "{}: no {pat:?} within {limit:?}; it printed:\n{}",
                self.name, self.transcript
            )
        })
    }

    /// [`expect`](Self::expect) that gives `None` instead of panicking.
    pub fn try_expect(&mut self, pat: &str, limit: Duration) -> Option<String> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(i) = self.pending.find(pat) {
                let rest = self.pending.split_off(i + pat.len());
                return Some(std::mem::replace(&mut self.pending, rest));
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.chunks.recv_timeout(left) {
                Ok(t) => {
                    self.transcript.push_str(&t);
                    self.pending.push_str(&t);
                }
                // It exited: everything it printed was looked at.
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    /// Waits for the first of `pats`; returns its index and the output up
    /// to and including it.
    pub fn expect_any(&mut self, pats: &[&str], limit: Duration) -> (usize, String) {
        let deadline = Instant::now() + limit;
        loop {
            let first = pats
                .iter()
                .enumerate()
                .filter_map(|(k, p)| self.pending.find(p).map(|i| (i, k)))
                .min();
            if let Some((i, k)) = first {
                let rest = self.pending.split_off(i + pats[k].len());
                return (k, std::mem::replace(&mut self.pending, rest));
            }
            let got = deadline
                .checked_duration_since(Instant::now())
                .and_then(|left| self.chunks.recv_timeout(left).ok());
            match got {
                Some(t) => {
                    self.transcript.push_str(&t);
                    self.pending.push_str(&t);
                }
                None => panic!(
                    "{}: none of {pats:?} within {limit:?}; it printed:\n{}",
                    self.name, self.transcript
                ),
            }
        }
    }

    /// Sends one line (a menu choice, a PIN).
    pub fn send(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").unwrap_or_else(|e| panic!("{}: stdin: {e}", self.name));
        self.stdin.flush().unwrap();
    }

    /// Waits until the app has shown its menu prompt (`Select option:`)
    /// once more than choices were sent, then sends `choice`. Results of
    /// earlier choices may come after the prompt (the apps answer
    /// asynchronously), so the prompt is counted in all output, not
    /// waited for after the last `expect`.
    pub fn choose(&mut self, choice: u32, limit: Duration) {
        const PROMPT: &str = "Select option:";
        let deadline = Instant::now() + limit;
        while self.transcript.matches(PROMPT).count() <= self.choices {
            let left = deadline.checked_duration_since(Instant::now());
            match left.and_then(|l| self.chunks.recv_timeout(l).ok()) {
                Some(t) => {
                    self.transcript.push_str(&t);
                    self.pending.push_str(&t);
                }
                None => panic!(
                    "{}: no menu prompt for choice {choice} within {limit:?}; it printed:\n{}",
                    self.name, self.transcript
                ),
            }
        }
        self.choices += 1;
        self.send(&choice.to_string());
    }

    /// Everything printed since the last `expect`, waiting `quiet` for more.
    pub fn drain(&mut self, quiet: Duration) -> String {
        while let Ok(t) = self.chunks.recv_timeout(quiet) {
            self.transcript.push_str(&t);
            self.pending.push_str(&t);
        }
        std::mem::take(&mut self.pending)
    }
}

/// The number a menu printed in front of `what` in a list of
/// `[N]: <what> …` lines, if any.
pub fn menu_index(listing: &str, what: &str) -> Option<u32> {
    listing.lines().find_map(|l| {
        let rest = l.trim().strip_prefix('[')?;
        let (n, tail) = rest.split_once("]:")?;
        tail.contains(what).then(|| n.parse().ok()).flatten()
    })
}

impl Drop for MenuApp {
    fn drop(&mut self) {
        // Its exit choice first (it saves its state), then by its PID.
        let _ = writeln!(self.stdin, "99");
        let _ = self.stdin.flush();
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn menu_numbers() {
        let l = "Unowned Devices:\n[0]: 1111-aaaa - light\n[1]: 2222-bbbb - switch\n";
        assert_eq!(menu_index(l, "2222-bbbb"), Some(1));
        assert_eq!(menu_index(l, "1111"), Some(0));
        assert_eq!(menu_index(l, "3333"), None);
    }

    #[test]
    fn a_shell_driven_through_its_terminal() {
        let d = crate::TempDir::new("testkit-menu");
        let mut app = MenuApp::start(&Host(None), Path::new("/bin/sh"), &d);
        app.send("echo ready; read x; echo got $x; exit 0");
        app.expect("ready", Duration::from_secs(5));
        app.send("42");
        app.expect("got 42", Duration::from_secs(5));
        assert!(d.join("sh_creds").is_dir());
    }
}

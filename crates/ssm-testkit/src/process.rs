//! Processes run with a bounded wait.
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// Runs `c` with stdout and stderr piped to the end; kills it and panics
/// with the command and its stderr after `limit`.
pub fn run_with_timeout(mut c: Command, limit: Duration) -> Output {
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {c:?}: {e}"));
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("timed out: {c:?}\n{}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A process that printed its ready JSON line.
pub struct Ready {
    pub child: Child,
    /// The first line of its stdout, parsed.
    pub ready: Value,
    /// Its further stdout lines, as they come.
    pub lines: Receiver<String>,
}

/// Spawns `c` with stdout piped and waits at most `limit` for its first
/// stdout line, a JSON object. Panics (after killing it) when the line does
/// not come in time or is not JSON. Stderr is left as the caller set it.
pub fn spawn_ready(mut c: Command, limit: Duration) -> Ready {
    let mut child = c
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {c:?}: {e}"));
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let first = match rx.recv_timeout(limit) {
        Ok(l) => l,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            match e {
                RecvTimeoutError::Timeout => panic!("{c:?}: no ready line within {limit:?}"),
                RecvTimeoutError::Disconnected => panic!("{c:?}: exited before its ready line"),
            }
        }
    };
    match serde_json::from_str(&first) {
        Ok(ready) => Ready {
            child,
            ready,
            lines: rx,
        },
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{c:?} did not start: {first:?}")
        }
    }
}

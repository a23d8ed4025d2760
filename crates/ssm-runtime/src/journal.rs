//! Group commit of the SSM replay floors of many devices in one process.
//!
//! A light persists its replay floor before it applies an SSM update, so
//! that after a crash no datagram it accepted can be accepted again. With
//! one file per light that is one fsync per light per command; 100 lights
//! hosted by one process (a bridge, a simulator) then pay 100 fsyncs for
//! one command on one disk. A [`FloorJournal`] makes it one: every device
//! of the process appends its floors (the whole small map, as JSON) to one
//! journal file; a committer thread takes every record that arrived while
//! the previous commit ran, appends them with one write and one
//! `fdatasync`, and only then lets each device apply its update.
//!
//! Crash safety is the per-file scheme's: a record is acknowledged only
//! once it is durable; a record torn by a crash was never acknowledged
//! (nothing was applied on its strength) and is ignored when the journal is
//! read back. A device started with a journal takes, per sender, the
//! higher of its own floors file and its latest journal record. The file
//! is compacted (latest record per device, written with
//! [`atomic_write`]) when it passes
//! [`COMPACT_BYTES`].
use crate::store::atomic_write;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};

/// The journal is rewritten with the latest record per device when it
/// grows past this size.
pub const COMPACT_BYTES: u64 = 1 << 20;

struct Job {
    key: String,
    value: Vec<u8>,
    done: tokio::sync::oneshot::Sender<io::Result<()>>,
}

/// A replay-floor journal shared by the devices of one process.
pub struct FloorJournal {
    path: PathBuf,
    tx: Mutex<mpsc::Sender<Job>>,
    latest: Arc<Mutex<HashMap<String, Vec<u8>>>>,
}

impl std::fmt::Debug for FloorJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FloorJournal({})", self.path.display())
    }
}

/// Reads the records of a journal: the latest value per key. A line that
/// does not parse (a record torn by a crash, never acknowledged) is
/// skipped.
fn read(path: &Path) -> io::Result<HashMap<String, Vec<u8>>> {
    let mut out = HashMap::new();
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for line in io::BufReader::new(f).split(b'\n') {
        let line = line?;
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&line) else {
            continue;
        };
        let (Some(k), Some(val)) = (v.get("k").and_then(|k| k.as_str()), v.get("v")) else {
            continue;
        };
        out.insert(k.to_string(), serde_json::to_vec(val).unwrap_or_default());
    }
    Ok(out)
}

fn record(key: &str, value: &[u8]) -> Vec<u8> {
    let mut line = br#"{"k":"#.to_vec();
    line.extend(serde_json::to_vec(key).unwrap_or_default());
    line.extend(br#","v":"#);
    line.extend(value);
    line.extend(b"}\n");
    line
}

fn compacted(latest: &HashMap<String, Vec<u8>>) -> Vec<u8> {
    let mut keys: Vec<&String> = latest.keys().collect();
    keys.sort();
    keys.into_iter()
        .flat_map(|k| record(k, &latest[k]))
        .collect()
}

impl FloorJournal {
    /// Opens (or creates) the journal at `path` and starts its committer
    /// thread, which ends when the journal is dropped.
    pub fn open(path: impl Into<PathBuf>) -> io::Result<Arc<FloorJournal>> {
        let path = path.into();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::store::create_private_dir(dir)?;
        }
        let latest = read(&path)?;
        // Start from a clean file: what was read, without a torn tail.
        atomic_write(&path, &compacted(&latest))?;
        let latest = Arc::new(Mutex::new(latest));
        let (tx, rx) = mpsc::channel::<Job>();
        let mut file = OpenOptions::new().append(true).open(&path)?;
        let shared = latest.clone();
        let p = path.clone();
        std::thread::Builder::new()
            .name("ssm-floor-journal".into())
            .spawn(move || {
                // After a failed append the file may end in a partial
                // record; the next commit first rewrites it from what is
                // known durable, so no acknowledged record ever follows
                // garbage on the same line.
                let mut broken = false;
                while let Ok(first) = rx.recv() {
                    let mut batch = vec![first];
                    while let Ok(more) = rx.try_recv() {
                        batch.push(more);
                    }
                    let bytes: Vec<u8> = batch
                        .iter()
                        .flat_map(|j| record(&j.key, &j.value))
                        .collect();
                    let result = (|| -> io::Result<()> {
                        let mut latest = shared.lock().map_err(|_| io::Error::other("poisoned"))?;
                        if broken {
                            atomic_write(&p, &compacted(&latest))?;
                            file = OpenOptions::new().append(true).open(&p)?;
                            broken = false;
                        }
                        if let Err(e) = file.write_all(&bytes).and_then(|()| file.sync_data()) {
                            broken = true;
                            return Err(e);
                        }
                        for j in &batch {
                            latest.insert(j.key.clone(), j.value.clone());
                        }
                        if file.metadata()?.len() > COMPACT_BYTES {
                            atomic_write(&p, &compacted(&latest))?;
                            file = OpenOptions::new().append(true).open(&p)?;
                        }
                        Ok(())
                    })();
                    for j in batch {
                        let r = match &result {
                            Ok(()) => Ok(()),
                            Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
                        };
                        let _ = j.done.send(r);
                    }
                }
            })?;
        Ok(Arc::new(FloorJournal {
            path,
            tx: Mutex::new(tx),
            latest,
        }))
    }

    /// The latest durable value recorded under `key`.
    pub fn latest(&self, key: &str) -> Option<Vec<u8>> {
        self.latest.lock().ok()?.get(key).cloned()
    }

    /// Appends `value` (JSON) under `key`; returns once it is durable, in a
    /// commit shared with every record that arrived meanwhile.
    pub async fn write(&self, key: &str, value: Vec<u8>) -> io::Result<()> {
        let (done, wait) = tokio::sync::oneshot::channel();
        self.tx
            .lock()
            .map_err(|_| io::Error::other("journal poisoned"))?
            .send(Job {
                key: key.to_string(),
                value,
                done,
            })
            .map_err(|_| io::Error::other("journal committer stopped"))?;
        wait.await
            .map_err(|_| io::Error::other("journal committer stopped"))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ssm_testkit::TempDir;

    /// A journal path whose directory does not exist yet, in a fresh
    /// temp dir that lives as long as the returned guard.
    fn tmp(name: &str) -> (TempDir, PathBuf) {
        let d = TempDir::new(&format!("journal-{name}"));
        let p = d.join("journal").join("floors.journal");
        (d, p)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_are_durable_and_read_back() {
        let (_d, p) = tmp("rw");
        let j = FloorJournal::open(&p).unwrap();
        let mut tasks = Vec::new();
        for i in 0..50u64 {
            let j = j.clone();
            tasks.push(tokio::spawn(async move {
                for n in 0..4u64 {
                    let v = format!("{{\"02aa\":{}}}", i * 10 + n).into_bytes();
                    j.write(&format!("light-{i}"), v).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(j.latest("light-7").unwrap(), br#"{"02aa":73}"#.to_vec());
        drop(j);
        let back = read(&p).unwrap();
        assert_eq!(back.len(), 50);
        assert_eq!(back["light-49"], br#"{"02aa":493}"#.to_vec());
    }

    #[tokio::test]
    async fn a_torn_tail_is_ignored_and_cleaned() {
        let (_d, p) = tmp("torn");
        {
            let j = FloorJournal::open(&p).unwrap();
            j.write("a", b"{\"01\":5}".to_vec()).await.unwrap();
            j.write("b", b"{\"01\":9}".to_vec()).await.unwrap();
        }
        // A crash in the middle of an append.
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(br#"{"k":"a","v":{"01":"#).unwrap();
        drop(f);
        let j = FloorJournal::open(&p).unwrap();
        assert_eq!(j.latest("a").unwrap(), b"{\"01\":5}".to_vec());
        assert_eq!(j.latest("b").unwrap(), b"{\"01\":9}".to_vec());
        j.write("a", b"{\"01\":6}".to_vec()).await.unwrap();
        drop(j);
        assert_eq!(read(&p).unwrap()["a"], b"{\"01\":6}".to_vec());
    }

    #[test]
    fn an_unparsable_line_is_skipped_not_the_rest() {
        let (_d, p) = tmp("skip");
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(
            &p,
            b"{\"k\":\"a\",\"v\":{\"01\":1}}\n{\"k\":\"a\",\"v\":{\"01\":\n{\"k\":\"b\",\"v\":{\"01\":2}}\n",
        )
        .unwrap();
        let back = read(&p).unwrap();
        assert_eq!(back["a"], b"{\"01\":1}".to_vec());
        assert_eq!(back["b"], b"{\"01\":2}".to_vec());
    }

    #[tokio::test]
    async fn compaction_keeps_the_latest_per_key() {
        let (_d, p) = tmp("compact");
        let j = FloorJournal::open(&p).unwrap();
        let big = format!("{{\"01\":1,\"pad\":\"{}\"}}", "x".repeat(4000));
        for i in 0..300 {
            let key = format!("k{}", i % 3);
            let v = if i >= 297 {
                format!("{{\"01\":{i}}}")
            } else {
                big.clone()
            };
            j.write(&key, v.into_bytes()).await.unwrap();
        }
        assert!(std::fs::metadata(&p).unwrap().len() < COMPACT_BYTES);
        drop(j);
        let back = read(&p).unwrap();
        assert_eq!(back.len(), 3);
        assert_eq!(back["k0"], b"{\"01\":297}".to_vec());
    }
}

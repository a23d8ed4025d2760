//! What a sender pays per sequence number for sharing its state dir with
//! other processes: `FileSequenceStore` hands out one number at a time under
//! an exclusive `flock` (read the limit, read and write this boot's counter;
//! one fsync per K numbers), against two baselines measured in the same run:
//! a store owned by one sender in memory (the K-ahead arithmetic alone), and
//! the single-process file store as it was (one fsynced atomic replace per
//! K = 64 numbers, nothing per number).
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use ssm_oscore::{block_ahead, SequenceNumber, SequenceNumberStore};
use ssm_runtime::store::{atomic_write, FileSequenceStore};
use std::ops::Range;
use std::path::PathBuf;

const K: u64 = 64;

struct Memory(u64);
impl SequenceNumberStore for Memory {
    type Error = ();
    fn reserve_block(&mut self, next: u64, k: u64) -> Result<Range<u64>, ()> {
        let b = block_ahead(next.max(self.0), k);
        self.0 = b.end;
        Ok(b)
    }
}

/// The store before this change: K ahead, an fsynced replace per block.
struct SingleProcessFile(PathBuf);
impl SequenceNumberStore for SingleProcessFile {
    type Error = std::io::Error;
    fn reserve_block(&mut self, next: u64, k: u64) -> std::io::Result<Range<u64>> {
        let b = block_ahead(next, k);
        atomic_write(&self.0, format!("{}\n", b.end).as_bytes())?;
        Ok(b)
    }
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ssm-bench-seq-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn take<S: SequenceNumberStore>(s: &mut SequenceNumber, store: &mut S) -> u64
where
    S::Error: std::fmt::Debug,
{
    s.reserve(store).unwrap();
    s.take().unwrap().value()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("sequence_number");
    let mut mem = Memory(0);
    let mut s = SequenceNumber::resume(0, K);
    g.bench_function("in_memory_k_ahead (floor)", |b| {
        b.iter(|| black_box(take(&mut s, &mut mem)))
    });
    let d1 = scratch("single");
    let mut single = SingleProcessFile(d1.join("ssn"));
    let mut s = SequenceNumber::resume(0, K);
    g.bench_function("file_k_ahead_single_process (before)", |b| {
        b.iter(|| black_box(take(&mut s, &mut single)))
    });
    let d2 = scratch("shared");
    let mut shared = FileSequenceStore::new(d2.join("ssn"));
    let mut s = SequenceNumber::resume(0, K);
    g.bench_function("file_shared_flock (now)", |b| {
        b.iter(|| black_box(take(&mut s, &mut shared)))
    });
    g.finish();
    let _ = std::fs::remove_dir_all(d1);
    let _ = std::fs::remove_dir_all(d2);
}

criterion_group!(benches, bench);
criterion_main!(benches);

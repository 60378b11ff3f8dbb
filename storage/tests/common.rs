//! Helpers shared by the storage integration tests.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::time::Duration;

use bytes::BytesMut;
use sprawl_io::dma_pool::DmaBufPool;
use sprawl_storage::{BatchBuilder, BatchView, LogConfig, PartitionLog, Record};

/// Runs `f` on a fresh glommio executor warmed up on `dir`'s disk.
pub fn run<F, Fut, T>(dir: &Path, f: F) -> T
where
    F: FnOnce(Rc<DmaBufPool>) -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    let dir = dir.to_path_buf();
    glommio::LocalExecutorBuilder::default()
        .io_memory(1 << 20)
        .spawn(move || async move {
            sprawl_io::warmup::warm_up_dir(&dir).await.expect("warm-up");
            f(DmaBufPool::new(16 << 20)).await
        })
        .expect("executor")
        .join()
        .expect("executor thread")
}

pub fn batch_of(values: &[Vec<u8>], timestamp_ms: i64) -> BytesMut {
    let mut b = BatchBuilder::new();
    for v in values {
        b.push(&Record {
            timestamp_ms,
            key: Some(b"k"),
            value: v,
            headers: &[],
        });
    }
    BytesMut::from(&b.finish()[..])
}

/// Every record value readable from `from`, in order, checking offsets are contiguous.
pub async fn read_all(log: &PartitionLog, from: u64) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut next = from;
    loop {
        let fetched = log.read(next, 64 << 10).await.expect("read");
        if fetched.batches.is_empty() {
            return out;
        }
        for b in &fetched.batches {
            let view = BatchView::parse_exact(b).expect("valid batch");
            assert!(
                !view.header().is_control(),
                "consumers never see control batches"
            );
            for r in view.records() {
                let r = r.expect("valid record");
                if r.offset < next {
                    continue;
                }
                assert_eq!(r.offset, next, "offsets are contiguous");
                out.push((r.offset, r.value.to_vec()));
                next += 1;
            }
        }
    }
}

pub fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 64 << 10,
        index_interval_bytes: 1024,
        ring_bytes: 4 << 10,
        ..LogConfig::default()
    }
}

/// Tears the last batch of a segment file as a crash mid-write would:
/// garbage over the last 20 bytes of its written part.
pub fn tear_last_batch(segment: &Path) {
    let mut bytes = std::fs::read(segment).unwrap();
    let end = bytes.iter().rposition(|&b| b != 0).unwrap() + 1;
    for b in &mut bytes[end - 20..end] {
        *b ^= 0x55;
    }
    std::fs::write(segment, &bytes).unwrap();
}

/// The crash tests' seed: `CRASH_SEED` when set (to replay a failure), else
/// the clock. Printed.
pub fn crash_seed() -> u64 {
    let seed = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("crash test seed: CRASH_SEED={seed}");
    seed
}

/// xorshift64: the crash tests' reproducible randomness.
pub fn next_rand(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// When [`kill_crash_writer`] starts counting down to its `kill -9`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillClock {
    /// From the spawn (the child may die before it even opened the log).
    FromSpawn,
    /// From the child's first output line (it opened the log).
    FromFirstLine,
}

/// Runs `log-crash-writer ARGS`, `kill -9`s it `kill_after` past `clock`,
/// and returns every line it printed. The writer never exits by itself:
/// if it did (an error), this panics.
pub fn kill_crash_writer<S: AsRef<OsStr>>(
    args: &[S],
    clock: KillClock,
    kill_after: Duration,
) -> Vec<String> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_log-crash-writer"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    if clock == KillClock::FromFirstLine {
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => lines.push(line),
            Err(e) => panic!(
                "log-crash-writer printed nothing ({e}): {:?}",
                child.try_wait()
            ),
        }
    }
    std::thread::sleep(kill_after);
    if let Some(status) = child.try_wait().unwrap() {
        panic!("log-crash-writer exited by itself: {status}");
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    reader.join().unwrap();
    lines.extend(rx.try_iter());
    lines
}

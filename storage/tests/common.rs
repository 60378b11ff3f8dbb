//! Helpers shared by the storage integration tests.
#![allow(dead_code)]

use std::future::Future;
use std::path::Path;
use std::rc::Rc;

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

//! Counters and latency histograms of the archive. The archive thread
//! updates them under a mutex (off the data path: once per request or per
//! 1 MiB moved); [`crate::ArchiveHandle::stats`] copies a snapshot from any
//! thread.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::Mutex;

use hdrhistogram::Histogram;

/// The operations of [`crate::ArchiveHandle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    UploadSegment,
    GetRange,
    ReadManifest,
    WriteManifest,
    DeleteSegment,
    ListPartitions,
    VerifySegment,
}

impl Op {
    pub const ALL: [Self; 7] = [
        Self::UploadSegment,
        Self::GetRange,
        Self::ReadManifest,
        Self::WriteManifest,
        Self::DeleteSegment,
        Self::ListPartitions,
        Self::VerifySegment,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::UploadSegment => "upload_segment",
            Self::GetRange => "get_range",
            Self::ReadManifest => "read_manifest",
            Self::WriteManifest => "write_manifest",
            Self::DeleteSegment => "delete_segment",
            Self::ListPartitions => "list_partitions",
            Self::VerifySegment => "verify_segment",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpCounters {
    /// Operations the archive thread started.
    pub requests: u64,
    /// Of those, how many returned an error.
    pub errors: u64,
}

/// A snapshot of the archive's counters.
#[derive(Debug, Clone)]
pub struct ArchiveStats {
    pub ops: BTreeMap<Op, OpCounters>,
    /// Attempts of S3 requests (a retried request counts once per attempt;
    /// a multipart upload counts once).
    pub s3_attempts: u64,
    /// Attempts that failed with a retryable error and were retried.
    pub s3_retries: u64,
    /// Segment and manifest bytes sent (retried attempts count again).
    pub bytes_up: u64,
    /// Bytes received: ranged reads, manifests and verification reads.
    pub bytes_down: u64,
    /// Successful `upload_segment` operations, verification included, in µs.
    pub upload_latency_us: Histogram<u64>,
    /// Successful `get_range` operations, in µs.
    pub get_latency_us: Histogram<u64>,
    /// Requests waiting for the archive thread right now.
    pub queue_depth: usize,
    pub queue_depth_max: usize,
    /// Requests refused with `Busy` because the queue was full.
    pub busy_rejections: u64,
}

impl ArchiveStats {
    pub fn op(&self, op: Op) -> OpCounters {
        self.ops.get(&op).copied().unwrap_or_default()
    }
}

/// Latencies up to an hour at 3 significant digits.
const LATENCY_US_MAX: u64 = 3_600_000_000;

pub(crate) struct Counters {
    pub ops: BTreeMap<Op, OpCounters>,
    pub s3_attempts: u64,
    pub s3_retries: u64,
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub upload_latency_us: Histogram<u64>,
    pub get_latency_us: Histogram<u64>,
}

impl Counters {
    fn new() -> Self {
        let histogram =
            || Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("valid histogram bounds");
        Self {
            ops: Op::ALL
                .iter()
                .map(|op| (*op, OpCounters::default()))
                .collect(),
            s3_attempts: 0,
            s3_retries: 0,
            bytes_up: 0,
            bytes_down: 0,
            upload_latency_us: histogram(),
            get_latency_us: histogram(),
        }
    }
}

/// State shared by the handles and the archive thread.
pub(crate) struct Shared {
    pub counters: Mutex<Counters>,
    pub queue_depth: AtomicUsize,
    pub queue_depth_max: usize,
    pub busy_rejections: AtomicU64,
}

impl Shared {
    pub fn new(queue_depth_max: usize) -> Self {
        Self {
            counters: Mutex::new(Counters::new()),
            queue_depth: AtomicUsize::new(0),
            queue_depth_max,
            busy_rejections: AtomicU64::new(0),
        }
    }

    pub fn update(&self, f: impl FnOnce(&mut Counters)) {
        // A panic elsewhere while holding the lock leaves plain counters:
        // still worth reporting.
        let mut c = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut c);
    }

    pub fn snapshot(&self) -> ArchiveStats {
        use std::sync::atomic::Ordering::Relaxed;
        let c = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        ArchiveStats {
            ops: c.ops.clone(),
            s3_attempts: c.s3_attempts,
            s3_retries: c.s3_retries,
            bytes_up: c.bytes_up,
            bytes_down: c.bytes_down,
            upload_latency_us: c.upload_latency_us.clone(),
            get_latency_us: c.get_latency_us.clone(),
            queue_depth: self.queue_depth.load(Relaxed),
            queue_depth_max: self.queue_depth_max,
            busy_rejections: self.busy_rejections.load(Relaxed),
        }
    }
}

//! Per-shard counters and latency histograms, and the snapshot a shard
//! publishes once a second for the admin endpoint (off the data path).

use hdrhistogram::Histogram;

use crate::request::PartitionOffsets;

/// Live counters, owned by one shard (no atomics, no locks).
pub struct ShardMetrics {
    pub messages_in: u64,
    pub bytes_in: u64,
    pub messages_out: u64,
    pub bytes_out: u64,
    pub produce_requests: u64,
    pub fetch_requests: u64,
    pub forwarded_requests: u64,
    pub errors: u64,
    pub connections_open: u64,
    pub connections_total: u64,
    /// Microseconds from request decoded to reply ready.
    pub produce_latency_us: Histogram<u64>,
    pub fetch_latency_us: Histogram<u64>,
    /// How late a 10 ms reactor timer fires: a stall of the reactor (a task
    /// that does not yield, blocking work) shows here.
    pub reactor_lag_us: Histogram<u64>,
    /// Load samples the load thread could not take (it was behind).
    pub load_samples_dropped: u64,
}

impl Default for ShardMetrics {
    fn default() -> Self {
        let hist = || Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
        Self {
            messages_in: 0,
            bytes_in: 0,
            messages_out: 0,
            bytes_out: 0,
            produce_requests: 0,
            fetch_requests: 0,
            forwarded_requests: 0,
            errors: 0,
            connections_open: 0,
            connections_total: 0,
            produce_latency_us: hist(),
            fetch_latency_us: hist(),
            reactor_lag_us: hist(),
            load_samples_dropped: 0,
        }
    }
}

/// State of one partition as published in a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionSnapshot {
    pub topic: String,
    pub partition: u32,
    /// `log_start` is the first offset of any tier.
    pub offsets: PartitionOffsets,
    /// First offset on local disk.
    pub local_log_start: u64,
    pub segments: usize,
    pub cold: Option<crate::cold::ColdSnapshot>,
    /// Replicated partitions: the Raft group as this replica sees it.
    pub replica: Option<crate::replication::GroupStatus>,
}

/// A copy of a shard's metrics, taken by the shard itself.
#[derive(Debug, Clone, Default)]
pub struct ShardSnapshot {
    pub shard: usize,
    pub messages_in: u64,
    pub bytes_in: u64,
    pub messages_out: u64,
    pub bytes_out: u64,
    pub produce_requests: u64,
    pub fetch_requests: u64,
    pub forwarded_requests: u64,
    pub errors: u64,
    pub connections_open: u64,
    pub connections_total: u64,
    pub log_bytes: u64,
    pub fdatasyncs: u64,
    pub disk_free_bytes: u64,
    pub disk_alarm: bool,
    pub produce_latency_us: Option<Histogram<u64>>,
    pub fetch_latency_us: Option<Histogram<u64>>,
    pub reactor_lag_us: Option<Histogram<u64>>,
    pub load_samples_dropped: u64,
    /// The shard's partition replication counters (zero without it).
    pub replication: crate::replication::ReplicationStats,
    pub partitions: Vec<PartitionSnapshot>,
}

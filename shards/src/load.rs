//! Per-second load samples: what each shard's partitions took in and gave
//! out, and how busy the shard's reactor was. The shard only diffs its own
//! counters and hands the sample to a bounded channel; everything costly
//! (history, forecasting, persistence) happens on the node's load thread.

use std::collections::HashMap;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::time::Duration;

/// One partition's traffic over one sampling interval.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionLoadSample {
    pub topic: String,
    pub partition: u32,
    pub messages_in: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Size of the local log at the end of the interval (a level, not a delta).
    pub log_bytes: u64,
}

/// One shard's load over one sampling interval.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardLoadSample {
    /// End of the interval, unix seconds.
    pub unix_s: i64,
    pub shard: usize,
    pub interval: Duration,
    /// Share of the interval the reactor spent running tasks and polling
    /// I/O (glommio's own accounting; parking is not counted).
    pub busy_fraction: f64,
    pub partitions: Vec<PartitionLoadSample>,
}

/// Where shards send their samples. Never blocks a shard: a full channel
/// drops the sample (the load thread is behind) and counts it.
#[derive(Debug, Clone)]
pub struct LoadSink {
    tx: SyncSender<ShardLoadSample>,
}

impl LoadSink {
    pub fn new(tx: SyncSender<ShardLoadSample>) -> Self {
        Self { tx }
    }

    /// Sends without waiting; false when the sample was dropped.
    pub fn offer(&self, sample: ShardLoadSample) -> bool {
        match self.tx.try_send(sample) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
        }
    }
}

/// Monotonic counters of one partition, as last sampled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub messages_in: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// Turns monotonic counters into per-interval deltas (sans-IO).
#[derive(Debug, Default)]
pub struct LoadDiffer {
    last: HashMap<(String, u32), Counters>,
    last_busy: Option<Duration>,
}

impl LoadDiffer {
    /// The reactor's busy share since the previous call (0 on the first).
    pub fn busy_fraction(&mut self, busy_total: Duration, interval: Duration) -> f64 {
        let previous = self.last_busy.replace(busy_total);
        match previous {
            Some(prev) if !interval.is_zero() => {
                (busy_total.saturating_sub(prev).as_secs_f64() / interval.as_secs_f64()).min(1.0)
            }
            _ => 0.0,
        }
    }

    /// Deltas of every partition in `now`; partitions no longer present
    /// (moved away, deleted) are forgotten. A partition seen for the first
    /// time counts from zero: its counters start when it is opened here.
    pub fn diff(
        &mut self,
        now: impl IntoIterator<Item = ((String, u32), Counters, u64)>,
    ) -> Vec<PartitionLoadSample> {
        let mut next = HashMap::new();
        let mut samples = Vec::new();
        for (key, counters, log_bytes) in now {
            let prev = self.last.get(&key).copied().unwrap_or_default();
            samples.push(PartitionLoadSample {
                topic: key.0.clone(),
                partition: key.1,
                messages_in: counters.messages_in.saturating_sub(prev.messages_in),
                bytes_in: counters.bytes_in.saturating_sub(prev.bytes_in),
                bytes_out: counters.bytes_out.saturating_sub(prev.bytes_out),
                log_bytes,
            });
            next.insert(key, counters);
        }
        self.last = next;
        samples.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        samples
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(m: u64, bi: u64, bo: u64) -> Counters {
        Counters {
            messages_in: m,
            bytes_in: bi,
            bytes_out: bo,
        }
    }

    #[test]
    fn deltas_between_samples_and_new_partitions_count_from_zero() {
        let mut d = LoadDiffer::default();
        let k = |p| ("t".to_string(), p);
        let first = d.diff([(k(0), c(10, 100, 5), 1000)]);
        assert_eq!(first[0].messages_in, 10);
        let second = d.diff([(k(0), c(15, 160, 5), 1060), (k(1), c(3, 30, 0), 30)]);
        assert_eq!(
            (
                second[0].messages_in,
                second[0].bytes_in,
                second[0].bytes_out
            ),
            (5, 60, 0)
        );
        assert_eq!(second[0].log_bytes, 1060);
        assert_eq!(second[1].messages_in, 3);
        // Partition 0 moved away and came back: its new counters start at 0.
        d.diff([(k(1), c(4, 40, 0), 40)]);
        let back = d.diff([(k(0), c(2, 20, 0), 20), (k(1), c(4, 40, 0), 40)]);
        assert_eq!(back[0].messages_in, 2);
        assert_eq!(back[1].messages_in, 0);
    }

    #[test]
    fn busy_fraction_is_a_share_of_the_interval() {
        let mut d = LoadDiffer::default();
        let s = Duration::from_secs(1);
        assert_eq!(d.busy_fraction(Duration::from_millis(500), s), 0.0);
        let f = d.busy_fraction(Duration::from_millis(750), s);
        assert!((f - 0.25).abs() < 1e-9, "{f}");
        assert_eq!(d.busy_fraction(Duration::from_secs(5), s), 1.0);
    }

    #[test]
    fn a_full_sink_drops_instead_of_blocking() {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let sink = LoadSink::new(tx);
        let sample = ShardLoadSample {
            unix_s: 0,
            shard: 0,
            interval: Duration::from_secs(1),
            busy_fraction: 0.0,
            partitions: Vec::new(),
        };
        assert!(sink.offer(sample.clone()));
        assert!(!sink.offer(sample));
        assert!(rx.try_recv().is_ok());
    }
}

//! Turns shard samples into series values (sans-IO): per partition and per
//! shard as they arrive, per node once every shard reported a second (or
//! it is too old to wait for).

use std::collections::BTreeMap;

use sprawl_forecast::{Resource, Scope, SeriesKey};
use sprawl_shards::load::ShardLoadSample;

/// A node second is summed once this many newer seconds have arrived,
/// even if a shard's sample for it was dropped.
const NODE_SECOND_WAIT_S: i64 = 2;

/// One value of one series at one second.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub unix_s: i64,
    pub key: SeriesKey,
    pub value: f64,
}

#[derive(Debug, Default, Clone, Copy)]
struct NodeSecond {
    shards: usize,
    messages_in: f64,
    bytes_in: f64,
    bytes_out: f64,
    cpu: f64,
}

/// Node-level facts sampled by the load thread itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct NodeGauges {
    pub memory_bytes: f64,
}

#[derive(Debug)]
pub struct Aggregator {
    shard_count: usize,
    pending: BTreeMap<i64, NodeSecond>,
}

fn per_s(delta: u64, interval_s: f64) -> f64 {
    if interval_s > 0.0 {
        delta as f64 / interval_s
    } else {
        0.0
    }
}

impl Aggregator {
    pub fn new(shard_count: usize) -> Self {
        Self {
            shard_count: shard_count.max(1),
            pending: BTreeMap::new(),
        }
    }

    /// The points of one shard sample, plus any node seconds it completes.
    pub fn add(&mut self, sample: &ShardLoadSample, gauges: NodeGauges) -> Vec<Point> {
        let interval_s = sample.interval.as_secs_f64();
        let mut points = Vec::new();
        let at = |key, value| Point {
            unix_s: sample.unix_s,
            key,
            value,
        };
        let shard = Scope::Shard(sample.shard as u32);
        let (mut messages, mut bytes_in, mut bytes_out) = (0.0, 0.0, 0.0);
        for p in &sample.partitions {
            let scope = Scope::Partition {
                topic: p.topic.clone(),
                partition: p.partition,
            };
            let rates = [
                (Resource::MessagesIn, per_s(p.messages_in, interval_s)),
                (Resource::BytesIn, per_s(p.bytes_in, interval_s)),
                (Resource::BytesOut, per_s(p.bytes_out, interval_s)),
            ];
            messages += rates[0].1;
            bytes_in += rates[1].1;
            bytes_out += rates[2].1;
            for (resource, value) in rates {
                points.push(at(SeriesKey::new(resource, scope.clone()), value));
            }
            points.push(at(
                SeriesKey::new(Resource::LogBytes, scope),
                p.log_bytes as f64,
            ));
        }
        points.push(at(
            SeriesKey::new(Resource::CpuBusy, shard.clone()),
            sample.busy_fraction,
        ));
        points.push(at(SeriesKey::new(Resource::MessagesIn, shard), messages));

        let second = self.pending.entry(sample.unix_s).or_default();
        second.shards += 1;
        second.messages_in += messages;
        second.bytes_in += bytes_in;
        second.bytes_out += bytes_out;
        second.cpu += sample.busy_fraction;
        let newest = sample.unix_s;
        let ready: Vec<i64> = self
            .pending
            .iter()
            .filter(|(&s, n)| n.shards >= self.shard_count || s <= newest - NODE_SECOND_WAIT_S)
            .map(|(&s, _)| s)
            .collect();
        for s in ready {
            let n = self.pending.remove(&s).expect("listed above");
            let node = |resource, value| Point {
                unix_s: s,
                key: SeriesKey::new(resource, Scope::Node),
                value,
            };
            points.push(node(Resource::MessagesIn, n.messages_in));
            points.push(node(Resource::BytesIn, n.bytes_in));
            points.push(node(Resource::BytesOut, n.bytes_out));
            // Payload bytes through the node's QUIC endpoints, both ways.
            points.push(node(Resource::Network, n.bytes_in + n.bytes_out));
            points.push(node(Resource::CpuBusy, n.cpu));
            points.push(node(Resource::Memory, gauges.memory_bytes));
        }
        points
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sprawl_shards::load::PartitionLoadSample;
    use std::time::Duration;

    fn sample(shard: usize, unix_s: i64, messages: u64) -> ShardLoadSample {
        ShardLoadSample {
            unix_s,
            shard,
            interval: Duration::from_millis(500),
            busy_fraction: 0.25,
            partitions: vec![PartitionLoadSample {
                topic: "t".into(),
                partition: shard as u32,
                messages_in: messages,
                bytes_in: messages * 100,
                bytes_out: 0,
                log_bytes: 4096,
            }],
        }
    }

    fn value(points: &[Point], key: &str) -> Option<f64> {
        points
            .iter()
            .find(|p| p.key.to_string() == key)
            .map(|p| p.value)
    }

    #[test]
    fn rates_per_second_and_node_sums_when_every_shard_reported() {
        let mut a = Aggregator::new(2);
        let gauges = NodeGauges { memory_bytes: 1e6 };
        let first = a.add(&sample(0, 100, 10), gauges);
        let key = SeriesKey::new(
            Resource::MessagesIn,
            Scope::Partition {
                topic: "t".into(),
                partition: 0,
            },
        )
        .to_string();
        assert_eq!(value(&first, &key), Some(20.0), "10 in half a second");
        let node = SeriesKey::new(Resource::MessagesIn, Scope::Node).to_string();
        assert_eq!(value(&first, &node), None, "waits for shard 1");
        let second = a.add(&sample(1, 100, 5), gauges);
        assert_eq!(value(&second, &node), Some(30.0));
        let cpu = SeriesKey::new(Resource::CpuBusy, Scope::Node).to_string();
        assert_eq!(value(&second, &cpu), Some(0.5));
    }

    #[test]
    fn a_missing_shard_sample_does_not_hold_the_node_series_back() {
        let mut a = Aggregator::new(2);
        let g = NodeGauges::default();
        a.add(&sample(0, 100, 10), g);
        let later = a.add(&sample(0, 102, 10), g);
        let node = SeriesKey::new(Resource::MessagesIn, Scope::Node).to_string();
        let at_100 = later
            .iter()
            .find(|p| p.unix_s == 100 && p.key.to_string() == node);
        assert_eq!(at_100.map(|p| p.value), Some(20.0));
    }
}

//! What became of the messages of a publish, per partition, and the
//! summary printed at the end.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use sprawl_client::{Acks, RecordAck};

#[derive(Debug, Default)]
pub struct Tally {
    sent: u64,
    acknowledged: u64,
    partitions: BTreeMap<u32, PartitionTally>,
    /// The first failure in input order, preferring a root cause over the
    /// `Aborted` records behind it: (input number, error).
    first_failure: Option<(u64, sprawl_client::Error)>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct PartitionTally {
    acknowledged: u64,
    first_offset: Option<u64>,
    last_offset: Option<u64>,
}

impl Tally {
    pub fn record(&mut self, number: u64, outcome: sprawl_client::Result<RecordAck>) {
        self.sent += 1;
        match outcome {
            Ok(ack) => {
                self.acknowledged += 1;
                let p = self.partitions.entry(ack.partition).or_default();
                p.acknowledged += 1;
                if let Some(offset) = ack.offset {
                    p.first_offset.get_or_insert(offset);
                    p.last_offset = Some(offset);
                }
            }
            Err(e) => {
                let is_root = !matches!(e, sprawl_client::Error::Aborted { .. });
                let replace = match &self.first_failure {
                    None => true,
                    Some((_, first)) => {
                        is_root && matches!(first, sprawl_client::Error::Aborted { .. })
                    }
                };
                if replace {
                    self.first_failure = Some((number, e));
                }
            }
        }
    }

    pub fn sent(&self) -> u64 {
        self.sent
    }

    pub fn acknowledged(&self) -> u64 {
        self.acknowledged
    }

    pub fn first_failure(&self) -> Option<&(u64, sprawl_client::Error)> {
        self.first_failure.as_ref()
    }

    pub fn text(&self, topic: &str, acks: Acks) -> String {
        let mut out = if acks == Acks::None {
            format!(
                "sent {} of {} messages to {topic} (acks none: the node does not confirm)\n",
                self.acknowledged, self.sent
            )
        } else {
            format!(
                "acknowledged {} of {} messages to {topic} (acks {})\n",
                self.acknowledged,
                self.sent,
                acks_name(acks)
            )
        };
        for (partition, p) in &self.partitions {
            let plural = if p.acknowledged == 1 { "" } else { "s" };
            out += &match (p.first_offset, p.last_offset) {
                (Some(first), Some(last)) if first == last => format!(
                    "  partition {partition}: {} message{plural}, offset {first}\n",
                    p.acknowledged
                ),
                (Some(first), Some(last)) => format!(
                    "  partition {partition}: {} message{plural}, offsets {first} to {last}\n",
                    p.acknowledged
                ),
                _ => format!(
                    "  partition {partition}: {} message{plural}\n",
                    p.acknowledged
                ),
            };
        }
        out
    }

    pub fn json(&self, topic: &str, acks: Acks) -> Value {
        let partitions: Vec<Value> = self
            .partitions
            .iter()
            .map(|(partition, p)| {
                json!({
                    "partition": partition,
                    "acknowledged": p.acknowledged,
                    "first_offset": p.first_offset,
                    "last_offset": p.last_offset,
                })
            })
            .collect();
        json!({
            "topic": topic,
            "acks": acks_name(acks),
            "sent": self.sent,
            "acknowledged": self.acknowledged,
            "partitions": partitions,
            "error": self.first_failure.as_ref().map(|(_, e)| e.to_string()),
        })
    }
}

pub fn acks_name(acks: Acks) -> &'static str {
    match acks {
        Acks::None => "none",
        Acks::Leader => "leader",
        Acks::Durable => "durable",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sprawl_client::{ErrorCode, RemoteError};

    fn ack(partition: u32, offset: u64) -> sprawl_client::Result<RecordAck> {
        Ok(RecordAck {
            partition,
            offset: Some(offset),
        })
    }

    #[test]
    fn counts_per_partition_and_prefers_the_root_cause() {
        let root = sprawl_client::Error::Remote {
            request: "produce t/1".into(),
            source: RemoteError::new(ErrorCode::StorageError, "disk full"),
        };
        let aborted = sprawl_client::Error::Aborted {
            topic: "t".into(),
            partition: 0,
            cause: Box::new(root.clone()),
        };
        let mut tally = Tally::default();
        tally.record(1, ack(0, 10));
        tally.record(2, ack(0, 11));
        tally.record(3, ack(1, 4));
        tally.record(4, Err(aborted));
        tally.record(5, Err(root));
        assert_eq!((tally.sent(), tally.acknowledged()), (5, 3));
        let (number, error) = tally.first_failure().unwrap();
        assert_eq!(*number, 5);
        assert!(error.to_string().contains("disk full"));
        assert_eq!(
            tally.text("t", Acks::Durable),
            "acknowledged 3 of 5 messages to t (acks durable)\n\
             \x20 partition 0: 2 messages, offsets 10 to 11\n\
             \x20 partition 1: 1 message, offset 4\n"
        );
        let v = tally.json("t", Acks::Durable);
        assert_eq!(v["partitions"][0]["last_offset"], 11);
        assert_eq!(v["acknowledged"], 3);
    }
}

//! Consumer-group offsets of one partition, stored as records of a small
//! partition log of their own (`key` = group, `value` = offset u64 LE ++
//! metadata). The log gives commits group commit and crash recovery; this
//! module is the sans-IO part: encoding commits and folding them into a map.

use std::collections::HashMap;

use bytes::BytesMut;
use sprawl_storage::{BatchBuilder, Record, RecordView};

/// Commits larger than this are rejected (group name + metadata).
pub const COMMIT_BYTES_MAX: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub offset: u64,
    pub metadata: String,
}

/// Latest committed offset per group.
#[derive(Debug, Default)]
pub struct GroupOffsets {
    by_group: HashMap<String, CommittedOffset>,
    records_applied: u64,
}

impl GroupOffsets {
    /// Encodes one commit as a batch for the offsets log.
    pub fn encode_commit(group: &str, offset: u64, metadata: &str, timestamp_ms: i64) -> BytesMut {
        let mut value = Vec::with_capacity(8 + metadata.len());
        value.extend_from_slice(&offset.to_le_bytes());
        value.extend_from_slice(metadata.as_bytes());
        let mut b = BatchBuilder::with_capacity(128 + group.len() + value.len());
        b.push(&Record {
            timestamp_ms,
            key: Some(group.as_bytes()),
            value: &value,
            headers: &[],
        });
        BytesMut::from(&b.finish()[..])
    }

    /// Folds one stored commit record in (later records win). Malformed
    /// records are skipped: they cannot come from `encode_commit`.
    pub fn apply(&mut self, record: &RecordView<'_>) {
        let (Some(key), true) = (record.key, record.value.len() >= 8) else {
            return;
        };
        let Ok(group) = std::str::from_utf8(key) else {
            return;
        };
        let offset = u64::from_le_bytes(record.value[..8].try_into().expect("8 bytes"));
        let metadata = String::from_utf8_lossy(&record.value[8..]).into_owned();
        self.by_group
            .insert(group.to_string(), CommittedOffset { offset, metadata });
        self.records_applied += 1;
    }

    pub fn record(&mut self, group: &str, offset: u64, metadata: &str) {
        self.by_group.insert(
            group.to_string(),
            CommittedOffset {
                offset,
                metadata: metadata.to_string(),
            },
        );
        self.records_applied += 1;
    }

    pub fn get(&self, group: &str) -> Option<&CommittedOffset> {
        self.by_group.get(group)
    }

    pub fn len(&self) -> usize {
        self.by_group.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_group.is_empty()
    }

    /// Commit records folded in so far (to decide when to compact).
    pub fn records_applied(&self) -> u64 {
        self.records_applied
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &CommittedOffset)> {
        self.by_group.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sprawl_storage::BatchView;

    #[test]
    fn commits_round_trip_and_later_ones_win() {
        let mut g = GroupOffsets::default();
        for (group, offset) in [("a", 5u64), ("b", 7), ("a", 9)] {
            let batch = GroupOffsets::encode_commit(group, offset, "meta", 1);
            let view = BatchView::parse_exact(&batch).unwrap();
            for r in view.records() {
                g.apply(&r.unwrap());
            }
        }
        assert_eq!(g.get("a").unwrap().offset, 9);
        assert_eq!(g.get("b").unwrap().metadata, "meta");
        assert_eq!(g.len(), 2);
        assert_eq!(g.records_applied(), 3);
    }
}

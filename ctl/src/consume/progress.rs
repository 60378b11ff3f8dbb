//! Where a consume stands, per partition: what has been written to the
//! output buffer, what has reached stdout (flushed), what the group has
//! committed; and how many messages `--count` still allows. Commits never
//! run ahead of what was flushed: a message is committed only once the
//! reader of our output could have it.

use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cursor {
    /// Next offset after the messages written to the output buffer.
    written: u64,
    /// Next offset after the messages flushed to stdout.
    flushed: u64,
    /// The group's committed offset as far as we know (the start at first:
    /// nothing to commit until something is consumed).
    committed: u64,
}

#[derive(Debug)]
pub struct Progress {
    partitions: BTreeMap<u32, Cursor>,
    remaining: Option<u64>,
}

impl Progress {
    /// `starts`: each partition's first offset; `count`: `--count`.
    pub fn new(starts: &[(u32, u64)], count: Option<u64>) -> Self {
        Self {
            partitions: starts
                .iter()
                .map(|&(p, start)| {
                    (
                        p,
                        Cursor {
                            written: start,
                            flushed: start,
                            committed: start,
                        },
                    )
                })
                .collect(),
            remaining: count,
        }
    }

    /// Of `available` messages, how many may still be printed; they count
    /// against `--count` from now on.
    pub fn admit(&mut self, available: usize) -> usize {
        let n = match self.remaining {
            None => available,
            Some(left) => available.min(usize::try_from(left).unwrap_or(usize::MAX)),
        };
        if let Some(left) = &mut self.remaining {
            *left -= n as u64;
        }
        n
    }

    pub fn count_reached(&self) -> bool {
        self.remaining == Some(0)
    }

    /// Messages of `partition` before `next_offset` are in the output buffer.
    pub fn wrote(&mut self, partition: u32, next_offset: u64) {
        let cursor = self
            .partitions
            .get_mut(&partition)
            .expect("a partition being consumed");
        debug_assert!(next_offset >= cursor.written, "positions only move forward");
        cursor.written = cursor.written.max(next_offset);
    }

    /// Everything written has reached stdout.
    pub fn flushed(&mut self) {
        for cursor in self.partitions.values_mut() {
            cursor.flushed = cursor.written;
        }
    }

    /// (partition, offset) to commit: flushed past the last commit.
    pub fn due_commits(&self) -> Vec<(u32, u64)> {
        self.partitions
            .iter()
            .filter(|(_, c)| c.flushed > c.committed)
            .map(|(&p, c)| (p, c.flushed))
            .collect()
    }

    pub fn committed(&mut self, partition: u32, offset: u64) {
        if let Some(cursor) = self.partitions.get_mut(&partition) {
            cursor.committed = cursor.committed.max(offset);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_follow_flushes_not_writes() {
        let mut p = Progress::new(&[(0, 10), (1, 0)], None);
        assert!(p.due_commits().is_empty(), "nothing consumed yet");
        p.wrote(0, 15);
        assert!(p.due_commits().is_empty(), "written is not flushed");
        p.flushed();
        assert_eq!(p.due_commits(), vec![(0, 15)]);
        p.committed(0, 15);
        assert!(p.due_commits().is_empty());
        p.wrote(1, 3);
        p.wrote(0, 20);
        p.flushed();
        assert_eq!(p.due_commits(), vec![(0, 20), (1, 3)]);
    }

    #[test]
    fn count_limits_what_is_printed() {
        let mut p = Progress::new(&[(0, 0)], Some(5));
        assert_eq!(p.admit(3), 3);
        assert!(!p.count_reached());
        assert_eq!(p.admit(3), 2);
        assert!(p.count_reached());
        assert_eq!(p.admit(3), 0);
        let mut unlimited = Progress::new(&[(0, 0)], None);
        assert_eq!(unlimited.admit(1000), 1000);
        assert!(!unlimited.count_reached());
        let mut zero = Progress::new(&[(0, 0)], Some(0));
        assert!(zero.count_reached());
        assert_eq!(zero.admit(1), 0);
    }
}

//! The memory ring: the most recent batches of one partition, bounded by
//! bytes, so tail readers never touch the disk.

use std::collections::VecDeque;

use bytes::Bytes;

#[derive(Debug, Clone)]
struct RingBatch {
    base_offset: u64,
    next_offset: u64,
    /// 0: not replicated.
    raft_index: u64,
    /// Control batches are kept (Raft reads need them) but never given to consumers.
    control: bool,
    bytes: Bytes,
}

/// Bounded ring of whole batches in offset order.
#[derive(Debug)]
pub struct MemoryRing {
    batches: VecDeque<RingBatch>,
    bytes: usize,
    bytes_max: usize,
}

impl MemoryRing {
    pub fn new(bytes_max: usize) -> Self {
        Self {
            batches: VecDeque::new(),
            bytes: 0,
            bytes_max,
        }
    }

    /// Adds the newest batch, evicting the oldest ones beyond the bound (the
    /// newest batch is always kept, however large).
    pub fn push(&mut self, base_offset: u64, next_offset: u64, bytes: Bytes) {
        self.push_batch(base_offset, next_offset, 0, false, bytes);
    }

    /// [`Self::push`] with the batch's Raft index (0: none) and control flag.
    pub fn push_batch(
        &mut self,
        base_offset: u64,
        next_offset: u64,
        raft_index: u64,
        control: bool,
        bytes: Bytes,
    ) {
        debug_assert!(self
            .batches
            .back()
            .is_none_or(|b| b.next_offset == base_offset));
        self.bytes += bytes.len();
        self.batches.push_back(RingBatch {
            base_offset,
            next_offset,
            raft_index,
            control,
            bytes,
        });
        while self.bytes > self.bytes_max && self.batches.len() > 1 {
            let old = self.batches.pop_front().expect("non-empty");
            self.bytes -= old.bytes.len();
        }
    }

    /// First offset the ring can serve.
    pub fn start_offset(&self) -> Option<u64> {
        self.batches.front().map(|b| b.base_offset)
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Data batches holding `offset` and after, ending before `end_offset`, within
    /// `bytes_max` (at least one batch). `None` if the ring does not reach back
    /// to `offset`. Control batches are skipped.
    pub fn read(&self, offset: u64, end_offset: u64, bytes_max: usize) -> Option<Vec<Bytes>> {
        let start = self.start_offset()?;
        if offset < start {
            return None;
        }
        let first = self.batches.partition_point(|b| b.next_offset <= offset);
        let mut out = Vec::new();
        let mut taken = 0usize;
        for b in self.batches.range(first..) {
            if b.next_offset > end_offset || (!out.is_empty() && taken + b.bytes.len() > bytes_max)
            {
                break;
            }
            if b.control {
                continue;
            }
            taken += b.bytes.len();
            out.push(b.bytes.clone());
        }
        Some(out)
    }

    /// Every batch (control ones included) from the one with Raft index
    /// `raft_index` on, within `bytes_max` (at least one). `None` if the ring
    /// does not hold that entry.
    pub fn read_raft(&self, raft_index: u64, bytes_max: usize) -> Option<Vec<Bytes>> {
        // Unreplicated batches (index 0) can only precede replicated ones, so
        // the indices are sorted.
        let i = self.batches.partition_point(|b| b.raft_index < raft_index);
        if self.batches.get(i)?.raft_index != raft_index {
            return None;
        }
        let mut out = Vec::new();
        let mut taken = 0usize;
        for b in self.batches.range(i..) {
            if !out.is_empty() && taken + b.bytes.len() > bytes_max {
                break;
            }
            taken += b.bytes.len();
            out.push(b.bytes.clone());
        }
        Some(out)
    }

    /// Drops exactly the batches a suffix truncation removed: replicated ones
    /// with a Raft index ≥ `raft_from` (when given), unreplicated ones at or
    /// beyond `offset`. (Control batches share their base offset with the
    /// next batch, so for a replicated log the offset alone is ambiguous.)
    pub fn truncate_after(&mut self, offset: u64, raft_from: Option<u64>) {
        while self.batches.back().is_some_and(|b| {
            if b.raft_index == 0 {
                b.base_offset >= offset
            } else {
                raft_from.is_some_and(|f| b.raft_index >= f)
            }
        }) {
            let b = self.batches.pop_back().expect("non-empty");
            self.bytes -= b.bytes.len();
        }
    }

    /// Drops batches at or beyond `offset` (suffix truncation).
    pub fn truncate(&mut self, offset: u64) {
        while self.batches.back().is_some_and(|b| b.base_offset >= offset) {
            let b = self.batches.pop_back().expect("non-empty");
            self.bytes -= b.bytes.len();
        }
    }

    /// Drops batches wholly before `offset` (retention).
    pub fn trim_front(&mut self, offset: u64) {
        while self
            .batches
            .front()
            .is_some_and(|b| b.next_offset <= offset)
        {
            let b = self.batches.pop_front().expect("non-empty");
            self.bytes -= b.bytes.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_by_bytes_and_reads_by_offset() {
        let mut r = MemoryRing::new(300);
        for i in 0..10u64 {
            r.push(i * 2, i * 2 + 2, Bytes::from(vec![i as u8; 100]));
        }
        assert_eq!(r.start_offset(), Some(14));
        assert!(r.read(13, 100, 1000).is_none());
        let got = r.read(15, 100, 150).unwrap();
        assert_eq!(got.len(), 1, "budget keeps it to one batch");
        assert_eq!(got[0][0], 7);
        let got = r.read(15, 18, 1000).unwrap();
        assert_eq!(got.len(), 2, "end offset (high watermark) bounds the read");
        r.truncate(16);
        assert_eq!(r.read(14, 100, 1000).unwrap().len(), 1);
        r.push(16, 20, Bytes::from_static(b"x"));
        r.trim_front(16);
        assert_eq!(r.start_offset(), Some(16));
    }

    #[test]
    fn control_batches_are_skipped_by_reads_and_kept_for_raft() {
        let mut r = MemoryRing::new(1 << 20);
        r.push_batch(0, 2, 1, false, Bytes::from_static(b"a"));
        r.push_batch(2, 2, 2, true, Bytes::from_static(b"c"));
        r.push_batch(2, 4, 3, false, Bytes::from_static(b"b"));
        r.push_batch(4, 4, 4, true, Bytes::from_static(b"d"));
        assert_eq!(r.read(0, 4, 100).unwrap(), vec!["a", "b"]);
        assert_eq!(r.read(2, 4, 100).unwrap(), vec!["b"]);
        assert_eq!(r.read_raft(2, 100).unwrap(), vec!["c", "b", "d"]);
        assert!(r.read_raft(5, 100).is_none());
        r.truncate_after(2, Some(3));
        assert_eq!(r.read_raft(1, 100).unwrap(), vec!["a", "c"]);
    }
}

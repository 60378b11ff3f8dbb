//! The memory ring: the most recent batches of one partition, bounded by
//! bytes, so tail readers never touch the disk.

use std::collections::VecDeque;

use bytes::Bytes;

#[derive(Debug, Clone)]
struct RingBatch {
    base_offset: u64,
    next_offset: u64,
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
        debug_assert!(self
            .batches
            .back()
            .is_none_or(|b| b.next_offset == base_offset));
        self.bytes += bytes.len();
        self.batches.push_back(RingBatch {
            base_offset,
            next_offset,
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

    /// Batches holding `offset` and after, ending before `end_offset`, within
    /// `bytes_max` (at least one batch). `None` if the ring does not reach back
    /// to `offset`.
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
            taken += b.bytes.len();
            out.push(b.bytes.clone());
        }
        Some(out)
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
}

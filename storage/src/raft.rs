//! The in-memory map from Raft index to where that entry's batch is, for the
//! replicated batches still on local disk (sans-IO).
//!
//! When a partition is replicated, its segment log *is* its Raft log: entry
//! `i` is the batch whose header carries Raft index `i` and term
//! `leader_epoch`. The Raft adapter asks for `term(i)` and where entry `i`
//! starts on every message; this map answers without I/O. It is rebuilt by
//! recovery and kept current on append, truncation and retention.
//!
//! Cost: one [`RaftEntryLoc`] (32 bytes) per replicated batch on local disk,
//! i.e. per GiB of log about 2 MiB at 16 KiB batches, 32 MiB at 1 KiB
//! batches (and 512 MiB only for a log made entirely of minimal 64-byte
//! control batches, which Raft writes once per election or membership change).

use std::collections::VecDeque;

/// Where one Raft entry's batch is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaftEntryLoc {
    pub term: u64,
    /// Base offset of the batch (for a control batch, the next offset).
    pub base_offset: u64,
    /// Base offset of the segment holding the batch. Segment base offsets
    /// are unique (a segment holding no records is never rolled), but a
    /// control batch's base offset alone does not tell which segment holds
    /// it: it may end one segment whose successor starts at that offset.
    pub segment_base: u64,
    /// File position of the batch in its segment.
    pub position: u32,
    pub control: bool,
}

const _: () = assert!(std::mem::size_of::<RaftEntryLoc>() == 32);

/// Contiguous Raft entries `first_index..` with their locations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RaftMap {
    first_index: u64,
    entries: VecDeque<RaftEntryLoc>,
    /// `(index, term)` of the entry just before `first_index` when known:
    /// the newest one retention deleted. Keeps `last()` right when every
    /// entry left the disk, so the next append still has to follow it.
    before: Option<(u64, u64)>,
}

/// A Raft index that does not follow the map's last one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotNext {
    pub index: u64,
    pub expected: u64,
}

impl RaftMap {
    /// `(index, term)` of the last entry, or of the one before the first
    /// when every entry is gone; `None` when the log holds no Raft entries.
    pub fn last(&self) -> Option<(u64, u64)> {
        match self.entries.back() {
            Some(e) => Some((self.first_index + self.entries.len() as u64 - 1, e.term)),
            None => self.before,
        }
    }

    /// First index held, if any.
    pub fn first_index(&self) -> Option<u64> {
        (!self.entries.is_empty()).then_some(self.first_index)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether `index` may be appended next: the last index + 1, or any
    /// positive index when the log has no Raft entries yet (a replica may
    /// start after a snapshot).
    pub fn check_next(&self, index: u64) -> Result<(), NotNext> {
        let expected = self.last().map_or(index.max(1), |(last, _)| last + 1);
        if index == expected {
            Ok(())
        } else {
            Err(NotNext { index, expected })
        }
    }

    /// Appends entry `index` (which must pass [`Self::check_next`]).
    pub fn push(&mut self, index: u64, loc: RaftEntryLoc) -> Result<(), NotNext> {
        self.check_next(index)?;
        if self.entries.is_empty() {
            self.first_index = index;
        }
        self.entries.push_back(loc);
        Ok(())
    }

    pub fn get(&self, index: u64) -> Option<&RaftEntryLoc> {
        let i = index.checked_sub(self.first_index)?;
        self.entries.get(usize::try_from(i).ok()?)
    }

    /// Term of `index`: an entry held, or the one just before them.
    pub fn term(&self, index: u64) -> Option<u64> {
        match self.get(index) {
            Some(e) => Some(e.term),
            None => self.before.filter(|(i, _)| *i == index).map(|(_, t)| t),
        }
    }

    /// Drops the entries at or after `(segment_base, position)` (a suffix
    /// truncation cut there); returns the first index dropped.
    pub fn truncate_from(&mut self, segment_base: u64, position: u64) -> Option<u64> {
        let mut dropped = None;
        while self
            .entries
            .back()
            .is_some_and(|e| (e.segment_base, u64::from(e.position)) >= (segment_base, position))
        {
            self.entries.pop_back();
            dropped = Some(self.first_index + self.entries.len() as u64);
        }
        dropped
    }

    /// Drops the entries of segments based before `segment_base` (retention
    /// deleted them).
    pub fn drop_segments_before(&mut self, segment_base: u64) {
        while self
            .entries
            .front()
            .is_some_and(|e| e.segment_base < segment_base)
        {
            let e = self.entries.pop_front().expect("non-empty");
            self.before = Some((self.first_index, e.term));
            self.first_index += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(term: u64, segment_base: u64, position: u32) -> RaftEntryLoc {
        RaftEntryLoc {
            term,
            base_offset: segment_base,
            segment_base,
            position,
            control: false,
        }
    }

    #[test]
    fn push_truncate_and_retention_keep_the_last_entry() {
        let mut m = RaftMap::default();
        assert_eq!(m.last(), None);
        assert!(m.check_next(0).is_err(), "0 means not replicated");
        m.push(5, loc(1, 0, 0)).unwrap();
        m.push(6, loc(1, 0, 100)).unwrap();
        m.push(7, loc(2, 10, 0)).unwrap();
        assert_eq!(
            m.push(9, loc(2, 10, 50)),
            Err(NotNext {
                index: 9,
                expected: 8
            })
        );
        assert_eq!((m.first_index(), m.last()), (Some(5), Some((7, 2))));
        assert_eq!(m.term(6), Some(1));
        assert_eq!(m.truncate_from(0, 100), Some(6));
        assert_eq!(m.last(), Some((5, 1)));
        m.push(6, loc(3, 0, 100)).unwrap();
        m.push(7, loc(3, 20, 0)).unwrap();
        m.drop_segments_before(20);
        assert_eq!((m.first_index(), m.last()), (Some(7), Some((7, 3))));
        assert_eq!(m.term(6), Some(3), "the entry before the first is known");
        assert_eq!(m.term(5), None);
        m.drop_segments_before(30);
        assert!(m.is_empty());
        assert_eq!(
            m.last(),
            Some((7, 3)),
            "the last entry outlives its segment"
        );
        assert!(m.check_next(8).is_ok() && m.check_next(9).is_err());
    }
}

//! Sparse offset index and time index of one segment.
//!
//! Both are plain sorted vectors in memory, persisted as arrays of
//! little-endian entries. They are hints: recovery validates the log from the
//! last entry and rebuilds an index that does not match the log.

use std::io::Write;
use std::path::Path;

/// `(offset - base, file position)` of a batch start.
pub const OFFSET_ENTRY_BYTES: usize = 8;
/// `(max timestamp so far, offset - base)` of a batch start.
pub const TIME_ENTRY_BYTES: usize = 12;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetEntry {
    pub relative_offset: u32,
    pub position: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeEntry {
    pub max_timestamp_ms: i64,
    pub relative_offset: u32,
}

/// Offset and time index of one segment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SegmentIndex {
    pub offsets: Vec<OffsetEntry>,
    pub times: Vec<TimeEntry>,
    /// Position of the last offset entry's batch, for the sparse interval.
    last_indexed_position: Option<u64>,
    /// Newest timestamp seen in the segment.
    pub max_timestamp_ms: Option<i64>,
    /// Entries already appended to the index files.
    pub persisted_offsets: usize,
    pub persisted_times: usize,
}

impl SegmentIndex {
    /// Records a batch; adds entries when `interval_bytes` passed since the last one.
    pub fn on_batch(
        &mut self,
        relative_offset: u32,
        position: u64,
        last_timestamp_ms: i64,
        interval_bytes: u64,
    ) {
        let due = self
            .last_indexed_position
            .is_none_or(|last| position >= last + interval_bytes);
        let max_ts = self
            .max_timestamp_ms
            .map_or(last_timestamp_ms, |m| m.max(last_timestamp_ms));
        if due {
            self.offsets.push(OffsetEntry {
                relative_offset,
                position: position as u32,
            });
            self.last_indexed_position = Some(position);
            if self
                .times
                .last()
                .is_none_or(|t| max_ts > t.max_timestamp_ms)
            {
                self.times.push(TimeEntry {
                    max_timestamp_ms: max_ts,
                    relative_offset,
                });
            }
        }
        self.max_timestamp_ms = Some(max_ts);
    }

    /// Greatest entry at or below `relative_offset`.
    pub fn lookup(&self, relative_offset: u32) -> Option<OffsetEntry> {
        let i = self
            .offsets
            .partition_point(|e| e.relative_offset <= relative_offset);
        i.checked_sub(1).map(|i| self.offsets[i])
    }

    /// Relative offset from which to scan for the first record with timestamp
    /// ≥ `timestamp_ms`: every record before it is older.
    pub fn scan_start_for_time(&self, timestamp_ms: i64) -> u32 {
        let i = self
            .times
            .partition_point(|e| e.max_timestamp_ms < timestamp_ms);
        if i == 0 {
            0
        } else {
            self.times[i - 1].relative_offset
        }
    }

    /// Drops entries at or beyond `relative_offset` (suffix truncation).
    pub fn truncate(&mut self, relative_offset: u32) {
        self.offsets.retain(|e| e.relative_offset < relative_offset);
        self.times.retain(|e| e.relative_offset < relative_offset);
        self.last_indexed_position = self.offsets.last().map(|e| u64::from(e.position));
        self.max_timestamp_ms = self.times.last().map(|t| t.max_timestamp_ms);
        self.persisted_offsets = self.persisted_offsets.min(self.offsets.len());
        self.persisted_times = self.persisted_times.min(self.times.len());
    }

    pub fn encode_offsets(entries: &[OffsetEntry]) -> Vec<u8> {
        let mut out = Vec::with_capacity(entries.len() * OFFSET_ENTRY_BYTES);
        for e in entries {
            out.extend_from_slice(&e.relative_offset.to_le_bytes());
            out.extend_from_slice(&e.position.to_le_bytes());
        }
        out
    }

    pub fn encode_times(entries: &[TimeEntry]) -> Vec<u8> {
        let mut out = Vec::with_capacity(entries.len() * TIME_ENTRY_BYTES);
        for e in entries {
            out.extend_from_slice(&e.max_timestamp_ms.to_le_bytes());
            out.extend_from_slice(&e.relative_offset.to_le_bytes());
        }
        out
    }

    /// Decodes persisted index files; `None` when they are malformed
    /// (odd length, unsorted, or pointing past `log_bytes`).
    pub fn decode(offsets: &[u8], times: &[u8], log_bytes: u64) -> Option<Self> {
        if offsets.len() % OFFSET_ENTRY_BYTES != 0 || times.len() % TIME_ENTRY_BYTES != 0 {
            return None;
        }
        let offs: Vec<OffsetEntry> = offsets
            .chunks_exact(OFFSET_ENTRY_BYTES)
            .map(|c| OffsetEntry {
                relative_offset: u32::from_le_bytes(c[..4].try_into().unwrap()),
                position: u32::from_le_bytes(c[4..].try_into().unwrap()),
            })
            .collect();
        let ts: Vec<TimeEntry> = times
            .chunks_exact(TIME_ENTRY_BYTES)
            .map(|c| TimeEntry {
                max_timestamp_ms: i64::from_le_bytes(c[..8].try_into().unwrap()),
                relative_offset: u32::from_le_bytes(c[8..].try_into().unwrap()),
            })
            .collect();
        let sorted = offs
            .windows(2)
            .all(|w| w[0].relative_offset < w[1].relative_offset && w[0].position < w[1].position)
            && ts.windows(2).all(|w| {
                w[0].relative_offset < w[1].relative_offset
                    && w[0].max_timestamp_ms < w[1].max_timestamp_ms
            });
        let in_file = offs
            .iter()
            .all(|e| u64::from(e.position) < log_bytes.max(1));
        let starts_at_zero = offs
            .first()
            .is_none_or(|e| e.position == 0 && e.relative_offset == 0);
        if !sorted || !in_file || !starts_at_zero {
            return None;
        }
        Some(Self {
            last_indexed_position: offs.last().map(|e| u64::from(e.position)),
            max_timestamp_ms: ts.last().map(|t| t.max_timestamp_ms),
            persisted_offsets: offs.len(),
            persisted_times: ts.len(),
            offsets: offs,
            times: ts,
        })
    }

    /// Appends entries not yet persisted, for batches starting before
    /// `written_bytes`, to the index files (buffered I/O, no fsync: the index
    /// is a hint that recovery re-validates).
    pub fn persist_new(
        &mut self,
        offsets_path: &Path,
        times_path: &Path,
        written_bytes: u64,
    ) -> std::io::Result<()> {
        let offsets_end = self
            .offsets
            .partition_point(|e| u64::from(e.position) < written_bytes);
        if self.persisted_offsets < offsets_end {
            append_file(
                offsets_path,
                &Self::encode_offsets(&self.offsets[self.persisted_offsets..offsets_end]),
            )?;
            self.persisted_offsets = offsets_end;
        }
        let rel_end = self.offsets[..offsets_end]
            .last()
            .map(|e| e.relative_offset);
        let times_end = self
            .times
            .partition_point(|t| rel_end.is_some_and(|r| t.relative_offset <= r));
        if self.persisted_times < times_end {
            append_file(
                times_path,
                &Self::encode_times(&self.times[self.persisted_times..times_end]),
            )?;
            self.persisted_times = times_end;
        }
        Ok(())
    }

    /// Rewrites both index files completely (after truncation, rebuild, seal),
    /// atomically by rename, fsynced when `durable`.
    pub fn rewrite(
        &mut self,
        offsets_path: &Path,
        times_path: &Path,
        durable: bool,
    ) -> std::io::Result<()> {
        write_atomically(offsets_path, &Self::encode_offsets(&self.offsets), durable)?;
        write_atomically(times_path, &Self::encode_times(&self.times), durable)?;
        self.persisted_offsets = self.offsets.len();
        self.persisted_times = self.times.len();
        Ok(())
    }
}

fn append_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?
        .write_all(bytes)
}

fn write_atomically(path: &Path, bytes: &[u8], durable: bool) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    if durable {
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_entries_and_lookup() {
        let mut idx = SegmentIndex::default();
        for i in 0..100u32 {
            idx.on_batch(i * 10, u64::from(i) * 1000, 100 + i64::from(i), 4096);
        }
        // one entry per ~4 KiB: positions 0, 5000, 10000, ...
        assert_eq!(
            idx.offsets[1],
            OffsetEntry {
                relative_offset: 50,
                position: 5000
            }
        );
        assert_eq!(idx.lookup(57).unwrap().relative_offset, 50);
        assert_eq!(idx.lookup(0).unwrap().relative_offset, 0);
        assert_eq!(idx.scan_start_for_time(0), 0);
        assert!(idx.scan_start_for_time(150) <= 500);
        let bytes_o = SegmentIndex::encode_offsets(&idx.offsets);
        let bytes_t = SegmentIndex::encode_times(&idx.times);
        let back = SegmentIndex::decode(&bytes_o, &bytes_t, 100_000).unwrap();
        assert_eq!(back.offsets, idx.offsets);
        assert_eq!(back.times, idx.times);
        assert!(
            SegmentIndex::decode(&bytes_o, &bytes_t, 1000).is_none(),
            "entries past the log"
        );
        assert!(SegmentIndex::decode(&bytes_o[1..], &bytes_t, 100_000).is_none());
        idx.truncate(50);
        assert_eq!(idx.offsets.len(), 1);
    }
}

//! A partition's manifest (sans-IO): which segments the archive holds, with
//! the sizes and CRC32C they were verified with. Stored as
//! `<prefix>/<topic>/<partition>/manifest.json`; only the partition's owner
//! writes it, so there is no concurrent-writer protocol.
//!
//! Invariant: segments are sorted by base offset, base offsets are unique
//! (a re-upload replaces its entry: [`Manifest::upsert`]), and segments do
//! not overlap. [`Manifest::validate`] checks it on every read and write.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// First offset a reader may ask for (total retention moves it).
    pub log_start_offset: u64,
    pub segments: Vec<ManifestSegment>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestSegment {
    pub base_offset: u64,
    /// Offset after the segment's last record.
    pub next_offset: u64,
    pub first_timestamp_ms: Option<i64>,
    pub max_timestamp_ms: Option<i64>,
    pub log_bytes: u64,
    pub log_crc32c: u32,
    pub index_bytes: u64,
    pub timeindex_bytes: u64,
}

impl Manifest {
    /// Inserts a segment, or replaces the entry with the same base offset,
    /// keeping the segments sorted.
    pub fn upsert(&mut self, segment: ManifestSegment) {
        match self
            .segments
            .binary_search_by_key(&segment.base_offset, |s| s.base_offset)
        {
            Ok(i) => self.segments[i] = segment,
            Err(i) => self.segments.insert(i, segment),
        }
        debug_assert!(self.is_sorted_unique());
    }

    pub fn remove(&mut self, base_offset: u64) -> Option<ManifestSegment> {
        let i = self
            .segments
            .binary_search_by_key(&base_offset, |s| s.base_offset)
            .ok()?;
        Some(self.segments.remove(i))
    }

    pub fn get(&self, base_offset: u64) -> Option<&ManifestSegment> {
        let i = self
            .segments
            .binary_search_by_key(&base_offset, |s| s.base_offset)
            .ok()?;
        Some(&self.segments[i])
    }

    /// The segment holding `offset`, if the archive has it.
    pub fn segment_for_offset(&self, offset: u64) -> Option<&ManifestSegment> {
        let i = self.segments.partition_point(|s| s.base_offset <= offset);
        let s = self.segments[..i].last()?;
        (offset < s.next_offset).then_some(s)
    }

    /// Offset after the last archived record (`log_start_offset` when empty).
    pub fn next_offset(&self) -> u64 {
        self.segments
            .last()
            .map_or(self.log_start_offset, |s| s.next_offset)
    }

    fn is_sorted_unique(&self) -> bool {
        self.segments
            .windows(2)
            .all(|w| w[0].base_offset < w[1].base_offset)
    }

    /// Checks the invariant; the error says which segment breaks it.
    pub fn validate(&self) -> Result<(), String> {
        for s in &self.segments {
            if s.next_offset < s.base_offset {
                return Err(format!(
                    "segment {} ends at {} before it starts",
                    s.base_offset, s.next_offset
                ));
            }
        }
        for w in self.segments.windows(2) {
            if w[0].base_offset >= w[1].base_offset {
                return Err(format!(
                    "segments out of order or duplicated: {} then {}",
                    w[0].base_offset, w[1].base_offset
                ));
            }
            if w[0].next_offset > w[1].base_offset {
                return Err(format!(
                    "segment {} (ends at {}) overlaps segment {}",
                    w[0].base_offset, w[0].next_offset, w[1].base_offset
                ));
            }
        }
        Ok(())
    }

    pub fn to_json(&self) -> Vec<u8> {
        // A struct of integers and a Vec: serialization cannot fail.
        serde_json::to_vec_pretty(self).expect("manifest serializes")
    }

    /// Parses and validates.
    pub fn from_json(bytes: &[u8]) -> Result<Self, String> {
        let m: Self = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        m.validate()?;
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(base: u64, next: u64) -> ManifestSegment {
        ManifestSegment {
            base_offset: base,
            next_offset: next,
            first_timestamp_ms: Some(1),
            max_timestamp_ms: Some(2),
            log_bytes: 100,
            log_crc32c: 7,
            index_bytes: 8,
            timeindex_bytes: 12,
        }
    }

    #[test]
    fn upsert_keeps_sorted_and_replaces_duplicates() {
        let mut m = Manifest::default();
        for (b, n) in [(20, 30), (0, 10), (10, 20), (20, 30)] {
            m.upsert(seg(b, n));
        }
        let bases: Vec<u64> = m.segments.iter().map(|s| s.base_offset).collect();
        assert_eq!(bases, vec![0, 10, 20]);
        let mut newer = seg(10, 20);
        newer.log_crc32c = 99;
        m.upsert(newer);
        assert_eq!(m.get(10).unwrap().log_crc32c, 99);
        assert_eq!(m.segments.len(), 3);
        m.validate().unwrap();
        assert_eq!(m.remove(10), Some(newer));
        assert_eq!(m.remove(10), None);
    }

    #[test]
    fn finds_the_segment_of_an_offset() {
        let mut m = Manifest::default();
        m.upsert(seg(0, 10));
        m.upsert(seg(20, 30));
        assert_eq!(m.segment_for_offset(0).unwrap().base_offset, 0);
        assert_eq!(m.segment_for_offset(9).unwrap().base_offset, 0);
        assert!(m.segment_for_offset(10).is_none(), "gap");
        assert_eq!(m.segment_for_offset(29).unwrap().base_offset, 20);
        assert!(m.segment_for_offset(30).is_none());
        assert_eq!(m.next_offset(), 30);
    }

    #[test]
    fn json_round_trips_and_bad_manifests_are_refused() {
        let mut m = Manifest {
            log_start_offset: 5,
            ..Default::default()
        };
        m.upsert(seg(5, 10));
        m.upsert(seg(10, 12));
        assert_eq!(Manifest::from_json(&m.to_json()).unwrap(), m);

        let mut dup = m.clone();
        dup.segments.push(seg(10, 12));
        assert!(Manifest::from_json(&dup.to_json())
            .unwrap_err()
            .contains("duplicated"));
        let mut overlap = m.clone();
        overlap.segments[0].next_offset = 11;
        assert!(overlap.validate().unwrap_err().contains("overlaps"));
        assert!(Manifest::from_json(b"{\"segments\": 3}").is_err());
    }
}

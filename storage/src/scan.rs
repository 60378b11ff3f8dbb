//! Sans-IO validation of a run of stored batches: used by recovery (find the
//! valid end of a segment) and index rebuilds. No files, no executor.

use crate::batch::{peek_header, BatchView, BATCH_HEADER_BYTES};

/// One valid batch found by a scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScannedBatch {
    /// File position of the batch's first byte.
    pub position: u64,
    pub base_offset: u64,
    pub next_offset: u64,
    pub bytes: u32,
    pub first_timestamp_ms: i64,
    pub last_timestamp_ms: i64,
    /// Raft index (0: not replicated) and term (the leader epoch).
    pub raft_index: u64,
    pub term: u64,
    /// A control batch: no records, occupies no offsets.
    pub control: bool,
}

/// Why a scan stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanStop {
    /// All remaining bytes are consumed, or the next header is all zeros (the
    /// never-written, pre-allocated part of a segment).
    CleanEnd,
    /// The buffer ends inside a batch: read more (or, at end of file, it is torn).
    NeedMore { position: u64, bytes: usize },
    /// Bytes that are neither zeros nor a valid batch continuing the offsets.
    Invalid { position: u64, reason: String },
}

/// Result of scanning a buffer of consecutive batches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    pub batches: Vec<ScannedBatch>,
    /// Position just after the last valid batch.
    pub end_position: u64,
    /// Offset just after the last valid batch.
    pub next_offset: u64,
    pub stop: ScanStop,
}

/// Scans `buf`, which holds the file bytes starting at `position`, expecting
/// the first batch to start at `expected_offset`.
pub fn scan_batches(buf: &[u8], position: u64, expected_offset: u64) -> Scan {
    let mut scan = Scan {
        batches: Vec::new(),
        end_position: position,
        next_offset: expected_offset,
        stop: ScanStop::CleanEnd,
    };
    let mut rest = buf;
    while !rest.is_empty() {
        let pos = scan.end_position;
        if rest.len() < BATCH_HEADER_BYTES {
            if rest.iter().all(|&b| b == 0) {
                scan.stop = ScanStop::CleanEnd;
            } else {
                scan.stop = ScanStop::NeedMore {
                    position: pos,
                    bytes: BATCH_HEADER_BYTES,
                };
            }
            return scan;
        }
        if rest[..BATCH_HEADER_BYTES].iter().all(|&b| b == 0) {
            scan.stop = ScanStop::CleanEnd;
            return scan;
        }
        let header = match peek_header(rest) {
            Ok(h) => h,
            Err(e) => {
                scan.stop = ScanStop::Invalid {
                    position: pos,
                    reason: e.to_string(),
                };
                return scan;
            }
        };
        let total = header.batch_bytes();
        if rest.len() < total {
            scan.stop = ScanStop::NeedMore {
                position: pos,
                bytes: total,
            };
            return scan;
        }
        if header.base_offset() != scan.next_offset {
            scan.stop = ScanStop::Invalid {
                position: pos,
                reason: format!(
                    "batch at position {pos} starts at offset {}, expected {}",
                    header.base_offset(),
                    scan.next_offset
                ),
            };
            return scan;
        }
        match BatchView::parse_prefix(rest) {
            Ok((view, after)) => {
                let h = view.header();
                // Only a control batch may hold no records, and it holds none.
                if (h.record_count() == 0) != h.is_control() {
                    scan.stop = ScanStop::Invalid {
                        position: pos,
                        reason: format!(
                            "batch with {} records and control flag {}",
                            h.record_count(),
                            h.is_control()
                        ),
                    };
                    return scan;
                }
                scan.batches.push(ScannedBatch {
                    position: pos,
                    base_offset: h.base_offset(),
                    next_offset: h.next_offset(),
                    bytes: total as u32,
                    first_timestamp_ms: h.first_timestamp_ms.get(),
                    last_timestamp_ms: h.last_timestamp_ms.get(),
                    raft_index: h.raft_index(),
                    term: h.leader_epoch(),
                    control: h.is_control(),
                });
                scan.end_position += total as u64;
                scan.next_offset = h.next_offset();
                rest = after;
            }
            Err(e) => {
                scan.stop = ScanStop::Invalid {
                    position: pos,
                    reason: e.to_string(),
                };
                return scan;
            }
        }
    }
    scan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{restamp, validate_incoming, BatchBuilder, Record};

    fn batch(base: u64, n: u32) -> Vec<u8> {
        let mut b = BatchBuilder::new();
        for i in 0..n {
            b.push(&Record {
                timestamp_ms: 1000 + i as i64,
                value: b"payload",
                ..Default::default()
            });
        }
        let mut v = b.finish();
        let inc = validate_incoming(&v).unwrap();
        restamp(&mut v, &inc, base, 0);
        v
    }

    #[test]
    fn clean_run_then_zeros() {
        let mut buf = batch(10, 2);
        buf.extend(batch(12, 3));
        let valid = buf.len() as u64;
        buf.extend([0u8; 4096]);
        let s = scan_batches(&buf, 4096, 10);
        assert_eq!(s.batches.len(), 2);
        assert_eq!(s.end_position, 4096 + valid);
        assert_eq!(s.next_offset, 15);
        assert_eq!(s.stop, ScanStop::CleanEnd);
    }

    #[test]
    fn torn_and_corrupt_tails_stop_the_scan() {
        let mut buf = batch(0, 2);
        let first = buf.len();
        let second = batch(2, 2);
        buf.extend(&second[..second.len() - 5]);
        let s = scan_batches(&buf, 0, 0);
        assert_eq!(s.end_position, first as u64);
        assert!(matches!(s.stop, ScanStop::NeedMore { .. }));

        let mut buf = batch(0, 2);
        let mut bad = batch(2, 2);
        bad[70] ^= 0xff;
        buf.extend(bad);
        let s = scan_batches(&buf, 0, 0);
        assert_eq!(s.batches.len(), 1);
        assert!(matches!(s.stop, ScanStop::Invalid { .. }));
    }

    #[test]
    fn control_batches_occupy_no_offsets() {
        let mut buf = batch(0, 2);
        let mut c = crate::batch::control_batch(b"conf");
        let inc = validate_incoming(&c).unwrap();
        crate::batch::restamp_raft(&mut c, &inc, 2, 3, 9);
        buf.extend_from_slice(&c);
        buf.extend(batch(2, 1));
        let s = scan_batches(&buf, 0, 0);
        assert_eq!(s.stop, ScanStop::CleanEnd);
        assert_eq!(s.batches.len(), 3);
        let ctl = s.batches[1];
        assert!(ctl.control);
        assert_eq!((ctl.base_offset, ctl.next_offset), (2, 2));
        assert_eq!((ctl.raft_index, ctl.term), (9, 3));
        assert_eq!(s.next_offset, 3);
    }

    #[test]
    fn offset_gaps_are_invalid() {
        let mut buf = batch(0, 2);
        buf.extend(batch(5, 1));
        let s = scan_batches(&buf, 0, 0);
        assert_eq!(s.batches.len(), 1);
        assert!(matches!(s.stop, ScanStop::Invalid { .. }));
    }
}

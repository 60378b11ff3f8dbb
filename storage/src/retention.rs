//! Sans-IO retention: which oldest sealed segments to delete.

/// What retention needs to know of one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentSummary {
    pub bytes: u64,
    /// Newest record timestamp in the segment (`None` when empty).
    pub max_timestamp_ms: Option<i64>,
}

/// Number of segments to delete from the front of `segments` (oldest first;
/// the last one is the active segment and is never deleted).
pub fn segments_to_delete(
    segments: &[SegmentSummary],
    now_ms: i64,
    retention_bytes: Option<u64>,
    retention_ms: Option<u64>,
) -> usize {
    let sealed = segments.len().saturating_sub(1);
    let mut total: u64 = segments.iter().map(|s| s.bytes).sum();
    let mut n = 0;
    while n < sealed {
        let s = segments[n];
        let too_big = retention_bytes.is_some_and(|max| total > max);
        let too_old = retention_ms.is_some_and(|ms| {
            s.max_timestamp_ms
                .is_some_and(|ts| now_ms.saturating_sub(ts) > ms as i64)
        });
        if !(too_big || too_old) {
            break;
        }
        total -= s.bytes;
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(bytes: u64, ts: i64) -> SegmentSummary {
        SegmentSummary {
            bytes,
            max_timestamp_ms: Some(ts),
        }
    }

    #[test]
    fn by_size_keeps_the_newest_and_never_the_active() {
        let segs = [seg(100, 1), seg(100, 2), seg(100, 3), seg(100, 4)];
        assert_eq!(segments_to_delete(&segs, 10, Some(250), None), 2);
        assert_eq!(segments_to_delete(&segs, 10, Some(0), None), 3);
        assert_eq!(segments_to_delete(&segs, 10, None, None), 0);
    }

    #[test]
    fn by_age_stops_at_the_first_young_segment() {
        let segs = [seg(1, 100), seg(1, 500), seg(1, 200), seg(1, 0)];
        assert_eq!(segments_to_delete(&segs, 1000, None, Some(600)), 1);
        assert_eq!(segments_to_delete(&segs, 1000, None, Some(10)), 3);
    }
}

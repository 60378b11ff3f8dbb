//! Time as the run sees it: nanoseconds since the run's start (monotonic),
//! and UTC calendar dates for report names.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// A monotonic clock anchored at the start of a run. Producers and
/// consumers of one process share it, so a timestamp written into a
/// payload can be subtracted from a reading taken on delivery.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    anchor: Instant,
    /// Unix time of the anchor in nanoseconds, read together with it: for
    /// what is aligned to the wall clock (burst windows, timeline seconds)
    /// while every interval is still measured on the monotonic clock.
    anchor_unix_ns: u64,
}

impl Clock {
    pub fn start() -> Self {
        Self {
            anchor: Instant::now(),
            anchor_unix_ns: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
        }
    }

    /// Unix time (ns) of the instant `ns` after the anchor.
    pub fn unix_ns_at(&self, ns: u64) -> u64 {
        self.anchor_unix_ns.saturating_add(ns)
    }

    /// Nanoseconds since the anchor.
    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.anchor.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// The `Instant` that is `ns` after the anchor.
    pub fn instant_at(&self, ns: u64) -> Instant {
        self.anchor + std::time::Duration::from_nanos(ns)
    }
}

/// Seconds since the Unix epoch now.
pub fn unix_now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `(year, month, day)` of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `YYYY-MM-DD` (UTC) of a Unix time.
pub fn utc_date(unix_secs: u64) -> String {
    let (y, m, d) = civil_from_days((unix_secs / 86_400) as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `YYYY-MM-DDTHH:MM:SSZ` of a Unix time.
pub fn utc_timestamp(unix_secs: u64) -> String {
    let secs = unix_secs % 86_400;
    format!(
        "{}T{:02}:{:02}:{:02}Z",
        utc_date(unix_secs),
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_timestamp(951_782_400 + 3661), "2000-02-29T01:01:01Z");
        assert_eq!(utc_date(1_795_824_000), "2026-11-28");
    }

    #[test]
    fn clock_is_monotonic() {
        let c = Clock::start();
        let a = c.now_ns();
        let b = c.now_ns();
        assert!(b >= a);
    }
}

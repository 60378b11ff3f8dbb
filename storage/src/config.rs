//! Partition log configuration. Every quantity carries its unit in its name.

use std::fmt;
use std::str::FromStr;

/// When an append is acknowledged, and when the log calls fdatasync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Ack after fdatasync: survives power loss. One fdatasync covers every
    /// batch appended since the previous one (group commit).
    Always,
    /// Ack once the direct-I/O write completes (survives a process crash);
    /// fdatasync at most this often, driven by appends and [`crate::PartitionLog::tick`].
    IntervalMs(u64),
    /// Ack once the direct-I/O write completes; fdatasync only on roll and close.
    Never,
}

impl FromStr for FsyncPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "always" => Ok(Self::Always),
            "never" => Ok(Self::Never),
            other => other
                .strip_suffix("ms")
                .and_then(|n| n.parse().ok())
                .map(Self::IntervalMs)
                .ok_or_else(|| {
                    format!("fsync policy must be always, never or <N>ms, got {other:?}")
                }),
        }
    }
}

impl fmt::Display for FsyncPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Always => write!(f, "always"),
            Self::IntervalMs(ms) => write!(f, "{ms}ms"),
            Self::Never => write!(f, "never"),
        }
    }
}

/// Configuration of one partition log.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Roll to a new segment once the active one would exceed this.
    pub segment_bytes: u64,
    /// Roll once the active segment's first record is older than this.
    pub segment_ms: Option<u64>,
    /// One offset-index (and time-index) entry per this many log bytes.
    pub index_interval_bytes: u64,
    /// Bound on the memory ring of recent batches.
    pub ring_bytes: usize,
    /// Largest batch accepted (header included).
    pub batch_bytes_max: usize,
    /// Largest single direct-I/O write; bigger flushes are split.
    pub write_bytes_max: usize,
    pub fsync: FsyncPolicy,
    /// Delete oldest sealed segments while the log is bigger than this.
    pub retention_bytes: Option<u64>,
    /// Delete sealed segments whose newest record is older than this.
    pub retention_ms: Option<u64>,
    /// fallocate each new segment to `segment_bytes` up front.
    pub preallocate: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            segment_bytes: 256 << 20,
            segment_ms: None,
            index_interval_bytes: 4096,
            ring_bytes: 8 << 20,
            batch_bytes_max: 8 << 20,
            write_bytes_max: 4 << 20,
            fsync: FsyncPolicy::Always,
            retention_bytes: None,
            retention_ms: None,
            preallocate: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fsync_policy_parses_and_prints() {
        for s in ["always", "never", "250ms"] {
            assert_eq!(s.parse::<FsyncPolicy>().unwrap().to_string(), s);
        }
        assert!("sometimes".parse::<FsyncPolicy>().is_err());
    }
}

//! Typed errors of the partition log. Messages name the offending path and offset.

use std::path::PathBuf;

use crate::batch::BatchError;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A synchronous Raft read of an entry whose write is in flight.
    #[error("raft entry {index} is being written; read it again once the write lands")]
    RaftEntryInFlight { index: u64 },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("checksum or format error in segment {segment} at offset {offset} (file position {position}): {reason}")]
    Corrupt {
        segment: PathBuf,
        offset: u64,
        position: u64,
        reason: String,
    },
    #[error("invalid batch: {0}")]
    InvalidBatch(#[from] BatchError),
    #[error("batch of {bytes} bytes exceeds the limit of {bytes_max} bytes")]
    BatchTooLarge { bytes: usize, bytes_max: usize },
    #[error("offset {offset} is out of range: the log holds [{start}, {end})")]
    OffsetOutOfRange { offset: u64, start: u64, end: u64 },
    #[error("truncation point {offset} is not a batch boundary of the log")]
    NotBatchBoundary { offset: u64 },
    #[error("the log at {dir} refuses writes after an earlier I/O error ({cause}); reopen it to recover")]
    Failed { dir: PathBuf, cause: String },
    #[error("log directory {dir} is inconsistent: {reason}")]
    Inconsistent { dir: PathBuf, reason: String },
    #[error("replicated batch starts at offset {base_offset} but the log ends at {log_end} (truncate first)")]
    RaftOffsetMismatch { base_offset: u64, log_end: u64 },
    #[error(
        "raft entry {index} cannot be appended: the next raft index is {expected} (truncate first)"
    )]
    RaftIndexMismatch { index: u64, expected: u64 },
    #[error("raft index {index} is not in the local log (it holds {first:?} through {last:?})")]
    RaftIndexOutOfRange {
        index: u64,
        first: Option<u64>,
        last: Option<u64>,
    },
    #[error(
        "the log holds raft entries (last index {last_index}): unreplicated appends are refused"
    )]
    NotReplicated { last_index: u64 },
    #[error("expected a {} batch, got a {}", kind(*.expected_control), kind(!*.expected_control))]
    ControlMismatch { expected_control: bool },
}

fn kind(control: bool) -> &'static str {
    if control {
        "control"
    } else {
        "data"
    }
}

/// The plain OS error behind an I/O failure: glommio's wrapper repeats the
/// path and hides the errno, and the log's own message names the path already.
pub(crate) trait IntoOsError {
    fn into_os_error(self) -> std::io::Error;
}

impl IntoOsError for std::io::Error {
    fn into_os_error(self) -> std::io::Error {
        self
    }
}

impl<T> IntoOsError for glommio::GlommioError<T> {
    fn into_os_error(self) -> std::io::Error {
        match self {
            glommio::GlommioError::EnhancedIoError { source, .. } => source,
            other => other.into(),
        }
    }
}

impl LogError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: impl IntoOsError) -> Self {
        Self::Io {
            op,
            path: path.into(),
            source: source.into_os_error(),
        }
    }

    /// Whether the error came from the disk being full.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, Self::Io { source, .. }
            if source.raw_os_error() == Some(libc::ENOSPC) || source.kind() == std::io::ErrorKind::StorageFull)
    }
}

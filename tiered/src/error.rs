//! The archive's errors. Every variant names the object (or file) it is
//! about; [`ArchiveError::is_retryable`] tells a caller whether trying the
//! same operation later can succeed.

use std::path::PathBuf;

pub type Result<T, E = ArchiveError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The request queue was full: nothing was sent. Retryable.
    #[error("archive queue is full ({queue_depth_max} requests waiting); try again later")]
    Busy { queue_depth_max: usize },

    /// S3 could not be reached (or kept failing with retryable errors) for
    /// the whole retry budget. Retryable.
    #[error(
        "S3 at {endpoint} unavailable: {request} of {object} failed {attempts} times over \
         {elapsed_ms} ms (retry budget {budget_ms} ms); last error: {last_error}"
    )]
    Unavailable {
        endpoint: String,
        request: &'static str,
        object: String,
        attempts: u32,
        elapsed_ms: u64,
        budget_ms: u64,
        last_error: String,
    },

    /// What the store holds does not have the expected CRC32C.
    #[error(
        "archived object {object} is corrupt: crc32c expected {expected:#010x}, got {got:#010x}"
    )]
    Corrupt {
        object: String,
        expected: u32,
        got: u32,
    },

    /// What the store holds does not have the expected size.
    #[error("archived object {object} holds {got_bytes} bytes, expected {expected_bytes}")]
    WrongSize {
        object: String,
        expected_bytes: u64,
        got_bytes: u64,
    },

    #[error("archived object {object} does not exist")]
    NotFound { object: String },

    #[error("manifest {object} is invalid: {reason}")]
    InvalidManifest { object: String, reason: String },

    /// A local segment file could not be read (or changed while it was uploaded).
    #[error("reading local segment file {}: {source}", path.display())]
    LocalFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// S3 answered with an error that retrying cannot fix (access denied,
    /// bad request, missing bucket...).
    #[error("S3 at {endpoint} refused {request} of {object}: {message}")]
    Refused {
        endpoint: String,
        request: &'static str,
        object: String,
        message: String,
    },

    #[error("invalid {what} {value:?}: {reason}")]
    InvalidName {
        what: &'static str,
        value: String,
        reason: &'static str,
    },

    #[error("invalid archive config: {0}")]
    Config(String),

    /// The archive thread is gone (its runtime failed to start or it panicked).
    #[error("the archive thread has stopped")]
    Stopped,
}

impl ArchiveError {
    /// `true` when the same request may succeed later without any change.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Busy { .. } | Self::Unavailable { .. })
    }
}

/// An error and its sources on one line: the minio crate's top-level
/// messages ("Network error occurred") say nothing without their sources.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        let text = inner.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        source = inner.source();
    }
    s
}

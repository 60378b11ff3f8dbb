//! Outcomes of requests: `ErrorCode` semantics, the `ErrorInfo` carried by
//! responses, the Rust error a client gets from it, and QUIC close codes.

use crate::ErrorCode;

impl ErrorCode {
    /// True for `ErrorCode::None`.
    pub fn is_ok(self) -> bool {
        self == ErrorCode::None
    }

    /// True when the same request may succeed if sent again later (after
    /// `retry_after_ms`, a metadata refresh or a reconnect). Unknown codes
    /// from a newer node are not retryable.
    ///
    /// `Timeout` on a Produce is retryable but ambiguous: the batch may have
    /// been appended, so a retry may duplicate it.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::NotLeader
                | ErrorCode::Throttled
                | ErrorCode::StorageError
                | ErrorCode::Timeout
                | ErrorCode::LeaderNotAvailable
                | ErrorCode::NotEnoughReplicas
                | ErrorCode::ShuttingDown
        )
    }

    /// True when the client should refresh its metadata (which node leads
    /// which partition) before retrying.
    pub fn refreshes_metadata(self) -> bool {
        matches!(
            self,
            ErrorCode::NotLeader
                | ErrorCode::LeaderNotAvailable
                | ErrorCode::ShuttingDown
                | ErrorCode::UnknownTopic
                | ErrorCode::UnknownPartition
        )
    }

    /// The schema name of the code, or `"Unknown"` for codes this version
    /// does not know.
    pub fn name(self) -> &'static str {
        self.variant_name().unwrap_or("Unknown")
    }
}

/// The error part of a response; a response without one succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ErrorInfo<'a> {
    pub code: ErrorCode,
    /// Human-readable detail; never parse it.
    pub message: &'a str,
    /// For `Throttled` (and optionally other retryable codes).
    pub retry_after_ms: Option<u32>,
    /// For `NotLeader`: the node that leads the partition, if known.
    pub leader_node_id: Option<u32>,
}

impl<'a> ErrorInfo<'a> {
    pub fn new(code: ErrorCode, message: &'a str) -> Self {
        Self {
            code,
            message,
            retry_after_ms: None,
            leader_node_id: None,
        }
    }

    /// `Ok` for `ErrorCode::None`, otherwise the owned error.
    pub fn check(&self) -> Result<(), RemoteError> {
        if self.code.is_ok() {
            Ok(())
        } else {
            Err(RemoteError::from(*self))
        }
    }

    /// Checks an optional `ErrorInfo` as found in a response.
    pub fn check_opt(error: Option<&ErrorInfo<'_>>) -> Result<(), RemoteError> {
        error.map_or(Ok(()), ErrorInfo::check)
    }
}

/// A request the node answered with an error: the owned form of
/// [`ErrorInfo`], for `?` in client code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("node answered {}: {message}", .code.name())]
pub struct RemoteError {
    pub code: ErrorCode,
    pub message: String,
    pub retry_after_ms: Option<u32>,
    pub leader_node_id: Option<u32>,
}

impl RemoteError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after_ms: None,
            leader_node_id: None,
        }
    }

    pub fn is_retryable(&self) -> bool {
        self.code.is_retryable()
    }

    /// The borrowed form, to put into a response.
    pub fn as_info(&self) -> ErrorInfo<'_> {
        ErrorInfo {
            code: self.code,
            message: &self.message,
            retry_after_ms: self.retry_after_ms,
            leader_node_id: self.leader_node_id,
        }
    }
}

impl From<ErrorInfo<'_>> for RemoteError {
    fn from(info: ErrorInfo<'_>) -> Self {
        Self {
            code: info.code,
            message: info.message.to_owned(),
            retry_after_ms: info.retry_after_ms,
            leader_node_id: info.leader_node_id,
        }
    }
}

/// QUIC application error codes, used in CONNECTION_CLOSE, RESET_STREAM and
/// STOP_SENDING. Request-level failures travel in `ErrorInfo` instead; these
/// say why a stream or connection was abandoned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
#[non_exhaustive]
pub enum AppErrorCode {
    /// Orderly close.
    NoError = 0,
    /// The client abandoned the request (reset/stop-sending of its stream).
    Cancelled = 1,
    /// Undecodable framing, a frame that failed verification, or a message
    /// sent in the wrong direction or at the wrong time.
    ProtocolViolation = 2,
    /// A frame larger than the receiver's `frame_bytes_max`.
    FrameTooLarge = 3,
    /// The handshake failed (version, authentication); the HandshakeResponse
    /// said why when it could be sent.
    HandshakeFailed = 4,
    /// The node is shutting down.
    ShuttingDown = 5,
    /// The connection was idle too long or the peer exceeded a limit.
    LimitExceeded = 6,
    /// A bug in the closing side.
    Internal = 7,
}

impl AppErrorCode {
    pub fn as_u32(self) -> u32 {
        self as u32
    }

    /// `None` for codes this version does not know.
    pub fn from_u32(code: u32) -> Option<Self> {
        Some(match code {
            0 => AppErrorCode::NoError,
            1 => AppErrorCode::Cancelled,
            2 => AppErrorCode::ProtocolViolation,
            3 => AppErrorCode::FrameTooLarge,
            4 => AppErrorCode::HandshakeFailed,
            5 => AppErrorCode::ShuttingDown,
            6 => AppErrorCode::LimitExceeded,
            7 => AppErrorCode::Internal,
            _ => return None,
        })
    }
}

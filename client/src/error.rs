//! The one error type of the client, and whether an operation that failed
//! with it may succeed when tried again.

use std::net::SocketAddr;
use std::sync::Arc;

use sprawl_io::quic::TlsError;
use sprawl_storage::batch::BatchError;
use sprawl_wire::{AppErrorCode, ErrorCode, RemoteError};

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a client operation failed.
///
/// [`Error::is_retryable`] says whether the same operation may succeed later
/// (after a back-off, a reconnect or a metadata refresh). The [`Producer`]
/// retries those by itself; admin calls and fetches leave it to the caller.
///
/// `Error` is `Clone`: a producer batch that fails hands the same error to
/// every record in it.
///
/// [`Producer`]: crate::Producer
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value or argument is unusable; nothing was sent.
    #[error("invalid {what}: {reason}")]
    InvalidArgument { what: &'static str, reason: String },

    /// The TLS material named in the configuration could not be used
    /// (unreadable CA file, no certificate in it, ...).
    #[error("TLS configuration: {0}")]
    TlsConfig(Arc<TlsError>),

    /// The node's address did not resolve (DNS), or the local UDP socket
    /// could not be bound.
    #[error("resolving/binding for node {node}: {reason}")]
    Resolve { node: String, reason: String },

    /// The TLS handshake failed: typically the node's certificate is not
    /// signed by the configured CA (`UnknownIssuer`), or is not valid for
    /// the server name (`NotValidForName`).
    #[error(
        "TLS handshake with node {addr} (server name {server_name:?}) failed: {reason}; \
         check that the CA file signed the node's certificate and that the server name is \
         one of its names"
    )]
    Tls {
        addr: SocketAddr,
        server_name: String,
        reason: String,
    },

    /// quinn refused to start a connection (bad server name, bad address).
    #[error("connecting to node {addr}: {reason}")]
    Connect { addr: SocketAddr, reason: String },

    /// The node answered the protocol handshake with an error (version,
    /// authentication).
    #[error("node {addr} refused the handshake: {source}")]
    Handshake {
        addr: SocketAddr,
        source: RemoteError,
    },

    /// The QUIC connection could not be established or was lost. Requests
    /// in flight on it fail with this; the next request reconnects.
    #[error("connection to node {addr} lost: {source}")]
    ConnectionLost {
        addr: SocketAddr,
        source: quinn::ConnectionError,
    },

    /// The node abandoned the request's stream (RESET_STREAM or
    /// STOP_SENDING) with a QUIC application error code.
    #[error("{request}: node abandoned the stream with code {code} ({})", app_code_name(*.code))]
    StreamAbandoned { request: String, code: u64 },

    /// The request does not fit in one frame of the node (`frame_bytes_max`
    /// from the handshake); refused before sending.
    #[error("{request}: frame of {frame_bytes} bytes exceeds the node's limit of {frame_bytes_max} bytes")]
    FrameTooLarge {
        request: String,
        frame_bytes: u64,
        frame_bytes_max: u32,
    },

    /// The node answered with an error.
    #[error("{request}: {source}")]
    Remote {
        request: String,
        source: RemoteError,
    },

    /// No answer within the request timeout. For a produce this is
    /// ambiguous: the batch may have been appended.
    #[error("{request}: no answer within {after_ms} ms")]
    Timeout { request: String, after_ms: u64 },

    /// The node sent something the protocol does not allow (undecodable
    /// frame, wrong message, bytes after the response).
    #[error("{request}: protocol violation by the node: {reason}")]
    Protocol { request: String, reason: String },

    /// A record batch received from the node failed validation (CRC,
    /// framing, offsets going backwards).
    #[error("corrupt batch from {topic}/{partition} at byte {position} (near offset {offset}): {source}")]
    CorruptBatch {
        topic: String,
        partition: u32,
        offset: u64,
        position: usize,
        source: BatchError,
    },

    /// A record too large for one frame of the node (`frame_bytes_max`
    /// from the handshake), refused before sending.
    #[error(
        "record of {record_bytes} bytes for topic {topic:?} cannot fit in one frame \
         (node accepts at most {frame_bytes_max} bytes per frame)"
    )]
    RecordTooLarge {
        topic: String,
        record_bytes: usize,
        frame_bytes_max: u32,
    },

    /// A partition outside the topic's `0..partition_count`, refused before
    /// sending.
    #[error("topic {topic:?} has {partition_count} partitions, no partition {partition}")]
    UnknownPartition {
        topic: String,
        partition: u32,
        partition_count: u32,
    },

    /// Not sent: an earlier batch of the same partition failed for good,
    /// and sending this one would have left a hole before it (records of a
    /// partition are acknowledged in the order they were sent, or not at all).
    #[error(
        "{topic}/{partition}: not sent because an earlier batch of the partition failed: {cause}"
    )]
    Aborted {
        topic: String,
        partition: u32,
        cause: Box<Error>,
    },

    /// The node ended a subscription (`NotLeader`, `UnknownTopic`,
    /// `OffsetOutOfRange`, `ShuttingDown`); resubscribe from `next_offset`.
    #[error(
        "subscription to {topic}/{partition} ended by the node at offset {next_offset}: {source}"
    )]
    SubscriptionEnded {
        topic: String,
        partition: u32,
        next_offset: u64,
        source: RemoteError,
    },

    /// A followed subscription ended in order (the node stopped it without
    /// an error, e.g. an unsubscribe); there is nothing to resume.
    #[error("subscription to {topic}/{partition} ended")]
    SubscriptionClosed { topic: String, partition: u32 },

    /// The operation needs a consumer group and the consumer has none.
    #[error("consumer has no group (create it with Consumer::with_group)")]
    NoGroup,

    /// The producer's background task is gone (the tokio runtime shut down)
    /// before the record was acknowledged.
    #[error("producer stopped before the record was acknowledged")]
    ProducerStopped,
}

fn app_code_name(code: u64) -> &'static str {
    let known = u32::try_from(code).ok().and_then(AppErrorCode::from_u32);
    match known {
        Some(AppErrorCode::NoError) => "NoError",
        Some(AppErrorCode::Cancelled) => "Cancelled",
        Some(AppErrorCode::ProtocolViolation) => "ProtocolViolation",
        Some(AppErrorCode::FrameTooLarge) => "FrameTooLarge",
        Some(AppErrorCode::HandshakeFailed) => "HandshakeFailed",
        Some(AppErrorCode::ShuttingDown) => "ShuttingDown",
        Some(AppErrorCode::LimitExceeded) => "LimitExceeded",
        Some(AppErrorCode::Internal) | None => "Internal",
        // AppErrorCode is non-exhaustive; newer codes read as Internal.
        Some(_) => "Internal",
    }
}

fn app_code(code: quinn::VarInt) -> Option<AppErrorCode> {
    u32::try_from(code.into_inner())
        .ok()
        .and_then(AppErrorCode::from_u32)
}

impl Error {
    /// True when the same operation may succeed if tried again later: the
    /// node answered with a retryable [`ErrorCode`] (see
    /// [`ErrorCode::is_retryable`]), the connection was lost, or no answer
    /// came in time. Retrying a produce after an ambiguous failure
    /// (connection lost or timeout while in flight) may duplicate it.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Remote { source, .. } | Error::Handshake { source, .. } => source.is_retryable(),
            Error::SubscriptionEnded { source, .. } => source.is_retryable(),
            Error::ConnectionLost { source, .. } => match source {
                quinn::ConnectionError::ApplicationClosed(close) => !matches!(
                    app_code(close.error_code),
                    Some(AppErrorCode::HandshakeFailed | AppErrorCode::ProtocolViolation)
                ),
                quinn::ConnectionError::VersionMismatch | quinn::ConnectionError::CidsExhausted => {
                    false
                }
                _ => true,
            },
            Error::StreamAbandoned { code, .. } => matches!(
                u32::try_from(*code).ok().and_then(AppErrorCode::from_u32),
                Some(AppErrorCode::ShuttingDown | AppErrorCode::LimitExceeded)
            ),
            Error::Timeout { .. } | Error::Resolve { .. } => true,
            Error::Aborted { cause, .. } => cause.is_retryable(),
            Error::InvalidArgument { .. }
            | Error::TlsConfig(_)
            | Error::Tls { .. }
            | Error::Connect { .. }
            | Error::Protocol { .. }
            | Error::CorruptBatch { .. }
            | Error::RecordTooLarge { .. }
            | Error::FrameTooLarge { .. }
            | Error::UnknownPartition { .. }
            | Error::NoGroup
            | Error::SubscriptionClosed { .. }
            | Error::ProducerStopped => false,
        }
    }

    /// The node's error code, when the node answered with an error.
    pub fn remote_code(&self) -> Option<ErrorCode> {
        match self {
            Error::Remote { source, .. }
            | Error::Handshake { source, .. }
            | Error::SubscriptionEnded { source, .. } => Some(source.code),
            Error::Aborted { cause, .. } => cause.remote_code(),
            _ => None,
        }
    }

    /// How long the node asked us to wait before retrying (`Throttled`).
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Error::Remote { source, .. } => source
                .retry_after_ms
                .map(|ms| std::time::Duration::from_millis(u64::from(ms))),
            _ => None,
        }
    }

    /// True when the connection to the node failed or could not be made
    /// (rather than the node answering): the node may be down.
    pub(crate) fn is_link_failure(&self) -> bool {
        match self {
            Error::ConnectionLost { .. }
            | Error::Connect { .. }
            | Error::Tls { .. }
            | Error::Handshake { .. }
            | Error::Resolve { .. }
            | Error::Timeout { .. } => true,
            Error::StreamAbandoned { code, .. } => {
                u32::try_from(*code).ok().and_then(AppErrorCode::from_u32)
                    == Some(AppErrorCode::ShuttingDown)
            }
            _ => false,
        }
    }

    /// True when cached topic metadata (the partition count, the leaders)
    /// may be stale.
    pub(crate) fn refreshes_metadata(&self) -> bool {
        self.remote_code()
            .is_some_and(|code| code.refreshes_metadata())
    }

    pub(crate) fn invalid(what: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidArgument {
            what,
            reason: reason.into(),
        }
    }

    pub(crate) fn protocol(request: &str, reason: impl Into<String>) -> Self {
        Error::Protocol {
            request: request.to_owned(),
            reason: reason.into(),
        }
    }
}

impl From<TlsError> for Error {
    fn from(e: TlsError) -> Self {
        Error::TlsConfig(Arc::new(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_follows_the_node_code() {
        let remote = |code| Error::Remote {
            request: "produce t/0".into(),
            source: RemoteError::new(code, "x"),
        };
        assert!(remote(ErrorCode::Throttled).is_retryable());
        assert!(remote(ErrorCode::LeaderNotAvailable).is_retryable());
        assert!(!remote(ErrorCode::CorruptBatch).is_retryable());
        assert!(!remote(ErrorCode::UnknownTopic).is_retryable());
        assert!(remote(ErrorCode::UnknownTopic).refreshes_metadata());
        let aborted = Error::Aborted {
            topic: "t".into(),
            partition: 0,
            cause: Box::new(remote(ErrorCode::CorruptBatch)),
        };
        assert_eq!(aborted.remote_code(), Some(ErrorCode::CorruptBatch));
        assert!(!aborted.is_retryable());
    }

    #[test]
    fn lost_connections_are_retryable_unless_refused() {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let lost = |source| Error::ConnectionLost { addr, source };
        assert!(lost(quinn::ConnectionError::TimedOut).is_retryable());
        assert!(lost(quinn::ConnectionError::Reset).is_retryable());
        let closed = |code: AppErrorCode| {
            quinn::ConnectionError::ApplicationClosed(quinn::ApplicationClose {
                error_code: quinn::VarInt::from_u32(code.as_u32()),
                reason: Default::default(),
            })
        };
        assert!(lost(closed(AppErrorCode::ShuttingDown)).is_retryable());
        assert!(!lost(closed(AppErrorCode::HandshakeFailed)).is_retryable());
    }

    #[test]
    fn abandoned_streams_name_the_code() {
        let e = Error::StreamAbandoned {
            request: "fetch t/0".into(),
            code: 5,
        };
        assert!(e.to_string().contains("ShuttingDown"), "{e}");
        assert!(e.is_retryable());
    }
}

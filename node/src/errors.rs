//! Shard errors as wire error codes.

use sprawl_shards::ShardError;
use sprawl_wire::{ErrorCode, WireError};

/// The wire code for a shard error.
pub fn code_of(e: &ShardError) -> ErrorCode {
    match e {
        ShardError::UnknownTopic(_) => ErrorCode::UnknownTopic,
        ShardError::UnknownPartition { .. } => ErrorCode::UnknownPartition,
        ShardError::TopicExists(_) => ErrorCode::TopicExists,
        ShardError::InvalidRequest(_) => ErrorCode::InvalidRequest,
        ShardError::MessageTooLarge { .. } => ErrorCode::MessageTooLarge,
        ShardError::CorruptBatch(_) => ErrorCode::CorruptBatch,
        ShardError::OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
        ShardError::Storage(_) => ErrorCode::StorageError,
        ShardError::DiskFull(_) => ErrorCode::Throttled,
        ShardError::ShuttingDown => ErrorCode::ShuttingDown,
        // Retryable, and the retry is routed to the new owner.
        ShardError::PartitionMoving(_) | ShardError::NotLeader(_) => ErrorCode::LeaderNotAvailable,
        ShardError::Internal(_) => ErrorCode::Internal,
    }
}

/// A request-level failure: a code plus a message for the client.
#[derive(Debug, Clone)]
pub struct Failure {
    pub code: ErrorCode,
    pub message: String,
}

impl Failure {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub fn info(&self) -> sprawl_wire::ErrorInfo<'_> {
        sprawl_wire::ErrorInfo::new(self.code, &self.message)
    }
}

impl From<ShardError> for Failure {
    fn from(e: ShardError) -> Self {
        Self::new(code_of(&e), e.to_string())
    }
}

impl From<WireError> for Failure {
    fn from(e: WireError) -> Self {
        Self::new(e.error_code(), e.to_string())
    }
}

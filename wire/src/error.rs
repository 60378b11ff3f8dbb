//! Why bytes could not become a frame, or a message could not become bytes.

use crate::ErrorCode;

/// A framing, verification or encoding failure.
///
/// Framing errors ([`WireError::FrameTooLarge`] from a [`crate::FrameDecoder`],
/// [`WireError::Truncated`]) lose the position in the byte stream: the stream
/// must be reset. The others concern one frame, and the frames after it can
/// still be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The length prefix announces (or an encoder would produce) more bytes
    /// than the limit.
    #[error("frame of {frame_bytes} bytes exceeds the limit of {frame_bytes_max} bytes")]
    FrameTooLarge {
        frame_bytes: u64,
        frame_bytes_max: u32,
    },

    /// The input ended inside a frame.
    #[error("input ended inside a frame: {received_bytes} of {expected_bytes} bytes received")]
    Truncated {
        received_bytes: u64,
        /// The whole frame including its prefix, or 4 when the prefix itself
        /// was cut.
        expected_bytes: u64,
    },

    /// `decode_frame` was given more bytes than the length prefix covers.
    #[error("{trailing_bytes} bytes follow the {frame_bytes}-byte frame")]
    TrailingBytes {
        frame_bytes: u64,
        trailing_bytes: u64,
    },

    /// Bytes 8..12 are not `SPRL`: the peer does not speak this protocol.
    #[error("frame carries file identifier {found:?}, expected \"SPRL\"")]
    WrongIdentifier { found: [u8; 4] },

    /// The flatbuffers verifier rejected the frame (bad offset, bad UTF-8,
    /// missing required field, depth or table limit, ...).
    #[error("frame failed verification: {0}")]
    Invalid(#[from] flatbuffers::InvalidFlatbuffer),

    /// The frame has no body.
    #[error("frame {request_id} has no body")]
    MissingBody { request_id: u64 },

    /// The body is a union member this version does not know; the sender is
    /// newer. A node answers it with `ErrorCode::UnsupportedRequest`.
    #[error("frame {request_id} has unknown body type {body_type}")]
    UnknownBody { request_id: u64, body_type: u8 },

    /// An enum field holds a value this version does not know.
    #[error("{message}.{field} holds unknown value {value}")]
    UnknownEnumValue {
        message: &'static str,
        field: &'static str,
        value: u64,
    },

    /// Fields that verify but contradict each other.
    #[error("{message}.{field} is invalid: {reason}")]
    InvalidField {
        message: &'static str,
        field: &'static str,
        reason: &'static str,
    },

    /// A [`crate::FrameDecoder`] that already reported a framing error was fed
    /// again.
    #[error("decoder stopped after an earlier framing error")]
    DecoderFailed,
}

impl WireError {
    /// The code a node sends back for a request that failed this way.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            WireError::FrameTooLarge { .. } => ErrorCode::MessageTooLarge,
            WireError::UnknownBody { .. } => ErrorCode::UnsupportedRequest,
            WireError::WrongIdentifier { .. } => ErrorCode::UnsupportedVersion,
            _ => ErrorCode::InvalidRequest,
        }
    }

    /// True when the byte stream can no longer be read: the stream (or the
    /// connection) should be closed with [`crate::AppErrorCode::ProtocolViolation`]
    /// or [`crate::AppErrorCode::FrameTooLarge`].
    pub fn is_fatal_to_stream(&self) -> bool {
        matches!(
            self,
            WireError::FrameTooLarge { .. }
                | WireError::Truncated { .. }
                | WireError::DecoderFailed
        )
    }

    pub(crate) fn unknown_enum(message: &'static str, field: &'static str, value: u64) -> Self {
        WireError::UnknownEnumValue {
            message,
            field,
            value,
        }
    }
}

//! Reading and writing frames on QUIC streams.

use bytes::{BufMut, Bytes, BytesMut};
use sprawl_io::quic::{LocalRecvStream, LocalSendStream};
use sprawl_wire::{Frame, FrameLimits, VerifiedFrame, WireError, FRAME_PREFIX_BYTES};

use crate::budget::{BudgetPermit, ByteBudget};

#[derive(Debug, thiserror::Error)]
pub enum ReadFrameError {
    /// The frame is malformed or too large: answer with an error, then stop.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The stream or connection failed: nothing to answer.
    #[error("stream: {0}")]
    Stream(String),
}

/// Reads one frame; `Ok(None)` when the peer finished the stream cleanly
/// before sending one. The permit accounts the frame's bytes until dropped.
pub async fn read_frame(
    recv: &mut LocalRecvStream,
    limits: &FrameLimits,
    budget: &std::rc::Rc<ByteBudget>,
) -> Result<Option<(VerifiedFrame, BudgetPermit)>, ReadFrameError> {
    let mut prefix = [0u8; FRAME_PREFIX_BYTES];
    let mut got = 0;
    while got < prefix.len() {
        match recv.read(&mut prefix[got..]).await {
            Ok(Some(n)) => got += n,
            Ok(None) if got == 0 => return Ok(None),
            Ok(None) => {
                return Err(WireError::Truncated {
                    received_bytes: got as u64,
                    expected_bytes: FRAME_PREFIX_BYTES as u64,
                }
                .into())
            }
            Err(e) => return Err(ReadFrameError::Stream(e.to_string())),
        }
    }
    let frame_bytes = u32::from_le_bytes(prefix);
    if frame_bytes > limits.frame_bytes_max_effective() {
        return Err(WireError::FrameTooLarge {
            frame_bytes: u64::from(frame_bytes),
            frame_bytes_max: limits.frame_bytes_max_effective(),
        }
        .into());
    }
    let permit = budget
        .acquire(frame_bytes as usize + FRAME_PREFIX_BYTES)
        .await;
    let mut buf = BytesMut::with_capacity(FRAME_PREFIX_BYTES + frame_bytes as usize);
    buf.put_slice(&prefix);
    buf.resize(FRAME_PREFIX_BYTES + frame_bytes as usize, 0);
    recv.read_exact(&mut buf[FRAME_PREFIX_BYTES..])
        .await
        .map_err(|e| match e {
            sprawl_io::quic::ReadExactError::FinishedEarly(n) => {
                ReadFrameError::Wire(WireError::Truncated {
                    received_bytes: (FRAME_PREFIX_BYTES + n) as u64,
                    expected_bytes: FRAME_PREFIX_BYTES as u64 + u64::from(frame_bytes),
                })
            }
            other => ReadFrameError::Stream(other.to_string()),
        })?;
    let frame = VerifiedFrame::new(buf.freeze(), limits)?;
    Ok(Some((frame, permit)))
}

/// Encodes `frame`; a frame that cannot be encoded becomes an `Internal` error frame.
pub fn encode(frame: &Frame<'_>) -> Bytes {
    match frame.encode_bytes() {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "encoding a response failed");
            let msg = format!("the node could not encode its response: {e}");
            Frame::new(
                frame.request_id,
                sprawl_wire::ErrorResponse {
                    error: sprawl_wire::ErrorInfo::new(sprawl_wire::ErrorCode::Internal, &msg),
                },
            )
            .encode_bytes()
            .expect("a small error frame encodes")
        }
    }
}

/// Writes one encoded frame.
pub async fn write_frame(send: &mut LocalSendStream, frame: Bytes) -> Result<(), String> {
    send.write_chunk(frame).await.map_err(|e| e.to_string())
}

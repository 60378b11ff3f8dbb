//! Frames over quinn streams: reading verified frames from a receive
//! stream, and a request stream that is cancelled (reset + stop-sending
//! with `Cancelled`) if dropped before its answer arrived.

use std::net::SocketAddr;

use quinn::{RecvStream, SendStream, VarInt};
use sprawl_wire::{AppErrorCode, FrameDecoder, FrameLimits, VerifiedFrame, WireError};

use crate::error::Error;

fn var_int(code: AppErrorCode) -> VarInt {
    VarInt::from_u32(code.as_u32())
}

/// Why a stream operation failed, before it is given the request's name.
#[derive(Debug)]
pub(crate) enum StreamFailure {
    Read(quinn::ReadError),
    Write(quinn::WriteError),
    Wire(WireError),
    /// The stream ended without the expected frame.
    Ended,
    /// More than the one expected frame.
    TrailingFrame,
}

impl StreamFailure {
    pub fn into_error(self, request: &str, addr: SocketAddr) -> Error {
        let lost = |source| Error::ConnectionLost { addr, source };
        let abandoned = |code: VarInt| Error::StreamAbandoned {
            request: request.to_owned(),
            code: code.into_inner(),
        };
        match self {
            StreamFailure::Read(quinn::ReadError::ConnectionLost(e))
            | StreamFailure::Write(quinn::WriteError::ConnectionLost(e)) => lost(e),
            StreamFailure::Read(quinn::ReadError::Reset(code))
            | StreamFailure::Write(quinn::WriteError::Stopped(code)) => abandoned(code),
            StreamFailure::Read(e) => Error::protocol(request, format!("reading: {e}")),
            StreamFailure::Write(e) => Error::protocol(request, format!("writing: {e}")),
            StreamFailure::Wire(e) => Error::protocol(request, e.to_string()),
            StreamFailure::Ended => Error::protocol(request, "stream ended without an answer"),
            StreamFailure::TrailingFrame => {
                Error::protocol(request, "more than one frame on a request stream")
            }
        }
    }
}

/// Splits a receive stream into verified frames.
pub(crate) struct FrameReader {
    recv: RecvStream,
    decoder: FrameDecoder,
    ended: bool,
}

impl FrameReader {
    pub fn new(recv: RecvStream, limits: FrameLimits) -> Self {
        Self {
            recv,
            decoder: FrameDecoder::new(limits),
            ended: false,
        }
    }

    /// The next frame; `Ok(None)` when the node finished the stream cleanly
    /// between frames. Cancel-safe: quinn's `read_chunk` is, and a chunk is
    /// fed to the decoder in the same poll that returns it.
    pub async fn next_frame(&mut self) -> Result<Option<VerifiedFrame>, StreamFailure> {
        loop {
            match self.decoder.next_frame() {
                Ok(Some(frame)) => return Ok(Some(frame)),
                Ok(None) => {}
                Err(e) => return Err(StreamFailure::Wire(e)),
            }
            if self.ended {
                self.decoder.finish().map_err(StreamFailure::Wire)?;
                return Ok(None);
            }
            match self.recv.read_chunk(usize::MAX, true).await {
                Ok(Some(chunk)) => {
                    if let Err(e) = self.decoder.feed_bytes(chunk.bytes) {
                        if matches!(e, WireError::FrameTooLarge { .. }) {
                            let _ = self.recv.stop(var_int(AppErrorCode::FrameTooLarge));
                        }
                        return Err(StreamFailure::Wire(e));
                    }
                }
                Ok(None) => self.ended = true,
                Err(e) => return Err(StreamFailure::Read(e)),
            }
        }
    }

    /// Reads the one frame of a request's answer and the end of the stream.
    pub async fn read_only_frame(&mut self) -> Result<VerifiedFrame, StreamFailure> {
        let frame = self.next_frame().await?.ok_or(StreamFailure::Ended)?;
        match self.next_frame().await? {
            None => Ok(frame),
            Some(_) => {
                let _ = self.recv.stop(var_int(AppErrorCode::ProtocolViolation));
                Err(StreamFailure::TrailingFrame)
            }
        }
    }

    pub fn stop(&mut self, code: AppErrorCode) {
        let _ = self.recv.stop(var_int(code));
    }
}

/// One bidirectional stream carrying a request and its answer (or a
/// subscription). Dropped before [`RequestStream::complete`], it resets its
/// send side and stops its receive side with `Cancelled`, as the protocol
/// asks of a client giving up on a request.
pub(crate) struct RequestStream {
    send: SendStream,
    pub reader: FrameReader,
    complete: bool,
}

impl RequestStream {
    pub async fn open(
        connection: &quinn::Connection,
        limits: FrameLimits,
    ) -> Result<Self, quinn::ConnectionError> {
        let (send, recv) = connection.open_bi().await?;
        Ok(Self {
            send,
            reader: FrameReader::new(recv, limits),
            complete: false,
        })
    }

    pub async fn write(&mut self, frame: &[u8]) -> Result<(), StreamFailure> {
        self.send
            .write_all(frame)
            .await
            .map_err(StreamFailure::Write)
    }

    /// Writes some of `frame` and says how much; cancel-safe (quinn's
    /// `write` writes nothing unless it completes), unlike `write`.
    pub async fn write_some(&mut self, frame: &[u8]) -> Result<usize, StreamFailure> {
        self.send.write(frame).await.map_err(StreamFailure::Write)
    }

    /// Finishes the send side (the request is complete).
    pub fn finish(&mut self) {
        // Fails only if already finished or reset: nothing left to do then.
        let _ = self.send.finish();
    }

    /// Writes one request frame, finishes the send side and reads the one
    /// answer frame. If the node stopped reading the request early (e.g. it
    /// was too large) its answer, when it sent one, still explains why.
    pub async fn exchange(&mut self, frame: &[u8]) -> Result<VerifiedFrame, StreamFailure> {
        let written = self.write(frame).await;
        self.finish();
        match (written, self.reader.read_only_frame().await) {
            (_, Ok(answer)) => {
                self.complete = true;
                Ok(answer)
            }
            (Err(write_failure), Err(_)) => Err(write_failure),
            (Ok(()), Err(read_failure)) => Err(read_failure),
        }
    }

    /// The exchange ended as the protocol says: dropping must not cancel.
    pub fn complete(&mut self) {
        self.complete = true;
    }
}

impl Drop for RequestStream {
    fn drop(&mut self) {
        if !self.complete {
            let _ = self.send.reset(var_int(AppErrorCode::Cancelled));
            self.reader.stop(AppErrorCode::Cancelled);
        }
    }
}

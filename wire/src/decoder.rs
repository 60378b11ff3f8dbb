//! Sans-IO splitting of a byte stream into verified frames.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use crate::decode::{check_frame_bytes, VerifiedFrame};
use crate::limits::{FrameLimits, FRAME_PREFIX_BYTES};
use crate::WireError;

/// Most bytes allocated up front for a frame still arriving: a peer that
/// announces a large frame gets memory as it sends bytes, not on its word.
const PARTIAL_FRAME_INITIAL_BYTES_MAX: usize = 256 * 1024;

/// Splits the bytes of one stream into frames.
///
/// Feed bytes as they arrive with [`FrameDecoder::feed`] (copies) or
/// [`FrameDecoder::feed_bytes`] (no copy for frames that arrive whole in one
/// chunk), then pull frames with [`FrameDecoder::next_frame`] until it
/// returns `Ok(None)`. A frame cut short simply waits for more bytes; when
/// the stream ends, [`FrameDecoder::finish`] says whether it ended cleanly.
///
/// A length prefix above `frame_bytes_max` is rejected as soon as its four
/// bytes are seen, before any of the frame is buffered, and stops the
/// decoder (the stream position is lost). A frame that fails verification is
/// reported by `next_frame` and dropped; later frames are still delivered.
///
/// Memory: at most one partial frame (≤ `frame_bytes_max` + 4 bytes) plus
/// the complete frames fed but not yet pulled.
#[derive(Debug)]
pub struct FrameDecoder {
    limits: FrameLimits,
    prefix: [u8; FRAME_PREFIX_BYTES],
    prefix_len: usize,
    partial: Option<PartialFrame>,
    ready: VecDeque<Bytes>,
    failed: bool,
}

#[derive(Debug)]
struct PartialFrame {
    /// Prefix included.
    buf: BytesMut,
    total_bytes: usize,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new(FrameLimits::default())
    }
}

impl FrameDecoder {
    pub fn new(limits: FrameLimits) -> Self {
        Self {
            limits,
            prefix: [0; FRAME_PREFIX_BYTES],
            prefix_len: 0,
            partial: None,
            ready: VecDeque::new(),
            failed: false,
        }
    }

    pub fn limits(&self) -> &FrameLimits {
        &self.limits
    }

    /// Takes the next bytes of the stream (copying them).
    pub fn feed(&mut self, data: &[u8]) -> Result<(), WireError> {
        self.feed_inner(data, None)
    }

    /// Takes the next bytes of the stream; frames lying wholly inside `data`
    /// share its memory instead of being copied.
    pub fn feed_bytes(&mut self, data: Bytes) -> Result<(), WireError> {
        self.feed_inner(&data, Some(&data))
    }

    /// The next complete frame, verified; `Ok(None)` when more bytes are
    /// needed. An `Err` concerns that one frame unless
    /// [`WireError::is_fatal_to_stream`] says otherwise.
    pub fn next_frame(&mut self) -> Result<Option<VerifiedFrame>, WireError> {
        match self.ready.pop_front() {
            None => Ok(None),
            Some(frame) => VerifiedFrame::new(frame, &self.limits).map(Some),
        }
    }

    /// Call when the stream has ended: `Err(Truncated)` if it ended inside
    /// a frame (`Err(DecoderFailed)` after a framing error). Complete frames
    /// can still be pulled afterwards.
    pub fn finish(&self) -> Result<(), WireError> {
        if self.failed {
            return Err(WireError::DecoderFailed);
        }
        if let Some(partial) = &self.partial {
            return Err(WireError::Truncated {
                received_bytes: partial.buf.len() as u64,
                expected_bytes: partial.total_bytes as u64,
            });
        }
        if self.prefix_len > 0 {
            return Err(WireError::Truncated {
                received_bytes: self.prefix_len as u64,
                expected_bytes: FRAME_PREFIX_BYTES as u64,
            });
        }
        Ok(())
    }

    /// True when a frame has begun but not ended.
    pub fn has_partial_frame(&self) -> bool {
        self.partial.is_some() || self.prefix_len > 0
    }

    /// Bytes held: the partial frame plus complete frames not yet pulled.
    pub fn buffered_bytes(&self) -> usize {
        self.prefix_len
            + self.partial.as_ref().map_or(0, |p| p.buf.len())
            + self.ready.iter().map(Bytes::len).sum::<usize>()
    }

    /// `owner`, when given, is `data` as `Bytes`.
    fn feed_inner(&mut self, data: &[u8], owner: Option<&Bytes>) -> Result<(), WireError> {
        if self.failed {
            return Err(WireError::DecoderFailed);
        }
        let mut pos = 0;
        loop {
            if let Some(done) = self.partial.take_if(|p| p.buf.len() == p.total_bytes) {
                self.ready.push_back(done.buf.freeze());
            }
            let rest = &data[pos..];
            if rest.is_empty() {
                return Ok(());
            }
            if let Some(partial) = &mut self.partial {
                let take = (partial.total_bytes - partial.buf.len()).min(rest.len());
                partial.buf.extend_from_slice(&rest[..take]);
                pos += take;
                continue;
            }
            if let (0, Some(owner), Some(prefix)) = (
                self.prefix_len,
                owner,
                rest.first_chunk::<FRAME_PREFIX_BYTES>(),
            ) {
                let total_bytes = self.frame_total_bytes(u32::from_le_bytes(*prefix))?;
                if rest.len() >= total_bytes {
                    self.ready.push_back(owner.slice(pos..pos + total_bytes));
                    pos += total_bytes;
                    continue;
                }
            }
            let take = (FRAME_PREFIX_BYTES - self.prefix_len).min(rest.len());
            self.prefix[self.prefix_len..self.prefix_len + take].copy_from_slice(&rest[..take]);
            self.prefix_len += take;
            pos += take;
            if self.prefix_len == FRAME_PREFIX_BYTES {
                let total_bytes = self.frame_total_bytes(u32::from_le_bytes(self.prefix))?;
                let mut buf =
                    BytesMut::with_capacity(total_bytes.min(PARTIAL_FRAME_INITIAL_BYTES_MAX));
                buf.extend_from_slice(&self.prefix);
                self.prefix_len = 0;
                self.partial = Some(PartialFrame { buf, total_bytes });
            }
        }
    }

    /// Checks a length prefix; a frame over the limit stops the decoder.
    fn frame_total_bytes(&mut self, frame_bytes: u32) -> Result<usize, WireError> {
        if let Err(e) = check_frame_bytes(frame_bytes, &self.limits) {
            self.failed = true;
            self.prefix_len = 0;
            self.partial = None;
            return Err(e);
        }
        Ok(FRAME_PREFIX_BYTES + frame_bytes as usize)
    }
}

//! Read-ahead for a sequential reader of a segment.
//!
//! A reader that fetches offset after offset would otherwise leave the
//! device idle while it processes each span. The log keeps the next
//! [`DEPTH`] raw byte spans of the segment in flight, plus the bytes already
//! read past the last returned batch (`leftover`), so no byte is read twice.

use std::collections::VecDeque;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use glommio::io::DmaFile;

use crate::segment::read_span;

/// Spans kept in flight ahead of the reader.
pub const DEPTH: usize = 2;

struct Span {
    start: u64,
    len: u64,
    task: glommio::Task<std::io::Result<Bytes>>,
}

pub struct Readahead {
    pub segment_base: u64,
    /// `LogState::truncations` when started: a suffix truncation since makes it stale.
    pub truncations: u64,
    /// File position of the next batch the reader will want...
    pub start: u64,
    /// ...and its base offset.
    pub offset: u64,
    /// Bytes from `start` already read.
    leftover: Bytes,
    /// Consecutive spans from `start + leftover.len()` on.
    spans: VecDeque<Span>,
}

impl Readahead {
    pub fn new(
        segment_base: u64,
        truncations: u64,
        start: u64,
        offset: u64,
        leftover: Bytes,
    ) -> Self {
        Self {
            segment_base,
            truncations,
            start,
            offset,
            leftover,
            spans: VecDeque::new(),
        }
    }

    /// Continues after a read that ended at `start`/`offset` with `leftover`
    /// read past it, keeping the spans in flight when they still follow on.
    pub fn advance(mut self, start: u64, offset: u64, leftover: Bytes) -> Self {
        let raw_end = start + leftover.len() as u64;
        if self.spans.front().is_none_or(|s| s.start != raw_end) {
            self.spans.clear();
        }
        self.start = start;
        self.offset = offset;
        self.leftover = leftover;
        self
    }

    fn next_raw_start(&self) -> u64 {
        self.spans
            .back()
            .map_or(self.start + self.leftover.len() as u64, |s| s.start + s.len)
    }

    /// Starts reads until [`DEPTH`] spans of `span_bytes` are in flight,
    /// never past `end_position`. The tasks submit when the caller yields.
    pub fn top_up(&mut self, file: &Rc<DmaFile>, end_position: u64, span_bytes: usize) {
        while self.spans.len() < DEPTH {
            let start = self.next_raw_start();
            if start >= end_position {
                break;
            }
            let len = (span_bytes as u64).min(end_position - start);
            let file = file.clone();
            let task =
                glommio::spawn_local(async move { read_span(&file, start, len as usize).await });
            self.spans.push_back(Span { start, len, task });
        }
    }

    /// The bytes from `start` on: the leftover plus the next span (waiting
    /// for it). `None` when nothing is in flight or the read failed (the
    /// caller then reads normally).
    pub async fn take(&mut self) -> Option<Bytes> {
        let span = self.spans.pop_front()?;
        let bytes = span.task.await.ok()?;
        if self.leftover.is_empty() {
            return Some(bytes);
        }
        let mut joined = BytesMut::with_capacity(self.leftover.len() + bytes.len());
        joined.extend_from_slice(&self.leftover);
        joined.extend_from_slice(&bytes);
        self.leftover = Bytes::new();
        Some(joined.freeze())
    }
}

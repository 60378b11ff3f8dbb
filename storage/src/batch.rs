//! The record-batch format: one format on the wire and on disk.
//!
//! ```text
//! batch  = header (64 bytes, little-endian) | payload
//! header = magic u32 | crc u32 | version u8 | flags u8 | reserved u16
//!        | record_count u32 | base_offset u64 | first_timestamp_ms i64
//!        | last_timestamp_ms i64 | leader_epoch u64 | payload_bytes u32
//!        | raft_index u64 | reserved [u8; 4]
//! crc    = CRC32C(payload ++ header[8..64])
//! record = record_bytes u32 (bytes after this field) | timestamp_ms i64
//!        | key_bytes u32 (u32::MAX: no key) | key | value_bytes u32 | value
//!        | header_count u16 | { name_bytes u16 | name | value_bytes u32 | value }*
//! ```
//!
//! A producer encodes the batch with base offset 0. The log assigns the real
//! base offset (and leader epoch) in the header and recomputes the CRC by
//! extending the payload's CRC over the new header (56 bytes): records are
//! never re-encoded, and the payload is read once, to validate it. (The
//! payload comes first in the CRC for exactly this: with the header first,
//! restamping needs `crc32c_combine`, measured at ~35% of append CPU.)
//!
//! Replication (the partition's log is its Raft log): `leader_epoch` is the
//! Raft term and `raft_index` (the first 8 of the formerly reserved 12 bytes)
//! the Raft index; 0 means "not replicated", which is what every batch written
//! before replication holds (the bytes were always zero), so the format
//! version stays 1. A batch with the [`FLAG_CONTROL`] flag is a control batch:
//! no records, an opaque payload (Raft's empty entry of a new leader, a
//! configuration change), CRC-covered like any batch; it occupies no offsets
//! (base offset = the next offset, record count 0). Downgrade caveat: a
//! binary from before this change treats a control batch as corruption, so a
//! replicated log must not be opened by one.

use zerocopy::little_endian::{I64, U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// "SPRW".
pub const BATCH_MAGIC: u32 = 0x5350_5257;
pub const BATCH_VERSION: u8 = 1;
pub const BATCH_HEADER_BYTES: usize = 64;
/// `flags` bit of a control batch (see the module docs).
pub const FLAG_CONTROL: u8 = 0x01;
/// Every flag bit this version knows; incoming batches with others are refused
/// (a future meaning must not be silently ignored).
const KNOWN_FLAGS: u8 = FLAG_CONTROL;
/// Bytes of the header covered by the CRC start here (after magic and crc).
const CRC_COVERED_FROM: usize = 8;
const NO_KEY: u32 = u32::MAX;
/// Fixed part of one record: record_bytes + timestamp + key_bytes + value_bytes + header_count.
const RECORD_FIXED_BYTES: usize = 4 + 8 + 4 + 4 + 2;

/// The fixed batch header, read and written in place with `zerocopy`.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct BatchHeader {
    pub magic: U32,
    pub crc: U32,
    pub version: u8,
    pub flags: u8,
    pub reserved: U16,
    pub record_count: U32,
    pub base_offset: U64,
    pub first_timestamp_ms: I64,
    pub last_timestamp_ms: I64,
    pub leader_epoch: U64,
    pub payload_bytes: U32,
    /// `[0..8]`: the Raft index (u64 LE, 0 = not replicated); `[8..12]`: zero.
    pub reserved2: [u8; 12],
}

const _: () = assert!(std::mem::size_of::<BatchHeader>() == BATCH_HEADER_BYTES);

impl BatchHeader {
    pub fn base_offset(&self) -> u64 {
        self.base_offset.get()
    }
    pub fn record_count(&self) -> u32 {
        self.record_count.get()
    }
    /// Exclusive end offset: the base offset of the next batch.
    pub fn next_offset(&self) -> u64 {
        self.base_offset.get() + u64::from(self.record_count.get())
    }
    /// Header plus payload.
    pub fn batch_bytes(&self) -> usize {
        BATCH_HEADER_BYTES + self.payload_bytes.get() as usize
    }
    /// The leader epoch, which is the Raft term of a replicated batch.
    pub fn leader_epoch(&self) -> u64 {
        self.leader_epoch.get()
    }
    /// The Raft index of the entry this batch is; 0 when not replicated.
    pub fn raft_index(&self) -> u64 {
        u64::from_le_bytes(self.reserved2[..8].try_into().expect("8 bytes"))
    }
    /// Sets the Raft index (the CRC must be recomputed afterwards).
    pub fn set_raft_index(&mut self, raft_index: u64) {
        self.reserved2[..8].copy_from_slice(&raft_index.to_le_bytes());
    }
    /// Whether this is a control batch (no records, opaque payload).
    pub fn is_control(&self) -> bool {
        self.flags & FLAG_CONTROL != 0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("batch is {got} bytes, shorter than its {need}-byte header")]
    ShortHeader { got: usize, need: usize },
    #[error("bad magic {0:#010x}")]
    BadMagic(u32),
    #[error("unsupported batch version {0}")]
    BadVersion(u8),
    #[error("batch declares {declared} bytes but {got} are present")]
    LengthMismatch { declared: usize, got: usize },
    #[error("batch CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    #[error("batch holds no records")]
    Empty,
    #[error("record {index} is malformed: {reason}")]
    BadRecord { index: u32, reason: &'static str },
    #[error("batch declares {declared} records but holds {found}")]
    CountMismatch { declared: u32, found: u32 },
    #[error("control batch declares {0} records (control batches hold none)")]
    ControlWithRecords(u32),
    #[error("unknown batch flags {0:#04x}")]
    UnknownFlags(u8),
}

/// One record to encode.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record<'a> {
    pub timestamp_ms: i64,
    pub key: Option<&'a [u8]>,
    pub value: &'a [u8],
    pub headers: &'a [(&'a [u8], &'a [u8])],
}

/// Encodes records into one batch (base offset 0; the log assigns the real one).
#[derive(Debug, Default)]
pub struct BatchBuilder {
    buf: Vec<u8>,
    record_count: u32,
    first_timestamp_ms: i64,
    last_timestamp_ms: i64,
}

impl BatchBuilder {
    pub fn new() -> Self {
        Self::with_capacity(4096)
    }

    pub fn with_capacity(bytes: usize) -> Self {
        let mut buf = Vec::with_capacity(bytes.max(BATCH_HEADER_BYTES));
        buf.resize(BATCH_HEADER_BYTES, 0);
        Self {
            buf,
            record_count: 0,
            first_timestamp_ms: 0,
            last_timestamp_ms: 0,
        }
    }

    /// Bytes the finished batch will take.
    pub fn encoded_bytes(&self) -> usize {
        self.buf.len()
    }

    pub fn record_count(&self) -> u32 {
        self.record_count
    }

    /// Bytes `record` adds to the batch.
    pub fn record_bytes(record: &Record<'_>) -> usize {
        RECORD_FIXED_BYTES
            + record.key.map_or(0, <[u8]>::len)
            + record.value.len()
            + record
                .headers
                .iter()
                .map(|(n, v)| 2 + n.len() + 4 + v.len())
                .sum::<usize>()
    }

    /// Appends one record. Panics if a header name exceeds 64 KiB or a field 4 GiB.
    pub fn push(&mut self, record: &Record<'_>) {
        let body_bytes = Self::record_bytes(record) - 4;
        let b = &mut self.buf;
        b.extend_from_slice(
            &u32::try_from(body_bytes)
                .expect("record < 4 GiB")
                .to_le_bytes(),
        );
        b.extend_from_slice(&record.timestamp_ms.to_le_bytes());
        match record.key {
            Some(k) => {
                b.extend_from_slice(&(k.len() as u32).to_le_bytes());
                b.extend_from_slice(k);
            }
            None => b.extend_from_slice(&NO_KEY.to_le_bytes()),
        }
        b.extend_from_slice(&(record.value.len() as u32).to_le_bytes());
        b.extend_from_slice(record.value);
        let header_count = u16::try_from(record.headers.len()).expect("< 65536 headers");
        b.extend_from_slice(&header_count.to_le_bytes());
        for (name, value) in record.headers {
            let name_bytes = u16::try_from(name.len()).expect("header name < 64 KiB");
            b.extend_from_slice(&name_bytes.to_le_bytes());
            b.extend_from_slice(name);
            b.extend_from_slice(&(value.len() as u32).to_le_bytes());
            b.extend_from_slice(value);
        }
        if self.record_count == 0 {
            self.first_timestamp_ms = record.timestamp_ms;
            self.last_timestamp_ms = record.timestamp_ms;
        } else {
            self.first_timestamp_ms = self.first_timestamp_ms.min(record.timestamp_ms);
            self.last_timestamp_ms = self.last_timestamp_ms.max(record.timestamp_ms);
        }
        self.record_count += 1;
    }

    /// Writes the header and returns the encoded batch.
    pub fn finish(mut self) -> Vec<u8> {
        let payload_bytes = (self.buf.len() - BATCH_HEADER_BYTES) as u32;
        let header = BatchHeader {
            magic: BATCH_MAGIC.into(),
            crc: 0.into(),
            version: BATCH_VERSION,
            flags: 0,
            reserved: 0.into(),
            record_count: self.record_count.into(),
            base_offset: 0.into(),
            first_timestamp_ms: self.first_timestamp_ms.into(),
            last_timestamp_ms: self.last_timestamp_ms.into(),
            leader_epoch: 0.into(),
            payload_bytes: payload_bytes.into(),
            reserved2: [0; 12],
        };
        self.buf[..BATCH_HEADER_BYTES].copy_from_slice(header.as_bytes());
        let crc = batch_crc(&self.buf);
        self.buf[4..8].copy_from_slice(&crc.to_le_bytes());
        self.buf
    }
}

/// A control batch carrying `payload` (opaque bytes), base offset, term and
/// Raft index 0: the log stamps them on append.
pub fn control_batch(payload: &[u8]) -> bytes::BytesMut {
    let header = BatchHeader {
        magic: BATCH_MAGIC.into(),
        crc: 0.into(),
        version: BATCH_VERSION,
        flags: FLAG_CONTROL,
        reserved: 0.into(),
        record_count: 0.into(),
        base_offset: 0.into(),
        first_timestamp_ms: 0.into(),
        last_timestamp_ms: 0.into(),
        leader_epoch: 0.into(),
        payload_bytes: u32::try_from(payload.len())
            .expect("control payload < 4 GiB")
            .into(),
        reserved2: [0; 12],
    };
    let mut buf = bytes::BytesMut::with_capacity(BATCH_HEADER_BYTES + payload.len());
    buf.extend_from_slice(header.as_bytes());
    buf.extend_from_slice(payload);
    let crc = batch_crc(&buf);
    buf[4..8].copy_from_slice(&crc.to_le_bytes());
    buf
}

/// CRC32C over the payload, then header[8..64], of a complete batch.
pub fn batch_crc(batch: &[u8]) -> u32 {
    crc_with_header(crc32c::crc32c(&batch[BATCH_HEADER_BYTES..]), batch)
}

/// Extends the payload's CRC over the CRC-covered part of the header.
fn crc_with_header(payload_crc: u32, batch: &[u8]) -> u32 {
    crc32c::crc32c_append(payload_crc, &batch[CRC_COVERED_FROM..BATCH_HEADER_BYTES])
}

/// Reads the header at the start of `buf` without validating anything else.
pub fn peek_header(buf: &[u8]) -> Result<&BatchHeader, BatchError> {
    let (header, _) = BatchHeader::ref_from_prefix(buf).map_err(|_| BatchError::ShortHeader {
        got: buf.len(),
        need: BATCH_HEADER_BYTES,
    })?;
    if header.magic.get() != BATCH_MAGIC {
        return Err(BatchError::BadMagic(header.magic.get()));
    }
    if header.version != BATCH_VERSION {
        return Err(BatchError::BadVersion(header.version));
    }
    Ok(header)
}

/// A validated batch borrowed from a buffer.
#[derive(Debug, Clone, Copy)]
pub struct BatchView<'a> {
    bytes: &'a [u8],
}

impl<'a> BatchView<'a> {
    /// Validates the batch at the start of `buf` (header, length, CRC) and
    /// returns it with the bytes that follow it.
    pub fn parse_prefix(buf: &'a [u8]) -> Result<(Self, &'a [u8]), BatchError> {
        let header = peek_header(buf)?;
        let total = header.batch_bytes();
        if buf.len() < total {
            return Err(BatchError::LengthMismatch {
                declared: total,
                got: buf.len(),
            });
        }
        let (bytes, rest) = buf.split_at(total);
        let computed = batch_crc(bytes);
        if computed != header.crc.get() {
            return Err(BatchError::CrcMismatch {
                stored: header.crc.get(),
                computed,
            });
        }
        Ok((Self { bytes }, rest))
    }

    /// Validates `buf` as exactly one batch.
    pub fn parse_exact(buf: &'a [u8]) -> Result<Self, BatchError> {
        let (view, rest) = Self::parse_prefix(buf)?;
        if !rest.is_empty() {
            return Err(BatchError::LengthMismatch {
                declared: view.bytes.len(),
                got: buf.len(),
            });
        }
        Ok(view)
    }

    pub fn header(&self) -> &'a BatchHeader {
        BatchHeader::ref_from_prefix(self.bytes)
            .expect("validated")
            .0
    }

    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    pub fn records(&self) -> RecordIter<'a> {
        RecordIter {
            rest: &self.bytes[BATCH_HEADER_BYTES..],
            offset: self.header().base_offset(),
            index: 0,
            remaining: self.header().record_count(),
        }
    }
}

/// One decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordView<'a> {
    pub offset: u64,
    pub timestamp_ms: i64,
    pub key: Option<&'a [u8]>,
    pub value: &'a [u8],
    headers: &'a [u8],
    header_count: u16,
}

impl<'a> RecordView<'a> {
    pub fn headers(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> {
        let mut rest = self.headers;
        (0..self.header_count).map(move |_| {
            // Validated when the record was decoded.
            let (name, r) = take_prefixed::<2>(rest).expect("validated header");
            let (value, r) = take_prefixed::<4>(r).expect("validated header");
            rest = r;
            (name, value)
        })
    }
}

pub struct RecordIter<'a> {
    rest: &'a [u8],
    offset: u64,
    index: u32,
    remaining: u32,
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = Result<RecordView<'a>, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        let index = self.index;
        let result = decode_record(self.rest, self.offset).map(|(rec, rest)| {
            self.rest = rest;
            rec
        });
        self.index += 1;
        self.offset += 1;
        self.remaining = if result.is_ok() {
            self.remaining - 1
        } else {
            0
        };
        Some(result.map_err(|reason| BatchError::BadRecord { index, reason }))
    }
}

fn take<const N: usize>(buf: &[u8]) -> Result<([u8; N], &[u8]), &'static str> {
    if buf.len() < N {
        return Err("truncated field");
    }
    let (head, rest) = buf.split_at(N);
    Ok((head.try_into().expect("N bytes"), rest))
}

/// A length-prefixed byte string, the prefix being `N` bytes (2 or 4).
fn take_prefixed<const N: usize>(buf: &[u8]) -> Result<(&[u8], &[u8]), &'static str> {
    let (len, rest) = take::<N>(buf)?;
    let mut le = [0u8; 4];
    le[..N].copy_from_slice(&len);
    let len = u32::from_le_bytes(le) as usize;
    if rest.len() < len {
        return Err("field length exceeds record");
    }
    Ok(rest.split_at(len))
}

fn decode_record(buf: &[u8], offset: u64) -> Result<(RecordView<'_>, &[u8]), &'static str> {
    let (body_len, rest) = take::<4>(buf)?;
    let body_len = u32::from_le_bytes(body_len) as usize;
    if rest.len() < body_len {
        return Err("record length exceeds batch");
    }
    let (body, after) = rest.split_at(body_len);
    let (ts, r) = take::<8>(body)?;
    let (key_len, r) = take::<4>(r)?;
    let (key, r) = match u32::from_le_bytes(key_len) {
        NO_KEY => (None, r),
        n if (n as usize) <= r.len() => {
            let (k, r) = r.split_at(n as usize);
            (Some(k), r)
        }
        _ => return Err("key length exceeds record"),
    };
    let (value, r) = take_prefixed::<4>(r)?;
    let (count, r) = take::<2>(r)?;
    let header_count = u16::from_le_bytes(count);
    let headers = r;
    let mut h = r;
    for _ in 0..header_count {
        let (_, r) = take_prefixed::<2>(h)?;
        let (_, r) = take_prefixed::<4>(r)?;
        h = r;
    }
    if !h.is_empty() {
        return Err("trailing bytes in record");
    }
    Ok((
        RecordView {
            offset,
            timestamp_ms: i64::from_le_bytes(ts),
            key,
            value,
            headers,
            header_count,
        },
        after,
    ))
}

/// What the log learns from validating an incoming (producer) batch. A
/// control batch is the one with `record_count == 0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IncomingBatch {
    pub record_count: u32,
    pub first_timestamp_ms: i64,
    pub last_timestamp_ms: i64,
    /// CRC32C of the payload alone, to restamp the header cheaply.
    pub payload_crc: u32,
}

/// Fully validates a producer's batch: header, CRC, and every record's framing.
/// This is the one pass the log makes over the payload.
pub fn validate_incoming(batch: &[u8]) -> Result<IncomingBatch, BatchError> {
    let header = peek_header(batch)?;
    if header.batch_bytes() != batch.len() {
        return Err(BatchError::LengthMismatch {
            declared: header.batch_bytes(),
            got: batch.len(),
        });
    }
    let payload = &batch[BATCH_HEADER_BYTES..];
    let payload_crc = crc32c::crc32c(payload);
    let computed = crc_with_header(payload_crc, batch);
    if computed != header.crc.get() {
        return Err(BatchError::CrcMismatch {
            stored: header.crc.get(),
            computed,
        });
    }
    if header.flags & !KNOWN_FLAGS != 0 {
        return Err(BatchError::UnknownFlags(header.flags));
    }
    let declared = header.record_count();
    if header.is_control() {
        // The payload is opaque: the CRC above is its only check.
        if declared != 0 {
            return Err(BatchError::ControlWithRecords(declared));
        }
        return Ok(IncomingBatch {
            record_count: 0,
            first_timestamp_ms: header.first_timestamp_ms.get(),
            last_timestamp_ms: header.last_timestamp_ms.get(),
            payload_crc,
        });
    }
    if declared == 0 {
        return Err(BatchError::Empty);
    }
    let mut found = 0u32;
    let mut rest = payload;
    let (mut first_ts, mut last_ts) = (i64::MAX, i64::MIN);
    while !rest.is_empty() {
        let (rec, r) = decode_record(rest, 0).map_err(|reason| BatchError::BadRecord {
            index: found,
            reason,
        })?;
        first_ts = first_ts.min(rec.timestamp_ms);
        last_ts = last_ts.max(rec.timestamp_ms);
        rest = r;
        found += 1;
    }
    if found != declared {
        return Err(BatchError::CountMismatch { declared, found });
    }
    Ok(IncomingBatch {
        record_count: declared,
        first_timestamp_ms: first_ts,
        last_timestamp_ms: last_ts,
        payload_crc,
    })
}

/// Sets the batch's base offset and leader epoch in place and recomputes its
/// CRC from the payload CRC found by [`validate_incoming`]. Also normalises the
/// header's timestamps to the ones the records carry.
/// The Raft index is set to 0 (not replicated): whatever a producer put in
/// those bytes must not pass for a Raft entry.
pub fn restamp(batch: &mut [u8], incoming: &IncomingBatch, base_offset: u64, leader_epoch: u64) {
    restamp_raft(batch, incoming, base_offset, leader_epoch, 0);
}

/// [`restamp`] for a replicated batch: also stamps the Raft term (as the
/// leader epoch) and the Raft index.
pub fn restamp_raft(
    batch: &mut [u8],
    incoming: &IncomingBatch,
    base_offset: u64,
    term: u64,
    raft_index: u64,
) {
    let (header, _) = BatchHeader::mut_from_prefix(batch).expect("validated batch");
    header.base_offset = base_offset.into();
    header.leader_epoch = term.into();
    header.set_raft_index(raft_index);
    header.first_timestamp_ms = incoming.first_timestamp_ms.into();
    header.last_timestamp_ms = incoming.last_timestamp_ms.into();
    let crc = crc_with_header(incoming.payload_crc, batch);
    batch[4..8].copy_from_slice(&crc.to_le_bytes());
}

/// Progress of a search for the first record at or after a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeSearch {
    /// The offset of the first matching record.
    Found(u64),
    /// None of these batches holds one: continue from this offset.
    Continue(u64),
}

/// Scans `batches` (consecutive, in offset order) for the first record at
/// or after `from_offset` whose timestamp is ≥ `timestamp_ms`. Batches whose
/// newest record is older are skipped without decoding their records.
pub fn search_time(
    batches: &[bytes::Bytes],
    from_offset: u64,
    timestamp_ms: i64,
) -> Result<TimeSearch, BatchError> {
    let mut offset = from_offset;
    for batch in batches {
        let view = BatchView::parse_exact(batch)?;
        if view.header().last_timestamp_ms.get() >= timestamp_ms {
            for rec in view.records() {
                let rec = rec?;
                if rec.offset >= offset && rec.timestamp_ms >= timestamp_ms {
                    return Ok(TimeSearch::Found(rec.offset));
                }
            }
        }
        offset = offset.max(view.header().next_offset());
    }
    Ok(TimeSearch::Continue(offset))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Vec<u8> {
        let mut b = BatchBuilder::new();
        b.push(&Record {
            timestamp_ms: 10,
            key: Some(b"k1"),
            value: b"hello",
            headers: &[(b"h", b"v")],
        });
        b.push(&Record {
            timestamp_ms: 5,
            key: None,
            value: b"",
            headers: &[],
        });
        b.finish()
    }

    #[test]
    fn build_validate_restamp_read() {
        let mut batch = sample();
        let incoming = validate_incoming(&batch).unwrap();
        assert_eq!(incoming.record_count, 2);
        assert_eq!(
            (incoming.first_timestamp_ms, incoming.last_timestamp_ms),
            (5, 10)
        );
        restamp(&mut batch, &incoming, 42, 7);
        let view = BatchView::parse_exact(&batch).unwrap();
        assert_eq!(view.header().base_offset(), 42);
        assert_eq!(view.header().leader_epoch.get(), 7);
        assert_eq!(view.header().next_offset(), 44);
        let recs: Vec<_> = view.records().map(Result::unwrap).collect();
        assert_eq!(recs[0].offset, 42);
        assert_eq!(recs[0].key, Some(&b"k1"[..]));
        assert_eq!(recs[0].value, b"hello");
        assert_eq!(
            recs[0].headers().collect::<Vec<_>>(),
            vec![(&b"h"[..], &b"v"[..])]
        );
        assert_eq!(recs[1].offset, 43);
        assert_eq!(recs[1].key, None);
        assert_eq!(recs[1].timestamp_ms, 5);
    }

    #[test]
    fn every_single_byte_flip_is_detected() {
        let batch = sample();
        for i in 0..batch.len() {
            let mut bad = batch.clone();
            bad[i] ^= 0x01;
            assert!(
                validate_incoming(&bad).is_err(),
                "flip at byte {i} accepted"
            );
            assert!(
                BatchView::parse_exact(&bad).is_err(),
                "flip at byte {i} accepted"
            );
        }
    }

    #[test]
    fn length_and_count_lies_are_rejected() {
        let batch = sample();
        assert!(matches!(
            validate_incoming(&batch[..batch.len() - 1]),
            Err(BatchError::LengthMismatch { .. })
        ));
        assert!(matches!(
            validate_incoming(&batch[..10]),
            Err(BatchError::ShortHeader { .. })
        ));
        let empty = BatchBuilder::new().finish();
        assert_eq!(validate_incoming(&empty), Err(BatchError::Empty));
    }

    #[test]
    fn raft_index_term_and_control_round_trip() {
        let mut batch = sample();
        batch[BATCH_HEADER_BYTES - 12..BATCH_HEADER_BYTES - 4].fill(0xee);
        let incoming = validate_incoming(&batch).unwrap_err();
        assert!(matches!(incoming, BatchError::CrcMismatch { .. }));
        let mut batch = sample();
        let incoming = validate_incoming(&batch).unwrap();
        restamp_raft(&mut batch, &incoming, 7, 3, 11);
        let h = BatchView::parse_exact(&batch).unwrap().header();
        assert_eq!(
            (h.base_offset(), h.leader_epoch(), h.raft_index()),
            (7, 3, 11)
        );
        assert!(!h.is_control());
        // An unreplicated restamp clears whatever index was there.
        restamp(&mut batch, &incoming, 7, 3);
        assert_eq!(peek_header(&batch).unwrap().raft_index(), 0);

        let mut c = control_batch(b"conf change");
        let inc = validate_incoming(&c).unwrap();
        assert_eq!(inc.record_count, 0);
        restamp_raft(&mut c, &inc, 9, 4, 12);
        let view = BatchView::parse_exact(&c).unwrap();
        let h = view.header();
        assert!(h.is_control());
        assert_eq!(
            (
                h.base_offset(),
                h.next_offset(),
                h.raft_index(),
                h.leader_epoch()
            ),
            (9, 9, 12, 4)
        );
        assert_eq!(&view.as_bytes()[BATCH_HEADER_BYTES..], b"conf change");
        assert_eq!(view.records().count(), 0);
        assert!(validate_incoming(&control_batch(b"")).is_ok());
        // The CRC covers the control payload and flag like any batch.
        for i in 0..c.len() {
            let mut bad = c.clone();
            bad[i] ^= 0x01;
            assert!(
                validate_incoming(&bad).is_err(),
                "flip at byte {i} accepted"
            );
        }
    }

    #[test]
    fn control_flag_and_records_must_agree() {
        let mut batch = sample();
        batch[9] |= FLAG_CONTROL;
        let crc = batch_crc(&batch);
        batch[4..8].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            validate_incoming(&batch),
            Err(BatchError::ControlWithRecords(2))
        );
        batch[9] = 0x80;
        let crc = batch_crc(&batch);
        batch[4..8].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            validate_incoming(&batch),
            Err(BatchError::UnknownFlags(0x80))
        );
    }

    /// `(timestamp, key, value, headers)` of one record.
    type ArbRecord = (i64, Option<Vec<u8>>, Vec<u8>, Vec<(Vec<u8>, Vec<u8>)>);

    fn arb_records() -> impl Strategy<Value = Vec<ArbRecord>> {
        proptest::collection::vec(
            (
                any::<i64>(),
                proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20)),
                proptest::collection::vec(any::<u8>(), 0..200),
                proptest::collection::vec(
                    (
                        proptest::collection::vec(any::<u8>(), 0..8),
                        proptest::collection::vec(any::<u8>(), 0..8),
                    ),
                    0..3,
                ),
            ),
            1..20,
        )
    }

    proptest! {
        #[test]
        fn batches_round_trip(recs in arb_records(), base in 0u64..u64::MAX / 2, epoch in any::<u64>()) {
            let mut b = BatchBuilder::new();
            for (ts, key, value, headers) in &recs {
                let hs: Vec<(&[u8], &[u8])> = headers.iter().map(|(n, v)| (&n[..], &v[..])).collect();
                b.push(&Record { timestamp_ms: *ts, key: key.as_deref(), value, headers: &hs });
            }
            let mut batch = b.finish();
            let incoming = validate_incoming(&batch).unwrap();
            restamp(&mut batch, &incoming, base, epoch);
            let view = BatchView::parse_exact(&batch).unwrap();
            let decoded: Vec<_> = view.records().map(Result::unwrap).collect();
            prop_assert_eq!(decoded.len(), recs.len());
            for (i, (rec, (ts, key, value, headers))) in decoded.iter().zip(&recs).enumerate() {
                prop_assert_eq!(rec.offset, base + i as u64);
                prop_assert_eq!(rec.timestamp_ms, *ts);
                prop_assert_eq!(rec.key, key.as_deref());
                prop_assert_eq!(rec.value, &value[..]);
                let hs: Vec<(Vec<u8>, Vec<u8>)> = rec.headers().map(|(n, v)| (n.to_vec(), v.to_vec())).collect();
                prop_assert_eq!(&hs, headers);
            }
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = validate_incoming(&bytes);
            if let Ok((view, _)) = BatchView::parse_prefix(&bytes) {
                for r in view.records() { let _ = r; }
            }
        }
    }
}

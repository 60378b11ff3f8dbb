//! Records going out (encoded into storage batches) and coming back
//! (decoded from the batches of a fetch or subscription, CRC verified).

use bytes::Bytes;
use sprawl_storage::batch::{peek_header, BatchBuilder, BatchError, BatchView};

/// A record to produce.
///
/// ```
/// use sprawl_client::Record;
/// let record = Record::new("order #1 paid")
///     .with_key("customer-42")
///     .with_header("trace-id", "abc123");
/// assert_eq!(record.partition, None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    /// The partition, chosen by the caller. `None`: by key if there is
    /// one (`sprawl_wire::partition_for_key`), else by the producer's
    /// [`KeylessPartitioning`](crate::KeylessPartitioning).
    pub partition: Option<u32>,
    pub key: Option<Bytes>,
    pub value: Bytes,
    /// Name/value pairs (names at most 65,535 bytes, at most 65,535 headers).
    pub headers: Vec<(Bytes, Bytes)>,
    /// Milliseconds since the Unix epoch; `None` = when `send` is called.
    pub timestamp_ms: Option<i64>,
}

impl Record {
    pub fn new(value: impl Into<Bytes>) -> Self {
        Self {
            value: value.into(),
            ..Self::default()
        }
    }

    pub fn with_key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    pub fn with_partition(mut self, partition: u32) -> Self {
        self.partition = Some(partition);
        self
    }

    pub fn with_header(mut self, name: impl Into<Bytes>, value: impl Into<Bytes>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn with_timestamp_ms(mut self, timestamp_ms: i64) -> Self {
        self.timestamp_ms = Some(timestamp_ms);
        self
    }

    /// Bytes the record takes in a batch.
    pub(crate) fn encoded_bytes(&self) -> usize {
        BatchBuilder::record_bytes(&self.as_storage(0, &[]))
            + self
                .headers
                .iter()
                .map(|(n, v)| 2 + n.len() + 4 + v.len())
                .sum::<usize>()
    }

    /// Why the batch format cannot hold this record (its encoder would
    /// panic), if it cannot.
    pub(crate) fn format_problem(&self) -> Option<&'static str> {
        if self.headers.len() > usize::from(u16::MAX) {
            return Some("more than 65,535 headers");
        }
        if self
            .headers
            .iter()
            .any(|(n, _)| n.len() > usize::from(u16::MAX))
        {
            return Some("a header name longer than 65,535 bytes");
        }
        None
    }

    /// Appends the record to `builder`; `format_problem` must be `None`.
    pub(crate) fn push_to(&self, builder: &mut BatchBuilder, timestamp_ms: i64) {
        let headers: Vec<(&[u8], &[u8])> = self
            .headers
            .iter()
            .map(|(n, v)| (n.as_ref(), v.as_ref()))
            .collect();
        builder.push(&self.as_storage(timestamp_ms, &headers));
    }

    fn as_storage<'a>(
        &'a self,
        timestamp_ms: i64,
        headers: &'a [(&'a [u8], &'a [u8])],
    ) -> sprawl_storage::Record<'a> {
        sprawl_storage::Record {
            timestamp_ms,
            key: self.key.as_deref(),
            value: &self.value,
            headers,
        }
    }
}

/// A record read from a partition. Key, value and headers share the
/// memory of the frame they arrived in (no copies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumedRecord {
    pub offset: u64,
    pub timestamp_ms: i64,
    pub key: Option<Bytes>,
    pub value: Bytes,
    pub headers: Vec<(Bytes, Bytes)>,
}

/// Why concatenated batches could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DecodeFailure {
    /// A batch failed validation (header, CRC, record framing).
    Corrupt {
        position: usize,
        offset: u64,
        source: BatchError,
    },
    /// A batch starts below the end of the one before it.
    Backwards { base_offset: u64, expected: u64 },
}

/// Decodes concatenated batches, verifying each batch's CRC, and appends
/// the records at or after `from_offset` to `out` (the first batch may
/// start earlier). Returns the offset after the last batch, if any.
pub(crate) fn decode_batches(
    batches: &Bytes,
    from_offset: u64,
    out: &mut impl Extend<ConsumedRecord>,
) -> Result<Option<u64>, DecodeFailure> {
    let mut position = 0;
    let mut next_offset: Option<u64> = None;
    while position < batches.len() {
        let rest = &batches[position..];
        let offset = next_offset.unwrap_or(from_offset);
        let corrupt = |source| DecodeFailure::Corrupt {
            position,
            offset,
            source,
        };
        let batch_bytes = peek_header(rest).map_err(corrupt)?.batch_bytes();
        let batch = rest.get(..batch_bytes).ok_or_else(|| {
            corrupt(BatchError::LengthMismatch {
                declared: batch_bytes,
                got: rest.len(),
            })
        })?;
        let view = BatchView::parse_exact(batch).map_err(corrupt)?;
        let header = view.header();
        if let Some(expected) = next_offset.filter(|&e| header.base_offset() < e) {
            return Err(DecodeFailure::Backwards {
                base_offset: header.base_offset(),
                expected,
            });
        }
        if header.next_offset() > from_offset {
            for record in view.records() {
                let record = record.map_err(corrupt)?;
                if record.offset < from_offset {
                    continue;
                }
                out.extend(Some(ConsumedRecord {
                    offset: record.offset,
                    timestamp_ms: record.timestamp_ms,
                    key: record.key.map(|k| batches.slice_ref(k)),
                    value: batches.slice_ref(record.value),
                    headers: record
                        .headers()
                        .map(|(n, v)| (batches.slice_ref(n), batches.slice_ref(v)))
                        .collect(),
                }));
            }
        }
        next_offset = Some(header.next_offset());
        position += batch_bytes;
    }
    Ok(next_offset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sprawl_storage::batch::{restamp, validate_incoming};

    /// Batches as a node would return them: restamped at `base`.
    fn stored_batch(base: u64, values: &[&str]) -> Vec<u8> {
        let mut builder = BatchBuilder::new();
        for (i, v) in values.iter().enumerate() {
            Record::new(v.to_string())
                .with_key(format!("k{i}"))
                .with_header("h", "x")
                .push_to(&mut builder, 1000 + i as i64);
        }
        let mut batch = builder.finish();
        let incoming = validate_incoming(&batch).unwrap();
        restamp(&mut batch, &incoming, base, 1);
        batch
    }

    #[test]
    fn encoded_size_matches_the_builder() {
        let record = Record::new("value").with_key("key").with_header("n", "v");
        let mut builder = BatchBuilder::new();
        record.push_to(&mut builder, 7);
        assert_eq!(
            builder.encoded_bytes(),
            sprawl_storage::BATCH_HEADER_BYTES + record.encoded_bytes()
        );
    }

    #[test]
    fn skips_records_before_the_requested_offset() {
        let mut bytes = stored_batch(10, &["a", "b", "c"]);
        bytes.extend(stored_batch(13, &["d", "e"]));
        let bytes = Bytes::from(bytes);
        let mut out = Vec::new();
        let next = decode_batches(&bytes, 11, &mut out).unwrap();
        assert_eq!(next, Some(15));
        let got: Vec<(u64, &[u8])> = out.iter().map(|r| (r.offset, &r.value[..])).collect();
        assert_eq!(
            got,
            vec![
                (11, &b"b"[..]),
                (12, &b"c"[..]),
                (13, &b"d"[..]),
                (14, &b"e"[..])
            ]
        );
        assert_eq!(out[0].key.as_deref(), Some(&b"k1"[..]));
        assert_eq!(out[0].timestamp_ms, 1001);
        assert_eq!(out[0].headers, vec![(Bytes::from("h"), Bytes::from("x"))]);
    }

    #[test]
    fn corruption_and_backward_offsets_are_refused() {
        let mut bytes = stored_batch(0, &["a", "b"]);
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let err = decode_batches(&Bytes::from(bytes), 0, &mut Vec::new()).unwrap_err();
        assert!(
            matches!(
                err,
                DecodeFailure::Corrupt {
                    source: BatchError::CrcMismatch { .. },
                    ..
                }
            ),
            "{err:?}"
        );

        let mut bytes = stored_batch(5, &["a", "b"]);
        bytes.extend(stored_batch(6, &["c"]));
        let err = decode_batches(&Bytes::from(bytes), 0, &mut Vec::new()).unwrap_err();
        assert_eq!(
            err,
            DecodeFailure::Backwards {
                base_offset: 6,
                expected: 7
            }
        );

        let bytes = stored_batch(0, &["a"]);
        let cut = Bytes::copy_from_slice(&bytes[..bytes.len() - 3]);
        assert!(decode_batches(&cut, 0, &mut Vec::new()).is_err());
    }

    #[test]
    fn format_limits_are_checked_before_encoding() {
        let long_name = Bytes::from(vec![b'n'; 70_000]);
        let record = Record::new("v").with_header(long_name, "x");
        assert!(record.format_problem().is_some());
        assert!(Record::new("v").format_problem().is_none());
    }
}

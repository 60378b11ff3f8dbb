//! The load history file: versioned, checksummed, little-endian.
//!
//! ```text
//! header   magic "SPLH" | version u16 = 1 | reserved u16 = 0
//!          | series_max u32 | series_count u32
//! series   resource u8 | scope u8 (0 node, 1 shard, 2 partition)
//!          | shard u32                                  (shard)
//!          | topic_len u16 | topic | partition u32      (partition)
//!          | fine_len u32   [| fine_newest_s i64          | f32 × fine_len]
//!          | coarse_len u32 [| coarse_newest_minute i64   | f32 × coarse_len]
//!          | open_count u32 [| open_minute i64 | open_sum f64]
//! trailer  crc32c u32 of every byte before it
//! ```
//!
//! Slots are stored oldest first with NaN for a gap, so a restart keeps
//! what was observed apart from what was filled in. The node writes the
//! file atomically, but a torn or bit-flipped file must still be refused
//! rather than read as wrong history: the checksum covers everything, and
//! a file that passes it is still checked against the ring invariants.

use super::ring::{LoadRing, OpenMinute, COARSE_SLOTS, COARSE_STEP_S, FINE_SLOTS};
#[cfg(test)]
use super::ScopeKind;
use super::{LoadHistory, Resource, Scope, SeriesKey};

const MAGIC: [u8; 4] = *b"SPLH";
const VERSION: u16 = 1;
const HEADER_BYTES: usize = 16;
const CRC_BYTES: usize = 4;

const SCOPE_NODE: u8 = 0;
const SCOPE_SHARD: u8 = 1;
const SCOPE_PARTITION: u8 = 2;

/// Why a load history file was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HistoryError {
    #[error("load history is {bytes} bytes, too short for a header and checksum (torn write?)")]
    TooShort { bytes: usize },
    #[error("not a load history: magic {found:02x?}, expected \"SPLH\"")]
    BadMagic { found: [u8; 4] },
    #[error("load history format version {found} is not supported (this build reads {VERSION})")]
    UnsupportedVersion { found: u16 },
    #[error(
        "load history checksum mismatch over {bytes} bytes: stored {stored:#010x}, \
         computed {computed:#010x} (torn or corrupt file)"
    )]
    Checksum {
        bytes: usize,
        stored: u32,
        computed: u32,
    },
    /// The checksum matched, so the writer itself was wrong.
    #[error("load history malformed at byte {offset}: {what}")]
    Malformed { offset: usize, what: &'static str },
}

/// The codes are part of the file format: append, never renumber.
fn resource_code(resource: Resource) -> u8 {
    match resource {
        Resource::MessagesIn => 0,
        Resource::BytesIn => 1,
        Resource::BytesOut => 2,
        Resource::LogBytes => 3,
        Resource::CpuBusy => 4,
        Resource::Memory => 5,
        Resource::Network => 6,
    }
}

fn resource_from_code(code: u8) -> Option<Resource> {
    Resource::ALL
        .into_iter()
        .find(|&resource| resource_code(resource) == code)
}

impl LoadHistory {
    /// The file bytes (see the module doc for the layout).
    pub fn encode(&self) -> Vec<u8> {
        let slots: usize = self
            .series
            .values()
            .map(|ring| ring.fine.len() + ring.coarse.len())
            .sum();
        let mut out = Vec::with_capacity(HEADER_BYTES + self.series.len() * 64 + slots * 4);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&to_u32(self.series_max).to_le_bytes());
        out.extend_from_slice(&to_u32(self.series.len()).to_le_bytes());
        for (key, ring) in &self.series {
            encode_key(&mut out, key);
            encode_ring(&mut out, ring);
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// A history from [`Self::encode`]'s bytes; refuses torn, corrupt or
    /// foreign files with the reason.
    pub fn decode(bytes: &[u8]) -> Result<LoadHistory, HistoryError> {
        if bytes.len() < HEADER_BYTES + CRC_BYTES {
            return Err(HistoryError::TooShort { bytes: bytes.len() });
        }
        let found: [u8; 4] = bytes[..4].try_into().expect("4 bytes");
        if found != MAGIC {
            return Err(HistoryError::BadMagic { found });
        }
        // Before the checksum: a later version may lay out (or checksum) the
        // rest differently, and "unsupported version" is the useful error
        // after a downgrade.
        let version = u16::from_le_bytes([bytes[4], bytes[5]]);
        if version != VERSION {
            return Err(HistoryError::UnsupportedVersion { found: version });
        }
        let (body, trailer) = bytes.split_at(bytes.len() - CRC_BYTES);
        let stored = u32::from_le_bytes(trailer.try_into().expect("4 bytes"));
        let computed = crc32c::crc32c(body);
        if stored != computed {
            return Err(HistoryError::Checksum {
                bytes: bytes.len(),
                stored,
                computed,
            });
        }

        let mut reader = Reader { body, at: 6 };
        if reader.u16()? != 0 {
            return Err(reader.malformed("reserved header bytes are not zero"));
        }
        let series_max = reader.u32()? as usize;
        let series_count = reader.u32()? as usize;
        if series_max == 0 || series_count > series_max {
            return Err(reader.malformed("series count is zero or beyond the cap"));
        }
        let mut history = LoadHistory::new(series_max);
        let mut previous: Option<SeriesKey> = None;
        for _ in 0..series_count {
            let key = decode_key(&mut reader)?;
            // Strictly increasing, as encode writes them: no duplicates.
            if previous.as_ref().is_some_and(|previous| *previous >= key) {
                return Err(reader.malformed("series keys out of order or repeated"));
            }
            let ring = decode_ring(&mut reader)?;
            previous = Some(key.clone());
            history.series.insert(key, ring);
        }
        if reader.at != body.len() {
            return Err(reader.malformed("bytes after the last series"));
        }
        Ok(history)
    }
}

/// Counts here are bounded by the ring sizes and the cap, far below u32.
fn to_u32(count: usize) -> u32 {
    u32::try_from(count).expect("count fits the file's u32")
}

fn encode_key(out: &mut Vec<u8>, key: &SeriesKey) {
    out.push(resource_code(key.resource));
    match &key.scope {
        Scope::Node => out.push(SCOPE_NODE),
        Scope::Shard(shard) => {
            out.push(SCOPE_SHARD);
            out.extend_from_slice(&shard.to_le_bytes());
        }
        Scope::Partition { topic, partition } => {
            out.push(SCOPE_PARTITION);
            // Topic names are at most 200 bytes; a longer one is cut at a
            // char boundary rather than writing an unreadable file.
            let mut len = topic.len().min(usize::from(u16::MAX));
            while !topic.is_char_boundary(len) {
                len -= 1;
            }
            out.extend_from_slice(&(len as u16).to_le_bytes());
            out.extend_from_slice(&topic.as_bytes()[..len]);
            out.extend_from_slice(&partition.to_le_bytes());
        }
    }
}

fn encode_ring(out: &mut Vec<u8>, ring: &LoadRing) {
    let slots = |out: &mut Vec<u8>, values: &std::collections::VecDeque<f32>, newest: i64| {
        out.extend_from_slice(&to_u32(values.len()).to_le_bytes());
        if !values.is_empty() {
            out.extend_from_slice(&newest.to_le_bytes());
            for value in values {
                out.extend_from_slice(&value.to_le_bytes());
            }
        }
    };
    slots(out, &ring.fine, ring.fine_newest_s);
    slots(out, &ring.coarse, ring.coarse_newest_minute);
    match ring.open {
        None => out.extend_from_slice(&0u32.to_le_bytes()),
        Some(open) => {
            out.extend_from_slice(&open.count.to_le_bytes());
            out.extend_from_slice(&open.minute.to_le_bytes());
            out.extend_from_slice(&open.sum.to_le_bytes());
        }
    }
}

fn decode_key(reader: &mut Reader<'_>) -> Result<SeriesKey, HistoryError> {
    let resource =
        resource_from_code(reader.u8()?).ok_or_else(|| reader.malformed("unknown resource"))?;
    let scope = match reader.u8()? {
        SCOPE_NODE => Scope::Node,
        SCOPE_SHARD => Scope::Shard(reader.u32()?),
        SCOPE_PARTITION => {
            let len = usize::from(reader.u16()?);
            let topic = std::str::from_utf8(reader.take(len)?)
                .map_err(|_| reader.malformed("topic is not UTF-8"))?
                .to_string();
            Scope::Partition {
                topic,
                partition: reader.u32()?,
            }
        }
        _ => return Err(reader.malformed("unknown scope")),
    };
    Ok(SeriesKey { resource, scope })
}

fn decode_ring(reader: &mut Reader<'_>) -> Result<LoadRing, HistoryError> {
    let (fine, fine_newest_s) = decode_slots(reader, FINE_SLOTS)?;
    let (coarse, coarse_newest_minute) = decode_slots(reader, COARSE_SLOTS)?;
    let open = match reader.u32()? {
        0 => None,
        count => Some(OpenMinute {
            count,
            minute: reader.i64()?,
            sum: reader.f64()?,
        }),
    };
    // What `push` guarantees, so every later push and read stays correct.
    let consistent = match open {
        None => fine.is_empty() && coarse.is_empty(),
        Some(open) => {
            !fine.is_empty()
                && open.count <= COARSE_STEP_S as u32
                && open.sum.is_finite()
                && open.minute == fine_newest_s.div_euclid(COARSE_STEP_S)
                && (coarse.is_empty() || coarse_newest_minute < open.minute)
        }
    };
    if !consistent {
        return Err(reader.malformed("ring newest times and open minute disagree"));
    }
    Ok(LoadRing {
        fine,
        fine_newest_s,
        coarse,
        coarse_newest_minute,
        open,
    })
}

fn decode_slots(
    reader: &mut Reader<'_>,
    slots_max: usize,
) -> Result<(std::collections::VecDeque<f32>, i64), HistoryError> {
    let len = reader.u32()? as usize;
    if len > slots_max {
        return Err(reader.malformed("more slots than the ring holds"));
    }
    if len == 0 {
        return Ok((Default::default(), 0));
    }
    let newest = reader.i64()?;
    let bytes = reader.take(len * 4)?;
    let values: std::collections::VecDeque<f32> = bytes
        .chunks_exact(4)
        .map(|chunk| f32::from_le_bytes(chunk.try_into().expect("4 bytes")))
        .collect();
    // NaN marks a gap; the newest slot is always observed.
    if values.iter().any(|value| value.is_infinite()) || values.back().is_some_and(|v| v.is_nan()) {
        return Err(reader.malformed("infinite slot or unobserved newest slot"));
    }
    Ok((values, newest))
}

/// A cursor over the checksummed body. Running out is `Malformed`: the
/// checksum already matched, so the length is what the writer wrote.
struct Reader<'a> {
    body: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn malformed(&self, what: &'static str) -> HistoryError {
        HistoryError::Malformed {
            offset: self.at,
            what,
        }
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], HistoryError> {
        let end = self
            .at
            .checked_add(len)
            .filter(|&end| end <= self.body.len())
            .ok_or_else(|| self.malformed("truncated"))?;
        let bytes = &self.body[self.at..end];
        self.at = end;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], HistoryError> {
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }

    fn u8(&mut self) -> Result<u8, HistoryError> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, HistoryError> {
        self.array().map(u16::from_le_bytes)
    }

    fn u32(&mut self) -> Result<u32, HistoryError> {
        self.array().map(u32::from_le_bytes)
    }

    fn i64(&mut self) -> Result<i64, HistoryError> {
        self.array().map(i64::from_le_bytes)
    }

    fn f64(&mut self) -> Result<f64, HistoryError> {
        self.array().map(f64::from_le_bytes)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn sample_history() -> LoadHistory {
        let mut history = LoadHistory::new(10);
        let keys = [
            SeriesKey::new(Resource::CpuBusy, Scope::Node),
            SeriesKey::new(Resource::Memory, Scope::Shard(1)),
            SeriesKey::new(
                Resource::MessagesIn,
                Scope::Partition {
                    topic: "orders".to_string(),
                    partition: 7,
                },
            ),
        ];
        for second in 0..200 {
            for (index, key) in keys.iter().enumerate() {
                // Every third series misses a stretch: gaps must survive.
                if index == 2 && (50..80).contains(&second) {
                    continue;
                }
                let value = (second * (index as i64 + 1)) as f64 * 0.25;
                history.record(1_000_000 + second, key, value).unwrap();
            }
        }
        history
    }

    #[test]
    fn round_trips_with_gaps_and_open_minutes() {
        let history = sample_history();
        let bytes = history.encode();
        let decoded = LoadHistory::decode(&bytes).unwrap();
        assert_eq!(decoded, history);
        assert_eq!(decoded.encode(), bytes);
        let (_, ring) = decoded
            .iter()
            .find(|(key, _)| key.scope.kind() == ScopeKind::Partition)
            .unwrap();
        assert_eq!(ring.fine_missing(), 30);
        assert!(ring.coarse_values().len() >= 2);
        assert_eq!(
            LoadHistory::decode(&LoadHistory::new(3).encode()),
            Ok(LoadHistory::new(3))
        );
    }

    #[test]
    fn every_single_bit_flip_is_refused() {
        let bytes = sample_history().encode();
        // Every byte, one bit each (rotating), keeps the test fast.
        for index in 0..bytes.len() {
            let mut corrupt = bytes.clone();
            corrupt[index] ^= 1 << (index % 8);
            let error = LoadHistory::decode(&corrupt).unwrap_err();
            assert!(
                matches!(
                    error,
                    HistoryError::Checksum { .. }
                        | HistoryError::BadMagic { .. }
                        | HistoryError::UnsupportedVersion { .. }
                ),
                "byte {index}: {error}"
            );
        }
    }

    #[test]
    fn every_torn_prefix_is_refused() {
        let bytes = sample_history().encode();
        for len in 0..bytes.len() {
            let error = LoadHistory::decode(&bytes[..len]).unwrap_err();
            assert!(
                matches!(
                    error,
                    HistoryError::TooShort { .. } | HistoryError::Checksum { .. }
                ),
                "{len} bytes: {error}"
            );
        }
    }

    #[test]
    fn foreign_and_future_files_say_so() {
        let mut bytes = sample_history().encode();
        assert_eq!(
            LoadHistory::decode(b"{\"topics\": {}} and more text"),
            Err(HistoryError::BadMagic { found: *b"{\"to" })
        );
        bytes[4] = 2;
        assert_eq!(
            LoadHistory::decode(&bytes),
            Err(HistoryError::UnsupportedVersion { found: 2 })
        );
        let message = LoadHistory::decode(&bytes[..10]).unwrap_err().to_string();
        assert!(message.contains("torn"), "{message}");
    }

    /// A body with a valid checksum but content no writer produces.
    fn with_crc(mut body: Vec<u8>) -> Vec<u8> {
        let crc = crc32c::crc32c(&body);
        body.extend_from_slice(&crc.to_le_bytes());
        body
    }

    #[test]
    fn checksummed_but_inconsistent_content_is_malformed() {
        let good = sample_history().encode();
        let body = good[..good.len() - CRC_BYTES].to_vec();
        let malformed = |body: Vec<u8>| match LoadHistory::decode(&with_crc(body)) {
            Err(HistoryError::Malformed { what, .. }) => what,
            other => panic!("expected malformed, got {other:?}"),
        };
        let mut extra = body.clone();
        extra.push(0);
        assert_eq!(malformed(extra), "bytes after the last series");
        let mut over_cap = body.clone();
        over_cap[8..12].copy_from_slice(&2u32.to_le_bytes()); // series_max 2 < 3
        assert_eq!(
            malformed(over_cap),
            "series count is zero or beyond the cap"
        );
        let mut bad_resource = body.clone();
        bad_resource[HEADER_BYTES] = 99;
        assert_eq!(malformed(bad_resource), "unknown resource");
        let mut truncated = body;
        truncated.truncate(truncated.len() - 3);
        assert_eq!(malformed(truncated), "truncated");
    }

    proptest! {
        #[test]
        fn any_recorded_history_round_trips(
            samples in prop::collection::vec((0u8..6, 0i64..200, -1e6f64..1e6), 0..400),
            series_max in 1usize..5,
        ) {
            let mut history = LoadHistory::new(series_max);
            let mut now_s = 1_700_000_000i64;
            for (series, step_s, value) in samples {
                now_s += step_s;
                let key = SeriesKey::new(Resource::ALL[usize::from(series)], Scope::Shard(u32::from(series)));
                history.record(now_s, &key, value).unwrap();
            }
            let bytes = history.encode();
            let decoded = LoadHistory::decode(&bytes).unwrap();
            prop_assert_eq!(&decoded, &history);
            prop_assert_eq!(decoded.encode(), bytes);
        }
    }
}

//! The header every generated message starts with: who sent it and when
//! it was meant to be sent and was sent (nanoseconds of the run's
//! [`Clock`](crate::clock::Clock)), so a consumer in the same run can
//! measure publish→deliver latency, corrected and uncorrected.

use bytes::{BufMut, Bytes, BytesMut};

/// Bytes of the header; messages must be at least this large.
pub const HEADER_BYTES: usize = 32;
const MAGIC: u32 = u32::from_le_bytes(*b"SPLG");

/// The decoded header of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Random per run: messages of other runs on the same topic are ignored.
    pub run_id: u32,
    pub seq: u64,
    pub intended_ns: u64,
    pub sent_ns: u64,
}

impl Stamp {
    /// The message: header, then `size - HEADER_BYTES` bytes of `filler`
    /// (which must be at least that long).
    pub fn encode(&self, size: usize, filler: &[u8]) -> Bytes {
        assert!(size >= HEADER_BYTES, "message size {size} < {HEADER_BYTES}");
        let mut b = BytesMut::with_capacity(size);
        b.put_u32_le(MAGIC);
        b.put_u32_le(self.run_id);
        b.put_u64_le(self.seq);
        b.put_u64_le(self.intended_ns);
        b.put_u64_le(self.sent_ns);
        b.put_slice(&filler[..size - HEADER_BYTES]);
        b.freeze()
    }

    /// The header of `message`, if it is one of ours.
    pub fn decode(message: &[u8]) -> Option<Stamp> {
        let h = message.get(..HEADER_BYTES)?;
        let u32_at = |i: usize| u32::from_le_bytes(h[i..i + 4].try_into().unwrap());
        let u64_at = |i: usize| u64::from_le_bytes(h[i..i + 8].try_into().unwrap());
        (u32_at(0) == MAGIC).then(|| Stamp {
            run_id: u32_at(4),
            seq: u64_at(8),
            intended_ns: u64_at(16),
            sent_ns: u64_at(24),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let s = Stamp {
            run_id: 9,
            seq: 1 << 40,
            intended_ns: 123,
            sent_ns: 456,
        };
        let filler = vec![0xab; 1024];
        let m = s.encode(1024, &filler);
        assert_eq!(m.len(), 1024);
        assert_eq!(Stamp::decode(&m), Some(s));
        assert_eq!(Stamp::decode(&filler), None);
        assert_eq!(Stamp::decode(&m[..10]), None);
    }
}

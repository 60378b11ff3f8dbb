//! Self-describing record values, shared with the crash tests (each uses
//! the part for its mode).
#![allow(dead_code)]

/// The value the crash test expects for `(appender, seq)`.
pub fn record_value(appender: u8, seq: u64) -> Vec<u8> {
    let len = 9 + (seq as usize * 37 + appender as usize * 11) % 1500;
    let mut v = Vec::with_capacity(len);
    v.push(appender);
    v.extend_from_slice(&seq.to_le_bytes());
    let mut x = seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ u64::from(appender);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.push(x as u8);
    }
    v
}

/// The record values of Raft data entry `index` written in `term` (raft mode).
pub fn raft_values(index: u64, term: u64) -> Vec<Vec<u8>> {
    let n = 1 + index % 5;
    (0..n)
        .map(|k| record_value(term as u8, index * 8 + k))
        .collect()
}

/// Digest of a data entry's record values, in order (length-delimited).
pub fn values_digest<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> u32 {
    values.into_iter().fold(0, |crc, v| {
        let crc = crc32c::crc32c_append(crc, &(v.len() as u32).to_le_bytes());
        crc32c::crc32c_append(crc, v)
    })
}

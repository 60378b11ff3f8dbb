//! Self-describing record values, shared with the crash test.

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

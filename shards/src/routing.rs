//! Which shard owns a topic-partition: a stable hash over the shard count.
//!
//! Stable across restarts and processes (CRC32C, not `std`'s randomised
//! hasher), so every shard and every node computes the same owner. Data
//! directories are per partition, not per shard, so restarting with another
//! shard count only changes which executor opens which directory.

/// The shard that owns `partition` of `topic` among `shard_count` shards.
pub fn owner_shard(topic: &str, partition: u32, shard_count: usize) -> usize {
    assert!(shard_count > 0, "at least one shard");
    let crc = crc32c::crc32c_append(crc32c::crc32c(topic.as_bytes()), &partition.to_le_bytes());
    // Spread with a multiplicative hash: CRC's low bits alone cluster for
    // consecutive partitions of one topic.
    let mixed = u64::from(crc).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32;
    (mixed % shard_count as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_and_in_range() {
        assert_eq!(owner_shard("orders", 3, 4), owner_shard("orders", 3, 4));
        for p in 0..100 {
            assert!(owner_shard("t", p, 3) < 3);
        }
        assert_eq!(owner_shard("anything", 7, 1), 0);
    }

    #[test]
    fn partitions_spread_over_shards() {
        let mut counts = [0usize; 2];
        for p in 0..64 {
            counts[owner_shard("events", p, 2)] += 1;
        }
        assert!(counts.iter().all(|&c| c >= 20), "{counts:?}");
    }
}

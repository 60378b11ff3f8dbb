//! The key-to-partition function, part of the protocol so that clients can
//! route keyed records to the partition leader themselves.

/// The partition a ProduceRequest with `key` goes to:
/// `crc32c(key) % partition_count` (CRC-32C, Castagnoli, as in iSCSI and
/// ext4; `crc32c(b"123456789") == 0xE3069283`). `None` when the topic has no
/// partitions.
pub fn partition_for_key(key: &[u8], partition_count: u32) -> Option<u32> {
    crc32c::crc32c(key).checked_rem(partition_count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uses_crc32c_castagnoli() {
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(
            partition_for_key(b"123456789", 1000),
            Some(0xE306_9283 % 1000)
        );
    }

    #[test]
    fn no_partitions_no_answer() {
        assert_eq!(partition_for_key(b"k", 0), None);
    }

    #[test]
    fn spreads_keys() {
        let mut counts = [0u32; 8];
        for i in 0..8000u32 {
            let p = partition_for_key(format!("user-{i}").as_bytes(), 8).unwrap();
            counts[p as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (800..1200).contains(&c)),
            "{counts:?}"
        );
    }
}

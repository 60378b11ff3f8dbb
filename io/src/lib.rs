//! Sprawl's I/O substrate, shared by every shard.
//!
//! - [`dma_pool`]: 4 KiB-aligned direct-I/O buffers reused from a per-shard pool.
//! - [`memlock`]: sizes glommio's `io_memory` to `RLIMIT_MEMLOCK` at start-up.
//! - [`warmup`]: the per-executor warm-up that sidesteps glommio's iopoll-probe trap.
//! - [`device_limit`]: raw `io-uring` sequential write/read probe: the physical
//!   limit every log benchmark is measured against.
//! - [`machine`]: the machine details every benchmark report records.

pub mod device_limit;
pub mod dma_pool;
pub mod machine;
pub mod memlock;
pub mod quic;
pub mod warmup;

/// Direct-I/O alignment used everywhere in Sprawl (offsets, lengths, buffers).
pub const DIO_ALIGN: usize = 4096;

/// Rounds `value` up to the next multiple of [`DIO_ALIGN`].
pub const fn align_up(value: u64) -> u64 {
    (value + DIO_ALIGN as u64 - 1) & !(DIO_ALIGN as u64 - 1)
}

/// Rounds `value` down to a multiple of [`DIO_ALIGN`].
pub const fn align_down(value: u64) -> u64 {
    value & !(DIO_ALIGN as u64 - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment_helpers() {
        assert_eq!(align_up(0), 0);
        assert_eq!(align_up(1), 4096);
        assert_eq!(align_up(4096), 4096);
        assert_eq!(align_down(4097), 4096);
        assert_eq!(align_down(4095), 0);
    }
}

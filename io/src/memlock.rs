//! Sizing glommio's registered `io_memory` to `RLIMIT_MEMLOCK`.
//!
//! glommio registers `io_memory` bytes per executor with io_uring; the kernel
//! pins them and charges them to `RLIMIT_MEMLOCK`. Measured here: below about
//! 3 × io_memory per executor the registration silently fails and every
//! buffer falls back to the heap, and below 512 KiB glommio cannot create its
//! rings at all. So Sprawl reads the limit first and sizes io_memory to it.

use thiserror::Error;

/// glommio 0.9's floor: with less locked memory the rings cannot be set up.
pub const MEMLOCK_FLOOR_BYTES: u64 = 512 * 1024;

/// Memlock consumed per byte of io_memory, per executor (measured).
const MEMLOCK_PER_IO_MEMORY: u64 = 3;

/// Smallest io_memory worth registering.
const IO_MEMORY_MIN_BYTES: usize = 64 * 1024;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum MemlockError {
    #[error(
        "RLIMIT_MEMLOCK is {limit_kib} KiB but glommio needs at least {floor_kib} KiB: \
         run `ulimit -l 65536` (or set LimitMEMLOCK=64M in the systemd unit) and start again"
    )]
    BelowFloor { limit_kib: u64, floor_kib: u64 },
}

/// The memlock limit as seen by this process (`None` = unlimited).
pub fn current_memlock_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Memlock).current
}

/// Whether the kernel exempts this process from the memlock limit (root).
pub fn memlock_exempt() -> bool {
    rustix::process::geteuid().is_root()
}

/// io_memory for each of `executors` executors, at most `wanted_bytes`, fitting
/// `limit` (`None` = unlimited). `exempt` processes (root) get what they want.
pub fn io_memory_for(
    limit: Option<u64>,
    exempt: bool,
    executors: usize,
    wanted_bytes: usize,
) -> Result<usize, MemlockError> {
    let Some(limit) = limit.filter(|_| !exempt) else {
        return Ok(wanted_bytes);
    };
    if limit < MEMLOCK_FLOOR_BYTES {
        return Err(MemlockError::BelowFloor {
            limit_kib: limit / 1024,
            floor_kib: MEMLOCK_FLOOR_BYTES / 1024,
        });
    }
    let per_executor = limit / (MEMLOCK_PER_IO_MEMORY * executors.max(1) as u64);
    let fitted = (per_executor as usize).min(wanted_bytes);
    // Round down to whole pages; never below the minimum (glommio then just
    // serves buffers from the heap, which is slower but correct).
    Ok((fitted & !4095).max(IO_MEMORY_MIN_BYTES))
}

/// [`io_memory_for`] applied to this process's limit, logging the decision.
pub fn io_memory_for_this_process(
    executors: usize,
    wanted_bytes: usize,
) -> Result<usize, MemlockError> {
    let limit = current_memlock_limit();
    let exempt = memlock_exempt();
    let io_memory = io_memory_for(limit, exempt, executors, wanted_bytes)?;
    tracing::debug!(
        ?limit,
        exempt,
        executors,
        io_memory,
        "sized glommio io_memory"
    );
    Ok(io_memory)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_floor_is_a_one_line_error_naming_the_fix() {
        let err = io_memory_for(Some(64 * 1024), false, 2, 8 << 20).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("64 KiB"), "{msg}");
        assert!(msg.contains("ulimit -l"), "{msg}");
        assert!(!msg.contains('\n'));
    }

    #[test]
    fn root_and_unlimited_get_what_they_ask() {
        assert_eq!(io_memory_for(Some(1024), true, 2, 8 << 20), Ok(8 << 20));
        assert_eq!(io_memory_for(None, false, 2, 8 << 20), Ok(8 << 20));
    }

    #[test]
    fn limited_processes_fit_three_times_io_memory_per_executor() {
        // 8 MiB limit, 2 executors: 8 MiB / 6 rounded down to pages.
        let got = io_memory_for(Some(8 << 20), false, 2, 64 << 20).unwrap();
        assert!(got * 3 * 2 <= 8 << 20);
        assert!(got > 1 << 20);
        assert_eq!(got % 4096, 0);
        // Small wants stay small.
        assert_eq!(io_memory_for(Some(8 << 20), false, 1, 1 << 20), Ok(1 << 20));
    }
}

//! The device limit: what the disk does for plain sequential O_DIRECT I/O
//! through raw io_uring, with no log, no executor and no framing on top.
//!
//! Every storage benchmark runs this probe in the same invocation and prints
//! its own numbers as a fraction of it, because this machine is shared and
//! noisy: only ratios measured side by side mean anything.

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use io_uring::{opcode, types, IoUring};

/// What to probe.
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    /// Directory on the disk under test; the probe file is created and removed there.
    pub dir: PathBuf,
    /// Total bytes written, then read back.
    pub total_bytes: u64,
    /// Size of each write/read (multiple of 4 KiB).
    pub block_bytes: usize,
    /// Writes/reads kept in flight.
    pub queue_depth: usize,
    /// fdatasync after every this many bytes written (0 = only at the end).
    pub sync_every_bytes: u64,
}

/// Measured bandwidths.
#[derive(Debug, Clone, Copy)]
pub struct ProbeResult {
    pub write_bytes_per_sec: f64,
    pub read_bytes_per_sec: f64,
    pub write_elapsed: Duration,
    pub read_elapsed: Duration,
}

impl ProbeResult {
    pub fn write_mb_per_sec(&self) -> f64 {
        self.write_bytes_per_sec / 1e6
    }
    pub fn read_mb_per_sec(&self) -> f64 {
        self.read_bytes_per_sec / 1e6
    }
}

/// A 4 KiB-aligned heap buffer for the probe's own I/O.
struct ProbeBuffer {
    ptr: *mut u8,
    layout: std::alloc::Layout,
}

impl ProbeBuffer {
    fn new(len: usize) -> Self {
        let layout = std::alloc::Layout::from_size_align(len, crate::DIO_ALIGN).expect("layout");
        // SAFETY: layout has non-zero size (checked by the caller) and a valid alignment.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        assert!(!ptr.is_null(), "out of memory allocating probe buffer");
        Self { ptr, layout }
    }
}

impl Drop for ProbeBuffer {
    fn drop(&mut self) {
        // SAFETY: ptr was allocated with exactly this layout.
        unsafe { std::alloc::dealloc(self.ptr, self.layout) }
    }
}

/// Runs the sequential write then read probe.
pub fn run(cfg: &ProbeConfig) -> std::io::Result<ProbeResult> {
    assert!(cfg.block_bytes > 0 && cfg.block_bytes % crate::DIO_ALIGN == 0);
    assert!(cfg.queue_depth > 0);
    let blocks = cfg.total_bytes.div_ceil(cfg.block_bytes as u64);
    let total = blocks * cfg.block_bytes as u64;
    std::fs::create_dir_all(&cfg.dir)?;
    let path = cfg
        .dir
        .join(format!(".device-limit-probe.{}", std::process::id()));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(&path)?;
    let result = (|| {
        // Pre-allocate, as the log does for its segments.
        rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, total)?;
        file.sync_all()?;
        let fd = types::Fd(file.as_raw_fd());
        let mut ring = IoUring::new((cfg.queue_depth as u32 + 1).next_power_of_two())?;
        let buffers: Vec<ProbeBuffer> = (0..cfg.queue_depth)
            .map(|i| {
                let b = ProbeBuffer::new(cfg.block_bytes);
                // SAFETY: the buffer is block_bytes long and exclusively ours.
                unsafe { std::ptr::write_bytes(b.ptr, 0xa5 ^ i as u8, cfg.block_bytes) };
                b
            })
            .collect();

        let start = Instant::now();
        let sync_every_blocks = if cfg.sync_every_bytes == 0 {
            blocks
        } else {
            cfg.sync_every_bytes.div_ceil(cfg.block_bytes as u64).max(1)
        };
        let mut next = 0u64;
        while next < blocks {
            let group_end = (next + sync_every_blocks).min(blocks);
            pump(&mut ring, &buffers, cfg, fd, next, group_end, true)?;
            let sync = opcode::Fsync::new(fd)
                .flags(types::FsyncFlags::DATASYNC)
                .build()
                .user_data(u64::MAX);
            submit_one_and_wait(&mut ring, sync)?;
            next = group_end;
        }
        let write_elapsed = start.elapsed();

        let start = Instant::now();
        pump(&mut ring, &buffers, cfg, fd, 0, blocks, false)?;
        let read_elapsed = start.elapsed();
        Ok(ProbeResult {
            write_bytes_per_sec: total as f64 / write_elapsed.as_secs_f64(),
            read_bytes_per_sec: total as f64 / read_elapsed.as_secs_f64(),
            write_elapsed,
            read_elapsed,
        })
    })();
    let _ = std::fs::remove_file(&path);
    result
}

/// Keeps `queue_depth` block writes (or reads) in flight over blocks `[first, end)`.
fn pump(
    ring: &mut IoUring,
    buffers: &[ProbeBuffer],
    cfg: &ProbeConfig,
    fd: types::Fd,
    first: u64,
    end: u64,
    write: bool,
) -> std::io::Result<()> {
    let mut next = first;
    let mut in_flight = 0usize;
    let mut idle: Vec<usize> = (0..buffers.len()).collect();
    while next < end || in_flight > 0 {
        while next < end {
            let Some(slot) = idle.pop() else { break };
            let buf = &buffers[slot];
            let offset = next * cfg.block_bytes as u64;
            let entry = if write {
                opcode::Write::new(fd, buf.ptr, cfg.block_bytes as u32)
                    .offset(offset)
                    .build()
            } else {
                opcode::Read::new(fd, buf.ptr, cfg.block_bytes as u32)
                    .offset(offset)
                    .build()
            }
            .user_data(slot as u64);
            // SAFETY: the buffer stays alive and untouched until its completion
            // is reaped below (it only returns to `idle` then).
            unsafe { ring.submission().push(&entry) }.map_err(std::io::Error::other)?;
            next += 1;
            in_flight += 1;
        }
        ring.submit_and_wait(1)?;
        for cqe in ring.completion() {
            if cqe.result() < 0 {
                return Err(std::io::Error::from_raw_os_error(-cqe.result()));
            }
            if cqe.result() as usize != cfg.block_bytes {
                return Err(std::io::Error::other(format!(
                    "short {} of {} bytes",
                    if write { "write" } else { "read" },
                    cqe.result()
                )));
            }
            idle.push(cqe.user_data() as usize);
            in_flight -= 1;
        }
    }
    Ok(())
}

fn submit_one_and_wait(ring: &mut IoUring, entry: io_uring::squeue::Entry) -> std::io::Result<()> {
    // SAFETY: the entry references no memory.
    unsafe { ring.submission().push(&entry) }.map_err(std::io::Error::other)?;
    ring.submit_and_wait(1)?;
    let cqe = ring
        .completion()
        .next()
        .ok_or_else(|| std::io::Error::other("no completion"))?;
    if cqe.result() < 0 {
        return Err(std::io::Error::from_raw_os_error(-cqe.result()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_measures_both_directions() {
        let dir = tempfile::tempdir().unwrap();
        let r = run(&ProbeConfig {
            dir: dir.path().to_path_buf(),
            total_bytes: 8 << 20,
            block_bytes: 1 << 20,
            queue_depth: 2,
            sync_every_bytes: 4 << 20,
        })
        .unwrap();
        assert!(r.write_bytes_per_sec > 0.0 && r.read_bytes_per_sec > 0.0);
        assert!(
            std::fs::read_dir(dir.path()).unwrap().next().is_none(),
            "probe file removed"
        );
    }
}

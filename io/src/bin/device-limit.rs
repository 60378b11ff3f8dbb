//! `device-limit`: the raw io_uring O_DIRECT bandwidth of a disk.

use anyhow::Context;
use clap::Parser;
use sprawl_io::device_limit::{run, ProbeConfig};

/// Sequential O_DIRECT appends then reads through raw io_uring, printing MB/s.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Directory on the disk to measure.
    #[arg(long, default_value = "./data")]
    dir: std::path::PathBuf,
    /// MiB to write and read back.
    #[arg(long, default_value_t = 1024)]
    size_mib: u64,
    /// Block size in KiB (multiple of 4).
    #[arg(long, default_value_t = 1024)]
    block_kib: usize,
    /// Writes/reads in flight.
    #[arg(long, default_value_t = 4)]
    queue_depth: usize,
    /// fdatasync every this many MiB written (0 = once at the end).
    #[arg(long, default_value_t = 1)]
    sync_every_mib: u64,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let cfg = ProbeConfig {
        dir: a.dir.clone(),
        total_bytes: a.size_mib << 20,
        block_bytes: a.block_kib << 10,
        queue_depth: a.queue_depth,
        sync_every_bytes: a.sync_every_mib << 20,
    };
    let r = run(&cfg).with_context(|| format!("probing {}", a.dir.display()))?;
    println!(
        "device-limit dir={} size={}MiB block={}KiB qd={} sync_every={}MiB: write {:.1} MB/s, read {:.1} MB/s",
        a.dir.display(),
        a.size_mib,
        a.block_kib,
        a.queue_depth,
        a.sync_every_mib,
        r.write_mb_per_sec(),
        r.read_mb_per_sec()
    );
    Ok(())
}

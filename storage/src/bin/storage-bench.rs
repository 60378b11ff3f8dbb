//! `storage-bench`: the partition log against the device limit, in one run.
//!
//! Runs the raw io_uring `device-limit` probe first, then appends 1 KiB
//! records in batches of 1, 64 and 1000 with fsync=always (group commit) and
//! fsync=never, reads everything back cold (from disk) and hot (from the
//! ring), and times recovery of the written log. Prints each result as a ratio
//! to the device limit measured minutes earlier on the same disk.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::BytesMut;
use clap::Parser;
use hdrhistogram::Histogram;
use sprawl_io::device_limit::{self, ProbeConfig, ProbeResult};
use sprawl_io::dma_pool::DmaBufPool;
use sprawl_storage::{BatchBuilder, BatchView, FsyncPolicy, LogConfig, PartitionLog, Record};

#[derive(Parser, Debug, Clone)]
#[command(
    version,
    about = "Partition log benchmark, reported against the device limit"
)]
struct Args {
    /// Directory on the disk to measure (emptied of bench files afterwards).
    #[arg(long, default_value = "./data/storage-bench")]
    dir: PathBuf,
    /// MiB appended per workload with batches of 64 and 1000.
    #[arg(long, default_value_t = 1024)]
    size_mib: u64,
    /// Time limit for each workload (the batch-1 ones hit it first).
    #[arg(long, default_value_t = 10)]
    seconds_max: u64,
    /// Record value size.
    #[arg(long, default_value_t = 1024)]
    record_bytes: usize,
    /// Concurrent appenders per workload: what many producers on one
    /// partition look like to the log (group commit needs concurrency).
    /// Default: 32 for batches up to 64 records, 8 for larger ones.
    #[arg(long)]
    appenders: Option<usize>,
    /// Write the report (report.md) into this directory.
    #[arg(long)]
    report: Option<PathBuf>,
}

struct AppendResult {
    name: String,
    records: u64,
    bytes: u64,
    elapsed: Duration,
    ack_us: Histogram<u64>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    let probe_cfg = ProbeConfig {
        dir: args.dir.clone(),
        total_bytes: (args.size_mib << 20).min(512 << 20),
        block_bytes: 1 << 20,
        queue_depth: 8,
        sync_every_bytes: 8 << 20,
    };
    eprintln!("device-limit probe (median of 3): {probe_cfg:?}");
    let device = median_probe(&probe_cfg)?;
    eprintln!(
        "device limit: write {:.0} MB/s, read {:.0} MB/s",
        device.write_mb_per_sec(),
        device.read_mb_per_sec()
    );
    let a = args.clone();
    let report = glommio::LocalExecutorBuilder::default()
        .io_memory(sprawl_io::memlock::io_memory_for_this_process(1, 32 << 20)?)
        .spawn(move || async move { run_all(a, device).await })
        .map_err(|e| anyhow::anyhow!("starting executor: {e}"))?
        .join()
        .map_err(|e| anyhow::anyhow!("executor: {e:?}"))??;
    println!("{report}");
    if let Some(dir) = &args.report {
        std::fs::create_dir_all(dir)?;
        let mut md = String::new();
        writeln!(md, "# storage-bench\n")?;
        writeln!(
            md,
            "Command: `{}`\n",
            std::env::args().collect::<Vec<_>>().join(" ")
        )?;
        writeln!(
            md,
            "## Machine\n\n{}\n",
            sprawl_io::machine::Machine::collect(&args.dir).to_markdown()
        )?;
        writeln!(md, "## Results\n\n{report}")?;
        std::fs::write(dir.join("report.md"), md)?;
        eprintln!("wrote {}", dir.join("report.md").display());
    }
    Ok(())
}

/// The probe is as noisy as everything else here: run it three times and
/// take the median of each direction.
fn median_probe(cfg: &ProbeConfig) -> anyhow::Result<ProbeResult> {
    let mut runs = Vec::new();
    for _ in 0..3 {
        runs.push(device_limit::run(cfg).context("device-limit probe")?);
    }
    let mut writes: Vec<f64> = runs.iter().map(|r| r.write_bytes_per_sec).collect();
    let mut reads: Vec<f64> = runs.iter().map(|r| r.read_bytes_per_sec).collect();
    writes.sort_by(f64::total_cmp);
    reads.sort_by(f64::total_cmp);
    Ok(ProbeResult {
        write_bytes_per_sec: writes[1],
        read_bytes_per_sec: reads[1],
        ..runs[1]
    })
}

fn encode_batch(records: usize, record_bytes: usize) -> BytesMut {
    let value = vec![0xabu8; record_bytes];
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut b = BatchBuilder::with_capacity(records * (record_bytes + 32) + 64);
    for _ in 0..records {
        b.push(&Record {
            timestamp_ms: now,
            key: None,
            value: &value,
            headers: &[],
        });
    }
    BytesMut::from(&b.finish()[..])
}

async fn append_workload(
    dir: &Path,
    name: &str,
    fsync: FsyncPolicy,
    batch_records: usize,
    args: &Args,
    pool: &Rc<DmaBufPool>,
) -> anyhow::Result<AppendResult> {
    let _ = std::fs::remove_dir_all(dir);
    let config = LogConfig {
        fsync,
        ring_bytes: 64 << 20,
        ..LogConfig::default()
    };
    let log = Rc::new(PartitionLog::open(dir, config, pool.clone()).await?);
    let batch = encode_batch(batch_records, args.record_bytes);
    let bytes_target = args.size_mib << 20;
    let deadline = Instant::now() + Duration::from_secs(args.seconds_max);
    let start = Instant::now();
    let appenders = args
        .appenders
        .unwrap_or(if batch_records <= 64 { 32 } else { 8 });
    let tasks: Vec<_> = (0..appenders)
        .map(|_| {
            let log = log.clone();
            let batch = batch.clone();
            glommio::spawn_local(async move {
                let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
                let mut appended = 0u64;
                while Instant::now() < deadline && log.size_bytes() < bytes_target {
                    let t = Instant::now();
                    // The copy stands in for the batch arriving from the network.
                    log.append(batch.clone()).await?;
                    hist.record(t.elapsed().as_micros() as u64).ok();
                    appended += 1;
                }
                anyhow::Ok((hist, appended))
            })
        })
        .collect();
    let mut ack_us = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    let mut batches = 0;
    for t in tasks {
        let (h, n) = t.await?;
        ack_us.add(h)?;
        batches += n;
    }
    let elapsed = start.elapsed();
    eprintln!("  {:?}", log.stats());
    log.close().await?;
    Ok(AppendResult {
        name: name.to_string(),
        records: batches * batch_records as u64,
        bytes: batches * batch.len() as u64,
        elapsed,
        ack_us,
    })
}

async fn run_all(args: Args, device: ProbeResult) -> anyhow::Result<String> {
    sprawl_io::warmup::warm_up_dir(&args.dir).await?;
    let pool = DmaBufPool::new(64 << 20);
    let mut out = String::new();
    writeln!(
        out,
        "Device limit (raw io_uring, O_DIRECT, 1 MiB blocks, QD 8, fdatasync every 8 MiB, \
         median of 3 runs of 512 MiB): write {:.0} MB/s, read {:.0} MB/s\n",
        device.write_mb_per_sec(),
        device.read_mb_per_sec()
    )?;
    writeln!(
        out,
        "| workload | records/s | MB/s | of device write | ack p50 | ack p99 | ack p99.9 |"
    )?;
    writeln!(out, "|---|---:|---:|---:|---:|---:|---:|")?;
    let mut big_log = None;
    for (fsync, fname) in [
        (FsyncPolicy::Always, "always"),
        (FsyncPolicy::Never, "never"),
    ] {
        for batch in [1usize, 64, 1000] {
            let name = format!("append batch={batch} fsync={fname}");
            let dir = args.dir.join(format!("append-{batch}-{fname}"));
            eprintln!("running {name} ...");
            let r = append_workload(&dir, &name, fsync, batch, &args, &pool).await?;
            let mbps = r.bytes as f64 / r.elapsed.as_secs_f64() / 1e6;
            writeln!(
                out,
                "| {} | {:.0} | {:.0} | {:.0}% | {:.2} ms | {:.2} ms | {:.2} ms |",
                r.name,
                r.records as f64 / r.elapsed.as_secs_f64(),
                mbps,
                100.0 * mbps / device.write_mb_per_sec(),
                r.ack_us.value_at_quantile(0.5) as f64 / 1000.0,
                r.ack_us.value_at_quantile(0.99) as f64 / 1000.0,
                r.ack_us.value_at_quantile(0.999) as f64 / 1000.0,
            )?;
            if batch == 1000 && fsync == FsyncPolicy::Always {
                big_log = Some((dir, r.bytes));
            } else {
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
    }
    let (dir, bytes) = big_log.expect("batch-1000 log");
    // Recovery: reopen the log just written (index-driven, not a full scan).
    let config = LogConfig {
        ring_bytes: 64 << 20,
        ..LogConfig::default()
    };
    let t = Instant::now();
    let (log, report) = PartitionLog::open_with_report(&dir, config, pool.clone()).await?;
    let recovery = t.elapsed();
    writeln!(
        out,
        "\nRecovery of a {:.2} GiB log ({} segments): opened in {:.1} ms, scanned {} KiB of tail.\n",
        bytes as f64 / (1u64 << 30) as f64,
        report.segments,
        recovery.as_secs_f64() * 1e3,
        report.tail_bytes_scanned >> 10
    )?;
    // Cold read: the ring is empty after reopen, so every byte comes from disk.
    let t = Instant::now();
    let (mut next, mut read_bytes, mut records) = (0u64, 0u64, 0u64);
    loop {
        let f = log.read(next, 4 << 20).await?;
        let Some(last) = f.batches.last() else { break };
        // The log verified every CRC; the bench only counts.
        next = sprawl_storage::batch::peek_header(last)?.next_offset();
        read_bytes += f.batches.iter().map(|b| b.len() as u64).sum::<u64>();
        records += f
            .batches
            .iter()
            .map(|b| {
                u64::from(
                    sprawl_storage::batch::peek_header(b)
                        .unwrap()
                        .record_count(),
                )
            })
            .sum::<u64>();
    }
    let cold = t.elapsed();
    let cold_mbps = read_bytes as f64 / cold.as_secs_f64() / 1e6;
    writeln!(out, "| read | records/s | MB/s | of device read |")?;
    writeln!(out, "|---|---:|---:|---:|")?;
    writeln!(
        out,
        "| cold sequential (disk, CRC-checked) | {:.0} | {:.0} | {:.0}% |",
        records as f64 / cold.as_secs_f64(),
        cold_mbps,
        100.0 * cold_mbps / device.read_mb_per_sec()
    )?;
    drop(log);
    let _ = std::fs::remove_dir_all(&dir);
    // Hot read: a tail reader served by the ring, decoding every record.
    let hot_dir = args.dir.join("hot");
    let _ = std::fs::remove_dir_all(&hot_dir);
    let log = PartitionLog::open(
        &hot_dir,
        LogConfig {
            fsync: FsyncPolicy::Never,
            ring_bytes: 64 << 20,
            ..LogConfig::default()
        },
        pool.clone(),
    )
    .await?;
    let batch = encode_batch(64, args.record_bytes);
    while log.ring_bytes() + batch.len() <= 60 << 20 {
        log.append(batch.clone()).await?;
    }
    let end = log.offsets().high_watermark;
    let t = Instant::now();
    let (mut next, mut records, mut value_bytes) = (0u64, 0u64, 0u64);
    while next < end {
        let f = log.read(next, 1 << 20).await?;
        for b in &f.batches {
            let view = BatchView::parse_exact(b)?;
            for r in view.records() {
                value_bytes += r?.value.len() as u64;
                records += 1;
            }
            next = view.header().next_offset();
        }
    }
    let hot = t.elapsed();
    writeln!(
        out,
        "| hot tail (ring, every record decoded) | {:.0} | {:.0} | - |",
        records as f64 / hot.as_secs_f64(),
        value_bytes as f64 / hot.as_secs_f64() / 1e6
    )?;
    drop(log);
    let _ = std::fs::remove_dir_all(&hot_dir);
    Ok(out)
}

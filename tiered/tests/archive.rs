//! The archive against a real S3 server (SeaweedFS `weed mini`, one per
//! test, on free ports): upload + verification, ranged reads, manifests,
//! multipart, an S3 crash mid-upload, corruption, listing, outages, a full
//! queue, and a glommio shard awaiting it all.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::executor::block_on;
use minio::s3::builders::ObjectContent;
use minio::s3::creds::StaticProvider;
use minio::s3::response_traits::{HasEtagFromHeaders, HasS3Fields};
use minio::s3::types::S3Api;
use minio::s3::{MinioClient, MinioClientBuilder};
use sprawl_tiered::{
    Archive, ArchiveError, ArchiveHandle, Manifest, ManifestSegment, SegmentFileKind, SegmentFiles,
};
use support::{pattern, Weed};

/// A segment's three files written to `dir`, and their contents.
struct LocalSegment {
    files: SegmentFiles,
    log: Vec<u8>,
    index: Vec<u8>,
    timeindex: Vec<u8>,
}

fn write_segment(dir: &Path, base: u64, log_bytes: usize, seed: u64) -> LocalSegment {
    let files = SegmentFiles::in_dir(dir, base);
    let seg = LocalSegment {
        log: pattern(seed, log_bytes),
        index: pattern(seed + 1, 8 * 512),
        // An empty time index is legal (a segment sealed by size before its
        // first time-index entry): empty objects must work.
        timeindex: Vec::new(),
        files,
    };
    std::fs::write(&seg.files.log, &seg.log).unwrap();
    std::fs::write(&seg.files.index, &seg.index).unwrap();
    std::fs::write(&seg.files.timeindex, &seg.timeindex).unwrap();
    seg
}

fn manifest_entry(base: u64, next: u64, a: &sprawl_tiered::ArchivedSegment) -> ManifestSegment {
    ManifestSegment {
        base_offset: base,
        next_offset: next,
        first_timestamp_ms: Some(1_700_000_000_000),
        max_timestamp_ms: Some(1_700_000_000_999),
        log_bytes: a.log_bytes,
        log_crc32c: a.log_crc32c,
        index_bytes: a.index_bytes,
        timeindex_bytes: a.timeindex_bytes,
    }
}

/// The S3 server seen directly (not through the archive), to look at and
/// tamper with what it stores.
fn direct(weed: &Weed) -> (MinioClient, tokio::runtime::Runtime) {
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
    (client, rt)
}

fn start(weed: &Weed, bucket: &str) -> ArchiveHandle {
    Archive::start(weed.config(bucket, "sprawl")).expect("archive starts against weed")
}

#[test]
fn upload_verify_ranged_get_and_manifest_round_trip() {
    let weed = Weed::start();
    let dir = tempfile::tempdir().unwrap();
    let archive = start(&weed, "roundtrip");
    let seg = write_segment(dir.path(), 1000, 3 << 20, 42);

    let archived = block_on(archive.upload_segment("orders", 2, 1000, seg.files.clone())).unwrap();
    assert_eq!(archived.base_offset, 1000);
    assert_eq!(archived.log_bytes, seg.log.len() as u64);
    assert_eq!(archived.log_crc32c, crc32c::crc32c(&seg.log));
    assert_eq!(archived.index_bytes, seg.index.len() as u64);
    assert_eq!(archived.timeindex_bytes, 0);

    // Ranged reads are byte-exact, pread-like at the end.
    let get = |kind, offset: u64, len: u64| {
        block_on(archive.get_range("orders", 2, 1000, kind, offset, len)).unwrap()
    };
    let n = seg.log.len() as u64;
    for (offset, len) in [
        (0, 1),
        (0, 4096),
        (12_345, 1 << 20),
        (n - 100, 100),
        (n - 10, 50),
    ] {
        let got = get(SegmentFileKind::Log, offset, len);
        let end = (offset + len).min(n) as usize;
        assert_eq!(
            got,
            Bytes::copy_from_slice(&seg.log[offset as usize..end]),
            "log range {offset}+{len}"
        );
    }
    assert!(
        get(SegmentFileKind::Log, n, 10).is_empty(),
        "nothing from the end on"
    );
    assert!(get(SegmentFileKind::Log, 5, 0).is_empty());
    assert_eq!(get(SegmentFileKind::Index, 8, 16), seg.index[8..24]);
    let missing = block_on(archive.get_range("orders", 2, 999, SegmentFileKind::Log, 0, 1));
    assert!(
        matches!(&missing, Err(ArchiveError::NotFound { object }) if object.ends_with("orders/2/00000000000000000999.log")),
        "{missing:?}"
    );

    // Manifest: none yet, then exactly what was written.
    assert_eq!(block_on(archive.read_manifest("orders", 2)).unwrap(), None);
    let mut manifest = Manifest {
        log_start_offset: 1000,
        ..Default::default()
    };
    manifest.upsert(manifest_entry(1000, 1500, &archived));
    block_on(archive.write_manifest("orders", 2, &manifest)).unwrap();
    assert_eq!(
        block_on(archive.read_manifest("orders", 2)).unwrap(),
        Some(manifest.clone())
    );
    block_on(archive.verify_segment("orders", 2, &manifest.segments[0])).unwrap();

    // A manifest breaking the invariant is refused before it is sent.
    let mut bad = manifest.clone();
    bad.segments.push(bad.segments[0]);
    let err = block_on(archive.write_manifest("orders", 2, &bad)).unwrap_err();
    assert!(matches!(err, ArchiveError::InvalidManifest { .. }), "{err}");

    // Delete: objects gone, reads say so.
    block_on(archive.delete_segment("orders", 2, 1000)).unwrap();
    let gone = block_on(archive.get_range("orders", 2, 1000, SegmentFileKind::Log, 0, 1));
    assert!(
        matches!(gone, Err(ArchiveError::NotFound { .. })),
        "{gone:?}"
    );
    block_on(archive.delete_segment("orders", 2, 1000)).expect("deleting twice is fine");

    let stats = archive.stats();
    assert_eq!(stats.op(sprawl_tiered::Op::UploadSegment).requests, 1);
    assert_eq!(stats.op(sprawl_tiered::Op::GetRange).errors, 2);
    assert!(stats.bytes_up >= n && stats.bytes_down >= n, "{stats:?}");
    assert_eq!(stats.upload_latency_us.len(), 1);
    assert_eq!(stats.queue_depth, 0);

    // What SeaweedFS says about the CRC32C of a single-part object, asked
    // with x-amz-checksum-mode (printed for the record; verification reads
    // the object back and does not depend on it).
    let (client, rt) = direct(&weed);
    let key = archive.manifest_key("orders", 2);
    let mut checksum_mode = minio::s3::multimap_ext::Multimap::new();
    checksum_mode.insert("x-amz-checksum-mode".into(), "ENABLED".into());
    let head = rt
        .block_on(
            client
                .stat_object("roundtrip", key.as_str())
                .unwrap()
                .extra_headers(Some(checksum_mode))
                .build()
                .send(),
        )
        .unwrap();
    let checksum_headers: Vec<_> = head
        .headers()
        .iter()
        .filter(|(k, _)| k.as_str().starts_with("x-amz-checksum"))
        .collect();
    eprintln!("HEAD checksum headers of a single-part object: {checksum_headers:?}");
}

#[test]
fn a_40_mib_segment_goes_up_multipart_and_verifies() {
    let weed = Weed::start();
    let dir = tempfile::tempdir().unwrap();
    let archive = start(&weed, "multipart");
    let seg = write_segment(dir.path(), 0, 40 << 20, 7);

    let archived = block_on(archive.upload_segment("big", 0, 0, seg.files.clone())).unwrap();
    assert_eq!(archived.log_bytes, 40 << 20);
    assert_eq!(archived.log_crc32c, crc32c::crc32c(&seg.log));

    // A multipart object's ETag is "<md5 of part md5s>-<parts>": 40 MiB in
    // 16 MiB parts is 3 parts.
    let (client, rt) = direct(&weed);
    let key = archive.segment_key("big", 0, 0, SegmentFileKind::Log);
    let head = rt
        .block_on(
            client
                .stat_object("multipart", key.as_str())
                .unwrap()
                .build()
                .send(),
        )
        .unwrap();
    let etag = head.etag().unwrap().to_string();
    assert!(
        etag.ends_with("-3"),
        "multipart ETag expected, got {etag:?}"
    );
    assert_eq!(head.size().unwrap(), 40 << 20);

    // Reads across part boundaries are byte-exact.
    let boundary = 16u64 << 20;
    let got = block_on(archive.get_range("big", 0, 0, SegmentFileKind::Log, boundary - 1000, 5000))
        .unwrap();
    assert_eq!(
        got,
        seg.log[(boundary - 1000) as usize..(boundary + 4000) as usize]
    );
}

#[test]
fn s3_killed_mid_upload_recovers_and_reupload_leaves_no_duplicate() {
    let mut weed = Weed::start();
    let dir = tempfile::tempdir().unwrap();
    let mut config = weed.config("crash", "sprawl");
    // Slow enough that the kill lands mid-upload: 40 MiB at 20 MiB/s.
    config.upload_bytes_per_s_max = Some(20 << 20);
    config.retry.budget_ms = 20_000;
    let archive = Archive::start(config).unwrap();
    let seg = write_segment(dir.path(), 500, 40 << 20, 99);

    let uploader = {
        let (archive, files) = (archive.clone(), seg.files.clone());
        std::thread::spawn(move || block_on(archive.upload_segment("events", 1, 500, files)))
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while archive.stats().bytes_up < 12 << 20 {
        assert!(
            Instant::now() < deadline,
            "upload never started: {:?}",
            archive.stats()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let up_at_kill = archive.stats().bytes_up;
    assert!(up_at_kill < 40 << 20, "the kill must land mid-upload");
    weed.kill();
    std::thread::sleep(Duration::from_millis(1500));
    weed.restart(); // same dir, same ports

    let archived = uploader
        .join()
        .unwrap()
        .expect("upload completes after S3 comes back");
    assert_eq!(archived.log_crc32c, crc32c::crc32c(&seg.log));
    let stats = archive.stats();
    eprintln!(
        "killed at {up_at_kill} bytes up; after recovery: {} attempts, {} retries, {} bytes up",
        stats.s3_attempts, stats.s3_retries, stats.bytes_up
    );
    assert!(stats.s3_retries > 0, "the outage was retried: {stats:?}");
    assert!(
        stats.bytes_up > (40 << 20) + up_at_kill / 2,
        "the log went up again"
    );

    let mut manifest = Manifest::default();
    manifest.upsert(manifest_entry(500, 900, &archived));
    block_on(archive.write_manifest("events", 1, &manifest)).unwrap();
    block_on(archive.verify_segment("events", 1, &manifest.segments[0])).unwrap();

    // The archiver retries after a restart: the same segment goes up again,
    // its manifest entry is replaced, not duplicated.
    let again = block_on(archive.upload_segment("events", 1, 500, seg.files.clone())).unwrap();
    assert_eq!(again, archived);
    let mut manifest = block_on(archive.read_manifest("events", 1))
        .unwrap()
        .unwrap();
    manifest.upsert(manifest_entry(500, 900, &again));
    block_on(archive.write_manifest("events", 1, &manifest)).unwrap();
    let read = block_on(archive.read_manifest("events", 1))
        .unwrap()
        .unwrap();
    assert_eq!(read.segments.len(), 1, "{read:?}");
    assert_eq!(read.segments[0].log_crc32c, crc32c::crc32c(&seg.log));
    let tail =
        block_on(archive.get_range("events", 1, 500, SegmentFileKind::Log, (40 << 20) - 64, 64))
            .unwrap();
    assert_eq!(tail, seg.log[seg.log.len() - 64..]);
}

#[test]
fn a_corrupted_object_is_reported_corrupt_by_name() {
    let weed = Weed::start();
    let dir = tempfile::tempdir().unwrap();
    let archive = start(&weed, "corrupt");
    let seg = write_segment(dir.path(), 0, 1 << 20, 5);
    let archived = block_on(archive.upload_segment("t", 0, 0, seg.files.clone())).unwrap();
    let entry = manifest_entry(0, 10, &archived);
    block_on(archive.verify_segment("t", 0, &entry)).unwrap();

    // Same size, one bit flipped, written by a plain PUT behind the archive's back.
    let (client, rt) = direct(&weed);
    let key = archive.segment_key("t", 0, 0, SegmentFileKind::Log);
    let mut flipped = seg.log.clone();
    flipped[4242] ^= 0x10;
    let put = |body: Vec<u8>| {
        rt.block_on(
            client
                .put_object_content("corrupt", key.as_str(), ObjectContent::from(body))
                .unwrap()
                .build()
                .send(),
        )
        .unwrap();
    };
    put(flipped.clone());
    match block_on(archive.verify_segment("t", 0, &entry)) {
        Err(ArchiveError::Corrupt {
            object,
            expected,
            got,
        }) => {
            assert_eq!(object, key);
            assert_eq!(expected, archived.log_crc32c);
            assert_eq!(got, crc32c::crc32c(&flipped));
        }
        other => panic!("expected Corrupt naming {key}, got {other:?}"),
    }
    let message = block_on(archive.verify_segment("t", 0, &entry))
        .unwrap_err()
        .to_string();
    assert!(message.contains(&key), "{message}");

    // Truncated: reported by size before any read.
    put(seg.log[..1000].to_vec());
    let err = block_on(archive.verify_segment("t", 0, &entry)).unwrap_err();
    assert!(
        matches!(&err, ArchiveError::WrongSize { object, expected_bytes, got_bytes: 1000 } if *object == key && *expected_bytes == 1 << 20),
        "{err:?}"
    );
    assert!(!err.is_retryable());
}

#[test]
fn list_partitions_finds_every_archived_partition() {
    let weed = Weed::start();
    let archive = start(&weed, "listing");
    let other_prefix = Archive::start(weed.config("listing", "elsewhere")).unwrap();
    let manifest = Manifest::default();
    for (topic, partition) in [
        ("orders", 0),
        ("orders", 11),
        ("orders-eu", 3),
        ("audit", 7),
    ] {
        block_on(archive.write_manifest(topic, partition, &manifest)).unwrap();
    }
    block_on(other_prefix.write_manifest("hidden", 0, &manifest)).unwrap();

    let all = block_on(archive.list_partitions("")).unwrap();
    let expect = |v: &[(&str, u32)]| {
        v.iter()
            .map(|(t, p)| (t.to_string(), *p))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        all,
        expect(&[
            ("audit", 7),
            ("orders", 0),
            ("orders", 11),
            ("orders-eu", 3)
        ])
    );
    assert_eq!(
        block_on(archive.list_partitions("orders")).unwrap(),
        expect(&[("orders", 0), ("orders", 11), ("orders-eu", 3)])
    );
    assert_eq!(block_on(archive.list_partitions("zzz")).unwrap(), vec![]);
    assert_eq!(
        block_on(other_prefix.list_partitions("")).unwrap(),
        expect(&[("hidden", 0)])
    );
}

#[test]
fn unreachable_s3_fails_unavailable_within_the_budget() {
    let mut weed = Weed::start();
    let mut config = weed.config("outage", "sprawl");
    config.retry.budget_ms = 1_500;
    let archive = Archive::start(config.clone()).unwrap();
    weed.kill();

    let started = Instant::now();
    let err = block_on(archive.get_range("t", 0, 0, SegmentFileKind::Log, 0, 10)).unwrap_err();
    let took = started.elapsed();
    eprintln!("{err}");
    assert!(err.is_retryable(), "{err}");
    let message = err.to_string();
    let key = archive.segment_key("t", 0, 0, SegmentFileKind::Log);
    assert!(
        message.contains(&weed.endpoint)
            && message.contains(&key)
            && message.contains("unavailable"),
        "{message}"
    );
    match err {
        ArchiveError::Unavailable { attempts, .. } => assert!(attempts > 3, "retried: {attempts}"),
        other => panic!("{other:?}"),
    }
    assert!(
        took >= Duration::from_millis(1_400) && took < Duration::from_millis(3_000),
        "bounded by the budget: {took:?}"
    );

    // Starting against a server that is not there fails the same way.
    let err = Archive::start(config).unwrap_err();
    assert!(matches!(err, ArchiveError::Unavailable { .. }), "{err}");
}

#[test]
fn wrong_credentials_are_refused_without_retrying() {
    let weed = Weed::start();
    let mut config = weed.config("creds", "sprawl");
    config.secret_key = "not-the-secret".into();
    let started = Instant::now();
    let err = Archive::start(config).unwrap_err();
    eprintln!("{err}");
    assert!(matches!(err, ArchiveError::Refused { .. }), "{err}");
    assert!(!err.is_retryable());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "no retry loop on a 403"
    );
}

#[test]
fn a_full_queue_answers_busy_at_once() {
    let weed = Weed::start();
    let dir = tempfile::tempdir().unwrap();
    let mut config = weed.config("busy", "sprawl");
    config.queue_depth_max = 2;
    config.requests_in_flight_max = 1;
    config.upload_bytes_per_s_max = Some(4 << 20); // 8 MiB: ~2 s of work
    let archive = Archive::start(config).unwrap();
    let seg = write_segment(dir.path(), 0, 8 << 20, 3);

    let spawn = |f: Box<dyn FnOnce(ArchiveHandle) + Send>| {
        let a = archive.clone();
        std::thread::spawn(move || f(a))
    };
    let files = seg.files.clone();
    let mut waiting = vec![spawn(Box::new(move |a| {
        block_on(a.upload_segment("t", 0, 0, files)).unwrap();
    }))];
    let until = |cond: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !cond() {
            assert!(Instant::now() < deadline, "{:?}", archive.stats());
            std::thread::sleep(Duration::from_millis(2));
        }
    };
    until(&|| archive.stats().bytes_up > 0);
    for _ in 0..2 {
        waiting.push(spawn(Box::new(|a| {
            block_on(a.read_manifest("t", 0)).unwrap();
        })));
    }
    until(&|| archive.stats().queue_depth == 2);

    let started = Instant::now();
    let err = block_on(archive.read_manifest("t", 0)).unwrap_err();
    assert!(
        matches!(err, ArchiveError::Busy { queue_depth_max: 2 }),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(50),
        "Busy is immediate"
    );
    assert_eq!(archive.stats().busy_rejections, 1);
    for t in waiting {
        t.join().unwrap();
    }
    assert_eq!(archive.stats().queue_depth, 0);
}

#[test]
fn a_glommio_shard_awaits_the_archive() {
    let weed = Weed::start();
    let dir = tempfile::tempdir().unwrap();
    let archive = start(&weed, "glommio");
    let seg = write_segment(dir.path(), 77, 2 << 20, 11);
    let expected = seg.log[100..200].to_vec();
    let files = seg.files.clone();
    glommio::LocalExecutorBuilder::default()
        .io_memory(1 << 20)
        .spawn(move || async move {
            // The reactor keeps running while the archive thread works: a
            // timer task ticks during the upload.
            let ticks = std::rc::Rc::new(std::cell::Cell::new(0u32));
            let ticker = {
                let ticks = ticks.clone();
                glommio::spawn_local(async move {
                    loop {
                        glommio::timer::sleep(Duration::from_millis(1)).await;
                        ticks.set(ticks.get() + 1);
                    }
                })
                .detach()
            };
            let archived = archive.upload_segment("shard", 3, 77, files).await.unwrap();
            let range = archive
                .get_range("shard", 3, 77, SegmentFileKind::Log, 100, 100)
                .await
                .unwrap();
            assert_eq!(range, expected);
            let mut m = Manifest::default();
            m.upsert(manifest_entry(77, 88, &archived));
            archive.write_manifest("shard", 3, &m).await.unwrap();
            assert_eq!(archive.read_manifest("shard", 3).await.unwrap(), Some(m));
            assert!(ticks.get() > 0, "the reactor was never blocked");
            ticker.cancel();
        })
        .unwrap()
        .join()
        .unwrap();
}

//! Partition log behaviour on real files: append/read, group commit, roll,
//! recovery of torn tails, corruption reports, truncation, retention.

mod common;

use common::{batch_of, read_all, run, small_config};
use sprawl_storage::{FsyncPolicy, LogConfig, LogError, PartitionLog};

fn values(n: usize, tag: u8, len: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| vec![tag.wrapping_add(i as u8); len])
        .collect()
}

#[test]
fn append_read_reopen_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(dir.path(), move |pool| async move {
        let log = PartitionLog::open(&path, small_config(), pool.clone())
            .await
            .unwrap();
        let mut expected = Vec::new();
        for i in 0..200u8 {
            let vals = values(3, i, 100 + i as usize);
            let ack = log.append(batch_of(&vals, 1000 + i as i64)).await.unwrap();
            assert_eq!(ack.base_offset, i as u64 * 3);
            expected.extend(vals);
        }
        assert!(log.segment_count() > 1, "small segments rolled");
        let o = log.offsets();
        assert_eq!((o.log_start, o.high_watermark, o.log_end), (0, 600, 600));
        let got: Vec<_> = read_all(&log, 0)
            .await
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        assert_eq!(got, expected);
        log.close().await.unwrap();
        drop(log);
        let (log, report) = PartitionLog::open_with_report(&path, small_config(), pool)
            .await
            .unwrap();
        assert!(
            report.truncated_tail.is_none() && report.rebuilt_indexes.is_empty(),
            "{report:?}"
        );
        assert_eq!(log.offsets().log_end, 600);
        let got: Vec<_> = read_all(&log, 0)
            .await
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        assert_eq!(
            got, expected,
            "everything survives a reopen, read from disk"
        );
        // Reads from the middle start at the right record.
        let mid = read_all(&log, 301).await;
        assert_eq!(mid[0].0, 301);
        assert_eq!(mid[0].1, expected[301]);
        // Appends continue after reopen.
        let ack = log.append(batch_of(&values(1, 9, 10), 5000)).await.unwrap();
        assert_eq!(ack.base_offset, 600);
    });
}

#[test]
fn concurrent_appends_share_group_commits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(dir.path(), move |pool| async move {
        let log = std::rc::Rc::new(
            PartitionLog::open(&path, LogConfig::default(), pool)
                .await
                .unwrap(),
        );
        let tasks: Vec<_> = (0..64u8)
            .map(|i| {
                let log = log.clone();
                glommio::spawn_local(async move {
                    log.append(batch_of(&values(10, i, 512), 1)).await.unwrap()
                })
            })
            .collect();
        let mut acks = Vec::new();
        for t in tasks {
            acks.push(t.await);
        }
        acks.sort_by_key(|a| a.base_offset);
        for w in acks.windows(2) {
            assert_eq!(w[0].next_offset, w[1].base_offset);
        }
        let o = log.offsets();
        assert_eq!(o.synced, 640, "fsync=always acks only synced data");
        let stats = log.stats();
        assert!(
            stats.fdatasyncs < 64 / 4,
            "appends share fdatasyncs: {stats:?}"
        );
        assert_eq!(read_all(&log, 0).await.len(), 640);
    });
}

#[test]
fn bad_batches_are_rejected_and_nothing_is_appended() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(dir.path(), move |pool| async move {
        let cfg = LogConfig {
            batch_bytes_max: 4096,
            ..LogConfig::default()
        };
        let log = PartitionLog::open(&path, cfg, pool).await.unwrap();
        let mut bad = batch_of(&values(2, 1, 10), 1);
        let n = bad.len();
        bad[n - 1] ^= 0xff;
        assert!(matches!(
            log.append(bad).await,
            Err(LogError::InvalidBatch(_))
        ));
        let big = batch_of(&values(1, 1, 5000), 1);
        assert!(matches!(
            log.append(big).await,
            Err(LogError::BatchTooLarge { .. })
        ));
        assert_eq!(log.offsets().log_end, 0);
        assert!(matches!(
            log.read(5, 100).await,
            Err(LogError::OffsetOutOfRange { .. })
        ));
    });
}

#[test]
fn torn_tail_is_truncated_on_reopen_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(dir.path(), move |pool| async move {
        let log = PartitionLog::open(&path, LogConfig::default(), pool.clone())
            .await
            .unwrap();
        for i in 0..10u8 {
            log.append(batch_of(&values(4, i, 300), 1)).await.unwrap();
        }
        drop(log);
        common::tear_last_batch(&path.join("00000000000000000000.log"));
        let (log, report) = PartitionLog::open_with_report(&path, LogConfig::default(), pool)
            .await
            .unwrap();
        let (_, _, offset, _) = report.truncated_tail.clone().expect("torn tail reported");
        assert_eq!(offset, 36, "the last batch (offsets 36..40) is dropped");
        assert_eq!(log.offsets().log_end, 36);
        assert_eq!(read_all(&log, 0).await.len(), 36);
        let ack = log.append(batch_of(&values(1, 0, 10), 1)).await.unwrap();
        assert_eq!(ack.base_offset, 36);
    });
}

#[test]
fn corruption_in_a_sealed_segment_is_an_error_naming_segment_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(dir.path(), move |pool| async move {
        let log = PartitionLog::open(&path, small_config(), pool.clone())
            .await
            .unwrap();
        for i in 0..200u8 {
            log.append(batch_of(&values(2, i, 500), 1)).await.unwrap();
        }
        assert!(log.segment_count() >= 3);
        drop(log);
        let seg = path.join("00000000000000000000.log");
        let mut bytes = std::fs::read(&seg).unwrap();
        bytes[3000] ^= 0x01;
        std::fs::write(&seg, &bytes).unwrap();
        let log = PartitionLog::open(&path, small_config(), pool)
            .await
            .unwrap();
        let mut err = None;
        let mut next = 0;
        while next < log.offsets().high_watermark {
            match log.read(next, 1 << 20).await {
                Ok(f) => {
                    let last = f.batches.last().unwrap();
                    next = sprawl_storage::BatchView::parse_exact(last)
                        .unwrap()
                        .header()
                        .next_offset();
                }
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
        }
        let err = err.expect("corruption detected");
        let msg = err.to_string();
        assert!(matches!(err, LogError::Corrupt { .. }), "{msg}");
        assert!(msg.contains("00000000000000000000.log"), "{msg}");
        assert!(msg.contains("offset"), "{msg}");
        // Reads past the corrupt segment still work.
        let later = log.offsets().high_watermark - 2;
        assert!(!log.read(later, 1000).await.unwrap().batches.is_empty());
    });
}

#[test]
fn missing_or_garbage_index_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(dir.path(), move |pool| async move {
        let log = PartitionLog::open(&path, small_config(), pool.clone())
            .await
            .unwrap();
        for i in 0..200u8 {
            log.append(batch_of(&values(2, i, 400), 1)).await.unwrap();
        }
        drop(log);
        std::fs::remove_file(path.join("00000000000000000000.index")).unwrap();
        let last_index = std::fs::read_dir(&path)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "index"))
            .max()
            .unwrap();
        std::fs::write(&last_index, [0xffu8; 16]).unwrap();
        let (log, report) = PartitionLog::open_with_report(&path, small_config(), pool)
            .await
            .unwrap();
        assert_eq!(report.rebuilt_indexes.len(), 2, "{report:?}");
        assert_eq!(read_all(&log, 0).await.len(), 400);
        assert_eq!(read_all(&log, 77).await[0].0, 77);
    });
}

#[test]
fn truncate_suffix_then_append_never_resurrects_old_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(dir.path(), move |pool| async move {
        let log = PartitionLog::open(&path, small_config(), pool.clone())
            .await
            .unwrap();
        for i in 0..50u8 {
            log.append(batch_of(&values(2, i, 300), 1)).await.unwrap();
        }
        assert!(matches!(
            log.truncate_suffix(31).await,
            Err(LogError::NotBatchBoundary { .. })
        ));
        log.truncate_suffix(30).await.unwrap();
        assert_eq!(log.offsets().log_end, 30);
        // Same-size batches land exactly where the truncated ones were.
        for i in 0..5u8 {
            log.append(batch_of(&values(2, 200 + i, 300), 1))
                .await
                .unwrap();
        }
        drop(log);
        let log = PartitionLog::open(&path, small_config(), pool)
            .await
            .unwrap();
        let all = read_all(&log, 0).await;
        assert_eq!(all.len(), 40);
        assert_eq!(all[30].1, vec![200u8; 300]);
    });
}

#[test]
fn retention_deletes_whole_old_segments_by_size_and_age() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(dir.path(), move |pool| async move {
        let cfg = LogConfig {
            retention_bytes: Some(200 << 10),
            retention_ms: Some(10_000),
            ..small_config()
        };
        let log = PartitionLog::open(&path, cfg, pool).await.unwrap();
        for i in 0..100u8 {
            log.append(batch_of(&values(4, i, 1000), 1_000 + i as i64))
                .await
                .unwrap();
        }
        let before = log.segment_count();
        let deleted = log.apply_retention(5_000).await.unwrap();
        assert!(deleted > 0 && log.size_bytes() <= 200 << 10);
        assert_eq!(log.segment_count(), before - deleted);
        let start = log.offsets().log_start;
        assert!(start > 0);
        assert!(matches!(
            log.read(0, 100).await,
            Err(LogError::OffsetOutOfRange { .. })
        ));
        assert_eq!(read_all(&log, start).await.len() as u64, 400 - start);
        // Everything is older than 10 s at t = 1_000_000: all sealed segments go.
        log.apply_retention(1_000_000).await.unwrap();
        assert_eq!(log.segment_count(), 1);
    });
}

#[test]
fn find_offset_by_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(dir.path(), move |pool| async move {
        let log = PartitionLog::open(&path, small_config(), pool)
            .await
            .unwrap();
        for i in 0..100i64 {
            log.append(batch_of(&values(2, i as u8, 300), 10_000 + i * 10))
                .await
                .unwrap();
        }
        assert_eq!(log.find_offset_by_timestamp(0).await.unwrap(), Some(0));
        assert_eq!(
            log.find_offset_by_timestamp(10_500).await.unwrap(),
            Some(100)
        );
        assert_eq!(
            log.find_offset_by_timestamp(10_505).await.unwrap(),
            Some(102)
        );
        assert_eq!(log.find_offset_by_timestamp(99_999).await.unwrap(), None);
    });
}

#[test]
fn roll_by_age() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(dir.path(), move |pool| async move {
        let cfg = LogConfig {
            segment_ms: Some(60_000),
            ..LogConfig::default()
        };
        let log = PartitionLog::open(&path, cfg, pool).await.unwrap();
        // Records stamped two minutes ago: the segment is old at once.
        let old = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
            - 120_000;
        log.append(batch_of(&values(1, 1, 10), old)).await.unwrap();
        log.append(batch_of(&values(1, 2, 10), old)).await.unwrap();
        assert_eq!(log.segment_count(), 2);
    });
}

#[test]
fn fsync_policies_ack_at_their_watermark() {
    for policy in [
        FsyncPolicy::Never,
        FsyncPolicy::IntervalMs(1),
        FsyncPolicy::Always,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run(dir.path(), move |pool| async move {
            let cfg = LogConfig {
                fsync: policy,
                ..LogConfig::default()
            };
            let log = PartitionLog::open(&path, cfg, pool).await.unwrap();
            log.append(batch_of(&values(3, 1, 10), 1)).await.unwrap();
            let o = log.offsets();
            assert_eq!(o.high_watermark, 3, "{policy}");
            if policy == FsyncPolicy::Never {
                assert_eq!(o.synced, 0, "never: written, not synced");
            }
            glommio::timer::sleep(std::time::Duration::from_millis(2)).await;
            log.tick().await.unwrap();
            if policy != FsyncPolicy::Never {
                assert_eq!(log.offsets().synced, 3, "{policy}");
            }
            // A producer asking for durability gets it whatever the policy.
            log.append_with(batch_of(&values(2, 1, 10), 1), 0, true)
                .await
                .unwrap();
            assert_eq!(log.offsets().synced, 5, "{policy}");
        });
    }
}

#[test]
fn large_batches_read_back_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(dir.path(), move |pool| async move {
        let log = PartitionLog::open(&path, LogConfig::default(), pool.clone())
            .await
            .unwrap();
        for i in 0..20u8 {
            log.append(batch_of(&values(1000, i, 1024), 1))
                .await
                .unwrap();
        }
        drop(log);
        let log = PartitionLog::open(&path, LogConfig::default(), pool)
            .await
            .unwrap();
        let mut next = 0;
        while next < 20_000 {
            let f = log.read(next, 4 << 20).await.unwrap();
            let last = sprawl_storage::BatchView::parse_exact(f.batches.last().unwrap()).unwrap();
            next = last.header().next_offset();
        }
    });
}

#[test]
fn looping_appenders_share_group_commits() {
    looping_appenders(1);
    looping_appenders(64);
}

fn looping_appenders(records_per_batch: usize) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(dir.path(), move |pool| async move {
        let log = std::rc::Rc::new(
            PartitionLog::open(&path, LogConfig::default(), pool)
                .await
                .unwrap(),
        );
        let tasks: Vec<_> = (0..8u8)
            .map(|i| {
                let log = log.clone();
                glommio::spawn_local(async move {
                    for _ in 0..50 {
                        log.append(batch_of(&values(records_per_batch, i, 1024), 1))
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await;
        }
        let stats = log.stats();
        assert_eq!(stats.batches_appended, 400);
        assert!(
            stats.fdatasyncs <= 400 / 3,
            "appends share fdatasyncs: {stats:?}"
        );
        eprintln!("{records_per_batch} records per batch: {stats:?}");
    });
}

#[test]
fn sealed_segments_and_removing_the_oldest() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(dir.path(), move |pool| async move {
        let log = PartitionLog::open(&path, small_config(), pool)
            .await
            .unwrap();
        for i in 0..200u8 {
            log.append(batch_of(&values(2, i, 500), 1000 + i as i64))
                .await
                .unwrap();
        }
        let sealed = log.sealed_segments();
        assert_eq!(
            sealed.len(),
            log.segment_count() - 1,
            "all but the active one"
        );
        assert_eq!(sealed[0].base_offset, 0);
        assert!(sealed
            .windows(2)
            .all(|w| w[0].next_offset == w[1].base_offset));
        assert!(sealed.iter().all(|s| s.log_path.exists() && s.bytes > 0));
        assert_eq!(log.remove_oldest_segments(2).await.unwrap(), 2);
        assert_eq!(log.offsets().log_start, sealed[2].base_offset);
        assert!(!sealed[0].log_path.exists() && !sealed[1].index_path.exists());
        // Never the active segment, however many are asked for.
        log.remove_oldest_segments(1000).await.unwrap();
        assert_eq!(log.segment_count(), 1);
        assert_eq!(
            read_all(&log, log.offsets().log_start).await.len() as u64,
            400 - log.offsets().log_start
        );
    });
}

#[test]
fn an_empty_log_can_start_at_a_given_offset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(dir.path(), move |pool| async move {
        let (log, _) = PartitionLog::open_from(&path, LogConfig::default(), pool.clone(), 500)
            .await
            .unwrap();
        assert_eq!(log.offsets().log_start, 500);
        let ack = log.append(batch_of(&values(2, 1, 10), 1)).await.unwrap();
        assert_eq!(ack.base_offset, 500);
        drop(log);
        // Existing logs keep their offsets whatever is asked.
        let (log, _) = PartitionLog::open_from(&path, LogConfig::default(), pool, 0)
            .await
            .unwrap();
        assert_eq!((log.offsets().log_start, log.offsets().log_end), (500, 502));
        assert_eq!(read_all(&log, 500).await.len(), 2);
    });
}

//! The partition log as a Raft log: raft index and term stamping, control
//! batches, recovery of the raft map (clean and torn), follower appends,
//! raft suffix truncation, and consumer reads that never see control batches.

mod common;

use bytes::{Bytes, BytesMut};
use common::{batch_of, read_all, run, small_config};
use proptest::prelude::*;
use sprawl_storage::batch::peek_header;
use sprawl_storage::{FsyncPolicy, LogConfig, LogError, PartitionLog, RaftStamp};

fn values(n: usize, tag: u8, len: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| vec![tag.wrapping_add(i as u8); len])
        .collect()
}

fn stamp(term: u64, index: u64) -> RaftStamp {
    RaftStamp { term, index }
}

/// Every batch from Raft entry `from` on, through `read_raft`.
async fn raft_read_all(log: &PartitionLog, from: u64) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut next = from;
    loop {
        let got = log.read_raft(next, 3000).await.expect("read_raft");
        if got.is_empty() {
            return out;
        }
        for b in got {
            let h = peek_header(&b).unwrap();
            assert_eq!(h.raft_index(), next, "raft indices are contiguous");
            next += 1;
            out.push(b);
        }
    }
}

/// `(index, term, base_offset, control)` of every entry the map holds.
fn raft_map(log: &PartitionLog) -> Vec<(u64, u64, u64, bool)> {
    let Some(first) = log.first_raft_index() else {
        return Vec::new();
    };
    let (last, _) = log.last_raft_entry().unwrap();
    (first..=last)
        .map(|i| {
            let e = log.raft_entry(i).expect("held");
            (i, e.term, e.base_offset, e.control)
        })
        .collect()
}

/// Leader appends: data batches and control entries, `entries` of them
/// from `first`, over small segments. Returns the data values in order.
async fn lead(log: &PartitionLog, first: u64, entries: u64, term: u64, tag: u8) -> Vec<Vec<u8>> {
    let mut data = Vec::new();
    for i in first..first + entries {
        if i % 3 == 0 {
            let ack = log
                .append_raft_control(format!("ctl {i}").as_bytes(), stamp(term, i), false)
                .await
                .unwrap();
            assert_eq!(
                ack.base_offset, ack.next_offset,
                "control occupies no offsets"
            );
        } else {
            let vals = values(2, tag.wrapping_add(i as u8), 200 + (i % 5) as usize * 300);
            log.append_raft(batch_of(&vals, 1000 + i as i64), stamp(term, i), false)
                .await
                .unwrap();
            data.extend(vals);
        }
    }
    data
}

fn tiny_config() -> LogConfig {
    LogConfig {
        segment_bytes: 8 << 10,
        ..small_config()
    }
}

fn data_values(got: Vec<(u64, Vec<u8>)>) -> Vec<Vec<u8>> {
    got.into_iter().map(|(_, v)| v).collect()
}

#[test]
fn raft_entries_round_trip_and_recovery_rebuilds_the_map() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(dir.path(), move |pool| async move {
        let log = PartitionLog::open(&path, small_config(), pool.clone())
            .await
            .unwrap();
        assert_eq!(log.last_raft_entry(), None);
        let data = lead(&log, 1, 150, 2, 0).await;
        assert!(log.segment_count() > 2, "small segments rolled");
        assert_eq!(log.last_raft_entry(), Some((150, 2)));
        assert_eq!(log.raft_term(77), Some(2));
        assert!(log.raft_entry(3).unwrap().control);
        assert_eq!(
            log.raft_next_offset(3),
            Some(log.raft_entry(4).unwrap().base_offset)
        );
        assert_eq!(log.raft_next_offset(150), Some(log.offsets().log_end));
        assert_eq!(log.synced_raft_index(), Some(150), "fsync=always");
        let map = raft_map(&log);
        assert_eq!(map.len(), 150);
        // Consumers see the data only, in order.
        assert_eq!(data_values(read_all(&log, 0).await), data);
        let before: Vec<Bytes> = raft_read_all(&log, 1).await;
        assert_eq!(before.len(), 150);
        for (i, b) in before.iter().enumerate() {
            let h = peek_header(b).unwrap();
            assert_eq!((h.raft_index(), h.leader_epoch()), (i as u64 + 1, 2));
            assert_eq!(h.is_control(), (i + 1) % 3 == 0);
        }
        drop(log);
        let (log, report) = PartitionLog::open_with_report(&path, small_config(), pool.clone())
            .await
            .unwrap();
        assert!(report.truncated_tail.is_none(), "{report:?}");
        assert_eq!(raft_map(&log), map, "recovery rebuilds the same map");
        assert_eq!(raft_read_all(&log, 1).await, before, "byte-exact from disk");
        assert_eq!(raft_read_all(&log, 100).await, before[99..].to_vec());
        assert_eq!(data_values(read_all(&log, 0).await), data);
        // The next entry must follow on.
        assert!(matches!(
            log.append_raft(batch_of(&values(1, 1, 10), 1), stamp(2, 152), false)
                .await,
            Err(LogError::RaftIndexMismatch {
                index: 152,
                expected: 151
            })
        ));
        log.append_raft(batch_of(&values(1, 1, 10), 1), stamp(3, 151), false)
            .await
            .unwrap();
        assert_eq!(log.last_raft_entry(), Some((151, 3)));
        // Index rebuild (index files lost) still rebuilds the map.
        drop(log);
        for e in std::fs::read_dir(&path).unwrap() {
            let p = e.unwrap().path();
            if p.extension()
                .is_some_and(|e| e == "index" || e == "timeindex")
            {
                std::fs::remove_file(p).unwrap();
            }
        }
        let log = PartitionLog::open(&path, small_config(), pool)
            .await
            .unwrap();
        assert_eq!(log.last_raft_entry(), Some((151, 3)));
        assert_eq!(raft_map(&log)[..150], map[..]);
    });
}

#[test]
fn torn_tail_drops_the_torn_entry_from_the_map() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(dir.path(), move |pool| async move {
        let log = PartitionLog::open(&path, LogConfig::default(), pool.clone())
            .await
            .unwrap();
        lead(&log, 1, 10, 1, 0).await;
        // Entry 11: a data batch; entry 12: a control batch, torn below.
        log.append_raft(batch_of(&values(3, 9, 300), 5), stamp(1, 11), false)
            .await
            .unwrap();
        log.append_raft_control(&[7u8; 200], stamp(1, 12), false)
            .await
            .unwrap();
        let map = raft_map(&log);
        drop(log);
        let seg = path.join("00000000000000000000.log");
        common::tear_last_batch(&seg);
        let (log, report) =
            PartitionLog::open_with_report(&path, LogConfig::default(), pool.clone())
                .await
                .unwrap();
        assert!(report.truncated_tail.is_some());
        assert_eq!(log.last_raft_entry(), Some((11, 1)));
        assert_eq!(raft_map(&log), map[..11].to_vec());
        // Entry 12 is written again, and survives another reopen; then a
        // torn data batch (cut short: the write never finished).
        log.append_raft_control(b"again", stamp(2, 12), false)
            .await
            .unwrap();
        log.append_raft(batch_of(&values(4, 1, 500), 5), stamp(2, 13), false)
            .await
            .unwrap();
        drop(log);
        let mut bytes = std::fs::read(&seg).unwrap();
        let end = bytes.iter().rposition(|&b| b != 0).unwrap() + 1;
        bytes.truncate(end - 700);
        std::fs::write(&seg, &bytes).unwrap();
        let log = PartitionLog::open(&path, LogConfig::default(), pool)
            .await
            .unwrap();
        assert_eq!(log.last_raft_entry(), Some((12, 2)));
        let last = log.read_raft(12, 1 << 20).await.unwrap();
        assert_eq!(last.len(), 1);
        assert_eq!(&last[0][64..], b"again");
        log.append_raft(batch_of(&values(1, 1, 10), 5), stamp(2, 13), false)
            .await
            .unwrap();
    });
}

#[test]
fn followers_append_exactly_what_the_leader_stamped_and_refuse_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(dir.path(), move |pool| async move {
        let leader = PartitionLog::open(path.join("leader"), small_config(), pool.clone())
            .await
            .unwrap();
        let follower = PartitionLog::open(path.join("follower"), small_config(), pool.clone())
            .await
            .unwrap();
        let data = lead(&leader, 1, 60, 1, 0).await;
        let entries = raft_read_all(&leader, 1).await;
        // Gaps and mismatches are refused.
        assert!(matches!(
            follower
                .append_replicated(BytesMut::from(&entries[1][..]))
                .await,
            Err(LogError::RaftOffsetMismatch { .. })
        ));
        for (i, e) in entries.iter().enumerate().take(10) {
            follower
                .append_replicated(BytesMut::from(&e[..]))
                .await
                .unwrap_or_else(|err| panic!("entry {}: {err}", i + 1));
        }
        // Entry 12 after 10: base offset may even match (11 is control) but
        // the raft index does not.
        let skip = &entries[11];
        assert!(matches!(
            follower.append_replicated(BytesMut::from(&skip[..])).await,
            Err(LogError::RaftIndexMismatch { .. }) | Err(LogError::RaftOffsetMismatch { .. })
        ));
        // Entry 11 is a control batch at the same offset as 12: only the
        // raft index tells them apart.
        let h11 = peek_header(&entries[10]).unwrap();
        let h12 = peek_header(&entries[11]).unwrap();
        assert!(!h11.is_control() || h11.base_offset() == h12.base_offset());
        // An unstamped (producer) batch is not a raft entry.
        assert!(matches!(
            follower
                .append_replicated(batch_of(&values(1, 1, 10), 1))
                .await,
            Err(LogError::RaftOffsetMismatch { .. }) | Err(LogError::RaftIndexMismatch { .. })
        ));
        // A corrupted entry fails validation, nothing appended.
        let mut bad = BytesMut::from(&entries[10][..]);
        let n = bad.len();
        bad[n - 1] ^= 1;
        assert!(matches!(
            follower.append_replicated(bad).await,
            Err(LogError::InvalidBatch(_))
        ));
        // Unreplicated appends (and producer control batches) are refused.
        assert!(matches!(
            follower.append(batch_of(&values(1, 1, 10), 1)).await,
            Err(LogError::NotReplicated { last_index: 10 })
        ));
        assert!(matches!(
            follower
                .append(sprawl_storage::batch::control_batch(b"x"))
                .await,
            Err(LogError::ControlMismatch { .. })
        ));
        for e in &entries[10..] {
            follower
                .append_replicated(BytesMut::from(&e[..]))
                .await
                .unwrap();
        }
        assert_eq!(follower.last_raft_entry(), leader.last_raft_entry());
        assert_eq!(follower.synced_raft_index(), Some(60));
        assert_eq!(raft_read_all(&follower, 1).await, entries);
        assert_eq!(data_values(read_all(&follower, 0).await), data);
        assert_eq!(follower.offsets().log_end, leader.offsets().log_end);
        assert_eq!(raft_map(&follower), raft_map(&leader));
    });
}

#[test]
fn truncated_raft_suffix_is_replaced_by_the_new_leaders_entries() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(dir.path(), move |pool| async move {
        // The old leader wrote 1..=40 in term 1; the new leader agrees up to
        // 25 and then wrote 26..=45 in term 2 (a different suffix).
        let old = PartitionLog::open(path.join("old"), tiny_config(), pool.clone())
            .await
            .unwrap();
        let new = PartitionLog::open(path.join("new"), tiny_config(), pool.clone())
            .await
            .unwrap();
        let follower = PartitionLog::open(path.join("f"), tiny_config(), pool.clone())
            .await
            .unwrap();
        lead(&old, 1, 40, 1, 0).await;
        let old_entries = raft_read_all(&old, 1).await;
        for e in &old_entries[..25] {
            new.append_replicated(BytesMut::from(&e[..])).await.unwrap();
        }
        new.append_raft_control(b"new leader", stamp(2, 26), false)
            .await
            .unwrap();
        lead(&new, 27, 19, 2, 100).await;
        let new_entries = raft_read_all(&new, 1).await;
        for e in &old_entries {
            follower
                .append_replicated(BytesMut::from(&e[..]))
                .await
                .unwrap();
        }
        assert!(follower.segment_count() > 1);
        // The diverging entry does not follow on: truncate first.
        assert!(matches!(
            follower
                .append_replicated(BytesMut::from(&new_entries[25][..]))
                .await,
            Err(LogError::RaftOffsetMismatch { .. }) | Err(LogError::RaftIndexMismatch { .. })
        ));
        assert!(matches!(
            follower.truncate_raft_suffix(0).await,
            Err(LogError::RaftIndexOutOfRange { .. })
        ));
        follower.truncate_raft_suffix(99).await.unwrap(); // past the end: nothing
        assert_eq!(follower.last_raft_entry(), Some((40, 1)));
        follower.truncate_raft_suffix(26).await.unwrap();
        assert_eq!(follower.last_raft_entry(), Some((25, 1)));
        assert_eq!(
            follower.offsets().log_end,
            old.raft_next_offset(25).unwrap()
        );
        for e in &new_entries[25..] {
            follower
                .append_replicated(BytesMut::from(&e[..]))
                .await
                .unwrap();
        }
        drop(follower);
        let follower = PartitionLog::open(path.join("f"), tiny_config(), pool)
            .await
            .unwrap();
        assert_eq!(follower.last_raft_entry(), Some((45, 2)));
        assert_eq!(raft_read_all(&follower, 1).await, new_entries, "byte-exact");
        assert_eq!(raft_map(&follower), raft_map(&new));
        assert_eq!(read_all(&follower, 0).await, read_all(&new, 0).await);
    });
}

#[test]
fn consumer_reads_skip_control_batches_at_segment_boundaries() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(dir.path(), move |pool| async move {
        let cfg = LogConfig {
            segment_bytes: 4096,
            index_interval_bytes: 256,
            ring_bytes: 1024,
            ..LogConfig::default()
        };
        let log = PartitionLog::open(&path, cfg.clone(), pool.clone())
            .await
            .unwrap();
        // Runs of 1..=3 control batches between data batches, the data sized
        // so that segments often end (and start) with control batches.
        let mut index = 1;
        let mut data = Vec::new();
        let mut controls_at_segment_end = 0;
        for i in 0..120u64 {
            for _ in 0..(i % 3 + 1) {
                log.append_raft_control(&[0xc0; 40], stamp(1, index), false)
                    .await
                    .unwrap();
                index += 1;
            }
            let segments = log.segment_count();
            let vals = values(1 + (i % 2) as usize, i as u8, 300 + (i % 7) as usize * 90);
            log.append_raft(
                batch_of(&vals, 10_000 + i as i64 * 10),
                stamp(1, index),
                false,
            )
            .await
            .unwrap();
            if log.segment_count() > segments {
                controls_at_segment_end += 1;
            }
            index += 1;
            data.extend(vals);
        }
        // Trailing control batches at the log end: no offsets, nothing to read.
        log.append_raft_control(b"tail", stamp(1, index), false)
            .await
            .unwrap();
        assert!(
            controls_at_segment_end > 5,
            "segments end with control batches"
        );
        // On the live log (ring and disk), then from disk after a reopen.
        check_consumer_reads(&log, &data).await;
        drop(log);
        let log = PartitionLog::open(&path, cfg, pool).await.unwrap();
        check_consumer_reads(&log, &data).await;
    });
}

async fn check_consumer_reads(log: &PartitionLog, data: &[Vec<u8>]) {
    let hw = log.offsets().high_watermark;
    assert_eq!(hw, data.len() as u64);
    assert_eq!(data_values(read_all(log, 0).await), data);
    // From every offset, reads start at the batch holding it and return
    // data batches only: a reader always makes progress.
    for at in 0..hw {
        let f = log.read(at, 1).await.unwrap();
        assert!(!f.batches.is_empty(), "read at {at} made progress");
        for b in &f.batches {
            let h = peek_header(b).unwrap();
            assert!(!h.is_control());
            assert!(h.next_offset() > at);
        }
    }
    assert!(log.read(hw, 1 << 20).await.unwrap().batches.is_empty());
    assert_eq!(
        log.find_offset_by_timestamp(10_000 + 55 * 10)
            .await
            .unwrap(),
        Some(data_offset_of_batch(55))
    );
}

/// Offset of the first record of data batch `i` in the test above (batches
/// alternate 1 and 2 records).
fn data_offset_of_batch(i: u64) -> u64 {
    (0..i).map(|j| 1 + j % 2).sum()
}

#[test]
fn control_entries_are_durable_although_they_move_no_offset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(dir.path(), move |pool| async move {
        let cfg = LogConfig {
            fsync: FsyncPolicy::Never,
            ..LogConfig::default()
        };
        let log = PartitionLog::open(&path, cfg.clone(), pool.clone())
            .await
            .unwrap();
        log.append_raft(batch_of(&values(1, 1, 10), 1), stamp(1, 1), false)
            .await
            .unwrap();
        let syncs = log.stats().fdatasyncs;
        log.append_raft_control(b"leader", stamp(2, 2), true)
            .await
            .unwrap();
        assert!(
            log.stats().fdatasyncs > syncs,
            "the control batch was synced"
        );
        assert_eq!(log.synced_raft_index(), Some(2));
        log.append_raft_control(b"conf", stamp(2, 3), false)
            .await
            .unwrap();
        assert_eq!(
            log.synced_raft_index(),
            Some(2),
            "fsync=never: written only"
        );
        log.sync().await.unwrap();
        assert_eq!(log.synced_raft_index(), Some(3));
        drop(log);
        let log = PartitionLog::open(&path, cfg, pool).await.unwrap();
        assert_eq!(log.last_raft_entry(), Some((3, 2)));
    });
}

#[derive(Debug, Clone)]
enum Op {
    Data { records: usize, value_bytes: usize },
    Control { payload_bytes: usize },
    Truncate { entry_permille: u16 },
    NewTerm,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1usize..5, 0usize..600).prop_map(|(records, value_bytes)| Op::Data { records, value_bytes }),
        3 => (0usize..300).prop_map(|payload_bytes| Op::Control { payload_bytes }),
        1 => (0u16..=1000).prop_map(|entry_permille| Op::Truncate { entry_permille }),
        1 => Just(Op::NewTerm),
        1 => Just(Op::Reopen),
    ]
}

fn model_config() -> LogConfig {
    LogConfig {
        segment_bytes: 8 << 10,
        index_interval_bytes: 512,
        ring_bytes: 2 << 10,
        write_bytes_max: 4096,
        ..LogConfig::default()
    }
}

/// One modelled entry: term, whether control, the values of its records.
#[derive(Debug, Clone)]
struct ModelEntry {
    term: u64,
    control: bool,
    values: Vec<Vec<u8>>,
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn raft_log_agrees_with_model(ops in proptest::collection::vec(op(), 1..50)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run(dir.path(), move |pool| async move {
            let mut log = PartitionLog::open(&path, model_config(), pool.clone()).await.unwrap();
            let mut model: Vec<ModelEntry> = Vec::new(); // entry i + 1
            let mut term = 1;
            let mut tag = 0u8;
            for op in ops {
                let index = model.len() as u64 + 1;
                match op {
                    Op::Data { records, value_bytes } => {
                        let vals: Vec<Vec<u8>> = (0..records)
                            .map(|i| { tag = tag.wrapping_add(1); vec![tag; value_bytes + i] })
                            .collect();
                        log.append_raft(batch_of(&vals, index as i64), stamp(term, index), false).await.unwrap();
                        model.push(ModelEntry { term, control: false, values: vals });
                    }
                    Op::Control { payload_bytes } => {
                        let ack = log.append_raft_control(&vec![0xcc; payload_bytes], stamp(term, index), false).await.unwrap();
                        assert_eq!(ack.base_offset, ack.next_offset);
                        model.push(ModelEntry { term, control: true, values: Vec::new() });
                    }
                    Op::Truncate { entry_permille } => {
                        if model.is_empty() { continue; }
                        let from = 1 + (model.len() as u64 - 1) * u64::from(entry_permille) / 1000;
                        log.truncate_raft_suffix(from).await.unwrap();
                        model.truncate(from as usize - 1);
                    }
                    Op::NewTerm => term += 1,
                    Op::Reopen => {
                        drop(log);
                        log = PartitionLog::open(&path, model_config(), pool.clone()).await.unwrap();
                    }
                }
                // The raft map equals the model, without I/O.
                let want_last = model.last().map(|e| (model.len() as u64, e.term));
                if model.is_empty() {
                    assert!(log.first_raft_index().is_none());
                } else {
                    assert_eq!(log.last_raft_entry(), want_last);
                }
                let mut offset = 0u64;
                for (i, e) in model.iter().enumerate() {
                    let loc = log.raft_entry(i as u64 + 1).expect("held");
                    assert_eq!((loc.term, loc.control, loc.base_offset), (e.term, e.control, offset), "entry {}", i + 1);
                    offset += e.values.len() as u64;
                }
                assert_eq!(log.offsets().log_end, offset);
            }
            // Raft reads return every entry; consumer reads exactly the data.
            let entries = raft_read_all(&log, 1).await;
            assert_eq!(entries.len(), model.len());
            for (b, e) in entries.iter().zip(&model) {
                let h = peek_header(b).unwrap();
                assert_eq!((h.leader_epoch(), h.is_control()), (e.term, e.control));
            }
            let want: Vec<Vec<u8>> = model.iter().flat_map(|e| e.values.clone()).collect();
            assert_eq!(data_values(read_all(&log, 0).await), want);
            drop(log);
            let log = PartitionLog::open(&path, model_config(), pool).await.unwrap();
            assert_eq!(raft_read_all(&log, 1).await, entries, "final reopen, byte-exact");
            assert_eq!(data_values(read_all(&log, 0).await), want);
        });
    }
}

//! Crash test of the log as a Raft log: a child (`log-crash-writer --raft`)
//! appends as a Raft leader (data and control entries, a new term each
//! start and now and then, each entry fdatasync'ed before it is acked) and
//! prints each acknowledged entry; we `kill -9` it at random moments, and
//! after each kill reopen the log and check that every acknowledged entry
//! is there with its term, kind and offsets, that the Raft indexes are
//! contiguous and agree with the stored headers, and that consumers read
//! exactly the data entries' records. The next round's child continues from
//! the log's last Raft entry. Replay a failure with `CRASH_SEED=...`.

mod common;
#[path = "../src/bin/log-crash-writer/value.rs"]
mod value;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{crash_seed, kill_crash_writer, next_rand, read_all, run, KillClock};
use sprawl_storage::batch::peek_header;
use sprawl_storage::{BatchView, LogConfig, PartitionLog};
use value::{raft_values, values_digest};

const ROUNDS: usize = 10;
/// Small segments, so that rolls (and segments ending in control entries)
/// happen between kills.
const SEGMENT_BYTES: u64 = 32 << 10;

/// An acknowledged entry as the child printed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Acked {
    term: u64,
    control: bool,
    base_offset: u64,
    next_offset: u64,
    /// Data entries: [`values_digest`] of the records' values.
    digest: Option<u32>,
}

/// `RAFT <index> <term> D <base> <next> <digest>` or
/// `RAFT <index> <term> C <base> <next>`.
fn parse_ack(line: &str) -> (u64, Acked) {
    let parts: Vec<&str> = line.split_whitespace().collect();
    let num = |i: usize| -> u64 { parts[i].parse().unwrap_or_else(|_| panic!("{line:?}")) };
    assert_eq!(parts[0], "RAFT", "{line:?}");
    let control = match parts[3] {
        "C" => true,
        "D" => false,
        _ => panic!("bad kind: {line:?}"),
    };
    let digest = (!control).then(|| num(6) as u32);
    let acked = Acked {
        term: num(2),
        control,
        base_offset: num(4),
        next_offset: num(5),
        digest,
    };
    (num(1), acked)
}

#[test]
fn every_acknowledged_raft_entry_survives_kill_9() {
    let seed = crash_seed();
    let mut rng = seed;
    let dir = tempfile::tempdir().unwrap();
    let mut acked: BTreeMap<u64, Acked> = BTreeMap::new();
    // The log's last entry as the previous check saw it.
    let mut last = None;
    for round in 0..ROUNDS {
        let kill_after = Duration::from_millis(next_rand(&mut rng) % 250);
        let started = Instant::now();
        let lines = kill_crash_writer(
            &[
                std::ffi::OsStr::new("--raft"),
                dir.path().as_os_str(),
                SEGMENT_BYTES.to_string().as_ref(),
            ],
            KillClock::FromFirstLine,
            kill_after,
        );
        let opened = lines[0]
            .strip_prefix("RAFT-OPEN ")
            .unwrap_or_else(|| panic!("first line {:?}", lines[0]));
        assert_eq!(
            opened,
            match last {
                Some((index, term)) => format!("{index} {term}"),
                None => "0 0".to_string(),
            },
            "seed {seed} round {round}: the child opened what the check saw"
        );
        let before = acked.len();
        for line in &lines[1..] {
            let (index, ack) = parse_ack(line);
            assert_eq!(
                acked.insert(index, ack),
                None,
                "seed {seed} round {round}: entry {index} acked twice"
            );
        }
        last = check_log(dir.path(), acked.clone(), seed, round);
        eprintln!(
            "round {round}: killed {kill_after:?} after open ({:?} in all), {} entries acked, log ends at {last:?}",
            started.elapsed(),
            acked.len() - before,
        );
    }
    let terms: std::collections::BTreeSet<u64> = acked.values().map(|a| a.term).collect();
    assert!(
        acked.values().filter(|a| a.control).count() > 1
            && acked.values().filter(|a| !a.control).count() > 1
            && terms.len() > 1,
        "seed {seed}: the child acknowledged data and control entries over several terms"
    );
}

/// Reopens the log and checks it against the acknowledged entries; returns
/// its last Raft entry.
fn check_log(
    dir: &Path,
    acked: BTreeMap<u64, Acked>,
    seed: u64,
    round: usize,
) -> Option<(u64, u64)> {
    let path = dir.to_path_buf();
    run(dir, move |pool| async move {
        let ctx = format!("seed {seed} round {round}");
        let config = LogConfig {
            segment_bytes: SEGMENT_BYTES,
            ..LogConfig::default()
        };
        let log = PartitionLog::open(&path, config, pool).await.unwrap();
        let last = log.last_raft_entry();
        if let Some((&max_acked, _)) = acked.last_key_value() {
            let (last_index, _) = last.unwrap_or_else(|| panic!("{ctx}: no raft entry"));
            assert!(
                last_index >= max_acked,
                "{ctx}: last {last_index} < acked {max_acked}"
            );
            assert_eq!(log.first_raft_index(), Some(1), "{ctx}");
            assert!(
                log.synced_raft_index() >= Some(max_acked),
                "{ctx}: synced {:?} < acked {max_acked}",
                log.synced_raft_index()
            );
        }
        // Every entry from the first, through `read_raft`, against the map.
        let mut data = Vec::new();
        let mut index = log.first_raft_index().unwrap_or(1);
        let mut next_offset = 0;
        let mut term = 0;
        let mut acked_seen = 0;
        loop {
            let batches = log.read_raft(index, 16 << 10).await.unwrap();
            if batches.is_empty() {
                break;
            }
            for b in batches {
                let h = peek_header(&b).unwrap();
                let loc = log
                    .raft_entry(index)
                    .unwrap_or_else(|| panic!("{ctx}: entry {index} read but not mapped"));
                assert_eq!(h.raft_index(), index, "{ctx}: indexes are contiguous");
                assert_eq!(
                    (h.leader_epoch(), h.is_control(), h.base_offset()),
                    (loc.term, loc.control, loc.base_offset),
                    "{ctx}: entry {index}: header vs map"
                );
                assert_eq!(log.raft_term(index), Some(loc.term), "{ctx}");
                assert!(loc.term >= term, "{ctx}: entry {index}: term went down");
                assert_eq!(h.base_offset(), next_offset, "{ctx}: entry {index}");
                let view = BatchView::parse_exact(&b)
                    .unwrap_or_else(|e| panic!("{ctx}: entry {index}: {e:?}"));
                let values: Vec<Vec<u8>> = view
                    .records()
                    .map(|r| r.expect("valid record").value.to_vec())
                    .collect();
                if loc.control {
                    assert!(values.is_empty(), "{ctx}: entry {index}");
                } else {
                    assert_eq!(
                        values,
                        raft_values(index, loc.term),
                        "{ctx}: entry {index} holds a torn or foreign value"
                    );
                }
                if let Some(a) = acked.get(&index) {
                    let digest = values_digest(values.iter().map(Vec::as_slice));
                    let got = Acked {
                        term: loc.term,
                        control: loc.control,
                        base_offset: h.base_offset(),
                        next_offset: h.next_offset(),
                        digest: (!loc.control).then_some(digest),
                    };
                    assert_eq!(&got, a, "{ctx}: acknowledged entry {index}");
                    acked_seen += 1;
                }
                next_offset = h.next_offset();
                term = loc.term;
                data.extend(values);
                index += 1;
            }
        }
        assert_eq!(
            last.map(|(i, t)| (i + 1, t)),
            (index > 1).then_some((index, term)),
            "{ctx}: read_raft reads up to the last entry"
        );
        assert_eq!(log.raft_entry(index), None, "{ctx}");
        assert_eq!(acked_seen, acked.len(), "{ctx}: every acked entry is there");
        assert_eq!(log.offsets().log_end, next_offset, "{ctx}");
        // Consumers read the data entries' records, in order, no control
        // batch (`read_all` checks that and the offsets).
        let read: Vec<Vec<u8>> = read_all(&log, 0)
            .await
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        assert!(
            read == data,
            "{ctx}: consumer reads differ from the data entries"
        );
        last
    })
}

//! Crash test: a child appends and prints each acknowledged offset; we
//! `kill -9` it at random moments, reopen the log and check that every
//! acknowledged record is there, in order, CRC-valid, and nothing torn is served.
//! The seed is printed so a failure can be replayed (`CRASH_SEED=...`).

mod common;
#[path = "../src/bin/log-crash-writer/value.rs"]
mod value;

use std::time::{Duration, Instant};

use common::{crash_seed, kill_crash_writer, next_rand, read_all, run, KillClock};
use sprawl_storage::{LogConfig, PartitionLog};

const KILLS: usize = 24;

#[test]
fn every_acknowledged_record_survives_kill_9() {
    let seed = crash_seed();
    let mut rng = seed;
    let dir = tempfile::tempdir().unwrap();
    let mut acked_end = 0u64;
    for round in 0..KILLS {
        let kill_after = Duration::from_millis(30 + next_rand(&mut rng) % 400);
        let started = Instant::now();
        let lines = kill_crash_writer(
            &[
                dir.path().as_os_str(),
                (1u64 << 20).to_string().as_ref(),
                (round as u64 * 1_000_000).to_string().as_ref(),
            ],
            KillClock::FromSpawn,
            kill_after,
        );
        let mut max_next = 0u64;
        let mut opened_at = None;
        for line in &lines {
            let mut parts = line.split_whitespace();
            match parts.next() {
                Some("OPEN") => opened_at = Some(parts.next().unwrap().parse::<u64>().unwrap()),
                Some("ACK") => {
                    let _base: u64 = parts.next().unwrap().parse().unwrap();
                    let next: u64 = parts.next().unwrap().parse().unwrap();
                    max_next = max_next.max(next);
                }
                _ => {}
            }
        }
        if let Some(opened) = opened_at {
            assert!(
                opened >= acked_end,
                "seed {seed} round {round}: reopened at {opened} < acked {acked_end}"
            );
        }
        acked_end = acked_end.max(max_next);
        eprintln!(
            "round {round}: killed after {:?}, acked up to {acked_end}",
            started.elapsed()
        );
    }
    assert!(acked_end > 0, "the child acknowledged something");
    let path = dir.path().to_path_buf();
    let (end, records) = run(dir.path(), move |pool| async move {
        let log = PartitionLog::open(&path, LogConfig::default(), pool)
            .await
            .unwrap();
        let records = read_all(&log, 0).await;
        (log.offsets().log_end, records)
    });
    assert!(
        end >= acked_end,
        "seed {seed}: log ends at {end}, acked {acked_end}"
    );
    assert_eq!(
        records.len() as u64,
        end,
        "every record up to the log end reads back"
    );
    // Values are self-describing: check each, and that each appender's
    // sequence numbers only grow along the log within a run.
    let mut last_seq = std::collections::HashMap::new();
    for (offset, value) in &records {
        assert!(value.len() >= 9, "offset {offset}: short value");
        let appender = value[0];
        let seq = u64::from_le_bytes(value[1..9].try_into().unwrap());
        assert_eq!(
            value,
            &value::record_value(appender, seq),
            "seed {seed}: offset {offset} holds a torn or foreign value"
        );
        let run_id = seq / 1_000_000;
        if let Some(&(prev_run, prev_seq)) = last_seq.get(&appender) {
            if prev_run == run_id {
                assert!(
                    seq > prev_seq,
                    "seed {seed}: appender {appender} out of order at offset {offset}"
                );
            }
        }
        last_seq.insert(appender, (run_id, seq));
    }
}

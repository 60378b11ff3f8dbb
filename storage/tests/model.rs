//! Property test: random sequences of append / read / reopen / truncate /
//! sync agree with an in-memory model of the log.

mod common;

use common::{batch_of, read_all, run};
use proptest::prelude::*;
use sprawl_storage::{LogConfig, PartitionLog};

#[derive(Debug, Clone)]
enum Op {
    Append { records: usize, value_bytes: usize },
    Read { at_permille: u16 },
    Reopen,
    Truncate { batch_permille: u16 },
    Sync,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1usize..6, 0usize..700).prop_map(|(records, value_bytes)| Op::Append { records, value_bytes }),
        3 => (0u16..=1000).prop_map(|at_permille| Op::Read { at_permille }),
        1 => Just(Op::Reopen),
        1 => (0u16..=1000).prop_map(|batch_permille| Op::Truncate { batch_permille }),
        1 => Just(Op::Sync),
    ]
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 8 << 10,
        index_interval_bytes: 512,
        ring_bytes: 2 << 10,
        write_bytes_max: 4096,
        ..LogConfig::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn log_agrees_with_model(ops in proptest::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run(dir.path(), move |pool| async move {
            let mut log = PartitionLog::open(&path, config(), pool.clone()).await.unwrap();
            // The model: every record value, and the batch start offsets.
            let mut values: Vec<Vec<u8>> = Vec::new();
            let mut batch_starts: Vec<u64> = Vec::new();
            let mut tag = 0u8;
            for op in ops {
                match op {
                    Op::Append { records, value_bytes } => {
                        let vals: Vec<Vec<u8>> = (0..records)
                            .map(|i| { tag = tag.wrapping_add(1); vec![tag; value_bytes + i] })
                            .collect();
                        let ack = log.append(batch_of(&vals, values.len() as i64)).await.unwrap();
                        assert_eq!(ack.base_offset, values.len() as u64);
                        batch_starts.push(ack.base_offset);
                        values.extend(vals);
                    }
                    Op::Read { at_permille } => {
                        let at = values.len() as u64 * u64::from(at_permille) / 1000;
                        let got = read_all(&log, at).await;
                        let want: Vec<(u64, Vec<u8>)> =
                            values.iter().cloned().enumerate().skip(at as usize).map(|(i, v)| (i as u64, v)).collect();
                        assert_eq!(got, want, "read from {at}");
                    }
                    Op::Reopen => {
                        drop(log);
                        log = PartitionLog::open(&path, config(), pool.clone()).await.unwrap();
                    }
                    Op::Truncate { batch_permille } => {
                        if batch_starts.is_empty() { continue; }
                        let i = (batch_starts.len() - 1) * usize::from(batch_permille) / 1000;
                        let offset = batch_starts[i];
                        log.truncate_suffix(offset).await.unwrap();
                        batch_starts.truncate(i);
                        values.truncate(offset as usize);
                    }
                    Op::Sync => log.sync().await.unwrap(),
                }
                let o = log.offsets();
                assert_eq!(o.log_end, values.len() as u64);
                assert_eq!(o.high_watermark, values.len() as u64);
            }
            drop(log);
            let log = PartitionLog::open(&path, config(), pool).await.unwrap();
            let got: Vec<Vec<u8>> = read_all(&log, 0).await.into_iter().map(|(_, v)| v).collect();
            assert_eq!(got, values, "final reopen");
        });
    }
}

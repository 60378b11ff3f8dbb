//! The runtime end to end, without a network: two shards, a topic whose
//! partitions spread over both, requests forwarded over the mesh, and a
//! restart that recovers data, catalog and group offsets.

use std::rc::Rc;
use std::sync::mpsc;

use bytes::Bytes;
use sprawl_shards::{
    owner_shard, Runtime, RuntimeConfig, Shard, ShardConfig, ShardError, ShardReply, ShardRequest,
    TopicCatalog, TopicConfig,
};
use sprawl_storage::{BatchBuilder, BatchView, LogConfig, Record};

fn config(dir: &std::path::Path) -> RuntimeConfig {
    RuntimeConfig {
        shard_count: 2,
        pin_cpus: false,
        io_memory_bytes: 1 << 20,
        shard: ShardConfig {
            data_dir: dir.to_path_buf(),
            log: LogConfig {
                segment_bytes: 1 << 20,
                ..LogConfig::default()
            },
            fetch_wait_ms_max: 1000,
            retention_check_ms: 60_000,
            disk_free_bytes_min: 0,
            tiered: None,
            load_sink: None,
            node_id: None,
            replication: None,
        },
    }
}

fn batch(partition: u32, i: u32) -> Bytes {
    let mut b = BatchBuilder::new();
    let v = format!("p{partition}-m{i}");
    b.push(&Record {
        timestamp_ms: 1,
        value: v.as_bytes(),
        ..Default::default()
    });
    Bytes::from(b.finish())
}

/// Runs `work` on shard 0 of a fresh runtime over `dir`, then shuts down.
fn with_runtime<F, Fut>(dir: &std::path::Path, work: F)
where
    F: FnOnce(Rc<Shard>) -> Fut + Send + Clone + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let catalog = TopicCatalog::load(&dir.join("topics.json")).unwrap();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let runtime = Runtime::start(config(dir), catalog, move |shard: Rc<Shard>| {
        let (work, done_tx) = (work.clone(), done_tx.clone());
        async move {
            shard.signal_ready();
            if shard.id == 0 {
                work(shard.clone()).await;
                done_tx.send(()).unwrap();
            }
            shard.shutdown_signal().await;
        }
    })
    .unwrap();
    runtime.wait_ready().unwrap();
    // A panic on a shard thread would otherwise leave this waiting forever.
    done_rx
        .recv_timeout(std::time::Duration::from_secs(120))
        .expect("work finished (or a shard panicked: see its output)");
    runtime.request_shutdown();
    runtime.join().unwrap();
}

#[test]
fn requests_reach_owners_and_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    assert!(
        (0..8).any(|p| owner_shard("events", p, 2) == 1),
        "some partition lives on shard 1"
    );
    with_runtime(dir.path(), |shard| async move {
        let created = shard
            .on(
                0,
                ShardRequest::CreateTopic {
                    name: "events".into(),
                    config: TopicConfig {
                        partitions: 8,
                        retention_bytes: None,
                        retention_ms: None,
                        created_ms: 0,
                    },
                },
            )
            .await;
        assert!(matches!(created, Ok(ShardReply::Catalog(_))));
        for p in 0..8 {
            for i in 0..10 {
                let owner = shard.owner_of("events", p);
                let r = shard
                    .on(
                        owner,
                        ShardRequest::Produce {
                            topic: "events".into(),
                            partition: p,
                            batch: batch(p, i),
                            durable: true,
                        },
                    )
                    .await
                    .unwrap();
                assert!(
                    matches!(r, ShardReply::Produced { base_offset, .. } if base_offset == u64::from(i))
                );
            }
            let owner = shard.owner_of("events", p);
            shard
                .on(
                    owner,
                    ShardRequest::CommitOffset {
                        group: "g".into(),
                        topic: "events".into(),
                        partition: p,
                        offset: 4,
                        metadata: String::new(),
                    },
                )
                .await
                .unwrap();
        }
        let unknown = shard
            .on(
                shard.owner_of("nope", 0),
                ShardRequest::Offsets {
                    topic: "nope".into(),
                    partition: 0,
                },
            )
            .await;
        assert_eq!(
            unknown.unwrap_err(),
            ShardError::UnknownTopic("nope".into())
        );
    });
    // Restart: the catalog, records and group offsets are all back.
    with_runtime(dir.path(), |shard| async move {
        assert_eq!(shard.catalog().get("events").unwrap().partitions, 8);
        for p in 0..8 {
            let owner = shard.owner_of("events", p);
            let r = shard
                .on(
                    owner,
                    ShardRequest::Fetch {
                        topic: "events".into(),
                        partition: p,
                        offset: 3,
                        bytes_max: 1 << 20,
                        wait_ms: 0,
                    },
                )
                .await
                .unwrap();
            let ShardReply::Fetched { batches, offsets } = r else {
                panic!()
            };
            assert_eq!(offsets.high_watermark, 10);
            let values: Vec<String> = batches
                .iter()
                .flat_map(|b| {
                    let view = BatchView::parse_exact(b).unwrap();
                    view.records()
                        .map(|r| String::from_utf8(r.unwrap().value.to_vec()).unwrap())
                        .collect::<Vec<_>>()
                })
                .collect();
            assert_eq!(values[0], format!("p{p}-m3"));
            assert_eq!(values.len(), 7);
            let c = shard
                .on(
                    owner,
                    ShardRequest::CommittedOffset {
                        group: "g".into(),
                        topic: "events".into(),
                        partition: p,
                    },
                )
                .await
                .unwrap();
            assert!(matches!(c, ShardReply::Committed(Some(ref o)) if o.offset == 4));
        }
        // A long-poll fetch wakes up when data arrives.
        let owner = shard.owner_of("events", 0);
        let waiter = {
            let shard = shard.clone();
            glommio::spawn_local(async move {
                shard
                    .on(
                        owner,
                        ShardRequest::Fetch {
                            topic: "events".into(),
                            partition: 0,
                            offset: 10,
                            bytes_max: 1 << 20,
                            wait_ms: 900,
                        },
                    )
                    .await
            })
        };
        glommio::timer::sleep(std::time::Duration::from_millis(20)).await;
        let started = std::time::Instant::now();
        shard
            .on(
                owner,
                ShardRequest::Produce {
                    topic: "events".into(),
                    partition: 0,
                    batch: batch(0, 10),
                    durable: true,
                },
            )
            .await
            .unwrap();
        let ShardReply::Fetched { batches, .. } = waiter.await.unwrap() else {
            panic!()
        };
        assert_eq!(batches.len(), 1);
        assert!(
            started.elapsed() < std::time::Duration::from_millis(500),
            "woken by the append"
        );
        // Delete removes the partition directories.
        shard
            .on(
                1,
                ShardRequest::DeleteTopic {
                    name: "events".into(),
                },
            )
            .await
            .unwrap();
        assert!(shard.catalog().get("events").is_none());
    });
    assert!(!dir.path().join("topics/events").exists());
}

/// Produces `count` batches of one record to `topic`/`partition` through
/// whichever shard the catalog names each time, retrying the retryable
/// answer a move gives; returns the acknowledged base offsets.
async fn produce_through_moves(
    shard: Rc<Shard>,
    topic: &'static str,
    partition: u32,
    count: u32,
) -> Vec<u64> {
    let mut acked = Vec::new();
    for i in 0..count {
        loop {
            let owner = shard.owner_of(topic, partition);
            let r = shard
                .on(
                    owner,
                    ShardRequest::Produce {
                        topic: topic.into(),
                        partition,
                        batch: batch(partition, i),
                        durable: i % 2 == 0,
                    },
                )
                .await;
            match r {
                Ok(ShardReply::Produced { base_offset, .. }) => {
                    acked.push(base_offset);
                    break;
                }
                Err(ShardError::PartitionMoving(_)) => continue,
                other => panic!("produce {i}: {other:?}"),
            }
        }
    }
    acked
}

fn create_topic(partitions: u32) -> ShardRequest {
    ShardRequest::CreateTopic {
        name: "moving".into(),
        config: TopicConfig {
            partitions,
            retention_bytes: None,
            retention_ms: None,
            created_ms: 0,
        },
    }
}

#[test]
fn partitions_move_between_shards_under_load_and_stay_moved() {
    let dir = tempfile::tempdir().unwrap();
    let home = owner_shard("moving", 0, 2);
    with_runtime(dir.path(), move |shard| async move {
        shard.on(0, create_topic(2)).await.unwrap();
        let producer = glommio::spawn_local(produce_through_moves(shard.clone(), "moving", 0, 400));
        // A long poll parked on the source must not sleep through a move.
        let poller = {
            let shard = shard.clone();
            glommio::spawn_local(async move {
                let started = std::time::Instant::now();
                let r = shard
                    .on(
                        shard.owner_of("moving", 1),
                        ShardRequest::Fetch {
                            topic: "moving".into(),
                            partition: 1,
                            offset: 0,
                            bytes_max: 1 << 20,
                            wait_ms: 1000,
                        },
                    )
                    .await;
                (r, started.elapsed())
            })
        };
        glommio::timer::sleep(std::time::Duration::from_millis(20)).await;
        let p1_home = shard.owner_of("moving", 1);
        let moved = shard
            .on(
                0,
                ShardRequest::MovePartition {
                    topic: "moving".into(),
                    partition: 1,
                    to: 1 - p1_home,
                },
            )
            .await
            .unwrap();
        assert!(
            matches!(moved, ShardReply::Moved { from, to, .. } if from == p1_home && to == 1 - p1_home)
        );
        let (fetched, waited) = poller.await;
        assert!(fetched.is_ok(), "{fetched:?}");
        assert!(
            waited < std::time::Duration::from_millis(900),
            "long poll slept through the move: {waited:?}"
        );

        // Partition 0 goes back and forth while the producer runs.
        for round in 0..4 {
            let to = if round % 2 == 0 { 1 - home } else { home };
            let r = shard
                .on(
                    0,
                    ShardRequest::MovePartition {
                        topic: "moving".into(),
                        partition: 0,
                        to,
                    },
                )
                .await;
            assert!(
                matches!(r, Ok(ShardReply::Moved { .. })),
                "round {round}: {r:?}"
            );
            assert_eq!(shard.owner_of("moving", 0), to);
            glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
        }
        // A move to where it already is, or to no shard, is refused.
        let same = shard
            .on(
                0,
                ShardRequest::MovePartition {
                    topic: "moving".into(),
                    partition: 0,
                    to: home,
                },
            )
            .await;
        assert!(
            matches!(same, Err(ShardError::InvalidRequest(_))),
            "{same:?}"
        );
        let acked = producer.await;
        assert_eq!(
            acked,
            (0..400).collect::<Vec<u64>>(),
            "every ack, in order, no gap"
        );
        // One more move back, so the restart below finds it off its hash shard.
        shard
            .on(
                0,
                ShardRequest::MovePartition {
                    topic: "moving".into(),
                    partition: 0,
                    to: 1 - home,
                },
            )
            .await
            .unwrap();
    });
    // The placement survives a restart, with every record in order.
    with_runtime(dir.path(), move |shard| async move {
        assert_eq!(shard.owner_of("moving", 0), 1 - home);
        let mut next = 0;
        loop {
            let r = shard
                .on(
                    shard.owner_of("moving", 0),
                    ShardRequest::Fetch {
                        topic: "moving".into(),
                        partition: 0,
                        offset: next,
                        bytes_max: 1 << 20,
                        wait_ms: 0,
                    },
                )
                .await
                .unwrap();
            let ShardReply::Fetched { batches, .. } = r else {
                panic!()
            };
            if batches.is_empty() {
                break;
            }
            for b in &batches {
                let view = BatchView::parse_exact(b).unwrap();
                for record in view.records() {
                    let record = record.unwrap();
                    if record.offset < next {
                        continue;
                    }
                    assert_eq!(record.offset, next);
                    assert_eq!(record.value, format!("p0-m{next}").as_bytes());
                    next += 1;
                }
            }
        }
        assert_eq!(next, 400);
    });
}

#[test]
fn a_move_left_unfinished_rolls_back_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let home = owner_shard("moving", 0, 2);
    with_runtime(dir.path(), move |shard| async move {
        shard.on(0, create_topic(1)).await.unwrap();
        let acked = produce_through_moves(shard.clone(), "moving", 0, 10).await;
        assert_eq!(acked.len(), 10);
    });
    // What a node killed between fencing and the switch leaves behind.
    let path = dir.path().join("topics.json");
    let mut catalog = TopicCatalog::load(&path).unwrap();
    catalog.begin_move("moving", 0, 1 - home, 2, 0).unwrap();
    catalog.save(&path).unwrap();
    with_runtime(dir.path(), move |shard| async move {
        assert!(
            shard.catalog().moves().is_empty(),
            "the intent is rolled back"
        );
        assert_eq!(shard.owner_of("moving", 0), home);
        let acked = produce_through_moves(shard.clone(), "moving", 0, 1).await;
        assert_eq!(acked, [10]);
    });
    assert!(TopicCatalog::load(&path).unwrap().moving.is_empty());
}

#[test]
fn concurrent_catalog_changes_are_all_kept() {
    let dir = tempfile::tempdir().unwrap();
    with_runtime(dir.path(), |shard| async move {
        // Creates from both shards at once, while a partition moves: each
        // change must start from the previous one, none may be lost.
        shard.on(0, create_topic(2)).await.unwrap();
        let mut tasks = Vec::new();
        for i in 0..12 {
            let shard = shard.clone();
            tasks.push(glommio::spawn_local(async move {
                shard
                    .on(
                        i % 2,
                        ShardRequest::CreateTopic {
                            name: format!("t{i}"),
                            config: TopicConfig {
                                partitions: 1,
                                retention_bytes: None,
                                retention_ms: None,
                                created_ms: 0,
                            },
                        },
                    )
                    .await
            }));
        }
        let to = 1 - shard.owner_of("moving", 0);
        let moved = shard
            .on(
                0,
                ShardRequest::MovePartition {
                    topic: "moving".into(),
                    partition: 0,
                    to,
                },
            )
            .await;
        assert!(matches!(moved, Ok(ShardReply::Moved { .. })), "{moved:?}");
        for t in tasks {
            t.await.unwrap();
        }
        let catalog = shard.catalog().clone();
        for i in 0..12 {
            assert!(catalog.get(&format!("t{i}")).is_some(), "t{i} was lost");
        }
        assert_eq!(
            catalog.owner("moving", 0, 2),
            to,
            "the move was not lost either"
        );
    });
    let catalog = TopicCatalog::load(&dir.path().join("topics.json")).unwrap();
    assert_eq!(catalog.topics.len(), 13);
}

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
    done_rx.recv().expect("work finished");
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

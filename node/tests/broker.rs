//! The node end to end with the Rust client: 100k messages over two shards
//! and eight partitions, read back in order and byte-exact; restarts by
//! SIGTERM and by `kill -9` after durable acks; consumer-group offsets that
//! survive a restart; subscriptions.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::NodeProcess;
use sprawl_client::{
    Acks, Client, ClientConfig, Consumer, Producer, ProducerConfig, Record, ServerTrust,
    StartPosition,
};

const TOPIC: &str = "events";
const PARTITIONS: u32 = 8;
const MESSAGES: usize = 100_000;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn connect(node: &NodeProcess) -> Client {
    Client::connect(ClientConfig::new(node.quic, ServerTrust::CaFile(node.ca())))
        .await
        .expect("connect")
}

/// The value of message `i`: self-describing, varied sizes.
fn value(i: usize) -> Vec<u8> {
    let mut v = format!("message-{i:07}-").into_bytes();
    v.extend(std::iter::repeat_n(b'a' + (i % 26) as u8, i % 200));
    v
}

/// Produces `MESSAGES` keyed messages with durable acks; returns, per
/// partition, the message indexes in acknowledged offset order.
async fn produce_all(client: &Client) -> BTreeMap<u32, Vec<(u64, usize)>> {
    let producer = Producer::new(
        client,
        ProducerConfig {
            acks: Acks::Durable,
            ..ProducerConfig::default()
        },
    )
    .unwrap();
    let acks: Vec<_> = (0..MESSAGES)
        .map(|i| {
            producer.send(
                TOPIC,
                Record::new(value(i)).with_key(format!("key-{}", i % 97)),
            )
        })
        .collect();
    let mut by_partition: BTreeMap<u32, Vec<(u64, usize)>> = BTreeMap::new();
    for (i, ack) in acks.into_iter().enumerate() {
        let ack = ack.await.expect("durable ack");
        by_partition
            .entry(ack.partition)
            .or_default()
            .push((ack.offset.unwrap(), i));
    }
    by_partition
}

/// Reads every partition from 0 and checks it holds exactly what was acked, in order.
async fn verify_all(client: &Client, expected: &BTreeMap<u32, Vec<(u64, usize)>>) {
    let consumer = Consumer::new(client);
    for (&p, acked) in expected {
        let mut next = 0;
        let mut got = Vec::new();
        loop {
            let f = consumer
                .fetch(TOPIC, p, next, 1 << 20, Duration::ZERO)
                .await
                .unwrap();
            if f.records.is_empty() {
                break;
            }
            for r in &f.records {
                got.push((r.offset, r.value.to_vec()));
            }
            next = f.next_offset;
        }
        assert_eq!(got.len(), acked.len(), "partition {p}: record count");
        for ((offset, v), (acked_offset, i)) in got.iter().zip(acked) {
            assert_eq!(offset, acked_offset, "partition {p}: offsets in ack order");
            assert_eq!(v, &value(*i), "partition {p} offset {offset}: byte-exact");
        }
    }
}

#[test]
fn hundred_thousand_messages_survive_sigterm_and_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = NodeProcess::start(dir.path(), 2);
    let rt = runtime();
    let expected = rt.block_on(async {
        let client = connect(&node).await;
        let topic = client
            .create_topic(TOPIC, PARTITIONS, None, None)
            .await
            .unwrap();
        assert_eq!(topic.partition_count, PARTITIONS);
        let expected = produce_all(&client).await;
        assert!(expected.len() >= 4, "keys spread over partitions");
        verify_all(&client, &expected).await;
        expected
    });
    // Partitions live on both shards.
    let (_, topics) = node.admin_get("/topics");
    assert!(
        topics.contains("\"shard\":0") && topics.contains("\"shard\":1"),
        "{topics}"
    );

    assert_eq!(node.terminate(), Some(0), "SIGTERM exits 0");
    let mut node = NodeProcess::start(dir.path(), 2);
    rt.block_on(async {
        let client = connect(&node).await;
        verify_all(&client, &expected).await;
        // More durable acks, then kill -9: they must all be there.
        let producer = Producer::new(&client, ProducerConfig::default()).unwrap();
        for i in 0..1000 {
            producer
                .send(TOPIC, Record::new(format!("after-{i}")).with_partition(0))
                .await
                .unwrap();
        }
    });
    node.kill_9();
    let node = NodeProcess::start(dir.path(), 2);
    rt.block_on(async {
        let client = connect(&node).await;
        let mut expected = expected.clone();
        let p0 = expected.entry(0).or_default();
        let before = p0.len() as u64;
        // Partition 0 then holds the keyed messages and 1000 more.
        let info = client.describe_topic(TOPIC).await.unwrap();
        // Without an archive the local tier is the whole log.
        for p in &info.partitions {
            assert_eq!(p.local_log_start_offset, p.log_start_offset, "{p:?}");
            assert_eq!(p.local_bytes, p.size_bytes, "{p:?}");
            assert_eq!(
                (
                    p.archive_start_offset,
                    p.archive_end_offset,
                    p.archive_bytes
                ),
                (None, None, 0),
                "{p:?}"
            );
        }
        let hw0 = info
            .partitions
            .iter()
            .find(|p| p.partition == 0)
            .unwrap()
            .high_watermark;
        assert_eq!(
            hw0,
            before + 1000,
            "every acknowledged record survived kill -9"
        );
        p0.clear();
        let consumer = Consumer::new(&client);
        let f = consumer
            .fetch(TOPIC, 0, before, 1 << 20, Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(f.records[0].value.as_ref(), b"after-0");
    });
}

#[test]
fn consumer_group_offsets_survive_a_restart_and_subscriptions_deliver() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = NodeProcess::start(dir.path(), 2);
    let rt = runtime();
    rt.block_on(async {
        let client = connect(&node).await;
        client.create_topic("orders", 3, None, None).await.unwrap();
        let producer = Producer::new(&client, ProducerConfig::default()).unwrap();
        for i in 0..300u32 {
            producer
                .send("orders", Record::new(format!("o{i}")).with_partition(i % 3))
                .await
                .unwrap();
        }
        let consumer = Consumer::with_group(&client, "billing");
        for p in 0..3 {
            consumer
                .commit("orders", p, 40 + u64::from(p))
                .await
                .unwrap();
        }
        // A subscription from the earliest offset sees the partition's records in order.
        let mut sub = consumer
            .subscribe("orders", 1, StartPosition::Earliest, 4096)
            .await
            .unwrap();
        for expected in 0..100u64 {
            let r = sub.next().await.unwrap().unwrap();
            assert_eq!(r.offset, expected);
            assert_eq!(
                r.value.as_ref(),
                format!("o{}", expected * 3 + 1).as_bytes()
            );
        }
        // Latest: only what is produced after subscribing.
        let mut tail = consumer
            .subscribe("orders", 2, StartPosition::Latest, 4096)
            .await
            .unwrap();
        producer
            .send("orders", Record::new("late").with_partition(2))
            .await
            .unwrap();
        let r = tokio::time::timeout(Duration::from_secs(5), tail.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!((r.offset, r.value.as_ref()), (100, &b"late"[..]));
    });
    assert_eq!(node.terminate(), Some(0));
    let node = NodeProcess::start(dir.path(), 2);
    rt.block_on(async {
        let client = connect(&node).await;
        for p in 0..3 {
            let c = client
                .committed_offset("billing", "orders", p)
                .await
                .unwrap();
            assert_eq!(c, Some(40 + u64::from(p)), "partition {p}");
        }
        assert_eq!(
            client
                .committed_offset("nobody", "orders", 0)
                .await
                .unwrap(),
            None
        );
        let (_, metrics) = node.admin_get("/metrics");
        assert!(
            metrics.contains("sprawl_partition_high_watermark{topic=\"orders\""),
            "{metrics}"
        );
    });
}

fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .parse()
        .unwrap();
    kb * 1024
}

#[test]
fn a_stalled_subscriber_neither_blocks_producers_nor_grows_memory() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(dir.path(), 2);
    let pid = node.child.as_ref().unwrap().id();
    let rt = runtime();
    rt.block_on(async {
        let client = connect(&node).await;
        client
            .create_topic("firehose", 1, None, None)
            .await
            .unwrap();
        // A subscriber that takes one record and then stops reading.
        let stalled_client = connect(&node).await;
        let mut stalled = Consumer::new(&stalled_client)
            .subscribe("firehose", 0, StartPosition::Earliest, 64 << 10)
            .await
            .unwrap();
        let producer = Producer::new(&client, ProducerConfig::default()).unwrap();
        producer
            .send("firehose", Record::new(vec![0u8; 1024]))
            .await
            .unwrap();
        let first = stalled.next().await.unwrap().unwrap();
        assert_eq!(first.offset, 0);
        let rss_before = rss_bytes(pid);
        // 64 MiB more while the subscriber sits on its credit.
        let started = std::time::Instant::now();
        let acks: Vec<_> = (0..65_536)
            .map(|_| producer.send("firehose", Record::new(vec![7u8; 1024])))
            .collect();
        for a in acks {
            a.await.unwrap();
        }
        let produce_time = started.elapsed();
        // Another consumer still reads everything promptly.
        let f = Consumer::new(&client)
            .fetch("firehose", 0, 60_000, 1 << 20, Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(f.records[0].offset, 60_000);
        let rss_after = rss_bytes(pid);
        eprintln!(
            "rss before {} MiB, after {} MiB",
            rss_before >> 20,
            rss_after >> 20
        );
        assert!(
            rss_after < rss_before + (32 << 20),
            "node memory grew from {} to {} MiB with a stalled subscriber",
            rss_before >> 20,
            rss_after >> 20
        );
        assert!(
            produce_time < Duration::from_secs(60),
            "producers were not stalled: {produce_time:?}"
        );
        // The stalled subscriber resumes where it stopped, in order.
        for expected in 1..100u64 {
            assert_eq!(stalled.next().await.unwrap().unwrap().offset, expected);
        }
    });
}

#[test]
fn a_nearly_full_disk_throttles_producers_with_a_retryable_error() {
    let dir = tempfile::tempdir().unwrap();
    // An alarm threshold no disk meets: the node must refuse to fill it.
    let node = NodeProcess::start_with(
        dir.path(),
        1,
        &["--disk-free-bytes-min", "18446744073709551615"],
    );
    std::thread::sleep(Duration::from_millis(700)); // one measurement period
    let rt = runtime();
    rt.block_on(async {
        let client = connect(&node).await;
        client.create_topic("t", 1, None, None).await.unwrap();
        let err = client
            .produce_batch("t", 0, Acks::Durable, &{
                let mut b = sprawl_storage::BatchBuilder::new();
                b.push(&sprawl_storage::Record {
                    timestamp_ms: 1,
                    value: b"x",
                    ..Default::default()
                });
                b.finish()
            })
            .await
            .unwrap_err();
        assert!(err.is_retryable(), "{err}");
        assert_eq!(
            err.remote_code(),
            Some(sprawl_client::ErrorCode::Throttled),
            "{err}"
        );
        assert!(err.to_string().contains("disk"), "{err}");
    });
    let (_, health) = node.admin_get("/health");
    assert!(health.contains("\"status\":\"degraded\""), "{health}");
    let (_, metrics) = node.admin_get("/metrics");
    assert!(
        metrics.contains("sprawl_disk_alarm{shard=\"0\"} 1"),
        "{metrics}"
    );
}

//! Tiered storage end to end: a node archiving to a real SeaweedFS (S3),
//! deleting local copies only once archived, serving every tier through one
//! offset space, surviving an S3 outage, and recovering from the archive
//! with an empty data dir.

mod common;
#[path = "../../tiered/tests/support/mod.rs"]
mod weed;

use std::time::{Duration, Instant};

use common::{free_ports, NodeProcess};
use sprawl_client::{
    Client, ClientConfig, Consumer, Producer, ProducerConfig, Record, ServerTrust, StartPosition,
};

const TOPIC: &str = "archive-me";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn start_node(data_dir: &std::path::Path, weed: &weed::Weed) -> NodeProcess {
    start_node_with_prefix(data_dir, weed, "node-test")
}

fn start_node_with_prefix(
    data_dir: &std::path::Path,
    weed: &weed::Weed,
    prefix: &str,
) -> NodeProcess {
    let (q, a) = free_ports();
    NodeProcess::start_env(
        data_dir,
        2,
        q,
        a,
        &[
            "--tiered-endpoint",
            &weed.endpoint,
            "--tiered-bucket",
            "sprawl-test",
            "--tiered-prefix",
            prefix,
            "--tiered-local-retention-bytes",
            "1",
            "--segment-bytes",
            "1048576",
            "--batch-bytes-max",
            "262144",
            // No chunk cache: every cold read goes to S3 (the outage below must show).
            "--tiered-cache-bytes",
            "0",
        ],
        &[
            ("AWS_ACCESS_KEY_ID", weed::ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", weed::SECRET_KEY),
        ],
    )
}

async fn connect(node: &NodeProcess) -> Client {
    Client::connect(ClientConfig::new(node.quic, ServerTrust::CaFile(node.ca())))
        .await
        .unwrap()
}

fn value(i: u64) -> Vec<u8> {
    let mut v = format!("record-{i:08}-").into_bytes();
    v.resize(900 + (i % 200) as usize, b'a' + (i % 26) as u8);
    v
}

/// Every record of partition 0 from the earliest offset, checked byte-exact.
async fn read_all(client: &Client, first: u64, count: u64) {
    let consumer = Consumer::new(client);
    let mut next = first;
    while next < first + count {
        let f = consumer
            .fetch(TOPIC, 0, next, 1 << 20, Duration::ZERO)
            .await
            .unwrap();
        assert!(!f.records.is_empty(), "no records at offset {next}");
        for r in &f.records {
            assert_eq!(r.offset, next, "in order");
            assert_eq!(
                r.value.as_ref(),
                value(r.offset).as_slice(),
                "byte-exact at {}",
                r.offset
            );
            next += 1;
        }
    }
}

/// Polls /tiers until `ok` holds for its JSON.
fn wait_tiers(
    node: &NodeProcess,
    what: &str,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, body) = node.admin_get("/tiers");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        if ok(&v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {v}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn partition0(v: &serde_json::Value) -> serde_json::Value {
    v["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["topic"] == TOPIC && p["partition"] == 0)
        .cloned()
        .unwrap_or_default()
}

#[test]
fn archived_data_stays_readable_through_outages_and_an_empty_data_dir() {
    let mut weed = weed::Weed::start();
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(dir.path(), &weed);
    let rt = runtime();
    const N: u64 = 6000; // ~6 MiB: several 1 MiB segments
    let t0 = rt.block_on(async {
        let client = connect(&node).await;
        client.create_topic(TOPIC, 1, None, None).await.unwrap();
        let producer = Producer::new(&client, ProducerConfig::default()).unwrap();
        let t0 = sprawl_shards::shard::now_ms();
        let acks: Vec<_> = (0..N)
            .map(|i| producer.send(TOPIC, Record::new(value(i)).with_partition(0)))
            .collect();
        for a in acks {
            a.await.unwrap();
        }
        t0
    });
    // Sealed segments get archived and their local copies deleted.
    let v = wait_tiers(&node, "archiving and local retention", |v| {
        let p = partition0(v);
        p["archive"]["segments"].as_u64().unwrap_or(0) >= 4
            && p["local"]["start_offset"].as_u64().unwrap_or(0) > 0
    });
    let p = partition0(&v);
    let local_start = p["local"]["start_offset"].as_u64().unwrap();
    assert_eq!(p["archive"]["start_offset"].as_u64(), Some(0), "{v}");
    rt.block_on(async {
        let client = connect(&node).await;
        // One offset space: earliest is 0 although the local log starts later.
        assert_eq!(
            client
                .resolve_offset(TOPIC, 0, StartPosition::Earliest)
                .await
                .unwrap(),
            0
        );
        // DescribeTopic shows both tiers (they may overlap, never gap).
        let info = client.describe_topic(TOPIC).await.unwrap();
        let p0 = &info.partitions[0];
        assert_eq!(p0.log_start_offset, 0, "{p0:?}");
        assert_eq!(p0.archive_start_offset, Some(0), "{p0:?}");
        assert!(p0.local_log_start_offset >= local_start, "{p0:?}");
        assert!(
            p0.archive_end_offset
                .is_some_and(|end| end >= p0.local_log_start_offset),
            "{p0:?}"
        );
        assert!(p0.archive_bytes > 0, "{p0:?}");
        assert!(
            p0.local_bytes > 0 && p0.local_bytes == p0.size_bytes,
            "{p0:?}"
        );
        read_all(&client, 0, N).await;
        // Find-by-timestamp lands in the archive.
        let found = client
            .resolve_offset(TOPIC, 0, StartPosition::TimestampMs(t0 as u64))
            .await
            .unwrap();
        assert!(
            found < local_start,
            "timestamp {t0} resolved to {found}, local start {local_start}"
        );
    });

    // S3 down: producing goes on; cold reads fail with a retryable error.
    weed.stop();
    rt.block_on(async {
        let client = connect(&node).await;
        let producer = Producer::new(&client, ProducerConfig::default()).unwrap();
        let acks: Vec<_> = (N..N + 1500)
            .map(|i| producer.send(TOPIC, Record::new(value(i)).with_partition(0)))
            .collect();
        for a in acks {
            a.await.unwrap();
        }
        let err = Consumer::new(&client)
            .fetch(TOPIC, 0, 0, 1 << 20, Duration::ZERO)
            .await
            .unwrap_err();
        assert!(err.is_retryable(), "{err}");
        // Local data still reads.
        read_all(&client, N, 1500).await;
    });
    weed.restart();
    // Archiving resumes; nothing lost, no duplicates.
    wait_tiers(&node, "archiving after the outage", |v| {
        partition0(v)["upload_lag"]["segments"].as_u64() == Some(0)
    });
    rt.block_on(async { read_all(&connect(&node).await, 0, N + 1500).await });
    let (_, metrics) = node.admin_get("/metrics");
    for name in [
        "sprawl_tier_archived_bytes{",
        "sprawl_tier_upload_lag_segments{",
        "sprawl_s3_requests_total{op=\"upload_segment\"}",
        "sprawl_s3_get_latency_seconds{",
    ] {
        assert!(metrics.contains(name), "/metrics lacks {name}");
    }
    drop(node);

    // A new node with an empty data dir recovers the topic from the archive.
    let empty = tempfile::tempdir().unwrap();
    let node = start_node(empty.path(), &weed);
    rt.block_on(async {
        let client = connect(&node).await;
        let info = client.describe_topic(TOPIC).await.unwrap();
        let p0 = &info.partitions[0];
        assert_eq!(p0.log_start_offset, 0, "archived history is visible");
        // Everything archived reads back; new records continue after it.
        let archived_end = p0.log_end_offset;
        assert!(archived_end > 0);
        assert_eq!(p0.archive_start_offset, Some(0), "{p0:?}");
        assert_eq!(p0.archive_end_offset, Some(archived_end), "{p0:?}");
        assert_eq!(p0.local_log_start_offset, archived_end, "{p0:?}");
        read_all(&client, 0, archived_end).await;
        let ack = Producer::new(&client, ProducerConfig::default())
            .unwrap()
            .send(TOPIC, Record::new("after recovery").with_partition(0))
            .await
            .unwrap();
        assert_eq!(
            ack.offset,
            Some(archived_end),
            "offsets continue after the archive"
        );
    });
}

#[test]
fn corrupt_archived_objects_are_reported_and_total_retention_deletes_objects() {
    let weed = weed::Weed::start();
    let dir = tempfile::tempdir().unwrap();
    let node = start_node_with_prefix(dir.path(), &weed, "faults");
    let rt = runtime();
    rt.block_on(async {
        let client = connect(&node).await;
        client.create_topic(TOPIC, 1, None, None).await.unwrap();
        // Total retention of ~2 MiB: older archived segments go everywhere.
        client
            .create_topic("short", 1, Some(2 << 20), None)
            .await
            .unwrap();
        let producer = Producer::new(&client, ProducerConfig::default()).unwrap();
        let acks: Vec<_> = (0..3000)
            .flat_map(|i| {
                [
                    producer.send(TOPIC, Record::new(value(i)).with_partition(0)),
                    producer.send("short", Record::new(value(i)).with_partition(0)),
                ]
            })
            .collect();
        for a in acks {
            a.await.unwrap();
        }
    });
    wait_tiers(&node, "archiving", |v| {
        partition0(v)["archive"]["segments"].as_u64().unwrap_or(0) >= 2
    });
    // Total retention removed the oldest segments of "short" from the archive too.
    let v = wait_tiers(&node, "total retention", |v| {
        v["partitions"].as_array().unwrap().iter().any(|p| {
            p["topic"] == "short" && p["archive"]["start_offset"].as_u64().is_some_and(|s| s > 0)
        })
    });
    let short = v["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["topic"] == "short")
        .unwrap()
        .clone();
    let start = short["archive"]["start_offset"].as_u64().unwrap();
    rt.block_on(async {
        let client = connect(&node).await;
        assert_eq!(
            client
                .resolve_offset("short", 0, StartPosition::Earliest)
                .await
                .unwrap(),
            start
        );
        let err = Consumer::new(&client)
            .fetch("short", 0, 0, 1 << 20, Duration::ZERO)
            .await
            .err()
            .map(|e| e.to_string());
        assert!(
            err.is_some_and(|e| e.contains("out of range")),
            "offset 0 is gone everywhere"
        );
    });
    // Replace archived segment 0 of the other topic with garbage of the same size.
    let garbage = tempfile::tempdir().unwrap();
    let files = sprawl_tiered::SegmentFiles::in_dir(garbage.path(), 0);
    std::fs::write(&files.log, vec![0x5au8; 1 << 20]).unwrap();
    std::fs::write(&files.index, b"").unwrap();
    std::fs::write(&files.timeindex, b"").unwrap();
    let archive = sprawl_tiered::Archive::start(weed.config("sprawl-test", "faults")).unwrap();
    futures::executor::block_on(archive.upload_segment(TOPIC, 0, 0, files)).unwrap();
    rt.block_on(async {
        let client = connect(&node).await;
        let err = Consumer::new(&client)
            .fetch(TOPIC, 0, 0, 1 << 20, Duration::ZERO)
            .await
            .err()
            .map(|e| e.to_string());
        let err = err.expect("reading a corrupt archived object must fail");
        assert!(
            err.contains("00000000000000000000.log") && err.contains("corrupt"),
            "{err}"
        );
    });
}

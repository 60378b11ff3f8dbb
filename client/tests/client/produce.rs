//! The producer: partitioning, batching, order, retries, acks, bounds.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use sprawl_client::{Acks, Client, Consumer, Error, ErrorCode, Producer, ProducerConfig, Record};

use crate::fake::{FakeNode, Fault};

async fn setup(partitions: u32) -> (FakeNode, Client) {
    let node = FakeNode::start().await;
    let client = Client::connect(node.client_config()).await.unwrap();
    client
        .create_topic("t", partitions, None, None)
        .await
        .unwrap();
    (node, client)
}

fn fast_retries() -> ProducerConfig {
    ProducerConfig {
        linger: Duration::ZERO,
        retries: 5,
        retry_backoff: Duration::from_millis(1),
        retry_backoff_max: Duration::from_millis(4),
        ..ProducerConfig::default()
    }
}

fn values(node: &FakeNode, partition: u32) -> Vec<Bytes> {
    node.records("t", partition)
        .into_iter()
        .map(|(_, _, v)| v)
        .collect()
}

#[tokio::test]
async fn ten_thousand_keyed_records_round_trip_in_order_per_partition() {
    let (node, client) = setup(4).await;
    let producer = Producer::new(
        &client,
        ProducerConfig {
            acks: Acks::Leader,
            linger: Duration::from_millis(1),
            batch_bytes_max: 64 << 10,
            ..ProducerConfig::default()
        },
    )
    .unwrap();
    let sent: Vec<(String, String)> = (0..10_000)
        .map(|i| (format!("key-{}", i % 37), format!("value-{i}")))
        .collect();
    let acks: Vec<_> = sent
        .iter()
        .map(|(k, v)| producer.send("t", Record::new(v.clone()).with_key(k.clone())))
        .collect();
    let acks = futures::future::join_all(acks).await;

    let mut expected: HashMap<u32, Vec<(u64, &str, &str)>> = HashMap::new();
    for ((key, value), ack) in sent.iter().zip(acks) {
        let ack = ack.unwrap();
        let partition = sprawl_wire::partition_for_key(key.as_bytes(), 4).unwrap();
        assert_eq!(ack.partition, partition);
        expected
            .entry(partition)
            .or_default()
            .push((ack.offset.unwrap(), key, value));
    }
    let consumer = Consumer::new(&client);
    let mut total = 0;
    for partition in 0..4 {
        let expected = &expected[&partition];
        // Offsets are assigned in send order, without gaps.
        assert!(expected.iter().enumerate().all(|(i, e)| e.0 == i as u64));
        let mut offset = 0;
        let mut got = Vec::new();
        loop {
            let fetched = consumer
                .fetch("t", partition, offset, 32 << 10, Duration::ZERO)
                .await
                .unwrap();
            got.extend(fetched.records);
            offset = fetched.next_offset;
            if offset == fetched.high_watermark {
                break;
            }
        }
        assert_eq!(got.len(), expected.len());
        for (record, (offset, key, value)) in got.iter().zip(expected) {
            assert_eq!(record.offset, *offset);
            assert_eq!(record.key.as_deref(), Some(key.as_bytes()));
            assert_eq!(record.value, value.as_bytes());
        }
        total += got.len();
    }
    assert_eq!(total, 10_000);
    // Batching happened: far fewer requests than records.
    assert!(
        node.produce_log().len() < 1000,
        "{}",
        node.produce_log().len()
    );
}

#[tokio::test]
async fn retries_keep_the_partition_in_send_order() {
    let (node, client) = setup(1).await;
    node.push_produce_faults([
        Fault::Pass,
        Fault::Throttle(2),
        Fault::Pass,
        Fault::Answer(ErrorCode::LeaderNotAvailable),
        Fault::Answer(ErrorCode::StorageError),
        Fault::Pass,
        Fault::CloseConnection,
        Fault::Pass,
        Fault::Answer(ErrorCode::NotEnoughReplicas),
    ]);
    let producer = Producer::new(
        &client,
        ProducerConfig {
            batch_bytes_max: 2048,
            ..fast_retries()
        },
    )
    .unwrap();
    let acks: Vec<_> = (0..2000)
        .map(|i| producer.send("t", Record::new(format!("v{i}")).with_partition(0)))
        .collect();
    for (i, ack) in futures::future::join_all(acks)
        .await
        .into_iter()
        .enumerate()
    {
        assert_eq!(ack.unwrap().offset, Some(i as u64));
    }
    let stored = values(&node, 0);
    assert_eq!(stored.len(), 2000);
    assert!(stored
        .iter()
        .enumerate()
        .all(|(i, v)| v == format!("v{i}").as_bytes()));
    let requests = node.produce_log();
    assert!(requests.iter().all(|&(p, _)| p == 0));
    // Six failed attempts, each retried.
    let appended: u32 = requests.iter().map(|r| r.1).sum();
    assert!(appended > 2000, "retries were sent: {requests:?}");
}

#[tokio::test]
async fn a_batch_failing_for_good_aborts_the_records_sent_behind_it() {
    let (node, client) = setup(1).await;
    let producer = Producer::new(&client, fast_retries()).unwrap();
    node.hold_produces();
    let first = producer.send("t", Record::new("r0").with_partition(0));
    node.wait_produce_requests(1).await;
    let behind: Vec<_> = (1..10)
        .map(|i| producer.send("t", Record::new(format!("r{i}")).with_partition(0)))
        .collect();
    node.push_produce_faults([Fault::Answer(ErrorCode::CorruptBatch)]);
    node.release_produces();

    let err = first.await.unwrap_err();
    assert_eq!(err.remote_code(), Some(ErrorCode::CorruptBatch));
    for ack in futures::future::join_all(behind).await {
        let err = ack.unwrap_err();
        assert!(matches!(err, Error::Aborted { .. }), "{err:?}");
        assert_eq!(err.remote_code(), Some(ErrorCode::CorruptBatch));
    }
    // Only the failed batch reached the node.
    assert_eq!(node.produce_log(), [(0, 1)]);
    // Records sent after the failure go through.
    let ack = producer
        .send("t", Record::new("after").with_partition(0))
        .await
        .unwrap();
    assert_eq!(ack.offset, Some(0));
    assert_eq!(values(&node, 0), [Bytes::from("after")]);
}

#[tokio::test]
async fn retries_run_out_with_the_last_error() {
    let (node, client) = setup(1).await;
    node.push_produce_faults(vec![Fault::Answer(ErrorCode::LeaderNotAvailable); 3]);
    let producer = Producer::new(
        &client,
        ProducerConfig {
            retries: 2,
            ..fast_retries()
        },
    )
    .unwrap();
    let err = producer
        .send("t", Record::new("x").with_partition(0))
        .await
        .unwrap_err();
    assert_eq!(err.remote_code(), Some(ErrorCode::LeaderNotAvailable));
    assert!(err.is_retryable());
    assert_eq!(node.produce_log().len(), 3);
}

#[tokio::test]
async fn acks_none_does_not_wait_for_the_node() {
    let (node, client) = setup(1).await;
    let producer = Producer::new(
        &client,
        ProducerConfig {
            acks: Acks::None,
            ..fast_retries()
        },
    )
    .unwrap();
    node.hold_produces();
    let acks: Vec<_> = (0..100)
        .map(|i| producer.send("t", Record::new(format!("v{i}")).with_partition(0)))
        .collect();
    // The node holds every request, yet every record completes.
    for ack in futures::future::join_all(acks).await {
        let ack = ack.unwrap();
        assert_eq!((ack.partition, ack.offset), (0, None));
    }
    producer.flush().await;
    assert!(node.records("t", 0).is_empty());
    node.release_produces();
    node.wait_records("t", 0, 100).await;
    let mut stored: Vec<Bytes> = values(&node, 0);
    stored.sort();
    let mut sent: Vec<Bytes> = (0..100).map(|i| Bytes::from(format!("v{i}"))).collect();
    sent.sort();
    assert_eq!(stored, sent);
}

#[tokio::test]
async fn records_accumulate_while_a_batch_is_in_flight() {
    let (node, client) = setup(1).await;
    let producer = Producer::new(&client, fast_retries()).unwrap();
    node.hold_produces();
    let first = producer.send("t", Record::new("first").with_partition(0));
    node.wait_produce_requests(1).await;
    let rest: Vec<_> = (0..99)
        .map(|i| producer.send("t", Record::new(format!("v{i}")).with_partition(0)))
        .collect();
    node.release_produces();
    first.await.unwrap();
    futures::future::join_all(rest).await;
    assert_eq!(node.produce_log(), [(0, 1), (0, 99)]);
}

#[tokio::test]
async fn linger_waits_for_more_records_and_flush_cuts_it_short() {
    let (node, client) = setup(1).await;
    let lingering = Producer::new(
        &client,
        ProducerConfig {
            linger: Duration::from_secs(3600),
            ..fast_retries()
        },
    )
    .unwrap();
    let acks: Vec<_> = (0..10)
        .map(|i| lingering.send("t", Record::new(format!("v{i}")).with_partition(0)))
        .collect();
    lingering.flush().await;
    assert_eq!(node.produce_log(), [(0, 10)]);
    assert!(futures::future::join_all(acks)
        .await
        .iter()
        .all(Result::is_ok));

    let short = Producer::new(
        &client,
        ProducerConfig {
            linger: Duration::from_millis(20),
            ..fast_retries()
        },
    )
    .unwrap();
    let acks: Vec<_> = (0..3)
        .map(|i| short.send("t", Record::new(format!("w{i}")).with_partition(0)))
        .collect();
    futures::future::join_all(acks).await;
    assert_eq!(node.produce_log(), [(0, 10), (0, 3)]);
}

#[tokio::test]
async fn a_full_buffer_makes_callers_wait_for_room() {
    let (node, client) = setup(1).await;
    let value = Bytes::from(vec![b'x'; 100]);
    let producer = Producer::new(
        &client,
        ProducerConfig {
            buffer_bytes_max: 1000,
            ..fast_retries()
        },
    )
    .unwrap();
    node.hold_produces();
    let acks: Vec<_> = (0..50)
        .map(|_| producer.send("t", Record::new(value.clone()).with_partition(0)))
        .collect();
    assert!(producer.buffered_bytes() <= 1000);
    assert!(producer.ready().now_or_never().is_none());
    node.release_produces();
    producer.ready().await;
    for (i, ack) in futures::future::join_all(acks)
        .await
        .into_iter()
        .enumerate()
    {
        assert_eq!(ack.unwrap().offset, Some(i as u64));
    }
    assert_eq!(producer.buffered_bytes(), 0);
}

#[tokio::test]
async fn records_too_large_for_a_frame_fail_alone() {
    let node = FakeNode::start_with_frame_limit(64 << 10).await;
    let client = Client::connect(node.client_config()).await.unwrap();
    client.create_topic("t", 1, None, None).await.unwrap();
    let producer = Producer::new(&client, fast_retries()).unwrap();
    let big = producer.send("t", Record::new(vec![0u8; 100 << 10]));
    let small = producer.send("t", Record::new("fits"));
    let err = big.await.unwrap_err();
    assert!(matches!(err, Error::RecordTooLarge { .. }), "{err:?}");
    assert_eq!(small.await.unwrap().offset, Some(0));
    // Batches are cut to fit the node's frames too.
    let acks: Vec<_> = (0..20)
        .map(|_| producer.send("t", Record::new(vec![1u8; 10 << 10])))
        .collect();
    assert!(futures::future::join_all(acks)
        .await
        .iter()
        .all(Result::is_ok));
}

#[tokio::test]
async fn unknown_topics_and_partitions_fail_the_record() {
    let (_node, client) = setup(2).await;
    let producer = Producer::new(&client, fast_retries()).unwrap();
    let err = producer
        .send("missing", Record::new("x"))
        .await
        .unwrap_err();
    assert_eq!(err.remote_code(), Some(ErrorCode::UnknownTopic));
    let err = producer
        .send("t", Record::new("x").with_partition(2))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::UnknownPartition {
                partition: 2,
                partition_count: 2,
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn keyless_records_spread_over_partitions() {
    let (node, client) = setup(4).await;
    let producer = Producer::new(
        &client,
        ProducerConfig {
            keyless: sprawl_client::KeylessPartitioning::RoundRobin,
            ..fast_retries()
        },
    )
    .unwrap();
    let acks: Vec<_> = (0..40)
        .map(|i| producer.send("t", Record::new(format!("{i}"))))
        .collect();
    futures::future::join_all(acks).await;
    for partition in 0..4 {
        assert_eq!(node.records("t", partition).len(), 10);
    }
}

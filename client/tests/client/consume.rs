//! Fetching, subscribing under credit, consumer groups.

use std::time::Duration;

use bytes::Bytes;
use sprawl_client::{
    Client, Consumer, Error, ErrorCode, Producer, ProducerConfig, Record, StartPosition,
};

use crate::fake::FakeNode;

async fn setup() -> (FakeNode, Client) {
    let node = FakeNode::start().await;
    let client = Client::connect(node.client_config()).await.unwrap();
    client.create_topic("t", 2, None, None).await.unwrap();
    (node, client)
}

/// Produces `values` to partition 0 in batches of at most `batch_bytes_max`.
async fn produce(client: &Client, values: &[String], batch_bytes_max: usize) {
    let producer = Producer::new(
        client,
        ProducerConfig {
            linger: Duration::from_secs(3600),
            batch_bytes_max,
            ..ProducerConfig::default()
        },
    )
    .unwrap();
    let acks: Vec<_> = values
        .iter()
        .map(|v| producer.send("t", Record::new(v.clone()).with_partition(0)))
        .collect();
    producer.flush().await;
    for ack in acks {
        ack.await.unwrap();
    }
}

fn numbered(n: usize, width: usize) -> Vec<String> {
    (0..n).map(|i| format!("{i:0width$}")).collect()
}

#[tokio::test]
async fn fetch_skips_records_before_the_requested_offset() {
    let (_node, client) = setup().await;
    // One batch of ten records.
    produce(&client, &numbered(10, 3), 1 << 20).await;
    let consumer = Consumer::new(&client);
    let fetched = consumer
        .fetch("t", 0, 5, 1 << 20, Duration::ZERO)
        .await
        .unwrap();
    let offsets: Vec<u64> = fetched.records.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, [5, 6, 7, 8, 9]);
    assert_eq!(fetched.records[0].value, Bytes::from("005"));
    assert_eq!((fetched.next_offset, fetched.high_watermark), (10, 10));

    // At the high watermark: waits up to max_wait, then answers empty.
    let empty = consumer
        .fetch("t", 0, 10, 1 << 20, Duration::from_millis(20))
        .await
        .unwrap();
    assert!(empty.records.is_empty());
    assert_eq!(empty.next_offset, 10);

    let err = consumer
        .fetch("t", 0, 11, 1 << 20, Duration::ZERO)
        .await
        .unwrap_err();
    assert_eq!(err.remote_code(), Some(ErrorCode::OffsetOutOfRange));
}

#[tokio::test]
async fn a_fetch_waiting_at_the_end_wakes_for_new_records() {
    let (_node, client) = setup().await;
    let consumer = Consumer::new(&client);
    let waiting = tokio::spawn(async move {
        consumer
            .fetch("t", 0, 0, 1 << 20, Duration::from_secs(5))
            .await
    });
    produce(&client, &numbered(3, 1), 1 << 20).await;
    let fetched = waiting.await.unwrap().unwrap();
    assert_eq!(fetched.records.len(), 3);
}

#[tokio::test]
async fn a_subscription_stays_within_its_credit() {
    let (node, client) = setup().await;
    let values = numbered(300, 200);
    // About five 200-byte records per batch, sixty batches.
    produce(&client, &values, 1200).await;
    let window = 2048;
    let consumer = Consumer::new(&client);
    let mut subscription = consumer
        .subscribe("t", 0, StartPosition::Earliest, window)
        .await
        .unwrap();
    for (i, value) in values.iter().enumerate() {
        let record = subscription.next().await.unwrap().unwrap();
        assert_eq!(record.offset, i as u64);
        assert_eq!(record.value, value.as_bytes());
    }
    assert_eq!(subscription.position(), 300);
    assert_eq!(subscription.lag(), 0);

    // New records arrive on the open subscription.
    produce(&client, &["late".to_string()], 1 << 20).await;
    let late = subscription.next().await.unwrap().unwrap();
    assert_eq!((late.offset, &late.value[..]), (300, &b"late"[..]));
    assert_eq!(subscription.unsubscribe().await.unwrap(), 301);

    let stats = node.subscription_stats();
    assert_eq!(stats.len(), 1);
    let stats = &stats[0];
    assert!(stats.violations.is_empty(), "{:?}", stats.violations);
    assert!(stats.credit_bytes_max <= window, "{stats:?}");
    // The data was many windows' worth: credit was granted back repeatedly.
    assert!(stats.sent_bytes > 10 * window, "{stats:?}");
    assert!(stats.granted_bytes > 5 * window, "{stats:?}");
}

#[tokio::test]
async fn a_window_smaller_than_a_batch_still_makes_progress() {
    let (node, client) = setup().await;
    produce(&client, &numbered(50, 100), 600).await;
    let mut subscription = Consumer::new(&client)
        .subscribe("t", 0, StartPosition::Offset(7), 1)
        .await
        .unwrap();
    for i in 7..50u64 {
        assert_eq!(subscription.next().await.unwrap().unwrap().offset, i);
    }
    subscription.unsubscribe().await.unwrap();
    let stats = &node.subscription_stats()[0];
    assert!(stats.violations.is_empty(), "{:?}", stats.violations);
    assert!(stats.credit_bytes_max <= 1);
}

#[tokio::test]
async fn subscribing_to_an_unknown_partition_fails() {
    let (_node, client) = setup().await;
    let err = Consumer::new(&client)
        .subscribe("t", 9, StartPosition::Earliest, 1024)
        .await
        .unwrap_err();
    assert_eq!(err.remote_code(), Some(ErrorCode::UnknownPartition));
}

#[tokio::test]
async fn a_group_resumes_from_its_committed_offset() {
    let (_node, client) = setup().await;
    produce(&client, &numbered(20, 2), 1 << 20).await;

    let consumer = Consumer::with_group(&client, "billing");
    assert_eq!(consumer.group_offset("t", 0).await.unwrap(), 0);
    let mut subscription = consumer.subscribe_group("t", 0, 1 << 16).await.unwrap();
    for _ in 0..5 {
        subscription.next().await.unwrap().unwrap();
    }
    consumer
        .commit("t", 0, subscription.position())
        .await
        .unwrap();
    drop(subscription);

    let resumed = Consumer::with_group(&client, "billing");
    let mut subscription = resumed.subscribe_group("t", 0, 1 << 16).await.unwrap();
    let first = subscription.next().await.unwrap().unwrap();
    assert_eq!((first.offset, &first.value[..]), (5, &b"05"[..]));

    // A new group starts at the fallback position.
    let newcomer = Consumer::with_group(&client, "audit").with_fallback(StartPosition::Latest);
    assert_eq!(newcomer.group_offset("t", 0).await.unwrap(), 20);
    // A committed offset no longer in the log also falls back.
    newcomer.commit("t", 0, 1000).await.unwrap();
    assert_eq!(newcomer.group_offset("t", 0).await.unwrap(), 20);

    let err = Consumer::new(&client).commit("t", 0, 1).await.unwrap_err();
    assert!(matches!(err, Error::NoGroup));
}

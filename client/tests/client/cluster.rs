//! The client in a cluster of fakes: partition requests go straight to the
//! partition's leader; answers saying the leader moved, and leaders that
//! cannot be reached, send the retries through the bootstrap node.

use std::net::UdpSocket;
use std::time::Duration;

use sprawl_client::{Client, Consumer, ErrorCode, Producer, ProducerConfig, Record, StartPosition};

use crate::fake::{ClusterView, FakeNode, Fault};

/// Nodes 1 and 2, partitions led alternately by 1 and 2, topic "t" with
/// `partitions` on both; the client bootstrapped at node 1.
async fn two_nodes(partitions: u32) -> (FakeNode, FakeNode, Client) {
    let one = FakeNode::start_node(1).await;
    let two = FakeNode::start_node_like(2, &one).await;
    let view = ClusterView {
        nodes: vec![(1, one.addr), (2, two.addr)],
        leaders: vec![1, 2],
    };
    one.set_cluster(view.clone());
    two.set_cluster(view);
    // Each fake keeps its own topics: create "t" on both.
    let direct = Client::connect(two.client_config()).await.unwrap();
    direct
        .create_topic("t", partitions, None, None)
        .await
        .unwrap();
    let client = Client::connect(one.client_config()).await.unwrap();
    client
        .create_topic("t", partitions, None, None)
        .await
        .unwrap();
    (one, two, client)
}

fn fast_retries() -> ProducerConfig {
    ProducerConfig {
        linger: Duration::ZERO,
        retries: 8,
        retry_backoff: Duration::from_millis(1),
        retry_backoff_max: Duration::from_millis(4),
        ..ProducerConfig::default()
    }
}

fn partitions_of(node: &FakeNode) -> Vec<u32> {
    let mut partitions: Vec<u32> = node.produce_log().iter().map(|&(p, _)| p).collect();
    partitions.sort();
    partitions.dedup();
    partitions
}

#[tokio::test]
async fn partition_requests_go_straight_to_the_leader() {
    let (one, two, client) = two_nodes(4).await;
    let producer = Producer::new(&client, fast_retries()).unwrap();
    let acks: Vec<_> = (0..400u32)
        .map(|i| producer.send("t", Record::new(format!("v{i}")).with_partition(i % 4)))
        .collect();
    for ack in futures::future::join_all(acks).await {
        ack.unwrap();
    }
    assert_eq!(partitions_of(&one), [0, 2], "node 1 leads the even ones");
    assert_eq!(partitions_of(&two), [1, 3], "node 2 leads the odd ones");
    for p in 0..4 {
        let leader = if p % 2 == 0 { &one } else { &two };
        assert_eq!(leader.records("t", p).len(), 100, "partition {p}");
    }
    assert_eq!(one.metadata_requests(), 1, "one lookup of the leaders");
    assert_eq!(
        two.metadata_requests(),
        0,
        "metadata comes from the bootstrap"
    );

    // Reads, offsets and subscriptions too: node 1 holds nothing of
    // partition 1, so each of these succeeds only at node 2.
    let consumer = Consumer::with_group(&client, "g");
    let fetched = consumer
        .fetch("t", 1, 0, 1 << 20, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(fetched.records.len(), 100);
    let latest = client
        .resolve_offset("t", 1, StartPosition::Latest)
        .await
        .unwrap();
    assert_eq!(latest, 100);
    consumer.commit("t", 1, 42).await.unwrap();
    assert_eq!(
        client.committed_offset("g", "t", 1).await.unwrap(),
        Some(42)
    );
    let direct = Client::connect(two.client_config()).await.unwrap();
    assert_eq!(
        direct.committed_offset("g", "t", 1).await.unwrap(),
        Some(42)
    );
    let mut subscription = consumer.subscribe_group("t", 3, 1 << 20).await.unwrap();
    let first = subscription.next().await.unwrap().unwrap();
    assert_eq!(first.offset, 0);
    assert_eq!(two.subscription_stats().len(), 1);
    assert!(one.subscription_stats().is_empty());
    // Admin requests stay on the bootstrap node.
    assert_eq!(client.node().unwrap().node_id, 1);
    assert_eq!(one.metadata_requests(), 1);
}

#[tokio::test]
async fn a_moved_leader_is_bypassed_then_looked_up_again() {
    let (one, two, client) = two_nodes(2).await;
    let producer = Producer::new(&client, fast_retries()).unwrap();
    producer
        .send("t", Record::new("first").with_partition(1))
        .await
        .unwrap();
    assert_eq!(two.records("t", 1).len(), 1);

    // Node 2 says it no longer leads: the retry goes through the bootstrap
    // node (which would forward) rather than back to node 2. Several
    // refusals, so that a slow run that refreshes in between still ends
    // at node 1.
    two.push_produce_faults(std::iter::repeat_n(Fault::Answer(ErrorCode::NotLeader), 3));
    let ack = producer
        .send("t", Record::new("second").with_partition(1))
        .await
        .unwrap();
    assert_eq!(ack.offset, Some(0), "appended by node 1, which had nothing");
    assert_eq!(one.records("t", 1).len(), 1);
    let refreshes = one.metadata_requests();
    assert!(
        (1..=3).contains(&refreshes),
        "at most one refresh per refusal, {refreshes}"
    );
    two.clear_produce_faults();

    // Once the refresh is due, the metadata (still naming node 2) sends
    // the partition back to it.
    tokio::time::sleep(Duration::from_millis(150)).await;
    producer
        .send("t", Record::new("third").with_partition(1))
        .await
        .unwrap();
    assert_eq!(two.records("t", 1).len(), 2);
    assert_eq!(one.metadata_requests(), refreshes + 1);
}

#[tokio::test]
async fn an_unreachable_leader_is_served_through_the_bootstrap_node() {
    let one = FakeNode::start_node(1).await;
    // Node 2's address takes datagrams and never answers.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    one.set_cluster(ClusterView {
        nodes: vec![(1, one.addr), (2, silent.local_addr().unwrap())],
        leaders: vec![2],
    });
    let mut config = one.client_config();
    config.connect_timeout = Duration::from_millis(300);
    let client = Client::connect(config).await.unwrap();
    client.create_topic("t", 1, None, None).await.unwrap();
    let started = std::time::Instant::now();
    let ack = client
        .produce_batch("t", 0, sprawl_client::Acks::Leader, &batch("a"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ack.base_offset, 0);
    assert_eq!(one.records("t", 0).len(), 1);
    // Bypassed for a while: the next request does not wait for a connect.
    let again = std::time::Instant::now();
    client
        .produce_batch("t", 0, sprawl_client::Acks::Leader, &batch("b"))
        .await
        .unwrap();
    assert!(
        again.elapsed() < Duration::from_millis(250),
        "{:?}",
        again.elapsed()
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(one.records("t", 0).len(), 2);
}

#[tokio::test]
async fn direct_routing_can_be_turned_off() {
    let one = FakeNode::start_node(1).await;
    let two = FakeNode::start_node_like(2, &one).await;
    let view = ClusterView {
        nodes: vec![(1, one.addr), (2, two.addr)],
        leaders: vec![2],
    };
    one.set_cluster(view);
    let mut config = one.client_config();
    config.direct_to_leaders = false;
    let client = Client::connect(config).await.unwrap();
    client.create_topic("t", 1, None, None).await.unwrap();
    client
        .produce_batch("t", 0, sprawl_client::Acks::Leader, &batch("a"))
        .await
        .unwrap();
    assert_eq!(one.records("t", 0).len(), 1);
    assert_eq!(one.metadata_requests(), 0);
    assert!(two.produce_log().is_empty());
}

#[tokio::test]
async fn a_single_node_looks_up_each_topic_once() {
    let node = FakeNode::start().await;
    let client = Client::connect(node.client_config()).await.unwrap();
    client.create_topic("t", 3, None, None).await.unwrap();
    let producer = Producer::new(&client, fast_retries()).unwrap();
    let acks: Vec<_> = (0..300u32)
        .map(|i| producer.send("t", Record::new(format!("v{i}")).with_partition(i % 3)))
        .collect();
    for ack in futures::future::join_all(acks).await {
        ack.unwrap();
    }
    let consumer = Consumer::new(&client);
    for p in 0..3 {
        let fetched = consumer
            .fetch("t", p, 0, 1 << 20, Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(fetched.records.len(), 100);
    }
    assert_eq!(node.metadata_requests(), 1);
}

/// One record, as a storage batch.
fn batch(value: &str) -> Vec<u8> {
    let mut builder = sprawl_storage::BatchBuilder::new();
    builder.push(&sprawl_storage::batch::Record {
        value: value.as_bytes(),
        ..Default::default()
    });
    builder.finish()
}

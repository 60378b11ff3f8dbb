//! Partition replication with real processes: three `sprawl` nodes, a
//! topic with replication factor 3 (each partition one Raft group whose log
//! is the segment log on all three nodes), produce with acks=all (durable).
//!
//! - `kill -9` of a partition's leader in the middle of a stream, several
//!   rounds: every acknowledged message is there afterwards, at the offset
//!   its ack named, byte for byte; offsets have no gaps; every replica
//!   (read through each node) agrees.
//! - 200,000 messages produced (acks=all) through a node that leads
//!   nothing, read back through another such node: byte-exact.
//! - A followed subscription (the client resubscribes from its position
//!   after a retryable failure) delivers every acknowledged message, gapless
//!   and in order, across `kill -9` of the partition's leader.
//! - A fourth node joins and a replica moves to it live, under load
//!   (learner, catch-up, promotion, removal of the old one): nothing
//!   acknowledged is lost, and the new replica's log equals the others'.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::cluster::{runtime, wait_for, TestCluster};
use serde_json::Value;
use sprawl_client::{Acks, Client, Consumer, Producer, ProducerConfig, Record};

const TOPIC: &str = "ledger";

fn value(i: usize) -> Vec<u8> {
    let mut v = format!("entry-{i:07}-").into_bytes();
    v.extend(std::iter::repeat_n(b'a' + (i % 26) as u8, 64 + i % 200));
    v
}

/// Every record of `partition` from offset 0 on, through `client`.
async fn read_all(client: &Client, partition: u32) -> Vec<(u64, Vec<u8>)> {
    let consumer = Consumer::new(client);
    let mut next = 0;
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let f = match consumer
            .fetch(TOPIC, partition, next, 1 << 20, Duration::ZERO)
            .await
        {
            Ok(f) => f,
            Err(e) if e.is_retryable() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            Err(e) => panic!("reading {TOPIC}/{partition} at {next}: {e}"),
        };
        if f.records.is_empty() {
            return got;
        }
        for r in &f.records {
            got.push((r.offset, r.value.to_vec()));
        }
        next = f.next_offset;
    }
}

/// Every acknowledged message at its acknowledged offset, no gaps.
async fn verify(client: &Client, acked: &BTreeMap<u32, BTreeMap<u64, usize>>) {
    for (&p, want) in acked {
        // After a leader change the high watermark is back at everything
        // acknowledged once the new leader committed an entry of its term.
        let end = want.keys().last().map_or(0, |o| o + 1) as usize;
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut got = read_all(client, p).await;
        while got.len() < end && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            got = read_all(client, p).await;
        }
        for (k, (offset, _)) in got.iter().enumerate() {
            assert_eq!(*offset, k as u64, "partition {p}: offsets without gaps");
        }
        for (&offset, &i) in want {
            let (_, v) = got.get(offset as usize).unwrap_or_else(|| {
                panic!(
                    "partition {p}: acknowledged offset {offset} missing ({} records)",
                    got.len()
                )
            });
            assert_eq!(v, &value(i), "partition {p} offset {offset}: byte-exact");
        }
    }
}

/// The replica's view of `partition` on node `i` (from `/topics`).
fn replica_view(cluster: &TestCluster, i: usize, partition: u32) -> Option<Value> {
    let (status, body) = cluster.nodes[i].admin_get("/topics");
    if !status.contains("200") {
        return None;
    }
    let v: Value = serde_json::from_str(&body).ok()?;
    v["topics"]
        .as_array()?
        .iter()
        .find(|t| t["name"] == TOPIC)?["partition_state"]
        .as_array()?
        .iter()
        .find(|p| p["partition"] == partition)
        .map(|p| p["replica"].clone())
}

/// The node (0-based index) whose replica of `partition` leads with every
/// voter in sync, once there is one.
fn stable_leader(cluster: &TestCluster, alive: &[usize], partition: u32) -> usize {
    let mut found = None;
    wait_for("a partition leader with all replicas in sync", || {
        found = alive.iter().copied().find(|&i| {
            replica_view(cluster, i, partition).is_some_and(|r| {
                r["leader"].as_u64() == Some(i as u64 + 1)
                    && r["in_sync"].as_array().is_some_and(|s| s.len() == 3)
            })
        });
        found.is_some()
    });
    found.unwrap()
}

async fn produce(
    client: &Client,
    range: std::ops::Range<usize>,
    partitions: u32,
    acked: &mut BTreeMap<u32, BTreeMap<u64, usize>>,
) {
    let producer = Producer::new(
        client,
        ProducerConfig {
            acks: Acks::Durable,
            retries: 1000,
            ..ProducerConfig::default()
        },
    )
    .unwrap();
    let sends: Vec<_> = range
        .map(|i| {
            (
                i,
                producer.send(
                    TOPIC,
                    Record::new(value(i)).with_partition((i as u32) % partitions),
                ),
            )
        })
        .collect();
    for (i, send) in sends {
        // A send that fails is not acknowledged: nothing is promised.
        if let Ok(ack) = send.await {
            let offset = ack.offset.expect("durable acks carry the offset");
            let previous = acked.entry(ack.partition).or_default().insert(offset, i);
            assert!(
                previous.is_none(),
                "offset {offset} of partition {} acknowledged twice ({previous:?} and {i})",
                ack.partition
            );
        }
    }
}

#[test]
fn acknowledged_messages_survive_kill_9_of_the_partition_leader() {
    const ROUNDS: usize = 3;
    const PER_ROUND: usize = 1_500;
    let mut cluster = TestCluster::start(3);
    let rt = runtime();
    let mut acked: BTreeMap<u32, BTreeMap<u64, usize>> = BTreeMap::new();
    rt.block_on(async {
        let client = cluster.client(0, true).await;
        let topic = client
            .create_topic_replicated(TOPIC, 1, Some(3), None, None)
            .await
            .unwrap();
        assert_eq!(topic.replication_factor, 3);
    });
    let mut failovers = Vec::new();
    for round in 0..ROUNDS {
        let leader = stable_leader(&cluster, &[0, 1, 2], 0);
        let survivor = (leader + 1) % 3;
        let start = round * PER_ROUND;
        // Produce through a survivor (it forwards or the client goes
        // straight to the leader); the leader dies mid-stream.
        let killed_at = rt.block_on(async {
            let client = cluster.client(survivor, true).await;
            let stream = produce(&client, start..start + PER_ROUND, 1, &mut acked);
            let kill = async {
                tokio::time::sleep(Duration::from_millis(150)).await;
                cluster.nodes[leader].kill_9();
                Instant::now()
            };
            let ((), killed_at) = tokio::join!(stream, kill);
            killed_at
        });
        // A produce after the kill is acknowledged by the new leader.
        rt.block_on(async {
            let client = cluster.client(survivor, true).await;
            let mut after = BTreeMap::new();
            produce(&client, 100_000 + round..100_000 + round + 1, 1, &mut after).await;
            assert!(!after.is_empty(), "round {round}: no ack after failover");
            failovers.push(killed_at.elapsed());
            for (p, m) in after {
                acked.entry(p).or_default().extend(m);
            }
        });
        let node = cluster.launch(leader);
        cluster.nodes[leader] = node;
    }
    let total: usize = acked.values().map(BTreeMap::len).sum();
    assert!(
        total >= ROUNDS * PER_ROUND / 2,
        "most messages acknowledged: {total}"
    );
    eprintln!("acknowledged {total}; ack after kill within {failovers:?}");
    // Every replica agrees: read through each node.
    stable_leader(&cluster, &[0, 1, 2], 0);
    rt.block_on(async {
        for i in 0..3 {
            let client = cluster.client(i, false).await;
            verify(&client, &acked).await;
        }
    });
    wait_for("every replica at the same commit index", || {
        let c: Vec<Option<u64>> = (0..3)
            .map(|i| replica_view(&cluster, i, 0).and_then(|r| r["commit_index"].as_u64()))
            .collect();
        c.iter().all(|x| x.is_some() && *x == c[0])
    });
}

#[test]
fn produced_through_a_non_leader_read_back_through_another_node() {
    const MESSAGES: usize = 200_000;
    const PARTITIONS: u32 = 1;
    let cluster = TestCluster::start(3);
    let rt = runtime();
    rt.block_on(async {
        let client = cluster.client(0, false).await;
        client
            .create_topic_replicated(TOPIC, PARTITIONS, Some(3), None, None)
            .await
            .unwrap();
    });
    let leaders: Vec<usize> = (0..PARTITIONS)
        .map(|p| stable_leader(&cluster, &[0, 1, 2], p))
        .collect();
    // Two nodes lead nothing: produce through one, read through the other.
    let idle: Vec<usize> = (0..3).filter(|i| !leaders.contains(i)).collect();
    let (via, reader) = (idle[0], idle[1]);
    rt.block_on(async {
        let mut acked = BTreeMap::new();
        let client = cluster.client(via, false).await;
        produce(&client, 0..MESSAGES, PARTITIONS, &mut acked).await;
        let total: usize = acked.values().map(BTreeMap::len).sum();
        assert_eq!(total, MESSAGES, "no fault: every message acknowledged");
        let client = cluster.client(reader, false).await;
        verify(&client, &acked).await;
    });
}

#[test]
fn a_replica_moves_to_a_new_node_live_under_load() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let cluster = TestCluster::start(4);
    let rt = runtime();
    rt.block_on(async {
        let client = cluster.client(0, true).await;
        client
            .create_topic_replicated(TOPIC, 1, Some(3), None, None)
            .await
            .unwrap();
    });
    let holders: Vec<usize> = (0..4)
        .filter(|&i| replica_view(&cluster, i, 0).is_some())
        .collect();
    wait_for("three replicas open", || {
        (0..4)
            .filter(|&i| replica_view(&cluster, i, 0).is_some())
            .count()
            == 3
    });
    let leader = stable_leader(&cluster, &[0, 1, 2, 3], 0);
    let holders: Vec<usize> = if holders.len() == 3 {
        holders
    } else {
        (0..4)
            .filter(|&i| replica_view(&cluster, i, 0).is_some())
            .collect()
    };
    let target = (0..4).find(|i| !holders.contains(i)).unwrap();
    let from = holders.iter().copied().find(|&i| i != leader).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    // The move runs on a thread (one blocking admin request to the
    // partition's leader) while this one produces.
    let mover = {
        let (admin, stop) = (cluster.nodes[leader].admin, stop.clone());
        let path = format!(
            "/partitions/move-replica?topic={TOPIC}&partition=0&from={}&to={}",
            from + 1,
            target + 1
        );
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            let answer = common::admin_request(admin, "POST", &path);
            // Keep producing for a moment with the new replica set.
            std::thread::sleep(Duration::from_millis(500));
            stop.store(true, Ordering::Relaxed);
            answer
        })
    };
    let mut acked = BTreeMap::new();
    rt.block_on(async {
        let client = cluster.client((leader + 1) % 4, true).await;
        let mut next = 0;
        while !stop.load(Ordering::Relaxed) {
            produce(&client, next..next + 100, 1, &mut acked).await;
            next += 100;
        }
    });
    let (status, body) = mover.join().unwrap().expect("the move request is answered");
    assert!(status.contains("200"), "{status}: {body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    let mut want: Vec<u64> = holders
        .iter()
        .filter(|&&i| i != from)
        .map(|&i| i as u64 + 1)
        .chain([target as u64 + 1])
        .collect();
    want.sort_unstable();
    assert_eq!(answer["replicas"], serde_json::json!(want), "{body}");
    let total: usize = acked.values().map(BTreeMap::len).sum();
    assert!(total >= 300, "produced under load: {total}");
    // The new replica holds what the others hold; the old one let go.
    wait_for("the new replica's log equals the leader's", || {
        let end = |i| {
            replica_view(&cluster, i, 0)?;
            let (_, body) = cluster.nodes[i].admin_get("/topics");
            let v: Value = serde_json::from_str(&body).ok()?;
            v["topics"][0]["partition_state"][0]["log_end_offset"].as_u64()
        };
        end(target).is_some() && end(target) == end(leader)
    });
    wait_for("the old replica's copy is gone", || {
        !cluster.slots[from]
            .dir
            .path()
            .join("topics")
            .join(TOPIC)
            .join("0")
            .exists()
    });
    rt.block_on(async {
        for i in 0..4 {
            let client = cluster.client(i, false).await;
            verify(&client, &acked).await;
        }
    });
}

#[test]
fn a_followed_subscription_resumes_across_a_leader_kill() {
    use sprawl_client::StartPosition;
    let mut cluster = TestCluster::start(3);
    let rt = runtime();
    rt.block_on(async {
        let client = cluster.client(0, true).await;
        client
            .create_topic_replicated(TOPIC, 1, Some(3), None, None)
            .await
            .unwrap();
    });
    let leader = stable_leader(&cluster, &[0, 1, 2], 0);
    let survivor = (leader + 1) % 3;
    let mut acked = BTreeMap::new();
    let (received, resubscribed) = rt.block_on(async {
        let client = cluster.client(survivor, true).await;
        // Followed from the start, through whichever node leads.
        let mut follower =
            Consumer::new(&client).follow(TOPIC, 0, StartPosition::Earliest, 1 << 20);
        // The reader stops once it has the last acknowledged offset (told
        // when the producing is done).
        let (last_tx, last_rx) = tokio::sync::watch::channel(u64::MAX);
        let reader = tokio::spawn(async move {
            let mut got: Vec<(u64, Vec<u8>)> = Vec::new();
            loop {
                let record = follower.next().await.expect("only retryable failures");
                got.push((record.offset, record.value.to_vec()));
                if record.offset >= *last_rx.borrow() {
                    return (got, follower.resubscribed);
                }
            }
        });
        produce(&client, 0..300, 1, &mut acked).await;
        cluster.nodes[leader].kill_9();
        produce(&client, 300..600, 1, &mut acked).await;
        let last = *acked[&0].keys().last().unwrap();
        last_tx.send(last).unwrap();
        // One more record, so a reader already past `last` wakes up.
        produce(&client, 600..601, 1, &mut BTreeMap::new()).await;
        tokio::time::timeout(Duration::from_secs(60), reader)
            .await
            .expect("the subscription delivers everything within 60 s")
            .unwrap()
    });
    assert!(resubscribed >= 1, "the leader's death ended a subscription");
    for (k, (offset, _)) in received.iter().enumerate() {
        assert_eq!(
            *offset, k as u64,
            "gapless, in order across the leader change"
        );
    }
    for (&offset, &i) in &acked[&0] {
        assert_eq!(
            received.get(offset as usize).map(|(_, v)| v),
            Some(&value(i)),
            "acknowledged offset {offset} delivered byte-exact"
        );
    }
}

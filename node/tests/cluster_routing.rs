//! Three real `sprawl` processes with the cluster plane on: the metadata
//! Raft group forms over node-to-node QUIC with mutual TLS, a topic created
//! through one node is placed over all three, messages produced through
//! every node (most of them forwarded to the partition's leader) read back
//! byte-exact from another node, the metadata group survives `kill -9` of
//! its leader, a dead leader's partitions answer with a retryable error
//! (never as an empty log), and the restarted node serves everything it
//! acknowledged. A metadata leader frozen (SIGSTOP: cut off from every
//! peer) is replaced, and when it resumes it follows the new leader and
//! learns what was committed without it.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::cluster::{metadata, runtime, wait_for, TestCluster};
use serde_json::Value;
use sprawl_client::{Acks, Client, Consumer, ErrorCode, Producer, ProducerConfig, Record};

const TOPIC: &str = "orders";
const PARTITIONS: u32 = 6;
const MESSAGES: usize = 3_000;

fn value(i: usize) -> Vec<u8> {
    let mut v = format!("order-{i:06}-").into_bytes();
    v.extend(std::iter::repeat_n(b'a' + (i % 26) as u8, i % 300));
    v
}

/// Reads `partition` from 0 to its end through `client`.
async fn read_all(client: &Client, partition: u32) -> Vec<(u64, Vec<u8>)> {
    let consumer = Consumer::new(client);
    let mut next = 0;
    let mut got = Vec::new();
    loop {
        let f = consumer
            .fetch(TOPIC, partition, next, 1 << 20, Duration::ZERO)
            .await
            .unwrap();
        if f.records.is_empty() {
            return got;
        }
        for r in &f.records {
            got.push((r.offset, r.value.to_vec()));
        }
        next = f.next_offset;
    }
}

async fn verify(client: &Client, acked: &BTreeMap<u32, Vec<(u64, usize)>>) {
    for (&p, want) in acked {
        let got = read_all(client, p).await;
        assert_eq!(got.len(), want.len(), "partition {p}: record count");
        for ((offset, v), (acked_offset, i)) in got.iter().zip(want) {
            assert_eq!(offset, acked_offset, "partition {p}: offsets in ack order");
            assert_eq!(v, &value(*i), "partition {p} offset {offset}: byte-exact");
        }
    }
}

#[test]
fn any_node_serves_any_partition_and_the_metadata_group_survives_its_leader() {
    let mut cluster = TestCluster::start(3);

    let rt = runtime();
    let acked = rt.block_on(async {
        let clients = [
            cluster.client(0, false).await,
            cluster.client(1, false).await,
            cluster.client(2, false).await,
        ];
        // Created through a follower of the metadata group, kept by one
        // node each (replication factor 1: forwarding and the dead
        // leader's unavailability are what is checked here).
        let topic = clients[1]
            .create_topic_replicated(TOPIC, PARTITIONS, Some(1), None, None)
            .await
            .unwrap();
        assert_eq!(topic.partition_count, PARTITIONS);
        let meta = clients[2].metadata(&[TOPIC]).await.unwrap();
        let leaders: Vec<u32> = meta.topics[0]
            .partitions
            .iter()
            .map(|p| p.leader_node_id.unwrap())
            .collect();
        let distinct: std::collections::BTreeSet<_> = leaders.iter().collect();
        assert!(
            distinct.len() >= 2,
            "placement spreads partitions: {leaders:?}"
        );
        assert_eq!(meta.nodes.len(), 3, "every live member is listed");
        // Only leaders keep a log: no other node pre-allocates one (the
        // leaders may still be applying the topic: wait for them).
        wait_for("each partition's log on its leader alone", || {
            cluster.slots.iter().enumerate().all(|(i, slot)| {
                leaders.iter().enumerate().all(|(p, &leader)| {
                    let dir = slot
                        .dir
                        .path()
                        .join("topics")
                        .join(TOPIC)
                        .join(p.to_string());
                    dir.exists() == (leader as usize == i + 1)
                })
            })
        });

        // Every message goes through node (i % 3), to partition (i % 6):
        // two thirds of them are forwarded.
        let producers: Vec<Producer> = clients
            .iter()
            .map(|c| {
                Producer::new(
                    c,
                    ProducerConfig {
                        acks: Acks::Durable,
                        ..ProducerConfig::default()
                    },
                )
                .unwrap()
            })
            .collect();
        let sends: Vec<_> = (0..MESSAGES)
            .map(|i| {
                producers[i % 3].send(
                    TOPIC,
                    Record::new(value(i)).with_partition((i % PARTITIONS as usize) as u32),
                )
            })
            .collect();
        let mut acked: BTreeMap<u32, Vec<(u64, usize)>> = BTreeMap::new();
        for (i, ack) in sends.into_iter().enumerate() {
            let ack = ack.await.expect("durable ack through any node");
            acked
                .entry(ack.partition)
                .or_default()
                .push((ack.offset.unwrap(), i));
        }
        for v in acked.values_mut() {
            v.sort();
        }
        // Read back through each node in turn.
        for c in &clients {
            verify(c, &acked).await;
        }
        (acked, leaders)
    });
    let (acked, leaders) = acked;
    let forwarded: u64 = cluster
        .nodes
        .iter()
        .map(|n| metadata(n)["forwarded_requests"].as_u64().unwrap())
        .sum();
    assert!(
        forwarded > 0,
        "two thirds of the produces went through a non-leader"
    );

    // kill -9 the metadata leader (node 1 founded the group).
    let leader = metadata(&cluster.nodes[0])["leader"].as_u64().unwrap() as usize;
    cluster.nodes[leader - 1].kill_9();
    let survivors: Vec<usize> = (0..3).filter(|&i| i != leader - 1).collect();
    wait_for("a new metadata leader", || {
        survivors.iter().all(|&i| {
            let m = metadata(&cluster.nodes[i]);
            m["leader"].as_u64().is_some_and(|l| l as usize != leader)
        })
    });
    wait_for("gossip declares the killed node down", || {
        survivors.iter().all(|&i| {
            let (_, body) = cluster.nodes[i].admin_get("/cluster");
            let v: Value = serde_json::from_str(&body).unwrap();
            v["members"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["node_id"].as_u64() == Some(leader as u64) && m["state"] != "alive")
        })
    });
    rt.block_on(async {
        let client = cluster.client(survivors[0], false).await;
        client
            .create_topic("after-failover", 2, None, None)
            .await
            .expect("topic changes commit with two of three voters");
        // A partition the dead node leads: a retryable error, not an empty log.
        if let Some(p) = leaders.iter().position(|&l| l as usize == leader) {
            let err = Consumer::new(&client)
                .fetch(TOPIC, p as u32, 0, 1 << 20, Duration::ZERO)
                .await
                .expect_err("the leader is down");
            assert_eq!(
                err.remote_code(),
                Some(ErrorCode::LeaderNotAvailable),
                "{err}"
            );
        }
    });

    // Back: everything acknowledged is served again, through every node.
    let restarted = cluster.launch(leader - 1);
    cluster.nodes[leader - 1] = restarted;
    wait_for("the restarted node rejoins the metadata group", || {
        let m = metadata(&cluster.nodes[leader - 1]);
        m["leader"].as_u64().is_some() && m["topics"].as_array().is_some_and(|t| t.len() == 2)
    });
    // Links to the old process time out within seconds (a retryable
    // error until then); after that every node serves it all.
    rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(30);
        for i in 0..cluster.nodes.len() {
            let client = cluster.client(i, false).await;
            loop {
                match Consumer::new(&client)
                    .fetch(TOPIC, 0, 0, 1, Duration::ZERO)
                    .await
                {
                    Ok(_) => break,
                    Err(e) => {
                        assert!(e.is_retryable(), "{e}");
                        assert!(Instant::now() < deadline, "{e}");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
            verify(&client, &acked).await;
        }
    });
}

#[test]
fn a_frozen_metadata_leader_is_replaced_and_follows_when_it_resumes() {
    let cluster = TestCluster::start(3);
    let old = metadata(&cluster.nodes[0])["leader"].as_u64().unwrap() as usize;
    let old_term = metadata(&cluster.nodes[old - 1])["term"].as_u64().unwrap();
    cluster.nodes[old - 1].pause(true);
    let survivors: Vec<usize> = (0..3).filter(|&i| i != old - 1).collect();
    wait_for("the survivors elect a leader of a later term", || {
        survivors.iter().all(|&i| {
            let m = metadata(&cluster.nodes[i]);
            m["leader"].as_u64().is_some_and(|l| l as usize != old)
                && m["term"].as_u64().is_some_and(|t| t > old_term)
        })
    });
    let rt = runtime();
    rt.block_on(async {
        let client = cluster.client(survivors[0], false).await;
        client
            .create_topic("while-frozen", 3, None, None)
            .await
            .expect("the majority side commits");
    });
    cluster.nodes[old - 1].pause(false);
    wait_for("the old leader follows and learns the new topic", || {
        let m = metadata(&cluster.nodes[old - 1]);
        m["role"] == "follower"
            && m["leader"].as_u64().is_some_and(|l| l as usize != old)
            && m["topics"]
                .as_array()
                .is_some_and(|t| t.iter().any(|t| t["name"] == "while-frozen"))
    });
    // And its shards serve the topic (forwarding to wherever it lives).
    rt.block_on(async {
        let client = cluster.client(old - 1, false).await;
        let t = client.describe_topic("while-frozen").await.unwrap();
        assert_eq!(t.partition_count, 3);
    });
}

#[test]
fn a_topic_deleted_and_recreated_keeps_only_its_new_data_across_restarts() {
    let mut cluster = TestCluster::start(3);
    let rt = runtime();
    let produce = |client: &Client, base: usize| {
        let producer = Producer::new(
            client,
            ProducerConfig {
                acks: Acks::Durable,
                ..ProducerConfig::default()
            },
        )
        .unwrap();
        async move {
            let mut acked: BTreeMap<u32, Vec<(u64, usize)>> = BTreeMap::new();
            for i in base..base + 60 {
                let ack = producer
                    .send(TOPIC, Record::new(value(i)).with_partition((i % 6) as u32))
                    .await
                    .unwrap();
                acked
                    .entry(ack.partition)
                    .or_default()
                    .push((ack.offset.unwrap(), i));
            }
            acked
        }
    };
    let acked = rt.block_on(async {
        let client = cluster.client(1, false).await;
        client.create_topic(TOPIC, 6, None, None).await.unwrap();
        produce(&client, 0).await;
        client.delete_topic(TOPIC).await.unwrap();
        client.create_topic(TOPIC, 6, None, None).await.unwrap();
        let acked = produce(&client, 1_000).await;
        verify(&client, &acked).await;
        acked
    });
    // Every node restarts: the metadata log (delete, then create) is
    // replayed over catalogs that already reflect it.
    for i in 0..cluster.nodes.len() {
        assert_eq!(cluster.nodes[i].terminate(), Some(0));
        let node = cluster.launch(i);
        cluster.nodes[i] = node;
    }
    wait_for("the metadata group again", || {
        cluster
            .nodes
            .iter()
            .all(|n| metadata(n)["leader"].as_u64().is_some())
    });
    rt.block_on(async {
        for i in 0..cluster.nodes.len() {
            let client = cluster.client(i, false).await;
            let deadline = Instant::now() + Duration::from_secs(30);
            // Replicated partitions: after a restart of every replica, the
            // high watermark is the commit index, which a new leader learns
            // by committing an entry of its term: wait for it to come back
            // to everything acknowledged.
            for (&p, want) in &acked {
                let end = want.last().map_or(0, |(offset, _)| offset + 1);
                loop {
                    match Consumer::new(&client)
                        .fetch(TOPIC, p, 0, 1, Duration::ZERO)
                        .await
                    {
                        Ok(f) if f.high_watermark >= end => break,
                        Ok(f) => assert!(
                            Instant::now() < deadline,
                            "partition {p}: high watermark {} below {end}",
                            f.high_watermark
                        ),
                        Err(e) => assert!(e.is_retryable() && Instant::now() < deadline, "{e}"),
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            verify(&client, &acked).await;
        }
    });
}

#[test]
fn a_node_gossiping_without_the_cluster_plane_is_never_given_partitions() {
    use common::cluster::{free_tcp, free_udp, KEY};
    let cluster = TestCluster::start(3);
    let dir = tempfile::tempdir().unwrap();
    let gossip = format!("127.0.0.1:{}", free_udp());
    let join = format!("127.0.0.1:{}", cluster.slots[0].gossip);
    // Membership only: no --cluster-ca, so no peer endpoint to advertise.
    let _outsider = common::NodeProcess::start_on(
        dir.path(),
        1,
        free_udp(),
        free_tcp(),
        &[
            "--node-id",
            "4",
            "--gossip",
            &gossip,
            "--join",
            &join,
            "--cluster-key",
            KEY,
            "--no-load-forecast",
        ],
    );
    wait_for("the others' gossip sees node 4", || {
        let (_, body) = cluster.nodes[0].admin_get("/cluster");
        let v: Value = serde_json::from_str(&body).unwrap();
        v["members"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["node_id"] == 4 && m["state"] == "alive")
    });
    // Several membership rounds (every 200 ms) go by.
    std::thread::sleep(Duration::from_secs(2));
    let m = metadata(&cluster.nodes[0]);
    let members: Vec<u64> = ["voters", "learners"]
        .iter()
        .flat_map(|k| {
            m[*k]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap())
        })
        .collect();
    assert!(!members.contains(&4), "node 4 admitted: {m}");
    let rt = runtime();
    rt.block_on(async {
        let client = cluster.client(0, false).await;
        client.create_topic("spread", 24, None, None).await.unwrap();
        let meta = client.metadata(&["spread"]).await.unwrap();
        let leaders: Vec<u32> = meta.topics[0]
            .partitions
            .iter()
            .map(|p| p.leader_node_id.unwrap())
            .collect();
        assert!(
            !leaders.contains(&4),
            "a partition placed on node 4: {leaders:?}"
        );
    });
}

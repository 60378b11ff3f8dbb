//! Three real `sprawl` processes and a client bootstrapped at node 1: the
//! client looks the partitions' leaders up and sends produce and fetch
//! requests straight to them, so (almost) nothing is forwarded between
//! nodes, and everything reads back byte-exact.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::cluster::{forwarded, runtime, wait_for, TestCluster};
use sprawl_client::{Acks, Consumer, Producer, ProducerConfig, Record};

const TOPIC: &str = "direct";
const PARTITIONS: u32 = 6;
const ROUNDS: usize = 100;
const MESSAGES: usize = ROUNDS * PARTITIONS as usize;

fn value(i: usize) -> Vec<u8> {
    let mut v = format!("direct-{i:06}-").into_bytes();
    v.extend(std::iter::repeat_n(b'a' + (i % 26) as u8, i % 300));
    v
}

#[test]
fn a_client_sends_partition_requests_straight_to_their_leaders() {
    let cluster = TestCluster::start(3);
    let nodes = &cluster.nodes;
    let rt = runtime();
    rt.block_on(async {
        cluster
            .client(0, true)
            .await
            .create_topic(TOPIC, PARTITIONS, None, None)
            .await
            .unwrap();
    });
    // Replicated (RF 3): each partition's first Raft leader is normally
    // the one placement chose, but on a busy machine another replica may
    // win the first election and claim it in the metadata. Routing is
    // measured once every partition's Raft leader is the metadata's.
    wait_for("partition leadership settled in the metadata", || {
        let Ok(meta) =
            rt.block_on(async { cluster.client(0, true).await.metadata(&[TOPIC]).await })
        else {
            return false;
        };
        meta.topics[0].partitions.iter().all(|p| {
            let Some(leader) = p.leader_node_id else {
                return false;
            };
            let (_, body) = nodes[leader as usize - 1].admin_get("/topics");
            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            v["topics"].as_array().is_some_and(|topics| {
                topics.iter().filter(|t| t["name"] == TOPIC).any(|t| {
                    t["partition_state"].as_array().is_some_and(|ps| {
                        ps.iter().any(|s| {
                            s["partition"] == p.partition
                                && s["replica"]["leader"].as_u64() == Some(u64::from(leader))
                        })
                    })
                })
            })
        })
    });
    let forwarded_before = forwarded(nodes);
    let (forwarded_by_produce, leaders) = rt.block_on(async {
        let client = cluster.client(0, true).await;
        let meta = client.metadata(&[TOPIC]).await.unwrap();
        assert_eq!(meta.nodes.len(), 3, "every live member is listed");
        let leaders: Vec<u32> = meta.topics[0]
            .partitions
            .iter()
            .map(|p| p.leader_node_id.unwrap())
            .collect();
        assert!(
            leaders.iter().any(|&l| l != 1),
            "some partitions are led by another node than the bootstrap: {leaders:?}"
        );

        // One record per partition per round, each round awaited: exactly
        // one ProduceRequest per record.
        let producer = Producer::new(
            &client,
            ProducerConfig {
                acks: Acks::Durable,
                linger: Duration::ZERO,
                ..ProducerConfig::default()
            },
        )
        .unwrap();
        let mut acked: Vec<Vec<(u64, usize)>> = vec![Vec::new(); PARTITIONS as usize];
        for round in 0..ROUNDS {
            let sends: Vec<_> = (0..PARTITIONS as usize)
                .map(|p| {
                    let i = round * PARTITIONS as usize + p;
                    (
                        i,
                        producer.send(TOPIC, Record::new(value(i)).with_partition(p as u32)),
                    )
                })
                .collect();
            for (i, send) in sends {
                let ack = send.await.expect("durable ack");
                acked[ack.partition as usize].push((ack.offset.unwrap(), i));
            }
        }
        let forwarded_by_produce = forwarded(nodes) - forwarded_before;

        // Read everything back through the same client (fetches go to the
        // leaders too), byte-exact and in offset order.
        let consumer = Consumer::new(&client);
        let mut read = 0;
        for (p, want) in acked.iter().enumerate() {
            let mut next = 0;
            let mut got = Vec::new();
            loop {
                let f = consumer
                    .fetch(TOPIC, p as u32, next, 1 << 20, Duration::ZERO)
                    .await
                    .unwrap();
                if f.records.is_empty() {
                    break;
                }
                got.extend(f.records.iter().map(|r| (r.offset, r.value.to_vec())));
                next = f.next_offset;
            }
            assert_eq!(got.len(), want.len(), "partition {p}: record count");
            for ((offset, v), (acked_offset, i)) in got.iter().zip(want) {
                assert_eq!(
                    offset, acked_offset,
                    "partition {p}: offsets as acknowledged"
                );
                assert_eq!(v, &value(*i), "partition {p} offset {offset}: byte-exact");
            }
            read += got.len();
        }
        assert_eq!(read, MESSAGES);
        (forwarded_by_produce, leaders)
    });

    // Without direct routing, the produces for partitions node 1 does not
    // lead would all have been forwarded.
    let not_led_by_bootstrap = leaders.iter().filter(|&&l| l != 1).count() * ROUNDS;
    assert!(
        forwarded_by_produce * 20 < MESSAGES as u64,
        "{forwarded_by_produce} of {MESSAGES} produce requests forwarded \
         (would be {not_led_by_bootstrap} through node 1 alone); leaders {leaders:?}"
    );
    let total = forwarded(nodes) - forwarded_before;
    assert!(
        total * 20 < MESSAGES as u64,
        "{total} requests forwarded in all (produces and fetches)"
    );
    let distinct: BTreeSet<_> = leaders.iter().collect();
    assert!(
        distinct.len() >= 2,
        "placement spreads partitions: {leaders:?}"
    );
}

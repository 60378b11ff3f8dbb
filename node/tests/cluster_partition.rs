//! A real network partition: the metadata leader is cut off from its peers
//! by nftables rules inside a private network namespace (the test re-runs
//! itself under `unshare -rn`, so the host's network is never touched).
//! The isolated leader commits nothing (a change proposed through it never
//! takes effect), the majority side elects a leader and keeps committing,
//! and after the partition heals the old leader follows the new one, drops
//! its uncommitted proposal and learns what was committed without it.
//!
//! Needs `unshare`, `ip` and `nft` (`.ci/run` installs nftables).

mod common;

use std::process::Command;
use std::time::Duration;

use common::cluster::{metadata, runtime, wait_for, TestCluster};
use serde_json::Value;
use sprawl_client::{
    Acks, Client, ClientConfig, Consumer, Producer, ProducerConfig, Record, ServerTrust,
};

const INSIDE: &str = "SPRAWL_TEST_IN_NETNS";
const TEST: &str = "an_isolated_metadata_leader_commits_nothing_and_converges_after_healing";
const TEST_REPLICA: &str =
    "an_isolated_partition_leader_acknowledges_nothing_and_truncates_after_healing";

fn sh(command: &str) {
    let status = Command::new("sh").args(["-c", command]).status().unwrap();
    assert!(status.success(), "{command}: {status}");
}

fn topics(node: &common::NodeProcess) -> Vec<String> {
    metadata(node)["topics"]
        .as_array()
        .map(|t| {
            t.iter()
                .filter_map(|t| t["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Outside the namespace: re-runs test `name` inside a fresh one (user and
/// network namespaces) and returns `false`; inside: brings loopback up and
/// returns `true`.
fn inside_netns(name: &str) -> bool {
    if std::env::var_os(INSIDE).is_none() {
        for tool in ["unshare", "nft", "ip"] {
            let found = Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .unwrap()
                .status
                .success();
            assert!(
                found,
                "{tool} is missing (apt-get install util-linux nftables iproute2)"
            );
        }
        let status = Command::new("unshare")
            .arg("-rn")
            .arg(std::env::current_exe().unwrap())
            .args(["--exact", name, "--nocapture", "--test-threads=1"])
            .env(INSIDE, "1")
            .status()
            .unwrap();
        assert!(
            status.success(),
            "the test inside the network namespace failed"
        );
        return false;
    }
    sh("ip link set lo up");
    true
}

/// Drops every packet from and to the node's peer and gossip ports (all
/// nodes share 127.0.0.1; its client port stays reachable).
fn cut_off(slot: &common::cluster::Slot) {
    sh(&format!(
        "nft add table inet cut && \
         nft add chain inet cut out '{{ type filter hook output priority 0; }}' && \
         nft add rule inet cut out udp sport '{{ {p}, {g} }}' drop && \
         nft add rule inet cut out udp dport '{{ {p}, {g} }}' drop",
        p = slot.peer,
        g = slot.gossip
    ));
}

fn heal() {
    sh("nft delete table inet cut");
}

#[test]
fn an_isolated_metadata_leader_commits_nothing_and_converges_after_healing() {
    if !inside_netns(TEST) {
        return;
    }
    let cluster = TestCluster::start(3);
    let nodes = &cluster.nodes;
    let old = metadata(&nodes[0])["leader"].as_u64().unwrap() as usize;
    let old_term = metadata(&nodes[old - 1])["term"].as_u64().unwrap();
    cut_off(&cluster.slots[old - 1]);
    let survivors: Vec<usize> = (0..3).filter(|&i| i != old - 1).collect();
    let rt = runtime();
    rt.block_on(async {
        // Through the isolated leader: it may still believe it leads for a
        // moment and append the change to its own log, but it can never
        // commit it.
        let mut config =
            ClientConfig::new(nodes[old - 1].quic, ServerTrust::CaFile(cluster.ca.clone()));
        config.direct_to_leaders = false;
        config.request_timeout = Duration::from_secs(4);
        let isolated = Client::connect(config).await.unwrap();
        isolated
            .create_topic("from-the-isolated-side", 1, None, None)
            .await
            .expect_err("an isolated leader commits nothing");
    });
    wait_for("the majority side elects a leader of a later term", || {
        survivors.iter().all(|&i| {
            let m = metadata(&nodes[i]);
            m["leader"].as_u64().is_some_and(|l| l as usize != old)
                && m["term"].as_u64().is_some_and(|t| t > old_term)
        })
    });
    wait_for("the isolated leader steps down", || {
        metadata(&nodes[old - 1])["role"] != "leader"
    });
    rt.block_on(async {
        let client = cluster.client(survivors[0], false).await;
        client
            .create_topic("from-the-majority", 2, None, None)
            .await
            .expect("the majority side commits");
    });

    heal();
    wait_for(
        "the old leader follows and learns the majority's topic",
        || {
            let m = metadata(&nodes[old - 1]);
            m["role"] == "follower"
                && topics(&nodes[old - 1]).contains(&"from-the-majority".to_string())
        },
    );
    // The isolated side's proposal was never committed: nobody has it.
    for node in nodes {
        assert!(
            !topics(node).contains(&"from-the-isolated-side".to_string()),
            "an uncommitted change took effect"
        );
    }
}

/// The partition state of `ledger`/0 on node `i` (from `/topics`).
fn partition_state(cluster: &TestCluster, i: usize) -> Option<Value> {
    let (status, body) = cluster.nodes[i].admin_get("/topics");
    if !status.contains("200") {
        return None;
    }
    let v: Value = serde_json::from_str(&body).ok()?;
    v["topics"]
        .as_array()?
        .iter()
        .find(|t| t["name"] == "ledger")?["partition_state"]
        .as_array()?
        .first()
        .cloned()
}

async fn produce(client: &Client, tag: &str, n: usize) -> Result<Vec<(u64, Vec<u8>)>, String> {
    let producer = Producer::new(
        client,
        ProducerConfig {
            acks: Acks::Durable,
            retries: 0,
            ..ProducerConfig::default()
        },
    )
    .unwrap();
    let mut acked = Vec::new();
    for i in 0..n {
        let value = format!("{tag}-{i:05}").into_bytes();
        let ack = producer
            .send("ledger", Record::new(value.clone()).with_partition(0))
            .await
            .map_err(|e| e.to_string())?;
        acked.push((ack.offset.unwrap(), value));
    }
    Ok(acked)
}

#[test]
fn an_isolated_partition_leader_acknowledges_nothing_and_truncates_after_healing() {
    if !inside_netns(TEST_REPLICA) {
        return;
    }
    let cluster = TestCluster::start(3);
    let rt = runtime();
    let client_of = |i: usize, timeout: Duration| {
        let mut config = ClientConfig::new(
            cluster.nodes[i].quic,
            ServerTrust::CaFile(cluster.ca.clone()),
        );
        config.direct_to_leaders = false;
        config.request_timeout = timeout;
        config
    };
    let mut acked = rt.block_on(async {
        let client = Client::connect(client_of(0, Duration::from_secs(10)))
            .await
            .unwrap();
        client
            .create_topic_replicated("ledger", 1, Some(3), None, None)
            .await
            .unwrap();
        let mut acked = Err(String::new());
        for _ in 0..100 {
            acked = produce(&client, "before", 200).await;
            if acked.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        acked.expect("produce before the cut")
    });
    let mut leader = None;
    wait_for("a partition leader with every replica in sync", || {
        leader = (0..3).find(|&i| {
            partition_state(&cluster, i).is_some_and(|p| {
                p["replica"]["leader"].as_u64() == Some(i as u64 + 1)
                    && p["replica"]["in_sync"]
                        .as_array()
                        .is_some_and(|s| s.len() == 3)
            })
        });
        leader.is_some()
    });
    let old = leader.unwrap();
    let old_term = partition_state(&cluster, old).unwrap()["replica"]["term"]
        .as_u64()
        .unwrap();
    cut_off(&cluster.slots[old]);
    rt.block_on(async {
        // Straight to the isolated leader: it may append the batch to its
        // own log, but it can never acknowledge it.
        let client = Client::connect(client_of(old, Duration::from_secs(4)))
            .await
            .unwrap();
        produce(&client, "isolated", 1)
            .await
            .expect_err("an isolated partition leader acknowledges nothing");
    });
    let survivors: Vec<usize> = (0..3).filter(|&i| i != old).collect();
    wait_for(
        "the majority elects a partition leader of a later term",
        || {
            survivors.iter().all(|&i| {
                partition_state(&cluster, i).is_some_and(|p| {
                    let r = &p["replica"];
                    r["leader"].as_u64().is_some_and(|l| l as usize != old + 1)
                        && r["term"].as_u64().is_some_and(|t| t > old_term)
                })
            })
        },
    );
    wait_for("the isolated leader steps down (check-quorum)", || {
        partition_state(&cluster, old)
            .is_some_and(|p| p["replica"]["leader"].as_u64() != Some(old as u64 + 1))
    });
    rt.block_on(async {
        let client = Client::connect(client_of(survivors[0], Duration::from_secs(10)))
            .await
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let after = loop {
            match produce(&client, "majority", 200).await {
                Ok(a) => break a,
                Err(e) => {
                    assert!(std::time::Instant::now() < deadline, "{e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        acked.extend(after);
    });
    heal();
    // The old leader drops its unacknowledged tail and catches up: its log
    // ends where the others' do, at the same commit index.
    wait_for("every replica's log identical in length and commit", || {
        let states: Vec<Option<(u64, u64, u64)>> = (0..3)
            .map(|i| {
                partition_state(&cluster, i).and_then(|p| {
                    Some((
                        p["log_end_offset"].as_u64()?,
                        p["high_watermark"].as_u64()?,
                        p["replica"]["commit_index"].as_u64()?,
                    ))
                })
            })
            .collect();
        states.iter().all(|s| s.is_some() && *s == states[0])
    });
    rt.block_on(async {
        for i in 0..3 {
            let client = Client::connect(client_of(i, Duration::from_secs(10)))
                .await
                .unwrap();
            // Gossip may still hold the healed node down for a moment.
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            let fetched = loop {
                match Consumer::new(&client)
                    .fetch("ledger", 0, 0, 16 << 20, Duration::ZERO)
                    .await
                {
                    Ok(f) => break f,
                    Err(e) => {
                        assert!(
                            e.is_retryable() && std::time::Instant::now() < deadline,
                            "{e}"
                        );
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            };
            let got: Vec<(u64, Vec<u8>)> = fetched
                .records
                .iter()
                .map(|r| (r.offset, r.value.to_vec()))
                .collect();
            // Exactly the acknowledged messages (retries: 0, so no
            // duplicates), in order, and nothing of the isolated side.
            assert_eq!(got, acked, "node {}", i + 1);
        }
    });
}

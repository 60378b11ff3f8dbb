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
use sprawl_client::{Client, ClientConfig, ServerTrust};

const INSIDE: &str = "SPRAWL_TEST_IN_NETNS";
const TEST: &str = "an_isolated_metadata_leader_commits_nothing_and_converges_after_healing";

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

#[test]
fn an_isolated_metadata_leader_commits_nothing_and_converges_after_healing() {
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
            .args(["--exact", TEST, "--nocapture", "--test-threads=1"])
            .env(INSIDE, "1")
            .status()
            .unwrap();
        assert!(
            status.success(),
            "the test inside the network namespace failed"
        );
        return;
    }
    sh("ip link set lo up");
    let cluster = TestCluster::start(3);
    let nodes = &cluster.nodes;
    let old = metadata(&nodes[0])["leader"].as_u64().unwrap() as usize;
    let old_term = metadata(&nodes[old - 1])["term"].as_u64().unwrap();
    let slot = &cluster.slots[old - 1];
    // Every node is on 127.0.0.1: the old leader's peer and gossip ports
    // name its side of the cut (its client port stays reachable).
    sh(&format!(
        "nft add table inet cut && \
         nft add chain inet cut out '{{ type filter hook output priority 0; }}' && \
         nft add rule inet cut out udp sport '{{ {p}, {g} }}' drop && \
         nft add rule inet cut out udp dport '{{ {p}, {g} }}' drop",
        p = slot.peer,
        g = slot.gossip
    ));
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

    sh("nft delete table inet cut");
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

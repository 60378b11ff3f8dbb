//! Gossip membership between real `sprawl` processes on distinct loopback
//! addresses: three nodes find each other through one seed, a `kill -9`ed
//! node is declared down by the others, a restarted one comes back, and a
//! node with the wrong cluster key is never admitted (its packets are
//! counted as failing authentication).

mod common;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::NodeProcess;
use serde_json::Value;

const KEY: &str = "3f1c9a0be57d2c4e8a6b1f0d9e7c5a3b2f4e6d8c0a1b3c5d7e9f1a2b4c6d8e0f";
const WRONG_KEY: &str = "0000000000000000000000000000000000000000000000000000000000000001";

/// A UDP port free right now on `ip`.
fn free_udp(ip: &str) -> u16 {
    UdpSocket::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(dir: &std::path::Path, ip: &str, seed: &str, key: &str) -> (NodeProcess, String) {
    let gossip = format!("{ip}:{}", free_udp(ip));
    let node = NodeProcess::start_with(
        dir,
        1,
        &[
            "--gossip",
            &gossip,
            "--join",
            if seed.is_empty() { &gossip } else { seed },
            "--cluster-key",
            key,
            "--no-load-forecast",
        ],
    );
    (node, gossip)
}

fn view(node: &NodeProcess) -> Value {
    let (status, body) = node.admin_get("/cluster");
    assert!(status.contains("200"), "{status}");
    serde_json::from_str(&body).unwrap()
}

/// Member gossip address → state, as `node` sees them.
fn states(node: &NodeProcess) -> Vec<(String, String)> {
    let v = view(node);
    v["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["gossip"].as_str().unwrap().to_string(),
                m["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    // Generous: the CI machine has two busy cores.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn nodes_gossip_membership_and_detect_a_killed_node() {
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let (a, seed) = start(dirs[0].path(), "127.0.0.1", "", KEY);
    let (b, _) = start(dirs[1].path(), "127.0.0.2", &seed, KEY);
    let (mut c, c_gossip) = start(dirs[2].path(), "127.0.0.3", &seed, KEY);
    for node in [&a, &b, &c] {
        wait_for("three alive members", || {
            let s = states(node);
            s.len() == 2 && s.iter().all(|(_, st)| st == "alive")
        });
    }
    // Node ids are generated once and kept in the data dir.
    let id_c = view(&c)["local"]["node_id"].as_u64().unwrap();
    let kept: u64 = std::fs::read_to_string(dirs[2].path().join("node_id"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(id_c, kept);

    // An intruder with the wrong key never shows up anywhere.
    let (intruder, intruder_gossip) = start(dirs[3].path(), "127.0.0.4", &seed, WRONG_KEY);
    wait_for("the intruder's packets to be refused", || {
        view(&a)["gossip"]["rejected_total"].as_u64().unwrap_or(0) > 0
    });
    assert!(states(&a).iter().all(|(g, _)| *g != intruder_gossip));
    assert_eq!(view(&intruder)["joined"], false);
    drop(intruder);

    // kill -9: the survivors declare it down.
    let killed_at = Instant::now();
    c.kill_9();
    for node in [&a, &b] {
        wait_for("the killed node to be declared down", || {
            states(node)
                .iter()
                .any(|(g, st)| *g == c_gossip && st == "down")
        });
    }
    eprintln!(
        "killed node declared down by both survivors after {:?}",
        killed_at.elapsed()
    );
    let (_, metrics) = a.admin_get("/metrics");
    assert!(
        metrics.contains("sprawl_cluster_members{state=\"down\"} 1"),
        "{metrics}"
    );
    let downs: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("sprawl_cluster_member_down_total "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no down counter in {metrics}"));
    assert!(downs >= 1, "{metrics}");

    // Restarted on its data dir (same id), it is alive again everywhere.
    let _c = NodeProcess::start_with(
        dirs[2].path(),
        1,
        &[
            "--gossip",
            &c_gossip,
            "--join",
            &seed,
            "--cluster-key",
            KEY,
            "--no-load-forecast",
        ],
    );
    for node in [&a, &b] {
        wait_for("the restarted node to be alive", || {
            states(node)
                .iter()
                .any(|(g, st)| *g == c_gossip && st == "alive")
        });
    }
}

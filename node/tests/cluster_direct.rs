//! Three real `sprawl` processes and a client bootstrapped at node 1: the
//! client looks the partitions' leaders up and sends produce and fetch
//! requests straight to them, so (almost) nothing is forwarded between
//! nodes, and everything reads back byte-exact.
//!
//! The cluster-start harness is a copy of `cluster_routing.rs`'s.

mod common;

use std::collections::BTreeSet;
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::NodeProcess;
use serde_json::Value;
use sprawl_client::{
    Acks, Client, ClientConfig, Consumer, Producer, ProducerConfig, Record, ServerTrust,
};
use sprawl_io::quic::{create_cluster_ca, issue_node_certificate, CertPaths};

const KEY: &str = "5e1c9a0be57d2c4e8a6b1f0d9e7c5a3b2f4e6d8c0a1b3c5d7e9f1a2b4c6d8e0f";
const TOPIC: &str = "direct";
const PARTITIONS: u32 = 6;
const ROUNDS: usize = 100;
const MESSAGES: usize = ROUNDS * PARTITIONS as usize;

fn free_udp() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_tcp() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Slot {
    id: u32,
    dir: PathBuf,
    quic: u16,
    admin: u16,
    gossip: u16,
    peer: u16,
    cert: CertPaths,
}

fn start(slot: &Slot, ca: &Path, seed: u16, bootstrap: bool) -> NodeProcess {
    let id = slot.id.to_string();
    let gossip = format!("127.0.0.1:{}", slot.gossip);
    let join = format!("127.0.0.1:{seed}");
    let peer = format!("127.0.0.1:{}", slot.peer);
    let mut args = vec![
        "--node-id",
        &id,
        "--gossip",
        &gossip,
        "--join",
        &join,
        "--cluster-key",
        KEY,
        "--peer-listen",
        &peer,
        "--cluster-ca",
        ca.to_str().unwrap(),
        "--tls-cert",
        slot.cert.cert_path.to_str().unwrap(),
        "--tls-key",
        slot.cert.key_path.to_str().unwrap(),
        "--no-load-forecast",
    ];
    if bootstrap {
        args.push("--bootstrap");
    }
    NodeProcess::start_on(&slot.dir, 1, slot.quic, slot.admin, &args)
}

fn metadata(node: &NodeProcess) -> Value {
    let (status, body) = node.admin_get("/cluster");
    assert!(status.contains("200"), "{status}");
    serde_json::from_str::<Value>(&body).unwrap()["metadata"].clone()
}

fn forwarded(nodes: &[NodeProcess]) -> u64 {
    nodes
        .iter()
        .map(|n| metadata(n)["forwarded_requests"].as_u64().unwrap())
        .sum()
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn value(i: usize) -> Vec<u8> {
    let mut v = format!("direct-{i:06}-").into_bytes();
    v.extend(std::iter::repeat_n(b'a' + (i % 26) as u8, i % 300));
    v
}

#[test]
fn a_client_sends_partition_requests_straight_to_their_leaders() {
    let pki = tempfile::tempdir().unwrap();
    let ca = create_cluster_ca(pki.path()).unwrap();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let slots: Vec<Slot> = (0..3)
        .map(|i| Slot {
            id: i as u32 + 1,
            dir: dirs[i].path().to_path_buf(),
            quic: free_udp(),
            admin: free_tcp(),
            gossip: free_udp(),
            peer: free_udp(),
            cert: issue_node_certificate(
                &ca,
                i as u64 + 1,
                &["127.0.0.1", "localhost"],
                pki.path(),
            )
            .unwrap(),
        })
        .collect();
    let seed = slots[0].gossip;
    let nodes: Vec<NodeProcess> = slots
        .iter()
        .enumerate()
        .map(|(i, s)| start(s, &ca.cert_path, seed, i == 0))
        .collect();
    wait_for("three metadata voters", || {
        nodes.iter().all(|n| {
            metadata(n)["voters"]
                .as_array()
                .is_some_and(|v| v.len() == 3)
        })
    });

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let forwarded_before = forwarded(&nodes);
    let (forwarded_by_produce, leaders) = rt.block_on(async {
        let config = ClientConfig::new(nodes[0].quic, ServerTrust::CaFile(ca.cert_path.clone()));
        let client = Client::connect(config).await.expect("connect");
        client
            .create_topic(TOPIC, PARTITIONS, None, None)
            .await
            .unwrap();
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
        let forwarded_by_produce = forwarded(&nodes) - forwarded_before;

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
    let total = forwarded(&nodes) - forwarded_before;
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

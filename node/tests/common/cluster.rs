//! A cluster of real `sprawl` processes on 127.0.0.1 for integration tests:
//! a cluster CA and node certificates made in the test, node 1 founding the
//! metadata group, every node joining through node 1's gossip address.

use std::net::{TcpListener, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;
use sprawl_client::{Client, ClientConfig, ServerTrust};
use sprawl_io::quic::{create_cluster_ca, issue_node_certificate, CertPaths};

use super::NodeProcess;

pub const KEY: &str = "5e1c9a0be57d2c4e8a6b1f0d9e7c5a3b2f4e6d8c0a1b3c5d7e9f1a2b4c6d8e0f";

pub fn free_udp() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn free_tcp() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A node's fixed identity and addresses, so a restart comes back on them.
pub struct Slot {
    pub id: u32,
    pub dir: tempfile::TempDir,
    pub quic: u16,
    pub admin: u16,
    pub gossip: u16,
    pub peer: u16,
    pub cert: CertPaths,
}

pub struct TestCluster {
    _pki: tempfile::TempDir,
    pub ca: PathBuf,
    pub slots: Vec<Slot>,
    pub nodes: Vec<NodeProcess>,
}

impl TestCluster {
    /// Starts `n` nodes and waits until the metadata group has its voters
    /// (up to three) and every node as a member.
    pub fn start(n: usize) -> Self {
        let pki = tempfile::tempdir().unwrap();
        let ca = create_cluster_ca(pki.path()).unwrap();
        let slots: Vec<Slot> = (0..n)
            .map(|i| Slot {
                id: i as u32 + 1,
                dir: tempfile::tempdir().unwrap(),
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
        let mut cluster = Self {
            _pki: pki,
            ca: ca.cert_path,
            slots,
            nodes: Vec::new(),
        };
        cluster.nodes = (0..n).map(|i| cluster.launch(i)).collect();
        let voters = n.min(3);
        wait_for("the metadata group", || {
            cluster.nodes.iter().all(|node| {
                let m = metadata(node);
                let count = |k: &str| m[k].as_array().map_or(0, Vec::len);
                count("voters") == voters && count("voters") + count("learners") == n
            })
        });
        cluster
    }

    /// Starts node `i` (0-based) on its slot; node 0 founds the group.
    pub fn launch(&self, i: usize) -> NodeProcess {
        let slot = &self.slots[i];
        let id = slot.id.to_string();
        let gossip = format!("127.0.0.1:{}", slot.gossip);
        let join = format!("127.0.0.1:{}", self.slots[0].gossip);
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
            self.ca.to_str().unwrap(),
            "--tls-cert",
            slot.cert.cert_path.to_str().unwrap(),
            "--tls-key",
            slot.cert.key_path.to_str().unwrap(),
            "--no-load-forecast",
        ];
        if i == 0 {
            args.push("--bootstrap");
        }
        NodeProcess::start_on(slot.dir.path(), 1, slot.quic, slot.admin, &args)
    }

    /// A client of node `i`; `direct`: partition requests go straight to
    /// their leaders, else everything goes through node `i` (which forwards).
    pub async fn client(&self, i: usize, direct: bool) -> Client {
        let mut config =
            ClientConfig::new(self.nodes[i].quic, ServerTrust::CaFile(self.ca.clone()));
        config.direct_to_leaders = direct;
        Client::connect(config).await.expect("connect")
    }
}

/// The metadata part of a node's `/cluster`.
pub fn metadata(node: &NodeProcess) -> Value {
    let (status, body) = node.admin_get("/cluster");
    assert!(status.contains("200"), "{status}");
    serde_json::from_str::<Value>(&body).unwrap()["metadata"].clone()
}

/// Requests the nodes forwarded to a leader, summed.
pub fn forwarded(nodes: &[NodeProcess]) -> u64 {
    nodes
        .iter()
        .map(|n| metadata(n)["forwarded_requests"].as_u64().unwrap())
        .sum()
}

pub fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    // Generous: the CI machine has two busy cores.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

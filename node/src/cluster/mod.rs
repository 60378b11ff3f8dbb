//! The node's cluster plane (with `--gossip` and a cluster certificate):
//! a plain OS thread (`cluster`) running a single-threaded tokio runtime
//! with the peer QUIC endpoint (mutual TLS, `peer`) and the metadata Raft
//! driver (`meta`). Shards reach it through [`ClusterHandle`]; it reaches
//! the shards through the runtime's `ControlHandle`. Control plane only:
//! no shard's reactor ever waits on it except for a topic change.

pub mod apply;
pub mod meta;
pub mod peer;
pub mod protocol;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use sprawl_io::quic::{CertPaths, ClusterTls};
use sprawl_shards::{ControlHandle, TopicCatalog};
use tokio::sync::{mpsc, oneshot};

use crate::gossip::SharedView;
use meta::{MetaDriver, Routes, SharedRoutes};
use peer::{Inbound, PeerEndpoint};
use protocol::{PeerRequest, PeerResponse, RejectKind};

/// Metadata Raft tick (election after 10–20 ticks without a leader).
const META_TICK: Duration = Duration::from_millis(100);

#[derive(Debug, Clone)]
pub struct ClusterSettings {
    pub peer_listen: SocketAddr,
    pub ca_cert: PathBuf,
    pub node_cert: CertPaths,
    /// Found the metadata group (one voter: this node) when the data dir
    /// holds none; exactly one node of a new cluster does.
    pub bootstrap: bool,
    /// Replication factor of topics created without one; 0: 3 on a
    /// cluster of 3 or more live members, else 1.
    pub default_replication_factor: u16,
}

/// The shards' door into the cluster plane (`Send`, cheap to clone).
#[derive(Clone, Debug)]
pub struct ClusterHandle {
    tx: mpsc::UnboundedSender<Inbound>,
    pub routes: SharedRoutes,
    pub node_id: u64,
    /// The cluster CA: forwarding connections verify leaders against it.
    pub ca_cert: PathBuf,
    /// Requests this node's shards forwarded to a leader.
    pub forwarded: Arc<std::sync::atomic::AtomicU64>,
}

impl ClusterHandle {
    /// The handle and the receiving end the cluster thread will own; made
    /// before the shards start so their connections can hold the handle.
    pub fn new(node_id: u64, ca_cert: PathBuf) -> (Self, mpsc::UnboundedReceiver<Inbound>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let routes = Arc::new(RwLock::new(Routes {
            node_id,
            ..Routes::default()
        }));
        (
            Self {
                tx,
                routes,
                node_id,
                ca_cert,
                forwarded: Arc::default(),
            },
            rx,
        )
    }

    /// Runs a topic change through the metadata group; answers once it is
    /// committed and applied on this node (or refused).
    pub async fn change(&self, request: PeerRequest) -> PeerResponse {
        let (reply, answer) = oneshot::channel();
        if self.tx.send(Inbound::Request { request, reply }).is_err() {
            return PeerResponse::Rejected {
                kind: RejectKind::Unavailable,
                message: "the cluster thread has stopped".into(),
            };
        }
        answer.await.unwrap_or(PeerResponse::Rejected {
            kind: RejectKind::Unavailable,
            message: "the cluster thread dropped the request".into(),
        })
    }

    /// Whether a topic unknown to the local catalog may exist: the metadata
    /// view has it, another node forwarded a request for it (it only
    /// forwards for topics it has applied), or this node is not a member of
    /// the metadata group yet (it cannot know).
    pub fn knows_topic(&self, topic: &str, forwarded: bool) -> bool {
        let routes = self.routes.read().unwrap();
        let member =
            routes.voters.contains(&self.node_id) || routes.learners.contains(&self.node_id);
        forwarded || !member || routes.topics.contains_key(topic)
    }

    /// How this node's shards reach their partitions' peer replicas: over
    /// the cluster thread's peer endpoint (mutual TLS).
    pub fn replication_hooks(&self) -> sprawl_shards::replication::ReplicationHooks {
        let tx = self.tx.clone();
        let send = Arc::new(move |to: u64, shard: usize, envelope: Vec<u8>| {
            let _ = tx.send(Inbound::ReplicaOut {
                to,
                shard: shard as u32,
                envelope,
            });
        });
        let tx = self.tx.clone();
        let node = self.node_id;
        let claim = Arc::new(move |topic: String, partition: u32, term: u64| {
            let (reply, answer) = oneshot::channel();
            let request = PeerRequest::ClaimLeadership {
                topic: topic.clone(),
                partition,
                node,
                term,
            };
            if tx.send(Inbound::Request { request, reply }).is_ok() {
                // Answered on the cluster thread; the claim is repeated
                // until the metadata names this node, so only log here.
                std::mem::drop(answer);
            }
            tracing::debug!(%topic, partition, term, "claimed partition leadership");
        });
        let me = self.clone();
        let set_replicas = Arc::new(move |topic: String, partition: u32, replicas: Vec<u64>| {
            let me = me.clone();
            let request = PeerRequest::SetReplicas {
                topic,
                partition,
                replicas,
            };
            let answer: std::pin::Pin<
                Box<dyn std::future::Future<Output = Result<(), String>> + Send>,
            > = Box::pin(async move {
                match me.change(request).await {
                    PeerResponse::Committed { .. } => Ok(()),
                    PeerResponse::Rejected { message, .. } => Err(message),
                }
            });
            answer
        });
        sprawl_shards::replication::ReplicationHooks {
            send,
            claim_leadership: claim,
            set_replicas,
        }
    }

    /// The client-facing QUIC address of a node gossip knows, and whether
    /// gossip holds it alive.
    pub fn quic_addr(&self, node: u64) -> Option<(SocketAddr, bool)> {
        self.routes
            .read()
            .unwrap()
            .nodes
            .get(&node)
            .map(|a| (a.quic, a.alive))
    }
}

/// Starts the cluster thread. It stops when `stop` is set.
#[allow(clippy::too_many_arguments)]
pub fn start(
    settings: &ClusterSettings,
    handle: &ClusterHandle,
    inbound: mpsc::UnboundedReceiver<Inbound>,
    data_dir: PathBuf,
    gossip: SharedView,
    control: ControlHandle,
    catalog: Arc<Mutex<TopicCatalog>>,
    replica_inbound: Vec<futures::channel::mpsc::UnboundedSender<(u64, Vec<u8>)>>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let tls = ClusterTls::load(&settings.ca_cert, &settings.node_cert).with_context(|| {
        format!(
            "loading the cluster certificate {} (CA {})",
            settings.node_cert.cert_path.display(),
            settings.ca_cert.display()
        )
    })?;
    // Peers check that this node's messages come from the node its
    // certificate names: a mismatch would leave it outside the cluster.
    let certified = {
        use quinn::rustls::pki_types::{pem::PemObject, CertificateDer};
        CertificateDer::pem_file_iter(&settings.node_cert.cert_path)
            .ok()
            .and_then(|mut certs| certs.next())
            .and_then(Result::ok)
            .and_then(|leaf| sprawl_io::quic::certificate_node_id(&leaf))
    };
    anyhow::ensure!(
        certified == Some(handle.node_id),
        "{} is a certificate for node {:?}, not for node {} (--node-id): issue one with \
         `sprawlctl cert node --node-id {}`",
        settings.node_cert.cert_path.display(),
        certified,
        handle.node_id,
        handle.node_id
    );
    let node = MetaDriver::open(handle.node_id, &data_dir.join("meta"), settings.bootstrap)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the cluster thread's runtime")?;
    let peers = {
        let _guard = runtime.enter();
        PeerEndpoint::bind(settings.peer_listen, &tls)?
    };
    tracing::info!(peer = %settings.peer_listen, bootstrap = settings.bootstrap, "cluster plane: peer endpoint (mutual TLS) and metadata Raft");
    let (forwarded_tx, forwarded_rx) = mpsc::unbounded_channel();
    let applier = apply::Applier::start(control, catalog.clone(), handle.tx.clone())?;
    let mut driver = MetaDriver {
        node,
        peers,
        gossip,
        routes: handle.routes.clone(),
        forwarded: handle.forwarded.clone(),
        inbound_tx: handle.tx.clone(),
        waiting: HashMap::new(),
        apply_waiters: Vec::new(),
        forwarded_tx,
        default_replication_factor: settings.default_replication_factor,
        applier,
        last_membership_check: Instant::now(),
        replica_inbound,
    };
    let thread = std::thread::Builder::new()
        .name("cluster".into())
        .spawn(move || runtime.block_on(run(&mut driver, inbound, forwarded_rx, stop)))?;
    Ok(thread)
}

async fn run(
    driver: &mut MetaDriver,
    mut inbound: mpsc::UnboundedReceiver<Inbound>,
    mut forwarded: mpsc::UnboundedReceiver<(PeerResponse, oneshot::Sender<PeerResponse>)>,
    stop: Arc<AtomicBool>,
) {
    tokio::spawn(driver.peers.clone().serve(driver.inbound_tx.clone()));
    driver.publish_routes();
    driver.reconcile_all(false);
    let mut tick = tokio::time::interval(META_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !stop.load(Ordering::Relaxed) {
        tokio::select! {
            _ = tick.tick() => {
                driver.node.tick();
                driver.publish_routes();
                driver.maybe_change_membership();
            }
            Some(event) = inbound.recv() => driver.on_inbound(event),
            Some((response, reply)) = forwarded.recv() => driver.on_forwarded(response, reply),
        }
        if let Err(e) = driver.pump() {
            // The metadata log could not be written: stop taking part
            // rather than vote or acknowledge on a log that is not durable.
            tracing::error!(error = %e, "metadata Raft failed; this node leaves the metadata group");
            break;
        }
    }
    driver.peers.close();
}

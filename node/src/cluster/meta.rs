//! The metadata driver: runs this node's member of the metadata Raft group
//! (`sprawl_cluster::meta::MetaNode` over `FileMetaStorage` in
//! `<data>/meta`) on the cluster thread. It ticks Raft, carries its
//! messages over the peer endpoint, places new topics (rendezvous hashing
//! over the live members) when it leads, forwards topic changes to the
//! leader when it does not, grows the group from the gossip view (learner,
//! then voter, up to three voters), and applies every committed topic
//! change to the local shards' catalog.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use super::apply::Job;
use sprawl_cluster::meta::{
    AppliedCommand, FileMetaStorage, MetaCommand, MetaConfig, MetaError, MetaNode, MetaReady,
    PartitionAssignment, ProposalId, ProposalOutcome, Rejection, StateRole, TopicConfig, TopicMeta,
};
use sprawl_cluster::placement::{PlacementNode, ReplicaPlacement};
use tokio::sync::{mpsc, oneshot};

use super::peer::{Inbound, PeerEndpoint};
use super::protocol::{PeerRequest, PeerResponse, RejectKind, TopicSpec};
use crate::gossip::SharedView;

/// Voters the metadata group grows to (the rest stay learners).
const META_VOTERS_TARGET: usize = 3;
/// How often the leader reconsiders the group's membership (one change at
/// a time: a 3-node cluster is complete after four changes).
const MEMBERSHIP_EVERY: Duration = Duration::from_millis(200);

/// A member's addresses as gossip advertises them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct NodeAddrs {
    pub quic: SocketAddr,
    pub peer: SocketAddr,
    pub admin: SocketAddr,
    pub alive: bool,
}

/// What the rest of the node reads about the cluster: who leads the
/// metadata group, the members' addresses, and the committed topics.
#[derive(Debug, Default, Clone)]
pub struct Routes {
    pub node_id: u64,
    pub meta_leader: Option<u64>,
    pub meta_term: u64,
    pub meta_role: &'static str,
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
    pub applied_index: u64,
    pub elections_observed: u64,
    pub nodes: BTreeMap<u64, NodeAddrs>,
    pub topics: BTreeMap<String, TopicMeta>,
    /// Summed over the shards' forwarders (they add to it themselves).
    pub forwarded_requests: u64,
    pub peer_stats: super::peer::PeerStats,
}

pub type SharedRoutes = Arc<RwLock<Routes>>;

impl Routes {
    /// The metadata part of `/cluster`.
    pub fn to_json(&self) -> serde_json::Value {
        let topics: Vec<serde_json::Value> = self
            .topics
            .iter()
            .map(|(name, t)| {
                serde_json::json!({
                    "name": name,
                    "partitions": t.config.partitions,
                    "replication_factor": t.config.replication_factor,
                    "leaders": t.partitions.iter().map(|a| a.leader).collect::<Vec<_>>(),
                })
            })
            .collect();
        serde_json::json!({
            "node_id": self.node_id,
            "leader": self.meta_leader,
            "term": self.meta_term,
            "role": self.meta_role,
            "voters": self.voters,
            "learners": self.learners,
            "applied_index": self.applied_index,
            "leader_changes_observed": self.elections_observed,
            "topics": topics,
            "forwarded_requests": self.forwarded_requests,
            "peer": self.peer_stats,
        })
    }

    /// Metadata group metrics in the Prometheus text format.
    pub fn render_prometheus(&self) -> String {
        let is_leader = u8::from(self.meta_leader == Some(self.node_id));
        format!(
            "# HELP sprawl_meta_leader 1 when this node leads the metadata Raft group.\n\
             # TYPE sprawl_meta_leader gauge\nsprawl_meta_leader {is_leader}\n\
             # HELP sprawl_meta_term Current term of the metadata Raft group.\n\
             # TYPE sprawl_meta_term gauge\nsprawl_meta_term {}\n\
             # HELP sprawl_meta_applied_index Metadata log index applied on this node.\n\
             # TYPE sprawl_meta_applied_index gauge\nsprawl_meta_applied_index {}\n\
             # HELP sprawl_meta_leader_changes_total Metadata leadership or role changes seen by this node.\n\
             # TYPE sprawl_meta_leader_changes_total counter\nsprawl_meta_leader_changes_total {}\n\
             # HELP sprawl_node_forwarded_requests_total Client requests this node forwarded to a partition's leader.\n\
             # TYPE sprawl_node_forwarded_requests_total counter\nsprawl_node_forwarded_requests_total {}\n\
             # HELP sprawl_peer_send_failures_total Node-to-node messages that could not be sent.\n\
             # TYPE sprawl_peer_send_failures_total counter\nsprawl_peer_send_failures_total {}\n",
            self.meta_term,
            self.applied_index,
            self.elections_observed,
            self.forwarded_requests,
            self.peer_stats.send_failures,
        )
    }
}

pub struct MetaDriver {
    pub node: MetaNode<FileMetaStorage>,
    pub peers: Arc<PeerEndpoint>,
    pub gossip: SharedView,
    pub routes: SharedRoutes,
    /// Requests the shards forwarded (they count without a lock).
    pub forwarded: Arc<std::sync::atomic::AtomicU64>,
    pub inbound_tx: mpsc::UnboundedSender<Inbound>,
    /// Proposals of this node, answered when applied (or dropped).
    pub waiting: HashMap<ProposalId, oneshot::Sender<PeerResponse>>,
    /// Answers waiting for the local state to reach an index (a change
    /// committed through another leader).
    pub apply_waiters: Vec<(u64, oneshot::Sender<PeerResponse>)>,
    /// Forwarded changes come back here.
    pub forwarded_tx: mpsc::UnboundedSender<(PeerResponse, oneshot::Sender<PeerResponse>)>,
    pub default_replication_factor: u16,
    /// Catalog changes on their way to the shards (`apply`).
    pub applier: super::apply::Applier,
    pub last_membership_check: Instant,
    /// Per shard: where partition Raft envelopes from peers go.
    pub replica_inbound: Vec<futures::channel::mpsc::UnboundedSender<(u64, Vec<u8>)>>,
}

impl MetaDriver {
    pub fn open(
        node_id: u64,
        dir: &std::path::Path,
        bootstrap: bool,
    ) -> anyhow::Result<MetaNode<FileMetaStorage>> {
        use anyhow::Context;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let storage = FileMetaStorage::open(dir)
            .with_context(|| format!("opening the metadata log in {}", dir.display()))?;
        let seed = node_id ^ sprawl_shards::shard::now_ms() as u64;
        let config = MetaConfig::new(node_id, seed);
        let node = if bootstrap {
            MetaNode::bootstrap(config, storage, &[node_id])
        } else {
            MetaNode::open(config, storage)
        }
        .context("starting the metadata Raft node")?;
        Ok(node)
    }

    /// Brings the local catalog in line with the committed state: at start
    /// (`delete_missing` false: the state is only the local snapshot's, and
    /// the log entries after it are applied again as Raft replays them, so
    /// a topic missing here may well be created by that replay) and after
    /// a leader's snapshot replaced the state (`delete_missing` true: the
    /// snapshot is the whole truth up to its index, so topics it lacks were
    /// deleted).
    pub fn reconcile_all(&mut self, delete_missing: bool) {
        if self.node.applied_index() == 0 {
            return;
        }
        let topics: Vec<(String, TopicMeta)> = self
            .node
            .state()
            .topics()
            .map(|(n, t)| (n.to_string(), t.clone()))
            .collect();
        let index = self.node.state().applied_index();
        for (name, meta) in &topics {
            self.submit_topic(name, Some(meta), index);
        }
        if delete_missing {
            let keep = topics.into_iter().map(|(name, _)| name).collect();
            self.applier.submit(Job::DeleteAllBut(keep), index);
        }
        self.publish_routes();
    }

    /// Hands a topic change to the applier thread (it blocks on the
    /// shards; this thread must keep ticking Raft meanwhile).
    fn submit_topic(&mut self, name: &str, meta: Option<&TopicMeta>, index: u64) {
        let topic = meta.map(|meta| {
            let config = sprawl_shards::TopicConfig {
                partitions: meta.config.partitions,
                retention_bytes: meta.config.retention_bytes,
                retention_ms: meta.config.retention_ms,
                created_ms: meta.config.created_ms,
            };
            sprawl_shards::ClusterTopic {
                config,
                leaders: meta.partitions.iter().map(|a| a.leader as u32).collect(),
                replicas: meta
                    .partitions
                    .iter()
                    .map(|a| a.replicas.iter().map(|&n| n as u32).collect())
                    .collect(),
            }
        });
        let job = Job::Topic {
            name: name.to_string(),
            topic,
        };
        self.applier.submit(job, index);
    }

    /// The metadata index this node's shards reflect.
    fn locally_applied(&self) -> u64 {
        self.applier.locally_applied(self.node.applied_index())
    }

    pub fn publish_routes(&self) {
        let members = self.node.state().members();
        let gossip = self.gossip.lock().unwrap();
        let mut nodes = BTreeMap::new();
        for m in gossip.local.iter().chain(gossip.members.values()) {
            let parse = |s: &str| s.parse::<SocketAddr>().ok();
            if let (Some(quic), Some(peer), Some(admin)) =
                (parse(&m.quic), parse(&m.peer), parse(&m.admin))
            {
                nodes.insert(
                    m.node_id,
                    NodeAddrs {
                        quic,
                        peer,
                        admin,
                        alive: m.state == "alive",
                    },
                );
            }
        }
        drop(gossip);
        let (elections_observed, forwarded_requests) = {
            let r = self.routes.read().unwrap();
            (r.elections_observed, r.forwarded_requests)
        };
        let mut routes = Routes {
            elections_observed,
            forwarded_requests,
            ..Routes::default()
        };
        routes.node_id = self.node.id();
        routes.meta_leader = self.node.leader();
        routes.meta_term = self.node.term();
        routes.meta_role = match self.node.role() {
            StateRole::Leader => "leader",
            StateRole::Candidate => "candidate",
            StateRole::PreCandidate => "pre-candidate",
            StateRole::Follower => "follower",
        };
        routes.voters = members.voters.iter().copied().collect();
        routes.learners = members.learners.iter().copied().collect();
        routes.applied_index = self.node.applied_index();
        routes.nodes = nodes;
        routes.peer_stats = *self.peers.stats.lock().unwrap();
        routes.topics = self
            .node
            .state()
            .topics()
            .map(|(n, t)| (n.to_string(), t.clone()))
            .collect();
        routes.forwarded_requests = self.forwarded.load(std::sync::atomic::Ordering::Relaxed);
        // Built outside the lock: shards only ever wait for a swap.
        *self.routes.write().unwrap() = routes;
    }

    fn addr_of(&self, node: u64) -> Option<SocketAddr> {
        self.routes.read().unwrap().nodes.get(&node).map(|a| a.peer)
    }

    /// Handles one event from a peer or a local shard.
    pub fn on_inbound(&mut self, event: Inbound) {
        match event {
            Inbound::Raft { from, messages } => {
                for bytes in messages {
                    if let Err(e) = self.node.step_from(from, &bytes) {
                        tracing::debug!(from, error = %e, "metadata raft message refused");
                    }
                }
            }
            Inbound::Request { request, reply } => self.on_request(request, reply),
            Inbound::ReplicaIn {
                from,
                shard,
                envelope,
            } => match self.replica_inbound.get(shard as usize) {
                Some(tx) => {
                    let _ = tx.unbounded_send((from, envelope));
                }
                None => tracing::warn!(
                    from,
                    shard,
                    "replica envelope for a shard this node does not have \
                     (every node of a cluster must run the same shard count)"
                ),
            },
            Inbound::ReplicaOut {
                to,
                shard,
                envelope,
            } => match self.addr_of(to) {
                Some(addr) => {
                    let from = self.node.id();
                    self.peers.send_oneway(
                        to,
                        addr,
                        PeerRequest::PartitionRaft {
                            from,
                            shard,
                            envelope,
                        },
                    );
                }
                None => tracing::debug!(to, "no address for a replica peer yet"),
            },
            Inbound::Applied { index } => {
                tracing::trace!(index, "metadata change applied to the shards");
                self.applier.finished();
            }
        }
    }

    fn on_request(&mut self, request: PeerRequest, reply: oneshot::Sender<PeerResponse>) {
        if !self.node.is_leader() {
            let Some(leader) = self.node.leader() else {
                let _ = reply.send(unavailable("no metadata leader yet (election in progress)"));
                return;
            };
            let Some(addr) = self.addr_of(leader) else {
                let _ = reply.send(unavailable(&format!(
                    "metadata leader {leader} has no known address yet"
                )));
                return;
            };
            let (peers, back) = (self.peers.clone(), self.forwarded_tx.clone());
            tokio::spawn(async move {
                let response = match peers.call(leader, addr, &request).await {
                    Ok(r) => r,
                    Err(e) => {
                        unavailable(&format!("forwarding to metadata leader {leader}: {e:#}"))
                    }
                };
                let _ = back.send((response, reply));
            });
            return;
        }
        let command = match request {
            PeerRequest::CreateTopic(spec) => match self.place(&spec) {
                Ok(c) => c,
                Err(r) => {
                    let _ = reply.send(r);
                    return;
                }
            },
            PeerRequest::DeleteTopic { name } => MetaCommand::DeleteTopic { name },
            PeerRequest::ClaimLeadership {
                topic,
                partition,
                node,
                term,
            } => {
                let current = match self.assignment(&topic, partition) {
                    Ok(a) => a,
                    Err(r) => {
                        let _ = reply.send(r);
                        return;
                    }
                };
                if !current.replicas.contains(&node) {
                    let _ = reply.send(PeerResponse::Rejected {
                        kind: RejectKind::Invalid,
                        message: format!("node {node} keeps no replica of {topic}/{partition}"),
                    });
                    return;
                }
                let epoch = term << super::protocol::EPOCH_TERM_SHIFT;
                if current.leader_epoch >= epoch {
                    // Already recorded, or a later leader is.
                    let index = self.node.applied_index();
                    let _ = reply.send(PeerResponse::Committed { index });
                    return;
                }
                MetaCommand::SetAssignment {
                    topic,
                    partition,
                    replicas: current.replicas.clone(),
                    leader: node,
                    leader_epoch: epoch,
                }
            }
            PeerRequest::SetReplicas {
                topic,
                partition,
                replicas,
            } => {
                let current = match self.assignment(&topic, partition) {
                    Ok(a) => a,
                    Err(r) => {
                        let _ = reply.send(r);
                        return;
                    }
                };
                MetaCommand::SetAssignment {
                    topic,
                    partition,
                    replicas,
                    leader: current.leader,
                    leader_epoch: current.leader_epoch + 1,
                }
            }
            PeerRequest::MetaRaft { .. } | PeerRequest::PartitionRaft { .. } => return,
        };
        match self.node.propose(command) {
            Ok(id) => {
                self.waiting.insert(id, reply);
            }
            Err(e) => {
                let _ = reply.send(unavailable(&e.to_string()));
            }
        }
    }

    /// A partition's committed assignment, or the refusal for a request
    /// about a partition the metadata does not have.
    fn assignment(&self, topic: &str, partition: u32) -> Result<PartitionAssignment, PeerResponse> {
        self.node
            .state()
            .partition(topic, partition)
            .cloned()
            .ok_or_else(|| PeerResponse::Rejected {
                kind: RejectKind::UnknownTopic,
                message: format!("no partition {topic}/{partition}"),
            })
    }

    /// The leader's placement of a new topic over the live members.
    fn place(&self, spec: &TopicSpec) -> Result<MetaCommand, PeerResponse> {
        let invalid = |message: String| PeerResponse::Rejected {
            kind: RejectKind::Invalid,
            message,
        };
        // Checked before placement, which allocates per partition.
        sprawl_shards::catalog::validate_topic_name(&spec.name)
            .map_err(|e| invalid(e.to_string()))?;
        if !(1..=sprawl_shards::catalog::PARTITIONS_MAX).contains(&spec.partitions) {
            return Err(invalid(format!(
                "{} partitions: a topic has 1 to {}",
                spec.partitions,
                sprawl_shards::catalog::PARTITIONS_MAX
            )));
        }
        // Only members of the metadata group: they are the nodes that
        // apply the topic (a node gossiping without the cluster plane, or
        // not admitted yet, never would).
        let members = self.node.state().members().clone();
        let gossip = self.gossip.lock().unwrap();
        let mut nodes: Vec<PlacementNode> = Vec::new();
        for m in gossip.local.iter().chain(gossip.members.values()) {
            if m.state == "alive" && members.contains(m.node_id) {
                nodes.push(PlacementNode::new(m.node_id, m.rack.as_deref(), 1.0));
            }
        }
        drop(gossip);
        // Default: 3 replicas on a cluster of 3 or more, else 1 (unless
        // the node was started with another default).
        let rf = spec
            .replication_factor
            .unwrap_or(match self.default_replication_factor {
                0 if nodes.len() >= 3 => 3,
                0 => 1,
                n => n,
            });
        if rf == 0 || rf as usize > nodes.len() {
            return Err(invalid(format!(
                "replication factor {rf}: the cluster has {} live member(s) to place replicas on",
                nodes.len()
            )));
        }
        let placement = ReplicaPlacement::new(nodes).map_err(|e| invalid(e.to_string()))?;
        let replicas = placement
            .topic_replicas(&spec.name, spec.partitions, rf as usize)
            .map_err(|e| invalid(e.to_string()))?;
        Ok(MetaCommand::CreateTopic {
            name: spec.name.clone(),
            config: TopicConfig {
                partitions: spec.partitions,
                replication_factor: rf,
                retention_bytes: spec.retention_bytes,
                retention_ms: spec.retention_ms,
                created_ms: sprawl_shards::shard::now_ms(),
            },
            replicas,
        })
    }

    /// A change forwarded to the leader came back.
    pub fn on_forwarded(&mut self, response: PeerResponse, reply: oneshot::Sender<PeerResponse>) {
        match response {
            PeerResponse::Committed { index } if index > self.locally_applied() => {
                self.apply_waiters.push((index, reply));
            }
            other => {
                let _ = reply.send(other);
            }
        }
    }

    /// On the leader, every `MEMBERSHIP_EVERY`: grow the group from the
    /// gossip view, admitting only members that run the cluster plane (a
    /// node gossiping without `--cluster-ca` advertises no peer address and
    /// would never apply what the group commits).
    pub fn maybe_change_membership(&mut self) {
        if self.last_membership_check.elapsed() < MEMBERSHIP_EVERY || !self.node.is_leader() {
            return;
        }
        self.last_membership_check = Instant::now();
        let live: BTreeSet<u64> = {
            let gossip = self.gossip.lock().unwrap();
            gossip
                .local
                .iter()
                .chain(gossip.members.values())
                .filter(|m| m.state == "alive" && runs_cluster_plane(&m.peer))
                .map(|m| m.node_id)
                .collect()
        };
        if let Some(change) = self.node.next_membership_change(&live, META_VOTERS_TARGET) {
            match self.node.propose(MetaCommand::ChangeMembership(change)) {
                Ok(_) => tracing::info!(?change, "metadata group membership change proposed"),
                Err(MetaError::MembershipChangePending) => {}
                Err(e) => tracing::warn!(?change, error = %e, "membership change refused"),
            }
        }
    }

    /// Drains everything Raft has to say: sends messages, syncs the log,
    /// applies committed commands, answers proposals.
    pub fn pump(&mut self) -> anyhow::Result<()> {
        // A write can wait for `sync` after `poll_ready` has handed out
        // everything: sync, then look again, until neither has work.
        loop {
            while let Some(ready) = self.node.poll_ready()? {
                self.handle_ready(ready);
            }
            if !self.node.needs_sync() {
                break;
            }
            self.node.sync()?;
        }
        let applied = self.locally_applied();
        // Clients that gave up stop being waited for.
        self.apply_waiters.retain(|(_, reply)| !reply.is_closed());
        self.waiting.retain(|_, reply| !reply.is_closed());
        let mut i = 0;
        while i < self.apply_waiters.len() {
            if self.apply_waiters[i].0 <= applied {
                let (index, reply) = self.apply_waiters.swap_remove(i);
                let _ = reply.send(PeerResponse::Committed { index });
            } else {
                i += 1;
            }
        }
        Ok(())
    }

    fn handle_ready(&mut self, ready: MetaReady) {
        let mut by_peer: BTreeMap<u64, Vec<Vec<u8>>> = BTreeMap::new();
        for m in ready.messages {
            by_peer.entry(m.to).or_default().push(m.bytes);
        }
        let me = self.node.id();
        for (to, messages) in by_peer {
            match self.addr_of(to) {
                Some(addr) => {
                    self.peers
                        .send_oneway(to, addr, PeerRequest::MetaRaft { from: me, messages })
                }
                None => tracing::debug!(to, "no address for a metadata peer yet"),
            }
        }
        let changed = !ready.applied.is_empty() || ready.leadership.is_some();
        for applied in &ready.applied {
            self.apply_locally(applied);
        }
        if ready.snapshot_restored.is_some() {
            self.reconcile_all(true);
        }
        if let Some(l) = ready.leadership {
            self.routes.write().unwrap().elections_observed += 1;
            tracing::info!(leader = ?l.leader, term = l.term, role = ?l.role, "metadata leadership");
        }
        for p in ready.proposals {
            let Some(reply) = self.waiting.remove(&p.id) else {
                continue;
            };
            let response = match p.outcome {
                // Answered once the shards have it too (read your writes).
                ProposalOutcome::Applied(Ok(())) => {
                    self.apply_waiters.push((p.id.index, reply));
                    continue;
                }
                ProposalOutcome::Applied(Err(r)) => rejected(&r),
                ProposalOutcome::Dropped | ProposalOutcome::Unknown => {
                    unavailable("the metadata leader changed before the change committed; retry")
                }
            };
            let _ = reply.send(response);
        }
        if changed {
            self.publish_routes();
        }
    }

    fn apply_locally(&mut self, applied: &AppliedCommand) {
        if applied.result.is_err() {
            return;
        }
        match &applied.command {
            MetaCommand::CreateTopic { name, .. }
            | MetaCommand::SetAssignment { topic: name, .. } => {
                if let Some(meta) = self.node.state().topic(name).cloned() {
                    self.submit_topic(name, Some(&meta), applied.index);
                }
            }
            MetaCommand::DeleteTopic { name } => self.submit_topic(name, None, applied.index),
            MetaCommand::CommitGroupOffset { .. } | MetaCommand::ChangeMembership(_) => {}
        }
    }
}

/// Whether a member advertises a peer endpoint (port 0: no cluster plane).
fn runs_cluster_plane(peer: &str) -> bool {
    peer.parse::<SocketAddr>().is_ok_and(|a| a.port() != 0)
}

fn unavailable(message: &str) -> PeerResponse {
    PeerResponse::Rejected {
        kind: RejectKind::Unavailable,
        message: message.to_string(),
    }
}

fn rejected(r: &Rejection) -> PeerResponse {
    let kind = match r {
        Rejection::TopicExists(_) => RejectKind::TopicExists,
        Rejection::UnknownTopic(_) => RejectKind::UnknownTopic,
        _ => RejectKind::Invalid,
    };
    PeerResponse::Rejected {
        kind,
        message: r.to_string(),
    }
}

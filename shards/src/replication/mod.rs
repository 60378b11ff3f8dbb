//! Partition replication on a shard: every replicated partition this shard
//! owns is one Raft group ([`sprawl_cluster::replica`]) whose log is the
//! partition's segment log ([`SegmentReplicaLog`]).
//!
//! One [`Replication`] per shard drives all its groups from one ticker (the
//! way Redpanda does): one tick for every group, one envelope per
//! destination node per poll (heartbeats coalesced), and one flusher task
//! that writes every group's queued entries and makes them durable with one
//! fdatasync per partition per round (group commit). Envelopes leave and
//! arrive through the node's cluster plane ([`ReplicationHooks`]), which
//! carries them over mutually authenticated QUIC to the same shard index on
//! the peer (every node of a cluster runs the same shard count, and the
//! partition-to-shard hash is the same everywhere).
//!
//! Acknowledgements: a produce with `durable` waits for
//! [`ReplicaEvent::Acked`] (committed: on a majority's disks, acks=all);
//! without, for [`ReplicaEvent::LeaderDurable`] (the leader's disk,
//! acks=leader). Readers see a replicated partition up to the commit index
//! only (the high watermark), on the leader and on followers alike.

pub mod segment_log;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::channel::{mpsc, oneshot};
use futures::StreamExt;
use sprawl_cluster::replica::{
    FailReason, GroupId, MembershipChange, PartitionReplica, ProposalId, ReplicaConfig,
    ReplicaError, ReplicaEvent, ReplicaHost, ReplicaLog,
};
use sprawl_storage::log::RaftStamp;

use crate::notify::LocalNotify;
use crate::partition::Partition;
use crate::request::ShardError;
pub use segment_log::{SegmentReplicaLog, WriteOp, WriteQueue};

/// One Raft tick: a follower campaigns after 10–20 ticks without a leader
/// (0.5–1 s), a leader without a majority steps down after 10.
pub const REPLICA_TICK: Duration = Duration::from_millis(50);
/// How long a produce waits for its outcome before answering "unknown".
const PRODUCE_TIMEOUT: Duration = Duration::from_secs(10);
/// A leader whose metadata names another node re-claims it this often.
const CLAIM_INTERVAL: Duration = Duration::from_millis(500);

/// Sends one envelope to shard `shard` of node `to` (best effort: Raft
/// resends what is lost).
pub type SendEnvelope = Arc<dyn Fn(u64, usize, Vec<u8>) + Send + Sync>;
/// Asks the metadata group to record `node` as the leader of
/// (`topic`, `partition`) in Raft term `term`.
pub type ClaimLeadership = Arc<dyn Fn(String, u32, u64) + Send + Sync>;

/// Asks the metadata group to record `replicas` as the replica set of
/// (`topic`, `partition`); resolves once committed and applied here.
pub type SetReplicas = Arc<
    dyn Fn(
            String,
            u32,
            Vec<u64>,
        )
            -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>
        + Send
        + Sync,
>;

/// How a shard's replication reaches other nodes (given by the node).
#[derive(Clone)]
pub struct ReplicationHooks {
    pub send: SendEnvelope,
    pub claim_leadership: ClaimLeadership,
    pub set_replicas: SetReplicas,
}

/// What a finished replica move reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveReport {
    pub replicas: Vec<u64>,
    /// From the start until the new replica had caught up.
    pub caught_up_ms: u64,
    pub duration_ms: u64,
}

/// How long a new replica may take to catch up before a move gives up.
const MOVE_CATCH_UP_TIMEOUT: Duration = Duration::from_secs(120);

impl std::fmt::Debug for ReplicationHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReplicationHooks")
    }
}

/// Envelopes from peers for one shard: `(from node, envelope bytes)`; the
/// sender is the node the peer's certificate names.
pub type InboundEnvelopes = mpsc::UnboundedReceiver<(u64, Vec<u8>)>;

/// The Raft group id of a partition: stable for the topic's lifetime and
/// different for a topic recreated under the same name (`created_ms`).
pub fn group_id(topic: &str, created_ms: i64, partition: u32) -> GroupId {
    // FNV-1a 64: the same on every node and every build.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    eat(topic.as_bytes());
    eat(&[0]);
    eat(&created_ms.to_le_bytes());
    eat(&partition.to_le_bytes());
    GroupId(h)
}

struct Group {
    part: Rc<Partition>,
    queue: Rc<RefCell<WriteQueue>>,
    /// Wakes this group's flusher (writes queued).
    flush: Rc<LocalNotify>,
    /// The leader placement chose: it campaigns as soon as a new group has
    /// no leader, so the first leader is the one the metadata already names
    /// (clients routed by it need no refresh).
    preferred: bool,
    /// Raft index readers may see up to (commit, clamped to what is durable
    /// and final in the local log).
    readable: Cell<u64>,
    last_claim: Cell<Option<Instant>>,
}

struct Waiter {
    /// acks=all: wait for the commit; else for the leader's disk.
    all: bool,
    tx: oneshot::Sender<Result<u64, ShardError>>,
}

/// Replication progress of one group, for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupStatus {
    pub leader: Option<u64>,
    pub term: u64,
    pub commit_index: u64,
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
    /// On the leader: (follower, lag in entries, recently active).
    pub followers: Vec<(u64, u64, bool)>,
}

pub struct Replication {
    node_id: u64,
    shard_id: usize,
    hooks: ReplicationHooks,
    host: RefCell<ReplicaHost<SegmentReplicaLog>>,
    groups: RefCell<HashMap<GroupId, Group>>,
    by_partition: RefCell<HashMap<(String, u32), GroupId>>,
    waiters: RefCell<HashMap<(GroupId, ProposalId), Waiter>>,
    /// Wakes the driver loop (a proposal, an envelope, a finished flush).
    work: LocalNotify,
    /// Itself, for spawning a group's flusher when the group is added.
    me: RefCell<std::rc::Weak<Replication>>,
    pub stats: RefCell<ReplicationStats>,
}

#[derive(Debug, Default, Clone)]
pub struct ReplicationStats {
    pub elections_won: u64,
    pub leader_changes: u64,
    pub proposals: u64,
    pub acked: u64,
    pub failed: u64,
    pub flushes: u64,
}

/// A follower within this many entries of the leader counts as in sync.
pub const IN_SYNC_LAG_ENTRIES_MAX: u64 = 1000;

impl GroupStatus {
    /// On the leader: the voters that are in sync (itself, and followers
    /// heard from recently and within [`IN_SYNC_LAG_ENTRIES_MAX`]).
    pub fn in_sync(&self) -> Vec<u64> {
        let Some(leader) = self.leader else {
            return Vec::new();
        };
        if self.followers.is_empty() && self.voters.len() > 1 {
            return Vec::new(); // not the leader's view
        }
        let mut isr = vec![leader];
        isr.extend(
            self.followers
                .iter()
                .filter(|(node, lag, active)| {
                    *active && *lag <= IN_SYNC_LAG_ENTRIES_MAX && self.voters.contains(node)
                })
                .map(|(node, _, _)| *node),
        );
        isr.sort_unstable();
        isr
    }
}

impl Replication {
    pub fn new(node_id: u64, shard_id: usize, hooks: ReplicationHooks) -> Rc<Self> {
        Rc::new_cyclic(|me| Self {
            node_id,
            shard_id,
            hooks,
            host: RefCell::new(ReplicaHost::new(node_id)),
            groups: RefCell::default(),
            by_partition: RefCell::default(),
            waiters: RefCell::default(),
            work: LocalNotify::default(),
            me: RefCell::new(me.clone()),
            stats: RefCell::default(),
        })
    }

    /// Starts the driver and the inbound envelope pump on the current
    /// executor (each group's flusher starts with the group).
    pub fn spawn(self: &Rc<Self>, mut inbound: InboundEnvelopes) {
        let me = self.clone();
        glommio::spawn_local(async move {
            while let Some((from, bytes)) = inbound.next().await {
                let delivered = me.host.borrow_mut().handle_envelope(from, &bytes);
                if let Err(e) = delivered {
                    tracing::debug!(from, error = %e, "replica envelope refused");
                }
                me.work.notify_all();
            }
        })
        .detach();
        let me = self.clone();
        glommio::spawn_local(async move { me.run_driver().await }).detach();
    }

    /// Hosts the replica of a partition this shard just opened: a new
    /// group's initial replicas bootstrap it identically (voters =
    /// `replicas`); a reopened one continues from its log.
    pub fn add_partition(
        &self,
        part: Rc<Partition>,
        created_ms: i64,
        replicas: &[u32],
        founder: bool,
        preferred: bool,
    ) -> Result<(), ShardError> {
        let group = group_id(&part.topic, created_ms, part.partition);
        let state_path = part.dir.join("raft-state");
        let log = SegmentReplicaLog::open(part.clone(), state_path)
            .map_err(|e| ShardError::Storage(e.to_string()))?;
        let queue = log.queue();
        let seed = self.node_id.rotate_left(17) ^ group.0 ^ crate::shard::now_ms() as u64;
        let config = ReplicaConfig::new(self.node_id, group, seed);
        let voters: Vec<u64> = replicas.iter().map(|&n| u64::from(n)).collect();
        // A founder bootstraps the group (the same snapshot on every
        // founder); a replica added later starts empty and is sent the
        // group's base snapshot, then every entry, by its leader.
        let replica = if founder {
            PartitionReplica::bootstrap(config, log, &voters)
        } else {
            PartitionReplica::open(config, log)
        }
        .map_err(|e| ShardError::Storage(format!("starting the replica of {group}: {e}")))?;
        self.host
            .borrow_mut()
            .add_group(replica)
            .map_err(|e| ShardError::Internal(e.to_string()))?;
        self.by_partition
            .borrow_mut()
            .insert((part.topic.clone(), part.partition), group);
        let flush = Rc::new(LocalNotify::default());
        self.groups.borrow_mut().insert(
            group,
            Group {
                part: part.clone(),
                queue: queue.clone(),
                flush: flush.clone(),
                preferred,
                readable: Cell::new(0),
                last_claim: Cell::new(None),
            },
        );
        if let Some(me) = self.me.borrow().upgrade() {
            glommio::spawn_local(me.run_flusher(group, queue, part, flush)).detach();
        }
        self.work.notify_all();
        Ok(())
    }

    /// Stops hosting a partition's replica (deleted, or handed over).
    pub fn remove_partition(&self, topic: &str, partition: u32) {
        let Some(group) = self
            .by_partition
            .borrow_mut()
            .remove(&(topic.to_string(), partition))
        else {
            return;
        };
        self.host.borrow_mut().remove_group(group);
        if let Some(g) = self.groups.borrow_mut().remove(&group) {
            // Its flusher sees the group gone and ends.
            g.flush.notify_all();
        }
        self.fail_waiters(group, "the partition closed on this node");
    }

    pub fn is_replicated(&self, topic: &str, partition: u32) -> bool {
        self.by_partition
            .borrow()
            .contains_key(&(topic.to_string(), partition))
    }

    fn group_of(&self, topic: &str, partition: u32) -> Option<GroupId> {
        self.by_partition
            .borrow()
            .get(&(topic.to_string(), partition))
            .copied()
    }

    /// The leader this replica knows of.
    pub fn leader_of(&self, topic: &str, partition: u32) -> Option<u64> {
        let group = self.group_of(topic, partition)?;
        self.host.borrow().group(group)?.leader()
    }

    pub fn status(&self, topic: &str, partition: u32) -> Option<GroupStatus> {
        let group = self.group_of(topic, partition)?;
        let host = self.host.borrow();
        let r = host.group(group)?;
        let (voters, learners) = r.members();
        Some(GroupStatus {
            leader: r.leader(),
            term: r.term(),
            commit_index: r.commit_index(),
            voters,
            learners,
            followers: r
                .progress()
                .into_iter()
                .map(|p| (p.node, p.lag, p.recently_active))
                .collect(),
        })
    }

    /// Appends a producer's batch through Raft: answers `(base, next)`
    /// offsets once the batch is committed (`all`) or on the leader's disk.
    pub async fn produce(
        &self,
        topic: &str,
        partition: u32,
        batch: Bytes,
        all: bool,
    ) -> Result<(u64, u64), ShardError> {
        let group = self.group_of(topic, partition).ok_or_else(|| {
            ShardError::NotLeader(format!("{topic}/{partition} has no replica here"))
        })?;
        // A batch enters the Raft log only valid: every replica must be
        // able to append it.
        let incoming = sprawl_storage::batch::validate_incoming(&batch)
            .map_err(|e| ShardError::CorruptBatch(e.to_string()))?;
        if incoming.record_count == 0 {
            // Control batches are Raft's own; a producer's would be stored
            // as data and refused by every replica's log.
            return Err(ShardError::CorruptBatch(
                "a batch without records (control batches are not produced)".into(),
            ));
        }
        let proposed = self.host.borrow_mut().propose(group, batch.to_vec());
        let id = proposed.map_err(|e| match e {
            ReplicaError::NotLeader { .. } => ShardError::NotLeader(e.to_string()),
            ReplicaError::BatchTooLarge { bytes, max } => ShardError::MessageTooLarge {
                bytes,
                bytes_max: max,
            },
            ReplicaError::ProposalsFull { .. } => ShardError::DiskFull(format!(
                "replication of {topic}/{partition} is behind, retry: {e}"
            )),
            other => ShardError::Storage(other.to_string()),
        })?;
        self.stats.borrow_mut().proposals += 1;
        let (tx, rx) = oneshot::channel();
        self.waiters
            .borrow_mut()
            .insert((group, id), Waiter { all, tx });
        self.work.notify_all();
        let outcome = futures_lite::future::or(async { rx.await.ok() }, async {
            glommio::timer::sleep(PRODUCE_TIMEOUT).await;
            None
        })
        .await;
        let Some(outcome) = outcome else {
            self.waiters.borrow_mut().remove(&(group, id));
            return Err(ShardError::NotLeader(format!(
                "{topic}/{partition}: no replication outcome within {} s (it may still commit)",
                PRODUCE_TIMEOUT.as_secs()
            )));
        };
        let index = outcome?;
        let groups = self.groups.borrow();
        let g = groups
            .get(&group)
            .ok_or_else(|| ShardError::NotLeader("the partition closed".into()))?;
        let log = &g.part.log;
        let loc = log.raft_entry(index).ok_or_else(|| {
            ShardError::Internal(format!("acked entry {index} is not in the log"))
        })?;
        let next = log.raft_next_offset(index).unwrap_or(loc.base_offset);
        Ok((loc.base_offset, next))
    }

    /// Moves this partition's replica on node `from` to node `to`, live:
    /// the metadata adds `to` to the replica set (it opens an empty
    /// replica), the group adds it as a learner, waits until it caught up,
    /// promotes it, removes `from`, and the metadata drops `from` (which
    /// closes its copy). Runs on the partition's leader; `from` must not be
    /// the leader (move leadership first).
    pub async fn move_replica(
        &self,
        topic: &str,
        partition: u32,
        from: u64,
        to: u64,
    ) -> Result<MoveReport, ShardError> {
        let started = Instant::now();
        let group = self.group_of(topic, partition).ok_or_else(|| {
            ShardError::NotLeader(format!("{topic}/{partition} has no replica here"))
        })?;
        let invalid = |m: String| Err(ShardError::InvalidRequest(m));
        let (voters, learners) = {
            let host = self.host.borrow();
            let r = host
                .group(group)
                .ok_or_else(|| ShardError::NotLeader("the partition closed".into()))?;
            if !r.is_leader() {
                return Err(ShardError::NotLeader(format!(
                    "node {} does not lead {topic}/{partition} (leader: {:?})",
                    self.node_id,
                    r.leader()
                )));
            }
            r.members()
        };
        if from == self.node_id {
            // The leader's own replica: hand leadership to the most
            // caught-up other voter first; the move is then retried there.
            let successor = {
                let host = self.host.borrow();
                host.group(group).and_then(|r| {
                    r.progress()
                        .into_iter()
                        .filter(|p| !p.learner && p.recently_active && voters.contains(&p.node))
                        .min_by_key(|p| p.lag)
                        .map(|p| p.node)
                })
            };
            let Some(successor) = successor else {
                return Err(ShardError::NotLeader(format!(
                    "node {from} leads {topic}/{partition} and no other voter is in sync to take over"
                )));
            };
            if let Some(r) = self.host.borrow_mut().group_mut(group) {
                r.transfer_leadership(successor);
            }
            self.work.notify_all();
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline
                && self
                    .host
                    .borrow()
                    .group(group)
                    .is_some_and(|r| r.is_leader())
            {
                glommio::timer::sleep(Duration::from_millis(20)).await;
            }
            return Err(ShardError::NotLeader(format!(
                "node {from} led {topic}/{partition}; leadership handed to node {successor} \
                 to move this replica: retry there"
            )));
        }
        if !voters.contains(&from) {
            return invalid(format!("node {from} is not a voter of {topic}/{partition}"));
        }
        if voters.contains(&to) {
            return invalid(format!("node {to} already keeps {topic}/{partition}"));
        }
        let mut with_target = voters.clone();
        with_target.push(to);
        with_target.sort_unstable();
        (self.hooks.set_replicas)(topic.to_string(), partition, with_target.clone())
            .await
            .map_err(ShardError::NotLeader)?;
        if !learners.contains(&to) {
            self.change_membership(group, MembershipChange::AddLearner(to))
                .await?;
        }
        let deadline = Instant::now() + MOVE_CATCH_UP_TIMEOUT;
        loop {
            let caught_up = self
                .host
                .borrow()
                .group(group)
                .is_some_and(|r| r.learner_caught_up(to));
            if caught_up {
                break;
            }
            if Instant::now() >= deadline {
                return Err(ShardError::PartitionMoving(format!(
                    "node {to} did not catch up with {topic}/{partition} within {} s; it stays a learner",
                    MOVE_CATCH_UP_TIMEOUT.as_secs()
                )));
            }
            glommio::timer::sleep(Duration::from_millis(50)).await;
        }
        let caught_up_ms = started.elapsed().as_millis() as u64;
        self.change_membership(group, MembershipChange::Promote(to))
            .await?;
        self.change_membership(group, MembershipChange::Remove(from))
            .await?;
        let mut after: Vec<u64> = with_target.into_iter().filter(|&n| n != from).collect();
        after.sort_unstable();
        (self.hooks.set_replicas)(topic.to_string(), partition, after.clone())
            .await
            .map_err(ShardError::NotLeader)?;
        Ok(MoveReport {
            replicas: after,
            caught_up_ms,
            duration_ms: started.elapsed().as_millis() as u64,
        })
    }

    /// Proposes one membership change and waits until it is committed.
    async fn change_membership(
        &self,
        group: GroupId,
        change: MembershipChange,
    ) -> Result<(), ShardError> {
        let deadline = Instant::now() + PRODUCE_TIMEOUT;
        let id = loop {
            let proposed = self
                .host
                .borrow_mut()
                .propose_membership_change(group, change);
            match proposed {
                Ok(id) => break id,
                // The previous change is still being applied.
                Err(ReplicaError::MembershipChangePending) if Instant::now() < deadline => {
                    self.work.notify_all();
                    glommio::timer::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => return Err(ShardError::NotLeader(format!("{change:?}: {e}"))),
            }
        };
        let (tx, rx) = oneshot::channel();
        self.waiters
            .borrow_mut()
            .insert((group, id), Waiter { all: true, tx });
        self.work.notify_all();
        let outcome = futures_lite::future::or(async { rx.await.ok() }, async {
            glommio::timer::sleep(PRODUCE_TIMEOUT).await;
            None
        })
        .await;
        match outcome {
            Some(Ok(_)) => Ok(()),
            Some(Err(e)) => Err(e),
            None => {
                self.waiters.borrow_mut().remove(&(group, id));
                Err(ShardError::NotLeader(format!(
                    "{change:?} not committed within {} s",
                    PRODUCE_TIMEOUT.as_secs()
                )))
            }
        }
    }

    fn fail_waiters(&self, group: GroupId, why: &str) {
        let keys: Vec<_> = self
            .waiters
            .borrow()
            .keys()
            .filter(|(g, _)| *g == group)
            .copied()
            .collect();
        for key in keys {
            if let Some(w) = self.waiters.borrow_mut().remove(&key) {
                let _ = w.tx.send(Err(ShardError::NotLeader(why.to_string())));
            }
        }
    }

    async fn run_driver(self: Rc<Self>) {
        let mut next_tick = Instant::now() + REPLICA_TICK;
        loop {
            let work = self.work.notified();
            self.pump();
            let now = Instant::now();
            if now >= next_tick {
                self.host.borrow_mut().tick();
                next_tick = now + REPLICA_TICK;
                self.campaign_where_preferred();
                self.claim_leaderships();
                continue;
            }
            futures_lite::future::or(work, async {
                glommio::timer::sleep(next_tick - now).await;
            })
            .await;
        }
    }

    /// Sends what the groups produced, resolves waiters, moves the readable
    /// marks, and wakes the flusher for queued writes.
    fn pump(&self) {
        let outbound = self.host.borrow_mut().poll_output();
        for o in outbound {
            (self.hooks.send)(o.to, self.shard_id, o.bytes);
        }
        let events = self.host.borrow_mut().take_events();
        for event in events {
            self.on_event(event);
        }
        let host = self.host.borrow();
        for (group, g) in self.groups.borrow().iter() {
            let q = g.queue.borrow();
            if !q.is_empty() && q.failed().is_none() {
                g.flush.notify_all();
            }
            drop(q);
            let Some(r) = host.group(*group) else {
                continue;
            };
            let readable = r.commit_index().min(r.log().synced_index());
            if readable > g.readable.get() {
                g.readable.set(readable);
                let offset = g.part.log.raft_next_offset(readable).unwrap_or(0);
                g.part.set_readable_offset(offset);
            }
        }
        drop(host);
    }

    fn on_event(&self, event: ReplicaEvent) {
        match event {
            ReplicaEvent::Acked {
                group,
                proposal,
                index,
                ..
            } => {
                if let Some(w) = self.waiters.borrow_mut().remove(&(group, proposal)) {
                    self.stats.borrow_mut().acked += 1;
                    let _ = w.tx.send(Ok(index));
                }
            }
            ReplicaEvent::LeaderDurable {
                group,
                proposal,
                index,
                ..
            } => {
                let mut waiters = self.waiters.borrow_mut();
                if waiters.get(&(group, proposal)).is_some_and(|w| !w.all) {
                    let w = waiters.remove(&(group, proposal)).expect("checked");
                    self.stats.borrow_mut().acked += 1;
                    let _ = w.tx.send(Ok(index));
                }
            }
            ReplicaEvent::Failed {
                group,
                proposal,
                reason,
                ..
            } => {
                if let Some(w) = self.waiters.borrow_mut().remove(&(group, proposal)) {
                    self.stats.borrow_mut().failed += 1;
                    let why = match reason {
                        FailReason::Dropped => "superseded by a new leader (not written), retry",
                        FailReason::LeadershipLost | FailReason::SkippedBySnapshot => {
                            "leadership lost before the batch committed (it may still commit)"
                        }
                    };
                    let _ = w.tx.send(Err(ShardError::NotLeader(why.into())));
                }
            }
            ReplicaEvent::LeaderChanged {
                group,
                leader,
                term,
                role,
            } => {
                let mut stats = self.stats.borrow_mut();
                stats.leader_changes += 1;
                if leader == Some(self.node_id) {
                    stats.elections_won += 1;
                }
                if let Some(g) = self.groups.borrow().get(&group) {
                    tracing::info!(topic = %g.part.topic, partition = g.part.partition, ?leader, term, ?role, "partition leadership");
                    g.last_claim.set(None);
                }
            }
            ReplicaEvent::Stopped { group, reason } => {
                if let Some(g) = self.groups.borrow().get(&group) {
                    tracing::error!(topic = %g.part.topic, partition = g.part.partition, %reason,
                        "partition replica stopped after a log error; restart the node to recover it");
                }
                self.fail_waiters(group, "the partition replica stopped after a log error");
            }
            ReplicaEvent::Committed { .. }
            | ReplicaEvent::SnapshotInstalled { .. }
            | ReplicaEvent::MembershipChanged { .. } => {}
        }
    }

    /// A new group (still in its first terms) without a leader: its
    /// preferred leader campaigns at once instead of waiting out a random
    /// election timeout, so it wins before the others time out. (Pre-vote:
    /// a campaign the others refuse, e.g. because they have not opened the
    /// group yet, changes no term; it is repeated next tick.)
    fn campaign_where_preferred(&self) {
        let groups = self.groups.borrow();
        let mut host = self.host.borrow_mut();
        let mut campaigned = false;
        for (group, _) in groups.iter().filter(|(_, g)| g.preferred) {
            let Some(r) = host.group_mut(*group) else {
                continue;
            };
            if r.leader().is_none() && r.term() <= 2 && !r.is_stopped() {
                campaigned |= r.campaign().is_ok();
            }
        }
        if campaigned {
            self.work.notify_all();
        }
    }

    /// Leaders make sure the metadata names them, so every node routes
    /// there; re-claimed until it does.
    fn claim_leaderships(&self) {
        let host = self.host.borrow();
        for (group, g) in self.groups.borrow().iter() {
            let Some(r) = host.group(*group) else {
                continue;
            };
            if !r.is_leader() {
                continue;
            }
            let due = g
                .last_claim
                .get()
                .is_none_or(|at| at.elapsed() >= CLAIM_INTERVAL);
            if due && g.part.metadata_leader.get() != Some(self.node_id) {
                g.last_claim.set(Some(Instant::now()));
                (self.hooks.claim_leadership)(g.part.topic.clone(), g.part.partition, r.term());
            }
        }
    }

    /// One group's flusher: applies its queued writes in order, fdatasyncs
    /// its log once per round (group commit: a round takes everything that
    /// queued during the previous one) and reports what is durable, each
    /// partition on its own so a slow fdatasync delays only its group.
    /// Ends when the group is removed.
    async fn run_flusher(
        self: Rc<Self>,
        group: GroupId,
        queue: Rc<RefCell<WriteQueue>>,
        part: Rc<Partition>,
        wake: Rc<LocalNotify>,
    ) {
        loop {
            let woken = wake.notified();
            let hosted = self
                .groups
                .borrow()
                .get(&group)
                .is_some_and(|g| Rc::ptr_eq(&g.queue, &queue));
            if !hosted {
                return;
            }
            let ready = {
                // A failed queue keeps its failed write at the front:
                // retrying it would spin; the group acknowledges nothing
                // more (its next call reports the failure).
                let q = queue.borrow();
                !q.is_empty() && q.failed().is_none()
            };
            if !ready {
                woken.await;
                continue;
            }
            if !flush_queue(&queue, &part).await {
                continue;
            }
            self.stats.borrow_mut().flushes += 1;
            let synced = match self.host.borrow().group(group) {
                Some(r) => r.log().synced_index(),
                None => return,
            };
            queue.borrow_mut().trim_synced(synced);
            if let Err(e) = self.host.borrow_mut().on_persisted(group, synced) {
                tracing::warn!(topic = %part.topic, partition = part.partition, error = %e, "replica persistence report refused");
            }
            self.work.notify_all();
        }
    }
}

/// Applies a partition's queued writes in order, then fdatasyncs its log.
/// `false` when a write failed (the queue is marked failed and the group
/// stops at its next call).
async fn flush_queue(queue: &Rc<RefCell<WriteQueue>>, part: &Partition) -> bool {
    loop {
        let op = queue.borrow().front();
        let result = match op {
            None => break,
            Some(WriteOp::Truncate(from)) => part.log.truncate_raft_suffix(from).await,
            Some(WriteOp::Append(entry)) => {
                let (batch, control) = segment_log::stored_batch(&entry);
                let stamp = RaftStamp {
                    term: entry.term,
                    index: entry.index,
                };
                part.log
                    .append_raft_queued(batch, stamp, control)
                    .await
                    .map(|_| ())
            }
        };
        if let Err(e) = result {
            tracing::error!(topic = %part.topic, partition = part.partition, error = %e, "replicated write failed");
            queue.borrow_mut().fail(e.to_string());
            return false;
        }
        queue.borrow_mut().pop_done();
    }
    if let Err(e) = part.log.sync().await {
        tracing::error!(topic = %part.topic, partition = part.partition, error = %e, "replicated fdatasync failed");
        queue.borrow_mut().fail(e.to_string());
        return false;
    }
    true
}

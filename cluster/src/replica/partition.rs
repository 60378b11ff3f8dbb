//! [`PartitionReplica`]: the sans-IO driver of one replica of one
//! partition's Raft group, over raft-rs's `RawNode`, with the partition's
//! [`ReplicaLog`] as the Raft log.
//!
//! The caller (normally [`ReplicaHost`](super::ReplicaHost)) feeds it
//! messages ([`PartitionReplica::step`]), ticks and proposals, and drains
//! [`PartitionReplica::poll`]: Raft messages to send and [`ReplicaEvent`]s.
//! Appends reach the log as raft-rs produces them but count only once the
//! log says they are durable ([`PartitionReplica::sync`], or
//! [`PartitionReplica::on_persisted`] when the log flushed by itself, as a
//! segment log's group commit does): until then every message that vouches
//! for them (an append acknowledgement, a vote) is held back, and the
//! leader's own copy does not count towards a commit. That is raft-rs's
//! asynchronous ready (`advance_append_async` + `on_persist_ready`).
//!
//! Replica ids are node ids: a node holds at most one replica of a group.

use crate::rng::SplitMix64;
use std::collections::{BTreeMap, VecDeque};

use protobuf::Message as _;
use raft::eraftpb::{
    ConfChange, ConfChangeSingle, ConfChangeType, ConfChangeV2, ConfState, Entry, EntryType,
    Message, MessageType, Snapshot, SnapshotMetadata,
};
use raft::{GetEntriesContext, RaftState, RawNode, SnapshotStatus, StateRole, StorageError};

use super::log::{LogSnapshot, ReplicaLog, ReplicaLogError};
use super::raft_tracing::raft_logger;
use super::GroupId;
use crate::meta::MembershipChange;

/// Log index of the bootstrap snapshot every initial voter starts from
/// (an empty partition and the voter set). Entries start at 2.
pub const BOOTSTRAP_INDEX: u64 = 1;
const BOOTSTRAP_TERM: u64 = 1;

#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    pub node_id: u64,
    pub group: GroupId,
    /// A follower campaigns after a random `election_ticks..2*election_ticks`
    /// without a leader; a leader steps down after `election_ticks` without
    /// hearing from a majority (check-quorum).
    pub election_ticks: usize,
    /// Leaders heartbeat every `heartbeat_ticks`: ~1/10 of the election
    /// timeout, so a few lost heartbeats never cause an election.
    pub heartbeat_ticks: usize,
    /// Bound of one batch (one entry).
    pub batch_bytes_max: usize,
    /// Bound of the entries in one append message.
    pub append_bytes_max: u64,
    pub inflight_appends_max: usize,
    /// Bound of proposed-but-uncommitted bytes on the leader.
    pub uncommitted_bytes_max: u64,
    pub proposals_pending_max: usize,
    /// A learner whose matched index is within this many entries of the
    /// leader's last index counts as caught up (ready to be promoted).
    pub learner_lag_entries_max: u64,
    /// After losing leadership, proposals neither committed nor overwritten
    /// within this many ticks fail as [`FailReason::LeadershipLost`].
    pub orphan_timeout_ticks: u64,
    /// Seed of the election jitter (raft-rs draws it from a thread-local
    /// RNG; every draw is overridden from this seed, so a simulation
    /// replays exactly). Use a different seed per node and group.
    pub rng_seed: u64,
}

impl ReplicaConfig {
    pub fn new(node_id: u64, group: GroupId, rng_seed: u64) -> Self {
        Self {
            node_id,
            group,
            election_ticks: 10,
            heartbeat_ticks: 1,
            batch_bytes_max: 8 << 20,
            append_bytes_max: 1 << 20,
            inflight_appends_max: 64,
            uncommitted_bytes_max: 64 << 20,
            proposals_pending_max: 4096,
            learner_lag_entries_max: 64,
            orphan_timeout_ticks: 20,
            rng_seed,
        }
    }

    fn raft_config(&self, applied: u64) -> raft::Config {
        raft::Config {
            id: self.node_id,
            election_tick: self.election_ticks,
            heartbeat_tick: self.heartbeat_ticks,
            applied,
            max_size_per_msg: self.append_bytes_max,
            max_inflight_msgs: self.inflight_appends_max,
            max_uncommitted_size: self.uncommitted_bytes_max,
            check_quorum: true,
            pre_vote: true,
            ..raft::Config::default()
        }
    }
}

/// A proposal's handle, unique within one [`PartitionReplica`] instance
/// (a reopened replica starts again at 1; its earlier proposals were
/// failed or lost with the process).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProposalId(pub u64);

impl std::fmt::Display for ProposalId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "p{}", self.0)
    }
}

/// Why a proposal failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailReason {
    /// Definitely not committed: another leader's entry is committed at its
    /// index. Safe to retry.
    Dropped,
    /// Outcome unknown: this replica lost leadership and the entry was
    /// neither committed nor overwritten within the orphan timeout. It may
    /// still commit under the next leader (retrying may duplicate it, as
    /// with any at-least-once producer).
    LeadershipLost,
    /// Outcome unknown: a snapshot jumped this replica past the index.
    SkippedBySnapshot,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicaEvent {
    /// The leader this replica knows of, or its own role, changed.
    LeaderChanged {
        group: GroupId,
        leader: Option<u64>,
        term: u64,
        role: StateRole,
    },
    /// The commit index (high watermark) advanced: readers may see up to it.
    Committed { group: GroupId, up_to: u64 },
    /// acks=leader: the entry is on the leader's own disk (not committed:
    /// it is lost if this leader dies before replicating it).
    LeaderDurable {
        group: GroupId,
        proposal: ProposalId,
        index: u64,
        term: u64,
    },
    /// acks=all: committed, i.e. on the disks of a majority of the voters.
    Acked {
        group: GroupId,
        proposal: ProposalId,
        index: u64,
        term: u64,
    },
    Failed {
        group: GroupId,
        proposal: ProposalId,
        index: u64,
        term: u64,
        reason: FailReason,
    },
    /// A leader's snapshot replaced this replica's log: it now starts after
    /// `index`. The partition data up to `index` must be fetched out of
    /// band (the payload says from where) before serving reads below it.
    SnapshotInstalled { group: GroupId, index: u64 },
    /// A membership change was applied at `index`.
    MembershipChanged {
        group: GroupId,
        index: u64,
        voters: Vec<u64>,
        learners: Vec<u64>,
    },
    /// The replica stopped after a log error; reopen it from its log.
    /// (Reported by the [`ReplicaHost`](super::ReplicaHost), which sees the
    /// error.)
    Stopped { group: GroupId, reason: String },
}

/// What one [`PartitionReplica::poll`] produced.
#[derive(Debug, Default)]
pub struct ReplicaOutput {
    /// Raft messages, addressed by node id (`to`).
    pub messages: Vec<Message>,
    pub events: Vec<ReplicaEvent>,
}

/// Replication progress of one peer, as the leader sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerProgress {
    pub node: u64,
    pub learner: bool,
    /// Highest index known to be on the peer's disk.
    pub matched: u64,
    pub next: u64,
    /// Entries behind the leader's last index.
    pub lag: u64,
    /// Heard from within the current election timeout.
    pub recently_active: bool,
    /// `Probe`, `Replicate` or `Snapshot` (raft-rs's progress state).
    pub state: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error("node {node} does not lead group {group} (leader {leader:?}, term {term})")]
    NotLeader {
        group: GroupId,
        node: u64,
        leader: Option<u64>,
        term: u64,
    },
    #[error("group {0}: unknown on this node")]
    UnknownGroup(GroupId),
    #[error("group {0} is already hosted on this node")]
    GroupExists(GroupId),
    #[error("{pending} proposals are pending; the bound is {max}")]
    ProposalsFull { pending: usize, max: usize },
    #[error("batch of {bytes} bytes exceeds the bound of {max}")]
    BatchTooLarge { bytes: usize, max: usize },
    #[error("empty batch (empty entries are Raft's own no-ops)")]
    EmptyBatch,
    #[error("a membership change is already in flight")]
    MembershipChangePending,
    #[error("invalid membership change {change:?}: {reason}")]
    InvalidMembershipChange {
        change: MembershipChange,
        reason: &'static str,
    },
    #[error("raft dropped the proposal (leadership transfer or uncommitted bytes bound)")]
    ProposalDropped,
    #[error("message for node {to} from {from} reached node {node}")]
    Misaddressed { to: u64, from: u64, node: u64 },
    #[error("invalid peer message: {0}")]
    InvalidMessage(String),
    #[error("persisted index {index} is above the log's synced index {synced}")]
    NotDurable { index: u64, synced: u64 },
    #[error("committed configuration change {index} does not decode: {reason}")]
    UndecodableConfChange { index: u64, reason: String },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Log(#[from] ReplicaLogError),
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    #[error("group {group} on node {node} stopped after an earlier error ({reason}); reopen it")]
    Poisoned {
        group: GroupId,
        node: u64,
        reason: String,
    },
}

// ------------------------------------------------------- raft-rs storage

/// The [`ReplicaLog`] behind raft-rs's `Storage`, plus what a snapshot
/// needs: the applied index and the membership as of it.
pub(crate) struct LogStore<L> {
    log: L,
    applied: u64,
    conf: ConfState,
}

fn storage_error(e: ReplicaLogError) -> raft::Error {
    raft::Error::Store(match e {
        ReplicaLogError::Compacted { .. } => StorageError::Compacted,
        ReplicaLogError::Unavailable { .. } => StorageError::Unavailable,
        other => StorageError::Other(Box::new(other)),
    })
}

impl<L: ReplicaLog> raft::Storage for LogStore<L> {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(self.log.hard_state(), self.conf.clone()))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        self.log
            .entries(low, high, max_size.into())
            .map_err(storage_error)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        self.log.term(idx).map_err(storage_error)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.log.first_index())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.log.last_index())
    }

    /// A snapshot at the applied index: "the log starts after `applied`",
    /// the membership as of it, and the log's payload (how to fetch the
    /// data). Only sent to followers whose next entry is compacted away.
    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        if let Some(base) = self.log.base_snapshot(to) {
            if base.index >= request_index {
                let payload = super::log::encode_payload(&[]);
                return Ok(snapshot_of(base.index, base.term, base.conf_state, payload));
            }
        }
        let index = self.applied.max(self.log.start().0);
        if index < request_index {
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        let term = self.log.term(index).map_err(storage_error)?;
        let payload = self.log.snapshot_payload(index).map_err(storage_error)?;
        Ok(snapshot_of(index, term, self.conf.clone(), payload))
    }
}

fn snapshot_of(index: u64, term: u64, conf: ConfState, data: Vec<u8>) -> Snapshot {
    let mut meta = SnapshotMetadata {
        index,
        term,
        ..SnapshotMetadata::default()
    };
    meta.set_conf_state(conf);
    let mut snap = Snapshot {
        data: data.into(),
        ..Snapshot::default()
    };
    snap.set_metadata(meta);
    snap
}

// ----------------------------------------------------------------- driver

#[derive(Debug, Clone, Copy)]
struct Pending {
    id: ProposalId,
    conf_change: bool,
    durable_reported: bool,
}

/// A Ready whose writes are not yet known durable.
struct Unsynced {
    number: u64,
    /// The log must be synced up to here (the last entry this Ready wrote,
    /// or the previous Ready's need when it wrote none).
    needed: u64,
    /// Messages that vouch for the writes (votes, append responses).
    messages: Vec<Message>,
}

pub struct PartitionReplica<L: ReplicaLog> {
    raw: RawNode<LogStore<L>>,
    config: ReplicaConfig,
    /// This replica's proposals not yet resolved, by (index, term) of the
    /// entry: an old leadership's proposal and a new one may share an index
    /// (the old entry was cut from this log but may live on elsewhere).
    pending: BTreeMap<(u64, u64), Pending>,
    next_proposal: u64,
    unsynced: VecDeque<Unsynced>,
    outbox: Vec<Message>,
    events: Vec<ReplicaEvent>,
    reported_leader: (u64, StateRole, u64),
    reported_commit: u64,
    ticks: u64,
    /// Tick at which this replica last stopped being leader.
    lost_leadership_at: Option<u64>,
    jitter_seen: (u64, StateRole),
    jitter: SplitMix64,
    poisoned: Option<String>,
}

impl<L: ReplicaLog> PartitionReplica<L> {
    /// Start an initial voter of a new group. On an empty log, writes the
    /// bootstrap snapshot (identical on every initial voter: the same
    /// `voters`); on a log that already holds the group, this is
    /// [`PartitionReplica::open`].
    pub fn bootstrap(
        config: ReplicaConfig,
        mut log: L,
        voters: &[u64],
    ) -> Result<Self, ReplicaError> {
        let mut voters = voters.to_vec();
        voters.sort_unstable();
        voters.dedup();
        if voters.is_empty() || voters.contains(&0) {
            return Err(ReplicaError::Config(format!(
                "bootstrap voters {voters:?}: need at least one, and 0 is reserved"
            )));
        }
        if log.last_index() == 0 && log.conf_state().0.voters.is_empty() {
            let snap = LogSnapshot {
                index: BOOTSTRAP_INDEX,
                term: BOOTSTRAP_TERM,
                conf_state: ConfState {
                    voters,
                    ..ConfState::default()
                },
            };
            log.install_snapshot(&snap, &super::log::encode_payload(&[]))?;
        }
        Self::open(config, log)
    }

    /// Start from whatever `log` holds: a restart, or (an empty log) a
    /// replica created on a new node, which waits to be added as a learner
    /// and sent a snapshot.
    pub fn open(config: ReplicaConfig, log: L) -> Result<Self, ReplicaError> {
        if config.node_id == 0 {
            return Err(ReplicaError::Config("node id 0 is reserved".into()));
        }
        if config.election_ticks <= config.heartbeat_ticks || config.heartbeat_ticks == 0 {
            return Err(ReplicaError::Config(format!(
                "election_ticks {} must exceed heartbeat_ticks {} > 0",
                config.election_ticks, config.heartbeat_ticks
            )));
        }
        let (conf, conf_index) = log.conf_state();
        // Normal entries need no applying (the log is the state), so the
        // applied index restarts at the last applied membership change:
        // later committed entries are delivered again and any membership
        // change among them is applied then.
        let applied = conf_index.max(log.start().0);
        // raft-rs panics on a log that breaks these; refuse it instead.
        let commit = log.hard_state().commit;
        if commit < applied || commit > log.last_index() {
            return Err(ReplicaError::Config(format!(
                "log of {} inconsistent: commit {commit} outside [{applied}, {}]",
                config.group,
                log.last_index()
            )));
        }
        let store = LogStore { log, applied, conf };
        let logger = raft_logger(config.node_id, config.group);
        let raw = RawNode::new(&config.raft_config(applied), store, &logger)?;
        let reported_commit = raw.raft.raft_log.committed;
        let mut replica = Self {
            raw,
            pending: BTreeMap::new(),
            next_proposal: 1,
            unsynced: VecDeque::new(),
            outbox: Vec::new(),
            events: Vec::new(),
            reported_leader: (0, StateRole::Follower, 0),
            reported_commit,
            ticks: 0,
            lost_leadership_at: None,
            jitter_seen: (u64::MAX, StateRole::Follower),
            jitter: SplitMix64(
                config.rng_seed ^ config.node_id.rotate_left(32) ^ config.group.0.rotate_left(48),
            ),
            poisoned: None,
            config,
        };
        replica.after_raft_call();
        Ok(replica)
    }

    pub fn id(&self) -> u64 {
        self.config.node_id
    }

    pub fn group(&self) -> GroupId {
        self.config.group
    }

    pub fn config(&self) -> &ReplicaConfig {
        &self.config
    }

    pub fn log(&self) -> &L {
        &self.raw.store().log
    }

    pub fn leader(&self) -> Option<u64> {
        nonzero(self.raw.raft.leader_id)
    }

    pub fn term(&self) -> u64 {
        self.raw.raft.term
    }

    pub fn role(&self) -> StateRole {
        self.raw.raft.state
    }

    pub fn is_leader(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
    }

    /// The commit index: the partition's high watermark.
    pub fn commit_index(&self) -> u64 {
        self.raw.raft.raft_log.committed
    }

    /// Readers (consumers, follower fetches) may see entries up to here and
    /// never past it: everything at or below is committed, so no leader
    /// change can take it back. A follower's commit index trails the
    /// leader's by at most a heartbeat.
    pub fn readable_up_to(&self) -> u64 {
        self.commit_index()
    }

    pub fn last_index(&self) -> u64 {
        self.raw.raft.raft_log.last_index()
    }

    pub fn applied_index(&self) -> u64 {
        self.raw.store().applied
    }

    pub fn pending_proposals(&self) -> usize {
        self.pending.len()
    }

    pub fn is_stopped(&self) -> bool {
        self.poisoned.is_some()
    }

    /// The membership: `(voters, learners)`, sorted.
    pub fn members(&self) -> (Vec<u64>, Vec<u64>) {
        let mut conf = self.raw.raft.prs().conf().to_conf_state();
        conf.voters.sort_unstable();
        conf.learners.sort_unstable();
        (conf.voters, conf.learners)
    }

    /// acks=leader: whether this replica's own log holds the entry
    /// `(index, term)` durably.
    pub fn leader_durable(&self, index: u64, term: u64) -> bool {
        let log = self.log();
        index <= log.synced_index() && log.term(index).is_ok_and(|t| t == term)
    }

    /// Writes are waiting for a sync (call [`PartitionReplica::sync`], or
    /// [`PartitionReplica::on_persisted`] after the log flushed itself).
    pub fn needs_sync(&self) -> bool {
        !self.unsynced.is_empty() || self.log().synced_index() < self.log().last_index()
    }

    /// On the leader: every other member's replication progress (the
    /// operator's lag view). Empty elsewhere.
    pub fn progress(&self) -> Vec<PeerProgress> {
        if !self.is_leader() {
            return Vec::new();
        }
        let last = self.last_index();
        let prs = self.raw.raft.prs();
        let learners = self.members().1;
        let mut out: Vec<PeerProgress> = prs
            .iter()
            .filter(|(&id, _)| id != self.id())
            .map(|(&id, p)| PeerProgress {
                node: id,
                learner: learners.contains(&id),
                matched: p.matched,
                next: p.next_idx,
                lag: last.saturating_sub(p.matched),
                recently_active: p.recent_active,
                state: format!("{:?}", p.state),
            })
            .collect();
        out.sort_by_key(|p| p.node);
        out
    }

    /// On the leader: whether learner `node` is within
    /// `learner_lag_entries_max` of the leader's last index (time to
    /// promote it).
    pub fn learner_caught_up(&self, node: u64) -> bool {
        self.is_leader()
            && self.members().1.contains(&node)
            && self.raw.raft.prs().get(node).is_some_and(|p| {
                p.matched + self.config.learner_lag_entries_max >= self.last_index()
            })
    }

    /// Propose one batch. Only the leader accepts; elsewhere the error
    /// names the leader to retry at. The outcome comes later as an
    /// [`ReplicaEvent::Acked`] or [`ReplicaEvent::Failed`] for the returned
    /// id (and, first, [`ReplicaEvent::LeaderDurable`]).
    pub fn propose(&mut self, batch: Vec<u8>) -> Result<ProposalId, ReplicaError> {
        self.check_proposal()?;
        if batch.is_empty() {
            return Err(ReplicaError::EmptyBatch);
        }
        if batch.len() > self.config.batch_bytes_max {
            return Err(ReplicaError::BatchTooLarge {
                bytes: batch.len(),
                max: self.config.batch_bytes_max,
            });
        }
        let result = self.raw.propose(Vec::new(), batch);
        self.after_proposal(result, false)
    }

    /// Propose one membership change (raft-rs ConfChangeV2 with a single
    /// change, so no joint consensus). A live move is: `AddLearner(new)`,
    /// wait for [`PartitionReplica::learner_caught_up`], `Promote(new)`,
    /// then `Remove(old)`. A leader cannot remove itself: transfer
    /// leadership first ([`PartitionReplica::transfer_leadership`]).
    pub fn propose_membership_change(
        &mut self,
        change: MembershipChange,
    ) -> Result<ProposalId, ReplicaError> {
        self.check_proposal()?;
        // raft-rs would silently turn a second concurrent change into an
        // empty entry; refuse it here instead.
        if self.raw.raft.has_pending_conf() {
            return Err(ReplicaError::MembershipChangePending);
        }
        let (voters, learners) = self.members();
        let invalid = |reason| ReplicaError::InvalidMembershipChange { change, reason };
        let (change_type, node) = match change {
            MembershipChange::AddLearner(n) => {
                if voters.contains(&n) || learners.contains(&n) {
                    return Err(invalid("already a member"));
                }
                (ConfChangeType::AddLearnerNode, n)
            }
            MembershipChange::Promote(n) => {
                if !learners.contains(&n) {
                    return Err(invalid("not a learner"));
                }
                (ConfChangeType::AddNode, n)
            }
            MembershipChange::Remove(n) => {
                if n == self.id() {
                    return Err(invalid("the leader cannot remove itself"));
                }
                if !voters.contains(&n) && !learners.contains(&n) {
                    return Err(invalid("not a member"));
                }
                (ConfChangeType::RemoveNode, n)
            }
        };
        if node == 0 {
            return Err(invalid("node id 0 is reserved"));
        }
        let mut cc = ConfChangeV2::default();
        cc.mut_changes().push(ConfChangeSingle {
            change_type,
            node_id: node,
            ..ConfChangeSingle::default()
        });
        let result = self.raw.propose_conf_change(Vec::new(), cc);
        self.after_proposal(result, true)
    }

    /// Ask raft-rs to hand leadership to `node` (a caught-up voter).
    pub fn transfer_leadership(&mut self, node: u64) {
        if self.poisoned.is_none() && self.is_leader() {
            self.raw.transfer_leader(node);
            self.after_raft_call();
        }
    }

    /// Start an election now (tests; an operator's preferred-leader move).
    pub fn campaign(&mut self) -> Result<(), ReplicaError> {
        self.ensure_healthy()?;
        let result = self.raw.campaign();
        self.after_raft_call();
        Ok(result?)
    }

    fn check_proposal(&self) -> Result<(), ReplicaError> {
        self.ensure_healthy()?;
        if !self.is_leader() {
            return Err(ReplicaError::NotLeader {
                group: self.group(),
                node: self.id(),
                leader: self.leader(),
                term: self.term(),
            });
        }
        if self.pending.len() >= self.config.proposals_pending_max {
            return Err(ReplicaError::ProposalsFull {
                pending: self.pending.len(),
                max: self.config.proposals_pending_max,
            });
        }
        Ok(())
    }

    fn after_proposal(
        &mut self,
        result: raft::Result<()>,
        conf_change: bool,
    ) -> Result<ProposalId, ReplicaError> {
        self.after_raft_call();
        match result {
            Ok(()) => {}
            Err(raft::Error::ProposalDropped) => return Err(ReplicaError::ProposalDropped),
            Err(e) => return Err(e.into()),
        }
        let id = ProposalId(self.next_proposal);
        self.next_proposal += 1;
        self.pending.insert(
            (self.last_index(), self.term()),
            Pending {
                id,
                conf_change,
                durable_reported: false,
            },
        );
        Ok(id)
    }

    /// Step a decoded Raft message. Only messages from authenticated peers
    /// reach here (see [`super::envelope`]): raft-rs trusts its peers.
    pub fn step(&mut self, message: Message) -> Result<(), ReplicaError> {
        self.ensure_healthy()?;
        if message.to != self.id() || message.from == 0 || message.from == self.id() {
            return Err(ReplicaError::Misaddressed {
                to: message.to,
                from: message.from,
                node: self.id(),
            });
        }
        if raft::raw_node::is_local_msg(message.get_msg_type()) {
            return Err(ReplicaError::InvalidMessage(format!(
                "local message type {:?} from peer {}",
                message.get_msg_type(),
                message.from
            )));
        }
        let from = message.from;
        let result = self.raw.step(message);
        self.after_raft_call();
        match result {
            Ok(()) => Ok(()),
            // A response from a node that left the group: stale, harmless.
            Err(raft::Error::StepPeerNotFound) => {
                tracing::debug!(group = %self.group(), from, "raft response from a non-member ignored");
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Advance the logical clock by one tick.
    pub fn tick(&mut self) {
        if self.poisoned.is_some() {
            return;
        }
        self.ticks += 1;
        self.raw.tick();
        self.after_raft_call();
        if let Some(at) = self.lost_leadership_at {
            if !self.is_leader() && self.ticks >= at + self.config.orphan_timeout_ticks {
                self.lost_leadership_at = None;
                let group = self.group();
                for ((index, term), p) in std::mem::take(&mut self.pending) {
                    self.events.push(ReplicaEvent::Failed {
                        group,
                        proposal: p.id,
                        index,
                        term,
                        reason: FailReason::LeadershipLost,
                    });
                }
            }
        }
    }

    /// Make every write so far durable, then release what waited for it
    /// (it comes out of the next [`PartitionReplica::poll`]).
    pub fn sync(&mut self) -> Result<(), ReplicaError> {
        self.ensure_healthy()?;
        if let Err(e) = self.raw.mut_store().log.sync() {
            return Err(self.poison(e.into()));
        }
        let synced = self.log().synced_index();
        self.release_persisted(synced);
        Ok(())
    }

    /// The log reports (by itself, e.g. after its own group commit) that it
    /// is durable up to `index`.
    pub fn on_persisted(&mut self, index: u64) -> Result<(), ReplicaError> {
        self.ensure_healthy()?;
        let synced = self.log().synced_index();
        if index > synced {
            return Err(ReplicaError::NotDurable { index, synced });
        }
        self.release_persisted(index);
        Ok(())
    }

    /// Compact the log through `through` (clamped to the applied index):
    /// followers that need older entries get a snapshot. Returns the new
    /// start of the log.
    pub fn compact(&mut self, through: u64) -> Result<u64, ReplicaError> {
        self.ensure_healthy()?;
        let through = through.min(self.applied_index());
        if through > self.log().start().0 {
            if let Err(e) = self.raw.mut_store().log.compact(through) {
                return Err(self.poison(e.into()));
            }
        }
        Ok(self.log().start().0)
    }

    /// Everything to act on since the last call (messages to send, events).
    /// Call after any step, tick, proposal or sync.
    pub fn poll(&mut self) -> Result<ReplicaOutput, ReplicaError> {
        self.ensure_healthy()?;
        let mut out = ReplicaOutput::default();
        let mut rounds = 0;
        while self.raw.has_ready() {
            rounds += 1;
            if rounds > 1000 {
                // raft-rs makes progress on every Ready; this would be a bug.
                let e = ReplicaError::Config("raft-rs produced 1000 Readies in one poll".into());
                return Err(self.poison(e));
            }
            let ready = self.raw.ready();
            if let Err(e) = self.handle_ready(ready) {
                return Err(self.poison(e));
            }
            self.after_raft_call();
        }
        self.report_durable();
        self.report_state();
        out.messages = std::mem::take(&mut self.outbox);
        out.events = std::mem::take(&mut self.events);
        Ok(out)
    }

    fn handle_ready(&mut self, mut ready: raft::Ready) -> Result<(), ReplicaError> {
        let number = ready.number();
        let installed = !ready.snapshot().is_empty();
        if installed {
            let snap = ready.snapshot().clone();
            self.install_snapshot(&snap)?;
        }
        let wrote = ready.entries().last().map(|e| e.index);
        if !ready.entries().is_empty() {
            self.raw.mut_store().log.append(ready.entries())?;
        }
        if let Some(hs) = ready.hs() {
            self.raw.mut_store().log.set_hard_state(hs)?;
        }
        let immediate = ready.take_messages();
        let persisted = ready.take_persisted_messages();
        let committed = ready.take_committed_entries();
        self.raw.advance_append_async(ready);

        if installed {
            // A snapshot is made durable at once, with everything after it
            // (they are rare): raft-rs counts it applied only once persisted.
            self.raw.mut_store().log.sync()?;
            let held = std::mem::take(&mut self.unsynced);
            self.outbox
                .extend(held.into_iter().flat_map(|u| u.messages));
            self.outbox.extend(persisted);
            self.raw.on_persist_ready(number);
        } else {
            let needed = wrote
                .or(self.unsynced.back().map(|u| u.needed))
                .unwrap_or(0);
            self.unsynced.push_back(Unsynced {
                number,
                needed,
                messages: persisted,
            });
            let synced = self.log().synced_index();
            self.release_persisted(synced);
        }

        // The leader sends appends before its own write is durable (Raft
        // thesis 10.2.1); it counts itself only after the sync.
        for m in &immediate {
            if m.get_msg_type() == MessageType::MsgSnapshot {
                // The transport is a reliable stream per envelope: treat a
                // snapshot handed to it as delivered. If it is lost anyway,
                // the follower rejects the next append and gets another.
                self.raw.report_snapshot(m.to, SnapshotStatus::Finish);
            }
        }
        self.outbox.extend(immediate);
        self.apply_committed(committed)?;
        let applied = self.raw.store().applied;
        if applied > self.raw.raft.raft_log.applied {
            self.raw.advance_apply_to(applied);
        }
        Ok(())
    }

    /// Release every Ready whose writes are durable up to `synced`. Writes
    /// land in order, so once a Ready's last entry is durable (the log as it
    /// is now, up to that index), so is everything before it.
    fn release_persisted(&mut self, synced: u64) {
        let Some(last) = self.unsynced.iter().rposition(|u| u.needed <= synced) else {
            return;
        };
        let mut number = 0;
        for u in self.unsynced.drain(..=last) {
            number = u.number;
            self.outbox.extend(u.messages);
        }
        self.raw.on_persist_ready(number);
        self.after_raft_call();
    }

    fn install_snapshot(&mut self, snap: &Snapshot) -> Result<(), ReplicaError> {
        let meta = snap.get_metadata();
        let index = meta.index;
        let log_snap = LogSnapshot {
            index,
            term: meta.term,
            conf_state: meta.get_conf_state().clone(),
        };
        let store = self.raw.mut_store();
        store.log.install_snapshot(&log_snap, &snap.data)?;
        store.applied = index;
        store.conf = log_snap.conf_state.clone();
        // Proposals the snapshot jumped over: their fate is unknown here.
        let group = self.group();
        self.fail_pending_below(index + 1, FailReason::SkippedBySnapshot);
        self.events
            .push(ReplicaEvent::SnapshotInstalled { group, index });
        let (voters, learners) = sorted_members(&log_snap.conf_state);
        self.events.push(ReplicaEvent::MembershipChanged {
            group,
            index,
            voters,
            learners,
        });
        tracing::debug!(group = %group, node = self.id(), index, "replica snapshot installed");
        Ok(())
    }

    fn apply_committed(&mut self, entries: Vec<Entry>) -> Result<(), ReplicaError> {
        let mut last_applied = None;
        for entry in entries {
            let (index, term) = (entry.index, entry.term);
            if index <= self.raw.store().applied {
                continue;
            }
            let entry_type = entry.get_entry_type();
            let is_conf = entry_type != EntryType::EntryNormal;
            if is_conf {
                let cc = parse_conf_change(&entry)?;
                let conf = self.raw.apply_conf_change(&cc)?;
                self.raw.mut_store().log.set_conf_state(&conf, index)?;
                self.raw.mut_store().conf = conf.clone();
                let (voters, learners) = sorted_members(&conf);
                if self.is_leader() && !voters.contains(&self.id()) {
                    // Removed while leading (leadership moved back to this
                    // replica after the removal was proposed). raft-rs 0.7
                    // would keep leading a group it is not in and then panic
                    // on its own missing progress; step down in the same
                    // term instead, and the remaining voters elect a leader.
                    self.raw.raft.become_follower(self.term(), raft::INVALID_ID);
                }
                tracing::info!(group = %self.group(), node = self.id(), index, ?voters, ?learners, "replica group changed");
                self.events.push(ReplicaEvent::MembershipChanged {
                    group: self.group(),
                    index,
                    voters,
                    learners,
                });
            }
            self.raw.mut_store().applied = index;
            self.resolve(index, term, is_conf);
            last_applied = Some((index, term));
        }
        if let Some((index, term)) = last_applied {
            self.drop_superseded(index, term);
        }
        Ok(())
    }

    /// The entry committed at `index` has `term`: terms never decrease along
    /// a log, so every log that holds it (every future leader's) holds only
    /// entries of `term` or later after it. A pending proposal of an
    /// earlier term above `index` can therefore never commit.
    fn drop_superseded(&mut self, index: u64, term: u64) {
        let dead: Vec<(u64, u64)> = self
            .pending
            .range((index + 1, 0)..)
            .filter(|((_, t), _)| *t < term)
            .map(|(&k, _)| k)
            .collect();
        for key in dead {
            self.fail_pending(key, FailReason::Dropped);
        }
    }

    fn fail_pending(&mut self, (index, term): (u64, u64), reason: FailReason) {
        if let Some(p) = self.pending.remove(&(index, term)) {
            self.events.push(ReplicaEvent::Failed {
                group: self.group(),
                proposal: p.id,
                index,
                term,
                reason,
            });
        }
    }

    /// Fail every pending proposal below `index`.
    fn fail_pending_below(&mut self, index: u64, reason: FailReason) {
        let still = self.pending.split_off(&(index, 0));
        let group = self.group();
        for ((index, term), p) in std::mem::replace(&mut self.pending, still) {
            self.events.push(ReplicaEvent::Failed {
                group,
                proposal: p.id,
                index,
                term,
                reason,
            });
        }
    }

    /// Settle this replica's proposals at `index`, now committed with
    /// `term`.
    fn resolve(&mut self, index: u64, term: u64, is_conf: bool) {
        // Committed entries arrive contiguously, so nothing below `index`
        // is still pending; if something is (never seen), its fate is lost.
        self.fail_pending_below(index, FailReason::SkippedBySnapshot);
        let at: Vec<((u64, u64), Pending)> = self
            .pending
            .range((index, 0)..=(index, u64::MAX))
            .map(|(&k, &p)| (k, p))
            .collect();
        for ((_, t), p) in at {
            self.pending.remove(&(index, t));
            // Same index and term: by Raft's log matching, the very entry
            // that was proposed. Same kind too: raft-rs replaces a refused
            // configuration change by an empty normal entry in its place.
            let event = if t == term && p.conf_change == is_conf {
                ReplicaEvent::Acked {
                    group: self.group(),
                    proposal: p.id,
                    index,
                    term,
                }
            } else {
                ReplicaEvent::Failed {
                    group: self.group(),
                    proposal: p.id,
                    index,
                    term: t,
                    reason: FailReason::Dropped,
                }
            };
            self.events.push(event);
        }
    }

    /// acks=leader: pending proposals now on this replica's disk.
    fn report_durable(&mut self) {
        let synced = self.log().synced_index();
        let group = self.group();
        let log = &self.raw.store().log;
        for (&(index, term), p) in self.pending.range_mut(..=(synced, u64::MAX)) {
            if !p.durable_reported && log.term(index).is_ok_and(|t| t == term) {
                p.durable_reported = true;
                self.events.push(ReplicaEvent::LeaderDurable {
                    group,
                    proposal: p.id,
                    index,
                    term,
                });
            }
        }
    }

    fn report_state(&mut self) {
        let now = (self.raw.raft.leader_id, self.raw.raft.state, self.term());
        if now != self.reported_leader {
            if self.reported_leader.1 == StateRole::Leader && now.1 != StateRole::Leader {
                self.lost_leadership_at = Some(self.ticks);
            }
            if now.1 == StateRole::Leader {
                self.lost_leadership_at = None;
            }
            self.reported_leader = now;
            self.events.push(ReplicaEvent::LeaderChanged {
                group: self.group(),
                leader: nonzero(now.0),
                term: now.2,
                role: now.1,
            });
        }
        let commit = self.commit_index();
        if commit > self.reported_commit {
            self.reported_commit = commit;
            self.events.push(ReplicaEvent::Committed {
                group: self.group(),
                up_to: commit,
            });
        }
    }

    /// raft-rs re-draws its election timeout from a thread-local RNG on
    /// every term or role change; replace each draw with one from the
    /// seeded jitter, so a run replays exactly from its seed.
    fn after_raft_call(&mut self) {
        let now = (self.raw.raft.term, self.raw.raft.state);
        if now == self.jitter_seen {
            return;
        }
        self.jitter_seen = now;
        let base = self.config.election_ticks;
        let timeout = base + (self.jitter.next() % base as u64) as usize;
        self.raw.raft.set_randomized_election_timeout(timeout);
    }

    fn ensure_healthy(&self) -> Result<(), ReplicaError> {
        match &self.poisoned {
            None => Ok(()),
            Some(reason) => Err(ReplicaError::Poisoned {
                group: self.group(),
                node: self.id(),
                reason: reason.clone(),
            }),
        }
    }

    /// After a log failure the in-memory Raft state may be ahead of the
    /// disk: refuse everything until reopened from the log.
    fn poison(&mut self, error: ReplicaError) -> ReplicaError {
        tracing::error!(group = %self.group(), node = self.id(), %error, "replica stopped");
        self.poisoned = Some(error.to_string());
        error
    }
}

fn sorted_members(conf: &ConfState) -> (Vec<u64>, Vec<u64>) {
    let mut voters = conf.voters.clone();
    let mut learners = conf.learners.clone();
    voters.sort_unstable();
    learners.sort_unstable();
    (voters, learners)
}

fn parse_conf_change(entry: &Entry) -> Result<ConfChangeV2, ReplicaError> {
    let undecodable = |e: protobuf::ProtobufError| ReplicaError::UndecodableConfChange {
        index: entry.index,
        reason: e.to_string(),
    };
    if entry.get_entry_type() == EntryType::EntryConfChangeV2 {
        return ConfChangeV2::parse_from_bytes(&entry.data).map_err(undecodable);
    }
    // A version 1 change (never proposed by this driver) is one single change.
    let v1 = ConfChange::parse_from_bytes(&entry.data).map_err(undecodable)?;
    let mut cc = ConfChangeV2::default();
    cc.mut_changes().push(ConfChangeSingle {
        change_type: v1.get_change_type(),
        node_id: v1.node_id,
        ..ConfChangeSingle::default()
    });
    Ok(cc)
}

fn nonzero(id: u64) -> Option<u64> {
    (id != 0).then_some(id)
}

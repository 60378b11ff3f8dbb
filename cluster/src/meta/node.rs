//! [`MetaNode`]: the sans-IO driver of one member of the metadata Raft
//! group, over raft-rs's `RawNode`.
//!
//! The caller feeds it peer messages ([`MetaNode::step`]), clock ticks
//! ([`MetaNode::tick`]) and proposals ([`MetaNode::propose`]), and drains
//! [`MetaNode::poll_ready`] until it returns `None`: messages to send,
//! commands applied (with the proposal they answer), leadership changes.
//! Writes go to the [`MetaStorage`] as raft-rs produces them; they count
//! only after [`MetaNode::sync`], which the caller runs when
//! [`MetaNode::needs_sync`] says so (at once, or batched like a group
//! commit). Until then, every message that vouches for the write (a vote,
//! an append acknowledgement) is held back, and the node's own entries do
//! not count towards a commit. This is raft-rs's asynchronous-ready API
//! (`advance_append_async` + `on_persist_ready`).
//!
//! Group shape: the initial voters bootstrap from one identical snapshot
//! (index 1, the voter set, an empty state). Every other node starts empty
//! and is added as a learner, so it catches up from a snapshot first; see
//! [`next_membership_change`] for the promotion policy.
//!
//! Leadership safety comes from raft-rs with `pre_vote` (a node cut off
//! and rejoining does not depose a healthy leader) and `check_quorum` (a
//! leader that stops hearing from a majority steps down within an election
//! timeout, so it stops accepting proposals; and it could never have
//! committed without that majority anyway).

use crate::rng::SplitMix64;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use protobuf::Message as _;
use raft::eraftpb::{
    ConfChange, ConfChangeSingle, ConfChangeType, ConfChangeV2, ConfState, Entry, EntryType,
    Message, MessageType, Snapshot, SnapshotMetadata,
};
use raft::{RawNode, SnapshotStatus, StateRole};

use super::command::{decode_command, encode_command, DecodeError, MetaCommand};
use super::membership::{next_membership_change, GroupMembers, MembershipChange};
use super::raft_tracing::raft_logger;
use super::state::{MetaState, Rejection};
use super::storage::{MetaStorage, MetaStorageError};

/// Log index of the bootstrap snapshot every initial voter starts from.
pub const BOOTSTRAP_INDEX: u64 = 1;
const BOOTSTRAP_TERM: u64 = 1;

#[derive(Debug, Clone)]
pub struct MetaConfig {
    pub node_id: u64,
    /// How often the caller calls [`MetaNode::tick`]. The driver itself
    /// never reads a clock; this only documents the unit of the ticks.
    pub tick_interval_ms: u64,
    /// A follower campaigns after a random `election_ticks..2*election_ticks`
    /// without a leader; a leader steps down after `election_ticks` without
    /// a quorum (check-quorum).
    pub election_ticks: usize,
    pub heartbeat_ticks: usize,
    /// Snapshot (and compact the log) after this many applied entries. A
    /// snapshot is also taken after every membership change, so a node
    /// added later gets a snapshot that already lists it.
    pub snapshot_interval_entries: u64,
    pub proposals_pending_max: usize,
    pub command_bytes_max: usize,
    /// Bound of the entries in one append message.
    pub append_bytes_max: u64,
    pub inflight_appends_max: usize,
    /// Bound of proposed-but-uncommitted entry bytes on the leader.
    pub uncommitted_bytes_max: u64,
    /// Bound of an encoded peer message; snapshots ride in one, so this
    /// also bounds the metadata state.
    pub peer_message_bytes_max: usize,
    /// A learner within this many entries of the leader's log counts as
    /// caught up (ready to be promoted).
    pub learner_lag_entries_max: u64,
    /// Seed of the election timeout jitter. raft-rs draws it from a
    /// thread-local RNG; the driver overrides every draw from this seed so
    /// a simulation replays exactly. Use a different seed per node.
    pub rng_seed: u64,
}

impl MetaConfig {
    pub fn new(node_id: u64, rng_seed: u64) -> Self {
        Self {
            node_id,
            tick_interval_ms: 100,
            election_ticks: 10,
            heartbeat_ticks: 3,
            snapshot_interval_entries: 1024,
            proposals_pending_max: 1024,
            command_bytes_max: 1 << 20,
            append_bytes_max: 1 << 20,
            inflight_appends_max: 64,
            uncommitted_bytes_max: 64 << 20,
            peer_message_bytes_max: 256 << 20,
            learner_lag_entries_max: 64,
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

/// A proposal, named by where the leader put it: the entry at `index` with
/// `term`. By Raft's log matching property, if the entry committed at
/// `index` has `term`, it is this proposal; otherwise it was overwritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProposalId {
    pub term: u64,
    pub index: u64,
}

impl std::fmt::Display for ProposalId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.index, self.term)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProposalOutcome {
    /// Committed and applied (possibly rejected by the state machine).
    Applied(Result<(), Rejection>),
    /// Another leader's entry took its place: it never took effect.
    Dropped,
    /// The node jumped past it by installing a snapshot: it may or may not
    /// have taken effect (read the state to find out).
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProposalResult {
    pub id: ProposalId,
    pub outcome: ProposalOutcome,
}

/// A committed command as this node applied it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedCommand {
    pub index: u64,
    pub term: u64,
    pub command: MetaCommand,
    pub result: Result<(), Rejection>,
}

/// A Raft message for one peer, protobuf-encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerMessage {
    pub to: u64,
    pub bytes: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leadership {
    pub leader: Option<u64>,
    pub term: u64,
    pub role: StateRole,
}

/// What one [`MetaNode::poll_ready`] produced.
#[derive(Debug, Default)]
pub struct MetaReady {
    pub messages: Vec<PeerMessage>,
    /// Every command applied, in log order.
    pub applied: Vec<AppliedCommand>,
    /// Outcomes of this node's proposals.
    pub proposals: Vec<ProposalResult>,
    /// Set when the leader or this node's role changed.
    pub leadership: Option<Leadership>,
    /// Set when a leader's snapshot replaced the state (its log index).
    pub snapshot_restored: Option<u64>,
    /// Writes are waiting for [`MetaNode::sync`].
    pub needs_sync: bool,
}

impl MetaReady {
    fn is_empty(&self) -> bool {
        self.messages.is_empty()
            && self.applied.is_empty()
            && self.proposals.is_empty()
            && self.leadership.is_none()
            && self.snapshot_restored.is_none()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("node {node} is not the metadata leader (leader {leader:?}, term {term})")]
    NotLeader {
        node: u64,
        leader: Option<u64>,
        term: u64,
    },
    #[error("{pending} proposals are pending; the bound is {max}")]
    ProposalsFull { pending: usize, max: usize },
    #[error("command of {bytes} bytes exceeds the bound of {max}")]
    CommandTooLarge { bytes: usize, max: usize },
    #[error("a membership change is already in flight")]
    MembershipChangePending,
    #[error("raft dropped the proposal (leadership transfer or uncommitted bytes bound)")]
    ProposalDropped,
    #[error("message for node {to} reached node {node}")]
    Misaddressed { to: u64, node: u64 },
    #[error("invalid peer message: {0}")]
    InvalidMessage(String),
    #[error("committed entry {index} does not decode: {source}")]
    UndecodableEntry {
        index: u64,
        #[source]
        source: DecodeError,
    },
    #[error("committed configuration change {index} does not decode: {reason}")]
    UndecodableConfChange { index: u64, reason: String },
    #[error("snapshot at index {index} does not decode: {source}")]
    UndecodableSnapshot {
        index: u64,
        #[source]
        source: DecodeError,
    },
    #[error("snapshot at index {index} holds a state applied to {applied}")]
    SnapshotMismatch { index: u64, applied: u64 },
    #[error("raft configuration {raft:?} diverged from the replicated members {members:?}")]
    MembershipDiverged {
        raft: GroupMembers,
        members: GroupMembers,
    },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Storage(#[from] MetaStorageError),
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    #[error("node {node} stopped after an earlier error ({reason}); reopen it from storage")]
    Poisoned { node: u64, reason: String },
}

#[derive(Debug, Clone, Copy)]
struct PendingProposal {
    term: u64,
    conf_change: bool,
}

pub struct MetaNode<S: MetaStorage> {
    raw: RawNode<S>,
    config: MetaConfig,
    state: MetaState,
    snapshot_index: u64,
    /// This node's proposals not yet resolved, by log index.
    pending: BTreeMap<u64, PendingProposal>,
    /// Messages that may only leave once the storage is synced.
    held: Vec<Message>,
    /// The latest Ready whose writes wait for a sync.
    unsynced_ready: Option<u64>,
    /// Anything written since the last sync (including commit-only hard
    /// states, which do not hold messages back).
    storage_dirty: bool,
    outbox: VecDeque<Message>,
    reported: (u64, StateRole),
    jitter_seen: (u64, StateRole),
    jitter: SplitMix64,
    poisoned: Option<String>,
}

impl<S: MetaStorage> MetaNode<S> {
    /// Start an initial voter. On empty storage, writes the bootstrap
    /// snapshot (identical on every initial voter: same `voters`); on
    /// storage that already holds a log, this is [`MetaNode::open`].
    pub fn bootstrap(
        config: MetaConfig,
        mut storage: S,
        voters: &[u64],
    ) -> Result<Self, MetaError> {
        let mut voters: Vec<u64> = voters.to_vec();
        voters.sort_unstable();
        voters.dedup();
        if voters.is_empty() || voters.contains(&0) {
            return Err(MetaError::Config(format!(
                "bootstrap voters {voters:?}: need at least one, and 0 is reserved"
            )));
        }
        let initialized = storage.initial_state()?.initialized() || storage.last_index()? > 0;
        if !initialized {
            let data =
                MetaState::bootstrap(voters.iter().copied(), BOOTSTRAP_INDEX).encode_snapshot();
            let conf = ConfState {
                voters,
                ..ConfState::default()
            };
            let snap = snapshot_of(BOOTSTRAP_INDEX, BOOTSTRAP_TERM, conf, data);
            storage.apply_snapshot(&snap)?;
            storage.sync()?;
        }
        Self::open(config, storage)
    }

    /// Start from whatever `storage` holds: a restart, or (empty storage)
    /// a node that waits to be added as a learner and sent a snapshot.
    pub fn open(config: MetaConfig, storage: S) -> Result<Self, MetaError> {
        if config.node_id == 0 {
            return Err(MetaError::Config("node id 0 is reserved".into()));
        }
        if config.election_ticks <= config.heartbeat_ticks || config.heartbeat_ticks == 0 {
            return Err(MetaError::Config(format!(
                "election_ticks {} must exceed heartbeat_ticks {} > 0",
                config.election_ticks, config.heartbeat_ticks
            )));
        }
        let snap = storage.stored_snapshot();
        let snapshot_index = snap.get_metadata().index;
        let state = if snapshot_index == 0 {
            MetaState::default()
        } else {
            restore_state(&snap)?
        };
        let logger = raft_logger(config.node_id);
        let raw = RawNode::new(&config.raft_config(snapshot_index), storage, &logger)?;
        let mut node = Self {
            raw,
            state,
            snapshot_index,
            pending: BTreeMap::new(),
            held: Vec::new(),
            unsynced_ready: None,
            storage_dirty: false,
            outbox: VecDeque::new(),
            reported: (0, StateRole::Follower),
            jitter_seen: (u64::MAX, StateRole::Follower),
            jitter: SplitMix64(config.rng_seed ^ config.node_id.rotate_left(32)),
            poisoned: None,
            config,
        };
        node.after_raft_call();
        tracing::info!(
            node = node.config.node_id,
            snapshot_index,
            last_index = node.last_index(),
            term = node.term(),
            "metadata raft node open"
        );
        Ok(node)
    }

    pub fn id(&self) -> u64 {
        self.config.node_id
    }

    pub fn config(&self) -> &MetaConfig {
        &self.config
    }

    /// The replicated metadata as of [`MetaNode::applied_index`].
    pub fn state(&self) -> &MetaState {
        &self.state
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

    pub fn commit_index(&self) -> u64 {
        self.raw.raft.raft_log.committed
    }

    pub fn applied_index(&self) -> u64 {
        self.state.applied_index()
    }

    pub fn last_index(&self) -> u64 {
        self.raw.raft.raft_log.last_index()
    }

    pub fn pending_proposals(&self) -> usize {
        self.pending.len()
    }

    pub fn storage(&self) -> &S {
        self.raw.store()
    }

    /// Writes are waiting for [`MetaNode::sync`].
    pub fn needs_sync(&self) -> bool {
        self.storage_dirty || self.unsynced_ready.is_some()
    }

    /// On the leader: learners whose log is within
    /// `learner_lag_entries_max` of the leader's. Empty elsewhere.
    pub fn caught_up_learners(&self) -> BTreeSet<u64> {
        if !self.is_leader() {
            return BTreeSet::new();
        }
        let last = self.last_index();
        let prs = self.raw.raft.prs();
        self.state
            .members()
            .learners
            .iter()
            .copied()
            .filter(|id| {
                prs.get(*id)
                    .is_some_and(|p| p.matched + self.config.learner_lag_entries_max >= last)
            })
            .collect()
    }

    /// The membership change this leader should propose next, given the
    /// nodes gossip reports alive (see [`next_membership_change`]).
    pub fn next_membership_change(
        &self,
        live: &BTreeSet<u64>,
        voters_target: usize,
    ) -> Option<MembershipChange> {
        if !self.is_leader() {
            return None;
        }
        next_membership_change(
            self.state.members(),
            live,
            &self.caught_up_learners(),
            voters_target,
        )
    }

    /// Propose a command. Only the leader accepts; the caller forwards to
    /// [`MetaError::NotLeader`]'s `leader`. The outcome arrives in a later
    /// [`MetaReady::proposals`] under the returned id.
    pub fn propose(&mut self, command: MetaCommand) -> Result<ProposalId, MetaError> {
        self.ensure_healthy()?;
        if !self.is_leader() {
            return Err(MetaError::NotLeader {
                node: self.id(),
                leader: self.leader(),
                term: self.term(),
            });
        }
        if self.pending.len() >= self.config.proposals_pending_max {
            return Err(MetaError::ProposalsFull {
                pending: self.pending.len(),
                max: self.config.proposals_pending_max,
            });
        }
        let conf_change = matches!(command, MetaCommand::ChangeMembership(_));
        let result = match command {
            MetaCommand::ChangeMembership(change) => {
                // raft-rs would silently turn a second concurrent change
                // into an empty entry; refuse it here instead.
                if self.raw.raft.has_pending_conf() {
                    return Err(MetaError::MembershipChangePending);
                }
                self.raw
                    .propose_conf_change(Vec::new(), conf_change_of(change))
            }
            command => {
                let data = encode_command(&command);
                if data.len() > self.config.command_bytes_max {
                    return Err(MetaError::CommandTooLarge {
                        bytes: data.len(),
                        max: self.config.command_bytes_max,
                    });
                }
                self.raw.propose(Vec::new(), data)
            }
        };
        self.after_raft_call();
        match result {
            Ok(()) => {}
            Err(raft::Error::ProposalDropped) => return Err(MetaError::ProposalDropped),
            Err(e) => return Err(e.into()),
        }
        let id = ProposalId {
            term: self.term(),
            index: self.last_index(),
        };
        self.pending.insert(
            id.index,
            PendingProposal {
                term: id.term,
                conf_change,
            },
        );
        Ok(id)
    }

    /// Step a protobuf-encoded Raft message. Only ever call this with bytes
    /// from an authenticated peer (mutual TLS): protobuf 2 parsing is not
    /// hardened against hostile input (RUSTSEC-2024-0437), and raft-rs
    /// trusts its peers' messages.
    pub fn step(&mut self, bytes: &[u8]) -> Result<(), MetaError> {
        let message = self.parse(bytes)?;
        self.step_message(message)
    }

    fn parse(&self, bytes: &[u8]) -> Result<Message, MetaError> {
        self.ensure_healthy()?;
        if bytes.len() > self.config.peer_message_bytes_max {
            return Err(MetaError::InvalidMessage(format!(
                "{} bytes exceed the bound of {}",
                bytes.len(),
                self.config.peer_message_bytes_max
            )));
        }
        Message::parse_from_bytes(bytes).map_err(|e| MetaError::InvalidMessage(e.to_string()))
    }

    /// [`MetaNode::step`] for bytes from the peer authenticated as node
    /// `from`: a message claiming another sender is refused (a member must
    /// not vote or append in another's name).
    pub fn step_from(&mut self, from: u64, bytes: &[u8]) -> Result<(), MetaError> {
        let message = self.parse(bytes)?;
        if message.from != from {
            return Err(MetaError::InvalidMessage(format!(
                "message from node {} on node {from}'s authenticated connection",
                message.from
            )));
        }
        self.step_message(message)
    }

    /// Step a decoded Raft message (same trust rule as [`MetaNode::step`]).
    pub fn step_message(&mut self, message: Message) -> Result<(), MetaError> {
        self.ensure_healthy()?;
        if message.to != self.id() {
            return Err(MetaError::Misaddressed {
                to: message.to,
                node: self.id(),
            });
        }
        if message.from == 0 {
            return Err(MetaError::InvalidMessage("sender id 0".into()));
        }
        let from = message.from;
        let result = self.raw.step(message);
        self.after_raft_call();
        match result {
            Ok(()) => Ok(()),
            // A response from a node that left the group: stale, harmless.
            Err(raft::Error::StepPeerNotFound) => {
                tracing::debug!(
                    node = self.id(),
                    from,
                    "raft response from a non-member ignored"
                );
                Ok(())
            }
            Err(raft::Error::StepLocalMsg) => Err(MetaError::InvalidMessage(format!(
                "local message type from peer {from}"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// Advance Raft's logical clock by one tick (`tick_interval_ms`).
    pub fn tick(&mut self) {
        if self.poisoned.is_some() {
            return;
        }
        self.raw.tick();
        self.after_raft_call();
    }

    /// Make every write so far durable, then release the messages that
    /// waited for it (they come out of the next [`MetaNode::poll_ready`]).
    pub fn sync(&mut self) -> Result<(), MetaError> {
        self.ensure_healthy()?;
        if self.storage_dirty {
            if let Err(e) = self.raw.mut_store().sync() {
                return Err(self.poison(e.into()));
            }
            self.storage_dirty = false;
        }
        if let Some(number) = self.unsynced_ready.take() {
            self.raw.on_persist_ready(number);
            self.outbox.extend(self.held.drain(..));
            self.after_raft_call();
        }
        Ok(())
    }

    /// Everything to act on since the last call; `None` when there is
    /// nothing (call again after any step, tick, propose or sync).
    pub fn poll_ready(&mut self) -> Result<Option<MetaReady>, MetaError> {
        self.ensure_healthy()?;
        let mut out = MetaReady::default();
        if self.raw.has_ready() {
            let ready = self.raw.ready();
            if let Err(e) = self.handle_ready(ready, &mut out) {
                return Err(self.poison(e));
            }
            self.after_raft_call();
        }
        let now = (self.raw.raft.leader_id, self.raw.raft.state);
        if now != self.reported {
            self.reported = now;
            out.leadership = Some(Leadership {
                leader: nonzero(now.0),
                term: self.term(),
                role: now.1,
            });
        }
        for message in self.outbox.drain(..) {
            let bytes = message
                .write_to_bytes()
                .map_err(|e| MetaError::InvalidMessage(e.to_string()))?;
            out.messages.push(PeerMessage {
                to: message.to,
                bytes,
            });
        }
        out.needs_sync = self.needs_sync();
        Ok((!out.is_empty()).then_some(out))
    }

    fn handle_ready(
        &mut self,
        mut ready: raft::Ready,
        out: &mut MetaReady,
    ) -> Result<(), MetaError> {
        let number = ready.number();
        let mut durable_write = false;
        let installed = !ready.snapshot().is_empty();
        if installed {
            let snap = ready.snapshot().clone();
            self.install_snapshot(&snap, out)?;
            durable_write = true;
        }
        if !ready.entries().is_empty() {
            self.raw.mut_store().append(ready.entries())?;
            durable_write = true;
        }
        if let Some(hs) = ready.hs() {
            self.raw.mut_store().set_hard_state(hs)?;
            self.storage_dirty = true;
        }
        if durable_write {
            self.storage_dirty = true;
        }
        let must_sync = ready.must_sync() || durable_write;
        let immediate = ready.take_messages();
        let persisted = ready.take_persisted_messages();
        let committed = ready.take_committed_entries();
        self.raw.advance_append_async(ready);

        if installed {
            // A snapshot is persisted at once (they are rare): raft-rs
            // counts it applied only once persisted, and until then it may
            // try to read the entries the snapshot just compacted away.
            self.raw.mut_store().sync()?;
            self.storage_dirty = false;
            self.unsynced_ready = None;
            self.raw.on_persist_ready(number);
            self.outbox.extend(self.held.drain(..));
            self.outbox.extend(persisted);
        } else if must_sync || self.unsynced_ready.is_some() {
            self.unsynced_ready = Some(number);
            self.held.extend(persisted);
        } else {
            // Only the commit index changed (volatile in Raft) and nothing
            // earlier waits: these messages vouch for nothing unsynced.
            self.raw.on_persist_ready(number);
            self.outbox.extend(persisted);
        }

        // The leader sends appends before its own write is durable (Raft
        // thesis 10.2.1); it counts itself only after the sync.
        let snapshots_to: Vec<u64> = immediate
            .iter()
            .filter(|m| m.get_msg_type() == MessageType::MsgSnapshot)
            .map(|m| m.to)
            .collect();
        self.outbox.extend(immediate);
        // The transport is a reliable stream: treat a snapshot handed to it
        // as delivered. If it is lost anyway, the follower rejects the next
        // append and the leader falls back to sending a snapshot again.
        for to in snapshots_to {
            self.raw.report_snapshot(to, SnapshotStatus::Finish);
        }

        let membership_changed = self.apply_committed(committed, out)?;
        // Tell raft-rs how far the state machine is, including a snapshot
        // just installed (which comes with no committed entries): raft-rs
        // reads the log from its applied index on, and the snapshot
        // compacted everything below. Applied entries are persisted ones,
        // and an installed snapshot was synced above.
        let applied = self.state.applied_index();
        if applied > self.raw.raft.raft_log.applied {
            self.raw.advance_apply_to(applied);
        }
        self.maybe_snapshot(membership_changed)
    }

    fn install_snapshot(&mut self, snap: &Snapshot, out: &mut MetaReady) -> Result<(), MetaError> {
        let index = snap.get_metadata().index;
        let state = restore_state(snap)?;
        self.raw.mut_store().apply_snapshot(snap)?;
        self.state = state;
        self.snapshot_index = index;
        // Proposals the snapshot jumped over: their fate is folded into it.
        let still_pending = self.pending.split_off(&(index + 1));
        for (idx, p) in std::mem::replace(&mut self.pending, still_pending) {
            out.proposals.push(ProposalResult {
                id: ProposalId {
                    term: p.term,
                    index: idx,
                },
                outcome: ProposalOutcome::Unknown,
            });
        }
        out.snapshot_restored = Some(index);
        tracing::info!(node = self.id(), index, "metadata snapshot installed");
        Ok(())
    }

    /// Apply committed entries; returns whether the membership changed.
    fn apply_committed(
        &mut self,
        entries: Vec<Entry>,
        out: &mut MetaReady,
    ) -> Result<bool, MetaError> {
        let mut membership_changed = false;
        for entry in entries {
            let (index, term) = (entry.index, entry.term);
            if index <= self.state.applied_index() {
                continue;
            }
            let entry_type = entry.get_entry_type();
            let is_conf = entry_type != EntryType::EntryNormal;
            let applied = match entry_type {
                EntryType::EntryNormal if entry.data.is_empty() => {
                    // A new leader's empty entry.
                    self.state.skip(index);
                    None
                }
                EntryType::EntryNormal => {
                    let command = decode_command(&entry.data)
                        .map_err(|source| MetaError::UndecodableEntry { index, source })?;
                    let result = if matches!(command, MetaCommand::ChangeMembership(_)) {
                        self.state.skip(index);
                        Err(Rejection::MembershipOutsideConfChange)
                    } else {
                        self.state.apply(index, &command)
                    };
                    Some((command, result))
                }
                EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => {
                    let cc = parse_conf_change(&entry)?;
                    match membership_change_of(&cc) {
                        Some(change) => {
                            let command = MetaCommand::ChangeMembership(change);
                            let result = self.state.apply(index, &command);
                            // A change the state machine rejects is not
                            // applied to Raft either (raft-rs allows
                            // skipping), so both stay in lockstep.
                            if result.is_ok() {
                                let conf = self.raw.apply_conf_change(&cc)?;
                                self.check_members(&conf)?;
                                membership_changed = true;
                                tracing::info!(
                                    node = self.id(),
                                    index,
                                    ?change,
                                    "metadata group changed"
                                );
                            }
                            Some((command, result))
                        }
                        None => {
                            // Never proposed by this driver (joint changes).
                            tracing::warn!(
                                node = self.id(),
                                index,
                                ?cc,
                                "unsupported configuration change skipped"
                            );
                            self.state.skip(index);
                            self.resolve(
                                index,
                                term,
                                is_conf,
                                Some(Err(Rejection::UnsupportedConfChange)),
                                out,
                            );
                            continue;
                        }
                    }
                }
            };
            self.resolve(
                index,
                term,
                is_conf,
                applied.as_ref().map(|(_, r)| r.clone()),
                out,
            );
            if let Some((command, result)) = applied {
                out.applied.push(AppliedCommand {
                    index,
                    term,
                    command,
                    result,
                });
            }
        }
        Ok(membership_changed)
    }

    /// Settle this node's proposal at `index` (and any skipped below it).
    fn resolve(
        &mut self,
        index: u64,
        term: u64,
        is_conf: bool,
        result: Option<Result<(), Rejection>>,
        out: &mut MetaReady,
    ) {
        while let Some((&idx, _)) = self.pending.first_key_value() {
            if idx >= index {
                break;
            }
            let p = self.pending.remove(&idx).expect("first key exists");
            out.proposals.push(ProposalResult {
                id: ProposalId {
                    term: p.term,
                    index: idx,
                },
                outcome: ProposalOutcome::Dropped,
            });
        }
        let Some(p) = self.pending.remove(&index) else {
            return;
        };
        let outcome = match result {
            // Same index and term: the very entry proposed. Same kind too:
            // raft-rs replaces a refused configuration change by an empty
            // normal entry at the same place.
            Some(result) if p.term == term && p.conf_change == is_conf => {
                ProposalOutcome::Applied(result)
            }
            _ => ProposalOutcome::Dropped,
        };
        out.proposals.push(ProposalResult {
            id: ProposalId {
                term: p.term,
                index,
            },
            outcome,
        });
    }

    fn check_members(&self, conf: &ConfState) -> Result<(), MetaError> {
        let raft = GroupMembers {
            voters: conf.voters.iter().copied().collect(),
            learners: conf.learners.iter().copied().collect(),
        };
        if !conf.voters_outgoing.is_empty() || &raft != self.state.members() {
            return Err(MetaError::MembershipDiverged {
                raft,
                members: self.state.members().clone(),
            });
        }
        Ok(())
    }

    /// Snapshot at the applied index and compact the log behind it.
    fn maybe_snapshot(&mut self, membership_changed: bool) -> Result<(), MetaError> {
        let applied = self.state.applied_index();
        let due = applied >= self.snapshot_index + self.config.snapshot_interval_entries;
        if applied <= self.snapshot_index || !(due || membership_changed) {
            return Ok(());
        }
        let term = self.raw.raft.raft_log.term(applied)?;
        let mut conf = self.raw.raft.prs().conf().to_conf_state();
        // raft-rs lists members in hash order; sort so stored snapshots of
        // equal states are equal bytes.
        conf.voters.sort_unstable();
        conf.learners.sort_unstable();
        let snap = snapshot_of(applied, term, conf, self.state.encode_snapshot());
        self.raw.mut_store().apply_snapshot(&snap)?;
        self.storage_dirty = true;
        self.snapshot_index = applied;
        tracing::debug!(node = self.id(), index = applied, "metadata snapshot taken");
        Ok(())
    }

    /// raft-rs re-draws its election timeout from a thread-local RNG on
    /// every term or role change; replace each draw with one from the
    /// seeded jitter, so a run replays exactly from its seed. Every such
    /// re-draw happens together with a change of (term, role), so checking
    /// that pair after each call into raft-rs catches them all.
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

    fn ensure_healthy(&self) -> Result<(), MetaError> {
        match &self.poisoned {
            None => Ok(()),
            Some(reason) => Err(MetaError::Poisoned {
                node: self.id(),
                reason: reason.clone(),
            }),
        }
    }

    /// After a storage or apply failure the in-memory Raft state may be
    /// ahead of the disk: refuse everything until reopened from storage.
    fn poison(&mut self, error: MetaError) -> MetaError {
        tracing::error!(node = self.id(), %error, "metadata raft node stopped");
        self.poisoned = Some(error.to_string());
        error
    }
}

fn restore_state(snap: &Snapshot) -> Result<MetaState, MetaError> {
    let index = snap.get_metadata().index;
    let state = MetaState::restore(&snap.data)
        .map_err(|source| MetaError::UndecodableSnapshot { index, source })?;
    if state.applied_index() != index {
        return Err(MetaError::SnapshotMismatch {
            index,
            applied: state.applied_index(),
        });
    }
    Ok(state)
}

fn conf_change_of(change: MembershipChange) -> ConfChangeV2 {
    let (change_type, node_id) = match change {
        MembershipChange::AddLearner(n) => (ConfChangeType::AddLearnerNode, n),
        MembershipChange::Promote(n) => (ConfChangeType::AddNode, n),
        MembershipChange::Remove(n) => (ConfChangeType::RemoveNode, n),
    };
    single_change(change_type, node_id)
}

fn single_change(change_type: ConfChangeType, node_id: u64) -> ConfChangeV2 {
    let mut cc = ConfChangeV2::default();
    cc.mut_changes().push(ConfChangeSingle {
        change_type,
        node_id,
        ..ConfChangeSingle::default()
    });
    cc
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

fn membership_change_of(cc: &ConfChangeV2) -> Option<MembershipChange> {
    let [single] = cc.get_changes() else {
        return None;
    };
    let n = single.node_id;
    Some(match single.get_change_type() {
        ConfChangeType::AddLearnerNode => MembershipChange::AddLearner(n),
        ConfChangeType::AddNode => MembershipChange::Promote(n),
        ConfChangeType::RemoveNode => MembershipChange::Remove(n),
    })
}

fn parse_conf_change(entry: &Entry) -> Result<ConfChangeV2, MetaError> {
    let undecodable = |e: protobuf::ProtobufError| MetaError::UndecodableConfChange {
        index: entry.index,
        reason: e.to_string(),
    };
    if entry.get_entry_type() == EntryType::EntryConfChangeV2 {
        return ConfChangeV2::parse_from_bytes(&entry.data).map_err(undecodable);
    }
    // A version 1 change (never proposed by this driver) is one single change.
    let v1 = ConfChange::parse_from_bytes(&entry.data).map_err(undecodable)?;
    Ok(single_change(v1.get_change_type(), v1.node_id))
}

fn nonzero(id: u64) -> Option<u64> {
    (id != 0).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::command::TopicConfig;
    use crate::meta::storage::MemMetaStorage;
    use crate::meta::FileMetaStorage;

    /// A lossless, instant network of nodes that sync at once: for the
    /// driver's protocol, not its fault tolerance (that is the simulator's).
    struct Net {
        nodes: BTreeMap<u64, MetaNode<MemMetaStorage>>,
        disks: BTreeMap<u64, MemMetaStorage>,
        results: Vec<(u64, ProposalResult)>,
        applied: BTreeMap<u64, Vec<AppliedCommand>>,
    }

    impl Net {
        fn new(voters: &[u64], joiners: &[u64]) -> Self {
            let mut net = Net {
                nodes: BTreeMap::new(),
                disks: BTreeMap::new(),
                results: Vec::new(),
                applied: BTreeMap::new(),
            };
            for &id in voters.iter().chain(joiners) {
                let disk = MemMetaStorage::new();
                let node = if voters.contains(&id) {
                    MetaNode::bootstrap(config(id), disk.clone(), voters).unwrap()
                } else {
                    MetaNode::open(config(id), disk.clone()).unwrap()
                };
                net.nodes.insert(id, node);
                net.disks.insert(id, disk);
            }
            net
        }

        /// Deliver and sync until nothing moves.
        fn pump(&mut self) {
            for _ in 0..1000 {
                let mut mail = Vec::new();
                for (&id, node) in self.nodes.iter_mut() {
                    if node.needs_sync() {
                        node.sync().unwrap();
                    }
                    while let Some(out) = node.poll_ready().unwrap() {
                        mail.extend(out.messages);
                        self.results
                            .extend(out.proposals.into_iter().map(|r| (id, r)));
                        self.applied.entry(id).or_default().extend(out.applied);
                    }
                    if node.needs_sync() {
                        node.sync().unwrap();
                        while let Some(out) = node.poll_ready().unwrap() {
                            mail.extend(out.messages);
                            self.results
                                .extend(out.proposals.into_iter().map(|r| (id, r)));
                            self.applied.entry(id).or_default().extend(out.applied);
                        }
                    }
                }
                if mail.is_empty() {
                    return;
                }
                for m in mail {
                    if let Some(node) = self.nodes.get_mut(&m.to) {
                        node.step(&m.bytes).unwrap();
                    }
                }
            }
            panic!("network never went quiet");
        }

        fn elect(&mut self) -> u64 {
            for _ in 0..200 {
                for node in self.nodes.values_mut() {
                    node.tick();
                }
                self.pump();
                let leaders: Vec<u64> = self
                    .nodes
                    .values()
                    .filter(|n| n.is_leader())
                    .map(|n| n.id())
                    .collect();
                if let [leader] = leaders[..] {
                    // Let the new leader's empty entry commit everywhere.
                    for node in self.nodes.values_mut() {
                        node.tick();
                    }
                    self.pump();
                    return leader;
                }
            }
            panic!("no leader after 200 ticks");
        }

        fn propose(&mut self, on: u64, command: MetaCommand) -> ProposalOutcome {
            let id = self.nodes.get_mut(&on).unwrap().propose(command).unwrap();
            self.pump();
            self.results
                .iter()
                .find(|(node, r)| *node == on && r.id == id)
                .map(|(_, r)| r.outcome.clone())
                .unwrap_or_else(|| panic!("proposal {id} unresolved"))
        }

        /// Ticks enough for heartbeats to carry the commit index everywhere.
        fn settle(&mut self) {
            for _ in 0..5 {
                for node in self.nodes.values_mut() {
                    node.tick();
                }
                self.pump();
            }
        }
    }

    fn config(id: u64) -> MetaConfig {
        let mut c = MetaConfig::new(id, 42);
        c.snapshot_interval_entries = 8;
        c
    }

    fn create(name: &str, replicas: Vec<Vec<u64>>) -> MetaCommand {
        MetaCommand::CreateTopic {
            name: name.into(),
            config: TopicConfig {
                partitions: replicas.len() as u32,
                replication_factor: replicas[0].len() as u16,
                retention_bytes: None,
                retention_ms: None,
                created_ms: 5,
            },
            replicas,
        }
    }

    #[test]
    fn three_voters_elect_one_leader_and_apply_the_same_commands() {
        let mut net = Net::new(&[1, 2, 3], &[]);
        let leader = net.elect();
        let outcome = net.propose(leader, create("orders", vec![vec![1, 2, 3]]));
        assert_eq!(outcome, ProposalOutcome::Applied(Ok(())));
        let outcome = net.propose(leader, create("orders", vec![vec![1, 2, 3]]));
        assert_eq!(
            outcome,
            ProposalOutcome::Applied(Err(Rejection::TopicExists("orders".into())))
        );
        net.settle();
        let states: Vec<Vec<u8>> = net
            .nodes
            .values()
            .map(|n| n.state().encode_snapshot())
            .collect();
        assert!(states.windows(2).all(|w| w[0] == w[1]));
        assert!(net.nodes[&2].state().topic("orders").is_some());
        // Every node saw the same applied commands in the same order.
        let logs: Vec<Vec<(u64, MetaCommand)>> = net
            .applied
            .values()
            .map(|a| a.iter().map(|c| (c.index, c.command.clone())).collect())
            .collect();
        assert_eq!(logs.len(), 3);
        assert!(logs.windows(2).all(|w| w[0] == w[1]));

        let follower = *net.nodes.keys().find(|&&id| id != leader).unwrap();
        match net
            .nodes
            .get_mut(&follower)
            .unwrap()
            .propose(create("x", vec![vec![1]]))
        {
            Err(MetaError::NotLeader { leader: l, .. }) => assert_eq!(l, Some(leader)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn learner_joins_from_a_snapshot_and_is_promoted() {
        let mut net = Net::new(&[1, 2, 3], &[4]);
        let leader = net.elect();
        // Enough entries that the bootstrap log is compacted away.
        for i in 0..10 {
            net.propose(leader, create(&format!("t{i}"), vec![vec![1, 2]]));
        }
        let outcome = net.propose(
            leader,
            MetaCommand::ChangeMembership(MembershipChange::AddLearner(4)),
        );
        assert_eq!(outcome, ProposalOutcome::Applied(Ok(())));
        net.settle();
        let learner = &net.nodes[&4];
        assert_eq!(learner.state().topics().count(), 10);
        assert!(learner.state().members().learners.contains(&4));
        assert_eq!(learner.role(), StateRole::Follower);

        let leader_node = &net.nodes[&leader];
        assert!(leader_node.caught_up_learners().contains(&4));
        let live = [1, 2, 3, 4].into_iter().collect();
        assert_eq!(
            leader_node.next_membership_change(&live, 5),
            Some(MembershipChange::Promote(4))
        );
        assert_eq!(leader_node.next_membership_change(&live, 3), None);

        let node = net.nodes.get_mut(&leader).unwrap();
        node.propose(MetaCommand::ChangeMembership(MembershipChange::Promote(4)))
            .unwrap();
        // A second change before the first is applied is refused up front.
        assert!(matches!(
            node.propose(MetaCommand::ChangeMembership(MembershipChange::Remove(3))),
            Err(MetaError::MembershipChangePending)
        ));
        net.pump();
        net.settle();
        for node in net.nodes.values() {
            let voters: Vec<u64> = node.state().members().voters.iter().copied().collect();
            assert_eq!(voters, [1, 2, 3, 4], "on node {}", node.id());
            let conf = node.raw.raft.prs().conf().to_conf_state();
            let mut raft_voters = conf.voters.clone();
            raft_voters.sort_unstable();
            assert_eq!(raft_voters, [1, 2, 3, 4]);
        }
        // Invalid changes commit as typed rejections and change nothing.
        let outcome = net.propose(
            leader,
            MetaCommand::ChangeMembership(MembershipChange::Promote(9)),
        );
        assert_eq!(
            outcome,
            ProposalOutcome::Applied(Err(Rejection::NotLearner(9)))
        );
        // A removed voter: the rest carry on.
        let outcome = net.propose(
            leader,
            MetaCommand::ChangeMembership(MembershipChange::Remove(4)),
        );
        assert_eq!(outcome, ProposalOutcome::Applied(Ok(())));
        let outcome = net.propose(leader, create("after", vec![vec![1]]));
        assert_eq!(outcome, ProposalOutcome::Applied(Ok(())));
    }

    #[test]
    fn a_restarted_node_rebuilds_its_state_from_storage() {
        let mut net = Net::new(&[1, 2, 3], &[]);
        let leader = net.elect();
        for i in 0..12 {
            net.propose(leader, create(&format!("t{i}"), vec![vec![1]]));
        }
        net.settle();
        let victim = *net.nodes.keys().find(|&&id| id != leader).unwrap();
        let before = net.nodes[&victim].state().encode_snapshot();
        let term = net.nodes[&victim].term();
        net.nodes.remove(&victim);
        let disk = net.disks[&victim].clone();
        let mut node = MetaNode::open(config(victim), disk).unwrap();
        // The state comes back from the snapshot plus the committed tail.
        while node.poll_ready().unwrap().is_some() {}
        assert_eq!(node.state().encode_snapshot(), before);
        assert_eq!(node.term(), term);
        net.nodes.insert(victim, node);
        let outcome = net.propose(leader, create("later", vec![vec![2]]));
        assert_eq!(outcome, ProposalOutcome::Applied(Ok(())));
        net.settle();
        assert!(net.nodes[&victim].state().topic("later").is_some());
    }

    #[test]
    fn followers_hold_acknowledgements_until_synced() {
        let mut net = Net::new(&[1, 2, 3], &[]);
        let leader = net.elect();
        let id = net
            .nodes
            .get_mut(&leader)
            .unwrap()
            .propose(create("orders", vec![vec![1]]))
            .unwrap();
        let mut appends = Vec::new();
        let leader_node = net.nodes.get_mut(&leader).unwrap();
        while let Some(out) = leader_node.poll_ready().unwrap() {
            appends.extend(out.messages);
        }
        // The leader has not synced: it may send, but nothing is committed.
        assert!(leader_node.needs_sync());
        let follower = appends[0].to;
        let node = net.nodes.get_mut(&follower).unwrap();
        for m in appends.iter().filter(|m| m.to == follower) {
            node.step(&m.bytes).unwrap();
        }
        let mut sent = Vec::new();
        while let Some(out) = node.poll_ready().unwrap() {
            sent.extend(out.messages);
        }
        assert!(sent.is_empty(), "acknowledged before sync: {sent:?}");
        assert!(node.needs_sync());
        node.sync().unwrap();
        while let Some(out) = node.poll_ready().unwrap() {
            sent.extend(out.messages);
        }
        assert_eq!(sent.len(), 1);
        assert!(net.disks[&follower].durable_contains(id.index, id.term));
        let leader_node = net.nodes.get_mut(&leader).unwrap();
        for m in sent {
            leader_node.step(&m.bytes).unwrap();
        }
        net.pump();
        assert!(net.results.iter().any(|(n, r)| *n == leader
            && r.id == id
            && r.outcome == ProposalOutcome::Applied(Ok(()))));
    }

    #[test]
    fn a_single_voter_on_files_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let storage = FileMetaStorage::open(dir.path()).unwrap();
        let mut node = MetaNode::bootstrap(config(7), storage, &[7]).unwrap();
        for _ in 0..30 {
            node.tick();
            if node.is_leader() {
                break;
            }
        }
        assert!(node.is_leader());
        let mut ids = Vec::new();
        let mut done = Vec::new();
        for i in 0..20 {
            ids.push(
                node.propose(create(&format!("t{i}"), vec![vec![7]]))
                    .unwrap(),
            );
            loop {
                while let Some(out) = node.poll_ready().unwrap() {
                    done.extend(out.proposals);
                }
                if !node.needs_sync() {
                    break;
                }
                node.sync().unwrap();
            }
        }
        assert_eq!(done.len(), 20);
        assert!(done
            .iter()
            .all(|r| r.outcome == ProposalOutcome::Applied(Ok(()))));
        let before = node.state().encode_snapshot();
        drop(node);
        let storage = FileMetaStorage::open(dir.path()).unwrap();
        let mut node = MetaNode::bootstrap(config(7), storage, &[7]).unwrap();
        while node.poll_ready().unwrap().is_some() {}
        assert_eq!(node.state().encode_snapshot(), before);
    }

    #[test]
    fn garbage_and_misaddressed_messages_are_errors_not_panics() {
        let mut net = Net::new(&[1, 2, 3], &[]);
        let node = net.nodes.get_mut(&1).unwrap();
        assert!(matches!(
            node.step(&[0xff, 0xff, 0xff]),
            Err(MetaError::InvalidMessage(_))
        ));
        let mut m = Message {
            to: 2,
            from: 3,
            msg_type: MessageType::MsgHeartbeat,
            ..Message::default()
        };
        assert!(matches!(
            node.step(&m.write_to_bytes().unwrap()),
            Err(MetaError::Misaddressed { to: 2, node: 1 })
        ));
        m.to = 1;
        m.set_msg_type(MessageType::MsgHup);
        assert!(matches!(
            node.step(&m.write_to_bytes().unwrap()),
            Err(MetaError::InvalidMessage(_))
        ));
    }
}

//! Data replication: one Raft group (raft-rs) per topic partition, sans-IO.
//!
//! # Design
//!
//! - **The segment log is the Raft log.** A partition's data is written
//!   once: each Raft entry is one record batch, whose header carries the
//!   Raft term, appended to the partition's own log. [`ReplicaLog`] is the
//!   interface the driver needs from that log (indices, terms, suffix
//!   truncation, hard state, membership, durability, compaction);
//!   [`MemReplicaLog`] implements it in memory for tests and the simulator.
//!   Raft indices are not record offsets: elections and membership changes
//!   add entries with no records (control batches), so offsets are
//!   translated from the committed log, not equal to indices.
//! - **High watermark = commit index.** [`PartitionReplica::readable_up_to`]
//!   is Raft's commit index; no reader, on the leader or a follower, sees
//!   past it, so nothing a consumer read can be taken back by a leader
//!   change.
//! - **Acks.** `acks=none`: reply on [`PartitionReplica::propose`]
//!   returning `Ok`. `acks=leader`: reply on
//!   [`ReplicaEvent::LeaderDurable`] (the leader's own log synced the
//!   entry; lost if the leader dies before replicating it). `acks=all`:
//!   reply on [`ReplicaEvent::Acked`], emitted only once the entry is
//!   committed (on the synced logs of a majority of the voters, the leader
//!   counting only after its own sync) and applied by the leader (which
//!   raft-rs does only once the leader's own copy is synced too), and
//!   checked by term and index, so an entry overwritten by another leader
//!   is [`FailReason::Dropped`], never acked. A proposal whose leader lost leadership resolves when the
//!   commit index passes it, or fails as [`FailReason::LeadershipLost`]
//!   (outcome unknown) after a timeout: nothing stays pending forever.
//! - **Safety settings.** `check_quorum` (a leader cut off from its
//!   majority steps down within an election timeout, and could not commit
//!   anything anyway) and `pre_vote` (a returning node does not depose a
//!   healthy leader). Election timeout 10 ticks, heartbeat 1 tick.
//! - **Moves.** Single-step membership changes: add the new replica as a
//!   learner, wait until it is caught up
//!   ([`PartitionReplica::learner_caught_up`]), promote it, remove the old
//!   voter. A follower behind the leader's log start gets a Raft snapshot
//!   ("the log starts after index i, term t", the membership, and a payload
//!   saying where to fetch the data out of band).
//! - **Many groups per node.** [`ReplicaHost`] holds every replica of a
//!   shard: one tick for all, and per poll one [`Outbound`] envelope per
//!   destination node carrying every group's messages; heartbeats travel
//!   as 25-byte records, the newest per group (see [`envelope`]).
//! - **Sans-IO.** No I/O, clock, thread or process randomness: the caller
//!   delivers envelopes, ticks and syncs; election jitter comes from a
//!   seed. [`sim`] runs whole clusters under faults from a seed and checks
//!   the Raft invariants after every step.

pub mod envelope;
pub mod host;
pub mod log;
pub mod partition;
mod raft_tracing;
pub mod sim;

pub use crate::meta::MembershipChange;
pub use envelope::{Envelope, EnvelopeBuilder, EnvelopeError, Heartbeat, HeartbeatKind};
pub use host::{Delivery, HostStats, Outbound, ReplicaHost};
pub use log::{LogSnapshot, MemReplicaLog, ReplicaLog, ReplicaLogError};
pub use partition::{
    FailReason, PartitionReplica, PeerProgress, ProposalId, ReplicaConfig, ReplicaError,
    ReplicaEvent, ReplicaOutput, BOOTSTRAP_INDEX,
};
pub use raft::StateRole;

/// A partition's Raft group, assigned by the metadata layer to each
/// (topic, partition) at creation; stable across replica moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupId(pub u64);

impl std::fmt::Display for GroupId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "g{}", self.0)
    }
}

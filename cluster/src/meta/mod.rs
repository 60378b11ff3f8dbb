//! The metadata Raft group: one raft-rs group across the first 3 (or 5)
//! nodes as voters and every other node as a learner, replicating topics,
//! their configuration, partition assignments and consumer-group offsets.
//! Every node keeps the applied state in memory ([`MetaState`]) and
//! answers "who leads topic/partition X" from it.
//!
//! - [`command`]: the commands and their versioned encoding.
//! - [`state`]: the deterministic state machine, its snapshot.
//! - [`membership`]: group members and the learner → voter policy.
//! - [`storage`] / [`file_storage`]: the log (entries, hard state,
//!   snapshot) in memory or in a crash-safe file.
//! - [`node`]: the sans-IO driver over raft-rs's `RawNode`.
//! - [`sim`]: the deterministic simulator of a whole group under faults.
//!
//! Architecture invariant: nothing here reads a clock, a socket or a
//! process-random source (raft-rs's own election jitter is overridden from
//! a seed), so the simulator replays any run from its seed.

pub mod command;
pub mod file_storage;
pub mod membership;
pub mod node;
mod raft_tracing;
pub mod sim;
pub mod state;
pub mod storage;

pub use command::{decode_command, encode_command, DecodeError, MetaCommand, TopicConfig};
pub use file_storage::FileMetaStorage;
pub use membership::{next_membership_change, GroupMembers, MembershipChange};
pub use node::{
    AppliedCommand, Leadership, MetaConfig, MetaError, MetaNode, MetaReady, PeerMessage,
    ProposalId, ProposalOutcome, ProposalResult, BOOTSTRAP_INDEX,
};
pub use raft::StateRole;
pub use state::{MetaState, PartitionAssignment, Rejection, TopicMeta};
pub use storage::{MemMetaStorage, MetaStorage, MetaStorageError};

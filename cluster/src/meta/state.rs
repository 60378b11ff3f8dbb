//! The replicated metadata state machine: topics and their configuration,
//! partition assignments (replica set, leader, leader epoch), consumer
//! group offsets and the group's own membership.
//!
//! Applying is deterministic: the outcome depends only on the state and the
//! command (no clock, no randomness, ordered maps only), so every replica
//! that applied the same log prefix holds the same bytes. Invalid commands
//! are committed like any other entry and rejected identically everywhere,
//! with a typed [`Rejection`] for the proposer.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::command::{decode_versioned, encode_versioned, DecodeError, MetaCommand, TopicConfig};
use super::membership::{GroupMembers, MembershipChange};
use crate::placement::REPLICATION_FACTOR_MAX;

/// Version byte of [`MetaState::encode_snapshot`].
pub const SNAPSHOT_ENCODING_VERSION: u8 = 1;

/// Topic names become directory names on every replica.
pub const TOPIC_NAME_BYTES_MAX: usize = 200;
pub const PARTITIONS_MAX: u32 = 4096;
pub const GROUP_NAME_BYTES_MAX: usize = 255;

/// One partition's placement and leadership.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionAssignment {
    pub replicas: Vec<u64>,
    pub leader: u64,
    /// Bumped on every change of the assignment; a leader writes with it so
    /// followers can refuse a deposed leader's batches.
    pub leader_epoch: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMeta {
    pub config: TopicConfig,
    /// Index = partition.
    pub partitions: Vec<PartitionAssignment>,
}

/// Why a committed command changed nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("unknown topic {0:?}")]
    UnknownTopic(String),
    #[error("topic {0:?} already exists")]
    TopicExists(String),
    #[error("topic {topic:?} has no partition {partition}")]
    UnknownPartition { topic: String, partition: u32 },
    #[error("stale leader epoch {proposed} for {topic:?}/{partition}: current is {current}")]
    StaleEpoch {
        topic: String,
        partition: u32,
        current: u64,
        proposed: u64,
    },
    #[error("invalid topic {name:?}: {reason}")]
    InvalidTopic { name: String, reason: &'static str },
    #[error("invalid assignment for {topic:?}/{partition}: {reason}")]
    InvalidAssignment {
        topic: String,
        partition: u32,
        reason: &'static str,
    },
    #[error("invalid group name {group:?}: {reason}")]
    InvalidGroup { group: String, reason: &'static str },
    #[error("node {0} is already in the metadata group")]
    AlreadyMember(u64),
    #[error("node {0} is not a learner of the metadata group")]
    NotLearner(u64),
    #[error("node {0} is not in the metadata group")]
    NotMember(u64),
    #[error("node {0} is the last voter of the metadata group")]
    LastVoter(u64),
    #[error("node id 0 is reserved")]
    InvalidNodeId,
    #[error("membership changes must be Raft configuration changes")]
    MembershipOutsideConfChange,
    #[error("configuration change is not a single add/promote/remove")]
    UnsupportedConfChange,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaState {
    applied_index: u64,
    topics: BTreeMap<String, TopicMeta>,
    /// group → (topic, partition) → next offset to consume.
    group_offsets: BTreeMap<String, BTreeMap<(String, u32), u64>>,
    members: GroupMembers,
}

impl MetaState {
    /// The state every initial voter starts from (the bootstrap snapshot).
    pub fn bootstrap(voters: impl IntoIterator<Item = u64>, index: u64) -> Self {
        Self {
            applied_index: index,
            members: GroupMembers {
                voters: voters.into_iter().collect(),
                learners: Default::default(),
            },
            ..Self::default()
        }
    }

    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    pub fn members(&self) -> &GroupMembers {
        &self.members
    }

    pub fn topics(&self) -> impl Iterator<Item = (&str, &TopicMeta)> {
        self.topics.iter().map(|(name, meta)| (name.as_str(), meta))
    }

    pub fn topic(&self, name: &str) -> Option<&TopicMeta> {
        self.topics.get(name)
    }

    /// Who leads `topic`/`partition`, and with which replicas: answered
    /// from memory on every node.
    pub fn partition(&self, topic: &str, partition: u32) -> Option<&PartitionAssignment> {
        self.topics.get(topic)?.partitions.get(partition as usize)
    }

    pub fn group_offset(&self, group: &str, topic: &str, partition: u32) -> Option<u64> {
        self.group_offsets
            .get(group)?
            .get(&(topic.to_owned(), partition))
            .copied()
    }

    /// Record that entry `index` changed nothing (a new leader's empty
    /// entry), so the applied index keeps matching the log.
    pub fn skip(&mut self, index: u64) {
        self.advance(index);
    }

    /// Apply the committed command at log position `index`.
    pub fn apply(&mut self, index: u64, command: &MetaCommand) -> Result<(), Rejection> {
        self.advance(index);
        match command {
            MetaCommand::CreateTopic {
                name,
                config,
                replicas,
            } => self.create_topic(name, config, replicas),
            MetaCommand::DeleteTopic { name } => self.delete_topic(name),
            MetaCommand::SetAssignment {
                topic,
                partition,
                replicas,
                leader,
                leader_epoch,
            } => self.set_assignment(topic, *partition, replicas, *leader, *leader_epoch),
            MetaCommand::CommitGroupOffset {
                group,
                topic,
                partition,
                offset,
            } => self.commit_group_offset(group, topic, *partition, *offset),
            MetaCommand::ChangeMembership(change) => self.change_membership(*change),
        }
    }

    fn advance(&mut self, index: u64) {
        debug_assert!(
            index > self.applied_index,
            "apply of {index} after {}",
            self.applied_index
        );
        self.applied_index = index;
    }

    fn create_topic(
        &mut self,
        name: &str,
        config: &TopicConfig,
        replicas: &[Vec<u64>],
    ) -> Result<(), Rejection> {
        let invalid = |reason| Rejection::InvalidTopic {
            name: name.to_owned(),
            reason,
        };
        validate_topic_name(name).map_err(invalid)?;
        if self.topics.contains_key(name) {
            return Err(Rejection::TopicExists(name.to_owned()));
        }
        if config.partitions == 0 || config.partitions > PARTITIONS_MAX {
            return Err(invalid("partition count out of range"));
        }
        let rf = config.replication_factor as usize;
        if rf == 0 || rf > REPLICATION_FACTOR_MAX {
            return Err(invalid("replication factor out of range"));
        }
        if replicas.len() != config.partitions as usize {
            return Err(invalid("one replica set per partition is required"));
        }
        let mut partitions = Vec::with_capacity(replicas.len());
        for (partition, set) in replicas.iter().enumerate() {
            validate_replicas(set).map_err(|reason| Rejection::InvalidAssignment {
                topic: name.to_owned(),
                partition: partition as u32,
                reason,
            })?;
            if set.len() != rf {
                return Err(Rejection::InvalidAssignment {
                    topic: name.to_owned(),
                    partition: partition as u32,
                    reason: "replica count differs from the replication factor",
                });
            }
            partitions.push(PartitionAssignment {
                replicas: set.clone(),
                leader: set[0],
                leader_epoch: 1,
            });
        }
        self.topics.insert(
            name.to_owned(),
            TopicMeta {
                config: config.clone(),
                partitions,
            },
        );
        Ok(())
    }

    fn delete_topic(&mut self, name: &str) -> Result<(), Rejection> {
        if self.topics.remove(name).is_none() {
            return Err(Rejection::UnknownTopic(name.to_owned()));
        }
        // A later topic of the same name must not inherit old offsets.
        for offsets in self.group_offsets.values_mut() {
            offsets.retain(|(topic, _), _| topic != name);
        }
        self.group_offsets.retain(|_, offsets| !offsets.is_empty());
        Ok(())
    }

    fn set_assignment(
        &mut self,
        topic: &str,
        partition: u32,
        replicas: &[u64],
        leader: u64,
        leader_epoch: u64,
    ) -> Result<(), Rejection> {
        let current = self.partition_mut(topic, partition)?;
        let invalid = |reason| Rejection::InvalidAssignment {
            topic: topic.to_owned(),
            partition,
            reason,
        };
        validate_replicas(replicas).map_err(invalid)?;
        if !replicas.contains(&leader) {
            return Err(invalid("leader is not a replica"));
        }
        if leader_epoch <= current.leader_epoch {
            return Err(Rejection::StaleEpoch {
                topic: topic.to_owned(),
                partition,
                current: current.leader_epoch,
                proposed: leader_epoch,
            });
        }
        *current = PartitionAssignment {
            replicas: replicas.to_vec(),
            leader,
            leader_epoch,
        };
        Ok(())
    }

    fn commit_group_offset(
        &mut self,
        group: &str,
        topic: &str,
        partition: u32,
        offset: u64,
    ) -> Result<(), Rejection> {
        if group.is_empty() || group.len() > GROUP_NAME_BYTES_MAX {
            return Err(Rejection::InvalidGroup {
                group: group.to_owned(),
                reason: "length must be 1..=255 bytes",
            });
        }
        self.partition_mut(topic, partition)?;
        self.group_offsets
            .entry(group.to_owned())
            .or_default()
            .insert((topic.to_owned(), partition), offset);
        Ok(())
    }

    fn change_membership(&mut self, change: MembershipChange) -> Result<(), Rejection> {
        let node = change.node();
        if node == 0 {
            return Err(Rejection::InvalidNodeId);
        }
        let members = &mut self.members;
        match change {
            MembershipChange::AddLearner(_) => {
                if members.contains(node) {
                    return Err(Rejection::AlreadyMember(node));
                }
                members.learners.insert(node);
            }
            MembershipChange::Promote(_) => {
                if !members.learners.remove(&node) {
                    return Err(Rejection::NotLearner(node));
                }
                members.voters.insert(node);
            }
            MembershipChange::Remove(_) => {
                if members.voters.contains(&node) {
                    if members.voters.len() == 1 {
                        return Err(Rejection::LastVoter(node));
                    }
                    members.voters.remove(&node);
                } else if !members.learners.remove(&node) {
                    return Err(Rejection::NotMember(node));
                }
            }
        }
        Ok(())
    }

    fn partition_mut(
        &mut self,
        topic: &str,
        partition: u32,
    ) -> Result<&mut PartitionAssignment, Rejection> {
        let meta = self
            .topics
            .get_mut(topic)
            .ok_or_else(|| Rejection::UnknownTopic(topic.to_owned()))?;
        meta.partitions
            .get_mut(partition as usize)
            .ok_or_else(|| Rejection::UnknownPartition {
                topic: topic.to_owned(),
                partition,
            })
    }

    /// The whole state as bytes: the data of a Raft snapshot. Ordered maps
    /// only, so equal states encode to equal bytes.
    pub fn encode_snapshot(&self) -> Vec<u8> {
        encode_versioned(SNAPSHOT_ENCODING_VERSION, self)
    }

    pub fn restore(bytes: &[u8]) -> Result<Self, DecodeError> {
        decode_versioned(SNAPSHOT_ENCODING_VERSION, bytes)
    }
}

fn validate_topic_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > TOPIC_NAME_BYTES_MAX {
        return Err("length must be 1..=200 bytes");
    }
    if name == "." || name == ".." {
        return Err("'.' and '..' are not names");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return Err("only ASCII letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}

fn validate_replicas(replicas: &[u64]) -> Result<(), &'static str> {
    if replicas.is_empty() || replicas.len() > REPLICATION_FACTOR_MAX {
        return Err("replica count out of range");
    }
    if replicas.contains(&0) {
        return Err("node id 0 is reserved");
    }
    for (i, node) in replicas.iter().enumerate() {
        if replicas[..i].contains(node) {
            return Err("a node appears twice");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(partitions: u32, rf: u16) -> TopicConfig {
        TopicConfig {
            partitions,
            replication_factor: rf,
            retention_bytes: None,
            retention_ms: Some(86_400_000),
            created_ms: 1,
        }
    }

    fn create(name: &str) -> MetaCommand {
        MetaCommand::CreateTopic {
            name: name.into(),
            config: config(2, 2),
            replicas: vec![vec![1, 2], vec![2, 3]],
        }
    }

    fn assign(partition: u32, replicas: Vec<u64>, leader: u64, epoch: u64) -> MetaCommand {
        MetaCommand::SetAssignment {
            topic: "orders".into(),
            partition,
            replicas,
            leader,
            leader_epoch: epoch,
        }
    }

    fn offset(group: &str, topic: &str, partition: u32, offset: u64) -> MetaCommand {
        MetaCommand::CommitGroupOffset {
            group: group.into(),
            topic: topic.into(),
            partition,
            offset,
        }
    }

    /// Applies commands at consecutive indices, returning each outcome.
    fn run(state: &mut MetaState, commands: &[MetaCommand]) -> Vec<Result<(), Rejection>> {
        commands
            .iter()
            .map(|c| {
                let index = state.applied_index() + 1;
                state.apply(index, c)
            })
            .collect()
    }

    #[test]
    fn topics_assignments_and_offsets() {
        let mut s = MetaState::bootstrap([1, 2, 3], 1);
        let out = run(
            &mut s,
            &[
                create("orders"),
                assign(1, vec![3, 4], 4, 2),
                offset("billing", "orders", 1, 99),
            ],
        );
        assert!(out.iter().all(Result::is_ok), "{out:?}");
        assert_eq!(s.applied_index(), 4);
        let p0 = s.partition("orders", 0).unwrap();
        assert_eq!((p0.leader, p0.leader_epoch), (1, 1));
        let p1 = s.partition("orders", 1).unwrap();
        assert_eq!(
            (&p1.replicas, p1.leader, p1.leader_epoch),
            (&vec![3, 4], 4, 2)
        );
        assert_eq!(s.group_offset("billing", "orders", 1), Some(99));
        assert_eq!(s.group_offset("billing", "orders", 0), None);
    }

    #[test]
    fn rejections_are_typed_and_change_nothing() {
        let mut s = MetaState::bootstrap([1, 2, 3], 1);
        run(&mut s, &[create("orders")]);
        let before = s.clone();
        let out = run(
            &mut s,
            &[
                create("orders"),
                MetaCommand::DeleteTopic {
                    name: "nope".into(),
                },
                assign(0, vec![1, 2], 1, 1),
                assign(5, vec![1, 2], 1, 9),
                assign(0, vec![1, 2], 3, 9),
                assign(0, vec![1, 1], 1, 9),
                offset("g", "nope", 0, 1),
                offset("", "orders", 0, 1),
                MetaCommand::CreateTopic {
                    name: "../etc".into(),
                    config: config(1, 1),
                    replicas: vec![vec![1]],
                },
                MetaCommand::CreateTopic {
                    name: "short".into(),
                    config: config(2, 1),
                    replicas: vec![vec![1]],
                },
            ],
        );
        assert_eq!(out[0], Err(Rejection::TopicExists("orders".into())));
        assert_eq!(out[1], Err(Rejection::UnknownTopic("nope".into())));
        assert_eq!(
            out[2],
            Err(Rejection::StaleEpoch {
                topic: "orders".into(),
                partition: 0,
                current: 1,
                proposed: 1
            })
        );
        assert_eq!(
            out[3],
            Err(Rejection::UnknownPartition {
                topic: "orders".into(),
                partition: 5
            })
        );
        assert!(matches!(out[4], Err(Rejection::InvalidAssignment { .. })));
        assert!(matches!(out[5], Err(Rejection::InvalidAssignment { .. })));
        assert_eq!(out[6], Err(Rejection::UnknownTopic("nope".into())));
        assert!(matches!(out[7], Err(Rejection::InvalidGroup { .. })));
        assert!(matches!(out[8], Err(Rejection::InvalidTopic { .. })));
        assert!(matches!(out[9], Err(Rejection::InvalidTopic { .. })));
        // Only the applied index moved.
        let mut expected = before;
        expected.applied_index = s.applied_index();
        assert_eq!(s, expected);
    }

    #[test]
    fn deleting_a_topic_drops_its_offsets() {
        let mut s = MetaState::default();
        run(
            &mut s,
            &[
                create("orders"),
                create("audit"),
                offset("g", "orders", 0, 5),
                offset("g", "audit", 0, 6),
                offset("h", "orders", 1, 7),
                MetaCommand::DeleteTopic {
                    name: "orders".into(),
                },
                create("orders"),
            ],
        );
        assert_eq!(s.group_offset("g", "orders", 0), None);
        assert_eq!(s.group_offset("h", "orders", 1), None);
        assert_eq!(s.group_offset("g", "audit", 0), Some(6));
    }

    #[test]
    fn membership_changes_are_validated() {
        let mut s = MetaState::bootstrap([1], 1);
        let m = |c| MetaCommand::ChangeMembership(c);
        use MembershipChange::*;
        let out = run(
            &mut s,
            &[
                m(Promote(2)),
                m(AddLearner(2)),
                m(AddLearner(2)),
                m(Promote(2)),
                m(Remove(9)),
                m(Remove(1)),
                m(Remove(2)),
                m(Remove(1)),
                m(AddLearner(0)),
            ],
        );
        assert_eq!(
            out,
            vec![
                Err(Rejection::NotLearner(2)),
                Ok(()),
                Err(Rejection::AlreadyMember(2)),
                Ok(()),
                Err(Rejection::NotMember(9)),
                Ok(()),
                Err(Rejection::LastVoter(2)),
                Err(Rejection::NotMember(1)),
                Err(Rejection::InvalidNodeId),
            ]
        );
        assert_eq!(s.members().voters.iter().copied().collect::<Vec<_>>(), [2]);
    }

    #[test]
    fn snapshot_round_trips_and_equal_states_encode_equal() {
        let mut a = MetaState::bootstrap([1, 2, 3], 1);
        run(
            &mut a,
            &[
                create("orders"),
                create("audit"),
                offset("g", "audit", 1, 3),
            ],
        );
        let bytes = a.encode_snapshot();
        let b = MetaState::restore(&bytes).unwrap();
        assert_eq!(a, b);
        assert_eq!(b.encode_snapshot(), bytes);
        // Same commands in the same order from another start point: equal
        // bytes (no hash-order or address-dependent encoding).
        let mut c = MetaState::bootstrap([3, 2, 1], 1);
        run(
            &mut c,
            &[
                create("orders"),
                create("audit"),
                offset("g", "audit", 1, 3),
            ],
        );
        assert_eq!(c.encode_snapshot(), bytes);
        assert!(matches!(
            MetaState::restore(&bytes[..bytes.len() - 1]),
            Err(DecodeError::Malformed(_))
        ));
    }
}

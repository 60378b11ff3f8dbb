//! What the simulated clients and operator do: random metadata commands
//! to whoever claims to lead, and the learner → voter membership policy.

use std::collections::BTreeSet;

use super::{Rng, Sim};
use crate::meta::{MetaCommand, MetaError, TopicConfig};

impl Sim {
    pub(super) fn client(&mut self) {
        self.next_client_ms = self.now_ms + self.rng.range(10, 150);
        let leaders: Vec<u64> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.node.as_ref().is_some_and(|m| m.is_leader()))
            .map(|(&id, _)| id)
            .collect();
        if leaders.is_empty() {
            return;
        }
        // Possibly a deposed leader that does not know yet: it must never
        // acknowledge anything.
        let target = self.rng.pick(&leaders);
        self.touched.insert(target);
        let command = self.random_command(target);
        self.stats.proposals += 1;
        let node = self.nodes.get_mut(&target).unwrap().node.as_mut().unwrap();
        match node.propose(command) {
            Ok(id) => self.note(8, id.index),
            Err(
                MetaError::NotLeader { .. }
                | MetaError::ProposalDropped
                | MetaError::ProposalsFull { .. },
            ) => {}
            Err(e) => self.fail(format!("propose on node {target}: {e}")),
        }
    }

    fn random_command(&mut self, on: u64) -> MetaCommand {
        let topic = format!("t{}", self.rng.range(0, 7));
        let state = self.nodes[&on].node.as_ref().unwrap().state();
        let current = state.topic(&topic).cloned();
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        let replicas = |rng: &mut Rng, n: usize| {
            let mut set: Vec<u64> = Vec::new();
            while set.len() < n {
                let id = rng.pick(&ids);
                if !set.contains(&id) {
                    set.push(id);
                }
            }
            set
        };
        // Mostly commands that apply, some that the state machine rejects
        // (both paths must replicate identically).
        let partitions = current.as_ref().map_or(1, |t| t.partitions.len() as u64);
        let op = match (current.is_some(), self.rng.range(0, 99)) {
            (false, 0..=79) | (true, 0..=4) => 0,
            (true, 5..=11) => 3,
            (false, 80..=89) | (true, 12..=55) => 4,
            _ => 7,
        };
        match op {
            0 => {
                let partitions = self.rng.range(1, 3) as u32;
                let rf = self.rng.range(1, 3) as usize;
                MetaCommand::CreateTopic {
                    name: topic,
                    config: TopicConfig {
                        partitions,
                        replication_factor: rf as u16,
                        retention_bytes: None,
                        retention_ms: Some(self.rng.range(1, 1_000_000)),
                        created_ms: self.now_ms as i64,
                    },
                    replicas: (0..partitions)
                        .map(|_| replicas(&mut self.rng, rf))
                        .collect(),
                }
            }
            3 => MetaCommand::DeleteTopic { name: topic },
            4 => {
                // Now and then one past the last partition.
                let partition = self.rng.range(0, partitions) as u32;
                let epoch = current
                    .as_ref()
                    .and_then(|t| t.partitions.get(partition as usize))
                    .map_or(1, |p| p.leader_epoch);
                // Mostly the next epoch, sometimes a stale one.
                let leader_epoch = if self.rng.chance(0.8) {
                    epoch + 1
                } else {
                    epoch
                };
                let set = replicas(&mut self.rng, 2);
                MetaCommand::SetAssignment {
                    topic,
                    partition,
                    leader: set[1],
                    replicas: set,
                    leader_epoch,
                }
            }
            _ => MetaCommand::CommitGroupOffset {
                group: format!("g{}", self.rng.range(0, 2)),
                topic,
                partition: self.rng.range(0, partitions) as u32,
                offset: self.rng.range(0, 1 << 40),
            },
        }
    }

    /// The membership policy, run by whoever leads, on what "gossip"
    /// reports alive (here: the running nodes).
    pub(super) fn operator(&mut self) {
        self.next_operator_ms = self.now_ms + 500;
        let Some(leader) = self.leader() else {
            return;
        };
        let live: BTreeSet<u64> = self.up_ids().into_iter().collect();
        let target = self.voters_target;
        self.touched.insert(leader);
        let node = self.nodes.get_mut(&leader).unwrap().node.as_mut().unwrap();
        let Some(change) = node.next_membership_change(&live, target) else {
            return;
        };
        match node.propose(MetaCommand::ChangeMembership(change)) {
            Ok(id) => self.note(9, id.index),
            Err(
                MetaError::MembershipChangePending
                | MetaError::ProposalDropped
                | MetaError::ProposalsFull { .. },
            ) => {}
            Err(e) => self.fail(format!("membership change {change:?} on {leader}: {e}")),
        }
    }
}

//! Who is in the metadata Raft group, and the one-step policy that grows
//! it: every live node joins as a learner (it gets every update, votes in
//! nothing), and learners that have caught up are promoted while the group
//! has fewer voters than its target (3 or 5).
//!
//! Learner first, then promotion, because a voter that joins empty counts
//! towards the quorum before it has the log: with 3 voters and one slow new
//! voter, one more failure stops commits. A caught-up learner turns into a
//! voter without that window.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// The members of the metadata group as the replicated state machine sees
/// them (it mirrors Raft's own configuration, change by change).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMembers {
    pub voters: BTreeSet<u64>,
    pub learners: BTreeSet<u64>,
}

impl GroupMembers {
    pub fn contains(&self, node: u64) -> bool {
        self.voters.contains(&node) || self.learners.contains(&node)
    }
}

/// One change of the group, committed through a Raft configuration change
/// (never a plain log entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MembershipChange {
    /// A new node starts receiving the log (by snapshot first).
    AddLearner(u64),
    /// A learner becomes a voter.
    Promote(u64),
    /// A voter or learner leaves the group.
    Remove(u64),
}

impl MembershipChange {
    pub fn node(&self) -> u64 {
        match *self {
            Self::AddLearner(n) | Self::Promote(n) | Self::Remove(n) => n,
        }
    }
}

/// The next change that moves the group towards "every live node a member,
/// `voters_target` voters": add the lowest-id live non-member as a learner,
/// else promote the lowest-id caught-up live learner while voters are short.
///
/// Never removes anyone: taking a dead voter out is an operator decision
/// (it may be down for a reboot), and removals shrink the quorum.
pub fn next_membership_change(
    members: &GroupMembers,
    live: &BTreeSet<u64>,
    caught_up: &BTreeSet<u64>,
    voters_target: usize,
) -> Option<MembershipChange> {
    if let Some(&node) = live.iter().find(|n| !members.contains(**n)) {
        return Some(MembershipChange::AddLearner(node));
    }
    if members.voters.len() < voters_target {
        return members
            .learners
            .iter()
            .find(|n| live.contains(n) && caught_up.contains(n))
            .map(|&n| MembershipChange::Promote(n));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[u64]) -> BTreeSet<u64> {
        ids.iter().copied().collect()
    }

    #[test]
    fn joins_as_learner_then_promotes_up_to_the_target() {
        let mut members = GroupMembers {
            voters: set(&[1, 2, 3]),
            learners: set(&[]),
        };
        let live = set(&[1, 2, 3, 4, 5, 6]);
        // Everyone joins first, lowest id first.
        assert_eq!(
            next_membership_change(&members, &live, &set(&[]), 5),
            Some(MembershipChange::AddLearner(4))
        );
        members.learners = set(&[4, 5, 6]);
        // Nobody caught up: nothing to promote yet.
        assert_eq!(next_membership_change(&members, &live, &set(&[]), 5), None);
        assert_eq!(
            next_membership_change(&members, &live, &set(&[5, 6]), 5),
            Some(MembershipChange::Promote(5))
        );
        members.learners = set(&[4, 6]);
        members.voters = set(&[1, 2, 3, 5]);
        assert_eq!(
            next_membership_change(&members, &live, &set(&[6]), 5),
            Some(MembershipChange::Promote(6))
        );
        members.learners = set(&[4]);
        members.voters = set(&[1, 2, 3, 5, 6]);
        // At the target: the rest stay learners.
        assert_eq!(next_membership_change(&members, &live, &set(&[4]), 5), None);
    }

    #[test]
    fn dead_learners_are_not_promoted_and_dead_voters_not_removed() {
        let members = GroupMembers {
            voters: set(&[1, 2]),
            learners: set(&[3]),
        };
        // 3 is caught up but not live (gossip says it is down).
        assert_eq!(
            next_membership_change(&members, &set(&[1]), &set(&[3]), 3),
            None
        );
    }
}

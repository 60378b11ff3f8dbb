//! The simulator's checks, run after every step, and the convergence
//! test at the end.

use std::collections::BTreeSet;

use super::Sim;
use crate::meta::ProposalId;

/// An acknowledged proposal, watched until it cannot be lost any more.
pub(super) struct Ack {
    pub(super) id: ProposalId,
    /// The voter sets the committing leader may have counted its quorum
    /// in (before and after the step that committed it: applying a
    /// configuration change can itself advance the commit index).
    pub(super) configs: Vec<BTreeSet<u64>>,
    /// Nodes whose synced storage holds it, as of the last check.
    pub(super) holders: BTreeSet<u64>,
}

impl Sim {
    pub(super) fn check(&mut self) {
        // Only the nodes this step reached can have changed (the others'
        // checks from earlier steps still hold).
        let touched = std::mem::take(&mut self.touched);
        // At most one leader per term.
        for &id in &touched {
            let Some(m) = &self.nodes[&id].node else {
                continue;
            };
            if m.is_leader() {
                let first = *self.leaders.entry(m.term()).or_insert(id);
                if first != id {
                    self.fail(format!(
                        "two leaders in term {}: {first} and {id}",
                        m.term()
                    ));
                }
            }
        }
        // Committed entries never change.
        for &id in &touched {
            let n = &self.nodes[&id];
            let Some(m) = &n.node else { continue };
            let commit = m.commit_index();
            let from = n.checked_commit.max(n.disk.first_index_now()).max(1);
            // The entry at the commit index is always re-read: it is where
            // an overwrite would show first.
            let mut indices: Vec<u64> = (from..=commit).collect();
            if commit > 0 && !indices.contains(&commit) {
                indices.push(commit);
            }
            let newly_committed = if m.is_leader() && commit > n.checked_commit {
                let configs = vec![
                    n.voters_at_check.clone(),
                    m.state().members().voters.clone(),
                ];
                Some((n.checked_commit + 1..=commit, configs))
            } else {
                None
            };
            let voters = &m.state().members().voters;
            let voters = (*voters != n.voters_at_check).then(|| voters.clone());
            let disk = n.disk.clone();
            if let Some((range, configs)) = newly_committed {
                for index in range {
                    self.commit_configs
                        .entry(index)
                        .or_insert_with(|| configs.clone());
                }
            }
            for index in indices {
                let Some((term, data)) = disk.entry_at(index) else {
                    continue;
                };
                self.record_committed(id, index, term, Some(data));
            }
            let n = self.nodes.get_mut(&id).unwrap();
            n.checked_commit = commit;
            if let Some(voters) = voters {
                n.voters_at_check = voters;
            }
        }
        // Acknowledged proposals: committed as acknowledged, and on the
        // synced storage of a majority of the voters they were acked under.
        // Whether an entry is on a node's synced storage changes only when
        // that storage does (a sync or a crash), so each ack is checked
        // when it is new and again whenever one of its voters' storage
        // changed: the property holds after every step.
        let changed = std::mem::take(&mut self.durable_changed);
        let first_new = self.acks_checked;
        self.acks_checked = self.acks.len();
        if !changed.is_empty() || first_new < self.acks.len() {
            self.check_acks(&changed, first_new);
        }
        self.check_states(&touched);
        self.measure_isolation();
    }

    /// A node showed `index` committed with `term` (and `data`): it must
    /// match whatever was seen committed there before.
    pub(super) fn record_committed(
        &mut self,
        node: u64,
        index: u64,
        term: u64,
        data: Option<Vec<u8>>,
    ) {
        match self.committed.get_mut(&index) {
            None => {
                self.committed.insert(index, (term, data));
            }
            Some((t, _)) if *t != term => {
                let t = *t;
                self.fail(format!(
                    "committed entry {index} changed on node {node}: term {t} -> {term}"
                ));
            }
            Some((_, seen)) => match (seen.as_ref(), data) {
                (Some(a), Some(b)) if *a != b => self.fail(format!(
                    "committed entry {index} changed on node {node}: same term, other data"
                )),
                (None, Some(b)) => *seen = Some(b),
                _ => {}
            },
        }
    }

    fn check_acks(&mut self, changed: &BTreeSet<u64>, first_new: usize) {
        let mut failure = None;
        for (i, ack) in self.acks.iter_mut().enumerate() {
            let fresh = i >= first_new;
            if fresh {
                match self.committed.get(&ack.id.index) {
                    Some((term, _)) if *term == ack.id.term => {}
                    other => {
                        failure = Some(format!(
                            "acknowledged {} but the committed entry there is {:?}",
                            ack.id,
                            other.map(|(t, _)| t)
                        ));
                        break;
                    }
                }
                match self.commit_configs.get(&ack.id.index) {
                    Some(configs) => ack.configs = configs.clone(),
                    None => {
                        failure = Some(format!(
                            "acknowledged {} but no leader was seen committing it",
                            ack.id
                        ));
                        break;
                    }
                }
            } else if ack.configs.iter().all(|c| changed.is_disjoint(c)) {
                continue;
            }
            for v in ack.configs.iter().flatten() {
                if fresh || changed.contains(v) {
                    if self.nodes[v]
                        .disk
                        .durable_contains(ack.id.index, ack.id.term)
                    {
                        ack.holders.insert(*v);
                    } else {
                        ack.holders.remove(v);
                    }
                }
            }
            let majority = ack
                .configs
                .iter()
                .any(|c| c.intersection(&ack.holders).count() * 2 > c.len());
            if !majority {
                failure = Some(format!(
                    "acknowledged {} is durable only on {:?}, no majority of {:?}",
                    ack.id, ack.holders, ack.configs
                ));
                break;
            }
        }
        if let Some(what) = failure {
            self.fail(what);
        }
        // Settling only moves when a synced snapshot does.
        let mut snapshot_moved = false;
        for &id in changed {
            let index = self.nodes[&id].disk.durable_snapshot_index();
            let seen = self.nodes.get_mut(&id).unwrap();
            if index > seen.durable_snapshot_seen {
                seen.durable_snapshot_seen = index;
                snapshot_moved = true;
            }
        }
        if !snapshot_moved {
            return;
        }
        let nodes = &self.nodes;
        let before = self.acks.len();
        self.acks.retain(|ack| {
            let settled = |c: &BTreeSet<u64>| {
                let covered = c
                    .iter()
                    .filter(|v| nodes[v].disk.durable_snapshot_index() >= ack.id.index)
                    .count();
                covered * 2 > c.len()
            };
            !ack.configs.iter().any(settled)
        });
        self.acks_settled += (before - self.acks.len()) as u64;
        self.acks_checked = self.acks.len();
    }

    fn check_states(&mut self, touched: &BTreeSet<u64>) {
        // Applied states agree byte for byte at each applied index.
        for &id in touched {
            let n = &self.nodes[&id];
            let Some(m) = &n.node else { continue };
            let applied = m.applied_index();
            if applied == n.checked_applied {
                continue;
            }
            let bytes = m.state().encode_snapshot();
            match self.states.get(&applied) {
                Some(seen) if *seen != bytes => self.fail(format!(
                    "node {id} state at applied index {applied} differs from another node's"
                )),
                Some(_) => {}
                None => {
                    self.states.insert(applied, bytes);
                }
            }
            self.nodes.get_mut(&id).unwrap().checked_applied = applied;
        }
    }

    /// Failover time while a leader is isolated.
    fn measure_isolation(&mut self) {
        if let Some(iso) = &mut self.isolation {
            let now = self.now_ms;
            let nodes = &self.nodes;
            if iso.elected_ms.is_none() {
                let elected = nodes.iter().any(|(&id, n)| {
                    id != iso.leader
                        && n.node
                            .as_ref()
                            .is_some_and(|m| m.is_leader() && m.term() > iso.term)
                });
                if elected {
                    iso.elected_ms = Some(now);
                    self.stats.failover_ms.push(now - iso.start_ms);
                }
            }
            if iso.stepped_down_ms.is_none() {
                let still = nodes[&iso.leader]
                    .node
                    .as_ref()
                    .is_some_and(|m| m.is_leader());
                if !still {
                    iso.stepped_down_ms = Some(now);
                    self.stats.stepdown_ms.push(now - iso.start_ms);
                }
            }
        }
    }

    /// `None` once converged, else why not.
    pub(super) fn converged(&self) -> Option<String> {
        if self.nodes.values().any(|n| n.node.is_none()) {
            return Some("a node is down".into());
        }
        let Some(leader) = self.leader() else {
            return Some("no leader".into());
        };
        let l = self.nodes[&leader].node.as_ref().unwrap();
        let members = l.state().members().clone();
        let all: BTreeSet<u64> = self.nodes.keys().copied().collect();
        // The policy promotes up to the target and never removes.
        let want_voters = self.voters_target.min(all.len());
        if members.voters.len() != want_voters {
            return Some(format!("voters {:?}, target {want_voters}", members.voters));
        }
        let joined: BTreeSet<u64> = members.voters.union(&members.learners).copied().collect();
        if joined != all {
            return Some(format!("members {joined:?} of {all:?}"));
        }
        if l.commit_index() != l.last_index() {
            return Some("leader has uncommitted entries".into());
        }
        let target = l.commit_index();
        let bytes = l.state().encode_snapshot();
        for (&id, n) in &self.nodes {
            let m = n.node.as_ref().unwrap();
            if m.applied_index() != target {
                return Some(format!(
                    "node {id} applied {} of {target}",
                    m.applied_index()
                ));
            }
            if m.state().encode_snapshot() != bytes {
                self.fail(format!(
                    "node {id} applied {target} but its state differs from the leader's"
                ));
            }
        }
        None
    }
}

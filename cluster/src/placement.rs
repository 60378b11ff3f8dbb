//! Replica placement: which nodes hold a partition, and which of them is
//! its preferred leader.
//!
//! Placement is weighted rendezvous hashing (highest random weight, HRW):
//! every (topic, partition, node) triple gets a pseudo-random number `u`
//! in (0, 1) from a stable hash, turned into an exponential variate
//! `E = -ln(u) / weight`. The partition's replicas are the nodes with the
//! smallest `E` (one node per rack while enough racks exist) and the first
//! of them is the preferred leader. `E_i` is exponential with rate
//! `weight_i`, so a node wins the first slot with probability
//! `weight_i / Σ weight`: weights skew placement by capacity or load.
//!
//! Why HRW rather than a consistent-hash ring:
//! - No virtual nodes to tune. A ring needs many virtual points per node to
//!   even out arc lengths (and more points for smoother weights); HRW is
//!   balanced by construction, from one hash per node.
//! - Minimal movement for *any* change of the node set. Adding a node moves
//!   exactly the replicas the new node now wins (≈ 1/(n+1) of them);
//!   removing one moves only the replicas it held. A ring achieves this only
//!   statistically and skews towards the neighbours of the changed arcs.
//! - Racks and weights fall out naturally: every node has a score for every
//!   partition, so "the best node of another rack" and "a heavier node wins
//!   more often" are one comparison each, where a ring needs walking past
//!   same-rack successors and re-weighting by adding or removing points.
//! - Every node computes the same answer on its own from the member list,
//!   with no shared ring state to build, version or distribute.
//!
//! The cost, O(nodes) per partition, is irrelevant at cluster sizes (a
//! placement of 10k partitions over dozens of nodes takes milliseconds).
//!
//! Pure functions: no I/O, no clock, no process-random hasher.

use std::collections::BTreeSet;

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// Fixed seed of the placement hash. Changing it reshuffles every
/// partition of every cluster, so it never changes.
const PLACEMENT_HASH_SEED: u64 = 0x5350_5241_574c_4852; // "SPRAWLHR"

/// Bounds on the input, so a bad member list cannot make placement
/// allocate without limit.
pub const PLACEMENT_NODES_MAX: usize = 4096;
pub const REPLICATION_FACTOR_MAX: usize = 16;

/// A live node as placement sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct PlacementNode {
    pub id: u64,
    /// Failure domain. Nodes without a rack are each their own domain.
    pub rack: Option<String>,
    /// Relative share of replicas this node should get (e.g. its shard
    /// count scaled by spare capacity). Must be finite and > 0.
    pub weight: f64,
}

impl PlacementNode {
    pub fn new(id: u64, rack: Option<&str>, weight: f64) -> Self {
        Self {
            id,
            rack: rack.map(str::to_owned),
            weight,
        }
    }

    /// A weight from capacity and load: `shards` scaled by the share of
    /// time its reactors are idle (`busy_share` in 0..=1, from the load
    /// summary gossip carries). Floored at `LOAD_WEIGHT_FLOOR` of the
    /// capacity so a saturated node still takes a trickle and every
    /// weight stays > 0.
    pub fn weight_from_load(shards: u32, busy_share: f64) -> f64 {
        let idle = if busy_share.is_finite() {
            1.0 - busy_share.clamp(0.0, 1.0)
        } else {
            0.0
        };
        f64::from(shards.max(1)) * idle.max(LOAD_WEIGHT_FLOOR)
    }
}

/// Least share of its capacity a node is weighted with, however busy.
pub const LOAD_WEIGHT_FLOOR: f64 = 0.05;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlacementError {
    #[error("replication factor {wanted} exceeds the {live} live nodes")]
    NotEnoughNodes { wanted: usize, live: usize },
    #[error("replication factor {0} is out of range 1..={REPLICATION_FACTOR_MAX}")]
    InvalidReplicationFactor(usize),
    #[error("node {0} is listed twice")]
    DuplicateNode(u64),
    #[error("node {id} has weight {weight}: weights must be finite and > 0")]
    InvalidWeight { id: u64, weight: f64 },
    #[error("{0} nodes exceed the placement bound {PLACEMENT_NODES_MAX}")]
    TooManyNodes(usize),
}

/// The live node set, validated once, placing any number of partitions.
#[derive(Debug, Clone)]
pub struct ReplicaPlacement {
    nodes: Vec<PlacementNode>,
}

impl ReplicaPlacement {
    pub fn new(nodes: Vec<PlacementNode>) -> Result<Self, PlacementError> {
        if nodes.len() > PLACEMENT_NODES_MAX {
            return Err(PlacementError::TooManyNodes(nodes.len()));
        }
        let mut seen = BTreeSet::new();
        for node in &nodes {
            if !seen.insert(node.id) {
                return Err(PlacementError::DuplicateNode(node.id));
            }
            if !(node.weight.is_finite() && node.weight > 0.0) {
                return Err(PlacementError::InvalidWeight {
                    id: node.id,
                    weight: node.weight,
                });
            }
        }
        Ok(Self { nodes })
    }

    pub fn nodes(&self) -> &[PlacementNode] {
        &self.nodes
    }

    /// The `replication_factor` nodes that hold `topic`/`partition`, best
    /// first: `replicas[0]` is the preferred leader. No two replicas share
    /// a rack while there are enough distinct racks; when there are not,
    /// every rack is used once and the remaining slots go to the best
    /// remaining nodes.
    pub fn replicas(
        &self,
        topic: &str,
        partition: u32,
        replication_factor: usize,
    ) -> Result<Vec<u64>, PlacementError> {
        if replication_factor == 0 || replication_factor > REPLICATION_FACTOR_MAX {
            return Err(PlacementError::InvalidReplicationFactor(replication_factor));
        }
        if replication_factor > self.nodes.len() {
            return Err(PlacementError::NotEnoughNodes {
                wanted: replication_factor,
                live: self.nodes.len(),
            });
        }
        let mut ranked: Vec<(f64, u64, Option<&str>)> = self
            .nodes
            .iter()
            .map(|n| {
                (
                    score(topic, partition, n.id, n.weight),
                    n.id,
                    n.rack.as_deref(),
                )
            })
            .collect();
        // Ties (vanishingly rare with 53-bit draws) break by id, so the
        // order never depends on the order of the input list.
        ranked.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));

        let mut chosen = Vec::with_capacity(replication_factor);
        let mut racks_used: BTreeSet<&str> = BTreeSet::new();
        let mut skipped = Vec::new();
        for &(_, id, rack) in &ranked {
            if chosen.len() == replication_factor {
                break;
            }
            match rack {
                Some(rack) if !racks_used.insert(rack) => skipped.push(id),
                _ => chosen.push(id),
            }
        }
        // Fewer racks than replicas: fill with the best nodes passed over
        // for their rack, still in rank order, so the fallback is as
        // stable under membership changes as the main rule.
        for id in skipped {
            if chosen.len() == replication_factor {
                break;
            }
            chosen.push(id);
        }
        debug_assert_eq!(chosen.len(), replication_factor);
        Ok(chosen)
    }

    /// Replicas of every partition of a topic (index = partition).
    pub fn topic_replicas(
        &self,
        topic: &str,
        partitions: u32,
        replication_factor: usize,
    ) -> Result<Vec<Vec<u64>>, PlacementError> {
        (0..partitions)
            .map(|p| self.replicas(topic, p, replication_factor))
            .collect()
    }
}

/// `-ln(u) / weight` for the triple's stable draw `u` in (0, 1): the
/// smaller, the better the node fits the partition.
fn score(topic: &str, partition: u32, node: u64, weight: f64) -> f64 {
    let mut key = Vec::with_capacity(topic.len() + 20);
    // Length prefix: ("ab", 1) and ("a", ...) can never hash the same bytes.
    key.extend_from_slice(&(topic.len() as u64).to_le_bytes());
    key.extend_from_slice(topic.as_bytes());
    key.extend_from_slice(&partition.to_le_bytes());
    key.extend_from_slice(&node.to_le_bytes());
    let h = xxh3_64_with_seed(&key, PLACEMENT_HASH_SEED);
    // Top 53 bits, centred in their interval: u is never 0 or 1, so ln(u)
    // is finite and < 0.
    let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    -u.ln() / weight
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    const PARTITIONS: u32 = 10_000;

    fn nodes(specs: &[(u64, Option<&str>, f64)]) -> ReplicaPlacement {
        ReplicaPlacement::new(
            specs
                .iter()
                .map(|&(id, rack, w)| PlacementNode::new(id, rack, w))
                .collect(),
        )
        .unwrap()
    }

    fn plain(ids: &[u64]) -> ReplicaPlacement {
        nodes(&ids.iter().map(|&id| (id, None, 1.0)).collect::<Vec<_>>())
    }

    fn all(p: &ReplicaPlacement, rf: usize) -> Vec<Vec<u64>> {
        p.topic_replicas("orders", PARTITIONS, rf).unwrap()
    }

    /// Replicas (as slots) whose node changed between two placements.
    fn moved(before: &[Vec<u64>], after: &[Vec<u64>]) -> usize {
        before
            .iter()
            .zip(after)
            .map(|(b, a)| a.iter().filter(|n| !b.contains(n)).count())
            .sum()
    }

    #[test]
    fn same_input_same_answer_regardless_of_node_order() {
        let a = plain(&[1, 2, 3, 4, 5]);
        let b = plain(&[5, 3, 1, 4, 2]);
        assert_eq!(all(&a, 3), all(&b, 3));
        assert_eq!(all(&a, 3), all(&a, 3));
        // Pinned values: the hash is part of the cluster's contract (every
        // node, of every version, must compute the same placement), so a
        // change of hash or input encoding must fail here first.
        assert_eq!(a.replicas("orders", 0, 3).unwrap(), vec![1, 2, 4]);
        assert_eq!(a.replicas("payments", 17, 2).unwrap(), vec![1, 4]);
    }

    #[test]
    fn replicas_are_distinct_and_leader_is_first_choice() {
        let p = plain(&[1, 2, 3, 4, 5, 6]);
        for set in all(&p, 3) {
            let distinct: BTreeSet<_> = set.iter().collect();
            assert_eq!(distinct.len(), 3);
        }
        // The rf=1 answer is the rf=3 answer's first element: the
        // preferred leader does not depend on the replication factor.
        for part in 0..1000 {
            let one = p.replicas("orders", part, 1).unwrap();
            let three = p.replicas("orders", part, 3).unwrap();
            assert_eq!(one[0], three[0]);
        }
    }

    #[test]
    fn no_two_replicas_share_a_rack_when_racks_suffice() {
        let racks = ["a", "a", "b", "b", "c", "c"];
        let specs: Vec<_> = (1..=6u64)
            .map(|id| (id, Some(racks[id as usize - 1]), 1.0))
            .collect();
        let p = nodes(&specs);
        let rack_of: BTreeMap<u64, &str> =
            specs.iter().map(|&(id, r, _)| (id, r.unwrap())).collect();
        let mut leaders = BTreeMap::new();
        for set in all(&p, 3) {
            let racks: BTreeSet<_> = set.iter().map(|n| rack_of[n]).collect();
            assert_eq!(racks.len(), 3, "replicas {set:?} share a rack");
            *leaders.entry(set[0]).or_insert(0u32) += 1;
        }
        // Rack diversity must not starve a node of leadership.
        assert_eq!(leaders.len(), 6);
    }

    #[test]
    fn too_few_racks_falls_back_to_distinct_nodes_using_every_rack() {
        let p = nodes(&[
            (1, Some("a"), 1.0),
            (2, Some("a"), 1.0),
            (3, Some("a"), 1.0),
            (4, Some("b"), 1.0),
        ]);
        for set in all(&p, 3) {
            let distinct: BTreeSet<_> = set.iter().collect();
            assert_eq!(distinct.len(), 3);
            assert!(set.contains(&4), "rack b unused in {set:?}");
        }
    }

    #[test]
    fn adding_a_fourth_node_moves_about_a_quarter_of_replicas() {
        for rf in [1usize, 3] {
            let before = all(&plain(&[1, 2, 3]), rf);
            let after = all(&plain(&[1, 2, 3, 4]), rf);
            let total = PARTITIONS as usize * rf;
            let n = moved(&before, &after);
            let share = n as f64 / total as f64;
            println!("rf={rf}: adding node 4 to 3 moved {n}/{total} replicas ({share:.4})");
            assert!((0.23..=0.27).contains(&share), "rf={rf}: moved {share}");
            // Everything that moved, moved to the new node.
            for (b, a) in before.iter().zip(&after) {
                for n in a.iter().filter(|n| !b.contains(n)) {
                    assert_eq!(*n, 4);
                }
            }
        }
    }

    #[test]
    fn removing_a_node_moves_only_its_replicas() {
        let racks = ["a", "b", "c", "d"];
        let with_racks: Vec<_> = (1..=12u64)
            .map(|id| (id, Some(racks[id as usize % 4]), 1.0))
            .collect();
        let without: Vec<_> = (1..=12u64).map(|id| (id, None, 1.0)).collect();
        for specs in [with_racks, without] {
            let before = all(&nodes(&specs), 3);
            let rest: Vec<_> = specs.iter().copied().filter(|s| s.0 != 7).collect();
            let after = all(&nodes(&rest), 3);
            let mut touched = 0;
            for (b, a) in before.iter().zip(&after) {
                if !b.contains(&7) {
                    assert_eq!(a, b, "partition without node 7 changed");
                    continue;
                }
                touched += 1;
                for n in b.iter().filter(|n| **n != 7) {
                    assert!(a.contains(n), "replica {n} moved off {b:?} -> {a:?}");
                }
            }
            assert_eq!(moved(&before, &after), touched);
        }
    }

    #[test]
    fn heavier_nodes_get_proportionally_more() {
        let p = nodes(&[(1, None, 1.0), (2, None, 1.0), (3, None, 2.0)]);
        let mut count = BTreeMap::new();
        for set in all(&p, 1) {
            *count.entry(set[0]).or_insert(0u32) += 1;
        }
        let share = |id| count[&id] as f64 / PARTITIONS as f64;
        println!(
            "weights 1:1:2 -> shares {:.3} {:.3} {:.3}",
            share(1),
            share(2),
            share(3)
        );
        assert!((0.23..=0.27).contains(&share(1)));
        assert!((0.23..=0.27).contains(&share(2)));
        assert!((0.48..=0.52).contains(&share(3)));
    }

    #[test]
    fn load_skews_weights_towards_idle_capacity() {
        let w = PlacementNode::weight_from_load;
        assert_eq!(w(4, 0.0), 4.0);
        assert_eq!(w(4, 0.5), 2.0);
        assert_eq!(w(4, 1.0), 4.0 * LOAD_WEIGHT_FLOOR);
        assert_eq!(w(4, f64::NAN), 4.0 * LOAD_WEIGHT_FLOOR);
        assert_eq!(w(0, 0.0), 1.0);
        // Two equal nodes, one 75% busy: the idle one leads ~4x as often.
        let p = nodes(&[(1, None, w(8, 0.0)), (2, None, w(8, 0.75))]);
        let idle_leads = all(&p, 1).iter().filter(|s| s[0] == 1).count();
        let share = idle_leads as f64 / PARTITIONS as f64;
        assert!((0.78..=0.82).contains(&share), "idle node leads {share}");
    }

    #[test]
    fn bad_input_is_a_typed_error() {
        let dup = ReplicaPlacement::new(vec![
            PlacementNode::new(1, None, 1.0),
            PlacementNode::new(1, None, 1.0),
        ]);
        assert_eq!(dup.unwrap_err(), PlacementError::DuplicateNode(1));
        for weight in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(matches!(
                ReplicaPlacement::new(vec![PlacementNode::new(9, None, weight)]),
                Err(PlacementError::InvalidWeight { id: 9, .. })
            ));
        }
        let p = plain(&[1, 2]);
        assert_eq!(
            p.replicas("t", 0, 3),
            Err(PlacementError::NotEnoughNodes { wanted: 3, live: 2 })
        );
        assert_eq!(
            p.replicas("t", 0, 0),
            Err(PlacementError::InvalidReplicationFactor(0))
        );
    }
}

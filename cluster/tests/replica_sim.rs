//! Data replication (one raft-rs group per partition,
//! `sprawl_cluster::replica`): the seeded simulator under faults, and
//! focused deterministic scenarios on a lossless network with cuts.
//!
//! `cargo test` runs [`CI_SEEDS`] seeds on two threads; the ignored
//! `replica_faults_many_seeds` runs `SIM_SEEDS` (or `SPRAWL_SIM_SEEDS`)
//! seeds; `SPRAWL_SIM_SEED=N` replays seed N alone (a failure prints its
//! seed and this command). Run with `--nocapture` to see the numbers.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use sprawl_cluster::replica::sim::{run_seed, SimStats};
use sprawl_cluster::replica::{
    Envelope, FailReason, GroupId, MemReplicaLog, MembershipChange, PartitionReplica, ProposalId,
    ReplicaConfig, ReplicaEvent, ReplicaHost, ReplicaLog,
};

const CI_SEEDS: u64 = 200;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

fn run_seeds(seeds: &[u64]) -> Result<SimStats, Vec<String>> {
    common::run_seeds(seeds, run_seed, SimStats::merge)
}

fn run_and_report(seeds: Vec<u64>) -> SimStats {
    let started = std::time::Instant::now();
    let stats = match run_seeds(&seeds) {
        Ok(stats) => stats,
        Err(mut failures) => {
            failures.sort();
            panic!(
                "{} of {} seeds failed:\n{}",
                failures.len(),
                seeds.len(),
                failures.join("\n")
            )
        }
    };
    println!("replica sim ({:.1?}): {stats}", started.elapsed());
    stats
}

#[test]
fn replica_faults_ci_seeds() {
    let seeds: Vec<u64> = match env_u64("SPRAWL_SIM_SEED") {
        Some(seed) => vec![seed],
        None => (0..CI_SEEDS).collect(),
    };
    let stats = run_and_report(seeds);
    // The runs must exercise what they claim to.
    if stats.seeds >= 50 {
        assert!(!stats.failover_ms.is_empty(), "no leader isolation");
        assert!(stats.appends_lost > 0, "no crash lost unsynced appends");
        assert!(stats.snapshots_installed > 0, "no snapshot was installed");
        assert!(stats.moves_completed > 0, "no replica move completed");
        assert!(stats.dropped > 0, "no proposal was overwritten");
        assert!(stats.envelopes_corrupted > 0, "no envelope was corrupted");
        assert!(stats.acked > stats.seeds * 100, "too few acks");
    }
}

/// `SIM_SEEDS=20000 cargo test --release -p sprawl-cluster --test
/// replica_sim -- --ignored --nocapture` (or `scripts/sim.sh 20000`).
#[test]
#[ignore]
fn replica_faults_many_seeds() {
    let seeds: Vec<u64> = match env_u64("SPRAWL_SIM_SEED") {
        Some(seed) => vec![seed],
        None => {
            let n = env_u64("SIM_SEEDS")
                .or_else(|| env_u64("SPRAWL_SIM_SEEDS"))
                .unwrap_or(5_000);
            (0..n).collect()
        }
    };
    run_and_report(seeds);
}

#[test]
fn replica_seed_replays_exactly() {
    for seed in [5, 11] {
        let a = run_seed(seed).unwrap();
        let b = run_seed(seed).unwrap();
        assert_eq!(a.trace, b.trace, "seed {seed} diverged on replay");
        assert_eq!((a.steps, a.acked), (b.steps, b.acked));
    }
    assert_ne!(run_seed(5).unwrap().trace, run_seed(6).unwrap().trace);
}

// ------------------------------------------------------- focused scenarios

const ELECTION_TICKS: usize = 10;

/// Nodes with one host each, an instant lossless network with directional
/// cuts, and (optionally) a sync after every step.
struct Net {
    hosts: BTreeMap<u64, ReplicaHost<MemReplicaLog>>,
    disks: BTreeMap<(u64, GroupId), MemReplicaLog>,
    cut: BTreeSet<(u64, u64)>,
    /// Nodes that sync their logs whenever they have writes.
    syncing: BTreeSet<u64>,
    events: Vec<(u64, ReplicaEvent)>,
    envelopes: u64,
}

fn config(node: u64, group: GroupId) -> ReplicaConfig {
    let mut c = ReplicaConfig::new(node, group, 7);
    c.election_ticks = ELECTION_TICKS;
    c.learner_lag_entries_max = 2;
    c
}

impl Net {
    fn new(nodes: &[u64], groups: &[(GroupId, Vec<u64>)]) -> Self {
        let mut net = Net {
            hosts: nodes.iter().map(|&n| (n, ReplicaHost::new(n))).collect(),
            disks: BTreeMap::new(),
            cut: BTreeSet::new(),
            syncing: nodes.iter().copied().collect(),
            events: Vec::new(),
            envelopes: 0,
        };
        for (group, voters) in groups {
            for &v in voters {
                let disk = MemReplicaLog::new();
                let r =
                    PartitionReplica::bootstrap(config(v, *group), disk.clone(), voters).unwrap();
                net.hosts.get_mut(&v).unwrap().add_group(r).unwrap();
                net.disks.insert((v, *group), disk);
            }
        }
        net
    }

    /// Host an empty replica of `group` on `node` (to be added as learner).
    fn add_empty_replica(&mut self, node: u64, group: GroupId) {
        let disk = MemReplicaLog::new();
        let r = PartitionReplica::open(config(node, group), disk.clone()).unwrap();
        self.hosts.get_mut(&node).unwrap().add_group(r).unwrap();
        self.disks.insert((node, group), disk);
    }

    fn replica(&self, node: u64, group: GroupId) -> &PartitionReplica<MemReplicaLog> {
        self.hosts[&node].group(group).unwrap()
    }

    fn isolate(&mut self, node: u64) {
        for &other in self.hosts.keys() {
            if other != node {
                self.cut.insert((node, other));
                self.cut.insert((other, node));
            }
        }
    }

    /// Deliver, sync and poll until nothing moves.
    fn pump(&mut self) {
        for _ in 0..10_000 {
            let mut mail = Vec::new();
            for (&id, host) in self.hosts.iter_mut() {
                if self.syncing.contains(&id) {
                    host.sync_all();
                }
                for out in host.poll_output() {
                    mail.push((id, out));
                }
                self.events
                    .extend(host.take_events().into_iter().map(|e| (id, e)));
                if self.syncing.contains(&id) && host.needs_sync() {
                    host.sync_all();
                    for out in host.poll_output() {
                        mail.push((id, out));
                    }
                    self.events
                        .extend(host.take_events().into_iter().map(|e| (id, e)));
                }
            }
            if mail.is_empty() {
                return;
            }
            for (from, out) in mail {
                self.envelopes += 1;
                if self.cut.contains(&(from, out.to)) {
                    continue;
                }
                if let Some(host) = self.hosts.get_mut(&out.to) {
                    host.handle_envelope(from, &out.bytes).unwrap();
                }
            }
        }
        panic!("network never went quiet");
    }

    fn tick(&mut self, n: usize) {
        for _ in 0..n {
            for host in self.hosts.values_mut() {
                host.tick();
            }
            self.pump();
        }
    }

    fn leaders(&self, group: GroupId) -> Vec<u64> {
        self.hosts
            .iter()
            .filter(|(_, h)| h.group(group).is_some_and(|r| r.is_leader()))
            .map(|(&n, _)| n)
            .collect()
    }

    /// Tick until `group` has exactly one leader among `among`.
    fn elect(&mut self, group: GroupId, among: &[u64]) -> u64 {
        for _ in 0..100 {
            self.tick(1);
            let leaders: Vec<u64> = self
                .leaders(group)
                .into_iter()
                .filter(|l| among.contains(l))
                .collect();
            if let [leader] = leaders[..] {
                self.tick(2);
                return leader;
            }
        }
        panic!("{group}: no leader among {among:?}");
    }

    fn propose(&mut self, node: u64, group: GroupId, payload: &[u8]) -> ProposalId {
        self.hosts
            .get_mut(&node)
            .unwrap()
            .propose(group, payload.to_vec())
            .unwrap()
    }

    /// The final event for `(node, proposal)`, if any yet.
    fn outcome(&self, node: u64, proposal: ProposalId) -> Option<&ReplicaEvent> {
        self.events.iter().map(|(n, e)| (*n, e)).find_map(|(n, e)| {
            let id = match e {
                ReplicaEvent::Acked { proposal, .. } | ReplicaEvent::Failed { proposal, .. } => {
                    *proposal
                }
                _ => return None,
            };
            (n == node && id == proposal).then_some(e)
        })
    }

    fn acked_at(&self, node: u64, proposal: ProposalId) -> Option<(u64, u64)> {
        match self.outcome(node, proposal) {
            Some(ReplicaEvent::Acked { index, term, .. }) => Some((*index, *term)),
            _ => None,
        }
    }

    fn data_at(&self, node: u64, group: GroupId, index: u64) -> Option<(u64, Vec<u8>)> {
        self.disks[&(node, group)]
            .entry_at(index)
            .map(|(t, _, d)| (t, d))
    }
}

const G: GroupId = GroupId(1);

#[test]
fn isolated_leader_steps_down_and_the_majority_side_commits() {
    let mut net = Net::new(&[1, 2, 3], &[(G, vec![1, 2, 3])]);
    let old = net.elect(G, &[1, 2, 3]);
    let p = net.propose(old, G, b"before");
    net.pump();
    assert!(net.acked_at(old, p).is_some());

    net.isolate(old);
    // Still leader for now: it accepts, but can never acknowledge.
    let stranded = net.propose(old, G, b"stranded");
    let commit_at_cut = net.replica(old, G).commit_index();
    let mut stepped_down_after = None;
    for t in 1..=3 * ELECTION_TICKS {
        net.tick(1);
        if stepped_down_after.is_none() && !net.replica(old, G).is_leader() {
            stepped_down_after = Some(t);
        }
    }
    // check-quorum runs every election timeout: at most two of them.
    let ticks = stepped_down_after.expect("isolated leader never stepped down");
    assert!(
        ticks <= 2 * ELECTION_TICKS,
        "stepped down after {ticks} ticks"
    );
    assert_eq!(net.replica(old, G).commit_index(), commit_at_cut);
    assert!(net.acked_at(old, stranded).is_none());

    let others: Vec<u64> = [1, 2, 3].into_iter().filter(|&n| n != old).collect();
    let new = net.elect(G, &others);
    assert!(net.replica(new, G).term() > net.replica(old, G).term() - 1);
    let q = net.propose(new, G, b"majority");
    net.pump();
    let (index, term) = net.acked_at(new, q).expect("the majority commits");
    assert_eq!(
        net.data_at(new, G, index),
        Some((term, b"majority".to_vec()))
    );
    // Cut off, the old leader fails what it held within the orphan timeout.
    net.tick(30);
    assert!(matches!(
        net.outcome(old, stranded),
        Some(ReplicaEvent::Failed {
            reason: FailReason::LeadershipLost,
            ..
        })
    ));
}

#[test]
fn returning_old_leader_truncates_its_divergent_suffix() {
    let mut net = Net::new(&[1, 2, 3], &[(G, vec![1, 2, 3])]);
    let old = net.elect(G, &[1, 2, 3]);
    net.isolate(old);
    // Entries only the old leader has: its uncommitted, divergent suffix.
    let stranded: Vec<ProposalId> = (0..3)
        .map(|i| net.propose(old, G, format!("stranded-{i}").as_bytes()))
        .collect();
    net.pump();
    let divergent_from = net.replica(old, G).commit_index() + 1;
    let divergent_to = net.replica(old, G).last_index();
    assert!(divergent_to >= divergent_from + 2);
    let others: Vec<u64> = [1, 2, 3].into_iter().filter(|&n| n != old).collect();
    let new = net.elect(G, &others);
    let mut acked = Vec::new();
    for i in 0..5 {
        let p = net.propose(new, G, format!("new-{i}").as_bytes());
        net.pump();
        acked.push(net.acked_at(new, p).expect("committed"));
    }
    // Heal before the old leader's orphan timeout: it learns the truth from
    // the new leader's log, and its proposals are definitely dropped.
    net.cut.clear();
    net.tick(5);
    assert_eq!(net.leaders(G), vec![new]);
    let last = net.replica(new, G).last_index();
    for index in 2..=last {
        assert_eq!(
            net.data_at(old, G, index),
            net.data_at(new, G, index),
            "index {index} differs"
        );
    }
    for i in divergent_from..=divergent_to {
        let (_, data) = net.data_at(old, G, i).unwrap();
        assert!(!data.starts_with(b"stranded"), "stranded entry kept at {i}");
    }
    for p in stranded {
        assert!(
            matches!(
                net.outcome(old, p),
                Some(ReplicaEvent::Failed {
                    reason: FailReason::Dropped,
                    ..
                })
            ),
            "{:?}",
            net.outcome(old, p)
        );
    }
    for (index, term) in acked {
        assert_eq!(net.data_at(old, G, index).unwrap().0, term);
    }
}

#[test]
fn crash_dropping_unsynced_tails_loses_no_acked_entry() {
    let mut net = Net::new(&[1, 2, 3], &[(G, vec![1, 2, 3])]);
    let leader = net.elect(G, &[1, 2, 3]);
    let lagging = [1, 2, 3].into_iter().find(|&n| n != leader).unwrap();
    let mut acked = Vec::new();
    let batch = |net: &mut Net, i: usize| {
        let payload = format!("batch-{i}").into_bytes();
        let p = net.propose(leader, G, &payload);
        net.pump();
        net.acked_at(leader, p).map(|(i, t)| (i, t, payload))
    };
    for i in 0..10 {
        acked.push(batch(&mut net, i).expect("acked with every disk syncing"));
    }
    // One follower stops syncing: the leader and the other still make a
    // majority, and the lagging one holds an ever longer unsynced tail.
    net.syncing.remove(&lagging);
    for i in 10..20 {
        acked.push(batch(&mut net, i).expect("acked by a majority"));
    }
    assert!(net.disks[&(lagging, G)].unsynced_appends() > 0);
    // Nobody syncs: these stay unacknowledged, in unsynced tails only.
    net.syncing.clear();
    for i in 20..23 {
        assert!(batch(&mut net, i).is_none(), "acked without a sync");
    }
    // Every node loses power and its unsynced tail, and restarts.
    let mut lost = 0;
    for (&(node, group), disk) in &net.disks {
        assert_eq!(group, G);
        assert!(
            disk.unsynced_appends() > 0,
            "node {node} had nothing unsynced"
        );
        lost += disk.crash(0);
        let mut host = ReplicaHost::new(node);
        host.add_group(PartitionReplica::open(config(node, G), disk.clone()).unwrap())
            .unwrap();
        net.hosts.insert(node, host);
    }
    assert!(lost >= 3, "the crash dropped only {lost} appends");
    net.syncing = [1, 2, 3].into_iter().collect();
    let new = net.elect(G, &[1, 2, 3]);
    net.propose(new, G, b"after");
    net.tick(3);
    let last = net.replica(new, G).last_index();
    for node in [1, 2, 3] {
        assert_eq!(net.replica(node, G).commit_index(), last);
        for (index, term, payload) in &acked {
            assert_eq!(
                net.data_at(node, G, *index),
                Some((*term, payload.clone())),
                "acked {index}@{term} lost on node {node}"
            );
        }
    }
}

/// Add a learner on a 4th node, let it catch up (by snapshot: the log is
/// compacted first), promote it, move leadership off the old voter and
/// remove it, all while proposals keep coming.
#[test]
fn live_replica_move_under_proposals_loses_nothing() {
    let mut net = Net::new(&[1, 2, 3, 4], &[(G, vec![1, 2, 3])]);
    let leader = net.elect(G, &[1, 2, 3]);
    let mut seq = 0;
    let mut sent: Vec<(u64, ProposalId, Vec<u8>)> = Vec::new();
    let mut propose = |net: &mut Net, n: usize| {
        for _ in 0..n {
            let leader = net.leaders(G)[0];
            seq += 1;
            let payload = format!("move-{seq}").into_bytes();
            sent.push((leader, net.propose(leader, G, &payload), payload));
            net.pump();
        }
    };
    propose(&mut net, 10);
    for node in [1, 2, 3] {
        let r = net.hosts.get_mut(&node).unwrap().group_mut(G).unwrap();
        let applied = r.applied_index();
        r.compact(applied).unwrap();
    }
    net.add_empty_replica(4, G);
    net.hosts
        .get_mut(&leader)
        .unwrap()
        .propose_membership_change(G, MembershipChange::AddLearner(4))
        .unwrap();
    propose(&mut net, 3);
    assert!(net
        .events
        .iter()
        .any(|(n, e)| *n == 4 && matches!(e, ReplicaEvent::SnapshotInstalled { .. })));
    let progress = net.replica(leader, G).progress();
    let learner = progress.iter().find(|p| p.node == 4).expect("learner");
    assert!(learner.learner && learner.lag <= 2, "{progress:?}");
    assert!(net.replica(leader, G).learner_caught_up(4));
    net.hosts
        .get_mut(&leader)
        .unwrap()
        .propose_membership_change(G, MembershipChange::Promote(4))
        .unwrap();
    propose(&mut net, 3);
    assert_eq!(net.replica(leader, G).members(), (vec![1, 2, 3, 4], vec![]));

    // Move the leader's own replica away: hand leadership over first (a
    // leader cannot remove itself).
    let old = leader;
    assert!(net
        .hosts
        .get_mut(&old)
        .unwrap()
        .propose_membership_change(G, MembershipChange::Remove(old))
        .is_err());
    net.hosts
        .get_mut(&old)
        .unwrap()
        .group_mut(G)
        .unwrap()
        .transfer_leadership(4);
    net.pump();
    net.tick(2);
    assert_eq!(net.leaders(G), vec![4]);
    propose(&mut net, 3);
    net.hosts
        .get_mut(&4)
        .unwrap()
        .propose_membership_change(G, MembershipChange::Remove(old))
        .unwrap();
    propose(&mut net, 3);
    let remaining: Vec<u64> = [1, 2, 3, 4].into_iter().filter(|&n| n != old).collect();
    assert_eq!(net.replica(4, G).members(), (remaining.clone(), vec![]));
    net.hosts.get_mut(&old).unwrap().remove_group(G);
    propose(&mut net, 5);
    net.tick(3);

    // Every batch was acknowledged once, and sits at its index on every
    // remaining replica.
    let last = net.replica(4, G).last_index();
    for &(node, p, ref payload) in &sent {
        let (index, term) = net
            .acked_at(node, p)
            .unwrap_or_else(|| panic!("{p} on {node}: {:?}", net.outcome(node, p)));
        for &r in &remaining {
            assert_eq!(net.data_at(r, G, index), Some((term, payload.clone())));
        }
    }
    for &r in &remaining {
        assert_eq!(net.replica(r, G).commit_index(), last);
        let count = (2..=last)
            .filter(|&i| {
                net.data_at(r, G, i)
                    .is_some_and(|(_, d)| d.starts_with(b"move-"))
            })
            .count();
        assert_eq!(count, sent.len(), "batches on node {r}");
    }
}

#[test]
fn hundred_groups_one_envelope_per_destination_per_poll() {
    let groups: Vec<(GroupId, Vec<u64>)> = (0..100).map(|g| (GroupId(g), vec![1, 2, 3])).collect();
    let mut net = Net::new(&[1, 2, 3], &groups);
    for g in 0..100 {
        net.hosts
            .get_mut(&1)
            .unwrap()
            .group_mut(GroupId(g))
            .unwrap()
            .campaign()
            .unwrap();
    }
    // Pre-votes of 100 groups: one envelope to each other node.
    let out = net.hosts.get_mut(&1).unwrap().poll_output();
    assert_eq!(out.iter().map(|o| o.to).collect::<Vec<_>>(), vec![2, 3]);
    for o in &out {
        let env = Envelope::decode(&o.bytes).unwrap();
        assert_eq!(env.messages.len(), 100);
        net.hosts
            .get_mut(&o.to)
            .unwrap()
            .handle_envelope(1, &o.bytes)
            .unwrap();
    }
    net.pump();
    net.tick(1);
    for g in 0..100 {
        assert!(net.replica(1, GroupId(g)).is_leader(), "group {g}");
    }
    // One tick: 100 heartbeats to each follower, one envelope each, as
    // 25-byte records; and one envelope back from each with 100 responses.
    let host = net.hosts.get_mut(&1).unwrap();
    host.tick();
    let out = host.poll_output();
    assert_eq!(out.len(), 2);
    for o in &out {
        let env = Envelope::decode(&o.bytes).unwrap();
        assert_eq!((env.heartbeats.len(), env.messages.len()), (100, 0));
        assert!(o.bytes.len() < 100 * 25 + 64, "{} bytes", o.bytes.len());
        let follower = net.hosts.get_mut(&o.to).unwrap();
        let delivery = follower.handle_envelope(1, &o.bytes).unwrap();
        assert_eq!(delivery.stepped, 100);
        let back = follower.poll_output();
        assert_eq!(back.len(), 1);
        let env = Envelope::decode(&back[0].bytes).unwrap();
        assert_eq!(env.heartbeats.len(), 100);
    }
    // Messages for a group the receiver does not host are counted, not fatal.
    let stray = net.hosts.get_mut(&2).unwrap().remove_group(GroupId(5));
    assert!(stray.is_some());
    let host = net.hosts.get_mut(&1).unwrap();
    host.tick();
    let out = host.poll_output();
    let to2 = out.iter().find(|o| o.to == 2).unwrap();
    let delivery = net
        .hosts
        .get_mut(&2)
        .unwrap()
        .handle_envelope(1, &to2.bytes)
        .unwrap();
    assert_eq!((delivery.stepped, delivery.unknown_group), (99, 1));
    // A forged sender or a damaged envelope is a typed error.
    assert!(net
        .hosts
        .get_mut(&2)
        .unwrap()
        .handle_envelope(3, &to2.bytes)
        .is_err());
    let mut bad = to2.bytes.clone();
    bad[20] ^= 4;
    assert!(net
        .hosts
        .get_mut(&2)
        .unwrap()
        .handle_envelope(1, &bad)
        .is_err());
}

#[test]
fn followers_read_only_up_to_the_commit_index() {
    let mut net = Net::new(&[1, 2, 3], &[(G, vec![1, 2, 3])]);
    let leader = net.elect(G, &[1, 2, 3]);
    let follower = [1, 2, 3].into_iter().find(|&n| n != leader).unwrap();
    // Followers never sync: the leader alone is no majority.
    net.syncing = [leader].into_iter().collect();
    let before = net.replica(follower, G).readable_up_to();
    let p = net.propose(leader, G, b"pending");
    net.tick(3);
    assert!(net.replica(follower, G).last_index() > before, "replicated");
    assert_eq!(net.replica(follower, G).readable_up_to(), before);
    assert_eq!(net.replica(leader, G).readable_up_to(), before);
    assert!(net.acked_at(leader, p).is_none());
    assert!(net
        .events
        .iter()
        .any(|(n, e)| *n == leader && matches!(e, ReplicaEvent::LeaderDurable { .. })));
    // One follower's log flushes by itself and reports it.
    let mut disk = net.disks[&(follower, G)].clone();
    disk.sync().unwrap();
    net.hosts
        .get_mut(&follower)
        .unwrap()
        .on_persisted(G, disk.synced_index())
        .unwrap();
    net.tick(2);
    let (index, _) = net.acked_at(leader, p).expect("committed");
    assert!(net.replica(follower, G).readable_up_to() >= index);
}

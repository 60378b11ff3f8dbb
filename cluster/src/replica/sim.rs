//! Deterministic simulation of data replication (TigerBeetle VOPR style,
//! modelled on `meta::sim`): 3 or 5 nodes, each a [`ReplicaHost`] over
//! [`MemReplicaLog`]s, hosting [`GROUPS`] partition groups of 3 voters
//! (every node with 3 nodes; a seeded choice of 3 with 5, plus live replica
//! moves to the other nodes). Envelopes travel a seeded network that drops,
//! delays, reorders, duplicates and (rarely) corrupts them; episodes cut
//! the network in two, isolate a node that leads groups, or crash a node,
//! which restarts with its disk kept or with (part of) its unsynced tail
//! dropped. Clients propose unique batches to whoever they think leads,
//! retrying on `NotLeader` and on definite failure. Every random choice
//! comes from the seed: a failing seed replays exactly ([`run_seed`]).
//!
//! Checked after every step, per group:
//! - at most one leader per term;
//! - a committed entry never changes, and replicas agree byte for byte up
//!   to each one's commit index (every replica's log, up to its commit
//!   index, against one global record of what was committed where);
//! - every `Acked` batch is the committed entry at its index and term, and
//!   is on the synced logs of a majority of the voters it was committed by
//!   (re-checked whenever one of their disks syncs or crashes, until a
//!   majority also has it below its durable commit index); `LeaderDurable`
//!   is on the leader's synced log; `Dropped` is really overwritten;
//! - an isolated leader steps down within two election timeouts and acks
//!   nothing proposed after the cut; the majority side elects a new leader.
//!
//! After the faults stop (everything healed and restarted, moves finished,
//! clients quiet): every group has a leader, every replica's log is the
//! leader's, no proposal is left pending, and every acknowledged batch is
//! in the log exactly once, at the index it was acknowledged at; no batch
//! appears twice.
//!
//! Time is simulated milliseconds; the loop jumps from event to event.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};

use raft::eraftpb::EntryType;

use super::{
    FailReason, GroupId, MemReplicaLog, MembershipChange, PartitionReplica, ProposalId,
    ReplicaConfig, ReplicaError, ReplicaEvent, ReplicaHost, ReplicaLog,
};

pub const GROUPS: u64 = 4;
const TICK_MS: u64 = 100;
const ELECTION_TICKS: u64 = 10;
const FAULT_PHASE_MS: u64 = 12_000;
const CONVERGE_MS_MAX: u64 = 30_000;
const IN_FLIGHT_MAX: usize = 50_000;
const ISOLATION_ELECTION_MS_MAX: u64 = 15_000;
/// check-quorum runs every election timeout: a cut just after one check is
/// noticed at the one after next. Ticks drift up to +10%.
const STEPDOWN_MS_MAX: u64 = 2 * ELECTION_TICKS * (TICK_MS + 10) + 2 * TICK_MS;

// ---------------------------------------------------------------- randomness

use crate::rng::SplitMix64 as Rng;

// --------------------------------------------------------------------- state

struct Packet {
    from: u64,
    to: u64,
    bytes: Vec<u8>,
}

#[derive(Clone, Copy)]
struct Loss {
    drop_p: f64,
    dup_p: f64,
    corrupt_p: f64,
    delay_ms_max: u64,
}

const BACKGROUND_LOSS: Loss = Loss {
    drop_p: 0.02,
    dup_p: 0.02,
    corrupt_p: 0.002,
    delay_ms_max: 20,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Episode {
    Calm,
    IsolateLeader,
    Partition,
    Lossy,
}

struct SimNode {
    host: Option<ReplicaHost<MemReplicaLog>>,
    /// Every group's disk this node ever had (kept after a move away, for
    /// the durability checks).
    disks: BTreeMap<GroupId, MemReplicaLog>,
    incarnation: u64,
    next_tick_ms: u64,
    sync_at_ms: Option<u64>,
    restart_at_ms: Option<u64>,
}

/// An acknowledged batch, watched until it cannot be lost any more.
struct Ack {
    index: u64,
    term: u64,
    /// Voter sets the committing leader may have counted its quorum in.
    configs: Vec<BTreeSet<u64>>,
    holders: BTreeSet<u64>,
}

/// Where a proposal was made: (node, incarnation, id).
type ProposalKey = (u64, u64, ProposalId);

#[derive(Default)]
struct Client {
    seq: u64,
    /// Batches known not to be in the log: proposed again first.
    retry: VecDeque<Vec<u8>>,
    leader_hint: Option<u64>,
    in_flight: BTreeMap<ProposalKey, (Vec<u8>, u64)>,
    acked: BTreeMap<Vec<u8>, (u64, u64)>,
    unknown: BTreeSet<Vec<u8>>,
    proposed: BTreeSet<Vec<u8>>,
}

struct Move {
    old: u64,
    new: u64,
}

struct GroupState {
    /// Nodes that host a replica now (voters and learners).
    hosts: BTreeSet<u64>,
    /// Every node that ever hosted one.
    ever: BTreeSet<u64>,
    leaders: BTreeMap<u64, u64>,
    /// Index → (term, type, data) of every entry seen committed.
    committed: BTreeMap<u64, (u64, EntryType, Vec<u8>)>,
    /// Per node: the commit index its log was compared up to.
    checked: BTreeMap<u64, u64>,
    /// Per node: the voters it saw at the last check.
    voters_seen: BTreeMap<u64, BTreeSet<u64>>,
    /// Nodes that led the group at their last check.
    led_at_check: BTreeSet<u64>,
    commit_configs: BTreeMap<u64, Vec<BTreeSet<u64>>>,
    acks: Vec<Ack>,
    fresh_acks: usize,
    client: Client,
    mv: Option<Move>,
}

struct Isolation {
    node: u64,
    start_ms: u64,
    /// Groups it led: (group, term, new leader elected at).
    led: Vec<(GroupId, u64, Option<u64>)>,
    stepped_down_ms: Option<u64>,
}

/// What one or more runs did (times are simulated).
#[derive(Default, Debug, Clone)]
pub struct SimStats {
    pub seeds: u64,
    pub steps: u64,
    pub sim_ms: u64,
    pub elections: u64,
    pub isolations: u64,
    /// Per group led by an isolated node: time until the rest elected.
    pub failover_ms: Vec<u64>,
    /// Per isolation: time until the isolated node led nothing.
    pub stepdown_ms: Vec<u64>,
    pub crashes_keep_disk: u64,
    pub crashes_drop_unsynced: u64,
    pub appends_lost: u64,
    pub envelopes_sent: u64,
    pub envelopes_dropped: u64,
    pub envelopes_duplicated: u64,
    pub envelopes_corrupted: u64,
    pub heartbeats_sent: u64,
    pub raft_messages_sent: u64,
    pub proposals: u64,
    pub acked: u64,
    pub leader_durable: u64,
    pub dropped: u64,
    pub unknown: u64,
    pub snapshots_installed: u64,
    pub moves_completed: u64,
    pub converge_ms_max: u64,
    /// A fold of every event of the run (one seed): equal for a replay.
    pub trace: u64,
}

impl SimStats {
    pub fn merge(&mut self, o: &SimStats) {
        self.seeds += o.seeds;
        self.steps += o.steps;
        self.sim_ms += o.sim_ms;
        self.elections += o.elections;
        self.isolations += o.isolations;
        self.failover_ms.extend(&o.failover_ms);
        self.stepdown_ms.extend(&o.stepdown_ms);
        self.crashes_keep_disk += o.crashes_keep_disk;
        self.crashes_drop_unsynced += o.crashes_drop_unsynced;
        self.appends_lost += o.appends_lost;
        self.envelopes_sent += o.envelopes_sent;
        self.envelopes_dropped += o.envelopes_dropped;
        self.envelopes_duplicated += o.envelopes_duplicated;
        self.envelopes_corrupted += o.envelopes_corrupted;
        self.heartbeats_sent += o.heartbeats_sent;
        self.raft_messages_sent += o.raft_messages_sent;
        self.proposals += o.proposals;
        self.acked += o.acked;
        self.leader_durable += o.leader_durable;
        self.dropped += o.dropped;
        self.unknown += o.unknown;
        self.snapshots_installed += o.snapshots_installed;
        self.moves_completed += o.moves_completed;
        self.converge_ms_max = self.converge_ms_max.max(o.converge_ms_max);
        self.trace ^= o.trace;
    }
}

struct Sim {
    seed: u64,
    rng: Rng,
    now_ms: u64,
    nodes: BTreeMap<u64, SimNode>,
    groups: BTreeMap<GroupId, GroupState>,
    network: BTreeMap<(u64, u64), Packet>,
    packet_seq: u64,
    cut: BTreeSet<(u64, u64)>,
    loss: Loss,
    episode: Episode,
    episode_end_ms: u64,
    next_episode_ms: u64,
    isolation: Option<Isolation>,
    /// A crash waiting for its victim to have unsynced appends (so that
    /// dropping them matters), or for its deadline: (node, drop, deadline).
    pending_crash: Option<(u64, bool, u64)>,
    next_client_ms: u64,
    next_operator_ms: u64,
    converging: bool,
    touched: BTreeSet<u64>,
    durable_changed: BTreeSet<u64>,
    trace: u64,
    stats: SimStats,
}

fn config(node: u64, group: GroupId, seed: u64, incarnation: u64) -> ReplicaConfig {
    let mut c = ReplicaConfig::new(node, group, seed ^ (incarnation << 40));
    c.election_ticks = ELECTION_TICKS as usize;
    c.heartbeat_ticks = 1;
    c.learner_lag_entries_max = 4;
    // Small appends and few in flight: more interleavings per entry.
    c.append_bytes_max = 512;
    c.inflight_appends_max = 8;
    c
}

impl Sim {
    fn new(seed: u64) -> Self {
        let mut rng = Rng(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ 0x5EED_0DA7A);
        let n: u64 = if rng.chance(0.4) { 5 } else { 3 };
        let mut nodes: BTreeMap<u64, SimNode> = (1..=n)
            .map(|id| {
                let node = SimNode {
                    host: Some(ReplicaHost::new(id)),
                    disks: BTreeMap::new(),
                    incarnation: 0,
                    next_tick_ms: rng.range(0, TICK_MS - 1),
                    sync_at_ms: None,
                    restart_at_ms: None,
                };
                (id, node)
            })
            .collect();
        let mut groups = BTreeMap::new();
        for g in 0..GROUPS {
            let group = GroupId(100 + g);
            let mut voters: Vec<u64> = (1..=n).collect();
            while voters.len() > 3 {
                let i = rng.range(0, voters.len() as u64 - 1) as usize;
                voters.remove(i);
            }
            for &v in &voters {
                let disk = MemReplicaLog::new();
                let replica =
                    PartitionReplica::bootstrap(config(v, group, seed, 0), disk.clone(), &voters)
                        .expect("bootstrap");
                let node = nodes.get_mut(&v).expect("node exists");
                node.disks.insert(group, disk);
                node.host
                    .as_mut()
                    .expect("up")
                    .add_group(replica)
                    .expect("new group");
            }
            let hosts: BTreeSet<u64> = voters.iter().copied().collect();
            groups.insert(
                group,
                GroupState {
                    hosts: hosts.clone(),
                    ever: hosts.clone(),
                    leaders: BTreeMap::new(),
                    committed: BTreeMap::new(),
                    checked: BTreeMap::new(),
                    voters_seen: hosts.iter().map(|&h| (h, hosts.clone())).collect(),
                    led_at_check: BTreeSet::new(),
                    commit_configs: BTreeMap::new(),
                    acks: Vec::new(),
                    fresh_acks: 0,
                    client: Client::default(),
                    mv: None,
                },
            );
        }
        let first_episode = rng.range(1_000, 2_500);
        let first_client = rng.range(0, 50);
        Sim {
            seed,
            rng,
            now_ms: 0,
            nodes,
            groups,
            network: BTreeMap::new(),
            packet_seq: 0,
            cut: BTreeSet::new(),
            loss: BACKGROUND_LOSS,
            episode: Episode::Calm,
            episode_end_ms: first_episode,
            next_episode_ms: first_episode,
            isolation: None,
            pending_crash: None,
            next_client_ms: first_client,
            next_operator_ms: 500,
            converging: false,
            touched: BTreeSet::new(),
            durable_changed: BTreeSet::new(),
            trace: 0,
            stats: SimStats {
                seeds: 1,
                ..SimStats::default()
            },
        }
    }

    fn fail(&self, what: String) -> ! {
        panic!(
            "seed {} at {} ms ({:?}): {what}\n{}",
            self.seed,
            self.now_ms,
            self.episode,
            replay_hint(self.seed)
        );
    }

    fn note(&mut self, a: u64, b: u64) {
        self.trace = (self.trace ^ a.wrapping_mul(0x100_0000_01B3))
            .rotate_left(17)
            .wrapping_add(b)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn replica(&self, node: u64, group: GroupId) -> Option<&PartitionReplica<MemReplicaLog>> {
        self.nodes.get(&node)?.host.as_ref()?.group(group)
    }

    /// The leader of `group` with the highest term among running replicas.
    fn leader(&self, group: GroupId) -> Option<u64> {
        self.groups[&group]
            .hosts
            .iter()
            .filter_map(|&n| self.replica(n, group).map(|r| (n, r)))
            .filter(|(_, r)| r.is_leader())
            .max_by_key(|(_, r)| r.term())
            .map(|(n, _)| n)
    }

    // ------------------------------------------------------------ the loop

    fn run(&mut self) -> SimStats {
        loop {
            if !self.converging && self.now_ms >= FAULT_PHASE_MS {
                self.start_converging();
            }
            if self.converging {
                match self.converged() {
                    Some(why_not) => {
                        if self.now_ms >= FAULT_PHASE_MS + CONVERGE_MS_MAX {
                            self.fail(format!(
                                "no convergence after the faults stopped: {why_not}"
                            ));
                        }
                    }
                    None => {
                        self.stats.converge_ms_max = self.now_ms - FAULT_PHASE_MS;
                        break;
                    }
                }
            }
            if !self.maybe_crash() {
                self.step();
            }
            self.stats.steps += 1;
            self.pump();
            self.check();
        }
        self.final_check();
        self.stats.sim_ms = self.now_ms;
        self.stats.elections = self.groups.values().map(|g| g.leaders.len() as u64).sum();
        self.stats.trace = self.trace;
        self.stats.clone()
    }

    /// Advance to the next event and run it (one event per step).
    fn step(&mut self) {
        let next_packet = self.network.keys().next().map(|k| k.0);
        let mut next = next_packet.unwrap_or(u64::MAX).min(self.next_operator_ms);
        for n in self.nodes.values() {
            if n.host.is_some() {
                next = next.min(n.next_tick_ms);
                if let Some(t) = n.sync_at_ms {
                    next = next.min(t);
                }
            } else if let Some(t) = n.restart_at_ms {
                next = next.min(t);
            }
        }
        if !self.converging {
            next = next
                .min(self.next_client_ms)
                .min(self.next_episode_ms)
                .min(self.episode_end_ms)
                .min(FAULT_PHASE_MS);
        }
        assert!(next >= self.now_ms && next != u64::MAX);
        self.now_ms = next;
        let now = next;
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        for &id in &ids {
            let n = &self.nodes[&id];
            if n.host.is_none() && n.restart_at_ms == Some(now) {
                return self.restart(id);
            }
        }
        if !self.converging && self.episode_end_ms == now {
            return self.end_episode();
        }
        if !self.converging && self.next_episode_ms == now {
            return self.start_episode();
        }
        if next_packet == Some(now) {
            return self.deliver();
        }
        for &id in &ids {
            let n = &self.nodes[&id];
            if n.host.is_some() && n.sync_at_ms == Some(now) {
                return self.sync(id);
            }
        }
        for &id in &ids {
            let n = &self.nodes[&id];
            if n.host.is_some() && n.next_tick_ms == now {
                return self.tick(id);
            }
        }
        if !self.converging && self.next_client_ms == now {
            return self.client();
        }
        if self.next_operator_ms == now {
            return self.operator();
        }
        if now == FAULT_PHASE_MS {
            return;
        }
        self.fail(format!("no event due at {now}"));
    }

    fn tick(&mut self, id: u64) {
        let jitter = self.rng.range(0, 20);
        let n = self.nodes.get_mut(&id).expect("node");
        // ±10% clock drift per tick.
        n.next_tick_ms += TICK_MS - 10 + jitter;
        n.host.as_mut().expect("up").tick();
        self.touched.insert(id);
        self.note(1, id);
    }

    /// A group commit: every group with writes waiting, either synced by
    /// the driver or flushed by the log itself and then reported.
    fn sync(&mut self, id: u64) {
        let self_flush = self.rng.chance(0.5);
        let n = self.nodes.get_mut(&id).expect("node");
        n.sync_at_ms = None;
        let host = n.host.as_mut().expect("up");
        let groups: Vec<GroupId> = host
            .groups()
            .filter(|(_, r)| r.needs_sync())
            .map(|(&g, _)| g)
            .collect();
        for group in groups {
            let result = if self_flush {
                let mut disk = n.disks[&group].clone();
                let _ = disk.sync();
                host.on_persisted(group, disk.synced_index())
            } else {
                host.sync(group)
            };
            if let Err(e) = result {
                let e = e.to_string();
                self.fail(format!("sync of {group} on node {id}: {e}"));
            }
        }
        self.durable_changed.insert(id);
        self.touched.insert(id);
        self.note(2, id);
    }

    fn deliver(&mut self) {
        let Some(((_, seq), packet)) = self.network.pop_first() else {
            return;
        };
        self.note(3, seq);
        let blocked = self.cut.contains(&(packet.from, packet.to));
        let Some(host) = self.nodes.get_mut(&packet.to).and_then(|n| n.host.as_mut()) else {
            self.stats.envelopes_dropped += 1;
            return;
        };
        if blocked {
            self.stats.envelopes_dropped += 1;
            return;
        }
        let corrupted = packet.bytes.first() == Some(&0xFF);
        let bytes = if corrupted {
            &packet.bytes[1..]
        } else {
            &packet.bytes[..]
        };
        let result = host.handle_envelope(packet.from, bytes);
        self.touched.insert(packet.to);
        match (result, corrupted) {
            (Ok(_), false) | (Err(_), true) => {}
            (Ok(d), true) => self.fail(format!("a corrupted envelope was accepted: {d:?}")),
            (Err(e), false) => self.fail(format!(
                "envelope from {} to {} refused: {e}",
                packet.from, packet.to
            )),
        }
    }

    fn send(&mut self, from: u64, to: u64, mut bytes: Vec<u8>) {
        self.stats.envelopes_sent += 1;
        if self.cut.contains(&(from, to)) || self.rng.chance(self.loss.drop_p) {
            self.stats.envelopes_dropped += 1;
            return;
        }
        if self.rng.chance(self.loss.corrupt_p) && !bytes.is_empty() {
            // Flip one bit; a leading 0xFF marks it for the delivery check.
            let at = self.rng.range(0, bytes.len() as u64 - 1) as usize;
            bytes[at] ^= 1 << self.rng.range(0, 7);
            bytes.insert(0, 0xFF);
            self.stats.envelopes_corrupted += 1;
        }
        let copies = if self.rng.chance(self.loss.dup_p) {
            self.stats.envelopes_duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            if self.network.len() >= IN_FLIGHT_MAX {
                self.fail("network queue bound reached".into());
            }
            let at = self.now_ms + self.rng.range(1, self.loss.delay_ms_max);
            self.packet_seq += 1;
            self.network.insert(
                (at, self.packet_seq),
                Packet {
                    from,
                    to,
                    bytes: bytes.clone(),
                },
            );
        }
    }

    fn restart(&mut self, id: u64) {
        let seed = self.seed;
        let tick_phase = self.rng.range(0, TICK_MS - 1);
        let now = self.now_ms;
        let hosted: Vec<GroupId> = self
            .groups
            .iter()
            .filter(|(_, g)| g.hosts.contains(&id))
            .map(|(&g, _)| g)
            .collect();
        let n = self.nodes.get_mut(&id).expect("node");
        n.restart_at_ms = None;
        n.incarnation += 1;
        let mut host = ReplicaHost::new(id);
        for group in hosted {
            let disk = n.disks[&group].clone();
            let replica = PartitionReplica::open(config(id, group, seed, n.incarnation), disk);
            match replica.map(|r| host.add_group(r)) {
                Ok(Ok(())) => {}
                Ok(Err(e)) | Err(e) => {
                    let e = e.to_string();
                    self.fail(format!("restart of {group} on node {id}: {e}"))
                }
            }
        }
        let n = self.nodes.get_mut(&id).expect("node");
        n.host = Some(host);
        n.next_tick_ms = now + tick_phase;
        for g in self.groups.values_mut() {
            g.checked.insert(id, 0);
            g.led_at_check.remove(&id);
        }
        self.touched.insert(id);
        self.note(5, id);
    }

    fn crash(&mut self, id: u64, drop_unsynced: bool) {
        let restart_in = self.rng.range(300, 3_000);
        let mut keeps = Vec::new();
        let n = &self.nodes[&id];
        if n.host.is_none() {
            return;
        }
        for disk in n.disks.values() {
            let unsynced = disk.unsynced_appends() as u64;
            keeps.push(if drop_unsynced {
                self.rng.range(0, unsynced) as usize
            } else {
                usize::MAX
            });
        }
        let n = self.nodes.get_mut(&id).expect("node");
        n.host = None;
        n.sync_at_ms = None;
        n.restart_at_ms = Some(self.now_ms + restart_in);
        let mut lost = 0;
        for (disk, keep) in n.disks.values().zip(keeps) {
            lost += disk.crash(keep) as u64;
        }
        // Proposals in flight there are lost with the process.
        for g in self.groups.values_mut() {
            let c = &mut g.client;
            let dead: Vec<ProposalKey> =
                c.in_flight.keys().filter(|k| k.0 == id).copied().collect();
            for k in dead {
                if let Some((payload, _)) = c.in_flight.remove(&k) {
                    c.unknown.insert(payload);
                    self.stats.unknown += 1;
                }
            }
        }
        self.durable_changed.insert(id);
        self.stats.appends_lost += lost;
        if drop_unsynced {
            self.stats.crashes_drop_unsynced += 1;
        } else {
            self.stats.crashes_keep_disk += 1;
        }
        self.note(4, id * 1000 + lost);
    }

    fn maybe_crash(&mut self) -> bool {
        let Some((node, drop_unsynced, deadline)) = self.pending_crash else {
            return false;
        };
        let n = &self.nodes[&node];
        let in_flight = n.disks.values().any(|d| d.unsynced_appends() > 0);
        if n.host.is_none() || self.converging {
            self.pending_crash = None;
        } else if in_flight || self.now_ms >= deadline {
            self.pending_crash = None;
            self.crash(node, drop_unsynced);
            return true;
        }
        false
    }

    // ------------------------------------------------------------ outputs

    /// Drain the output of the nodes this step reached.
    fn pump(&mut self) {
        for id in self.touched.clone() {
            while let Some(host) = self.nodes.get_mut(&id).and_then(|n| n.host.as_mut()) {
                let (hb, msgs) = (host.stats().heartbeats_sent, host.stats().messages_sent);
                let out = host.poll_output();
                let events = host.take_events();
                self.stats.heartbeats_sent += host.stats().heartbeats_sent - hb;
                self.stats.raft_messages_sent += host.stats().messages_sent - msgs;
                if out.is_empty() && events.is_empty() {
                    break;
                }
                for o in out {
                    self.note(10, o.to);
                    self.send(id, o.to, o.bytes);
                }
                for e in events {
                    self.on_event(id, e);
                }
            }
            let now = self.now_ms;
            let fsync_ms = self.rng.range(0, 5);
            let n = self.nodes.get_mut(&id).expect("node");
            if let Some(host) = &n.host {
                if host.needs_sync() && n.sync_at_ms.is_none() {
                    n.sync_at_ms = Some(now + fsync_ms);
                }
            }
        }
    }

    fn on_event(&mut self, node: u64, event: ReplicaEvent) {
        let incarnation = self.nodes[&node].incarnation;
        match event {
            ReplicaEvent::LeaderChanged { term, .. } => self.note(12, term),
            ReplicaEvent::Committed { up_to, .. } => self.note(13, up_to),
            ReplicaEvent::MembershipChanged { index, .. } => self.note(14, index),
            ReplicaEvent::SnapshotInstalled { index, .. } => {
                self.stats.snapshots_installed += 1;
                self.note(15, index);
            }
            ReplicaEvent::Stopped { group, reason } => {
                self.fail(format!("{group} stopped on node {node}: {reason}"))
            }
            ReplicaEvent::LeaderDurable {
                group,
                proposal,
                index,
                term,
            } => {
                self.stats.leader_durable += 1;
                let disk = &self.nodes[&node].disks[&group];
                if !disk.durable_contains(index, term) {
                    self.fail(format!(
                        "{group}: {proposal} reported durable on node {node} at {index}@{term}, \
                         but its synced log does not hold it"
                    ));
                }
            }
            ReplicaEvent::Acked {
                group,
                proposal,
                index,
                term,
            } => {
                self.note(16, index);
                let key = (node, incarnation, proposal);
                let Some((payload, proposed_ms)) = self
                    .groups
                    .get_mut(&group)
                    .and_then(|g| g.client.in_flight.remove(&key))
                else {
                    return; // the operator's membership change
                };
                self.stats.acked += 1;
                if let Some(iso) = &self.isolation {
                    if iso.node == node && proposed_ms >= iso.start_ms {
                        self.fail(format!(
                            "{group}: isolated node {node} acknowledged {index}@{term}, \
                             proposed after the cut"
                        ));
                    }
                }
                let entry = self.nodes[&node].disks[&group].entry_at(index);
                match entry {
                    Some((t, EntryType::EntryNormal, data)) if t == term && data == payload => self
                        .record_committed(group, node, index, term, EntryType::EntryNormal, data),
                    other => self.fail(format!(
                        "{group}: acked {index}@{term} on node {node}, but its log holds {:?}",
                        other.map(|(t, ty, _)| (t, ty))
                    )),
                }
                let g = self.groups.get_mut(&group).expect("group");
                if g.client.acked.insert(payload, (index, term)).is_some() {
                    self.fail(format!("{group}: a batch was acknowledged twice"));
                }
                g.acks.push(Ack {
                    index,
                    term,
                    configs: Vec::new(),
                    holders: BTreeSet::new(),
                });
            }
            ReplicaEvent::Failed {
                group,
                proposal,
                index,
                term,
                reason,
            } => {
                self.note(17, index);
                let key = (node, incarnation, proposal);
                let Some((payload, _)) = self
                    .groups
                    .get_mut(&group)
                    .and_then(|g| g.client.in_flight.remove(&key))
                else {
                    return;
                };
                if reason == FailReason::Dropped {
                    self.stats.dropped += 1;
                    // Definitely not committed: if it were, the retry
                    // would commit it twice (the final check sees that).
                    if let Some((t, _, data)) = self.groups[&group].committed.get(&index) {
                        if *t == term && *data == payload {
                            self.fail(format!(
                                "{group}: {index}@{term} reported dropped on node {node}, \
                                 but it is committed"
                            ));
                        }
                    }
                    let c = &mut self.groups.get_mut(&group).expect("group").client;
                    c.retry.push_back(payload);
                } else {
                    self.stats.unknown += 1;
                    let c = &mut self.groups.get_mut(&group).expect("group").client;
                    c.unknown.insert(payload);
                }
            }
        }
    }

    // -------------------------------------------------------------- client

    fn client(&mut self) {
        self.next_client_ms = self.now_ms + self.rng.range(5, 60);
        let group = GroupId(100 + self.rng.range(0, GROUPS - 1));
        let g = self.groups.get_mut(&group).expect("group");
        let payload = match g.client.retry.pop_front() {
            Some(p) => p,
            None => {
                g.client.seq += 1;
                let mut p = format!("{group}/{}/", g.client.seq).into_bytes();
                let filler = self.rng.range(0, 40) as usize;
                p.extend((0..filler).map(|i| (i as u8).wrapping_mul(31)));
                g.client.proposed.insert(p.clone());
                p
            }
        };
        let hosts: Vec<u64> = g.hosts.iter().copied().collect();
        let mut target = match g.client.leader_hint {
            Some(h) if hosts.contains(&h) => h,
            _ => self.rng.pick(&hosts),
        };
        // Try the target, then (once) the leader it names.
        for attempt in 0..2 {
            self.stats.proposals += 1;
            self.touched.insert(target);
            let incarnation = self.nodes[&target].incarnation;
            let now = self.now_ms;
            let result = match self.nodes.get_mut(&target).and_then(|n| n.host.as_mut()) {
                Some(host) => host.propose(group, payload.clone()),
                None => Err(ReplicaError::UnknownGroup(group)),
            };
            let c = &mut self.groups.get_mut(&group).expect("group").client;
            match result {
                Ok(id) => {
                    c.leader_hint = Some(target);
                    c.in_flight
                        .insert((target, incarnation, id), (payload, now));
                    self.note(8, id.0);
                    return;
                }
                Err(ReplicaError::NotLeader { leader, .. }) => {
                    c.leader_hint = leader;
                    match leader {
                        Some(l) if attempt == 0 && l != target && hosts.contains(&l) => {
                            target = l;
                            continue;
                        }
                        _ => {}
                    }
                }
                Err(
                    ReplicaError::ProposalDropped
                    | ReplicaError::ProposalsFull { .. }
                    | ReplicaError::UnknownGroup(_),
                ) => c.leader_hint = None,
                Err(e) => self.fail(format!("propose to {group} on node {target}: {e}")),
            }
            // Never appended: safe to propose again later.
            let c = &mut self.groups.get_mut(&group).expect("group").client;
            c.retry.push_front(payload);
            return;
        }
    }

    // ------------------------------------------------------------ operator

    /// Every 500 ms: compaction, and (with 5 nodes) live replica moves.
    fn operator(&mut self) {
        self.next_operator_ms = self.now_ms + 500;
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        for id in ids {
            let groups: Vec<GroupId> = self.groups.keys().copied().collect();
            for group in groups {
                if !self.rng.chance(0.3) {
                    continue;
                }
                let keep = self.rng.range(0, 8);
                let Some(r) = self
                    .nodes
                    .get_mut(&id)
                    .and_then(|n| n.host.as_mut())
                    .and_then(|h| h.group_mut(group))
                else {
                    continue;
                };
                let through = r.applied_index().saturating_sub(keep);
                if let Err(e) = r.compact(through) {
                    self.fail(format!("compaction of {group} on node {id}: {e}"));
                }
            }
        }
        if self.nodes.len() < 5 {
            return;
        }
        let groups: Vec<GroupId> = self.groups.keys().copied().collect();
        for group in groups {
            self.drive_move(group);
        }
    }

    fn drive_move(&mut self, group: GroupId) {
        let Some(leader) = self.leader(group) else {
            return;
        };
        let g = &self.groups[&group];
        let Some(Move { old, new }) = g.mv else {
            // Start one now and then, to a node that never held the group
            // (its old disk stays for the checks).
            if self.converging || !self.rng.chance(0.1) {
                return;
            }
            let spare: Vec<u64> = self
                .nodes
                .keys()
                .copied()
                .filter(|n| !g.ever.contains(n) && self.nodes[n].host.is_some())
                .collect();
            let movable: Vec<u64> = g.hosts.iter().copied().filter(|&n| n != leader).collect();
            if spare.is_empty() || movable.is_empty() {
                return;
            }
            let new = self.rng.pick(&spare);
            let old = self.rng.pick(&movable);
            let disk = MemReplicaLog::new();
            let n = self.nodes.get_mut(&new).expect("node");
            let cfg = config(new, group, self.seed, n.incarnation);
            let replica = match PartitionReplica::open(cfg, disk.clone()) {
                Ok(r) => r,
                Err(e) => self.fail(format!("new replica of {group} on {new}: {e}")),
            };
            n.disks.insert(group, disk);
            if let Err(e) = n.host.as_mut().expect("up").add_group(replica) {
                self.fail(format!("new replica of {group} on {new}: {e}"));
            }
            let g = self.groups.get_mut(&group).expect("group");
            g.hosts.insert(new);
            g.ever.insert(new);
            g.checked.insert(new, 0);
            g.mv = Some(Move { old, new });
            self.touched.insert(new);
            self.note(20, new * 100 + old);
            return;
        };
        self.touched.insert(leader);
        let r = self.replica(leader, group).expect("leader runs");
        let (voters, learners) = r.members();
        let change = if !voters.contains(&new) && !learners.contains(&new) {
            Some(MembershipChange::AddLearner(new))
        } else if learners.contains(&new) {
            r.learner_caught_up(new)
                .then_some(MembershipChange::Promote(new))
        } else if voters.contains(&old) || learners.contains(&old) {
            if leader == old {
                let to = voters.iter().copied().find(|&v| v != old && v != new);
                let host = self.nodes.get_mut(&leader).and_then(|n| n.host.as_mut());
                if let (Some(to), Some(r)) = (to, host.and_then(|h| h.group_mut(group))) {
                    r.transfer_leadership(to);
                }
                None
            } else {
                Some(MembershipChange::Remove(old))
            }
        } else {
            // Done: the old replica goes away (its disk stays).
            if let Some(host) = self.nodes.get_mut(&old).and_then(|n| n.host.as_mut()) {
                host.remove_group(group);
            }
            let g = self.groups.get_mut(&group).expect("group");
            g.hosts.remove(&old);
            g.mv = None;
            let dead: Vec<ProposalKey> = g
                .client
                .in_flight
                .keys()
                .filter(|k| k.0 == old)
                .copied()
                .collect();
            for k in dead {
                if let Some((payload, _)) = g.client.in_flight.remove(&k) {
                    g.client.unknown.insert(payload);
                }
            }
            self.stats.moves_completed += 1;
            self.note(21, old);
            return;
        };
        let Some(change) = change else {
            return;
        };
        let host = self
            .nodes
            .get_mut(&leader)
            .and_then(|n| n.host.as_mut())
            .expect("leader runs");
        match host.propose_membership_change(group, change) {
            Ok(id) => self.note(22, id.0),
            Err(
                ReplicaError::MembershipChangePending
                | ReplicaError::ProposalDropped
                | ReplicaError::ProposalsFull { .. }
                | ReplicaError::InvalidMembershipChange { .. },
            ) => {}
            Err(e) => self.fail(format!("{change:?} of {group} on {leader}: {e}")),
        }
    }

    // -------------------------------------------------------------- faults

    fn start_episode(&mut self) {
        let all_up = self.nodes.values().all(|n| n.host.is_some());
        let roll = self.rng.range(0, 99);
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        let (episode, duration) = match roll {
            0..=29 if all_up => {
                let leading: Vec<u64> = ids
                    .iter()
                    .copied()
                    .filter(|&n| self.groups.keys().any(|&g| self.leader(g) == Some(n)))
                    .collect();
                if leading.is_empty() {
                    (Episode::Calm, 500)
                } else {
                    let node = self.rng.pick(&leading);
                    for &other in &ids {
                        if other != node {
                            self.cut.insert((node, other));
                            self.cut.insert((other, node));
                        }
                    }
                    let led = self
                        .groups
                        .keys()
                        .filter(|&&g| self.leader(g) == Some(node))
                        .map(|&g| {
                            let term = self.replica(node, g).map_or(0, |r| r.term());
                            (g, term, None)
                        })
                        .collect();
                    self.stats.isolations += 1;
                    self.isolation = Some(Isolation {
                        node,
                        start_ms: self.now_ms,
                        led,
                        stepped_down_ms: None,
                    });
                    (Episode::IsolateLeader, self.rng.range(3_000, 5_000))
                }
            }
            0..=49 => {
                let side: BTreeSet<u64> = ids
                    .iter()
                    .copied()
                    .filter(|_| self.rng.chance(0.5))
                    .collect();
                for &a in &ids {
                    for &b in &ids {
                        if side.contains(&a) != side.contains(&b) {
                            self.cut.insert((a, b));
                        }
                    }
                }
                (Episode::Partition, self.rng.range(1_000, 3_000))
            }
            50..=74 => {
                let up: Vec<u64> = ids
                    .iter()
                    .copied()
                    .filter(|n| self.nodes[n].host.is_some())
                    .collect();
                if !up.is_empty() {
                    let victim = self.rng.pick(&up);
                    let drop_unsynced = self.rng.chance(0.6);
                    self.pending_crash = Some((victim, drop_unsynced, self.now_ms + 1_000));
                }
                (Episode::Calm, self.rng.range(200, 1_000))
            }
            75..=89 => {
                self.loss = Loss {
                    drop_p: 0.1 + self.rng.range(0, 30) as f64 / 100.0,
                    dup_p: 0.1,
                    corrupt_p: 0.01,
                    delay_ms_max: self.rng.range(20, 150),
                };
                (Episode::Lossy, self.rng.range(1_000, 3_000))
            }
            _ => (Episode::Calm, self.rng.range(500, 2_000)),
        };
        self.note(6, roll);
        self.episode = episode;
        self.episode_end_ms = self.now_ms + duration;
        self.next_episode_ms = self.episode_end_ms + self.rng.range(300, 1_500);
    }

    fn end_episode(&mut self) {
        if let Some(iso) = &self.isolation {
            // The isolation lasts until the majority elected everywhere.
            let waiting = iso.led.iter().any(|(_, _, at)| at.is_none());
            if waiting && !self.converging {
                if self.now_ms - iso.start_ms >= ISOLATION_ELECTION_MS_MAX {
                    self.fail(format!(
                        "node {} isolated at {} ms: groups {:?} elected no new leader",
                        iso.node, iso.start_ms, iso.led
                    ));
                }
                self.episode_end_ms = self.now_ms + 100;
                self.next_episode_ms = self.next_episode_ms.max(self.episode_end_ms + 300);
                return;
            }
            self.isolation = None;
        }
        self.cut.clear();
        self.loss = BACKGROUND_LOSS;
        self.episode = Episode::Calm;
        self.episode_end_ms = u64::MAX;
        self.note(7, 0);
    }

    fn start_converging(&mut self) {
        self.converging = true;
        self.isolation = None;
        self.end_episode();
        self.loss = Loss {
            drop_p: 0.0,
            dup_p: 0.0,
            corrupt_p: 0.0,
            delay_ms_max: 10,
        };
        let now = self.now_ms;
        for n in self.nodes.values_mut() {
            if n.host.is_none() {
                n.restart_at_ms = Some(n.restart_at_ms.map_or(now, |t| t.min(now + 1_000)));
            }
        }
    }

    // -------------------------------------------------------------- checks

    fn record_committed(
        &mut self,
        group: GroupId,
        node: u64,
        index: u64,
        term: u64,
        kind: EntryType,
        data: Vec<u8>,
    ) {
        let g = self.groups.get_mut(&group).expect("group");
        match g.committed.get(&index) {
            None => {
                g.committed.insert(index, (term, kind, data));
            }
            Some((t, k, d)) if (*t, *k, d) != (term, kind, &data) => {
                let t = *t;
                self.fail(format!(
                    "{group}: committed entry {index} differs on node {node}: \
                     term {t} vs {term}, or other bytes"
                ));
            }
            Some(_) => {}
        }
    }

    fn check(&mut self) {
        let touched = std::mem::take(&mut self.touched);
        let groups: Vec<GroupId> = self.groups.keys().copied().collect();
        for &id in &touched {
            for &group in &groups {
                self.check_replica(id, group);
            }
        }
        let changed = std::mem::take(&mut self.durable_changed);
        for &group in &groups {
            self.check_acks(group, &changed);
        }
        self.check_isolation();
    }

    fn check_replica(&mut self, id: u64, group: GroupId) {
        let Some(r) = self.replica(id, group) else {
            return;
        };
        let (is_leader, term, commit) = (r.is_leader(), r.term(), r.commit_index());
        let voters: BTreeSet<u64> = r.members().0.into_iter().collect();
        let disk = self.nodes[&id].disks[&group].clone();
        let g = self.groups.get_mut(&group).expect("group");
        if is_leader {
            let first = *g.leaders.entry(term).or_insert(id);
            if first != id {
                self.fail(format!(
                    "{group}: two leaders in term {term}: {first} and {id}"
                ));
            }
        }
        let checked = g.checked.get(&id).copied().unwrap_or(0);
        let seen = g.voters_seen.get(&id).cloned().unwrap_or_default();
        // A leader that committed and stepped down within one step (a
        // higher term in the same envelope, or its own removal) counts too.
        let led = is_leader || g.led_at_check.contains(&id);
        if is_leader {
            g.led_at_check.insert(id);
        } else {
            g.led_at_check.remove(&id);
        }
        if led && commit > checked {
            let configs = vec![seen, voters.clone()];
            for index in checked + 1..=commit {
                g.commit_configs
                    .entry(index)
                    .or_insert_with(|| configs.clone());
            }
        }
        g.checked.insert(id, commit);
        g.voters_seen.insert(id, voters);
        // The entry at the commit index is re-read every time: that is
        // where an overwrite would show first.
        let from = (checked + 1).min(commit);
        for index in from.max(2)..=commit {
            match disk.entry_at(index) {
                Some((t, kind, data)) => self.record_committed(group, id, index, t, kind, data),
                None => self.fail(format!(
                    "{group}: node {id} committed {index} but holds no entry there"
                )),
            }
        }
    }

    fn check_acks(&mut self, group: GroupId, changed: &BTreeSet<u64>) {
        let g = self.groups.get_mut(&group).expect("group");
        let fresh_from = g.fresh_acks;
        g.fresh_acks = g.acks.len();
        if fresh_from == g.acks.len()
            && g.acks
                .iter()
                .all(|a| a.configs.iter().flatten().all(|v| !changed.contains(v)))
        {
            return;
        }
        let disks: BTreeMap<u64, MemReplicaLog> = self
            .nodes
            .iter()
            .filter_map(|(&n, node)| node.disks.get(&group).map(|d| (n, d.clone())))
            .collect();
        let mut failure = None;
        let g = self.groups.get_mut(&group).expect("group");
        for (i, ack) in g.acks.iter_mut().enumerate() {
            let fresh = i >= fresh_from;
            if fresh {
                match g.commit_configs.get(&ack.index) {
                    Some(c) => ack.configs = c.clone(),
                    None => {
                        failure = Some(format!(
                            "acked {}@{} but no leader was seen committing it",
                            ack.index, ack.term
                        ));
                        break;
                    }
                }
            } else if ack.configs.iter().flatten().all(|v| !changed.contains(v)) {
                continue;
            }
            for v in ack.configs.iter().flatten() {
                if fresh || changed.contains(v) {
                    if disks
                        .get(v)
                        .is_some_and(|d| d.durable_contains(ack.index, ack.term))
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
                    "acked {}@{} is durable only on {:?}, no majority of {:?}",
                    ack.index, ack.term, ack.holders, ack.configs
                ));
                break;
            }
        }
        if let Some(what) = failure {
            self.fail(format!("{group}: {what}"));
        }
        // Settled: a majority also holds it below its durable commit index,
        // where only a broken Raft could remove it (and the committed-entry
        // check would see that). The final check covers it from then on.
        let before = g.acks.len();
        g.acks.retain(|ack| {
            !ack.configs.iter().any(|c| {
                let settled = c
                    .iter()
                    .filter(|v| {
                        ack.holders.contains(v)
                            && disks
                                .get(v)
                                .is_some_and(|d| d.durable_commit() >= ack.index)
                    })
                    .count();
                settled * 2 > c.len()
            })
        });
        if g.acks.len() != before {
            g.fresh_acks = g.acks.len();
        }
    }

    fn check_isolation(&mut self) {
        let now = self.now_ms;
        let Some(iso) = &self.isolation else {
            return;
        };
        let node = iso.node;
        let mut elected = Vec::new();
        for (i, (group, term, at)) in iso.led.iter().enumerate() {
            if at.is_none() {
                let new_leader = self.groups[group].hosts.iter().any(|&h| {
                    h != node
                        && self
                            .replica(h, *group)
                            .is_some_and(|r| r.is_leader() && r.term() > *term)
                });
                if new_leader {
                    elected.push(i);
                }
            }
        }
        let leads_any = self
            .groups
            .keys()
            .any(|&g| self.replica(node, g).is_some_and(|r| r.is_leader()));
        let iso = self.isolation.as_mut().expect("isolation");
        for i in elected {
            iso.led[i].2 = Some(now);
            self.stats.failover_ms.push(now - iso.start_ms);
        }
        if iso.stepped_down_ms.is_none() {
            if !leads_any {
                iso.stepped_down_ms = Some(now);
                self.stats.stepdown_ms.push(now - iso.start_ms);
            } else if now - iso.start_ms > STEPDOWN_MS_MAX {
                let start = iso.start_ms;
                self.fail(format!(
                    "node {node} isolated at {start} ms still leads after {STEPDOWN_MS_MAX} ms"
                ));
            }
        }
    }

    /// `None` once converged, else why not.
    fn converged(&self) -> Option<String> {
        if self.nodes.values().any(|n| n.host.is_none()) {
            return Some("a node is down".into());
        }
        for (&group, g) in &self.groups {
            if g.mv.is_some() {
                return Some(format!("{group}: a move is in progress"));
            }
            let Some(leader) = self.leader(group) else {
                return Some(format!("{group}: no leader"));
            };
            let l = self.replica(leader, group).expect("leader runs");
            let (voters, learners) = l.members();
            let members: BTreeSet<u64> = voters.iter().chain(&learners).copied().collect();
            if members != g.hosts {
                return Some(format!("{group}: members {members:?}, hosts {:?}", g.hosts));
            }
            let last = l.last_index();
            for &h in &g.hosts {
                let r = self.replica(h, group).expect("host runs");
                if r.commit_index() != last || r.last_index() != last {
                    return Some(format!(
                        "{group}: node {h} at commit {} last {}, leader's last {last}",
                        r.commit_index(),
                        r.last_index()
                    ));
                }
                if r.pending_proposals() > 0 || r.needs_sync() {
                    return Some(format!("{group}: node {h} has pending work"));
                }
                if r.leader() != Some(leader) {
                    return Some(format!("{group}: node {h} follows {:?}", r.leader()));
                }
            }
        }
        None
    }

    fn final_check(&mut self) {
        let groups: Vec<GroupId> = self.groups.keys().copied().collect();
        for group in groups {
            let g = &self.groups[&group];
            let leader = self.leader(group).expect("converged");
            let log = self.nodes[&leader].disks[&group].all_entries();
            for &h in &g.hosts {
                let other = self.nodes[&h].disks[&group].all_entries();
                if other != log {
                    self.fail(format!(
                        "{group}: node {h}'s log differs from leader {leader}'s after convergence"
                    ));
                }
            }
            let c = &g.client;
            if let Some(k) = c.in_flight.keys().next() {
                self.fail(format!("{group}: proposal {k:?} never resolved"));
            }
            let mut seen: BTreeMap<&[u8], u64> = BTreeMap::new();
            for e in &log {
                if e.get_entry_type() != EntryType::EntryNormal || e.data.is_empty() {
                    continue;
                }
                if !c.proposed.contains(&e.data[..]) {
                    self.fail(format!(
                        "{group}: entry {} holds a batch nobody proposed",
                        e.index
                    ));
                }
                if let Some(first) = seen.insert(&e.data[..], e.index) {
                    self.fail(format!(
                        "{group}: one batch at {first} and again at {}",
                        e.index
                    ));
                }
            }
            for (payload, &(index, term)) in &c.acked {
                let at = log.iter().find(|e| e.index == index);
                if at.map(|e| (e.term, &e.data[..])) != Some((term, &payload[..])) {
                    self.fail(format!(
                        "{group}: acknowledged {index}@{term} is not in the converged log"
                    ));
                }
            }
        }
    }
}

fn replay_hint(seed: u64) -> String {
    format!("replay: SPRAWL_SIM_SEED={seed} cargo test -p sprawl-cluster --test replica_sim")
}

/// Run one seed to the end. A failure (an invariant, no convergence, or a
/// panic inside raft-rs) comes back as a message naming the seed.
pub fn run_seed(seed: u64) -> Result<SimStats, String> {
    catch_unwind(AssertUnwindSafe(|| Sim::new(seed).run())).map_err(|e| {
        let msg = e
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        if msg.starts_with("seed ") {
            msg
        } else {
            format!("seed {seed}: panic: {msg}\n{}", replay_hint(seed))
        }
    })
}

impl fmt::Display for SimStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sorted = |v: &[u64]| {
            let mut v = v.to_vec();
            v.sort_unstable();
            v
        };
        let failover = sorted(&self.failover_ms);
        let stepdown = sorted(&self.stepdown_ms);
        let pct = |v: &[u64], p: f64| {
            let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len().max(1));
            v.get(rank - 1).copied().unwrap_or(0)
        };
        writeln!(
            f,
            "{} seeds, {} steps, {:.0} simulated s, {} elections",
            self.seeds,
            self.steps,
            self.sim_ms as f64 / 1000.0,
            self.elections
        )?;
        writeln!(
            f,
            "{} leader isolations: new leader after p50 {} ms, p99 {} ms, max {} ms; \
             isolated node stepped down after p50 {} ms, max {} ms",
            self.isolations,
            pct(&failover, 0.5),
            pct(&failover, 0.99),
            pct(&failover, 1.0),
            pct(&stepdown, 0.5),
            pct(&stepdown, 1.0)
        )?;
        writeln!(
            f,
            "crashes: {} keeping the disk, {} dropping unsynced appends ({} appends lost)",
            self.crashes_keep_disk, self.crashes_drop_unsynced, self.appends_lost
        )?;
        writeln!(
            f,
            "{} envelopes ({} dropped, {} duplicated, {} corrupted) carrying {} raft messages \
             ({} as heartbeat records)",
            self.envelopes_sent,
            self.envelopes_dropped,
            self.envelopes_duplicated,
            self.envelopes_corrupted,
            self.raft_messages_sent,
            self.heartbeats_sent
        )?;
        writeln!(
            f,
            "{} proposals: {} acked, {} leader-durable, {} dropped (retried), {} unknown",
            self.proposals, self.acked, self.leader_durable, self.dropped, self.unknown
        )?;
        write!(
            f,
            "{} snapshots installed, {} replica moves, convergence after the faults max {} ms",
            self.snapshots_installed, self.moves_completed, self.converge_ms_max
        )
    }
}

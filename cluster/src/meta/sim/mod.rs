//! Deterministic simulation of the metadata Raft group (TigerBeetle VOPR
//! style): 3 or 5 voters (plus nodes that join as learners and may be
//! promoted) as [`MetaNode`]s in one process, over a seeded network that
//! drops, delays, reorders and duplicates messages, with partitions that
//! isolate the leader, crashes that keep the disk or drop (a random part
//! of) its unsynced tail, and clients proposing throughout. Every random
//! choice comes from the seed, so a failing seed replays exactly from its
//! number ([`run_seed`]); `tests/meta_sim.rs` runs many.
//!
//! Checked after every step (`invariants.rs`):
//! - at most one leader per term;
//! - a committed entry never changes;
//! - every acknowledged proposal is on the synced storage of a majority of
//!   the voters that committed it (as an entry or inside a snapshot);
//! - applied state machines agree byte for byte at every applied index.
//!
//! And once the faults stop: the group converges (one leader, every node
//! applied everything, equal states, membership at its target).
//!
//! Time is simulated milliseconds; the loop jumps from event to event.

mod faults;
mod invariants;
mod workload;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::{MemMetaStorage, MetaCommand, MetaConfig, MetaNode, MetaReady, ProposalOutcome};
use faults::{Episode, Isolation, Loss, PendingCrash, BACKGROUND_LOSS};
use invariants::Ack;

const TICK_MS: u64 = 100;
/// Simulated time with faults, then time allowed to converge.
const FAULT_PHASE_MS: u64 = 20_000;
const CONVERGE_MS_MAX: u64 = 30_000;
/// Bound of messages in flight, so a bug cannot make a run eat memory.
const IN_FLIGHT_MAX: usize = 100_000;
/// A healthy majority that has not elected a new leader this long after
/// its leader was cut off is a liveness bug.
const ISOLATION_ELECTION_MS_MAX: u64 = 15_000;

// ---------------------------------------------------------------- randomness

use crate::rng::SplitMix64 as Rng;

// ------------------------------------------------------------------- network

struct Packet {
    from: u64,
    to: u64,
    bytes: Vec<u8>,
}

// --------------------------------------------------------------------- nodes

struct SimNode {
    disk: MemMetaStorage,
    node: Option<MetaNode<MemMetaStorage>>,
    voter_at_start: bool,
    incarnation: u64,
    next_tick_ms: u64,
    sync_at_ms: Option<u64>,
    restart_at_ms: Option<u64>,
    /// Applied index at the last state check (re-checked when it moves).
    checked_applied: u64,
    /// Commit index up to which this node's log was compared.
    checked_commit: u64,
    /// Voters as this node saw them at the last check: the configuration
    /// its Raft counted a quorum with during the next step.
    voters_at_check: BTreeSet<u64>,
    /// Synced snapshot index at the last settling pass.
    durable_snapshot_seen: u64,
}

/// What one or more runs did (times are simulated).
#[derive(Default, Debug, Clone)]
pub struct SimStats {
    pub seeds: u64,
    pub steps: u64,
    pub sim_ms: u64,
    /// Terms in which a leader was elected.
    pub elections: u64,
    pub isolations: u64,
    /// Per leader isolation: time until the rest elected a new leader.
    pub failover_ms: Vec<u64>,
    /// Per leader isolation: time until the isolated leader stepped down.
    pub stepdown_ms: Vec<u64>,
    pub crashes_keep_disk: u64,
    pub crashes_drop_unsynced: u64,
    pub unsynced_records_lost: u64,
    pub messages_sent: u64,
    pub messages_dropped: u64,
    pub messages_duplicated: u64,
    pub proposals: u64,
    pub acked: u64,
    /// Acknowledged, with a typed rejection from the state machine.
    pub rejected: u64,
    pub dropped_or_unknown: u64,
    pub snapshots_restored: u64,
    pub membership_changes: u64,
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
        self.unsynced_records_lost += o.unsynced_records_lost;
        self.messages_sent += o.messages_sent;
        self.messages_dropped += o.messages_dropped;
        self.messages_duplicated += o.messages_duplicated;
        self.proposals += o.proposals;
        self.acked += o.acked;
        self.rejected += o.rejected;
        self.dropped_or_unknown += o.dropped_or_unknown;
        self.snapshots_restored += o.snapshots_restored;
        self.membership_changes += o.membership_changes;
        self.converge_ms_max = self.converge_ms_max.max(o.converge_ms_max);
        self.trace ^= o.trace;
    }
}

// ----------------------------------------------------------------- simulator

struct Sim {
    seed: u64,
    rng: Rng,
    now_ms: u64,
    nodes: BTreeMap<u64, SimNode>,
    voters_target: usize,
    network: BTreeMap<(u64, u64), Packet>,
    packet_seq: u64,
    cut: BTreeSet<(u64, u64)>,
    loss: Loss,
    episode: Episode,
    episode_end_ms: u64,
    next_episode_ms: u64,
    isolation: Option<Isolation>,
    next_client_ms: u64,
    next_operator_ms: u64,
    converging: bool,
    // Invariant state.
    leaders: BTreeMap<u64, u64>,
    /// Index → (term, data) of every entry seen committed: terms from
    /// applied commands and logs, data from logs (an entry may be
    /// compacted into a snapshot before a log scan sees it).
    committed: BTreeMap<u64, (u64, Option<Vec<u8>>)>,
    states: BTreeMap<u64, Vec<u8>>,
    /// Index → the voter sets of the leader that first committed it.
    commit_configs: BTreeMap<u64, Vec<BTreeSet<u64>>>,
    /// Acknowledged proposals not yet settled.
    acks: Vec<Ack>,
    /// Acks before this position have been checked at least once.
    acks_checked: usize,
    /// Acks inside synced snapshots on a majority: they cannot be lost any
    /// more (a synced snapshot is only ever replaced by a later one), so
    /// they leave the per-step check.
    acks_settled: u64,
    /// Nodes whose synced storage changed (sync or crash) since the check.
    durable_changed: BTreeSet<u64>,
    /// A crash waiting for its victim to have unsynced writes (so that
    /// dropping them matters), or for its deadline.
    pending_crash: Option<PendingCrash>,
    /// Nodes the current step reached: only they can have output to drain
    /// or changed state to check.
    touched: BTreeSet<u64>,
    /// A fold of every event, to check that a seed replays exactly.
    trace: u64,
    stats: SimStats,
}

fn config(id: u64, seed: u64, incarnation: u64) -> MetaConfig {
    let mut c = MetaConfig::new(id, seed ^ (incarnation << 40));
    c.tick_interval_ms = TICK_MS;
    // Small, so compaction, snapshot transfer and snapshot install happen
    // in every run, not only in long ones.
    c.snapshot_interval_entries = 16;
    c.learner_lag_entries_max = 8;
    c
}

impl Sim {
    fn new(seed: u64) -> Self {
        let mut rng = Rng(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ 0x5EED);
        let voters: Vec<u64> = if rng.chance(0.3) {
            vec![1, 2, 3, 4, 5]
        } else {
            vec![1, 2, 3]
        };
        // With 3 voters, up to two more nodes join as learners; the target
        // decides whether they are promoted (to 5 voters) or stay learners.
        let joiners = if voters.len() == 3 {
            rng.range(0, 2)
        } else {
            0
        };
        let voters_target = if voters.len() == 5 || rng.chance(0.5) {
            5
        } else {
            3
        };
        let mut nodes = BTreeMap::new();
        for &id in &voters {
            let disk = MemMetaStorage::new();
            let node =
                MetaNode::bootstrap(config(id, seed, 0), disk.clone(), &voters).expect("bootstrap");
            nodes.insert(
                id,
                SimNode {
                    disk,
                    node: Some(node),
                    voter_at_start: true,
                    incarnation: 0,
                    next_tick_ms: rng.range(0, TICK_MS - 1),
                    sync_at_ms: None,
                    restart_at_ms: None,
                    checked_applied: 0,
                    checked_commit: 0,
                    voters_at_check: BTreeSet::new(),
                    durable_snapshot_seen: 0,
                },
            );
        }
        for j in 0..joiners {
            let id = voters.len() as u64 + 1 + j;
            nodes.insert(
                id,
                SimNode {
                    disk: MemMetaStorage::new(),
                    node: None,
                    voter_at_start: false,
                    incarnation: 0,
                    next_tick_ms: 0,
                    sync_at_ms: None,
                    // Joiners boot a little later, with empty disks.
                    restart_at_ms: Some(rng.range(1_000, 4_000)),
                    checked_applied: 0,
                    checked_commit: 0,
                    voters_at_check: BTreeSet::new(),
                    durable_snapshot_seen: 0,
                },
            );
        }
        let first_episode = rng.range(1_000, 3_000);
        let first_client = rng.range(0, 100);
        Sim {
            seed,
            rng,
            now_ms: 0,
            nodes,
            voters_target,
            network: BTreeMap::new(),
            packet_seq: 0,
            cut: BTreeSet::new(),
            loss: BACKGROUND_LOSS,
            episode: Episode::Calm,
            episode_end_ms: first_episode,
            next_episode_ms: first_episode,
            isolation: None,
            next_client_ms: first_client,
            next_operator_ms: 500,
            converging: false,
            leaders: BTreeMap::new(),
            committed: BTreeMap::new(),
            states: BTreeMap::new(),
            commit_configs: BTreeMap::new(),
            acks: Vec::new(),
            acks_checked: 0,
            acks_settled: 0,
            durable_changed: BTreeSet::new(),
            pending_crash: None,
            touched: BTreeSet::new(),
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

    fn up_ids(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.node.is_some())
            .map(|(&id, _)| id)
            .collect()
    }

    /// The leader with the highest term among running nodes.
    fn leader(&self) -> Option<u64> {
        self.nodes
            .iter()
            .filter_map(|(&id, n)| n.node.as_ref().map(|m| (id, m)))
            .filter(|(_, m)| m.is_leader())
            .max_by_key(|(_, m)| m.term())
            .map(|(id, _)| id)
    }

    // ------------------------------------------------------------ the loop

    fn run(&mut self) -> SimStats {
        let converge_deadline = FAULT_PHASE_MS + CONVERGE_MS_MAX;
        loop {
            if !self.converging && self.now_ms >= FAULT_PHASE_MS {
                self.start_converging();
            }
            if self.converging {
                if let Some(why_not) = self.converged() {
                    if self.now_ms >= converge_deadline {
                        self.fail(format!(
                            "no convergence after the faults stopped: {why_not}"
                        ));
                    }
                } else {
                    self.stats.converge_ms_max = self.now_ms - FAULT_PHASE_MS;
                    break;
                }
            }
            // A pending crash, when due, is the step.
            if !self.maybe_crash() {
                self.step();
            }
            self.stats.steps += 1;
            self.pump();
            self.check();
        }
        self.stats.sim_ms = self.now_ms;
        self.stats.elections = self.leaders.len() as u64;
        self.stats.trace = self.trace;
        self.stats.clone()
    }

    /// Advance to the next event and run it.
    fn step(&mut self) {
        let next_packet = self.network.keys().next().map(|k| k.0);
        let mut next_node = u64::MAX;
        for n in self.nodes.values() {
            if n.node.is_some() {
                next_node = next_node.min(n.next_tick_ms);
                if let Some(t) = n.sync_at_ms {
                    next_node = next_node.min(t);
                }
            } else if let Some(t) = n.restart_at_ms {
                next_node = next_node.min(t);
            }
        }
        let mut next = next_node.min(next_packet.unwrap_or(u64::MAX));
        if !self.converging {
            next = next
                .min(self.next_client_ms)
                .min(self.next_episode_ms)
                .min(self.episode_end_ms)
                .min(FAULT_PHASE_MS);
        }
        next = next.min(self.next_operator_ms);
        assert!(next >= self.now_ms && next != u64::MAX);
        self.now_ms = next;
        let now = next;

        // One event per step, in a fixed order among those due now.
        for id in self.nodes.keys().copied().collect::<Vec<_>>() {
            let n = &self.nodes[&id];
            if n.node.is_none() && n.restart_at_ms == Some(now) {
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
        for id in self.nodes.keys().copied().collect::<Vec<_>>() {
            if self.nodes[&id].node.is_some() && self.nodes[&id].sync_at_ms == Some(now) {
                return self.sync(id);
            }
        }
        for id in self.nodes.keys().copied().collect::<Vec<_>>() {
            if self.nodes[&id].node.is_some() && self.nodes[&id].next_tick_ms == now {
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
            // The loop head switches to converging.
            return;
        }
        self.fail(format!("no event due at {now}"));
    }

    fn tick(&mut self, id: u64) {
        let jitter = self.rng.range(0, 20);
        let n = self.nodes.get_mut(&id).unwrap();
        // ±10% clock drift per tick.
        n.next_tick_ms += TICK_MS - 10 + jitter;
        n.node.as_mut().unwrap().tick();
        self.touched.insert(id);
        self.note(1, id);
    }

    fn sync(&mut self, id: u64) {
        let n = self.nodes.get_mut(&id).unwrap();
        n.sync_at_ms = None;
        if let Err(e) = n.node.as_mut().unwrap().sync() {
            self.fail(format!("sync on node {id}: {e}"));
        }
        self.durable_changed.insert(id);
        self.touched.insert(id);
        self.note(2, id);
    }

    fn deliver(&mut self) {
        let ((_, seq), packet) = self.network.pop_first().unwrap();
        self.note(3, seq);
        let blocked = self.cut.contains(&(packet.from, packet.to));
        let Some(node) = self.nodes.get_mut(&packet.to).and_then(|n| n.node.as_mut()) else {
            self.stats.messages_dropped += 1;
            return;
        };
        if blocked {
            self.stats.messages_dropped += 1;
            return;
        }
        self.touched.insert(packet.to);
        if let Err(e) = node.step(&packet.bytes) {
            let to = packet.to;
            self.fail(format!("step on node {to} from {}: {e}", packet.from));
        }
    }

    fn send(&mut self, from: u64, to: u64, bytes: Vec<u8>) {
        self.stats.messages_sent += 1;
        if self.cut.contains(&(from, to)) || self.rng.chance(self.loss.drop_p) {
            self.stats.messages_dropped += 1;
            return;
        }
        let copies = if self.rng.chance(self.loss.dup_p) {
            self.stats.messages_duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            if self.network.len() >= IN_FLIGHT_MAX {
                self.fail("network queue bound reached".into());
            }
            // Independent delays: copies and neighbours reorder.
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
        let n = self.nodes.get_mut(&id).unwrap();
        n.restart_at_ms = None;
        n.incarnation += 1;
        let cfg = config(id, seed, n.incarnation);
        if n.voter_at_start && n.disk.last_index_now() == 0 {
            // Bootstrap syncs its snapshot before anything else happens.
            self.fail(format!("initial voter {id} lost its bootstrap snapshot"));
        }
        // Initial voters find their log; joiners open empty (or with what
        // they had) and wait to be added and sent a snapshot.
        let result = MetaNode::open(cfg, n.disk.clone());
        match result {
            Ok(node) => {
                n.next_tick_ms = now + tick_phase;
                n.checked_applied = 0;
                n.checked_commit = 0;
                n.voters_at_check = node.state().members().voters.clone();
                n.node = Some(node);
            }
            Err(e) => self.fail(format!("restart of node {id}: {e}")),
        }
        self.touched.insert(id);
        self.note(5, id);
    }

    /// Drain the output of the nodes this step reached until they are
    /// quiet (their messages reach others only in later steps).
    fn pump(&mut self) {
        for id in self.touched.iter().copied().collect::<Vec<_>>() {
            while let Some(node) = self.nodes.get_mut(&id).unwrap().node.as_mut() {
                let out = match node.poll_ready() {
                    Ok(Some(out)) => out,
                    Ok(None) => break,
                    Err(e) => self.fail(format!("poll_ready on node {id}: {e}")),
                };
                self.handle_output(id, out);
            }
            let n = self.nodes.get_mut(&id).unwrap();
            if let Some(node) = &n.node {
                if node.needs_sync() && n.sync_at_ms.is_none() {
                    // fsync latency: 0-5 ms.
                    n.sync_at_ms = Some(self.now_ms + self.rng.range(0, 5));
                }
            }
        }
    }

    fn handle_output(&mut self, id: u64, out: MetaReady) {
        for m in out.messages {
            self.note(10, m.to);
            self.send(id, m.to, m.bytes);
        }
        if out.snapshot_restored.is_some() {
            self.stats.snapshots_restored += 1;
        }
        for applied in &out.applied {
            self.record_committed(id, applied.index, applied.term, None);
            if matches!(applied.command, MetaCommand::ChangeMembership(_))
                && applied.result.is_ok()
                && id == 1
            {
                self.stats.membership_changes += 1;
            }
        }
        for result in out.proposals {
            self.note(11, result.id.index);
            match result.outcome {
                ProposalOutcome::Applied(r) => {
                    self.stats.acked += 1;
                    if r.is_err() {
                        self.stats.rejected += 1;
                    }
                    self.acks.push(Ack {
                        id: result.id,
                        configs: Vec::new(),
                        holders: BTreeSet::new(),
                    });
                }
                ProposalOutcome::Dropped | ProposalOutcome::Unknown => {
                    self.stats.dropped_or_unknown += 1
                }
            }
        }
    }
}

fn replay_hint(seed: u64) -> String {
    format!("replay: SPRAWL_SIM_SEED={seed} cargo test -p sprawl-cluster --test meta_sim")
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

/// `SPRAWL_SIM_SEED=N` replays seed N alone; `SPRAWL_SIM_SEEDS=N` runs
/// seeds 0..N; otherwise seeds 0..`default`.
pub fn seeds_from_env(default: u64) -> Vec<u64> {
    let env = |name| {
        std::env::var(name)
            .ok()
            .and_then(|v: String| v.trim().parse::<u64>().ok())
    };
    if let Some(seed) = env("SPRAWL_SIM_SEED") {
        return vec![seed];
    }
    (0..env("SPRAWL_SIM_SEEDS").unwrap_or(default)).collect()
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
        // Nearest-rank percentile of a sorted list.
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
             isolated leader stepped down after p50 {} ms, max {} ms",
            self.isolations,
            pct(&failover, 0.5),
            pct(&failover, 0.99),
            pct(&failover, 1.0),
            pct(&stepdown, 0.5),
            pct(&stepdown, 1.0)
        )?;
        writeln!(
            f,
            "crashes: {} keeping the disk, {} dropping unsynced writes ({} records lost)",
            self.crashes_keep_disk, self.crashes_drop_unsynced, self.unsynced_records_lost
        )?;
        writeln!(
            f,
            "{} messages ({} dropped, {} duplicated)",
            self.messages_sent, self.messages_dropped, self.messages_duplicated
        )?;
        writeln!(
            f,
            "{} proposals, {} acknowledged ({} rejected by the state machine), {} dropped or unknown",
            self.proposals, self.acked, self.rejected, self.dropped_or_unknown
        )?;
        write!(
            f,
            "{} snapshots installed, {} membership changes, convergence after the faults max {} ms",
            self.snapshots_restored, self.membership_changes, self.converge_ms_max
        )
    }
}

//! Deterministic simulation of many [`Membership`]s in one process.
//!
//! One seeded RNG drives the network (per-datagram delay, drop, duplicate,
//! reorder), partitions cut links both ways, and the clock is simulated:
//! an event queue ordered by (time, insertion order) delivers datagrams and
//! timers. Given the same seed and the same calls, a run is identical
//! bit for bit, so a failing seed reproduces from its number
//! (`SPRAWL_SIM_SEED=N`).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::config::MembershipConfig;
use super::driver::{Membership, MembershipError, MembershipOutput, MembershipTimer};
use super::identity::{Member, MemberAddrs, NodeId};
use super::keyring::{ClusterKey, Keyring, NONCE_PREFIX_BYTES};

/// Gossip port every simulated node uses (each has its own address).
pub const SIM_GOSSIP_PORT: u16 = 7946;

/// Seeds a simulation test runs: `SPRAWL_SIM_SEED=N` runs only seed N (to
/// replay a failure), `SPRAWL_SIM_SEEDS=N` runs seeds 0..N, otherwise
/// `0..default_count`.
pub fn seeds_from_env(default_count: u64) -> Vec<u64> {
    if let Some(seed) = std::env::var("SPRAWL_SIM_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
    {
        return vec![seed];
    }
    let count = std::env::var("SPRAWL_SIM_SEEDS")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(default_count);
    (0..count).collect()
}

/// How the simulated network treats each datagram.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkProfile {
    /// Every datagram takes at least this long.
    pub delay_us_min: u64,
    /// Mean of the exponential delay added on top.
    pub delay_us_mean_extra: u64,
    /// Delay cap (before reordering).
    pub delay_us_max: u64,
    /// Share of datagrams lost.
    pub drop_ratio: f64,
    /// Share of datagrams delivered twice (independent delays).
    pub duplicate_ratio: f64,
    /// Share of datagrams held back by up to `reorder_delay_us_max` more,
    /// so later ones overtake them.
    pub reorder_ratio: f64,
    /// See `reorder_ratio`.
    pub reorder_delay_us_max: u64,
}

impl NetworkProfile {
    /// Loopback between processes on one busy machine: ~50 µs plus an
    /// exponential tail of mean 150 µs, capped at 5 ms; nothing lost.
    pub fn loopback() -> Self {
        Self {
            delay_us_min: 50,
            delay_us_mean_extra: 150,
            delay_us_max: 5_000,
            drop_ratio: 0.0,
            duplicate_ratio: 0.0,
            reorder_ratio: 0.0,
            reorder_delay_us_max: 0,
        }
    }

    /// Loopback that loses `drop_ratio` of datagrams, duplicates 2 % and
    /// holds 5 % back by up to 20 ms.
    pub fn faulty(drop_ratio: f64) -> Self {
        Self {
            drop_ratio,
            duplicate_ratio: 0.02,
            reorder_ratio: 0.05,
            reorder_delay_us_max: 20_000,
            ..Self::loopback()
        }
    }
}

/// What a node's membership reported, in simulated time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observation {
    /// When, in µs since the simulation started.
    pub at_us: u64,
    /// The node that reported it.
    pub observer: usize,
    /// What.
    pub event: Observed,
}

/// The reported event, members named by node index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observed {
    /// `node` (at `generation`) became active.
    Up {
        /// Index of the member.
        node: usize,
        /// Its identity generation.
        generation: u64,
    },
    /// `node` was declared down.
    Down {
        /// Index of the member.
        node: usize,
        /// Its identity generation.
        generation: u64,
    },
    /// `node`'s identity was replaced by a newer one.
    Renamed {
        /// Index of the member.
        node: usize,
        /// The generation replaced.
        old_generation: u64,
        /// The new one.
        generation: u64,
    },
    /// A newer load summary of `node` arrived.
    Load {
        /// Index of the member.
        node: usize,
    },
    /// The observer joined.
    Joined,
    /// The observer found itself alone.
    Isolated,
    /// The observer was declared down and renewed itself.
    Rejoined {
        /// Its new generation.
        generation: u64,
    },
    /// The observer is done (left).
    Defunct,
}

/// What happened to datagrams in the network.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Datagrams the members asked to send.
    pub sent: u64,
    /// Handed to a live member.
    pub delivered: u64,
    /// Lost by the drop ratio.
    pub dropped: u64,
    /// Extra copies made.
    pub duplicated: u64,
    /// Cut by a partition.
    pub partitioned: u64,
    /// Arrived at an address with no live process.
    pub to_dead: u64,
    /// Datagram errors returned by members (rejected or refused).
    pub datagram_errors: u64,
    /// Timer errors returned by members.
    pub timer_errors: u64,
}

/// One simulated node: a stable identity and, while running, a process.
pub struct SimNode {
    node_id: NodeId,
    addrs: MemberAddrs,
    key: ClusterKey,
    generation: u64,
    /// Bumped on every start and kill: timers of an earlier life are void.
    life: u64,
    process: Option<Membership>,
    /// Members this node's process reports active, by gossip address.
    view: BTreeMap<SocketAddr, Member>,
    sent: u64,
}

impl SimNode {
    /// The node's id.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// Its gossip address.
    pub fn gossip_addr(&self) -> SocketAddr {
        self.addrs.gossip
    }

    /// Whether a process runs (started, not killed, not left).
    pub fn is_running(&self) -> bool {
        self.process.as_ref().is_some_and(|m| !m.has_left())
    }

    /// Datagrams this node sent, all lives together.
    pub fn datagrams_sent(&self) -> u64 {
        self.sent
    }
}

#[derive(Debug)]
enum SimEvent {
    Deliver {
        to: usize,
        from: usize,
        bytes: Vec<u8>,
    },
    Timer {
        node: usize,
        life: u64,
        timer: MembershipTimer,
    },
}

struct Pending {
    at_us: u64,
    seq: u64,
    event: SimEvent,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        (self.at_us, self.seq) == (other.at_us, other.seq)
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at_us, self.seq).cmp(&(other.at_us, other.seq))
    }
}

/// N members, a simulated network and a simulated clock.
pub struct SimCluster {
    seed: u64,
    rng: StdRng,
    base: Instant,
    now_us: u64,
    queue: BinaryHeap<Reverse<Pending>>,
    next_seq: u64,
    nodes: Vec<SimNode>,
    by_addr: HashMap<SocketAddr, usize>,
    network: NetworkProfile,
    config: MembershipConfig,
    /// Partition group of each node; `None` when the network is whole.
    groups: Option<Vec<usize>>,
    observations: Vec<Observation>,
    record_loads: bool,
    net: NetStats,
}

impl SimCluster {
    /// `nodes` stopped nodes (ids 1..=nodes, addresses 127.1.x.y) that all
    /// hold `key`, on `network`.
    pub fn new(
        seed: u64,
        nodes: usize,
        config: MembershipConfig,
        network: NetworkProfile,
        key: ClusterKey,
    ) -> Self {
        let mut by_addr = HashMap::new();
        let nodes: Vec<SimNode> = (0..nodes)
            .map(|i| {
                let ip = Ipv4Addr::new(127, 1, (i >> 8) as u8, (i & 0xff) as u8);
                let addrs = MemberAddrs {
                    gossip: SocketAddr::from((ip, SIM_GOSSIP_PORT)),
                    quic: SocketAddr::from((ip, 4433)),
                    admin: SocketAddr::from((ip, 8080)),
                    peer: SocketAddr::from((ip, 7490)),
                };
                by_addr.insert(addrs.gossip, i);
                SimNode {
                    node_id: i as NodeId + 1,
                    addrs,
                    key: key.clone(),
                    generation: 0,
                    life: 0,
                    process: None,
                    view: BTreeMap::new(),
                    sent: 0,
                }
            })
            .collect();
        Self {
            seed,
            rng: StdRng::seed_from_u64(seed),
            base: Instant::now(),
            now_us: 0,
            queue: BinaryHeap::new(),
            next_seq: 0,
            nodes,
            by_addr,
            network,
            config,
            groups: None,
            observations: Vec::new(),
            record_loads: true,
            net: NetStats::default(),
        }
    }

    /// The seed this run was built from.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Gives `node` a different cluster key before it starts (a node of
    /// another cluster, or a misconfigured one).
    pub fn set_key(&mut self, node: usize, key: ClusterKey) {
        self.nodes[node].key = key;
    }

    /// Whether load observations are recorded (off for large runs).
    pub fn record_loads(&mut self, on: bool) {
        self.record_loads = on;
    }

    /// Starts (or restarts) `node` with a new generation and joins it
    /// through `seeds` (node indexes).
    pub fn start(&mut self, node: usize, seeds: &[usize]) -> Result<(), MembershipError> {
        let now = self.instant();
        let mut prefix = [0u8; NONCE_PREFIX_BYTES];
        self.rng.fill(&mut prefix[..]);
        let rng_seed: u64 = self.rng.random();
        let seed_addrs: Vec<SocketAddr> =
            seeds.iter().map(|&s| self.nodes[s].addrs.gossip).collect();
        let n = &mut self.nodes[node];
        n.generation += 1;
        n.life += 1;
        n.view.clear();
        let local = Member::new(
            n.node_id,
            n.generation,
            n.addrs,
            Some(format!("rack-{}", node % 3)),
            2,
        )
        .expect("simulated identities are valid");
        let keyring = Keyring::with_nonce_prefix(n.key.clone(), prefix);
        let mut membership = Membership::new(local, self.config.clone(), keyring, rng_seed, now)?;
        membership.join(&seed_addrs, now)?;
        n.process = Some(membership);
        self.drain(node);
        Ok(())
    }

    /// Kills `node`'s process: no goodbye, its timers die with it,
    /// datagrams to it are lost.
    pub fn kill(&mut self, node: usize) {
        let n = &mut self.nodes[node];
        n.process = None;
        n.life += 1;
        n.view.clear();
    }

    /// `node` leaves the cluster gracefully.
    pub fn leave(&mut self, node: usize) -> Result<(), MembershipError> {
        let now = self.instant();
        if let Some(m) = self.nodes[node].process.as_mut() {
            m.leave(now)?;
        }
        self.drain(node);
        Ok(())
    }

    /// Splits the network: nodes in different groups cannot reach each
    /// other; nodes in no group form one more group together.
    pub fn partition(&mut self, groups: &[&[usize]]) {
        let mut of = vec![groups.len(); self.nodes.len()];
        for (g, members) in groups.iter().enumerate() {
            for &m in *members {
                of[m] = g;
            }
        }
        self.groups = Some(of);
    }

    /// Makes the network whole again.
    pub fn heal(&mut self) {
        self.groups = None;
    }

    /// Runs `f` on `node`'s membership (e.g. a key rotation step) and
    /// routes what it produced.
    pub fn with_membership<R>(
        &mut self,
        node: usize,
        f: impl FnOnce(&mut Membership, Instant) -> R,
    ) -> Option<R> {
        let now = self.instant();
        let result = self.nodes[node].process.as_mut().map(|m| f(m, now));
        self.drain(node);
        result
    }

    /// `node`'s membership, while running.
    pub fn membership(&self, node: usize) -> Option<&Membership> {
        self.nodes[node].process.as_ref()
    }

    /// The simulated nodes.
    pub fn nodes(&self) -> &[SimNode] {
        &self.nodes
    }

    /// Node index of a gossip address.
    pub fn node_of(&self, addr: SocketAddr) -> Option<usize> {
        self.by_addr.get(&addr).copied()
    }

    /// Everything the members reported so far.
    pub fn observations(&self) -> &[Observation] {
        &self.observations
    }

    /// What the network did so far.
    pub fn net_stats(&self) -> NetStats {
        self.net
    }

    /// Simulated time since the start.
    pub fn now(&self) -> Duration {
        Duration::from_micros(self.now_us)
    }

    /// Simulated time since the start, in µs.
    pub fn now_us(&self) -> u64 {
        self.now_us
    }

    /// Members `node` reports active (by node index).
    pub fn view_of(&self, node: usize) -> Vec<usize> {
        self.nodes[node]
            .view
            .keys()
            .filter_map(|a| self.node_of(*a))
            .collect()
    }

    /// How many members `node` reports active.
    pub fn view_len(&self, node: usize) -> usize {
        self.nodes[node].view.len()
    }

    /// Whether every running node sees every other running node (at its
    /// current identity) and nothing else.
    pub fn converged(&self) -> bool {
        let live: Vec<(SocketAddr, u64)> = self
            .nodes
            .iter()
            .filter(|n| n.is_running())
            .map(|n| {
                let me = n.process.as_ref().expect("running").local();
                (me.gossip_addr(), me.generation())
            })
            .collect();
        // Sizes first: cheap, and false during most of a convergence.
        let sizes_match = self
            .nodes
            .iter()
            .filter(|n| n.is_running())
            .all(|n| n.view.len() + 1 == live.len());
        sizes_match
            && self.nodes.iter().filter(|n| n.is_running()).all(|n| {
                live.iter().all(|(addr, generation)| {
                    *addr == n.addrs.gossip
                        || n.view
                            .get(addr)
                            .is_some_and(|m| m.generation() == *generation)
                })
            })
    }

    /// Runs events until simulated time `until` (events at exactly `until`
    /// included).
    pub fn run_until(&mut self, until: Duration) {
        let until_us = until.as_micros() as u64;
        while self.step_before(until_us) {}
        self.now_us = self.now_us.max(until_us);
    }

    /// Runs for `d` of simulated time.
    pub fn run_for(&mut self, d: Duration) {
        self.run_until(self.now() + d);
    }

    /// Runs until [`SimCluster::converged`] (checked every `check_every`)
    /// or `deadline`; the time it converged, if it did.
    pub fn run_until_converged(
        &mut self,
        deadline: Duration,
        check_every: Duration,
    ) -> Option<Duration> {
        loop {
            if self.converged() {
                return Some(self.now());
            }
            if self.now() >= deadline {
                return None;
            }
            let next = (self.now() + check_every).min(deadline);
            self.run_until(next);
        }
    }

    fn step_before(&mut self, until_us: u64) -> bool {
        match self.queue.peek() {
            Some(Reverse(p)) if p.at_us <= until_us => {}
            _ => return false,
        }
        let Reverse(pending) = self.queue.pop().expect("peeked");
        debug_assert!(pending.at_us >= self.now_us, "event in the past");
        self.now_us = pending.at_us;
        let now = self.instant();
        match pending.event {
            SimEvent::Deliver { to, from, bytes } => {
                if let Some(groups) = &self.groups {
                    if groups[to] != groups[from] {
                        self.net.partitioned += 1;
                        return true;
                    }
                }
                let from_addr = self.nodes[from].addrs.gossip;
                match self.nodes[to].process.as_mut() {
                    None => self.net.to_dead += 1,
                    Some(m) => {
                        self.net.delivered += 1;
                        if m.handle_datagram(from_addr, &bytes, now).is_err() {
                            self.net.datagram_errors += 1;
                        }
                        self.drain(to);
                    }
                }
            }
            SimEvent::Timer { node, life, timer } => {
                if self.nodes[node].life == life {
                    if let Some(m) = self.nodes[node].process.as_mut() {
                        if m.handle_timer(timer, now).is_err() {
                            self.net.timer_errors += 1;
                        }
                        self.drain(node);
                    }
                }
            }
        }
        true
    }

    fn instant(&self) -> Instant {
        self.base + Duration::from_micros(self.now_us)
    }

    fn push(&mut self, at_us: u64, event: SimEvent) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.queue.push(Reverse(Pending { at_us, seq, event }));
    }

    fn delay_us(&mut self) -> u64 {
        let p = &self.network;
        let u: f64 = self.rng.random();
        let extra = (-(p.delay_us_mean_extra as f64) * (1.0 - u).ln()) as u64;
        let mut delay = (p.delay_us_min + extra).min(p.delay_us_max);
        if p.reorder_ratio > 0.0 && self.rng.random_bool(p.reorder_ratio) {
            delay += self.rng.random_range(0..=p.reorder_delay_us_max);
        }
        delay
    }

    /// Routes every output `node` produced.
    fn drain(&mut self, node: usize) {
        let life = self.nodes[node].life;
        while let Some(output) = self.nodes[node]
            .process
            .as_mut()
            .and_then(Membership::poll_output)
        {
            match output {
                MembershipOutput::Send { to, bytes } => {
                    self.net.sent += 1;
                    self.nodes[node].sent += 1;
                    let Some(to) = self.node_of(to) else {
                        continue;
                    };
                    if self.network.drop_ratio > 0.0
                        && self.rng.random_bool(self.network.drop_ratio)
                    {
                        self.net.dropped += 1;
                        continue;
                    }
                    if self.network.duplicate_ratio > 0.0
                        && self.rng.random_bool(self.network.duplicate_ratio)
                    {
                        self.net.duplicated += 1;
                        let at = self.now_us + self.delay_us();
                        self.push(
                            at,
                            SimEvent::Deliver {
                                to,
                                from: node,
                                bytes: bytes.clone(),
                            },
                        );
                    }
                    let at = self.now_us + self.delay_us();
                    self.push(
                        at,
                        SimEvent::Deliver {
                            to,
                            from: node,
                            bytes,
                        },
                    );
                }
                MembershipOutput::Schedule { after, timer } => {
                    let at = self.now_us + after.as_micros() as u64;
                    self.push(at, SimEvent::Timer { node, life, timer });
                }
                MembershipOutput::MemberUp(m) => {
                    let Some(subject) = self.node_of(m.gossip_addr()) else {
                        continue;
                    };
                    self.observe(
                        node,
                        Observed::Up {
                            node: subject,
                            generation: m.generation(),
                        },
                    );
                    self.nodes[node].view.insert(m.gossip_addr(), m);
                }
                MembershipOutput::MemberDown(m) => {
                    let Some(subject) = self.node_of(m.gossip_addr()) else {
                        continue;
                    };
                    self.observe(
                        node,
                        Observed::Down {
                            node: subject,
                            generation: m.generation(),
                        },
                    );
                    let view = &mut self.nodes[node].view;
                    if view.get(&m.gossip_addr()) == Some(&m) {
                        view.remove(&m.gossip_addr());
                    }
                }
                MembershipOutput::MemberRenamed { old, new } => {
                    let Some(subject) = self.node_of(new.gossip_addr()) else {
                        continue;
                    };
                    self.observe(
                        node,
                        Observed::Renamed {
                            node: subject,
                            old_generation: old.generation(),
                            generation: new.generation(),
                        },
                    );
                    // Liveness is unchanged by a rename: an active entry
                    // stays active under its new identity.
                    let view = &mut self.nodes[node].view;
                    if view.contains_key(&new.gossip_addr()) {
                        view.insert(new.gossip_addr(), new);
                    }
                }
                MembershipOutput::PeerLoad { node_id, .. } => {
                    if self.record_loads {
                        let subject = self.nodes.iter().position(|n| n.node_id == node_id);
                        if let Some(subject) = subject {
                            self.observe(node, Observed::Load { node: subject });
                        }
                    }
                }
                MembershipOutput::Joined => self.observe(node, Observed::Joined),
                MembershipOutput::Isolated => self.observe(node, Observed::Isolated),
                MembershipOutput::Rejoined(me) => self.observe(
                    node,
                    Observed::Rejoined {
                        generation: me.generation(),
                    },
                ),
                MembershipOutput::Defunct => self.observe(node, Observed::Defunct),
            }
        }
    }

    fn observe(&mut self, observer: usize, event: Observed) {
        self.observations.push(Observation {
            at_us: self.now_us,
            observer,
            event,
        });
    }
}

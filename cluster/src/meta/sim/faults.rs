//! The faults a run goes through: one episode at a time (isolate the
//! leader, a random partition, a crash, a lossy network, or calm), on top
//! of background loss, duplication and reordering; then calm to converge.

use std::collections::BTreeSet;

use super::{Sim, ISOLATION_ELECTION_MS_MAX};

#[derive(Clone, Copy)]
pub(super) struct Loss {
    pub(super) drop_p: f64,
    pub(super) dup_p: f64,
    pub(super) delay_ms_max: u64,
}

pub(super) const BACKGROUND_LOSS: Loss = Loss {
    drop_p: 0.02,
    dup_p: 0.02,
    delay_ms_max: 20,
};

#[derive(Debug, Clone)]
pub(super) enum Episode {
    Calm,
    IsolateLeader,
    Partition,
    Lossy,
}

pub(super) struct Isolation {
    pub(super) leader: u64,
    pub(super) term: u64,
    pub(super) start_ms: u64,
    pub(super) elected_ms: Option<u64>,
    pub(super) stepped_down_ms: Option<u64>,
}

pub(super) struct PendingCrash {
    pub(super) node: u64,
    pub(super) drop_unsynced: bool,
    pub(super) deadline_ms: u64,
}

impl Sim {
    fn crash(&mut self, id: u64, drop_unsynced: bool) {
        let restart_in = self.rng.range(300, 3_000);
        let n = self.nodes.get_mut(&id).unwrap();
        if n.node.is_none() {
            return;
        }
        n.node = None;
        n.sync_at_ms = None;
        n.restart_at_ms = Some(self.now_ms + restart_in);
        let unsynced = n.disk.unsynced_records();
        let keep = if drop_unsynced {
            self.rng.range(0, unsynced as u64) as usize
        } else {
            usize::MAX
        };
        let n = self.nodes.get_mut(&id).unwrap();
        let lost = n.disk.crash(keep) as u64;
        self.durable_changed.insert(id);
        self.touched.insert(id);
        self.stats.unsynced_records_lost += lost;
        if drop_unsynced {
            self.stats.crashes_drop_unsynced += 1;
        } else {
            self.stats.crashes_keep_disk += 1;
        }
        self.note(4, id * 1000 + lost);
    }
    /// Runs the pending crash if it is due; returns whether it ran.
    pub(super) fn maybe_crash(&mut self) -> bool {
        let Some(p) = &self.pending_crash else {
            return false;
        };
        let n = &self.nodes[&p.node];
        let writes_in_flight = n.disk.unsynced_records() > 0;
        if n.node.is_none() || self.converging {
            self.pending_crash = None;
        } else if writes_in_flight || self.now_ms >= p.deadline_ms {
            let (node, drop_unsynced) = (p.node, p.drop_unsynced);
            self.pending_crash = None;
            self.crash(node, drop_unsynced);
            return true;
        }
        false
    }
    pub(super) fn start_episode(&mut self) {
        // Isolating the leader measures failover, which needs a healthy
        // majority behind it: only when every node runs.
        let all_up = self.nodes.values().all(|n| n.node.is_some());
        let roll = self.rng.range(0, 99);
        let (episode, duration) = match roll {
            0..=29 if all_up => match self.leader() {
                Some(leader) => {
                    let term = self.nodes[&leader].node.as_ref().unwrap().term();
                    for &other in self.nodes.keys() {
                        if other != leader {
                            self.cut.insert((leader, other));
                            self.cut.insert((other, leader));
                        }
                    }
                    self.stats.isolations += 1;
                    self.isolation = Some(Isolation {
                        leader,
                        term,
                        start_ms: self.now_ms,
                        elected_ms: None,
                        stepped_down_ms: None,
                    });
                    (Episode::IsolateLeader, self.rng.range(4_000, 6_000))
                }
                None => (Episode::Calm, 500),
            },
            0..=49 => {
                let ids: Vec<u64> = self.nodes.keys().copied().collect();
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
                (Episode::Partition, self.rng.range(1_000, 4_000))
            }
            50..=74 => {
                let ups = self.up_ids();
                let victim = match self.leader() {
                    Some(l) if self.rng.chance(0.5) => l,
                    _ => self.rng.pick(&ups),
                };
                let drop_unsynced = self.rng.chance(0.5);
                // Crash when the victim has writes in flight (that is when
                // a crash can lose or tear something), or at the deadline.
                self.pending_crash = Some(PendingCrash {
                    node: victim,
                    drop_unsynced,
                    deadline_ms: self.now_ms + 1_000,
                });
                (Episode::Calm, self.rng.range(200, 1_000))
            }
            75..=89 => {
                self.loss = Loss {
                    drop_p: 0.1 + self.rng.range(0, 30) as f64 / 100.0,
                    dup_p: 0.1,
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
    pub(super) fn end_episode(&mut self) {
        if let Some(iso) = &self.isolation {
            // The isolation lasts until the majority elects a leader: that
            // is the liveness being measured. A healthy majority (all up,
            // background loss only) that cannot elect in 15 s is a bug.
            if iso.elected_ms.is_none() && !self.converging {
                if self.now_ms - iso.start_ms >= ISOLATION_ELECTION_MS_MAX {
                    self.fail(format!(
                        "leader {} isolated at {} ms: no new leader after {ISOLATION_ELECTION_MS_MAX} ms",
                        iso.leader, iso.start_ms
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
    pub(super) fn start_converging(&mut self) {
        // An isolation cut short by the end of the fault phase is not
        // measured (nor failed).
        self.converging = true;
        self.end_episode();
        self.loss = Loss {
            drop_p: 0.0,
            dup_p: 0.0,
            delay_ms_max: 10,
        };
        let now = self.now_ms;
        for n in self.nodes.values_mut() {
            if n.node.is_none() {
                n.restart_at_ms = Some(n.restart_at_ms.map_or(now, |t| t.min(now + 1_000)));
            }
        }
    }
}

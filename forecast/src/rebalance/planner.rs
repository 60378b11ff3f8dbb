//! The greedy local search behind [`RebalancePlanner::plan`].
//!
//! Each round evaluates every single move (a movable partition to another
//! shard, within the budget) and applies the best: the one that lowers the
//! peak imbalance most. A peak held by two shards at once cannot be lowered
//! by one move, so among moves that leave the peak where it is, one that
//! lowers the *spread* (the mean squared relative deviation of shard loads
//! from the mean, over the steps) also counts as progress; otherwise equal
//! loads (3, 3, 0, 2) would never be evened out. Remaining ties go to the
//! move that copies fewer bytes. The search stops when no move gains more
//! than `gain_min` on either count.
//!
//! A partition may move again in a later round; the plan holds one move
//! per partition, from its shard to where it ended, charged once against
//! the budget (and moving it back refunds it). Because of that, the search
//! stops only where no single move helps, so re-planning right after the
//! plan is carried out finds nothing to do: plans do not oscillate.

use std::collections::HashSet;

use super::{Move, MoveBudget, PartitionId, PartitionLoad, Plan, PlanError, Strategy};

/// Loads are sums of floats: differences this small are ties.
const EPSILON: f64 = 1e-9;
/// Bounds one plan's work whatever the input. Every round lowers the peak
/// or the spread by more than `gain_min`, so this is reached only with an
/// absurdly small `gain_min`.
const ROUNDS_MAX: usize = 10_000;

/// Plans partition moves between the shards of one node.
///
/// Imbalance of an assignment at one step: `max shard load / mean shard
/// load − 1`, so 0 is perfectly balanced and 1 means the busiest shard
/// carries twice the mean. A step whose mean is zero (or at most
/// `idle_mean_load`) counts as 0: nothing is there to balance. The *peak*
/// imbalance is the largest over the forecast's steps; it is what a plan
/// lowers, because a core saturates at its worst moment, not on average.
///
/// Loads are in any one unit common to all partitions (messages/s, cores
/// busy); negative forecast values (a trend forecaster undershooting) are
/// read as zero, since no load is negative.
#[derive(Debug, Clone, PartialEq)]
pub struct RebalancePlanner {
    /// Seconds per forecast step, for the moves' `peak_in_s` and reasons.
    pub step_s: u64,
    /// A move must lower the peak imbalance (or, at an unchanged peak, the
    /// spread) by more than this; at least 1e-9.
    pub gain_min: f64,
    /// Steps whose mean shard load is at most this count as balanced, so
    /// an almost idle node (where 1 message/s is "3x the mean") is left
    /// alone.
    pub idle_mean_load: f64,
}

impl RebalancePlanner {
    /// A planner for forecasts of `step_s` seconds per step: gain_min 0.01
    /// (one point of imbalance), no idle floor.
    pub fn new(step_s: u64) -> Self {
        Self {
            step_s,
            gain_min: 0.01,
            idle_mean_load: 0.0,
        }
    }

    /// The moves, within `budget`, that minimise the peak imbalance of the
    /// loads `strategy` looks at.
    pub fn plan(
        &self,
        shard_count: u32,
        partitions: &[PartitionLoad],
        budget: MoveBudget,
        strategy: Strategy,
    ) -> Result<Plan, PlanError> {
        self.plan_pinning(shard_count, partitions, budget, strategy, |_| false)
    }

    /// The peak imbalance of the current assignment over the forecast.
    pub fn imbalance(
        &self,
        shard_count: u32,
        partitions: &[PartitionLoad],
    ) -> Result<f64, PlanError> {
        let steps = validate(shard_count, partitions)?;
        let view = View::new(shard_count, steps, partitions, self.idle_mean_load, |p| {
            &p.forecast
        });
        let assignment: Vec<usize> = partitions.iter().map(|p| p.shard as usize).collect();
        Ok(view.score(&view.shard_loads(&assignment)).peak)
    }

    /// [`Self::plan`], with the partitions `also_pinned` picks pinned too.
    pub(super) fn plan_pinning(
        &self,
        shard_count: u32,
        partitions: &[PartitionLoad],
        budget: MoveBudget,
        strategy: Strategy,
        also_pinned: impl Fn(&PartitionId) -> bool,
    ) -> Result<Plan, PlanError> {
        let steps = validate(shard_count, partitions)?;
        let idle = self.idle_mean_load;
        let predicted = View::new(shard_count, steps, partitions, idle, |p| &p.forecast);
        let reactive;
        let view = match strategy {
            Strategy::Predictive => &predicted,
            Strategy::Reactive => {
                reactive = View::new(shard_count, 1, partitions, idle, |p| {
                    std::slice::from_ref(&p.current)
                });
                &reactive
            }
        };
        let gain_min = self.gain_min.max(EPSILON);
        let original: Vec<usize> = partitions.iter().map(|p| p.shard as usize).collect();
        let movable: Vec<bool> = (0..partitions.len())
            .map(|p| {
                let partition = &partitions[p];
                !partition.pinned && !also_pinned(&partition.id) && view.carries_load(p)
            })
            .collect();

        let mut assignment = original.clone();
        let mut moves_used: i128 = 0;
        let mut bytes_used: i128 = 0;
        // Per partition: (round of its last move, reason, peak step).
        let mut last_move: Vec<Option<(usize, String, Option<usize>)>> =
            vec![None; partitions.len()];
        let mut loads = view.shard_loads(&assignment);
        let mut score = view.score(&loads);
        for round in 0..ROUNDS_MAX {
            let top = view.top_three(&loads);
            let mut best: Option<Candidate> = None;
            for (p, partition) in partitions.iter().enumerate() {
                if !movable[p] {
                    continue;
                }
                let from = assignment[p];
                for to in (0..view.shards).filter(|&to| to != from) {
                    // One move per partition from where it started.
                    let (moves_delta, bytes_delta): (i128, i128) = if from == original[p] {
                        (1, i128::from(partition.size_bytes))
                    } else if to == original[p] {
                        (-1, -i128::from(partition.size_bytes))
                    } else {
                        (0, 0)
                    };
                    let within_budget = moves_used + moves_delta <= budget.moves_max as i128
                        && bytes_used + bytes_delta <= i128::from(budget.bytes_max);
                    if !within_budget {
                        continue;
                    }
                    let after = view.score_move(&loads, &top, score, p, from, to);
                    let gains = score.peak - after.peak > gain_min
                        || (after.peak <= score.peak + EPSILON
                            && score.spread - after.spread > gain_min);
                    let candidate = Candidate {
                        p,
                        to,
                        after,
                        moves_delta,
                        bytes_delta,
                    };
                    if gains && best.as_ref().is_none_or(|best| candidate.beats(best)) {
                        best = Some(candidate);
                    }
                }
            }
            let Some(best) = best else { break };
            let from = assignment[best.p];
            let (reason, peak_step) = self.reason(
                strategy,
                view,
                &loads,
                &partitions[best.p],
                best.p,
                from,
                best.to,
                score,
                best.after,
            );
            last_move[best.p] = Some((round, reason, peak_step));
            assignment[best.p] = best.to;
            moves_used += best.moves_delta;
            bytes_used += best.bytes_delta;
            // From scratch rather than by the move's deltas, so the state
            // here is bit-for-bit what a fresh plan from this assignment
            // would see (no drift across rounds, no flapping on re-plan).
            loads = view.shard_loads(&assignment);
            score = view.score(&loads);
        }

        let mut moves: Vec<(usize, Move)> = Vec::new();
        for (p, partition) in partitions.iter().enumerate() {
            if assignment[p] == original[p] {
                continue;
            }
            let (round, reason, peak_step) = last_move[p].take().expect("moved, so has a reason");
            let peak_in_s =
                peak_step.map_or(0, |step| (step as u64 + 1).saturating_mul(self.step_s));
            moves.push((
                round,
                Move {
                    partition: partition.id.clone(),
                    from_shard: original[p] as u32,
                    to_shard: assignment[p] as u32,
                    size_bytes: partition.size_bytes,
                    peak_step,
                    peak_in_s,
                    reason,
                },
            ));
        }
        moves.sort_by_key(|(round, m)| (m.peak_in_s, *round));
        let moves: Vec<Move> = moves.into_iter().map(|(_, m)| m).collect();
        debug_assert!(moves.len() as i128 == moves_used && moves.len() <= budget.moves_max);
        let bytes_to_copy = moves.iter().map(|m| m.size_bytes).sum();
        debug_assert!(i128::from(bytes_to_copy) == bytes_used && bytes_to_copy <= budget.bytes_max);
        Ok(Plan {
            strategy,
            moves,
            imbalance_before: predicted.score(&predicted.shard_loads(&original)).peak,
            imbalance_after: predicted.score(&predicted.shard_loads(&assignment)).peak,
            bytes_to_copy,
        })
    }

    /// Why moving partition `p` from `from` to `to` helps, and the step of
    /// the peak of `from` it relieves.
    #[allow(clippy::too_many_arguments)]
    fn reason(
        &self,
        strategy: Strategy,
        view: &View,
        loads: &[f64],
        partition: &PartitionLoad,
        p: usize,
        from: usize,
        to: usize,
        before: Score,
        after: Score,
    ) -> (String, Option<usize>) {
        let (ratio, step) = view.shard_peak(loads, from);
        let id = &partition.id;
        let moved = view.partition(p)[step];
        let shard_load = loads[from * view.steps + step];
        let (when, peak_step) = match strategy {
            Strategy::Predictive => (
                format!(
                    "predicted to peak at {ratio:.2}x mean at +{}s",
                    (step as u64 + 1).saturating_mul(self.step_s)
                ),
                Some(step),
            ),
            Strategy::Reactive => (format!("at {ratio:.2}x mean now"), None),
        };
        let current = partition.current.max(0.0);
        let role = if strategy == Strategy::Predictive && moved > 1.5 * current && moved > 0.0 {
            format!("{id} bursts from {} to {}", load(current), load(moved))
        } else {
            let share = if shard_load > 0.0 {
                100.0 * moved / shard_load
            } else {
                0.0
            };
            format!("{id} carries {share:.0}% of it")
        };
        let effect = if before.peak - after.peak > EPSILON {
            format!("lowers the peak to {:.2}x", 1.0 + after.peak)
        } else {
            format!(
                "evens out the shards (peak stays {:.2}x)",
                1.0 + before.peak
            )
        };
        let size = human_bytes(partition.size_bytes);
        (
            format!("shard {from} {when} ({role}); moving {id} ({size}) to shard {to} {effect}"),
            peak_step,
        )
    }
}

fn validate(shard_count: u32, partitions: &[PartitionLoad]) -> Result<usize, PlanError> {
    if shard_count == 0 {
        return Err(PlanError::NoShards);
    }
    let steps = partitions.first().map_or(1, |p| p.forecast.len());
    let mut seen = HashSet::with_capacity(partitions.len());
    for p in partitions {
        let partition = || p.id.clone();
        if p.shard >= shard_count {
            return Err(PlanError::ShardOutOfRange {
                partition: partition(),
                shard: p.shard,
                shard_count,
            });
        }
        if p.forecast.is_empty() {
            return Err(PlanError::EmptyForecast {
                partition: partition(),
            });
        }
        if p.forecast.len() != steps {
            return Err(PlanError::ForecastLength {
                partition: partition(),
                len: p.forecast.len(),
                expected: steps,
            });
        }
        if !p.current.is_finite() {
            return Err(PlanError::NotFinite {
                partition: partition(),
                what: "current",
            });
        }
        if !p.forecast.iter().all(|value| value.is_finite()) {
            return Err(PlanError::NotFinite {
                partition: partition(),
                what: "forecast",
            });
        }
        if !seen.insert(&p.id) {
            return Err(PlanError::Duplicate {
                partition: partition(),
            });
        }
    }
    Ok(steps)
}

/// How balanced an assignment is: the peak imbalance, then the spread.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Score {
    peak: f64,
    spread: f64,
}

struct Candidate {
    p: usize,
    to: usize,
    after: Score,
    moves_delta: i128,
    bytes_delta: i128,
}

impl Candidate {
    fn beats(&self, other: &Candidate) -> bool {
        if (self.after.peak - other.after.peak).abs() > EPSILON {
            return self.after.peak < other.after.peak;
        }
        if (self.after.spread - other.after.spread).abs() > EPSILON {
            return self.after.spread < other.after.spread;
        }
        self.bytes_delta < other.bytes_delta
    }
}

/// Partition loads over some steps, and what depends only on them.
struct View {
    shards: usize,
    steps: usize,
    /// `loads[p * steps + t]`, negative values read as zero.
    loads: Vec<f64>,
    /// Mean shard load per step: the total over partitions in input order,
    /// so it does not depend on the assignment (bit for bit).
    means: Vec<f64>,
    /// The steps whose mean exceeds the idle load; only these count.
    active: Vec<usize>,
}

impl View {
    fn new<'a>(
        shard_count: u32,
        steps: usize,
        partitions: &'a [PartitionLoad],
        idle_mean_load: f64,
        row: impl Fn(&'a PartitionLoad) -> &'a [f64],
    ) -> Self {
        let shards = shard_count as usize;
        let mut loads = Vec::with_capacity(partitions.len() * steps);
        for partition in partitions {
            let values = row(partition);
            debug_assert_eq!(values.len(), steps);
            loads.extend(values.iter().map(|value| value.max(0.0)));
        }
        let mut totals = vec![0.0; steps];
        for values in loads.chunks_exact(steps) {
            for (total, value) in totals.iter_mut().zip(values) {
                *total += value;
            }
        }
        let means: Vec<f64> = totals.iter().map(|total| total / shards as f64).collect();
        let active = (0..steps)
            .filter(|&t| means[t] > idle_mean_load.max(0.0))
            .collect();
        Self {
            shards,
            steps,
            loads,
            means,
            active,
        }
    }

    fn partition(&self, p: usize) -> &[f64] {
        &self.loads[p * self.steps..(p + 1) * self.steps]
    }

    /// Moving a partition without load at any counted step changes nothing.
    fn carries_load(&self, p: usize) -> bool {
        let row = self.partition(p);
        self.active.iter().any(|&t| row[t] > 0.0)
    }

    /// `shard_loads[s * steps + t]`, summed in partition order.
    fn shard_loads(&self, assignment: &[usize]) -> Vec<f64> {
        let mut shard_loads = vec![0.0; self.shards * self.steps];
        for (p, &shard) in assignment.iter().enumerate() {
            let row = &mut shard_loads[shard * self.steps..(shard + 1) * self.steps];
            for (total, value) in row.iter_mut().zip(self.partition(p)) {
                *total += value;
            }
        }
        shard_loads
    }

    fn score(&self, shard_loads: &[f64]) -> Score {
        let mut peak: f64 = 0.0;
        let mut spread = 0.0;
        for &t in &self.active {
            let mean = self.means[t];
            for s in 0..self.shards {
                let ratio = shard_loads[s * self.steps + t] / mean;
                peak = peak.max(ratio - 1.0);
                spread += (ratio - 1.0) * (ratio - 1.0);
            }
        }
        Score {
            peak,
            spread: spread * self.spread_scale(),
        }
    }

    fn spread_scale(&self) -> f64 {
        if self.active.is_empty() {
            0.0
        } else {
            1.0 / (self.shards * self.active.len()) as f64
        }
    }

    /// Per counted step, the three most loaded shards as (shard, load):
    /// the most loaded shard other than a move's two is among them.
    fn top_three(&self, shard_loads: &[f64]) -> Vec<[(usize, f64); 3]> {
        self.active
            .iter()
            .map(|&t| {
                let mut top = [(usize::MAX, f64::NEG_INFINITY); 3];
                for s in 0..self.shards {
                    let load = shard_loads[s * self.steps + t];
                    if let Some(rank) = top.iter().position(|&(_, other)| load > other) {
                        top[rank..].rotate_right(1);
                        top[rank] = (s, load);
                    }
                }
                top
            })
            .collect()
    }

    /// The score after moving partition `p` from `from` to `to`, in
    /// O(steps) from the top three and the change in the two shards.
    fn score_move(
        &self,
        shard_loads: &[f64],
        top: &[[(usize, f64); 3]],
        now: Score,
        p: usize,
        from: usize,
        to: usize,
    ) -> Score {
        let row = self.partition(p);
        let mut peak: f64 = 0.0;
        let mut spread_delta = 0.0;
        for (&t, top) in self.active.iter().zip(top) {
            let mean = self.means[t];
            let (from_load, to_load) = (
                shard_loads[from * self.steps + t],
                shard_loads[to * self.steps + t],
            );
            let (from_after, to_after) = (from_load - row[t], to_load + row[t]);
            let others = top
                .iter()
                .find(|&&(s, _)| s != from && s != to)
                .map_or(f64::NEG_INFINITY, |&(_, load)| load);
            let max = from_after.max(to_after).max(others);
            peak = peak.max(max / mean - 1.0);
            let deviation = |load: f64| (load / mean - 1.0) * (load / mean - 1.0);
            spread_delta += deviation(from_after) + deviation(to_after)
                - deviation(from_load)
                - deviation(to_load);
        }
        Score {
            peak,
            spread: now.spread + spread_delta * self.spread_scale(),
        }
    }

    /// The highest load of `shard` relative to the mean, and its step.
    fn shard_peak(&self, shard_loads: &[f64], shard: usize) -> (f64, usize) {
        let mut peak = (f64::NEG_INFINITY, 0);
        for &t in &self.active {
            let ratio = shard_loads[shard * self.steps + t] / self.means[t];
            if ratio > peak.0 {
                peak = (ratio, t);
            }
        }
        peak
    }
}

/// A load with three significant digits (the unit is the caller's).
fn load(value: f64) -> String {
    match value.abs() {
        v if v >= 100.0 => format!("{value:.0}"),
        v if v >= 10.0 => format!("{value:.1}"),
        _ => format!("{value:.2}"),
    }
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if value < 10.0 {
        format!("{value:.1} {}", UNITS[unit])
    } else {
        format!("{value:.0} {}", UNITS[unit])
    }
}

//! Periodic rebalancing that does not flap.
//!
//! Moving a partition costs a copy and a pause for its clients, and loads
//! that alternate (two topics taking turns) would have a naive periodic
//! planner move the same partitions back and forth forever. Four brakes:
//! act only above an imbalance threshold; only for a plan that removes a
//! real fraction of it; never move a partition again within its cooldown;
//! and never more than a budget of moves and bytes in any sliding hour.

use std::collections::{HashMap, VecDeque};

use serde::Serialize;

use super::{MoveBudget, PartitionId, PartitionLoad, Plan, PlanError, RebalancePlanner, Strategy};

const HOUR_S: i64 = 3600;

/// When auto mode acts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AutoPolicy {
    pub strategy: Strategy,
    /// Act only when the predicted peak imbalance exceeds this (0.25: the
    /// busiest shard is predicted 25% above the mean).
    pub imbalance_threshold: f64,
    /// ...and the plan lowers it by at least this fraction of itself.
    pub relative_gain_min: f64,
    /// A partition moved less than this long ago is pinned.
    pub cooldown_s: u64,
    /// Moves in any sliding hour.
    pub moves_per_hour_max: usize,
    /// Bytes copied in any sliding hour.
    pub bytes_per_hour_max: u64,
}

impl Default for AutoPolicy {
    fn default() -> Self {
        Self {
            strategy: Strategy::Predictive,
            imbalance_threshold: 0.25,
            relative_gain_min: 0.3,
            cooldown_s: 15 * 60,
            moves_per_hour_max: 12,
            bytes_per_hour_max: 16 << 30,
        }
    }
}

/// What [`AutoRebalancer::decide`] concluded.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum AutoDecision {
    /// Carry these moves out; they are already charged to the hour and
    /// their partitions are cooling down.
    Act(Plan),
    /// Do nothing this round; `imbalance` is the predicted peak now.
    Hold { reason: HoldReason, imbalance: f64 },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldReason {
    /// The predicted peak imbalance is at most the threshold.
    BelowThreshold,
    /// The hour's moves or bytes are spent.
    HourlyBudgetSpent,
    /// No move helps (the movable partitions are cooling down, pinned, or
    /// already placed as well as single moves can place them).
    NoMove,
    /// The best plan would remove too small a fraction of the imbalance.
    GainTooSmall { imbalance_after: f64 },
}

/// Auto mode's state: the policy, and the recent moves it remembers.
#[derive(Debug, Clone)]
pub struct AutoRebalancer {
    policy: AutoPolicy,
    planner: RebalancePlanner,
    /// (when, bytes) of each move in the last hour, oldest first; at most
    /// `moves_per_hour_max` entries.
    recent: VecDeque<(i64, u64)>,
    /// When each partition still cooling down was moved.
    moved_at: HashMap<PartitionId, i64>,
}

impl AutoRebalancer {
    pub fn new(policy: AutoPolicy, planner: RebalancePlanner) -> Self {
        Self {
            recent: VecDeque::with_capacity(policy.moves_per_hour_max.min(1024)),
            policy,
            planner,
            moved_at: HashMap::new(),
        }
    }

    pub fn policy(&self) -> &AutoPolicy {
        &self.policy
    }

    /// Whether `partition` was moved less than the cooldown before `now_s`.
    pub fn cooling_down(&self, partition: &PartitionId, now_s: i64) -> bool {
        // A clock that stepped back leaves `at` in the future: still cooling.
        self.moved_at
            .get(partition)
            .is_some_and(|&at| now_s.saturating_sub(at) < self.cooldown_s())
    }

    fn cooldown_s(&self) -> i64 {
        i64::try_from(self.policy.cooldown_s).unwrap_or(i64::MAX)
    }

    /// One round at `now_s` (Unix seconds): plan, and keep the plan only if
    /// the policy allows it. An `Act` is recorded as carried out (a move
    /// that then fails still counts, which errs on the side of moving less).
    pub fn decide(
        &mut self,
        now_s: i64,
        shard_count: u32,
        partitions: &[PartitionLoad],
    ) -> Result<AutoDecision, PlanError> {
        self.expire(now_s);
        let imbalance = self.planner.imbalance(shard_count, partitions)?;
        let hold = |reason| Ok(AutoDecision::Hold { reason, imbalance });
        if imbalance <= self.policy.imbalance_threshold {
            return hold(HoldReason::BelowThreshold);
        }
        let bytes_spent: u64 = self.recent.iter().map(|&(_, bytes)| bytes).sum();
        let budget = MoveBudget {
            moves_max: self
                .policy
                .moves_per_hour_max
                .saturating_sub(self.recent.len()),
            bytes_max: self.policy.bytes_per_hour_max.saturating_sub(bytes_spent),
        };
        if budget.moves_max == 0 || budget.bytes_max == 0 {
            return hold(HoldReason::HourlyBudgetSpent);
        }
        let plan = self.planner.plan_pinning(
            shard_count,
            partitions,
            budget,
            self.policy.strategy,
            |id| self.cooling_down(id, now_s),
        )?;
        if plan.moves.is_empty() {
            return hold(HoldReason::NoMove);
        }
        let gain = plan.imbalance_before - plan.imbalance_after;
        if gain < self.policy.relative_gain_min * plan.imbalance_before {
            return hold(HoldReason::GainTooSmall {
                imbalance_after: plan.imbalance_after,
            });
        }
        for moved in &plan.moves {
            self.recent.push_back((now_s, moved.size_bytes));
            self.moved_at.insert(moved.partition.clone(), now_s);
        }
        debug_assert!(self.recent.len() <= self.policy.moves_per_hour_max);
        Ok(AutoDecision::Act(plan))
    }

    /// Forgets moves older than an hour and cooldowns that ended. Entries
    /// from the future (a clock stepped back) are kept.
    fn expire(&mut self, now_s: i64) {
        while self
            .recent
            .front()
            .is_some_and(|&(at, _)| now_s.saturating_sub(at) >= HOUR_S)
        {
            self.recent.pop_front();
        }
        let cooldown_s = self.cooldown_s();
        self.moved_at
            .retain(|_, &mut at| now_s.saturating_sub(at) < cooldown_s);
    }
}

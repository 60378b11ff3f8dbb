//! Moving partitions between the shards of one node so that the predicted
//! peak imbalance is as low as a move budget allows (definitions on
//! [`RebalancePlanner`]).
//!
//! Sans-IO: the caller gathers each partition's shard, current load,
//! forecast and size, asks [`RebalancePlanner::plan`] (one-off, e.g. the
//! CLI) or [`AutoRebalancer::decide`] (periodic, with hysteresis) for a
//! [`Plan`], and carries the moves out.

mod auto;
mod planner;
#[cfg(test)]
mod tests;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use auto::{AutoDecision, AutoPolicy, AutoRebalancer, HoldReason};
pub use planner::RebalancePlanner;

/// A partition of a topic (`topic/partition` when printed).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PartitionId {
    pub topic: String,
    pub partition: u32,
}

impl PartitionId {
    pub fn new(topic: impl Into<String>, partition: u32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }
}

impl fmt::Display for PartitionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.topic, self.partition)
    }
}

/// What the planner knows about one partition.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionLoad {
    pub id: PartitionId,
    /// The shard that owns it now.
    pub shard: u32,
    /// `forecast[k]` is the load predicted `k + 1` steps from now; the same
    /// length (≥ 1) for every partition.
    pub forecast: Vec<f64>,
    /// The load measured now.
    pub current: f64,
    /// What a move copies.
    pub size_bytes: u64,
    /// Never moved (e.g. an operator's choice, or a move in progress).
    pub pinned: bool,
}

/// The most one plan may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MoveBudget {
    pub moves_max: usize,
    pub bytes_max: u64,
}

impl MoveBudget {
    pub const UNLIMITED: MoveBudget = MoveBudget {
        moves_max: usize::MAX,
        bytes_max: u64::MAX,
    };
}

/// Which loads the planner balances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// The forecast vectors: act before a predicted burst.
    Predictive,
    /// Only the current loads, as if they stayed flat: the baseline that
    /// predictive planning has to beat.
    Reactive,
}

impl Strategy {
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Predictive => "predictive",
            Strategy::Reactive => "reactive",
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Strategy {
    type Err = UnknownStrategy;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        [Strategy::Predictive, Strategy::Reactive]
            .into_iter()
            .find(|strategy| strategy.name() == text)
            .ok_or_else(|| UnknownStrategy(text.chars().take(64).collect()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown strategy {0:?}: expected predictive or reactive")]
pub struct UnknownStrategy(pub String);

/// One partition to move.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Move {
    pub partition: PartitionId,
    pub from_shard: u32,
    pub to_shard: u32,
    pub size_bytes: u64,
    /// The forecast step of the peak this move relieves (`None`: reactive,
    /// the peak is now).
    pub peak_step: Option<usize>,
    /// Seconds from now to that peak: the move helps only if done by then.
    pub peak_in_s: u64,
    /// Why, for an operator. For a partition the search moved twice, the
    /// reason of its last hop (whose shard it names as the one relieved).
    pub reason: String,
}

/// What the planner proposes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub strategy: Strategy,
    /// Earliest peak first: each move has to land before the peak it
    /// relieves.
    pub moves: Vec<Move>,
    /// Peak imbalance (see [`RebalancePlanner`]) over the forecast before
    /// and after the moves, for either strategy, so the two can be compared.
    pub imbalance_before: f64,
    pub imbalance_after: f64,
    pub bytes_to_copy: u64,
}

/// Input the planner refuses.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    #[error("a node has at least one shard")]
    NoShards,
    #[error("partition {partition} is on shard {shard}, but the node has {shard_count} shards")]
    ShardOutOfRange {
        partition: PartitionId,
        shard: u32,
        shard_count: u32,
    },
    #[error("partition {partition} has an empty forecast")]
    EmptyForecast { partition: PartitionId },
    #[error("partition {partition} has a forecast of {len} steps, others {expected}")]
    ForecastLength {
        partition: PartitionId,
        len: usize,
        expected: usize,
    },
    #[error("partition {partition} has a non-finite load ({what})")]
    NotFinite {
        partition: PartitionId,
        what: &'static str,
    },
    #[error("partition {partition} is listed twice")]
    Duplicate { partition: PartitionId },
}

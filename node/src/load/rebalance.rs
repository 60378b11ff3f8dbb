//! From forecasts to partition moves: the planner's input built from the
//! live series, moves carried out one at a time through shard 0, and what
//! an operator sees of them (`/rebalance/status`).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;
use sprawl_forecast::{
    LoadHistory, Move, PartitionId, PartitionLoad, Plan, Resource, Scope, SeriesKey,
};
use sprawl_shards::{ControlHandle, ShardReply, ShardRequest, TopicCatalog};

use super::forecasts::{plan_horizons, Forecasts};

/// Finished moves kept for the status page.
const RECENT_MOVES_MAX: usize = 64;
/// "Current" load: the mean of the newest seconds, so one noisy second
/// does not decide a reactive plan.
const CURRENT_WINDOW_S: usize = 5;

/// One move as the status page shows it.
#[derive(Debug, Clone, Serialize)]
pub struct MoveRecord {
    pub partition: String,
    pub from_shard: u32,
    pub to_shard: u32,
    pub reason: String,
    pub state: &'static str,
    pub started_unix_ms: i64,
    pub duration_ms: Option<u64>,
    pub error: Option<String>,
}

/// Moves in flight and done, shared with the admin thread.
#[derive(Debug, Default, Serialize)]
pub struct RebalanceStatus {
    pub in_flight: Vec<MoveRecord>,
    pub recent: VecDeque<MoveRecord>,
    pub moves_done: u64,
    pub moves_failed: u64,
}

pub type SharedStatus = Arc<Mutex<RebalanceStatus>>;

/// The mean of the newest `n` finite values (0 without any).
fn recent_mean(values: &[f64], n: usize) -> f64 {
    let recent: Vec<f64> = values
        .iter()
        .rev()
        .filter(|v| v.is_finite())
        .take(n)
        .copied()
        .collect();
    if recent.is_empty() {
        0.0
    } else {
        recent.iter().sum::<f64>() / recent.len() as f64
    }
}

/// Every partition of the catalog with its owner, current message rate and
/// forecast over the plan horizons (10 s steps). A partition without a
/// forecast yet is flat at its current rate; one being moved is pinned.
pub fn partition_loads(
    catalog: &TopicCatalog,
    shard_count: usize,
    history: &LoadHistory,
    forecasts: &Forecasts,
) -> Vec<PartitionLoad> {
    let horizons = plan_horizons();
    let mut loads = Vec::new();
    for (topic, cfg) in &catalog.topics {
        for partition in 0..cfg.partitions {
            let scope = Scope::Partition {
                topic: topic.clone(),
                partition,
            };
            let key = SeriesKey::new(Resource::MessagesIn, scope);
            let current = history.get(&key).map_or(0.0, |ring| {
                recent_mean(&ring.fine_values(), CURRENT_WINDOW_S)
            });
            let forecast = horizons
                .iter()
                .map(|&h| {
                    forecasts
                        .predict(&key, h)
                        .map(|p| p.value.max(0.0))
                        .filter(|v| v.is_finite())
                        .unwrap_or(current)
                })
                .collect();
            loads.push(PartitionLoad {
                id: PartitionId {
                    topic: topic.clone(),
                    partition,
                },
                shard: catalog.owner(topic, partition, shard_count) as u32,
                forecast,
                current,
                // A move between shards of one node copies nothing: both
                // shards open the same files. (A move between nodes will
                // copy the log; the budget's byte limit is for those.)
                size_bytes: 0,
                pinned: catalog.move_of(topic, partition).is_some(),
            });
        }
    }
    loads
}

/// Carries out `plan`'s moves in order on the calling thread (never a
/// shard's), recording each in `status`. Stops at the first failure: the
/// rest of the plan was computed assuming it.
pub fn execute(plan: &Plan, control: &ControlHandle, status: &SharedStatus) -> Vec<MoveRecord> {
    let mut done = Vec::new();
    for m in &plan.moves {
        let record = run_move(m, control, status);
        let failed = record.error.is_some();
        done.push(record);
        if failed {
            break;
        }
    }
    done
}

fn run_move(m: &Move, control: &ControlHandle, status: &SharedStatus) -> MoveRecord {
    let mut record = MoveRecord {
        partition: m.partition.to_string(),
        from_shard: m.from_shard,
        to_shard: m.to_shard,
        reason: m.reason.clone(),
        state: "moving",
        started_unix_ms: sprawl_shards::shard::now_ms(),
        duration_ms: None,
        error: None,
    };
    status
        .lock()
        .expect("rebalance status lock")
        .in_flight
        .push(record.clone());
    let started = Instant::now();
    let result = control.call(ShardRequest::MovePartition {
        topic: m.partition.topic.clone(),
        partition: m.partition.partition,
        to: m.to_shard as usize,
    });
    record.duration_ms = Some(started.elapsed().as_millis() as u64);
    match result {
        Ok(ShardReply::Moved { .. }) => record.state = "done",
        Ok(other) => {
            record.state = "failed";
            record.error = Some(format!("unexpected reply {other:?}"));
        }
        Err(e) => {
            record.state = "failed";
            record.error = Some(e.to_string());
        }
    }
    finish(status, &record);
    record
}

/// Records a move done by hand (`/partitions/move`) on the status page.
pub fn record_manual(status: &SharedStatus, record: MoveRecord) {
    finish(status, &record);
}

fn finish(status: &SharedStatus, record: &MoveRecord) {
    let mut s = status.lock().expect("rebalance status lock");
    s.in_flight.retain(|r| r.partition != record.partition);
    if record.error.is_some() {
        s.moves_failed += 1;
    } else {
        s.moves_done += 1;
    }
    if s.recent.len() == RECENT_MOVES_MAX {
        s.recent.pop_front();
    }
    s.recent.push_back(record.clone());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_mean_skips_gaps() {
        assert_eq!(recent_mean(&[1.0, f64::NAN, 3.0, 5.0], 2), 4.0);
        assert_eq!(recent_mean(&[f64::NAN], 5), 0.0);
        assert_eq!(recent_mean(&[], 5), 0.0);
    }
}

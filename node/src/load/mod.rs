//! The node's load thread: it takes every shard's per-second sample, keeps
//! the load history (persisted in `<data>/load/`), runs the forecasters and
//! trains their model, answers `/load`, `/predictions` and the rebalancer,
//! and in auto mode moves partitions on its own. A plain OS thread: nothing
//! here ever runs on, or waits for, a shard's reactor.

mod aggregate;
mod forecasts;
pub mod http;
mod rebalance;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sprawl_forecast::{
    AutoDecision, AutoPolicy, AutoRebalancer, LoadHistory, MoveBudget, RebalancePlanner, Resource,
    ScopeKind, SeriesKey, Strategy,
};
use sprawl_shards::load::{LoadSink, ShardLoadSample};
use sprawl_shards::{ControlHandle, TopicCatalog};

use aggregate::{Aggregator, NodeGauges};
use forecasts::{Forecasts, PLAN_STEP_S};
pub use rebalance::SharedStatus;

/// Samples queued from the shards (a few minutes' worth).
const SAMPLE_QUEUE: usize = 4096;
/// Series kept in the history (partitions × resources + shards + node).
const SERIES_MAX: usize = 4096;
const HISTORY_FILE: &str = "history.bin";

/// How the load thread runs.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// `<data>/load`.
    pub dir: PathBuf,
    pub shard_count: usize,
    pub train_every: Duration,
    pub train_steps: usize,
    pub persist_every: Duration,
    /// Auto rebalancing: the strategy and how often it is considered.
    pub auto: Option<(Strategy, Duration)>,
}

/// What the admin thread may ask.
pub enum Query {
    Load {
        scope: Option<ScopeKind>,
        resource: Option<Resource>,
        window_s: usize,
    },
    Predictions {
        resource: Resource,
        scope: ScopeKind,
        horizon_s: usize,
    },
    Plan {
        strategy: Strategy,
        budget: MoveBudget,
    },
    SetAuto(Option<Strategy>),
    Auto,
}

/// An answer, or an HTTP status and why.
pub type Answer = Result<Value, (u16, String)>;

/// The admin thread's side: queries, plus what moves need.
#[derive(Clone)]
pub struct LoadHandle {
    queries: Sender<(Query, Sender<Answer>)>,
    pub status: SharedStatus,
    pub control: ControlHandle,
    /// Set while a plan is being carried out (one at a time).
    pub applying: Arc<AtomicBool>,
}

impl LoadHandle {
    pub fn ask(&self, query: Query) -> Answer {
        let (tx, rx) = mpsc::channel();
        self.queries
            .send((query, tx))
            .map_err(|_| (503, "the load thread has stopped".to_string()))?;
        rx.recv_timeout(Duration::from_secs(30))
            .map_err(|_| (503, "the load thread did not answer".to_string()))?
    }
}

/// The sink the shards sample into, and its receiving end for [`start`]
/// (made before the shards start, since they take the sink).
pub fn sample_channel() -> (LoadSink, Receiver<ShardLoadSample>) {
    let (tx, rx): (SyncSender<ShardLoadSample>, _) = mpsc::sync_channel(SAMPLE_QUEUE);
    (LoadSink::new(tx), rx)
}

/// Starts the load thread on `samples`; returns the handle for the admin
/// endpoint. The thread stops when `stop` is set, saving the history and
/// the model.
pub fn start(
    config: LoadConfig,
    samples: Receiver<ShardLoadSample>,
    catalog: Arc<Mutex<TopicCatalog>>,
    control: ControlHandle,
    stop: Arc<AtomicBool>,
) -> std::io::Result<(LoadHandle, std::thread::JoinHandle<()>)> {
    std::fs::create_dir_all(&config.dir)?;
    let (query_tx, query_rx) = mpsc::channel();
    let handle = LoadHandle {
        queries: query_tx,
        status: SharedStatus::default(),
        control,
        applying: Arc::new(AtomicBool::new(false)),
    };
    let mut thread = LoadThread::new(config, catalog, handle.clone());
    let join = std::thread::Builder::new()
        .name("load-forecast".into())
        .spawn(move || thread.run(samples, query_rx, stop))?;
    Ok((handle, join))
}

struct LoadThread {
    config: LoadConfig,
    catalog: Arc<Mutex<TopicCatalog>>,
    handle: LoadHandle,
    history: LoadHistory,
    aggregator: Aggregator,
    forecasts: Forecasts,
    gauges: NodeGauges,
    auto: Option<(AutoRebalancer, Duration)>,
}

fn planner() -> RebalancePlanner {
    let mut planner = RebalancePlanner::new(PLAN_STEP_S as u64);
    // Below ~10 msgs/s per shard nothing is worth moving.
    planner.idle_mean_load = 10.0;
    planner
}

fn auto_rebalancer(strategy: Strategy) -> AutoRebalancer {
    AutoRebalancer::new(
        AutoPolicy {
            strategy,
            ..AutoPolicy::default()
        },
        planner(),
    )
}

/// Resident memory of this process, from /proc (0 when unavailable).
fn resident_bytes() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse::<f64>().ok()
        })
        .map_or(0.0, |kib| kib * 1024.0)
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

impl LoadThread {
    fn new(config: LoadConfig, catalog: Arc<Mutex<TopicCatalog>>, handle: LoadHandle) -> Self {
        let path = config.dir.join(HISTORY_FILE);
        let history = match std::fs::read(&path) {
            Ok(bytes) => match LoadHistory::decode(&bytes) {
                Ok(mut h) => {
                    h.set_series_max(SERIES_MAX);
                    tracing::info!(series = h.len(), "loaded load history");
                    h
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "ignoring unreadable load history");
                    LoadHistory::new(SERIES_MAX)
                }
            },
            Err(_) => LoadHistory::new(SERIES_MAX),
        };
        let mut forecasts = Forecasts::new(&config.dir);
        for (key, ring) in history.iter() {
            forecasts.replay(key, &ring.fine_values());
        }
        let auto = config
            .auto
            .map(|(strategy, every)| (auto_rebalancer(strategy), every));
        Self {
            aggregator: Aggregator::new(config.shard_count),
            config,
            catalog,
            handle,
            history,
            forecasts,
            gauges: NodeGauges::default(),
            auto,
        }
    }

    fn run(
        &mut self,
        samples: Receiver<ShardLoadSample>,
        queries: Receiver<(Query, Sender<Answer>)>,
        stop: Arc<AtomicBool>,
    ) {
        let mut last_train = Instant::now();
        let mut last_persist = Instant::now();
        let mut last_auto = Instant::now();
        let mut last_gauges = Instant::now() - Duration::from_secs(1);
        while !stop.load(Ordering::Relaxed) {
            if last_gauges.elapsed() >= Duration::from_secs(1) {
                self.gauges.memory_bytes = resident_bytes();
                last_gauges = Instant::now();
            }
            while let Ok(sample) = samples.try_recv() {
                self.take(&sample);
            }
            match queries.recv_timeout(Duration::from_millis(50)) {
                Ok((query, reply)) => {
                    let _ = reply.send(self.answer(query));
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if last_train.elapsed() >= self.config.train_every {
                self.forecasts.train(self.config.train_steps);
                last_train = Instant::now();
            }
            if last_persist.elapsed() >= self.config.persist_every {
                self.forget_deleted_topics();
                self.persist();
                last_persist = Instant::now();
            }
            if let Some((_, every)) = &self.auto {
                if last_auto.elapsed() >= *every {
                    self.auto_step();
                    last_auto = Instant::now();
                }
            }
        }
        self.persist();
    }

    fn take(&mut self, sample: &ShardLoadSample) {
        for point in self.aggregator.add(sample, self.gauges) {
            // A stale second (a shard's sample arriving late) is dropped.
            if self
                .history
                .record(point.unix_s, &point.key, point.value)
                .is_ok()
            {
                self.forecasts.observe(&point.key, point.value);
            }
        }
    }

    fn forget_deleted_topics(&mut self) {
        let catalog = self.catalog.lock().expect("catalog lock").clone();
        let gone: Vec<String> = self
            .history
            .iter()
            .filter_map(|(k, _)| match &k.scope {
                sprawl_forecast::Scope::Partition { topic, .. }
                    if !catalog.topics.contains_key(topic) =>
                {
                    Some(topic.clone())
                }
                _ => None,
            })
            .collect();
        for topic in gone {
            self.history.remove_topic(&topic);
            self.forecasts.remove_topic(&topic);
        }
    }

    fn persist(&self) {
        let path = self.config.dir.join(HISTORY_FILE);
        if let Err(e) = write_atomically(&path, &self.history.encode()) {
            tracing::warn!(path = %path.display(), error = %e, "saving the load history failed");
        }
        self.forecasts.save();
    }

    fn partition_loads(&self) -> Vec<sprawl_forecast::PartitionLoad> {
        let catalog = self.catalog.lock().expect("catalog lock").clone();
        rebalance::partition_loads(
            &catalog,
            self.config.shard_count,
            &self.history,
            &self.forecasts,
        )
    }

    fn auto_step(&mut self) {
        if self.handle.applying.load(Ordering::Acquire) {
            return;
        }
        let loads = self.partition_loads();
        let shards = self.config.shard_count as u32;
        let Some((auto, _)) = &mut self.auto else {
            return;
        };
        let now_s = sprawl_shards::shard::now_ms() / 1000;
        match auto.decide(now_s, shards, &loads) {
            Ok(AutoDecision::Act(plan)) => {
                tracing::info!(
                    moves = plan.moves.len(),
                    before = plan.imbalance_before,
                    after = plan.imbalance_after,
                    "auto rebalance"
                );
                let handle = self.handle.clone();
                handle.applying.store(true, Ordering::Release);
                let spawned =
                    std::thread::Builder::new()
                        .name("rebalance".into())
                        .spawn(move || {
                            rebalance::execute(&plan, &handle.control, &handle.status);
                            handle.applying.store(false, Ordering::Release);
                        });
                if spawned.is_err() {
                    self.handle.applying.store(false, Ordering::Release);
                }
            }
            Ok(AutoDecision::Hold { .. }) => {}
            Err(e) => tracing::warn!(error = %e, "auto rebalance could not plan"),
        }
    }

    fn answer(&mut self, query: Query) -> Answer {
        match query {
            Query::Load {
                scope,
                resource,
                window_s,
            } => Ok(self.load_json(scope, resource, window_s)),
            Query::Predictions {
                resource,
                scope,
                horizon_s,
            } => self.predictions_json(resource, scope, horizon_s),
            Query::Plan { strategy, budget } => {
                let loads = self.partition_loads();
                planner()
                    .plan(self.config.shard_count as u32, &loads, budget, strategy)
                    .map(|plan| serde_json::to_value(plan).expect("plans serialise"))
                    .map_err(|e| (500, format!("planning failed: {e}")))
            }
            Query::SetAuto(strategy) => {
                let every = self
                    .auto
                    .as_ref()
                    .map_or(Duration::from_secs(30), |(_, every)| *every);
                self.auto = strategy.map(|s| (auto_rebalancer(s), every));
                Ok(self.auto_json())
            }
            Query::Auto => Ok(self.auto_json()),
        }
    }

    fn auto_json(&self) -> Value {
        match &self.auto {
            None => json!({ "enabled": false }),
            Some((auto, every)) => json!({
                "enabled": true,
                "strategy": auto.policy().strategy,
                "interval_s": every.as_secs_f64(),
                "imbalance_threshold": auto.policy().imbalance_threshold,
                "relative_gain_min": auto.policy().relative_gain_min,
                "cooldown_s": auto.policy().cooldown_s,
                "moves_per_hour_max": auto.policy().moves_per_hour_max,
            }),
        }
    }

    fn load_json(
        &self,
        scope: Option<ScopeKind>,
        resource: Option<Resource>,
        window_s: usize,
    ) -> Value {
        let series: Vec<Value> = self
            .history
            .iter()
            .filter(|(k, _)| scope.is_none_or(|s| k.scope.kind() == s))
            .filter(|(k, _)| resource.is_none_or(|r| k.resource == r))
            .map(|(key, ring)| {
                let values = ring.fine_values();
                let tail = &values[values.len().saturating_sub(window_s)..];
                json!({
                    "series": key.to_string(),
                    "resource": key.resource.name(),
                    "scope": key.scope.to_string(),
                    "newest_unix_s": ring.newest_s(),
                    "latest": ring.latest(),
                    "values": tail.iter().map(|v| if v.is_finite() { json!(v) } else { Value::Null }).collect::<Vec<_>>(),
                })
            })
            .collect();
        let cost = self.forecasts.cost;
        json!({
            "unix_s": sprawl_shards::shard::now_ms() / 1000,
            "step_s": 1,
            "series": series,
            "forecaster": {
                "cpu_share_of_one_core": self.forecasts.cpu_share(),
                "train_ms_total": cost.train.as_secs_f64() * 1e3,
                "observe_ms_total": cost.observe.as_secs_f64() * 1e3,
                "trainings": cost.trainings,
                "model_steps_trained": self.forecasts.model_steps_trained(),
                "last_training_loss": cost.last_loss,
            },
        })
    }

    fn predictions_json(&self, resource: Resource, scope: ScopeKind, horizon_s: usize) -> Answer {
        let keys: Vec<&SeriesKey> = self
            .forecasts
            .keys()
            .filter(|k| k.resource == resource && k.scope.kind() == scope)
            .collect();
        if let Some(key) = keys.first() {
            let horizons = Forecasts::horizons(key);
            if !horizons.contains(&horizon_s) {
                return Err((
                    400,
                    format!("horizon {horizon_s} s is not forecast for {scope} series; use one of {horizons:?} (seconds)"),
                ));
            }
        }
        let predictions: Vec<Value> = keys
            .into_iter()
            .filter_map(|key| {
                let p = self.forecasts.predict(key, horizon_s)?;
                let finite = |v: f64| if v.is_finite() { json!(v) } else { Value::Null };
                // Every resource here is a rate or a level: never negative.
                let (value, lower, upper) = (p.value.max(0.0), p.lower.max(0.0), p.upper.max(0.0));
                Some(json!({
                    "series": key.to_string(),
                    "scope": key.scope.to_string(),
                    "forecast": value,
                    "interval": [finite(lower), finite(upper)],
                    "forecaster": p.forecaster,
                    "rolling_errors": p.scores.iter().map(|s| json!({
                        "name": s.name,
                        "mape": finite(s.mape),
                        "mase": finite(s.mase),
                        "scored": s.scored,
                    })).collect::<Vec<_>>(),
                }))
            })
            .collect();
        Ok(json!({
            "resource": resource.name(),
            "scope": scope.name(),
            "horizon_s": horizon_s,
            "unix_s": sprawl_shards::shard::now_ms() / 1000,
            "predictions": predictions,
        }))
    }
}

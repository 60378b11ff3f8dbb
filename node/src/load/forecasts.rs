//! The live forecasters of one node: an [`OnlineSelector`] per forecast
//! series, one shared [`GlobalModel`] trained on all of them, and what that
//! costs (so the claim "under 5% of a core" is measured, not assumed).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sprawl_forecast::{
    GlobalModel, ModelConfig, OnlineSelector, Prediction, Resource, Scope, SelectorConfig,
    SeriesKey,
};

/// Seconds between the horizons the rebalancer plans over (10 s … 2 min).
pub const PLAN_STEP_S: usize = 10;
pub const PLAN_STEPS: usize = 12;
/// Longer horizons, for node and shard series (5 min, 15 min, 1 h).
const LONG_HORIZONS_S: [usize; 3] = [300, 900, 3600];
/// Partitions get one longer horizon: their selectors stay small.
const PARTITION_LONG_HORIZON_S: usize = 300;
/// Values of each series the model trains on (the newest).
const TRAIN_WINDOW: usize = 1800;
/// A model is trained only on series with at least this many values.
const TRAIN_VALUES_MIN: usize = 60;

/// Which series get a forecaster (the rest are only recorded).
pub fn forecast_series(key: &SeriesKey) -> bool {
    match (&key.scope, key.resource) {
        (Scope::Partition { .. }, r) => {
            matches!(
                r,
                Resource::MessagesIn | Resource::BytesIn | Resource::BytesOut
            )
        }
        (Scope::Shard(_), r) => matches!(r, Resource::CpuBusy | Resource::MessagesIn),
        (Scope::Node, _) => true,
    }
}

pub fn plan_horizons() -> Vec<usize> {
    (1..=PLAN_STEPS).map(|k| k * PLAN_STEP_S).collect()
}

fn horizons_for(key: &SeriesKey) -> Vec<usize> {
    let mut h = plan_horizons();
    match key.scope {
        Scope::Partition { .. } => h.push(PARTITION_LONG_HORIZON_S),
        _ => h.extend(LONG_HORIZONS_S),
    }
    h
}

/// Selector settings for a live series: the period is looked for every
/// minute (load shapes here are minutes to hours long; detection costs a
/// few ms per series).
fn selector_config(key: &SeriesKey) -> SelectorConfig {
    let mut config = SelectorConfig::new(horizons_for(key));
    config.period_every_values = 60;
    config
}

/// The selector of `key`, made on its first value.
fn selector_for<'a>(
    selectors: &'a mut BTreeMap<SeriesKey, OnlineSelector>,
    key: &SeriesKey,
) -> &'a mut OnlineSelector {
    selectors.entry(key.clone()).or_insert_with(|| {
        OnlineSelector::new(selector_config(key)).expect("node selector config is valid")
    })
}

/// Time spent forecasting, to report its share of a core.
#[derive(Debug, Default, Clone, Copy)]
pub struct Cost {
    pub train: Duration,
    pub observe: Duration,
    pub trainings: u64,
    pub last_loss: f64,
}

pub struct Forecasts {
    selectors: BTreeMap<SeriesKey, OnlineSelector>,
    model: GlobalModel,
    model_path: PathBuf,
    pub cost: Cost,
    started: Instant,
}

impl Forecasts {
    /// Loads the saved weights from `dir` if compatible, else starts fresh.
    pub fn new(dir: &Path) -> Self {
        let model_path = dir.join("model.safetensors");
        let model = match GlobalModel::load(&model_path) {
            Ok(model) => {
                tracing::info!(path = %model_path.display(), "loaded forecasting model");
                model
            }
            Err(e) => {
                if model_path.exists() {
                    tracing::warn!(error = %e, "ignoring saved forecasting model");
                }
                let config = ModelConfig::new(vec![10, 30, 60, 120, 300]);
                GlobalModel::new(config).expect("the default model config is valid")
            }
        };
        Self {
            selectors: BTreeMap::new(),
            model,
            model_path,
            cost: Cost::default(),
            started: Instant::now(),
        }
    }

    /// Feeds the next value of a series (one per second).
    pub fn observe(&mut self, key: &SeriesKey, value: f64) {
        if !forecast_series(key) {
            return;
        }
        let started = Instant::now();
        let selector = selector_for(&mut self.selectors, key);
        if let Err(e) = selector.observe(value, Some(&self.model)) {
            tracing::debug!(series = %key, error = %e, "forecaster observe");
        }
        self.cost.observe += started.elapsed();
    }

    /// Replays recorded values without the model (fast warm-up after a
    /// restart; the model is scored again from the next live value on).
    pub fn replay(&mut self, key: &SeriesKey, values: &[f64]) {
        if !forecast_series(key) {
            return;
        }
        let selector = selector_for(&mut self.selectors, key);
        for &v in values.iter().filter(|v| v.is_finite()) {
            let _ = selector.observe(v, None);
        }
    }

    /// Forgets series of a deleted topic.
    pub fn remove_topic(&mut self, topic: &str) {
        self.selectors
            .retain(|k, _| !matches!(&k.scope, Scope::Partition { topic: t, .. } if t == topic));
    }

    /// A few Adam steps over every forecast series' recent past.
    pub fn train(&mut self, steps: usize) {
        let started = Instant::now();
        let mut series = Vec::new();
        let mut periods = Vec::new();
        for selector in self.selectors.values() {
            let history = selector.history();
            if history.len() >= TRAIN_VALUES_MIN {
                series.push(&history[history.len().saturating_sub(TRAIN_WINDOW)..]);
                periods.push(selector.period());
            }
        }
        if series.is_empty() {
            return;
        }
        match self.model.train(&series, &periods, steps) {
            Ok(loss) => {
                self.cost.last_loss = loss;
                self.cost.trainings += 1;
            }
            Err(e) => tracing::warn!(error = %e, "training the forecasting model failed"),
        }
        self.cost.train += started.elapsed();
    }

    /// Saves the weights (atomically: a torn file would be refused at load).
    pub fn save(&self) {
        let tmp = self.model_path.with_extension("safetensors.tmp");
        let result = self
            .model
            .save(&tmp)
            .map_err(|e| e.to_string())
            .and_then(|()| std::fs::rename(&tmp, &self.model_path).map_err(|e| e.to_string()));
        if let Err(e) = result {
            tracing::warn!(error = %e, "saving the forecasting model failed");
        }
    }

    /// The forecast of one series at `horizon_s`, when it has a forecaster
    /// tracking that horizon.
    pub fn predict(&self, key: &SeriesKey, horizon_s: usize) -> Option<Prediction> {
        let selector = self.selectors.get(key)?;
        selector.predict(horizon_s, Some(&self.model)).ok()
    }

    /// The horizons a series is forecast at.
    pub fn horizons(key: &SeriesKey) -> Vec<usize> {
        horizons_for(key)
    }

    pub fn keys(&self) -> impl Iterator<Item = &SeriesKey> {
        self.selectors.keys()
    }

    /// Share of one core spent training and forecasting since start.
    pub fn cpu_share(&self) -> f64 {
        let wall = self.started.elapsed().as_secs_f64();
        if wall > 0.0 {
            (self.cost.train + self.cost.observe).as_secs_f64() / wall
        } else {
            0.0
        }
    }

    pub fn model_steps_trained(&self) -> u64 {
        self.model.steps_trained()
    }
}

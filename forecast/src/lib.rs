//! Load forecasting and rebalancing: baseline forecasters, a period
//! detector, a small global model in candle, their rolling-origin
//! evaluation and online selection, bounded load history, and the planner
//! that moves partitions to minimise the predicted peak imbalance.
//!
//! Sans-IO: a [`Forecaster`] is fed values one step at a time and asked for
//! the value some steps ahead; nothing here touches a clock, a socket or a
//! runtime. The I/O helpers are [`read_csv`] (for `timestamp,value` files)
//! and the model's safetensors [`GlobalModel::save`]/[`GlobalModel::load`].
//!
//! Architecture invariant: a learned model is only ever selected when it
//! beats every baseline here on the same evaluation (see [`select`]) or, live,
//! on the same rolling window (see [`OnlineSelector`]).

mod adam;
mod baselines;
mod csv;
mod evaluate;
mod features;
mod model;
mod model_forecaster;
mod online;
mod period;
mod rebalance;
mod series;
#[cfg(test)]
mod synthetic;

pub use baselines::{Ewma, Holt, LastValue, SeasonalNaive};
pub use csv::{parse_csv, read_csv, CsvError, LineError};
pub use evaluate::{evaluate, mape, mase, naive_mae, select, Score};
pub use model::{GlobalModel, ModelConfig, ModelError, MODEL_NAME};
pub use model_forecaster::{ModelForecaster, RetrainSchedule};
pub use online::{OnlineSelector, Prediction, RollingScore, SelectorConfig, SelectorError};
pub use period::{detect_period, LAG_MAX};
pub use rebalance::{
    AutoDecision, AutoPolicy, AutoRebalancer, HoldReason, Move, MoveBudget, PartitionId,
    PartitionLoad, Plan, PlanError, RebalancePlanner, Strategy, UnknownStrategy,
};
pub use series::{
    HistoryError, KeyParseError, LoadHistory, LoadRing, Resource, SampleError, Scope, ScopeKind,
    SeriesKey, COARSE_SLOTS, COARSE_STEP_S, FINE_SLOTS,
};

/// A one-variable forecaster driven step by step.
pub trait Forecaster {
    /// A short, stable name, with its parameters (`ewma(0.3)`).
    fn name(&self) -> &str;
    /// The next value of the series.
    fn observe(&mut self, value: f64);
    /// The value `horizon_steps` (≥ 1) steps after the last observed one;
    /// NaN before any value has been observed.
    fn forecast(&self, horizon_steps: usize) -> f64;
}

//! The learned load model: one small network whose weights are shared by
//! every series of a node (a *global* model), trained online on the past.
//!
//! The network is a linear autoregression with a one-hidden-layer MLP
//! beside it, over the scaled window features of [`crate::features`]:
//! `z = x·w_skip + tanh(x·W + b)·v + c`, forecast = level + scale · z. The
//! linear part starts as "the mean of the last [`SEASONS`](crate::features::SEASONS) periods at the
//! target's phase" (the newest value without a period) and the MLP part at
//! zero, so an untrained model already forecasts like a smoothed
//! seasonal-naive, and training only has to learn the corrections (how
//! much of the newest departure persists, trend, mean reversion).
//!
//! The horizon is an input (its logarithm, the target's phase, and the
//! decay of the newest anomaly at several time constants) rather than one
//! model per horizon bucket: every training window then teaches every
//! horizon, and a horizon between the trained ones is interpolated instead
//! of falling into a bucket that saw little data.
//!
//! Cost: a few hundred weights. Training draws `batch` windows per Adam
//! step from the series given; prediction is one forward pass of the
//! horizons asked for. Nothing here blocks or spawns: the node runs
//! [`GlobalModel::train`] on a thread of its own and hands snapshots
//! ([`GlobalModel::snapshot`]) to the shards, which only read them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::safetensors::Load;
use candle_core::{Device, Tensor, Var};

use crate::adam::Adam;
use crate::features::{window_features, FEATURES, F_SEASONAL_MEAN, LAGS};

/// The stable name of the model among the forecasters.
pub const MODEL_NAME: &str = "model(mlp)";

/// Written in the safetensors metadata; a file with another format or
/// version is refused rather than misread.
const FILE_FORMAT: &str = "sprawl-forecast/model(mlp)";
const FILE_VERSION: &str = "1";

const HIDDEN_WEIGHT: &str = "hidden.weight";
const HIDDEN_BIAS: &str = "hidden.bias";
const OUTPUT_WEIGHT: &str = "output.weight";
const SKIP_WEIGHT: &str = "skip.weight";
const OUTPUT_BIAS: &str = "output.bias";

/// Bounds on the configuration, so a typo cannot ask for a model that
/// takes the training thread's whole core.
const HIDDEN_MAX: usize = 256;
const BATCH_MAX: usize = 4096;
/// The windows [`GlobalModel::loss`] scores per series and horizon.
const LOSS_WINDOWS_MAX: usize = 512;

/// Why the model could not be built, trained, used, saved or loaded.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("model config: {0}")]
    Config(&'static str),
    #[error("{series} series but {periods} periods: one period (or None) per series")]
    PeriodsMismatch { series: usize, periods: usize },
    #[error("no series has {values_min} values, the fewest to train on at horizon {horizon}")]
    NotEnoughHistory { values_min: usize, horizon: usize },
    #[error("no history to forecast from")]
    EmptyHistory,
    #[error("the forecast horizon is at least one step")]
    ZeroHorizon,
    #[error("tensor operation: {0}")]
    Tensor(#[from] candle_core::Error),
    #[error("writing model weights to {path}: {source}")]
    Write {
        path: PathBuf,
        source: safetensors::SafeTensorError,
    },
    #[error("reading model weights from {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a safetensors file: {source}")]
    Format {
        path: PathBuf,
        source: safetensors::SafeTensorError,
    },
    #[error("{path}: not weights of this model: {reason}")]
    Incompatible { path: PathBuf, reason: String },
}

/// The model's size and how it trains.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// Units of the hidden layer (1..=256).
    pub hidden: usize,
    /// The horizons, in steps, training windows are drawn at (each equally
    /// often): the horizons the model will be asked for.
    pub train_horizons: Vec<usize>,
    /// Windows per Adam step (1..=4096).
    pub batch: usize,
    pub learning_rate: f64,
    /// Seeds the initial weights and the choice of training windows, so a
    /// run can be replayed.
    pub seed: u64,
}

impl ModelConfig {
    /// The default size and training for these horizons.
    pub fn new(train_horizons: Vec<usize>) -> Self {
        Self {
            hidden: 16,
            train_horizons,
            batch: 128,
            learning_rate: 1e-3,
            seed: 0x5EED_F0CA,
        }
    }

    fn validate(&self) -> Result<(), ModelError> {
        if !(1..=HIDDEN_MAX).contains(&self.hidden) {
            return Err(ModelError::Config("hidden units must be in 1..=256"));
        }
        if self.train_horizons.is_empty() || self.train_horizons.contains(&0) {
            return Err(ModelError::Config(
                "train horizons must be a non-empty list of horizons ≥ 1",
            ));
        }
        if !(1..=BATCH_MAX).contains(&self.batch) {
            return Err(ModelError::Config("batch must be in 1..=4096"));
        }
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            return Err(ModelError::Config("learning rate must be positive"));
        }
        Ok(())
    }
}

/// The global model. Not `Clone` on purpose: candle variables share their
/// storage, so a derived clone would be trained along with the original;
/// [`GlobalModel::snapshot`] makes an independent copy.
#[derive(Debug)]
pub struct GlobalModel {
    config: ModelConfig,
    weights: Weights,
    adam: Adam,
    rng: SplitMix64,
    steps_trained: u64,
}

#[derive(Debug)]
struct Weights {
    /// `[FEATURES, hidden]`
    hidden_weight: Var,
    /// `[hidden]`
    hidden_bias: Var,
    /// `[hidden, 1]`
    output_weight: Var,
    /// `[FEATURES, 1]`: the linear autoregression beside the MLP.
    skip_weight: Var,
    /// `[1]`
    output_bias: Var,
}

impl Weights {
    fn vars(&self) -> [&Var; 5] {
        [
            &self.hidden_weight,
            &self.hidden_bias,
            &self.output_weight,
            &self.skip_weight,
            &self.output_bias,
        ]
    }

    fn named(&self) -> [(&'static str, &Var); 5] {
        [
            (HIDDEN_WEIGHT, &self.hidden_weight),
            (HIDDEN_BIAS, &self.hidden_bias),
            (OUTPUT_WEIGHT, &self.output_weight),
            (SKIP_WEIGHT, &self.skip_weight),
            (OUTPUT_BIAS, &self.output_bias),
        ]
    }

    /// Scaled forecasts `[rows, 1]` of features `[rows, FEATURES]`.
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let hidden = x
            .matmul(&self.hidden_weight)?
            .broadcast_add(&self.hidden_bias)?
            .tanh()?;
        let out = (hidden.matmul(&self.output_weight)? + x.matmul(&self.skip_weight)?)?;
        out.broadcast_add(&self.output_bias)
    }

    fn element_counts(&self) -> Vec<usize> {
        self.vars().iter().map(|var| var.elem_count()).collect()
    }
}

impl GlobalModel {
    /// A model that forecasts the mean of the last [`SEASONS`](crate::features::SEASONS) periods at
    /// the target's phase (the newest value without a period) until
    /// trained.
    pub fn new(config: ModelConfig) -> Result<Self, ModelError> {
        config.validate()?;
        let device = Device::Cpu;
        let mut rng = SplitMix64(config.seed);
        let hidden = config.hidden;
        // Uniform ±1/√fan-in: tanh units start in their linear range.
        let bound = 1.0 / (FEATURES as f64).sqrt();
        let hidden_weight: Vec<f32> = (0..FEATURES * hidden)
            .map(|_| ((2.0 * rng.unit() - 1.0) * bound) as f32)
            .collect();
        let mut skip_weight = vec![0.0f32; FEATURES];
        skip_weight[F_SEASONAL_MEAN] = 1.0;
        let weights = Weights {
            hidden_weight: Var::from_vec(hidden_weight, (FEATURES, hidden), &device)?,
            hidden_bias: Var::from_vec(vec![0.0f32; hidden], hidden, &device)?,
            // Zero: the MLP adds nothing until trained (its hidden weights
            // still get gradients through this layer's).
            output_weight: Var::from_vec(vec![0.0f32; hidden], (hidden, 1), &device)?,
            skip_weight: Var::from_vec(skip_weight, (FEATURES, 1), &device)?,
            output_bias: Var::from_vec(vec![0.0f32], 1, &device)?,
        };
        Ok(Self {
            adam: Adam::new(&weights.element_counts()),
            config,
            weights,
            rng,
            steps_trained: 0,
        })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Adam steps taken since [`GlobalModel::new`] (saved and loaded with
    /// the weights).
    pub fn steps_trained(&self) -> u64 {
        self.steps_trained
    }

    /// An independent copy: training either leaves the other unchanged.
    /// The optimiser state is copied too, so the copy trains on exactly as
    /// the original would.
    pub fn snapshot(&self) -> Result<Self, ModelError> {
        let copy = |var: &Var| -> Result<Var, ModelError> {
            Ok(Var::from_tensor(&var.as_tensor().copy()?)?)
        };
        Ok(Self {
            config: self.config.clone(),
            weights: Weights {
                hidden_weight: copy(&self.weights.hidden_weight)?,
                hidden_bias: copy(&self.weights.hidden_bias)?,
                output_weight: copy(&self.weights.output_weight)?,
                skip_weight: copy(&self.weights.skip_weight)?,
                output_bias: copy(&self.weights.output_bias)?,
            },
            adam: self.adam.clone(),
            rng: self.rng.clone(),
            steps_trained: self.steps_trained,
        })
    }

    /// Takes `steps` Adam steps, each on `batch` windows drawn from
    /// `series` (every series equally often, whatever its length, then one
    /// of the configured horizons, then an origin whose target is in the
    /// series), and returns the mean training loss: the mean absolute
    /// error in window scales (see [`crate::features::Normaliser`]), NaN
    /// for 0 steps.
    ///
    /// `periods[i]` is the period of `series[i]`. Give each series' recent
    /// past only: every window lies wholly inside what is given.
    pub fn train(
        &mut self,
        series: &[&[f64]],
        periods: &[Option<usize>],
        steps: usize,
    ) -> Result<f64, ModelError> {
        let plan = self.window_plan(series, periods)?;
        let device = Device::Cpu;
        let batch = self.config.batch;
        let mut features = vec![0.0f32; batch * FEATURES];
        let mut targets = vec![0.0f32; batch];
        let mut loss_sum = 0.0;
        for _ in 0..steps {
            for row in 0..batch {
                let (series_index, horizons) = &plan[self.rng.below(plan.len())];
                let values = series[*series_index];
                let horizon = horizons[self.rng.below(horizons.len())];
                // Origins whose whole lag window and target exist.
                let origin = LAGS - 1 + self.rng.below(values.len() - LAGS - horizon + 1);
                let norm = window_features(
                    &values[..=origin],
                    periods[*series_index],
                    horizon,
                    &mut features[row * FEATURES..(row + 1) * FEATURES],
                );
                targets[row] = norm.scaled(values[origin + horizon]) as f32;
            }
            let x = Tensor::from_slice(&features, (batch, FEATURES), &device)?;
            let y = Tensor::from_slice(&targets, (batch, 1), &device)?;
            // Absolute error: the forecasts are scored by MAE-based MASE,
            // and load spikes would dominate a squared loss.
            let loss = (self.weights.forward(&x)? - y)?.abs()?.mean_all()?;
            let grads = loss.backward()?;
            self.adam
                .step(&self.weights.vars(), &grads, self.config.learning_rate)?;
            self.steps_trained += 1;
            loss_sum += f64::from(loss.to_scalar::<f32>()?);
        }
        Ok(loss_sum / steps as f64)
    }

    /// The mean absolute error in window scales of the current weights on
    /// `series`, at every configured horizon, over up to 512 evenly spaced
    /// origins per series and horizon; trains nothing. Scored on values
    /// not yet trained on, it is an out-of-sample check of the model.
    pub fn loss(&self, series: &[&[f64]], periods: &[Option<usize>]) -> Result<f64, ModelError> {
        let plan = self.window_plan(series, periods)?;
        let mut features = Vec::new();
        let mut targets = Vec::new();
        let mut row = vec![0.0f32; FEATURES];
        for (series_index, horizons) in &plan {
            let values = series[*series_index];
            for &horizon in horizons {
                let origins = values.len() - LAGS - horizon + 1;
                let stride = origins.div_ceil(LOSS_WINDOWS_MAX);
                for origin in (LAGS - 1..LAGS - 1 + origins).step_by(stride) {
                    let norm = window_features(
                        &values[..=origin],
                        periods[*series_index],
                        horizon,
                        &mut row,
                    );
                    features.extend_from_slice(&row);
                    targets.push(norm.scaled(values[origin + horizon]) as f32);
                }
            }
        }
        let device = Device::Cpu;
        let x = Tensor::from_vec(features, (targets.len(), FEATURES), &device)?;
        let y = Tensor::from_slice(&targets, (targets.len(), 1), &device)?;
        let loss = (self.weights.forward(&x)? - y)?.abs()?.mean_all()?;
        Ok(f64::from(loss.to_scalar::<f32>()?))
    }

    /// Per series with enough values, the configured horizons it has a
    /// training window for.
    fn window_plan(
        &self,
        series: &[&[f64]],
        periods: &[Option<usize>],
    ) -> Result<Vec<(usize, Vec<usize>)>, ModelError> {
        if series.len() != periods.len() {
            return Err(ModelError::PeriodsMismatch {
                series: series.len(),
                periods: periods.len(),
            });
        }
        let plan: Vec<(usize, Vec<usize>)> = series
            .iter()
            .enumerate()
            .filter_map(|(index, values)| {
                let horizons: Vec<usize> = self
                    .config
                    .train_horizons
                    .iter()
                    .copied()
                    .filter(|horizon| values.len() >= LAGS + horizon)
                    .collect();
                (!horizons.is_empty()).then_some((index, horizons))
            })
            .collect();
        if plan.is_empty() {
            let horizon = self.config.train_horizons.iter().min().copied();
            let horizon = horizon.unwrap_or(1);
            return Err(ModelError::NotEnoughHistory {
                values_min: LAGS + horizon,
                horizon,
            });
        }
        Ok(plan)
    }

    /// The value `horizon` steps after the newest value of `history`, a
    /// series with the given `period` (None: no season).
    pub fn predict(
        &self,
        history: &[f64],
        period: Option<usize>,
        horizon: usize,
    ) -> Result<f64, ModelError> {
        Ok(self.predict_horizons(history, period, &[horizon])?[0])
    }

    /// [`GlobalModel::predict`] at each of `horizons`, in one forward pass.
    pub fn predict_horizons(
        &self,
        history: &[f64],
        period: Option<usize>,
        horizons: &[usize],
    ) -> Result<Vec<f64>, ModelError> {
        if history.is_empty() {
            return Err(ModelError::EmptyHistory);
        }
        if horizons.contains(&0) {
            return Err(ModelError::ZeroHorizon);
        }
        if horizons.is_empty() {
            return Ok(Vec::new());
        }
        let mut features = vec![0.0f32; horizons.len() * FEATURES];
        let norms: Vec<_> = horizons
            .iter()
            .zip(features.chunks_exact_mut(FEATURES))
            .map(|(horizon, row)| window_features(history, period, *horizon, row))
            .collect();
        let x = Tensor::from_vec(features, (horizons.len(), FEATURES), &Device::Cpu)?;
        let scaled: Vec<f32> = self.weights.forward(&x)?.flatten_all()?.to_vec1()?;
        Ok(norms
            .iter()
            .zip(scaled)
            .map(|(norm, scaled)| norm.value(f64::from(scaled)))
            .collect())
    }

    /// Writes the weights and the config to `path` as safetensors (the
    /// config in the metadata); replaces `path` atomically. The optimiser's
    /// moments are not saved: a loaded model restarts them.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), ModelError> {
        let path = path.as_ref();
        let config = &self.config;
        let horizons: Vec<String> = config.train_horizons.iter().map(usize::to_string).collect();
        let metadata = HashMap::from([
            ("format".to_string(), FILE_FORMAT.to_string()),
            ("version".to_string(), FILE_VERSION.to_string()),
            ("features".to_string(), FEATURES.to_string()),
            ("hidden".to_string(), config.hidden.to_string()),
            ("train_horizons".to_string(), horizons.join(",")),
            ("batch".to_string(), config.batch.to_string()),
            (
                "learning_rate".to_string(),
                config.learning_rate.to_string(),
            ),
            ("seed".to_string(), config.seed.to_string()),
            ("steps_trained".to_string(), self.steps_trained.to_string()),
        ]);
        let tensors = self
            .weights
            .named()
            .map(|(name, var)| (name, var.as_tensor().clone()));
        safetensors::serialize_to_file(tensors, Some(metadata), path).map_err(|source| {
            ModelError::Write {
                path: path.to_path_buf(),
                source,
            }
        })
    }

    /// A model saved by [`GlobalModel::save`].
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ModelError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| ModelError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let format_error = |source| ModelError::Format {
            path: path.to_path_buf(),
            source,
        };
        let incompatible = |reason: String| ModelError::Incompatible {
            path: path.to_path_buf(),
            reason,
        };
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).map_err(format_error)?;
        let file = safetensors::SafeTensors::deserialize(&bytes).map_err(format_error)?;
        let metadata = header.metadata().clone().unwrap_or_default();
        let field = |key: &str| -> Result<&str, ModelError> {
            metadata
                .get(key)
                .map(String::as_str)
                .ok_or_else(|| incompatible(format!("no {key:?} in the metadata")))
        };
        fn number<T: std::str::FromStr>(
            key: &str,
            text: &str,
            incompatible: impl Fn(String) -> ModelError,
        ) -> Result<T, ModelError> {
            text.parse()
                .map_err(|_| incompatible(format!("{key} {text:?} is not a number")))
        }
        let (format, version) = (field("format")?, field("version")?);
        if format != FILE_FORMAT || version != FILE_VERSION {
            return Err(incompatible(format!(
                "format {format:?} version {version}, expected {FILE_FORMAT:?} version {FILE_VERSION}"
            )));
        }
        let features: usize = number("features", field("features")?, incompatible)?;
        if features != FEATURES {
            return Err(incompatible(format!(
                "{features} features, this build has {FEATURES}"
            )));
        }
        let train_horizons = field("train_horizons")?
            .split(',')
            .map(|text| number("train horizon", text, incompatible))
            .collect::<Result<Vec<usize>, _>>()?;
        let config = ModelConfig {
            hidden: number("hidden", field("hidden")?, incompatible)?,
            train_horizons,
            batch: number("batch", field("batch")?, incompatible)?,
            learning_rate: number("learning_rate", field("learning_rate")?, incompatible)?,
            seed: number("seed", field("seed")?, incompatible)?,
        };
        let steps_trained = number("steps_trained", field("steps_trained")?, incompatible)?;
        let mut model = Self::new(config)?;
        model.steps_trained = steps_trained;
        // The seed restarts the window draws: a loaded model does not
        // replay the windows it was trained on.
        model.rng = SplitMix64(model.config.seed ^ steps_trained);
        let device = Device::Cpu;
        for (name, var) in model.weights.named() {
            let view = file
                .tensor(name)
                .map_err(|_| incompatible(format!("no tensor {name:?}")))?;
            let tensor = view.load(&device)?;
            if tensor.dims() != var.dims() || tensor.dtype() != var.dtype() {
                return Err(incompatible(format!(
                    "{name} is {:?} {:?}, expected {:?} {:?}",
                    tensor.dtype(),
                    tensor.dims(),
                    var.dtype(),
                    var.dims()
                )));
            }
            var.set(&tensor)?;
        }
        Ok(model)
    }
}

/// SplitMix64 (Steele, Lea & Flood): a seeded generator with no
/// dependency, enough to draw training windows and initial weights.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n ≥ 1; the modulo bias is below 2⁻⁴⁰ for the
    /// sizes drawn here).
    fn below(&mut self, n: usize) -> usize {
        debug_assert!(n >= 1);
        (self.next() % n as u64) as usize
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::{daily_shape, seasonal};

    fn model(horizons: Vec<usize>) -> GlobalModel {
        GlobalModel::new(ModelConfig::new(horizons)).unwrap()
    }

    #[test]
    fn is_send_and_sync_for_a_training_thread() {
        fn shareable<T: Send + Sync>() {}
        shareable::<GlobalModel>();
    }

    #[test]
    fn untrained_it_forecasts_the_seasonal_mean_or_the_last_value() {
        let model = model(vec![1]);
        let shape: Vec<f64> = (0..24 * 10).map(|t| daily_shape(t, 24)).collect();
        for horizon in [1, 7, 30] {
            let expected = daily_shape(shape.len() - 1 + horizon, 24);
            let got = model.predict(&shape, Some(24), horizon).unwrap();
            assert!(
                (got - expected).abs() < 1e-3 * expected,
                "{got} != {expected}"
            );
        }
        let got = model.predict(&[3.0, 9.0, 4.0], None, 5).unwrap();
        assert!((got - 4.0).abs() < 1e-5, "{got}");
    }

    #[test]
    fn training_lowers_the_loss_on_later_unseen_values() {
        // Persistent noise: the untrained seasonal mean ignores the newest
        // departure, which predicts most of the next one.
        let series = seasonal(24 * 40, 24, 8.0, 0.9, 11);
        let (past, later) = series.split_at(24 * 30);
        let mut model = model(vec![1, 3]);
        let period = [Some(24)];
        let before = model.loss(&[later], &period).unwrap();
        let training_loss = model.train(&[past], &period, 300).unwrap();
        let after = model.loss(&[later], &period).unwrap();
        eprintln!("unseen loss {before:.3} -> {after:.3} (training loss {training_loss:.3})");
        assert!(after < 0.8 * before, "{before} -> {after}");
        assert_eq!(model.steps_trained(), 300);
    }

    #[test]
    fn one_model_serves_series_of_any_scale() {
        // Trained on a small series only, it forecasts a million times
        // larger one of the same shape as well, relative to its scale.
        let small = seasonal(24 * 30, 24, 5.0, 0.8, 12);
        let large: Vec<f64> = seasonal(24 * 30, 24, 5.0, 0.8, 13)
            .iter()
            .map(|v| 1e6 * v)
            .collect();
        let mut model = model(vec![1]);
        model.train(&[&small], &[Some(24)], 200).unwrap();
        let small_loss = model.loss(&[&small], &[Some(24)]).unwrap();
        let large_loss = model.loss(&[&large], &[Some(24)]).unwrap();
        assert!(
            (small_loss - large_loss).abs() < 0.2 * small_loss,
            "{small_loss} vs {large_loss}"
        );
    }

    #[test]
    fn training_is_reproducible_from_the_seed() {
        let series = seasonal(24 * 10, 24, 5.0, 0.5, 14);
        let train = || {
            let mut model = model(vec![1, 4]);
            model.train(&[&series], &[Some(24)], 20).unwrap();
            model.predict_horizons(&series, Some(24), &[1, 4]).unwrap()
        };
        assert_eq!(train(), train());
    }

    #[test]
    fn a_snapshot_is_not_trained_with_the_original() {
        let series = seasonal(24 * 10, 24, 5.0, 0.5, 15);
        let mut model = model(vec![1]);
        model.train(&[&series], &[Some(24)], 10).unwrap();
        let snapshot = model.snapshot().unwrap();
        let before = snapshot.predict(&series, Some(24), 1).unwrap();
        assert_eq!(model.predict(&series, Some(24), 1).unwrap(), before);
        model.train(&[&series], &[Some(24)], 50).unwrap();
        assert_eq!(snapshot.predict(&series, Some(24), 1).unwrap(), before);
        assert_ne!(model.predict(&series, Some(24), 1).unwrap(), before);
        // The copy trains on exactly as the original would have.
        let mut copy = snapshot.snapshot().unwrap();
        let mut again = snapshot.snapshot().unwrap();
        copy.train(&[&series], &[Some(24)], 5).unwrap();
        again.train(&[&series], &[Some(24)], 5).unwrap();
        assert_eq!(
            copy.predict(&series, Some(24), 1).unwrap(),
            again.predict(&series, Some(24), 1).unwrap()
        );
    }

    #[test]
    fn saves_and_loads_the_weights_and_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        let series = seasonal(24 * 10, 24, 5.0, 0.5, 16);
        let mut config = ModelConfig::new(vec![1, 5, 30]);
        config.hidden = 8;
        let mut model = GlobalModel::new(config).unwrap();
        model.train(&[&series], &[Some(24)], 25).unwrap();
        model.save(&path).unwrap();
        let loaded = GlobalModel::load(&path).unwrap();
        assert_eq!(loaded.config(), model.config());
        assert_eq!(loaded.steps_trained(), 25);
        let horizons = [1, 2, 5, 30, 100];
        assert_eq!(
            loaded
                .predict_horizons(&series, Some(24), &horizons)
                .unwrap(),
            model
                .predict_horizons(&series, Some(24), &horizons)
                .unwrap()
        );
        // Saving again replaces the file.
        model.train(&[&series], &[Some(24)], 5).unwrap();
        model.save(&path).unwrap();
        assert_eq!(GlobalModel::load(&path).unwrap().steps_trained(), 30);
    }

    #[test]
    fn load_names_what_is_wrong_with_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.safetensors");
        assert!(matches!(
            GlobalModel::load(&missing),
            Err(ModelError::Read { path, .. }) if path == missing
        ));
        let garbage = dir.path().join("garbage.safetensors");
        std::fs::write(&garbage, b"not a model at all").unwrap();
        assert!(matches!(
            GlobalModel::load(&garbage),
            Err(ModelError::Format { .. })
        ));
        // A safetensors file without this model's metadata.
        let foreign = dir.path().join("foreign.safetensors");
        let tensor = Tensor::zeros((2, 2), candle_core::DType::F32, &Device::Cpu).unwrap();
        candle_core::safetensors::save(&HashMap::from([("w", tensor)]), &foreign).unwrap();
        let error = GlobalModel::load(&foreign).unwrap_err();
        assert!(matches!(error, ModelError::Incompatible { .. }), "{error}");
        assert!(error.to_string().contains("foreign.safetensors"), "{error}");
    }

    #[test]
    fn load_refuses_weights_of_another_shape() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        model(vec![1]).save(&path).unwrap();
        // Rewrite the file with a hidden layer of another width than the
        // metadata says.
        let bytes = std::fs::read(&path).unwrap();
        let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        let mut tensors: HashMap<String, Tensor> = file
            .tensors()
            .into_iter()
            .map(|(name, view)| (name, view.load(&Device::Cpu).unwrap()))
            .collect();
        tensors.insert(
            HIDDEN_BIAS.to_string(),
            Tensor::zeros(3, candle_core::DType::F32, &Device::Cpu).unwrap(),
        );
        safetensors::serialize_to_file(&tensors, header.metadata().clone(), &path).unwrap();
        let error = GlobalModel::load(&path).unwrap_err();
        assert!(
            matches!(error, ModelError::Incompatible { ref reason, .. } if reason.contains(HIDDEN_BIAS)),
            "{error}"
        );
    }

    #[test]
    fn refuses_bad_arguments_with_typed_errors() {
        let mut config = ModelConfig::new(vec![]);
        assert!(matches!(
            GlobalModel::new(config.clone()),
            Err(ModelError::Config(_))
        ));
        config.train_horizons = vec![1];
        config.hidden = 0;
        assert!(matches!(
            GlobalModel::new(config),
            Err(ModelError::Config(_))
        ));

        let mut model = model(vec![4]);
        assert!(matches!(
            model.predict(&[], None, 1),
            Err(ModelError::EmptyHistory)
        ));
        assert!(matches!(
            model.predict(&[1.0], None, 0),
            Err(ModelError::ZeroHorizon)
        ));
        assert!(matches!(
            model.train(&[&[1.0; 50]], &[], 1),
            Err(ModelError::PeriodsMismatch {
                series: 1,
                periods: 0
            })
        ));
        // LAGS + 4 values are needed for one window at horizon 4.
        let short = [1.0; LAGS + 3];
        assert!(matches!(
            model.train(&[&short], &[None], 1),
            Err(ModelError::NotEnoughHistory {
                values_min: 12,
                horizon: 4
            })
        ));
        assert!(model.train(&[&[1.0; LAGS + 4]], &[None], 1).is_ok());
    }
}

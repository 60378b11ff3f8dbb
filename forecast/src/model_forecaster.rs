//! The global model as a [`Forecaster`] of one series: it keeps the
//! series' recent history and retrains on it as values arrive, so in a
//! rolling-origin evaluation it has only ever seen the past.

use crate::{Forecaster, GlobalModel, ModelConfig, ModelError, MODEL_NAME};

/// When a [`ModelForecaster`] retrains, and on how much: with `steps_first`
/// steps once `values_min` values are seen and each time the values seen
/// double, with `steps` steps every `every_values` values in between.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrainSchedule {
    /// No training before this many values.
    pub values_min: usize,
    /// Retrain after this many new values.
    pub every_values: usize,
    /// Adam steps of the first training (from the initial weights).
    pub steps_first: usize,
    /// Adam steps of each later training (fine-tuning on the newest past).
    pub steps: usize,
    /// Values kept, newest last: the window training draws from. The
    /// model looks back 8 + ⌈horizon / period⌉ periods; with fewer kept it
    /// averages the periods it has.
    pub history_max: usize,
}

impl Default for RetrainSchedule {
    fn default() -> Self {
        Self {
            values_min: 64,
            every_values: 256,
            steps_first: 300,
            steps: 30,
            history_max: 8192,
        }
    }
}

/// Counts values and says when a [`RetrainSchedule`] wants training.
#[derive(Debug, Clone)]
pub(crate) struct RetrainClock {
    schedule: RetrainSchedule,
    values_seen: usize,
    values_since_training: usize,
    /// The value count at which the next long training is due: each
    /// doubling of the values seen gets `steps_first` steps, as every
    /// doubling brings periods (seasonal lags) the last long training could
    /// not see.
    long_training_at: usize,
}

impl RetrainClock {
    pub(crate) fn new(schedule: RetrainSchedule) -> Self {
        Self {
            long_training_at: schedule.values_min.max(1),
            schedule,
            values_seen: 0,
            values_since_training: 0,
        }
    }

    /// Counts one more value, `history_len` now kept; the Adam steps to
    /// train now, if training is due.
    pub(crate) fn tick(&mut self, history_len: usize) -> Option<usize> {
        self.values_seen += 1;
        self.values_since_training += 1;
        let long = self.values_seen >= self.long_training_at;
        let due = long || self.values_since_training >= self.schedule.every_values;
        if !due || history_len < self.schedule.values_min {
            return None;
        }
        self.values_since_training = 0;
        Some(if long {
            self.long_training_at = self.long_training_at.saturating_mul(2);
            self.schedule.steps_first
        } else {
            self.schedule.steps
        })
    }
}

/// A [`GlobalModel`] of its own, trained on one series' past.
#[derive(Debug)]
pub struct ModelForecaster {
    model: GlobalModel,
    period: Option<usize>,
    history_max: usize,
    /// The newest values, at most `1.5 · history_max` (trimmed in bulk).
    history: Vec<f64>,
    clock: RetrainClock,
    last_error: Option<ModelError>,
}

impl ModelForecaster {
    /// A new model trained at `horizons` for a series with this `period`.
    pub fn new(
        horizons: Vec<usize>,
        period: Option<usize>,
        schedule: RetrainSchedule,
    ) -> Result<Self, ModelError> {
        Ok(Self::with_model(
            GlobalModel::new(ModelConfig::new(horizons))?,
            period,
            schedule,
        ))
    }

    /// Forecasts with (and trains) `model`.
    pub fn with_model(
        model: GlobalModel,
        period: Option<usize>,
        schedule: RetrainSchedule,
    ) -> Self {
        let history_max = schedule.history_max.max(1);
        Self {
            model,
            period,
            history_max,
            history: Vec::with_capacity(history_max.min(1 << 16)),
            clock: RetrainClock::new(schedule),
            last_error: None,
        }
    }

    pub fn model(&self) -> &GlobalModel {
        &self.model
    }

    /// The last training or prediction failure ([`Forecaster`] cannot
    /// return one: a failed forecast is NaN, which never gets selected).
    pub fn last_error(&self) -> Option<&ModelError> {
        self.last_error.as_ref()
    }

    fn recent(&self) -> &[f64] {
        &self.history[self.history.len().saturating_sub(self.history_max)..]
    }
}

impl Forecaster for ModelForecaster {
    fn name(&self) -> &str {
        MODEL_NAME
    }

    fn observe(&mut self, value: f64) {
        self.history.push(value);
        if self.history.len() > self.history_max + self.history_max / 2 {
            self.history.drain(..self.history.len() - self.history_max);
        }
        let recent_len = self.history.len().min(self.history_max);
        if let Some(steps) = self.clock.tick(recent_len) {
            let recent = &self.history[self.history.len() - recent_len..];
            if let Err(error) = self.model.train(&[recent], &[self.period], steps) {
                self.last_error = Some(error);
            }
        }
    }

    fn forecast(&self, horizon_steps: usize) -> f64 {
        debug_assert!(horizon_steps >= 1);
        if self.history.is_empty() {
            return f64::NAN;
        }
        // The model looks back at most (SEASONS + ⌈h/P⌉)·P values; the
        // kept history is never shorter than what it trains on.
        self.model
            .predict(self.recent(), self.period, horizon_steps)
            .unwrap_or(f64::NAN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::{seasonal, Noise};
    use crate::{evaluate, select, Score};

    /// The model's MAPE over the best baseline's (by MAPE), and the
    /// selected forecaster.
    fn model_over_best_baseline(scores: &[Score]) -> (f64, String) {
        let (model, baselines) = scores.split_last().expect("scores");
        assert_eq!(model.name, MODEL_NAME);
        let best = baselines
            .iter()
            .min_by(|a, b| a.mape.total_cmp(&b.mape))
            .expect("baselines");
        let selected = select(scores).expect("a selection").to_string();
        (model.mape / best.mape, selected)
    }

    fn report(label: &str, scores: &[Score]) {
        for score in scores {
            eprintln!(
                "{label}: {:<20} mape {:7.3} mase {:.4}",
                score.name, score.mape, score.mase
            );
        }
    }

    #[test]
    fn beats_every_baseline_on_noisy_seasonal_load() {
        // Independent noise: seasonal-naive's error carries two noise draws
        // (the target's and the one a period back), a perfect model one, so
        // no forecaster can go below about 1/√2 of seasonal-naive.
        let series = seasonal(24 * 60, 24, 8.0, 0.0, 1);
        for (horizon, ratio_max) in [(1, 0.85), (6, 0.9)] {
            let scores = evaluate(&series, horizon, 24 * 10);
            report(&format!("noisy seasonal, horizon {horizon}"), &scores);
            let (ratio, selected) = model_over_best_baseline(&scores);
            eprintln!("noisy seasonal, horizon {horizon}: model/best baseline MAPE {ratio:.3}");
            assert_eq!(selected, MODEL_NAME);
            assert!(ratio <= ratio_max, "horizon {horizon}: {ratio}");
        }
    }

    #[test]
    fn halves_the_best_baseline_error_when_the_noise_persists() {
        // Load noise is bursty: with AR(1) noise (0.9 a step) the newest
        // departure from the seasonal shape predicts the next one, which
        // only the model uses.
        let series = seasonal(24 * 60, 24, 8.0, 0.9, 2);
        let scores = evaluate(&series, 1, 24 * 10);
        report("persistent noise, horizon 1", &scores);
        let (ratio, selected) = model_over_best_baseline(&scores);
        eprintln!("persistent noise, horizon 1: model/best baseline MAPE {ratio:.3}");
        assert_eq!(selected, MODEL_NAME);
        assert!(ratio <= 0.5, "{ratio}");
    }

    #[test]
    fn follows_a_noisy_linear_trend() {
        let mut noise = Noise::new(3);
        let series: Vec<f64> = (0..1200)
            .map(|t| 50.0 + 0.5 * t as f64 + 2.0 * noise.gaussian())
            .collect();
        let scores = evaluate(&series, 4, 200);
        report("noisy trend, horizon 4", &scores);
        let (ratio, selected) = model_over_best_baseline(&scores);
        eprintln!("noisy trend, horizon 4: model/best baseline MAPE {ratio:.3}");
        // Holt is made for a trend; the model must learn it to keep up.
        let mase = |name: &str| scores.iter().find(|s| s.name == name).unwrap().mase;
        assert!(
            ["holt(0.3,0.1)", MODEL_NAME].contains(&selected.as_str()),
            "{selected}"
        );
        assert!(mase(MODEL_NAME) <= 1.05 * mase("holt(0.3,0.1)"));
        assert!(mase(MODEL_NAME) <= 0.75 * mase("last_value"));
    }

    #[test]
    fn never_sees_the_future_in_evaluate() {
        let series = seasonal(24 * 30, 24, 8.0, 0.5, 4);
        let cut = 24 * 20;
        let mut altered = series.clone();
        for value in &mut altered[cut..] {
            *value = 3.0 * *value + 500.0;
        }
        let (horizon, warmup) = (3, 24 * 10);
        let model = |series: &[f64]| {
            let scores = evaluate(series, horizon, warmup);
            scores.into_iter().last().expect("the model").predictions
        };
        let (original, changed) = (model(&series), model(&altered));
        // predictions[i] is made with warmup + i values observed: those
        // made before the cut saw identical pasts.
        let before_cut = cut - warmup + 1;
        assert_eq!(original[..before_cut], changed[..before_cut]);
        // And the model does react to what it is shown afterwards.
        assert!(original[before_cut..]
            .iter()
            .zip(&changed[before_cut..])
            .all(|(a, b)| a != b));
    }

    #[test]
    fn retrains_on_a_schedule_and_reports_no_error() {
        let schedule = RetrainSchedule {
            values_min: 32,
            every_values: 50,
            steps_first: 20,
            steps: 5,
            history_max: 100,
        };
        let mut forecaster = ModelForecaster::new(vec![1], None, schedule).unwrap();
        assert!(forecaster.forecast(1).is_nan());
        for t in 0..400 {
            forecaster.observe(10.0 + (t % 5) as f64);
        }
        // Long trainings at 32, 64, 128, 256 values; short ones 50 values
        // after each training (at 114, 178, 228, 306, 356).
        assert_eq!(forecaster.model().steps_trained(), 4 * 20 + 5 * 5);
        assert!(forecaster.last_error().is_none());
        assert!(forecaster.history.len() <= 150);
        assert!(forecaster.forecast(2).is_finite());
    }
}

//! Online forecaster selection for one live series: every baseline and the
//! learned model forecast at each new value, each is scored on its newest
//! forecasts once their targets arrive, and a prediction comes from the one
//! with the lowest rolling error.
//!
//! The selector owns no model: a node keeps one [`GlobalModel`] for all its
//! series (trained on a thread of its own, on [`OnlineSelector::history`]
//! of each) and passes a shared reference to every call that forecasts.
//! Without one (`None`), the model is simply not scored.
//!
//! Architecture invariant: the model is chosen only when, over the same
//! newest targets, its mean absolute error is strictly below every
//! baseline's; ties go to the simpler forecaster.

use std::collections::VecDeque;

use crate::evaluate::baselines;
use crate::{detect_period, Forecaster, GlobalModel, ModelError, MODEL_NAME};

/// The forecasters scored: the baselines in their tie-break order
/// (simplest first), then the model. Slots are fixed so the seasonal
/// baseline can come and go with the period without reindexing errors.
const SLOTS: usize = 5;
const SLOT_SEASONAL: usize = 1;
const SLOT_MODEL: usize = 4;
/// A rolling error needs this many scored forecasts before it can be
/// chosen (and an interval this many errors).
const SCORED_MIN: usize = 8;

/// How a selector scores and predicts.
#[derive(Debug, Clone, PartialEq)]
pub struct SelectorConfig {
    /// The horizons, in steps, scored at every value; [`OnlineSelector::predict`]
    /// answers these only.
    pub horizons: Vec<usize>,
    /// W: the newest scored forecasts a rolling error covers, per
    /// forecaster and horizon (≥ 8).
    pub window: usize,
    /// Values kept, for the model (which looks back 8 + ⌈horizon / period⌉
    /// periods, and averages the periods it has when fewer are kept) and
    /// the period detection.
    pub history_max: usize,
    /// The period is detected again every this many values (0: never; set
    /// it with [`OnlineSelector::set_period`]). Detection costs
    /// O(history · min(history / 3, 1440)), about 10 ms on 8192 values.
    pub period_every_values: usize,
    /// The model is chosen only when it also beats every baseline over
    /// this many newest scored forecasts (1..=window): how fast a change
    /// the model has not caught up with sends the selector back to a
    /// baseline.
    pub recent: usize,
    /// The quantiles of the chosen forecaster's signed errors that bound
    /// the prediction interval.
    pub interval_quantiles: (f64, f64),
}

impl SelectorConfig {
    /// Defaults for these horizons: W = 96, 8192 values kept, the period
    /// re-detected every 256 values, the model also judged on its newest 8
    /// forecasts, an 80 % interval.
    pub fn new(horizons: Vec<usize>) -> Self {
        Self {
            horizons,
            window: 96,
            history_max: 8192,
            period_every_values: 256,
            recent: 8,
            interval_quantiles: (0.1, 0.9),
        }
    }
}

/// Why a selector cannot be built, fed or asked.
#[derive(Debug, thiserror::Error)]
pub enum SelectorError {
    #[error("selector config: {0}")]
    Config(&'static str),
    #[error("horizon {horizon} is not scored (scored: {scored:?})")]
    UntrackedHorizon { horizon: usize, scored: Vec<usize> },
    #[error("nothing observed yet")]
    NoValues,
    #[error("value {0} is not a finite number")]
    NonFinite(f64),
    #[error("model: {0}")]
    Model(#[from] ModelError),
}

/// A forecaster's rolling error at one horizon.
#[derive(Debug, Clone, PartialEq)]
pub struct RollingScore {
    pub name: String,
    /// Mean absolute percentage error, in percent, over the scored
    /// forecasts with a non-zero actual; NaN without one.
    pub mape: f64,
    /// Mean absolute error over the scored forecasts divided by the
    /// rolling one-step naive MAE of the newest W steps.
    pub mase: f64,
    /// Forecasts scored (at most W).
    pub scored: usize,
}

/// A forecast with its interval and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    pub value: f64,
    /// `value` plus the low and high quantiles of the chosen forecaster's
    /// newest signed errors; −∞ and +∞ with fewer than 8 of them.
    pub lower: f64,
    pub upper: f64,
    /// The name of the forecaster the value is from.
    pub forecaster: String,
    /// Every forecaster with a complete rolling window, in tie-break order.
    pub scores: Vec<RollingScore>,
}

/// Forecasts of one horizon, scored as their targets arrive.
#[derive(Debug)]
struct HorizonTrack {
    horizon: usize,
    /// Per slot, the forecasts made at each of the newest `horizon`
    /// origins, oldest first (NaN: the slot did not forecast).
    pending: VecDeque<[f64; SLOTS]>,
    /// The newest W targets, oldest first: actual and, per slot, the signed
    /// error `actual - forecast` (NaN: not forecast).
    scored: VecDeque<(f64, [f64; SLOTS])>,
}

/// Online selection among the baselines and the global model, for one
/// series.
pub struct OnlineSelector {
    config: SelectorConfig,
    /// The newest values, at most `1.5 · history_max` (trimmed in bulk).
    history: Vec<f64>,
    observed: u64,
    period: Option<usize>,
    /// The baselines in slot order; the seasonal slot is None without a
    /// period.
    baselines: [Option<Box<dyn Forecaster + Send>>; SLOT_MODEL],
    tracks: Vec<HorizonTrack>,
    /// |y[t] - y[t-1]| of the newest W steps: the MASE scale.
    naive_errors: VecDeque<f64>,
}

impl std::fmt::Debug for OnlineSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnlineSelector")
            .field("config", &self.config)
            .field("observed", &self.observed)
            .field("period", &self.period)
            .finish_non_exhaustive()
    }
}

impl OnlineSelector {
    pub fn new(config: SelectorConfig) -> Result<Self, SelectorError> {
        if config.horizons.is_empty() || config.horizons.contains(&0) {
            return Err(SelectorError::Config(
                "horizons must be a non-empty list of horizons ≥ 1",
            ));
        }
        if config.window < SCORED_MIN {
            return Err(SelectorError::Config("the window must be at least 8"));
        }
        if !(1..=config.window).contains(&config.recent) {
            return Err(SelectorError::Config("recent must be in 1..=window"));
        }
        if config.history_max == 0 {
            return Err(SelectorError::Config("history_max must be at least 1"));
        }
        let (low, high) = config.interval_quantiles;
        if !(0.0 <= low && low <= high && high <= 1.0) {
            return Err(SelectorError::Config(
                "interval quantiles must be 0 ≤ low ≤ high ≤ 1",
            ));
        }
        let mut horizons = config.horizons.clone();
        horizons.sort_unstable();
        horizons.dedup();
        let tracks = horizons
            .iter()
            .map(|&horizon| HorizonTrack {
                horizon,
                pending: VecDeque::with_capacity(horizon),
                scored: VecDeque::with_capacity(config.window),
            })
            .collect();
        let mut selector = Self {
            history: Vec::new(),
            observed: 0,
            period: None,
            baselines: [None, None, None, None],
            tracks,
            naive_errors: VecDeque::with_capacity(config.window),
            config,
        };
        selector.build_baselines();
        Ok(selector)
    }

    /// (Re)creates the baselines for the current period and feeds them
    /// the kept history, so a new seasonal-naive forecasts at once.
    fn build_baselines(&mut self) {
        let mut built = baselines(self.period).into_iter();
        for slot in 0..SLOT_MODEL {
            self.baselines[slot] = if slot == SLOT_SEASONAL && self.period.is_none() {
                None
            } else {
                built.next()
            };
        }
        debug_assert!(built.next().is_none());
        for forecaster in self.baselines.iter_mut().flatten() {
            for &value in &self.history {
                forecaster.observe(value);
            }
        }
    }

    /// The kept values, oldest first: what the model should train on.
    pub fn history(&self) -> &[f64] {
        &self.history[self.history.len().saturating_sub(self.config.history_max)..]
    }

    /// The period in use (detected, or set).
    pub fn period(&self) -> Option<usize> {
        self.period
    }

    /// Values observed since the selector was made.
    pub fn observed(&self) -> u64 {
        self.observed
    }

    /// Uses `period` from now on. A changed period voids the seasonal
    /// baseline's errors (they were for another forecaster); it is chosen
    /// again once it has a full window of its own.
    pub fn set_period(&mut self, period: Option<usize>) {
        let period = period.filter(|period| *period >= 2);
        if period == self.period {
            return;
        }
        self.period = period;
        for track in &mut self.tracks {
            for forecasts in &mut track.pending {
                forecasts[SLOT_SEASONAL] = f64::NAN;
            }
            for (_, errors) in &mut track.scored {
                errors[SLOT_SEASONAL] = f64::NAN;
            }
        }
        self.build_baselines();
    }

    /// Takes the next value: scores the forecasts that targeted it, then
    /// forecasts every scored horizon from it, the model's through `model`
    /// (None: the model is not scored this time, and so cannot be chosen
    /// for the next W forecasts). A model failure is returned after the
    /// value has been fully recorded; a non-finite value is refused and
    /// changes nothing.
    pub fn observe(
        &mut self,
        value: f64,
        model: Option<&GlobalModel>,
    ) -> Result<(), SelectorError> {
        if !value.is_finite() {
            return Err(SelectorError::NonFinite(value));
        }
        let window = self.config.window;
        if let Some(last) = self.history.last() {
            if self.naive_errors.len() == window {
                self.naive_errors.pop_front();
            }
            self.naive_errors.push_back((value - last).abs());
        }
        for track in &mut self.tracks {
            if track.pending.len() == track.horizon {
                let forecasts = track.pending.pop_front().unwrap_or([f64::NAN; SLOTS]);
                if track.scored.len() == window {
                    track.scored.pop_front();
                }
                track
                    .scored
                    .push_back((value, forecasts.map(|f| value - f)));
            }
        }
        for forecaster in self.baselines.iter_mut().flatten() {
            forecaster.observe(value);
        }
        self.history.push(value);
        let history_max = self.config.history_max;
        if self.history.len() > history_max + history_max / 2 {
            self.history.drain(..self.history.len() - history_max);
        }
        self.observed += 1;
        let every = self.config.period_every_values as u64;
        if every > 0 && self.observed % every == 0 {
            self.set_period(detect_period(self.history()));
        }

        let horizons: Vec<usize> = self.tracks.iter().map(|track| track.horizon).collect();
        let (model_forecasts, model_error) = match model {
            None => (vec![f64::NAN; horizons.len()], None),
            Some(model) => match model.predict_horizons(self.history(), self.period, &horizons) {
                Ok(forecasts) => (forecasts, None),
                Err(error) => (vec![f64::NAN; horizons.len()], Some(error)),
            },
        };
        for (track, model_forecast) in self.tracks.iter_mut().zip(model_forecasts) {
            let mut forecasts = [f64::NAN; SLOTS];
            for (slot, forecaster) in self.baselines.iter().enumerate() {
                if let Some(forecaster) = forecaster {
                    forecasts[slot] = forecaster.forecast(track.horizon);
                }
            }
            forecasts[SLOT_MODEL] = model_forecast;
            track.pending.push_back(forecasts);
            debug_assert!(track.pending.len() <= track.horizon);
        }
        match model_error {
            Some(error) => Err(error.into()),
            None => Ok(()),
        }
    }

    /// The forecast `horizon` steps after the newest value, from the
    /// forecaster with the lowest rolling MASE at that horizon among those
    /// scored on every one of the newest W targets (all share the scale,
    /// so this is the lowest MAE); ties go to the simpler, so the model
    /// (given as `model`, None to leave it out) is used only when strictly
    /// better than every baseline. Before any forecaster has 8 scored
    /// forecasts: the last value.
    pub fn predict(
        &self,
        horizon: usize,
        model: Option<&GlobalModel>,
    ) -> Result<Prediction, SelectorError> {
        let track = self
            .tracks
            .iter()
            .find(|track| track.horizon == horizon)
            .ok_or_else(|| SelectorError::UntrackedHorizon {
                horizon,
                scored: self.tracks.iter().map(|track| track.horizon).collect(),
            })?;
        if self.history.is_empty() {
            return Err(SelectorError::NoValues);
        }
        let scale = self.naive_errors.iter().sum::<f64>() / self.naive_errors.len().max(1) as f64;
        let complete = track.scored.len() >= SCORED_MIN;
        let recent_from = track.scored.len().saturating_sub(self.config.recent);
        // Per scored slot: (MAE over the window, MAE over its newest `recent`).
        let mut maes: [Option<(f64, f64)>; SLOTS] = [None; SLOTS];
        let mut scores = Vec::new();
        for (slot, slot_maes) in maes.iter_mut().enumerate() {
            let available = if slot == SLOT_MODEL {
                model.is_some()
            } else {
                self.baselines[slot].is_some()
            };
            let errors = || track.scored.iter().map(move |(_, errors)| errors[slot]);
            if !(available && complete && errors().all(f64::is_finite)) {
                continue;
            }
            let mae = mean(errors().map(f64::abs));
            *slot_maes = Some((mae, mean(errors().skip(recent_from).map(f64::abs))));
            let percent_errors = track
                .scored
                .iter()
                .filter(|(actual, _)| *actual != 0.0)
                .map(|(actual, errors)| (errors[slot] / actual).abs());
            scores.push(RollingScore {
                name: self.slot_name(slot),
                mape: 100.0 * mean(percent_errors),
                mase: scaled_error(mae, scale),
                scored: track.scored.len(),
            });
        }
        // The baseline with the lowest window MAE; a tie keeps the earlier,
        // simpler one.
        let mut best: Option<(usize, f64)> = None;
        for (slot, slot_maes) in maes[..SLOT_MODEL].iter().enumerate() {
            if let Some((mae, _)) = slot_maes {
                if best.is_none_or(|(_, best_mae)| *mae < best_mae) {
                    best = Some((slot, *mae));
                }
            }
        }
        // The model must be strictly better than every baseline over the
        // window and over its newest forecasts too: a window's good record
        // must not carry it through a change it has not caught up with yet
        // (after a level step it would be used for about W/4 more steps).
        if let Some((model_mae, model_recent)) = maes[SLOT_MODEL] {
            let beats_every_baseline = maes[..SLOT_MODEL]
                .iter()
                .flatten()
                .all(|(mae, recent)| model_mae < *mae && model_recent < *recent);
            if beats_every_baseline {
                best = Some((SLOT_MODEL, model_mae));
            }
        }
        let slot = best.map_or(0, |(slot, _)| slot);
        let value = match (slot, model) {
            (SLOT_MODEL, Some(model)) => model.predict(self.history(), self.period, horizon)?,
            (slot, _) => self.baselines[slot]
                .as_ref()
                .map_or(f64::NAN, |forecaster| forecaster.forecast(horizon)),
        };
        let (lower, upper) = match best {
            Some(_) => {
                let mut errors: Vec<f64> = track.scored.iter().map(|(_, e)| e[slot]).collect();
                errors.sort_by(f64::total_cmp);
                let (low, high) = self.config.interval_quantiles;
                (
                    value + quantile(&errors, low),
                    value + quantile(&errors, high),
                )
            }
            None => (f64::NEG_INFINITY, f64::INFINITY),
        };
        Ok(Prediction {
            value,
            lower,
            upper,
            forecaster: self.slot_name(slot),
            scores,
        })
    }

    fn slot_name(&self, slot: usize) -> String {
        debug_assert!(slot == SLOT_MODEL || self.baselines[slot].is_some());
        self.baselines
            .get(slot)
            .and_then(Option::as_ref)
            .map_or(MODEL_NAME, |forecaster| forecaster.name())
            .to_string()
    }
}

/// `mae / scale`, as [`crate::mase`] scales: with a zero scale (a constant
/// series), 0 for no error and infinity otherwise.
fn scaled_error(mae: f64, scale: f64) -> f64 {
    if scale > 0.0 {
        mae / scale
    } else if mae == 0.0 {
        0.0
    } else {
        f64::INFINITY
    }
}

/// The mean of `values`; NaN without any.
fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, count) = values.fold((0.0, 0usize), |(sum, count), value| {
        (sum + value, count + 1)
    });
    if count == 0 {
        f64::NAN
    } else {
        sum / count as f64
    }
}

/// The `q` quantile of `sorted` (non-empty, ascending), interpolating
/// between the two nearest ranks.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    debug_assert!(!sorted.is_empty());
    let rank = q * (sorted.len() - 1) as f64;
    let below = rank.floor() as usize;
    let above = rank.ceil() as usize;
    let fraction = rank - below as f64;
    sorted[below] + fraction * (sorted[above] - sorted[below])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model_forecaster::RetrainClock;
    use crate::synthetic::{seasonal, white_noise, Noise};
    use crate::{evaluate, ModelConfig, RetrainSchedule};

    /// What a node does, in one thread: feeds `series` to a selector
    /// scoring `horizon`, trains `model` on the selector's history on the
    /// default schedule, and asks for a prediction at every origin from
    /// `warmup` values on: `predictions[i]` is made with `warmup + i`
    /// values observed and forecasts `series[warmup + i - 1 + horizon]`.
    fn drive(
        series: &[f64],
        horizon: usize,
        warmup: usize,
        model: &mut GlobalModel,
        train: bool,
    ) -> Vec<Prediction> {
        let mut selector = OnlineSelector::new(SelectorConfig::new(vec![horizon])).unwrap();
        let mut clock = RetrainClock::new(RetrainSchedule::default());
        let mut predictions = Vec::new();
        for (t, &value) in series.iter().enumerate() {
            selector.observe(value, Some(model)).unwrap();
            if let Some(steps) = clock.tick(selector.history().len()).filter(|_| train) {
                model
                    .train(&[selector.history()], &[selector.period()], steps)
                    .unwrap();
            }
            if t + 1 >= warmup && t + horizon < series.len() {
                let prediction = selector.predict(horizon, Some(model)).unwrap();
                assert_model_only_where_it_beats_every_baseline(&prediction);
                predictions.push(prediction);
            }
        }
        predictions
    }

    fn assert_model_only_where_it_beats_every_baseline(prediction: &Prediction) {
        if prediction.forecaster != MODEL_NAME {
            return;
        }
        let model = prediction.scores.last().expect("the model's score");
        assert_eq!(model.name, MODEL_NAME);
        for baseline in &prediction.scores[..prediction.scores.len() - 1] {
            assert!(model.mase < baseline.mase, "{prediction:?}");
        }
    }

    /// The mean absolute error of `forecast(i)` for the targets of the
    /// origins `range` (indices into the predictions).
    fn mae(
        series: &[f64],
        horizon: usize,
        warmup: usize,
        range: std::ops::Range<usize>,
        forecast: impl Fn(usize) -> f64,
    ) -> f64 {
        let count = range.len() as f64;
        range
            .map(|i| (series[warmup + i - 1 + horizon] - forecast(i)).abs())
            .sum::<f64>()
            / count
    }

    /// The lowest MAE of a baseline over `range`, scored by [`evaluate`]
    /// (whose predictions index like [`drive`]'s).
    fn best_baseline_mae(
        series: &[f64],
        horizon: usize,
        warmup: usize,
        range: std::ops::Range<usize>,
    ) -> (f64, String) {
        evaluate(series, horizon, warmup)
            .iter()
            .filter(|score| score.name != MODEL_NAME)
            .map(|score| {
                let mae = mae(series, horizon, warmup, range.clone(), |i| {
                    score.predictions[i]
                });
                (mae, score.name.clone())
            })
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .expect("baselines")
    }

    fn share_of(predictions: &[Prediction], name: &str) -> f64 {
        let count = predictions.iter().filter(|p| p.forecaster == name).count();
        count as f64 / predictions.len() as f64
    }

    #[test]
    fn uses_the_model_where_it_beats_the_baselines() {
        let series = seasonal(24 * 50, 24, 8.0, 0.5, 21);
        let warmup = 24 * 10;
        for horizon in [1, 6] {
            let mut model = GlobalModel::new(ModelConfig::new(vec![horizon])).unwrap();
            let predictions = drive(&series, horizon, warmup, &mut model, true);
            let all = 0..predictions.len();
            let selected = mae(&series, horizon, warmup, all.clone(), |i| {
                predictions[i].value
            });
            let (best, name) = best_baseline_mae(&series, horizon, warmup, all.clone());
            let share = share_of(&predictions, MODEL_NAME);
            let covered = all
                .clone()
                .filter(|&i| {
                    let actual = series[warmup + i - 1 + horizon];
                    predictions[i].lower <= actual && actual <= predictions[i].upper
                })
                .count() as f64
                / all.len() as f64;
            eprintln!(
                "seasonal, horizon {horizon}: selector MAE {selected:.2}, best baseline {name} {best:.2} \
                 (ratio {:.3}), model used {:.0} %, 80 % interval covers {:.0} %",
                selected / best,
                100.0 * share,
                100.0 * covered
            );
            assert!(share > 0.6, "{share}");
            assert!(selected < 0.9 * best, "{selected} vs {best}");
            assert!((0.7..=0.9).contains(&covered), "{covered}");
        }
    }

    #[test]
    fn falls_back_to_a_baseline_right_after_a_level_step() {
        let step = 1200;
        let mut series = seasonal(step, 24, 5.0, 0.5, 7);
        series.extend(seasonal(600, 24, 5.0, 0.5, 8).iter().map(|v| 1.5 * v));
        let (horizon, warmup) = (1, 300);
        let mut model = GlobalModel::new(ModelConfig::new(vec![horizon])).unwrap();
        let predictions = drive(&series, horizon, warmup, &mut model, true);
        let origin = |values: usize| values - warmup;
        // Before the step the model is used...
        let before = &predictions[origin(step - 240)..origin(step)];
        assert!(share_of(before, MODEL_NAME) > 0.6);
        // ...and a baseline within `recent` forecasts of the first target
        // after it.
        let after = origin(step - horizon + 1);
        let fallback = predictions[after..]
            .iter()
            .position(|p| p.forecaster != MODEL_NAME)
            .expect("a fallback");
        eprintln!("level step: a baseline is used {fallback} forecasts after the step");
        assert!(fallback <= 8, "{fallback}");
        // Until the model has caught up, the selector is no worse than the
        // best single baseline, and over the rest better.
        let settled = origin(step + 300);
        let selected = mae(&series, horizon, warmup, after..settled, |i| {
            predictions[i].value
        });
        let (best, name) = best_baseline_mae(&series, horizon, warmup, after..settled);
        eprintln!("level step: selector MAE {selected:.2} over the 300 steps after, best baseline {name} {best:.2}");
        assert!(selected <= 1.1 * best, "{selected} vs {best}");
        assert!(share_of(&predictions[settled..], MODEL_NAME) > 0.5);
    }

    #[test]
    fn white_noise_costs_at_most_a_tenth_over_the_best_baseline() {
        let series = white_noise(1500, 100.0, 10.0, 3);
        let (horizon, warmup) = (1, 200);
        let all = 0..series.len() - warmup - horizon + 1;
        let (best, name) = best_baseline_mae(&series, horizon, warmup, all.clone());
        // A model trained on the noise itself (which learns a long mean,
        // a little better than ewma(0.3)) and one trained on a random walk
        // (which follows the newest value: worse than every mean).
        let mut walk = Noise::new(9);
        let mut level = 100.0;
        let random_walk: Vec<f64> = (0..2000)
            .map(|_| {
                level += 5.0 * walk.gaussian();
                level
            })
            .collect();
        let mut misfit = GlobalModel::new(ModelConfig::new(vec![horizon])).unwrap();
        misfit.train(&[&random_walk], &[None], 300).unwrap();
        let mut fitted = GlobalModel::new(ModelConfig::new(vec![horizon])).unwrap();
        for (label, model, train) in [
            ("fitted", &mut fitted, true),
            ("misfit", &mut misfit, false),
        ] {
            let predictions = drive(&series, horizon, warmup, model, train);
            let selected = mae(&series, horizon, warmup, all.clone(), |i| {
                predictions[i].value
            });
            let share = share_of(&predictions, MODEL_NAME);
            eprintln!(
                "white noise, {label} model: selector MAE {selected:.3}, best baseline {name} {best:.3} \
                 (ratio {:.3}), model used {:.0} %",
                selected / best,
                100.0 * share
            );
            assert!(selected <= 1.1 * best, "{label}: {selected} vs {best}");
            if label == "misfit" {
                assert!(share < 0.1, "{share}");
            }
        }
    }

    #[test]
    fn a_constant_series_is_predicted_exactly_by_the_simplest_baseline() {
        let mut selector = OnlineSelector::new(SelectorConfig::new(vec![1, 4])).unwrap();
        let model = GlobalModel::new(ModelConfig::new(vec![1, 4])).unwrap();
        for _ in 0..50 {
            selector.observe(7.0, Some(&model)).unwrap();
        }
        for horizon in [1, 4] {
            let prediction = selector.predict(horizon, Some(&model)).unwrap();
            assert_eq!(prediction.forecaster, "last_value");
            assert_eq!(
                (prediction.value, prediction.lower, prediction.upper),
                (7.0, 7.0, 7.0)
            );
            assert_eq!(prediction.scores[0].mase, 0.0);
            assert_eq!(prediction.scores[0].mape, 0.0);
        }
    }

    #[test]
    fn the_interval_is_the_quantiles_of_the_signed_errors() {
        // Alternating 0, 10: last_value errs by 10 every time, ewma(0.3)
        // by less. With the period detection off there is no seasonal
        // baseline (which would be exact).
        let mut config = SelectorConfig::new(vec![1]);
        config.period_every_values = 0;
        config.interval_quantiles = (0.0, 1.0);
        let mut selector = OnlineSelector::new(config).unwrap();
        for t in 0..200 {
            selector
                .observe(if t % 2 == 0 { 0.0 } else { 10.0 }, None)
                .unwrap();
        }
        let prediction = selector.predict(1, None).unwrap();
        assert_eq!(prediction.forecaster, "ewma(0.3)");
        // ewma(0.3) settles at h = 0.3·10 + 0.7·l after a 10 and l = 0.7·h
        // after a 0: h = 10/1.7, l = 7/1.7. The newest value is a 10, and
        // its errors are -h (a 0 after h) and 10 - l = h (a 10 after l).
        let high = 10.0 / 1.7;
        assert!((prediction.value - high).abs() < 1e-6, "{prediction:?}");
        assert!(prediction.lower.abs() < 1e-6, "{prediction:?}");
        assert!(
            (prediction.upper - 2.0 * high).abs() < 1e-6,
            "{prediction:?}"
        );
    }

    #[test]
    fn a_new_period_scores_its_seasonal_baseline_from_scratch() {
        let mut config = SelectorConfig::new(vec![1]);
        config.window = 96;
        let mut selector = OnlineSelector::new(config).unwrap();
        let series = seasonal(400, 12, 1.0, 0.0, 5);
        let has_seasonal = |selector: &OnlineSelector| {
            let prediction = selector.predict(1, None).unwrap();
            prediction
                .scores
                .iter()
                .any(|s| s.name == "seasonal_naive(12)")
        };
        for (t, &value) in series.iter().enumerate() {
            selector.observe(value, None).unwrap();
            let observed = t + 1;
            if observed < 256 {
                assert_eq!(selector.period(), None);
            }
            // Detected at 256 values, first scored on value 257: a full
            // window of its own at 256 + 96.
            if observed == 256 + 95 {
                assert_eq!(selector.period(), Some(12));
                assert!(!has_seasonal(&selector));
            }
            if observed == 256 + 96 {
                assert!(has_seasonal(&selector));
                assert_eq!(
                    selector.predict(1, None).unwrap().forecaster,
                    "seasonal_naive(12)"
                );
            }
        }
        selector.set_period(None);
        assert!(!has_seasonal(&selector));
    }

    #[test]
    fn refuses_what_it_cannot_answer() {
        assert!(matches!(
            OnlineSelector::new(SelectorConfig::new(vec![])),
            Err(SelectorError::Config(_))
        ));
        let mut config = SelectorConfig::new(vec![1]);
        config.window = 4;
        assert!(matches!(
            OnlineSelector::new(config),
            Err(SelectorError::Config(_))
        ));
        let mut selector = OnlineSelector::new(SelectorConfig::new(vec![1, 5])).unwrap();
        assert!(matches!(
            selector.predict(1, None),
            Err(SelectorError::NoValues)
        ));
        assert!(matches!(
            selector.observe(f64::NAN, None),
            Err(SelectorError::NonFinite(_))
        ));
        assert_eq!(selector.observed(), 0);
        selector.observe(3.0, None).unwrap();
        let prediction = selector.predict(5, None).unwrap();
        // Nothing scored yet: the last value, with no interval.
        assert_eq!(prediction.value, 3.0);
        assert_eq!(
            (prediction.lower, prediction.upper),
            (f64::NEG_INFINITY, f64::INFINITY)
        );
        assert!(prediction.scores.is_empty());
        assert!(matches!(
            selector.predict(2, None),
            Err(SelectorError::UntrackedHorizon { horizon: 2, .. })
        ));
    }
}

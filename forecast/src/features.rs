//! The inputs of the learned model: a fixed-length feature vector computed
//! from the values up to a forecast origin, in units that are the same for
//! a series of ten messages a second and one of a million.
//!
//! Architecture invariant: [`window_features`] gets the past as a slice
//! ending at the origin, so neither training nor prediction can read a
//! value after it.

use std::f64::consts::TAU;

/// Recent values given to the model as lags (the newest first).
pub const LAGS: usize = 8;
/// Past periods whose value at the target's phase are given to the model:
/// averaging several is what beats seasonal-naive on noisy periodic load
/// (seasonal-naive carries the whole noise of a single past period).
pub const SEASONS: usize = 8;
/// Without a period, the level is the mean of this many newest values.
const LEVEL_STEPS_APERIODIC: usize = 16;
/// Scaled values are clipped to ±this many scales, so one spike (tweet
/// volumes jump 30 scales) neither dominates a training step nor sends a
/// forecast off.
pub const Z_MAX: f64 = 10.0;
/// Time constants, in steps, of the decay of the newest value's departure
/// from its seasonal expectation: a linear model can then learn how long
/// an anomaly persists at every horizon without one head per horizon.
const ANOMALY_DECAY_STEPS: [f64; 4] = [1.0, 4.0, 16.0, 64.0];
/// The longest horizon the horizon feature is scaled for, in steps.
const HORIZON_STEPS_SCALE: f64 = crate::LAG_MAX as f64;

const F_LAGS: usize = 0;
const F_SEASONAL: usize = F_LAGS + LAGS;
/// The mean of the seasonal lags; the model is initialised to predict it.
pub const F_SEASONAL_MEAN: usize = F_SEASONAL + SEASONS;
const F_SEASONAL_NOW: usize = F_SEASONAL_MEAN + 1;
const F_ANOMALY_DECAY: usize = F_SEASONAL_NOW + 1;
const F_TREND: usize = F_ANOMALY_DECAY + ANOMALY_DECAY_STEPS.len();
const F_SLOPE: usize = F_TREND + 1;
const F_PHASE: usize = F_SLOPE + 1;
const F_HAS_PERIOD: usize = F_PHASE + 2;
const F_HORIZON: usize = F_HAS_PERIOD + 1;
/// The length of a feature vector.
pub const FEATURES: usize = F_HORIZON + 1;

/// Where a window's values sit (`level`) and how much they vary (`scale`):
/// features and targets are `(value - level) / scale`, so one set of
/// weights serves series of any magnitude.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normaliser {
    level: f64,
    scale: f64,
    /// Every value looked at was ≥ 0: a load, so forecasts are clamped
    /// at 0.
    nonnegative: bool,
}

impl Normaliser {
    /// The level is the mean of the newest whole periods covering at least
    /// [`LEVEL_STEPS_APERIODIC`] values (a whole period, so the level does
    /// not swing with the phase), or of the newest
    /// [`LEVEL_STEPS_APERIODIC`] values without a period; the scale is the
    /// mean absolute deviation from it over the same values.
    fn of(past: &[f64], period: Option<usize>) -> Self {
        debug_assert!(!past.is_empty());
        let steps = match period {
            Some(period) => period * LEVEL_STEPS_APERIODIC.div_ceil(period),
            None => LEVEL_STEPS_APERIODIC,
        }
        .min(past.len());
        let window = &past[past.len() - steps..];
        let level = window.iter().sum::<f64>() / steps as f64;
        let deviation = window.iter().map(|v| (v - level).abs()).sum::<f64>() / steps as f64;
        // A constant window has no spread: any positive scale maps it to 0,
        // and one relative to the level keeps its later jumps finite.
        let scale_min = 1e-9 * level.abs().max(1.0);
        let lags = &past[past.len().saturating_sub(LAGS)..];
        Self {
            level,
            scale: deviation.max(scale_min),
            nonnegative: window.iter().chain(lags).all(|v| *v >= 0.0),
        }
    }

    /// `value` in scales from the level, clipped to ±[`Z_MAX`].
    pub fn scaled(&self, value: f64) -> f64 {
        ((value - self.level) / self.scale).clamp(-Z_MAX, Z_MAX)
    }

    /// The value `scaled` scales from the level (clipped to ±[`Z_MAX`]),
    /// and not below 0 for a load.
    pub fn value(&self, scaled: f64) -> f64 {
        let value = self.level + self.scale * scaled.clamp(-Z_MAX, Z_MAX);
        if self.nonnegative {
            value.max(0.0)
        } else {
            value
        }
    }
}

/// A period the features use: one of at least two steps.
fn usable(period: Option<usize>) -> Option<usize> {
    period.filter(|period| *period >= 2)
}

/// Writes into `out` (length [`FEATURES`]) the features of forecasting
/// `horizon` (≥ 1) steps after the newest value of `past` (non-empty),
/// the series seen up to the origin; `period` is the series' period, if it
/// has one (below 2 counts as none). Returns the window's normaliser,
/// which maps the model's output back to a value.
///
/// Looks back at most `(SEASONS + ⌈horizon / period⌉) · period` values.
pub fn window_features(
    past: &[f64],
    period: Option<usize>,
    horizon: usize,
    out: &mut [f32],
) -> Normaliser {
    debug_assert!(!past.is_empty() && horizon >= 1 && out.len() == FEATURES);
    let period = usable(period);
    let norm = Normaliser::of(past, period);
    let newest = past.len() - 1;
    let scaled_at = |index: usize| norm.scaled(past[index]);
    let scaled_newest = scaled_at(newest);

    for lag in 0..LAGS {
        // Short histories repeat their oldest value.
        out[F_LAGS + lag] = scaled_at(newest.saturating_sub(lag)) as f32;
    }

    // Seasonal lags: the target's phase in each of the last SEASONS seen
    // periods (the same convention as SeasonalNaive). Without a period, or
    // before a period has been seen, they are the newest value, as
    // seasonal-naive falls back to it.
    let (seasonal, seasonal_now) = match period {
        Some(period) => {
            let target = newest + horizon;
            let periods_back_first = (horizon - 1) / period + 1;
            let seasonal: [Option<f64>; SEASONS] = std::array::from_fn(|k| {
                target
                    .checked_sub((periods_back_first + k) * period)
                    .map(scaled_at)
            });
            let (now_sum, now_count) = (1..=SEASONS)
                .filter_map(|k| newest.checked_sub(k * period).map(scaled_at))
                .fold((0.0, 0usize), |(sum, count), value| {
                    (sum + value, count + 1)
                });
            let now = if now_count == 0 {
                scaled_newest
            } else {
                now_sum / now_count as f64
            };
            (seasonal, now)
        }
        // Without a season the level is the expectation of the newest
        // value: its departure from it is the anomaly.
        None => ([Some(scaled_newest); SEASONS], 0.0),
    };
    let (seen_sum, seen) = seasonal
        .iter()
        .flatten()
        .fold((0.0, 0usize), |(sum, count), value| {
            (sum + value, count + 1)
        });
    let seasonal_mean = if seen == 0 {
        scaled_newest
    } else {
        seen_sum / seen as f64
    };
    for (k, value) in seasonal.iter().enumerate() {
        out[F_SEASONAL + k] = value.unwrap_or(seasonal_mean) as f32;
    }
    out[F_SEASONAL_MEAN] = seasonal_mean as f32;
    out[F_SEASONAL_NOW] = seasonal_now as f32;

    let anomaly = scaled_newest - seasonal_now;
    for (i, decay_steps) in ANOMALY_DECAY_STEPS.iter().enumerate() {
        out[F_ANOMALY_DECAY + i] = (anomaly * (-(horizon as f64) / decay_steps).exp()) as f32;
    }

    let slope = slope(&past[past.len().saturating_sub(LAGS)..], &norm);
    out[F_TREND] = (slope * horizon as f64).clamp(-Z_MAX, Z_MAX) as f32;
    out[F_SLOPE] = slope.clamp(-Z_MAX, Z_MAX) as f32;

    // The target's phase relative to the origin: a global model serves
    // series whose days start at different steps, so an absolute phase
    // would mean something else for each series.
    let (sin, cos, has_period) = match period {
        Some(period) => {
            let angle = TAU * (horizon % period) as f64 / period as f64;
            (angle.sin(), angle.cos(), 1.0)
        }
        None => (0.0, 0.0, 0.0),
    };
    out[F_PHASE] = sin as f32;
    out[F_PHASE + 1] = cos as f32;
    out[F_HAS_PERIOD] = has_period;
    out[F_HORIZON] = ((1.0 + horizon as f64).ln() / (1.0 + HORIZON_STEPS_SCALE).ln()) as f32;
    norm
}

/// The least-squares slope of `recent`, in scales per step; 0 for fewer
/// than two values.
fn slope(recent: &[f64], norm: &Normaliser) -> f64 {
    let n = recent.len();
    if n < 2 {
        return 0.0;
    }
    let x_mean = (n - 1) as f64 / 2.0;
    let z: Vec<f64> = recent.iter().map(|v| norm.scaled(*v)).collect();
    let z_mean = z.iter().sum::<f64>() / n as f64;
    let (covariance, variance) =
        z.iter()
            .enumerate()
            .fold((0.0, 0.0), |(covariance, variance), (x, z)| {
                let dx = x as f64 - x_mean;
                (covariance + dx * (z - z_mean), variance + dx * dx)
            });
    covariance / variance
}

#[cfg(test)]
mod tests {
    use super::*;

    fn features(past: &[f64], period: Option<usize>, horizon: usize) -> (Vec<f32>, Normaliser) {
        let mut out = vec![f32::NAN; FEATURES];
        let norm = window_features(past, period, horizon, &mut out);
        assert!(out.iter().all(|f| f.is_finite()), "{out:?}");
        (out, norm)
    }

    #[test]
    fn scale_does_not_change_the_features() {
        let small: Vec<f64> = (0..100).map(|t| 10.0 + (t % 7) as f64).collect();
        let large: Vec<f64> = small.iter().map(|v| 1e6 * v + 5e6).collect();
        let (a, norm_small) = features(&small, Some(7), 3);
        let (b, norm_large) = features(&large, Some(7), 3);
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-4, "{a:?} != {b:?}");
        }
        assert!((norm_small.value(1.5) * 1e6 + 5e6 - norm_large.value(1.5)).abs() < 1e-3);
    }

    #[test]
    fn seasonal_lags_are_the_targets_phase_in_past_periods() {
        // A sawtooth of period 5 with a distinct value per phase: every
        // seasonal lag of a target is the target's own value.
        let shape = [0.0, 10.0, 20.0, 30.0, 40.0];
        let past: Vec<f64> = (0..53).map(|t| shape[t % 5]).collect();
        for horizon in [1, 4, 5, 6, 12] {
            let (out, norm) = features(&past, Some(5), horizon);
            let expected = norm.scaled(shape[(past.len() - 1 + horizon) % 5]) as f32;
            for k in 0..SEASONS {
                assert!((out[F_SEASONAL + k] - expected).abs() < 1e-5, "h {horizon}");
            }
            assert!((out[F_SEASONAL_MEAN] - expected).abs() < 1e-5);
            // The newest value is its own seasonal expectation: no anomaly.
            assert!(out[F_ANOMALY_DECAY].abs() < 1e-5);
        }
    }

    #[test]
    fn without_a_period_the_seasonal_lags_are_the_newest_value() {
        let past = [1.0, 5.0, 2.0, 8.0];
        let (out, norm) = features(&past, None, 3);
        let newest = norm.scaled(8.0) as f32;
        assert_eq!(out[F_SEASONAL..F_SEASONAL_MEAN + 1], [newest; SEASONS + 1]);
        assert_eq!(out[F_HAS_PERIOD], 0.0);
        // A period of one step is no period.
        assert_eq!(features(&past, Some(1), 3).0, out);
    }

    #[test]
    fn a_constant_window_is_all_level() {
        let (out, norm) = features(&[42.0; 30], Some(6), 2);
        assert!(out[..F_TREND + 2].iter().all(|f| *f == 0.0), "{out:?}");
        assert_eq!(norm.value(0.0), 42.0);
    }

    #[test]
    fn a_single_value_is_enough() {
        let (out, norm) = features(&[3.0], Some(24), 7);
        assert_eq!(norm.value(out[F_SEASONAL_MEAN] as f64), 3.0);
    }

    #[test]
    fn loads_are_never_forecast_negative() {
        let (_, norm) = features(&[1.0, 0.0, 2.0, 1.0], None, 1);
        assert_eq!(norm.value(-Z_MAX), 0.0);
        let (_, norm) = features(&[1.0, -1.0, 2.0, 1.0], None, 1);
        assert!(norm.value(-Z_MAX) < 0.0);
    }

    #[test]
    fn the_trend_feature_extrapolates_the_slope() {
        let line: Vec<f64> = (0..40).map(|t| 2.0 * t as f64).collect();
        let (one, norm) = features(&line, None, 1);
        let (four, _) = features(&line, None, 4);
        assert!((four[F_TREND] - 4.0 * one[F_TREND]).abs() < 1e-5);
        // 2 per step, in scales.
        let per_step = norm.scaled(2.0) - norm.scaled(0.0);
        assert!((one[F_SLOPE] as f64 - per_step).abs() < 1e-5);
    }
}

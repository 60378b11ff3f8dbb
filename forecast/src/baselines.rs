//! The baseline forecasters every future model has to beat.

use std::collections::VecDeque;

use crate::Forecaster;

/// The last observed value, at every horizon.
#[derive(Debug, Clone, Default)]
pub struct LastValue {
    last: Option<f64>,
}

impl LastValue {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Forecaster for LastValue {
    fn name(&self) -> &str {
        "last_value"
    }

    fn observe(&mut self, value: f64) {
        self.last = Some(value);
    }

    fn forecast(&self, horizon_steps: usize) -> f64 {
        debug_assert!(horizon_steps >= 1);
        self.last.unwrap_or(f64::NAN)
    }
}

/// Exponentially weighted moving average: a level, flat at every horizon.
#[derive(Debug, Clone)]
pub struct Ewma {
    alpha: f64,
    level: Option<f64>,
    name: String,
}

impl Ewma {
    /// `alpha` in (0, 1]: the weight of the newest value.
    pub fn new(alpha: f64) -> Self {
        assert!(
            alpha > 0.0 && alpha <= 1.0,
            "ewma alpha {alpha} not in (0, 1]"
        );
        Self {
            alpha,
            level: None,
            name: format!("ewma({alpha})"),
        }
    }
}

impl Forecaster for Ewma {
    fn name(&self) -> &str {
        &self.name
    }

    fn observe(&mut self, value: f64) {
        self.level = Some(match self.level {
            None => value,
            Some(level) => self.alpha * value + (1.0 - self.alpha) * level,
        });
    }

    fn forecast(&self, horizon_steps: usize) -> f64 {
        debug_assert!(horizon_steps >= 1);
        self.level.unwrap_or(f64::NAN)
    }
}

/// Holt's double exponential smoothing: a level and a linear trend.
///
/// Initialised from the first two values (level = second value, trend =
/// their difference), so a linear series is forecast exactly from then on.
#[derive(Debug, Clone)]
pub struct Holt {
    alpha: f64,
    beta: f64,
    first: Option<f64>,
    /// (level, trend) once two values have been seen.
    state: Option<(f64, f64)>,
    name: String,
}

impl Holt {
    /// `alpha` smooths the level, `beta` the trend; both in (0, 1].
    pub fn new(alpha: f64, beta: f64) -> Self {
        assert!(
            alpha > 0.0 && alpha <= 1.0,
            "holt alpha {alpha} not in (0, 1]"
        );
        assert!(beta > 0.0 && beta <= 1.0, "holt beta {beta} not in (0, 1]");
        Self {
            alpha,
            beta,
            first: None,
            state: None,
            name: format!("holt({alpha},{beta})"),
        }
    }
}

impl Forecaster for Holt {
    fn name(&self) -> &str {
        &self.name
    }

    fn observe(&mut self, value: f64) {
        self.state = match (self.state, self.first) {
            (Some((level, trend)), _) => {
                let level_next = self.alpha * value + (1.0 - self.alpha) * (level + trend);
                let trend_next = self.beta * (level_next - level) + (1.0 - self.beta) * trend;
                Some((level_next, trend_next))
            }
            (None, Some(first)) => Some((value, value - first)),
            (None, None) => {
                self.first = Some(value);
                None
            }
        };
    }

    fn forecast(&self, horizon_steps: usize) -> f64 {
        debug_assert!(horizon_steps >= 1);
        match (self.state, self.first) {
            (Some((level, trend)), _) => level + horizon_steps as f64 * trend,
            (None, Some(first)) => first,
            (None, None) => f64::NAN,
        }
    }
}

/// The value one period before the target step (the same step of the last
/// seen period); the last value until a whole period has been seen.
#[derive(Debug, Clone)]
pub struct SeasonalNaive {
    period: usize,
    /// The last `period` values, oldest first (bounded by `period`).
    recent: VecDeque<f64>,
    name: String,
}

impl SeasonalNaive {
    /// `period` ≥ 1 steps; see [`crate::detect_period`] to find one.
    pub fn new(period: usize) -> Self {
        assert!(period >= 1, "seasonal period must be at least one step");
        Self {
            period,
            recent: VecDeque::with_capacity(period),
            name: format!("seasonal_naive({period})"),
        }
    }

    pub fn period(&self) -> usize {
        self.period
    }
}

impl Forecaster for SeasonalNaive {
    fn name(&self) -> &str {
        &self.name
    }

    fn observe(&mut self, value: f64) {
        if self.recent.len() == self.period {
            self.recent.pop_front();
        }
        self.recent.push_back(value);
        debug_assert!(self.recent.len() <= self.period);
    }

    fn forecast(&self, horizon_steps: usize) -> f64 {
        debug_assert!(horizon_steps >= 1);
        if self.recent.len() < self.period {
            return self.recent.back().copied().unwrap_or(f64::NAN);
        }
        // The target is `horizon_steps` after the newest value (index
        // period - 1); whole periods back lands in the buffer.
        let periods_back = (horizon_steps - 1) / self.period + 1;
        let index = self.period - 1 + horizon_steps - periods_back * self.period;
        self.recent[index]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fed(mut forecaster: impl Forecaster, series: &[f64]) -> impl Forecaster {
        for &value in series {
            forecaster.observe(value);
        }
        forecaster
    }

    #[test]
    fn nothing_observed_forecasts_nan() {
        assert!(LastValue::new().forecast(1).is_nan());
        assert!(Ewma::new(0.3).forecast(1).is_nan());
        assert!(Holt::new(0.3, 0.1).forecast(1).is_nan());
        assert!(SeasonalNaive::new(4).forecast(1).is_nan());
    }

    #[test]
    fn a_constant_series_is_forecast_exactly_by_every_baseline() {
        let series = [7.5; 50];
        let forecasters: Vec<Box<dyn Forecaster>> = vec![
            Box::new(LastValue::new()),
            Box::new(Ewma::new(0.3)),
            Box::new(Holt::new(0.3, 0.1)),
            Box::new(SeasonalNaive::new(12)),
        ];
        for mut forecaster in forecasters {
            for (step, &value) in series.iter().enumerate() {
                forecaster.observe(value);
                for horizon in [1, 5, 30] {
                    assert_eq!(
                        forecaster.forecast(horizon),
                        7.5,
                        "{} at step {step}, horizon {horizon}",
                        forecaster.name()
                    );
                }
            }
        }
    }

    #[test]
    fn last_value_repeats_the_newest_value() {
        let f = fed(LastValue::new(), &[1.0, 9.0, 4.0]);
        assert_eq!(f.forecast(1), 4.0);
        assert_eq!(f.forecast(100), 4.0);
    }

    #[test]
    fn ewma_weights_the_newest_value_by_alpha() {
        let f = fed(Ewma::new(0.5), &[0.0, 8.0, 4.0]);
        // 0 → 0.5·8 + 0.5·0 = 4 → 0.5·4 + 0.5·4 = 4
        assert_eq!(f.forecast(1), 4.0);
        let f = fed(Ewma::new(0.3), &[10.0, 20.0]);
        assert!((f.forecast(3) - 13.0).abs() < 1e-12);
        assert_eq!(f.name(), "ewma(0.3)");
    }

    #[test]
    fn holt_is_exact_on_a_linear_trend_after_two_values() {
        let line = |t: usize| 3.0 + 2.5 * t as f64;
        let mut f = Holt::new(0.3, 0.1);
        for t in 0..200 {
            f.observe(line(t));
            if t >= 1 {
                for horizon in [1, 7, 48] {
                    let expected = line(t + horizon);
                    let got = f.forecast(horizon);
                    assert!(
                        (got - expected).abs() < 1e-9 * expected.abs().max(1.0),
                        "t {t}, horizon {horizon}: {got} != {expected}"
                    );
                }
            }
        }
        assert_eq!(f.name(), "holt(0.3,0.1)");
    }

    #[test]
    fn seasonal_naive_is_exact_on_a_pure_seasonal_series() {
        let period = 5;
        let shape = [3.0, 1.0, 4.0, 1.0, 5.0];
        let mut f = SeasonalNaive::new(period);
        for t in 0..60 {
            f.observe(shape[t % period]);
            if t + 1 >= period {
                for horizon in 1..=17 {
                    assert_eq!(
                        f.forecast(horizon),
                        shape[(t + horizon) % period],
                        "t {t}, horizon {horizon}"
                    );
                }
            }
        }
    }

    #[test]
    fn seasonal_naive_falls_back_to_the_last_value_before_a_period() {
        let f = fed(SeasonalNaive::new(4), &[1.0, 2.0, 3.0]);
        assert_eq!(f.forecast(1), 3.0);
        assert_eq!(f.forecast(6), 3.0);
        let f = fed(SeasonalNaive::new(4), &[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(f.forecast(1), 1.0);
        assert_eq!(f.forecast(4), 4.0);
        assert_eq!(f.forecast(5), 1.0);
    }
}

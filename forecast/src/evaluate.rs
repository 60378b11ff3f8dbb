//! Rolling-origin evaluation: every forecaster sees only the past, predicts
//! `horizon` steps ahead at each origin, and is scored against what came.

use crate::{
    detect_period, Ewma, Forecaster, Holt, LastValue, ModelForecaster, RetrainSchedule,
    SeasonalNaive,
};

/// The smoothing weights of the baselines evaluated by [`evaluate`].
const EWMA_ALPHA: f64 = 0.3;
const HOLT_ALPHA: f64 = 0.3;
const HOLT_BETA: f64 = 0.1;

/// The baselines, simplest first: `last_value`, `seasonal_naive(period)`
/// (with a period), `ewma(0.3)`, `holt(0.3,0.1)`. The order is the
/// tie-break of every selection: the simpler wins a tie.
pub(crate) fn baselines(period: Option<usize>) -> Vec<Box<dyn Forecaster + Send>> {
    let mut baselines: Vec<Box<dyn Forecaster + Send>> = vec![Box::new(LastValue::new())];
    if let Some(period) = period {
        baselines.push(Box::new(SeasonalNaive::new(period)));
    }
    baselines.push(Box::new(Ewma::new(EWMA_ALPHA)));
    baselines.push(Box::new(Holt::new(HOLT_ALPHA, HOLT_BETA)));
    baselines
}

/// How one forecaster did over a series.
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    pub name: String,
    /// Mean absolute percentage error, in percent, over the non-zero
    /// actuals (see [`mape`]); NaN when every actual is zero.
    pub mape: f64,
    /// Mean absolute scaled error (see [`mase`]): below 1 beats the
    /// one-step naive forecast of the warm-up.
    pub mase: f64,
    /// `predictions[i]` is the forecast of `series[warmup - 1 + horizon + i]`.
    pub predictions: Vec<f64>,
}

/// Scores the baselines on `series`, simplest first: `last_value`,
/// `seasonal_naive(period)` (only when [`detect_period`] finds a period in
/// the warm-up), `ewma(0.3)`, `holt(0.3,0.1)`; then the learned model,
/// `model(mlp)` (a [`ModelForecaster`] trained at `horizon` on the values it
/// has observed, on the default [`RetrainSchedule`]), unless its weights
/// cannot be allocated.
///
/// Each forecaster observes `series[..warmup]`, then at every origin (each
/// further step, with n values observed) forecasts `series[n - 1 + horizon]`
/// before observing `series[n]`. The MASE scale is the in-sample one-step
/// naive MAE of `series[..warmup]`. `warmup` is raised to 2 (one difference
/// for the scale). Empty when there is no origin (`series` too short).
///
/// Panics if `horizon` is 0.
pub fn evaluate(series: &[f64], horizon: usize, warmup: usize) -> Vec<Score> {
    assert!(horizon >= 1, "the horizon is at least one step");
    let warmup = warmup.max(2);
    if series.len() < warmup + horizon {
        return Vec::new();
    }
    let period = detect_period(&series[..warmup]);
    let mut forecasters = baselines(period);
    // Last: select() gives ties to the earlier, so the model is selected
    // only when it strictly beats every baseline.
    if let Ok(model) = ModelForecaster::new(vec![horizon], period, RetrainSchedule::default()) {
        forecasters.push(Box::new(model));
    }

    let scale = naive_mae(&series[..warmup]);
    let actuals = &series[warmup - 1 + horizon..];
    forecasters
        .into_iter()
        .map(|mut forecaster| {
            for &value in &series[..warmup] {
                forecaster.observe(value);
            }
            // At each origin `observed` values are known: series[..observed].
            let mut predictions = Vec::with_capacity(actuals.len());
            for observed in warmup..=series.len() - horizon {
                if observed > warmup {
                    forecaster.observe(series[observed - 1]);
                }
                predictions.push(forecaster.forecast(horizon));
            }
            debug_assert_eq!(predictions.len(), actuals.len());
            Score {
                name: forecaster.name().to_string(),
                mape: mape(actuals, &predictions),
                mase: mase(actuals, &predictions, scale),
                predictions,
            }
        })
        .collect()
}

/// Mean absolute percentage error, in percent. Actuals equal to zero are
/// skipped (their percentage error is undefined); NaN when all are.
pub fn mape(actuals: &[f64], predictions: &[f64]) -> f64 {
    debug_assert_eq!(actuals.len(), predictions.len());
    let (sum, count) = actuals
        .iter()
        .zip(predictions)
        .filter(|(actual, _)| **actual != 0.0)
        .fold((0.0, 0usize), |(sum, count), (actual, prediction)| {
            (sum + ((actual - prediction) / actual).abs(), count + 1)
        });
    if count == 0 {
        f64::NAN
    } else {
        100.0 * sum / count as f64
    }
}

/// Mean absolute scaled error: the MAE of the predictions divided by
/// `scale` (the in-sample one-step naive MAE, [`naive_mae`]). With a zero
/// scale: 0 for perfect predictions, infinity otherwise. NaN when empty.
pub fn mase(actuals: &[f64], predictions: &[f64], scale: f64) -> f64 {
    debug_assert_eq!(actuals.len(), predictions.len());
    if actuals.is_empty() {
        return f64::NAN;
    }
    let mae = actuals
        .iter()
        .zip(predictions)
        .map(|(actual, prediction)| (actual - prediction).abs())
        .sum::<f64>()
        / actuals.len() as f64;
    if scale == 0.0 {
        if mae == 0.0 {
            0.0
        } else {
            f64::INFINITY
        }
    } else {
        mae / scale
    }
}

/// Mean of |y[t] - y[t-1]|: the MAE of forecasting each value by the one
/// before. NaN with fewer than two values.
pub fn naive_mae(in_sample: &[f64]) -> f64 {
    if in_sample.len() < 2 {
        return f64::NAN;
    }
    in_sample
        .windows(2)
        .map(|w| (w[1] - w[0]).abs())
        .sum::<f64>()
        / (in_sample.len() - 1) as f64
}

/// The name of the score with the lowest MASE; None when `scores` is empty.
///
/// Ties (equal MASE) go to the score earlier in the slice, and [`evaluate`]
/// lists the baselines simplest first and the learned model after them: so
/// a later, more complex forecaster is selected only when it strictly beats
/// every baseline. A NaN MASE never wins over
/// a number.
pub fn select(scores: &[Score]) -> Option<&str> {
    let mut best: Option<&Score> = None;
    for score in scores {
        let better = match best {
            None => true,
            Some(best) => score.mase < best.mase || (best.mase.is_nan() && !score.mase.is_nan()),
        };
        if better {
            best = Some(score);
        }
    }
    best.map(|score| score.name.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn mape_by_hand_skips_zero_actuals() {
        // |3-4|/3, |6-3|/6, |5-6|/5 = 1/3, 1/2, 1/5; the zero is skipped.
        let mape = mape(&[3.0, 0.0, 6.0, 5.0], &[4.0, 2.0, 3.0, 6.0]);
        assert!(close(mape, 100.0 * (1.0 / 3.0 + 0.5 + 0.2) / 3.0), "{mape}");
        assert!(super::mape(&[0.0, 0.0], &[1.0, 2.0]).is_nan());
    }

    #[test]
    fn mase_by_hand() {
        // Naive MAE of 2, 4, 3: (2 + 1) / 2 = 1.5.
        assert!(close(naive_mae(&[2.0, 4.0, 3.0]), 1.5));
        // Errors 1, 3, 1: MAE 5/3, scaled by 1.5.
        let mase = mase(&[3.0, 6.0, 5.0], &[4.0, 3.0, 6.0], 1.5);
        assert!(close(mase, 5.0 / 3.0 / 1.5), "{mase}");
        assert_eq!(super::mase(&[1.0], &[1.0], 0.0), 0.0);
        assert_eq!(super::mase(&[1.0], &[2.0], 0.0), f64::INFINITY);
    }

    #[test]
    fn evaluate_last_value_by_hand() {
        // Warm-up [2, 4]: scale |4 - 2| = 2. Origins predict 4, 3, 6 for
        // actuals 3, 6, 5: errors 1, 3, 1, MAE 5/3, MASE 5/6.
        let scores = evaluate(&[2.0, 4.0, 3.0, 6.0, 5.0], 1, 2);
        let last = &scores[0];
        assert_eq!(last.name, "last_value");
        assert_eq!(last.predictions, [4.0, 3.0, 6.0]);
        assert!(close(last.mase, 5.0 / 6.0), "{}", last.mase);
        assert!(close(last.mape, 100.0 * (1.0 / 3.0 + 0.5 + 0.2) / 3.0));
    }

    #[test]
    fn evaluate_trains_only_on_the_past_at_longer_horizons() {
        // Horizon 3 from warm-up 2: predictions for indices 4.. are the
        // value three steps before each.
        let series: Vec<f64> = (0..10).map(|t| (t * t) as f64).collect();
        let scores = evaluate(&series, 3, 2);
        assert_eq!(scores[0].predictions, [1.0, 4.0, 9.0, 16.0, 25.0, 36.0]);
        for score in &scores {
            assert_eq!(score.predictions.len(), 6, "{}", score.name);
        }
    }

    #[test]
    fn evaluate_without_origins_is_empty() {
        assert!(evaluate(&[1.0, 2.0, 3.0], 2, 2).is_empty());
        assert_eq!(
            evaluate(&[1.0, 2.0, 3.0, 4.0], 2, 2)[0].predictions.len(),
            1
        );
    }

    #[test]
    fn seasonal_series_selects_seasonal_naive() {
        let shape = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0];
        let series: Vec<f64> = (0..300).map(|t| shape[t % shape.len()]).collect();
        let scores = evaluate(&series, 2, 100);
        let names: Vec<&str> = scores.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "last_value",
                "seasonal_naive(7)",
                "ewma(0.3)",
                "holt(0.3,0.1)",
                "model(mlp)"
            ]
        );
        assert_eq!(scores[1].mase, 0.0);
        assert_eq!(scores[1].mape, 0.0);
        // The model can at best tie a perfect baseline: the baseline wins.
        assert_eq!(select(&scores), Some("seasonal_naive(7)"));
    }

    #[test]
    fn linear_series_selects_holt() {
        let series: Vec<f64> = (0..200).map(|t| 10.0 + 3.0 * t as f64).collect();
        let scores = evaluate(&series, 4, 20);
        assert_eq!(select(&scores), Some("holt(0.3,0.1)"));
        assert!(scores[2].mase < 1e-9, "{scores:?}");
    }

    #[test]
    fn ties_go_to_the_simpler_baseline_and_nan_never_wins() {
        let score = |name: &str, mase: f64| Score {
            name: name.into(),
            mape: 0.0,
            mase,
            predictions: Vec::new(),
        };
        let constant = evaluate(&[5.0; 40], 1, 10);
        assert_eq!(select(&constant), Some("last_value"));
        let scores = [
            score("a", f64::NAN),
            score("b", 2.0),
            score("c", 2.0),
            score("d", 1.0),
        ];
        assert_eq!(select(&scores), Some("d"));
        assert_eq!(select(&scores[..3]), Some("b"));
        assert_eq!(select(&[]), None);
    }
}

//! Finding a series' period (its seasonality) from its autocorrelation.

/// The longest period looked for, in steps: a day of minute samples.
pub const LAG_MAX: usize = 1440;

/// Below this autocorrelation a peak is noise, not a season.
const AUTOCORRELATION_MIN: f64 = 0.3;
/// How far a peak must rise above the lowest autocorrelation at a shorter
/// lag: a season dips and comes back, a slowly decaying memory only wobbles.
const PROMINENCE_MIN: f64 = 0.1;

/// The period of `series`, in steps, if it has one.
///
/// Candidates are the lags 2..=min(len / 3, [`LAG_MAX`]) (at least three
/// periods must be seen). Among the lags where the autocorrelation is a
/// local peak rising at least 0.1 above every shorter lag's lowest, the
/// highest wins if it reaches 0.3. Prominent peaks only, because a
/// smooth series correlates with itself at every short lag; the biased
/// estimator (divided by n, not n - lag) makes a multiple of the period
/// score below the period itself.
pub fn detect_period(series: &[f64]) -> Option<usize> {
    let lag_max = (series.len() / 3).min(LAG_MAX);
    if lag_max < 2 {
        return None;
    }
    let n = series.len() as f64;
    let mean = series.iter().sum::<f64>() / n;
    let centred: Vec<f64> = series.iter().map(|v| v - mean).collect();
    let variance: f64 = centred.iter().map(|v| v * v).sum();
    if variance <= 0.0 || !variance.is_finite() {
        return None;
    }
    // autocorrelation[lag] for lag in 0..=lag_max + 1 (one past, to see
    // whether lag_max itself is a peak).
    let lag_top = (lag_max + 1).min(series.len() - 1);
    let autocorrelation: Vec<f64> = (0..=lag_top)
        .map(|lag| {
            let covariance: f64 = centred
                .iter()
                .zip(&centred[lag..])
                .map(|(a, b)| a * b)
                .sum();
            covariance / variance
        })
        .collect();
    let mut best: Option<(usize, f64)> = None;
    let mut lowest_before = autocorrelation[1];
    for lag in 2..=lag_max {
        let here = autocorrelation[lag];
        let before = autocorrelation[lag - 1];
        lowest_before = lowest_before.min(before);
        let after = autocorrelation
            .get(lag + 1)
            .copied()
            .unwrap_or(f64::NEG_INFINITY);
        let is_peak = here > before && here >= after && here - lowest_before >= PROMINENCE_MIN;
        if is_peak && here >= AUTOCORRELATION_MIN && best.is_none_or(|(_, b)| here > b) {
            best = Some((lag, here));
        }
    }
    best.map(|(lag, _)| lag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_period_of_a_seasonal_series() {
        let shape = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0];
        let series: Vec<f64> = (0..100).map(|t| shape[t % shape.len()]).collect();
        assert_eq!(detect_period(&series), Some(7));
    }

    #[test]
    fn finds_a_daily_period_in_noisy_five_minute_samples() {
        let period = 288;
        let mut noise_state: u64 = 0x9E37_79B9_7F4A_7C15;
        let series: Vec<f64> = (0..period * 6)
            .map(|t| {
                // xorshift: deterministic noise without a dependency.
                noise_state ^= noise_state << 13;
                noise_state ^= noise_state >> 7;
                noise_state ^= noise_state << 17;
                let noise = (noise_state % 1000) as f64 / 1000.0 - 0.5;
                let phase = t as f64 / period as f64 * std::f64::consts::TAU;
                100.0 + 40.0 * phase.sin() + 10.0 * noise
            })
            .collect();
        // A sine's autocorrelation peak is flat: noise may move it a step.
        let found = detect_period(&series).expect("a period");
        assert!(found.abs_diff(period) <= 1, "{found}");
    }

    #[test]
    fn no_period_in_a_constant_a_trend_or_a_short_series() {
        assert_eq!(detect_period(&[4.0; 100]), None);
        let line: Vec<f64> = (0..100).map(|t| t as f64).collect();
        assert_eq!(detect_period(&line), None);
        assert_eq!(detect_period(&[1.0, 2.0, 1.0, 2.0, 1.0]), None);
        assert_eq!(detect_period(&[]), None);
    }
}

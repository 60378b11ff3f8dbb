//! Percentiles of a latency histogram, and its HdrHistogram
//! percentile-distribution text (`.hgrm`, the format of HdrHistogram's
//! `outputPercentileDistribution`, readable by its online plotter).

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// The percentiles every report shows, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub count: u64,
    pub min_ms: f64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub p9999_ms: f64,
    pub max_ms: f64,
}

/// The quantiles of [`Percentiles`], with their column titles.
pub const COLUMNS: [(&str, f64); 5] = [
    ("p50", 0.5),
    ("p90", 0.9),
    ("p99", 0.99),
    ("p99.9", 0.999),
    ("p99.99", 0.9999),
];

impl Percentiles {
    /// From a histogram of microseconds.
    pub fn of(h: &Histogram<u64>) -> Self {
        let ms = |us: u64| us as f64 / 1000.0;
        let q = |quantile: f64| ms(h.value_at_quantile(quantile));
        Self {
            count: h.len(),
            min_ms: ms(h.min()),
            mean_ms: h.mean() / 1000.0,
            p50_ms: q(0.5),
            p90_ms: q(0.9),
            p99_ms: q(0.99),
            p999_ms: q(0.999),
            p9999_ms: q(0.9999),
            max_ms: ms(h.max()),
        }
    }

    /// p50, p90, p99, p99.9, p99.99, max.
    pub fn row(&self) -> [f64; 6] {
        [
            self.p50_ms,
            self.p90_ms,
            self.p99_ms,
            self.p999_ms,
            self.p9999_ms,
            self.max_ms,
        ]
    }
}

/// A latency in ms with precision that suits its size.
pub fn fmt_ms(ms: f64) -> String {
    if ms < 10.0 {
        format!("{ms:.3}")
    } else if ms < 100.0 {
        format!("{ms:.2}")
    } else {
        format!("{ms:.1}")
    }
}

/// The `.hgrm` text of a histogram of microseconds, values in milliseconds.
pub fn hgrm(h: &Histogram<u64>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let mut total = 0u64;
    if !h.is_empty() {
        for v in h.iter_quantiles(5) {
            total += v.count_since_last_iteration();
            let value_ms = v.value_iterated_to() as f64 / 1000.0;
            let q = v.quantile_iterated_to();
            if q < 1.0 {
                let _ = writeln!(
                    out,
                    "{value_ms:12.3} {q:2.12} {total:10} {:14.2}",
                    1.0 / (1.0 - q)
                );
            } else {
                let _ = writeln!(out, "{value_ms:12.3} {q:2.12} {total:10}");
            }
        }
    }
    let (mean, stdev) = if h.is_empty() {
        (0.0, 0.0)
    } else {
        (h.mean() / 1000.0, h.stdev() / 1000.0)
    };
    let _ = writeln!(
        out,
        "#[Mean    = {mean:12.3}, StdDeviation   = {stdev:12.3}]"
    );
    let _ = writeln!(
        out,
        "#[Max     = {:12.3}, Total count    = {:12}]",
        h.max() as f64 / 1000.0,
        h.len()
    );
    let _ = writeln!(
        out,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        h.buckets(),
        h.distinct_values()
    );
    out
}

/// Points `(1/(1-q), value_ms)` of the latency-by-percentile curve, for
/// plotting on a log x axis, capped at `x_max`. The last point (q = 1,
/// infinitely far right) is put where the last of `count` samples sits,
/// `x = count`.
pub fn percentile_curve(h: &Histogram<u64>, x_max: f64) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    curve(
        h.iter_quantiles(5).map(|v| {
            (
                v.quantile_iterated_to(),
                v.value_iterated_to() as f64 / 1000.0,
            )
        }),
        h.len(),
        x_max,
    )
}

/// `(quantile, value)` points → plot points (see [`percentile_curve`]).
pub fn curve(points: impl Iterator<Item = (f64, f64)>, count: u64, x_max: f64) -> Vec<(f64, f64)> {
    let last_x = (count as f64).clamp(1.0, x_max);
    let mut out: Vec<(f64, f64)> = Vec::new();
    for (q, value) in points {
        let x = if q < 1.0 {
            (1.0 / (1.0 - q)).min(last_x)
        } else {
            last_x
        };
        out.push((x, value));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recorder::new_histogram;

    #[test]
    fn percentiles_and_hgrm() {
        let mut h = new_histogram();
        for us in 1..=10_000u64 {
            h.record(us).unwrap();
        }
        let p = Percentiles::of(&h);
        assert_eq!(p.count, 10_000);
        assert!((p.p50_ms - 5.0).abs() < 0.01, "{p:?}");
        assert!((p.p99_ms - 9.9).abs() < 0.01, "{p:?}");
        assert!((p.max_ms - 10.0).abs() < 0.01, "{p:?}");
        let text = hgrm(&h);
        assert!(text.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)\n\n"));
        assert!(text.contains(", Total count    =        10000]"), "{text}");
        let last_data = text.lines().rfind(|l| !l.starts_with('#')).unwrap();
        assert!(last_data.contains("1.000000000000"), "{last_data}");
        assert!(last_data.trim_end().ends_with("10000"), "{last_data}");
        let points = percentile_curve(&h, 1e6);
        assert_eq!(points.first().unwrap().0, 1.0);
        assert_eq!(
            points.last().unwrap().0,
            10_000.0,
            "the last of 10,000 samples"
        );
        assert!(points
            .windows(2)
            .all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1));
        assert_eq!(fmt_ms(0.1234), "0.123");
        assert_eq!(fmt_ms(123.45), "123.5");
    }

    #[test]
    fn empty_histogram_is_well_formed() {
        let h = new_histogram();
        let text = hgrm(&h);
        assert!(text.contains("Total count    =            0"));
        assert!(percentile_curve(&h, 10.0).is_empty());
    }
}

//! Load shapes: the target rate of each topic over time, for open-loop
//! runs that exercise rebalancing (sans-IO: plain functions of the time).
//!
//! * [`Trace`]: a recorded `timestamp,value` series, time-compressed by a
//!   speed-up factor, rescaled so its maximum is a given rate and
//!   interpolated linearly between samples; it repeats when it runs out.
//! * [`Bursts`]: periodic windows (aligned to multiples of the period in
//!   Unix time, so that separate loadgen processes burst together) during
//!   which the first few topics run at a burst rate instead.
//! * [`LoadShape`]: the run's description; [`LoadShape::topic_rate`] gives
//!   each topic its own [`RateCurve`].
//!
//! Rates of a base curve (constant `--rate` or a trace) are totals over all
//! topics, split evenly; a burst rate is the total of the bursting topics.

use std::sync::Arc;

use crate::schedule::{Piece, RateCurve};

/// A recorded rate series, ready to replay: seconds since the start of the
/// replay (already divided by the speed-up) and rates (already rescaled).
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    /// `(t_s, rate_per_s)`, `t_s` strictly increasing from 0.
    points: Vec<(f64, f64)>,
}

impl Trace {
    /// `rows` of `(unix_s, value)` as recorded, replayed `speedup` times
    /// faster than they were recorded, the largest value becoming
    /// `peak_rate_per_s`.
    pub fn new(rows: &[(i64, f64)], speedup: f64, peak_rate_per_s: f64) -> anyhow::Result<Self> {
        anyhow::ensure!(
            speedup.is_finite() && speedup > 0.0,
            "the trace speed-up must be positive, not {speedup}"
        );
        anyhow::ensure!(
            peak_rate_per_s.is_finite() && peak_rate_per_s > 0.0,
            "the trace's peak rate must be positive, not {peak_rate_per_s}"
        );
        anyhow::ensure!(
            rows.len() >= 2,
            "a trace needs at least two samples, found {}",
            rows.len()
        );
        for (i, pair) in rows.windows(2).enumerate() {
            anyhow::ensure!(
                pair[0].0 < pair[1].0,
                "trace sample {} (timestamp {}) is not after the one before ({})",
                i + 2,
                pair[1].0,
                pair[0].0
            );
        }
        if let Some((i, (t, v))) = rows.iter().enumerate().find(|(_, (_, v))| *v < 0.0) {
            anyhow::bail!(
                "trace sample {} (timestamp {t}) is negative ({v}): not a rate",
                i + 1
            );
        }
        let max = rows.iter().map(|&(_, v)| v).fold(0.0, f64::max);
        anyhow::ensure!(max > 0.0, "every sample of the trace is zero");
        let t0 = rows[0].0;
        Ok(Self {
            points: rows
                .iter()
                .map(|&(t, v)| ((t - t0) as f64 / speedup, v * peak_rate_per_s / max))
                .collect(),
        })
    }

    /// Seconds of replay before the trace repeats.
    pub fn span_s(&self) -> f64 {
        self.points[self.points.len() - 1].0
    }

    pub fn samples(&self) -> usize {
        self.points.len()
    }

    /// The average rate over one pass.
    pub fn mean_rate_per_s(&self) -> f64 {
        let area: f64 = self
            .points
            .windows(2)
            .map(|w| (w[1].0 - w[0].0) * (w[0].1 + w[1].1) / 2.0)
            .sum();
        area / self.span_s()
    }
}

impl RateCurve for Trace {
    fn piece_at(&self, t_s: f64) -> Piece {
        let span = self.span_s();
        // `rem_euclid` may round up to `span` itself: that is the start of
        // the next pass.
        let mut pos = t_s.rem_euclid(span);
        if pos >= span {
            pos = 0.0;
        }
        // The segment [i, i + 1] holding pos: the last point at or before it.
        let i = self.points.partition_point(|&(t, _)| t <= pos) - 1;
        let i = i.min(self.points.len() - 2);
        let ((t_a, v_a), (t_b, v_b)) = (self.points[i], self.points[i + 1]);
        let slope = (v_b - v_a) / (t_b - t_a);
        Piece {
            // Rounding must not take an interpolated rate below zero.
            rate_per_s: (v_a + slope * (pos - t_a)).max(0.0),
            slope_per_s2: slope,
            until_s: t_s + (t_b - pos),
        }
    }
}

/// Periodic bursts: windows of `duration_ns` at the start of every
/// multiple of `period_ns` in Unix time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bursts {
    pub period_ns: u64,
    pub duration_ns: u64,
    /// The first this many topics burst.
    pub topics: usize,
}

impl Bursts {
    pub fn new(period_ns: u64, duration_ns: u64, topics: usize) -> anyhow::Result<Self> {
        anyhow::ensure!(
            duration_ns > 0 && duration_ns < period_ns,
            "a burst must last longer than 0 and less than its period \
             ({duration_ns} ns of {period_ns} ns)"
        );
        anyhow::ensure!(topics > 0, "at least one topic must burst");
        Ok(Self {
            period_ns,
            duration_ns,
            topics,
        })
    }

    /// Whether Unix time `unix_ns` is inside a burst.
    pub fn active_at_unix_ns(&self, unix_ns: u64) -> bool {
        unix_ns % self.period_ns < self.duration_ns
    }

    /// The windows as seen by a stream whose time 0 is `start_unix_ns`.
    fn windows(&self, start_unix_ns: u64, rate_per_s: f64) -> BurstWindows {
        BurstWindows {
            period_s: self.period_ns as f64 / 1e9,
            duration_s: self.duration_ns as f64 / 1e9,
            // In integers: a Unix time in nanoseconds has more digits than
            // an f64 holds.
            phase_s: (start_unix_ns % self.period_ns) as f64 / 1e9,
            rate_per_s,
        }
    }
}

/// Burst windows relative to a stream's start, and the rate inside them.
#[derive(Debug, Clone, Copy, PartialEq)]
struct BurstWindows {
    period_s: f64,
    duration_s: f64,
    /// Where in its period the stream's time 0 falls.
    phase_s: f64,
    rate_per_s: f64,
}

/// A topic's share of the base rate (constant or a trace).
#[derive(Debug, Clone, PartialEq)]
pub enum BaseRate {
    /// Messages per second over all topics.
    Constant(f64),
    Trace(Arc<Trace>),
}

/// One topic's rate over time: its share of the base rate, except inside
/// burst windows (if it bursts).
#[derive(Debug, Clone, PartialEq)]
pub struct TopicRate {
    base: BaseRate,
    share: f64,
    bursts: Option<BurstWindows>,
}

impl RateCurve for TopicRate {
    fn piece_at(&self, t_s: f64) -> Piece {
        let base = |t_s: f64| match &self.base {
            BaseRate::Constant(r) => Piece::constant(*r, f64::INFINITY),
            BaseRate::Trace(trace) => trace.piece_at(t_s),
        };
        let Some(b) = &self.bursts else {
            return base(t_s).scaled(self.share);
        };
        let pos = (t_s + b.phase_s).rem_euclid(b.period_s);
        if pos < b.duration_s {
            Piece::constant(b.rate_per_s, t_s + (b.duration_s - pos))
        } else {
            base(t_s).scaled(self.share).until(t_s + (b.period_s - pos))
        }
    }
}

/// The target rates of an open-loop run.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadShape {
    pub base: BaseRate,
    pub topics: usize,
    /// And the bursting topics' combined rate during a burst.
    pub bursts: Option<(Bursts, f64)>,
}

impl LoadShape {
    /// A constant total rate, split evenly over `topics`.
    pub fn constant(rate_per_s: f64, topics: usize) -> Self {
        Self {
            base: BaseRate::Constant(rate_per_s),
            topics,
            bursts: None,
        }
    }

    /// Topic `i`'s rate, for a stream whose time 0 is Unix time
    /// `start_unix_ns` (which places the burst windows).
    pub fn topic_rate(&self, i: usize, start_unix_ns: u64) -> TopicRate {
        assert!(i < self.topics, "topic {i} of {}", self.topics);
        TopicRate {
            base: self.base.clone(),
            share: 1.0 / self.topics as f64,
            bursts: self.bursts.and_then(|(b, rate)| {
                (i < b.topics).then(|| b.windows(start_unix_ns, rate / b.topics as f64))
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::OpenLoopSchedule;

    const S: u64 = 1_000_000_000;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9 * b.abs().max(1.0)
    }

    /// Messages a schedule lets fall due in `[0, until_s)`.
    fn due_before<C: RateCurve>(curve: C, phase: f64, until_s: f64) -> u64 {
        let mut s = OpenLoopSchedule::new(0, curve, phase);
        let end = (until_s * 1e9) as u64;
        std::iter::from_fn(|| s.take_due(end - 1)).count() as u64
    }

    #[test]
    fn a_trace_is_compressed_rescaled_and_interpolated() {
        // Five-minute samples replayed 60× faster: one every 5 s.
        let rows = [(1_000, 10.0), (1_300, 40.0), (1_600, 20.0)];
        let t = Trace::new(&rows, 60.0, 2000.0).unwrap();
        assert_eq!(t.span_s(), 10.0);
        // The maximum (40) maps to 2000 msgs/s, the others in proportion.
        assert!(close(t.rate_at(0.0), 500.0));
        assert!(close(t.rate_at(5.0), 2000.0));
        assert!(close(t.rate_at(2.5), 1250.0), "halfway up");
        assert!(close(t.rate_at(7.5), 1500.0), "halfway down");
        // A piece ends at the next sample, with the segment's slope.
        let p = t.piece_at(1.0);
        assert!(close(p.until_s, 5.0));
        assert!(close(p.slope_per_s2, 300.0));
        // The trace repeats: 10 s in, it starts over.
        assert!(close(t.rate_at(12.5), 1250.0));
        let p = t.piece_at(17.0);
        assert!(close(p.until_s, 20.0) && close(p.rate_per_s, 1600.0));
        assert!(close(t.mean_rate_per_s(), 1375.0));
    }

    #[test]
    fn bad_traces_are_refused() {
        let err = |rows: &[(i64, f64)]| Trace::new(rows, 60.0, 100.0).unwrap_err().to_string();
        assert!(err(&[(0, 1.0)]).contains("at least two samples"));
        assert!(err(&[(0, 1.0), (0, 2.0)]).contains("sample 2 (timestamp 0) is not after"));
        assert!(err(&[(0, 1.0), (5, -2.0)]).contains("negative"));
        assert!(err(&[(0, 0.0), (5, 0.0)]).contains("zero"));
        assert!(Trace::new(&[(0, 1.0), (5, 2.0)], 0.0, 100.0).is_err());
        assert!(Trace::new(&[(0, 1.0), (5, 2.0)], 60.0, -1.0).is_err());
    }

    #[test]
    fn a_schedule_follows_a_ramp_exactly() {
        // 0 → 1000 msgs/s over 10 s, then back to 0: 5000 messages up the
        // ramp, and message k is due at sqrt(2k / 100) s.
        let trace = Trace::new(&[(0, 0.0), (10, 1000.0), (20, 0.0)], 1.0, 1000.0).unwrap();
        let mut s = OpenLoopSchedule::new(0, trace.clone(), 0.0);
        assert_eq!(s.take_due(0), Some(0));
        assert_eq!(s.next_due_ns(), (0.02f64.sqrt() * 1e9).round() as u64);
        assert_eq!(due_before(trace.clone(), 0.0, 10.0), 5000);
        // A whole pass is 10,000; the next starts from zero again.
        assert_eq!(due_before(trace.clone(), 0.0, 20.0), 10_000);
        assert_eq!(due_before(trace, 0.0, 30.0), 15_000);
    }

    #[test]
    fn a_trace_that_drops_to_zero_resumes_with_the_next_sample() {
        // 0 msgs/s from 0 to 5 s, then up to 100 msgs/s by 10 s.
        let trace = Trace::new(&[(0, 0.0), (5, 0.0), (10, 100.0)], 1.0, 100.0).unwrap();
        let mut s = OpenLoopSchedule::new(0, trace, 0.5);
        // Half a message in: sqrt(2·0.5 / 20) s after the rate leaves zero.
        let expected = 5.0 + (1.0f64 / 20.0).sqrt();
        assert_eq!(s.next_due_ns(), (expected * 1e9).round() as u64);
        assert_eq!(s.take_due(5 * S), None);
    }

    fn bursty(start_unix_ns: u64) -> (LoadShape, TopicRate, TopicRate) {
        // 1000 msgs/s over 4 topics; the first 2 burst to 6000 msgs/s
        // together for 10 s of every minute.
        let shape = LoadShape {
            base: BaseRate::Constant(1000.0),
            topics: 4,
            bursts: Some((Bursts::new(60 * S, 10 * S, 2).unwrap(), 6000.0)),
        };
        let (hot, steady) = (
            shape.topic_rate(1, start_unix_ns),
            shape.topic_rate(3, start_unix_ns),
        );
        (shape, hot, steady)
    }

    #[test]
    fn burst_windows_are_aligned_to_unix_time() {
        // The run starts at 12:00:55 (Unix): the first burst is 5 s in.
        let start = 1_700_000_000 * S - 1_700_000_000 % 60 * S + 55 * S;
        let (_, hot, steady) = bursty(start);
        assert!(close(hot.rate_at(0.0), 250.0));
        assert!(close(hot.rate_at(4.999), 250.0));
        assert!(close(hot.rate_at(5.0), 3000.0));
        assert!(close(hot.rate_at(14.999), 3000.0));
        assert!(close(hot.rate_at(15.0), 250.0));
        assert!(close(hot.rate_at(65.0), 3000.0), "and every minute");
        for t in [0.0, 5.0, 10.0, 65.0] {
            assert!(close(steady.rate_at(t), 250.0), "steady at {t} s");
        }
        // Pieces end at the window edges, so a schedule sees every edge.
        assert!(close(hot.piece_at(1.0).until_s, 5.0));
        assert!(close(hot.piece_at(6.0).until_s, 15.0));
        // Another process started 7 s later bursts at the same moments.
        let (_, later, _) = bursty(start + 7 * S);
        for t in [0.0, 2.9, 3.0, 7.9, 8.0, 60.0] {
            assert_eq!(later.rate_at(t), hot.rate_at(t + 7.0), "at {t} s");
        }
        let b = Bursts::new(60 * S, 10 * S, 2).unwrap();
        assert!(b.active_at_unix_ns(start + 5 * S));
        assert!(!b.active_at_unix_ns(start + 15 * S));
    }

    #[test]
    fn bursting_topics_get_their_burst_count() {
        let start = 1_700_000_000 * S - 1_700_000_000 % 60 * S + 55 * S;
        let (_, hot, steady) = bursty(start);
        // Over two whole minutes: 100 s at 250 msgs/s and 20 s at 3000.
        assert_eq!(due_before(hot, 0.0, 120.0), 250 * 100 + 3000 * 20);
        assert_eq!(due_before(steady, 0.25, 120.0), 250 * 120);
    }

    #[test]
    fn burst_settings_are_checked() {
        assert!(Bursts::new(60 * S, 60 * S, 1).is_err());
        assert!(Bursts::new(60 * S, 0, 1).is_err());
        assert!(Bursts::new(60 * S, 10 * S, 0).is_err());
    }

    #[test]
    fn constant_shapes_split_the_rate_over_topics() {
        let shape = LoadShape::constant(900.0, 3);
        let r = shape.topic_rate(2, 0);
        assert!(close(r.rate_at(123.0), 300.0));
        // Phases 0, 1/3, 2/3 interleave the three streams evenly.
        let mut all: Vec<u64> = (0..3)
            .flat_map(|i| {
                let mut s = OpenLoopSchedule::new(0, shape.topic_rate(i, 0), i as f64 / 3.0);
                std::iter::from_fn(move || s.take_due(10_000_000)).collect::<Vec<_>>()
            })
            .collect();
        all.sort_unstable();
        let gaps: Vec<u64> = all.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.iter().all(|g| g.abs_diff(1_111_111) <= 1), "{gaps:?}");
    }
}

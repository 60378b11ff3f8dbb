//! Latency histograms, corrected for coordinated omission.
//!
//! A closed-loop sender waits for its previous messages before sending more,
//! so when the system stalls it simply sends less, and the stall shows up in
//! one or a few samples instead of in every message that should have been
//! sent meanwhile ("coordinated omission"). In open loop each message has an
//! intended send time from the [`schedule`](crate::schedule); measuring from
//! it charges a stall to every message it delayed. We keep both: the
//! corrected histogram (from the intended time: what a user of the system
//! would see) and the uncorrected one (from the actual send), so a report
//! can show how much the sender itself fell behind.
//!
//! Values are microseconds, 3 significant digits, up to an hour.

use hdrhistogram::Histogram;

/// Highest latency recorded exactly; larger values are clamped to it.
pub const LATENCY_US_MAX: u64 = 3_600_000_000;

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("static histogram bounds")
}

/// One kind of latency (publish→ack, publish→deliver) of one task.
#[derive(Debug, Clone)]
pub struct LatencyRecorder {
    /// From the intended send time (open loop) or the send (closed loop).
    pub corrected: Histogram<u64>,
    /// From the actual send; only kept in open loop, where it differs.
    pub uncorrected: Option<Histogram<u64>>,
    /// Samples whose intended time is before this are warm-up: not recorded.
    measure_from_ns: u64,
}

impl LatencyRecorder {
    pub fn new(open_loop: bool, measure_from_ns: u64) -> Self {
        Self {
            corrected: new_histogram(),
            uncorrected: open_loop.then(new_histogram),
            measure_from_ns,
        }
    }

    /// Whether a message meant to be sent at `intended_ns` is measured.
    pub fn is_measured(&self, intended_ns: u64) -> bool {
        intended_ns >= self.measure_from_ns
    }

    /// Records one message; returns whether it was measured (not warm-up).
    pub fn record(&mut self, intended_ns: u64, sent_ns: u64, done_ns: u64) -> bool {
        if !self.is_measured(intended_ns) {
            return false;
        }
        debug_assert!(intended_ns <= sent_ns, "sent before it was due");
        self.corrected
            .saturating_record(micros(done_ns.saturating_sub(intended_ns)));
        if let Some(h) = &mut self.uncorrected {
            h.saturating_record(micros(done_ns.saturating_sub(sent_ns)));
        }
        true
    }

    /// Adds `other`'s samples (same kind, another task).
    pub fn merge(&mut self, other: &LatencyRecorder) {
        // Same bounds on both sides: `add` cannot fail.
        self.corrected.add(&other.corrected).expect("same bounds");
        match (&mut self.uncorrected, &other.uncorrected) {
            (Some(a), Some(b)) => a.add(b).expect("same bounds"),
            (None, Some(b)) => self.uncorrected = Some(b.clone()),
            _ => {}
        }
    }
}

/// Nanoseconds to whole microseconds, at least 1 (the histogram's floor).
fn micros(ns: u64) -> u64 {
    (ns / 1000).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::{ConstantRate, OpenLoopSchedule};

    const MS: u64 = 1_000_000;

    /// A simulated sender at 1000 msgs/s against a system that answers in
    /// 100 µs but stalls for one second at t = 5 s. The sender is blocked by
    /// the stall (as a real one is when its buffer or in-flight limit is
    /// full), then sends everything that fell due meanwhile at once.
    fn simulate() -> LatencyRecorder {
        let service_ns = 100_000;
        let (stall_from, stall_to) = (5_000 * MS, 6_000 * MS);
        let mut schedule = OpenLoopSchedule::new(0, ConstantRate(1000.0), 0.0);
        let mut rec = LatencyRecorder::new(true, 0);
        let mut now = 0;
        while now < 10_000 * MS {
            while let Some(intended) = schedule.take_due(now) {
                let sent = now;
                let done = if (stall_from..stall_to).contains(&sent) {
                    stall_to + service_ns
                } else {
                    sent + service_ns
                };
                rec.record(intended, sent, done);
                // The sender is stuck until the answer comes back.
                now = now.max(done);
            }
            now = now.max(schedule.next_due_ns());
        }
        rec
    }

    #[test]
    fn a_stall_inflates_corrected_high_percentiles_only() {
        let rec = simulate();
        let corrected = &rec.corrected;
        let uncorrected = rec.uncorrected.as_ref().unwrap();
        assert_eq!(corrected.len(), 10_000);
        assert_eq!(uncorrected.len(), 10_000);
        // Uncorrected: the stall is one slow sample among 10,000.
        assert_eq!(uncorrected.value_at_quantile(0.99), 100);
        assert_eq!(uncorrected.value_at_quantile(0.999), 100);
        assert!(uncorrected.max() >= 999_000, "the stalled message itself");
        // Corrected: the ~1,000 messages due during the stall waited for it
        // (10% of all), from ~1 s down to ~0.
        assert_eq!(corrected.value_at_quantile(0.5), 100);
        let p99 = corrected.value_at_quantile(0.99);
        assert!((850_000..=1_000_100).contains(&p99), "p99 = {p99} µs");
        assert!(corrected.value_at_quantile(0.95) > 400_000);
        assert!(corrected.max() >= 999_000);
    }

    #[test]
    fn warm_up_is_not_recorded_and_closed_loop_keeps_one_histogram() {
        let mut rec = LatencyRecorder::new(false, 1_000);
        assert!(!rec.record(999, 999, 5_000));
        assert!(rec.record(1_000, 1_000, 3_000));
        assert_eq!(rec.corrected.len(), 1);
        assert_eq!(rec.corrected.max(), 2);
        assert!(rec.uncorrected.is_none());
        let mut other = LatencyRecorder::new(true, 0);
        other.record(0, 10_000, 20_000);
        rec.merge(&other);
        assert_eq!(rec.corrected.len(), 2);
        assert_eq!(rec.uncorrected.as_ref().unwrap().len(), 1);
    }
}

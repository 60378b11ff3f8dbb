//! Load over time: per second of Unix time, the messages due (meant to be
//! sent), the messages acknowledged in total and per topic, and the
//! publish→ack latency percentiles of that second's acks, written as
//! `timeline.csv` so a benchmark can plot a run's load and compare runs.
//!
//! Seconds are whole Unix seconds (not seconds since the start), so the
//! rows of separate loadgen processes, their burst windows and a node's
//! own time series line up. Warm-up is included; `t_s` says how far into
//! the run a second starts, for cutting it off.
//!
//! Each task keeps its own timeline (nothing shared on the ack path) and
//! the run merges them at the end. A second's latencies go in a histogram
//! with 2 significant digits that only grows as far as its largest value
//! (a few KiB a second), enough for a p99 plot.

use std::fmt::Write as _;

use hdrhistogram::Histogram;

/// Significant digits of the per-second latency histograms.
const SECOND_LATENCY_DIGITS: u8 = 2;

#[derive(Debug, Clone, Default)]
struct Second {
    due: u64,
    /// Per topic index.
    acked: Vec<u64>,
    /// Microseconds from intended send to ack.
    latency_us: Option<Histogram<u32>>,
}

/// One task's (or, merged, the run's) per-second counts.
#[derive(Debug, Clone)]
pub struct Timeline {
    /// Nanoseconds past the Unix second in which the run's time 0 falls.
    offset_ns: u64,
    /// Unix second of the run's time 0.
    first_unix_s: u64,
    seconds: Vec<Second>,
}

impl Timeline {
    /// For a run whose time 0 is Unix time `start_unix_ns`.
    pub fn new(start_unix_ns: u64) -> Self {
        Self {
            offset_ns: start_unix_ns % 1_000_000_000,
            first_unix_s: start_unix_ns / 1_000_000_000,
            seconds: Vec::new(),
        }
    }

    fn second(&mut self, run_ns: u64) -> &mut Second {
        let i = ((self.offset_ns + run_ns) / 1_000_000_000) as usize;
        if i >= self.seconds.len() {
            self.seconds.resize_with(i + 1, Second::default);
        }
        &mut self.seconds[i]
    }

    /// A message meant to be sent at run time `intended_ns`.
    pub fn due(&mut self, intended_ns: u64) {
        self.second(intended_ns).due += 1;
    }

    /// A message of topic `topic` meant to be sent at `intended_ns` and
    /// acknowledged at `done_ns` (run times).
    pub fn acked(&mut self, topic: usize, intended_ns: u64, done_ns: u64) {
        let s = self.second(done_ns);
        if s.acked.len() <= topic {
            s.acked.resize(topic + 1, 0);
        }
        s.acked[topic] += 1;
        let us = (done_ns.saturating_sub(intended_ns) / 1000).max(1);
        let h = s.latency_us.get_or_insert_with(|| {
            Histogram::new(SECOND_LATENCY_DIGITS).expect("valid significant digits")
        });
        // `record`, not `saturating_record`: that one clamps to the current
        // range instead of growing it. Growing fails only past u64 range.
        let _ = h.record(us);
    }

    /// Adds `other`'s counts (another task of the same run).
    pub fn merge(&mut self, other: &Timeline) {
        debug_assert_eq!(
            (self.first_unix_s, self.offset_ns),
            (other.first_unix_s, other.offset_ns),
            "timelines of different runs"
        );
        if self.seconds.len() < other.seconds.len() {
            self.seconds
                .resize_with(other.seconds.len(), Second::default);
        }
        for (mine, theirs) in self.seconds.iter_mut().zip(&other.seconds) {
            mine.due += theirs.due;
            if mine.acked.len() < theirs.acked.len() {
                mine.acked.resize(theirs.acked.len(), 0);
            }
            for (a, b) in mine.acked.iter_mut().zip(&theirs.acked) {
                *a += b;
            }
            match (&mut mine.latency_us, &theirs.latency_us) {
                // Both auto-resize: `add` cannot run out of range.
                (Some(a), Some(b)) => a.add(b).expect("auto-resizing histograms"),
                (None, Some(b)) => mine.latency_us = Some(b.clone()),
                _ => {}
            }
        }
    }

    /// Messages acknowledged per topic index, over the whole run.
    pub fn acked_per_topic(&self, topics: usize) -> Vec<u64> {
        let mut total = vec![0; topics];
        for s in &self.seconds {
            for (t, n) in total.iter_mut().zip(&s.acked) {
                *t += n;
            }
        }
        total
    }

    /// The CSV: `unix_s,t_s,due,acked,acked_<topic>...,p50_ms,p99_ms,max_ms`,
    /// one row per second from the run's first to its last (latency cells
    /// empty in seconds without acks).
    pub fn csv(&self, topics: &[String]) -> String {
        let mut out = String::from("unix_s,t_s,due,acked");
        for t in topics {
            out.push(',');
            out.push_str(&csv_field(&format!("acked_{t}")));
        }
        out.push_str(",p50_ms,p99_ms,max_ms\n");
        for (i, s) in self.seconds.iter().enumerate() {
            // The first second starts before time 0: its t_s is negative.
            let t_s = i as f64 - self.offset_ns as f64 / 1e9;
            let acked: u64 = s.acked.iter().sum();
            let _ = write!(
                out,
                "{},{t_s:.3},{},{acked}",
                self.first_unix_s + i as u64,
                s.due
            );
            for t in 0..topics.len() {
                let _ = write!(out, ",{}", s.acked.get(t).copied().unwrap_or(0));
            }
            match &s.latency_us {
                Some(h) => {
                    let ms = |us: u64| us as f64 / 1000.0;
                    let _ = writeln!(
                        out,
                        ",{:.3},{:.3},{:.3}",
                        ms(h.value_at_quantile(0.5)),
                        ms(h.value_at_quantile(0.99)),
                        ms(h.max())
                    );
                }
                None => out.push_str(",,,\n"),
            }
        }
        out
    }
}

/// A CSV field, quoted if it must be.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;
    const MS: u64 = 1_000_000;

    #[test]
    fn seconds_are_unix_seconds_and_tasks_merge() {
        // The run starts 0.75 s into Unix second 100.
        let start = 100 * S + 750 * MS;
        let mut a = Timeline::new(start);
        let mut b = Timeline::new(start);
        a.due(0);
        a.acked(0, 0, 100_000); // Unix second 100, 100 µs
        a.acked(1, 250 * MS, 250 * MS + 200_000); // 101, 200 µs
        b.due(300 * MS); // 101
        b.acked(1, 1_300 * MS, 1_300 * MS + 150_000); // 102, 150 µs
        for i in 0..100 {
            b.acked(0, 1_300 * MS, 1_300 * MS + (i + 1) * 1000); // 102
        }
        // A slow one, 1.5 s: histograms grow to hold it (2 significant
        // digits: within 1%).
        b.acked(2, 2_000 * MS, 3_500 * MS); // 104
        a.merge(&b);
        assert_eq!(a.acked_per_topic(3), [101, 2, 1]);
        let csv = a.csv(&["t0".into(), "t,1".into(), "t2".into()]);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(
            lines[..5],
            [
                "unix_s,t_s,due,acked,acked_t0,\"acked_t,1\",acked_t2,p50_ms,p99_ms,max_ms",
                "100,-0.750,1,1,1,0,0,0.100,0.100,0.100",
                "101,0.250,1,1,0,1,0,0.200,0.200,0.200",
                "102,1.250,0,101,100,1,0,0.051,0.100,0.150",
                "103,2.250,0,0,0,0,0,,,",
            ]
        );
        let slow: Vec<f64> = lines[5]
            .split(',')
            .skip(7)
            .map(|c| c.parse().unwrap())
            .collect();
        assert!(lines[5].starts_with("104,3.250,0,1,0,0,1,"), "{}", lines[5]);
        assert!(
            slow.iter().all(|ms| (1500.0..1515.0).contains(ms)),
            "{slow:?}"
        );
    }

    #[test]
    fn seconds_without_acks_have_empty_latency_cells() {
        let mut t = Timeline::new(0);
        t.due(2 * S + 1);
        let csv = t.csv(&["x".into()]);
        assert_eq!(csv.lines().nth(1), Some("0,0.000,0,0,0,,,"));
        assert_eq!(csv.lines().nth(3), Some("2,2.000,1,0,0,,,"));
    }
}

//! What a run produced: `summary.json` (the machine-readable record), one
//! `.hgrm` percentile distribution per latency kind, `report.md` (command,
//! machine, tables), `latency.svg` and, when producers ran, `timeline.csv`
//! (see [`crate::timeline`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::plot::{latency_by_percentile_svg, Series};
use crate::stats::{fmt_ms, hgrm, percentile_curve, Percentiles, COLUMNS};

/// Latency kinds, in the order reports list them.
pub const PUBLISH_ACK: &str = "publish_ack";
pub const PUBLISH_ACK_UNCORRECTED: &str = "publish_ack_uncorrected";
pub const END_TO_END: &str = "end_to_end";
pub const END_TO_END_UNCORRECTED: &str = "end_to_end_uncorrected";
pub const KINDS: [&str; 4] = [
    PUBLISH_ACK,
    PUBLISH_ACK_UNCORRECTED,
    END_TO_END,
    END_TO_END_UNCORRECTED,
];

/// How a report names a latency kind.
pub fn kind_label(kind: &str, open_loop: bool) -> &'static str {
    match (kind, open_loop) {
        (PUBLISH_ACK, true) => "publish→ack (from intended send, CO-corrected)",
        (PUBLISH_ACK, false) => "publish→ack",
        (PUBLISH_ACK_UNCORRECTED, _) => "publish→ack, uncorrected (from actual send)",
        (END_TO_END, true) => "publish→deliver (from intended send, CO-corrected)",
        (END_TO_END, false) => "publish→deliver",
        (END_TO_END_UNCORRECTED, _) => "publish→deliver, uncorrected (from actual send)",
        _ => "other",
    }
}

/// Everything a run measured, as written to `summary.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub name: String,
    /// The command line, as typed (arguments joined by spaces).
    pub command: String,
    pub started_utc: String,
    pub loadgen_version: String,
    pub target: TargetInfo,
    pub workload: Workload,
    pub results: Results,
    /// Latency kind (see [`KINDS`]) → percentiles, in milliseconds.
    pub latency: BTreeMap<String, Percentiles>,
    /// What the broker stored in the run's topics before and after (for
    /// checking the counts against the broker, and the log bandwidth).
    pub stored: Option<Stored>,
    pub machine: MachineInfo,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TargetInfo {
    /// `sprawl` or `nats-jetstream`.
    pub kind: String,
    pub address: String,
    pub server_version: String,
    /// What an acknowledgement promises on this target, in words.
    pub durability: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Workload {
    pub mode: String,
    pub producers: usize,
    pub consumers: usize,
    pub topics: usize,
    pub partitions: u32,
    pub size: String,
    pub size_mean_bytes: f64,
    pub batch: usize,
    pub linger_ms: f64,
    pub acks: String,
    pub open_loop: bool,
    pub rate_per_s: Option<f64>,
    pub messages: Option<u64>,
    pub duration_s: Option<f64>,
    pub warmup_s: f64,
    pub max_in_flight: usize,
    /// Sprawl: batches per partition in flight per producer.
    #[serde(default)]
    pub batches_in_flight: usize,
    /// A load shape beyond a steady rate spread evenly (trace, bursts,
    /// hot partitions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scenario: Option<Scenario>,
}

/// The load-shape parameters of a run, as given and as resolved.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Scenario {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_trace: Option<TraceScenario>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bursts: Option<BurstScenario>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hot_partitions: Option<HotScenario>,
}

/// `--rate-trace`: the total rate follows a recorded trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceScenario {
    pub path: String,
    pub samples: usize,
    /// Trace seconds per second of the run.
    pub speedup: f64,
    /// The trace's largest value becomes this rate.
    pub peak_rate_per_s: f64,
    /// The average over one pass of the trace.
    pub mean_rate_per_s: f64,
    /// Seconds of the run one pass takes (it then repeats).
    pub pass_s: f64,
}

/// `--burst-*`: periodic bursts on some topics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BurstScenario {
    /// Windows start at multiples of the period in Unix time.
    pub period_s: f64,
    pub duration_s: f64,
    /// The bursting topics together, during a burst.
    pub rate_per_s: f64,
    pub topics: Vec<String>,
}

/// `--hot-*`: a share of each topic's messages to a few partitions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HotScenario {
    pub share: f64,
    /// Topic → its hot partitions.
    pub partitions: BTreeMap<String, Vec<u32>>,
    /// With --hot-on-shard: the shard whose partitions are hot, of how many.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_shard: Option<(usize, usize)>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Results {
    /// Messages handed to the client, warm-up included.
    pub sent_total: u64,
    /// Of those, acknowledged (as `acks` promises), warm-up included.
    pub acked_total: u64,
    pub failed_total: u64,
    /// Messages of this run received by consumers, warm-up included.
    pub delivered_total: u64,
    /// Messages (acked, or consumed) after warm-up: the throughput's count.
    pub measured_messages: u64,
    pub measured_bytes: u64,
    /// From the end of warm-up to the last measured message.
    pub elapsed_s: f64,
    pub msgs_per_s: f64,
    /// Payload megabytes (10^6 bytes) per second.
    pub mb_per_s: f64,
    /// From the first send to the last acknowledgement, warm-up included.
    pub active_s: f64,
    /// CPU time (user + system) loadgen itself used during the run: on a
    /// shared machine, what the broker did not get.
    #[serde(default)]
    pub loadgen_cpu_s: f64,
    /// The first failure, if any failed.
    pub first_error: Option<String>,
    /// Acknowledged per topic, warm-up included (empty without producers).
    #[serde(default)]
    pub acked_by_topic: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Stored {
    pub messages_before: u64,
    pub messages_after: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

impl Stored {
    pub fn messages(&self) -> u64 {
        self.messages_after.saturating_sub(self.messages_before)
    }

    pub fn bytes(&self) -> u64 {
        self.bytes_after.saturating_sub(self.bytes_before)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MachineInfo {
    pub cpu_model: String,
    pub cores: usize,
    pub memory_bytes: u64,
    pub kernel: String,
    pub file_system: String,
    pub commit: String,
    #[serde(skip)]
    pub markdown: String,
}

impl From<sprawl_io::machine::Machine> for MachineInfo {
    fn from(m: sprawl_io::machine::Machine) -> Self {
        Self {
            markdown: m.to_markdown(),
            cpu_model: m.cpu_model,
            cores: m.cores,
            memory_bytes: m.memory_bytes,
            kernel: m.kernel,
            file_system: m.file_system,
            commit: m.commit,
        }
    }
}

/// Thousands separators: 1234567 → "1,234,567".
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl Summary {
    /// The result tables (Markdown; also what the terminal shows).
    pub fn tables(&self) -> String {
        let r = &self.results;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "| target | mode | msgs/s | MB/s | messages | seconds | failed |\n|---|---|---:|---:|---:|---:|---:|"
        );
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.1} | {} | {:.2} | {} |",
            self.target.kind,
            self.workload.mode,
            thousands(r.msgs_per_s.round() as u64),
            r.mb_per_s,
            thousands(r.measured_messages),
            r.elapsed_s,
            r.failed_total
        );
        if !self.latency.is_empty() {
            let titles: Vec<&str> = COLUMNS.iter().map(|c| c.0).collect();
            let _ = writeln!(
                out,
                "\n| latency (ms) | count | {} | max |\n|---|---:|{}---:|",
                titles.join(" | "),
                "---:|".repeat(COLUMNS.len())
            );
            for kind in KINDS {
                if let Some(p) = self.latency.get(kind) {
                    let cells: Vec<String> = p.row().iter().map(|&v| fmt_ms(v)).collect();
                    let _ = writeln!(
                        out,
                        "| {} | {} | {} |",
                        kind_label(kind, self.workload.open_loop),
                        thousands(p.count),
                        cells.join(" | ")
                    );
                }
            }
        }
        out
    }

    /// `report.md`.
    pub fn markdown(&self) -> String {
        let w = &self.workload;
        let mut md = String::new();
        let _ = writeln!(md, "# loadgen: {}\n", self.name);
        let _ = writeln!(md, "Command: `{}`\n", self.command);
        let _ = writeln!(
            md,
            "Started {} against {} at `{}` (server {}). loadgen {}.\n",
            self.started_utc,
            self.target.kind,
            self.target.address,
            self.target.server_version,
            self.loadgen_version
        );
        let _ = writeln!(md, "Durability: {}\n", self.target.durability);
        let _ = writeln!(md, "## Workload\n");
        let rate = match (w.open_loop, w.rate_per_s) {
            (false, _) => "closed loop (max speed)".to_string(),
            (true, Some(r)) => format!("open loop at {} msgs/s", thousands(r.round() as u64)),
            (true, None) => "open loop, following a trace".to_string(),
        };
        let _ = writeln!(
            md,
            "{} · {} producers, {} consumers · {} topics × {} partitions · size {} B · batch {} · linger {} ms · acks {} · {} · {} batches in flight per partition (Sprawl) · warm-up {} s · {}\n",
            w.mode,
            w.producers,
            w.consumers,
            w.topics,
            w.partitions,
            w.size,
            w.batch,
            w.linger_ms,
            w.acks,
            rate,
            w.batches_in_flight,
            w.warmup_s,
            match (w.messages, w.duration_s) {
                (Some(n), _) => format!("{} messages", thousands(n)),
                (None, Some(d)) => format!("{d} s"),
                (None, None) => "until done".into(),
            }
        );
        if let Some(sc) = &w.scenario {
            let _ = writeln!(md, "### Load shape\n\n{}", sc.markdown());
        }
        let _ = writeln!(md, "## Machine\n\n{}", self.machine.markdown);
        let _ = writeln!(md, "## Results\n\n{}", self.tables());
        if let Some(s) = &self.stored {
            let _ = writeln!(
                md,
                "Stored by the broker during the run: {} messages, {:.1} MB (acknowledged: {}).\n",
                thousands(s.messages()),
                s.bytes() as f64 / 1e6,
                thousands(self.results.acked_total)
            );
        }
        if let Some(e) = &self.results.first_error {
            let _ = writeln!(md, "First failure: `{e}`\n");
        }
        if !self.results.acked_by_topic.is_empty() {
            let _ = writeln!(
                md,
                "Acknowledged per topic: {}. Per second (due, acked in total and per topic, publish→ack p50/p99/max): [`timeline.csv`](timeline.csv).\n",
                self.results
                    .acked_by_topic
                    .iter()
                    .map(|(t, n)| format!("{t} {}", thousands(*n)))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        if !self.latency.is_empty() {
            let _ = writeln!(
                md,
                "![latency by percentile](latency.svg)\n\nPercentile distributions: {}.",
                KINDS
                    .iter()
                    .filter(|k| self.latency.contains_key(**k))
                    .map(|k| format!("[`{k}.hgrm`]({k}.hgrm)"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        md
    }

    /// Writes `summary.json`, `report.md`, a `.hgrm` file per latency kind,
    /// `timeline.csv` if given and, if any kind has samples, `latency.svg`.
    pub fn write(
        &self,
        dir: &Path,
        histograms: &BTreeMap<String, Histogram<u64>>,
        timeline_csv: Option<&str>,
    ) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
        };
        write("summary.json", &serde_json::to_string_pretty(self)?)?;
        for (kind, h) in histograms {
            write(&format!("{kind}.hgrm"), &hgrm(h))?;
        }
        write("report.md", &self.markdown())?;
        if let Some(csv) = timeline_csv {
            write("timeline.csv", csv)?;
        }
        let series: Vec<Series> = KINDS
            .iter()
            .filter_map(|k| histograms.get(*k).map(|h| (k, h)))
            .filter(|(_, h)| !h.is_empty())
            .map(|(k, h)| Series {
                label: kind_label(k, self.workload.open_loop).to_string(),
                points: percentile_curve(h, 1e6),
            })
            .collect();
        // A consume run measures no latency: no plot.
        if !series.is_empty() {
            let title = format!("{}: {} latency by percentile", self.name, self.target.kind);
            write("latency.svg", &latency_by_percentile_svg(&title, &series)?)?;
        }
        Ok(())
    }
}

impl Scenario {
    /// One line per part of the shape (Markdown list).
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        if let Some(t) = &self.rate_trace {
            let _ = writeln!(
                md,
                "- total rate from the trace `{}` ({} samples) at {}× speed, peak {} msgs/s, mean {} msgs/s, one pass in {:.0} s (then it repeats)",
                t.path,
                t.samples,
                t.speedup,
                thousands(t.peak_rate_per_s.round() as u64),
                thousands(t.mean_rate_per_s.round() as u64),
                t.pass_s
            );
        }
        if let Some(b) = &self.bursts {
            let _ = writeln!(
                md,
                "- bursts of {} s every {} s (aligned to Unix time) on {}: {} msgs/s together during a burst",
                b.duration_s,
                b.period_s,
                b.topics.join(", "),
                thousands(b.rate_per_s.round() as u64)
            );
        }
        if let Some(h) = &self.hot_partitions {
            let on = h.on_shard.map_or(String::new(), |(k, s)| {
                format!(" (those on shard {k} of {s} at first)")
            });
            let parts: Vec<String> = h
                .partitions
                .iter()
                .map(|(t, p)| format!("{t}: {p:?}"))
                .collect();
            let _ = writeln!(
                md,
                "- {:.0}% of each topic's messages to its hot partitions{on}: {}",
                h.share * 100.0,
                parts.join("; ")
            );
        }
        md
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}

//! The command line.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::driver::AckLevel;
use crate::placement::{partitions_on_shard, PartitionChoice, PartitionList};
use crate::run::Mode;
use crate::schedule::SizeDist;
use crate::shape::{BaseRate, Bursts, LoadShape, Trace};

#[derive(Parser, Debug)]
#[command(
    name = "loadgen",
    version,
    about = "Benchmarks a Sprawl node (or NATS JetStream, for comparison): throughput and HDR latency percentiles"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Producers only: publish→ack latency and throughput.
    Produce(WorkloadArgs),
    /// Consumers only: read back what the topics hold.
    Consume(WorkloadArgs),
    /// Producers and consumers at once: publish→ack and publish→deliver.
    Pubsub(WorkloadArgs),
    /// Builds a suite's comparison.md from its runs' summary.json files.
    Compare(CompareArgs),
}

#[derive(Args, Debug, Clone)]
pub struct WorkloadArgs {
    /// Sprawl node (QUIC address).
    #[arg(long, default_value = "127.0.0.1:7470")]
    pub node: String,
    /// CA certificate (PEM) the node's certificate must verify against
    /// (a self-started node's is <data-dir>/tls/cert.pem).
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// Do not verify the node's certificate (only when --ca is not given).
    #[arg(long, conflicts_with = "ca")]
    pub insecure: bool,
    /// Send every request through --node, which forwards those for
    /// partitions it does not lead, instead of straight to each partition's
    /// leader (measures forwarding).
    #[arg(long)]
    pub via_node: bool,
    /// Replication factor of the topics loadgen creates (a cluster only).
    /// Default: the cluster's (3 on 3 or more nodes, else 1).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub replication_factor: Option<u16>,
    /// Run against a NATS JetStream server instead: nats://HOST:PORT.
    #[arg(long)]
    pub target: Option<String>,
    #[arg(long, default_value_t = 4)]
    pub producers: usize,
    #[arg(long, default_value_t = 1)]
    pub consumers: usize,
    #[arg(long, default_value_t = 1)]
    pub topics: usize,
    /// Partitions per topic (NATS: one stream per partition).
    #[arg(long, default_value_t = 4)]
    pub partitions: u32,
    /// Topic names are <prefix>-<i>.
    #[arg(long, default_value = "loadgen")]
    pub topic_prefix: String,
    /// Message size in bytes: 1024, a uniform range 512-4096, or weighted
    /// choices 100:9,10000:1 (at least 32: the timestamp header).
    #[arg(long, default_value = "1024")]
    pub size: SizeDist,
    /// Messages per batch (Sprawl: records per ProduceRequest; NATS:
    /// publishes in flight before awaiting their acks). Closed loop: each
    /// producer's window.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// How long a batch waits for more messages (e.g. 0, 500us, 5ms).
    /// Default: 5ms in closed loop (windows are flushed anyway), 0 in open
    /// loop (send whenever the partition has nothing in flight).
    #[arg(long, value_parser = parse_duration_ms)]
    pub linger: Option<Duration>,
    #[arg(long, value_enum, default_value_t = AckLevel::Durable)]
    pub acks: AckLevel,
    /// Measured messages to send (consume: to read). Without it and
    /// without --duration: 10 seconds.
    #[arg(long)]
    pub messages: Option<u64>,
    /// Seconds to measure (e.g. 10, 2.5, 500ms).
    #[arg(long, value_parser = parse_duration_s)]
    pub duration: Option<Duration>,
    /// Seconds to run before measuring (not counted).
    #[arg(long, value_parser = parse_duration_s, default_value = "0")]
    pub warmup: Duration,
    /// Open loop at this many messages per second in total, latency
    /// measured from each message's intended send time. Without it:
    /// closed loop at maximum speed.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Open loop following a recorded load: a CSV of `timestamp,value`
    /// rows (Unix seconds or YYYY-MM-DD HH:MM:SS), the values the total
    /// rate over time, interpolated linearly between samples and repeated
    /// when the trace runs out. Needs --trace-peak-rate.
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "rate",
        requires = "trace_peak_rate"
    )]
    pub rate_trace: Option<PathBuf>,
    /// Trace seconds replayed per second (60: a recorded minute a second).
    #[arg(
        long,
        value_name = "X",
        default_value_t = 60.0,
        requires = "rate_trace"
    )]
    pub trace_speedup: f64,
    /// The trace is rescaled so that its largest value is this many
    /// msgs/s.
    #[arg(long, value_name = "R", requires = "rate_trace")]
    pub trace_peak_rate: Option<f64>,
    /// Periodic bursts (open loop): every this long (e.g. 60s), aligned to
    /// multiples of the period in Unix time so that separate loadgen
    /// processes burst together.
    #[arg(
        long,
        value_name = "DURATION",
        value_parser = parse_duration_s,
        requires_all = ["burst_duration", "burst_rate"]
    )]
    pub burst_period: Option<Duration>,
    /// How long each burst lasts (less than --burst-period).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_s, requires = "burst_period")]
    pub burst_duration: Option<Duration>,
    /// Msgs/s of the bursting topics together during a burst (each gets
    /// an equal part), instead of their share of --rate or of the trace.
    #[arg(long, value_name = "R", requires = "burst_period")]
    pub burst_rate: Option<f64>,
    /// Only the first N topics burst; the others keep their steady share.
    /// Default: all.
    #[arg(long, value_name = "N", requires = "burst_period")]
    pub burst_topics: Option<usize>,
    /// Skewed placement: these partitions of every topic (e.g. 0,3,5) get
    /// --hot-share of its messages, evenly; the other partitions the rest.
    #[arg(
        long,
        value_name = "LIST",
        requires = "hot_share",
        conflicts_with = "hot_on_shard"
    )]
    pub hot_partitions: Option<PartitionList>,
    /// The share of each topic's messages (in (0, 1]) that goes to its hot
    /// partitions.
    #[arg(long, value_name = "SHARE")]
    pub hot_share: Option<f64>,
    /// Hot partitions: those of each topic that the node's default
    /// placement puts on shard K (needs --node-shards, the node's --shards).
    #[arg(long, value_name = "K", requires_all = ["hot_share", "node_shards"])]
    pub hot_on_shard: Option<usize>,
    /// The node's shard count, for --hot-on-shard.
    #[arg(long, value_name = "S", requires = "hot_on_shard")]
    pub node_shards: Option<usize>,
    /// Messages in flight per producer at most (open loop).
    #[arg(long, default_value_t = 100_000)]
    pub max_in_flight: usize,
    /// Sprawl: batches of one partition a producer has in flight at once
    /// (the client's max_in_flight_per_partition; above 1 the node may
    /// append concurrent batches in either order).
    #[arg(long, default_value_t = 1)]
    pub batches_in_flight: usize,
    /// Name of the run (report directory and title). Default:
    /// <target>-<mode>.
    #[arg(long)]
    pub name: Option<String>,
    /// Report directory. Default: bench-results/<UTC date>-<name>/.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Write no report files.
    #[arg(long, conflicts_with = "report")]
    pub no_report: bool,
    /// Delete the topics (NATS: streams) after the run.
    #[arg(long)]
    pub delete_topics: bool,
    /// No progress line.
    #[arg(long)]
    pub quiet: bool,
    /// Seed of message sizes.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Runtime worker threads (default: cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

impl WorkloadArgs {
    /// Topic names: <prefix>-<i>.
    pub fn topic_names(&self) -> Vec<String> {
        (0..self.topics)
            .map(|i| format!("{}-{i}", self.topic_prefix))
            .collect()
    }

    /// Whether producers run open loop (at a rate, or following a trace).
    pub fn open_loop(&self) -> bool {
        self.rate.is_some() || self.rate_trace.is_some()
    }

    /// Checks what clap cannot: values in range, and load-shape flags only
    /// where they mean something. `--rate-trace`'s file is read later.
    pub fn validate(&self, mode: Mode) -> Result<(), String> {
        let shaped = self.rate_trace.is_some()
            || self.burst_period.is_some()
            || self.hot_partitions.is_some()
            || self.hot_on_shard.is_some();
        if mode == Mode::Consume && shaped {
            return Err(
                "--rate-trace, --burst-* and --hot-* shape what producers send; consume has no producers"
                    .into(),
            );
        }
        if let Some(r) = self.rate {
            if !(r.is_finite() && r > 0.0) {
                return Err(format!(
                    "--rate must be a positive number of msgs/s, not {r}"
                ));
            }
        }
        if self.rate_trace.is_some() {
            if !(self.trace_speedup.is_finite() && self.trace_speedup > 0.0) {
                return Err(format!(
                    "--trace-speedup must be positive, not {}",
                    self.trace_speedup
                ));
            }
            if let Some(r) = self
                .trace_peak_rate
                .filter(|r| !(r.is_finite() && *r > 0.0))
            {
                return Err(format!("--trace-peak-rate must be positive, not {r}"));
            }
        }
        if self.burst_period.is_some() {
            if !self.open_loop() {
                return Err(
                    "--burst-period needs an open loop: give --rate or --rate-trace".into(),
                );
            }
            if let Some(r) = self.burst_rate.filter(|r| !(r.is_finite() && *r >= 0.0)) {
                return Err(format!("--burst-rate must be at least 0 msgs/s, not {r}"));
            }
            if let Some(n) = self.burst_topics.filter(|&n| n == 0 || n > self.topics) {
                return Err(format!(
                    "--burst-topics {n}: there are {} topics (--topics)",
                    self.topics
                ));
            }
            self.bursts()?;
        }
        if self.hot_share.is_some() && self.hot_partitions.is_none() && self.hot_on_shard.is_none()
        {
            return Err("--hot-share needs --hot-partitions or --hot-on-shard".into());
        }
        if let (Some(k), Some(s)) = (self.hot_on_shard, self.node_shards) {
            if k >= s {
                return Err(format!(
                    "--hot-on-shard {k}: the node's shards are 0..{s} (--node-shards)"
                ));
            }
        }
        self.placements().map(|_| ())
    }

    fn bursts(&self) -> Result<Option<(Bursts, f64)>, String> {
        let (Some(period), Some(duration), Some(rate)) =
            (self.burst_period, self.burst_duration, self.burst_rate)
        else {
            return Ok(None);
        };
        let bursts = Bursts::new(
            period.as_nanos() as u64,
            duration.as_nanos() as u64,
            self.burst_topics.unwrap_or(self.topics),
        )
        .map_err(|e| format!("--burst-duration/--burst-period: {e}"))?;
        Ok(Some((bursts, rate)))
    }

    /// Each topic's partition choice (uniform without --hot-*).
    pub fn placements(&self) -> Result<Vec<PartitionChoice>, String> {
        let share = self.hot_share.unwrap_or(1.0);
        self.topic_names()
            .iter()
            .map(|topic| {
                let hot = match (&self.hot_partitions, self.hot_on_shard, self.node_shards) {
                    (Some(list), _, _) => list.0.clone(),
                    (None, Some(k), Some(s)) if k < s => {
                        partitions_on_shard(topic, self.partitions, k, s)
                    }
                    _ => {
                        return Ok(PartitionChoice::Uniform {
                            partitions: self.partitions,
                        })
                    }
                };
                if hot.is_empty() {
                    return Err(format!(
                        "the node places none of {topic}'s {} partitions on shard {} at first: \
                         give more --partitions or another --hot-on-shard",
                        self.partitions,
                        self.hot_on_shard.unwrap_or(0)
                    ));
                }
                PartitionChoice::skewed(self.partitions, &hot, share).map_err(|e| {
                    if self.hot_partitions.is_some() {
                        format!("--hot-partitions: {e}")
                    } else {
                        format!("--hot-on-shard, topic {topic}: {e}")
                    }
                })
            })
            .collect()
    }

    /// The open-loop load shape (`None`: closed loop). `trace` is the
    /// `--rate-trace` file, read and rescaled.
    pub fn load_shape(&self, trace: Option<Trace>) -> Result<Option<LoadShape>, String> {
        let base = match (self.rate, trace) {
            (_, Some(t)) => BaseRate::Trace(std::sync::Arc::new(t)),
            (Some(r), None) => BaseRate::Constant(r),
            (None, None) => return Ok(None),
        };
        Ok(Some(LoadShape {
            base,
            topics: self.topics,
            bursts: self.bursts()?,
        }))
    }
}

#[derive(Args, Debug, Clone)]
pub struct CompareArgs {
    /// The suite directory: one sub-directory per run (with summary.json),
    /// optionally device-limit.txt, node.json and nats.txt.
    #[arg(long)]
    pub suite: PathBuf,
}

/// `1.5`, `1.5s`, `500ms`, `250us`, `100ns` → a duration (bare = seconds).
pub fn parse_duration_s(s: &str) -> Result<Duration, String> {
    parse_duration(s, 1.0)
}

/// Like [`parse_duration_s`], but a bare number is milliseconds.
pub fn parse_duration_ms(s: &str) -> Result<Duration, String> {
    parse_duration(s, 1e-3)
}

fn parse_duration(s: &str, bare_unit_s: f64) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit_s) = [
        ("ns", 1e-9),
        ("us", 1e-6),
        ("µs", 1e-6),
        ("ms", 1e-3),
        ("s", 1.0),
    ]
    .iter()
    .find_map(|(suffix, unit)| s.strip_suffix(suffix).map(|n| (n, *unit)))
    .unwrap_or((s, bare_unit_s));
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|e| format!("duration {s:?}: {e}"))?;
    if !(value.is_finite() && value >= 0.0) {
        return Err(format!("duration {s:?} must be a non-negative number"));
    }
    Ok(Duration::from_secs_f64(value * unit_s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_s("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration_s("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration_ms("5"), Ok(Duration::from_millis(5)));
        assert_eq!(parse_duration_ms("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration_ms("0"), Ok(Duration::ZERO));
        assert!(parse_duration_s("-1").is_err());
        assert!(parse_duration_s("soon").is_err());
    }

    #[test]
    fn the_command_line_parses() {
        let cli = Cli::try_parse_from([
            "loadgen", "produce", "--batch", "64", "--acks", "none", "--size", "100-200", "--rate",
            "1000", "--linger", "1ms",
        ])
        .unwrap();
        let Command::Produce(a) = cli.command else {
            panic!("not produce")
        };
        assert_eq!(a.batch, 64);
        assert_eq!(a.acks, AckLevel::None);
        assert_eq!(a.size, SizeDist::Uniform { min: 100, max: 200 });
        assert_eq!(a.linger, Some(Duration::from_millis(1)));
    }

    /// `loadgen produce ARGS...`, parsed and validated.
    fn produce(args: &[&str]) -> Result<WorkloadArgs, String> {
        let cli = Cli::try_parse_from(["loadgen", "produce"].iter().chain(args))
            .map_err(|e| e.to_string())?;
        let Command::Produce(a) = cli.command else {
            panic!("not produce")
        };
        a.validate(Mode::Produce)?;
        Ok(a)
    }

    fn refused(args: &[&str], why: &str) {
        match produce(args) {
            Ok(a) => panic!("{args:?} accepted: {a:?}"),
            Err(e) => assert!(e.contains(why), "{args:?}: {e:?} lacks {why:?}"),
        }
    }

    #[test]
    fn trace_flags() {
        let a = produce(&["--rate-trace", "t.csv", "--trace-peak-rate", "5000"]).unwrap();
        assert!(a.open_loop());
        assert_eq!(a.trace_speedup, 60.0);
        let trace = Trace::new(&[(0, 1.0), (300, 2.0)], a.trace_speedup, 5000.0).unwrap();
        let shape = a.load_shape(Some(trace)).unwrap().unwrap();
        assert!(matches!(shape.base, BaseRate::Trace(_)));
        refused(&["--rate-trace", "t.csv"], "--trace-peak-rate");
        refused(
            &[
                "--rate-trace",
                "t.csv",
                "--trace-peak-rate",
                "1",
                "--rate",
                "9",
            ],
            "cannot be used with",
        );
        refused(&["--trace-speedup", "10"], "--rate-trace");
        refused(&["--trace-peak-rate", "10"], "--rate-trace");
        refused(
            &["--rate-trace", "t.csv", "--trace-peak-rate", "0"],
            "--trace-peak-rate must be positive",
        );
        refused(
            &[
                "--rate-trace",
                "t.csv",
                "--trace-peak-rate",
                "9",
                "--trace-speedup",
                "0",
            ],
            "--trace-speedup must be positive",
        );
        refused(&["--rate", "0"], "--rate must be a positive");
    }

    #[test]
    fn burst_flags() {
        let burst = [
            "--burst-period",
            "60s",
            "--burst-duration",
            "10s",
            "--burst-rate",
            "9000",
        ];
        let args: Vec<&str> = ["--rate", "1000", "--topics", "4", "--burst-topics", "2"]
            .iter()
            .chain(&burst)
            .copied()
            .collect();
        let a = produce(&args).unwrap();
        let shape = a.load_shape(None).unwrap().unwrap();
        let (bursts, rate) = shape.bursts.unwrap();
        assert_eq!(
            (bursts.period_ns, bursts.duration_ns, bursts.topics, rate),
            (60_000_000_000, 10_000_000_000, 2, 9000.0)
        );
        // Without --burst-topics, every topic bursts.
        let args: Vec<&str> = ["--rate", "1000", "--topics", "3"]
            .iter()
            .chain(&burst)
            .copied()
            .collect();
        let a = produce(&args).unwrap();
        assert_eq!(
            a.load_shape(None)
                .unwrap()
                .unwrap()
                .bursts
                .unwrap()
                .0
                .topics,
            3
        );

        refused(&burst, "needs an open loop");
        refused(
            &["--rate", "1", "--burst-period", "60s"],
            "--burst-duration",
        );
        refused(&["--rate", "1", "--burst-rate", "5"], "--burst-period");
        refused(
            &[
                "--rate",
                "1",
                "--burst-period",
                "10s",
                "--burst-duration",
                "10s",
                "--burst-rate",
                "5",
            ],
            "less than its period",
        );
        refused(
            &["--rate", "1", "--topics", "2", "--burst-topics", "3"]
                .iter()
                .chain(&burst)
                .copied()
                .collect::<Vec<_>>(),
            "--burst-topics 3: there are 2 topics",
        );
        refused(
            &[
                "--rate",
                "1",
                "--burst-period",
                "60s",
                "--burst-duration",
                "1s",
                "--burst-rate=-5",
            ],
            "--burst-rate must be at least 0",
        );
    }

    #[test]
    fn hot_partition_flags() {
        let a = produce(&[
            "--partitions",
            "8",
            "--hot-partitions",
            "0,3,5",
            "--hot-share",
            "0.9",
        ])
        .unwrap();
        let placements = a.placements().unwrap();
        assert_eq!(placements.len(), 1);
        assert_eq!(placements[0].hot(), Some(&[0, 3, 5][..]));
        // Closed loop is fine: no rate is involved.
        assert!(!a.open_loop());

        refused(&["--hot-partitions", "1"], "--hot-share");
        refused(
            &["--hot-share", "0.5"],
            "--hot-share needs --hot-partitions",
        );
        refused(
            &[
                "--partitions",
                "4",
                "--hot-partitions",
                "4",
                "--hot-share",
                "0.5",
            ],
            "hot partition 4 does not exist",
        );
        refused(
            &[
                "--partitions",
                "2",
                "--hot-partitions",
                "0,1",
                "--hot-share",
                "0.5",
            ],
            "every partition is hot",
        );
        refused(
            &["--hot-on-shard", "1", "--hot-share", "0.9"],
            "--node-shards",
        );
        refused(&["--node-shards", "2"], "--hot-on-shard");
        refused(
            &[
                "--hot-on-shard",
                "2",
                "--node-shards",
                "2",
                "--hot-share",
                "0.9",
            ],
            "shards are 0..2",
        );
        refused(
            &[
                "--hot-on-shard",
                "1",
                "--node-shards",
                "2",
                "--hot-share",
                "0.9",
                "--hot-partitions",
                "0",
            ],
            "cannot be used with",
        );
    }

    #[test]
    fn hot_on_shard_picks_each_topics_partitions_on_that_shard() {
        let a = produce(&[
            "--topics",
            "3",
            "--partitions",
            "12",
            "--hot-on-shard",
            "1",
            "--node-shards",
            "2",
            "--hot-share",
            "0.8",
        ])
        .unwrap();
        let placements = a.placements().unwrap();
        for (topic, choice) in a.topic_names().iter().zip(&placements) {
            let hot = choice.hot().unwrap();
            assert!(!hot.is_empty());
            assert_eq!(hot, partitions_on_shard(topic, 12, 1, 2));
        }
        // One partition, placed on one of two shards: the other has none.
        let empty_shard = (0..2)
            .find(|&k| partitions_on_shard("loadgen-0", 1, k, 2).is_empty())
            .unwrap()
            .to_string();
        refused(
            &[
                "--partitions",
                "1",
                "--hot-on-shard",
                &empty_shard,
                "--node-shards",
                "2",
                "--hot-share",
                "1",
            ],
            "places none of loadgen-0's 1 partitions",
        );
    }

    #[test]
    fn consume_refuses_load_shapes() {
        let cli = Cli::try_parse_from([
            "loadgen",
            "consume",
            "--hot-partitions",
            "0",
            "--hot-share",
            "0.5",
        ])
        .unwrap();
        let Command::Consume(a) = cli.command else {
            panic!("not consume")
        };
        assert!(a
            .validate(Mode::Consume)
            .unwrap_err()
            .contains("no producers"));
        assert!(a.validate(Mode::Produce).is_ok());
    }
}

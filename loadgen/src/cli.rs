//! The command line.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::driver::AckLevel;
use crate::schedule::SizeDist;

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
}

//! The command line: flags, subcommands and the parsers of their values.
//! Everything here is checked by clap before any connection is made, so a
//! malformed value exits with status 2 and clap's message.

use std::path::PathBuf;
use std::time::Duration;

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand, ValueEnum};
use sprawl_client::{Acks, StartPosition};
use sprawl_forecast::{Resource, ScopeKind, Strategy};

const EXIT_STATUS_HELP: &str = "\
Exit status: 0 success, 1 failure, 2 usage error, 3 publish only partly acknowledged.";

const REBALANCE_HELP: &str = "\
The node balances its shards by moving partitions between them, one move at a time; a \
partition's clients see at most a retryable error while it moves. `plan` only shows what \
would move, `apply` moves it. Auto mode has the node plan and apply by itself every interval, \
with brakes against flapping: `rebalance auto predictive|reactive|off` sets it, and \
`rebalance apply --auto [--strategy S]` is the same as `rebalance auto S`.

Imbalance is the busiest shard's load over the mean shard load: 1.50× mean (+50%) means the \
busiest shard carries half again the mean. Load is messages produced per second.

These commands talk to the node's admin HTTP endpoint (--admin), not its QUIC port.";

const ADMIN_DEFAULT: &str = "127.0.0.1:7480";

const CONSUME_JSON_HELP: &str = "\
With --format json, one object per line: topic, partition, offset, timestamp_ms, key, value, \
headers (a list of {name, value}). Bytes that are valid UTF-8 are JSON strings; other bytes \
are standard base64 under the field name plus _base64 instead (key_base64, value_base64, \
name_base64). A message without a key has \"key\": null.";

/// Operate a Sprawl node: topics, publish, consume, status, load and
/// rebalancing.
#[derive(Parser, Debug)]
#[command(name = "sprawlctl", version, after_help = EXIT_STATUS_HELP)]
pub struct Cli {
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// Output: `text` (tables, one value per line) or `json` (for machines).
    #[arg(
        long,
        global = true,
        value_enum,
        default_value_t = Format::Text,
        help_heading = "Output"
    )]
    pub format: Format,
    #[command(subcommand)]
    pub command: Command,
}

/// How to reach the node and decide to trust it.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Connection")]
pub struct ConnectionArgs {
    /// The node's QUIC address.
    #[arg(
        long,
        global = true,
        env = "SPRAWLCTL_NODE",
        default_value = "127.0.0.1:7470",
        value_name = "HOST:PORT",
        value_parser = parse_host_port
    )]
    pub node: String,
    /// CA certificate (PEM) that signed the node's certificate. Default:
    /// ./data/tls/cert.pem when it exists (what a node started in this
    /// directory generates).
    #[arg(long, global = true, env = "SPRAWLCTL_CA", value_name = "PATH")]
    pub ca: Option<PathBuf>,
    /// Do not verify the node's certificate: still encrypted, but anyone
    /// on the path can pretend to be the node. Never the default.
    #[arg(long, global = true)]
    pub insecure: bool,
    /// Name the node's certificate must be valid for.
    #[arg(
        long,
        global = true,
        env = "SPRAWLCTL_SERVER_NAME",
        default_value = "localhost",
        value_name = "NAME"
    )]
    pub server_name: String,
    /// Longest wait for the connection and for each request, e.g. 500ms,
    /// 10s, 2m (a bare number is seconds).
    #[arg(
        long,
        global = true,
        env = "SPRAWLCTL_TIMEOUT",
        default_value = "10s",
        value_name = "DURATION",
        value_parser = parse_duration
    )]
    pub timeout: Duration,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Human-readable: tables, one message value per line.
    #[value(alias = "table")]
    Text,
    /// JSON: one document, or one object per line for messages.
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    #[command(flatten)]
    Node(NodeCommand),
    #[command(flatten)]
    Admin(AdminCommand),
    /// Load forecasting on a trace file; needs no node.
    #[command(subcommand)]
    Forecast(ForecastCommand),
    /// The cluster CA and node certificates (mutual TLS between nodes);
    /// needs no node.
    #[command(subcommand)]
    Cert(crate::cert::CertCommand),
}

/// The commands that talk to a node (a connection is made before they run).
#[derive(Subcommand, Debug)]
pub enum NodeCommand {
    /// Create, list, describe and delete topics.
    #[command(subcommand)]
    Topic(TopicCommand),
    /// Publish messages: given with -m, or one per line of a file or stdin.
    Publish(PublishArgs),
    /// Print a topic's messages, from the start, the end, an offset, a time
    /// or a consumer group's committed offsets.
    #[command(after_help = CONSUME_JSON_HELP)]
    Consume(ConsumeArgs),
    /// The node's identity and its topics.
    Status(StatusArgs),
}

/// The commands that talk to the node's admin HTTP endpoint (no QUIC
/// connection is made).
#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Balance the node's shards: plan partition moves from the load
    /// forecasts, carry them out, or leave it to the node (auto mode).
    #[command(subcommand, after_help = REBALANCE_HELP)]
    Rebalance(RebalanceCommand),
    /// Move a partition by hand.
    #[command(subcommand)]
    Partition(PartitionCommand),
    /// The load the node recorded: per series (resource at node, shard or
    /// partition scope) the newest value, mean and maximum over a window.
    Load(LoadArgs),
    /// The node's load forecasts: value, interval, the forecaster used and
    /// every forecaster's rolling error (MAPE, MASE).
    Predict(PredictArgs),
    /// The cluster as a node's gossip sees it.
    #[command(subcommand)]
    Cluster(ClusterCommand),
}

#[derive(Subcommand, Debug)]
pub enum ClusterCommand {
    /// Members (this node first): state, rack, addresses, shards, load;
    /// gossip counters, including packets that failed authentication.
    Status(AdminArgs),
    /// Replicated partitions of a topic as every member sees them: Raft
    /// leader, term, commit index, voters, in-sync replicas, follower lag.
    Replicas {
        topic: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Move a partition's replica from one node to another, live: the new
    /// node is added as a learner, catches up, is promoted, and the old one
    /// is removed (Raft membership changes). Sent to the partition's leader,
    /// found through the members' admin endpoints; waits until done.
    MoveReplica {
        topic: String,
        partition: u32,
        /// Node whose replica moves (if it leads, leadership is handed to
        /// another in-sync replica first).
        #[arg(long)]
        from: u64,
        /// Node that receives it.
        #[arg(long)]
        to: u64,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

/// Where the node's admin HTTP endpoint is.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Admin endpoint")]
pub struct AdminArgs {
    /// The node's admin HTTP address (its `admin` setting). Of the
    /// connection options, only --timeout applies to it.
    #[arg(
        long,
        env = "SPRAWLCTL_ADMIN",
        default_value = ADMIN_DEFAULT,
        value_name = "HOST:PORT",
        value_parser = parse_host_port
    )]
    pub admin: String,
}

#[derive(Subcommand, Debug)]
pub enum RebalanceCommand {
    /// Show the moves a rebalance would make; moves nothing.
    ///
    /// Each move with the peak it relieves and why, and the predicted peak
    /// imbalance before and after the moves.
    Plan(PlanArgs),
    /// Plan and carry the moves out (with --auto: turn auto mode on).
    ///
    /// The moves run in order and stop at the first that fails (the rest
    /// of the plan assumed it); the exit status is 1 when a move failed.
    Apply(ApplyArgs),
    /// Moves in flight, recent moves and their results, auto mode.
    Status(AdminArgs),
    /// Turn auto mode on (with a strategy) or off.
    Auto(AutoArgs),
}

#[derive(Args, Debug)]
pub struct PlanArgs {
    #[command(flatten)]
    pub plan: PlanOptions,
    #[command(flatten)]
    pub admin: AdminArgs,
}

/// What a plan balances and the most it may do.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Plan")]
pub struct PlanOptions {
    /// predictive: balance the forecast peaks of the next two minutes,
    /// moving partitions before a predicted burst; reactive: balance the
    /// load of now, as if it stayed flat.
    #[arg(long, value_name = "STRATEGY", default_value = "predictive", value_parser = strategy_parser())]
    pub strategy: Strategy,
    /// Most moves in the plan. Default: the node's (4).
    #[arg(long, value_name = "N")]
    pub moves_max: Option<u64>,
    /// Most bytes the plan's moves may copy. Default: no limit. (Moves
    /// between the shards of one node copy nothing.)
    #[arg(long, value_name = "BYTES")]
    pub bytes_max: Option<u64>,
}

impl PlanOptions {
    /// The query parameters of `/rebalance/plan` and `/rebalance/apply`.
    pub fn query_pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = vec![("strategy", self.strategy.name().to_owned())];
        if let Some(n) = self.moves_max {
            pairs.push(("moves_max", n.to_string()));
        }
        if let Some(bytes) = self.bytes_max {
            pairs.push(("bytes_max", bytes.to_string()));
        }
        pairs
    }
}

#[derive(Args, Debug)]
#[command(after_help = "\
The moves run on the node; sprawlctl waits for them at least 2 minutes (longer with a longer \
--timeout). If it stops waiting first, the moves go on: `sprawlctl rebalance status` shows them.")]
pub struct ApplyArgs {
    /// Move nothing now: turn the node's auto mode on with --strategy
    /// (the same as `rebalance auto STRATEGY`; `rebalance auto off` turns
    /// it off). Auto mode has its own limits, so --moves-max and
    /// --bytes-max do not apply.
    #[arg(long, conflicts_with_all = ["moves_max", "bytes_max"])]
    pub auto: bool,
    #[command(flatten)]
    pub plan: PlanOptions,
    #[command(flatten)]
    pub admin: AdminArgs,
}

#[derive(Args, Debug)]
pub struct AutoArgs {
    /// off, or the strategy the node plans with every interval.
    #[arg(value_enum)]
    pub mode: AutoMode,
    #[command(flatten)]
    pub admin: AdminArgs,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoMode {
    /// No automatic moves.
    Off,
    /// Plan on the forecast peaks.
    Predictive,
    /// Plan on the load of now.
    Reactive,
}

impl AutoMode {
    /// The `mode=` word of `/rebalance/auto`.
    pub fn query_word(self) -> &'static str {
        match self {
            AutoMode::Off => "off",
            AutoMode::Predictive => Strategy::Predictive.name(),
            AutoMode::Reactive => Strategy::Reactive.name(),
        }
    }
}

impl From<Strategy> for AutoMode {
    fn from(strategy: Strategy) -> AutoMode {
        match strategy {
            Strategy::Predictive => AutoMode::Predictive,
            Strategy::Reactive => AutoMode::Reactive,
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum PartitionCommand {
    /// Move one partition to another shard of the node, now. Its clients
    /// see at most a retryable error meanwhile.
    Move(PartitionMoveArgs),
}

#[derive(Args, Debug)]
pub struct PartitionMoveArgs {
    /// The partition's topic.
    pub topic: String,
    /// The partition's number.
    pub partition: u32,
    /// The shard to move it to (0 to the node's shard count - 1).
    #[arg(long, value_name = "SHARD")]
    pub to: u32,
    #[command(flatten)]
    pub admin: AdminArgs,
}

#[derive(Args, Debug)]
pub struct LoadArgs {
    /// Only series of this scope. Default: all.
    #[arg(long, value_name = "SCOPE", value_parser = scope_parser())]
    pub scope: Option<ScopeKind>,
    /// Only series of this resource. Default: all.
    #[arg(long, value_name = "RESOURCE", value_parser = resource_parser())]
    pub resource: Option<Resource>,
    /// How far back the mean and maximum look, e.g. 60s, 5m (whole
    /// seconds; the node keeps an hour of seconds).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_whole_seconds)]
    pub window: u64,
    #[command(flatten)]
    pub admin: AdminArgs,
}

#[derive(Args, Debug)]
pub struct PredictArgs {
    /// The resource forecast.
    #[arg(long, value_name = "RESOURCE", default_value = "message_rate", value_parser = resource_parser())]
    pub resource: Resource,
    /// Which series: the node's, each shard's or each partition's.
    #[arg(long, value_name = "SCOPE", default_value = "node", value_parser = scope_parser())]
    pub scope: ScopeKind,
    /// How far ahead. The node forecasts 10s to 2m in steps of 10s, and
    /// 5m; node and shard series 15m and 1h too. Asked for another, it
    /// names the horizons it has.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_whole_seconds)]
    pub horizon: u64,
    #[command(flatten)]
    pub admin: AdminArgs,
}

#[derive(Subcommand, Debug)]
pub enum ForecastCommand {
    /// Score the baseline forecasters and the learned model (`model(mlp)`,
    /// trained only on the past at each origin) on a `timestamp,value` CSV
    /// trace by rolling-origin evaluation, and name the one selected (lowest
    /// MASE; the model only when it beats every baseline).
    Eval(ForecastEvalArgs),
}

#[derive(Args, Debug)]
pub struct ForecastEvalArgs {
    /// The trace: `timestamp,value` lines, header optional.
    #[arg(long, value_name = "FILE")]
    pub csv: PathBuf,
    /// How many steps ahead each forecast is.
    #[arg(long, value_name = "STEPS", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub horizon: u64,
    /// Values seen before the first forecast (and used to detect the
    /// period and the MASE scale). Default: a quarter of the trace.
    #[arg(long, value_name = "N")]
    pub warmup: Option<usize>,
}

#[derive(Subcommand, Debug)]
pub enum TopicCommand {
    /// Create a topic.
    Create {
        name: String,
        /// Number of partitions. Default: the node's default.
        #[arg(long, short = 'p', value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        partitions: Option<u32>,
        /// Nodes keeping each partition (a cluster only). Default: 3 on a
        /// cluster of 3 or more nodes, else 1.
        #[arg(long, short = 'r', value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
        replication_factor: Option<u16>,
        /// Bytes kept per partition before the oldest segments are deleted;
        /// -1 or `unlimited` for no limit. Default: the node's default.
        #[arg(long, value_name = "BYTES", allow_negative_numbers = true, value_parser = parse_retention)]
        retention_bytes: Option<i64>,
        /// Age after which records may be deleted, in milliseconds; -1 or
        /// `unlimited` for no limit. Default: the node's default.
        #[arg(long, value_name = "MS", allow_negative_numbers = true, value_parser = parse_retention)]
        retention_ms: Option<i64>,
        /// Succeed without changes if the topic exists already.
        #[arg(long)]
        if_not_exists: bool,
    },
    /// List topics.
    List,
    /// A topic's settings and, per partition, its offsets and size; with
    /// --admin, also each replicated partition's replicas, in-sync
    /// replicas and follower lag (its leader's view).
    Describe {
        name: String,
        /// A cluster node's admin HTTP address: the replication view is
        /// read from the members' admin endpoints.
        #[arg(long, value_name = "HOST:PORT", value_parser = parse_host_port)]
        admin: Option<String>,
    },
    /// Delete a topic and all its messages.
    Delete {
        name: String,
        /// Succeed if the topic does not exist.
        #[arg(long)]
        if_exists: bool,
    },
}

#[derive(Args, Debug)]
pub struct PublishArgs {
    /// Topic to publish to (it must exist).
    #[arg(short = 't', long)]
    pub topic: String,
    /// A message to publish; repeat for several, published in order.
    #[arg(
        short = 'm',
        long = "message",
        value_name = "TEXT",
        required_unless_present = "file",
        conflicts_with = "file"
    )]
    pub messages: Vec<String>,
    /// Publish each line of this file as a message (`-` = stdin). Lines
    /// end at \n, which is not part of the message; anything else,
    /// including \r and invalid UTF-8, is published as is.
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Key of every message (messages of one key go to one partition).
    #[arg(short = 'k', long, conflicts_with = "key_separator")]
    pub key: Option<String>,
    /// Split each message at the first SEP into key and value; a message
    /// without SEP is an error.
    #[arg(long, value_name = "SEP", value_parser = parse_separator)]
    pub key_separator: Option<String>,
    /// Partition of every message. Default: by key, else spread.
    #[arg(short = 'p', long)]
    pub partition: Option<u32>,
    /// Header of every message; repeat for several.
    #[arg(short = 'H', long = "header", value_name = "NAME=VALUE", value_parser = parse_header)]
    pub headers: Vec<(String, String)>,
    /// What the node confirms before a message counts as acknowledged:
    /// none (nothing; failures go unnoticed), leader (appended), durable
    /// (appended and fsynced as the node's policy promises).
    #[arg(long, value_enum, default_value_t = AckLevel::Durable)]
    pub acks: AckLevel,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckLevel {
    None,
    Leader,
    Durable,
}

impl From<AckLevel> for Acks {
    fn from(level: AckLevel) -> Acks {
        match level {
            AckLevel::None => Acks::None,
            AckLevel::Leader => Acks::Leader,
            AckLevel::Durable => Acks::Durable,
        }
    }
}

#[derive(Args, Debug)]
pub struct ConsumeArgs {
    /// Topic to read.
    #[arg(short = 't', long)]
    pub topic: String,
    /// Read only this partition. Default: every partition of the topic.
    #[arg(short = 'p', long)]
    pub partition: Option<u32>,
    /// Consumer group: start from its committed offsets (`--from` where it
    /// has none) and commit what has been printed, every second and at the
    /// end.
    #[arg(short = 'g', long)]
    pub group: Option<String>,
    /// Where to start: earliest, latest, an offset, or @TIMESTAMP_MS (the
    /// first message at or after that time).
    #[arg(long, value_name = "POSITION", default_value = "earliest", value_parser = parse_start)]
    pub from: StartPosition,
    /// Stop after this many messages (over all partitions).
    #[arg(short = 'n', long, value_name = "N")]
    pub count: Option<u64>,
    /// Keep waiting for new messages (until Ctrl-C or --count). Without
    /// it, stop at the end each partition had when consume started.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Text output: print `KEY<SEP>VALUE` instead of the value alone (an
    /// absent key prints as empty).
    #[arg(long, value_name = "SEP", value_parser = parse_separator)]
    pub key_separator: Option<String>,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Also query the node's admin HTTP endpoint (/health) at this address
    /// (the node's default is 127.0.0.1:7480).
    #[arg(long, env = "SPRAWLCTL_ADMIN", value_name = "HOST:PORT", value_parser = parse_host_port)]
    pub admin: Option<String>,
}

fn parse_host_port(s: &str) -> Result<String, String> {
    if s.parse::<std::net::SocketAddr>().is_ok() {
        return Ok(s.to_owned());
    }
    match s.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && !host.contains(':') => {
            port.parse::<u16>()
                .map_err(|_| format!("port {port:?} is not a number from 0 to 65535"))?;
            Ok(s.to_owned())
        }
        _ => Err("expected HOST:PORT, e.g. 127.0.0.1:7470 or [::1]:7470".into()),
    }
}

/// `500ms`, `10s`, `2m`, `1h`; a bare number is seconds. Must be above zero.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(digits_end);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 500ms, 10s or 2m"))?;
    let duration = match unit {
        "ms" => Duration::from_millis(number),
        "" | "s" => Duration::from_secs(number),
        "m" => Duration::from_secs(number.saturating_mul(60)),
        "h" => Duration::from_secs(number.saturating_mul(3600)),
        _ => return Err(format!("unknown unit {unit:?} (use ms, s, m or h)")),
    };
    if duration.is_zero() {
        return Err("must be above zero".into());
    }
    Ok(duration)
}

/// A duration of whole seconds (see [`parse_duration`]), as seconds.
pub fn parse_whole_seconds(s: &str) -> Result<u64, String> {
    let duration = parse_duration(s)?;
    if duration.subsec_nanos() != 0 {
        return Err(format!("{s:?}: must be whole seconds"));
    }
    Ok(duration.as_secs())
}

fn strategy_parser() -> impl TypedValueParser<Value = Strategy> {
    PossibleValuesParser::new([Strategy::Predictive.name(), Strategy::Reactive.name()])
        .try_map(|word| word.parse::<Strategy>())
}

fn scope_parser() -> impl TypedValueParser<Value = ScopeKind> {
    PossibleValuesParser::new(
        [ScopeKind::Node, ScopeKind::Shard, ScopeKind::Partition].map(ScopeKind::name),
    )
    .try_map(|word| ScopeKind::from_query(&word).ok_or("not a scope"))
}

/// The admin API's words (`cpu`, `memory`, `message_rate`, `network`) and
/// the full names of the other resources; the full names of the first four
/// are accepted too, without being listed.
fn resource_parser() -> impl TypedValueParser<Value = Resource> {
    let words = [
        ("cpu", "cores busy (cpu_busy_cores)"),
        ("memory", "resident bytes (memory_bytes)"),
        (
            "message_rate",
            "messages produced per second (messages_in_per_s)",
        ),
        (
            "network",
            "socket bytes per second, in and out (network_bytes_per_s)",
        ),
    ];
    let short: Vec<PossibleValue> = words
        .iter()
        .map(|(word, help)| PossibleValue::new(*word).help(*help))
        .collect();
    let long = Resource::ALL.into_iter().map(|resource| {
        let shown = [Resource::BytesIn, Resource::BytesOut, Resource::LogBytes].contains(&resource);
        PossibleValue::new(resource.name()).hide(!shown)
    });
    PossibleValuesParser::new(short.into_iter().chain(long))
        .try_map(|word| Resource::from_query(&word).ok_or("not a resource"))
}

/// A retention limit: a non-negative number, or -1 / `unlimited`.
pub fn parse_retention(s: &str) -> Result<i64, String> {
    match s {
        "unlimited" | "-1" => Ok(-1),
        _ => s
            .parse::<u64>()
            .ok()
            .and_then(|n| i64::try_from(n).ok())
            .ok_or_else(|| format!("{s:?} is not a non-negative number, -1 or `unlimited`")),
    }
}

/// `earliest`, `latest`, an offset, or `@` and milliseconds since the epoch.
pub fn parse_start(s: &str) -> Result<StartPosition, String> {
    match s {
        "earliest" | "beginning" => Ok(StartPosition::Earliest),
        "latest" | "end" => Ok(StartPosition::Latest),
        _ => {
            if let Some(ms) = s.strip_prefix('@') {
                ms.parse()
                    .map(StartPosition::TimestampMs)
                    .map_err(|_| format!("{s:?}: expected @ and milliseconds since the Unix epoch"))
            } else {
                s.parse().map(StartPosition::Offset).map_err(|_| {
                    format!("{s:?}: expected earliest, latest, an offset or @TIMESTAMP_MS")
                })
            }
        }
    }
}

fn parse_header(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("{s:?}: expected NAME=VALUE with a non-empty NAME")),
    }
}

fn parse_separator(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("the separator must not be empty".into());
    }
    Ok(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn start_positions() {
        assert_eq!(parse_start("earliest"), Ok(StartPosition::Earliest));
        assert_eq!(parse_start("latest"), Ok(StartPosition::Latest));
        assert_eq!(parse_start("42"), Ok(StartPosition::Offset(42)));
        assert_eq!(
            parse_start("@1700000000000"),
            Ok(StartPosition::TimestampMs(1_700_000_000_000))
        );
        assert!(parse_start("-1").is_err());
        assert!(parse_start("@soon").is_err());
    }

    #[test]
    fn retention_and_headers_and_addresses() {
        assert_eq!(parse_retention("unlimited"), Ok(-1));
        assert_eq!(parse_retention("-1"), Ok(-1));
        assert_eq!(parse_retention("1048576"), Ok(1 << 20));
        assert!(parse_retention("-2").is_err());
        assert_eq!(parse_header("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(parse_header("a="), Ok(("a".into(), String::new())));
        assert!(parse_header("=b").is_err());
        assert!(parse_header("ab").is_err());
        assert!(parse_host_port("127.0.0.1:7470").is_ok());
        assert!(parse_host_port("[::1]:7470").is_ok());
        assert!(parse_host_port("broker-1:7470").is_ok());
        assert!(parse_host_port("broker-1").is_err());
        assert!(parse_host_port("broker-1:http").is_err());
    }

    #[test]
    fn negative_retention_is_a_value_not_a_flag() {
        let cli =
            Cli::try_parse_from(["sprawlctl", "topic", "create", "t", "--retention-ms", "-1"])
                .unwrap();
        match cli.command {
            Command::Node(NodeCommand::Topic(TopicCommand::Create { retention_ms, .. })) => {
                assert_eq!(retention_ms, Some(-1))
            }
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn publish_needs_exactly_one_source() {
        assert!(Cli::try_parse_from(["sprawlctl", "publish", "-t", "t"]).is_err());
        assert!(
            Cli::try_parse_from(["sprawlctl", "publish", "-t", "t", "-m", "x", "--file", "f"])
                .is_err()
        );
        assert!(Cli::try_parse_from(["sprawlctl", "publish", "-t", "t", "--file", "-"]).is_ok());
    }

    #[test]
    fn forecast_eval_needs_a_csv_and_a_positive_horizon() {
        assert!(Cli::try_parse_from(["sprawlctl", "forecast", "eval"]).is_err());
        let eval = ["sprawlctl", "forecast", "eval", "--csv", "t.csv"];
        assert!(Cli::try_parse_from([&eval[..], &["--horizon", "0"]].concat()).is_err());
        match Cli::try_parse_from(eval).unwrap().command {
            Command::Forecast(ForecastCommand::Eval(args)) => {
                assert_eq!(args.horizon, 1);
                assert_eq!(args.warmup, None);
            }
            other => panic!("parsed as {other:?}"),
        }
    }

    fn admin_command(args: &[&str]) -> AdminCommand {
        let cli = Cli::try_parse_from([&["sprawlctl"][..], args].concat())
            .unwrap_or_else(|e| panic!("{args:?}: {e}"));
        match cli.command {
            Command::Admin(command) => command,
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn rebalance_plan_takes_a_strategy_and_a_budget() {
        match admin_command(&["rebalance", "plan"]) {
            AdminCommand::Rebalance(RebalanceCommand::Plan(args)) => {
                assert_eq!(args.plan.strategy, Strategy::Predictive);
                assert_eq!(args.plan.query_pairs(), [("strategy", "predictive".into())]);
            }
            other => panic!("parsed as {other:?}"),
        }
        let plan = [
            "rebalance",
            "plan",
            "--admin",
            "10.0.0.7:9000",
            "--strategy",
            "reactive",
            "--moves-max",
            "2",
            "--bytes-max",
            "1048576",
        ];
        match admin_command(&plan) {
            AdminCommand::Rebalance(RebalanceCommand::Plan(args)) => {
                assert_eq!(args.admin.admin, "10.0.0.7:9000");
                assert_eq!(
                    args.plan.query_pairs(),
                    [
                        ("strategy", "reactive".into()),
                        ("moves_max", "2".into()),
                        ("bytes_max", "1048576".into())
                    ]
                );
            }
            other => panic!("parsed as {other:?}"),
        }
        let bad = ["sprawlctl", "rebalance", "plan", "--strategy", "random"];
        assert!(Cli::try_parse_from(bad).is_err());
        let bad = ["sprawlctl", "rebalance", "plan", "--moves-max", "-1"];
        assert!(Cli::try_parse_from(bad).is_err());
        let bad = ["sprawlctl", "rebalance", "plan", "--admin", "nowhere"];
        assert!(Cli::try_parse_from(bad).is_err());
    }

    #[test]
    fn apply_auto_is_auto_mode_and_excludes_a_budget() {
        let apply = ["rebalance", "apply", "--auto", "--strategy", "reactive"];
        match admin_command(&apply) {
            AdminCommand::Rebalance(RebalanceCommand::Apply(args)) => {
                assert!(args.auto);
                assert_eq!(AutoMode::from(args.plan.strategy), AutoMode::Reactive);
            }
            other => panic!("parsed as {other:?}"),
        }
        let both = [
            "sprawlctl",
            "rebalance",
            "apply",
            "--auto",
            "--moves-max",
            "3",
        ];
        assert!(Cli::try_parse_from(both).is_err());
        match admin_command(&["rebalance", "apply", "--moves-max", "3"]) {
            AdminCommand::Rebalance(RebalanceCommand::Apply(args)) => {
                assert!(!args.auto);
                assert_eq!(args.plan.moves_max, Some(3));
            }
            other => panic!("parsed as {other:?}"),
        }
        for (word, mode) in [
            ("off", AutoMode::Off),
            ("predictive", AutoMode::Predictive),
            ("reactive", AutoMode::Reactive),
        ] {
            match admin_command(&["rebalance", "auto", word]) {
                AdminCommand::Rebalance(RebalanceCommand::Auto(args)) => {
                    assert_eq!(args.mode, mode);
                    assert_eq!(args.mode.query_word(), word);
                }
                other => panic!("parsed as {other:?}"),
            }
        }
        assert!(Cli::try_parse_from(["sprawlctl", "rebalance", "auto"]).is_err());
        assert!(Cli::try_parse_from(["sprawlctl", "rebalance", "auto", "on"]).is_err());
    }

    #[test]
    fn the_admin_address_defaults_to_the_nodes() {
        match admin_command(&["rebalance", "status"]) {
            AdminCommand::Rebalance(RebalanceCommand::Status(admin)) => {
                // SPRAWLCTL_ADMIN may be set where the tests run.
                let expected =
                    std::env::var("SPRAWLCTL_ADMIN").unwrap_or_else(|_| ADMIN_DEFAULT.to_owned());
                assert_eq!(admin.admin, expected);
            }
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn partition_move_needs_a_destination() {
        match admin_command(&["partition", "move", "orders", "3", "--to", "1"]) {
            AdminCommand::Partition(PartitionCommand::Move(args)) => {
                assert_eq!(
                    (args.topic.as_str(), args.partition, args.to),
                    ("orders", 3, 1)
                );
            }
            other => panic!("parsed as {other:?}"),
        }
        let no_to = ["sprawlctl", "partition", "move", "orders", "3"];
        assert!(Cli::try_parse_from(no_to).is_err());
        let not_a_number = ["sprawlctl", "partition", "move", "orders", "x", "--to", "1"];
        assert!(Cli::try_parse_from(not_a_number).is_err());
    }

    #[test]
    fn load_and_predict_take_the_admin_apis_words() {
        match admin_command(&["load"]) {
            AdminCommand::Load(args) => {
                assert_eq!((args.scope, args.resource, args.window), (None, None, 60));
            }
            other => panic!("parsed as {other:?}"),
        }
        let load = [
            "load",
            "--scope",
            "shard",
            "--resource",
            "cpu",
            "--window",
            "5m",
        ];
        match admin_command(&load) {
            AdminCommand::Load(args) => {
                assert_eq!(args.scope, Some(ScopeKind::Shard));
                assert_eq!(args.resource, Some(Resource::CpuBusy));
                assert_eq!(args.window, 300);
            }
            other => panic!("parsed as {other:?}"),
        }
        match admin_command(&["predict"]) {
            AdminCommand::Predict(args) => {
                assert_eq!(args.resource, Resource::MessagesIn);
                assert_eq!(args.scope, ScopeKind::Node);
                assert_eq!(args.horizon, 60);
            }
            other => panic!("parsed as {other:?}"),
        }
        let predict = [
            "predict",
            "--resource",
            "bytes_in_per_s",
            "--scope",
            "partition",
            "--horizon",
            "2m",
        ];
        match admin_command(&predict) {
            AdminCommand::Predict(args) => {
                assert_eq!(args.resource, Resource::BytesIn);
                assert_eq!(args.scope, ScopeKind::Partition);
                assert_eq!(args.horizon, 120);
            }
            other => panic!("parsed as {other:?}"),
        }
        // Hidden full names of the short words parse too.
        match admin_command(&["predict", "--resource", "messages_in_per_s"]) {
            AdminCommand::Predict(args) => assert_eq!(args.resource, Resource::MessagesIn),
            other => panic!("parsed as {other:?}"),
        }
        for bad in [
            &["predict", "--resource", "disk"][..],
            &["predict", "--scope", "cluster"],
            &["predict", "--horizon", "1500ms"],
            &["load", "--window", "0s"],
        ] {
            let args = [&["sprawlctl"][..], bad].concat();
            assert!(Cli::try_parse_from(&args).is_err(), "{bad:?}");
        }
    }
}

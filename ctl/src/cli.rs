//! The command line: flags, subcommands and the parsers of their values.
//! Everything here is checked by clap before any connection is made, so a
//! malformed value exits with status 2 and clap's message.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use sprawl_client::{Acks, StartPosition};

const EXIT_STATUS_HELP: &str = "\
Exit status: 0 success, 1 failure, 2 usage error, 3 publish only partly acknowledged.";

const CONSUME_JSON_HELP: &str = "\
With --format json, one object per line: topic, partition, offset, timestamp_ms, key, value, \
headers (a list of {name, value}). Bytes that are valid UTF-8 are JSON strings; other bytes \
are standard base64 under the field name plus _base64 instead (key_base64, value_base64, \
name_base64). A message without a key has \"key\": null.";

/// Operate a Sprawl node: topics, publish, consume, status.
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
    /// Load forecasting on a trace file; needs no node.
    #[command(subcommand)]
    Forecast(ForecastCommand),
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
    /// A topic's settings and, per partition, its offsets and size.
    Describe { name: String },
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
    /// Also query the node's admin HTTP endpoint (/health) at this address.
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
}

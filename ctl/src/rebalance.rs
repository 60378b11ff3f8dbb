//! `sprawlctl rebalance plan | apply | status | auto` and `partition move`:
//! partition moves between the node's shards, asked of its admin endpoint
//! (`/rebalance/*`, `/partitions/move`), and how their answers read.
//!
//! `--format json` prints the node's answer as it is; the text forms are
//! built from it here.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde_json::Value;
use sprawl_forecast::{Move, Plan};

use crate::admin_http::{query, AdminEndpoint, Method};
use crate::cli::{
    AdminArgs, ApplyArgs, AutoMode, Format, PartitionCommand, PartitionMoveArgs, PlanArgs,
    RebalanceCommand,
};
use crate::output::{print, print_json};
use crate::table::{exact_duration_ms, Align, Table};

/// Each move fences, drains and syncs a partition: the least time an
/// apply or a manual move is waited for, however short --timeout is.
const MOVE_ANSWER_TIMEOUT_MIN: Duration = Duration::from_secs(120);

pub async fn run(
    command: &RebalanceCommand,
    timeout: Duration,
    format: Format,
) -> anyhow::Result<()> {
    match command {
        RebalanceCommand::Plan(args) => plan(args, timeout, format).await,
        RebalanceCommand::Apply(args) if args.auto => {
            set_auto(&args.admin, args.plan.strategy.into(), timeout, format).await
        }
        RebalanceCommand::Apply(args) => apply(args, timeout, format).await,
        RebalanceCommand::Status(admin) => status(admin, timeout, format).await,
        RebalanceCommand::Auto(args) => set_auto(&args.admin, args.mode, timeout, format).await,
    }
}

pub async fn run_partition(
    command: &PartitionCommand,
    timeout: Duration,
    format: Format,
) -> anyhow::Result<()> {
    match command {
        PartitionCommand::Move(args) => move_partition(args, timeout, format).await,
    }
}

async fn plan(args: &PlanArgs, timeout: Duration, format: Format) -> anyhow::Result<()> {
    let endpoint = AdminEndpoint::new(&args.admin.admin, timeout);
    let target = format!("/rebalance/plan{}", query(&args.plan.query_pairs()));
    let answer = endpoint.get(&target).await?;
    match format {
        Format::Json => print_json(&answer),
        Format::Text => print(&plan_text(&plan_of(&answer)?)),
    }
}

async fn apply(args: &ApplyArgs, timeout: Duration, format: Format) -> anyhow::Result<()> {
    let endpoint = AdminEndpoint::new(&args.admin.admin, timeout);
    let target = format!("/rebalance/apply{}", query(&args.plan.query_pairs()));
    let answer = endpoint
        .request(Method::Post, &target, timeout.max(MOVE_ANSWER_TIMEOUT_MIN))
        .await?;
    let outcome = Applied::from_json(&answer)?;
    match format {
        Format::Json => print_json(&answer)?,
        Format::Text => print(&applied_text(&outcome))?,
    }
    outcome.check()
}

async fn status(admin: &AdminArgs, timeout: Duration, format: Format) -> anyhow::Result<()> {
    let endpoint = AdminEndpoint::new(&admin.admin, timeout);
    let answer = endpoint.get("/rebalance/status").await?;
    match format {
        Format::Json => print_json(&answer),
        Format::Text => print(&status_text(
            &RebalanceStatus::from_json(&answer)?,
            now_unix_ms(),
        )),
    }
}

async fn set_auto(
    admin: &AdminArgs,
    mode: AutoMode,
    timeout: Duration,
    format: Format,
) -> anyhow::Result<()> {
    let endpoint = AdminEndpoint::new(&admin.admin, timeout);
    let target = format!(
        "/rebalance/auto{}",
        query(&[("mode", mode.query_word().to_owned())])
    );
    let answer = endpoint.request(Method::Post, &target, timeout).await?;
    match format {
        Format::Json => print_json(&answer),
        Format::Text => print(&format!("auto rebalancing: {}\n", auto_text(&answer))),
    }
}

async fn move_partition(
    args: &PartitionMoveArgs,
    timeout: Duration,
    format: Format,
) -> anyhow::Result<()> {
    let endpoint = AdminEndpoint::new(&args.admin.admin, timeout);
    let target = format!(
        "/partitions/move{}",
        query(&[
            ("topic", args.topic.clone()),
            ("partition", args.partition.to_string()),
            ("to", args.to.to_string()),
        ])
    );
    let answer = endpoint
        .request(Method::Post, &target, timeout.max(MOVE_ANSWER_TIMEOUT_MIN))
        .await?;
    match format {
        Format::Json => print_json(&answer),
        Format::Text => print(&moved_text(&answer)?),
    }
}

fn plan_of(answer: &Value) -> anyhow::Result<Plan> {
    serde_json::from_value(answer.clone()).context(UNKNOWN_FORM)
}

const UNKNOWN_FORM: &str = "the node's answer is not in the form this sprawlctl knows";

/// Peak imbalance `max / mean − 1` as the busiest shard's multiple of the
/// mean and the excess over it: `1.83× mean (+83%)`.
fn imbalance(excess: f64) -> String {
    if excess.is_finite() {
        format!("{:.2}× mean (+{:.0}%)", 1.0 + excess, 100.0 * excess)
    } else {
        "-".into()
    }
}

/// `3 moves`, `1 move`.
fn count(n: usize, noun: &str) -> String {
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}

fn bytes_text(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

fn shards_text(from: impl std::fmt::Display, to: impl std::fmt::Display) -> String {
    format!("{from} → {to}")
}

/// When the peak a move relieves comes: `now` for a reactive move.
fn peak_in(m: &Move) -> String {
    match m.peak_step {
        Some(_) if m.peak_in_s > 0 => {
            exact_duration_ms(i64::try_from(m.peak_in_s.saturating_mul(1000)).unwrap_or(i64::MAX))
        }
        _ => "now".into(),
    }
}

fn duration_ms_text(ms: Option<u64>) -> String {
    match ms {
        None => "-".into(),
        Some(ms) if ms < 1000 => format!("{ms}ms"),
        Some(ms) => format!("{:.1}s", ms as f64 / 1000.0),
    }
}

/// The first lines of a plan: what it does and the imbalance it leaves.
fn plan_header(plan: &Plan) -> String {
    if plan.moves.is_empty() {
        return format!(
            "{} plan: no moves; peak imbalance {}\n",
            plan.strategy,
            imbalance(plan.imbalance_before)
        );
    }
    format!(
        "{} plan: {}, {} to copy\npeak imbalance: {} before → {} after\n",
        plan.strategy,
        count(plan.moves.len(), "move"),
        bytes_text(plan.bytes_to_copy),
        imbalance(plan.imbalance_before),
        imbalance(plan.imbalance_after),
    )
}

fn plan_text(plan: &Plan) -> String {
    let mut text = plan_header(plan);
    if plan.moves.is_empty() {
        return text;
    }
    let mut table = Table::new(&[
        ("PARTITION", Align::Left),
        ("MOVE", Align::Left),
        ("PEAK_IN", Align::Right),
        ("REASON", Align::Left),
    ]);
    for m in &plan.moves {
        table.row(vec![
            m.partition.to_string(),
            shards_text(m.from_shard, m.to_shard),
            peak_in(m),
            m.reason.clone(),
        ]);
    }
    text += &table.render();
    text
}

/// A field of a JSON object, or why the answer cannot be read.
fn field<'a>(value: &'a Value, name: &str) -> anyhow::Result<&'a Value> {
    value
        .get(name)
        .with_context(|| format!("{UNKNOWN_FORM}: no {name:?} in {}", short(value)))
}

fn str_field(value: &Value, name: &str) -> anyhow::Result<String> {
    field(value, name)?
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("{UNKNOWN_FORM}: {name:?} is not a string"))
}

fn u64_field(value: &Value, name: &str) -> anyhow::Result<u64> {
    field(value, name)?
        .as_u64()
        .with_context(|| format!("{UNKNOWN_FORM}: {name:?} is not a whole number"))
}

fn list_field<'a>(value: &'a Value, name: &str) -> anyhow::Result<&'a [Value]> {
    field(value, name)?
        .as_array()
        .map(Vec::as_slice)
        .with_context(|| format!("{UNKNOWN_FORM}: {name:?} is not a list"))
}

/// The start of a JSON value, for error messages.
fn short(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(80) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text,
    }
}

/// One move as the node reports it carried out (or carrying out).
#[derive(Debug, Clone, PartialEq)]
struct MoveRecord {
    /// `topic/partition`.
    partition: String,
    from_shard: u64,
    to_shard: u64,
    reason: String,
    /// `moving`, `done` or `failed`.
    state: String,
    started_unix_ms: i64,
    duration_ms: Option<u64>,
    error: Option<String>,
}

impl MoveRecord {
    fn from_json(value: &Value) -> anyhow::Result<Self> {
        Ok(Self {
            partition: str_field(value, "partition")?,
            from_shard: u64_field(value, "from_shard")?,
            to_shard: u64_field(value, "to_shard")?,
            reason: value["reason"].as_str().unwrap_or_default().to_owned(),
            state: str_field(value, "state")?,
            started_unix_ms: value["started_unix_ms"].as_i64().unwrap_or_default(),
            duration_ms: value["duration_ms"].as_u64(),
            error: value["error"].as_str().map(str::to_owned),
        })
    }

    fn failed(&self) -> bool {
        self.state == "failed" || self.error.is_some()
    }

    /// The error of a failed move, else why it was made.
    fn detail(&self) -> String {
        self.error.clone().unwrap_or_else(|| self.reason.clone())
    }
}

/// What `POST /rebalance/apply` answers: the plan and its moves carried
/// out, in order, up to the first that failed.
#[derive(Debug)]
struct Applied {
    plan: Plan,
    moves: Vec<MoveRecord>,
}

impl Applied {
    fn from_json(answer: &Value) -> anyhow::Result<Self> {
        Ok(Self {
            plan: plan_of(field(answer, "plan")?)?,
            moves: list_field(answer, "moves")?
                .iter()
                .map(MoveRecord::from_json)
                .collect::<anyhow::Result<_>>()?,
        })
    }

    /// Planned moves after the failed one, never attempted.
    fn not_attempted(&self) -> &[Move] {
        self.plan.moves.get(self.moves.len()..).unwrap_or_default()
    }

    /// An error naming the failed move, if one failed.
    fn check(&self) -> anyhow::Result<()> {
        let Some(failed) = self.moves.iter().find(|m| m.failed()) else {
            return Ok(());
        };
        let mut message = format!(
            "moving {} from shard {} to shard {} failed: {}",
            failed.partition,
            failed.from_shard,
            failed.to_shard,
            failed.error.as_deref().unwrap_or("no reason given"),
        );
        let skipped = self.not_attempted().len();
        if skipped > 0 {
            let _ = write!(
                message,
                "; {} of the plan not attempted",
                count(skipped, "later move")
            );
        }
        anyhow::bail!(message)
    }
}

fn applied_text(applied: &Applied) -> String {
    let mut text = plan_header(&applied.plan);
    if applied.plan.moves.is_empty() {
        return text;
    }
    let mut table = Table::new(&[
        ("PARTITION", Align::Left),
        ("MOVE", Align::Left),
        ("STATE", Align::Left),
        ("DURATION", Align::Right),
        ("DETAIL", Align::Left),
    ]);
    for m in &applied.moves {
        table.row(vec![
            m.partition.clone(),
            shards_text(m.from_shard, m.to_shard),
            m.state.clone(),
            duration_ms_text(m.duration_ms),
            m.detail(),
        ]);
    }
    for m in applied.not_attempted() {
        table.row(vec![
            m.partition.to_string(),
            shards_text(m.from_shard, m.to_shard),
            "skipped".into(),
            "-".into(),
            "not attempted: an earlier move failed".into(),
        ]);
    }
    text += &table.render();
    let done = applied.moves.iter().filter(|m| !m.failed()).count();
    let total_ms: u64 = applied.moves.iter().filter_map(|m| m.duration_ms).sum();
    let _ = writeln!(
        text,
        "moved {done} of {} in {}",
        count(applied.plan.moves.len(), "partition"),
        duration_ms_text(Some(total_ms))
    );
    text
}

/// What `GET /rebalance/status` answers.
#[derive(Debug)]
struct RebalanceStatus {
    applying: bool,
    in_flight: Vec<MoveRecord>,
    /// Oldest first, as the node keeps them.
    recent: Vec<MoveRecord>,
    moves_done: u64,
    moves_failed: u64,
    auto: Value,
}

impl RebalanceStatus {
    fn from_json(answer: &Value) -> anyhow::Result<Self> {
        let moves = field(answer, "moves")?;
        let records = |name| -> anyhow::Result<Vec<MoveRecord>> {
            list_field(moves, name)?
                .iter()
                .map(MoveRecord::from_json)
                .collect()
        };
        Ok(Self {
            applying: answer["applying"].as_bool().unwrap_or_default(),
            in_flight: records("in_flight")?,
            recent: records("recent")?,
            moves_done: u64_field(moves, "moves_done")?,
            moves_failed: u64_field(moves, "moves_failed")?,
            auto: field(answer, "auto")?.clone(),
        })
    }
}

fn now_unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// How long before `now_ms` `then_ms` was, roughly: `12s ago`, `5m ago`.
fn ago(now_ms: i64, then_ms: i64) -> String {
    let s = now_ms.saturating_sub(then_ms).max(0) / 1000;
    match s {
        0..60 => format!("{s}s ago"),
        60..3600 => format!("{}m ago", s / 60),
        3600..86_400 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86_400),
    }
}

/// `interval_s` and the like: whole seconds in their largest unit.
fn seconds_text(s: f64) -> String {
    if s.fract() == 0.0 && (0.0..1e12).contains(&s) {
        exact_duration_ms(s as i64 * 1000)
    } else {
        format!("{s:.1}s")
    }
}

/// Auto mode as `/rebalance/status` and `/rebalance/auto` report it.
fn auto_text(auto: &Value) -> String {
    if auto["enabled"].as_bool() != Some(true) {
        return "off".into();
    }
    let mut text = auto["strategy"].as_str().unwrap_or("on").to_owned();
    if let Some(s) = auto["interval_s"].as_f64() {
        let _ = write!(text, ", considered every {}", seconds_text(s));
    }
    if let Some(threshold) = auto["imbalance_threshold"].as_f64() {
        let _ = write!(
            text,
            "; acts when the peak imbalance is above {}",
            imbalance(threshold)
        );
        if let Some(gain) = auto["relative_gain_min"].as_f64() {
            let _ = write!(
                text,
                " and a plan removes at least {:.0}% of the excess",
                100.0 * gain
            );
        }
    }
    if let Some(s) = auto["cooldown_s"].as_f64() {
        let _ = write!(
            text,
            "; a moved partition stays put for {}",
            seconds_text(s)
        );
    }
    if let Some(n) = auto["moves_per_hour_max"].as_u64() {
        let _ = write!(text, "; at most {} an hour", count(n as usize, "move"));
    }
    text
}

fn status_text(status: &RebalanceStatus, now_ms: i64) -> String {
    let mut text = format!("auto rebalancing: {}\n", auto_text(&status.auto));
    if status.applying {
        text += "a plan is being carried out\n";
    }
    let _ = writeln!(
        text,
        "moves since the node started: {} done, {} failed",
        status.moves_done, status.moves_failed
    );
    if status.in_flight.is_empty() {
        text += "in flight: none\n";
    } else {
        text += "in flight:\n";
        let mut table = Table::new(&[
            ("PARTITION", Align::Left),
            ("MOVE", Align::Left),
            ("STARTED", Align::Right),
            ("REASON", Align::Left),
        ]);
        for m in &status.in_flight {
            table.row(vec![
                m.partition.clone(),
                shards_text(m.from_shard, m.to_shard),
                ago(now_ms, m.started_unix_ms),
                m.reason.clone(),
            ]);
        }
        text += &table.render();
    }
    if status.recent.is_empty() {
        text += "recent moves: none\n";
    } else {
        text += "recent moves, newest first:\n";
        let mut table = Table::new(&[
            ("PARTITION", Align::Left),
            ("MOVE", Align::Left),
            ("STATE", Align::Left),
            ("DURATION", Align::Right),
            ("STARTED", Align::Right),
            ("DETAIL", Align::Left),
        ]);
        for m in status.recent.iter().rev() {
            table.row(vec![
                m.partition.clone(),
                shards_text(m.from_shard, m.to_shard),
                m.state.clone(),
                duration_ms_text(m.duration_ms),
                ago(now_ms, m.started_unix_ms),
                m.detail(),
            ]);
        }
        text += &table.render();
    }
    text
}

/// `POST /partitions/move`'s answer as one line.
fn moved_text(answer: &Value) -> anyhow::Result<String> {
    Ok(format!(
        "moved {} from shard {} to shard {} in {} (log end offset {})\n",
        str_field(answer, "partition")?,
        u64_field(answer, "from_shard")?,
        u64_field(answer, "to_shard")?,
        duration_ms_text(answer["duration_ms"].as_u64()),
        answer["log_end_offset"]
            .as_u64()
            .map_or_else(|| "-".to_owned(), |o| o.to_string()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A plan as `GET /rebalance/plan` answers it.
    const PLAN_FIXTURE: &str = r#"{
        "strategy": "predictive",
        "moves": [
            {
                "partition": {"topic": "orders", "partition": 3},
                "from_shard": 0, "to_shard": 1, "size_bytes": 0,
                "peak_step": 1, "peak_in_s": 20,
                "reason": "shard 0 predicted to peak at 1.83x mean at +20s (orders/3 bursts from 40/s to 400/s); moving orders/3 (0 B) to shard 1 lowers the peak to 1.12x"
            },
            {
                "partition": {"topic": "clicks", "partition": 11},
                "from_shard": 2, "to_shard": 1, "size_bytes": 1572864,
                "peak_step": 11, "peak_in_s": 120,
                "reason": "shard 2 predicted to peak at 1.40x mean at +120s (clicks/11 carries 30% of it); moving clicks/11 (1.5 MiB) to shard 1 evens out the shards (peak stays 1.12x)"
            }
        ],
        "imbalance_before": 0.8312,
        "imbalance_after": 0.1234,
        "bytes_to_copy": 1572864
    }"#;

    fn fixture() -> Value {
        serde_json::from_str(PLAN_FIXTURE).unwrap()
    }

    #[test]
    fn a_plan_renders_as_a_table_with_the_imbalance() {
        let plan = plan_of(&fixture()).unwrap();
        assert_eq!(
            plan_text(&plan),
            "predictive plan: 2 moves, 1.5 MiB to copy\n\
             peak imbalance: 1.83× mean (+83%) before → 1.12× mean (+12%) after\n\
             PARTITION  MOVE   PEAK_IN  REASON\n\
             orders/3   0 → 1      20s  shard 0 predicted to peak at 1.83x mean at +20s (orders/3 bursts from 40/s to 400/s); moving orders/3 (0 B) to shard 1 lowers the peak to 1.12x\n\
             clicks/11  2 → 1       2m  shard 2 predicted to peak at 1.40x mean at +120s (clicks/11 carries 30% of it); moving clicks/11 (1.5 MiB) to shard 1 evens out the shards (peak stays 1.12x)\n"
        );
    }

    #[test]
    fn an_empty_or_reactive_plan_reads_plainly() {
        let empty = json!({
            "strategy": "reactive", "moves": [],
            "imbalance_before": 0.05, "imbalance_after": 0.05, "bytes_to_copy": 0
        });
        assert_eq!(
            plan_text(&plan_of(&empty).unwrap()),
            "reactive plan: no moves; peak imbalance 1.05× mean (+5%)\n"
        );
        let mut reactive = fixture();
        reactive["moves"][0]["peak_step"] = Value::Null;
        reactive["moves"][0]["peak_in_s"] = json!(0);
        let plan = plan_of(&reactive).unwrap();
        assert_eq!(peak_in(&plan.moves[0]), "now");
        assert!(plan_of(&json!({"moves": 3})).is_err());
    }

    #[test]
    fn numbers_read_as_people_say_them() {
        assert_eq!(imbalance(0.0), "1.00× mean (+0%)");
        assert_eq!(imbalance(1.5), "2.50× mean (+150%)");
        assert_eq!(imbalance(f64::NAN), "-");
        assert_eq!(bytes_text(0), "0 B");
        assert_eq!(bytes_text(1023), "1023 B");
        assert_eq!(bytes_text(1536), "1.5 KiB");
        assert_eq!(bytes_text(16 << 30), "16.0 GiB");
        assert_eq!(duration_ms_text(Some(12)), "12ms");
        assert_eq!(duration_ms_text(Some(1500)), "1.5s");
        assert_eq!(duration_ms_text(None), "-");
        assert_eq!(ago(100_000, 88_000), "12s ago");
        assert_eq!(ago(100_000, 200_000), "0s ago");
        assert_eq!(ago(4_000_000, 0), "1h ago");
        assert_eq!(seconds_text(30.0), "30s");
        assert_eq!(seconds_text(900.0), "15m");
        assert_eq!(seconds_text(2.5), "2.5s");
    }

    fn record(partition: &str, state: &str, error: Option<&str>) -> Value {
        json!({
            "partition": partition, "from_shard": 0, "to_shard": 1,
            "reason": format!("{partition} is hot"), "state": state,
            "started_unix_ms": 1_000_000, "duration_ms": 12, "error": error,
        })
    }

    #[test]
    fn an_applied_plan_lists_each_move_and_fails_on_a_failed_one() {
        let answer = json!({
            "plan": fixture(),
            "moves": [record("orders/3", "done", None)],
        });
        let mut all_done = answer.clone();
        all_done["moves"]
            .as_array_mut()
            .unwrap()
            .push(record("clicks/11", "done", None));
        let applied = Applied::from_json(&all_done).unwrap();
        applied.check().unwrap();
        assert!(
            applied_text(&applied).ends_with(
                "PARTITION  MOVE   STATE  DURATION  DETAIL\n\
                 orders/3   0 → 1  done       12ms  orders/3 is hot\n\
                 clicks/11  0 → 1  done       12ms  clicks/11 is hot\n\
                 moved 2 of 2 partitions in 24ms\n"
            ),
            "{}",
            applied_text(&applied)
        );

        let mut failed = answer;
        failed["moves"][0] = record("orders/3", "failed", Some("partition is moving"));
        let applied = Applied::from_json(&failed).unwrap();
        assert!(
            applied_text(&applied).ends_with(
                "PARTITION  MOVE   STATE    DURATION  DETAIL\n\
                 orders/3   0 → 1  failed       12ms  partition is moving\n\
                 clicks/11  2 → 1  skipped         -  not attempted: an earlier move failed\n\
                 moved 0 of 2 partitions in 12ms\n"
            ),
            "{}",
            applied_text(&applied)
        );
        assert_eq!(
            applied.check().unwrap_err().to_string(),
            "moving orders/3 from shard 0 to shard 1 failed: partition is moving; \
             1 later move of the plan not attempted"
        );
    }

    #[test]
    fn status_shows_auto_mode_and_moves_newest_first() {
        let answer = json!({
            "applying": false,
            "moves": {
                "in_flight": [record("logs/0", "moving", None)],
                "recent": [
                    record("orders/3", "done", None),
                    record("orders/1", "failed", Some("disk full")),
                ],
                "moves_done": 1,
                "moves_failed": 1,
            },
            "auto": {
                "enabled": true, "strategy": "predictive", "interval_s": 30.0,
                "imbalance_threshold": 0.25, "relative_gain_min": 0.3,
                "cooldown_s": 900, "moves_per_hour_max": 12,
            },
        });
        let status = RebalanceStatus::from_json(&answer).unwrap();
        assert_eq!(
            status_text(&status, 1_005_000),
            "auto rebalancing: predictive, considered every 30s; acts when the peak imbalance \
             is above 1.25× mean (+25%) and a plan removes at least 30% of the excess; a moved \
             partition stays put for 15m; at most 12 moves an hour\n\
             moves since the node started: 1 done, 1 failed\n\
             in flight:\n\
             PARTITION  MOVE   STARTED  REASON\n\
             logs/0     0 → 1   5s ago  logs/0 is hot\n\
             recent moves, newest first:\n\
             PARTITION  MOVE   STATE   DURATION  STARTED  DETAIL\n\
             orders/1   0 → 1  failed      12ms   5s ago  disk full\n\
             orders/3   0 → 1  done        12ms   5s ago  orders/3 is hot\n"
        );
        let idle = json!({
            "applying": true,
            "moves": {"in_flight": [], "recent": [], "moves_done": 0, "moves_failed": 0},
            "auto": {"enabled": false},
        });
        assert_eq!(
            status_text(&RebalanceStatus::from_json(&idle).unwrap(), 0),
            "auto rebalancing: off\n\
             a plan is being carried out\n\
             moves since the node started: 0 done, 0 failed\n\
             in flight: none\n\
             recent moves: none\n"
        );
        let error = RebalanceStatus::from_json(&json!({"auto": {}}))
            .unwrap_err()
            .to_string();
        assert!(error.contains("no \"moves\""), "{error}");
    }

    #[test]
    fn a_manual_move_is_one_line() {
        let answer = json!({
            "partition": "orders/3", "from_shard": 0, "to_shard": 1,
            "log_end_offset": 1000, "duration_ms": 7,
        });
        assert_eq!(
            moved_text(&answer).unwrap(),
            "moved orders/3 from shard 0 to shard 1 in 7ms (log end offset 1000)\n"
        );
        assert!(moved_text(&json!({"partition": 3})).is_err());
    }
}

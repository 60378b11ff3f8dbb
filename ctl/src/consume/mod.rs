//! `sprawlctl consume`: a topic's messages on stdout.
//!
//! The start of each partition is resolved once (`--from`, or the group's
//! committed offset). Without `--follow`, each partition is fetched up to
//! the high watermark it had when consume started; with it, each partition
//! is followed by a subscription. One task per partition feeds one bounded
//! channel; this task writes, flushes, and (with `--group`) commits what
//! has been flushed: every [`COMMIT_INTERVAL`] and at the end, including
//! after Ctrl-C and `--count`.

mod progress;
mod readers;
mod render;

use std::io::Write;
use std::time::Duration;

use sprawl_client::{Client, Consumer, PartitionInfo};
use tokio::signal::unix::{signal, SignalKind};
use tokio::task::JoinSet;

use self::progress::Progress;
use self::readers::Event;
use self::render::{render, RecordFormat};
use crate::cli::{ConsumeArgs, Format};
use crate::failure::{one_line, stdout_error};
use crate::topic::describe;

/// How often a group's progress is committed while consuming.
const COMMIT_INTERVAL: Duration = Duration::from_secs(1);
/// Output collected before it is written even if more is at hand.
const OUTPUT_BYTES_MAX: usize = 64 << 10;

/// Where one partition is read from and up to.
#[derive(Debug, Clone, Copy)]
struct PartitionPlan {
    partition: u32,
    start: u64,
    /// Exclusive; `None` with `--follow`.
    end: Option<u64>,
}

pub async fn run(client: &Client, args: &ConsumeArgs, format: Format) -> anyhow::Result<()> {
    let topic = describe(client, &args.topic).await?;
    let partitions: Vec<PartitionInfo> = match args.partition {
        None => topic.partitions.clone(),
        Some(p) => vec![topic
            .partitions
            .iter()
            .find(|info| info.partition == p)
            .cloned()
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "topic {:?} has {} partitions (0 to {}), no partition {p}",
                    args.topic,
                    topic.partition_count,
                    topic.partition_count.saturating_sub(1)
                )
            })?],
    };
    if let Some(p) = partitions.iter().find(|p| p.error.is_some()) {
        let error = p.error.as_ref().expect("found by its error");
        anyhow::bail!("{}/{}: {error}", args.topic, p.partition);
    }
    let consumer = match &args.group {
        Some(group) => Consumer::with_group(client, group.as_str()).with_fallback(args.from),
        None => Consumer::new(client),
    };
    let mut plan = Vec::with_capacity(partitions.len());
    for p in &partitions {
        let start = match &args.group {
            Some(_) => consumer.group_offset(&args.topic, p.partition).await?,
            None => {
                client
                    .resolve_offset(&args.topic, p.partition, args.from)
                    .await?
            }
        };
        plan.push(PartitionPlan {
            partition: p.partition,
            start,
            end: (!args.follow).then_some(p.high_watermark),
        });
    }
    let format = match format {
        Format::Text => RecordFormat::Text {
            key_separator: args.key_separator.as_ref().map(|s| s.as_bytes().to_vec()),
        },
        Format::Json => RecordFormat::Json,
    };
    consume(&consumer, &args.topic, &plan, args.count, &format).await
}

async fn consume(
    consumer: &Consumer,
    topic: &str,
    plan: &[PartitionPlan],
    count: Option<u64>,
    format: &RecordFormat,
) -> anyhow::Result<()> {
    let starts: Vec<(u32, u64)> = plan.iter().map(|p| (p.partition, p.start)).collect();
    let mut progress = Progress::new(&starts, count);
    let (feed, mut events) = readers::channel();
    // Dropped at the end: aborts the readers.
    let mut readers = JoinSet::new();
    let mut open = 0usize;
    for p in plan {
        match p.end {
            Some(end) if p.start >= end => continue,
            Some(end) => readers.spawn(readers::fetch_until(
                consumer.clone(),
                topic.to_owned(),
                p.partition,
                p.start,
                end,
                feed.clone(),
            )),
            None => readers.spawn(readers::follow(
                consumer.clone(),
                topic.to_owned(),
                p.partition,
                p.start,
                feed.clone(),
            )),
        };
        open += 1;
    }
    drop(feed);

    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut commit_timer = tokio::time::interval_at(
        tokio::time::Instant::now() + COMMIT_INTERVAL,
        COMMIT_INTERVAL,
    );
    commit_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let grouped = consumer.group().is_some();
    let mut output = Output::default();

    let outcome: anyhow::Result<()> = loop {
        if open == 0 || progress.count_reached() {
            break Ok(());
        }
        tokio::select! {
            event = events.recv() => match event {
                None => break Ok(()),
                Some(Event::End) => open -= 1,
                Some(Event::Failed(e)) => break Err(e),
                Some(Event::Records { partition, records, next_offset, budget: _budget }) => {
                    let n = progress.admit(records.len());
                    for record in &records[..n] {
                        render(&mut output.pending, format, topic, partition, record);
                    }
                    let position = if n == records.len() {
                        next_offset
                    } else if n > 0 {
                        records[n - 1].offset + 1
                    } else {
                        continue;
                    };
                    progress.wrote(partition, position);
                    if events.is_empty() || output.pending.len() >= OUTPUT_BYTES_MAX {
                        if let Err(e) = output.flush(&mut progress) {
                            break Err(e);
                        }
                    }
                }
            },
            _ = commit_timer.tick(), if grouped => {
                if let Err(e) = output.flush(&mut progress) {
                    break Err(e);
                }
                if let Err(e) = commit(consumer, topic, &mut progress).await {
                    eprintln!(
                        "sprawlctl: warning: {}; trying again in {COMMIT_INTERVAL:?}",
                        one_line(&e)
                    );
                }
            }
            _ = interrupt.recv() => break Ok(()),
            _ = terminate.recv() => break Ok(()),
        }
    };
    drop(readers);
    // What was printed is flushed and committed even when the loop ended
    // with an error; the first error is the one reported.
    let flushed = output.flush(&mut progress);
    let committed = if grouped {
        commit(consumer, topic, &mut progress).await
    } else {
        Ok(())
    };
    outcome.and(flushed).and(committed)
}

/// Rendered lines not yet written to stdout.
#[derive(Default)]
struct Output {
    pending: Vec<u8>,
}

impl Output {
    /// Writes and flushes everything pending; then it counts as flushed.
    fn flush(&mut self, progress: &mut Progress) -> anyhow::Result<()> {
        if !self.pending.is_empty() {
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(&self.pending)
                .and_then(|()| stdout.flush())
                .map_err(stdout_error)?;
            self.pending.clear();
        }
        progress.flushed();
        Ok(())
    }
}

async fn commit(consumer: &Consumer, topic: &str, progress: &mut Progress) -> anyhow::Result<()> {
    for (partition, offset) in progress.due_commits() {
        consumer.commit(topic, partition, offset).await?;
        progress.committed(partition, offset);
    }
    Ok(())
}

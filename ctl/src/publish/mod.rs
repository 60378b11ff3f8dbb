//! `sprawlctl publish`: messages from `-m`, a file or stdin, through the
//! client's batching [`Producer`].
//!
//! Invariant: the acknowledged messages of a partition are a prefix of the
//! input's messages for that partition. The producer keeps one batch in
//! flight per partition and, when a batch fails for good, fails every
//! record *sent before that moment* behind it; a record sent after the
//! failure could still succeed and leave a hole. So messages go out in
//! waves: a wave is enqueued without any `await` in between (nothing can
//! fail while it is being enqueued), then flushed and settled, and no
//! further wave starts after a failure.

mod input;
mod tally;

use anyhow::Context;
use sprawl_client::{Acks, Client, Producer, ProducerConfig};
use tokio::sync::mpsc;

use self::input::{Chunk, MessageShape};
use self::tally::Tally;
use crate::cli::{Format, PublishArgs};
use crate::failure::{ExitStatus, Failure};
use crate::output::{print, print_json};
use crate::topic::describe;

/// A wave holds at most this many bytes of messages (plus
/// [`MESSAGE_OVERHEAD_BYTES`] each)...
const WAVE_BYTES_MAX: usize = 8 << 20;
/// ...and at most this many messages.
const WAVE_MESSAGES_MAX: usize = 100_000;
/// What a record costs beyond its bytes, for the wave's bound.
const MESSAGE_OVERHEAD_BYTES: usize = 64;

/// The messages to publish, opened before connecting: a missing file fails
/// before anything else happens.
pub fn open_input(args: &PublishArgs) -> anyhow::Result<mpsc::Receiver<Chunk>> {
    Ok(match &args.file {
        Some(path) => {
            let name = if path.as_os_str() == "-" {
                "stdin".to_owned()
            } else {
                path.display().to_string()
            };
            input::spawn_reader(input::open(path)?, name)
        }
        None => input::from_arguments(&args.messages),
    })
}

pub async fn run(
    client: &Client,
    mut chunks: mpsc::Receiver<Chunk>,
    args: &PublishArgs,
    format: Format,
) -> anyhow::Result<()> {
    let topic = describe(client, &args.topic).await?;
    if let Some(partition) = args.partition {
        anyhow::ensure!(
            partition < topic.partition_count,
            "topic {:?} has {} partitions (0 to {}), no partition {partition}",
            args.topic,
            topic.partition_count,
            topic.partition_count.saturating_sub(1)
        );
    }
    let acks = Acks::from(args.acks);
    let producer = Producer::new(
        client,
        ProducerConfig {
            acks,
            // The default, and what the prefix invariant above rests on.
            max_in_flight_per_partition: 1,
            ..ProducerConfig::default()
        },
    )
    .context("starting the producer")?;
    let shape = MessageShape {
        key: args.key.as_ref().map(|k| k.as_bytes().to_vec()),
        key_separator: args.key_separator.as_ref().map(|s| s.as_bytes().to_vec()),
        partition: args.partition,
        headers: args.headers.clone(),
    };

    let mut tally = Tally::default();
    let stopped = publish_waves(&producer, &args.topic, &shape, &mut chunks, &mut tally).await;
    // Stops the input thread at its next chunk.
    drop(chunks);

    match format {
        Format::Text => print(&tally.text(&args.topic, acks))?,
        Format::Json => print_json(&tally.json(&args.topic, acks))?,
    }
    let cause = match (stopped, tally.first_failure()) {
        (None, None) => return Ok(()),
        (Some(input_error), _) => input_error,
        (None, Some((number, error))) => {
            anyhow::Error::new(error.clone()).context(format!("message {number}"))
        }
    };
    let status = if tally.acknowledged() == 0 {
        ExitStatus::Generic
    } else {
        ExitStatus::PartialPublish
    };
    let summary = if tally.sent() == 0 {
        format!("publish to {}: nothing sent", args.topic)
    } else if tally.acknowledged() == tally.sent() {
        format!(
            "publish to {}: stopped after {} acknowledged messages",
            args.topic,
            tally.sent()
        )
    } else {
        format!(
            "publish to {}: only {} of the {} messages sent were acknowledged",
            args.topic,
            tally.acknowledged(),
            tally.sent()
        )
    };
    Err(cause.context(Failure {
        status,
        message: summary,
    }))
}

/// Sends wave after wave until the input ends or something fails. Returns
/// why the input stopped early (unreadable, malformed message); failed
/// sends are in the tally.
async fn publish_waves(
    producer: &Producer,
    topic: &str,
    shape: &MessageShape,
    chunks: &mut mpsc::Receiver<Chunk>,
    tally: &mut Tally,
) -> Option<anyhow::Error> {
    let mut stopped = None;
    while stopped.is_none() {
        let mut lines = match chunks.recv().await {
            None => break,
            Some(Ok(lines)) => lines,
            Some(Err(e)) => return Some(e),
        };
        let mut cost = wave_cost(&lines);
        while cost < WAVE_BYTES_MAX && lines.len() < WAVE_MESSAGES_MAX {
            match chunks.try_recv() {
                Ok(Ok(more)) => {
                    cost += wave_cost(&more);
                    lines.extend(more);
                }
                Ok(Err(e)) => {
                    stopped = Some(e);
                    break;
                }
                Err(_) => break,
            }
        }

        // The wave: every send before any await.
        let mut acks = Vec::with_capacity(lines.len());
        for line in lines {
            let number = line.number;
            match shape.record(line) {
                Ok(record) => acks.push((number, producer.send(topic, record))),
                Err(reason) => {
                    stopped = Some(anyhow::anyhow!(reason));
                    break;
                }
            }
        }
        producer.flush().await;
        for (number, ack) in acks {
            tally.record(number, ack.await);
        }
        if tally.first_failure().is_some() {
            break;
        }
    }
    stopped
}

fn wave_cost(lines: &[input::Line]) -> usize {
    lines
        .iter()
        .map(|l| l.bytes.len() + MESSAGE_OVERHEAD_BYTES)
        .sum()
}

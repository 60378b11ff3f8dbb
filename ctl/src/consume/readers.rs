//! One task per partition, reading its messages in offset order into one
//! channel: by fetches up to a fixed end offset, or by a subscription
//! (credit-bounded) that follows the partition forever. What waits in the
//! channel is bounded in bytes ([`OUTPUT_AHEAD_BYTES_MAX`]): a slow reader
//! of our stdout holds readers back instead of filling memory.

use std::sync::Arc;
use std::time::Duration;

use sprawl_client::{ConsumedRecord, Consumer, StartPosition};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

/// Bytes asked for per fetch.
const FETCH_BYTES_MAX: u32 = 256 << 10;
/// How long a fetch waits when the partition has nothing at the offset
/// (only after the log shrank under us: the end is below the high
/// watermark seen at the start).
const FETCH_WAIT: Duration = Duration::from_millis(100);
/// Credit window of a subscription: the most it holds, plus one batch.
const SUBSCRIPTION_CREDIT_BYTES: u64 = 256 << 10;
/// Back-off before resubscribing after a retryable failure (lost
/// connection, node restarting): doubles up to the maximum.
const RESUBSCRIBE_BACKOFF_MIN: Duration = Duration::from_millis(100);
const RESUBSCRIBE_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Bytes of messages delivered and not yet written, over all partitions
/// (a delivery larger than this takes the whole budget).
const OUTPUT_AHEAD_BYTES_MAX: usize = 8 << 20;
/// Events waiting for the writer, over all partitions (their bytes are
/// bounded by the budget above).
const EVENTS_AHEAD_MAX: usize = 1024;
/// What a record costs the budget beyond its key, value and headers.
const RECORD_OVERHEAD_BYTES: usize = 32;

#[derive(Debug)]
pub enum Event {
    /// Messages of `partition` in offset order; the partition's position
    /// after them is `next_offset`.
    Records {
        partition: u32,
        records: Vec<ConsumedRecord>,
        next_offset: u64,
        /// Returns the records' bytes to the budget when dropped.
        budget: OwnedSemaphorePermit,
    },
    /// The partition reached its end offset.
    End,
    Failed(anyhow::Error),
}

/// The readers' side of the channel.
#[derive(Clone)]
pub struct Feed {
    events: mpsc::Sender<Event>,
    budget: Arc<Semaphore>,
}

/// A channel of events and its byte budget.
pub fn channel() -> (Feed, mpsc::Receiver<Event>) {
    let (events, receiver) = mpsc::channel(EVENTS_AHEAD_MAX);
    let budget = Arc::new(Semaphore::new(OUTPUT_AHEAD_BYTES_MAX));
    (Feed { events, budget }, receiver)
}

impl Feed {
    /// Waits for room in the budget, then hands the records over. False
    /// once the writer is gone.
    async fn deliver(
        &self,
        partition: u32,
        records: Vec<ConsumedRecord>,
        next_offset: u64,
    ) -> bool {
        let bytes: usize = records
            .iter()
            .map(|r| {
                RECORD_OVERHEAD_BYTES
                    + r.key.as_ref().map_or(0, |k| k.len())
                    + r.value.len()
                    + r.headers
                        .iter()
                        .map(|(n, v)| n.len() + v.len())
                        .sum::<usize>()
            })
            .sum();
        let permits = u32::try_from(bytes.clamp(1, OUTPUT_AHEAD_BYTES_MAX)).unwrap_or(u32::MAX);
        let Ok(budget) = self.budget.clone().acquire_many_owned(permits).await else {
            return false;
        };
        let event = Event::Records {
            partition,
            records,
            next_offset,
            budget,
        };
        self.events.send(event).await.is_ok()
    }

    async fn send(&self, event: Event) {
        // The writer may be gone already; then nobody needs to know.
        let _ = self.events.send(event).await;
    }
}

/// Fetches `partition` from `next` until `end` (exclusive). Records at or
/// past `end` are not delivered.
pub async fn fetch_until(
    consumer: Consumer,
    topic: String,
    partition: u32,
    mut next: u64,
    end: u64,
    feed: Feed,
) {
    let result = async {
        while next < end {
            let fetched = consumer
                .fetch(&topic, partition, next, FETCH_BYTES_MAX, FETCH_WAIT)
                .await?;
            let mut records = fetched.records;
            let past_end = records.partition_point(|r| r.offset < end);
            records.truncate(past_end);
            let next_offset = fetched.next_offset.min(end);
            if records.is_empty() && next_offset <= next {
                if fetched.high_watermark <= next {
                    // The log was truncated below the end we set out for.
                    break;
                }
                continue;
            }
            next = next_offset;
            if !feed.deliver(partition, records, next_offset).await {
                return Ok(());
            }
        }
        anyhow::Ok(())
    }
    .await;
    feed.send(match result {
        Ok(()) => Event::End,
        Err(e) => Event::Failed(e),
    })
    .await;
}

/// Follows `partition` from `next` by subscription, resubscribing after
/// retryable failures; ends only on a permanent failure or when the
/// receiver is gone.
pub async fn follow(consumer: Consumer, topic: String, partition: u32, mut next: u64, feed: Feed) {
    let mut backoff = RESUBSCRIBE_BACKOFF_MIN;
    loop {
        let failure = match consumer
            .subscribe(
                &topic,
                partition,
                StartPosition::Offset(next),
                SUBSCRIPTION_CREDIT_BYTES,
            )
            .await
        {
            Err(e) => e,
            Ok(mut subscription) => loop {
                match subscription.next().await {
                    Some(Ok(record)) => {
                        backoff = RESUBSCRIBE_BACKOFF_MIN;
                        next = record.offset + 1;
                        if !feed.deliver(partition, vec![record], next).await {
                            return;
                        }
                    }
                    Some(Err(e)) => break e,
                    None => {
                        feed.send(Event::Failed(anyhow::anyhow!(
                            "subscription to {topic}/{partition} ended by the node at offset \
                             {next}"
                        )))
                        .await;
                        return;
                    }
                }
            },
        };
        if !failure.is_retryable() {
            feed.send(Event::Failed(failure.into())).await;
            return;
        }
        eprintln!(
            "sprawlctl: warning: {failure}; resubscribing to {topic}/{partition} at offset \
             {next} in {backoff:?}"
        );
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(RESUBSCRIBE_BACKOFF_MAX);
    }
}

//! [`Producer`]: batching, ordered, retrying sends. The decisions live in
//! [`core`] (sans-IO); this module runs them on tokio: one driver task
//! that polls the core and one task per request it asks for.

mod core;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use sprawl_storage::BATCH_HEADER_BYTES;
use tokio::sync::{oneshot, Notify};

use self::core::{Action, ProducerCore, PRODUCE_FRAME_OVERHEAD_BYTES};
use crate::backoff::Jitter;
use crate::client::Client;
use crate::config::ProducerConfig;
use crate::error::{Error, Result};
use crate::records::Record;
use crate::types::RecordAck;

/// Sends records to topics, in batches, retrying transient failures.
///
/// * [`Producer::send`] enqueues at once and returns a future of the
///   record's acknowledgement, so callers can pipeline many records.
/// * Records go to a partition chosen explicitly, by key
///   ([`sprawl_wire::partition_for_key`], as the node would), or, without
///   either, by [`KeylessPartitioning`](crate::KeylessPartitioning). The
///   topic's partition count is looked up once and cached.
/// * Each partition's records are batched (one storage batch per
///   ProduceRequest) up to `batch_bytes_max`, waiting at most `linger`
///   for more while the partition could send.
/// * Retryable failures are retried with back-off; with the default
///   `max_in_flight_per_partition = 1` a partition's records keep their
///   send order across retries, and the acknowledged records of a
///   partition are always a prefix of those sent to it (a batch that fails
///   for good fails the records sent behind it with [`Error::Aborted`]).
///   Delivery is at least once: a retry after an ambiguous failure (lost
///   connection, timeout) may append a batch twice.
/// * At most `buffer_bytes_max` bytes of records are held; beyond that,
///   records wait in line in call order ([`Producer::ready`] waits for room).
///
/// Cheap to clone; clones share the buffers. Dropping the last clone does
/// not drop records already sent: they are still delivered and their
/// futures resolve. Must be created inside a tokio runtime.
#[derive(Clone)]
pub struct Producer {
    handle: Arc<Handle>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("config", &self.handle.shared.config)
            .finish_non_exhaustive()
    }
}

/// Tells the driver when the last `Producer` clone is gone.
struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.closing.store(true, Ordering::Release);
        self.shared.wake.notify_one();
    }
}

struct Shared {
    client: Client,
    config: ProducerConfig,
    core: Mutex<ProducerCore>,
    /// Wakes the driver: new records, outcomes, flushes, closing.
    wake: Notify,
    /// Wakes `flush` and `ready`: records resolved, room freed.
    progress: Notify,
    closing: AtomicBool,
}

impl Shared {
    fn core(&self) -> MutexGuard<'_, ProducerCore> {
        // The core never panics while locked (no user code runs under the
        // lock); a poisoned lock still holds consistent state.
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands outcomes to their futures, outside the lock, and wakes the
    /// waiters.
    fn deliver(&self, mut core: MutexGuard<'_, ProducerCore>) {
        let resolved = core.take_resolved();
        drop(core);
        let progressed = !resolved.is_empty();
        for (ack, outcome) in resolved {
            // The caller may have dropped the future; that is fine.
            let _ = ack.send(outcome);
        }
        if progressed {
            self.progress.notify_waiters();
        }
        self.wake.notify_one();
    }
}

impl Producer {
    /// A producer on `client`'s connection. Fails on an invalid
    /// configuration or outside a tokio runtime.
    pub fn new(client: &Client, config: ProducerConfig) -> Result<Producer> {
        config.validate()?;
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| Error::invalid("runtime", e.to_string()))?;
        let core = ProducerCore::new(
            config.clone(),
            client.link.node_frame_bytes_max(),
            Jitter::new(),
        );
        let shared = Arc::new(Shared {
            client: client.clone(),
            config,
            core: Mutex::new(core),
            wake: Notify::new(),
            progress: Notify::new(),
            closing: AtomicBool::new(false),
        });
        runtime.spawn(drive(shared.clone()));
        Ok(Producer {
            handle: Arc::new(Handle { shared }),
        })
    }

    fn shared(&self) -> &Shared {
        &self.handle.shared
    }

    /// Enqueues `record` for `topic` now, in call order, and returns a
    /// future that resolves when the node acknowledged it (as configured
    /// by `acks`) or it failed for good. Dropping the future does not
    /// cancel the send.
    ///
    /// Records that cannot be sent at all (too large for one frame of the
    /// node, header names over 64 KiB) fail at once without affecting the
    /// others.
    pub fn send(&self, topic: &str, record: Record) -> SendFuture {
        if let Err(e) = self.check(topic, &record) {
            return SendFuture::failed(e);
        }
        let timestamp_ms = record.timestamp_ms.unwrap_or_else(now_ms);
        let (ack, outcome) = oneshot::channel();
        self.shared()
            .core()
            .enqueue(topic, record, timestamp_ms, ack, Instant::now());
        self.shared().wake.notify_one();
        SendFuture {
            state: SendState::Waiting(outcome),
        }
    }

    fn check(&self, topic: &str, record: &Record) -> Result<()> {
        if topic.is_empty() {
            return Err(Error::invalid("topic", "empty name"));
        }
        if let Some(problem) = record.format_problem() {
            return Err(Error::invalid("record", problem));
        }
        let frame_bytes_max = self.shared().client.link.node_frame_bytes_max();
        let record_bytes = record.encoded_bytes();
        let frame_bytes =
            BATCH_HEADER_BYTES + record_bytes + PRODUCE_FRAME_OVERHEAD_BYTES + topic.len();
        if frame_bytes > frame_bytes_max as usize {
            return Err(Error::RecordTooLarge {
                topic: topic.to_owned(),
                record_bytes,
                frame_bytes_max,
            });
        }
        Ok(())
    }

    /// Sends every record enqueued so far without waiting for `linger`,
    /// and waits until each of them is acknowledged or failed (their
    /// outcomes go to their own futures).
    pub async fn flush(&self) {
        let target = self.shared().core().begin_flush();
        self.shared().wake.notify_one();
        self.wait_for(|core| core.is_flushed(target)).await;
    }

    /// Waits until the buffer has room, so that the next `send` is
    /// admitted at once: lets a fast source stay within `buffer_bytes_max`
    /// instead of queueing records in memory of its own.
    pub async fn ready(&self) {
        self.wait_for(ProducerCore::has_room).await;
    }

    /// Bytes of records held (batched, in flight, awaiting retry), not
    /// counting records waiting for room.
    pub fn buffered_bytes(&self) -> usize {
        self.shared().core().buffered_bytes()
    }

    async fn wait_for(&self, done: impl Fn(&ProducerCore) -> bool) {
        loop {
            let progressed = self.shared().progress.notified();
            tokio::pin!(progressed);
            // Registered before checking, so no wake-up can slip between.
            progressed.as_mut().enable();
            if done(&self.shared().core()) {
                return;
            }
            progressed.await;
        }
    }
}

/// The driver: polls the core, starts what it asks for, sleeps until the
/// next event or deadline. Exits once the producer is dropped and every
/// record is resolved.
async fn drive(shared: Arc<Shared>) {
    let mut actions = Vec::new();
    loop {
        let (deadline, idle) = {
            let mut core = shared.core();
            let deadline = core.poll(Instant::now(), &mut actions);
            (deadline, core.is_idle())
        };
        for action in actions.drain(..) {
            tokio::spawn(execute(shared.clone(), action));
        }
        if idle && shared.closing.load(Ordering::Acquire) {
            return;
        }
        match deadline {
            Some(at) => {
                let at = tokio::time::Instant::from_std(at);
                tokio::select! {
                    () = shared.wake.notified() => {}
                    () = tokio::time::sleep_until(at) => {}
                }
            }
            None => shared.wake.notified().await,
        }
    }
}

async fn execute(shared: Arc<Shared>, action: Action) {
    match action {
        Action::Lookup { topic } => {
            let outcome = shared
                .client
                .describe_topic(&topic)
                .await
                .map(|info| info.partition_count);
            let mut core = shared.core();
            core.on_lookup(&topic, outcome, Instant::now());
            shared.deliver(core);
        }
        Action::Produce {
            topic,
            partition,
            batch_id,
            bytes,
            record_count,
        } => {
            let outcome = shared
                .client
                .produce_batch(&topic, partition, shared.config.acks, &bytes)
                .await
                .and_then(|ack| match ack {
                    None => Ok(None),
                    Some(ack)
                        if ack.last_offset - ack.base_offset + 1 == u64::from(record_count) =>
                    {
                        Ok(Some(ack.base_offset))
                    }
                    Some(ack) => Err(Error::protocol(
                        &format!("produce to {topic}/{partition}"),
                        format!(
                            "{record_count} records acknowledged as offsets {}..={}",
                            ack.base_offset, ack.last_offset
                        ),
                    )),
                });
            let mut core = shared.core();
            core.on_produce(&topic, partition, batch_id, outcome, Instant::now());
            shared.deliver(core);
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The outcome of one [`Producer::send`]: where the record went, or why it
/// was not stored.
#[derive(Debug)]
pub struct SendFuture {
    state: SendState,
}

#[derive(Debug)]
enum SendState {
    Failed(Option<Error>),
    Waiting(oneshot::Receiver<Result<RecordAck>>),
}

impl SendFuture {
    fn failed(error: Error) -> Self {
        Self {
            state: SendState::Failed(Some(error)),
        }
    }
}

impl Future for SendFuture {
    type Output = Result<RecordAck>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.state {
            SendState::Failed(error) => Poll::Ready(Err(error
                .take()
                .expect("SendFuture polled after completion"))),
            SendState::Waiting(outcome) => Pin::new(outcome)
                .poll(cx)
                .map(|received| received.unwrap_or(Err(Error::ProducerStopped))),
        }
    }
}

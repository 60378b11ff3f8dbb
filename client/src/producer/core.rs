//! The producer's decisions as a plain state machine (sans-IO): admission
//! against the buffer bound, partition choice, batching by size and
//! linger, what to send when, retries with back-off, and the order in
//! which records are acknowledged. No runtime, no sockets, no clock: the
//! caller passes `now` and carries out the [`Action`]s.
//!
//! Invariants:
//! - a partition has at most `max_in_flight_per_partition` batches in
//!   flight; a batch waiting to be retried keeps its place (and its slot),
//!   so with one in flight nothing overtakes it;
//! - records are resolved in the order they were sent within a partition
//!   (the in-flight queue is released from its front only);
//! - when a batch fails for good, every record sent before that moment and
//!   not yet sent to the node for the same partition fails with
//!   [`Error::Aborted`]: the acknowledged records of a partition are
//!   always a prefix of the records sent to it before a failure;
//! - every record is resolved exactly once, and the bytes it holds are
//!   released when it is.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sprawl_storage::BatchBuilder;
use tokio::sync::oneshot;

use crate::backoff::{Backoff, Jitter};
use crate::config::{KeylessPartitioning, ProducerConfig};
use crate::error::{Error, Result};
use crate::records::Record;
use crate::types::RecordAck;

/// Where a record's outcome goes.
pub(crate) type AckSender = oneshot::Sender<Result<RecordAck>>;

/// Bytes of a ProduceRequest frame besides the batch and the topic name
/// (prefix, flatbuffer tables, vtables, padding); generous.
pub(crate) const PRODUCE_FRAME_OVERHEAD_BYTES: usize = 256;

/// A record handed to `send`, not yet in a batch.
pub(crate) struct Queued {
    pub topic: Arc<str>,
    pub record: Record,
    pub timestamp_ms: i64,
    pub ack: AckSender,
    bytes: usize,
    /// Send order across the producer.
    seq: u64,
    /// Flush generation (see [`ProducerCore::begin_flush`]).
    epoch: u64,
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// Find the topic's partition count; answer with `on_lookup`.
    Lookup { topic: Arc<str> },
    /// Send this batch; answer with `on_produce`.
    Produce {
        topic: Arc<str>,
        partition: u32,
        batch_id: u64,
        bytes: Bytes,
        record_count: u32,
    },
}

/// One record inside a batch.
struct Slot {
    ack: AckSender,
    bytes: usize,
    epoch: u64,
}

struct OpenBatch {
    id: u64,
    builder: BatchBuilder,
    slots: Vec<Slot>,
    created_at: Instant,
    first_epoch: u64,
}

struct Batch {
    id: u64,
    bytes: Bytes,
    slots: Vec<Slot>,
    /// Retries so far.
    retries: u32,
}

enum Flight {
    Sending,
    RetryAt(Instant),
    /// Finished; waits for the batches before it to finish too.
    Done(Result<Option<u64>>),
}

struct InFlight {
    batch: Batch,
    state: Flight,
}

#[derive(Default)]
struct PartitionQueue {
    open: Option<OpenBatch>,
    /// Sealed, waiting for an in-flight slot, in send order.
    sealed: VecDeque<Batch>,
    /// Sent (or waiting to be re-sent), in send order.
    in_flight: VecDeque<InFlight>,
    /// After a batch failed for good: records sent before `seq_end` that
    /// are routed here later fail with `cause`.
    abort_before: Option<(u64, Error)>,
}

enum Lookup {
    Idle,
    InFlight,
    RetryAt(Instant),
}

struct TopicState {
    partition_count: Option<u32>,
    /// The partition count may be wrong (the node said UnknownTopic or
    /// UnknownPartition): look it up again before routing new records.
    stale: bool,
    lookup: Lookup,
    lookup_failures: u32,
    /// Admitted records waiting for the partition count, in send order.
    pending: VecDeque<Queued>,
    partitions: Vec<PartitionQueue>,
    /// Keyless sticky choice: the partition and the open batch it fills.
    sticky: Option<(u32, u64)>,
    next_keyless: u32,
    /// Largest batch for this topic: the configured bound, capped so that
    /// the ProduceRequest fits in one frame of the node.
    batch_bytes_max: usize,
}

/// Bookkeeping of every record not yet resolved.
#[derive(Default)]
struct Ledger {
    /// Records per flush epoch.
    outstanding: BTreeMap<u64, usize>,
    /// Bytes of admitted records.
    buffered_bytes: usize,
    resolved: Vec<(AckSender, Result<RecordAck>)>,
}

impl Ledger {
    fn add(&mut self, epoch: u64) {
        *self.outstanding.entry(epoch).or_default() += 1;
    }

    /// `admitted_bytes`: the bytes the record held in the buffer, if it
    /// was admitted.
    fn resolve(
        &mut self,
        epoch: u64,
        admitted_bytes: Option<usize>,
        ack: AckSender,
        outcome: Result<RecordAck>,
    ) {
        match self.outstanding.get_mut(&epoch) {
            Some(n) if *n > 1 => *n -= 1,
            Some(_) => {
                self.outstanding.remove(&epoch);
            }
            None => debug_assert!(false, "record of epoch {epoch} resolved twice"),
        }
        if let Some(bytes) = admitted_bytes {
            debug_assert!(self.buffered_bytes >= bytes);
            self.buffered_bytes -= bytes;
        }
        self.resolved.push((ack, outcome));
    }

    fn resolve_batch(&mut self, slots: Vec<Slot>, outcome: impl Fn(usize) -> Result<RecordAck>) {
        for (i, slot) in slots.into_iter().enumerate() {
            self.resolve(slot.epoch, Some(slot.bytes), slot.ack, outcome(i));
        }
    }
}

pub(crate) struct ProducerCore {
    config: ProducerConfig,
    /// The node's frame limit (caps batch sizes).
    frame_bytes_max: usize,
    topics: HashMap<Arc<str>, TopicState>,
    /// Not admitted yet (the buffer was full), in send order.
    waiting: VecDeque<Queued>,
    ledger: Ledger,
    next_seq: u64,
    epoch: u64,
    /// Open batches holding records of this epoch or older are sent
    /// without waiting for linger.
    flush_through: Option<u64>,
    next_batch_id: u64,
    backoff: Backoff,
    jitter: Jitter,
}

impl ProducerCore {
    pub fn new(config: ProducerConfig, frame_bytes_max: u32, jitter: Jitter) -> Self {
        let backoff = Backoff {
            base: config.retry_backoff,
            max: config.retry_backoff_max,
        };
        Self {
            config,
            frame_bytes_max: frame_bytes_max as usize,
            topics: HashMap::new(),
            waiting: VecDeque::new(),
            ledger: Ledger::default(),
            next_seq: 0,
            epoch: 0,
            flush_through: None,
            next_batch_id: 0,
            backoff,
            jitter,
        }
    }

    /// Bytes of admitted records not yet resolved.
    pub fn buffered_bytes(&self) -> usize {
        self.ledger.buffered_bytes
    }

    /// True when a new record would be admitted at once.
    pub fn has_room(&self) -> bool {
        self.waiting.is_empty() && self.ledger.buffered_bytes < self.config.buffer_bytes_max
    }

    /// True when no record is unresolved.
    pub fn is_idle(&self) -> bool {
        self.ledger.outstanding.is_empty()
    }

    /// Outcomes to hand to the callers (outside any lock).
    pub fn take_resolved(&mut self) -> Vec<(AckSender, Result<RecordAck>)> {
        std::mem::take(&mut self.ledger.resolved)
    }

    /// Starts a flush: every record sent so far is sent without lingering.
    /// Returns the epoch to pass to [`ProducerCore::is_flushed`].
    pub fn begin_flush(&mut self) -> u64 {
        let target = self.epoch;
        self.epoch += 1;
        self.flush_through = Some(target);
        target
    }

    /// True when every record sent before `begin_flush` returned `target`
    /// is resolved.
    pub fn is_flushed(&self, target: u64) -> bool {
        self.ledger.outstanding.range(..=target).next().is_none()
    }

    /// Takes a record from `send`. The record must fit in one frame of the
    /// node (checked by the caller).
    pub fn enqueue(
        &mut self,
        topic: &str,
        record: Record,
        timestamp_ms: i64,
        ack: AckSender,
        now: Instant,
    ) {
        // Reuse the topic's name when it is known: no allocation per record.
        let topic = match self.topics.get_key_value(topic) {
            Some((name, _)) => name.clone(),
            None => Arc::from(topic),
        };
        let queued = Queued {
            bytes: record.encoded_bytes(),
            topic,
            record,
            timestamp_ms,
            ack,
            seq: self.next_seq,
            epoch: self.epoch,
        };
        self.next_seq += 1;
        self.ledger.add(queued.epoch);
        if self.waiting.is_empty() && self.fits(queued.bytes) {
            self.admit(queued, now);
        } else {
            self.waiting.push_back(queued);
        }
    }

    /// The buffer takes a record if it has room, and always takes one when
    /// empty (a record larger than the buffer must not wait forever).
    fn fits(&self, bytes: usize) -> bool {
        self.ledger.buffered_bytes == 0
            || self.ledger.buffered_bytes + bytes <= self.config.buffer_bytes_max
    }

    fn admit_waiting(&mut self, now: Instant) {
        while let Some(bytes) = self.waiting.front().map(|q| q.bytes) {
            if !self.fits(bytes) {
                break;
            }
            let queued = self.waiting.pop_front().expect("front exists");
            self.admit(queued, now);
        }
    }

    fn admit(&mut self, queued: Queued, now: Instant) {
        self.ledger.buffered_bytes += queued.bytes;
        let frame_bytes_max = self.frame_bytes_max;
        let batch_bytes_max = self.config.batch_bytes_max;
        let topic = self
            .topics
            .entry(queued.topic.clone())
            .or_insert_with_key(|name| TopicState {
                partition_count: None,
                stale: false,
                lookup: Lookup::Idle,
                lookup_failures: 0,
                pending: VecDeque::new(),
                partitions: Vec::new(),
                sticky: None,
                next_keyless: 0,
                batch_bytes_max: batch_bytes_max
                    .min(frame_bytes_max.saturating_sub(PRODUCE_FRAME_OVERHEAD_BYTES + name.len())),
            });
        if topic.partition_count.is_none() || topic.stale || !topic.pending.is_empty() {
            topic.pending.push_back(queued);
            return;
        }
        self.route(queued, now);
    }

    /// Puts an admitted record into its partition's open batch; the
    /// topic's partition count is known.
    fn route(&mut self, queued: Queued, now: Instant) {
        let topic = self
            .topics
            .get_mut(&queued.topic)
            .expect("admitted records have a topic");
        let count = topic.partition_count.expect("routed after lookup");
        let partition = match (&queued.record.partition, &queued.record.key) {
            (Some(p), _) if *p < count => *p,
            (Some(p), _) => {
                let error = Error::UnknownPartition {
                    topic: queued.topic.to_string(),
                    partition: *p,
                    partition_count: count,
                };
                return self.ledger.resolve(
                    queued.epoch,
                    Some(queued.bytes),
                    queued.ack,
                    Err(error),
                );
            }
            (None, Some(key)) => sprawl_wire::partition_for_key(key, count).expect("count > 0"),
            (None, None) => {
                let sticky = topic.sticky.filter(|&(p, batch_id)| {
                    self.config.keyless == KeylessPartitioning::Sticky
                        && p < count
                        && topic.partitions[p as usize].open.as_ref().map(|o| o.id)
                            == Some(batch_id)
                });
                match sticky {
                    Some((p, _)) => p,
                    None => {
                        let p = topic.next_keyless % count;
                        topic.next_keyless = topic.next_keyless.wrapping_add(1);
                        p
                    }
                }
            }
        };
        let queue = &mut topic.partitions[partition as usize];
        if let Some((seq_end, cause)) = &queue.abort_before {
            if queued.seq < *seq_end {
                let error = Error::Aborted {
                    topic: queued.topic.to_string(),
                    partition,
                    cause: Box::new(cause.clone()),
                };
                return self.ledger.resolve(
                    queued.epoch,
                    Some(queued.bytes),
                    queued.ack,
                    Err(error),
                );
            }
            queue.abort_before = None;
        }
        let batch_bytes_max = topic.batch_bytes_max;
        if queue
            .open
            .as_ref()
            .is_some_and(|open| open.builder.encoded_bytes() + queued.bytes > batch_bytes_max)
        {
            seal(queue);
        }
        let open = queue.open.get_or_insert_with(|| {
            let id = self.next_batch_id;
            self.next_batch_id += 1;
            OpenBatch {
                id,
                builder: BatchBuilder::with_capacity(
                    (sprawl_storage::BATCH_HEADER_BYTES + queued.bytes).max(4096),
                ),
                slots: Vec::new(),
                created_at: now,
                first_epoch: queued.epoch,
            }
        });
        queued
            .record
            .push_to(&mut open.builder, queued.timestamp_ms);
        open.slots.push(Slot {
            ack: queued.ack,
            bytes: queued.bytes,
            epoch: queued.epoch,
        });
        let open_id = open.id;
        if open.builder.encoded_bytes() >= batch_bytes_max {
            seal(queue);
        }
        if queued.record.partition.is_none() && queued.record.key.is_none() {
            topic.sticky = Some((partition, open_id));
        }
    }

    /// What to do now, and when to call again at the latest (linger or
    /// back-off expiring); `None` = only after an event.
    pub fn poll(&mut self, now: Instant, actions: &mut Vec<Action>) -> Option<Instant> {
        let mut wake: Option<Instant> = None;
        let mut wake_at = |t: Instant| wake = Some(wake.map_or(t, |w| w.min(t)));
        let max_in_flight = self.config.max_in_flight_per_partition;
        let linger = self.config.linger;
        let flush_through = self.flush_through;
        for (name, topic) in &mut self.topics {
            let wants_lookup =
                (topic.partition_count.is_none() || topic.stale) && !topic.pending.is_empty();
            if wants_lookup {
                let due = match topic.lookup {
                    Lookup::Idle => true,
                    Lookup::InFlight => false,
                    Lookup::RetryAt(t) if t <= now => true,
                    Lookup::RetryAt(t) => {
                        wake_at(t);
                        false
                    }
                };
                if due {
                    topic.lookup = Lookup::InFlight;
                    actions.push(Action::Lookup {
                        topic: name.clone(),
                    });
                }
            }
            for (partition, queue) in topic.partitions.iter_mut().enumerate() {
                let partition = partition as u32;
                for flight in &mut queue.in_flight {
                    match flight.state {
                        Flight::RetryAt(t) if t <= now => {
                            flight.state = Flight::Sending;
                            actions.push(produce(name, partition, &flight.batch));
                        }
                        Flight::RetryAt(t) => wake_at(t),
                        Flight::Sending | Flight::Done(_) => {}
                    }
                }
                while queue.in_flight.len() < max_in_flight {
                    if let Some(batch) = queue.sealed.pop_front() {
                        actions.push(produce(name, partition, &batch));
                        queue.in_flight.push_back(InFlight {
                            batch,
                            state: Flight::Sending,
                        });
                        continue;
                    }
                    let Some(open) = &queue.open else { break };
                    let flushing = flush_through.is_some_and(|e| open.first_epoch <= e);
                    let linger_end = open.created_at + linger;
                    if flushing || linger_end <= now {
                        seal(queue);
                    } else {
                        wake_at(linger_end);
                        break;
                    }
                }
            }
        }
        wake
    }

    /// The partition count of `topic`, or why it could not be found.
    pub fn on_lookup(&mut self, topic_name: &str, outcome: Result<u32>, now: Instant) {
        let Some(topic) = self.topics.get_mut(topic_name) else {
            return;
        };
        let outcome = outcome.and_then(|count| match count {
            0 => Err(Error::protocol(
                &format!("describe topic {topic_name:?}"),
                "topic has no partitions",
            )),
            n => Ok(n),
        });
        match outcome {
            Ok(count) => {
                topic.partition_count = Some(count);
                topic.stale = false;
                topic.lookup = Lookup::Idle;
                topic.lookup_failures = 0;
                if topic.partitions.len() < count as usize {
                    topic
                        .partitions
                        .resize_with(count as usize, PartitionQueue::default);
                }
                let pending = std::mem::take(&mut topic.pending);
                for queued in pending {
                    self.route(queued, now);
                }
            }
            Err(e) if e.is_retryable() && topic.lookup_failures < self.config.retries => {
                topic.lookup_failures += 1;
                let delay = retry_delay(&self.backoff, &mut self.jitter, topic.lookup_failures, &e);
                topic.lookup = Lookup::RetryAt(now + delay);
            }
            Err(e) => {
                topic.lookup = Lookup::Idle;
                topic.lookup_failures = 0;
                for queued in std::mem::take(&mut topic.pending) {
                    self.ledger.resolve(
                        queued.epoch,
                        Some(queued.bytes),
                        queued.ack,
                        Err(e.clone()),
                    );
                }
            }
        }
        self.admit_waiting(now);
    }

    /// The outcome of sending batch `batch_id`: its base offset (`None`
    /// when the node does not answer), or an error.
    pub fn on_produce(
        &mut self,
        topic_name: &str,
        partition: u32,
        batch_id: u64,
        outcome: Result<Option<u64>>,
        now: Instant,
    ) {
        let Some(topic) = self.topics.get_mut(topic_name) else {
            debug_assert!(false, "produce outcome for unknown topic {topic_name}");
            return;
        };
        let Some(queue) = topic.partitions.get_mut(partition as usize) else {
            debug_assert!(false, "produce outcome for unknown partition {partition}");
            return;
        };
        let Some(flight) = queue
            .in_flight
            .iter_mut()
            .find(|f| f.batch.id == batch_id && matches!(f.state, Flight::Sending))
        else {
            debug_assert!(false, "produce outcome for batch {batch_id} not in flight");
            return;
        };
        match outcome {
            Ok(base_offset) => flight.state = Flight::Done(Ok(base_offset)),
            Err(e) if e.is_retryable() && flight.batch.retries < self.config.retries => {
                flight.batch.retries += 1;
                let delay = retry_delay(&self.backoff, &mut self.jitter, flight.batch.retries, &e);
                tracing::debug!(
                    topic = topic_name, partition, batch_id, retries = flight.batch.retries,
                    ?delay, error = %e, "retrying batch"
                );
                flight.state = Flight::RetryAt(now + delay);
            }
            Err(e) => {
                if e.refreshes_metadata() {
                    topic.stale = true;
                }
                flight.state = Flight::Done(Err(e.clone()));
                let abort = |ledger: &mut Ledger, slots: Vec<Slot>| {
                    ledger.resolve_batch(slots, |_| {
                        Err(Error::Aborted {
                            topic: topic_name.to_owned(),
                            partition,
                            cause: Box::new(e.clone()),
                        })
                    })
                };
                for batch in queue.sealed.drain(..) {
                    abort(&mut self.ledger, batch.slots);
                }
                if let Some(open) = queue.open.take() {
                    abort(&mut self.ledger, open.slots);
                }
                queue.abort_before = Some((self.next_seq, e));
            }
        }
        while let Some(InFlight {
            state: Flight::Done(_),
            ..
        }) = queue.in_flight.front()
        {
            let done = queue.in_flight.pop_front().expect("front exists");
            let Flight::Done(outcome) = done.state else {
                unreachable!("matched Done above")
            };
            self.ledger
                .resolve_batch(done.batch.slots, |i| match &outcome {
                    Ok(base) => Ok(RecordAck {
                        partition,
                        offset: base.map(|b| b + i as u64),
                    }),
                    Err(e) => Err(e.clone()),
                });
        }
        self.admit_waiting(now);
    }
}

fn seal(queue: &mut PartitionQueue) {
    if let Some(open) = queue.open.take() {
        queue.sealed.push_back(Batch {
            id: open.id,
            bytes: Bytes::from(open.builder.finish()),
            slots: open.slots,
            retries: 0,
        });
    }
}

fn produce(topic: &Arc<str>, partition: u32, batch: &Batch) -> Action {
    Action::Produce {
        topic: topic.clone(),
        partition,
        batch_id: batch.id,
        bytes: batch.bytes.clone(),
        record_count: batch.slots.len() as u32,
    }
}

fn retry_delay(backoff: &Backoff, jitter: &mut Jitter, retries: u32, error: &Error) -> Duration {
    let delay = backoff.delay(retries, jitter.unit());
    error.retry_after().map_or(delay, |after| delay.max(after))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sprawl_wire::{ErrorCode, RemoteError};

    const FRAME: u32 = 16 << 20;

    struct Harness {
        core: ProducerCore,
        now: Instant,
        acks: Vec<oneshot::Receiver<Result<RecordAck>>>,
    }

    impl Harness {
        fn new(config: ProducerConfig) -> Self {
            Self {
                core: ProducerCore::new(config, FRAME, Jitter::with_seed(7)),
                now: Instant::now(),
                acks: Vec::new(),
            }
        }

        fn send(&mut self, record: Record) {
            let (tx, rx) = oneshot::channel();
            self.core.enqueue("t", record, 0, tx, self.now);
            self.acks.push(rx);
        }

        fn poll(&mut self) -> (Vec<Action>, Option<Instant>) {
            let mut actions = Vec::new();
            let wake = self.core.poll(self.now, &mut actions);
            (actions, wake)
        }

        fn produces(&mut self) -> Vec<(u32, u64, u32)> {
            self.poll()
                .0
                .into_iter()
                .filter_map(|a| match a {
                    Action::Produce {
                        partition,
                        batch_id,
                        record_count,
                        ..
                    } => Some((partition, batch_id, record_count)),
                    Action::Lookup { .. } => None,
                })
                .collect()
        }

        /// Delivers the resolved outcomes and returns them in ack order
        /// (`None` = not resolved yet).
        fn outcomes(&mut self) -> Vec<Option<Result<RecordAck>>> {
            for (tx, outcome) in self.core.take_resolved() {
                let _ = tx.send(outcome);
            }
            self.acks.iter_mut().map(|rx| rx.try_recv().ok()).collect()
        }

        fn lookup(&mut self, count: u32) {
            let (actions, _) = self.poll();
            assert_eq!(actions, vec![Action::Lookup { topic: "t".into() }]);
            self.core.on_lookup("t", Ok(count), self.now);
        }
    }

    fn quick_config() -> ProducerConfig {
        ProducerConfig {
            linger: Duration::ZERO,
            retry_backoff: Duration::from_millis(10),
            retry_backoff_max: Duration::from_millis(10),
            ..ProducerConfig::default()
        }
    }

    fn offsets(outcomes: &[Option<Result<RecordAck>>]) -> Vec<Option<u64>> {
        outcomes
            .iter()
            .map(|o| {
                o.as_ref()
                    .and_then(|r| r.as_ref().ok())
                    .and_then(|a| a.offset)
            })
            .collect()
    }

    fn retryable() -> Error {
        Error::Remote {
            request: "produce".into(),
            source: RemoteError::new(ErrorCode::LeaderNotAvailable, "election"),
        }
    }

    fn fatal() -> Error {
        Error::Remote {
            request: "produce".into(),
            source: RemoteError::new(ErrorCode::CorruptBatch, "bad"),
        }
    }

    #[test]
    fn first_record_looks_up_the_topic_then_batches_by_partition() {
        let mut h = Harness::new(quick_config());
        for i in 0..6u32 {
            h.send(Record::new("v").with_partition(i % 2));
        }
        h.lookup(2);
        let mut sent = h.produces();
        sent.sort();
        assert_eq!(sent.len(), 2);
        assert_eq!((sent[0].0, sent[0].2), (0, 3));
        assert_eq!((sent[1].0, sent[1].2), (1, 3));
        for (p, id, _) in sent {
            h.core.on_produce("t", p, id, Ok(Some(100)), h.now);
        }
        assert_eq!(
            offsets(&h.outcomes()),
            vec![100, 100, 101, 101, 102, 102]
                .into_iter()
                .map(Some)
                .collect::<Vec<_>>()
        );
        assert!(h.core.is_idle());
        assert_eq!(h.core.buffered_bytes(), 0);
    }

    #[test]
    fn linger_holds_a_batch_until_it_expires_or_a_flush() {
        let mut h = Harness::new(ProducerConfig {
            linger: Duration::from_millis(20),
            ..quick_config()
        });
        h.send(Record::new("a").with_partition(0));
        h.lookup(1);
        let (actions, wake) = h.poll();
        assert!(actions.is_empty());
        assert_eq!(wake, Some(h.now + Duration::from_millis(20)));
        h.send(Record::new("b").with_partition(0));
        h.now += Duration::from_millis(20);
        assert_eq!(h.produces().iter().map(|s| s.2).collect::<Vec<_>>(), [2]);

        h.send(Record::new("c").with_partition(0));
        let target = h.core.begin_flush();
        assert!(!h.core.is_flushed(target));
        // One batch is in flight: the flushed one waits for its slot.
        assert!(h.produces().is_empty());
        h.core.on_produce("t", 0, 0, Ok(Some(0)), h.now);
        assert_eq!(h.produces().iter().map(|s| s.2).collect::<Vec<_>>(), [1]);
        h.core.on_produce("t", 0, 1, Ok(Some(2)), h.now);
        assert!(h.core.is_flushed(target));
        assert_eq!(offsets(&h.outcomes()), vec![Some(0), Some(1), Some(2)]);
    }

    #[test]
    fn batches_are_cut_at_batch_bytes_max() {
        let value = vec![b'x'; 100];
        let per_record = Record::new(value.clone()).encoded_bytes();
        let mut h = Harness::new(ProducerConfig {
            batch_bytes_max: sprawl_storage::BATCH_HEADER_BYTES + 3 * per_record,
            max_in_flight_per_partition: 10,
            ..quick_config()
        });
        for _ in 0..7 {
            h.send(Record::new(value.clone()).with_partition(0));
        }
        h.lookup(1);
        assert_eq!(
            h.produces().iter().map(|s| s.2).collect::<Vec<_>>(),
            [3, 3, 1]
        );
    }

    #[test]
    fn a_retried_batch_keeps_its_place() {
        let mut h = Harness::new(quick_config());
        h.send(Record::new("a").with_partition(0));
        h.lookup(1);
        assert_eq!(h.produces(), vec![(0, 0, 1)]);
        h.send(Record::new("b").with_partition(0));
        h.core.on_produce("t", 0, 0, Err(retryable()), h.now);
        let (actions, wake) = h.poll();
        assert!(
            actions.is_empty(),
            "nothing overtakes the retry: {actions:?}"
        );
        h.now = wake.expect("retry scheduled");
        assert_eq!(h.produces(), vec![(0, 0, 1)]);
        h.core.on_produce("t", 0, 0, Ok(Some(0)), h.now);
        assert_eq!(h.produces(), vec![(0, 1, 1)]);
        h.core.on_produce("t", 0, 1, Ok(Some(1)), h.now);
        assert_eq!(offsets(&h.outcomes()), vec![Some(0), Some(1)]);
    }

    #[test]
    fn retries_run_out() {
        let mut h = Harness::new(ProducerConfig {
            retries: 2,
            ..quick_config()
        });
        h.send(Record::new("a").with_partition(0));
        h.lookup(1);
        h.produces();
        for _ in 0..2 {
            h.core.on_produce("t", 0, 0, Err(retryable()), h.now);
            h.now += Duration::from_millis(10);
            assert_eq!(h.produces(), vec![(0, 0, 1)]);
        }
        h.core.on_produce("t", 0, 0, Err(retryable()), h.now);
        let outcomes = h.outcomes();
        let err = outcomes[0].as_ref().unwrap().as_ref().unwrap_err();
        assert_eq!(err.remote_code(), Some(ErrorCode::LeaderNotAvailable));
    }

    #[test]
    fn a_failed_batch_aborts_what_was_sent_behind_it() {
        let mut h = Harness::new(ProducerConfig {
            buffer_bytes_max: 1,
            ..quick_config()
        });
        h.send(Record::new("a").with_partition(0));
        h.lookup(1);
        assert_eq!(h.produces(), vec![(0, 0, 1)]);
        // The buffer is full: these wait in line, not yet in a batch.
        h.send(Record::new("b").with_partition(0));
        h.send(Record::new("c").with_partition(0));
        assert!(!h.core.has_room());
        h.core.on_produce("t", 0, 0, Err(fatal()), h.now);
        let outcomes = h.outcomes();
        assert!(outcomes.iter().all(|o| matches!(o, Some(Err(_)))));
        assert!(matches!(outcomes[1], Some(Err(Error::Aborted { .. }))));
        // Records sent after the failure go through.
        h.send(Record::new("d").with_partition(0));
        assert_eq!(h.produces(), vec![(0, 1, 1)]);
        h.core.on_produce("t", 0, 1, Ok(Some(0)), h.now);
        assert_eq!(offsets(&h.outcomes())[3], Some(0));
        assert!(h.core.is_idle());
    }

    #[test]
    fn the_buffer_admits_in_order_as_acks_free_room() {
        let value = vec![b'x'; 100];
        let per_record = Record::new(value.clone()).encoded_bytes();
        let mut h = Harness::new(ProducerConfig {
            buffer_bytes_max: 2 * per_record,
            ..quick_config()
        });
        for _ in 0..5 {
            h.send(Record::new(value.clone()).with_partition(0));
        }
        assert_eq!(h.core.buffered_bytes(), 2 * per_record);
        h.lookup(1);
        assert_eq!(h.produces(), vec![(0, 0, 2)]);
        h.core.on_produce("t", 0, 0, Ok(Some(0)), h.now);
        assert_eq!(h.produces(), vec![(0, 1, 2)]);
        h.core.on_produce("t", 0, 1, Ok(Some(2)), h.now);
        assert_eq!(h.produces(), vec![(0, 2, 1)]);
        h.core.on_produce("t", 0, 2, Ok(Some(4)), h.now);
        assert_eq!(offsets(&h.outcomes()), (0..5).map(Some).collect::<Vec<_>>());
    }

    #[test]
    fn concurrent_batches_are_acknowledged_in_send_order() {
        let mut h = Harness::new(ProducerConfig {
            max_in_flight_per_partition: 2,
            batch_bytes_max: 100,
            ..quick_config()
        });
        h.send(Record::new(vec![0u8; 50]).with_partition(0));
        h.send(Record::new(vec![0u8; 50]).with_partition(0));
        h.lookup(1);
        assert_eq!(h.produces(), vec![(0, 0, 1), (0, 1, 1)]);
        h.core.on_produce("t", 0, 1, Ok(Some(7)), h.now);
        assert_eq!(offsets(&h.outcomes()), vec![None, None]);
        h.core.on_produce("t", 0, 0, Ok(Some(8)), h.now);
        assert_eq!(offsets(&h.outcomes()), vec![Some(8), Some(7)]);
    }

    #[test]
    fn keys_and_stickiness_choose_partitions() {
        let mut h = Harness::new(ProducerConfig {
            max_in_flight_per_partition: 4,
            ..quick_config()
        });
        h.send(Record::new("v").with_key("user-1"));
        h.send(Record::new("v"));
        h.send(Record::new("v"));
        h.lookup(4);
        let sent = h.produces();
        let keyed = sprawl_wire::partition_for_key(b"user-1", 4).unwrap();
        assert!(sent.iter().any(|s| s.0 == keyed), "{sent:?}");
        assert_eq!(sent.iter().map(|s| s.2).sum::<u32>(), 3);
        // Both keyless records stuck to one partition, in one batch.
        assert!(sent.iter().any(|s| s.2 >= 2), "{sent:?}");
    }

    #[test]
    fn unknown_topics_fail_pending_records_and_unknown_partitions_fail_locally() {
        let mut h = Harness::new(quick_config());
        h.send(Record::new("v"));
        let (actions, _) = h.poll();
        assert_eq!(actions.len(), 1);
        let unknown = Error::Remote {
            request: "describe".into(),
            source: RemoteError::new(ErrorCode::UnknownTopic, "no"),
        };
        h.core.on_lookup("t", Err(unknown), h.now);
        assert!(matches!(h.outcomes()[0], Some(Err(Error::Remote { .. }))));
        h.send(Record::new("v").with_partition(9));
        h.lookup(2);
        assert!(matches!(
            h.outcomes()[1],
            Some(Err(Error::UnknownPartition { partition: 9, .. }))
        ));
        assert!(h.core.is_idle());
    }
}

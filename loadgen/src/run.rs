//! Runs one workload through a [`Broker`] on tokio: producers (closed loop
//! as tasks, open loop paced by one thread), consumers (one task per
//! partition), the progress line, and the tally.
//!
//! Closed loop: each producer sends a window of `batch` messages, flushes,
//! and awaits their acks before the next window. Open loop: one pacing
//! thread walks one [`OpenLoopSchedule`] per topic (each following the
//! topic's rate curve from the [`LoadShape`]), always sending the message
//! due first; a topic's windows of `batch` messages go to one partition
//! (see [`PartitionChoice`]) and are dealt to the producers in turn, so each
//! window fills one client batch; a collector task per producer awaits
//! the acks. The pacer sleeps with 1 ns timer slack (tokio's timer has
//! 1 ms granularity, which would add up to 1 ms of pacing error to every
//! corrected sample), and when a producer has `max_in_flight` messages
//! outstanding it waits: those messages go out late and their latency,
//! measured from the due time, says so.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use hdrhistogram::Histogram;

use crate::clock::Clock;
use crate::driver::{
    Ack, AckLevel, Broker, PartitionState, Publisher, PublisherSettings, StartAt, Subscriber,
};
use crate::payload::Stamp;
use crate::placement::PartitionChoice;
use crate::progress::{lock, report_progress, Live};
use crate::recorder::LatencyRecorder;
use crate::report::{
    Results, Stored, END_TO_END, END_TO_END_UNCORRECTED, PUBLISH_ACK, PUBLISH_ACK_UNCORRECTED,
};
use crate::schedule::{OpenLoopSchedule, SizeDist, SplitMix64};
use crate::shape::{LoadShape, TopicRate};
use crate::timeline::Timeline;

/// How long consumers keep reading after the producers are done, for
/// messages still on their way.
const DRAIN_WAIT_MAX: Duration = Duration::from_secs(10);
/// Failures after which a producer gives up.
const PRODUCER_FAILURES_MAX: u64 = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    Produce,
    Consume,
    Pubsub,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Produce => "produce",
            Mode::Consume => "consume",
            Mode::Pubsub => "pubsub",
        })
    }
}

/// A workload, resolved from the command line.
#[derive(Debug, Clone)]
pub struct Plan {
    pub mode: Mode,
    pub producers: usize,
    pub consumers: usize,
    pub topics: Vec<String>,
    pub partitions: u32,
    pub sizes: SizeDist,
    pub batch: usize,
    pub linger: Duration,
    pub acks: AckLevel,
    /// Measured messages to send (produce, pubsub) or read (consume).
    pub messages: Option<u64>,
    pub duration: Option<Duration>,
    pub warmup: Duration,
    /// Open loop: each topic's target rate over time. `None`: closed loop.
    pub shape: Option<LoadShape>,
    /// Per topic: which partition each window of messages goes to.
    pub placements: Vec<PartitionChoice>,
    /// Per producer.
    pub max_in_flight: usize,
    /// Sprawl: batches per partition in flight per producer.
    pub batches_in_flight: usize,
    pub seed: u64,
    pub progress: bool,
}

/// What a run measured.
pub struct Outcome {
    pub results: Results,
    pub histograms: BTreeMap<String, Histogram<u64>>,
    pub stored: Stored,
    /// Per second: due, acked (per topic), latency; `None` without
    /// producers.
    pub timeline: Option<Timeline>,
}

/// State shared by every task of a run.
struct Run {
    plan: Plan,
    clock: Clock,
    run_id: u32,
    measure_from_ns: u64,
    stop_at_ns: Option<u64>,
    /// Measured messages still to send (or read); unlimited without `--messages`.
    quota: AtomicI64,
    live: Arc<Live>,
    filler: Vec<u8>,
}

impl Run {
    /// Takes one measured message from the quota; false when it is used up.
    fn claim(&self) -> bool {
        self.quota.fetch_sub(1, Ordering::Relaxed) > 0
    }

    fn past_end(&self, ns: u64) -> bool {
        self.stop_at_ns.is_some_and(|s| ns >= s)
    }

    /// Closed loop: where message `k` of producer `i` goes (topic index,
    /// partition). A window of `batch` messages at a time to one partition;
    /// the producers' windows take the topics in turn, and each topic's
    /// windows (numbered across producers) its partitions.
    fn destination(&self, i: usize, k: u64) -> (usize, u32) {
        let p = &self.plan;
        let slot = i as u64 + (k / p.batch as u64) * p.producers as u64;
        let topics = p.topics.len() as u64;
        let topic = (slot % topics) as usize;
        (topic, p.placements[topic].partition(slot / topics))
    }

    /// An empty tally (with an empty timeline of this run).
    fn tally(&self) -> Tally {
        Tally {
            measured_messages: 0,
            measured_bytes: 0,
            last_ns: 0,
            first_error: None,
            timeline: Timeline::new(self.clock.unix_ns_at(0)),
        }
    }

    fn payload(
        &self,
        rng: &mut SplitMix64,
        seq: u64,
        intended_ns: u64,
        sent_ns: u64,
    ) -> (bytes::Bytes, usize) {
        let size = self.plan.sizes.sample(rng);
        let stamp = Stamp {
            run_id: self.run_id,
            seq,
            intended_ns,
            sent_ns,
        };
        (stamp.encode(size, &self.filler), size)
    }
}

/// One task's tally.
#[derive(Debug)]
struct Tally {
    measured_messages: u64,
    measured_bytes: u64,
    last_ns: u64,
    first_error: Option<String>,
    timeline: Timeline,
}

impl Tally {
    fn fail(&mut self, live: &Live, e: &anyhow::Error) {
        live.failed.fetch_add(1, Ordering::Relaxed);
        if self.first_error.is_none() {
            self.first_error = Some(format!("{e:#}"));
        }
    }

    fn add(&mut self, other: Tally) {
        self.measured_messages += other.measured_messages;
        self.measured_bytes += other.measured_bytes;
        self.last_ns = self.last_ns.max(other.last_ns);
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.timeline.merge(&other.timeline);
    }
}

/// Runs `plan` against `broker` and tallies the result.
pub async fn execute<B: Broker>(broker: Arc<B>, plan: Plan) -> anyhow::Result<Outcome> {
    anyhow::ensure!(
        plan.producers > 0 || plan.mode == Mode::Consume,
        "no producers"
    );
    anyhow::ensure!(
        plan.consumers > 0 || plan.mode == Mode::Produce,
        "no consumers"
    );
    anyhow::ensure!(plan.batch > 0, "batch must be at least 1");
    anyhow::ensure!(
        plan.placements.len() == plan.topics.len(),
        "{} partition choices for {} topics",
        plan.placements.len(),
        plan.topics.len()
    );
    anyhow::ensure!(
        plan.sizes.min() >= crate::payload::HEADER_BYTES || plan.mode == Mode::Consume,
        "messages must be at least {} bytes (their timestamp header)",
        crate::payload::HEADER_BYTES
    );
    if plan.mode != Mode::Consume {
        broker.prepare(&plan.topics, plan.partitions).await?;
    }
    let before = broker.stored(&plan.topics, plan.partitions).await?;
    let open_loop = plan.shape.is_some();
    let live = Arc::new(Live::default());

    // Subscriptions are open before the clock starts, so that pubsub's
    // consumers see every message and consume's throughput excludes setup.
    let mut subscribers = Vec::new();
    if plan.mode != Mode::Produce {
        let start = if plan.mode == Mode::Pubsub {
            StartAt::Latest
        } else {
            StartAt::Earliest
        };
        let mut index = 0;
        for topic in &plan.topics {
            for partition in 0..plan.partitions {
                let sub = broker
                    .subscriber(index % plan.consumers, topic, partition, start)
                    .await?;
                subscribers.push((sub, before[index].messages));
                index += 1;
            }
        }
    }
    let mut publishers = Vec::new();
    if plan.mode != Mode::Consume {
        let settings = PublisherSettings {
            acks: plan.acks,
            batch: plan.batch,
            linger: plan.linger,
            message_bytes_max: plan.sizes.max(),
            max_in_flight: plan.max_in_flight,
            batches_in_flight_per_partition: plan.batches_in_flight,
        };
        for _ in 0..plan.producers {
            publishers.push(Arc::new(broker.publisher(&settings).await?));
        }
    }

    let cpu_start_s = process_cpu_s();
    let clock = Clock::start();
    let measure_from_ns = plan.warmup.as_nanos() as u64;
    let run = Arc::new(Run {
        stop_at_ns: plan.duration.map(|d| measure_from_ns + d.as_nanos() as u64),
        quota: AtomicI64::new(plan.messages.map_or(i64::MAX, |n| n as i64)),
        measure_from_ns,
        clock,
        run_id: (SplitMix64::new(plan.seed ^ crate::clock::unix_now_secs()).next_u64() >> 32)
            as u32,
        live: live.clone(),
        filler: vec![0x5a; plan.sizes.max()],
        plan,
    });
    let (stop_progress, stop_rx) = tokio::sync::watch::channel(false);
    let progress = run.plan.progress.then(|| {
        tokio::spawn(report_progress(
            live.clone(),
            clock,
            measure_from_ns,
            run.plan.mode != Mode::Produce,
            stop_rx,
        ))
    });

    // Consumers first: they are already subscribed.
    let (stop_consumers, consumers_stop_rx) = tokio::sync::watch::channel(false);
    let e2e_recorders: Vec<_> = subscribers
        .iter()
        .map(|_| Arc::new(Mutex::new(LatencyRecorder::new(open_loop, measure_from_ns))))
        .collect();
    let consumer_tasks: Vec<_> = subscribers
        .into_iter()
        .zip(&e2e_recorders)
        .map(|((sub, expected), rec)| {
            if run.plan.mode == Mode::Pubsub {
                live.watch(rec.clone());
            }
            tokio::spawn(consume(
                run.clone(),
                sub,
                expected,
                rec.clone(),
                consumers_stop_rx.clone(),
            ))
        })
        .collect();

    let ack_recorders: Vec<_> = publishers
        .iter()
        .map(|_| Arc::new(Mutex::new(LatencyRecorder::new(open_loop, measure_from_ns))))
        .collect();
    if run.plan.mode == Mode::Produce {
        for r in &ack_recorders {
            live.watch(r.clone());
        }
    }
    let mut produced = run.tally();
    if !publishers.is_empty() {
        let tallies = match run.plan.shape.clone() {
            None => {
                let tasks: Vec<_> = publishers
                    .iter()
                    .zip(&ack_recorders)
                    .enumerate()
                    .map(|(i, (p, r))| {
                        tokio::spawn(closed_loop(run.clone(), i, p.clone(), r.clone()))
                    })
                    .collect();
                let mut tallies = Vec::new();
                for t in tasks {
                    tallies.push(t.await.context("producer task")?);
                }
                tallies
            }
            Some(shape) => {
                open_loop_producers(run.clone(), shape, &publishers, &ack_recorders).await?
            }
        };
        for t in tallies {
            produced.add(t);
        }
    }

    // Pubsub: let the consumers catch up with what was acknowledged.
    if run.plan.mode == Mode::Pubsub {
        let deadline = tokio::time::Instant::now() + DRAIN_WAIT_MAX;
        while live.delivered.load(Ordering::Relaxed) < live.acked.load(Ordering::Relaxed)
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = stop_consumers.send(true);
    }
    let mut consumed = run.tally();
    for t in consumer_tasks {
        consumed.add(t.await.context("consumer task")?);
    }
    let active_ns = clock.now_ns();
    let _ = stop_progress.send(true);
    if let Some(p) = progress {
        let _ = p.await;
    }
    let _ = stop_consumers;

    // acks=none: what was "sent" may still be on its way to the log.
    let after = settled_stored(
        &*broker,
        &run.plan,
        live.acked.load(Ordering::Relaxed),
        &before,
    )
    .await?;
    let sum = |v: &[PartitionState]| {
        v.iter()
            .fold((0, 0), |(m, b), s| (m + s.messages, b + s.bytes))
    };
    let ((messages_before, bytes_before), (messages_after, bytes_after)) =
        (sum(&before), sum(&after));

    let mut histograms = BTreeMap::new();
    let mut merge = |recorders: &[Arc<Mutex<LatencyRecorder>>], kind: &str, uncorrected: &str| {
        let mut all = LatencyRecorder::new(open_loop, measure_from_ns);
        for r in recorders {
            all.merge(&lock(r));
        }
        histograms.insert(kind.to_string(), all.corrected);
        if let Some(u) = all.uncorrected {
            histograms.insert(uncorrected.to_string(), u);
        }
    };
    if run.plan.mode != Mode::Consume {
        merge(&ack_recorders, PUBLISH_ACK, PUBLISH_ACK_UNCORRECTED);
    }
    if run.plan.mode == Mode::Pubsub {
        merge(&e2e_recorders, END_TO_END, END_TO_END_UNCORRECTED);
    }

    let counted = if run.plan.mode == Mode::Produce {
        &produced
    } else {
        &consumed
    };
    let elapsed_s = counted.last_ns.saturating_sub(measure_from_ns) as f64 / 1e9;
    let per_s = |n: f64| if elapsed_s > 0.0 { n / elapsed_s } else { 0.0 };
    let acked_by_topic = if publishers.is_empty() {
        BTreeMap::new()
    } else {
        run.plan
            .topics
            .iter()
            .cloned()
            .zip(produced.timeline.acked_per_topic(run.plan.topics.len()))
            .collect()
    };
    let results = Results {
        sent_total: live.sent.load(Ordering::Relaxed),
        acked_total: live.acked.load(Ordering::Relaxed),
        failed_total: live.failed.load(Ordering::Relaxed),
        delivered_total: live.delivered.load(Ordering::Relaxed),
        measured_messages: counted.measured_messages,
        measured_bytes: counted.measured_bytes,
        elapsed_s,
        msgs_per_s: per_s(counted.measured_messages as f64),
        mb_per_s: per_s(counted.measured_bytes as f64) / 1e6,
        active_s: active_ns as f64 / 1e9,
        loadgen_cpu_s: process_cpu_s() - cpu_start_s,
        first_error: produced.first_error.or(consumed.first_error),
        acked_by_topic,
    };
    Ok(Outcome {
        results,
        histograms,
        stored: Stored {
            messages_before,
            messages_after,
            bytes_before,
            bytes_after,
        },
        timeline: (!publishers.is_empty()).then_some(produced.timeline),
    })
}

/// CPU seconds (user + system) this process used so far.
fn process_cpu_s() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we own; RUSAGE_SELF
    // is always valid.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// The broker's stored counts, once they stopped moving (acks=none) or at
/// once (acknowledged writes are already counted).
async fn settled_stored<B: Broker>(
    broker: &B,
    plan: &Plan,
    acked: u64,
    before: &[PartitionState],
) -> anyhow::Result<Vec<PartitionState>> {
    let mut after = broker.stored(&plan.topics, plan.partitions).await?;
    if plan.acks != AckLevel::None || plan.mode == Mode::Consume {
        return Ok(after);
    }
    let before_total: u64 = before.iter().map(|s| s.messages).sum();
    for _ in 0..50 {
        let total: u64 = after.iter().map(|s| s.messages).sum();
        if total >= before_total + acked {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = broker.stored(&plan.topics, plan.partitions).await?;
    }
    Ok(after)
}

/// A closed-loop producer: windows of `batch` messages, each flushed and
/// acknowledged before the next.
async fn closed_loop<P: Publisher>(
    run: Arc<Run>,
    i: usize,
    publisher: Arc<P>,
    recorder: Arc<Mutex<LatencyRecorder>>,
) -> Tally {
    let mut rng = SplitMix64::new(run.plan.seed ^ (i as u64).wrapping_mul(0x9e37));
    let mut tally = run.tally();
    let mut window: Vec<(u64, usize, Ack)> = Vec::with_capacity(run.plan.batch);
    let mut done_ns = Vec::with_capacity(run.plan.batch);
    let mut k = 0u64;
    let mut finished = false;
    while !finished && !run.past_end(run.clock.now_ns()) {
        let (t, partition) = run.destination(i, k);
        let topic = &run.plan.topics[t];
        for _ in 0..run.plan.batch {
            let now = run.clock.now_ns();
            if now >= run.measure_from_ns && !run.claim() {
                finished = true;
                break;
            }
            let (payload, size) = run.payload(&mut rng, k, now, now);
            k += 1;
            run.live.sent.fetch_add(1, Ordering::Relaxed);
            tally.timeline.due(now);
            match publisher.publish(topic, partition, payload).await {
                Ok(ack) => window.push((now, size, ack)),
                Err(e) => tally.fail(&run.live, &e),
            }
        }
        if let Err(e) = publisher.flush().await {
            tally.fail(&run.live, &e);
        }
        for (sent_ns, size, ack) in window.drain(..) {
            let outcome = ack.await;
            let now = run.clock.now_ns();
            match outcome {
                Ok(()) => {
                    run.live.acked.fetch_add(1, Ordering::Relaxed);
                    tally.timeline.acked(t, sent_ns, now);
                    done_ns.push((sent_ns, now));
                    if sent_ns >= run.measure_from_ns {
                        tally.measured_messages += 1;
                        tally.measured_bytes += size as u64;
                        tally.last_ns = tally.last_ns.max(now);
                    }
                }
                Err(e) => tally.fail(&run.live, &e),
            }
        }
        {
            let mut r = lock(&recorder);
            for (sent, done) in done_ns.drain(..) {
                r.record(sent, sent, done);
            }
        }
        if run.live.failed.load(Ordering::Relaxed) > PRODUCER_FAILURES_MAX {
            break;
        }
    }
    tally
}

/// A message handed to the client, awaiting its ack.
struct Pending {
    /// Topic index.
    topic: usize,
    intended_ns: u64,
    sent_ns: u64,
    size: usize,
    ack: Ack,
}

/// Open loop: the pacing thread and one ack collector per producer.
async fn open_loop_producers<P: Publisher>(
    run: Arc<Run>,
    shape: LoadShape,
    publishers: &[Arc<P>],
    recorders: &[Arc<Mutex<LatencyRecorder>>],
) -> anyhow::Result<Vec<Tally>> {
    let in_flight: Vec<Arc<AtomicUsize>> = publishers.iter().map(|_| Arc::default()).collect();
    let mut senders = Vec::new();
    let mut collectors = Vec::new();
    for (recorder, in_flight) in recorders.iter().zip(&in_flight) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Pending>();
        senders.push(tx);
        collectors.push(tokio::spawn(collect_acks(
            run.clone(),
            rx,
            recorder.clone(),
            in_flight.clone(),
        )));
    }
    let handle = tokio::runtime::Handle::current();
    let publishers: Vec<Arc<P>> = publishers.to_vec();
    let pacer_run = run.clone();
    let pacer = std::thread::Builder::new()
        .name("loadgen-pacer".into())
        .spawn(move || pace(pacer_run, shape, handle, publishers, senders, in_flight))
        .context("starting the pacing thread")?;
    let mut tallies = Vec::new();
    for c in collectors {
        tallies.push(c.await.context("ack collector")?);
    }
    let pacer_tally = tokio::task::spawn_blocking(move || pacer.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the pacing thread panicked"))?;
    tallies.push(pacer_tally);
    Ok(tallies)
}

/// The pacing thread: sends each message when it falls due.
fn pace<P: Publisher>(
    run: Arc<Run>,
    shape: LoadShape,
    handle: tokio::runtime::Handle,
    publishers: Vec<Arc<P>>,
    senders: Vec<tokio::sync::mpsc::UnboundedSender<Pending>>,
    in_flight: Vec<Arc<AtomicUsize>>,
) -> Tally {
    // SAFETY: prctl(PR_SET_TIMERSLACK) only changes this thread's timer
    // slack; it takes no pointers.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong);
    }
    let mut tally = run.tally();
    let mut rng = SplitMix64::new(run.plan.seed);
    let start_ns = run.clock.now_ns();
    let start_unix_ns = run.clock.unix_ns_at(start_ns);
    let topics = run.plan.topics.len();
    // Phases i/T: topics at equal rates take turns instead of all falling
    // due at the same instant.
    let mut schedules: Vec<OpenLoopSchedule<TopicRate>> = (0..topics)
        .map(|t| {
            OpenLoopSchedule::new(
                start_ns,
                shape.topic_rate(t, start_unix_ns),
                t as f64 / topics as f64,
            )
        })
        .collect();
    // Per topic: its current window and the producer sending it.
    let mut windows: Vec<Option<(u64, usize)>> = vec![None; topics];
    let mut windows_dealt = 0usize;
    let mut counts = vec![0u64; publishers.len()];
    loop {
        let (t, due) = schedules
            .iter()
            .map(OpenLoopSchedule::next_due_ns)
            .enumerate()
            .min_by_key(|&(_, due)| due)
            .expect("at least one topic");
        if due == u64::MAX
            || run.past_end(due)
            || run.live.failed.load(Ordering::Relaxed) > PRODUCER_FAILURES_MAX
        {
            break;
        }
        let now = run.clock.now_ns();
        if due > now {
            std::thread::sleep(Duration::from_nanos((due - now).min(10_000_000)));
            continue;
        }
        let w = schedules[t].next_index() / run.plan.batch as u64;
        let i = match windows[t] {
            Some((current, i)) if current == w => i,
            _ => {
                let i = windows_dealt % publishers.len();
                windows_dealt += 1;
                windows[t] = Some((w, i));
                i
            }
        };
        if in_flight[i].load(Ordering::Acquire) >= run.plan.max_in_flight {
            // Over the in-flight bound: the message stays due and goes out
            // late; its latency counts from the due time.
            std::thread::sleep(Duration::from_micros(50));
            continue;
        }
        let intended_ns = schedules[t].take_due(now).expect("due");
        if intended_ns >= run.measure_from_ns && !run.claim() {
            break;
        }
        tally.timeline.due(intended_ns);
        let k = counts[i];
        counts[i] += 1;
        let partition = run.plan.placements[t].partition(w);
        let sent_ns = run.clock.now_ns();
        let (payload, size) = run.payload(&mut rng, k, intended_ns, sent_ns);
        run.live.sent.fetch_add(1, Ordering::Relaxed);
        match handle.block_on(publishers[i].publish(&run.plan.topics[t], partition, payload)) {
            Ok(ack) => {
                in_flight[i].fetch_add(1, Ordering::AcqRel);
                let _ = senders[i].send(Pending {
                    topic: t,
                    intended_ns,
                    sent_ns,
                    size,
                    ack,
                });
            }
            Err(e) => tally.fail(&run.live, &e),
        }
    }
    tally
}

/// Awaits one producer's acks as they come, in any order.
async fn collect_acks(
    run: Arc<Run>,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Pending>,
    recorder: Arc<Mutex<LatencyRecorder>>,
    in_flight: Arc<AtomicUsize>,
) -> Tally {
    let clock = run.clock;
    let mut tally = run.tally();
    let mut acks = FuturesUnordered::new();
    let mut open = true;
    loop {
        tokio::select! {
            m = rx.recv(), if open => match m {
                Some(p) => acks.push(async move {
                    let outcome = p.ack.await;
                    (p.topic, p.intended_ns, p.sent_ns, p.size, outcome, clock.now_ns())
                }),
                None => open = false,
            },
            Some((topic, intended, sent, size, outcome, done)) = acks.next(), if !acks.is_empty() => {
                in_flight.fetch_sub(1, Ordering::AcqRel);
                match outcome {
                    Ok(()) => {
                        run.live.acked.fetch_add(1, Ordering::Relaxed);
                        tally.timeline.acked(topic, intended, done);
                        if lock(&recorder).record(intended, sent, done) {
                            tally.measured_messages += 1;
                            tally.measured_bytes += size as u64;
                            tally.last_ns = tally.last_ns.max(done);
                        }
                    }
                    Err(e) => tally.fail(&run.live, &e),
                }
            }
            else => break,
        }
    }
    tally
}

/// One partition's consumer. Consume mode: reads the `expected` messages
/// that were there at the start (or until the time or message limit).
/// Pubsub: records publish→deliver of this run's messages until stopped.
async fn consume<S: Subscriber>(
    run: Arc<Run>,
    mut sub: S,
    expected: u64,
    recorder: Arc<Mutex<LatencyRecorder>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Tally {
    let pubsub = run.plan.mode == Mode::Pubsub;
    let mut tally = run.tally();
    let mut read = 0u64;
    loop {
        if !pubsub && (read >= expected || run.past_end(run.clock.now_ns())) {
            break;
        }
        let next = tokio::select! {
            n = sub.next() => n,
            _ = stop.changed() => break,
            // Consume mode also ends at the time limit with nothing coming.
            _ = tokio::time::sleep(Duration::from_millis(250)), if !pubsub => continue,
        };
        let payload = match next {
            Ok(Some(p)) => p,
            Ok(None) => break,
            Err(e) => {
                tally.fail(&run.live, &e);
                break;
            }
        };
        let now = run.clock.now_ns();
        if pubsub {
            let Some(stamp) = Stamp::decode(&payload).filter(|s| s.run_id == run.run_id) else {
                continue;
            };
            run.live.delivered.fetch_add(1, Ordering::Relaxed);
            if lock(&recorder).record(stamp.intended_ns, stamp.sent_ns, now) {
                tally.measured_messages += 1;
                tally.measured_bytes += payload.len() as u64;
                tally.last_ns = now;
            }
        } else {
            read += 1;
            run.live.delivered.fetch_add(1, Ordering::Relaxed);
            if now >= run.measure_from_ns {
                if !run.claim() {
                    break;
                }
                tally.measured_messages += 1;
                tally.measured_bytes += payload.len() as u64;
                tally.last_ns = now;
            }
        }
    }
    tally
}

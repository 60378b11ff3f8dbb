//! [`SegmentReplicaLog`], the partition's segment log used as its Raft log:
//! a model test against [`MemReplicaLog`] (appends with truncations, partial
//! flushes, hard and conf state, reads, crashes), and the durability
//! contract across reopens: flushed writes survive, queued ones do not, a
//! truncation over still-queued writes wins, and only the bootstrap
//! snapshot is installed.

use std::cell::RefCell;
use std::future::Future;
use std::path::Path;
use std::rc::Rc;

use bytes::Bytes;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use sprawl_cluster::raft::eraftpb::{ConfState, Entry, EntryType, HardState};
use sprawl_cluster::replica::log::encode_payload;
use sprawl_cluster::replica::{LogSnapshot, MemReplicaLog, ReplicaLog, ReplicaLogError};
use sprawl_io::dma_pool::DmaBufPool;
use sprawl_shards::partition::Partition;
use sprawl_shards::replication::segment_log::stored_batch;
use sprawl_shards::replication::{SegmentReplicaLog, WriteOp, WriteQueue};
use sprawl_storage::{BatchBuilder, BatchView, FsyncPolicy, LogConfig, RaftStamp, Record};

// ------------------------------------------------------------------ setup

/// Runs `f` on a fresh glommio executor, warmed up on `dir`'s disk first
/// (glommio's iopoll probe must see a non-empty read-only file first).
fn run<F, Fut, T>(dir: &Path, f: F) -> T
where
    F: FnOnce(Rc<DmaBufPool>) -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    let dir = dir.to_path_buf();
    glommio::LocalExecutorBuilder::default()
        .io_memory(1 << 20)
        .spawn(move || async move {
            sprawl_io::warmup::warm_up_dir(&dir).await.expect("warm-up");
            f(DmaBufPool::new(4 << 20)).await
        })
        .expect("executor")
        .join()
        .expect("executor thread")
}

/// Small segments (entries span several) and a small memory ring (reads
/// of all but the newest entries go to the segment files).
fn log_config(ring_bytes: usize) -> LogConfig {
    LogConfig {
        segment_bytes: 4 << 10,
        index_interval_bytes: 512,
        ring_bytes,
        fsync: FsyncPolicy::Never,
        preallocate: false,
        ..LogConfig::default()
    }
}

struct Replica {
    part: Rc<Partition>,
    log: SegmentReplicaLog,
    queue: Rc<RefCell<WriteQueue>>,
}

async fn open(dir: &Path, pool: &Rc<DmaBufPool>, ring_bytes: usize) -> Replica {
    let part = Rc::new(
        Partition::open(dir, "t", 0, log_config(ring_bytes), pool.clone(), None)
            .await
            .expect("opening the partition"),
    );
    let log = SegmentReplicaLog::open(part.clone(), part.dir.join("raft-state"))
        .expect("opening the replica log");
    let queue = log.queue();
    Replica { part, log, queue }
}

/// Applies up to `limit` queued writes in order, as the shard's flusher
/// (`flush_queue`) does, without the fdatasync; returns what it applied.
async fn apply(queue: &Rc<RefCell<WriteQueue>>, part: &Partition, limit: usize) -> Vec<WriteOp> {
    let mut done = Vec::new();
    while done.len() < limit {
        let op = queue.borrow().front();
        let Some(op) = op else { break };
        match &op {
            WriteOp::Truncate(from) => part
                .log
                .truncate_raft_suffix(*from)
                .await
                .unwrap_or_else(|e| panic!("truncating from {from}: {e}")),
            WriteOp::Append(entry) => {
                let (batch, control) = stored_batch(entry);
                let stamp = RaftStamp {
                    term: entry.term,
                    index: entry.index,
                };
                part.log
                    .append_raft_queued(batch, stamp, control)
                    .await
                    .unwrap_or_else(|e| panic!("appending entry {}: {e}", entry.index));
            }
        }
        queue.borrow_mut().pop_done();
        done.push(op);
    }
    done
}

/// The shard flusher's round: every queued write, then one fdatasync.
async fn flush(queue: &Rc<RefCell<WriteQueue>>, part: &Partition) {
    apply(queue, part, usize::MAX).await;
    part.log.sync().await.expect("fdatasync");
    trim(queue, part);
}

/// What the flusher does after its fdatasync: synced entries leave the
/// overlay and are read from the log from then on.
fn trim(queue: &Rc<RefCell<WriteQueue>>, part: &Partition) {
    let synced = part.log.synced_raft_index().unwrap_or(0);
    queue.borrow_mut().trim_synced(synced);
}

// ---------------------------------------------------------------- entries

/// What an entry carries.
#[derive(Debug, Clone)]
enum Kind {
    /// A producer batch of these record values.
    Data(Vec<Vec<u8>>),
    /// A new leader's empty entry.
    Empty,
    Conf(Vec<u8>),
    ConfV2(Vec<u8>),
}

fn batch_of(values: &[Vec<u8>], index: u64) -> Bytes {
    let mut b = BatchBuilder::new();
    for (i, v) in values.iter().enumerate() {
        let key = format!("k{index}.{i}");
        b.push(&Record {
            timestamp_ms: 1_000 + index as i64,
            key: (i % 2 == 0).then_some(key.as_bytes()),
            value: v,
            headers: &[],
        });
    }
    Bytes::from(b.finish())
}

fn entry(index: u64, term: u64, kind: &Kind) -> Entry {
    let (ty, data) = match kind {
        Kind::Data(values) => (EntryType::EntryNormal, batch_of(values, index)),
        Kind::Empty => (EntryType::EntryNormal, Bytes::new()),
        Kind::Conf(d) => (EntryType::EntryConfChange, Bytes::from(d.clone())),
        Kind::ConfV2(d) => (EntryType::EntryConfChangeV2, Bytes::from(d.clone())),
    };
    let mut e = Entry {
        index,
        term,
        data,
        ..Entry::default()
    };
    e.set_entry_type(ty);
    e
}

fn data(index: u64, term: u64) -> Entry {
    let values = vec![
        vec![index as u8; 150 + (index % 7) as usize * 40],
        b"x".to_vec(),
    ];
    entry(index, term, &Kind::Data(values))
}

/// Entry `i` of a run: mostly data, some empty and configuration entries.
fn mixed(index: u64, term: u64) -> Entry {
    match index % 5 {
        0 => entry(index, term, &Kind::Empty),
        3 => entry(
            index,
            term,
            &Kind::Conf(format!("conf {index}").into_bytes()),
        ),
        _ => data(index, term),
    }
}

/// An entry as the log must give it back. A data entry's batch is stamped
/// by the segment log (offsets, term, Raft index, CRC), so its records are
/// compared; any other entry's data must come back byte for byte.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Norm {
    index: u64,
    term: u64,
    ty: EntryType,
    body: Body,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Body {
    /// `(timestamp, key, value)` of each record.
    Records(Vec<(i64, Option<Vec<u8>>, Vec<u8>)>),
    Raw(Vec<u8>),
}

fn norm(e: &Entry) -> Norm {
    let ty = e.get_entry_type();
    let body = if ty == EntryType::EntryNormal && !e.data.is_empty() {
        let view = BatchView::parse_exact(&e.data)
            .unwrap_or_else(|err| panic!("entry {}: not one valid batch: {err}", e.index));
        let h = view.header();
        assert!(
            !h.is_control(),
            "entry {}: a data entry read back as control",
            e.index
        );
        if h.raft_index() != 0 {
            assert_eq!(
                (h.raft_index(), h.leader_epoch()),
                (e.index, e.term),
                "a stored batch is stamped with its entry's index and term"
            );
        }
        Body::Records(
            view.records()
                .map(|r| {
                    let r = r.expect("valid record");
                    (r.timestamp_ms, r.key.map(<[u8]>::to_vec), r.value.to_vec())
                })
                .collect(),
        )
    } else {
        Body::Raw(e.data.to_vec())
    };
    Norm {
        index: e.index,
        term: e.term,
        ty,
        body,
    }
}

fn norms(entries: &[Entry]) -> Vec<Norm> {
    entries.iter().map(norm).collect()
}

/// Every entry of `log`, normalized.
fn all(log: &impl ReplicaLog) -> Vec<Norm> {
    let lo = log.first_index();
    let got = log
        .entries(lo, log.last_index() + 1, None)
        .unwrap_or_else(|e| panic!("reading entries {lo}..={}: {e}", log.last_index()));
    norms(&got)
}

fn bootstrap_snapshot(voters: &[u64]) -> LogSnapshot {
    LogSnapshot {
        index: 1,
        term: 1,
        conf_state: ConfState {
            voters: voters.to_vec(),
            ..ConfState::default()
        },
    }
}

fn hs(term: u64, vote: u64, commit: u64) -> HardState {
    HardState {
        term,
        vote,
        commit,
        ..HardState::default()
    }
}

fn tv(h: &HardState) -> (u64, u64) {
    (h.term, h.vote)
}

// ------------------------------------------------------------ model test

#[derive(Debug, Clone)]
enum Op {
    /// A run of entries starting `back` below the next index (0: a plain
    /// append; more: a truncation of the suffix), with the term raised by
    /// `bump` for the run and by one more from entry `bump_at` on.
    Append {
        back: u64,
        kinds: Vec<Kind>,
        bump: u64,
        bump_at: usize,
    },
    /// Apply `limit` queued writes (all when `None`), then fdatasync or not.
    Flush {
        limit: Option<usize>,
        sync: bool,
    },
    HardState {
        bump: u64,
        vote: u64,
        commit: u64,
    },
    /// Record the membership at the synced index.
    ConfState {
        voters: Vec<u64>,
        learners: Vec<u64>,
    },
    Term {
        at: u64,
    },
    Read {
        lo: u64,
        hi: u64,
        max_bytes: Option<u64>,
    },
    /// Drop everything without flushing and reopen from disk.
    Crash,
}

fn kind() -> impl Strategy<Value = Kind> {
    let bytes = || proptest::collection::vec(any::<u8>(), 0..24);
    prop_oneof![
        5 => proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..120), 1..4)
            .prop_map(Kind::Data),
        2 => Just(Kind::Empty),
        1 => bytes().prop_map(Kind::Conf),
        1 => bytes().prop_map(Kind::ConfV2),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (
            prop_oneof![3 => Just(0u64), 2 => 1u64..6],
            proptest::collection::vec(kind(), 1..6),
            prop_oneof![3 => Just(0u64), 1 => Just(1u64)],
            0usize..8,
        )
            .prop_map(|(back, kinds, bump, bump_at)| Op::Append {
                back,
                kinds,
                bump,
                bump_at
            }),
        4 => (proptest::option::weighted(0.6, 0usize..8), any::<bool>())
            .prop_map(|(limit, sync)| Op::Flush { limit, sync }),
        1 => (0u64..2, 0u64..4, any::<u64>())
            .prop_map(|(bump, vote, commit)| Op::HardState { bump, vote, commit }),
        1 => (
            proptest::collection::vec(1u64..6, 0..4),
            proptest::collection::vec(6u64..9, 0..2),
        )
            .prop_map(|(voters, learners)| Op::ConfState { voters, learners }),
        1 => any::<u64>().prop_map(|at| Op::Term { at }),
        2 => (any::<u64>(), any::<u64>(), proptest::option::of(0u64..800))
            .prop_map(|(lo, hi, max_bytes)| Op::Read { lo, hi, max_bytes }),
        1 => Just(Op::Crash),
    ]
}

/// The test's own view of the segment log under the adapter.
struct Model {
    mem: MemReplicaLog,
    bootstrapped: bool,
    /// Entries the flusher applied to the segment log (start + 1 on): what
    /// it holds, synced or not.
    applied: Vec<Entry>,
    /// How many of `applied` are durable for sure (fdatasync'ed: by a sync,
    /// or by a truncation, which syncs first and is durable).
    floor: usize,
    /// Highest term handed out so far.
    term: u64,
}

impl Model {
    fn new(bootstrapped: bool) -> Self {
        Self {
            mem: MemReplicaLog::new(),
            bootstrapped,
            applied: Vec::new(),
            floor: 0,
            term: 1,
        }
    }

    fn start(&self) -> u64 {
        u64::from(self.bootstrapped)
    }

    fn record_applied(&mut self, ops: &[WriteOp]) {
        let first = self.start() + 1;
        for op in ops {
            match op {
                WriteOp::Truncate(from) => {
                    let keep = (from - first) as usize;
                    self.applied.truncate(keep);
                    self.floor = self.applied.len();
                }
                WriteOp::Append(e) => {
                    assert_eq!(
                        e.index,
                        first + self.applied.len() as u64,
                        "queued writes apply in order, without gaps"
                    );
                    self.applied.push(e.clone());
                }
            }
        }
    }
}

/// Everything the adapter answers agrees with the model.
fn check(r: &Replica, m: &Model, step: usize, op: &Op) {
    let ctx = || format!("after step {step} ({op:?})");
    let (log, mem) = (&r.log, &m.mem);
    assert_eq!(log.start(), mem.start(), "start {}", ctx());
    let last = log.last_index();
    assert_eq!(last, mem.last_index(), "last_index {}", ctx());
    let start = log.start().0;
    for i in start..=last + 1 {
        assert_eq!(log.term(i).ok(), mem.term(i).ok(), "term({i}) {}", ctx());
    }
    let current = all(mem);
    assert_eq!(all(log), current, "entries {}", ctx());
    let (h, mh) = (log.hard_state(), mem.hard_state());
    assert_eq!(
        (h.term, h.vote, h.commit),
        (mh.term, mh.vote, mh.commit),
        "hard state {}",
        ctx()
    );
    assert_eq!(log.conf_state(), mem.conf_state(), "conf state {}", ctx());

    // Durability: what synced_index vouches for is in the segment log, as
    // the Raft core sees it now (nothing queued counts).
    let synced = log.synced_index();
    assert!(
        start <= synced && synced <= last,
        "synced_index {synced} outside {start}..={last} {}",
        ctx()
    );
    let same = current
        .iter()
        .zip(norms(&m.applied))
        .take_while(|(a, b)| *a == b)
        .count() as u64;
    assert!(
        synced <= start + same,
        "synced_index {synced} but the segment log agrees with the log only through {} {}",
        start + same,
        ctx()
    );
}

/// One model run. With `small_ring` the memory ring holds one batch, so
/// reads go to the segment files (or the log's queue of unwritten batches).
fn model_case(bootstrapped: bool, small_ring: bool, ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(&path.clone(), move |pool| async move {
        let ring = if small_ring { 256 } else { 8 << 20 };
        let mut r = open(&path, &pool, ring).await;
        let mut m = Model::new(bootstrapped);
        if bootstrapped {
            let snap = bootstrap_snapshot(&[1, 2, 3]);
            let payload = encode_payload(&[]);
            r.log.install_snapshot(&snap, &payload).unwrap();
            m.mem.install_snapshot(&snap, &payload).unwrap();
        }
        for (step, op) in ops.iter().enumerate() {
            match op {
                Op::Append {
                    back,
                    kinds,
                    bump,
                    bump_at,
                } => {
                    let start = r.log.start().0;
                    let last = r.log.last_index();
                    // A run may begin at the start itself (that entry is
                    // skipped) when it has more entries. Raft never
                    // truncates a committed entry, and the membership's
                    // entry is committed.
                    let conf_index = r.log.conf_state().1;
                    let lowest = if start > 0 && kinds.len() > 1 && conf_index <= start {
                        start
                    } else {
                        (start + 1).max(conf_index + 1)
                    };
                    let first = (last + 1).saturating_sub(*back).max(lowest);
                    m.term += bump;
                    let mut entries = Vec::new();
                    for (i, k) in kinds.iter().enumerate() {
                        if i == *bump_at {
                            m.term += 1;
                        }
                        entries.push(entry(first + i as u64, m.term, k));
                    }
                    r.log.append(&entries).unwrap();
                    m.mem.append(&entries).unwrap();
                }
                Op::Flush { limit, sync } => {
                    let done = apply(&r.queue, &r.part, limit.unwrap_or(usize::MAX)).await;
                    m.record_applied(&done);
                    if *sync {
                        r.part.log.sync().await.unwrap();
                        trim(&r.queue, &r.part);
                        m.floor = m.applied.len();
                    }
                    if limit.is_none() && *sync {
                        m.mem.sync().unwrap();
                        assert!(r.queue.borrow().is_empty());
                        assert_eq!(
                            r.log.synced_index(),
                            r.log.last_index(),
                            "everything flushed and synced at step {step}"
                        );
                        assert_eq!(r.log.sync(), Ok(()));
                    }
                }
                Op::HardState { bump, vote, commit } => {
                    m.term += bump;
                    let h = hs(m.term, *vote, commit % (r.log.last_index() + 1));
                    r.log.set_hard_state(&h).unwrap();
                    m.mem.set_hard_state(&h).unwrap();
                }
                Op::ConfState { voters, learners } => {
                    let at = r.log.synced_index().min(m.mem.synced_index());
                    let conf = ConfState {
                        voters: voters.clone(),
                        learners: learners.clone(),
                        ..ConfState::default()
                    };
                    m.mem.set_conf_state(&conf, at).unwrap();
                    r.log.set_conf_state(&conf, at).unwrap();
                }
                Op::Term { at } => {
                    let i = at % (r.log.last_index() + 3);
                    assert_eq!(r.log.term(i).ok(), m.mem.term(i).ok(), "term({i})");
                }
                Op::Read { lo, hi, max_bytes } => {
                    let (start, last) = (r.log.start().0, r.log.last_index());
                    let lo = start + lo % (last - start + 2);
                    let hi = lo + hi % (last + 3 - lo);
                    let want = m.mem.entries(lo, hi, None).map(|e| norms(&e));
                    let got = r.log.entries(lo, hi, None).map(|e| norms(&e));
                    assert_eq!(
                        got.is_ok(),
                        want.is_ok(),
                        "entries({lo}, {hi}) at step {step}: {got:?}, model {want:?}"
                    );
                    if let (Ok(got), Ok(want)) = (got, &want) {
                        assert_eq!(&got, want, "entries({lo}, {hi}) at step {step}");
                    }
                    if let (Some(max), Ok(want)) = (max_bytes, &want) {
                        let got = norms(&r.log.entries(lo, hi, Some(*max)).unwrap());
                        assert!(
                            got.len() <= want.len() && got[..] == want[..got.len()],
                            "entries({lo}, {hi}, {max}) is not a prefix"
                        );
                        assert!(
                            !got.is_empty() || lo == hi,
                            "entries({lo}, {hi}, {max}) returned nothing"
                        );
                    }
                }
                Op::Crash => {
                    let synced = r.log.synced_index();
                    let start = r.log.start().0;
                    let vouched = r.log.entries(start + 1, synced + 1, None).unwrap();
                    let (before_hs, before_conf) = (r.log.hard_state(), r.log.conf_state());
                    drop(r);
                    r = open(&path, &pool, ring).await;
                    let last = r.log.last_index();
                    let (lo, hi) = (start + m.floor as u64, start + m.applied.len() as u64);
                    assert!(
                        lo <= last && last <= hi,
                        "reopened at {last}: the segment log held {hi} entries, {lo} of them synced"
                    );
                    let kept = (last - start) as usize;
                    m.applied.truncate(kept);
                    m.floor = kept;
                    let back = all(&r.log);
                    assert_eq!(back, norms(&m.applied), "reopened log, step {step}");
                    assert!(
                        synced <= last && back[..(synced - start) as usize] == norms(&vouched)[..],
                        "synced_index was {synced}: reopened at {last}, step {step}"
                    );
                    assert_eq!(r.log.start(), (start, u64::from(start > 0)));
                    let h = r.log.hard_state();
                    assert_eq!(tv(&h), tv(&before_hs), "term and vote are durable");
                    assert!(h.commit <= last, "commit {} past {last}", h.commit);
                    assert_eq!(r.log.conf_state(), before_conf, "conf state is durable");
                    assert_eq!(r.log.synced_index(), last);
                    // The model restarts from what survived.
                    m.mem = MemReplicaLog::new();
                    if bootstrapped {
                        let snap = bootstrap_snapshot(&[1, 2, 3]);
                        m.mem.install_snapshot(&snap, &encode_payload(&[])).unwrap();
                    }
                    m.mem.append(&m.applied).unwrap();
                    m.mem.sync().unwrap();
                    let (conf, conf_index) = r.log.conf_state();
                    m.mem.set_conf_state(&conf, conf_index).unwrap();
                    m.mem.set_hard_state(&h).unwrap();
                }
            }
            check(&r, &m, step, op);
        }
        // Everything flushed is durable and reads back from disk alike.
        flush(&r.queue, &r.part).await;
        let done = r.log.last_index();
        assert_eq!(r.log.synced_index(), done);
        let before = all(&r.log);
        drop(r);
        let r = open(&path, &pool, ring).await;
        assert_eq!(r.log.last_index(), done);
        assert_eq!(all(&r.log), before);
    });
}

#[test]
fn matches_the_in_memory_model() {
    // PROPTEST_CASES=N for a longer run.
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(64);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 256,
        ..Config::default()
    });
    let strategy = (
        any::<bool>(),
        any::<bool>(),
        proptest::collection::vec(op(), 1..40),
    );
    runner
        .run(&strategy, |(bootstrapped, small_ring, ops)| {
            // A panic fails the case (proptest catches it and shrinks).
            model_case(bootstrapped, small_ring, ops);
            Ok(())
        })
        .unwrap();
}

// --------------------------------------------------------- durability

#[test]
fn flushed_state_survives_a_reopen_and_reads_back_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(&path.clone(), move |pool| async move {
        let mut r = open(&path, &pool, 8 << 20).await;
        r.log
            .install_snapshot(&bootstrap_snapshot(&[1, 2, 3]), &encode_payload(&[]))
            .unwrap();
        let mut written: Vec<Entry> = (2..=12).map(|i| mixed(i, 1)).collect();
        written.extend((13..=40).map(|i| mixed(i, 2 + i / 20)));
        r.log.append(&written[..11]).unwrap();
        r.log.append(&written[11..]).unwrap();
        flush(&r.queue, &r.part).await;
        assert!(
            r.part.log.segment_count() > 2,
            "the entries span several segments"
        );
        r.log.set_hard_state(&hs(3, 2, 25)).unwrap();
        let conf = ConfState {
            voters: vec![1, 2, 4],
            learners: vec![5],
            ..ConfState::default()
        };
        r.log.set_conf_state(&conf, 13).unwrap();
        assert_eq!(r.log.synced_index(), 40);
        let from_ring = all(&r.log);
        assert_eq!(from_ring, norms(&written));
        drop(r);

        // A ring of 256 bytes: all but the newest entry come from the files.
        let r = open(&path, &pool, 256).await;
        assert_eq!(r.log.start(), (1, 1));
        assert_eq!((r.log.first_index(), r.log.last_index()), (2, 40));
        assert_eq!(r.log.synced_index(), 40);
        for e in &written {
            assert_eq!(r.log.term(e.index), Ok(e.term), "term({})", e.index);
        }
        assert_eq!(r.log.term(1), Ok(1), "the start's term");
        assert!(matches!(
            r.log.term(41),
            Err(ReplicaLogError::Unavailable { .. })
        ));
        let h = r.log.hard_state();
        assert_eq!((h.term, h.vote), (3, 2));
        assert!(
            (13..=25).contains(&h.commit),
            "commit {} is between the membership's index and the one set",
            h.commit
        );
        assert_eq!(r.log.conf_state(), (conf, 13));
        assert_eq!(all(&r.log), norms(&written));
        // Piecewise and size-bounded reads agree with the whole.
        for lo in [2, 9, 17, 39] {
            let got = r.log.entries(lo, lo + 2, None).unwrap();
            assert_eq!(norms(&got), norms(&written[lo as usize - 2..lo as usize]));
            let one = r.log.entries(lo, 41, Some(1)).unwrap();
            assert_eq!(
                norms(&one),
                norms(&written[lo as usize - 2..lo as usize - 1])
            );
        }
        // The log continues after the reopen.
        let mut r = r;
        let more: Vec<Entry> = (41..=45).map(|i| mixed(i, 4)).collect();
        r.log.append(&more).unwrap();
        flush(&r.queue, &r.part).await;
        written.extend(more);
        drop(r);
        let r = open(&path, &pool, 256).await;
        assert_eq!(r.log.last_index(), 45);
        assert_eq!(all(&r.log), norms(&written));
        assert_eq!(r.log.conf_state().1, 13);
    });
}

#[test]
fn queued_writes_are_not_durable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(&path.clone(), move |pool| async move {
        let mut r = open(&path, &pool, 8 << 20).await;
        let first: Vec<Entry> = (1..=5).map(|i| data(i, 1)).collect();
        r.log.append(&first).unwrap();
        assert_eq!(r.log.synced_index(), 0, "nothing flushed yet");
        flush(&r.queue, &r.part).await;
        assert_eq!(r.log.synced_index(), 5);

        r.log
            .append(&(6..=10).map(|i| data(i, 1)).collect::<Vec<_>>())
            .unwrap();
        assert_eq!(r.log.last_index(), 10);
        assert_eq!(r.log.synced_index(), 5, "queued entries are not durable");
        assert!(
            r.log.sync().is_err(),
            "no synchronous sync of queued writes"
        );
        // A follower learns of a commit index past what it holds durably;
        // a new term makes the state file be rewritten with it.
        r.log.set_hard_state(&hs(2, 1, 9)).unwrap();
        // Applied to the segment log but not fdatasync'ed: still not durable.
        apply(&r.queue, &r.part, 2).await;
        assert_eq!(
            r.log.synced_index(),
            5,
            "applied, unsynced entries are not durable"
        );
        assert_eq!(r.log.last_index(), 10);
        drop(r);

        let r = open(&path, &pool, 8 << 20).await;
        assert_eq!(r.log.last_index(), 5, "the unsynced entries are gone");
        assert_eq!(r.log.synced_index(), 5);
        let h = r.log.hard_state();
        assert_eq!((h.term, h.vote), (2, 1), "term and vote are durable");
        assert!(h.commit <= 5, "commit {} past the log's end", h.commit);
        assert!(r.log.term(6).is_err());
        assert!(r.log.entries(1, 7, None).is_err());
        assert_eq!(all(&r.log), norms(&first));
    });
}

#[test]
fn a_truncation_over_queued_writes_wins() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(&path.clone(), move |pool| async move {
        let mut r = open(&path, &pool, 8 << 20).await;
        let old: Vec<Entry> = (1..=10).map(|i| mixed(i, 1)).collect();
        r.log.append(&old).unwrap();
        // Entries 1..=5 written and synced; 6..=10 still queued.
        apply(&r.queue, &r.part, 5).await;
        r.part.log.sync().await.unwrap();
        assert_eq!(r.log.synced_index(), 5);

        // A new leader's entries from 4 on replace the old suffix.
        let new: Vec<Entry> = (4..=7).map(|i| mixed(i, 2)).collect();
        r.log.append(&new).unwrap();
        let mut want = old[..3].to_vec();
        want.extend(new.iter().cloned());
        let check = |log: &SegmentReplicaLog, what: &str| {
            assert_eq!(log.last_index(), 7, "{what}");
            for e in &want {
                assert_eq!(log.term(e.index), Ok(e.term), "term({}) {what}", e.index);
            }
            assert!(log.term(8).is_err(), "{what}");
            assert!(log.entries(8, 11, None).is_err(), "{what}");
            assert_eq!(all(log), norms(&want), "{what}");
            assert_eq!(
                norms(&log.entries(3, 6, None).unwrap()),
                norms(&want[2..5]),
                "{what}"
            );
        };
        check(&r.log, "with the truncation queued");
        assert!(
            r.log.synced_index() <= 3,
            "synced_index {} counts entries the queued truncation removes",
            r.log.synced_index()
        );
        // Part way through the queue: the old 6..=10 are in the segment log
        // now, the truncation is not.
        apply(&r.queue, &r.part, 5).await;
        r.part.log.sync().await.unwrap();
        assert_eq!(r.part.log.last_raft_entry(), Some((10, 1)));
        check(&r.log, "with the old suffix written");
        assert!(r.log.synced_index() <= 3, "{}", r.log.synced_index());

        flush(&r.queue, &r.part).await;
        check(&r.log, "flushed");
        assert_eq!(r.log.synced_index(), 7);
        drop(r);

        let mut r = open(&path, &pool, 256).await;
        check(&r.log, "reopened");
        assert_eq!(r.log.synced_index(), 7);

        // A shorter replacement over a flushed suffix: the log ends at once.
        r.log.append(&[mixed(5, 3)]).unwrap();
        assert_eq!(r.log.last_index(), 5);
        assert_eq!(r.log.term(5), Ok(3));
        assert!(r.log.term(6).is_err());
        assert!(r.log.synced_index() <= 4, "{}", r.log.synced_index());
        flush(&r.queue, &r.part).await;
        assert_eq!((r.log.last_index(), r.log.synced_index()), (5, 5));
        want.truncate(4);
        want.push(mixed(5, 3));
        drop(r);
        let mut r = open(&path, &pool, 256).await;
        assert_eq!(r.log.last_index(), 5);
        assert_eq!(all(&r.log), norms(&want));

        // A new leader's entries from 4 on and its commit index 5 arrive
        // together; the state file is rewritten (new term) before the
        // flush. A crash then brings the old 4..=5 back, which must not
        // count as committed.
        r.log.append(&[mixed(4, 4), mixed(5, 4)]).unwrap();
        r.log.set_hard_state(&hs(4, 2, 5)).unwrap();
        assert_eq!(r.log.hard_state().commit, 5);
        drop(r);
        let r = open(&path, &pool, 256).await;
        assert_eq!(all(&r.log), norms(&want), "the queued suffix is gone");
        let h = r.log.hard_state();
        assert_eq!((h.term, h.vote), (4, 2));
        assert!(
            h.commit <= 3,
            "commit {} covers entries a lost truncation replaced",
            h.commit
        );
    });
}

#[test]
fn only_the_bootstrap_snapshot_is_installed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(&path.clone(), move |pool| async move {
        let mut r = open(&path, &pool, 8 << 20).await;
        assert_eq!((r.log.start(), r.log.last_index()), ((0, 0), 0));
        let snap = bootstrap_snapshot(&[1, 2, 3]);
        // A snapshot carrying entries, or garbage, is refused.
        let carried = encode_payload(&[mixed(1, 1)]);
        assert!(matches!(
            r.log.install_snapshot(&snap, &carried),
            Err(ReplicaLogError::InvalidWrite(_))
        ));
        assert!(r.log.install_snapshot(&snap, b"garbage").is_err());
        assert_eq!(r.log.start(), (0, 0), "a refused snapshot changes nothing");
        assert!(r.log.conf_state().0.voters.is_empty());
        assert_eq!(r.log.base_snapshot(4), None, "not bootstrapped");

        r.log.install_snapshot(&snap, &encode_payload(&[])).unwrap();
        assert_eq!(r.log.start(), (1, 1));
        assert_eq!((r.log.first_index(), r.log.last_index()), (2, 1));
        assert_eq!(r.log.synced_index(), 1);
        assert_eq!(r.log.term(1), Ok(1));
        assert!(matches!(
            r.log.term(0),
            Err(ReplicaLogError::Compacted { .. })
        ));
        assert!(matches!(
            r.log.entries(1, 2, None),
            Err(ReplicaLogError::Compacted { .. })
        ));
        assert_eq!(r.log.entries(2, 2, None), Ok(Vec::new()));
        assert_eq!(r.log.conf_state(), (snap.conf_state.clone(), 1));
        let h = r.log.hard_state();
        assert_eq!((h.term, h.commit), (1, 1));
        // What a joining replica starts from: an initial voter as is, any
        // other node as a learner.
        assert_eq!(r.log.base_snapshot(2), Some(snap.clone()));
        let mut joining = snap.clone();
        joining.conf_state.learners = vec![7];
        assert_eq!(r.log.base_snapshot(7), Some(joining.clone()));

        // Entries at or below the start are skipped; gaps are refused.
        r.log
            .append(&[mixed(1, 1), mixed(2, 1), mixed(3, 1)])
            .unwrap();
        assert_eq!(r.log.last_index(), 3);
        assert!(matches!(
            r.log.append(&[mixed(5, 1)]),
            Err(ReplicaLogError::InvalidWrite(_))
        ));
        assert!(matches!(
            r.log.append(&[mixed(4, 1), mixed(6, 1)]),
            Err(ReplicaLogError::InvalidWrite(_))
        ));
        assert_eq!(r.log.last_index(), 3);
        flush(&r.queue, &r.part).await;
        // Once the log holds entries, no snapshot replaces it.
        assert!(r.log.install_snapshot(&snap, &encode_payload(&[])).is_err());
        assert!(r.log.snapshot_payload(2).is_err());
        // A later membership leaves the base snapshot as bootstrapped.
        let later = ConfState {
            voters: vec![1, 2, 7],
            ..ConfState::default()
        };
        r.log.set_conf_state(&later, 3).unwrap();
        assert_eq!(r.log.base_snapshot(7), Some(joining.clone()));
        drop(r);

        let r = open(&path, &pool, 8 << 20).await;
        assert_eq!(r.log.start(), (1, 1));
        assert_eq!(r.log.last_index(), 3);
        assert_eq!(r.log.conf_state(), (later, 3));
        assert_eq!(r.log.base_snapshot(7), Some(joining), "survives a reopen");
        assert_eq!(
            all(&r.log),
            norms(&[mixed(2, 1), mixed(3, 1)]),
            "entries after the snapshot"
        );
    });
}

/// Entries the flusher handed to the segment log (so no longer in the
/// adapter's overlay) but that the log has not written yet are read from
/// the log's queue of unwritten batches once the memory ring evicted them.
#[test]
fn applied_but_unwritten_entries_stay_readable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(&path.clone(), move |pool| async move {
        let mut r = open(&path, &pool, 256).await;
        let entries: Vec<Entry> = (1..=3).map(|i| data(i, 1)).collect();
        r.log.append(&entries).unwrap();
        assert_eq!(all(&r.log), norms(&entries), "from the overlay");
        // The shard flusher's state before its fdatasync.
        apply(&r.queue, &r.part, 3).await;
        assert!(r.queue.borrow().is_empty());
        assert_eq!((r.log.last_index(), r.log.synced_index()), (3, 0));
        for i in 1..=3 {
            assert_eq!(r.log.term(i), Ok(1));
        }
        let got = r.log.entries(1, 4, None);
        assert!(
            got.is_ok(),
            "entries 1..=3 after they were applied, before the fdatasync: {got:?}"
        );
        assert_eq!(norms(&got.unwrap()), norms(&entries));
        assert_eq!(
            norms(&r.log.entries(2, 4, Some(1)).unwrap()),
            norms(&entries[1..2])
        );
    });
}

/// The same while the flusher's fdatasync is in flight: the log took the
/// batches out of its queue of unwritten ones and is writing them: the
/// overlay serves them until they are synced (the log cannot serve an
/// entry in a write in flight synchronously).
#[test]
fn entries_stay_readable_while_they_are_being_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(&path.clone(), move |pool| async move {
        let mut r = open(&path, &pool, 256).await;
        let entries: Vec<Entry> = (1..=3).map(|i| data(i, 1)).collect();
        r.log.append(&entries).unwrap();
        apply(&r.queue, &r.part, 3).await;
        let part = r.part.clone();
        let syncing = glommio::spawn_local(async move { part.log.sync().await });
        // Let the sync start its writes (it then waits for the device).
        futures_lite::future::yield_now().await;
        let got = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            r.log.entries(1, 4, None).map(|e| norms(&e))
        }));
        syncing.await.unwrap();
        assert_eq!(r.log.synced_index(), 3);
        match got {
            Ok(got) => assert_eq!(
                got,
                Ok(norms(&entries)),
                "entries 1..=3 while their write was in flight"
            ),
            Err(_) => panic!("entries(1, 4) panicked while the entries' write was in flight"),
        }
        assert_eq!(all(&r.log), norms(&entries), "after the write");
    });
}

/// The bootstrap snapshot replaces the whole log (the trait's contract):
/// not on a log that still has queued, unflushed entries.
#[test]
fn no_bootstrap_snapshot_over_queued_entries() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(&path.clone(), move |pool| async move {
        let mut r = open(&path, &pool, 8 << 20).await;
        r.log.append(&[mixed(1, 1), mixed(2, 1)]).unwrap();
        let snap = bootstrap_snapshot(&[1, 2, 3]);
        let installed = r.log.install_snapshot(&snap, &encode_payload(&[]));
        if installed.is_ok() {
            // Then the log must be the snapshot alone.
            assert_eq!(
                (r.log.start(), r.log.last_index()),
                ((1, 1), 1),
                "a snapshot was installed over queued entries 1..=2, which stayed"
            );
        }
    });
}

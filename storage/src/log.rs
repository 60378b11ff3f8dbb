//! The partition log on glommio direct I/O.
//!
//! Append path: a producer's batch is validated once, restamped in place with
//! its offsets, kept in the memory ring and queued as pending. Whoever then
//! holds the I/O lock (the first appender to need it) writes *every* pending
//! batch with 4 KiB-aligned direct I/O (re-writing the partial tail block) and
//! calls one fdatasync for all of them: group commit. An append resolves once
//! its batch is durable under the configured [`FsyncPolicy`].
//!
//! Invariants (checked with `debug_assert!`):
//! - offsets are contiguous: each batch starts at the previous batch's end;
//! - `log_start ≤ high_watermark ≤ written ≤ log_end`;
//! - readers never see past the high watermark (nothing unacknowledged);
//! - after an I/O error the log refuses writes until reopened (the state of
//!   unsynced data is unknown: retrying fdatasync would lie).
//!
//! Replication: the log doubles as its partition's Raft log (see
//! [`crate::raft`]). Each replicated batch carries its Raft term and index;
//! Raft's control entries are control batches, which occupy no offsets. So
//! durability is tracked per batch (`appended_seq` / `written_seq` /
//! `synced_seq`), not per offset: a control batch must be made durable
//! although it moves no offset. Once a log holds Raft entries, every later
//! batch is one (unreplicated appends are refused), so replicated batches
//! are a suffix of the log.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use glommio::io::{DmaFile, OpenOptions};
use sprawl_io::dma_pool::DmaBufPool;
use sprawl_io::{align_down, align_up};

use crate::batch::{
    control_batch, peek_header, restamp, restamp_raft, search_time, validate_incoming, TimeSearch,
};
use crate::config::{FsyncPolicy, LogConfig};
use crate::error::LogError;
use crate::index::SegmentIndex;
use crate::io_gate::{IoGate, IoTurn};
use crate::raft::{RaftEntryLoc, RaftMap};
use crate::readahead::Readahead;
use crate::retention::{segments_to_delete, SegmentSummary};
use crate::ring::MemoryRing;
use crate::scan::{scan_batches, ScanStop, ScannedBatch};
use crate::segment::{Segment, SegmentPaths, SegmentRead};

/// Recovery reads the tail of a segment in chunks of this size.
const RECOVERY_READ_BYTES: usize = 1 << 20;

/// Offsets of an acknowledged append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendAck {
    pub base_offset: u64,
    /// Offset after the batch's last record.
    pub next_offset: u64,
}

/// The Raft term and index a leader stamps on the batch it appends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaftStamp {
    pub term: u64,
    pub index: u64,
}

/// How an append stamps its batch.
#[derive(Debug, Clone, Copy)]
enum Stamp {
    /// Unreplicated: offsets and the leader epoch, Raft index 0.
    Producer { leader_epoch: u64 },
    /// A Raft leader's entry (data or control, as `control` says).
    Leader { stamp: RaftStamp, control: bool },
    /// A follower's copy of the leader's entry: kept byte for byte.
    Replicated,
}

/// Offsets describing the log. All ends are exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogOffsets {
    /// First offset still stored.
    pub log_start: u64,
    /// Offset after the last acknowledged (durable under the policy) record.
    pub high_watermark: u64,
    /// Offset after the last fdatasync'ed record.
    pub synced: u64,
    /// Offset the next appended record gets.
    pub log_end: u64,
}

/// Batches returned by a read.
#[derive(Debug, Clone, Default)]
pub struct FetchedBatches {
    /// Whole encoded batches in offset order; the first may start before the
    /// requested offset (readers skip those records).
    pub batches: Vec<Bytes>,
    pub high_watermark: u64,
    pub log_start: u64,
}

/// What recovery found and did, for logs and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    pub segments: usize,
    pub rebuilt_indexes: Vec<PathBuf>,
    /// `(segment, position, offset, reason)` of a truncated torn tail.
    pub truncated_tail: Option<(PathBuf, u64, u64, String)>,
    pub tail_bytes_scanned: u64,
}

/// A sealed segment as tiered storage sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedSegment {
    pub base_offset: u64,
    pub next_offset: u64,
    pub bytes: u64,
    pub first_timestamp_ms: Option<i64>,
    pub max_timestamp_ms: Option<i64>,
    pub log_path: PathBuf,
    pub index_path: PathBuf,
    pub time_index_path: PathBuf,
}

/// Counters of the log's own I/O, for metrics and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogStats {
    pub batches_appended: u64,
    pub flushes: u64,
    pub fdatasyncs: u64,
    pub bytes_written: u64,
}

struct LogState {
    stats: LogStats,
    readahead: Option<Readahead>,
    /// Suffix truncations so far.
    truncations: u64,
    segments: Vec<Segment>,
    log_start: u64,
    log_end: u64,
    written: u64,
    synced: u64,
    /// Restamped batches appended but not yet written.
    pending: VecDeque<Bytes>,
    /// Batches appended, written and fdatasync'ed since open (sequence
    /// numbers: the durability of control batches, which move no offset).
    appended_seq: u64,
    written_seq: u64,
    synced_seq: u64,
    /// Raft index → location of the replicated batches on local disk.
    raft: RaftMap,
    /// Bytes of the active segment's partial last 4 KiB block, which every
    /// flush writes again in front of the new batches.
    tail_block: Vec<u8>,
    ring: MemoryRing,
    last_sync: Instant,
    /// Set (under the I/O lock) while a roll moves to a new segment: appends wait.
    rolling: bool,
    failed: Option<String>,
}

impl LogState {
    fn active(&self) -> &Segment {
        self.segments
            .last()
            .expect("a log always has an active segment")
    }
    fn active_mut(&mut self) -> &mut Segment {
        self.segments
            .last_mut()
            .expect("a log always has an active segment")
    }
    fn written_seq_acked(&self, policy: FsyncPolicy, force_sync: bool) -> u64 {
        match policy {
            _ if force_sync => self.synced_seq,
            FsyncPolicy::Always => self.synced_seq,
            FsyncPolicy::IntervalMs(_) | FsyncPolicy::Never => self.written_seq,
        }
    }
    /// Raft entries `from_index..` from the pending queue (appended, not
    /// yet written: the log's last batches, all Raft entries), up to
    /// `bytes_max` (at least one); `None` when the entry is not queued (it
    /// is being written).
    fn pending_raft(&self, from_index: u64, bytes_max: usize) -> Option<Vec<Bytes>> {
        let (last, _) = self.raft.last()?;
        let behind = last.checked_sub(from_index)? as usize;
        let first = self.pending.len().checked_sub(1 + behind)?;
        let mut out = Vec::new();
        let mut taken = 0usize;
        for b in self.pending.range(first..) {
            if !out.is_empty() && taken + b.len() > bytes_max {
                break;
            }
            taken += b.len();
            out.push(b.clone());
        }
        Some(out)
    }
    fn segment_index(&self, base_offset: u64) -> Option<usize> {
        self.segments
            .binary_search_by_key(&base_offset, |s| s.base_offset)
            .ok()
    }
    fn high_watermark(&self, policy: FsyncPolicy) -> u64 {
        match policy {
            FsyncPolicy::Always => self.synced,
            FsyncPolicy::IntervalMs(_) | FsyncPolicy::Never => self.written,
        }
    }
    fn check_invariants(&self, policy: FsyncPolicy) {
        debug_assert!(self.log_start <= self.high_watermark(policy));
        debug_assert!(self.synced <= self.written && self.written <= self.log_end);
        debug_assert!(self.synced_seq <= self.written_seq && self.written_seq <= self.appended_seq);
        debug_assert!(self
            .segments
            .windows(2)
            .all(|w| w[0].next_offset == w[1].base_offset));
        debug_assert_eq!(self.active().next_offset, self.log_end);
    }
}

/// A single partition's log. `!Send`: it lives on its shard's executor.
pub struct PartitionLog {
    dir: PathBuf,
    config: LogConfig,
    pool: Rc<DmaBufPool>,
    state: RefCell<LogState>,
    /// Serialises writes, fdatasyncs, rolls, truncation and retention.
    io_gate: IoGate,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl PartitionLog {
    /// Opens (recovering) or creates the log in `dir`. Must run on a glommio
    /// executor that has been warmed up on this disk (see `sprawl_io::warmup`).
    pub async fn open(
        dir: impl Into<PathBuf>,
        config: LogConfig,
        pool: Rc<DmaBufPool>,
    ) -> Result<Self, LogError> {
        Ok(Self::open_with_report(dir, config, pool).await?.0)
    }

    /// [`Self::open`], also returning what recovery did.
    pub async fn open_with_report(
        dir: impl Into<PathBuf>,
        config: LogConfig,
        pool: Rc<DmaBufPool>,
    ) -> Result<(Self, RecoveryReport), LogError> {
        Self::open_from(dir, config, pool, 0).await
    }

    /// [`Self::open_with_report`]; a log created empty starts at
    /// `empty_start_offset` (tiered storage: records below it are in the
    /// archive). An existing log keeps its offsets.
    pub async fn open_from(
        dir: impl Into<PathBuf>,
        config: LogConfig,
        pool: Rc<DmaBufPool>,
        empty_start_offset: u64,
    ) -> Result<(Self, RecoveryReport), LogError> {
        let dir = dir.into();
        assert!(
            config.segment_bytes <= u64::from(u32::MAX),
            "segment_bytes must fit index positions"
        );
        assert!(config.write_bytes_max >= 4096 && config.write_bytes_max % 4096 == 0);
        std::fs::create_dir_all(&dir).map_err(|e| LogError::io("creating", &dir, e))?;
        let mut report = RecoveryReport::default();
        let mut bases: Vec<u64> = std::fs::read_dir(&dir)
            .map_err(|e| LogError::io("listing", &dir, e))?
            .filter_map(|e| e.ok())
            .filter_map(|e| SegmentPaths::parse_base_offset(e.file_name().to_str()?))
            .collect();
        bases.sort_unstable();
        let mut segments: Vec<Segment> = Vec::with_capacity(bases.len().max(1));
        let mut tail_block = Vec::new();
        let mut raft = RaftMap::default();
        for (i, &base) in bases.iter().enumerate() {
            let is_last = i + 1 == bases.len();
            if let Some(prev) = segments.last() {
                if prev.next_offset != base {
                    return Err(LogError::Inconsistent {
                        dir: dir.clone(),
                        reason: format!(
                            "segment {} ends at offset {} but the next segment starts at {base}",
                            prev.paths.log.display(),
                            prev.next_offset
                        ),
                    });
                }
            }
            let (segment, tail, batches) =
                recover_segment(&dir, base, is_last, &config, &mut report).await?;
            add_raft_entries(&mut raft, &segment, &batches).map_err(|reason| {
                LogError::Inconsistent {
                    dir: dir.clone(),
                    reason,
                }
            })?;
            if is_last {
                tail_block = tail;
            }
            segments.push(segment);
        }
        if segments.is_empty() {
            segments.push(create_segment(&dir, empty_start_offset, &config).await?);
        }
        report.segments = segments.len();
        let log_end = segments.last().expect("non-empty").next_offset;
        let log_start = segments[0].base_offset;
        if report.truncated_tail.is_some() || !report.rebuilt_indexes.is_empty() {
            tracing::warn!(dir = %dir.display(), ?report, "recovered partition log");
        } else {
            tracing::debug!(dir = %dir.display(), ?report, "opened partition log");
        }
        let state = LogState {
            stats: LogStats::default(),
            readahead: None,
            truncations: 0,
            segments,
            log_start,
            log_end,
            written: log_end,
            synced: log_end,
            pending: VecDeque::new(),
            appended_seq: 0,
            written_seq: 0,
            synced_seq: 0,
            raft,
            tail_block,
            ring: MemoryRing::new(config.ring_bytes),
            last_sync: Instant::now(),
            rolling: false,
            failed: None,
        };
        Ok((
            Self {
                dir,
                config,
                pool,
                state: RefCell::new(state),
                io_gate: IoGate::default(),
            },
            report,
        ))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    pub fn offsets(&self) -> LogOffsets {
        let st = self.state.borrow();
        LogOffsets {
            log_start: st.log_start,
            high_watermark: st.high_watermark(self.config.fsync),
            synced: st.synced,
            log_end: st.log_end,
        }
    }

    /// Bytes in all segments (written or pending).
    pub fn size_bytes(&self) -> u64 {
        self.state.borrow().segments.iter().map(|s| s.bytes).sum()
    }

    pub fn segment_count(&self) -> usize {
        self.state.borrow().segments.len()
    }

    pub fn stats(&self) -> LogStats {
        self.state.borrow().stats
    }

    /// Bytes held by the memory ring.
    pub fn ring_bytes(&self) -> usize {
        self.state.borrow().ring.bytes()
    }

    /// Appends one producer-encoded batch (see [`crate::batch`]); resolves once
    /// it is durable under the fsync policy.
    pub async fn append(&self, batch: BytesMut) -> Result<AppendAck, LogError> {
        self.append_with(batch, 0, false).await
    }

    /// [`Self::append`] stamping the batch with a leader epoch; with
    /// `force_sync` it resolves only once fdatasync'ed, whatever the policy
    /// (a producer asking for durable acks on a log that syncs lazily).
    /// Refuses control batches (only Raft writes those) and, once the log
    /// holds Raft entries, every unreplicated append.
    pub async fn append_with(
        &self,
        batch: BytesMut,
        leader_epoch: u64,
        force_sync: bool,
    ) -> Result<AppendAck, LogError> {
        self.append_stamped(batch, Stamp::Producer { leader_epoch }, force_sync)
            .await
    }

    /// Raft leader: appends a producer's data batch as Raft entry
    /// `stamp.index` of term `stamp.term`, which must follow the last Raft
    /// index (or be the first one). Durable like [`Self::append_with`].
    pub async fn append_raft(
        &self,
        batch: BytesMut,
        stamp: RaftStamp,
        force_sync: bool,
    ) -> Result<AppendAck, LogError> {
        let stamp = Stamp::Leader {
            stamp,
            control: false,
        };
        self.append_stamped(batch, stamp, force_sync).await
    }

    /// Raft leader: appends a control entry (an empty entry of a new
    /// leader, a configuration change) carrying `payload`, as a control
    /// batch (see [`control_batch`]); its ack has `base_offset ==
    /// next_offset`.
    pub async fn append_raft_control(
        &self,
        payload: &[u8],
        stamp: RaftStamp,
        force_sync: bool,
    ) -> Result<AppendAck, LogError> {
        let stamp = Stamp::Leader {
            stamp,
            control: true,
        };
        self.append_stamped(control_batch(payload), stamp, force_sync)
            .await
    }

    /// Raft follower: appends a batch exactly as the leader stamped it (base
    /// offset, term, Raft index and CRC kept). Refuses a batch whose base
    /// offset is not the log end or whose Raft index does not follow the
    /// last one: the caller truncates first ([`Self::truncate_raft_suffix`]).
    /// Resolves once durable under the fsync policy, like [`Self::append`].
    pub async fn append_replicated(&self, batch: BytesMut) -> Result<AppendAck, LogError> {
        self.append_stamped(batch, Stamp::Replicated, false).await
    }

    /// Raft driver: appends Raft entry `stamp` (a data batch, or with
    /// `control` a [`control_batch`]) and returns once it is queued, without
    /// waiting for any write: the driver appends a run of entries one after
    /// another (in index order, so a segment roll cannot reorder them), then
    /// makes them durable with one [`Self::sync`] and learns how far with
    /// [`Self::synced_raft_index`].
    pub async fn append_raft_queued(
        &self,
        batch: BytesMut,
        stamp: RaftStamp,
        control: bool,
    ) -> Result<AppendAck, LogError> {
        let stamp = Stamp::Leader { stamp, control };
        self.enqueue_stamped(batch, stamp).await.map(|(ack, _)| ack)
    }

    /// Raft reads without I/O: what [`Self::read_raft`] would return, when
    /// the memory ring still holds entry `from_index`; `None` otherwise.
    pub fn read_raft_cached(&self, from_index: u64, bytes_max: usize) -> Option<Vec<Bytes>> {
        self.state.borrow().ring.read_raft(from_index, bytes_max)
    }

    /// Raft reads for the synchronous Raft storage interface, when the ring
    /// no longer holds the entry (a follower catching up from far behind):
    /// a blocking positional read of the segment file, CRC-checked. Only
    /// written bytes are read; entries not written yet are in the ring.
    pub fn read_raft_blocking(
        &self,
        from_index: u64,
        bytes_max: usize,
    ) -> Result<Vec<Bytes>, LogError> {
        use std::os::unix::fs::FileExt;
        if let Some(batches) = self.read_raft_cached(from_index, bytes_max) {
            return Ok(batches);
        }
        let (path, position, end) = {
            let st = self.state.borrow();
            let Some(loc) = self.raft_read_at(&st, from_index)? else {
                return Ok(Vec::new());
            };
            let seg = &st.segments[st
                .segment_index(loc.segment_base)
                .expect("raft entries point at live segments")];
            if u64::from(loc.position) >= seg.written_bytes {
                // Not written yet (and out of the ring): in the pending
                // queue, or in a write in flight, which a synchronous
                // reader cannot wait for.
                return st
                    .pending_raft(from_index, bytes_max)
                    .ok_or(LogError::RaftEntryInFlight { index: from_index });
            }
            (
                seg.paths.log.clone(),
                u64::from(loc.position),
                seg.written_bytes,
            )
        };
        let len = (end.saturating_sub(position)).min(bytes_max.max(1 << 16) as u64) as usize;
        let file = std::fs::File::open(&path).map_err(|e| LogError::io("opening", &path, e))?;
        let mut buf = vec![0u8; len];
        file.read_exact_at(&mut buf, position)
            .map_err(|e| LogError::io("reading", &path, e))?;
        let mut out = Vec::new();
        let mut rest = &buf[..];
        let mut taken = 0usize;
        while !rest.is_empty() {
            let total = match peek_header(rest) {
                Ok(h) => h.batch_bytes(),
                Err(_) => break,
            };
            if total > rest.len() {
                // The first batch is bigger than what was read: read it whole.
                if out.is_empty() {
                    let mut whole = vec![0u8; total];
                    file.read_exact_at(&mut whole, position)
                        .map_err(|e| LogError::io("reading", &path, e))?;
                    crate::batch::BatchView::parse_exact(&whole)?;
                    out.push(Bytes::from(whole));
                }
                break;
            }
            if !out.is_empty() && taken + total > bytes_max {
                break;
            }
            let (view, next) = crate::batch::BatchView::parse_prefix(rest)?;
            out.push(Bytes::copy_from_slice(view.as_bytes()));
            taken += total;
            rest = next;
        }
        Ok(out)
    }

    async fn append_stamped(
        &self,
        batch: BytesMut,
        stamp: Stamp,
        force_sync: bool,
    ) -> Result<AppendAck, LogError> {
        let (ack, seq) = self.enqueue_stamped(batch, stamp).await?;
        self.wait_durable(seq, force_sync).await?;
        Ok(ack)
    }

    /// Validates, stamps and queues one batch (rolling first if due);
    /// returns its ack and sequence number without waiting for a write.
    async fn enqueue_stamped(
        &self,
        mut batch: BytesMut,
        stamp: Stamp,
    ) -> Result<(AppendAck, u64), LogError> {
        if batch.len() > self.config.batch_bytes_max {
            return Err(LogError::BatchTooLarge {
                bytes: batch.len(),
                bytes_max: self.config.batch_bytes_max,
            });
        }
        let incoming = validate_incoming(&batch)?;
        // Validated: only a control batch holds no records.
        let control = incoming.record_count == 0;
        let (raft_index, term) = match stamp {
            Stamp::Producer { .. } if control => {
                return Err(LogError::ControlMismatch {
                    expected_control: false,
                })
            }
            Stamp::Producer { .. } => (0, 0),
            Stamp::Leader {
                control: expected, ..
            } if expected != control => {
                return Err(LogError::ControlMismatch {
                    expected_control: expected,
                })
            }
            Stamp::Leader { stamp, .. } => (stamp.index, stamp.term),
            Stamp::Replicated => {
                let h = peek_header(&batch)?;
                (h.raft_index(), h.leader_epoch())
            }
        };
        let batch_bytes = batch.len() as u64;
        // Wait until the batch may join the active segment.
        loop {
            let need_roll = {
                let st = self.state.borrow();
                self.refuse_if_failed(&st)?;
                if st.rolling {
                    None
                } else {
                    Some(self.needs_roll(st.active(), batch_bytes))
                }
            };
            match need_roll {
                Some(false) => break,
                Some(true) => self.roll().await?,
                None => drop(self.lock().await?),
            }
        }
        let (ack, seq) = {
            let mut st = self.state.borrow_mut();
            let base_offset = st.log_end;
            // Checked here, with the append, so that concurrent appends
            // cannot both pass the check for the same index.
            match stamp {
                Stamp::Producer { leader_epoch } => {
                    if let Some((last_index, _)) = st.raft.last() {
                        return Err(LogError::NotReplicated { last_index });
                    }
                    restamp(&mut batch, &incoming, base_offset, leader_epoch);
                }
                Stamp::Leader { .. } => {
                    self.check_raft_next(&st, raft_index)?;
                    restamp_raft(&mut batch, &incoming, base_offset, term, raft_index);
                }
                Stamp::Replicated => {
                    let got = peek_header(&batch)?.base_offset();
                    if got != base_offset {
                        return Err(LogError::RaftOffsetMismatch {
                            base_offset: got,
                            log_end: base_offset,
                        });
                    }
                    self.check_raft_next(&st, raft_index)?;
                }
            }
            let next_offset = base_offset + u64::from(incoming.record_count);
            let batch = batch.freeze();
            let interval = self.config.index_interval_bytes;
            let seg = st.active_mut();
            let position = seg.bytes;
            let segment_base = seg.base_offset;
            // Control batches stay out of the offset and time indexes: they
            // hold no record a consumer could look up.
            if !control {
                seg.index.on_batch(
                    (base_offset - seg.base_offset) as u32,
                    position,
                    incoming.last_timestamp_ms,
                    interval,
                );
                seg.first_timestamp_ms
                    .get_or_insert(incoming.first_timestamp_ms);
            }
            seg.bytes += batch_bytes;
            seg.next_offset = next_offset;
            st.log_end = next_offset;
            if raft_index != 0 {
                let loc = RaftEntryLoc {
                    term,
                    base_offset,
                    segment_base,
                    position: position as u32,
                    control,
                };
                st.raft.push(raft_index, loc).expect("checked above");
            }
            st.ring
                .push_batch(base_offset, next_offset, raft_index, control, batch.clone());
            st.stats.batches_appended += 1;
            st.pending.push_back(batch);
            st.appended_seq += 1;
            (
                AppendAck {
                    base_offset,
                    next_offset,
                },
                st.appended_seq,
            )
        };
        Ok((ack, seq))
    }

    fn check_raft_next(&self, st: &LogState, raft_index: u64) -> Result<(), LogError> {
        st.raft
            .check_next(raft_index)
            .map_err(|e| LogError::RaftIndexMismatch {
                index: e.index,
                expected: e.expected,
            })
    }

    fn refuse_if_failed(&self, st: &LogState) -> Result<(), LogError> {
        match &st.failed {
            Some(cause) => Err(LogError::Failed {
                dir: self.dir.clone(),
                cause: cause.clone(),
            }),
            None => Ok(()),
        }
    }

    fn needs_roll(&self, active: &Segment, batch_bytes: u64) -> bool {
        // A segment holding no records (empty, or only control batches) is
        // never rolled: its successor would start at the same offset and
        // need the same file name. Only Raft control traffic without data
        // can make such a segment outgrow `segment_bytes`.
        if active.bytes == 0 || active.next_offset == active.base_offset {
            return false;
        }
        let full = active.bytes + batch_bytes > self.config.segment_bytes;
        let old = match (self.config.segment_ms, active.first_timestamp_ms) {
            (Some(ms), Some(first)) => now_ms().saturating_sub(first) >= ms as i64,
            _ => false,
        };
        full || old
    }

    async fn lock(&self) -> Result<IoTurn<'_>, LogError> {
        Ok(self.io_gate.turn().await)
    }

    /// Group commit: returns once the batch with sequence number `seq` is
    /// acknowledged, flushing everything pending whenever this caller gets
    /// the I/O lock first.
    async fn wait_durable(&self, seq: u64, force_sync: bool) -> Result<(), LogError> {
        let mut yielded = false;
        loop {
            {
                let st = self.state.borrow();
                if st.written_seq_acked(self.config.fsync, force_sync) >= seq {
                    return Ok(());
                }
                self.refuse_if_failed(&st)?;
            }
            // Let appenders that are ready to run (typically those the last
            // flush just woke) add their batches first: one flush then covers
            // them all instead of alternating a lone batch with a full one.
            if !yielded {
                yielded = true;
                futures_lite::future::yield_now().await;
                continue;
            }
            // Never queue for the turn: the flush in progress (or the next
            // one, started by whoever runs first) may already cover us.
            let Some(_turn) = self.io_gate.try_turn() else {
                self.io_gate.turn_ended().await;
                continue;
            };
            let sync = force_sync
                || match self.config.fsync {
                    FsyncPolicy::Always => true,
                    FsyncPolicy::IntervalMs(ms) => {
                        self.state.borrow().last_sync.elapsed() >= Duration::from_millis(ms)
                    }
                    FsyncPolicy::Never => false,
                };
            self.flush_locked(sync).await?;
        }
    }

    /// Writes all pending batches (and fdatasyncs if `sync`). Caller holds the I/O lock.
    async fn flush_locked(&self, sync: bool) -> Result<(), LogError> {
        let result = self.write_and_sync(sync).await;
        if let Err(e) = &result {
            let mut st = self.state.borrow_mut();
            if st.failed.is_none() {
                tracing::error!(dir = %self.dir.display(), error = %e, "partition log write failed; refusing further writes");
                st.failed = Some(e.to_string());
            }
        }
        result
    }

    async fn write_and_sync(&self, sync: bool) -> Result<(), LogError> {
        let (batches, file, path, written_bytes, prefix, end_offset, end_seq) = {
            let mut st = self.state.borrow_mut();
            let batches: Vec<Bytes> = st.pending.drain(..).collect();
            let end_seq = st.appended_seq;
            if !batches.is_empty() {
                st.stats.flushes += 1;
            }
            let end_offset = st.log_end;
            let prefix = std::mem::take(&mut st.tail_block);
            let seg = st.active();
            (
                batches,
                seg.file.clone(),
                seg.paths.log.clone(),
                seg.written_bytes,
                prefix,
                end_offset,
                end_seq,
            )
        };
        let new_bytes: u64 = batches.iter().map(|b| b.len() as u64).sum();
        if new_bytes > 0 {
            let start = align_down(written_bytes);
            debug_assert_eq!(prefix.len() as u64, written_bytes - start);
            let total = prefix.len() as u64 + new_bytes;
            let mut stream = ByteStream::new(&prefix, &batches);
            let mut writes = Vec::new();
            let mut pos = start;
            let mut remaining = total;
            while remaining > 0 {
                let chunk = remaining.min(self.config.write_bytes_max as u64);
                let mut buf = self.pool.take(chunk as usize);
                let dst = buf.as_bytes_mut();
                stream.fill(&mut dst[..chunk as usize]);
                // Zero the padding so the never-written region reads as zeros.
                dst[chunk as usize..].fill(0);
                writes.push((Rc::new(buf), pos));
                pos += chunk;
                remaining -= chunk;
            }
            let new_tail = {
                let last = &writes.last().expect("at least one write").0;
                let end_in_last = (total
                    - (writes.len() as u64 - 1) * self.config.write_bytes_max as u64)
                    as usize;
                let tail_start = align_down(end_in_last as u64) as usize;
                last.as_bytes()[tail_start..end_in_last].to_vec()
            };
            // All chunks in flight at once: the device sees one deep queue.
            let results = futures::future::join_all(
                writes
                    .iter()
                    .map(|(buf, pos)| file.write_rc_at(buf.clone(), *pos)),
            )
            .await;
            for r in results {
                r.map_err(|e| LogError::io("writing", &path, e))?;
            }
            for (buf, _) in writes {
                if let Ok(buf) = Rc::try_unwrap(buf) {
                    self.pool.give_back(buf);
                }
            }
            let mut st = self.state.borrow_mut();
            st.tail_block = new_tail;
            let seg = st.active_mut();
            seg.written_bytes += new_bytes;
            debug_assert!(seg.written_bytes <= seg.bytes);
            let paths = seg.paths.clone();
            let written_bytes = seg.written_bytes;
            seg.index
                .persist_new(&paths.offset_index, &paths.time_index, written_bytes)
                .map_err(|e| LogError::io("writing index", &paths.offset_index, e))?;
            st.written = end_offset;
            st.written_seq = end_seq;
            st.stats.bytes_written += new_bytes;
        } else {
            self.state.borrow_mut().tail_block = prefix;
        }
        let needs_sync = sync && {
            let st = self.state.borrow();
            st.synced_seq < st.written_seq
        };
        if needs_sync {
            file.fdatasync()
                .await
                .map_err(|e| LogError::io("fdatasync", &path, e))?;
            let mut st = self.state.borrow_mut();
            st.synced = st.written;
            st.synced_seq = st.written_seq;
            st.last_sync = Instant::now();
            st.stats.fdatasyncs += 1;
        }
        self.state.borrow().check_invariants(self.config.fsync);
        Ok(())
    }

    /// Periodic work for `fsync = <N>ms`: fdatasyncs written data once the
    /// interval has passed. Cheap when there is nothing to do.
    pub async fn tick(&self) -> Result<(), LogError> {
        let FsyncPolicy::IntervalMs(ms) = self.config.fsync else {
            return Ok(());
        };
        let due = {
            let st = self.state.borrow();
            st.synced_seq < st.appended_seq && st.last_sync.elapsed() >= Duration::from_millis(ms)
        };
        if due {
            let _permit = self.lock().await?;
            self.refuse_if_failed(&self.state.borrow())?;
            self.flush_locked(true).await?;
        }
        Ok(())
    }

    /// Writes and fdatasyncs everything appended so far.
    pub async fn sync(&self) -> Result<(), LogError> {
        let _permit = self.lock().await?;
        self.refuse_if_failed(&self.state.borrow())?;
        self.flush_locked(true).await
    }

    /// Seals the active segment and starts a new one.
    async fn roll(&self) -> Result<(), LogError> {
        let _permit = self.lock().await?;
        {
            let st = self.state.borrow();
            self.refuse_if_failed(&st)?;
            if st.active().bytes == 0 {
                return Ok(());
            }
        }
        self.state.borrow_mut().rolling = true;
        let result = self.roll_locked().await;
        self.state.borrow_mut().rolling = false;
        result
    }

    async fn roll_locked(&self) -> Result<(), LogError> {
        self.flush_locked(true).await?;
        let base = self.state.borrow().log_end;
        // Create (and pre-allocate) the new segment first: a full disk fails
        // here, before the old segment is touched, and appends get the error.
        let new_segment = create_segment(&self.dir, base, &self.config).await?;
        let (file, paths, written_bytes) = {
            let st = self.state.borrow();
            let seg = st.active();
            (seg.file.clone(), seg.paths.clone(), seg.written_bytes)
        };
        let sealed = async {
            file.truncate(written_bytes)
                .await
                .map_err(|e| LogError::io("truncating sealed segment", &paths.log, e))?;
            file.fdatasync()
                .await
                .map_err(|e| LogError::io("fdatasync", &paths.log, e))?;
            let mut st = self.state.borrow_mut();
            st.active_mut()
                .index
                .rewrite(&paths.offset_index, &paths.time_index, true)
                .map_err(|e| LogError::io("writing index", &paths.offset_index, e))
        }
        .await;
        if let Err(e) = sealed {
            let mut st = self.state.borrow_mut();
            st.failed.get_or_insert_with(|| e.to_string());
            let _ = new_segment.paths.remove_all();
            return Err(e);
        }
        let mut st = self.state.borrow_mut();
        st.active_mut().sealed = true;
        st.segments.push(new_segment);
        st.tail_block.clear();
        tracing::debug!(dir = %self.dir.display(), base, "rolled to a new segment");
        Ok(())
    }

    /// Reads batches from `offset` up to `bytes_max` (at least one batch when
    /// any is available), never past the high watermark. Tail reads come from
    /// the memory ring; older ones from the segment files through the index,
    /// with the next span read ahead for a sequential reader.
    pub async fn read(&self, offset: u64, bytes_max: usize) -> Result<FetchedBatches, LogError> {
        let truncations_at_start = self.state.borrow().truncations;
        let (
            file,
            path,
            segment_base,
            mut position,
            mut position_offset,
            end_position,
            hw,
            log_start,
            readahead,
        ) = {
            let mut st = self.state.borrow_mut();
            let hw = st.high_watermark(self.config.fsync);
            if offset < st.log_start || offset > st.log_end {
                return Err(LogError::OffsetOutOfRange {
                    offset,
                    start: st.log_start,
                    end: st.log_end,
                });
            }
            let mut fetched = FetchedBatches {
                batches: Vec::new(),
                high_watermark: hw,
                log_start: st.log_start,
            };
            if offset >= hw {
                return Ok(fetched);
            }
            if let Some(batches) = st.ring.read(offset, hw, bytes_max) {
                fetched.batches = batches;
                return Ok(fetched);
            }
            let i = st.segments.partition_point(|s| s.base_offset <= offset) - 1;
            let (base, file, path, written) = {
                let seg = &st.segments[i];
                (
                    seg.base_offset,
                    seg.file.clone(),
                    seg.paths.log.clone(),
                    seg.written_bytes,
                )
            };
            let (position_offset, position) = st.segments[i].index_position(offset);
            let truncations = st.truncations;
            let readahead = st.readahead.take().filter(|r| {
                r.segment_base == base && r.offset == offset && r.truncations == truncations
            });
            (
                file,
                path,
                base,
                position,
                position_offset,
                written,
                hw,
                st.log_start,
                readahead,
            )
        };
        let span_bytes = bytes_max.max(64 << 10);
        let mut prefetched = None;
        let mut readahead = readahead;
        if let Some(r) = &mut readahead {
            r.top_up(&file, end_position, span_bytes);
            // A failed read-ahead is not an error: the read below reads itself.
            prefetched = r.take().await;
            if prefetched.is_some() {
                position = r.start;
                position_offset = r.offset;
            }
        }
        let outcome = SegmentRead {
            file: &file,
            path: &path,
            position,
            position_offset,
            offset,
            end_position,
            end_offset: hw,
            bytes_max,
            prefetched,
            include_control: false,
        }
        .run()
        .await?;
        if !outcome.batches.is_empty() {
            // `advance` drops in-flight spans that no longer follow on.
            let mut next = match readahead {
                Some(r) => r.advance(
                    outcome.next_position,
                    outcome.next_offset,
                    outcome.leftover.clone(),
                ),
                None => Readahead::new(
                    segment_base,
                    truncations_at_start,
                    outcome.next_position,
                    outcome.next_offset,
                    outcome.leftover.clone(),
                ),
            };
            next.top_up(&file, end_position, span_bytes);
            self.state.borrow_mut().readahead = Some(next);
            // Let the read-ahead tasks submit their I/O now, so the device
            // works while the caller processes this span.
            futures_lite::future::yield_now().await;
        }
        Ok(FetchedBatches {
            batches: outcome.batches,
            high_watermark: hw,
            log_start,
        })
    }

    /// `(raft_index, term)` of the last Raft entry, `None` when the log holds
    /// none (not replicated, or replicated but still empty). After retention
    /// deleted every segment holding entries, still the last one deleted.
    pub fn last_raft_entry(&self) -> Option<(u64, u64)> {
        self.state.borrow().raft.last()
    }

    /// First Raft index still on local disk.
    pub fn first_raft_index(&self) -> Option<u64> {
        self.state.borrow().raft.first_index()
    }

    /// Term of Raft entry `index` (held locally, or the one just before the
    /// first held), without I/O.
    pub fn raft_term(&self, index: u64) -> Option<u64> {
        self.state.borrow().raft.term(index)
    }

    /// Where Raft entry `index` is, without I/O.
    pub fn raft_entry(&self, index: u64) -> Option<RaftEntryLoc> {
        self.state.borrow().raft.get(index).copied()
    }

    /// Offset after Raft entry `index`'s records (its base offset for a
    /// control entry): the high watermark once `index` is committed.
    pub fn raft_next_offset(&self, index: u64) -> Option<u64> {
        let st = self.state.borrow();
        st.raft.get(index)?;
        Some(
            st.raft
                .get(index + 1)
                .map_or(st.log_end, |next| next.base_offset),
        )
    }

    /// Highest Raft index durable (fdatasync'ed) in the log as it is now;
    /// `None` when no Raft entry is known.
    pub fn synced_raft_index(&self) -> Option<u64> {
        let st = self.state.borrow();
        let (last, _) = st.raft.last()?;
        // The unsynced batches are the newest ones, and after the first Raft
        // entry every batch is one, so they are the last entries (counting
        // older unreplicated ones too can only under-report).
        let unsynced = st.appended_seq - st.synced_seq;
        Some(last.saturating_sub(unsynced))
    }

    /// Raft reads: the batches (control ones included, bytes as stored)
    /// from Raft entry `from_index` on, up to `bytes_max` (at least one),
    /// for a leader to send to followers. Served from the memory ring, the
    /// pending queue (appended, not yet written) or the segment files
    /// (CRC-checked like [`Self::read`]); a read from a file stops at that
    /// segment's end. Entries need not be durable yet (Raft sends a
    /// leader's entries before its own fsync). Empty at the last index + 1.
    pub async fn read_raft(
        &self,
        from_index: u64,
        bytes_max: usize,
    ) -> Result<Vec<Bytes>, LogError> {
        loop {
            let in_flight;
            let (file, path, position, base_offset, end_position, truncations) = {
                let st = self.state.borrow();
                let Some(loc) = self.raft_read_at(&st, from_index)? else {
                    return Ok(Vec::new());
                };
                if let Some(batches) = st.ring.read_raft(from_index, bytes_max) {
                    return Ok(batches);
                }
                let seg = &st.segments[st
                    .segment_index(loc.segment_base)
                    .expect("raft entries point at live segments")];
                if u64::from(loc.position) >= seg.written_bytes {
                    // Not written yet: it is in the pending queue — or in a
                    // write in flight, which takes it out of the queue
                    // before the segment counts it written: wait for that
                    // write and look again.
                    if let Some(batches) = st.pending_raft(from_index, bytes_max) {
                        return Ok(batches);
                    }
                }
                in_flight = u64::from(loc.position) >= seg.written_bytes;
                (
                    seg.file.clone(),
                    seg.paths.log.clone(),
                    u64::from(loc.position),
                    loc.base_offset,
                    seg.written_bytes,
                    st.truncations,
                )
            };
            if in_flight {
                drop(self.lock().await?);
                continue;
            }
            let outcome = SegmentRead {
                file: &file,
                path: &path,
                position,
                position_offset: base_offset,
                offset: base_offset,
                end_position,
                end_offset: u64::MAX,
                bytes_max,
                prefetched: None,
                include_control: true,
            }
            .run()
            .await?;
            // A truncation while reading may have replaced what was read.
            if self.state.borrow().truncations != truncations {
                continue;
            }
            debug_assert!(outcome
                .batches
                .first()
                .and_then(|b| peek_header(b).ok())
                .is_some_and(|h| h.raft_index() == from_index));
            return Ok(outcome.batches);
        }
    }

    /// The first offset whose record timestamp is ≥ `timestamp_ms`, or `None`
    /// when every acknowledged record is older.
    pub async fn find_offset_by_timestamp(
        &self,
        timestamp_ms: i64,
    ) -> Result<Option<u64>, LogError> {
        let start = {
            let st = self.state.borrow();
            let Some(seg) = st
                .segments
                .iter()
                .find(|s| s.index.max_timestamp_ms.is_some_and(|m| m >= timestamp_ms))
            else {
                return Ok(None);
            };
            seg.base_offset + u64::from(seg.index.scan_start_for_time(timestamp_ms))
        };
        let mut offset = start.max(self.offsets().log_start);
        loop {
            let fetched = self.read(offset, 1 << 20).await?;
            if fetched.batches.is_empty() {
                return Ok(None);
            }
            match search_time(&fetched.batches, offset, timestamp_ms)? {
                TimeSearch::Found(found) => return Ok(Some(found)),
                TimeSearch::Continue(next) => offset = next,
            }
        }
    }

    /// Removes every record at or after `offset`, which must be a batch
    /// boundary (or the log end). Durable before it returns. (Control
    /// batches at `offset` that precede the first batch holding it stay.)
    pub async fn truncate_suffix(&self, offset: u64) -> Result<(), LogError> {
        let _permit = self.lock().await?;
        self.refuse_if_failed(&self.state.borrow())?;
        self.flush_locked(true).await?;
        let (log_start, log_end) = {
            let st = self.state.borrow();
            (st.log_start, st.log_end)
        };
        if offset == log_end {
            return Ok(());
        }
        if offset < log_start || offset > log_end {
            return Err(LogError::OffsetOutOfRange {
                offset,
                start: log_start,
                end: log_end,
            });
        }
        // Find the batch boundary's file position (validates that it is one).
        let (seg_index, position) = {
            let (i, file, path, pos, pos_off, end) = {
                let st = self.state.borrow();
                let i = st.segments.partition_point(|s| s.base_offset <= offset) - 1;
                let seg = &st.segments[i];
                let (pos_off, pos) = seg.index_position(offset);
                (
                    i,
                    seg.file.clone(),
                    seg.paths.log.clone(),
                    pos,
                    pos_off,
                    seg.written_bytes,
                )
            };
            let mut position = pos;
            let mut at = pos_off;
            while at < offset {
                let outcome = SegmentRead {
                    file: &file,
                    path: &path,
                    position,
                    position_offset: at,
                    offset: at,
                    end_position: end,
                    end_offset: u64::MAX,
                    bytes_max: 1,
                    prefetched: None,
                    include_control: false,
                }
                .run()
                .await?;
                if outcome.batches.is_empty() {
                    return Err(LogError::NotBatchBoundary { offset });
                }
                // Past the one data batch returned and the control batches
                // skipped before it.
                position = outcome.next_position;
                at = outcome.next_offset;
            }
            if at != offset {
                return Err(LogError::NotBatchBoundary { offset });
            }
            (i, position)
        };
        self.cut_locked(seg_index, position, offset).await
    }

    /// Removes Raft entry `from_index` and every later one, so that the last
    /// entry is `from_index - 1` (a follower whose uncommitted tail disagrees
    /// with a new leader's). Durable before it returns. `from_index` past
    /// the last entry removes nothing; below the first entry still on local
    /// disk it is an error.
    pub async fn truncate_raft_suffix(&self, from_index: u64) -> Result<(), LogError> {
        let _permit = self.lock().await?;
        self.refuse_if_failed(&self.state.borrow())?;
        self.flush_locked(true).await?;
        let (seg_index, position, offset) = {
            let st = self.state.borrow();
            let Some(loc) = st.raft.get(from_index) else {
                if st.raft.last().is_none_or(|(last, _)| from_index > last) {
                    return Ok(());
                }
                return Err(self.raft_out_of_range(&st, from_index));
            };
            let i = st
                .segment_index(loc.segment_base)
                .expect("raft entries point at live segments");
            (i, u64::from(loc.position), loc.base_offset)
        };
        self.cut_locked(seg_index, position, offset).await
    }

    /// Where a Raft read from `from_index` starts: `None` just past the
    /// last entry (nothing to read yet), an error outside the local log.
    fn raft_read_at(
        &self,
        st: &LogState,
        from_index: u64,
    ) -> Result<Option<RaftEntryLoc>, LogError> {
        match st.raft.get(from_index) {
            Some(loc) => Ok(Some(*loc)),
            None if st
                .raft
                .last()
                .is_none_or(|(last, _)| from_index == last + 1) =>
            {
                Ok(None)
            }
            None => Err(self.raft_out_of_range(st, from_index)),
        }
    }

    fn raft_out_of_range(&self, st: &LogState, index: u64) -> LogError {
        LogError::RaftIndexOutOfRange {
            index,
            first: st.raft.first_index(),
            last: st.raft.last().map(|(i, _)| i),
        }
    }

    /// Cuts the log at `position` of segment `seg_index`, the start of a
    /// batch whose base offset is `offset`: later segments are deleted, that
    /// segment is cut, durably. Caller holds the I/O turn and has flushed.
    async fn cut_locked(
        &self,
        seg_index: usize,
        position: u64,
        offset: u64,
    ) -> Result<(), LogError> {
        // Later segments go entirely; the segment holding `offset` is cut.
        let removed: Vec<Segment> = self
            .state
            .borrow_mut()
            .segments
            .drain(seg_index + 1..)
            .collect();
        for seg in removed {
            seg.paths
                .remove_all()
                .map_err(|e| LogError::io("removing segment", &seg.paths.log, e))?;
        }
        let (file, paths) = {
            let st = self.state.borrow();
            let seg = &st.segments[seg_index];
            (seg.file.clone(), seg.paths.clone())
        };
        let tail = discard_after(&file, &paths.log, position, &self.config).await?;
        let mut st = self.state.borrow_mut();
        let seg = st.segments.last_mut().expect("kept segment");
        let segment_base = seg.base_offset;
        seg.bytes = position;
        seg.written_bytes = position;
        seg.next_offset = offset;
        seg.sealed = false;
        let rel = (offset - seg.base_offset) as u32;
        seg.index.truncate(rel);
        if position == 0 {
            seg.first_timestamp_ms = None;
        }
        seg.index
            .rewrite(&paths.offset_index, &paths.time_index, false)
            .map_err(|e| LogError::io("writing index", &paths.offset_index, e))?;
        st.tail_block = tail;
        st.log_end = offset;
        st.written = offset;
        st.synced = offset;
        let raft_from = st.raft.truncate_from(segment_base, position);
        st.ring.truncate_after(offset, raft_from);
        st.readahead = None;
        st.truncations += 1;
        st.check_invariants(self.config.fsync);
        tracing::info!(dir = %self.dir.display(), offset, "truncated log suffix");
        Ok(())
    }

    /// Deletes sealed segments beyond the retention limits; returns how many.
    pub async fn apply_retention(&self, now_ms: i64) -> Result<usize, LogError> {
        let n = {
            let st = self.state.borrow();
            let summaries: Vec<SegmentSummary> = st
                .segments
                .iter()
                .map(|s| SegmentSummary {
                    bytes: s.bytes,
                    max_timestamp_ms: s.index.max_timestamp_ms,
                })
                .collect();
            segments_to_delete(
                &summaries,
                now_ms,
                self.config.retention_bytes,
                self.config.retention_ms,
            )
        };
        self.remove_oldest_segments(n).await
    }

    /// Every sealed segment (all but the active one), oldest first: what
    /// tiered storage uploads.
    pub fn sealed_segments(&self) -> Vec<SealedSegment> {
        let st = self.state.borrow();
        let sealed = st.segments.len() - 1;
        st.segments[..sealed]
            .iter()
            .map(|s| SealedSegment {
                base_offset: s.base_offset,
                next_offset: s.next_offset,
                bytes: s.bytes,
                first_timestamp_ms: s.first_timestamp_ms,
                max_timestamp_ms: s.index.max_timestamp_ms,
                log_path: s.paths.log.clone(),
                index_path: s.paths.offset_index.clone(),
                time_index_path: s.paths.time_index.clone(),
            })
            .collect()
    }

    /// Deletes the `n` oldest sealed segments' files (never the active one)
    /// and moves the log start past them. Retention and tiered storage
    /// decide which; this only does it.
    pub async fn remove_oldest_segments(&self, n: usize) -> Result<usize, LogError> {
        let _permit = self.lock().await?;
        let doomed: Vec<Segment> = {
            let mut st = self.state.borrow_mut();
            let n = n.min(st.segments.len() - 1);
            let doomed: Vec<Segment> = st.segments.drain(..n).collect();
            st.log_start = st.segments[0].base_offset;
            let start = st.log_start;
            st.raft.drop_segments_before(start);
            st.ring.trim_front(start);
            st.readahead = None;
            doomed
        };
        for seg in &doomed {
            seg.paths
                .remove_all()
                .map_err(|e| LogError::io("removing segment", &seg.paths.log, e))?;
            tracing::info!(segment = %seg.paths.log.display(), bytes = seg.bytes, "deleted local segment");
        }
        Ok(doomed.len())
    }

    /// Flushes, fdatasyncs and persists indexes. The log stays usable.
    pub async fn close(&self) -> Result<(), LogError> {
        self.sync().await
    }
}

/// Concatenation of a prefix and batches, copied out chunk by chunk.
struct ByteStream<'a> {
    parts: Vec<&'a [u8]>,
    part: usize,
    at: usize,
}

impl<'a> ByteStream<'a> {
    fn new(prefix: &'a [u8], batches: &'a [Bytes]) -> Self {
        let mut parts = vec![prefix];
        parts.extend(batches.iter().map(|b| &b[..]));
        Self {
            parts,
            part: 0,
            at: 0,
        }
    }

    fn fill(&mut self, mut dst: &mut [u8]) {
        while !dst.is_empty() {
            let src = &self.parts[self.part][self.at..];
            let n = src.len().min(dst.len());
            dst[..n].copy_from_slice(&src[..n]);
            dst = &mut dst[n..];
            self.at += n;
            if self.at == self.parts[self.part].len() {
                self.part += 1;
                self.at = 0;
            }
        }
    }
}

async fn open_rw(path: &Path, create: bool) -> Result<DmaFile, LogError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .dma_open(path)
        .await
        .map_err(|e| LogError::io("opening", path, e))
}

fn sync_dir(dir: &Path) -> Result<(), LogError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| LogError::io("fsync directory", dir, e))
}

async fn create_segment(
    dir: &Path,
    base_offset: u64,
    config: &LogConfig,
) -> Result<Segment, LogError> {
    let paths = SegmentPaths::new(dir, base_offset);
    let file = open_rw(&paths.log, true).await?;
    if config.preallocate {
        if let Err(e) = file.pre_allocate(config.segment_bytes, false).await {
            let _ = file.close().await;
            let _ = std::fs::remove_file(&paths.log);
            return Err(LogError::io("pre-allocating segment", &paths.log, e));
        }
    }
    for p in [&paths.offset_index, &paths.time_index] {
        std::fs::write(p, b"").map_err(|e| LogError::io("creating index", p, e))?;
    }
    sync_dir(dir)?;
    Ok(Segment {
        base_offset,
        next_offset: base_offset,
        bytes: 0,
        written_bytes: 0,
        first_timestamp_ms: None,
        index: SegmentIndex::default(),
        paths,
        file: Rc::new(file),
        sealed: false,
    })
}

/// Makes `position` the end of the segment file: everything after it reads as
/// zeros (so truncated batches can never be resurrected by a later scan).
/// Returns the new partial tail block.
async fn discard_after(
    file: &DmaFile,
    path: &Path,
    position: u64,
    config: &LogConfig,
) -> Result<Vec<u8>, LogError> {
    file.truncate(position)
        .await
        .map_err(|e| LogError::io("truncating", path, e))?;
    if config.preallocate {
        file.pre_allocate(config.segment_bytes.max(align_up(position)), false)
            .await
            .map_err(|e| LogError::io("pre-allocating segment", path, e))?;
    }
    file.fdatasync()
        .await
        .map_err(|e| LogError::io("fdatasync", path, e))?;
    let block = align_down(position);
    if block == position {
        return Ok(Vec::new());
    }
    let read = file
        .read_at_aligned(block, 4096)
        .await
        .map_err(|e| LogError::io("reading", path, e))?;
    Ok(read[..(position - block) as usize].to_vec())
}

/// Adds a recovered segment's Raft entries to the map, checking that they
/// follow on and that nothing unreplicated follows a Raft entry.
fn add_raft_entries(
    raft: &mut RaftMap,
    segment: &Segment,
    batches: &[ScannedBatch],
) -> Result<(), String> {
    let name = || segment.paths.log.display().to_string();
    if batches.is_empty() {
        return match raft.last() {
            Some((last, _)) if segment.bytes > 0 => Err(format!(
                "segment {} holds unreplicated batches after raft entry {last}",
                name()
            )),
            _ => Ok(()),
        };
    }
    for b in batches {
        if b.raft_index == 0 {
            if let Some((last, _)) = raft.last() {
                return Err(format!(
                    "segment {} holds an unreplicated batch at position {} after raft entry {last}",
                    name(),
                    b.position
                ));
            }
            continue;
        }
        let loc = RaftEntryLoc {
            term: b.term,
            base_offset: b.base_offset,
            segment_base: segment.base_offset,
            position: b.position as u32,
            control: b.control,
        };
        raft.push(b.raft_index, loc).map_err(|e| {
            format!(
                "segment {} holds raft entry {} at position {} where {} was expected",
                name(),
                e.index,
                b.position,
                e.expected
            )
        })?;
    }
    Ok(())
}

/// Recovers one segment: loads its index (rebuilding it when it does not
/// match), validates the log from the last index entry, and truncates a torn
/// tail of the last segment. Returns the segment, its partial tail block,
/// and, when it holds Raft entries, every batch in it (read in full for the
/// Raft map: the index only spans data batches, sparsely); otherwise none.
async fn recover_segment(
    dir: &Path,
    base_offset: u64,
    is_last: bool,
    config: &LogConfig,
    report: &mut RecoveryReport,
) -> Result<(Segment, Vec<u8>, Vec<ScannedBatch>), LogError> {
    let paths = SegmentPaths::new(dir, base_offset);
    let file = open_rw(&paths.log, false).await?;
    let file_bytes = file
        .file_size()
        .await
        .map_err(|e| LogError::io("stat", &paths.log, e))?;
    let loaded = match (
        std::fs::read(&paths.offset_index),
        std::fs::read(&paths.time_index),
    ) {
        (Ok(o), Ok(t)) => SegmentIndex::decode(&o, &t, file_bytes),
        _ => None,
    };
    let mut rebuilt = loaded.is_none();
    let mut index = loaded.unwrap_or_default();
    let mut outcome =
        scan_from_last_entry(&file, &paths.log, base_offset, &index, file_bytes, report).await?;
    if !index.offsets.is_empty() && outcome.found_entry_batch.is_none() {
        // The index points at something that is not a batch: distrust it.
        index = SegmentIndex::default();
        rebuilt = true;
        outcome = scan_from_last_entry(&file, &paths.log, base_offset, &index, file_bytes, report)
            .await?;
    }
    let start_position = index.offsets.last().map_or(0, |e| u64::from(e.position));
    let mut max_ts = index.max_timestamp_ms;
    let index_was_empty = index.offsets.is_empty();
    for b in outcome
        .scan
        .batches
        .iter()
        .filter(|b| (b.position > start_position || index_was_empty) && !b.control)
    {
        index.on_batch(
            (b.base_offset - base_offset) as u32,
            b.position,
            b.last_timestamp_ms,
            config.index_interval_bytes,
        );
        max_ts = Some(max_ts.map_or(b.last_timestamp_ms, |m| m.max(b.last_timestamp_ms)));
    }
    index.max_timestamp_ms = max_ts;
    let end = outcome.scan.end_position;
    let next_offset = outcome.scan.next_offset;
    let mut tail = Vec::new();
    match &outcome.scan.stop {
        ScanStop::CleanEnd if end == file_bytes || is_last => {}
        ScanStop::CleanEnd => {
            // A sealed segment pre-allocated but never truncated (crash during
            // roll): its data ends here and the rest is zeros.
            file.truncate(end)
                .await
                .map_err(|e| LogError::io("truncating sealed segment", &paths.log, e))?;
        }
        ScanStop::NeedMore { .. } | ScanStop::Invalid { .. } if !is_last => {
            let reason = match &outcome.scan.stop {
                ScanStop::Invalid { reason, .. } => reason.clone(),
                _ => "segment ends inside a batch".into(),
            };
            return Err(LogError::Corrupt {
                segment: paths.log.clone(),
                offset: next_offset,
                position: end,
                reason,
            });
        }
        stop => {
            let reason = match stop {
                ScanStop::Invalid { reason, .. } => reason.clone(),
                _ => "torn batch at the end of the log".into(),
            };
            tracing::warn!(
                segment = %paths.log.display(),
                position = end,
                offset = next_offset,
                %reason,
                "dropping torn tail: everything from this position on is discarded"
            );
            report.truncated_tail = Some((paths.log.clone(), end, next_offset, reason));
        }
    }
    if is_last {
        // Always cut the active segment at its valid end, even after a clean
        // scan: blocks of an interrupted write may have landed beyond a hole,
        // and a later append must never line up with such stale batches.
        tail = discard_after(&file, &paths.log, end, config).await?;
    }
    // Raft entries are a suffix of the log: if the tail scanned holds none,
    // the segment holds none and needs no further reading.
    let batches = if !outcome.scan.batches.iter().any(|b| b.raft_index != 0) {
        Vec::new()
    } else if outcome
        .scan
        .batches
        .first()
        .is_some_and(|b| b.position == 0)
    {
        outcome.scan.batches
    } else {
        let empty = SegmentIndex::default();
        scan_from_last_entry(&file, &paths.log, base_offset, &empty, end, report)
            .await?
            .scan
            .batches
    };
    if rebuilt {
        report.rebuilt_indexes.push(paths.offset_index.clone());
        tracing::warn!(index = %paths.offset_index.display(), "rebuilt segment index from the log");
        index
            .rewrite(&paths.offset_index, &paths.time_index, false)
            .map_err(|e| LogError::io("writing index", &paths.offset_index, e))?;
    } else if report.truncated_tail.is_some() && is_last {
        index.truncate((next_offset - base_offset) as u32);
        index
            .rewrite(&paths.offset_index, &paths.time_index, false)
            .map_err(|e| LogError::io("writing index", &paths.offset_index, e))?;
    } else {
        index
            .persist_new(&paths.offset_index, &paths.time_index, u64::MAX)
            .map_err(|e| LogError::io("writing index", &paths.offset_index, e))?;
    }
    let first_timestamp_ms = if end > 0 {
        let head = file
            .read_at_aligned(0, 4096)
            .await
            .map_err(|e| LogError::io("reading", &paths.log, e))?;
        // A control batch has no record timestamps: the next data batch
        // appended sets it.
        crate::batch::peek_header(&head)
            .ok()
            .filter(|h| !h.is_control())
            .map(|h| h.first_timestamp_ms.get())
    } else {
        None
    };
    Ok((
        Segment {
            base_offset,
            next_offset,
            bytes: end,
            written_bytes: end,
            first_timestamp_ms,
            index,
            paths,
            file: Rc::new(file),
            sealed: !is_last,
        },
        tail,
        batches,
    ))
}

struct TailScan {
    scan: crate::scan::Scan,
    /// The batch at the last index entry, when the index has one and it is valid.
    found_entry_batch: Option<u64>,
}

/// Scans from the last index entry (or the start) to the end of the valid data.
async fn scan_from_last_entry(
    file: &DmaFile,
    path: &Path,
    base_offset: u64,
    index: &SegmentIndex,
    file_bytes: u64,
    report: &mut RecoveryReport,
) -> Result<TailScan, LogError> {
    let (mut position, mut offset) = index.offsets.last().map_or((0, base_offset), |e| {
        (
            u64::from(e.position),
            base_offset + u64::from(e.relative_offset),
        )
    });
    let entry_position = index.offsets.last().map(|e| u64::from(e.position));
    let mut total = crate::scan::Scan {
        batches: Vec::new(),
        end_position: position,
        next_offset: offset,
        stop: ScanStop::CleanEnd,
    };
    let mut want = RECOVERY_READ_BYTES;
    loop {
        if position >= file_bytes {
            total.stop = ScanStop::CleanEnd;
            break;
        }
        let block = align_down(position);
        let len = (want as u64).min(align_up(file_bytes) - block);
        let buf = file
            .read_at_aligned(block, len as usize)
            .await
            .map_err(|e| LogError::io("reading", path, e))?;
        report.tail_bytes_scanned += buf.len() as u64;
        let skip = (position - block) as usize;
        if buf.len() <= skip {
            total.stop = ScanStop::CleanEnd;
            break;
        }
        let at_eof = block + buf.len() as u64 >= file_bytes;
        let scan = scan_batches(&buf[skip..], position, offset);
        total.batches.extend_from_slice(&scan.batches);
        total.end_position = scan.end_position;
        total.next_offset = scan.next_offset;
        match scan.stop {
            ScanStop::NeedMore { bytes, .. } if !at_eof => {
                if scan.end_position == position {
                    want = want.max(align_up(bytes as u64 + 4096) as usize);
                }
                position = scan.end_position;
                offset = scan.next_offset;
            }
            ScanStop::CleanEnd if !at_eof && scan.end_position == block + buf.len() as u64 => {
                position = scan.end_position;
                offset = scan.next_offset;
            }
            stop => {
                total.stop = stop;
                break;
            }
        }
    }
    let found_entry_batch = entry_position
        .and_then(|p| total.batches.first().filter(|b| b.position == p))
        .map(|b| b.base_offset);
    Ok(TailScan {
        scan: total,
        found_entry_batch,
    })
}

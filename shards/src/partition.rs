//! One topic-partition as its owning shard holds it: the record log, the
//! consumer-group offsets (a small log of their own), and the signal that
//! wakes long-polling readers when the high watermark moves.

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::BytesMut;
use sprawl_io::dma_pool::DmaBufPool;
use sprawl_storage::{BatchView, FsyncPolicy, LogConfig, PartitionLog};

use crate::cold::ColdTier;
use crate::group_offsets::{CommittedOffset, GroupOffsets};
use crate::notify::LocalNotify;
use crate::request::{PartitionOffsets, ShardError};

pub struct Partition {
    pub topic: String,
    pub partition: u32,
    pub dir: PathBuf,
    pub log: PartitionLog,
    groups_log: PartitionLog,
    groups: RefCell<GroupOffsets>,
    /// Woken whenever the high watermark may have moved.
    pub data_ready: LocalNotify,
    /// The archive tier, when tiered storage is on.
    pub cold: Option<ColdTier>,
    /// Traffic counters the load sampler turns into per-second rates.
    pub load: LoadCounters,
    /// Writes (appends, offset commits) started and not yet answered: a
    /// move waits for them to drain before it syncs and closes the log.
    writes_in_flight: Cell<usize>,
    writes_drained: LocalNotify,
    /// Set when a move fences the partition: new requests wait for the new
    /// owner instead of starting here, and long polls return at once.
    fenced: Cell<bool>,
    /// Replicated partitions: the offset readers may see up to (the Raft
    /// commit index's end). `None` for a partition kept by one node.
    readable_offset: Cell<Option<u64>>,
    /// Replicated partitions: the leader the metadata names (the node
    /// routes there), as this shard's catalog last said.
    pub metadata_leader: Cell<Option<u64>>,
}

/// Monotonic per-partition traffic counters (owned by one shard).
#[derive(Debug, Default)]
pub struct LoadCounters {
    pub messages_in: Cell<u64>,
    pub bytes_in: Cell<u64>,
    pub bytes_out: Cell<u64>,
}

/// Counts one write in flight for as long as it lives.
struct WriteGuard<'a>(&'a Partition);

impl<'a> WriteGuard<'a> {
    fn new(p: &'a Partition) -> Self {
        p.writes_in_flight.set(p.writes_in_flight.get() + 1);
        Self(p)
    }
}

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        let p = self.0;
        p.writes_in_flight.set(p.writes_in_flight.get() - 1);
        if p.writes_in_flight.get() == 0 {
            p.writes_drained.notify_all();
        }
    }
}

/// Whether a log directory holds any segment file.
fn has_segments(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .filter_map(Result::ok)
            .any(|e| e.file_name().to_str().is_some_and(|n| n.ends_with(".log")))
    })
}

/// `<data>/topics/<topic>/<partition>`.
pub fn partition_dir(data_dir: &Path, topic: &str, partition: u32) -> PathBuf {
    data_dir
        .join("topics")
        .join(topic)
        .join(partition.to_string())
}

impl Partition {
    /// Opens (recovering) the partition's logs and folds the group offsets.
    pub async fn open(
        data_dir: &Path,
        topic: &str,
        partition: u32,
        log_config: LogConfig,
        pool: Rc<DmaBufPool>,
        cold: Option<ColdTier>,
    ) -> Result<Self, ShardError> {
        let dir = partition_dir(data_dir, topic, partition);
        let log_dir = dir.join("log");
        // A partition with no local segments continues after what the
        // archive holds (an empty data dir recovering from the archive):
        // starting at 0 would reuse archived offsets.
        let mut start = 0;
        if let Some(cold) = &cold {
            if !has_segments(&log_dir) {
                cold.ensure_manifest().await?;
                start = cold.manifest().next_offset();
            }
        }
        let (log, _) = PartitionLog::open_from(&log_dir, log_config, pool.clone(), start).await?;
        let groups_config = LogConfig {
            segment_bytes: 4 << 20,
            ring_bytes: 64 << 10,
            fsync: FsyncPolicy::Always,
            retention_bytes: None,
            retention_ms: None,
            ..LogConfig::default()
        };
        let groups_log = PartitionLog::open(dir.join("groups"), groups_config, pool).await?;
        let mut groups = GroupOffsets::default();
        let mut next = groups_log.offsets().log_start;
        loop {
            let fetched = groups_log.read(next, 1 << 20).await?;
            if fetched.batches.is_empty() {
                break;
            }
            for b in &fetched.batches {
                let view =
                    BatchView::parse_exact(b).map_err(|e| ShardError::Storage(e.to_string()))?;
                for r in view.records() {
                    let r = r.map_err(|e| ShardError::Storage(e.to_string()))?;
                    if r.offset >= next {
                        groups.apply(&r);
                    }
                }
                next = view.header().next_offset();
            }
        }
        Ok(Self {
            topic: topic.to_string(),
            partition,
            dir,
            log,
            groups_log,
            groups: RefCell::new(groups),
            data_ready: LocalNotify::default(),
            cold,
            load: LoadCounters::default(),
            writes_in_flight: Cell::new(0),
            writes_drained: LocalNotify::default(),
            fenced: Cell::new(false),
            readable_offset: Cell::new(None),
            metadata_leader: Cell::new(None),
        })
    }

    /// Whether a move has fenced this partition (it is leaving this shard).
    pub fn is_fenced(&self) -> bool {
        self.fenced.get()
    }

    /// Fences the partition for a move and waits until every write already
    /// started has been answered; then fdatasyncs both logs, so the new
    /// owner, opening the same files, sees every acknowledged byte. Readers
    /// waiting for data are woken and answer with what they have.
    pub async fn fence_and_sync(&self) -> Result<(), ShardError> {
        self.fenced.set(true);
        self.data_ready.notify_all();
        while self.writes_in_flight.get() > 0 {
            let drained = self.writes_drained.notified();
            if self.writes_in_flight.get() == 0 {
                break;
            }
            drained.await;
        }
        self.sync().await
    }

    /// Lifts a fence after a move that failed: the partition serves again here.
    pub fn unfence(&self) {
        self.fenced.set(false);
    }

    /// First offset a reader may ask for: the archive's start when it holds
    /// older records than the local log.
    pub fn log_start(&self) -> u64 {
        let local = self.log.offsets().log_start;
        self.cold
            .as_ref()
            .and_then(ColdTier::archive_start)
            .map_or(local, |a| a.min(local))
    }

    /// Reads from any tier: the archive below the local log start, the
    /// local log (ring or segments) from it on.
    pub async fn read(
        &self,
        offset: u64,
        bytes_max: usize,
    ) -> Result<sprawl_storage::FetchedBatches, ShardError> {
        let local = self.log.offsets();
        if let Some(cold) = self.cold.as_ref().filter(|_| offset < local.log_start) {
            let start = self.log_start();
            if offset < start {
                return Err(ShardError::OffsetOutOfRange {
                    offset,
                    start,
                    end: local.log_end,
                });
            }
            let batches = cold.read(offset, local.log_start, bytes_max).await?;
            return Ok(sprawl_storage::FetchedBatches {
                batches,
                high_watermark: local.high_watermark,
                log_start: start,
            });
        }
        if let Some(readable) = self.readable_offset.get() {
            // Replicated: nothing past the commit index (a follower's or
            // a new leader's uncommitted tail may still be replaced).
            if offset >= readable {
                return Ok(sprawl_storage::FetchedBatches {
                    batches: Vec::new(),
                    high_watermark: readable,
                    log_start: self.log_start(),
                });
            }
            let mut fetched = self.log.read(offset, bytes_max).await?;
            fetched.batches.retain(|b| {
                sprawl_storage::batch::peek_header(b).is_ok_and(|h| h.base_offset() < readable)
            });
            fetched.high_watermark = readable;
            fetched.log_start = self.log_start();
            return Ok(fetched);
        }
        let mut fetched = self.log.read(offset, bytes_max).await?;
        fetched.log_start = self.log_start();
        Ok(fetched)
    }

    /// Replicated partitions: readers may now see up to `offset`.
    pub fn set_readable_offset(&self, offset: u64) {
        if self.readable_offset.get().is_none_or(|o| offset > o) {
            self.readable_offset.set(Some(offset));
            self.data_ready.notify_all();
        }
    }

    /// Marks the partition replicated (readers see nothing until the
    /// first commit is known).
    pub fn mark_replicated(&self) {
        if self.readable_offset.get().is_none() {
            self.readable_offset.set(Some(0));
        }
    }

    pub fn is_replicated(&self) -> bool {
        self.readable_offset.get().is_some()
    }

    /// The first offset whose record is at or after `timestamp_ms`, any tier.
    pub async fn find_offset_by_timestamp(
        &self,
        timestamp_ms: i64,
    ) -> Result<Option<u64>, ShardError> {
        if let Some(cold) = &self.cold {
            let local_start = self.log.offsets().log_start;
            if let Some(found) = cold
                .find_offset_by_timestamp(timestamp_ms, local_start)
                .await?
            {
                if found < local_start {
                    return Ok(Some(found));
                }
            }
        }
        Ok(self.log.find_offset_by_timestamp(timestamp_ms).await?)
    }

    pub fn offsets(&self) -> PartitionOffsets {
        let o = self.log.offsets();
        let cold = self.cold.as_ref();
        PartitionOffsets {
            log_start: self.log_start(),
            high_watermark: self.readable_offset.get().unwrap_or(o.high_watermark),
            log_end: o.log_end,
            size_bytes: self.log.size_bytes(),
            local_log_start: o.log_start,
            archive_start: cold.and_then(ColdTier::archive_start),
            archive_end: cold.and_then(ColdTier::archive_end),
            archive_bytes: cold.map_or(0, ColdTier::archived_bytes),
        }
    }

    /// Appends and wakes waiting readers once the batch is acknowledged.
    pub async fn append(&self, batch: BytesMut, durable: bool) -> Result<(u64, u64), ShardError> {
        let _write = WriteGuard::new(self);
        let bytes = batch.len() as u64;
        let result = self.log.append_with(batch, 0, durable).await;
        // Wake readers even on error: a flush may have moved the watermark.
        self.data_ready.notify_all();
        let ack = result?;
        let load = &self.load;
        load.messages_in
            .set(load.messages_in.get() + (ack.next_offset - ack.base_offset));
        load.bytes_in.set(load.bytes_in.get() + bytes);
        Ok((ack.base_offset, ack.next_offset))
    }

    /// Counts a batch appended through replication and wakes readers.
    pub fn note_appended(&self, (base, next): (u64, u64), bytes: u64) {
        let load = &self.load;
        load.messages_in.set(load.messages_in.get() + (next - base));
        load.bytes_in.set(load.bytes_in.get() + bytes);
    }

    /// Durably records a consumer group's offset.
    pub async fn commit(
        &self,
        group: &str,
        offset: u64,
        metadata: &str,
        now_ms: i64,
    ) -> Result<(), ShardError> {
        let _write = WriteGuard::new(self);
        let batch = GroupOffsets::encode_commit(group, offset, metadata, now_ms);
        if batch.len() > crate::group_offsets::COMMIT_BYTES_MAX {
            return Err(ShardError::InvalidRequest(format!(
                "commit of {} bytes exceeds {} (group name + metadata)",
                batch.len(),
                crate::group_offsets::COMMIT_BYTES_MAX
            )));
        }
        self.groups_log.append_with(batch, 0, true).await?;
        self.groups.borrow_mut().record(group, offset, metadata);
        Ok(())
    }

    pub fn committed(&self, group: &str) -> Option<CommittedOffset> {
        self.groups.borrow().get(group).cloned()
    }

    /// fdatasyncs both logs (shutdown, interval policy ticks).
    pub async fn sync(&self) -> Result<(), ShardError> {
        self.log.sync().await?;
        self.groups_log.sync().await?;
        Ok(())
    }

    pub async fn tick(&self) -> Result<(), ShardError> {
        self.log.tick().await?;
        self.data_ready.notify_all();
        Ok(())
    }
}

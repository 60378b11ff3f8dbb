//! Tiered storage on the shard: the cold tier of one partition.
//!
//! The owner shard archives its partitions' sealed segments (oldest first,
//! one upload at a time per shard), records each verified upload in the
//! partition's manifest, deletes local copies only of archived segments, and
//! serves reads below the local log start from the archive through a
//! bounded chunk cache with read-ahead. The decisions are
//! `sprawl_storage::tiering::TierState`'s (sans-IO, property-tested); this
//! module does the I/O, never blocking the reactor: every S3 call is a
//! message to the archive thread.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use sprawl_storage::batch::{search_time, TimeSearch};
use sprawl_storage::index::SegmentIndex;
use sprawl_storage::scan::{scan_batches, ScanStop};
use sprawl_storage::tiering::{RetentionPlan, SegmentFacts, SegmentTier, TierRetention, TierState};
use sprawl_storage::PartitionLog;
use sprawl_tiered::{
    ArchiveError, ArchiveHandle, Manifest, ManifestSegment, SegmentFileKind, SegmentFiles,
};

use crate::request::ShardError;

/// Archived logs are read in chunks of this size (ranged GETs).
pub const CHUNK_BYTES: u64 = 4 << 20;

impl From<ArchiveError> for ShardError {
    fn from(e: ArchiveError) -> Self {
        if e.is_retryable() {
            Self::Storage(format!("archive unavailable, retry later: {e}"))
        } else {
            Self::Storage(format!("archive: {e}"))
        }
    }
}

/// A shard's read-through cache of archived chunks, bounded by bytes (LRU).
pub struct ChunkCache {
    bytes_max: u64,
    bytes: Cell<u64>,
    tick: Cell<u64>,
    chunks: RefCell<HashMap<ChunkKey, (Bytes, u64)>>,
    /// Chunks being fetched (read-ahead), so a reader waits instead of refetching.
    inflight: RefCell<HashMap<ChunkKey, glommio::task::JoinHandle<()>>>,
    pub hits: Cell<u64>,
    pub misses: Cell<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ChunkKey {
    topic: String,
    partition: u32,
    base_offset: u64,
    chunk: u64,
}

impl ChunkCache {
    pub fn new(bytes_max: u64) -> Rc<Self> {
        Rc::new(Self {
            bytes_max,
            bytes: Cell::new(0),
            tick: Cell::new(0),
            chunks: RefCell::default(),
            inflight: RefCell::default(),
            hits: Cell::new(0),
            misses: Cell::new(0),
        })
    }

    fn get(&self, key: &ChunkKey) -> Option<Bytes> {
        let t = self.tick.get() + 1;
        self.tick.set(t);
        let mut chunks = self.chunks.borrow_mut();
        let (bytes, used) = chunks.get_mut(key)?;
        *used = t;
        Some(bytes.clone())
    }

    fn put(&self, key: ChunkKey, bytes: Bytes) {
        if self.bytes_max == 0 || bytes.len() as u64 > self.bytes_max {
            return;
        }
        let mut chunks = self.chunks.borrow_mut();
        while self.bytes.get() + bytes.len() as u64 > self.bytes_max {
            let Some(oldest) = chunks
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some((b, _)) = chunks.remove(&oldest) {
                self.bytes.set(self.bytes.get() - b.len() as u64);
            }
        }
        self.bytes.set(self.bytes.get() + bytes.len() as u64);
        let t = self.tick.get() + 1;
        self.tick.set(t);
        if let Some((old, _)) = chunks.insert(key, (bytes, t)) {
            self.bytes.set(self.bytes.get() - old.len() as u64);
        }
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.get()
    }
}

/// Counters of one partition's cold tier, for metrics and `/tiers`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ColdSnapshot {
    pub archive_start: Option<u64>,
    pub archive_end: Option<u64>,
    pub archived_segments: usize,
    pub archived_bytes: u64,
    pub upload_lag_segments: usize,
    pub upload_lag_bytes: u64,
    pub uploads: u64,
    pub upload_failures: u64,
}

/// What tier retention needs to know of a sealed local segment.
fn sealed_facts(s: &sprawl_storage::SealedSegment) -> SegmentFacts {
    SegmentFacts {
        bytes: s.bytes,
        max_timestamp_ms: s.max_timestamp_ms,
    }
}

/// The cold tier of one partition.
pub struct ColdTier {
    archive: ArchiveHandle,
    cache: Rc<ChunkCache>,
    topic: String,
    partition: u32,
    manifest: RefCell<Option<Manifest>>,
    tier: RefCell<TierState>,
    indexes: RefCell<HashMap<u64, Rc<SegmentIndex>>>,
    uploads: Cell<u64>,
    upload_failures: Cell<u64>,
}

impl ColdTier {
    pub fn new(archive: ArchiveHandle, cache: Rc<ChunkCache>, topic: &str, partition: u32) -> Self {
        Self {
            archive,
            cache,
            topic: topic.to_string(),
            partition,
            manifest: RefCell::new(None),
            tier: RefCell::default(),
            indexes: RefCell::default(),
            uploads: Cell::new(0),
            upload_failures: Cell::new(0),
        }
    }

    /// Loads the manifest once (retried by the caller's next tick on error).
    pub async fn ensure_manifest(&self) -> Result<(), ShardError> {
        if self.manifest.borrow().is_some() {
            return Ok(());
        }
        let m = self
            .archive
            .read_manifest(&self.topic, self.partition)
            .await?
            .unwrap_or_default();
        *self.manifest.borrow_mut() = Some(m);
        Ok(())
    }

    /// The manifest as loaded (empty before the first successful load).
    pub fn manifest(&self) -> Manifest {
        self.manifest.borrow().clone().unwrap_or_default()
    }

    /// First offset only the archive holds, when it holds any.
    pub fn archive_start(&self) -> Option<u64> {
        let m = self.manifest.borrow();
        let m = m.as_ref()?;
        m.segments
            .first()
            .map(|s| m.log_start_offset.max(s.base_offset))
    }

    /// Offset after the archive's last record, when it holds any.
    pub fn archive_end(&self) -> Option<u64> {
        let m = self.manifest.borrow();
        let m = m.as_ref()?;
        m.segments.last().map(|s| s.next_offset)
    }

    /// Bytes of the archived segments' logs.
    pub fn archived_bytes(&self) -> u64 {
        self.manifest
            .borrow()
            .as_ref()
            .map_or(0, |m| m.segments.iter().map(|s| s.log_bytes).sum())
    }

    /// Brings the tier state in line with the log's sealed segments and the manifest.
    fn sync(&self, log: &PartitionLog) {
        let manifest = self.manifest();
        let mut tier = self.tier.borrow_mut();
        let sealed = log.sealed_segments();
        let local: std::collections::HashSet<u64> = sealed.iter().map(|s| s.base_offset).collect();
        for s in &sealed {
            if tier.tier(s.base_offset).is_none() {
                let archived = manifest
                    .get(s.base_offset)
                    .is_some_and(|m| m.next_offset == s.next_offset && m.log_bytes == s.bytes);
                tier.on_recovered(s.base_offset, archived, true, sealed_facts(s));
            }
        }
        for m in &manifest.segments {
            if tier.tier(m.base_offset).is_none() && !local.contains(&m.base_offset) {
                tier.on_recovered(
                    m.base_offset,
                    true,
                    false,
                    SegmentFacts {
                        bytes: m.log_bytes,
                        max_timestamp_ms: m.max_timestamp_ms,
                    },
                );
            }
        }
        let active_base = sealed
            .last()
            .map_or(log.offsets().log_start, |s| s.next_offset);
        // The active segment counts towards total retention with its size now.
        let active_bytes = log
            .size_bytes()
            .saturating_sub(sealed.iter().map(|s| s.bytes).sum());
        if tier
            .tier(active_base)
            .is_none_or(|t| t == SegmentTier::Active)
        {
            tier.on_active(
                active_base,
                SegmentFacts {
                    bytes: active_bytes,
                    max_timestamp_ms: None,
                },
            );
        }
        // The former active segment was sealed by a roll.
        let stale_active: Vec<u64> = tier
            .iter()
            .filter(|(b, t, _)| *t == SegmentTier::Active && *b != active_base)
            .map(|(b, _, _)| b)
            .collect();
        for b in stale_active {
            if let Some(s) = sealed.iter().find(|s| s.base_offset == b) {
                let _ = tier.on_sealed(b, sealed_facts(s));
            }
        }
    }

    /// Uploads the oldest sealed segment not yet archived; `Ok(true)` when
    /// one was archived (verified and recorded in the manifest).
    pub async fn archive_next(&self, log: &PartitionLog) -> Result<bool, ShardError> {
        self.ensure_manifest().await?;
        self.sync(log);
        let Some(base) = self.tier.borrow_mut().start_next_upload() else {
            return Ok(false);
        };
        let Some(seg) = log
            .sealed_segments()
            .into_iter()
            .find(|s| s.base_offset == base)
        else {
            self.tier.borrow_mut().on_upload_result(base, false).ok();
            return Ok(false);
        };
        let files = SegmentFiles {
            log: seg.log_path.clone(),
            index: seg.index_path.clone(),
            timeindex: seg.time_index_path.clone(),
        };
        let result = async {
            let archived = self
                .archive
                .upload_segment(&self.topic, self.partition, base, files)
                .await?;
            let mut manifest = self.manifest();
            if manifest.segments.is_empty() {
                manifest.log_start_offset = base;
            }
            manifest.upsert(ManifestSegment {
                base_offset: base,
                next_offset: seg.next_offset,
                first_timestamp_ms: seg.first_timestamp_ms,
                max_timestamp_ms: seg.max_timestamp_ms,
                log_bytes: archived.log_bytes,
                log_crc32c: archived.log_crc32c,
                index_bytes: archived.index_bytes,
                timeindex_bytes: archived.timeindex_bytes,
            });
            self.archive
                .write_manifest(&self.topic, self.partition, &manifest)
                .await?;
            *self.manifest.borrow_mut() = Some(manifest);
            Ok::<_, ShardError>(())
        }
        .await;
        let ok = result.is_ok();
        self.tier.borrow_mut().on_upload_result(base, ok).ok();
        match result {
            Ok(()) => {
                self.uploads.set(self.uploads.get() + 1);
                tracing::info!(topic = %self.topic, partition = self.partition, base, bytes = seg.bytes, "archived segment");
                Ok(true)
            }
            Err(e) => {
                self.upload_failures.set(self.upload_failures.get() + 1);
                Err(e)
            }
        }
    }

    /// Deletes everything archived for this partition (topic deletion):
    /// an empty manifest first, so no reader is sent to objects about to go.
    pub async fn delete_all(&self) -> Result<(), ShardError> {
        self.ensure_manifest().await?;
        let old = self.manifest();
        self.archive
            .write_manifest(&self.topic, self.partition, &Manifest::default())
            .await?;
        *self.manifest.borrow_mut() = Some(Manifest::default());
        for seg in &old.segments {
            self.archive
                .delete_segment(&self.topic, self.partition, seg.base_offset)
                .await?;
        }
        Ok(())
    }

    /// Applies retention across tiers: local copies go only once archived;
    /// total retention removes archived segments everywhere.
    pub async fn apply_retention(
        &self,
        log: &PartitionLog,
        now_ms: i64,
        local: TierRetention,
        total: TierRetention,
    ) -> Result<RetentionPlan, ShardError> {
        self.ensure_manifest().await?;
        self.sync(log);
        let plan = self.tier.borrow().plan_retention(now_ms, local, total);
        if plan.delete_local.is_empty() && plan.delete_everywhere.is_empty() {
            return Ok(plan);
        }
        if !plan.delete_everywhere.is_empty() {
            // Manifest first, so no reader is sent to objects about to go.
            let mut manifest = self.manifest();
            for b in &plan.delete_everywhere {
                manifest.remove(*b);
            }
            manifest.log_start_offset = manifest
                .segments
                .first()
                .map_or(manifest.log_start_offset, |s| s.base_offset);
            self.archive
                .write_manifest(&self.topic, self.partition, &manifest)
                .await?;
            *self.manifest.borrow_mut() = Some(manifest);
            for b in &plan.delete_everywhere {
                self.archive
                    .delete_segment(&self.topic, self.partition, *b)
                    .await?;
                self.indexes.borrow_mut().remove(b);
            }
        }
        // Local files of every segment in the plan are the oldest local ones.
        let local_bases: std::collections::HashSet<u64> = log
            .sealed_segments()
            .iter()
            .map(|s| s.base_offset)
            .collect();
        let n = plan
            .delete_local
            .iter()
            .chain(&plan.delete_everywhere)
            .filter(|b| local_bases.contains(b))
            .count();
        if n > 0 {
            log.remove_oldest_segments(n).await?;
        }
        self.tier.borrow_mut().apply(&plan);
        Ok(plan)
    }

    /// The archived segment's offset index, cached.
    async fn index_of(&self, seg: &ManifestSegment) -> Result<Rc<SegmentIndex>, ShardError> {
        if let Some(i) = self.indexes.borrow().get(&seg.base_offset) {
            return Ok(i.clone());
        }
        let bytes = self
            .archive
            .get_range(
                &self.topic,
                self.partition,
                seg.base_offset,
                SegmentFileKind::Index,
                0,
                seg.index_bytes,
            )
            .await?;
        let times = self
            .archive
            .get_range(
                &self.topic,
                self.partition,
                seg.base_offset,
                SegmentFileKind::TimeIndex,
                0,
                seg.timeindex_bytes,
            )
            .await?;
        // A malformed index object only costs a scan from the segment start.
        let index =
            Rc::new(SegmentIndex::decode(&bytes, &times, seg.log_bytes).unwrap_or_default());
        self.indexes
            .borrow_mut()
            .insert(seg.base_offset, index.clone());
        Ok(index)
    }

    fn key(&self, base_offset: u64, chunk: u64) -> ChunkKey {
        ChunkKey {
            topic: self.topic.clone(),
            partition: self.partition,
            base_offset,
            chunk,
        }
    }

    /// One chunk of an archived log, through the cache.
    async fn chunk(&self, seg: &ManifestSegment, chunk: u64) -> Result<Bytes, ShardError> {
        let key = self.key(seg.base_offset, chunk);
        if let Some(b) = self.cache.get(&key) {
            self.cache.hits.set(self.cache.hits.get() + 1);
            return Ok(b);
        }
        let inflight = self.cache.inflight.borrow_mut().remove(&key);
        if let Some(task) = inflight {
            let _ = task.await;
            if let Some(b) = self.cache.get(&key) {
                self.cache.hits.set(self.cache.hits.get() + 1);
                return Ok(b);
            }
        }
        self.cache.misses.set(self.cache.misses.get() + 1);
        let start = chunk * CHUNK_BYTES;
        let len = CHUNK_BYTES.min(seg.log_bytes.saturating_sub(start));
        let bytes = self
            .archive
            .get_range(
                &self.topic,
                self.partition,
                seg.base_offset,
                SegmentFileKind::Log,
                start,
                len,
            )
            .await?;
        self.cache.put(key, bytes.clone());
        Ok(bytes)
    }

    /// Starts fetching `chunk` into the cache unless it is there or coming.
    fn read_ahead(&self, seg: &ManifestSegment, chunk: u64) {
        if chunk * CHUNK_BYTES >= seg.log_bytes {
            return;
        }
        let key = self.key(seg.base_offset, chunk);
        if self.cache.get(&key).is_some() || self.cache.inflight.borrow().contains_key(&key) {
            return;
        }
        let (archive, cache, topic, partition, base) = (
            self.archive.clone(),
            self.cache.clone(),
            self.topic.clone(),
            self.partition,
            seg.base_offset,
        );
        let len = CHUNK_BYTES.min(seg.log_bytes - chunk * CHUNK_BYTES);
        let k = key.clone();
        let task = glommio::spawn_local(async move {
            if let Ok(bytes) = archive
                .get_range(
                    &topic,
                    partition,
                    base,
                    SegmentFileKind::Log,
                    chunk * CHUNK_BYTES,
                    len,
                )
                .await
            {
                cache.put(k, bytes);
            }
        })
        .detach();
        self.cache.inflight.borrow_mut().insert(key, task);
    }

    /// Batches from `offset` (below the local log start), up to `bytes_max`
    /// (at least one batch), never reaching `end_offset`. Every batch's CRC
    /// is checked; corruption names the object and offset.
    pub async fn read(
        &self,
        offset: u64,
        end_offset: u64,
        bytes_max: usize,
    ) -> Result<Vec<Bytes>, ShardError> {
        self.ensure_manifest().await?;
        let Some(seg) = self
            .manifest
            .borrow()
            .as_ref()
            .and_then(|m| m.segment_for_offset(offset).copied())
        else {
            return Ok(Vec::new());
        };
        let index = self.index_of(&seg).await?;
        let (mut at_offset, position) =
            index
                .lookup((offset - seg.base_offset) as u32)
                .map_or((seg.base_offset, 0), |e| {
                    (
                        seg.base_offset + u64::from(e.relative_offset),
                        u64::from(e.position),
                    )
                });
        let object = self.archive.segment_key(
            &self.topic,
            self.partition,
            seg.base_offset,
            SegmentFileKind::Log,
        );
        let corrupt = |offset: u64, position: u64, reason: &str| {
            ShardError::Storage(format!(
                "archived object {object} is corrupt at offset {offset} (position {position}): {reason}"
            ))
        };
        let mut out = Vec::new();
        let mut taken = 0usize;
        // Bytes read but not yet consumed, starting at file position `carry_from`.
        let mut carry = Bytes::new();
        let mut carry_from = position;
        let end = end_offset.min(seg.next_offset);
        while carry_from < seg.log_bytes && at_offset < end {
            let read_to = carry_from + carry.len() as u64;
            let chunk_no = read_to / CHUNK_BYTES;
            let chunk = self.chunk(&seg, chunk_no).await?;
            self.read_ahead(&seg, chunk_no + 1);
            let chunk_start = chunk_no * CHUNK_BYTES;
            let fresh = chunk.slice(((read_to - chunk_start) as usize).min(chunk.len())..);
            if fresh.is_empty() {
                return Err(corrupt(
                    at_offset,
                    read_to,
                    "object ends before its manifest size",
                ));
            }
            let buf = if carry.is_empty() {
                fresh
            } else {
                let mut joined = BytesMut::with_capacity(carry.len() + fresh.len());
                joined.extend_from_slice(&carry);
                joined.extend_from_slice(&fresh);
                joined.freeze()
            };
            let at_object_end = carry_from + buf.len() as u64 >= seg.log_bytes;
            let scan = scan_batches(&buf, carry_from, at_offset);
            for b in &scan.batches {
                if b.next_offset > end_offset
                    || (!out.is_empty() && taken + b.bytes as usize > bytes_max)
                {
                    return Ok(out);
                }
                if b.next_offset > offset {
                    let s = (b.position - carry_from) as usize;
                    out.push(buf.slice(s..s + b.bytes as usize));
                    taken += b.bytes as usize;
                }
            }
            if !out.is_empty() && taken >= bytes_max {
                return Ok(out);
            }
            match &scan.stop {
                ScanStop::Invalid { position, reason } => {
                    return Err(corrupt(scan.next_offset, *position, reason))
                }
                ScanStop::NeedMore { position, .. } if at_object_end => {
                    return Err(corrupt(
                        scan.next_offset,
                        *position,
                        "torn batch at the end of the object",
                    ))
                }
                _ => {}
            }
            carry = buf.slice((scan.end_position - carry_from) as usize..);
            carry_from = scan.end_position;
            at_offset = scan.next_offset;
            if at_object_end && carry.is_empty() {
                break;
            }
        }
        Ok(out)
    }

    /// The first archived offset whose record is at or after `timestamp_ms`.
    pub async fn find_offset_by_timestamp(
        &self,
        timestamp_ms: i64,
        end_offset: u64,
    ) -> Result<Option<u64>, ShardError> {
        self.ensure_manifest().await?;
        let segs: Vec<ManifestSegment> = self
            .manifest
            .borrow()
            .as_ref()
            .map(|m| {
                m.segments
                    .iter()
                    .filter(|s| s.max_timestamp_ms.is_some_and(|t| t >= timestamp_ms))
                    .copied()
                    .collect()
            })
            .unwrap_or_default();
        let Some(seg) = segs.first() else {
            return Ok(None);
        };
        let index = self.index_of(seg).await?;
        let mut offset = seg.base_offset + u64::from(index.scan_start_for_time(timestamp_ms));
        let end = end_offset.min(seg.next_offset);
        while offset < end {
            let batches = self.read(offset, end, 1 << 20).await?;
            if batches.is_empty() {
                break;
            }
            match search_time(&batches, offset, timestamp_ms)
                .map_err(|e| ShardError::Storage(e.to_string()))?
            {
                TimeSearch::Found(found) => return Ok(Some(found)),
                TimeSearch::Continue(next) => offset = next,
            }
        }
        Ok(None)
    }

    pub fn snapshot(&self, log: &PartitionLog) -> ColdSnapshot {
        let m = self.manifest();
        let tier = self.tier.borrow();
        let waiting: Vec<u64> = log
            .sealed_segments()
            .iter()
            .filter(|s| {
                !tier
                    .tier(s.base_offset)
                    .is_some_and(SegmentTier::is_archived)
            })
            .map(|s| s.bytes)
            .collect();
        ColdSnapshot {
            archive_start: self.archive_start(),
            archive_end: self.archive_end(),
            archived_segments: m.segments.len(),
            archived_bytes: self.archived_bytes(),
            upload_lag_segments: waiting.len(),
            upload_lag_bytes: waiting.iter().sum(),
            uploads: self.uploads.get(),
            upload_failures: self.upload_failures.get(),
        }
    }
}

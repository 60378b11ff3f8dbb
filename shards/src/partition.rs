//! One topic-partition as its owning shard holds it: the record log, the
//! consumer-group offsets (a small log of their own), and the signal that
//! wakes long-polling readers when the high watermark moves.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::BytesMut;
use sprawl_io::dma_pool::DmaBufPool;
use sprawl_storage::{BatchView, FsyncPolicy, LogConfig, PartitionLog};

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
    ) -> Result<Self, ShardError> {
        let dir = partition_dir(data_dir, topic, partition);
        let log = PartitionLog::open(dir.join("log"), log_config, pool.clone()).await?;
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
        })
    }

    pub fn offsets(&self) -> PartitionOffsets {
        let o = self.log.offsets();
        PartitionOffsets {
            log_start: o.log_start,
            high_watermark: o.high_watermark,
            log_end: o.log_end,
            size_bytes: self.log.size_bytes(),
        }
    }

    /// Appends and wakes waiting readers once the batch is acknowledged.
    pub async fn append(&self, batch: BytesMut, durable: bool) -> Result<(u64, u64), ShardError> {
        let result = self.log.append_with(batch, 0, durable).await;
        // Wake readers even on error: a flush may have moved the watermark.
        self.data_ready.notify_all();
        let ack = result?;
        Ok((ack.base_offset, ack.next_offset))
    }

    /// Durably records a consumer group's offset.
    pub async fn commit(
        &self,
        group: &str,
        offset: u64,
        metadata: &str,
        now_ms: i64,
    ) -> Result<(), ShardError> {
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

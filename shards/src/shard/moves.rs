//! Moving a partition between shards of this node while it is in use.
//!
//! Shard 0 (the catalog owner) runs every move, one step at a time, each
//! step made durable before the next:
//!
//! 1. **Intent.** The catalog records the move (`moving`) and is persisted
//!    and broadcast. The partition still lives on its source.
//! 2. **Fence and hand over.** The source fences the partition: new requests
//!    for it wait (see `Shard::route`), long polls answer at once, writes
//!    already started finish and are acknowledged. Then it fdatasyncs the
//!    log and the group offsets and closes them. Both shards share the data
//!    dir, so the synced files *are* the handed-over tail: nothing that was
//!    acknowledged, durable or not, is left behind in the source's memory.
//! 3. **Switch.** The catalog places the partition on the destination and
//!    drops the intent; the destination adopts it first (opening the log
//!    before anyone routes to it), then every other shard. Requests held at
//!    the source, and any sent with a stale view, are forwarded.
//!
//! A node killed before step 3 is persisted restarts with the intent in its
//! catalog and rolls it back (`TopicCatalog::abort_moves`): the partition
//! stays on the source, whose files hold everything. Killed after, the
//! destination opens it. Either way clients see at most a retryable error.

use std::rc::Rc;
use std::time::Instant;

use super::{now_ms, Shard, CATALOG_SHARD};
use crate::request::{ShardError, ShardReply, ShardRequest, ShardResult};

impl Shard {
    /// Runs a move (on shard 0; forwarded there from any shard).
    pub(super) async fn move_partition(
        self: &Rc<Self>,
        topic: String,
        partition: u32,
        to: usize,
    ) -> ShardResult {
        if self.id != CATALOG_SHARD {
            return self
                .on(
                    CATALOG_SHARD,
                    ShardRequest::MovePartition {
                        topic,
                        partition,
                        to,
                    },
                )
                .await;
        }
        if self
            .catalog()
            .replicas_of(&topic, partition)
            .is_some_and(|_| self.replication.is_some())
        {
            // Its Raft group is bound to the shard index its peers send to.
            return Err(ShardError::InvalidRequest(format!(
                "{topic}/{partition} is replicated: it moves between nodes \
                 (`sprawlctl cluster move-replica`), not between shards"
            )));
        }
        let started = Instant::now();
        let from = {
            let _writer = self.catalog_writer.lock().await;
            let mut next = self.catalog().clone();
            let intent = next.begin_move(&topic, partition, to, self.count, now_ms())?;
            self.commit_catalog(next).await?;
            intent.from as usize
        };
        tracing::info!(%topic, partition, from, to, "moving partition");

        let released = self
            .on(
                from,
                ShardRequest::ReleasePartition {
                    topic: topic.clone(),
                    partition,
                },
            )
            .await;
        let log_end = match released {
            Ok(ShardReply::Moved { log_end, .. }) => log_end,
            Ok(other) => {
                return self
                    .abort_move(&topic, partition, format!("unexpected reply {other:?}"))
                    .await
            }
            Err(e) => return self.abort_move(&topic, partition, e.to_string()).await,
        };

        let _writer = self.catalog_writer.lock().await;
        let mut next = self.catalog().clone();
        next.finish_move(&topic, partition, self.count)?;
        if let Err(e) = self.commit_catalog_to(next, Some(to)).await {
            // The switch is persisted (or not) before any shard adopts it:
            // if persisting failed the partition is closed on the source and
            // opened nowhere until a restart rolls the move back.
            tracing::error!(%topic, partition, error = %e, "switching a moved partition failed");
            return Err(e);
        }
        let duration_ms = started.elapsed().as_millis() as u64;
        tracing::info!(%topic, partition, from, to, log_end, duration_ms, "moved partition");
        Ok(ShardReply::Moved {
            from,
            to,
            log_end,
            duration_ms,
        })
    }

    /// Drops a move's intent after the source could not release the
    /// partition (the source unfenced it: it serves again).
    async fn abort_move(self: &Rc<Self>, topic: &str, partition: u32, why: String) -> ShardResult {
        tracing::warn!(%topic, partition, reason = %why, "partition move failed; rolled back");
        let _writer = self.catalog_writer.lock().await;
        let mut next = self.catalog().clone();
        next.abort_move(topic, partition)?;
        self.commit_catalog(next).await?;
        Err(ShardError::Storage(format!(
            "moving {topic}/{partition} failed and was rolled back: {why}"
        )))
    }

    /// The source's part of a move: fence, drain writes, sync, close.
    pub(super) async fn release_partition(&self, topic: &str, partition: u32) -> ShardResult {
        let key = (topic.to_string(), partition);
        let Some(p) = self.partitions.borrow().get(&key).cloned() else {
            return Err(ShardError::Storage(format!(
                "{topic}/{partition} is not open on shard {}",
                self.id
            )));
        };
        if let Err(e) = p.fence_and_sync().await {
            p.unfence();
            self.placement_changed.notify_all();
            return Err(e);
        }
        let log_end = p.offsets().log_end;
        self.partitions.borrow_mut().remove(&key);
        // Held requests re-check: they keep waiting until the switch.
        self.placement_changed.notify_all();
        tracing::debug!(shard = self.id, %topic, partition, log_end, "released partition");
        Ok(ShardReply::Moved {
            from: self.id,
            to: usize::MAX,
            log_end,
            duration_ms: 0,
        })
    }
}

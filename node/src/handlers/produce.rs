//! ProduceRequest: route the batch to the partition's owner shard, which
//! appends these exact bytes (validated, restamped, never re-encoded).

use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use sprawl_shards::{ShardError, ShardReply, ShardRequest};
use sprawl_wire::{
    Acks, ErrorCode, Frame, PartitionTarget, ProduceRequest, ProduceResponse, VerifiedFrame,
};

use crate::errors::Failure;
use crate::framing::encode;
use crate::server::Conn;

/// Produce requests give up waiting after this unless they ask otherwise.
const PRODUCE_TIMEOUT_MS_DEFAULT: u32 = 30_000;

pub async fn handle(
    conn: &Rc<Conn>,
    id: u64,
    frame: &VerifiedFrame,
    req: &ProduceRequest<'_>,
) -> Option<Bytes> {
    let target = match crate::forward::not_applied_yet(conn, req.topic) {
        Some(f) => Err(f),
        None => target_partition(conn, req),
    };
    let result = match target {
        Ok(partition) => match crate::forward::route(
            conn,
            frame,
            req.topic,
            partition,
            req.acks != Acks::None,
            forward_timeout(req.timeout_ms),
        )
        .await
        {
            // The leader's own response (none for acks=none).
            Some(Ok(answer)) => return (!answer.is_empty()).then_some(answer),
            Some(Err(f)) => Err(f),
            None => produce(conn, frame, req, partition).await,
        },
        Err(f) => Err(f),
    };
    if result.is_err() {
        conn.shard.metrics.borrow_mut().errors += 1;
    }
    if req.acks == Acks::None {
        if let Err(f) = &result {
            tracing::debug!(topic = req.topic, code = ?f.code, message = %f.message, "acks=none produce failed");
        }
        return None;
    }
    Some(match result {
        Ok((partition, base_offset, next_offset)) => encode(&Frame::new(
            id,
            ProduceResponse {
                error: None,
                partition,
                base_offset,
                last_offset: next_offset - 1,
            },
        )),
        Err(f) => encode(&Frame::new(
            id,
            ProduceResponse {
                error: Some(f.info()),
                ..Default::default()
            },
        )),
    })
}

/// The partition a produce writes: the one named, or the key's.
fn target_partition(conn: &Conn, req: &ProduceRequest<'_>) -> Result<u32, Failure> {
    if req.records.len() > conn.node.batch_bytes_max {
        return Err(ShardError::MessageTooLarge {
            bytes: req.records.len(),
            bytes_max: conn.node.batch_bytes_max,
        }
        .into());
    }
    let catalog = conn.shard.catalog();
    let cfg = catalog
        .get(req.topic)
        .ok_or_else(|| ShardError::UnknownTopic(req.topic.to_string()))?;
    Ok(match req.target {
        PartitionTarget::Partition(p) => p,
        PartitionTarget::Key(key) => sprawl_wire::partition_for_key(key, cfg.partitions)
            .ok_or_else(|| Failure::new(ErrorCode::InvalidRequest, "topic has no partitions"))?,
    })
}

async fn produce(
    conn: &Rc<Conn>,
    frame: &VerifiedFrame,
    req: &ProduceRequest<'_>,
    partition: u32,
) -> Result<(u32, u64, u64), Failure> {
    let owner = conn.shard.owner_of(req.topic, partition);
    let request = ShardRequest::Produce {
        topic: req.topic.to_string(),
        partition,
        // Shares the frame's memory: no copy until the log's own.
        batch: frame.share(req.records),
        durable: req.acks == Acks::Durable,
    };
    let timeout_ms = if req.timeout_ms == 0 {
        PRODUCE_TIMEOUT_MS_DEFAULT
    } else {
        req.timeout_ms
    };
    let reply =
        futures_lite::future::or(async { Some(conn.shard.on(owner, request).await) }, async {
            glommio::timer::sleep(Duration::from_millis(u64::from(timeout_ms))).await;
            None
        })
        .await
        .ok_or_else(|| {
            Failure::new(
                ErrorCode::Timeout,
                format!(
                    "no acknowledgement within {timeout_ms} ms; the batch may still be appended"
                ),
            )
        })??;
    match reply {
        ShardReply::Produced {
            base_offset,
            next_offset,
        } => Ok((partition, base_offset, next_offset)),
        other => Err(Failure::new(
            ErrorCode::Internal,
            format!("unexpected shard reply {other:?}"),
        )),
    }
}

/// How long a forwarded produce may take: the leader's own produce timeout,
/// plus a margin for the hop.
fn forward_timeout(timeout_ms: u32) -> Duration {
    let ms = if timeout_ms == 0 {
        PRODUCE_TIMEOUT_MS_DEFAULT
    } else {
        timeout_ms
    };
    Duration::from_millis(u64::from(ms)) + Duration::from_secs(5)
}

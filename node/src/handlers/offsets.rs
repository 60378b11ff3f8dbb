//! ResolveOffset, CommitOffset and CommittedOffset.

use std::rc::Rc;

use bytes::Bytes;
use sprawl_shards::{PartitionOffsets, ShardError, ShardReply, ShardRequest};
use sprawl_wire::{
    CommitOffsetRequest, CommitOffsetResponse, CommittedOffsetRequest, CommittedOffsetResponse,
    ErrorCode, Frame, ResolveOffsetRequest, ResolveOffsetResponse, StartPosition,
};

use crate::errors::Failure;
use crate::framing::encode;
use crate::server::Conn;

pub async fn partition_offsets(
    conn: &Rc<Conn>,
    topic: &str,
    partition: u32,
) -> Result<PartitionOffsets, Failure> {
    let owner = conn.shard.owner_of(topic, partition);
    match conn
        .shard
        .on(
            owner,
            ShardRequest::Offsets {
                topic: topic.to_string(),
                partition,
            },
        )
        .await?
    {
        ShardReply::Offsets(o) => Ok(o),
        other => Err(Failure::new(
            ErrorCode::Internal,
            format!("unexpected shard reply {other:?}"),
        )),
    }
}

/// The offset a StartPosition names now.
pub async fn resolve_position(
    conn: &Rc<Conn>,
    topic: &str,
    partition: u32,
    position: StartPosition,
) -> Result<u64, Failure> {
    let o = partition_offsets(conn, topic, partition).await?;
    match position {
        StartPosition::Earliest => Ok(o.log_start),
        StartPosition::Latest => Ok(o.high_watermark),
        StartPosition::Offset(offset) if (o.log_start..=o.log_end).contains(&offset) => Ok(offset),
        StartPosition::Offset(offset) => Err(ShardError::OffsetOutOfRange {
            offset,
            start: o.log_start,
            end: o.log_end,
        }
        .into()),
        StartPosition::TimestampMs(ts) => {
            let owner = conn.shard.owner_of(topic, partition);
            let reply = conn
                .shard
                .on(
                    owner,
                    ShardRequest::FindOffsetByTime {
                        topic: topic.to_string(),
                        partition,
                        timestamp_ms: i64::try_from(ts).unwrap_or(i64::MAX),
                    },
                )
                .await?;
            match reply {
                // Nothing that recent: start at the end.
                ShardReply::Offset(found) => Ok(found.unwrap_or(o.high_watermark)),
                other => Err(Failure::new(
                    ErrorCode::Internal,
                    format!("unexpected shard reply {other:?}"),
                )),
            }
        }
    }
}

pub async fn resolve(conn: &Rc<Conn>, id: u64, req: &ResolveOffsetRequest<'_>) -> Bytes {
    let result = resolve_position(conn, req.topic, req.partition, req.position).await;
    let (offset, failure) = match result {
        Ok(o) => (o, None),
        Err(f) => (0, Some(f)),
    };
    encode(&Frame::new(
        id,
        ResolveOffsetResponse {
            error: failure.as_ref().map(Failure::info),
            partition: req.partition,
            offset,
        },
    ))
}

pub async fn commit(conn: &Rc<Conn>, id: u64, req: &CommitOffsetRequest<'_>) -> Bytes {
    let result: Result<(), Failure> = async {
        if req.group.is_empty() {
            return Err(Failure::new(
                ErrorCode::InvalidRequest,
                "group must not be empty",
            ));
        }
        let owner = conn.shard.owner_of(req.topic, req.partition);
        conn.shard
            .on(
                owner,
                ShardRequest::CommitOffset {
                    group: req.group.to_string(),
                    topic: req.topic.to_string(),
                    partition: req.partition,
                    offset: req.offset,
                    metadata: req.metadata.to_string(),
                },
            )
            .await?;
        Ok(())
    }
    .await;
    let failure = result.err();
    encode(&Frame::new(
        id,
        CommitOffsetResponse {
            error: failure.as_ref().map(Failure::info),
        },
    ))
}

pub async fn committed(conn: &Rc<Conn>, id: u64, req: &CommittedOffsetRequest<'_>) -> Bytes {
    let owner = conn.shard.owner_of(req.topic, req.partition);
    let reply = conn
        .shard
        .on(
            owner,
            ShardRequest::CommittedOffset {
                group: req.group.to_string(),
                topic: req.topic.to_string(),
                partition: req.partition,
            },
        )
        .await;
    let (committed, failure) = match reply {
        Ok(ShardReply::Committed(c)) => (c, None),
        Ok(other) => (
            None,
            Some(Failure::new(
                ErrorCode::Internal,
                format!("unexpected shard reply {other:?}"),
            )),
        ),
        Err(e) => (None, Some(Failure::from(e))),
    };
    encode(&Frame::new(
        id,
        CommittedOffsetResponse {
            error: failure.as_ref().map(Failure::info),
            offset: committed.as_ref().map(|c| c.offset),
            metadata: committed.as_ref().map_or("", |c| c.metadata.as_str()),
        },
    ))
}

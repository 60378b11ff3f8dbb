//! FetchRequest: read from the owner shard, long-polling up to max_wait_ms.

use std::rc::Rc;

use bytes::Bytes;
use sprawl_shards::{ShardReply, ShardRequest};
use sprawl_wire::{ErrorCode, FetchRequest, FetchResponse, Frame};

use crate::errors::Failure;
use crate::framing::encode;
use crate::server::Conn;

/// Fetch responses carry at most this much (the frame limit leaves room).
pub const FETCH_BYTES_MAX: u32 = 8 << 20;

pub struct Fetched {
    pub batches: Vec<Bytes>,
    pub high_watermark: u64,
    pub log_start: u64,
    pub next_offset: u64,
}

/// Reads from the owner; shared by fetch and subscriptions.
pub async fn read(
    conn: &Rc<Conn>,
    topic: &str,
    partition: u32,
    offset: u64,
    max_bytes: u32,
    max_wait_ms: u32,
) -> Result<Fetched, Failure> {
    let owner = conn.shard.owner_of(topic, partition);
    let reply = conn
        .shard
        .on(
            owner,
            ShardRequest::Fetch {
                topic: topic.to_string(),
                partition,
                offset,
                bytes_max: max_bytes.clamp(1, FETCH_BYTES_MAX) as usize,
                wait_ms: max_wait_ms,
            },
        )
        .await?;
    let ShardReply::Fetched { batches, offsets } = reply else {
        return Err(Failure::new(
            ErrorCode::Internal,
            "unexpected shard reply to a fetch",
        ));
    };
    let next_offset = batches
        .last()
        .and_then(|b| sprawl_storage::batch::peek_header(b).ok())
        .map_or(offset, |h| h.next_offset());
    Ok(Fetched {
        batches,
        high_watermark: offsets.high_watermark,
        log_start: offsets.log_start,
        next_offset,
    })
}

/// Concatenates batches for a response.
pub fn concat(batches: &[Bytes]) -> Vec<u8> {
    let mut out = Vec::with_capacity(batches.iter().map(Bytes::len).sum());
    for b in batches {
        out.extend_from_slice(b);
    }
    out
}

pub async fn handle(conn: &Rc<Conn>, id: u64, req: &FetchRequest<'_>) -> Bytes {
    match read(
        conn,
        req.topic,
        req.partition,
        req.offset,
        req.max_bytes,
        req.max_wait_ms,
    )
    .await
    {
        Ok(f) => {
            let bytes = concat(&f.batches);
            encode(&Frame::new(
                id,
                FetchResponse {
                    error: None,
                    partition: req.partition,
                    high_watermark: f.high_watermark,
                    log_start_offset: f.log_start,
                    next_offset: f.next_offset,
                    batches: &bytes,
                },
            ))
        }
        Err(f) => {
            conn.shard.metrics.borrow_mut().errors += 1;
            encode(&Frame::new(
                id,
                FetchResponse {
                    error: Some(f.info()),
                    partition: req.partition,
                    next_offset: req.offset,
                    ..Default::default()
                },
            ))
        }
    }
}

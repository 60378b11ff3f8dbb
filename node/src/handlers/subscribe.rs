//! Subscriptions: the node pushes batches on the subscription's stream while
//! the client has credit (bytes); the client grants more as it consumes.
//! Credit is what keeps a slow consumer from growing the node's memory: with
//! no credit the node reads nothing for it, and never blocks anyone else.

use std::cell::Cell;
use std::rc::Rc;

use sprawl_io::quic::{LocalRecvStream, LocalSendStream};
use sprawl_shards::notify::LocalNotify;
use sprawl_wire::{
    Body, ErrorCode, Frame, StartPosition, SubscribeRequest, SubscribeResponse, SubscriptionData,
    SubscriptionEnd,
};

use crate::errors::Failure;
use crate::framing::{encode, read_frame, write_frame};
use crate::handlers::fetch::{concat, read};
use crate::handlers::offsets::resolve_position;
use crate::server::Conn;

/// Largest push, whatever the credit.
const PUSH_BYTES_MAX: u64 = 1 << 20;
/// A push waits this long for new data before checking the stream again.
const PUSH_WAIT_MS: u32 = 500;

/// The request, owned (its frame is released while the subscription runs).
pub struct OwnedSubscribe {
    pub topic: String,
    pub partition: u32,
    start: StartPosition,
    credit_bytes: u64,
}

impl From<&SubscribeRequest<'_>> for OwnedSubscribe {
    fn from(r: &SubscribeRequest<'_>) -> Self {
        Self {
            topic: r.topic.to_string(),
            partition: r.partition,
            start: r.start,
            credit_bytes: r.credit_bytes,
        }
    }
}

struct Flow {
    credit: Cell<u64>,
    ended: Cell<bool>,
    changed: LocalNotify,
}

pub async fn serve(
    conn: Rc<Conn>,
    request_id: u64,
    req: OwnedSubscribe,
    mut send: LocalSendStream,
    recv: LocalRecvStream,
) {
    let start = match resolve_position(&conn, &req.topic, req.partition, req.start).await {
        Ok(o) => o,
        Err(f) => {
            let response = SubscribeResponse {
                error: Some(f.info()),
                partition: req.partition,
                ..Default::default()
            };
            let _ = write_frame(&mut send, encode(&Frame::new(request_id, response))).await;
            let _ = send.finish();
            return;
        }
    };
    let id = conn.next_subscription_id.get();
    conn.next_subscription_id.set(id + 1);
    let response = SubscribeResponse {
        error: None,
        subscription_id: id,
        partition: req.partition,
        start_offset: start,
        high_watermark: 0,
        log_start_offset: 0,
    };
    if write_frame(&mut send, encode(&Frame::new(request_id, response)))
        .await
        .is_err()
    {
        return;
    }
    let flow = Rc::new(Flow {
        credit: Cell::new(req.credit_bytes),
        ended: Cell::new(false),
        changed: LocalNotify::default(),
    });
    let reader = glommio::spawn_local(read_client_frames(conn.clone(), id, flow.clone(), recv));
    let mut offset = start;
    let mut failure: Option<Failure> = None;
    while !flow.ended.get() {
        let changed = flow.changed.notified();
        let credit = flow.credit.get();
        if credit == 0 {
            changed.await;
            continue;
        }
        let want = credit.min(PUSH_BYTES_MAX) as u32;
        let fetched = futures_lite::future::or(
            async {
                Some(read(&conn, &req.topic, req.partition, offset, want, PUSH_WAIT_MS).await)
            },
            async {
                changed.await;
                None
            },
        )
        .await;
        let Some(fetched) = fetched else { continue };
        match fetched {
            Ok(f) if f.batches.is_empty() => {}
            Ok(f) => {
                let bytes = concat(&f.batches);
                flow.credit
                    .set(flow.credit.get().saturating_sub(bytes.len() as u64));
                let data = SubscriptionData {
                    subscription_id: id,
                    high_watermark: f.high_watermark,
                    log_start_offset: f.log_start,
                    next_offset: f.next_offset,
                    batches: &bytes,
                };
                if write_frame(&mut send, encode(&Frame::new(request_id, data)))
                    .await
                    .is_err()
                {
                    flow.ended.set(true);
                    break;
                }
                offset = f.next_offset;
            }
            Err(f) => {
                failure = Some(f);
                break;
            }
        }
    }
    let end = SubscriptionEnd {
        subscription_id: id,
        error: failure.as_ref().map(Failure::info),
        next_offset: offset,
    };
    let _ = write_frame(&mut send, encode(&Frame::new(request_id, end))).await;
    let _ = send.finish();
    flow.ended.set(true);
    drop(reader);
}

/// Applies the client's Credit and Unsubscribe frames.
async fn read_client_frames(conn: Rc<Conn>, id: u64, flow: Rc<Flow>, mut recv: LocalRecvStream) {
    loop {
        let frame = match read_frame(&mut recv, &conn.node.frame_limits, &conn.budget).await {
            Ok(Some((frame, _permit))) => frame,
            _ => break,
        };
        match frame.decode().map(|f| f.body) {
            Ok(Body::SubscriptionCredit(c)) if c.subscription_id == id => {
                flow.credit
                    .set(flow.credit.get().saturating_add(c.credit_bytes));
                flow.changed.notify_all();
            }
            Ok(Body::Unsubscribe(u)) if u.subscription_id == id => break,
            Ok(other) => {
                tracing::debug!(kind = ?other.kind(), code = ?ErrorCode::UnknownSubscription, "unexpected frame on a subscription stream");
                break;
            }
            Err(_) => break,
        }
    }
    flow.ended.set(true);
    flow.changed.notify_all();
}

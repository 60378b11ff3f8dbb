//! One module per request type, each thin: decode, route to the owning
//! shard with `Shard::on`, encode the reply.

pub mod fetch;
pub mod handshake;
pub mod offsets;
pub mod produce;
pub mod subscribe;
pub mod topics;

use bytes::Bytes;
use sprawl_wire::{Body, ErrorCode, ErrorInfo, ErrorResponse, Frame, VerifiedFrame};

use crate::errors::Failure;
use crate::framing::encode;
use crate::server::Conn;

/// Serves one decoded request; `None` when no response is due (acks=None).
pub async fn dispatch(
    conn: &std::rc::Rc<Conn>,
    frame: &VerifiedFrame,
    decoded: Frame<'_>,
) -> Option<Bytes> {
    let id = decoded.request_id;
    // Partition requests led by another node go there (see `forward`).
    let target = match &decoded.body {
        Body::FetchRequest(r) => Some((r.topic, r.partition)),
        Body::ResolveOffsetRequest(r) => Some((r.topic, r.partition)),
        Body::CommitOffsetRequest(r) => Some((r.topic, r.partition)),
        Body::CommittedOffsetRequest(r) => Some((r.topic, r.partition)),
        _ => None,
    };
    if let Some((topic, partition)) = target {
        // A fetch long-polls on the leader: its wait plus a margin.
        let timeout = match &decoded.body {
            Body::FetchRequest(r) => std::time::Duration::from_millis(u64::from(r.max_wait_ms)),
            _ => std::time::Duration::ZERO,
        } + std::time::Duration::from_secs(30);
        match crate::forward::route(conn, frame, topic, partition, true, timeout).await {
            Some(Ok(answer)) => return Some(answer),
            Some(Err(f)) => return Some(forward_failure(id, &decoded.body, partition, &f)),
            None => {}
        }
    }
    match decoded.body {
        Body::HandshakeRequest(req) => Some(handshake::handle(conn, id, &req)),
        Body::MetadataRequest(req) => Some(topics::metadata(conn, id, &req).await),
        Body::CreateTopicRequest(req) => Some(topics::create(conn, id, &req).await),
        Body::DeleteTopicRequest(req) => Some(topics::delete(conn, id, &req).await),
        Body::ListTopicsRequest(req) => Some(topics::list(conn, id, &req).await),
        Body::DescribeTopicRequest(req) => Some(topics::describe(conn, id, &req).await),
        Body::ProduceRequest(req) => produce::handle(conn, id, frame, &req).await,
        Body::FetchRequest(req) => Some(fetch::handle(conn, id, &req).await),
        Body::ResolveOffsetRequest(req) => Some(offsets::resolve(conn, id, &req).await),
        Body::CommitOffsetRequest(req) => Some(offsets::commit(conn, id, &req).await),
        Body::CommittedOffsetRequest(req) => Some(offsets::committed(conn, id, &req).await),
        other => {
            let msg = format!(
                "{:?} is not a request a node accepts on its own stream",
                other.kind()
            );
            Some(encode(&Frame::new(
                id,
                ErrorResponse {
                    error: ErrorInfo::new(ErrorCode::UnsupportedRequest, &msg),
                },
            )))
        }
    }
}

/// The response a forwarding failure gets, of the request's own type.
fn forward_failure(id: u64, body: &Body<'_>, partition: u32, f: &Failure) -> Bytes {
    use sprawl_wire::{
        CommitOffsetResponse, CommittedOffsetResponse, FetchResponse, ResolveOffsetResponse,
    };
    let error = Some(f.info());
    match body {
        Body::FetchRequest(r) => encode(&Frame::new(
            id,
            FetchResponse {
                error,
                partition,
                next_offset: r.offset,
                ..Default::default()
            },
        )),
        Body::ResolveOffsetRequest(_) => encode(&Frame::new(
            id,
            ResolveOffsetResponse {
                error,
                partition,
                offset: 0,
            },
        )),
        Body::CommitOffsetRequest(_) => encode(&Frame::new(id, CommitOffsetResponse { error })),
        Body::CommittedOffsetRequest(_) => encode(&Frame::new(
            id,
            CommittedOffsetResponse {
                error,
                ..Default::default()
            },
        )),
        _ => encode(&Frame::new(id, ErrorResponse { error: f.info() })),
    }
}

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

use crate::framing::encode;
use crate::server::Conn;

/// Serves one decoded request; `None` when no response is due (acks=None).
pub async fn dispatch(
    conn: &std::rc::Rc<Conn>,
    frame: &VerifiedFrame,
    decoded: Frame<'_>,
) -> Option<Bytes> {
    let id = decoded.request_id;
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

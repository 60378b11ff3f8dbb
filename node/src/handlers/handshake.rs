//! HandshakeRequest: protocol version check; marks the connection usable.

use bytes::Bytes;
use sprawl_wire::{
    ErrorCode, ErrorInfo, Frame, HandshakeRequest, HandshakeResponse, PROTOCOL_VERSION,
};

use crate::framing::encode;
use crate::server::Conn;

pub fn handle(conn: &Conn, id: u64, req: &HandshakeRequest<'_>) -> Bytes {
    let mut response = HandshakeResponse {
        error: None,
        protocol_version: PROTOCOL_VERSION,
        protocol_version_min: PROTOCOL_VERSION,
        protocol_version_max: PROTOCOL_VERSION,
        server_version: env!("CARGO_PKG_VERSION"),
        node_id: conn.node.node_id,
        shard_count: conn.node.shard_count,
        cluster_id: "",
        frame_bytes_max: conn.node.frame_limits.frame_bytes_max_effective(),
    };
    let msg;
    if req.protocol_version != PROTOCOL_VERSION {
        msg = format!(
            "protocol version {} is not supported; this node speaks {PROTOCOL_VERSION}",
            req.protocol_version
        );
        response.error = Some(ErrorInfo::new(ErrorCode::UnsupportedVersion, &msg));
    } else {
        conn.handshaken.set(true);
        conn.forwarded
            .set(req.client_id == crate::forward::FORWARDER_CLIENT_ID);
        tracing::debug!(remote = %conn.remote, client_id = req.client_id, software = req.client_software, "handshake");
    }
    encode(&Frame::new(id, response))
}

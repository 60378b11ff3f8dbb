//! The QUIC server of one shard: accepts connections on the shared port
//! (SO_REUSEPORT: the kernel spreads connections over the shards), serves
//! each request stream, and stops on shutdown.
//!
//! Stream protocol (wire/README.md): the first stream of a connection carries
//! the handshake; every other stream carries one request and its response,
//! except subscriptions, which keep their stream open.

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use sprawl_io::quic::{
    LocalConnection, LocalEndpoint, LocalRecvStream, LocalSendStream, QuicLimits, ServerTrust,
    TlsIdentity,
};
use sprawl_shards::Shard;
use sprawl_wire::{
    AppErrorCode, Body, ErrorCode, ErrorInfo, ErrorResponse, Frame, FrameLimits, WireError,
};

use crate::budget::ByteBudget;
use crate::framing::{encode, read_frame, write_frame, ReadFrameError};
use crate::handlers;

/// Request bytes one connection may hold in memory at once.
pub const CONNECTION_BUDGET_BYTES: usize = 32 << 20;
/// Concurrent request streams per connection.
pub const CONNECTION_STREAMS_MAX: u32 = 256;

/// What every connection handler needs to know about the node.
#[derive(Debug)]
pub struct NodeInfo {
    pub node_id: u32,
    pub listen: SocketAddr,
    pub shard_count: u16,
    pub frame_limits: FrameLimits,
    pub batch_bytes_max: usize,
    /// The cluster plane, when this node is part of one.
    pub cluster: Option<crate::cluster::ClusterHandle>,
}

/// One client connection, on the shard that accepted it.
pub struct Conn {
    pub shard: Rc<Shard>,
    pub node: Arc<NodeInfo>,
    pub handshaken: Cell<bool>,
    pub budget: Rc<ByteBudget>,
    pub next_subscription_id: Cell<u64>,
    pub remote: SocketAddr,
    /// The peer is another node forwarding a client's request: never
    /// forward again (see `forward`).
    pub forwarded: Cell<bool>,
    /// This shard's connections to the other nodes (in a cluster).
    pub forwarder: Option<Rc<crate::forward::Forwarder>>,
}

/// Runs the shard's QUIC endpoint until shutdown.
pub async fn serve(shard: Rc<Shard>, node: Arc<NodeInfo>, identity: Arc<TlsIdentity>) {
    let limits = QuicLimits {
        max_concurrent_bidi_streams: CONNECTION_STREAMS_MAX,
        ..QuicLimits::default()
    };
    let endpoint = match LocalEndpoint::server(node.listen, &identity, &limits) {
        Ok(mut e) => {
            if let Some(cluster) = &node.cluster {
                // The same endpoint dials the other nodes to forward
                // requests; they present cluster-CA certificates.
                let trust = ServerTrust::CaFile(cluster.ca_cert.clone());
                let link_limits = crate::forward::link_limits(&limits);
                if let Err(err) = e.set_client_trust(&trust, &link_limits) {
                    tracing::error!(shard = shard.id, error = %err, "cannot trust the cluster CA");
                    shard.signal_failed(format!("shard {}: cluster CA: {err}", shard.id));
                    return;
                }
            }
            Rc::new(e)
        }
        Err(e) => {
            tracing::error!(shard = shard.id, error = %e, "cannot start the QUIC endpoint");
            shard.signal_failed(format!("shard {}: {e}", shard.id));
            return;
        }
    };
    tracing::debug!(shard = shard.id, addr = %node.listen, "QUIC endpoint listening");
    shard.signal_ready();
    let forwarder = node.cluster.as_ref().map(|c| {
        Rc::new(crate::forward::Forwarder::new(
            endpoint.clone(),
            Some(c.forwarded.clone()),
        ))
    });
    let accept_loop = {
        let (shard, node, endpoint) = (shard.clone(), node.clone(), endpoint.clone());
        let forwarder = forwarder.clone();
        async move {
            while let Some(incoming) = endpoint.accept().await {
                let (shard, node, forwarder) = (shard.clone(), node.clone(), forwarder.clone());
                glommio::spawn_local(async move {
                    let remote = incoming.remote_address();
                    match incoming.accept().await {
                        Ok(conn) => serve_connection(shard, node, forwarder, conn, remote).await,
                        Err(e) => tracing::debug!(%remote, error = %e, "handshake failed"),
                    }
                })
                .detach();
            }
        }
    };
    futures_lite::future::or(accept_loop, shard.shutdown_signal()).await;
    endpoint.close(AppErrorCode::ShuttingDown as u32, b"node shutting down");
}

async fn serve_connection(
    shard: Rc<Shard>,
    node: Arc<NodeInfo>,
    forwarder: Option<Rc<crate::forward::Forwarder>>,
    conn: LocalConnection,
    remote: SocketAddr,
) {
    {
        let mut m = shard.metrics.borrow_mut();
        m.connections_open += 1;
        m.connections_total += 1;
    }
    tracing::debug!(shard = shard.id, %remote, "connection open");
    let ctx = Rc::new(Conn {
        shard: shard.clone(),
        node,
        handshaken: Cell::new(false),
        budget: ByteBudget::new(CONNECTION_BUDGET_BYTES),
        next_subscription_id: Cell::new(1),
        remote,
        forwarded: Cell::new(false),
        forwarder,
    });
    loop {
        match conn.accept_bi().await {
            Ok((send, recv)) => {
                let ctx = ctx.clone();
                glommio::spawn_local(serve_stream(ctx, send, recv)).detach();
            }
            Err(e) => {
                tracing::debug!(shard = shard.id, %remote, reason = %e, "connection closed");
                break;
            }
        }
    }
    shard.metrics.borrow_mut().connections_open -= 1;
}

/// Serves one stream: one request and its response, or a subscription.
async fn serve_stream(conn: Rc<Conn>, mut send: LocalSendStream, mut recv: LocalRecvStream) {
    let frame = match read_frame(&mut recv, &conn.node.frame_limits, &conn.budget).await {
        Ok(Some((frame, permit))) => (frame, permit),
        Ok(None) => return,
        Err(ReadFrameError::Wire(e)) => {
            conn.shard.metrics.borrow_mut().errors += 1;
            tracing::debug!(remote = %conn.remote, error = %e, "bad frame");
            reject(&mut send, &mut recv, &e).await;
            return;
        }
        Err(ReadFrameError::Stream(e)) => {
            tracing::debug!(remote = %conn.remote, error = %e, "stream failed");
            return;
        }
    };
    let (frame, permit) = frame;
    let kind = frame.kind();
    let decoded = match frame.decode() {
        Ok(d) => d,
        Err(e) => {
            conn.shard.metrics.borrow_mut().errors += 1;
            reject(&mut send, &mut recv, &e).await;
            return;
        }
    };
    if !conn.handshaken.get() && !matches!(decoded.body, Body::HandshakeRequest(_)) {
        let msg =
            format!("{kind:?} before the handshake: send HandshakeRequest on the first stream");
        let response = Frame::new(
            decoded.request_id,
            ErrorResponse {
                error: ErrorInfo::new(ErrorCode::HandshakeRequired, &msg),
            },
        );
        let _ = write_frame(&mut send, encode(&response)).await;
        let _ = send.finish();
        return;
    }
    if let Body::SubscribeRequest(req) = decoded.body {
        let request_id = decoded.request_id;
        let req = handlers::subscribe::OwnedSubscribe::from(&req);
        drop(permit);
        use crate::forward::{Forwarder, SubscriptionRoute};
        let refusal = match crate::forward::subscription_route(&conn, &req.topic, req.partition) {
            SubscriptionRoute::Local => None,
            SubscriptionRoute::Refuse(f) => Some(f),
            SubscriptionRoute::Proxy {
                leader,
                addr,
                forwarder,
            } => match forwarder
                .open_proxy(leader, addr, frame.as_bytes().clone())
                .await
            {
                Ok(leader_streams) => {
                    Forwarder::proxy_stream(leader_streams, send, recv).await;
                    return;
                }
                Err(f) => Some(f),
            },
        };
        if let Some(f) = refusal {
            let response = sprawl_wire::SubscribeResponse {
                error: Some(f.info()),
                partition: req.partition,
                ..Default::default()
            };
            let _ = write_frame(&mut send, encode(&Frame::new(request_id, response))).await;
            let _ = send.finish();
            return;
        }
        handlers::subscribe::serve(conn, request_id, req, send, recv).await;
        return;
    }
    let response = handlers::dispatch(&conn, &frame, decoded).await;
    drop(permit);
    if let Some(bytes) = response {
        if let Err(e) = write_frame(&mut send, bytes).await {
            tracing::debug!(remote = %conn.remote, error = %e, "writing a response failed");
            return;
        }
    }
    let _ = send.finish();
}

/// Answers a frame that could not be read with an ErrorResponse (request id
/// 0: the id is unknown) and stops reading the stream.
async fn reject(send: &mut LocalSendStream, recv: &mut LocalRecvStream, e: &WireError) {
    let msg = e.to_string();
    let response = Frame::new(
        0,
        ErrorResponse {
            error: ErrorInfo::new(e.error_code(), &msg),
        },
    );
    let _ = write_frame(send, encode(&response)).await;
    let _ = send.finish();
    if e.is_fatal_to_stream() {
        let code = if matches!(e, WireError::FrameTooLarge { .. }) {
            AppErrorCode::FrameTooLarge
        } else {
            AppErrorCode::ProtocolViolation
        };
        let _ = recv.stop(code as u32);
    }
}

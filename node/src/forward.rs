//! Forwarding a request to the node that leads its partition.
//!
//! A node that receives a produce, fetch or offsets request for a partition
//! another node leads passes the client's frame, byte for byte, to that
//! node over QUIC (the shard's own endpoint dials out; the leader's
//! certificate is verified against the cluster CA) and hands the leader's
//! response frame back unchanged: the batch is never re-encoded, and the
//! response carries the client's own request id.
//!
//! Forwarding is one hop: the forwarding connection introduces itself
//! with [`FORWARDER_CLIENT_ID`], and a node never forwards what arrived on
//! such a connection (two nodes with different views of the leader answer
//! "not leader" instead of bouncing a request between them).

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use sprawl_io::quic::{LocalConnection, LocalEndpoint};
use sprawl_wire::{
    Body, ErrorCode, Frame, FrameLimits, HandshakeRequest, VerifiedFrame, FRAME_PREFIX_BYTES,
    PROTOCOL_VERSION,
};

use crate::errors::Failure;
use crate::framing::encode;

/// The client id of a forwarding connection (see the module docs).
pub const FORWARDER_CLIENT_ID: &str = "sprawl-node-forwarder";
/// Largest response frame accepted from a leader.
const RESPONSE_BYTES_MAX: u32 = 256 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Limits of the connections a shard dials to other nodes: pings every
/// 250 ms and a 1 s idle timeout (the lower side wins the negotiation), so
/// a link to a node that died or restarted fails within a second (about
/// when its partitions' new leaders are elected) instead of holding
/// requests for the server's 30 s.
pub fn link_limits(server: &sprawl_io::quic::QuicLimits) -> sprawl_io::quic::QuicLimits {
    sprawl_io::quic::QuicLimits {
        idle_timeout_ms: 1_000,
        keep_alive_interval_ms: Some(250),
        ..server.clone()
    }
}

/// One shard's connections to the other nodes.
pub struct Forwarder {
    endpoint: Rc<LocalEndpoint>,
    links: RefCell<HashMap<u64, Rc<LocalConnection>>>,
    /// The node-wide count `/metrics` shows.
    counter: Option<std::sync::Arc<std::sync::atomic::AtomicU64>>,
}

impl Forwarder {
    pub fn new(
        endpoint: Rc<LocalEndpoint>,
        counter: Option<std::sync::Arc<std::sync::atomic::AtomicU64>>,
    ) -> Self {
        Self {
            counter,
            endpoint,
            links: RefCell::new(HashMap::new()),
        }
    }

    async fn link(&self, node: u64, addr: SocketAddr) -> Result<Rc<LocalConnection>, Failure> {
        if let Some(c) = self.links.borrow().get(&node) {
            if c.close_reason().is_none() && c.remote_address() == addr {
                return Ok(c.clone());
            }
        }
        let unavailable = |what: String| Failure::new(ErrorCode::LeaderNotAvailable, what);
        let server_name = addr.ip().to_string();
        let conn = futures_lite::future::or(
            async { Some(self.endpoint.connect(addr, &server_name).await) },
            async {
                glommio::timer::sleep(CONNECT_TIMEOUT).await;
                None
            },
        )
        .await
        .ok_or_else(|| unavailable(format!("leader node {node} at {addr} did not answer")))?
        .map_err(|e| unavailable(format!("cannot reach leader node {node} at {addr}: {e}")))?;
        let hello = encode(&Frame::new(
            0,
            HandshakeRequest {
                protocol_version: PROTOCOL_VERSION,
                client_id: FORWARDER_CLIENT_ID,
                auth_token: None,
                client_software: concat!("sprawl-node/", env!("CARGO_PKG_VERSION")),
                frame_bytes_max: RESPONSE_BYTES_MAX,
            },
        ));
        let conn = Rc::new(conn);
        let response = exchange(&conn, hello, true).await?;
        let frame = VerifiedFrame::new(
            response,
            &FrameLimits::default().with_frame_bytes_max(RESPONSE_BYTES_MAX),
        )
        .map_err(|e| unavailable(format!("leader node {node}: bad handshake answer: {e}")))?;
        match frame.decode().map(|f| f.body) {
            Ok(Body::HandshakeResponse(h)) if h.error.is_none() => {}
            other => {
                return Err(unavailable(format!(
                    "leader node {node} refused the forwarding handshake: {other:?}"
                )))
            }
        }
        self.links.borrow_mut().insert(node, conn.clone());
        Ok(conn)
    }

    /// One more request forwarded (the node-wide count `/metrics` shows).
    fn count(&self) {
        if let Some(counter) = &self.counter {
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Drops the cached connection to `node` (it died).
    pub fn forget(&self, node: u64) {
        self.links.borrow_mut().remove(&node);
    }

    /// Sends `frame` (a client's request, unchanged) to `node` and returns
    /// its response frame, unchanged. `expect_response`: false only for an
    /// acks=none produce, which the leader does not answer. `timeout`
    /// bounds the whole exchange (a fetch's long poll included).
    pub async fn forward(
        &self,
        node: u64,
        addr: SocketAddr,
        frame: Bytes,
        expect_response: bool,
        timeout: Duration,
    ) -> Result<Bytes, Failure> {
        let conn = self.link(node, addr).await?;
        self.count();
        let answer = futures_lite::future::or(
            async { Some(exchange(&conn, frame, expect_response).await) },
            async {
                glommio::timer::sleep(timeout).await;
                None
            },
        )
        .await
        .unwrap_or_else(|| {
            Err(Failure::new(
                ErrorCode::LeaderNotAvailable,
                format!(
                    "leader node {node} did not answer within {} ms",
                    timeout.as_millis()
                ),
            ))
        });
        match answer {
            Ok(b) => Ok(b),
            Err(e) => {
                // The link may be dead: dial again next time.
                self.links.borrow_mut().remove(&node);
                Err(e)
            }
        }
    }
}

/// One request stream: write the frame, finish, read one response frame.
async fn exchange(
    conn: &LocalConnection,
    frame: Bytes,
    expect_response: bool,
) -> Result<Bytes, Failure> {
    let failed = |e: String| {
        Failure::new(
            ErrorCode::LeaderNotAvailable,
            format!("forwarding to the leader failed: {e}"),
        )
    };
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| failed(e.to_string()))?;
    send.write_chunk(frame)
        .await
        .map_err(|e| failed(e.to_string()))?;
    let _ = send.finish();
    let mut prefix = [0u8; FRAME_PREFIX_BYTES];
    match recv.read_exact(&mut prefix).await {
        Ok(()) => {}
        // No response at all: right for an acks=none produce, a failure
        // (the leader shut down mid-request) for anything else.
        Err(sprawl_io::quic::ReadExactError::FinishedEarly(0)) if !expect_response => {
            return Ok(Bytes::new())
        }
        Err(e) => return Err(failed(e.to_string())),
    }
    let len = u32::from_le_bytes(prefix);
    if len > RESPONSE_BYTES_MAX {
        return Err(failed(format!("response of {len} bytes is too large")));
    }
    let mut buf = BytesMut::zeroed(FRAME_PREFIX_BYTES + len as usize);
    buf[..FRAME_PREFIX_BYTES].copy_from_slice(&prefix);
    recv.read_exact(&mut buf[FRAME_PREFIX_BYTES..])
        .await
        .map_err(|e| failed(e.to_string()))?;
    Ok(buf.freeze())
}

/// A topic this node does not have but the cluster may: committed and not
/// applied here yet, or this node is not (yet) a member of the metadata
/// group. Retryable, unlike "unknown topic".
pub fn not_applied_yet(conn: &crate::server::Conn, topic: &str) -> Option<Failure> {
    let cluster = conn.node.cluster.as_ref()?;
    if conn.shard.catalog().get(topic).is_some()
        || !cluster.knows_topic(topic, conn.forwarded.get())
    {
        return None;
    }
    Some(Failure::new(
        ErrorCode::LeaderNotAvailable,
        format!(
            "topic {topic:?} is not applied on node {} yet (it lags the metadata group \
             or is joining it); retry",
            conn.node.node_id
        ),
    ))
}

/// Where a subscription runs.
pub enum SubscriptionRoute {
    /// This node leads the partition (or there is no cluster).
    Local,
    /// Pipe it to the leader.
    Proxy {
        leader: u64,
        addr: SocketAddr,
        forwarder: Rc<Forwarder>,
    },
    /// Answer this error: the leader cannot be reached from here (never
    /// fall back to this node's own, empty copy).
    Refuse(Failure),
}

pub fn subscription_route(
    conn: &crate::server::Conn,
    topic: &str,
    partition: u32,
) -> SubscriptionRoute {
    let Some(cluster) = conn.node.cluster.as_ref() else {
        return SubscriptionRoute::Local;
    };
    if let Some(f) = not_applied_yet(conn, topic) {
        return SubscriptionRoute::Refuse(f);
    }
    let Some(leader) = conn.shard.catalog().leader_of(topic, partition) else {
        return SubscriptionRoute::Local;
    };
    if leader == conn.node.node_id {
        return SubscriptionRoute::Local;
    }
    if conn.forwarded.get() {
        return SubscriptionRoute::Refuse(Failure::new(
            ErrorCode::NotLeader,
            format!("node {leader} leads {topic}/{partition}"),
        ));
    }
    let leader = u64::from(leader);
    match (cluster.quic_addr(leader), conn.forwarder.clone()) {
        (Some((addr, true)), Some(forwarder)) => SubscriptionRoute::Proxy {
            leader,
            addr,
            forwarder,
        },
        _ => SubscriptionRoute::Refuse(Failure::new(
            ErrorCode::LeaderNotAvailable,
            format!("node {leader} leads {topic}/{partition} and cannot be reached"),
        )),
    }
}

/// Where a request for `partition` of `topic` runs: `None` = here (this
/// node leads it, or there is no cluster); `Some(answer)` = the leader's
/// response frame (or why it could not be had).
pub async fn route(
    conn: &crate::server::Conn,
    frame: &VerifiedFrame,
    topic: &str,
    partition: u32,
    expect_response: bool,
    timeout: Duration,
) -> Option<Result<Bytes, Failure>> {
    let cluster = conn.node.cluster.as_ref()?;
    if let Some(f) = not_applied_yet(conn, topic) {
        return Some(Err(f));
    }
    let leader = conn.shard.catalog().leader_of(topic, partition)?;
    if leader == conn.node.node_id {
        return None;
    }
    if conn.forwarded.get() {
        return Some(Err(Failure::new(
            ErrorCode::NotLeader,
            format!(
                "node {} does not lead {topic}/{partition} (node {leader} does); \
                 forwarded requests are not forwarded again",
                conn.node.node_id
            ),
        )));
    }
    let Some(forwarder) = conn.forwarder.as_ref() else {
        return Some(Err(Failure::new(
            ErrorCode::NotLeader,
            format!("node {leader} leads {topic}/{partition}"),
        )));
    };
    let addr = match cluster.quic_addr(u64::from(leader)) {
        Some((addr, true)) => addr,
        Some((_, false)) => {
            // Answer at once rather than wait out a dead connection; the
            // client retries, and never sees this node's empty copy.
            forwarder.forget(u64::from(leader));
            return Some(Err(Failure::new(
                ErrorCode::LeaderNotAvailable,
                format!("node {leader} leads {topic}/{partition} and is down"),
            )));
        }
        None => {
            return Some(Err(Failure::new(
                ErrorCode::LeaderNotAvailable,
                format!("node {leader} leads {topic}/{partition} but gossip has no address for it"),
            )))
        }
    };
    Some(
        forwarder
            .forward(
                u64::from(leader),
                addr,
                frame.as_bytes().clone(),
                expect_response,
                timeout,
            )
            .await,
    )
}

impl Forwarder {
    /// Serves a subscription on a partition another node leads by piping
    /// the client's stream to a stream on the leader, both ways, byte for
    /// byte (the subscribe frame first, then credit and unsubscribe one
    /// way, pushes the other), until either side ends. Backpressure holds
    /// end to end: nothing is read from one side faster than the other
    /// side's flow control takes it.
    /// Opens the leader's side of a proxied subscription and sends it the
    /// client's subscribe frame; the client's streams are untouched until
    /// this succeeds, so a failure can still be answered.
    pub async fn open_proxy(
        &self,
        node: u64,
        addr: SocketAddr,
        first_frame: Bytes,
    ) -> Result<
        (
            sprawl_io::quic::LocalSendStream,
            sprawl_io::quic::LocalRecvStream,
        ),
        Failure,
    > {
        let failed = |e: String| Failure::new(ErrorCode::LeaderNotAvailable, e);
        let conn = self.link(node, addr).await?;
        self.count();
        let opened = futures_lite::future::or(async { Some(conn.open_bi().await) }, async {
            glommio::timer::sleep(CONNECT_TIMEOUT).await;
            None
        })
        .await;
        let (mut leader_send, leader_recv) = match opened {
            Some(Ok(streams)) => streams,
            Some(Err(e)) => {
                self.forget(node);
                return Err(failed(e.to_string()));
            }
            None => return Err(failed(format!("leader node {node} opens no stream"))),
        };
        leader_send
            .write_chunk(first_frame)
            .await
            .map_err(|e| failed(e.to_string()))?;
        Ok((leader_send, leader_recv))
    }

    pub async fn proxy_stream(
        leader: (
            sprawl_io::quic::LocalSendStream,
            sprawl_io::quic::LocalRecvStream,
        ),
        mut client_send: sprawl_io::quic::LocalSendStream,
        mut client_recv: sprawl_io::quic::LocalRecvStream,
    ) {
        let (mut leader_send, mut leader_recv) = leader;
        let upstream = async {
            while let Ok(Some(chunk)) = client_recv.read_chunk(64 << 10).await {
                if leader_send.write_chunk(chunk).await.is_err() {
                    break;
                }
            }
            let _ = leader_send.finish();
        };
        let downstream = async {
            while let Ok(Some(chunk)) = leader_recv.read_chunk(1 << 20).await {
                if client_send.write_chunk(chunk).await.is_err() {
                    break;
                }
            }
            let _ = client_send.finish();
        };
        // The subscription is over when the leader ends it (or the client
        // stops reading); the client's side closing alone is an unsubscribe
        // the leader answers by finishing its stream.
        futures_lite::future::zip(upstream, downstream).await;
    }
}

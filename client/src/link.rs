//! The one QUIC connection of a client: connecting, the protocol handshake,
//! reconnecting with back-off, and one request per stream on top of it.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quinn::crypto::rustls::QuicClientConfig;
use quinn::{IdleTimeout, TransportConfig, VarInt};
use sprawl_io::quic::TlsError;
use sprawl_wire::{
    AppErrorCode, Body, BodyKind, FrameEncoder, FrameLimits, HandshakeRequest, VerifiedFrame,
    FRAME_BYTES_MAX_DEFAULT, PROTOCOL_VERSION,
};
use tokio::time::Instant;

use crate::backoff::{Backoff, Jitter};
use crate::config::{ClientConfig, NodeAddr};
use crate::error::{Error, Result};
use crate::stream::RequestStream;

/// Sent in the handshake's `client_software`.
const CLIENT_SOFTWARE: &str = concat!("sprawl-rs/", env!("CARGO_PKG_VERSION"));

/// What the node said about itself in the handshake of the current
/// connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeIdentity {
    pub addr: SocketAddr,
    pub node_id: u32,
    pub server_version: String,
    pub cluster_id: String,
    pub shard_count: u16,
    /// The protocol version both sides speak on this connection.
    pub protocol_version: u16,
    /// The largest frame the node accepts.
    pub frame_bytes_max: u32,
}

/// A connection whose handshake succeeded.
pub(crate) struct Session {
    pub connection: quinn::Connection,
    pub node: NodeIdentity,
}

impl Session {
    fn is_alive(&self) -> bool {
        self.connection.close_reason().is_none()
    }
}

/// Reconnection bookkeeping, behind an async lock so that one task at a
/// time connects while the others wait for its outcome.
struct Reconnect {
    failures: u32,
    retry_at: Option<Instant>,
    last_error: Option<Error>,
    jitter: Jitter,
}

pub(crate) struct Link {
    config: ClientConfig,
    endpoint: quinn::Endpoint,
    quic_config: quinn::ClientConfig,
    current: Mutex<Option<Arc<Session>>>,
    reconnect: tokio::sync::Mutex<Reconnect>,
    /// Connection attempts started; lets a task that waited for the
    /// reconnect lock see that an attempt failed meanwhile.
    attempts: AtomicU64,
    request_ids: AtomicU64,
    /// The node's frame limit from the latest handshake.
    node_frame_bytes_max: AtomicU32,
}

impl Link {
    /// Builds the endpoint and makes the first connection; fails if it fails.
    pub async fn connect(config: ClientConfig) -> Result<Link> {
        config.validate()?;
        let tls = config.trust.client_tls_config()?;
        let crypto = QuicClientConfig::try_from(tls).map_err(TlsError::from)?;
        let mut quic_config = quinn::ClientConfig::new(Arc::new(crypto));
        quic_config.transport_config(Arc::new(transport_config(&config)?));
        let addr = resolve(&config.node, None).await?;
        let bind: SocketAddr = if addr.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let endpoint = quinn::Endpoint::client(bind).map_err(|e| Error::Resolve {
            node: config.node.to_string(),
            reason: format!("binding a UDP socket on {bind}: {e}"),
        })?;
        let link = Link {
            reconnect: tokio::sync::Mutex::new(Reconnect {
                failures: 0,
                retry_at: None,
                last_error: None,
                jitter: Jitter::new(),
            }),
            config,
            endpoint,
            quic_config,
            current: Mutex::new(None),
            attempts: AtomicU64::new(1),
            request_ids: AtomicU64::new(1),
            node_frame_bytes_max: AtomicU32::new(FRAME_BYTES_MAX_DEFAULT),
        };
        let session = link.connect_once().await?;
        link.install(session);
        Ok(link)
    }

    /// A link to another node of the same cluster (a partition's leader),
    /// not connected yet: the first request connects. Same endpoint (one
    /// UDP socket for all links), TLS trust and server name; only the
    /// address differs.
    pub fn sibling(&self, addr: SocketAddr) -> Link {
        Link {
            config: ClientConfig {
                node: NodeAddr::Socket(addr),
                // No back-off of its own: after a failure the client's
                // routing bypasses the node for a while (requests go
                // through the bootstrap node), which paces the attempts.
                reconnect_backoff: Duration::ZERO,
                reconnect_backoff_max: Duration::ZERO,
                ..self.config.clone()
            },
            endpoint: self.endpoint.clone(),
            quic_config: self.quic_config.clone(),
            current: Mutex::new(None),
            reconnect: tokio::sync::Mutex::new(Reconnect {
                failures: 0,
                retry_at: None,
                last_error: None,
                jitter: Jitter::new(),
            }),
            attempts: AtomicU64::new(0),
            request_ids: AtomicU64::new(1),
            node_frame_bytes_max: AtomicU32::new(self.node_frame_bytes_max()),
        }
    }

    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The node's frame limit as of the latest handshake.
    pub fn node_frame_bytes_max(&self) -> u32 {
        self.node_frame_bytes_max.load(Ordering::Relaxed)
    }

    pub fn next_request_id(&self) -> u64 {
        self.request_ids.fetch_add(1, Ordering::Relaxed)
    }

    /// Limits for frames from the node.
    pub fn read_limits(&self) -> FrameLimits {
        let frame_bytes_max = match self.config.frame_bytes_max {
            0 => FRAME_BYTES_MAX_DEFAULT,
            n => n,
        };
        FrameLimits::default().with_frame_bytes_max(frame_bytes_max)
    }

    pub fn node_identity(&self) -> Option<NodeIdentity> {
        self.live_session().map(|s| s.node.clone())
    }

    /// Closes the current connection (orderly, `NoError`). The next
    /// request reconnects.
    pub fn close(&self) {
        if let Some(session) = self.current.lock().expect("not poisoned").take() {
            session
                .connection
                .close(VarInt::from_u32(AppErrorCode::NoError.as_u32()), b"");
        }
    }

    fn live_session(&self) -> Option<Arc<Session>> {
        let current = self.current.lock().expect("not poisoned");
        current.as_ref().filter(|s| s.is_alive()).cloned()
    }

    fn install(&self, session: Session) -> Arc<Session> {
        self.node_frame_bytes_max
            .store(session.node.frame_bytes_max, Ordering::Relaxed);
        let session = Arc::new(session);
        *self.current.lock().expect("not poisoned") = Some(session.clone());
        session
    }

    /// The live connection, reconnecting (once, after the back-off due) if
    /// it died. Concurrent callers share one attempt: those that waited
    /// while it failed get its error instead of trying again at once.
    pub async fn session(&self) -> Result<Arc<Session>> {
        if let Some(session) = self.live_session() {
            return Ok(session);
        }
        let attempts_seen = self.attempts.load(Ordering::Acquire);
        let mut reconnect = self.reconnect.lock().await;
        if let Some(session) = self.live_session() {
            return Ok(session);
        }
        if self.attempts.load(Ordering::Acquire) != attempts_seen {
            if let Some(e) = &reconnect.last_error {
                return Err(e.clone());
            }
        }
        if let Some(at) = reconnect.retry_at {
            tokio::time::sleep_until(at).await;
        }
        self.attempts.fetch_add(1, Ordering::AcqRel);
        match self.connect_once().await {
            Ok(session) => {
                reconnect.failures = 0;
                reconnect.retry_at = None;
                reconnect.last_error = None;
                tracing::debug!(node = %session.node.addr, "reconnected");
                Ok(self.install(session))
            }
            Err(e) => {
                reconnect.failures = reconnect.failures.saturating_add(1);
                let backoff = Backoff {
                    base: self.config.reconnect_backoff,
                    max: self.config.reconnect_backoff_max,
                };
                let unit = reconnect.jitter.unit();
                reconnect.retry_at = Some(Instant::now() + backoff.delay(reconnect.failures, unit));
                reconnect.last_error = Some(e.clone());
                tracing::debug!(error = %e, failures = reconnect.failures, "reconnect failed");
                Err(e)
            }
        }
    }

    /// One connection attempt plus handshake, bounded by `connect_timeout`.
    async fn connect_once(&self) -> Result<Session> {
        let family = self.endpoint.local_addr().ok().map(|a| a.is_ipv4());
        let addr = resolve(&self.config.node, family).await?;
        let server_name = &self.config.server_name;
        let connecting = self
            .endpoint
            .connect_with(self.quic_config.clone(), addr, server_name)
            .map_err(|e| Error::Connect {
                addr,
                reason: e.to_string(),
            })?;
        let attempt = async {
            let connection = connecting
                .await
                .map_err(|e| connection_error(addr, server_name, e))?;
            self.handshake(connection, addr).await
        };
        match tokio::time::timeout(self.config.connect_timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout {
                request: format!("connecting to node {addr}"),
                after_ms: millis(self.config.connect_timeout),
            }),
        }
    }

    async fn handshake(&self, connection: quinn::Connection, addr: SocketAddr) -> Result<Session> {
        let what = format!("handshake with node {addr}");
        let request = HandshakeRequest {
            protocol_version: PROTOCOL_VERSION,
            client_id: &self.config.client_id,
            auth_token: self.config.auth_token.as_deref(),
            client_software: CLIENT_SOFTWARE,
            frame_bytes_max: self.config.frame_bytes_max,
        };
        let mut encoder = FrameEncoder::new();
        let frame = encoder
            .encode(&sprawl_wire::Frame::new(self.next_request_id(), request))
            .map_err(|e| Error::invalid("handshake", e.to_string()))?;
        let mut stream = RequestStream::open(&connection, self.read_limits())
            .await
            .map_err(|source| Error::ConnectionLost { addr, source })?;
        let answer = stream
            .exchange(frame)
            .await
            .map_err(|f| f.into_error(&what, addr))?;
        let body = body_of(&what, &answer)?;
        let response = match body {
            Body::HandshakeResponse(r) => r,
            Body::ErrorResponse(e) => {
                return Err(Error::Handshake {
                    addr,
                    source: e.error.into(),
                })
            }
            other => return Err(unexpected(&what, other.kind())),
        };
        if let Some(error) = response.error.filter(|e| !e.code.is_ok()) {
            return Err(Error::Handshake {
                addr,
                source: error.into(),
            });
        }
        if response.protocol_version == 0 || response.protocol_version > PROTOCOL_VERSION {
            return Err(Error::protocol(
                &what,
                format!(
                    "node chose protocol version {}, this client speaks 1..={PROTOCOL_VERSION}",
                    response.protocol_version
                ),
            ));
        }
        let frame_bytes_max = match response.frame_bytes_max {
            0 => FRAME_BYTES_MAX_DEFAULT,
            n => n,
        };
        Ok(Session {
            node: NodeIdentity {
                addr,
                node_id: response.node_id,
                server_version: response.server_version.to_owned(),
                cluster_id: response.cluster_id.to_owned(),
                shard_count: response.shard_count,
                protocol_version: response.protocol_version,
                frame_bytes_max,
            },
            connection,
        })
    }

    /// One request on its own stream: writes `body`, finishes, reads the
    /// answer. `Ok` only for an answer without error; `extra_wait` extends
    /// the request timeout (a fetch's `max_wait`).
    pub async fn call(
        &self,
        what: &str,
        body: Body<'_>,
        extra_wait: Duration,
    ) -> Result<VerifiedFrame> {
        let timeout = self.config.request_timeout.saturating_add(extra_wait);
        match tokio::time::timeout(timeout, self.call_untimed(what, body)).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout {
                request: what.to_owned(),
                after_ms: millis(timeout),
            }),
        }
    }

    async fn call_untimed(&self, what: &str, body: Body<'_>) -> Result<VerifiedFrame> {
        let session = self.session().await?;
        let mut stream = self.open(&session).await?;
        let mut encoder = FrameEncoder::with_frame_bytes_max(session.node.frame_bytes_max);
        let frame = encode(&mut encoder, what, self.next_request_id(), body)?;
        let answer = stream
            .exchange(frame)
            .await
            .map_err(|f| f.into_error(what, session.node.addr))?;
        let body = body_of(what, &answer)?;
        body.check().map_err(|source| Error::Remote {
            request: what.to_owned(),
            source,
        })?;
        Ok(answer)
    }

    /// A request the node does not answer (produce with `Acks::None`):
    /// done once the frame is written and the stream finished. The stream's
    /// end is awaited in the background, so that the node is not told to
    /// stop sending (which it might take for a cancellation).
    pub async fn send_unanswered(&self, what: &str, body: Body<'_>) -> Result<()> {
        let timeout = self.config.request_timeout;
        let send = async {
            let session = self.session().await?;
            let mut stream = self.open(&session).await?;
            let mut encoder = FrameEncoder::with_frame_bytes_max(session.node.frame_bytes_max);
            let frame = encode(&mut encoder, what, self.next_request_id(), body)?;
            stream
                .write(frame)
                .await
                .map_err(|f| f.into_error(what, session.node.addr))?;
            stream.finish();
            stream.complete();
            tokio::spawn(async move {
                let _ = tokio::time::timeout(timeout, stream.reader.next_frame()).await;
            });
            Ok(())
        };
        match tokio::time::timeout(timeout, send).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout {
                request: what.to_owned(),
                after_ms: millis(timeout),
            }),
        }
    }

    /// A new stream on the session.
    pub async fn open(&self, session: &Session) -> Result<RequestStream> {
        RequestStream::open(&session.connection, self.read_limits())
            .await
            .map_err(|source| Error::ConnectionLost {
                addr: session.node.addr,
                source,
            })
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.close();
    }
}

fn transport_config(config: &ClientConfig) -> Result<TransportConfig> {
    let idle = IdleTimeout::try_from(config.idle_timeout)
        .map_err(|_| Error::invalid("idle_timeout", "too long for QUIC"))?;
    let mut transport = TransportConfig::default();
    transport
        .max_idle_timeout(Some(idle))
        .keep_alive_interval(Some(config.keep_alive_interval))
        // The node never opens streams.
        .max_concurrent_bidi_streams(VarInt::from_u32(0))
        .max_concurrent_uni_streams(VarInt::from_u32(0));
    Ok(transport)
}

/// The address to connect to; `ipv4` prefers a family (the endpoint's).
async fn resolve(node: &NodeAddr, ipv4: Option<bool>) -> Result<SocketAddr> {
    let host_port = match node {
        NodeAddr::Socket(addr) => return Ok(*addr),
        NodeAddr::HostPort(host_port) => host_port,
    };
    let failed = |reason: String| Error::Resolve {
        node: host_port.clone(),
        reason,
    };
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(host_port.as_str())
        .await
        .map_err(|e| failed(e.to_string()))?
        .collect();
    let preferred = addrs
        .iter()
        .find(|a| ipv4.is_none_or(|v4| a.is_ipv4() == v4))
        .copied();
    preferred.ok_or_else(|| failed(format!("no usable address among {addrs:?}")))
}

/// A failed QUIC connection attempt: TLS failures (crypto error codes,
/// 0x100..0x200) get their own error, with rustls' reason.
fn connection_error(addr: SocketAddr, server_name: &str, e: quinn::ConnectionError) -> Error {
    let is_crypto = |code: quinn::TransportErrorCode| (0x100..0x200).contains(&u64::from(code));
    let tls = |reason: String| Error::Tls {
        addr,
        server_name: server_name.to_owned(),
        reason,
    };
    match &e {
        quinn::ConnectionError::TransportError(t) if is_crypto(t.code) => tls(t.reason.clone()),
        quinn::ConnectionError::ConnectionClosed(c) if is_crypto(c.error_code) => tls(format!(
            "the node refused: {}",
            String::from_utf8_lossy(&c.reason)
        )),
        _ => Error::ConnectionLost { addr, source: e },
    }
}

fn encode<'e>(
    encoder: &'e mut FrameEncoder,
    what: &str,
    request_id: u64,
    body: Body<'_>,
) -> Result<&'e [u8]> {
    let frame_bytes_max = encoder.frame_bytes_max();
    encoder
        .encode(&sprawl_wire::Frame::new(request_id, body))
        .map_err(|e| match e {
            sprawl_wire::WireError::FrameTooLarge { frame_bytes, .. } => Error::FrameTooLarge {
                request: what.to_owned(),
                frame_bytes,
                frame_bytes_max,
            },
            other => Error::invalid("request", format!("{what}: {other}")),
        })
}

/// The message of a verified frame.
pub(crate) fn body_of<'f>(what: &str, frame: &'f VerifiedFrame) -> Result<Body<'f>> {
    frame
        .decode()
        .map(|f| f.body)
        .map_err(|e| Error::protocol(what, e.to_string()))
}

pub(crate) fn unexpected(what: &str, kind: BodyKind) -> Error {
    Error::protocol(
        what,
        format!(
            "unexpected {} in answer",
            kind.variant_name().unwrap_or("unknown message")
        ),
    )
}

pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

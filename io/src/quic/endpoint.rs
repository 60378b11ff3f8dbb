//! Building quinn endpoints for a shard: socket options, transport limits,
//! server and client configuration.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{EndpointConfig, IdleTimeout, TransportConfig, VarInt};
use socket2::{Domain, Protocol, Socket, Type};

use super::error::QuicError;
use super::runtime::GlommioRuntime;
use super::socket::ShardUdpSocket;
use super::tls::{ServerTrust, TlsIdentity};

/// ALPN protocol id of Sprawl's client/broker protocol, version 1.
pub const ALPN_SPRAWL_V1: &[u8] = b"sprawl/1";

/// Bounds of every QUIC connection, and the socket buffers under them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuicLimits {
    /// A connection silent for this long is closed.
    pub idle_timeout_ms: u32,
    /// Ping interval keeping idle connections alive; `None` sends no pings.
    pub keep_alive_interval_ms: Option<u32>,
    /// Unacknowledged bytes a peer may send on one stream.
    pub stream_receive_window_bytes: u32,
    /// Unacknowledged bytes a peer may send on all streams together.
    pub connection_receive_window_bytes: u32,
    /// Unacknowledged bytes we keep in flight per connection.
    pub send_window_bytes: u64,
    /// Bidirectional streams a peer may have open at once.
    pub max_concurrent_bidi_streams: u32,
    /// Unidirectional streams a peer may have open at once.
    pub max_concurrent_uni_streams: u32,
    /// Requested `SO_RCVBUF`/`SO_SNDBUF` (the kernel caps them at
    /// `net.core.rmem_max`/`wmem_max`). Small buffers drop bursts.
    pub socket_buffer_bytes: usize,
}

impl Default for QuicLimits {
    fn default() -> Self {
        Self {
            idle_timeout_ms: 30_000,
            keep_alive_interval_ms: Some(10_000),
            stream_receive_window_bytes: 8 << 20,
            connection_receive_window_bytes: 32 << 20,
            send_window_bytes: 32 << 20,
            max_concurrent_bidi_streams: 1024,
            max_concurrent_uni_streams: 1024,
            socket_buffer_bytes: 4 << 20,
        }
    }
}

impl QuicLimits {
    /// The quinn transport configuration these limits describe.
    pub fn transport_config(&self) -> TransportConfig {
        let mut transport = TransportConfig::default();
        transport
            .max_idle_timeout(Some(IdleTimeout::from(VarInt::from_u32(
                self.idle_timeout_ms,
            ))))
            .keep_alive_interval(
                self.keep_alive_interval_ms
                    .map(|ms| Duration::from_millis(u64::from(ms))),
            )
            .stream_receive_window(VarInt::from_u32(self.stream_receive_window_bytes))
            .receive_window(VarInt::from_u32(self.connection_receive_window_bytes))
            .send_window(self.send_window_bytes)
            .max_concurrent_bidi_streams(VarInt::from_u32(self.max_concurrent_bidi_streams))
            .max_concurrent_uni_streams(VarInt::from_u32(self.max_concurrent_uni_streams));
        transport
    }
}

/// Binds the endpoint's UDP socket. `reuse_port` lets one endpoint per shard
/// share the port; the kernel then spreads flows over them by 4-tuple hash.
pub(crate) fn bind_udp(
    addr: SocketAddr,
    reuse_port: bool,
    socket_buffer_bytes: usize,
) -> Result<std::net::UdpSocket, QuicError> {
    let bind_error = |source| QuicError::Bind { addr, source };
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))
        .map_err(bind_error)?;
    if addr.is_ipv6() && addr.ip().is_unspecified() {
        // `[::]` also serves IPv4 (mapped) peers.
        socket.set_only_v6(false).map_err(bind_error)?;
    }
    if reuse_port {
        socket.set_reuse_port(true).map_err(bind_error)?;
    }
    // Best effort: a smaller buffer than asked for costs throughput, not correctness.
    if let Err(e) = socket.set_recv_buffer_size(socket_buffer_bytes) {
        tracing::warn!("QUIC socket on {addr}: SO_RCVBUF {socket_buffer_bytes}: {e}");
    }
    if let Err(e) = socket.set_send_buffer_size(socket_buffer_bytes) {
        tracing::warn!("QUIC socket on {addr}: SO_SNDBUF {socket_buffer_bytes}: {e}");
    }
    socket.set_nonblocking(true).map_err(bind_error)?;
    socket.bind(&addr.into()).map_err(bind_error)?;
    Ok(socket.into())
}

/// A server endpoint on `bind`: `SO_REUSEPORT`, no connection migration (a
/// connection stays on the shard whose socket its 4-tuple hashes to).
pub(crate) fn server_endpoint(
    bind: SocketAddr,
    identity: &TlsIdentity,
    limits: &QuicLimits,
) -> Result<(quinn::Endpoint, Arc<ShardUdpSocket>), QuicError> {
    let tls = QuicServerConfig::try_from(identity.server_tls_config()?)
        .map_err(super::error::TlsError::from)?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(tls));
    server
        .transport_config(Arc::new(limits.transport_config()))
        .migration(false);
    start_endpoint(bind, true, Some(server), limits)
}

/// Configuration for outgoing connections trusting servers as `trust` says.
pub(crate) fn client_config(
    trust: &ServerTrust,
    limits: &QuicLimits,
) -> Result<quinn::ClientConfig, QuicError> {
    let tls = QuicClientConfig::try_from(trust.client_tls_config()?)
        .map_err(super::error::TlsError::from)?;
    let mut client = quinn::ClientConfig::new(Arc::new(tls));
    client.transport_config(Arc::new(limits.transport_config()));
    Ok(client)
}

/// A client-only endpoint on `bind` trusting servers as `trust` says.
pub(crate) fn client_endpoint(
    bind: SocketAddr,
    trust: &ServerTrust,
    limits: &QuicLimits,
) -> Result<(quinn::Endpoint, Arc<ShardUdpSocket>), QuicError> {
    let client = client_config(trust, limits)?;
    let (mut endpoint, socket) = start_endpoint(bind, false, None, limits)?;
    endpoint.set_default_client_config(client);
    Ok((endpoint, socket))
}

/// Binds the socket and starts quinn's endpoint driver on this executor.
/// The socket is returned too, for its counters.
fn start_endpoint(
    bind: SocketAddr,
    reuse_port: bool,
    server: Option<quinn::ServerConfig>,
    limits: &QuicLimits,
) -> Result<(quinn::Endpoint, Arc<ShardUdpSocket>), QuicError> {
    let socket = bind_udp(bind, reuse_port, limits.socket_buffer_bytes)?;
    let addr = socket.local_addr().unwrap_or(bind);
    let endpoint_error = |source| QuicError::Endpoint { addr, source };
    let socket = Arc::new(ShardUdpSocket::new(socket).map_err(endpoint_error)?);
    let endpoint = quinn::Endpoint::new_with_abstract_socket(
        EndpointConfig::default(),
        server,
        socket.clone(),
        Arc::new(GlommioRuntime),
    )
    .map_err(endpoint_error)?;
    Ok((endpoint, socket))
}

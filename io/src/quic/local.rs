//! `!Send` handles on quinn objects, so they cannot leave their shard.
//!
//! quinn's handles are `Send + Clone`, but their drivers, timers and sockets
//! run on the glommio executor that created them. Moving a handle to another
//! thread would still work (glommio accepts foreign wake-ups) but would
//! silently turn every operation into cross-core traffic. These wrappers
//! carry a `PhantomData<*const ()>`, so the compiler refuses that move, and
//! they expose no way to clone the inner quinn handle.
//!
//! ```compile_fail
//! fn assert_send<T: Send>() {}
//! assert_send::<sprawl_io::quic::LocalConnection>();
//! ```

use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use quinn::{
    ClosedStream, ConnectionError, ConnectionStats, ReadError, ReadExactError, ReadToEndError,
    SendDatagramError, StoppedError, StreamId, VarInt, WriteError,
};

use super::endpoint::{client_config, client_endpoint, server_endpoint, QuicLimits};
use super::error::QuicError;
use super::socket::{ShardUdpSocket, UdpSocketStats};
use super::tls::{ServerTrust, TlsIdentity};

/// Marker making a type `!Send` and `!Sync`.
type ShardBound = PhantomData<*const ()>;

/// A QUIC endpoint owned by the shard that created it.
#[derive(Debug)]
pub struct LocalEndpoint {
    inner: quinn::Endpoint,
    socket: Arc<ShardUdpSocket>,
    _shard: ShardBound,
}

impl LocalEndpoint {
    /// A server endpoint on `bind` (TLS 1.3, ALPN `sprawl/1`, `SO_REUSEPORT`,
    /// migration disabled). Each shard binds its own on the same port.
    /// Must be called on a glommio executor thread.
    pub fn server(
        bind: SocketAddr,
        identity: &TlsIdentity,
        limits: &QuicLimits,
    ) -> Result<Self, QuicError> {
        Ok(Self::wrap(server_endpoint(bind, identity, limits)?))
    }

    /// A client endpoint on `bind` (usually `0.0.0.0:0`), verifying servers
    /// as `trust` says. Must be called on a glommio executor thread.
    pub fn client(
        bind: SocketAddr,
        trust: &ServerTrust,
        limits: &QuicLimits,
    ) -> Result<Self, QuicError> {
        Ok(Self::wrap(client_endpoint(bind, trust, limits)?))
    }

    fn wrap((inner, socket): (quinn::Endpoint, Arc<ShardUdpSocket>)) -> Self {
        Self {
            inner,
            socket,
            _shard: PhantomData,
        }
    }

    /// Lets this (server) endpoint also dial out, e.g. to peer nodes.
    pub fn set_client_trust(
        &mut self,
        trust: &ServerTrust,
        limits: &QuicLimits,
    ) -> Result<(), QuicError> {
        let client = client_config(trust, limits)?;
        self.inner.set_default_client_config(client);
        Ok(())
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    /// The next connection attempt, or `None` once the endpoint is closed.
    pub async fn accept(&self) -> Option<LocalIncoming> {
        self.inner.accept().await.map(|inner| LocalIncoming {
            inner,
            _shard: PhantomData,
        })
    }

    /// Connects to `addr`, verifying its certificate for `server_name`, and
    /// waits for the handshake to finish.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        server_name: &str,
    ) -> Result<LocalConnection, QuicError> {
        let connecting =
            self.inner
                .connect(addr, server_name)
                .map_err(|source| QuicError::Connect {
                    addr,
                    server_name: server_name.to_string(),
                    source,
                })?;
        let inner = connecting
            .await
            .map_err(|source| QuicError::Connection { addr, source })?;
        Ok(LocalConnection::wrap(inner))
    }

    /// Closes every connection at once with `error_code` and `reason`.
    pub fn close(&self, error_code: u32, reason: &[u8]) {
        self.inner.close(VarInt::from_u32(error_code), reason);
    }

    /// Waits until all connections are closed and their close frames sent.
    pub async fn wait_idle(&self) {
        self.inner.wait_idle().await;
    }

    /// Counters of the endpoint's UDP socket (GSO/GRO batching, blocking).
    pub fn udp_stats(&self) -> UdpSocketStats {
        self.socket.stats()
    }

    /// Connections currently open on this endpoint.
    pub fn open_connections(&self) -> usize {
        self.inner.open_connections()
    }
}

/// A connection attempt, before the handshake.
#[derive(Debug)]
pub struct LocalIncoming {
    inner: quinn::Incoming,
    _shard: ShardBound,
}

impl LocalIncoming {
    pub fn remote_address(&self) -> SocketAddr {
        self.inner.remote_address()
    }

    /// Accepts the attempt and waits for the handshake to finish.
    pub async fn accept(self) -> Result<LocalConnection, QuicError> {
        let addr = self.inner.remote_address();
        let connection = async { self.inner.accept()?.await }
            .await
            .map_err(|source| QuicError::Connection { addr, source })?;
        Ok(LocalConnection::wrap(connection))
    }

    /// Rejects the attempt with a `CONNECTION_REFUSED` close.
    pub fn refuse(self) {
        self.inner.refuse();
    }

    /// Drops the attempt without telling the peer.
    pub fn ignore(self) {
        self.inner.ignore();
    }
}

/// An established QUIC connection owned by one shard.
#[derive(Debug)]
pub struct LocalConnection {
    inner: quinn::Connection,
    _shard: ShardBound,
}

impl LocalConnection {
    fn wrap(inner: quinn::Connection) -> Self {
        Self {
            inner,
            _shard: PhantomData,
        }
    }

    pub async fn open_bi(&self) -> Result<(LocalSendStream, LocalRecvStream), ConnectionError> {
        let (send, recv) = self.inner.open_bi().await?;
        Ok((LocalSendStream::wrap(send), LocalRecvStream::wrap(recv)))
    }

    pub async fn accept_bi(&self) -> Result<(LocalSendStream, LocalRecvStream), ConnectionError> {
        let (send, recv) = self.inner.accept_bi().await?;
        Ok((LocalSendStream::wrap(send), LocalRecvStream::wrap(recv)))
    }

    pub async fn open_uni(&self) -> Result<LocalSendStream, ConnectionError> {
        Ok(LocalSendStream::wrap(self.inner.open_uni().await?))
    }

    pub async fn accept_uni(&self) -> Result<LocalRecvStream, ConnectionError> {
        Ok(LocalRecvStream::wrap(self.inner.accept_uni().await?))
    }

    /// Sends an unreliable datagram (fails if larger than [`Self::max_datagram_size`]).
    pub fn send_datagram(&self, data: Bytes) -> Result<(), SendDatagramError> {
        self.inner.send_datagram(data)
    }

    pub async fn read_datagram(&self) -> Result<Bytes, ConnectionError> {
        self.inner.read_datagram().await
    }

    pub fn max_datagram_size(&self) -> Option<usize> {
        self.inner.max_datagram_size()
    }

    /// Closes the connection immediately with `error_code` and `reason`.
    pub fn close(&self, error_code: u32, reason: &[u8]) {
        self.inner.close(VarInt::from_u32(error_code), reason);
    }

    /// Waits for the connection to close and returns why.
    pub async fn closed(&self) -> ConnectionError {
        self.inner.closed().await
    }

    pub fn close_reason(&self) -> Option<ConnectionError> {
        self.inner.close_reason()
    }

    pub fn remote_address(&self) -> SocketAddr {
        self.inner.remote_address()
    }

    /// Identifier unique among this endpoint's live connections.
    pub fn stable_id(&self) -> usize {
        self.inner.stable_id()
    }

    pub fn rtt(&self) -> Duration {
        self.inner.rtt()
    }

    pub fn stats(&self) -> ConnectionStats {
        self.inner.stats()
    }
}

/// The sending half of a QUIC stream.
#[derive(Debug)]
pub struct LocalSendStream {
    inner: quinn::SendStream,
    _shard: ShardBound,
}

impl LocalSendStream {
    fn wrap(inner: quinn::SendStream) -> Self {
        Self {
            inner,
            _shard: PhantomData,
        }
    }

    pub fn id(&self) -> StreamId {
        self.inner.id()
    }

    /// Writes some of `buf`, returning how much was accepted.
    pub async fn write(&mut self, buf: &[u8]) -> Result<usize, WriteError> {
        self.inner.write(buf).await
    }

    pub async fn write_all(&mut self, buf: &[u8]) -> Result<(), WriteError> {
        self.inner.write_all(buf).await
    }

    /// Writes `buf` without copying it.
    pub async fn write_chunk(&mut self, buf: Bytes) -> Result<(), WriteError> {
        self.inner.write_chunk(buf).await
    }

    /// Marks the end of the stream; data already written is still delivered.
    pub fn finish(&mut self) -> Result<(), ClosedStream> {
        self.inner.finish()
    }

    /// Abandons the stream: unsent data is discarded.
    pub fn reset(&mut self, error_code: u32) -> Result<(), ClosedStream> {
        self.inner.reset(VarInt::from_u32(error_code))
    }

    /// Waits until the peer has received everything (`Ok(None)`) or stopped
    /// the stream (`Ok(Some(code))`).
    pub async fn stopped(&self) -> Result<Option<VarInt>, StoppedError> {
        self.inner.stopped().await
    }

    /// Streams with higher priority are sent first.
    pub fn set_priority(&self, priority: i32) -> Result<(), ClosedStream> {
        self.inner.set_priority(priority)
    }
}

/// The receiving half of a QUIC stream.
#[derive(Debug)]
pub struct LocalRecvStream {
    inner: quinn::RecvStream,
    _shard: ShardBound,
}

impl LocalRecvStream {
    fn wrap(inner: quinn::RecvStream) -> Self {
        Self {
            inner,
            _shard: PhantomData,
        }
    }

    pub fn id(&self) -> StreamId {
        self.inner.id()
    }

    /// Reads into `buf`; `Ok(None)` at the end of the stream.
    pub async fn read(&mut self, buf: &mut [u8]) -> Result<Option<usize>, ReadError> {
        self.inner.read(buf).await
    }

    pub async fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), ReadExactError> {
        self.inner.read_exact(buf).await
    }

    /// Returns the next in-order chunk of at most `max_bytes` without copying;
    /// `Ok(None)` at the end of the stream.
    pub async fn read_chunk(&mut self, max_bytes: usize) -> Result<Option<Bytes>, ReadError> {
        Ok(self
            .inner
            .read_chunk(max_bytes, true)
            .await?
            .map(|chunk| chunk.bytes))
    }

    /// Reads the rest of the stream, failing if it exceeds `size_limit_bytes`.
    pub async fn read_to_end(
        &mut self,
        size_limit_bytes: usize,
    ) -> Result<Vec<u8>, ReadToEndError> {
        self.inner.read_to_end(size_limit_bytes).await
    }

    /// Asks the peer to stop sending.
    pub fn stop(&mut self, error_code: u32) -> Result<(), ClosedStream> {
        self.inner.stop(VarInt::from_u32(error_code))
    }
}

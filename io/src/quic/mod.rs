//! QUIC on glommio: quinn endpoints that live on one shard.
//!
//! quinn is runtime-agnostic through its `Runtime` trait, whose pieces must be
//! `Send + Sync` while glommio's own socket and timer hold `Rc`s. This module
//! bridges the two without `unsafe impl Send`:
//!
//! - [`runtime`]: [`GlommioRuntime`], spawning quinn's driver tasks with
//!   `glommio::spawn_local` on the calling executor.
//! - `timer`: quinn timers as a deadline plus a glommio `Timer` kept in a
//!   thread-local table on the shard.
//! - `socket`: a non-blocking std UDP socket driven by `quinn_udp` (GSO send,
//!   GRO receive); read readiness from an io_uring `MSG_PEEK` on the shard,
//!   write readiness from `write_watcher`.
//! - `write_watcher`: one process-wide epoll thread that only wakes senders
//!   whose socket send buffer was full (rare; never on the hot path).
//! - [`tls`]: PEM loading, self-signed certificates, rustls (ring, TLS 1.3).
//! - [`cluster_tls`]: the cluster CA, node certificates and the mutual-TLS
//!   rustls configs of node-to-node connections (ALPN `sprawl-peer/1`).
//! - [`endpoint`]: server (`SO_REUSEPORT`, no migration, ALPN `sprawl/1`) and
//!   client endpoint construction, [`QuicLimits`].
//! - [`local`]: `!Send` handles ([`LocalEndpoint`], [`LocalConnection`], ...)
//!   so that nothing quinn owns leaves the shard that created it.
//!
//! Architecture invariant: every quinn object built here is created, polled
//! and dropped on one glommio executor thread. The `!Send` handles enforce it
//! at compile time for users of this module.

pub mod cluster_tls;
pub mod endpoint;
pub mod error;
pub mod local;
pub mod runtime;
mod socket;
mod timer;
pub mod tls;
mod write_watcher;

pub use cluster_tls::{
    certificate_node_id, cluster_ca_paths, create_cluster_ca, issue_node_certificate,
    node_cert_paths, peer_server_name, ClusterTls, ALPN_SPRAWL_PEER_V1, CA_CERT_FILE_NAME,
    CA_KEY_FILE_NAME,
};
pub use endpoint::{QuicLimits, ALPN_SPRAWL_V1};
pub use error::{QuicError, TlsError};
pub use local::{LocalConnection, LocalEndpoint, LocalIncoming, LocalRecvStream, LocalSendStream};
/// quinn's stream and connection errors, so users need not depend on quinn.
pub use quinn::{ConnectionError, ReadError, ReadExactError, WriteError};
pub use runtime::GlommioRuntime;
pub use socket::UdpSocketStats;
pub use tls::{
    generate_self_signed, generate_self_signed_for, CertPaths, ServerTrust, TlsIdentity,
};

//! Configuration of a [`Client`](crate::Client) and of a
//! [`Producer`](crate::Producer).

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

pub use sprawl_io::quic::ServerTrust;
pub use sprawl_wire::Acks;

use crate::error::{Error, Result};

/// Where the node listens: a socket address, or `"host:port"` resolved
/// (again) at every connection attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeAddr {
    Socket(SocketAddr),
    HostPort(String),
}

impl From<SocketAddr> for NodeAddr {
    fn from(addr: SocketAddr) -> Self {
        NodeAddr::Socket(addr)
    }
}

impl From<&str> for NodeAddr {
    fn from(host_port: &str) -> Self {
        match host_port.parse() {
            Ok(addr) => NodeAddr::Socket(addr),
            Err(_) => NodeAddr::HostPort(host_port.to_owned()),
        }
    }
}

impl From<String> for NodeAddr {
    fn from(host_port: String) -> Self {
        match host_port.parse() {
            Ok(addr) => NodeAddr::Socket(addr),
            Err(_) => NodeAddr::HostPort(host_port),
        }
    }
}

impl fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeAddr::Socket(addr) => write!(f, "{addr}"),
            NodeAddr::HostPort(host_port) => f.write_str(host_port),
        }
    }
}

/// How to reach and talk to one Sprawl node.
///
/// Build it with [`ClientConfig::new`] and adjust the public fields.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The node's QUIC address.
    pub node: NodeAddr,
    /// The name the node's certificate must be valid for (TLS SNI).
    /// Default `"localhost"`.
    pub server_name: String,
    /// How the node's certificate is verified: against a CA PEM file, or,
    /// only when asked for explicitly, not at all.
    pub trust: ServerTrust,
    /// Stable application name, shown in the node's logs and quotas.
    pub client_id: String,
    /// Opaque credential for the handshake, if the node wants one.
    pub auth_token: Option<Vec<u8>>,
    /// Longest wait for the answer to one request (plus `max_wait` for
    /// fetches). Default 30 s.
    pub request_timeout: Duration,
    /// Longest wait for a QUIC connection and the protocol handshake.
    /// Default 10 s.
    pub connect_timeout: Duration,
    /// First wait before reconnecting after a failed attempt; doubles per
    /// failure (with jitter) up to `reconnect_backoff_max`. Default 50 ms.
    pub reconnect_backoff: Duration,
    /// Default 5 s.
    pub reconnect_backoff_max: Duration,
    /// Largest frame we accept from the node (announced in the handshake;
    /// 0 = the protocol default, 16 MiB). Bounds fetch responses.
    pub frame_bytes_max: u32,
    /// A connection silent this long is dead. Default 30 s.
    pub idle_timeout: Duration,
    /// Ping interval that keeps an idle connection alive. Default 10 s.
    pub keep_alive_interval: Duration,
    /// In a cluster, send produce, fetch, offset and subscribe requests
    /// straight to each partition's leader (one more connection per
    /// leader, to the address the cluster metadata gives) instead of
    /// through `node`, which forwards them. Turn off when only `node` is
    /// reachable from the client's network. Default true; a single node
    /// behaves the same either way.
    pub direct_to_leaders: bool,
}

impl ClientConfig {
    /// A configuration with the defaults above, server name `"localhost"`
    /// and client id `"sprawl-rs"`.
    pub fn new(node: impl Into<NodeAddr>, trust: ServerTrust) -> Self {
        Self {
            node: node.into(),
            server_name: "localhost".to_owned(),
            trust,
            client_id: "sprawl-rs".to_owned(),
            auth_token: None,
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            reconnect_backoff: Duration::from_millis(50),
            reconnect_backoff_max: Duration::from_secs(5),
            frame_bytes_max: 0,
            idle_timeout: Duration::from_secs(30),
            keep_alive_interval: Duration::from_secs(10),
            direct_to_leaders: true,
        }
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.client_id.is_empty() {
            return Err(Error::invalid("client_id", "must not be empty"));
        }
        if self.server_name.is_empty() {
            return Err(Error::invalid("server_name", "must not be empty"));
        }
        if self.request_timeout.is_zero() || self.connect_timeout.is_zero() {
            return Err(Error::invalid(
                "timeout",
                "request_timeout and connect_timeout must be above zero",
            ));
        }
        if self.keep_alive_interval >= self.idle_timeout {
            return Err(Error::invalid(
                "keep_alive_interval",
                format!(
                    "{:?} must be shorter than idle_timeout {:?}",
                    self.keep_alive_interval, self.idle_timeout
                ),
            ));
        }
        Ok(())
    }
}

/// Which partition a record without key and without explicit partition
/// goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeylessPartitioning {
    /// Stay on one partition until its batch is sealed, then move to the
    /// next one: fuller batches than round-robin, same spread over time.
    #[default]
    Sticky,
    /// Each record to the next partition.
    RoundRobin,
}

/// How a [`Producer`](crate::Producer) batches, acknowledges and retries.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// What the node confirms before answering. [`Acks::None`]: no answer
    /// at all (a record counts as sent once written to the stream, without
    /// an offset, and failures on the node go unnoticed). Default
    /// [`Acks::Durable`].
    pub acks: Acks,
    /// A partition's batch is sealed when the next record would take it past
    /// this many bytes (a larger record gets a batch of its own). Default
    /// 1 MiB; also capped by the node's frame limit.
    pub batch_bytes_max: usize,
    /// How long a batch waits for more records once it could be sent.
    /// While a partition has `max_in_flight_per_partition` batches in
    /// flight, records accumulate regardless. Default 5 ms.
    pub linger: Duration,
    /// Attempts after the first for a batch failing with a retryable error.
    /// Default 10.
    pub retries: u32,
    /// First back-off before a retry; doubles per attempt (with jitter),
    /// up to `retry_backoff_max`. A `Throttled` answer's `retry_after_ms`
    /// is honoured when longer. Default 50 ms.
    pub retry_backoff: Duration,
    /// Default 2 s.
    pub retry_backoff_max: Duration,
    /// Batches of one partition in flight at once. 1 (the default) keeps
    /// the partition's records in send order even across retries. Above 1
    /// the node may append concurrent batches in either order (the protocol
    /// has no order between streams), so order is no longer guaranteed;
    /// acknowledgements are still delivered in send order.
    pub max_in_flight_per_partition: usize,
    /// Bytes of records the producer holds (batched, in flight, awaiting
    /// retry). When full, new records wait in line, in call order, until
    /// acknowledgements free room; [`Producer::ready`](crate::Producer::ready)
    /// waits for room. Default 32 MiB.
    pub buffer_bytes_max: usize,
    /// Records with neither key nor partition. Default sticky.
    pub keyless: KeylessPartitioning,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        Self {
            acks: Acks::Durable,
            batch_bytes_max: 1 << 20,
            linger: Duration::from_millis(5),
            retries: 10,
            retry_backoff: Duration::from_millis(50),
            retry_backoff_max: Duration::from_secs(2),
            max_in_flight_per_partition: 1,
            buffer_bytes_max: 32 << 20,
            keyless: KeylessPartitioning::Sticky,
        }
    }
}

impl ProducerConfig {
    pub(crate) fn validate(&self) -> Result<()> {
        if self.batch_bytes_max <= sprawl_storage::BATCH_HEADER_BYTES {
            return Err(Error::invalid(
                "batch_bytes_max",
                format!(
                    "{} bytes leaves no room after the {}-byte batch header",
                    self.batch_bytes_max,
                    sprawl_storage::BATCH_HEADER_BYTES
                ),
            ));
        }
        if self.max_in_flight_per_partition == 0 {
            return Err(Error::invalid(
                "max_in_flight_per_partition",
                "must be at least 1",
            ));
        }
        if self.buffer_bytes_max == 0 {
            return Err(Error::invalid("buffer_bytes_max", "must be above zero"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_addresses_parse_or_stay_names() {
        assert_eq!(
            NodeAddr::from("127.0.0.1:9092"),
            NodeAddr::Socket("127.0.0.1:9092".parse().unwrap())
        );
        assert_eq!(
            NodeAddr::from("broker-1:9092"),
            NodeAddr::HostPort("broker-1:9092".into())
        );
    }

    #[test]
    fn defaults_validate() {
        ProducerConfig::default().validate().unwrap();
        ClientConfig::new("127.0.0.1:1", ServerTrust::InsecureSkipVerification)
            .validate()
            .unwrap();
        let bad = ProducerConfig {
            max_in_flight_per_partition: 0,
            ..Default::default()
        };
        assert!(bad.validate().is_err());
    }
}

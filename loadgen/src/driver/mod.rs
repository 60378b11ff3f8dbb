//! The one small interface both brokers implement, so every workload runs
//! the same code against Sprawl and against NATS JetStream.
//!
//! * A [`Broker`] prepares topics, opens publishers and subscribers, and
//!   says how much it stored (to check counts and measure log bandwidth).
//! * A [`Publisher::publish`] hands one message to the client (awaiting only
//!   the client's own back-pressure) and returns its [`Ack`]: a future that
//!   resolves once the broker acknowledged it as `acks` promises.
//! * A [`Subscriber`] yields the payloads of one partition in order.

pub mod nats;
pub mod sprawl;

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;

use crate::report::TargetInfo;

/// An acknowledgement still to come.
pub type Ack = BoxFuture<'static, anyhow::Result<()>>;

/// What a publish waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AckLevel {
    /// Nothing: the message counts once the client wrote it out.
    None,
    /// The leader stored it (not yet fsynced).
    Leader,
    /// Stored durably (Sprawl: fdatasync'ed; NATS: JetStream PubAck).
    Durable,
}

impl std::fmt::Display for AckLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AckLevel::None => "none",
            AckLevel::Leader => "leader",
            AckLevel::Durable => "durable",
        })
    }
}

/// How a publisher batches and acknowledges.
#[derive(Debug, Clone)]
pub struct PublisherSettings {
    pub acks: AckLevel,
    /// Messages per batch (Sprawl: records per ProduceRequest; NATS:
    /// publishes in flight before awaiting their acks).
    pub batch: usize,
    pub linger: Duration,
    /// The largest message this publisher will send.
    pub message_bytes_max: usize,
    /// Messages in flight at most (bounds the client's buffers).
    pub max_in_flight: usize,
    /// Sprawl: batches of one partition in flight at once (the producer's
    /// `max_in_flight_per_partition`; above 1, order is not guaranteed).
    /// NATS has no such limit.
    pub batches_in_flight_per_partition: usize,
}

/// Where a subscriber starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    Earliest,
    /// Only messages published from now on.
    Latest,
}

/// What one partition holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PartitionState {
    pub messages: u64,
    pub bytes: u64,
}

pub trait Broker: Send + Sync + 'static {
    type Publisher: Publisher;
    type Subscriber: Subscriber;

    fn target(&self) -> TargetInfo;

    /// Creates the topics (each with `partitions` partitions) unless they
    /// exist with at least that many.
    fn prepare(
        &self,
        topics: &[String],
        partitions: u32,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Per topic, per partition (topic-major order).
    fn stored(
        &self,
        topics: &[String],
        partitions: u32,
    ) -> impl Future<Output = anyhow::Result<Vec<PartitionState>>> + Send;

    /// A publisher with its own connection.
    fn publisher(
        &self,
        settings: &PublisherSettings,
    ) -> impl Future<Output = anyhow::Result<Self::Publisher>> + Send;

    /// A subscriber to one partition on consumer connection `connection`
    /// (subscribers of the same connection index share one connection).
    fn subscriber(
        &self,
        connection: usize,
        topic: &str,
        partition: u32,
        start: StartAt,
    ) -> impl Future<Output = anyhow::Result<Self::Subscriber>> + Send;

    fn delete(
        &self,
        topics: &[String],
        partitions: u32,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
}

pub trait Publisher: Send + Sync + 'static {
    /// Hands `payload` for `topic`/`partition` to the client; resolves
    /// when the client took it, into the future of its acknowledgement.
    fn publish(
        &self,
        topic: &str,
        partition: u32,
        payload: Bytes,
    ) -> impl Future<Output = anyhow::Result<Ack>> + Send;

    /// Sends whatever the client still holds back (lingering batches).
    fn flush(&self) -> impl Future<Output = anyhow::Result<()>> + Send;
}

pub trait Subscriber: Send + 'static {
    /// The next payload; `None` when the subscription ended.
    fn next(&mut self) -> impl Future<Output = anyhow::Result<Option<Bytes>>> + Send;
}

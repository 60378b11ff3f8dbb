//! The Rust client of a Sprawl node.
//!
//! One QUIC connection per [`Client`] (TLS verified against a CA file, or
//! explicitly not verified), plus, in a cluster, one per partition leader
//! it talks to (`routing`: produce, fetch, offsets and subscriptions go
//! straight to the leader, anything in doubt through the configured node,
//! which forwards); the protocol of `sprawl-wire` on top: one stream per
//! request, long-lived streams for subscriptions.
//!
//! * [`Client`]: connect, admin calls (topics, metadata, offsets), cheap to
//!   clone and share between tasks.
//! * [`Producer`]: batching per partition, linger, retries with back-off,
//!   per-partition order, bounded buffer; `send` returns a future of the
//!   record's acknowledgement.
//! * [`Consumer`]: `fetch` (pull) and [`Subscription`]s (push, bounded by
//!   credit), consumer-group offsets.
//! * [`Error`]: one error type; [`Error::is_retryable`] says whether trying
//!   again may help.
//!
//! ```no_run
//! use std::time::Duration;
//! use sprawl_client::{
//!     Client, ClientConfig, Consumer, Producer, ProducerConfig, Record, ServerTrust,
//!     StartPosition,
//! };
//!
//! # async fn example() -> Result<(), sprawl_client::Error> {
//! let mut config = ClientConfig::new(
//!     "127.0.0.1:7400",
//!     ServerTrust::CaFile("/etc/sprawl/ca.pem".into()),
//! );
//! config.client_id = "billing".into();
//! let client = Client::connect(config).await?;
//! client.create_topic("orders", 4, None, None).await?;
//!
//! // Send a thousand records without waiting for each: pipelined, batched.
//! let producer = Producer::new(&client, ProducerConfig::default())?;
//! let acks: Vec<_> = (0..1000)
//!     .map(|i| {
//!         let record = Record::new(format!("order {i}")).with_key(format!("customer-{}", i % 10));
//!         producer.send("orders", record)
//!     })
//!     .collect();
//! for ack in acks {
//!     let ack = ack.await?;
//!     println!("partition {} offset {:?}", ack.partition, ack.offset);
//! }
//!
//! // Read partition 0 as consumer group "invoicing", committing as we go.
//! let consumer = Consumer::with_group(&client, "invoicing").with_fallback(StartPosition::Earliest);
//! let mut subscription = consumer.subscribe_group("orders", 0, 1 << 20).await?;
//! while let Some(record) = subscription.next().await {
//!     let record = record?;
//!     println!("{}: {:?}", record.offset, record.value);
//!     consumer.commit("orders", 0, record.offset + 1).await?;
//! }
//!
//! // Or pull: up to 1 MiB, waiting up to a second for new records.
//! let fetched = consumer.fetch("orders", 1, 0, 1 << 20, Duration::from_secs(1)).await?;
//! println!("{} records, next offset {}", fetched.records.len(), fetched.next_offset);
//! # Ok(())
//! # }
//! ```
//!
//! Architecture invariants:
//! * Nothing the node sends can panic this crate: frames are size-checked
//!   and verified by `sprawl-wire`, batches are CRC-checked by
//!   `sprawl-storage` before any record is read.
//! * The producer's decisions (admission, partitioning, batching, retries,
//!   acknowledgement order) are a sans-IO state machine
//!   (`producer::core`); only the driver around it touches tokio.
//! * Within a partition, a producer with one batch in flight never
//!   reorders records, and acknowledges a prefix of what was sent.

mod backoff;
mod client;
mod config;
mod consumer;
mod error;
mod link;
mod producer;
mod records;
mod routing;
mod stream;
mod subscription;
mod types;

pub use client::Client;
pub use config::{Acks, ClientConfig, KeylessPartitioning, NodeAddr, ProducerConfig, ServerTrust};
pub use consumer::{Consumer, Fetched, FollowingSubscription};
pub use error::{Error, Result};
pub use link::NodeIdentity;
pub use producer::{Producer, SendFuture};
pub use records::{ConsumedRecord, Record};
pub use sprawl_wire::{ErrorCode, RemoteError, StartPosition};
pub use subscription::Subscription;
pub use types::{
    BatchAck, ClusterMetadata, NodeInfo, PartitionInfo, PartitionMetadata, RecordAck, TopicInfo,
    TopicMetadata,
};

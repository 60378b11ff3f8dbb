//! Sprawl's thread-per-core runtime.
//!
//! One glommio executor per core; each owns a shard of the topic-partitions
//! outright (their logs, rings, group offsets, counters). A request that
//! arrives on another shard is forwarded over the channel mesh with
//! [`Shard::on`] and answered by the owner. No locks on the data path: the
//! only `Mutex`es hold once-a-second snapshots for the admin endpoint.
//!
//! - [`routing`]: which shard owns a partition (sans-IO).
//! - [`catalog`]: topic catalog, owned by shard 0, replicated to all (sans-IO).
//! - [`group_offsets`]: consumer-group offsets codec and fold (sans-IO).
//! - [`load`]: per-second load samples sent to the node's load thread.
//! - [`partition`]: one owned partition: log, group offsets, reader wake-ups.
//! - [`shard`]: per-shard state and request handlers.
//! - [`runtime`]: starting, readiness, shutdown.

pub mod catalog;
pub mod cold;
pub mod group_offsets;
pub mod load;
pub mod metrics;
pub mod notify;
pub mod partition;
pub mod replication;
pub mod request;
pub mod routing;
pub mod runtime;
pub mod shard;

pub use catalog::{TopicCatalog, TopicConfig};
pub use metrics::{PartitionSnapshot, ShardSnapshot};
pub use request::{
    ClusterTopic, PartitionOffsets, ShardError, ShardReply, ShardRequest, ShardResult,
};
pub use routing::owner_shard;
pub use runtime::{ControlHandle, Runtime, RuntimeConfig, RuntimeError};
pub use shard::{Shard, ShardConfig, TieredConfig};

//! Requests one shard sends another over the channel mesh, and their replies.
//! Everything here is `Send`: it crosses executor threads by value.

use bytes::Bytes;

use crate::catalog::{TopicCatalog, TopicConfig};
use crate::group_offsets::CommittedOffset;

#[derive(Debug)]
pub enum ShardRequest {
    /// Append a producer-encoded batch; `durable` = ack only after fdatasync.
    Produce {
        topic: String,
        partition: u32,
        batch: Bytes,
        durable: bool,
    },
    /// Read from `offset`, waiting up to `wait_ms` for data to arrive.
    Fetch {
        topic: String,
        partition: u32,
        offset: u64,
        bytes_max: usize,
        wait_ms: u32,
    },
    Offsets {
        topic: String,
        partition: u32,
    },
    FindOffsetByTime {
        topic: String,
        partition: u32,
        timestamp_ms: i64,
    },
    CommitOffset {
        group: String,
        topic: String,
        partition: u32,
        offset: u64,
        metadata: String,
    },
    CommittedOffset {
        group: String,
        topic: String,
        partition: u32,
    },
    /// To shard 0, which owns the catalog.
    CreateTopic {
        name: String,
        config: TopicConfig,
    },
    /// To shard 0, which owns the catalog.
    DeleteTopic {
        name: String,
    },
    /// To shard 0: adopt a topic and its partition leaders (`None`: the
    /// topic's deletion) as the cluster's metadata group committed them at
    /// log `index` (see `TopicCatalog::apply_cluster_topic`).
    ApplyClusterTopic {
        name: String,
        topic: Option<ClusterTopic>,
        index: u64,
    },
    /// From shard 0 to every shard: adopt this catalog (if newer), open the
    /// partitions it now owns, drop deleted ones.
    ApplyCatalog(TopicCatalog),
    /// To shard 0, which runs the move: move a partition to shard `to`
    /// while it is being produced to and read (see `shard::moves`).
    MovePartition {
        topic: String,
        partition: u32,
        to: usize,
    },
    /// From shard 0 to a move's source: fence the partition, let its
    /// in-flight writes finish, fdatasync and close it.
    ReleasePartition {
        topic: String,
        partition: u32,
    },
    /// On the partition's Raft leader: move the replica on node `from` to
    /// node `to`, live (see `Replication::move_replica`).
    MoveReplica {
        topic: String,
        partition: u32,
        from: u64,
        to: u64,
    },
}

/// A topic as the cluster's metadata group committed it.
#[derive(Debug, Clone)]
pub struct ClusterTopic {
    pub config: TopicConfig,
    /// Each partition's leader (index = partition).
    pub leaders: Vec<u32>,
    /// Each partition's replica set (index = partition).
    pub replicas: Vec<Vec<u32>>,
}

impl ShardRequest {
    /// The partition a request reads or writes, which decides the shard it
    /// runs on; `None` for catalog and move requests.
    pub fn partition_key(&self) -> Option<(&str, u32)> {
        match self {
            Self::Produce {
                topic, partition, ..
            }
            | Self::Fetch {
                topic, partition, ..
            }
            | Self::Offsets { topic, partition }
            | Self::FindOffsetByTime {
                topic, partition, ..
            }
            | Self::CommitOffset {
                topic, partition, ..
            }
            | Self::CommittedOffset {
                topic, partition, ..
            }
            | Self::MoveReplica {
                topic, partition, ..
            } => Some((topic, *partition)),
            Self::CreateTopic { .. }
            | Self::DeleteTopic { .. }
            | Self::ApplyClusterTopic { .. }
            | Self::ApplyCatalog(_)
            | Self::MovePartition { .. }
            | Self::ReleasePartition { .. } => None,
        }
    }
}

/// Offsets and size of one partition, overall and per storage tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PartitionOffsets {
    /// First offset of any tier.
    pub log_start: u64,
    pub high_watermark: u64,
    pub log_end: u64,
    /// Bytes of the local log.
    pub size_bytes: u64,
    /// The local log holds `local_log_start..log_end`.
    pub local_log_start: u64,
    /// The archive holds `archive_start..archive_end`; both `None` when it
    /// holds nothing or tiered storage is off.
    pub archive_start: Option<u64>,
    pub archive_end: Option<u64>,
    /// Bytes of the archived segments.
    pub archive_bytes: u64,
}

#[derive(Debug)]
pub enum ShardReply {
    Produced {
        base_offset: u64,
        next_offset: u64,
    },
    Fetched {
        batches: Vec<Bytes>,
        offsets: PartitionOffsets,
    },
    Offsets(PartitionOffsets),
    Offset(Option<u64>),
    Committed(Option<CommittedOffset>),
    Catalog(TopicCatalog),
    /// A partition move completed.
    Moved {
        from: usize,
        to: usize,
        /// Log end offset when the source released it.
        log_end: u64,
        duration_ms: u64,
    },
    /// A replica move completed.
    ReplicaMoved(crate::replication::MoveReport),
    Done,
}

/// Why a shard could not serve a request. The node maps each to a wire error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    #[error("unknown topic {0:?}")]
    UnknownTopic(String),
    #[error("topic {topic:?} has no partition {partition}")]
    UnknownPartition { topic: String, partition: u32 },
    #[error("topic {0:?} already exists")]
    TopicExists(String),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("batch of {bytes} bytes exceeds the limit of {bytes_max}")]
    MessageTooLarge { bytes: usize, bytes_max: usize },
    #[error("corrupt batch: {0}")]
    CorruptBatch(String),
    #[error("offset {offset} is out of range [{start}, {end})")]
    OffsetOutOfRange { offset: u64, start: u64, end: u64 },
    #[error("storage error: {0}")]
    Storage(String),
    #[error("disk nearly full, retry later: {0}")]
    DiskFull(String),
    #[error("the node is shutting down")]
    ShuttingDown,
    /// Retryable: the partition is changing shards; a retry reaches its new owner.
    #[error("partition is moving between shards, retry: {0}")]
    PartitionMoving(String),
    /// Retryable: this replica does not lead the partition (an election is
    /// running, or the leader moved); the metadata names the new leader.
    #[error("not the partition leader, retry: {0}")]
    NotLeader(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<sprawl_storage::LogError> for ShardError {
    fn from(e: sprawl_storage::LogError) -> Self {
        use sprawl_storage::LogError as L;
        match e {
            L::InvalidBatch(b) => Self::CorruptBatch(b.to_string()),
            L::BatchTooLarge { bytes, bytes_max } => Self::MessageTooLarge { bytes, bytes_max },
            L::OffsetOutOfRange { offset, start, end } => {
                Self::OffsetOutOfRange { offset, start, end }
            }
            e if e.is_disk_full() => Self::DiskFull(e.to_string()),
            other => Self::Storage(other.to_string()),
        }
    }
}

impl From<crate::catalog::PartitionLookupError> for ShardError {
    fn from(e: crate::catalog::PartitionLookupError) -> Self {
        use crate::catalog::PartitionLookupError as P;
        match e {
            P::UnknownTopic(t) => Self::UnknownTopic(t),
            P::UnknownPartition {
                topic, partition, ..
            } => Self::UnknownPartition { topic, partition },
        }
    }
}

impl From<crate::catalog::CatalogError> for ShardError {
    fn from(e: crate::catalog::CatalogError) -> Self {
        use crate::catalog::CatalogError as C;
        match e {
            C::TopicExists(t) => Self::TopicExists(t),
            C::UnknownTopic(t) => Self::UnknownTopic(t),
            C::MoveInProgress { .. } => Self::PartitionMoving(e.to_string()),
            other => Self::InvalidRequest(other.to_string()),
        }
    }
}

pub type ShardResult = Result<ShardReply, ShardError>;

/// What travels on the mesh.
#[derive(Debug)]
pub enum MeshMessage {
    Request {
        from: usize,
        id: u64,
        request: ShardRequest,
    },
    Response {
        id: u64,
        result: ShardResult,
    },
}

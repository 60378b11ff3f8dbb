//! Owned forms of the node's answers about topics, partitions and the
//! cluster (the wire crate's messages borrow from their frame).

use sprawl_wire::{ErrorInfo, RemoteError};

/// A topic as the node describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    pub name: String,
    pub partition_count: u32,
    pub replication_factor: u16,
    /// Per partition; -1 = unlimited.
    pub retention_bytes: i64,
    /// -1 = unlimited.
    pub retention_ms: i64,
    /// Filled by `describe_topic` (and `list_topics(true)`), empty otherwise.
    pub partitions: Vec<PartitionInfo>,
}

/// One partition's offsets and leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    pub partition: u32,
    /// Why the partition could not be described (the other fields are then
    /// meaningless).
    pub error: Option<RemoteError>,
    pub leader_node_id: Option<u32>,
    pub leader_epoch: u32,
    /// Oldest retained record, in any storage tier.
    pub log_start_offset: u64,
    /// First offset consumers may not read yet.
    pub high_watermark: u64,
    /// Offset the next appended record will get.
    pub log_end_offset: u64,
    /// Bytes on the node's local disk.
    pub size_bytes: u64,
    /// The local log holds `local_log_start_offset..log_end_offset`.
    pub local_log_start_offset: u64,
    /// Bytes of the local log (= `size_bytes`).
    pub local_bytes: u64,
    /// The archive (tiered storage) holds
    /// `archive_start_offset..archive_end_offset`; both `None` when it holds
    /// nothing, the node has no archive, or the node predates these fields.
    /// The ranges may overlap: archived segments stay local until local
    /// retention removes them.
    pub archive_start_offset: Option<u64>,
    pub archive_end_offset: Option<u64>,
    /// Bytes of the archived segments.
    pub archive_bytes: u64,
}

/// The cluster as the node knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterMetadata {
    pub cluster_id: String,
    pub nodes: Vec<NodeInfo>,
    pub topics: Vec<TopicMetadata>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub node_id: u32,
    pub host: String,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMetadata {
    pub name: String,
    pub error: Option<RemoteError>,
    pub partitions: Vec<PartitionMetadata>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMetadata {
    pub partition: u32,
    pub error: Option<RemoteError>,
    pub leader_node_id: Option<u32>,
    pub leader_epoch: u32,
    pub replica_node_ids: Vec<u32>,
    pub in_sync_node_ids: Vec<u32>,
}

/// Where a record went, once the node acknowledged it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RecordAck {
    pub partition: u32,
    /// The record's offset; `None` with [`Acks::None`](crate::Acks::None),
    /// where the node does not answer.
    pub offset: Option<u64>,
}

/// Where a whole batch went (`Client::produce_batch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BatchAck {
    pub partition: u32,
    pub base_offset: u64,
    pub last_offset: u64,
}

pub(crate) fn remote_error(error: Option<ErrorInfo<'_>>) -> Option<RemoteError> {
    error.filter(|e| !e.code.is_ok()).map(RemoteError::from)
}

impl From<&sprawl_wire::TopicInfo<'_>> for TopicInfo {
    fn from(t: &sprawl_wire::TopicInfo<'_>) -> Self {
        Self {
            name: t.name.to_owned(),
            partition_count: t.partition_count,
            replication_factor: t.replication_factor,
            retention_bytes: t.retention_bytes,
            retention_ms: t.retention_ms,
            partitions: t.partitions.iter().map(PartitionInfo::from).collect(),
        }
    }
}

impl From<&sprawl_wire::PartitionInfo<'_>> for PartitionInfo {
    fn from(p: &sprawl_wire::PartitionInfo<'_>) -> Self {
        Self {
            partition: p.partition,
            error: remote_error(p.error),
            leader_node_id: p.leader_node_id,
            leader_epoch: p.leader_epoch,
            log_start_offset: p.log_start_offset,
            high_watermark: p.high_watermark,
            log_end_offset: p.log_end_offset,
            size_bytes: p.size_bytes,
            local_log_start_offset: p.local_log_start_offset,
            local_bytes: p.local_bytes,
            archive_start_offset: p.archive_start_offset,
            archive_end_offset: p.archive_end_offset,
            archive_bytes: p.archive_bytes,
        }
    }
}

impl From<&sprawl_wire::MetadataResponse<'_>> for ClusterMetadata {
    fn from(m: &sprawl_wire::MetadataResponse<'_>) -> Self {
        Self {
            cluster_id: m.cluster_id.to_owned(),
            nodes: m
                .nodes
                .iter()
                .map(|n| NodeInfo {
                    node_id: n.node_id,
                    host: n.host.to_owned(),
                    port: n.port,
                })
                .collect(),
            topics: m
                .topics
                .iter()
                .map(|t| TopicMetadata {
                    name: t.name.to_owned(),
                    error: remote_error(t.error),
                    partitions: t
                        .partitions
                        .iter()
                        .map(|p| PartitionMetadata {
                            partition: p.partition,
                            error: remote_error(p.error),
                            leader_node_id: p.leader_node_id,
                            leader_epoch: p.leader_epoch,
                            replica_node_ids: p.replica_node_ids.clone(),
                            in_sync_node_ids: p.in_sync_node_ids.clone(),
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

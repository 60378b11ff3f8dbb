//! Metadata, CreateTopic, DeleteTopic, ListTopics, DescribeTopic.

use std::rc::Rc;

use bytes::Bytes;
use sprawl_shards::shard::{now_ms, CATALOG_SHARD};
use sprawl_shards::{ShardError, ShardRequest, TopicConfig};
use sprawl_wire::{
    CreateTopicRequest, CreateTopicResponse, DeleteTopicRequest, DeleteTopicResponse,
    DescribeTopicRequest, DescribeTopicResponse, ErrorCode, ErrorInfo, Frame, ListTopicsRequest,
    ListTopicsResponse, MetadataRequest, MetadataResponse, NodeInfo, PartitionInfo,
    PartitionMetadata, TopicInfo, TopicMetadata,
};

use crate::errors::Failure;
use crate::framing::encode;
use crate::handlers::offsets::partition_offsets;
use crate::server::Conn;

/// Partitions a topic gets when the request leaves it at 0.
const PARTITIONS_DEFAULT: u32 = 1;

/// `None`/negative retention means "no limit" on the wire.
fn retention(v: Option<i64>) -> Option<u64> {
    v.and_then(|n| u64::try_from(n).ok())
}

fn wire_retention(v: Option<u64>) -> i64 {
    v.map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX))
}

/// Topic config plus per-partition offsets gathered from the owner shards.
struct DescribedTopic {
    name: String,
    config: TopicConfig,
    partitions: Vec<(u32, Result<sprawl_shards::PartitionOffsets, Failure>)>,
}

async fn describe_topic(
    conn: &Rc<Conn>,
    name: &str,
    config: TopicConfig,
    with_partitions: bool,
) -> DescribedTopic {
    let mut partitions = Vec::new();
    if with_partitions {
        let tasks: Vec<_> = (0..config.partitions)
            .map(|p| {
                let (conn, name) = (conn.clone(), name.to_string());
                glommio::spawn_local(async move { (p, partition_offsets(&conn, &name, p).await) })
            })
            .collect();
        for t in tasks {
            partitions.push(t.await);
        }
    }
    DescribedTopic {
        name: name.to_string(),
        config,
        partitions,
    }
}

fn topic_info<'a>(t: &'a DescribedTopic, node_id: u32) -> TopicInfo<'a> {
    TopicInfo {
        name: &t.name,
        partition_count: t.config.partitions,
        replication_factor: 1,
        retention_bytes: wire_retention(t.config.retention_bytes),
        retention_ms: wire_retention(t.config.retention_ms),
        partitions: t
            .partitions
            .iter()
            .map(|(p, r)| match r {
                Ok(o) => PartitionInfo {
                    partition: *p,
                    error: None,
                    leader_node_id: Some(node_id),
                    leader_epoch: 0,
                    log_start_offset: o.log_start,
                    high_watermark: o.high_watermark,
                    log_end_offset: o.log_end,
                    size_bytes: o.size_bytes,
                    local_log_start_offset: o.local_log_start,
                    local_bytes: o.size_bytes,
                    archive_start_offset: o.archive_start,
                    archive_end_offset: o.archive_end,
                    archive_bytes: o.archive_bytes,
                },
                Err(f) => PartitionInfo {
                    partition: *p,
                    error: Some(f.info()),
                    ..Default::default()
                },
            })
            .collect(),
    }
}

pub async fn create(conn: &Rc<Conn>, id: u64, req: &CreateTopicRequest<'_>) -> Bytes {
    let config = TopicConfig {
        partitions: if req.partition_count == 0 {
            PARTITIONS_DEFAULT
        } else {
            req.partition_count
        },
        retention_bytes: retention(req.retention_bytes),
        retention_ms: retention(req.retention_ms),
        created_ms: now_ms(),
    };
    let result: Result<(), Failure> = async {
        if req.replication_factor.is_some_and(|r| r > 1) {
            return Err(Failure::new(
                ErrorCode::InvalidRequest,
                "replication factor above 1 needs a cluster; this node runs alone",
            ));
        }
        if req.validate_only {
            let mut scratch = conn.shard.catalog().clone();
            scratch
                .create(req.name, config.clone())
                .map_err(ShardError::from)?;
            return Ok(());
        }
        conn.shard
            .on(
                CATALOG_SHARD,
                ShardRequest::CreateTopic {
                    name: req.name.to_string(),
                    config: config.clone(),
                },
            )
            .await?;
        tracing::info!(
            topic = req.name,
            partitions = config.partitions,
            "created topic"
        );
        Ok(())
    }
    .await;
    match result {
        Ok(()) => {
            let described = describe_topic(conn, req.name, config, !req.validate_only).await;
            encode(&Frame::new(
                id,
                CreateTopicResponse {
                    error: None,
                    topic: Some(topic_info(&described, conn.node.node_id)),
                },
            ))
        }
        Err(f) => encode(&Frame::new(
            id,
            CreateTopicResponse {
                error: Some(f.info()),
                topic: None,
            },
        )),
    }
}

pub async fn delete(conn: &Rc<Conn>, id: u64, req: &DeleteTopicRequest<'_>) -> Bytes {
    let result = conn
        .shard
        .on(
            CATALOG_SHARD,
            ShardRequest::DeleteTopic {
                name: req.name.to_string(),
            },
        )
        .await
        .map_err(Failure::from);
    if result.is_ok() {
        tracing::info!(topic = req.name, "deleted topic");
    }
    let failure = result.err();
    encode(&Frame::new(
        id,
        DeleteTopicResponse {
            error: failure.as_ref().map(Failure::info),
        },
    ))
}

pub async fn describe(conn: &Rc<Conn>, id: u64, req: &DescribeTopicRequest<'_>) -> Bytes {
    let config = conn.shard.catalog().get(req.name).cloned();
    let Some(config) = config else {
        let msg = format!("unknown topic {:?}", req.name);
        return encode(&Frame::new(
            id,
            DescribeTopicResponse {
                error: Some(ErrorInfo::new(ErrorCode::UnknownTopic, &msg)),
                topic: None,
            },
        ));
    };
    let described = describe_topic(conn, req.name, config, true).await;
    encode(&Frame::new(
        id,
        DescribeTopicResponse {
            error: None,
            topic: Some(topic_info(&described, conn.node.node_id)),
        },
    ))
}

pub async fn list(conn: &Rc<Conn>, id: u64, req: &ListTopicsRequest) -> Bytes {
    let topics: Vec<(String, TopicConfig)> = conn
        .shard
        .catalog()
        .topics
        .iter()
        .map(|(n, c)| (n.clone(), c.clone()))
        .collect();
    let mut described = Vec::with_capacity(topics.len());
    for (name, config) in topics {
        described.push(describe_topic(conn, &name, config, req.include_partitions).await);
    }
    encode(&Frame::new(
        id,
        ListTopicsResponse {
            error: None,
            topics: described
                .iter()
                .map(|t| topic_info(t, conn.node.node_id))
                .collect(),
        },
    ))
}

pub async fn metadata(conn: &Rc<Conn>, id: u64, req: &MetadataRequest<'_>) -> Bytes {
    let catalog = conn.shard.catalog().clone();
    let names: Vec<String> = if req.topics.is_empty() {
        catalog.topics.keys().cloned().collect()
    } else {
        req.topics.iter().map(|t| t.to_string()).collect()
    };
    let host = conn.node.listen.ip().to_string();
    let unknown: Vec<String> = names
        .iter()
        .map(|n| format!("unknown topic {n:?}"))
        .collect();
    let node_id = conn.node.node_id;
    let topics = names
        .iter()
        .zip(&unknown)
        .map(|(name, unknown_msg)| match catalog.get(name) {
            Some(cfg) => TopicMetadata {
                name,
                error: None,
                partitions: (0..cfg.partitions)
                    .map(|p| PartitionMetadata {
                        partition: p,
                        error: None,
                        leader_node_id: Some(node_id),
                        leader_epoch: 0,
                        replica_node_ids: vec![node_id],
                        in_sync_node_ids: vec![node_id],
                    })
                    .collect(),
            },
            None => TopicMetadata {
                name,
                error: Some(ErrorInfo::new(ErrorCode::UnknownTopic, unknown_msg)),
                partitions: Vec::new(),
            },
        })
        .collect();
    encode(&Frame::new(
        id,
        MetadataResponse {
            error: None,
            cluster_id: "",
            nodes: vec![NodeInfo {
                node_id,
                host: &host,
                port: conn.node.listen.port(),
            }],
            topics,
        },
    ))
}

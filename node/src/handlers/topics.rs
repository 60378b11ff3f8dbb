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

use crate::cluster::protocol::{PeerRequest, PeerResponse, RejectKind, TopicSpec};
use crate::cluster::ClusterHandle;
use crate::errors::Failure;
use crate::framing::encode;
use crate::handlers::offsets::partition_offsets;
use crate::server::Conn;

/// How long a client waits for the metadata group to commit a topic change.
const CLUSTER_CHANGE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// How long a describe waits for another node's part.
const DESCRIBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

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
    /// Leader node per partition (this node's id on a single node).
    leaders: Vec<u32>,
    /// Nodes keeping each partition (1 unless replicated in a cluster).
    replication_factor: u16,
    partitions: Vec<(u32, Result<sprawl_shards::PartitionOffsets, Failure>)>,
}

async fn describe_topic(
    conn: &Rc<Conn>,
    name: &str,
    config: TopicConfig,
    with_partitions: bool,
) -> DescribedTopic {
    let (leaders, replication_factor) = {
        let catalog = conn.shard.catalog();
        let leaders: Vec<u32> = (0..config.partitions)
            .map(|p| catalog.leader_of(name, p).unwrap_or(conn.node.node_id))
            .collect();
        let rf = catalog
            .replicas_of(name, 0)
            .map_or(1, |set| set.len() as u16);
        (leaders, rf)
    };
    let mut partitions = Vec::new();
    if with_partitions {
        // Partitions led elsewhere: one DescribeTopic to each leader.
        let mut remote: std::collections::BTreeMap<u32, Vec<PartitionOffsetsOrFailure>> =
            Default::default();
        let remote_leaders: std::collections::BTreeSet<u32> = leaders
            .iter()
            .copied()
            .filter(|&l| l != conn.node.node_id)
            .collect();
        for leader in remote_leaders {
            remote.insert(
                leader,
                describe_remote(conn, leader, name, config.partitions).await,
            );
        }
        let tasks: Vec<_> = (0..config.partitions)
            .filter(|&p| leaders[p as usize] == conn.node.node_id)
            .map(|p| {
                let (conn, name) = (conn.clone(), name.to_string());
                glommio::spawn_local(async move { (p, partition_offsets(&conn, &name, p).await) })
            })
            .collect();
        for t in tasks {
            partitions.push(t.await);
        }
        for (leader, answers) in remote {
            for (p, answer) in answers.into_iter().enumerate() {
                if leaders[p] == leader {
                    partitions.push((p as u32, answer));
                }
            }
        }
        partitions.sort_by_key(|(p, _)| *p);
    }
    DescribedTopic {
        name: name.to_string(),
        config,
        leaders,
        replication_factor,
        partitions,
    }
}

type PartitionOffsetsOrFailure = Result<sprawl_shards::PartitionOffsets, Failure>;

/// Asks `leader` for the offsets of the partitions it leads (index =
/// partition; the others come back as failures and are not used).
async fn describe_remote(
    conn: &Rc<Conn>,
    leader: u32,
    name: &str,
    partitions: u32,
) -> Vec<PartitionOffsetsOrFailure> {
    let unavailable = |m: String| Failure::new(ErrorCode::LeaderNotAvailable, m);
    let answer: Result<Vec<PartitionOffsetsOrFailure>, Failure> = async {
        let (Some(cluster), Some(forwarder)) = (&conn.node.cluster, &conn.forwarder) else {
            return Err(unavailable(format!("node {leader} leads it")));
        };
        if conn.forwarded.get() {
            return Err(Failure::new(
                ErrorCode::NotLeader,
                format!("node {leader} leads it"),
            ));
        }
        let addr = match cluster.quic_addr(u64::from(leader)) {
            Some((addr, true)) => addr,
            Some((_, false)) => return Err(unavailable(format!("node {leader} is down"))),
            None => return Err(unavailable(format!("no address for node {leader}"))),
        };
        let request = encode(&Frame::new(0, DescribeTopicRequest { name }));
        let bytes = forwarder
            .forward(u64::from(leader), addr, request, true, DESCRIBE_TIMEOUT)
            .await?;
        let limits = sprawl_wire::FrameLimits::default().with_frame_bytes_max(u32::MAX);
        let frame = sprawl_wire::VerifiedFrame::new(bytes, &limits)
            .map_err(|e| unavailable(format!("node {leader}: {e}")))?;
        let decoded = frame
            .decode()
            .map_err(|e| unavailable(format!("node {leader}: {e}")))?;
        let sprawl_wire::Body::DescribeTopicResponse(r) = decoded.body else {
            return Err(unavailable(format!(
                "node {leader} answered something else"
            )));
        };
        let info = r.topic.ok_or_else(|| {
            let why = r.error.map(|e| e.message.to_string()).unwrap_or_default();
            unavailable(format!("node {leader}: {why}"))
        })?;
        let mut out: Vec<PartitionOffsetsOrFailure> = (0..partitions)
            .map(|_| Err(unavailable(format!("node {leader} did not report it"))))
            .collect();
        for p in info.partitions {
            if let Some(slot) = out.get_mut(p.partition as usize) {
                *slot = match p.error {
                    Some(e) => Err(Failure::new(e.code, e.message.to_string())),
                    None => Ok(sprawl_shards::PartitionOffsets {
                        log_start: p.log_start_offset,
                        high_watermark: p.high_watermark,
                        log_end: p.log_end_offset,
                        size_bytes: p.size_bytes,
                        local_log_start: p.local_log_start_offset,
                        archive_start: p.archive_start_offset,
                        archive_end: p.archive_end_offset,
                        archive_bytes: p.archive_bytes,
                    }),
                };
            }
        }
        Ok(out)
    }
    .await;
    match answer {
        Ok(v) => v,
        Err(f) => (0..partitions).map(|_| Err(f.clone())).collect(),
    }
}

fn topic_info(t: &DescribedTopic) -> TopicInfo<'_> {
    TopicInfo {
        name: &t.name,
        partition_count: t.config.partitions,
        replication_factor: t.replication_factor,
        retention_bytes: wire_retention(t.config.retention_bytes),
        retention_ms: wire_retention(t.config.retention_ms),
        partitions: t
            .partitions
            .iter()
            .map(|(p, r)| match r {
                Ok(o) => PartitionInfo {
                    partition: *p,
                    error: None,
                    leader_node_id: t.leaders.get(*p as usize).copied(),
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
                    leader_node_id: t.leaders.get(*p as usize).copied(),
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
        if let (Some(cluster), false) = (&conn.node.cluster, req.validate_only) {
            // The local rules (name, partition count) first: every node
            // must be able to apply what the metadata group commits.
            conn.shard
                .catalog()
                .clone()
                .create(req.name, config.clone())
                .map_err(ShardError::from)?;
            let spec = TopicSpec {
                name: req.name.to_string(),
                partitions: config.partitions,
                replication_factor: req.replication_factor,
                retention_bytes: config.retention_bytes,
                retention_ms: config.retention_ms,
            };
            cluster_change(cluster, PeerRequest::CreateTopic(spec)).await?;
            tracing::info!(
                topic = req.name,
                partitions = config.partitions,
                "created topic through the metadata group"
            );
            return Ok(());
        }
        if req.replication_factor.is_some_and(|r| r > 1) && conn.node.cluster.is_none() {
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
                    topic: Some(topic_info(&described)),
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
    if let Some(cluster) = &conn.node.cluster {
        let name = req.name.to_string();
        let result = cluster_change(cluster, PeerRequest::DeleteTopic { name }).await;
        let failure = result.err();
        return encode(&Frame::new(
            id,
            DeleteTopicResponse {
                error: failure.as_ref().map(Failure::info),
            },
        ));
    }
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

/// Runs a topic change through the cluster's metadata group.
async fn cluster_change(cluster: &ClusterHandle, request: PeerRequest) -> Result<(), Failure> {
    let answer = futures_lite::future::or(async { Some(cluster.change(request).await) }, async {
        glommio::timer::sleep(CLUSTER_CHANGE_TIMEOUT).await;
        None
    })
    .await
    .ok_or_else(|| {
        Failure::new(
            ErrorCode::Timeout,
            "the metadata group did not commit the change in time; it may still take effect",
        )
    })?;
    match answer {
        PeerResponse::Committed { .. } => Ok(()),
        PeerResponse::Rejected { kind, message } => Err(Failure::new(
            match kind {
                RejectKind::TopicExists => ErrorCode::TopicExists,
                RejectKind::UnknownTopic => ErrorCode::UnknownTopic,
                RejectKind::Invalid => ErrorCode::InvalidRequest,
                RejectKind::Unavailable => ErrorCode::LeaderNotAvailable,
            },
            message,
        )),
    }
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
            topic: Some(topic_info(&described)),
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
            topics: described.iter().map(topic_info).collect(),
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
    // The members a client may talk to: this node alone, or every live
    // member gossip knows (with the addresses they advertise).
    let members: Vec<(u32, String, u16)> = match &conn.node.cluster {
        None => vec![(
            conn.node.node_id,
            conn.node.listen.ip().to_string(),
            conn.node.listen.port(),
        )],
        Some(cluster) => cluster
            .routes
            .read()
            .map(|r| {
                r.nodes
                    .iter()
                    .filter(|(_, a)| a.alive)
                    .map(|(id, a)| (*id as u32, a.quic.ip().to_string(), a.quic.port()))
                    .collect()
            })
            .unwrap_or_default(),
    };
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
                    .map(|p| {
                        let leader = catalog.leader_of(name, p).unwrap_or(node_id);
                        let replicas = catalog
                            .replicas_of(name, p)
                            .map_or_else(|| vec![leader], <[u32]>::to_vec);
                        PartitionMetadata {
                            partition: p,
                            error: None,
                            leader_node_id: Some(leader),
                            leader_epoch: 0,
                            replica_node_ids: replicas,
                            // Only the leader knows who is in sync (see
                            // `topic describe --admin`); the leader is.
                            in_sync_node_ids: vec![leader],
                        }
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
            nodes: members
                .iter()
                .map(|(node_id, host, port)| NodeInfo {
                    node_id: *node_id,
                    host,
                    port: *port,
                })
                .collect(),
            topics,
        },
    ))
}

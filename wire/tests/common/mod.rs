//! One sample of every message, with every field set, shared by the tests.

#![allow(dead_code)]

use sprawl_wire::*;

pub const BATCH: &[u8] = b"\x01\x02\x03\x04opaque storage batch bytes\x00\xff";

pub fn error(code: ErrorCode) -> Option<ErrorInfo<'static>> {
    Some(ErrorInfo {
        code,
        message: "partition 3 of topic \"orders\" moved",
        retry_after_ms: Some(250),
        leader_node_id: Some(7),
    })
}

fn partition_info(partition: u32) -> PartitionInfo<'static> {
    PartitionInfo {
        partition,
        error: error(ErrorCode::StorageError),
        leader_node_id: Some(2),
        leader_epoch: 9,
        log_start_offset: 100,
        high_watermark: 200,
        log_end_offset: 210,
        size_bytes: 1 << 40,
        local_log_start_offset: 150,
        local_bytes: 1 << 40,
        archive_start_offset: Some(100),
        archive_end_offset: Some(180),
        archive_bytes: 1 << 41,
    }
}

fn topic_info() -> TopicInfo<'static> {
    TopicInfo {
        name: "orders",
        partition_count: 2,
        replication_factor: 3,
        retention_bytes: -1,
        retention_ms: 7 * 24 * 3600 * 1000,
        partitions: vec![partition_info(0), partition_info(1)],
    }
}

/// Every message with every field set to a non-default value.
pub fn full_samples() -> Vec<Body<'static>> {
    vec![
        HandshakeRequest {
            protocol_version: PROTOCOL_VERSION,
            client_id: "billing-consumer",
            auth_token: Some(b"secret-token"),
            client_software: "sprawl-rs/0.1.0",
            frame_bytes_max: 4 << 20,
        }
        .into(),
        HandshakeResponse {
            error: error(ErrorCode::UnsupportedVersion),
            protocol_version: 1,
            protocol_version_min: 1,
            protocol_version_max: 3,
            server_version: "0.1.0",
            node_id: 4,
            shard_count: 2,
            cluster_id: "test-cluster",
            frame_bytes_max: 16 << 20,
        }
        .into(),
        ErrorResponse {
            error: ErrorInfo::new(ErrorCode::HandshakeRequired, "send HandshakeRequest first"),
        }
        .into(),
        MetadataRequest {
            topics: vec!["orders", "payments", ""],
        }
        .into(),
        MetadataResponse {
            error: error(ErrorCode::Internal),
            cluster_id: "test-cluster",
            nodes: vec![
                NodeInfo {
                    node_id: 1,
                    host: "10.0.0.1",
                    port: 7400,
                },
                NodeInfo {
                    node_id: 2,
                    host: "node-2.sprawl.internal",
                    port: 7401,
                },
            ],
            topics: vec![TopicMetadata {
                name: "orders",
                error: error(ErrorCode::LeaderNotAvailable),
                partitions: vec![PartitionMetadata {
                    partition: 1,
                    error: error(ErrorCode::NotLeader),
                    leader_node_id: Some(2),
                    leader_epoch: 12,
                    replica_node_ids: vec![1, 2, 3],
                    in_sync_node_ids: vec![2, 3],
                }],
            }],
        }
        .into(),
        CreateTopicRequest {
            name: "orders",
            partition_count: 12,
            replication_factor: Some(3),
            retention_bytes: Some(1 << 30),
            retention_ms: Some(-1),
            validate_only: true,
        }
        .into(),
        CreateTopicResponse {
            error: error(ErrorCode::TopicExists),
            topic: Some(topic_info()),
        }
        .into(),
        DeleteTopicRequest { name: "orders" }.into(),
        DeleteTopicResponse {
            error: error(ErrorCode::UnknownTopic),
        }
        .into(),
        ListTopicsRequest {
            include_partitions: true,
        }
        .into(),
        ListTopicsResponse {
            error: error(ErrorCode::Timeout),
            topics: vec![topic_info(), topic_info()],
        }
        .into(),
        DescribeTopicRequest { name: "orders" }.into(),
        DescribeTopicResponse {
            error: error(ErrorCode::Unauthorized),
            topic: Some(topic_info()),
        }
        .into(),
        ProduceRequest {
            topic: "orders",
            target: PartitionTarget::Key(b"customer-42"),
            acks: Acks::Leader,
            timeout_ms: 5000,
            records: BATCH,
        }
        .into(),
        ProduceResponse {
            error: error(ErrorCode::CorruptBatch),
            partition: 3,
            base_offset: 1_000_000,
            last_offset: 1_000_099,
        }
        .into(),
        FetchRequest {
            topic: "orders",
            partition: 3,
            offset: 1_000_000,
            max_bytes: 1 << 20,
            min_bytes: 4096,
            max_wait_ms: 500,
        }
        .into(),
        FetchResponse {
            error: error(ErrorCode::OffsetOutOfRange),
            partition: 3,
            high_watermark: 2_000_000,
            log_start_offset: 10,
            next_offset: 1_000_100,
            batches: BATCH,
        }
        .into(),
        ResolveOffsetRequest {
            topic: "orders",
            partition: 3,
            position: StartPosition::TimestampMs(1_700_000_000_000),
        }
        .into(),
        ResolveOffsetResponse {
            error: error(ErrorCode::UnknownPartition),
            partition: 3,
            offset: 77,
        }
        .into(),
        SubscribeRequest {
            topic: "orders",
            partition: 3,
            start: StartPosition::Offset(u64::MAX),
            credit_bytes: 8 << 20,
        }
        .into(),
        SubscribeResponse {
            error: error(ErrorCode::LimitExceeded),
            subscription_id: 11,
            partition: 3,
            start_offset: 500,
            high_watermark: 600,
            log_start_offset: 5,
        }
        .into(),
        SubscriptionCredit {
            subscription_id: 11,
            credit_bytes: 1 << 20,
        }
        .into(),
        SubscriptionData {
            subscription_id: 11,
            high_watermark: 600,
            log_start_offset: 5,
            next_offset: 550,
            batches: BATCH,
        }
        .into(),
        Unsubscribe {
            subscription_id: 11,
        }
        .into(),
        SubscriptionEnd {
            subscription_id: 11,
            error: error(ErrorCode::ShuttingDown),
            next_offset: 550,
        }
        .into(),
        CommitOffsetRequest {
            group: "billing",
            topic: "orders",
            partition: 3,
            offset: 550,
            metadata: "host=a",
        }
        .into(),
        CommitOffsetResponse {
            error: error(ErrorCode::Unauthenticated),
        }
        .into(),
        CommittedOffsetRequest {
            group: "billing",
            topic: "orders",
            partition: 3,
        }
        .into(),
        CommittedOffsetResponse {
            error: error(ErrorCode::Throttled),
            offset: Some(550),
            metadata: "host=a",
        }
        .into(),
    ]
}

/// Every message with as few fields set as it allows.
pub fn minimal_samples() -> Vec<Body<'static>> {
    vec![
        HandshakeRequest::default().into(),
        HandshakeResponse::default().into(),
        ErrorResponse::default().into(),
        MetadataRequest::default().into(),
        MetadataResponse::default().into(),
        CreateTopicRequest::default().into(),
        CreateTopicResponse::default().into(),
        DeleteTopicRequest::default().into(),
        DeleteTopicResponse::default().into(),
        ListTopicsRequest::default().into(),
        ListTopicsResponse::default().into(),
        DescribeTopicRequest::default().into(),
        DescribeTopicResponse::default().into(),
        ProduceRequest {
            topic: "",
            target: PartitionTarget::Partition(0),
            acks: Acks::None,
            timeout_ms: 0,
            records: &[],
        }
        .into(),
        ProduceResponse::default().into(),
        FetchRequest {
            topic: "",
            partition: 0,
            offset: 0,
            max_bytes: 0,
            min_bytes: 0,
            max_wait_ms: 0,
        }
        .into(),
        FetchResponse::default().into(),
        ResolveOffsetRequest::default().into(),
        ResolveOffsetResponse::default().into(),
        SubscribeRequest::default().into(),
        SubscribeResponse::default().into(),
        SubscriptionCredit::default().into(),
        SubscriptionData::default().into(),
        Unsubscribe::default().into(),
        SubscriptionEnd::default().into(),
        CommitOffsetRequest::default().into(),
        CommitOffsetResponse::default().into(),
        CommittedOffsetRequest::default().into(),
        CommittedOffsetResponse::default().into(),
    ]
}

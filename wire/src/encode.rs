//! Messages to frame bytes (length prefix included).

use bytes::Bytes;
use flatbuffers::{FlatBufferBuilder, UnionWIPOffset, WIPOffset};

use crate::fb;
use crate::limits::{FRAME_BYTES_MAX_CEILING, FRAME_BYTES_MAX_DEFAULT, FRAME_PREFIX_BYTES};
use crate::message::*;
use crate::status::ErrorInfo;
use crate::WireError;

type Fbb<'b> = FlatBufferBuilder<'b>;

/// Encodes frames into one reused buffer, refusing frames larger than the
/// peer accepts (its `frame_bytes_max` from the handshake).
///
/// # Panics
/// Only if a message's tables alone exceed 2 GiB (tens of millions of
/// list entries), which the flatbuffers builder cannot hold; byte and string
/// payloads over the limit are refused before building.
pub struct FrameEncoder {
    fbb: FlatBufferBuilder<'static>,
    frame_bytes_max: u32,
}

impl Default for FrameEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameEncoder {
    /// An encoder for peers with the default 16 MiB limit.
    pub fn new() -> Self {
        Self::with_frame_bytes_max(FRAME_BYTES_MAX_DEFAULT)
    }

    /// `frame_bytes_max` excludes the 4-byte prefix; 0 means the default and
    /// values above [`FRAME_BYTES_MAX_CEILING`] mean the ceiling.
    pub fn with_frame_bytes_max(frame_bytes_max: u32) -> Self {
        let frame_bytes_max = match frame_bytes_max {
            0 => FRAME_BYTES_MAX_DEFAULT,
            n => n.min(FRAME_BYTES_MAX_CEILING),
        };
        Self {
            fbb: FlatBufferBuilder::with_capacity(4096),
            frame_bytes_max,
        }
    }

    pub fn frame_bytes_max(&self) -> u32 {
        self.frame_bytes_max
    }

    /// Encodes `frame`; the returned bytes (prefix included) stay valid
    /// until the next call.
    pub fn encode(&mut self, frame: &Frame<'_>) -> Result<&[u8], WireError> {
        // Refuse obviously oversized input before building: the builder
        // panics past 2 GiB, and there is no point copying 1 GiB to refuse it.
        let lower_bound_bytes = frame.body.encoded_bytes_min();
        if lower_bound_bytes > u64::from(self.frame_bytes_max) {
            return Err(WireError::FrameTooLarge {
                frame_bytes: lower_bound_bytes,
                frame_bytes_max: self.frame_bytes_max,
            });
        }
        self.fbb.reset();
        let body = frame.body.build(&mut self.fbb);
        let root = fb::Frame::create(
            &mut self.fbb,
            &fb::FrameArgs {
                request_id: frame.request_id,
                body_type: frame.body.kind(),
                body: Some(body),
            },
        );
        fb::finish_size_prefixed_frame_buffer(&mut self.fbb, root);
        let data = self.fbb.finished_data();
        let frame_bytes = (data.len() - FRAME_PREFIX_BYTES) as u64;
        if frame_bytes > u64::from(self.frame_bytes_max) {
            return Err(WireError::FrameTooLarge {
                frame_bytes,
                frame_bytes_max: self.frame_bytes_max,
            });
        }
        Ok(data)
    }

    pub fn encode_to_vec(&mut self, frame: &Frame<'_>) -> Result<Vec<u8>, WireError> {
        self.encode(frame).map(<[u8]>::to_vec)
    }

    pub fn encode_to_bytes(&mut self, frame: &Frame<'_>) -> Result<Bytes, WireError> {
        self.encode(frame).map(Bytes::copy_from_slice)
    }
}

impl Frame<'_> {
    /// Encodes into a new buffer with the default 16 MiB limit. Reuse a
    /// [`FrameEncoder`] on hot paths instead.
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        FrameEncoder::new().encode_to_vec(self)
    }

    pub fn encode_bytes(&self) -> Result<Bytes, WireError> {
        self.encode().map(Bytes::from)
    }
}

// ------------------------------------------------------------------ helpers

fn string<'b>(fbb: &mut Fbb<'b>, s: &str) -> WIPOffset<&'b str> {
    fbb.create_string(s)
}

fn opt_string<'b>(fbb: &mut Fbb<'b>, s: &str) -> Option<WIPOffset<&'b str>> {
    (!s.is_empty()).then(|| fbb.create_string(s))
}

fn bytes<'b>(fbb: &mut Fbb<'b>, b: &[u8]) -> WIPOffset<flatbuffers::Vector<'b, u8>> {
    fbb.create_vector(b)
}

fn error_info<'b>(
    fbb: &mut Fbb<'b>,
    info: Option<&ErrorInfo<'_>>,
) -> Option<WIPOffset<fb::ErrorInfo<'b>>> {
    let info = info?;
    let message = opt_string(fbb, info.message);
    Some(fb::ErrorInfo::create(
        fbb,
        &fb::ErrorInfoArgs {
            code: info.code,
            message,
            retry_after_ms: info.retry_after_ms,
            leader_node_id: info.leader_node_id,
        },
    ))
}

fn start_position(position: StartPosition) -> (fb::StartPosition, u64) {
    match position {
        StartPosition::Earliest => (fb::StartPosition::Earliest, 0),
        StartPosition::Latest => (fb::StartPosition::Latest, 0),
        StartPosition::Offset(offset) => (fb::StartPosition::Offset, offset),
        StartPosition::TimestampMs(ms) => (fb::StartPosition::Timestamp, ms),
    }
}

fn acks(acks: Acks) -> fb::Acks {
    match acks {
        Acks::None => fb::Acks::None,
        Acks::Leader => fb::Acks::Leader,
        Acks::Durable => fb::Acks::Durable,
    }
}

/// Smallest encoding of a table referenced from a vector: its offset plus
/// its vtable offset. Only used for the pre-build size check.
const TABLE_BYTES_MIN: u64 = 8;

fn len(s: &[u8]) -> u64 {
    s.len() as u64
}

fn error_len(e: Option<&ErrorInfo<'_>>) -> u64 {
    e.map_or(0, |e| len(e.message.as_bytes()))
}

fn topic_info_len(t: &TopicInfo<'_>) -> u64 {
    len(t.name.as_bytes())
        + t.partitions
            .iter()
            .map(|p| TABLE_BYTES_MIN + error_len(p.error.as_ref()))
            .sum::<u64>()
}

// --------------------------------------------------------------------- body

impl Body<'_> {
    /// A lower bound of the encoded size: the variable-length payload.
    fn encoded_bytes_min(&self) -> u64 {
        let err = error_len(self.error());
        err + match self {
            Body::HandshakeRequest(m) => {
                len(m.client_id.as_bytes())
                    + len(m.client_software.as_bytes())
                    + m.auth_token.map_or(0, len)
            }
            Body::HandshakeResponse(m) => {
                len(m.server_version.as_bytes()) + len(m.cluster_id.as_bytes())
            }
            Body::MetadataRequest(m) => m.topics.iter().map(|t| 4 + len(t.as_bytes())).sum(),
            Body::MetadataResponse(m) => {
                len(m.cluster_id.as_bytes())
                    + m.nodes
                        .iter()
                        .map(|n| TABLE_BYTES_MIN + len(n.host.as_bytes()))
                        .sum::<u64>()
                    + m.topics
                        .iter()
                        .map(|t| {
                            TABLE_BYTES_MIN
                                + len(t.name.as_bytes())
                                + error_len(t.error.as_ref())
                                + t.partitions
                                    .iter()
                                    .map(|p| {
                                        TABLE_BYTES_MIN
                                            + error_len(p.error.as_ref())
                                            + 4 * (p.replica_node_ids.len()
                                                + p.in_sync_node_ids.len())
                                                as u64
                                    })
                                    .sum::<u64>()
                        })
                        .sum::<u64>()
            }
            Body::CreateTopicRequest(m) => len(m.name.as_bytes()),
            Body::CreateTopicResponse(m) => m.topic.as_ref().map_or(0, topic_info_len),
            Body::DeleteTopicRequest(m) => len(m.name.as_bytes()),
            Body::ListTopicsResponse(m) => m
                .topics
                .iter()
                .map(|t| TABLE_BYTES_MIN + topic_info_len(t))
                .sum(),
            Body::DescribeTopicRequest(m) => len(m.name.as_bytes()),
            Body::DescribeTopicResponse(m) => m.topic.as_ref().map_or(0, topic_info_len),
            Body::ProduceRequest(m) => {
                let key = match m.target {
                    PartitionTarget::Key(key) => len(key),
                    PartitionTarget::Partition(_) => 0,
                };
                len(m.topic.as_bytes()) + key + len(m.records)
            }
            Body::FetchRequest(m) => len(m.topic.as_bytes()),
            Body::FetchResponse(m) => len(m.batches),
            Body::ResolveOffsetRequest(m) => len(m.topic.as_bytes()),
            Body::SubscribeRequest(m) => len(m.topic.as_bytes()),
            Body::SubscriptionData(m) => len(m.batches),
            Body::CommitOffsetRequest(m) => {
                len(m.group.as_bytes()) + len(m.topic.as_bytes()) + len(m.metadata.as_bytes())
            }
            Body::CommittedOffsetRequest(m) => len(m.group.as_bytes()) + len(m.topic.as_bytes()),
            Body::CommittedOffsetResponse(m) => len(m.metadata.as_bytes()),
            Body::ErrorResponse(_)
            | Body::DeleteTopicResponse(_)
            | Body::ListTopicsRequest(_)
            | Body::ProduceResponse(_)
            | Body::ResolveOffsetResponse(_)
            | Body::SubscribeResponse(_)
            | Body::SubscriptionCredit(_)
            | Body::Unsubscribe(_)
            | Body::SubscriptionEnd(_)
            | Body::CommitOffsetResponse(_) => 0,
        }
    }

    fn build<'b>(&self, fbb: &mut Fbb<'b>) -> WIPOffset<UnionWIPOffset> {
        match self {
            Body::HandshakeRequest(m) => m.build(fbb).as_union_value(),
            Body::HandshakeResponse(m) => m.build(fbb).as_union_value(),
            Body::ErrorResponse(m) => m.build(fbb).as_union_value(),
            Body::MetadataRequest(m) => m.build(fbb).as_union_value(),
            Body::MetadataResponse(m) => m.build(fbb).as_union_value(),
            Body::CreateTopicRequest(m) => m.build(fbb).as_union_value(),
            Body::CreateTopicResponse(m) => m.build(fbb).as_union_value(),
            Body::DeleteTopicRequest(m) => m.build(fbb).as_union_value(),
            Body::DeleteTopicResponse(m) => m.build(fbb).as_union_value(),
            Body::ListTopicsRequest(m) => m.build(fbb).as_union_value(),
            Body::ListTopicsResponse(m) => m.build(fbb).as_union_value(),
            Body::DescribeTopicRequest(m) => m.build(fbb).as_union_value(),
            Body::DescribeTopicResponse(m) => m.build(fbb).as_union_value(),
            Body::ProduceRequest(m) => m.build(fbb).as_union_value(),
            Body::ProduceResponse(m) => m.build(fbb).as_union_value(),
            Body::FetchRequest(m) => m.build(fbb).as_union_value(),
            Body::FetchResponse(m) => m.build(fbb).as_union_value(),
            Body::ResolveOffsetRequest(m) => m.build(fbb).as_union_value(),
            Body::ResolveOffsetResponse(m) => m.build(fbb).as_union_value(),
            Body::SubscribeRequest(m) => m.build(fbb).as_union_value(),
            Body::SubscribeResponse(m) => m.build(fbb).as_union_value(),
            Body::SubscriptionCredit(m) => m.build(fbb).as_union_value(),
            Body::SubscriptionData(m) => m.build(fbb).as_union_value(),
            Body::Unsubscribe(m) => m.build(fbb).as_union_value(),
            Body::SubscriptionEnd(m) => m.build(fbb).as_union_value(),
            Body::CommitOffsetRequest(m) => m.build(fbb).as_union_value(),
            Body::CommitOffsetResponse(m) => m.build(fbb).as_union_value(),
            Body::CommittedOffsetRequest(m) => m.build(fbb).as_union_value(),
            Body::CommittedOffsetResponse(m) => m.build(fbb).as_union_value(),
        }
    }
}

// ---------------------------------------------------------------- handshake

impl HandshakeRequest<'_> {
    fn build<'b>(&self, fbb: &mut Fbb<'b>) -> WIPOffset<fb::HandshakeRequest<'b>> {
        let client_id = Some(string(fbb, self.client_id));
        let auth_token = self.auth_token.map(|t| bytes(fbb, t));
        let client_software = opt_string(fbb, self.client_software);
        fb::HandshakeRequest::create(
            fbb,
            &fb::HandshakeRequestArgs {
                protocol_version: self.protocol_version,
                client_id,
                auth_token,
                client_software,
                frame_bytes_max: self.frame_bytes_max,
            },
        )
    }
}

impl HandshakeResponse<'_> {
    fn build<'b>(&self, fbb: &mut Fbb<'b>) -> WIPOffset<fb::HandshakeResponse<'b>> {
        let error = error_info(fbb, self.error.as_ref());
        let server_version = opt_string(fbb, self.server_version);
        let cluster_id = opt_string(fbb, self.cluster_id);
        fb::HandshakeResponse::create(
            fbb,
            &fb::HandshakeResponseArgs {
                error,
                protocol_version: self.protocol_version,
                protocol_version_min: self.protocol_version_min,
                protocol_version_max: self.protocol_version_max,
                server_version,
                node_id: self.node_id,
                shard_count: self.shard_count,
                cluster_id,
                frame_bytes_max: self.frame_bytes_max,
            },
        )
    }
}

impl ErrorResponse<'_> {
    fn build<'b>(&self, fbb: &mut Fbb<'b>) -> WIPOffset<fb::ErrorResponse<'b>> {
        let error = error_info(fbb, Some(&self.error));
        fb::ErrorResponse::create(fbb, &fb::ErrorResponseArgs { error })
    }
}

// ----------------------------------------------------------------- metadata

impl MetadataRequest<'_> {
    fn build<'b>(&self, fbb: &mut Fbb<'b>) -> WIPOffset<fb::MetadataRequest<'b>> {
        let topics = (!self.topics.is_empty()).then(|| {
            let names: Vec<_> = self.topics.iter().map(|t| string(fbb, t)).collect();
            fbb.create_vector(&names)
        });
        fb::MetadataRequest::create(fbb, &fb::MetadataRequestArgs { topics })
    }
}

impl NodeInfo<'_> {
    fn build<'b>(&self, fbb: &mut Fbb<'b>) -> WIPOffset<fb::NodeInfo<'b>> {
        let host = Some(string(fbb, self.host));
        fb::NodeInfo::create(
            fbb,
            &fb::NodeInfoArgs {
                node_id: self.node_id,
                host,
                port: self.port,
            },
        )
    }
}

impl PartitionMetadata<'_> {
    fn build<'b>(&self, fbb: &mut Fbb<'b>) -> WIPOffset<fb::PartitionMetadata<'b>> {
        let error = error_info(fbb, self.error.as_ref());
        let replica_node_ids = Some(fbb.create_vector(&self.replica_node_ids));
        let in_sync_node_ids = Some(fbb.create_vector(&self.in_sync_node_ids));
        fb::PartitionMetadata::create(
            fbb,
            &fb::PartitionMetadataArgs {
                partition: self.partition,
                error,
                leader_node_id: self.leader_node_id,
                leader_epoch: self.leader_epoch,
                replica_node_ids,
                in_sync_node_ids,
            },
        )
    }
}

impl TopicMetadata<'_> {
    fn build<'b>(&self, fbb: &mut Fbb<'b>) -> WIPOffset<fb::TopicMetadata<'b>> {
        let name = Some(string(fbb, self.name));
        let error = error_info(fbb, self.error.as_ref());
        let partitions: Vec<_> = self.partitions.iter().map(|p| p.build(fbb)).collect();
        let partitions = Some(fbb.create_vector(&partitions));
        fb::TopicMetadata::create(
            fbb,
            &fb::TopicMetadataArgs {
                name,
                error,
                partitions,
            },
        )
    }
}

impl MetadataResponse<'_> {
    fn build<'b>(&self, fbb: &mut Fbb<'b>) -> WIPOffset<fb::MetadataResponse<'b>> {
        let error = error_info(fbb, self.error.as_ref());
        let cluster_id = opt_string(fbb, self.cluster_id);
        let nodes: Vec<_> = self.nodes.iter().map(|n| n.build(fbb)).collect();
        let nodes = Some(fbb.create_vector(&nodes));
        let topics: Vec<_> = self.topics.iter().map(|t| t.build(fbb)).collect();
        let topics = Some(fbb.create_vector(&topics));
        fb::MetadataResponse::create(
            fbb,
            &fb::MetadataResponseArgs {
                error,
                cluster_id,
                nodes,
                topics,
            },
        )
    }
}

// ------------------------------------------------------------------- topics

impl CreateTopicRequest<'_> {
    fn build<'b>(&self, fbb: &mut Fbb<'b>) -> WIPOffset<fb::CreateTopicRequest<'b>> {
        let name = Some(string(fbb, self.name));
        fb::CreateTopicRequest::create(
            fbb,
            &fb::CreateTopicRequestArgs {
                name,
                partition_count: self.partition_count,
                replication_factor: self.replication_factor,
                retention_bytes: self.retention_bytes,
                retention_ms: self.retention_ms,
                validate_only: self.validate_only,
            },
        )
    }
}

impl PartitionInfo<'_> {
    fn build<'b>(&self, fbb: &mut Fbb<'b>) -> WIPOffset<fb::PartitionInfo<'b>> {
        let error = error_info(fbb, self.error.as_ref());
        fb::PartitionInfo::create(
            fbb,
            &fb::PartitionInfoArgs {
                partition: self.partition,
                error,
                leader_node_id: self.leader_node_id,
                leader_epoch: self.leader_epoch,
                log_start_offset: self.log_start_offset,
                high_watermark: self.high_watermark,
                log_end_offset: self.log_end_offset,
                size_bytes: self.size_bytes,
                local_log_start_offset: self.local_log_start_offset,
                local_bytes: self.local_bytes,
                archive_start_offset: self.archive_start_offset,
                archive_end_offset: self.archive_end_offset,
                archive_bytes: self.archive_bytes,
            },
        )
    }
}

impl TopicInfo<'_> {
    fn build<'b>(&self, fbb: &mut Fbb<'b>) -> WIPOffset<fb::TopicInfo<'b>> {
        let name = Some(string(fbb, self.name));
        let partitions = (!self.partitions.is_empty()).then(|| {
            let partitions: Vec<_> = self.partitions.iter().map(|p| p.build(fbb)).collect();
            fbb.create_vector(&partitions)
        });
        fb::TopicInfo::create(
            fbb,
            &fb::TopicInfoArgs {
                name,
                partition_count: self.partition_count,
                replication_factor: self.replication_factor,
                retention_bytes: self.retention_bytes,
                retention_ms: self.retention_ms,
                partitions,
            },
        )
    }
}

impl CreateTopicResponse<'_> {
    fn build<'b>(&self, fbb: &mut Fbb<'b>) -> WIPOffset<fb::CreateTopicResponse<'b>> {
        let error = error_info(fbb, self.error.as_ref());
        let topic = self.topic.as_ref().map(|t| t.build(fbb));
        fb::CreateTopicResponse::create(fbb, &fb::CreateTopicResponseArgs { error, topic })
    }
}

impl DeleteTopicRequest<'_> {
    fn build<'b>(&self, fbb: &mut Fbb<'b>) -> WIPOffset<fb::DeleteTopicRequest<'b>> {
        let name = Some(string(fbb, self.name));
        fb::DeleteTopicRequest::create(fbb, &fb::DeleteTopicRequestArgs { name })
    }
}

impl DeleteTopicResponse<'_> {
    fn build<'b>(&self, fbb: &mut Fbb<'b>) -> WIPOffset<fb::DeleteTopicResponse<'b>> {
        let error = error_info(fbb, self.error.as_ref());
        fb::DeleteTopicResponse::create(fbb, &fb::DeleteTopicResponseArgs { error })
    }
}

impl ListTopicsRequest {
    fn build<'b>(&self, fbb: &mut Fbb<'b>) -> WIPOffset<fb::ListTopicsRequest<'b>> {
        fb::ListTopicsRequest::create(
            fbb,
            &fb::ListTopicsRequestArgs {
                include_partitions: self.include_partitions,
            },
        )
    }
}

impl ListTopicsResponse<'_> {
    fn build<'b>(&self, fbb: &mut Fbb<'b>) -> WIPOffset<fb::ListTopicsResponse<'b>> {
        let error = error_info(fbb, self.error.as_ref());
        let topics: Vec<_> = self.topics.iter().map(|t| t.build(fbb)).collect();
        let topics = Some(fbb.create_vector(&topics));
        fb::ListTopicsResponse::create(fbb, &fb::ListTopicsResponseArgs { error, topics })
    }
}

impl DescribeTopicRequest<'_> {
    fn build<'b>(&self, fbb: &mut Fbb<'b>) -> WIPOffset<fb::DescribeTopicRequest<'b>> {
        let name = Some(string(fbb, self.name));
        fb::DescribeTopicRequest::create(fbb, &fb::DescribeTopicRequestArgs { name })
    }
}

impl DescribeTopicResponse<'_> {
    fn build<'b>(&self, fbb: &mut Fbb<'b>) -> WIPOffset<fb::DescribeTopicResponse<'b>> {
        let error = error_info(fbb, self.error.as_ref());
        let topic = self.topic.as_ref().map(|t| t.build(fbb));
        fb::DescribeTopicResponse::create(fbb, &fb::DescribeTopicResponseArgs { error, topic })
    }
}

// ------------------------------------------------------------ produce/fetch

impl ProduceRequest<'_> {
    fn build<'b>(&self, fbb: &mut Fbb<'b>) -> WIPOffset<fb::ProduceRequest<'b>> {
        // The batch is the largest part of the frame. Flatbuffers are built
        // back to front, so writing it first places it at the frame's end.
        let records = Some(bytes(fbb, self.records));
        let topic = Some(string(fbb, self.topic));
        let (partition, key) = match self.target {
            PartitionTarget::Partition(p) => (Some(p), None),
            PartitionTarget::Key(key) => (None, Some(bytes(fbb, key))),
        };
        fb::ProduceRequest::create(
            fbb,
            &fb::ProduceRequestArgs {
                topic,
                partition,
                key,
                acks: acks(self.acks),
                timeout_ms: self.timeout_ms,
                records,
            },
        )
    }
}

impl ProduceResponse<'_> {
    fn build<'b>(&self, fbb: &mut Fbb<'b>) -> WIPOffset<fb::ProduceResponse<'b>> {
        let error = error_info(fbb, self.error.as_ref());
        fb::ProduceResponse::create(
            fbb,
            &fb::ProduceResponseArgs {
                error,
                partition: self.partition,
                base_offset: self.base_offset,
                last_offset: self.last_offset,
            },
        )
    }
}

impl FetchRequest<'_> {
    fn build<'b>(&self, fbb: &mut Fbb<'b>) -> WIPOffset<fb::FetchRequest<'b>> {
        let topic = Some(string(fbb, self.topic));
        fb::FetchRequest::create(
            fbb,
            &fb::FetchRequestArgs {
                topic,
                partition: self.partition,
                offset: self.offset,
                max_bytes: self.max_bytes,
                min_bytes: self.min_bytes,
                max_wait_ms: self.max_wait_ms,
            },
        )
    }
}

impl FetchResponse<'_> {
    fn build<'b>(&self, fbb: &mut Fbb<'b>) -> WIPOffset<fb::FetchResponse<'b>> {
        let batches = Some(bytes(fbb, self.batches));
        let error = error_info(fbb, self.error.as_ref());
        fb::FetchResponse::create(
            fbb,
            &fb::FetchResponseArgs {
                error,
                partition: self.partition,
                high_watermark: self.high_watermark,
                log_start_offset: self.log_start_offset,
                next_offset: self.next_offset,
                batches,
            },
        )
    }
}

impl ResolveOffsetRequest<'_> {
    fn build<'b>(&self, fbb: &mut Fbb<'b>) -> WIPOffset<fb::ResolveOffsetRequest<'b>> {
        let topic = Some(string(fbb, self.topic));
        let (position, position_value) = start_position(self.position);
        fb::ResolveOffsetRequest::create(
            fbb,
            &fb::ResolveOffsetRequestArgs {
                topic,
                partition: self.partition,
                position,
                position_value,
            },
        )
    }
}

impl ResolveOffsetResponse<'_> {
    fn build<'b>(&self, fbb: &mut Fbb<'b>) -> WIPOffset<fb::ResolveOffsetResponse<'b>> {
        let error = error_info(fbb, self.error.as_ref());
        fb::ResolveOffsetResponse::create(
            fbb,
            &fb::ResolveOffsetResponseArgs {
                error,
                partition: self.partition,
                offset: self.offset,
            },
        )
    }
}

// ------------------------------------------------------------ subscriptions

impl SubscribeRequest<'_> {
    fn build<'b>(&self, fbb: &mut Fbb<'b>) -> WIPOffset<fb::SubscribeRequest<'b>> {
        let topic = Some(string(fbb, self.topic));
        let (start, start_value) = start_position(self.start);
        fb::SubscribeRequest::create(
            fbb,
            &fb::SubscribeRequestArgs {
                topic,
                partition: self.partition,
                start,
                start_value,
                credit_bytes: self.credit_bytes,
            },
        )
    }
}

impl SubscribeResponse<'_> {
    fn build<'b>(&self, fbb: &mut Fbb<'b>) -> WIPOffset<fb::SubscribeResponse<'b>> {
        let error = error_info(fbb, self.error.as_ref());
        fb::SubscribeResponse::create(
            fbb,
            &fb::SubscribeResponseArgs {
                error,
                subscription_id: self.subscription_id,
                partition: self.partition,
                start_offset: self.start_offset,
                high_watermark: self.high_watermark,
                log_start_offset: self.log_start_offset,
            },
        )
    }
}

impl SubscriptionCredit {
    fn build<'b>(&self, fbb: &mut Fbb<'b>) -> WIPOffset<fb::SubscriptionCredit<'b>> {
        fb::SubscriptionCredit::create(
            fbb,
            &fb::SubscriptionCreditArgs {
                subscription_id: self.subscription_id,
                credit_bytes: self.credit_bytes,
            },
        )
    }
}

impl SubscriptionData<'_> {
    fn build<'b>(&self, fbb: &mut Fbb<'b>) -> WIPOffset<fb::SubscriptionData<'b>> {
        let batches = Some(bytes(fbb, self.batches));
        fb::SubscriptionData::create(
            fbb,
            &fb::SubscriptionDataArgs {
                subscription_id: self.subscription_id,
                high_watermark: self.high_watermark,
                log_start_offset: self.log_start_offset,
                next_offset: self.next_offset,
                batches,
            },
        )
    }
}

impl Unsubscribe {
    fn build<'b>(&self, fbb: &mut Fbb<'b>) -> WIPOffset<fb::Unsubscribe<'b>> {
        fb::Unsubscribe::create(
            fbb,
            &fb::UnsubscribeArgs {
                subscription_id: self.subscription_id,
            },
        )
    }
}

impl SubscriptionEnd<'_> {
    fn build<'b>(&self, fbb: &mut Fbb<'b>) -> WIPOffset<fb::SubscriptionEnd<'b>> {
        let error = error_info(fbb, self.error.as_ref());
        fb::SubscriptionEnd::create(
            fbb,
            &fb::SubscriptionEndArgs {
                subscription_id: self.subscription_id,
                error,
                next_offset: self.next_offset,
            },
        )
    }
}

// --------------------------------------------------------- consumer groups

impl CommitOffsetRequest<'_> {
    fn build<'b>(&self, fbb: &mut Fbb<'b>) -> WIPOffset<fb::CommitOffsetRequest<'b>> {
        let group = Some(string(fbb, self.group));
        let topic = Some(string(fbb, self.topic));
        let metadata = opt_string(fbb, self.metadata);
        fb::CommitOffsetRequest::create(
            fbb,
            &fb::CommitOffsetRequestArgs {
                group,
                topic,
                partition: self.partition,
                offset: self.offset,
                metadata,
            },
        )
    }
}

impl CommitOffsetResponse<'_> {
    fn build<'b>(&self, fbb: &mut Fbb<'b>) -> WIPOffset<fb::CommitOffsetResponse<'b>> {
        let error = error_info(fbb, self.error.as_ref());
        fb::CommitOffsetResponse::create(fbb, &fb::CommitOffsetResponseArgs { error })
    }
}

impl CommittedOffsetRequest<'_> {
    fn build<'b>(&self, fbb: &mut Fbb<'b>) -> WIPOffset<fb::CommittedOffsetRequest<'b>> {
        let group = Some(string(fbb, self.group));
        let topic = Some(string(fbb, self.topic));
        fb::CommittedOffsetRequest::create(
            fbb,
            &fb::CommittedOffsetRequestArgs {
                group,
                topic,
                partition: self.partition,
            },
        )
    }
}

impl CommittedOffsetResponse<'_> {
    fn build<'b>(&self, fbb: &mut Fbb<'b>) -> WIPOffset<fb::CommittedOffsetResponse<'b>> {
        let error = error_info(fbb, self.error.as_ref());
        let metadata = opt_string(fbb, self.metadata);
        fb::CommittedOffsetResponse::create(
            fbb,
            &fb::CommittedOffsetResponseArgs {
                error,
                offset: self.offset,
                metadata,
            },
        )
    }
}

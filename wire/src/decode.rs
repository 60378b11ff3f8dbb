//! Frame bytes to verified views and plain messages.

use bytes::Bytes;

use crate::fb;
use crate::limits::{FrameLimits, FRAME_PREFIX_BYTES};
use crate::message::*;
use crate::status::ErrorInfo;
use crate::{WireError, FILE_IDENTIFIER};

/// Bytes 8..12 of a frame: prefix (4), root offset (4), identifier (4).
const IDENTIFIER_RANGE: core::ops::Range<usize> = 8..12;

/// Decodes exactly one frame (length prefix included) with the default
/// limits. The returned frame borrows from `frame`.
pub fn decode_frame(frame: &[u8]) -> Result<Frame<'_>, WireError> {
    decode_frame_with(frame, &FrameLimits::default())
}

/// [`decode_frame`] with explicit limits.
pub fn decode_frame_with<'a>(
    frame: &'a [u8],
    limits: &FrameLimits,
) -> Result<Frame<'a>, WireError> {
    check_whole_frame(frame, limits)?;
    Frame::from_fb(verify(frame, limits)?)
}

/// Checks that `frame` is exactly one frame within the size limit.
fn check_whole_frame(frame: &[u8], limits: &FrameLimits) -> Result<(), WireError> {
    let Some(prefix) = frame.first_chunk::<FRAME_PREFIX_BYTES>() else {
        return Err(WireError::Truncated {
            received_bytes: frame.len() as u64,
            expected_bytes: FRAME_PREFIX_BYTES as u64,
        });
    };
    let frame_bytes = u32::from_le_bytes(*prefix);
    check_frame_bytes(frame_bytes, limits)?;
    let expected = FRAME_PREFIX_BYTES as u64 + u64::from(frame_bytes);
    let received = frame.len() as u64;
    if received < expected {
        return Err(WireError::Truncated {
            received_bytes: received,
            expected_bytes: expected,
        });
    }
    if received > expected {
        return Err(WireError::TrailingBytes {
            frame_bytes: expected,
            trailing_bytes: received - expected,
        });
    }
    Ok(())
}

pub(crate) fn check_frame_bytes(frame_bytes: u32, limits: &FrameLimits) -> Result<(), WireError> {
    let frame_bytes_max = limits.frame_bytes_max_effective();
    if frame_bytes > frame_bytes_max {
        return Err(WireError::FrameTooLarge {
            frame_bytes: u64::from(frame_bytes),
            frame_bytes_max,
        });
    }
    Ok(())
}

/// Verifies a whole frame whose prefix already matches its length.
fn verify<'a>(frame: &'a [u8], limits: &FrameLimits) -> Result<fb::Frame<'a>, WireError> {
    // Offsets inside the flatbuffer are aligned relative to the start of the
    // prefixed frame, so the verifier must see the prefix too.
    match frame.get(IDENTIFIER_RANGE) {
        Some(id) if id == FILE_IDENTIFIER => {}
        Some(id) => {
            let mut found = [0u8; 4];
            found.copy_from_slice(id);
            return Err(WireError::WrongIdentifier { found });
        }
        None => {
            return Err(flatbuffers::InvalidFlatbuffer::RangeOutOfBounds {
                range: 0..IDENTIFIER_RANGE.end,
                error_trace: Default::default(),
            }
            .into())
        }
    }
    let opts = limits.verifier_options();
    Ok(flatbuffers::size_prefixed_root_with_opts::<fb::Frame>(
        &opts, frame,
    )?)
}

/// A whole frame (length prefix included) that passed the size limit and
/// the verifier. Cheap to clone and `Send`: hand it to the shard that owns
/// the partition and decode it there.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifiedFrame {
    frame: Bytes,
}

impl core::fmt::Debug for VerifiedFrame {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("VerifiedFrame")
            .field("request_id", &self.request_id())
            .field("kind", &self.kind())
            .field("frame_bytes", &self.frame.len())
            .finish()
    }
}

impl VerifiedFrame {
    /// Verifies one whole frame (length prefix included).
    pub fn new(frame: Bytes, limits: &FrameLimits) -> Result<Self, WireError> {
        check_whole_frame(&frame, limits)?;
        verify(&frame, limits)?;
        Ok(Self { frame })
    }

    /// The raw flatbuffers view, without conversion.
    pub fn view(&self) -> fb::Frame<'_> {
        // SAFETY: `self.frame` passed `size_prefixed_root_with_opts` in `new`
        // and `Bytes` is immutable, so the buffer is still a verified Frame.
        unsafe { flatbuffers::size_prefixed_root_unchecked::<fb::Frame>(&self.frame) }
    }

    pub fn request_id(&self) -> u64 {
        self.view().request_id()
    }

    pub fn kind(&self) -> crate::BodyKind {
        self.view().body_type()
    }

    /// The plain message. Fails only on content the verifier cannot judge:
    /// an unknown body type or enum value, or contradictory fields.
    pub fn decode(&self) -> Result<Frame<'_>, WireError> {
        Frame::from_fb(self.view())
    }

    /// The whole frame, length prefix included (e.g. to forward it).
    pub fn as_bytes(&self) -> &Bytes {
        &self.frame
    }

    pub fn into_bytes(self) -> Bytes {
        self.frame
    }

    /// A `Bytes` sharing this frame's memory for `part`, a slice borrowed
    /// from this frame (e.g. `ProduceRequest::records`): hands the batch to
    /// storage without a copy.
    ///
    /// # Panics
    /// If `part` is not inside this frame (a caller bug, never input-driven).
    pub fn share(&self, part: &[u8]) -> Bytes {
        self.frame.slice_ref(part)
    }
}

// ---------------------------------------------------------------- conversion

fn error_info(e: Option<fb::ErrorInfo<'_>>) -> Option<ErrorInfo<'_>> {
    e.map(|e| ErrorInfo {
        code: e.code(),
        message: e.message().unwrap_or(""),
        retry_after_ms: e.retry_after_ms(),
        leader_node_id: e.leader_node_id(),
    })
}

fn start_position(
    message: &'static str,
    field: &'static str,
    kind: fb::StartPosition,
    value: u64,
) -> Result<StartPosition, WireError> {
    Ok(match kind {
        fb::StartPosition::Earliest => StartPosition::Earliest,
        fb::StartPosition::Latest => StartPosition::Latest,
        fb::StartPosition::Offset => StartPosition::Offset(value),
        fb::StartPosition::Timestamp => StartPosition::TimestampMs(value),
        other => return Err(WireError::unknown_enum(message, field, u64::from(other.0))),
    })
}

impl<'a> Frame<'a> {
    pub(crate) fn from_fb(frame: fb::Frame<'a>) -> Result<Self, WireError> {
        // A new union member must get an arm below; this fails to compile
        // until the count here is updated with it.
        const _: () = assert!(fb::Body::ENUM_MAX == 29);

        let request_id = frame.request_id();
        let missing = || WireError::MissingBody { request_id };
        let body = match frame.body_type() {
            fb::Body::NONE => return Err(missing()),
            fb::Body::HandshakeRequest => {
                let m = frame.body_as_handshake_request().ok_or_else(missing)?;
                Body::HandshakeRequest(HandshakeRequest {
                    protocol_version: m.protocol_version(),
                    client_id: m.client_id(),
                    auth_token: m.auth_token().map(|t| t.bytes()),
                    client_software: m.client_software().unwrap_or(""),
                    frame_bytes_max: m.frame_bytes_max(),
                })
            }
            fb::Body::HandshakeResponse => {
                let m = frame.body_as_handshake_response().ok_or_else(missing)?;
                Body::HandshakeResponse(HandshakeResponse {
                    error: error_info(m.error()),
                    protocol_version: m.protocol_version(),
                    protocol_version_min: m.protocol_version_min(),
                    protocol_version_max: m.protocol_version_max(),
                    server_version: m.server_version().unwrap_or(""),
                    node_id: m.node_id(),
                    shard_count: m.shard_count(),
                    cluster_id: m.cluster_id().unwrap_or(""),
                    frame_bytes_max: m.frame_bytes_max(),
                })
            }
            fb::Body::ErrorResponse => {
                let m = frame.body_as_error_response().ok_or_else(missing)?;
                Body::ErrorResponse(ErrorResponse {
                    // `error` is required, so the verifier guarantees it.
                    error: error_info(Some(m.error())).unwrap_or_default(),
                })
            }
            fb::Body::MetadataRequest => {
                let m = frame.body_as_metadata_request().ok_or_else(missing)?;
                Body::MetadataRequest(MetadataRequest {
                    topics: m.topics().map(|t| t.iter().collect()).unwrap_or_default(),
                })
            }
            fb::Body::MetadataResponse => {
                let m = frame.body_as_metadata_response().ok_or_else(missing)?;
                Body::MetadataResponse(MetadataResponse {
                    error: error_info(m.error()),
                    cluster_id: m.cluster_id().unwrap_or(""),
                    nodes: m
                        .nodes()
                        .map(|nodes| nodes.iter().map(node_info).collect())
                        .unwrap_or_default(),
                    topics: m
                        .topics()
                        .map(|topics| topics.iter().map(topic_metadata).collect())
                        .unwrap_or_default(),
                })
            }
            fb::Body::CreateTopicRequest => {
                let m = frame.body_as_create_topic_request().ok_or_else(missing)?;
                Body::CreateTopicRequest(CreateTopicRequest {
                    name: m.name(),
                    partition_count: m.partition_count(),
                    replication_factor: m.replication_factor(),
                    retention_bytes: m.retention_bytes(),
                    retention_ms: m.retention_ms(),
                    validate_only: m.validate_only(),
                })
            }
            fb::Body::CreateTopicResponse => {
                let m = frame.body_as_create_topic_response().ok_or_else(missing)?;
                Body::CreateTopicResponse(CreateTopicResponse {
                    error: error_info(m.error()),
                    topic: m.topic().map(topic_info),
                })
            }
            fb::Body::DeleteTopicRequest => {
                let m = frame.body_as_delete_topic_request().ok_or_else(missing)?;
                Body::DeleteTopicRequest(DeleteTopicRequest { name: m.name() })
            }
            fb::Body::DeleteTopicResponse => {
                let m = frame.body_as_delete_topic_response().ok_or_else(missing)?;
                Body::DeleteTopicResponse(DeleteTopicResponse {
                    error: error_info(m.error()),
                })
            }
            fb::Body::ListTopicsRequest => {
                let m = frame.body_as_list_topics_request().ok_or_else(missing)?;
                Body::ListTopicsRequest(ListTopicsRequest {
                    include_partitions: m.include_partitions(),
                })
            }
            fb::Body::ListTopicsResponse => {
                let m = frame.body_as_list_topics_response().ok_or_else(missing)?;
                Body::ListTopicsResponse(ListTopicsResponse {
                    error: error_info(m.error()),
                    topics: m
                        .topics()
                        .map(|topics| topics.iter().map(topic_info).collect())
                        .unwrap_or_default(),
                })
            }
            fb::Body::DescribeTopicRequest => {
                let m = frame.body_as_describe_topic_request().ok_or_else(missing)?;
                Body::DescribeTopicRequest(DescribeTopicRequest { name: m.name() })
            }
            fb::Body::DescribeTopicResponse => {
                let m = frame
                    .body_as_describe_topic_response()
                    .ok_or_else(missing)?;
                Body::DescribeTopicResponse(DescribeTopicResponse {
                    error: error_info(m.error()),
                    topic: m.topic().map(topic_info),
                })
            }
            fb::Body::ProduceRequest => {
                let m = frame.body_as_produce_request().ok_or_else(missing)?;
                Body::ProduceRequest(produce_request(m)?)
            }
            fb::Body::ProduceResponse => {
                let m = frame.body_as_produce_response().ok_or_else(missing)?;
                Body::ProduceResponse(ProduceResponse {
                    error: error_info(m.error()),
                    partition: m.partition(),
                    base_offset: m.base_offset(),
                    last_offset: m.last_offset(),
                })
            }
            fb::Body::FetchRequest => {
                let m = frame.body_as_fetch_request().ok_or_else(missing)?;
                Body::FetchRequest(FetchRequest {
                    topic: m.topic(),
                    partition: m.partition(),
                    offset: m.offset(),
                    max_bytes: m.max_bytes(),
                    min_bytes: m.min_bytes(),
                    max_wait_ms: m.max_wait_ms(),
                })
            }
            fb::Body::FetchResponse => {
                let m = frame.body_as_fetch_response().ok_or_else(missing)?;
                Body::FetchResponse(FetchResponse {
                    error: error_info(m.error()),
                    partition: m.partition(),
                    high_watermark: m.high_watermark(),
                    log_start_offset: m.log_start_offset(),
                    next_offset: m.next_offset(),
                    batches: m.batches().map(|b| b.bytes()).unwrap_or_default(),
                })
            }
            fb::Body::ResolveOffsetRequest => {
                let m = frame.body_as_resolve_offset_request().ok_or_else(missing)?;
                Body::ResolveOffsetRequest(ResolveOffsetRequest {
                    topic: m.topic(),
                    partition: m.partition(),
                    position: start_position(
                        "ResolveOffsetRequest",
                        "position",
                        m.position(),
                        m.position_value(),
                    )?,
                })
            }
            fb::Body::ResolveOffsetResponse => {
                let m = frame
                    .body_as_resolve_offset_response()
                    .ok_or_else(missing)?;
                Body::ResolveOffsetResponse(ResolveOffsetResponse {
                    error: error_info(m.error()),
                    partition: m.partition(),
                    offset: m.offset(),
                })
            }
            fb::Body::SubscribeRequest => {
                let m = frame.body_as_subscribe_request().ok_or_else(missing)?;
                Body::SubscribeRequest(SubscribeRequest {
                    topic: m.topic(),
                    partition: m.partition(),
                    start: start_position("SubscribeRequest", "start", m.start(), m.start_value())?,
                    credit_bytes: m.credit_bytes(),
                })
            }
            fb::Body::SubscribeResponse => {
                let m = frame.body_as_subscribe_response().ok_or_else(missing)?;
                Body::SubscribeResponse(SubscribeResponse {
                    error: error_info(m.error()),
                    subscription_id: m.subscription_id(),
                    partition: m.partition(),
                    start_offset: m.start_offset(),
                    high_watermark: m.high_watermark(),
                    log_start_offset: m.log_start_offset(),
                })
            }
            fb::Body::SubscriptionCredit => {
                let m = frame.body_as_subscription_credit().ok_or_else(missing)?;
                Body::SubscriptionCredit(SubscriptionCredit {
                    subscription_id: m.subscription_id(),
                    credit_bytes: m.credit_bytes(),
                })
            }
            fb::Body::SubscriptionData => {
                let m = frame.body_as_subscription_data().ok_or_else(missing)?;
                Body::SubscriptionData(SubscriptionData {
                    subscription_id: m.subscription_id(),
                    high_watermark: m.high_watermark(),
                    log_start_offset: m.log_start_offset(),
                    next_offset: m.next_offset(),
                    batches: m.batches().bytes(),
                })
            }
            fb::Body::Unsubscribe => {
                let m = frame.body_as_unsubscribe().ok_or_else(missing)?;
                Body::Unsubscribe(Unsubscribe {
                    subscription_id: m.subscription_id(),
                })
            }
            fb::Body::SubscriptionEnd => {
                let m = frame.body_as_subscription_end().ok_or_else(missing)?;
                Body::SubscriptionEnd(SubscriptionEnd {
                    subscription_id: m.subscription_id(),
                    error: error_info(m.error()),
                    next_offset: m.next_offset(),
                })
            }
            fb::Body::CommitOffsetRequest => {
                let m = frame.body_as_commit_offset_request().ok_or_else(missing)?;
                Body::CommitOffsetRequest(CommitOffsetRequest {
                    group: m.group(),
                    topic: m.topic(),
                    partition: m.partition(),
                    offset: m.offset(),
                    metadata: m.metadata().unwrap_or(""),
                })
            }
            fb::Body::CommitOffsetResponse => {
                let m = frame.body_as_commit_offset_response().ok_or_else(missing)?;
                Body::CommitOffsetResponse(CommitOffsetResponse {
                    error: error_info(m.error()),
                })
            }
            fb::Body::CommittedOffsetRequest => {
                let m = frame
                    .body_as_committed_offset_request()
                    .ok_or_else(missing)?;
                Body::CommittedOffsetRequest(CommittedOffsetRequest {
                    group: m.group(),
                    topic: m.topic(),
                    partition: m.partition(),
                })
            }
            fb::Body::CommittedOffsetResponse => {
                let m = frame
                    .body_as_committed_offset_response()
                    .ok_or_else(missing)?;
                Body::CommittedOffsetResponse(CommittedOffsetResponse {
                    error: error_info(m.error()),
                    offset: m.offset(),
                    metadata: m.metadata().unwrap_or(""),
                })
            }
            other => {
                return Err(WireError::UnknownBody {
                    request_id,
                    body_type: other.0,
                })
            }
        };
        Ok(Frame { request_id, body })
    }
}

fn produce_request(m: fb::ProduceRequest<'_>) -> Result<ProduceRequest<'_>, WireError> {
    let target = match (m.partition(), m.key()) {
        (Some(partition), None) => PartitionTarget::Partition(partition),
        (None, Some(key)) => PartitionTarget::Key(key.bytes()),
        (Some(_), Some(_)) => {
            return Err(WireError::InvalidField {
                message: "ProduceRequest",
                field: "partition",
                reason: "set together with key; set exactly one",
            })
        }
        (None, None) => {
            return Err(WireError::InvalidField {
                message: "ProduceRequest",
                field: "partition",
                reason: "neither partition nor key set; set exactly one",
            })
        }
    };
    let acks = match m.acks() {
        fb::Acks::None => Acks::None,
        fb::Acks::Leader => Acks::Leader,
        fb::Acks::Durable => Acks::Durable,
        other => {
            return Err(WireError::unknown_enum(
                "ProduceRequest",
                "acks",
                u64::from(other.0),
            ))
        }
    };
    Ok(ProduceRequest {
        topic: m.topic(),
        target,
        acks,
        timeout_ms: m.timeout_ms(),
        records: m.records().bytes(),
    })
}

fn node_info(n: fb::NodeInfo<'_>) -> NodeInfo<'_> {
    NodeInfo {
        node_id: n.node_id(),
        host: n.host(),
        port: n.port(),
    }
}

fn partition_metadata(p: fb::PartitionMetadata<'_>) -> PartitionMetadata<'_> {
    PartitionMetadata {
        partition: p.partition(),
        error: error_info(p.error()),
        leader_node_id: p.leader_node_id(),
        leader_epoch: p.leader_epoch(),
        replica_node_ids: p
            .replica_node_ids()
            .map(|ids| ids.iter().collect())
            .unwrap_or_default(),
        in_sync_node_ids: p
            .in_sync_node_ids()
            .map(|ids| ids.iter().collect())
            .unwrap_or_default(),
    }
}

fn topic_metadata(t: fb::TopicMetadata<'_>) -> TopicMetadata<'_> {
    TopicMetadata {
        name: t.name(),
        error: error_info(t.error()),
        partitions: t
            .partitions()
            .map(|ps| ps.iter().map(partition_metadata).collect())
            .unwrap_or_default(),
    }
}

fn partition_info(p: fb::PartitionInfo<'_>) -> PartitionInfo<'_> {
    PartitionInfo {
        partition: p.partition(),
        error: error_info(p.error()),
        leader_node_id: p.leader_node_id(),
        leader_epoch: p.leader_epoch(),
        log_start_offset: p.log_start_offset(),
        high_watermark: p.high_watermark(),
        log_end_offset: p.log_end_offset(),
        size_bytes: p.size_bytes(),
        local_log_start_offset: p.local_log_start_offset(),
        local_bytes: p.local_bytes(),
        archive_start_offset: p.archive_start_offset(),
        archive_end_offset: p.archive_end_offset(),
        archive_bytes: p.archive_bytes(),
    }
}

fn topic_info(t: fb::TopicInfo<'_>) -> TopicInfo<'_> {
    TopicInfo {
        name: t.name(),
        partition_count: t.partition_count(),
        replication_factor: t.replication_factor(),
        retention_bytes: t.retention_bytes(),
        retention_ms: t.retention_ms(),
        partitions: t
            .partitions()
            .map(|ps| ps.iter().map(partition_info).collect())
            .unwrap_or_default(),
    }
}

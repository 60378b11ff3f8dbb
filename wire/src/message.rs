//! The messages as plain Rust values borrowing from a frame buffer (when
//! decoded) or from the caller (when encoded). Field meanings are documented
//! in `schema/sprawl.fbs` and `README.md`; only Rust-specific choices are
//! noted here.
//!
//! Conventions: an absent optional string decodes as `""`, an absent byte
//! vector as `&[]`, an absent list as an empty `Vec`. `error: None` means
//! success.

use crate::status::{ErrorInfo, RemoteError};
use crate::BodyKind;

/// How durable a produced batch must be before the node answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Acks {
    /// No ProduceResponse is sent.
    None,
    /// Answer once the leader appended the batch (not yet fsynced).
    Leader,
    /// Answer once the batch is fsynced (and, with replication, on a quorum).
    #[default]
    Durable,
}

/// Where a subscription starts, or which offset ResolveOffset returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum StartPosition {
    /// The log start offset.
    #[default]
    Earliest,
    /// The high watermark: only records produced from now on.
    Latest,
    /// Exactly this offset.
    Offset(u64),
    /// The first record whose timestamp is at or after this many ms since
    /// the Unix epoch.
    TimestampMs(u64),
}

/// Which partition a ProduceRequest goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PartitionTarget<'a> {
    Partition(u32),
    /// The node picks [`crate::partition_for_key`]`(key, partition_count)`.
    Key(&'a [u8]),
}

/// Who sends a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    ClientToNode,
    NodeToClient,
}

// ---------------------------------------------------------------- handshake

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HandshakeRequest<'a> {
    pub protocol_version: u16,
    pub client_id: &'a str,
    pub auth_token: Option<&'a [u8]>,
    pub client_software: &'a str,
    /// 0 = the default, [`crate::FRAME_BYTES_MAX_DEFAULT`].
    pub frame_bytes_max: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HandshakeResponse<'a> {
    pub error: Option<ErrorInfo<'a>>,
    pub protocol_version: u16,
    pub protocol_version_min: u16,
    pub protocol_version_max: u16,
    pub server_version: &'a str,
    pub node_id: u32,
    pub shard_count: u16,
    pub cluster_id: &'a str,
    pub frame_bytes_max: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ErrorResponse<'a> {
    pub error: ErrorInfo<'a>,
}

// ----------------------------------------------------------------- metadata

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MetadataRequest<'a> {
    /// Empty = every topic.
    pub topics: Vec<&'a str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NodeInfo<'a> {
    pub node_id: u32,
    pub host: &'a str,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PartitionMetadata<'a> {
    pub partition: u32,
    pub error: Option<ErrorInfo<'a>>,
    pub leader_node_id: Option<u32>,
    pub leader_epoch: u32,
    pub replica_node_ids: Vec<u32>,
    pub in_sync_node_ids: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TopicMetadata<'a> {
    pub name: &'a str,
    pub error: Option<ErrorInfo<'a>>,
    pub partitions: Vec<PartitionMetadata<'a>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MetadataResponse<'a> {
    pub error: Option<ErrorInfo<'a>>,
    pub cluster_id: &'a str,
    pub nodes: Vec<NodeInfo<'a>>,
    pub topics: Vec<TopicMetadata<'a>>,
}

// ------------------------------------------------------------------- topics

/// `None` fields take the node's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CreateTopicRequest<'a> {
    pub name: &'a str,
    pub partition_count: u32,
    pub replication_factor: Option<u16>,
    /// -1 = no size limit.
    pub retention_bytes: Option<i64>,
    /// -1 = no time limit.
    pub retention_ms: Option<i64>,
    pub validate_only: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PartitionInfo<'a> {
    pub partition: u32,
    pub error: Option<ErrorInfo<'a>>,
    pub leader_node_id: Option<u32>,
    pub leader_epoch: u32,
    /// First offset of any tier (the archive's start when it is older).
    pub log_start_offset: u64,
    pub high_watermark: u64,
    pub log_end_offset: u64,
    /// Bytes on the node's local disk.
    pub size_bytes: u64,
    /// The local log holds `local_log_start_offset..log_end_offset`.
    pub local_log_start_offset: u64,
    pub local_bytes: u64,
    /// The archive holds `archive_start_offset..archive_end_offset`; both
    /// `None` when it is empty or tiered storage is off (or the node is older).
    pub archive_start_offset: Option<u64>,
    pub archive_end_offset: Option<u64>,
    pub archive_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TopicInfo<'a> {
    pub name: &'a str,
    pub partition_count: u32,
    pub replication_factor: u16,
    /// -1 = no size limit.
    pub retention_bytes: i64,
    /// -1 = no time limit.
    pub retention_ms: i64,
    pub partitions: Vec<PartitionInfo<'a>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CreateTopicResponse<'a> {
    pub error: Option<ErrorInfo<'a>>,
    pub topic: Option<TopicInfo<'a>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeleteTopicRequest<'a> {
    pub name: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeleteTopicResponse<'a> {
    pub error: Option<ErrorInfo<'a>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ListTopicsRequest {
    pub include_partitions: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListTopicsResponse<'a> {
    pub error: Option<ErrorInfo<'a>>,
    pub topics: Vec<TopicInfo<'a>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DescribeTopicRequest<'a> {
    pub name: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DescribeTopicResponse<'a> {
    pub error: Option<ErrorInfo<'a>>,
    pub topic: Option<TopicInfo<'a>>,
}

// ------------------------------------------------------------ produce/fetch

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProduceRequest<'a> {
    pub topic: &'a str,
    pub target: PartitionTarget<'a>,
    pub acks: Acks,
    /// 0 = the node's default.
    pub timeout_ms: u32,
    /// One record batch in storage format, opaque to this crate. To hand it
    /// to storage without a copy use [`crate::VerifiedFrame::share`].
    pub records: &'a [u8],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProduceResponse<'a> {
    pub error: Option<ErrorInfo<'a>>,
    pub partition: u32,
    pub base_offset: u64,
    pub last_offset: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchRequest<'a> {
    pub topic: &'a str,
    pub partition: u32,
    pub offset: u64,
    pub max_bytes: u32,
    /// The schema default is 1; 0 is treated as 1.
    pub min_bytes: u32,
    pub max_wait_ms: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FetchResponse<'a> {
    pub error: Option<ErrorInfo<'a>>,
    pub partition: u32,
    pub high_watermark: u64,
    pub log_start_offset: u64,
    pub next_offset: u64,
    /// Whole record batches, concatenated, in storage format.
    pub batches: &'a [u8],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ResolveOffsetRequest<'a> {
    pub topic: &'a str,
    pub partition: u32,
    pub position: StartPosition,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ResolveOffsetResponse<'a> {
    pub error: Option<ErrorInfo<'a>>,
    pub partition: u32,
    pub offset: u64,
}

// ------------------------------------------------------------ subscriptions

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SubscribeRequest<'a> {
    pub topic: &'a str,
    pub partition: u32,
    pub start: StartPosition,
    pub credit_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SubscribeResponse<'a> {
    pub error: Option<ErrorInfo<'a>>,
    pub subscription_id: u64,
    pub partition: u32,
    pub start_offset: u64,
    pub high_watermark: u64,
    pub log_start_offset: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SubscriptionCredit {
    pub subscription_id: u64,
    pub credit_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SubscriptionData<'a> {
    pub subscription_id: u64,
    pub high_watermark: u64,
    pub log_start_offset: u64,
    pub next_offset: u64,
    pub batches: &'a [u8],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Unsubscribe {
    pub subscription_id: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SubscriptionEnd<'a> {
    pub subscription_id: u64,
    pub error: Option<ErrorInfo<'a>>,
    pub next_offset: u64,
}

// --------------------------------------------------------- consumer groups

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CommitOffsetRequest<'a> {
    pub group: &'a str,
    pub topic: &'a str,
    pub partition: u32,
    /// The next offset the group will consume.
    pub offset: u64,
    pub metadata: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CommitOffsetResponse<'a> {
    pub error: Option<ErrorInfo<'a>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CommittedOffsetRequest<'a> {
    pub group: &'a str,
    pub topic: &'a str,
    pub partition: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CommittedOffsetResponse<'a> {
    pub error: Option<ErrorInfo<'a>>,
    /// `None` when the group never committed for this partition.
    pub offset: Option<u64>,
    pub metadata: &'a str,
}

// -------------------------------------------------------------------- frame

/// One frame: the request id and one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame<'a> {
    pub request_id: u64,
    pub body: Body<'a>,
}

impl<'a> Frame<'a> {
    pub fn new(request_id: u64, body: impl Into<Body<'a>>) -> Self {
        Self {
            request_id,
            body: body.into(),
        }
    }
}

/// Declares `Body` and everything that is a plain function of its variant
/// list, so that the list exists once.
macro_rules! bodies {
    ($( $variant:ident($ty:ty) => $direction:ident, error: $error:tt; )*) => {
        /// The message a frame carries.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum Body<'a> {
            $( $variant($ty), )*
        }

        impl<'a> Body<'a> {
            /// The union discriminant written on the wire.
            pub fn kind(&self) -> BodyKind {
                match self {
                    $( Body::$variant(_) => BodyKind::$variant, )*
                }
            }

            /// Who sends this message.
            pub fn direction(&self) -> Direction {
                match self {
                    $( Body::$variant(_) => Direction::$direction, )*
                }
            }

            /// The error of a response (`None` for requests and successes).
            pub fn error(&self) -> Option<&ErrorInfo<'a>> {
                match self {
                    $( Body::$variant(m) => bodies!(@error m, $error), )*
                }
            }
        }

        $(
            impl<'a> From<$ty> for Body<'a> {
                fn from(message: $ty) -> Self {
                    Body::$variant(message)
                }
            }
        )*
    };
    (@error $m:ident, none) => { { let _ = $m; None } };
    (@error $m:ident, optional) => { $m.error.as_ref() };
    (@error $m:ident, required) => { Some(&$m.error) };
}

bodies! {
    HandshakeRequest(HandshakeRequest<'a>) => ClientToNode, error: none;
    HandshakeResponse(HandshakeResponse<'a>) => NodeToClient, error: optional;
    ErrorResponse(ErrorResponse<'a>) => NodeToClient, error: required;
    MetadataRequest(MetadataRequest<'a>) => ClientToNode, error: none;
    MetadataResponse(MetadataResponse<'a>) => NodeToClient, error: optional;
    CreateTopicRequest(CreateTopicRequest<'a>) => ClientToNode, error: none;
    CreateTopicResponse(CreateTopicResponse<'a>) => NodeToClient, error: optional;
    DeleteTopicRequest(DeleteTopicRequest<'a>) => ClientToNode, error: none;
    DeleteTopicResponse(DeleteTopicResponse<'a>) => NodeToClient, error: optional;
    ListTopicsRequest(ListTopicsRequest) => ClientToNode, error: none;
    ListTopicsResponse(ListTopicsResponse<'a>) => NodeToClient, error: optional;
    DescribeTopicRequest(DescribeTopicRequest<'a>) => ClientToNode, error: none;
    DescribeTopicResponse(DescribeTopicResponse<'a>) => NodeToClient, error: optional;
    ProduceRequest(ProduceRequest<'a>) => ClientToNode, error: none;
    ProduceResponse(ProduceResponse<'a>) => NodeToClient, error: optional;
    FetchRequest(FetchRequest<'a>) => ClientToNode, error: none;
    FetchResponse(FetchResponse<'a>) => NodeToClient, error: optional;
    ResolveOffsetRequest(ResolveOffsetRequest<'a>) => ClientToNode, error: none;
    ResolveOffsetResponse(ResolveOffsetResponse<'a>) => NodeToClient, error: optional;
    SubscribeRequest(SubscribeRequest<'a>) => ClientToNode, error: none;
    SubscribeResponse(SubscribeResponse<'a>) => NodeToClient, error: optional;
    SubscriptionCredit(SubscriptionCredit) => ClientToNode, error: none;
    SubscriptionData(SubscriptionData<'a>) => NodeToClient, error: none;
    Unsubscribe(Unsubscribe) => ClientToNode, error: none;
    SubscriptionEnd(SubscriptionEnd<'a>) => NodeToClient, error: optional;
    CommitOffsetRequest(CommitOffsetRequest<'a>) => ClientToNode, error: none;
    CommitOffsetResponse(CommitOffsetResponse<'a>) => NodeToClient, error: optional;
    CommittedOffsetRequest(CommittedOffsetRequest<'a>) => ClientToNode, error: none;
    CommittedOffsetResponse(CommittedOffsetResponse<'a>) => NodeToClient, error: optional;
}

impl Body<'_> {
    /// `Err` when the message is a response carrying an error code other
    /// than `None`.
    pub fn check(&self) -> Result<(), RemoteError> {
        ErrorInfo::check_opt(self.error())
    }
}

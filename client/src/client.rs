//! [`Client`]: the connection to a node and the admin requests.

use std::sync::Arc;
use std::time::Duration;

use sprawl_wire::{
    Acks, Body, CommitOffsetRequest, CommittedOffsetRequest, CreateTopicRequest,
    DeleteTopicRequest, DescribeTopicRequest, ListTopicsRequest, MetadataRequest, PartitionTarget,
    ProduceRequest, ResolveOffsetRequest, StartPosition,
};

use crate::config::ClientConfig;
use crate::error::{Error, Result};
use crate::link::{body_of, millis, unexpected, Link, NodeIdentity};
use crate::types::{BatchAck, ClusterMetadata, TopicInfo};

/// A connection to one Sprawl node.
///
/// Cheap to clone (an `Arc` inside) and usable from many tasks at once:
/// every request runs on its own QUIC stream of the one connection. If the
/// connection dies, requests in flight fail with a retryable error
/// ([`Error::ConnectionLost`]) and the next request reconnects, after a
/// back-off when the previous attempt failed.
///
/// Must be used inside a tokio runtime (quinn's endpoint runs on it).
#[derive(Clone)]
pub struct Client {
    pub(crate) link: Arc<Link>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("node", &self.link.config().node)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Connects and runs the protocol handshake. Fails at once if the
    /// node is unreachable, its certificate is not trusted
    /// ([`Error::Tls`]) or it refuses the handshake.
    pub async fn connect(config: ClientConfig) -> Result<Client> {
        Ok(Client {
            link: Arc::new(Link::connect(config).await?),
        })
    }

    /// What the node said about itself when the current connection was
    /// made; `None` while disconnected.
    pub fn node(&self) -> Option<NodeIdentity> {
        self.link.node_identity()
    }

    /// The configuration this client was made with.
    pub fn config(&self) -> &ClientConfig {
        self.link.config()
    }

    /// Closes the connection (orderly). Requests in flight fail; a later
    /// request reconnects.
    pub fn close(&self) {
        self.link.close();
    }

    /// Creates a topic. `retention_bytes` (per partition) and
    /// `retention_ms`: `None` = the node's default, `Some(-1)` = unlimited.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        retention_bytes: Option<i64>,
        retention_ms: Option<i64>,
    ) -> Result<TopicInfo> {
        let what = format!("create topic {name:?}");
        let request = CreateTopicRequest {
            name,
            partition_count: partitions,
            replication_factor: None,
            retention_bytes,
            retention_ms,
            validate_only: false,
        };
        let answer = self
            .link
            .call(&what, request.into(), Duration::ZERO)
            .await?;
        match body_of(&what, &answer)? {
            Body::CreateTopicResponse(r) => r
                .topic
                .as_ref()
                .map(TopicInfo::from)
                .ok_or_else(|| Error::protocol(&what, "answer lacks the topic")),
            other => Err(unexpected(&what, other.kind())),
        }
    }

    /// Deletes a topic; its subscriptions end with `UnknownTopic`.
    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        let what = format!("delete topic {name:?}");
        let answer = self
            .link
            .call(&what, DeleteTopicRequest { name }.into(), Duration::ZERO)
            .await?;
        match body_of(&what, &answer)? {
            Body::DeleteTopicResponse(_) => Ok(()),
            other => Err(unexpected(&what, other.kind())),
        }
    }

    /// Every topic; with `include_partitions`, each with its partitions'
    /// offsets (costs the node a visit to every shard).
    pub async fn list_topics(&self, include_partitions: bool) -> Result<Vec<TopicInfo>> {
        let what = "list topics";
        let request = ListTopicsRequest { include_partitions };
        let answer = self.link.call(what, request.into(), Duration::ZERO).await?;
        match body_of(what, &answer)? {
            Body::ListTopicsResponse(r) => Ok(r.topics.iter().map(TopicInfo::from).collect()),
            other => Err(unexpected(what, other.kind())),
        }
    }

    /// One topic with its partitions' offsets.
    pub async fn describe_topic(&self, name: &str) -> Result<TopicInfo> {
        let what = format!("describe topic {name:?}");
        let answer = self
            .link
            .call(&what, DescribeTopicRequest { name }.into(), Duration::ZERO)
            .await?;
        match body_of(&what, &answer)? {
            Body::DescribeTopicResponse(r) => r
                .topic
                .as_ref()
                .map(TopicInfo::from)
                .ok_or_else(|| Error::protocol(&what, "answer lacks the topic")),
            other => Err(unexpected(&what, other.kind())),
        }
    }

    /// Nodes, and leaders and replicas of `topics` (empty = every topic).
    pub async fn metadata(&self, topics: &[&str]) -> Result<ClusterMetadata> {
        let what = "metadata";
        let request = MetadataRequest {
            topics: topics.to_vec(),
        };
        let answer = self.link.call(what, request.into(), Duration::ZERO).await?;
        match body_of(what, &answer)? {
            Body::MetadataResponse(r) => Ok(ClusterMetadata::from(&r)),
            other => Err(unexpected(what, other.kind())),
        }
    }

    /// Turns a position into an offset: `Earliest` = log start, `Latest` =
    /// high watermark, `Offset(o)` = `o` if retained, `TimestampMs(t)` =
    /// first record at or after `t` (the high watermark if none).
    pub async fn resolve_offset(
        &self,
        topic: &str,
        partition: u32,
        position: StartPosition,
    ) -> Result<u64> {
        let what = format!("resolve {position:?} in {topic}/{partition}");
        let request = ResolveOffsetRequest {
            topic,
            partition,
            position,
        };
        let answer = self
            .link
            .call(&what, request.into(), Duration::ZERO)
            .await?;
        match body_of(&what, &answer)? {
            Body::ResolveOffsetResponse(r) => Ok(r.offset),
            other => Err(unexpected(&what, other.kind())),
        }
    }

    /// Stores `offset`, the **next** offset `group` will consume.
    pub async fn commit_offset(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        offset: u64,
    ) -> Result<()> {
        let what = format!("commit offset {offset} of group {group:?} in {topic}/{partition}");
        let request = CommitOffsetRequest {
            group,
            topic,
            partition,
            offset,
            metadata: "",
        };
        let answer = self
            .link
            .call(&what, request.into(), Duration::ZERO)
            .await?;
        match body_of(&what, &answer)? {
            Body::CommitOffsetResponse(_) => Ok(()),
            other => Err(unexpected(&what, other.kind())),
        }
    }

    /// The offset `group` committed, `None` if it never did.
    pub async fn committed_offset(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Option<u64>> {
        let what = format!("committed offset of group {group:?} in {topic}/{partition}");
        let request = CommittedOffsetRequest {
            group,
            topic,
            partition,
        };
        let answer = self
            .link
            .call(&what, request.into(), Duration::ZERO)
            .await?;
        match body_of(&what, &answer)? {
            Body::CommittedOffsetResponse(r) => Ok(r.offset),
            other => Err(unexpected(&what, other.kind())),
        }
    }

    /// Sends one encoded record batch (storage format, base offset 0, see
    /// `sprawl_storage::BatchBuilder`) as one ProduceRequest, without
    /// retries. `Ok(None)` with [`Acks::None`]. The [`Producer`] builds on
    /// this; use it directly only to send pre-encoded batches.
    ///
    /// [`Producer`]: crate::Producer
    pub async fn produce_batch(
        &self,
        topic: &str,
        partition: u32,
        acks: Acks,
        batch: &[u8],
    ) -> Result<Option<BatchAck>> {
        let what = format!("produce {} bytes to {topic}/{partition}", batch.len());
        let request = ProduceRequest {
            topic,
            target: PartitionTarget::Partition(partition),
            acks,
            timeout_ms: produce_timeout_ms(self.link.config().request_timeout),
            records: batch,
        };
        if acks == Acks::None {
            self.link.send_unanswered(&what, request.into()).await?;
            return Ok(None);
        }
        let answer = self
            .link
            .call(&what, request.into(), Duration::ZERO)
            .await?;
        match body_of(&what, &answer)? {
            Body::ProduceResponse(r) => {
                if r.partition != partition || r.last_offset < r.base_offset {
                    return Err(Error::protocol(
                        &what,
                        format!(
                            "answer names partition {} offsets {}..={}",
                            r.partition, r.base_offset, r.last_offset
                        ),
                    ));
                }
                Ok(Some(BatchAck {
                    partition: r.partition,
                    base_offset: r.base_offset,
                    last_offset: r.last_offset,
                }))
            }
            other => Err(unexpected(&what, other.kind())),
        }
    }
}

/// The node's produce timeout: a tenth below ours, so that its `Timeout`
/// answer arrives before we give up on the stream.
fn produce_timeout_ms(request_timeout: Duration) -> u32 {
    let node_timeout = request_timeout.saturating_sub(request_timeout / 10);
    u32::try_from(millis(node_timeout))
        .unwrap_or(u32::MAX)
        .max(1)
}

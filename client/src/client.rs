//! [`Client`]: the connection to a node and the admin requests, and the
//! choice of the link each partition request goes on (the leader's, see
//! [`crate::routing`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sprawl_wire::{
    Acks, Body, CommitOffsetRequest, CommittedOffsetRequest, CreateTopicRequest,
    DeleteTopicRequest, DescribeTopicRequest, ListTopicsRequest, MetadataRequest, PartitionTarget,
    ProduceRequest, ResolveOffsetRequest, StartPosition,
};

use crate::config::{ClientConfig, NodeAddr};
use crate::error::{Error, Result};
use crate::link::{body_of, millis, unexpected, Link, NodeIdentity};
use crate::routing::{Route, Routing};
use crate::types::{BatchAck, ClusterMetadata, TopicInfo};

/// A connection to one Sprawl node (the bootstrap node), and in a cluster
/// to the leaders of the partitions it uses.
///
/// Cheap to clone (an `Arc` inside) and usable from many tasks at once:
/// every request runs on its own QUIC stream of its node's connection. If
/// a connection dies, requests in flight fail with a retryable error
/// ([`Error::ConnectionLost`]) and the next request reconnects, after a
/// back-off when the previous attempt failed.
///
/// In a cluster (the node's metadata lists several members), produce,
/// fetch, offset and subscribe requests go straight to the partition's
/// leader, over one more connection per leader, opened on first use (see
/// [`ClientConfig::direct_to_leaders`]); admin requests stay on the
/// bootstrap node. The leaders are looked up on a topic's first partition
/// request and again after an answer says they moved (`NotLeader`,
/// `LeaderNotAvailable`) or a leader's connection failed; meanwhile, and
/// whenever in doubt, requests go through the bootstrap node, which
/// forwards them.
///
/// Must be used inside a tokio runtime (quinn's endpoint runs on it).
#[derive(Clone)]
pub struct Client {
    /// The bootstrap node's link: admin requests, metadata, and partition
    /// requests whose leader is unknown, unreachable or the node itself.
    pub(crate) link: Arc<Link>,
    cluster: Arc<Cluster>,
}

/// The cluster side of a client: the routing cache and the leaders' links.
struct Cluster {
    routing: Mutex<Routing>,
    /// Serialises metadata fetches, so that the many requests that find a
    /// topic due for a refresh at once (a producer's first batches, every
    /// in-flight batch of a moved partition) wait for one fetch instead of
    /// each making their own.
    refreshing: tokio::sync::Mutex<()>,
    /// One lazily connected link per leader node id.
    links: Mutex<HashMap<u32, Arc<Link>>>,
}

/// The link one partition request goes on; `node_id` is set when it is a
/// leader's link rather than the bootstrap link.
pub(crate) struct Target {
    pub link: Arc<Link>,
    pub node_id: Option<u32>,
}

/// Reports how requests on a route ended, for a request that outlives the
/// call that routed it (a subscription).
#[derive(Clone)]
pub(crate) struct RouteFeedback {
    client: Client,
    topic: String,
    node_id: Option<u32>,
}

impl RouteFeedback {
    pub fn failed(&self, error: &Error) {
        self.client.feedback(&self.topic, self.node_id, error);
    }
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
        let link = Arc::new(Link::connect(config).await?);
        let mut routing = Routing::new();
        if let Some(node) = link.node_identity() {
            routing.set_bootstrap(node.node_id, node.addr);
        }
        Ok(Client {
            link,
            cluster: Arc::new(Cluster {
                routing: Mutex::new(routing),
                refreshing: tokio::sync::Mutex::new(()),
                links: Mutex::new(HashMap::new()),
            }),
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

    /// Closes the connection (orderly), and those to partition leaders.
    /// Requests in flight fail; a later request reconnects.
    pub fn close(&self) {
        self.link.close();
        let leaders: Vec<Arc<Link>> = self.links().values().cloned().collect();
        for link in leaders {
            link.close();
        }
    }

    fn routing(&self) -> MutexGuard<'_, Routing> {
        // Nothing panics while it is held; a poisoned lock still holds a
        // consistent cache.
        self.cluster
            .routing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn links(&self) -> MutexGuard<'_, HashMap<u32, Arc<Link>>> {
        self.cluster.links.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bootstrap(&self) -> Target {
        Target {
            link: self.link.clone(),
            node_id: None,
        }
    }

    /// The link a request for `topic`/`partition` goes on: the leader's
    /// when the metadata names one that can be reached directly, else the
    /// bootstrap link. Fetches the topic's metadata first when it is
    /// missing or stale (at most once per [`crate::routing::REFRESH_INTERVAL`]).
    /// Never fails: whatever goes wrong here, the bootstrap node can still
    /// serve the request by forwarding it.
    pub(crate) async fn target(&self, topic: &str, partition: u32) -> Target {
        if !self.link.config().direct_to_leaders {
            return self.bootstrap();
        }
        let mut route = self.routing().route(topic, partition, Instant::now());
        if route == Route::Refresh {
            let _one_at_a_time = self.cluster.refreshing.lock().await;
            // Another task may have refreshed while this one waited.
            route = self.routing().route(topic, partition, Instant::now());
            if route == Route::Refresh {
                self.refresh(topic).await;
                route = self.routing().route(topic, partition, Instant::now());
            }
        }
        let Route::Leader { node_id, addr } = route else {
            return self.bootstrap();
        };
        let link = self.leader_link(node_id, addr);
        // Connected before the request is sent, so that a leader that
        // cannot be reached costs the request only the attempt: it goes
        // through the bootstrap node instead, which forwards it (or
        // answers `LeaderNotAvailable`, retryable, if the leader is down).
        match link.session().await {
            Ok(_) => Target {
                link,
                node_id: Some(node_id),
            },
            Err(e) => {
                tracing::debug!(
                    topic, partition, node_id, %addr, error = %e,
                    "leader unreachable; going through the bootstrap node"
                );
                self.feedback(topic, Some(node_id), &e);
                self.bootstrap()
            }
        }
    }

    /// Fetches `topic`'s metadata from the bootstrap node into the cache.
    async fn refresh(&self, topic: &str) {
        let fetched = self.metadata(&[topic]).await;
        let bootstrap = self.link.node_identity();
        let mut routing = self.routing();
        if let Some(node) = bootstrap {
            routing.set_bootstrap(node.node_id, node.addr);
        }
        match fetched {
            Ok(metadata) => routing.apply(topic, &metadata, Instant::now()),
            Err(e) => {
                tracing::debug!(topic, error = %e, "metadata refresh failed");
                routing.refresh_failed(topic, Instant::now());
            }
        }
    }

    /// The link to leader `node_id` at `addr`, created (not connected) on
    /// first use, replaced if the node's address changed.
    fn leader_link(&self, node_id: u32, addr: SocketAddr) -> Arc<Link> {
        let mut links = self.links();
        match links.get(&node_id) {
            Some(link) if link.config().node == NodeAddr::Socket(addr) => link.clone(),
            _ => {
                let link = Arc::new(self.link.sibling(addr));
                links.insert(node_id, link.clone());
                link
            }
        }
    }

    /// Learns from a failed partition request: an answer saying the
    /// leaders moved marks the topic stale; a leader's link that failed
    /// also bypasses that node for a while. Either way the retries go
    /// through the bootstrap node until the metadata is refreshed.
    pub(crate) fn feedback(&self, topic: &str, node_id: Option<u32>, error: &Error) {
        let link_failed = node_id.filter(|_| error.is_link_failure());
        if !error.refreshes_metadata() && link_failed.is_none() {
            return;
        }
        let mut routing = self.routing();
        routing.mark_stale(topic);
        if let Some(node_id) = link_failed {
            routing.node_failed(node_id, Instant::now());
        }
    }

    /// `result` of a request sent on `target`, after [`Client::feedback`].
    pub(crate) fn checked<T>(&self, topic: &str, target: &Target, result: Result<T>) -> Result<T> {
        if let Err(e) = &result {
            self.feedback(topic, target.node_id, e);
        }
        result
    }

    /// Feedback for a request that outlives the routing call.
    pub(crate) fn route_feedback(&self, topic: &str, target: &Target) -> RouteFeedback {
        RouteFeedback {
            client: self.clone(),
            topic: topic.to_owned(),
            node_id: target.node_id,
        }
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
        self.create_topic_replicated(name, partitions, None, retention_bytes, retention_ms)
            .await
    }

    /// [`Self::create_topic`] with a replication factor (`None`: the
    /// cluster's default, 3 on clusters of 3 or more nodes, else 1).
    pub async fn create_topic_replicated(
        &self,
        name: &str,
        partitions: u32,
        replication_factor: Option<u16>,
        retention_bytes: Option<i64>,
        retention_ms: Option<i64>,
    ) -> Result<TopicInfo> {
        let what = format!("create topic {name:?}");
        let request = CreateTopicRequest {
            name,
            partition_count: partitions,
            replication_factor,
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
        let target = self.target(topic, partition).await;
        let sent = target
            .link
            .call(&what, request.into(), Duration::ZERO)
            .await;
        let answer = self.checked(topic, &target, sent)?;
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
        let target = self.target(topic, partition).await;
        let sent = target
            .link
            .call(&what, request.into(), Duration::ZERO)
            .await;
        let answer = self.checked(topic, &target, sent)?;
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
        let target = self.target(topic, partition).await;
        let sent = target
            .link
            .call(&what, request.into(), Duration::ZERO)
            .await;
        let answer = self.checked(topic, &target, sent)?;
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
        let target = self.target(topic, partition).await;
        if acks == Acks::None {
            let sent = target.link.send_unanswered(&what, request.into()).await;
            self.checked(topic, &target, sent)?;
            return Ok(None);
        }
        let sent = target
            .link
            .call(&what, request.into(), Duration::ZERO)
            .await;
        let answer = self.checked(topic, &target, sent)?;
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

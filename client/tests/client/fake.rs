//! A fake Sprawl node for the client's tests: a quinn server on tokio
//! speaking the wire protocol, with partitions kept as in-memory lists of
//! batches. It can fail produce requests on demand, hold them until told
//! to go on, and checks subscription credit as a real node would count it.
//! Several fakes can pose as a cluster ([`FakeNode::set_cluster`]): their
//! metadata then lists the members and a leader per partition, but each
//! serves whatever it is sent (no forwarding), so a test sees which node
//! each request went to.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use quinn::crypto::rustls::QuicServerConfig;
use quinn::{RecvStream, SendStream, VarInt};
use sprawl_client::{ClientConfig, ServerTrust};
use sprawl_io::quic::{generate_self_signed, CertPaths, TlsIdentity};
use sprawl_storage::batch::{restamp, validate_incoming, BatchView};
use sprawl_wire::*;
use tokio::sync::{mpsc, watch};

/// What the fake does with the next produce request instead of appending.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Process the request normally.
    Pass,
    /// Answer with this error, append nothing.
    Answer(ErrorCode),
    /// Answer `Throttled` with `retry_after_ms`.
    Throttle(u32),
    /// Close the whole connection (the client sees it lost).
    CloseConnection,
}

/// How a subscription used its credit, as the fake counted it.
#[derive(Debug, Clone, Default)]
pub struct CreditStats {
    pub window_bytes: u64,
    pub granted_bytes: u64,
    pub sent_bytes: u64,
    pub largest_batch_bytes: u64,
    /// Most credit the fake held at once.
    pub credit_bytes_max: u64,
    pub violations: Vec<String>,
}

struct Partition {
    /// (base offset, batch bytes), restamped.
    batches: Vec<(u64, Bytes)>,
    log_end: u64,
}

struct Topic {
    partitions: Vec<Partition>,
    retention_bytes: i64,
    retention_ms: i64,
}

/// The cluster a fake claims to be part of, as its metadata tells it.
#[derive(Debug, Clone)]
pub struct ClusterView {
    /// (node id, client address) of every member.
    pub nodes: Vec<(u32, SocketAddr)>,
    /// Partition `p` of every topic is led by `leaders[p % leaders.len()]`.
    pub leaders: Vec<u32>,
}

#[derive(Default)]
struct State {
    topics: HashMap<String, Topic>,
    commits: HashMap<(String, String, u32), u64>,
    produce_faults: VecDeque<Fault>,
    /// (partition, record count) of every produce request processed.
    produce_log: Vec<(u32, u32)>,
    subscriptions: Vec<Arc<Mutex<CreditStats>>>,
    next_subscription_id: u64,
    cluster: Option<ClusterView>,
    metadata_requests: u64,
}

struct Inner {
    node_id: u32,
    state: Mutex<State>,
    frame_bytes_max: u32,
    /// Bumped on every append.
    appended: watch::Sender<u64>,
    /// Produce requests received (before the gate).
    produce_received: watch::Sender<u64>,
    /// Produce requests wait while this is false.
    produce_gate: watch::Sender<bool>,
    connections: Mutex<Vec<quinn::Connection>>,
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }
}

pub struct FakeNode {
    pub addr: SocketAddr,
    /// The node's self-signed certificate, which is its own CA.
    pub ca_path: PathBuf,
    identity: CertPaths,
    inner: Arc<Inner>,
    endpoint: quinn::Endpoint,
    _dir: tempfile::TempDir,
}

impl Drop for FakeNode {
    fn drop(&mut self) {
        self.endpoint
            .close(VarInt::from_u32(0), b"fake node stopped");
    }
}

impl FakeNode {
    pub async fn start() -> FakeNode {
        Self::start_with_frame_limit(FRAME_BYTES_MAX_DEFAULT).await
    }

    pub async fn start_with_frame_limit(frame_bytes_max: u32) -> FakeNode {
        Self::start_full(1, frame_bytes_max, None).await
    }

    /// A fake that introduces itself as node `node_id`.
    pub async fn start_node(node_id: u32) -> FakeNode {
        Self::start_full(node_id, FRAME_BYTES_MAX_DEFAULT, None).await
    }

    /// Node `node_id` with `first`'s certificate, so that a client trusting
    /// one trusts both (as a cluster CA would make it).
    pub async fn start_node_like(node_id: u32, first: &FakeNode) -> FakeNode {
        Self::start_full(
            node_id,
            FRAME_BYTES_MAX_DEFAULT,
            Some(first.identity.clone()),
        )
        .await
    }

    async fn start_full(
        node_id: u32,
        frame_bytes_max: u32,
        identity: Option<CertPaths>,
    ) -> FakeNode {
        let dir = tempfile::tempdir().unwrap();
        let paths =
            identity.unwrap_or_else(|| generate_self_signed(&dir.path().join("tls")).unwrap());
        let tls = TlsIdentity::load(&paths)
            .unwrap()
            .server_tls_config()
            .unwrap();
        let mut server_config =
            quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(tls).unwrap()));
        let mut transport = quinn::TransportConfig::default();
        transport.max_concurrent_bidi_streams(VarInt::from_u32(4096));
        server_config.transport_config(Arc::new(transport));
        let endpoint =
            quinn::Endpoint::server(server_config, "127.0.0.1:0".parse().unwrap()).unwrap();
        let inner = Arc::new(Inner {
            node_id,
            state: Mutex::new(State::default()),
            frame_bytes_max,
            appended: watch::channel(0).0,
            produce_received: watch::channel(0).0,
            produce_gate: watch::channel(true).0,
            connections: Mutex::new(Vec::new()),
        });
        tokio::spawn(accept(endpoint.clone(), inner.clone()));
        FakeNode {
            addr: endpoint.local_addr().unwrap(),
            ca_path: paths.cert_path.clone(),
            identity: paths,
            inner,
            endpoint,
            _dir: dir,
        }
    }

    /// A client configuration trusting this node, with short timeouts.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new(self.addr, ServerTrust::CaFile(self.ca_path.clone()));
        config.client_id = "client-tests".into();
        config.request_timeout = Duration::from_secs(5);
        config.connect_timeout = Duration::from_secs(5);
        config.reconnect_backoff = Duration::from_millis(5);
        config.reconnect_backoff_max = Duration::from_millis(20);
        config
    }

    /// From now on the metadata describes this cluster.
    pub fn set_cluster(&self, view: ClusterView) {
        self.inner.state().cluster = Some(view);
    }

    /// MetadataRequests answered so far.
    pub fn metadata_requests(&self) -> u64 {
        self.inner.state().metadata_requests
    }

    /// Drops the produce faults not met yet.
    pub fn clear_produce_faults(&self) {
        self.inner.state().produce_faults.clear();
    }

    /// The next produce requests meet these faults, in order.
    pub fn push_produce_faults(&self, faults: impl IntoIterator<Item = Fault>) {
        self.inner.state().produce_faults.extend(faults);
    }

    /// Produce requests wait (after being read) until released.
    pub fn hold_produces(&self) {
        self.inner.produce_gate.send_replace(false);
    }

    pub fn release_produces(&self) {
        self.inner.produce_gate.send_replace(true);
    }

    /// Waits until `n` produce requests have arrived in total.
    pub async fn wait_produce_requests(&self, n: u64) {
        let mut received = self.inner.produce_received.subscribe();
        received.wait_for(|&got| got >= n).await.unwrap();
    }

    /// Waits until `topic`/`partition` holds at least `n` records.
    pub async fn wait_records(&self, topic: &str, partition: u32, n: u64) {
        let mut appended = self.inner.appended.subscribe();
        loop {
            appended.borrow_and_update();
            if self.log_end(topic, partition) >= n {
                return;
            }
            appended.changed().await.unwrap();
        }
    }

    fn log_end(&self, topic: &str, partition: u32) -> u64 {
        let state = self.inner.state();
        state
            .topics
            .get(topic)
            .and_then(|t| t.partitions.get(partition as usize))
            .map_or(0, |p| p.log_end)
    }

    /// (partition, record count) of each produce request appended or
    /// refused, in processing order.
    pub fn produce_log(&self) -> Vec<(u32, u32)> {
        self.inner.state().produce_log.clone()
    }

    /// Every stored record of a partition: (offset, key, value).
    pub fn records(&self, topic: &str, partition: u32) -> Vec<(u64, Option<Bytes>, Bytes)> {
        let state = self.inner.state();
        let Some(p) = state
            .topics
            .get(topic)
            .and_then(|t| t.partitions.get(partition as usize))
        else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (_, batch) in &p.batches {
            let view = BatchView::parse_exact(batch).unwrap();
            for record in view.records() {
                let record = record.unwrap();
                out.push((
                    record.offset,
                    record.key.map(Bytes::copy_from_slice),
                    Bytes::copy_from_slice(record.value),
                ));
            }
        }
        out
    }

    pub fn subscription_stats(&self) -> Vec<CreditStats> {
        let state = self.inner.state();
        state
            .subscriptions
            .iter()
            .map(|s| s.lock().unwrap().clone())
            .collect()
    }

    /// Closes every connection, as a node restart would.
    pub fn close_connections(&self) {
        for connection in self.inner.connections.lock().unwrap().drain(..) {
            connection.close(
                VarInt::from_u32(AppErrorCode::ShuttingDown.as_u32()),
                b"bye",
            );
        }
    }
}

async fn accept(endpoint: quinn::Endpoint, inner: Arc<Inner>) {
    while let Some(incoming) = endpoint.accept().await {
        let inner = inner.clone();
        tokio::spawn(async move {
            let Ok(connection) = incoming.await else {
                return;
            };
            inner.connections.lock().unwrap().push(connection.clone());
            serve(connection, inner).await;
        });
    }
}

async fn serve(connection: quinn::Connection, inner: Arc<Inner>) {
    // The first stream is the handshake.
    let Ok((mut send, mut recv)) = connection.accept_bi().await else {
        return;
    };
    let mut decoder = FrameDecoder::new(FrameLimits::for_requests());
    let Some(frame) = read_frame(&mut recv, &mut decoder).await else {
        return;
    };
    let Ok(Body::HandshakeRequest(hello)) = frame.decode().map(|f| f.body) else {
        connection.close(
            VarInt::from_u32(AppErrorCode::ProtocolViolation.as_u32()),
            b"",
        );
        return;
    };
    assert_eq!(hello.protocol_version, PROTOCOL_VERSION);
    assert!(!hello.client_id.is_empty());
    respond(
        &mut send,
        frame.request_id(),
        HandshakeResponse {
            protocol_version: 1,
            protocol_version_min: 1,
            protocol_version_max: 1,
            server_version: "fake-0",
            node_id: inner.node_id,
            shard_count: 1,
            cluster_id: "fake-cluster",
            frame_bytes_max: inner.frame_bytes_max,
            error: None,
        },
    )
    .await;
    while let Ok((send, recv)) = connection.accept_bi().await {
        tokio::spawn(handle_stream(connection.clone(), inner.clone(), send, recv));
    }
}

async fn read_frame(recv: &mut RecvStream, decoder: &mut FrameDecoder) -> Option<VerifiedFrame> {
    loop {
        if let Some(frame) = decoder.next_frame().ok()? {
            return Some(frame);
        }
        match recv.read_chunk(usize::MAX, true).await {
            Ok(Some(chunk)) => decoder.feed_bytes(chunk.bytes).ok()?,
            _ => return None,
        }
    }
}

async fn respond<'a>(send: &mut SendStream, request_id: u64, body: impl Into<Body<'a>>) {
    let frame = Frame::new(request_id, body).encode().unwrap();
    write_answer(send, &frame).await;
}

async fn write_answer(send: &mut SendStream, frame: &[u8]) {
    let _ = send.write_all(frame).await;
    let _ = send.finish();
}

fn error(code: ErrorCode) -> Option<ErrorInfo<'static>> {
    Some(ErrorInfo::new(code, "fake node says no"))
}

async fn handle_stream(
    connection: quinn::Connection,
    inner: Arc<Inner>,
    mut send: SendStream,
    mut recv: RecvStream,
) {
    let mut decoder = FrameDecoder::new(FrameLimits::for_requests());
    let Some(frame) = read_frame(&mut recv, &mut decoder).await else {
        return;
    };
    let id = frame.request_id();
    let Ok(decoded) = frame.decode() else {
        return;
    };
    match decoded.body {
        Body::CreateTopicRequest(r) => {
            let frame = {
                let mut state = inner.state();
                let answer = if state.topics.contains_key(r.name) {
                    CreateTopicResponse {
                        error: error(ErrorCode::TopicExists),
                        topic: None,
                    }
                } else {
                    let topic = Topic {
                        partitions: (0..r.partition_count)
                            .map(|_| Partition {
                                batches: Vec::new(),
                                log_end: 0,
                            })
                            .collect(),
                        retention_bytes: r.retention_bytes.unwrap_or(-1),
                        retention_ms: r.retention_ms.unwrap_or(-1),
                    };
                    state.topics.insert(r.name.to_owned(), topic);
                    CreateTopicResponse {
                        error: None,
                        topic: Some(topic_info(r.name, &state.topics[r.name], true)),
                    }
                };
                Frame::new(id, answer).encode().unwrap()
            };
            write_answer(&mut send, &frame).await;
        }
        Body::DeleteTopicRequest(r) => {
            let removed = inner.state().topics.remove(r.name).is_some();
            let answer = DeleteTopicResponse {
                error: if removed {
                    None
                } else {
                    error(ErrorCode::UnknownTopic)
                },
            };
            respond(&mut send, id, answer).await;
        }
        Body::DescribeTopicRequest(r) => {
            let frame = {
                let state = inner.state();
                let answer = match state.topics.get(r.name) {
                    Some(topic) => DescribeTopicResponse {
                        error: None,
                        topic: Some(topic_info(r.name, topic, true)),
                    },
                    None => DescribeTopicResponse {
                        error: error(ErrorCode::UnknownTopic),
                        topic: None,
                    },
                };
                Frame::new(id, answer).encode().unwrap()
            };
            write_answer(&mut send, &frame).await;
        }
        Body::ListTopicsRequest(r) => {
            let frame = {
                let state = inner.state();
                let mut names: Vec<&String> = state.topics.keys().collect();
                names.sort();
                let answer = ListTopicsResponse {
                    error: None,
                    topics: names
                        .into_iter()
                        .map(|n| topic_info(n, &state.topics[n], r.include_partitions))
                        .collect(),
                };
                Frame::new(id, answer).encode().unwrap()
            };
            write_answer(&mut send, &frame).await;
        }
        Body::MetadataRequest(r) => {
            let frame = {
                let mut state = inner.state();
                state.metadata_requests += 1;
                let (nodes, leaders) = match &state.cluster {
                    Some(view) => (
                        view.nodes
                            .iter()
                            .map(|(id, addr)| (*id, addr.ip().to_string(), addr.port()))
                            .collect(),
                        view.leaders.clone(),
                    ),
                    None => (vec![(1, "127.0.0.1".to_owned(), 1)], vec![1]),
                };
                let topics = state
                    .topics
                    .iter()
                    .filter(|(name, _)| r.topics.is_empty() || r.topics.contains(&name.as_str()))
                    .map(|(name, topic)| TopicMetadata {
                        name,
                        error: None,
                        partitions: (0..topic.partitions.len() as u32)
                            .map(|p| {
                                let leader = leaders[p as usize % leaders.len()];
                                PartitionMetadata {
                                    partition: p,
                                    leader_node_id: Some(leader),
                                    replica_node_ids: vec![leader],
                                    in_sync_node_ids: vec![leader],
                                    ..Default::default()
                                }
                            })
                            .collect(),
                    })
                    .collect();
                let answer = MetadataResponse {
                    error: None,
                    cluster_id: "fake-cluster",
                    nodes: nodes
                        .iter()
                        .map(|(node_id, host, port)| NodeInfo {
                            node_id: *node_id,
                            host,
                            port: *port,
                        })
                        .collect(),
                    topics,
                };
                Frame::new(id, answer).encode().unwrap()
            };
            write_answer(&mut send, &frame).await;
        }
        Body::ProduceRequest(r) => {
            let records = frame.share(r.records);
            let topic = r.topic.to_owned();
            let (acks, target) = (r.acks, r.target);
            drop(decoded);
            produce(&connection, &inner, send, id, topic, target, acks, records).await;
        }
        Body::FetchRequest(r) => {
            let answer = fetch(&inner, r).await;
            respond(&mut send, id, answer.as_response()).await;
        }
        Body::ResolveOffsetRequest(r) => {
            let frame = {
                let state = inner.state();
                let answer = match partition(&state, r.topic, r.partition) {
                    Err(code) => ResolveOffsetResponse {
                        error: error(code),
                        ..Default::default()
                    },
                    Ok(p) => match r.position {
                        StartPosition::Earliest | StartPosition::TimestampMs(_) => {
                            ResolveOffsetResponse {
                                partition: r.partition,
                                offset: 0,
                                error: None,
                            }
                        }
                        StartPosition::Latest => ResolveOffsetResponse {
                            partition: r.partition,
                            offset: p.log_end,
                            error: None,
                        },
                        StartPosition::Offset(o) if o <= p.log_end => ResolveOffsetResponse {
                            partition: r.partition,
                            offset: o,
                            error: None,
                        },
                        StartPosition::Offset(_) => ResolveOffsetResponse {
                            error: error(ErrorCode::OffsetOutOfRange),
                            ..Default::default()
                        },
                    },
                };
                Frame::new(id, answer).encode().unwrap()
            };
            write_answer(&mut send, &frame).await;
        }
        Body::CommitOffsetRequest(r) => {
            inner.state().commits.insert(
                (r.group.to_owned(), r.topic.to_owned(), r.partition),
                r.offset,
            );
            respond(&mut send, id, CommitOffsetResponse { error: None }).await;
        }
        Body::CommittedOffsetRequest(r) => {
            let offset = inner
                .state()
                .commits
                .get(&(r.group.to_owned(), r.topic.to_owned(), r.partition))
                .copied();
            let answer = CommittedOffsetResponse {
                error: None,
                offset,
                metadata: "",
            };
            respond(&mut send, id, answer).await;
        }
        Body::SubscribeRequest(r) => {
            let topic = r.topic.to_owned();
            let (p, start, credit) = (r.partition, r.start, r.credit_bytes);
            drop(decoded);
            subscribe(inner, send, recv, decoder, id, topic, p, start, credit).await;
        }
        other => panic!("fake node got unexpected {:?}", other.kind()),
    }
}

fn topic_info<'a>(name: &'a str, topic: &Topic, with_partitions: bool) -> TopicInfo<'a> {
    TopicInfo {
        name,
        partition_count: topic.partitions.len() as u32,
        replication_factor: 1,
        retention_bytes: topic.retention_bytes,
        retention_ms: topic.retention_ms,
        partitions: if with_partitions {
            topic
                .partitions
                .iter()
                .enumerate()
                .map(|(i, p)| PartitionInfo {
                    partition: i as u32,
                    leader_node_id: Some(1),
                    log_start_offset: 0,
                    high_watermark: p.log_end,
                    log_end_offset: p.log_end,
                    size_bytes: p.batches.iter().map(|(_, b)| b.len() as u64).sum(),
                    ..Default::default()
                })
                .collect()
        } else {
            Vec::new()
        },
    }
}

fn partition<'s>(
    state: &'s State,
    topic: &str,
    partition: u32,
) -> Result<&'s Partition, ErrorCode> {
    let topic = state.topics.get(topic).ok_or(ErrorCode::UnknownTopic)?;
    topic
        .partitions
        .get(partition as usize)
        .ok_or(ErrorCode::UnknownPartition)
}

#[allow(clippy::too_many_arguments)]
async fn produce(
    connection: &quinn::Connection,
    inner: &Inner,
    mut send: SendStream,
    id: u64,
    topic: String,
    target: PartitionTarget<'_>,
    acks: Acks,
    records: Bytes,
) {
    inner.produce_received.send_modify(|n| *n += 1);
    let mut gate = inner.produce_gate.subscribe();
    gate.wait_for(|open| *open).await.unwrap();
    let PartitionTarget::Partition(partition) = target else {
        panic!("the client routes by partition itself");
    };
    let answer = {
        let mut state = inner.state();
        let fault = state.produce_faults.pop_front();
        let record_count = validate_incoming(&records).map_or(0, |b| b.record_count);
        state.produce_log.push((partition, record_count));
        match fault {
            Some(Fault::CloseConnection) => None,
            Some(Fault::Answer(code)) => Some(ProduceResponse {
                error: error(code),
                partition,
                ..Default::default()
            }),
            Some(Fault::Throttle(retry_after_ms)) => Some(ProduceResponse {
                error: Some(ErrorInfo {
                    retry_after_ms: Some(retry_after_ms),
                    ..ErrorInfo::new(ErrorCode::Throttled, "slow down")
                }),
                partition,
                ..Default::default()
            }),
            None | Some(Fault::Pass) => Some(append(&mut state, &topic, partition, &records)),
        }
    };
    let Some(answer) = answer else {
        connection.close(
            VarInt::from_u32(AppErrorCode::ShuttingDown.as_u32()),
            b"fault",
        );
        return;
    };
    inner.appended.send_modify(|n| *n += 1);
    if acks == Acks::None {
        let _ = send.finish();
        return;
    }
    respond(&mut send, id, answer).await;
}

fn append(
    state: &mut State,
    topic: &str,
    partition: u32,
    records: &[u8],
) -> ProduceResponse<'static> {
    let failed = |code| ProduceResponse {
        error: error(code),
        partition,
        ..Default::default()
    };
    let Some(p) = state
        .topics
        .get_mut(topic)
        .map(|t| t.partitions.get_mut(partition as usize))
    else {
        return failed(ErrorCode::UnknownTopic);
    };
    let Some(p) = p else {
        return failed(ErrorCode::UnknownPartition);
    };
    let Ok(incoming) = validate_incoming(records) else {
        return failed(ErrorCode::CorruptBatch);
    };
    let base = p.log_end;
    let mut batch = records.to_vec();
    restamp(&mut batch, &incoming, base, 0);
    p.batches.push((base, Bytes::from(batch)));
    p.log_end += u64::from(incoming.record_count);
    ProduceResponse {
        error: None,
        partition,
        base_offset: base,
        last_offset: p.log_end - 1,
    }
}

/// Whole batches from `offset`, the first whole even past `max_bytes`.
fn batches_from(p: &Partition, offset: u64, max_bytes: u64) -> (Vec<u8>, u64, usize) {
    let mut out = Vec::new();
    let mut next = offset;
    let mut count = 0;
    let first = p.batches.partition_point(|(base, b)| {
        base + u64::from(
            sprawl_storage::batch::peek_header(b)
                .unwrap()
                .record_count(),
        ) <= offset
    });
    for (base, batch) in &p.batches[first..] {
        if !out.is_empty() && (out.len() + batch.len()) as u64 > max_bytes {
            break;
        }
        out.extend_from_slice(batch);
        next = base
            + u64::from(
                sprawl_storage::batch::peek_header(batch)
                    .unwrap()
                    .record_count(),
            );
        count += 1;
    }
    (out, next, count)
}

struct FetchAnswer {
    error: Option<ErrorCode>,
    partition: u32,
    high_watermark: u64,
    next_offset: u64,
    batches: Vec<u8>,
}

impl FetchAnswer {
    fn as_response(&self) -> FetchResponse<'_> {
        FetchResponse {
            error: self.error.and_then(error),
            partition: self.partition,
            high_watermark: self.high_watermark,
            log_start_offset: 0,
            next_offset: self.next_offset,
            batches: &self.batches,
        }
    }
}

async fn fetch(inner: &Inner, r: FetchRequest<'_>) -> FetchAnswer {
    let mut appended = inner.appended.subscribe();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(u64::from(r.max_wait_ms));
    loop {
        appended.borrow_and_update();
        {
            let state = inner.state();
            let p = match partition(&state, r.topic, r.partition) {
                Ok(p) => p,
                Err(code) => {
                    return FetchAnswer {
                        error: Some(code),
                        partition: r.partition,
                        high_watermark: 0,
                        next_offset: r.offset,
                        batches: Vec::new(),
                    }
                }
            };
            if r.offset > p.log_end {
                return FetchAnswer {
                    error: Some(ErrorCode::OffsetOutOfRange),
                    partition: r.partition,
                    high_watermark: p.log_end,
                    next_offset: r.offset,
                    batches: Vec::new(),
                };
            }
            let (batches, next_offset, _) = batches_from(p, r.offset, u64::from(r.max_bytes));
            if !batches.is_empty() || tokio::time::Instant::now() >= deadline {
                return FetchAnswer {
                    error: None,
                    partition: r.partition,
                    high_watermark: p.log_end,
                    next_offset,
                    batches,
                };
            }
        }
        let _ = tokio::time::timeout_at(deadline, appended.changed()).await;
    }
}

enum ClientMessage {
    Credit(u64),
    Unsubscribe,
}

#[allow(clippy::too_many_arguments)]
async fn subscribe(
    inner: Arc<Inner>,
    mut send: SendStream,
    mut recv: RecvStream,
    mut decoder: FrameDecoder,
    request_id: u64,
    topic: String,
    partition_id: u32,
    start: StartPosition,
    credit_bytes: u64,
) {
    let stats = Arc::new(Mutex::new(CreditStats {
        window_bytes: credit_bytes,
        credit_bytes_max: credit_bytes,
        ..Default::default()
    }));
    let opened = {
        let mut state = inner.state();
        match partition(&state, &topic, partition_id).map(|p| p.log_end) {
            Err(code) => Err(code),
            Ok(log_end) => {
                let start_offset = match start {
                    StartPosition::Earliest | StartPosition::TimestampMs(_) => 0,
                    StartPosition::Latest => log_end,
                    StartPosition::Offset(o) => o.min(log_end),
                };
                state.next_subscription_id += 1;
                state.subscriptions.push(stats.clone());
                Ok((state.next_subscription_id, start_offset, log_end))
            }
        }
    };
    let (subscription_id, start_offset, high_watermark) = match opened {
        Ok(opened) => opened,
        Err(code) => {
            let answer = SubscribeResponse {
                error: error(code),
                ..Default::default()
            };
            respond(&mut send, request_id, answer).await;
            return;
        }
    };
    let answer = SubscribeResponse {
        error: None,
        subscription_id,
        partition: partition_id,
        start_offset,
        high_watermark,
        log_start_offset: 0,
    };
    let frame = Frame::new(request_id, answer).encode().unwrap();
    send.write_all(&frame).await.unwrap();

    // The client's frames arrive on their own task.
    let (messages_tx, mut messages) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(frame) = read_frame(&mut recv, &mut decoder).await {
            let message = match frame.decode().map(|f| f.body) {
                Ok(Body::SubscriptionCredit(c)) => {
                    assert_eq!(c.subscription_id, subscription_id);
                    ClientMessage::Credit(c.credit_bytes)
                }
                Ok(Body::Unsubscribe(u)) => {
                    assert_eq!(u.subscription_id, subscription_id);
                    ClientMessage::Unsubscribe
                }
                other => panic!("unexpected frame on a subscription: {other:?}"),
            };
            if messages_tx.send(message).is_err() {
                return;
            }
        }
    });

    let mut appended = inner.appended.subscribe();
    let mut credit = credit_bytes;
    let mut next = start_offset;
    loop {
        appended.borrow_and_update();
        // Push while there is credit: whole batches, the last may overshoot.
        while credit > 0 {
            let (batches, next_offset, high_watermark) = {
                let state = inner.state();
                let Ok(p) = partition(&state, &topic, partition_id) else {
                    return;
                };
                let mut batches = Vec::new();
                let mut next_offset = next;
                for _ in 0..4 {
                    if (batches.len() as u64) >= credit {
                        break;
                    }
                    let (one, after, n) = batches_from(p, next_offset, 0);
                    if n == 0 {
                        break;
                    }
                    let mut s = stats.lock().unwrap();
                    s.largest_batch_bytes = s.largest_batch_bytes.max(one.len() as u64);
                    batches.extend_from_slice(&one);
                    next_offset = after;
                }
                (batches, next_offset, p.log_end)
            };
            if batches.is_empty() {
                break;
            }
            credit = credit.saturating_sub(batches.len() as u64);
            next = next_offset;
            stats.lock().unwrap().sent_bytes += batches.len() as u64;
            let data = SubscriptionData {
                subscription_id,
                high_watermark,
                log_start_offset: 0,
                next_offset,
                batches: &batches,
            };
            let frame = Frame::new(request_id, data).encode().unwrap();
            if send.write_all(&frame).await.is_err() {
                return;
            }
        }
        tokio::select! {
            message = messages.recv() => match message {
                Some(ClientMessage::Credit(n)) => {
                    credit = credit.saturating_add(n);
                    let mut s = stats.lock().unwrap();
                    s.granted_bytes += n;
                    s.credit_bytes_max = s.credit_bytes_max.max(credit);
                    if s.granted_bytes > s.sent_bytes {
                        let v = format!("granted {} bytes back, only {} sent", s.granted_bytes, s.sent_bytes);
                        s.violations.push(v);
                    }
                    if credit > s.window_bytes {
                        let v = format!("credit {credit} above the window {}", s.window_bytes);
                        s.violations.push(v);
                    }
                }
                Some(ClientMessage::Unsubscribe) => {
                    let end = SubscriptionEnd { subscription_id, error: None, next_offset: next };
                    respond(&mut send, request_id, end).await;
                    return;
                }
                None => return,
            },
            _ = appended.changed() => {}
        }
    }
}

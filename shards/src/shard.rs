//! One shard: the state an executor owns outright (its partitions, its
//! catalog replica, its metrics) and the request handlers that run on it.
//!
//! Cross-shard work goes through one API, [`Shard::on`]: it runs the request
//! here when this shard owns the target, and otherwise sends it over the
//! channel mesh to the owner and awaits the reply. Nothing is shared between
//! shards except what travels by value on the mesh.

use std::cell::{Cell, Ref, RefCell};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use futures::channel::oneshot;
use glommio::channels::channel_mesh::Senders;
use sprawl_io::dma_pool::DmaBufPool;
use sprawl_storage::LogConfig;

use crate::catalog::{TopicCatalog, TopicConfig};
use crate::metrics::{PartitionSnapshot, ShardMetrics, ShardSnapshot};
use crate::notify::LocalNotify;
use crate::partition::{partition_dir, Partition};
use crate::request::{
    ClusterTopic, MeshMessage, PartitionOffsets, ShardError, ShardReply, ShardRequest, ShardResult,
};

mod moves;

/// How long a request for a partition that is changing shards waits for the
/// switch before answering with a retryable error.
const MOVE_WAIT: Duration = Duration::from_secs(10);

/// The shard that owns the topic catalog.
pub const CATALOG_SHARD: usize = 0;

/// Configuration shared by every shard (cloned into each executor).
#[derive(Debug, Clone)]
pub struct ShardConfig {
    pub data_dir: PathBuf,
    /// Template for every partition log (retention comes from the topic).
    pub log: LogConfig,
    /// Upper bound on how long a fetch may wait for data.
    pub fetch_wait_ms_max: u32,
    /// How often retention runs over this shard's partitions.
    pub retention_check_ms: u64,
    /// Below this much free space on the data dir's file system, produce
    /// requests get a retryable error instead of filling the disk (the
    /// alarm also shows in /health and /metrics).
    pub disk_free_bytes_min: u64,
    /// Tiered storage, when an archive is configured.
    pub tiered: Option<TieredConfig>,
    /// Where per-second load samples go (the node's load thread); `None`
    /// samples nothing.
    pub load_sink: Option<crate::load::LoadSink>,
    /// In a cluster, this node's id: partitions the catalog gives another
    /// leader are not opened here (no log, no pre-allocated segment; the
    /// node forwards their requests).
    pub node_id: Option<u32>,
    /// In a cluster with the peer plane: how partition replicas reach
    /// their peers. `None`: every partition is kept by one node.
    pub replication: Option<crate::replication::ReplicationHooks>,
}

/// Tiered storage settings shared by every shard.
#[derive(Debug, Clone)]
pub struct TieredConfig {
    pub archive: sprawl_tiered::ArchiveHandle,
    /// Local copies of archived segments go beyond these limits.
    pub local_retention: sprawl_storage::tiering::TierRetention,
    /// Per-shard cache of archived chunks.
    pub cache_bytes: u64,
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

pub struct Shard {
    pub id: usize,
    pub count: usize,
    pub config: ShardConfig,
    catalog: RefCell<TopicCatalog>,
    /// Shard 0 publishes the catalog here for the admin endpoint.
    catalog_published: Arc<Mutex<TopicCatalog>>,
    partitions: RefCell<HashMap<(String, u32), Rc<Partition>>>,
    /// Partitions an `apply_catalog` is opening right now: a concurrent one
    /// (a catalog broadcast, the reopen tick) must not open the same files
    /// a second time and replace the first copy, which may have taken
    /// appends since, with one recovered before them.
    opening: RefCell<HashSet<(String, u32)>>,
    pool: Rc<DmaBufPool>,
    mesh: Senders<MeshMessage>,
    pending: RefCell<HashMap<u64, oneshot::Sender<ShardResult>>>,
    next_request_id: Cell<u64>,
    pub metrics: RefCell<ShardMetrics>,
    snapshot: Arc<Mutex<ShardSnapshot>>,
    shutdown: Arc<AtomicBool>,
    ready: RefCell<Option<mpsc::Sender<Result<usize, String>>>>,
    /// Free bytes on the data dir's file system, as last measured.
    disk_free_bytes: Cell<u64>,
    /// Archived chunks read back, shared by this shard's partitions.
    pub chunk_cache: Option<Rc<crate::cold::ChunkCache>>,
    /// Woken whenever this shard adopts a catalog or a move ends, so
    /// requests held at a fenced partition re-check its owner.
    placement_changed: LocalNotify,
    /// Whether this shard has opened the partitions of its first catalog:
    /// until then a request for one of them waits instead of failing (a
    /// peer shard may start serving while this one still recovers).
    recovered: Cell<bool>,
    /// Held (on shard 0) from reading the catalog to committing its next
    /// version: two concurrent changes (a topic created while a partition
    /// moves) would otherwise both start from version N and the second
    /// commit would silently drop the first.
    catalog_writer: futures::lock::Mutex<()>,
    /// The Raft groups of this shard's replicated partitions.
    pub replication: Option<Rc<crate::replication::Replication>>,
}

impl Shard {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        id: usize,
        count: usize,
        config: ShardConfig,
        catalog: TopicCatalog,
        catalog_published: Arc<Mutex<TopicCatalog>>,
        mesh: Senders<MeshMessage>,
        snapshot: Arc<Mutex<ShardSnapshot>>,
        shutdown: Arc<AtomicBool>,
        ready: mpsc::Sender<Result<usize, String>>,
    ) -> Rc<Self> {
        let replication = match (&config.replication, config.node_id) {
            (Some(hooks), Some(node)) => Some(crate::replication::Replication::new(
                u64::from(node),
                id,
                hooks.clone(),
            )),
            _ => None,
        };
        Rc::new(Self {
            id,
            count,
            catalog: RefCell::new(catalog),
            catalog_published,
            partitions: RefCell::default(),
            opening: RefCell::default(),
            pool: DmaBufPool::new(64 << 20),
            mesh,
            pending: RefCell::default(),
            next_request_id: Cell::new(0),
            metrics: RefCell::default(),
            snapshot,
            shutdown,
            ready: RefCell::new(Some(ready)),
            disk_free_bytes: Cell::new(u64::MAX),
            chunk_cache: config
                .tiered
                .as_ref()
                .map(|t| crate::cold::ChunkCache::new(t.cache_bytes)),
            config,
            placement_changed: LocalNotify::default(),
            recovered: Cell::new(false),
            catalog_writer: futures::lock::Mutex::new(()),
            replication,
        })
    }

    /// The shard that owns `partition` of `topic`, as this shard's replica
    /// of the catalog says (the hash, unless a move placed it elsewhere).
    /// A stale answer is safe: the shard it names forwards the request.
    pub fn owner_of(&self, topic: &str, partition: u32) -> usize {
        self.catalog.borrow().owner(topic, partition, self.count)
    }

    /// Where a request for a partition runs: `None` here, `Some(shard)`
    /// elsewhere (this shard's catalog moved it on). A partition being moved
    /// away is held here until the move switches its owner (or fails), so
    /// nothing starts on a log that is being handed over.
    async fn route(&self, topic: &str, partition: u32) -> Result<Option<usize>, ShardError> {
        let deadline = Instant::now() + MOVE_WAIT;
        loop {
            let changed = self.placement_changed.notified();
            // Before this shard has adopted its first catalog it knows no
            // topic at all: wait for it rather than answer "unknown topic".
            let held = !self.recovered.get() || {
                let catalog = self.catalog.borrow();
                catalog.check_partition(topic, partition)?;
                let owner = catalog.owner(topic, partition, self.count);
                if owner != self.id {
                    return Ok(Some(owner));
                }
                let leaving = catalog
                    .move_of(topic, partition)
                    .is_some_and(|m| m.from as usize == self.id);
                let open = self
                    .partitions
                    .borrow()
                    .get(&(topic.to_string(), partition))
                    .map(|p| p.is_fenced());
                let opening = open.is_none()
                    && self
                        .opening
                        .borrow()
                        .contains(&(topic.to_string(), partition));
                (leaving && open != Some(false)) || opening
            };
            if !held {
                return Ok(None);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(ShardError::PartitionMoving(format!(
                    "{topic}/{partition} did not reach its new shard within {} s",
                    MOVE_WAIT.as_secs()
                )));
            }
            futures_lite::future::or(changed, async {
                glommio::timer::sleep(deadline - now).await;
            })
            .await;
        }
    }

    /// This shard's replica of the catalog.
    pub fn catalog(&self) -> Ref<'_, TopicCatalog> {
        self.catalog.borrow()
    }

    /// Tells the runtime this shard serves requests (call once listening).
    pub fn signal_ready(&self) {
        if let Some(tx) = self.ready.borrow_mut().take() {
            let _ = tx.send(Ok(self.id));
        }
    }

    /// Tells the runtime this shard cannot serve (start-up fails with `why`).
    pub fn signal_failed(&self, why: String) {
        if let Some(tx) = self.ready.borrow_mut().take() {
            let _ = tx.send(Err(why));
        }
    }

    pub fn shutdown_requested(&self) -> bool {
        self.shutdown.load(Ordering::Relaxed)
    }

    /// Resolves once the node is asked to stop.
    pub async fn shutdown_signal(&self) {
        while !self.shutdown_requested() {
            glommio::timer::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Runs `request` on shard `owner`: here if it is this shard, else over the mesh.
    pub async fn on(self: &Rc<Self>, owner: usize, request: ShardRequest) -> ShardResult {
        if owner == self.id {
            // Boxed: catalog requests route back through `on`.
            return Box::pin(self.handle(request)).await;
        }
        let id = self.next_request_id.get();
        self.next_request_id.set(id + 1);
        let (tx, rx) = oneshot::channel();
        self.pending.borrow_mut().insert(id, tx);
        self.metrics.borrow_mut().forwarded_requests += 1;
        let msg = MeshMessage::Request {
            from: self.id,
            id,
            request,
        };
        if self.mesh.send_to(owner, msg).await.is_err() {
            self.pending.borrow_mut().remove(&id);
            return Err(ShardError::ShuttingDown);
        }
        rx.await.unwrap_or(Err(ShardError::ShuttingDown))
    }

    /// Handles one message from the mesh.
    pub(crate) fn on_mesh_message(self: &Rc<Self>, msg: MeshMessage) {
        match msg {
            MeshMessage::Request { from, id, request } => {
                let shard = self.clone();
                glommio::spawn_local(async move {
                    let result = shard.handle(request).await;
                    let _ = shard
                        .mesh
                        .send_to(from, MeshMessage::Response { id, result })
                        .await;
                })
                .detach();
            }
            MeshMessage::Response { id, result } => {
                if let Some(tx) = self.pending.borrow_mut().remove(&id) {
                    let _ = tx.send(result);
                }
            }
        }
    }

    fn partition(&self, topic: &str, partition: u32) -> Result<Rc<Partition>, ShardError> {
        self.catalog.borrow().check_partition(topic, partition)?;
        debug_assert_eq!(
            self.owner_of(topic, partition),
            self.id,
            "partition handled off its owner"
        );
        self.partitions
            .borrow()
            .get(&(topic.to_string(), partition))
            .cloned()
            .ok_or_else(|| {
                ShardError::Storage(format!(
                    "partition {topic}/{partition} is not open on its shard"
                ))
            })
    }

    /// Executes a request on this shard, or forwards it to the partition's
    /// owner when a move has placed it elsewhere since the sender looked.
    async fn handle(self: &Rc<Self>, request: ShardRequest) -> ShardResult {
        if self.shutdown_requested() {
            return Err(ShardError::ShuttingDown);
        }
        if let Some((topic, partition)) = request.partition_key() {
            if let Some(owner) = self.route(topic, partition).await? {
                return Box::pin(self.on(owner, request)).await;
            }
        }
        match request {
            ShardRequest::Produce {
                topic,
                partition,
                batch,
                durable,
            } => {
                let p = self.partition(&topic, partition)?;
                if self.disk_low() {
                    return Err(ShardError::DiskFull(format!(
                        "{} bytes free on the data disk, below the {} byte alarm",
                        self.disk_free_bytes.get(),
                        self.config.disk_free_bytes_min
                    )));
                }
                let started = Instant::now();
                let bytes = batch.len() as u64;
                let (base_offset, next_offset) = match &self.replication {
                    Some(r) if p.is_replicated() => {
                        let acked = r.produce(&topic, partition, batch, durable).await?;
                        p.note_appended(acked, bytes);
                        acked
                    }
                    _ => p.append(BytesMut::from(&batch[..]), durable).await?,
                };
                let mut m = self.metrics.borrow_mut();
                m.produce_requests += 1;
                m.messages_in += next_offset - base_offset;
                m.bytes_in += bytes;
                m.produce_latency_us
                    .record(started.elapsed().as_micros() as u64)
                    .ok();
                Ok(ShardReply::Produced {
                    base_offset,
                    next_offset,
                })
            }
            ShardRequest::Fetch {
                topic,
                partition,
                offset,
                bytes_max,
                wait_ms,
            } => {
                let p = self.partition(&topic, partition)?;
                let started = Instant::now();
                let wait =
                    Duration::from_millis(u64::from(wait_ms.min(self.config.fetch_wait_ms_max)));
                let deadline = started + wait;
                loop {
                    // Register before reading so an append in between is not missed.
                    let ready = p.data_ready.notified();
                    let fetched = p.read(offset, bytes_max).await?;
                    let now = Instant::now();
                    if !fetched.batches.is_empty()
                        || now >= deadline
                        || self.shutdown_requested()
                        || p.is_fenced()
                    {
                        let mut m = self.metrics.borrow_mut();
                        let bytes_out = fetched.batches.iter().map(|b| b.len() as u64).sum::<u64>();
                        p.load.bytes_out.set(p.load.bytes_out.get() + bytes_out);
                        m.fetch_requests += 1;
                        m.bytes_out += bytes_out;
                        m.messages_out += count_records_from(&fetched.batches, offset);
                        m.fetch_latency_us
                            .record(started.elapsed().as_micros() as u64)
                            .ok();
                        let mut offsets = p.offsets();
                        offsets.high_watermark = fetched.high_watermark;
                        offsets.log_start = fetched.log_start;
                        return Ok(ShardReply::Fetched {
                            batches: fetched.batches,
                            offsets,
                        });
                    }
                    futures_lite::future::or(ready, async {
                        glommio::timer::sleep(deadline - now).await;
                    })
                    .await;
                }
            }
            ShardRequest::Offsets { topic, partition } => Ok(ShardReply::Offsets(
                self.partition(&topic, partition)?.offsets(),
            )),
            ShardRequest::FindOffsetByTime {
                topic,
                partition,
                timestamp_ms,
            } => {
                let p = self.partition(&topic, partition)?;
                Ok(ShardReply::Offset(
                    p.find_offset_by_timestamp(timestamp_ms).await?,
                ))
            }
            ShardRequest::CommitOffset {
                group,
                topic,
                partition,
                offset,
                metadata,
            } => {
                let p = self.partition(&topic, partition)?;
                let end = p.offsets().log_end;
                if offset > end {
                    return Err(ShardError::OffsetOutOfRange {
                        offset,
                        start: p.offsets().log_start,
                        end,
                    });
                }
                p.commit(&group, offset, &metadata, now_ms()).await?;
                Ok(ShardReply::Done)
            }
            ShardRequest::CommittedOffset {
                group,
                topic,
                partition,
            } => Ok(ShardReply::Committed(
                self.partition(&topic, partition)?.committed(&group),
            )),
            ShardRequest::CreateTopic { name, config } => self.create_topic(name, config).await,
            ShardRequest::DeleteTopic { name } => self.delete_topic(name).await,
            ShardRequest::ApplyClusterTopic { name, topic, index } => {
                self.apply_cluster_topic(name, topic, index).await
            }
            ShardRequest::ApplyCatalog(catalog) => {
                self.apply_catalog(catalog).await?;
                Ok(ShardReply::Done)
            }
            ShardRequest::MovePartition {
                topic,
                partition,
                to,
            } => self.move_partition(topic, partition, to).await,
            ShardRequest::ReleasePartition { topic, partition } => {
                self.release_partition(&topic, partition).await
            }
            ShardRequest::MoveReplica {
                topic,
                partition,
                from,
                to,
            } => {
                self.partition(&topic, partition)?;
                let r = self.replication.as_ref().ok_or_else(|| {
                    ShardError::InvalidRequest("replication is off on this node".into())
                })?;
                let report = r.move_replica(&topic, partition, from, to).await?;
                Ok(ShardReply::ReplicaMoved(report))
            }
        }
    }

    async fn create_topic(self: &Rc<Self>, name: String, config: TopicConfig) -> ShardResult {
        if self.id != CATALOG_SHARD {
            return self
                .on(CATALOG_SHARD, ShardRequest::CreateTopic { name, config })
                .await;
        }
        let _writer = self.catalog_writer.lock().await;
        let mut next = self.catalog.borrow().clone();
        next.create(&name, config)?;
        self.commit_catalog(next).await
    }

    async fn apply_cluster_topic(
        self: &Rc<Self>,
        name: String,
        topic: Option<ClusterTopic>,
        index: u64,
    ) -> ShardResult {
        if self.id != CATALOG_SHARD {
            let request = ShardRequest::ApplyClusterTopic { name, topic, index };
            return self.on(CATALOG_SHARD, request).await;
        }
        let _writer = self.catalog_writer.lock().await;
        let mut next = self.catalog.borrow().clone();
        // Replayed after a restart: applied before (an entry at exactly the
        // index is applied again, which is harmless: the same create or
        // delete finds its own result).
        if index < next.cluster_index {
            return Ok(ShardReply::Done);
        }
        let replace = match &topic {
            Some(t) => next.is_other_topic(&name, &t.config),
            None => next.get(&name).is_some(),
        };
        if replace {
            next.delete(&name)?;
            next.cluster_index = index;
            self.commit_catalog(next.clone()).await?;
            let _ = std::fs::remove_dir(self.config.data_dir.join("topics").join(&name));
        }
        if let Some(t) = topic {
            next.apply_cluster_topic(&name, t.config, t.leaders, t.replicas)?;
        } else if !replace {
            // A delete of a topic this node never had.
            next.cluster_index = next.cluster_index.max(index);
            next.version += 1;
            return self.commit_catalog(next).await;
        }
        next.cluster_index = next.cluster_index.max(index);
        next.version += 1;
        if topic_unchanged(&self.catalog.borrow(), &next) {
            return Ok(ShardReply::Done);
        }
        self.commit_catalog(next).await
    }

    async fn delete_topic(self: &Rc<Self>, name: String) -> ShardResult {
        if self.id != CATALOG_SHARD {
            return self
                .on(CATALOG_SHARD, ShardRequest::DeleteTopic { name })
                .await;
        }
        let _writer = self.catalog_writer.lock().await;
        let mut next = self.catalog.borrow().clone();
        next.delete(&name)?;
        let result = self.commit_catalog(next).await;
        let _ = std::fs::remove_dir(self.config.data_dir.join("topics").join(&name));
        result
    }

    /// Persists a new catalog, then makes every shard adopt it before answering.
    async fn commit_catalog(self: &Rc<Self>, next: TopicCatalog) -> ShardResult {
        self.commit_catalog_to(next, None).await
    }

    /// [`Self::commit_catalog`], with shard `first` (a move's destination)
    /// adopting it before the others, so it has the partition open before
    /// anyone routes requests there.
    async fn commit_catalog_to(
        self: &Rc<Self>,
        next: TopicCatalog,
        first: Option<usize>,
    ) -> ShardResult {
        let path = self.config.data_dir.join("topics.json");
        let to_save = next.clone();
        glommio::executor()
            .spawn_blocking(move || to_save.save(&path))
            .await
            .map_err(|e| ShardError::Storage(format!("saving the topic catalog: {e}")))?;
        if let Some(first) = first {
            self.on(first, ShardRequest::ApplyCatalog(next.clone()))
                .await?;
        }
        let mut acks = Vec::with_capacity(self.count);
        for shard in (0..self.count).filter(|&s| Some(s) != first) {
            let me = self.clone();
            let c = next.clone();
            acks.push(glommio::spawn_local(async move {
                me.on(shard, ShardRequest::ApplyCatalog(c)).await
            }));
        }
        for a in acks {
            a.await?;
        }
        Ok(ShardReply::Catalog(next))
    }

    /// Adopts `catalog` if newer: opens partitions this shard now owns,
    /// closes and deletes those of removed topics.
    pub(crate) async fn apply_catalog(
        self: &Rc<Self>,
        catalog: TopicCatalog,
    ) -> Result<(), ShardError> {
        if catalog.version < self.catalog.borrow().version {
            return Ok(());
        }
        // Gone: deleted topics, and replicas moved off this node.
        let me = self.config.node_id;
        let removed: Vec<(String, u32)> = self
            .partitions
            .borrow()
            .keys()
            .filter(|(t, p)| {
                catalog.get(t).is_none_or(|c| *p >= c.partitions)
                    || me.is_some_and(|me| {
                        catalog
                            .replicas_of(t, *p)
                            .is_some_and(|set| !set.contains(&me))
                    })
            })
            .cloned()
            .collect();
        for key in removed {
            let p = self.partitions.borrow_mut().remove(&key);
            if let Some(r) = &self.replication {
                r.remove_partition(&key.0, key.1);
            }
            if let Some(p) = p {
                p.data_ready.notify_all();
                // A deleted topic's archive goes too: a topic created later
                // with the same name must not inherit its offsets or data.
                if let Some(cold) = &p.cold {
                    if let Err(e) = cold.delete_all().await {
                        tracing::warn!(topic = %key.0, partition = key.1, error = %e,
                            "deleting the archive of a deleted partition failed; objects remain");
                    }
                }
                let dir = p.dir.clone();
                drop(p);
                if let Err(e) = std::fs::remove_dir_all(&dir) {
                    tracing::warn!(dir = %dir.display(), error = %e, "removing a deleted partition");
                }
                tracing::info!(shard = self.id, topic = %key.0, partition = key.1, "deleted partition");
            }
        }
        let mut to_open = Vec::new();
        for (topic, cfg) in &catalog.topics {
            for partition in 0..cfg.partitions {
                let key = (topic.clone(), partition);
                if self.should_open(&catalog, topic, partition)
                    && !self.partitions.borrow().contains_key(&key)
                    && !self.opening.borrow().contains(&key)
                {
                    to_open.push((key, cfg.clone()));
                }
            }
        }
        let _claim = OpeningClaim::new(self, to_open.iter().map(|(key, _)| key.clone()));
        *self.catalog.borrow_mut() = catalog.clone();
        if self.id == CATALOG_SHARD {
            *self.catalog_published.lock().expect("catalog lock") = catalog;
        }
        self.placement_changed.notify_all();
        for ((topic, partition), cfg) in to_open {
            // With tiered storage the log keeps everything until it is
            // archived; the cold tier applies retention across tiers.
            let tiered = self.config.tiered.is_some();
            let replicas: Option<Vec<u32>> = match &self.replication {
                Some(_) => self
                    .catalog
                    .borrow()
                    .replicas_of(&topic, partition)
                    .map(<[u32]>::to_vec),
                None => None,
            };
            let mut log_config = LogConfig {
                retention_bytes: cfg.retention_bytes.filter(|_| !tiered),
                retention_ms: cfg.retention_ms.filter(|_| !tiered),
                ..self.config.log.clone()
            };
            if replicas.is_some() {
                // The replication flusher fdatasyncs each round itself;
                // retention would cut the Raft log under its readers.
                log_config.fsync = sprawl_storage::FsyncPolicy::Never;
                log_config.retention_bytes = None;
                log_config.retention_ms = None;
            }
            let cold = self.config.tiered.as_ref().map(|t| {
                crate::cold::ColdTier::new(
                    t.archive.clone(),
                    self.chunk_cache
                        .clone()
                        .expect("tiered shards have a cache"),
                    &topic,
                    partition,
                )
            });
            let p = Partition::open(
                &self.config.data_dir,
                &topic,
                partition,
                log_config,
                self.pool.clone(),
                cold,
            )
            .await?;
            tracing::debug!(shard = self.id, %topic, partition, offsets = ?p.offsets(), "opened partition");
            let p = Rc::new(p);
            if let (Some(r), Some(set)) = (&self.replication, &replicas) {
                p.mark_replicated();
                let founder = self
                    .config
                    .node_id
                    .is_some_and(|me| self.catalog.borrow().founded_by(&topic, partition, me));
                let preferred = self.config.node_id.is_some_and(|me| {
                    self.catalog.borrow().leader_of(&topic, partition) == Some(me)
                });
                if let Err(e) = r.add_partition(p.clone(), cfg.created_ms, set, founder, preferred)
                {
                    tracing::error!(shard = self.id, %topic, partition, error = %e, "starting the partition replica failed");
                    return Err(e);
                }
            }
            self.partitions.borrow_mut().insert((topic, partition), p);
        }
        // Replicated partitions learn which leader the metadata names.
        for ((topic, partition), p) in self.partitions.borrow().iter() {
            if p.is_replicated() {
                let leader = self.catalog.borrow().leader_of(topic, *partition);
                p.metadata_leader.set(leader.map(u64::from));
            }
        }
        self.recovered.set(true);
        self.placement_changed.notify_all();
        Ok(())
    }

    /// Measures free space on the data dir's file system (a cheap statvfs).
    pub fn measure_disk(&self) {
        match rustix::fs::statvfs(&self.config.data_dir) {
            Ok(v) => {
                let free = v.f_bavail.saturating_mul(v.f_frsize);
                let was_low = self.disk_low();
                self.disk_free_bytes.set(free);
                if self.disk_low() && !was_low && self.id == 0 {
                    tracing::error!(
                        free_bytes = free,
                        alarm_bytes = self.config.disk_free_bytes_min,
                        "data disk nearly full: producers are throttled until space is freed"
                    );
                } else if was_low && !self.disk_low() && self.id == 0 {
                    tracing::warn!(
                        free_bytes = free,
                        "data disk has room again: producing resumes"
                    );
                }
            }
            Err(e) => tracing::warn!(error = %e, "statvfs of the data dir failed"),
        }
    }

    /// Whether the disk-space alarm is raised.
    pub fn disk_low(&self) -> bool {
        self.disk_free_bytes.get() < self.config.disk_free_bytes_min
    }

    /// Whether `catalog` gives this shard `partition` of `topic` to keep
    /// open: it owns it, no move is handing it over, and (in a cluster) no
    /// other node leads it — a partition led elsewhere has no log here.
    fn should_open(&self, catalog: &TopicCatalog, topic: &str, partition: u32) -> bool {
        let led_elsewhere = self.config.node_id.is_some_and(|me| {
            match catalog.replicas_of(topic, partition) {
                // Replicated: every replica keeps a log, leader or not.
                Some(set) if self.replication.is_some() => !set.contains(&me),
                _ => catalog
                    .leader_of(topic, partition)
                    .is_some_and(|leader| leader != me),
            }
        });
        catalog.owner(topic, partition, self.count) == self.id
            && !led_elsewhere
            && !handing_over(catalog, topic, partition, self.id)
    }

    /// Opens partitions the catalog gives this shard that are not open (an
    /// open that failed, e.g. S3 unreachable while a tiered topic was
    /// created): retried here rather than left failed until a restart.
    pub async fn reopen_missing_partitions(self: &Rc<Self>) {
        let missing = {
            let catalog = self.catalog.borrow();
            let open = self.partitions.borrow();
            catalog.topics.iter().any(|(topic, cfg)| {
                (0..cfg.partitions).any(|p| {
                    let key = (topic.clone(), p);
                    self.should_open(&catalog, topic, p)
                        && !open.contains_key(&key)
                        && !self.opening.borrow().contains(&key)
                })
            })
        };
        if missing {
            let catalog = self.catalog.borrow().clone();
            if let Err(e) = self.apply_catalog(catalog).await {
                tracing::warn!(shard = self.id, error = %e, "opening a partition failed; will retry");
            }
        }
    }

    /// Offsets of every partition this shard owns (for snapshots).
    pub fn owned_partitions(&self) -> Vec<Rc<Partition>> {
        self.partitions.borrow().values().cloned().collect()
    }

    /// Publishes a copy of this shard's metrics for the admin endpoint.
    pub fn publish_snapshot(&self) {
        let parts = self.owned_partitions();
        let m = self.metrics.borrow();
        let mut partitions: Vec<PartitionSnapshot> = parts
            .iter()
            .map(|p| PartitionSnapshot {
                topic: p.topic.clone(),
                partition: p.partition,
                offsets: p.offsets(),
                local_log_start: p.log.offsets().log_start,
                segments: p.log.segment_count(),
                cold: p.cold.as_ref().map(|c| c.snapshot(&p.log)),
                replica: self
                    .replication
                    .as_ref()
                    .and_then(|r| r.status(&p.topic, p.partition)),
            })
            .collect();
        partitions.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        let snapshot = ShardSnapshot {
            shard: self.id,
            messages_in: m.messages_in,
            bytes_in: m.bytes_in,
            messages_out: m.messages_out,
            bytes_out: m.bytes_out,
            produce_requests: m.produce_requests,
            fetch_requests: m.fetch_requests,
            forwarded_requests: m.forwarded_requests,
            errors: m.errors,
            connections_open: m.connections_open,
            connections_total: m.connections_total,
            log_bytes: partitions.iter().map(|p| p.offsets.size_bytes).sum(),
            fdatasyncs: parts.iter().map(|p| p.log.stats().fdatasyncs).sum(),
            disk_free_bytes: self.disk_free_bytes.get(),
            disk_alarm: self.disk_low(),
            produce_latency_us: Some(m.produce_latency_us.clone()),
            fetch_latency_us: Some(m.fetch_latency_us.clone()),
            reactor_lag_us: Some(m.reactor_lag_us.clone()),
            load_samples_dropped: m.load_samples_dropped,
            replication: self
                .replication
                .as_ref()
                .map(|r| r.stats.borrow().clone())
                .unwrap_or_default(),
            partitions,
        };
        *self.snapshot.lock().expect("snapshot lock") = snapshot;
    }

    /// Runs retention over owned partitions: across tiers when tiered
    /// storage is on (local copies only of archived segments), else on the
    /// local log alone.
    pub async fn apply_retention(&self) {
        // Replicated partitions keep their whole local log for now: their
        // segment log is their Raft log, and a lagging replica is caught up
        // from it.
        for p in self
            .owned_partitions()
            .into_iter()
            .filter(|p| !p.is_replicated())
        {
            let result = match (&p.cold, &self.config.tiered) {
                (Some(cold), Some(t)) => {
                    let total = self
                        .catalog()
                        .get(&p.topic)
                        .map_or_else(Default::default, |c| {
                            sprawl_storage::tiering::TierRetention {
                                bytes: c.retention_bytes,
                                ms: c.retention_ms,
                            }
                        });
                    cold.apply_retention(&p.log, now_ms(), t.local_retention, total)
                        .await
                        .map(|plan| plan.delete_local.len() + plan.delete_everywhere.len())
                }
                _ => p
                    .log
                    .apply_retention(now_ms())
                    .await
                    .map_err(ShardError::from),
            };
            match result {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(topic = %p.topic, partition = p.partition, segments = n, "retention")
                }
                Err(e) => {
                    tracing::warn!(topic = %p.topic, partition = p.partition, error = %e, "retention failed")
                }
            }
        }
    }

    /// Archives every sealed segment not yet archived, oldest first, one
    /// upload at a time. Returns how many were archived.
    pub async fn archive_pending(&self) -> usize {
        let mut archived = 0;
        for p in self.owned_partitions() {
            let Some(cold) = p.cold.as_ref().filter(|_| !p.is_replicated()) else {
                continue;
            };
            loop {
                match cold.archive_next(&p.log).await {
                    Ok(true) => archived += 1,
                    Ok(false) => break,
                    Err(e) => {
                        tracing::warn!(topic = %p.topic, partition = p.partition, error = %e, "archiving failed; will retry");
                        break;
                    }
                }
                if self.shutdown_requested() {
                    return archived;
                }
            }
        }
        archived
    }

    /// Flushes and fdatasyncs every owned partition (shutdown).
    pub async fn sync_all(&self) -> Result<(), ShardError> {
        for p in self.owned_partitions() {
            p.sync().await?;
        }
        Ok(())
    }

    /// This shard's load since the previous call, diffed by `differ`.
    pub fn sample_load(
        &self,
        differ: &mut crate::load::LoadDiffer,
        interval: Duration,
    ) -> crate::load::ShardLoadSample {
        let busy = glommio::executor().executor_stats().total_runtime();
        let busy_fraction = differ.busy_fraction(busy, interval);
        let partitions = differ.diff(self.owned_partitions().iter().map(|p| {
            let counters = crate::load::Counters {
                messages_in: p.load.messages_in.get(),
                bytes_in: p.load.bytes_in.get(),
                bytes_out: p.load.bytes_out.get(),
            };
            ((p.topic.clone(), p.partition), counters, p.log.size_bytes())
        }));
        crate::load::ShardLoadSample {
            unix_s: now_ms() / 1000,
            shard: self.id,
            interval,
            busy_fraction,
            partitions,
        }
    }

    /// Offsets of one owned partition, for describe calls that reach the owner.
    pub fn local_offsets(&self, topic: &str, partition: u32) -> Option<PartitionOffsets> {
        self.partitions
            .borrow()
            .get(&(topic.to_string(), partition))
            .map(|p| p.offsets())
    }
}

/// Marks partitions as being opened by one `apply_catalog` until it is
/// done with them, whether the opens succeeded, failed or were cancelled.
struct OpeningClaim<'a> {
    shard: &'a Shard,
    keys: Vec<(String, u32)>,
}

impl<'a> OpeningClaim<'a> {
    fn new(shard: &'a Shard, keys: impl Iterator<Item = (String, u32)>) -> Self {
        let keys: Vec<_> = keys.collect();
        shard.opening.borrow_mut().extend(keys.iter().cloned());
        Self { shard, keys }
    }
}

impl Drop for OpeningClaim<'_> {
    fn drop(&mut self) {
        let mut opening = self.shard.opening.borrow_mut();
        for key in &self.keys {
            opening.remove(key);
        }
        // Requests held while these opened re-check (and, if an open
        // failed, get its error instead of waiting out the move timeout).
        self.shard.placement_changed.notify_all();
    }
}

/// Whether `shard` is handing `partition` of `topic` over to another shard:
/// once released it stays closed here (its files belong to the move) until
/// the switch places it elsewhere or a restart rolls the move back.
/// Reopening it would serve it from two shards at once, each with its own
/// idea of the log's end.
fn handing_over(catalog: &TopicCatalog, topic: &str, partition: u32, shard: usize) -> bool {
    catalog
        .move_of(topic, partition)
        .is_some_and(|m| m.from as usize == shard)
}

/// Records at or after `offset` in `batches` (the first batch may start earlier).
fn count_records_from(batches: &[bytes::Bytes], offset: u64) -> u64 {
    batches
        .iter()
        .filter_map(|b| sprawl_storage::batch::peek_header(b).ok())
        .map(|h| h.next_offset().saturating_sub(h.base_offset().max(offset)))
        .sum()
}

/// Partition directory helper re-exported for tools and tests.
pub fn data_dir_of(data_dir: &std::path::Path, topic: &str, partition: u32) -> PathBuf {
    partition_dir(data_dir, topic, partition)
}

/// Whether `next` differs from `current` only by its version (nothing to
/// persist or broadcast).
fn topic_unchanged(current: &TopicCatalog, next: &TopicCatalog) -> bool {
    current.topics == next.topics
        && current.leaders == next.leaders
        && current.cluster_index == next.cluster_index
}

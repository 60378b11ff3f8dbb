//! Starting the shards: one glommio executor per shard, pinned to a core,
//! joined by a full channel mesh, each warmed up and recovering the
//! partitions it owns before it serves.

use std::future::Future;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use glommio::channels::channel_mesh::MeshBuilder;
use glommio::{ExecutorJoinHandle, LocalExecutorBuilder, Placement};

use crate::catalog::TopicCatalog;
use crate::metrics::ShardSnapshot;
use crate::request::MeshMessage;
use crate::shard::{Shard, ShardConfig};

/// Bound on in-flight cross-shard messages per pair of shards: a full
/// channel makes the sender wait (backpressure), it never grows memory.
pub const MESH_CHANNEL_CAPACITY: usize = 1024;

/// How often each shard looks for sealed segments to archive.
const ARCHIVE_CHECK_MS: u64 = 500;
/// Load samples are per second.
const LOAD_SAMPLE_INTERVAL: Duration = Duration::from_secs(1);
/// Period of the timer whose lateness measures reactor stalls.
const REACTOR_PROBE_INTERVAL: Duration = Duration::from_millis(10);

#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    pub shard_count: usize,
    /// Pin shard `i` to CPU `i % cores`.
    pub pin_cpus: bool,
    /// glommio registered io_memory per executor (already fitted to memlock).
    pub io_memory_bytes: usize,
    pub shard: ShardConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("starting shard {shard}: {reason}")]
    Start { shard: usize, reason: String },
    #[error("shard failed during start-up: {0}")]
    Startup(String),
    #[error("shard {shard} panicked or failed: {reason}")]
    Join { shard: usize, reason: String },
}

/// Capacity of the control channel into shard 0.
const CONTROL_CHANNEL_CAPACITY: usize = 64;

/// A request from outside the executors (the admin thread, the load
/// thread) with the channel its answer comes back on.
type ControlMessage = (
    crate::request::ShardRequest,
    futures::channel::oneshot::Sender<crate::request::ShardResult>,
);

/// Sends requests into the runtime from any thread; shard 0 runs them
/// through [`Shard::on`], so they reach whichever shard owns their target.
#[derive(Clone)]
pub struct ControlHandle {
    tx: futures::channel::mpsc::Sender<ControlMessage>,
}

impl ControlHandle {
    /// Runs `request` and blocks the calling (non-executor) thread until
    /// it is answered.
    pub fn call(&self, request: crate::request::ShardRequest) -> crate::request::ShardResult {
        let (reply_tx, reply_rx) = futures::channel::oneshot::channel();
        let mut tx = self.tx.clone();
        futures::executor::block_on(async move {
            use futures::SinkExt;
            tx.send((request, reply_tx))
                .await
                .map_err(|_| crate::request::ShardError::ShuttingDown)?;
            reply_rx
                .await
                .unwrap_or(Err(crate::request::ShardError::ShuttingDown))
        })
    }
}

/// The running shards, seen from the thread that started them.
pub struct Runtime {
    handles: Vec<ExecutorJoinHandle<()>>,
    ready_rx: mpsc::Receiver<Result<usize, String>>,
    shutdown: Arc<AtomicBool>,
    pub snapshots: Vec<Arc<Mutex<ShardSnapshot>>>,
    pub catalog: Arc<Mutex<TopicCatalog>>,
    pub shard_count: usize,
    pub control: ControlHandle,
    /// Per shard: where the cluster plane delivers replica envelopes from
    /// peers, as `(from node, envelope)`.
    pub replica_inbound: Vec<futures::channel::mpsc::UnboundedSender<(u64, Vec<u8>)>>,
}

impl Runtime {
    /// Starts `config.shard_count` executors. Each recovers its partitions of
    /// `catalog`, then runs `service(shard)` until shutdown, then fdatasyncs
    /// everything it owns.
    pub fn start<S, Fut>(
        config: RuntimeConfig,
        catalog: TopicCatalog,
        service: S,
    ) -> Result<Self, RuntimeError>
    where
        S: Fn(Rc<Shard>) -> Fut + Send + Clone + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let n = config.shard_count.max(1);
        // Moves a previous run left unfinished roll back before any shard
        // opens a partition: each stays on its source, which holds its data.
        let mut catalog = catalog;
        let aborted = catalog.abort_moves();
        if !aborted.is_empty() {
            let path = config.shard.data_dir.join("topics.json");
            catalog.save(&path).map_err(|e| RuntimeError::Start {
                shard: 0,
                reason: format!(
                    "rolling back unfinished partition moves in {}: {e}",
                    path.display()
                ),
            })?;
            for (topic, partition, m) in &aborted {
                tracing::warn!(%topic, partition, from = m.from, to = m.to,
                    "rolled back a partition move the previous run did not finish");
            }
        }
        let mesh = MeshBuilder::<MeshMessage, _>::full(n, MESH_CHANNEL_CAPACITY);
        let shutdown = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::channel();
        let snapshots: Vec<_> = (0..n)
            .map(|_| Arc::new(Mutex::new(ShardSnapshot::default())))
            .collect();
        let catalog_published = Arc::new(Mutex::new(catalog.clone()));
        let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
        let (control_tx, control_rx) =
            futures::channel::mpsc::channel::<ControlMessage>(CONTROL_CHANNEL_CAPACITY);
        let mut control_rx = Some(control_rx);
        let (replica_inbound, mut replica_rx): (Vec<_>, Vec<_>) = (0..n)
            .map(|_| {
                let (tx, rx) = futures::channel::mpsc::unbounded::<(u64, Vec<u8>)>();
                (tx, Some(rx))
            })
            .unzip();
        let mut handles = Vec::with_capacity(n);
        for (id, snapshot) in snapshots.iter().enumerate() {
            let replica_rx = replica_rx[id].take().expect("one receiver per shard");
            let placement = if config.pin_cpus {
                Placement::Fixed(id % cores)
            } else {
                Placement::Unbound
            };
            let (mesh, shutdown, ready_tx) = (mesh.clone(), shutdown.clone(), ready_tx.clone());
            let (snapshot, catalog_published) = (snapshot.clone(), catalog_published.clone());
            let (shard_config, catalog, service) =
                (config.shard.clone(), catalog.clone(), service.clone());
            let control_rx = if id == 0 { control_rx.take() } else { None };
            let handle = LocalExecutorBuilder::new(placement)
                .name(&format!("shard-{id}"))
                .io_memory(config.io_memory_bytes)
                .spawn(move || async move {
                    let failed = ready_tx.clone();
                    if let Err(e) = sprawl_io::warmup::warm_up_dir(&shard_config.data_dir).await {
                        let _ = failed.send(Err(format!(
                            "shard {id}: warming up {}: {e}",
                            shard_config.data_dir.display()
                        )));
                        return;
                    }
                    let Ok((senders, mut receivers)) = mesh.join().await else {
                        let _ = failed
                            .send(Err(format!("shard {id}: joining the channel mesh failed")));
                        return;
                    };
                    let shard = Shard::new(
                        id,
                        n,
                        shard_config,
                        TopicCatalog::default(),
                        catalog_published,
                        senders,
                        snapshot,
                        shutdown,
                        ready_tx,
                    );
                    // Listen to every peer before anything can be sent to us.
                    for (_peer, mut stream) in receivers.streams() {
                        let shard = shard.clone();
                        glommio::spawn_local(async move {
                            while let Some(msg) = stream.next().await {
                                shard.on_mesh_message(msg);
                            }
                        })
                        .detach();
                    }
                    if let Err(e) = shard.apply_catalog(catalog).await {
                        shard.signal_failed(format!("shard {id}: recovering partitions: {e}"));
                        return;
                    }
                    if let Some(r) = &shard.replication {
                        r.spawn(replica_rx);
                    }
                    spawn_housekeeping(shard.clone());
                    if let Some(mut control_rx) = control_rx {
                        let shard = shard.clone();
                        glommio::spawn_local(async move {
                            while let Some((request, reply)) = control_rx.next().await {
                                let shard = shard.clone();
                                glommio::spawn_local(async move {
                                    let _ = reply.send(shard.on(0, request).await);
                                })
                                .detach();
                            }
                        })
                        .detach();
                    }
                    service(shard.clone()).await;
                    if let Err(e) = shard.sync_all().await {
                        tracing::error!(shard = id, error = %e, "final fdatasync failed");
                    }
                    shard.publish_snapshot();
                    tracing::debug!(shard = id, "shard stopped");
                })
                .map_err(|e| RuntimeError::Start {
                    shard: id,
                    reason: e.to_string(),
                })?;
            handles.push(handle);
        }
        Ok(Self {
            handles,
            ready_rx,
            shutdown,
            snapshots,
            catalog: catalog_published,
            shard_count: n,
            control: ControlHandle { tx: control_tx },
            replica_inbound,
        })
    }

    /// Blocks until every shard called `signal_ready` (or one failed).
    pub fn wait_ready(&self) -> Result<(), RuntimeError> {
        for _ in 0..self.shard_count {
            match self.ready_rx.recv() {
                Ok(Ok(_)) => {}
                Ok(Err(why)) => return Err(RuntimeError::Startup(why)),
                Err(_) => {
                    return Err(RuntimeError::Startup(
                        "a shard exited during start-up".into(),
                    ))
                }
            }
        }
        Ok(())
    }

    /// Asks every shard to stop (they finish in-flight work and fdatasync).
    pub fn request_shutdown(&self) {
        self.shutdown.store(true, Ordering::Relaxed);
    }

    pub fn shutdown_flag(&self) -> Arc<AtomicBool> {
        self.shutdown.clone()
    }

    /// Waits for every shard to stop.
    pub fn join(self) -> Result<(), RuntimeError> {
        for (shard, h) in self.handles.into_iter().enumerate() {
            h.join().map_err(|e| RuntimeError::Join {
                shard,
                reason: format!("{e:?}"),
            })?;
        }
        Ok(())
    }
}

/// Per-shard periodic work, off the request path: metrics snapshots,
/// retention, interval fdatasyncs, load samples and the stall probe.
fn spawn_housekeeping(shard: Rc<Shard>) {
    if let Some(sink) = shard.config.load_sink.clone() {
        let s = shard.clone();
        glommio::spawn_local(async move {
            let mut differ = crate::load::LoadDiffer::default();
            let mut last = std::time::Instant::now();
            // The first sample only sets the baselines.
            s.sample_load(&mut differ, Duration::ZERO);
            while !s.shutdown_requested() {
                glommio::timer::sleep(LOAD_SAMPLE_INTERVAL).await;
                let now = std::time::Instant::now();
                let sample = s.sample_load(&mut differ, now - last);
                last = now;
                if !sink.offer(sample) {
                    s.metrics.borrow_mut().load_samples_dropped += 1;
                }
            }
        })
        .detach();
    }
    let s = shard.clone();
    glommio::spawn_local(async move {
        while !s.shutdown_requested() {
            let started = std::time::Instant::now();
            glommio::timer::sleep(REACTOR_PROBE_INTERVAL).await;
            let late = started.elapsed().saturating_sub(REACTOR_PROBE_INTERVAL);
            s.metrics
                .borrow_mut()
                .reactor_lag_us
                .record(late.as_micros() as u64)
                .ok();
        }
    })
    .detach();
    let s = shard.clone();
    glommio::spawn_local(async move {
        while !s.shutdown_requested() {
            s.measure_disk();
            s.reopen_missing_partitions().await;
            s.publish_snapshot();
            glommio::timer::sleep(Duration::from_millis(500)).await;
        }
    })
    .detach();
    let s = shard.clone();
    glommio::spawn_local(async move {
        let every = Duration::from_millis(s.config.retention_check_ms.max(100));
        while !s.shutdown_requested() {
            glommio::timer::sleep(every).await;
            s.apply_retention().await;
        }
    })
    .detach();
    if shard.config.tiered.is_some() {
        let s = shard.clone();
        glommio::spawn_local(async move {
            while !s.shutdown_requested() {
                glommio::timer::sleep(Duration::from_millis(ARCHIVE_CHECK_MS)).await;
                if s.archive_pending().await > 0 {
                    // Local copies of what was just archived may go now.
                    s.apply_retention().await;
                }
            }
        })
        .detach();
    }
    if let sprawl_storage::FsyncPolicy::IntervalMs(ms) = shard.config.log.fsync {
        glommio::spawn_local(async move {
            while !shard.shutdown_requested() {
                glommio::timer::sleep(Duration::from_millis(ms.max(1))).await;
                for p in shard.owned_partitions() {
                    if let Err(e) = p.tick().await {
                        tracing::warn!(topic = %p.topic, partition = p.partition, error = %e, "interval fdatasync failed");
                    }
                }
            }
        })
        .detach();
    }
}

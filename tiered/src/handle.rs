//! [`ArchiveHandle`]: the shards' side. Every operation is a request sent
//! over a bounded `futures` channel to the archive thread and a `oneshot`
//! reply awaited: no tokio type, no blocking call, so a glommio task can
//! await it. A full queue is refused at once with `Busy`.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::channel::{mpsc, oneshot};

use crate::config::ArchiveConfig;
use crate::error::{ArchiveError, Result};
use crate::layout::{validate_topic, ObjectLayout, SegmentFileKind, SegmentFiles};
use crate::manifest::{Manifest, ManifestSegment};
use crate::stats::{ArchiveStats, Shared};

/// What `upload_segment` verified in the archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchivedSegment {
    pub base_offset: u64,
    pub log_bytes: u64,
    pub log_crc32c: u32,
    pub index_bytes: u64,
    pub timeindex_bytes: u64,
}

/// Addresses one partition's objects (topic already validated).
#[derive(Debug, Clone)]
pub(crate) struct PartitionRef {
    pub topic: String,
    pub partition: u32,
}

pub(crate) type Reply<T> = oneshot::Sender<Result<T>>;

pub(crate) enum Request {
    Upload {
        at: PartitionRef,
        base_offset: u64,
        files: SegmentFiles,
        reply: Reply<ArchivedSegment>,
    },
    GetRange {
        at: PartitionRef,
        base_offset: u64,
        kind: SegmentFileKind,
        offset: u64,
        len: u64,
        reply: Reply<Bytes>,
    },
    ReadManifest {
        at: PartitionRef,
        reply: Reply<Option<Manifest>>,
    },
    WriteManifest {
        at: PartitionRef,
        json: Bytes,
        reply: Reply<()>,
    },
    DeleteSegment {
        at: PartitionRef,
        base_offset: u64,
        reply: Reply<()>,
    },
    ListPartitions {
        topic_prefix: String,
        reply: Reply<Vec<(String, u32)>>,
    },
    VerifySegment {
        at: PartitionRef,
        segment: ManifestSegment,
        reply: Reply<()>,
    },
}

impl Request {
    /// The caller dropped its future: the work would be thrown away.
    pub fn is_abandoned(&self) -> bool {
        match self {
            Self::Upload { reply, .. } => reply.is_canceled(),
            Self::GetRange { reply, .. } => reply.is_canceled(),
            Self::ReadManifest { reply, .. } => reply.is_canceled(),
            Self::WriteManifest { reply, .. } => reply.is_canceled(),
            Self::DeleteSegment { reply, .. } => reply.is_canceled(),
            Self::ListPartitions { reply, .. } => reply.is_canceled(),
            Self::VerifySegment { reply, .. } => reply.is_canceled(),
        }
    }
}

/// Starts the archive thread.
pub struct Archive;

impl Archive {
    /// Spawns the archive thread (one OS thread: a tokio current-thread
    /// runtime driving the S3 client), creates the bucket if it is missing,
    /// and returns once the bucket is there. Blocks the calling thread for
    /// that (up to the retry budget when S3 is down): call it at start-up,
    /// not from a shard's reactor.
    pub fn start(config: ArchiveConfig) -> Result<ArchiveHandle> {
        config.validate()?;
        let shared = Arc::new(Shared::new(config.queue_depth_max));
        // A bounded futures channel holds `buffer + senders` items; there is
        // exactly one sender (behind the mutex), so this bounds the queue at
        // `queue_depth_max`.
        let (tx, rx) = mpsc::channel(config.queue_depth_max - 1);
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
        let thread_config = config.clone();
        let thread_shared = shared.clone();
        std::thread::Builder::new()
            .name("sprawl-archive".into())
            .spawn(move || crate::worker::run(thread_config, thread_shared, rx, ready_tx))
            .map_err(|e| ArchiveError::Config(format!("cannot spawn the archive thread: {e}")))?;
        ready_rx.recv().map_err(|_| ArchiveError::Stopped)??;
        Ok(ArchiveHandle {
            inner: Arc::new(HandleInner {
                tx: Mutex::new(tx),
                shared,
                layout: ObjectLayout::new(&config.prefix),
                endpoint: config.endpoint,
                bucket: config.bucket,
            }),
        })
    }
}

/// The archive as seen from any thread. `Send + Sync + Clone`; dropping the
/// last clone stops the archive thread once its in-flight requests finish.
#[derive(Clone)]
pub struct ArchiveHandle {
    inner: Arc<HandleInner>,
}

struct HandleInner {
    tx: Mutex<mpsc::Sender<Request>>,
    shared: Arc<Shared>,
    layout: ObjectLayout,
    endpoint: String,
    bucket: String,
}

impl std::fmt::Debug for ArchiveHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchiveHandle")
            .field("endpoint", &self.inner.endpoint)
            .field("bucket", &self.inner.bucket)
            .field("prefix", &self.inner.layout.prefix())
            .finish()
    }
}

impl ArchiveHandle {
    /// Uploads a sealed segment's three files to
    /// `<prefix>/<topic>/<partition>/<base_offset:020>.{log,index,timeindex}`
    /// (multipart above `multipart_part_bytes`), then verifies each object:
    /// its size by HEAD and its CRC32C by reading it back. `Ok` only when
    /// all three hold exactly the local bytes. The files are read on the
    /// archive thread.
    pub async fn upload_segment(
        &self,
        topic: &str,
        partition: u32,
        base_offset: u64,
        files: SegmentFiles,
    ) -> Result<ArchivedSegment> {
        let at = partition_ref(topic, partition)?;
        self.call(|reply| Request::Upload {
            at,
            base_offset,
            files,
            reply,
        })
        .await
    }

    /// `len` bytes from `offset` of one segment object (ranged GET). Like
    /// `pread`, the result is shorter only when the object ends first, and
    /// empty from its end on.
    pub async fn get_range(
        &self,
        topic: &str,
        partition: u32,
        base_offset: u64,
        kind: SegmentFileKind,
        offset: u64,
        len: u64,
    ) -> Result<Bytes> {
        let at = partition_ref(topic, partition)?;
        self.call(|reply| Request::GetRange {
            at,
            base_offset,
            kind,
            offset,
            len,
            reply,
        })
        .await
    }

    /// The partition's manifest, `None` when it has none yet.
    pub async fn read_manifest(&self, topic: &str, partition: u32) -> Result<Option<Manifest>> {
        let at = partition_ref(topic, partition)?;
        self.call(|reply| Request::ReadManifest { at, reply }).await
    }

    /// Replaces the partition's manifest. Refuses one that breaks the
    /// manifest invariant (sorted, unique, non-overlapping segments).
    pub async fn write_manifest(
        &self,
        topic: &str,
        partition: u32,
        manifest: &Manifest,
    ) -> Result<()> {
        let at = partition_ref(topic, partition)?;
        manifest
            .validate()
            .map_err(|reason| ArchiveError::InvalidManifest {
                object: self.inner.layout.manifest_key(topic, partition),
                reason,
            })?;
        let json = Bytes::from(manifest.to_json());
        self.call(|reply| Request::WriteManifest { at, json, reply })
            .await
    }

    /// Deletes a segment's three objects (absent ones are not an error).
    /// Remove it from the manifest first, so no reader is sent to it.
    pub async fn delete_segment(
        &self,
        topic: &str,
        partition: u32,
        base_offset: u64,
    ) -> Result<()> {
        let at = partition_ref(topic, partition)?;
        self.call(|reply| Request::DeleteSegment {
            at,
            base_offset,
            reply,
        })
        .await
    }

    /// Every `(topic, partition)` with objects in the archive whose topic
    /// starts with `topic_prefix` (`""` for all), sorted: recovery from an
    /// empty data directory starts here.
    pub async fn list_partitions(&self, topic_prefix: &str) -> Result<Vec<(String, u32)>> {
        if topic_prefix.contains('/') {
            return Err(ArchiveError::InvalidName {
                what: "topic prefix",
                value: topic_prefix.chars().take(64).collect(),
                reason: "must not contain '/'",
            });
        }
        let topic_prefix = topic_prefix.to_owned();
        self.call(|reply| Request::ListPartitions {
            topic_prefix,
            reply,
        })
        .await
    }

    /// Checks an archived segment against its manifest entry: the sizes of
    /// its three objects and the CRC32C of its log (read back whole).
    /// `Corrupt`/`WrongSize` name the object that differs.
    pub async fn verify_segment(
        &self,
        topic: &str,
        partition: u32,
        segment: &ManifestSegment,
    ) -> Result<()> {
        let at = partition_ref(topic, partition)?;
        let segment = *segment;
        self.call(|reply| Request::VerifySegment { at, segment, reply })
            .await
    }

    /// The key an object of this segment has in the bucket.
    pub fn segment_key(
        &self,
        topic: &str,
        partition: u32,
        base_offset: u64,
        kind: SegmentFileKind,
    ) -> String {
        self.inner
            .layout
            .segment_key(topic, partition, base_offset, kind)
    }

    pub fn manifest_key(&self, topic: &str, partition: u32) -> String {
        self.inner.layout.manifest_key(topic, partition)
    }

    pub fn stats(&self) -> ArchiveStats {
        self.inner.shared.snapshot()
    }

    async fn call<T>(&self, request: impl FnOnce(Reply<T>) -> Request) -> Result<T> {
        let (reply, response) = oneshot::channel();
        self.send(request(reply))?;
        response.await.map_err(|_| ArchiveError::Stopped)?
    }

    fn send(&self, request: Request) -> Result<()> {
        let shared = &self.inner.shared;
        // Counted before the send so the archive thread's decrement can
        // never run first.
        shared.queue_depth.fetch_add(1, Relaxed);
        let sent = self
            .inner
            .tx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .try_send(request);
        sent.map_err(|e| {
            shared.queue_depth.fetch_sub(1, Relaxed);
            if e.is_full() {
                shared.busy_rejections.fetch_add(1, Relaxed);
                ArchiveError::Busy {
                    queue_depth_max: shared.queue_depth_max,
                }
            } else {
                ArchiveError::Stopped
            }
        })
    }
}

fn partition_ref(topic: &str, partition: u32) -> Result<PartitionRef> {
    validate_topic(topic)?;
    Ok(PartitionRef {
        topic: topic.to_owned(),
        partition,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_handle(tx: mpsc::Sender<Request>, queue_depth_max: usize) -> ArchiveHandle {
        ArchiveHandle {
            inner: Arc::new(HandleInner {
                tx: Mutex::new(tx),
                shared: Arc::new(Shared::new(queue_depth_max)),
                layout: ObjectLayout::new("p"),
                endpoint: "http://127.0.0.1:1".into(),
                bucket: "b".into(),
            }),
        }
    }

    fn assert_send_sync_clone<T: Send + Sync + Clone>() {}
    fn assert_send<T: Send>(_: &T) {}

    #[test]
    fn handle_and_its_futures_cross_threads() {
        assert_send_sync_clone::<ArchiveHandle>();
        // Futures are Send too, so tokio users (the client, tools) can spawn them.
        let (tx, _rx) = mpsc::channel(1);
        let h = test_handle(tx, 2);
        assert_send(&h.upload_segment("t", 0, 0, SegmentFiles::in_dir("/x".as_ref(), 0)));
        assert_send(&h.get_range("t", 0, 0, SegmentFileKind::Log, 0, 1));
        assert_send(&h.write_manifest("t", 0, &Manifest::default()));
    }

    #[test]
    fn a_full_queue_is_refused_at_once() {
        // Nobody drains this channel: two requests fill the queue.
        let (tx, _rx) = mpsc::channel(1);
        let h = test_handle(tx, 2);
        for _ in 0..2 {
            h.send(Request::ReadManifest {
                at: partition_ref("t", 0).unwrap(),
                reply: oneshot::channel().0,
            })
            .unwrap();
        }
        let err = futures::executor::block_on(h.read_manifest("t", 0)).unwrap_err();
        assert!(
            matches!(err, ArchiveError::Busy { queue_depth_max: 2 }),
            "{err}"
        );
        assert!(err.is_retryable());
        let stats = h.stats();
        assert_eq!((stats.queue_depth, stats.busy_rejections), (2, 1));
        let err = futures::executor::block_on(h.read_manifest("a/b", 0)).unwrap_err();
        assert!(matches!(err, ArchiveError::InvalidName { .. }), "{err}");
    }

    #[test]
    fn a_stopped_archive_thread_is_reported() {
        let (tx, rx) = mpsc::channel(1);
        drop(rx);
        let h = test_handle(tx, 2);
        let err = futures::executor::block_on(h.read_manifest("t", 0)).unwrap_err();
        assert!(matches!(err, ArchiveError::Stopped), "{err}");
        assert_eq!(h.stats().queue_depth, 0);
    }
}

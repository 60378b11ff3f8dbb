//! The archive thread: one OS thread, a tokio current-thread runtime, the
//! minio S3 client. It takes requests from the handles' channel, works on up
//! to `requests_in_flight_max` of them at once, retries what S3 fails
//! transiently, and replies on each request's oneshot. Blocking reads of
//! local segment files happen here, never on a shard.

use std::cell::Cell;
use std::future::Future;
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use futures::channel::mpsc;
use futures::{StreamExt, TryStreamExt};
use minio::s3::builders::{ObjectContent, Size};
use minio::s3::creds::StaticProvider;
use minio::s3::error::{Error as S3Error, S3ServerError, ValidationErr};
use minio::s3::http::BaseUrl;
use minio::s3::minio_error_response::MinioErrorCode;
use minio::s3::types::{Region, S3Api, ToStream};
use minio::s3::utils::ChecksumAlgorithm;
use minio::s3::{MinioClient, MinioClientBuilder};

use crate::config::ArchiveConfig;
use crate::error::{error_chain, ArchiveError, Result};
use crate::handle::{ArchivedSegment, PartitionRef, Request};
use crate::layout::{ObjectLayout, SegmentFileKind, SegmentFiles};
use crate::local_file::{file_stream, FileRead};
use crate::manifest::{Manifest, ManifestSegment};
use crate::retry::{splitmix64, Backoff};
use crate::s3_error::{classify, Failure};
use crate::stats::{Op, Shared};

pub(crate) fn run(
    config: ArchiveConfig,
    shared: Arc<Shared>,
    requests: mpsc::Receiver<Request>,
    ready: std::sync::mpsc::SyncSender<Result<()>>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(ArchiveError::Config(format!(
                "cannot build the archive thread's runtime: {e}"
            ))));
            return;
        }
    };
    runtime.block_on(async move {
        let worker = match Worker::new(config, shared) {
            Ok(w) => w,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        if let Err(e) = worker.ensure_bucket().await {
            let _ = ready.send(Err(e));
            return;
        }
        if ready.send(Ok(())).is_err() {
            return;
        }
        let in_flight_max = worker.config.requests_in_flight_max;
        // `for_each_concurrent` takes the next request only when fewer than
        // `in_flight_max` are running: a busy thread leaves requests in the
        // bounded channel, and the handles see `Busy`.
        requests
            .for_each_concurrent(in_flight_max, |request| worker.serve(request))
            .await;
        tracing::debug!("archive thread: every handle dropped, stopping");
    });
}

struct Worker {
    client: MinioClient,
    config: ArchiveConfig,
    layout: ObjectLayout,
    shared: Arc<Shared>,
    seed: Cell<u64>,
}

impl Worker {
    fn new(config: ArchiveConfig, shared: Arc<Shared>) -> Result<Self> {
        let bad = |what: &str, e: &dyn std::error::Error| {
            ArchiveError::Config(format!("{what}: {}", error_chain(e)))
        };
        let mut base_url: BaseUrl = config
            .endpoint
            .parse()
            .map_err(|e| bad(&format!("endpoint {:?}", config.endpoint), &e))?;
        base_url.region = Region::new(&config.region)
            .map_err(|e| bad(&format!("region {:?}", config.region), &e))?;
        let provider = StaticProvider::new(&config.access_key, &config.secret_key, None);
        let client = MinioClientBuilder::new(base_url)
            .provider(Some(provider))
            .skip_region_lookup(true)
            .build()
            .map_err(|e| bad("S3 client", &e))?;
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Ok(Self {
            client,
            layout: ObjectLayout::new(&config.prefix),
            config,
            shared,
            seed: Cell::new(seed),
        })
    }

    async fn serve(&self, request: Request) {
        self.shared.queue_depth.fetch_sub(1, Relaxed);
        if request.is_abandoned() {
            return;
        }
        match request {
            Request::Upload {
                at,
                base_offset,
                files,
                reply,
            } => {
                let started = Instant::now();
                let r = self
                    .counted(Op::UploadSegment, self.upload(&at, base_offset, &files))
                    .await;
                if r.is_ok() {
                    self.record_latency(started, true);
                }
                let _ = reply.send(r);
            }
            Request::GetRange {
                at,
                base_offset,
                kind,
                offset,
                len,
                reply,
            } => {
                let started = Instant::now();
                let key = self
                    .layout
                    .segment_key(&at.topic, at.partition, base_offset, kind);
                let r = self
                    .counted(Op::GetRange, self.get_range(&key, offset, len))
                    .await;
                if r.is_ok() {
                    self.record_latency(started, false);
                }
                let _ = reply.send(r);
            }
            Request::ReadManifest { at, reply } => {
                let r = self
                    .counted(Op::ReadManifest, self.read_manifest(&at))
                    .await;
                let _ = reply.send(r);
            }
            Request::WriteManifest { at, json, reply } => {
                let key = self.layout.manifest_key(&at.topic, at.partition);
                let r = self
                    .counted(Op::WriteManifest, self.put_bytes(&key, json))
                    .await;
                let _ = reply.send(r);
            }
            Request::DeleteSegment {
                at,
                base_offset,
                reply,
            } => {
                let r = self
                    .counted(Op::DeleteSegment, self.delete_segment(&at, base_offset))
                    .await;
                let _ = reply.send(r);
            }
            Request::ListPartitions {
                topic_prefix,
                reply,
            } => {
                let r = self
                    .counted(Op::ListPartitions, self.list_partitions(&topic_prefix))
                    .await;
                let _ = reply.send(r);
            }
            Request::VerifySegment { at, segment, reply } => {
                let r = self
                    .counted(Op::VerifySegment, self.verify_segment(&at, &segment))
                    .await;
                let _ = reply.send(r);
            }
        }
    }

    async fn counted<T>(&self, op: Op, work: impl Future<Output = Result<T>>) -> Result<T> {
        self.shared
            .update(|c| c.ops.entry(op).or_default().requests += 1);
        let r = work.await;
        if let Err(e) = &r {
            tracing::warn!(op = op.name(), error = %e, "archive operation failed");
            self.shared
                .update(|c| c.ops.entry(op).or_default().errors += 1);
        }
        r
    }

    fn record_latency(&self, started: Instant, upload: bool) {
        let us = (started.elapsed().as_micros() as u64).max(1);
        self.shared.update(|c| {
            let h = if upload {
                &mut c.upload_latency_us
            } else {
                &mut c.get_latency_us
            };
            h.saturating_record(us);
        });
    }

    // ---- operations -------------------------------------------------------

    async fn ensure_bucket(&self) -> Result<()> {
        let bucket = self.config.bucket.as_str();
        let exists = self
            .retrying("HEAD bucket", bucket, 0, || async {
                let req = self
                    .client
                    .bucket_exists(bucket)
                    .map_err(self.fatal_s3("HEAD bucket", bucket))?;
                let resp = req
                    .build()
                    .send()
                    .await
                    .map_err(|e| self.classify(e, "HEAD bucket", bucket))?;
                Ok(resp.exists())
            })
            .await?;
        if exists {
            return Ok(());
        }
        self.retrying("create bucket", bucket, 0, || async {
            let req = self.client.create_bucket(bucket).map_err(self.fatal_s3("create bucket", bucket))?;
            match req.build().send().await {
                Ok(_) => Ok(()),
                // Created meanwhile, by us (a retried attempt) or another node.
                Err(S3Error::S3Server(S3ServerError::S3Error(r)))
                    if matches!(r.code(), MinioErrorCode::BucketAlreadyOwnedByYou)
                        || matches!(&r.code(), MinioErrorCode::OtherError(c) if c == "bucketalreadyexists") =>
                {
                    Ok(())
                }
                Err(e) => Err(self.classify(e, "create bucket", bucket)),
            }
        })
        .await?;
        tracing::info!(bucket, "archive bucket created");
        Ok(())
    }

    async fn upload(
        &self,
        at: &PartitionRef,
        base_offset: u64,
        files: &SegmentFiles,
    ) -> Result<ArchivedSegment> {
        let mut verified = [(0u64, 0u32); 3];
        for (i, kind) in SegmentFileKind::ALL.into_iter().enumerate() {
            let key = self
                .layout
                .segment_key(&at.topic, at.partition, base_offset, kind);
            let (bytes, crc32c) = self.put_file(&key, files.path(kind)).await?;
            self.verify_object(&key, bytes, Some(crc32c)).await?;
            verified[i] = (bytes, crc32c);
        }
        let [(log_bytes, log_crc32c), (index_bytes, _), (timeindex_bytes, _)] = verified;
        tracing::debug!(
            topic = at.topic,
            partition = at.partition,
            base_offset,
            log_bytes,
            "segment archived and verified"
        );
        Ok(ArchivedSegment {
            base_offset,
            log_bytes,
            log_crc32c,
            index_bytes,
            timeindex_bytes,
        })
    }

    /// Streams a local file to `key`; returns its length and CRC32C as read
    /// in the attempt that succeeded.
    async fn put_file(&self, key: &str, path: &Path) -> Result<(u64, u32)> {
        let local = |source: std::io::Error| {
            Failure::Fatal(ArchiveError::LocalFile {
                path: path.to_owned(),
                source,
            })
        };
        let bytes = std::fs::metadata(path)
            .map_err(|source| ArchiveError::LocalFile {
                path: path.to_owned(),
                source,
            })?
            .len();
        self.retrying("PUT", key, bytes, || async {
            let file = std::fs::File::open(path).map_err(local)?;
            let read = Arc::new(Mutex::new(FileRead::default()));
            let stream = file_stream(
                file,
                read.clone(),
                self.shared.clone(),
                self.config.upload_bytes_per_s_max,
            );
            let sent = self
                .put_content(
                    key,
                    ObjectContent::new_from_stream(stream, Some(bytes)),
                    bytes,
                )
                .await;
            let mut read = read.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(source) = read.error.take() {
                return Err(local(source));
            }
            match sent {
                Ok(()) if read.bytes == bytes => Ok((bytes, read.crc32c)),
                Ok(()) => Err(local(std::io::Error::other(format!(
                    "file changed while it was uploaded: {bytes} bytes expected, {} read",
                    read.bytes
                )))),
                Err(Failure::Fatal(ArchiveError::Refused { message, .. }))
                    if message.contains("data in the stream") =>
                {
                    // The minio crate's "not enough / too much data": the file
                    // changed size under us.
                    Err(local(std::io::Error::other(message)))
                }
                Err(f) => Err(f),
            }
        })
        .await
    }

    async fn put_bytes(&self, key: &str, body: Bytes) -> Result<()> {
        let bytes = body.len() as u64;
        self.retrying("PUT", key, bytes, || async {
            let r = self
                .put_content(key, ObjectContent::from(body.clone()), bytes)
                .await;
            if r.is_ok() {
                self.shared.update(|c| c.bytes_up += bytes);
            }
            r
        })
        .await
    }

    /// One PUT attempt. Multipart above `multipart_part_bytes` (the minio
    /// builder splits, uploads parts, completes or aborts). The body's
    /// CRC32C goes as an aws-chunked trailer instead of a SHA-256-signed
    /// body: no SHA-256 pass over every segment on the client (which minio
    /// would run on async-std's blocking pool), and a server that checks
    /// trailers rejects a body damaged in transit. SeaweedFS stores it (HEAD
    /// with `x-amz-checksum-mode: ENABLED` returns it for single-part
    /// objects), but verification does not rely on it: a multipart object
    /// only has a checksum of part checksums.
    async fn put_content(
        &self,
        key: &str,
        content: ObjectContent,
        bytes: u64,
    ) -> Result<(), Failure> {
        let part_bytes = self.config.multipart_part_bytes;
        let part_size = if bytes > part_bytes {
            Size::Known(part_bytes)
        } else {
            // Known size, unknown part size: one simple PUT (also for 0 bytes,
            // which a known part size would turn into a 0-part upload).
            Size::Unknown
        };
        self.client
            .put_object_content(self.config.bucket.as_str(), key, content)
            .map_err(self.fatal_s3("PUT", key))?
            .part_size(part_size)
            .checksum_algorithm(ChecksumAlgorithm::CRC32C)
            .use_trailing_checksum(true)
            .build()
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.classify(e, "PUT", key))
    }

    /// Size by HEAD, then (when `crc32c` is given) the CRC32C of the whole
    /// object as the store returns it.
    async fn verify_object(&self, key: &str, bytes: u64, crc32c: Option<u32>) -> Result<()> {
        let stored_bytes = self
            .retrying("HEAD", key, 0, || async {
                let req = self
                    .client
                    .stat_object(self.config.bucket.as_str(), key)
                    .map_err(self.fatal_s3("HEAD", key))?;
                let resp = req
                    .build()
                    .send()
                    .await
                    .map_err(|e| self.classify(e, "HEAD", key))?;
                resp.size()
                    .map_err(|e| Failure::Retry(format!("HEAD without a size: {e}")))
            })
            .await?;
        if stored_bytes != bytes {
            return Err(ArchiveError::WrongSize {
                object: key.to_owned(),
                expected_bytes: bytes,
                got_bytes: stored_bytes,
            });
        }
        let Some(expected) = crc32c else {
            return Ok(());
        };
        let (read_bytes, got) = self
            .retrying("GET (verify)", key, bytes, || self.crc_of_object(key))
            .await?;
        if read_bytes != bytes {
            return Err(ArchiveError::WrongSize {
                object: key.to_owned(),
                expected_bytes: bytes,
                got_bytes: read_bytes,
            });
        }
        if got != expected {
            return Err(ArchiveError::Corrupt {
                object: key.to_owned(),
                expected,
                got,
            });
        }
        Ok(())
    }

    /// Streams a whole object, keeping only its length and CRC32C.
    async fn crc_of_object(&self, key: &str) -> Result<(u64, u32), Failure> {
        let req = self
            .client
            .get_object(self.config.bucket.as_str(), key)
            .map_err(self.fatal_s3("GET", key))?;
        let resp = req
            .build()
            .send()
            .await
            .map_err(|e| self.classify(e, "GET", key))?;
        let (mut body, _) = resp
            .into_boxed_stream()
            .map_err(|e| self.classify(e, "GET", key))?;
        let (mut bytes, mut crc) = (0u64, 0u32);
        while let Some(chunk) = body
            .try_next()
            .await
            .map_err(|e| Failure::Retry(format!("reading the body: {}", error_chain(&e))))?
        {
            crc = crc32c::crc32c_append(crc, &chunk);
            bytes += chunk.len() as u64;
            self.shared.update(|c| c.bytes_down += chunk.len() as u64);
        }
        Ok((bytes, crc))
    }

    async fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Bytes> {
        // The Range header's last byte is `offset + len - 1`: keep it in u64.
        let len = len.min(u64::MAX - offset);
        if len == 0 {
            return Ok(Bytes::new());
        }
        self.retrying("GET", key, len, || async {
            let req = self
                .client
                .get_object(self.config.bucket.as_str(), key)
                .map_err(self.fatal_s3("GET", key))?;
            let resp = match req.offset(offset).length(len).build().send().await {
                Ok(r) => r,
                // pread semantics: nothing from the end of the object on.
                Err(S3Error::S3Server(S3ServerError::S3Error(r)))
                    if matches!(&r.code(), MinioErrorCode::OtherError(c) if c == "invalidrange") =>
                {
                    return Ok(Bytes::new());
                }
                Err(e) => return Err(self.classify(e, "GET", key)),
            };
            let body = resp
                .into_bytes()
                .await
                .map_err(|e| self.classify(e, "GET", key))?;
            if body.len() as u64 > len {
                return Err(Failure::Fatal(ArchiveError::Refused {
                    endpoint: self.config.endpoint.clone(),
                    request: "GET",
                    object: key.to_owned(),
                    message: format!("asked for {len} bytes at {offset}, got {}", body.len()),
                }));
            }
            self.shared.update(|c| c.bytes_down += body.len() as u64);
            Ok(body)
        })
        .await
    }

    async fn read_manifest(&self, at: &PartitionRef) -> Result<Option<Manifest>> {
        let key = self.layout.manifest_key(&at.topic, at.partition);
        let body = self
            .retrying("GET", &key, 0, || async {
                let req = self
                    .client
                    .get_object(self.config.bucket.as_str(), key.as_str())
                    .map_err(self.fatal_s3("GET", &key))?;
                let resp = match req.build().send().await {
                    Ok(r) => r,
                    Err(e) => {
                        return match self.classify(e, "GET", &key) {
                            Failure::Fatal(ArchiveError::NotFound { .. }) => Ok(None),
                            f => Err(f),
                        }
                    }
                };
                let body = resp
                    .into_bytes()
                    .await
                    .map_err(|e| self.classify(e, "GET", &key))?;
                self.shared.update(|c| c.bytes_down += body.len() as u64);
                Ok(Some(body))
            })
            .await?;
        body.map(|b| {
            Manifest::from_json(&b).map_err(|reason| ArchiveError::InvalidManifest {
                object: key.clone(),
                reason,
            })
        })
        .transpose()
    }

    async fn delete_segment(&self, at: &PartitionRef, base_offset: u64) -> Result<()> {
        for kind in SegmentFileKind::ALL {
            let key = self
                .layout
                .segment_key(&at.topic, at.partition, base_offset, kind);
            self.retrying("DELETE", &key, 0, || async {
                let req = self
                    .client
                    .delete_object(self.config.bucket.as_str(), key.as_str())
                    .map_err(self.fatal_s3("DELETE", &key))?;
                match req.build().send().await {
                    Ok(_) => Ok(()),
                    Err(e) => match self.classify(e, "DELETE", &key) {
                        Failure::Fatal(ArchiveError::NotFound { .. }) => Ok(()),
                        f => Err(f),
                    },
                }
            })
            .await?;
        }
        Ok(())
    }

    async fn list_partitions(&self, topic_prefix: &str) -> Result<Vec<(String, u32)>> {
        let root = self.layout.root();
        let topic_dirs = self.list_dirs(&format!("{root}{topic_prefix}")).await?;
        let mut partitions = Vec::new();
        for dir in topic_dirs {
            let Some(topic) = self.layout.parse_topic_dir(&dir) else {
                continue;
            };
            for p in self.list_dirs(&self.layout.topic_dir(topic)).await? {
                if let Some(partition) = self.layout.parse_partition_dir(topic, &p) {
                    partitions.push((topic.to_owned(), partition));
                }
            }
        }
        partitions.sort();
        partitions.dedup();
        Ok(partitions)
    }

    /// The "directories" (common prefixes) right under `prefix`, all pages.
    async fn list_dirs(&self, prefix: &str) -> Result<Vec<String>> {
        self.retrying("LIST", prefix, 0, || async {
            let mut pages = self
                .client
                .list_objects(self.config.bucket.as_str())
                .map_err(self.fatal_s3("LIST", prefix))?
                .prefix(Some(prefix.to_owned()))
                .delimiter(Some("/".to_owned()))
                .recursive(false)
                .build()
                .to_stream()
                .await;
            let mut dirs = Vec::new();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| self.classify(e, "LIST", prefix))?;
                dirs.extend(
                    page.contents
                        .into_iter()
                        .filter(|e| e.is_prefix)
                        .map(|e| e.name),
                );
            }
            Ok(dirs)
        })
        .await
    }

    async fn verify_segment(&self, at: &PartitionRef, segment: &ManifestSegment) -> Result<()> {
        let key = |kind| {
            self.layout
                .segment_key(&at.topic, at.partition, segment.base_offset, kind)
        };
        self.verify_object(
            &key(SegmentFileKind::Log),
            segment.log_bytes,
            Some(segment.log_crc32c),
        )
        .await?;
        self.verify_object(&key(SegmentFileKind::Index), segment.index_bytes, None)
            .await?;
        self.verify_object(
            &key(SegmentFileKind::TimeIndex),
            segment.timeindex_bytes,
            None,
        )
        .await
    }

    // ---- retries and error classification ---------------------------------

    /// Runs `attempt` until it succeeds, fails for good, or the retry budget
    /// is spent (then `Unavailable`). Each attempt is cut at its timeout.
    async fn retrying<T, F, Fut>(
        &self,
        request: &'static str,
        object: &str,
        body_bytes: u64,
        mut attempt: F,
    ) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        let policy = &self.config.retry;
        let started = Instant::now();
        let mut backoff = Backoff::new(policy, self.next_seed());
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            self.shared.update(|c| c.s3_attempts += 1);
            let timeout = policy.attempt_timeout(body_bytes);
            let last_error = match tokio::time::timeout(timeout, attempt()).await {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(Failure::Fatal(e))) => return Err(e),
                Ok(Err(Failure::Retry(message))) => message,
                Err(_) => format!("no answer within {} ms", timeout.as_millis()),
            };
            let elapsed = started.elapsed();
            let Some(left) = policy
                .budget()
                .checked_sub(elapsed)
                .filter(|d| !d.is_zero())
            else {
                return Err(ArchiveError::Unavailable {
                    endpoint: self.config.endpoint.clone(),
                    request,
                    object: object.to_owned(),
                    attempts,
                    elapsed_ms: elapsed.as_millis() as u64,
                    budget_ms: policy.budget_ms,
                    last_error,
                });
            };
            let delay = backoff.next_delay().min(left);
            self.shared.update(|c| c.s3_retries += 1);
            tracing::warn!(
                request,
                object,
                attempts,
                retry_in_ms = delay.as_millis() as u64,
                error = %last_error,
                "S3 request failed, retrying"
            );
            tokio::time::sleep(delay).await;
        }
    }

    fn next_seed(&self) -> u64 {
        let s = splitmix64(self.seed.get());
        self.seed.set(s);
        s
    }

    /// A request the client refused to build (bad key, bad bucket name).
    fn fatal_s3<'a>(
        &'a self,
        request: &'static str,
        object: &'a str,
    ) -> impl Fn(ValidationErr) -> Failure + 'a {
        move |e| {
            Failure::Fatal(ArchiveError::Refused {
                endpoint: self.config.endpoint.clone(),
                request,
                object: object.to_owned(),
                message: error_chain(&e),
            })
        }
    }

    fn classify(&self, e: S3Error, request: &'static str, object: &str) -> Failure {
        classify(&self.config.endpoint, e, request, object)
    }
}

//! The S3 side of Sprawl's tiered storage: sealed segments go up to an
//! S3-compatible store, verified; archived ranges come back by ranged GET;
//! a manifest per partition lists what the archive holds.
//!
//! Shards never block on it. [`Archive::start`] spawns one dedicated
//! thread that runs a tokio current-thread runtime and the minio S3 client;
//! an [`ArchiveHandle`] (`Send + Sync + Clone`) sends each operation over a
//! bounded `futures` channel and awaits a `oneshot` reply, so a glommio task
//! simply `.await`s it. A full queue is refused at once with
//! [`ArchiveError::Busy`]; S3 outages are retried with backoff and jitter
//! up to a budget, then reported as [`ArchiveError::Unavailable`].
//!
//! Object layout (same file names as a local segment):
//! `<prefix>/<topic>/<partition>/<base_offset:020>.{log,index,timeindex}`
//! and `<prefix>/<topic>/<partition>/manifest.json`.
//!
//! Architecture invariant: `upload_segment` returns `Ok` only after every
//! object's size (HEAD) and CRC32C (the stored bytes read back) match the
//! local file, so a segment the tier state calls archived is really there.
//!
//! Module map: `layout` (keys, sans-IO), `manifest` (sans-IO), `retry`
//! (backoff, sans-IO), `config`, `stats`, `handle` (the shards' side),
//! `worker` (the archive thread and its operations), `s3_error` (retry or
//! give up), `local_file` (segment files as upload bodies).

mod config;
mod error;
mod handle;
mod layout;
mod local_file;
mod manifest;
mod retry;
mod s3_error;
mod stats;
mod worker;

pub use config::{ArchiveConfig, MULTIPART_PART_BYTES_MIN};
pub use error::{ArchiveError, Result};
pub use handle::{Archive, ArchiveHandle, ArchivedSegment};
pub use layout::{
    validate_topic, ObjectLayout, SegmentFileKind, SegmentFiles, MANIFEST_FILE_NAME,
    TOPIC_NAME_BYTES_MAX,
};
pub use manifest::{Manifest, ManifestSegment};
pub use retry::{Backoff, RetryPolicy};
pub use stats::{ArchiveStats, Op, OpCounters};

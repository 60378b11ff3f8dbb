//! Sprawl's durable partition log.
//!
//! One [`PartitionLog`] per topic-partition, owned by exactly one shard
//! (single-threaded, `!Send`). The pieces, each one job:
//!
//! - [`batch`]: the record-batch format, shared by the wire and the disk, so a
//!   producer's batch is appended without re-encoding its records.
//! - [`scan`]: sans-IO validation of a run of batches (recovery, index rebuild).
//! - [`index`]: sparse offset index and time index of one segment.
//! - [`ring`]: the bounded in-memory ring of recent batches for tail readers.
//! - [`retention`]: sans-IO choice of sealed segments to delete.
//! - [`segment`]: one segment's files on disk.
//! - [`tiering`]: sans-IO tier state (local / uploading / archived / remote
//!   only) and retention across tiers.
//! - [`raft`]: the map from Raft index to batch location of a replicated log.
//! - [`log`]: the partition log: append with group commit, read, recovery,
//!   truncation, roll and retention on glommio direct I/O.

pub mod batch;
pub mod config;
pub mod error;
pub mod index;
pub mod io_gate;
pub mod log;
pub mod raft;
pub mod readahead;
pub mod retention;
pub mod ring;
pub mod scan;
pub mod segment;
pub mod tiering;

pub use batch::{BatchBuilder, BatchHeader, BatchView, Record, RecordView, BATCH_HEADER_BYTES};
pub use config::{FsyncPolicy, LogConfig};
pub use error::LogError;
pub use log::{
    AppendAck, FetchedBatches, LogOffsets, LogStats, PartitionLog, RaftStamp, SealedSegment,
};

//! Bounds on what a peer may make us buffer and verify.

use flatbuffers::VerifierOptions;

/// Bytes of the little-endian `u32` length that precedes every flatbuffer.
pub const FRAME_PREFIX_BYTES: usize = 4;

/// Default largest frame (flatbuffer bytes, excluding the length prefix).
pub const FRAME_BYTES_MAX_DEFAULT: u32 = 16 * 1024 * 1024;

/// No limit may exceed this: the flatbuffers builder cannot grow past 2 GiB,
/// and nothing in Sprawl wants a frame anywhere near that.
pub const FRAME_BYTES_MAX_CEILING: u32 = 1024 * 1024 * 1024;

/// Limits applied to every incoming frame before any field is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLimits {
    /// Largest accepted frame, excluding the 4-byte length prefix. Values
    /// above [`FRAME_BYTES_MAX_CEILING`] are treated as the ceiling.
    pub frame_bytes_max: u32,
    /// Deepest nesting of tables (the `Frame` table is depth 1).
    pub depth_max: u16,
    /// Most tables in one frame; bounds verification work on frames built
    /// from many tiny tables.
    pub tables_max: u32,
}

impl Default for FrameLimits {
    /// 16 MiB frames, depth 8, one million tables: enough for any message
    /// of protocol version 1 (the deepest, MetadataResponse, nests 5 deep)
    /// including metadata of a cluster with several hundred thousand
    /// partitions.
    fn default() -> Self {
        Self {
            frame_bytes_max: FRAME_BYTES_MAX_DEFAULT,
            depth_max: 8,
            tables_max: 1_000_000,
        }
    }
}

impl FrameLimits {
    /// Tight limits for a node reading client frames: no request of protocol
    /// version 1 nests tables below its body, so anything deeper or larger
    /// in table count is rejected by the verifier at once.
    pub fn for_requests() -> Self {
        Self {
            frame_bytes_max: FRAME_BYTES_MAX_DEFAULT,
            depth_max: 3,
            tables_max: 8,
        }
    }

    /// The same limits with another largest frame.
    pub fn with_frame_bytes_max(self, frame_bytes_max: u32) -> Self {
        Self {
            frame_bytes_max,
            ..self
        }
    }

    /// The largest frame actually enforced (the limit, capped at the ceiling).
    pub fn frame_bytes_max_effective(&self) -> u32 {
        self.frame_bytes_max.min(FRAME_BYTES_MAX_CEILING)
    }

    pub(crate) fn verifier_options(&self) -> VerifierOptions {
        // The apparent size counts every byte range the verifier visits, so
        // a shared vtable counts once per table using it. Four times the
        // frame bounds the work while leaving room for heavy vtable sharing.
        let apparent_bytes_max = (self.frame_bytes_max_effective() as usize)
            .saturating_add(FRAME_PREFIX_BYTES)
            .saturating_mul(4);
        VerifierOptions {
            max_depth: usize::from(self.depth_max),
            max_tables: self.tables_max as usize,
            max_apparent_size: apparent_bytes_max,
            ignore_missing_null_terminator: false,
        }
    }
}

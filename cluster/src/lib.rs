//! Sprawl's cluster core. Sans-IO throughout, like `quinn-proto`: every
//! type here is driven by explicit inputs (packets, timer expiries, the
//! current time) and returns outputs to act on, so tests and the
//! deterministic simulator drive it exactly as the node does.

pub mod membership;
pub mod meta;
pub mod placement;
pub mod replica;
mod rng;

/// raft-rs, re-exported so crates driving [`replica`] name the same
/// `eraftpb` types.
pub use raft;

//! Cluster membership: SWIM (the `foca` crate) over sealed UDP gossip.
//!
//! - [`identity`]: [`Member`], what each node advertises (node id,
//!   addresses, rack, shard count) and the generation that lets a
//!   restarted or falsely-downed node replace its old self at once.
//! - [`keyring`]: ChaCha20-Poly1305 over every datagram with a shared
//!   cluster key; rotation without downtime; bad packets dropped and
//!   counted by reason.
//! - [`load`]: each member's [`LoadSummary`], spread as versioned foca
//!   custom broadcasts.
//! - [`config`]: settings and why they meet the detection and
//!   dissemination targets.
//! - [`driver`]: [`Membership`], the sans-IO driver: datagrams, timers and
//!   commands in, [`MembershipOutput`]s out; joins through seeds, spreads
//!   changes at once, pulls whole member lists (state sync) on join and
//!   periodically.
//! - [`sim`]: a deterministic simulator (seeded network and clock) that
//!   runs many members in one process.
//!
//! Architecture invariant: nothing here does I/O or reads a clock; no
//! datagram, however malformed, panics (the keyring rejects it before foca
//! parses a byte, and foca only errors).

pub mod config;
pub mod driver;
pub mod identity;
pub mod keyring;
pub mod load;
pub mod sim;

pub use config::{ConfigError, MembershipConfig};
pub use driver::{
    FrameError, Membership, MembershipError, MembershipOutput, MembershipStats, MembershipTimer,
};
pub use identity::{Member, MemberAddrs, MemberError, NodeId};
pub use keyring::{
    ClusterKey, KeyId, Keyring, KeyringError, KeyringStats, OpenError, RejectCounts, SealError,
};
pub use load::{LoadSummary, LoadVersion, PeerLoad};

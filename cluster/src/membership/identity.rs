//! The identity a node advertises in gossip: who it is, where to reach it,
//! and the generation that lets a restarted (or falsely declared down) node
//! take its place back at once.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A node's stable id, kept in its data dir across restarts.
pub type NodeId = u64;

/// Longest rack name accepted. The identity rides in every gossip header
/// (twice), so it is kept small.
pub const RACK_BYTES_MAX: usize = 64;

/// The addresses a member is reached on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MemberAddrs {
    /// UDP address gossip is sent to (and the member's identity address:
    /// seeds are named by it).
    pub gossip: SocketAddr,
    /// Node-to-node and client QUIC endpoint.
    pub quic: SocketAddr,
    /// HTTP admin endpoint.
    pub admin: SocketAddr,
    /// Node-to-node QUIC endpoint (mutual TLS): metadata Raft and forwarding.
    pub peer: SocketAddr,
}

/// An invalid identity.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum MemberError {
    /// The rack name is over [`RACK_BYTES_MAX`].
    #[error("rack name of {len} bytes for node {node_id} is over {RACK_BYTES_MAX} bytes")]
    RackTooLong {
        /// The node.
        node_id: NodeId,
        /// The name's length.
        len: usize,
    },
    /// A node runs at least one shard.
    #[error("node {node_id} advertises zero shards")]
    NoShards {
        /// The node.
        node_id: NodeId,
    },
}

/// One member's identity, as foca carries it in every message.
///
/// foca treats two identities with the same [`foca::Identity::addr`] (the
/// gossip address) as the same slot in the cluster, and keeps the one that
/// wins [`foca::Identity::win_addr_conflict`]: the higher `generation`. So
/// a node that restarts comes back with a higher generation (the caller
/// uses e.g. the start time in ms since the epoch) and replaces its old
/// self immediately instead of waiting for it to be forgotten; and a node
/// declared down while alive renews itself to `generation + 1` and rejoins.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Member {
    node_id: NodeId,
    generation: u64,
    addrs: MemberAddrs,
    rack: Option<String>,
    shard_count: u16,
}

impl Member {
    /// A validated identity.
    pub fn new(
        node_id: NodeId,
        generation: u64,
        addrs: MemberAddrs,
        rack: Option<String>,
        shard_count: u16,
    ) -> Result<Self, MemberError> {
        if let Some(rack) = &rack {
            if rack.len() > RACK_BYTES_MAX {
                return Err(MemberError::RackTooLong {
                    node_id,
                    len: rack.len(),
                });
            }
        }
        if shard_count == 0 {
            return Err(MemberError::NoShards { node_id });
        }
        Ok(Self {
            node_id,
            generation,
            addrs,
            rack,
            shard_count,
        })
    }

    /// Stand-in identity for a seed known only by its gossip address: foca
    /// accepts an announce addressed to any identity with the receiver's
    /// address, and never stores the destination, so the other fields are
    /// never read.
    pub(crate) fn seed_placeholder(gossip: SocketAddr) -> Self {
        Self {
            node_id: 0,
            generation: 0,
            addrs: MemberAddrs {
                gossip,
                quic: gossip,
                admin: gossip,
                peer: gossip,
            },
            rack: None,
            shard_count: 1,
        }
    }

    /// The node's stable id.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// Orders identities of one gossip address: higher replaces lower.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Where the member is reached.
    pub fn addrs(&self) -> &MemberAddrs {
        &self.addrs
    }

    /// The gossip address (foca's identity address).
    pub fn gossip_addr(&self) -> SocketAddr {
        self.addrs.gossip
    }

    /// The rack, when racks are configured.
    pub fn rack(&self) -> Option<&str> {
        self.rack.as_deref()
    }

    /// Shards (cores) the member runs.
    pub fn shard_count(&self) -> u16 {
        self.shard_count
    }
}

impl foca::Identity for Member {
    type Addr = SocketAddr;

    /// Rejoining after being declared down needs an identity that beats the
    /// one the cluster buried: the same member one generation later.
    fn renew(&self) -> Option<Self> {
        Some(Self {
            generation: self.generation.checked_add(1)?,
            ..self.clone()
        })
    }

    fn addr(&self) -> SocketAddr {
        self.addrs.gossip
    }

    /// Higher generation wins. Ties (two processes misconfigured with the
    /// same address and generation) are broken by the remaining fields so
    /// every member picks the same winner instead of flapping.
    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        (self.generation, self.node_id, &self.rack, self.shard_count)
            .cmp(&(
                adversary.generation,
                adversary.node_id,
                &adversary.rack,
                adversary.shard_count,
            ))
            .then_with(|| {
                let mine = (self.addrs.quic, self.addrs.admin);
                mine.cmp(&(adversary.addrs.quic, adversary.addrs.admin))
            })
            .is_gt()
    }
}

#[cfg(test)]
mod tests {
    use foca::Identity;

    use super::*;

    fn addrs(port: u16) -> MemberAddrs {
        MemberAddrs {
            gossip: SocketAddr::from(([127, 0, 0, 1], port)),
            quic: SocketAddr::from(([127, 0, 0, 1], port + 1)),
            admin: SocketAddr::from(([127, 0, 0, 1], port + 2)),
            peer: SocketAddr::from(([127, 0, 0, 1], port + 3)),
        }
    }

    #[test]
    fn renewed_identity_wins_over_the_old_one_and_keeps_the_address() {
        let m = Member::new(7, 1_700_000_000_000, addrs(7946), Some("r1".into()), 2).unwrap();
        let r = m.renew().unwrap();
        assert_eq!(r.generation(), m.generation() + 1);
        assert_eq!(r.addr(), m.addr());
        assert_eq!((r.node_id(), r.rack(), r.shard_count()), (7, Some("r1"), 2));
        assert!(r.win_addr_conflict(&m));
        assert!(!m.win_addr_conflict(&r));
    }

    #[test]
    fn restart_with_new_addresses_replaces_the_old_identity() {
        let old = Member::new(7, 10, addrs(7946), None, 2).unwrap();
        let mut moved = addrs(7946);
        moved.quic = SocketAddr::from(([127, 0, 0, 1], 9000));
        let new = Member::new(7, 11, moved, None, 4).unwrap();
        assert!(new.win_addr_conflict(&old));
        assert!(!old.win_addr_conflict(&new));
    }

    #[test]
    fn ties_pick_one_winner_both_ways() {
        let a = Member::new(1, 5, addrs(7946), None, 2).unwrap();
        let b = Member::new(2, 5, addrs(7946), None, 2).unwrap();
        assert_ne!(a.win_addr_conflict(&b), b.win_addr_conflict(&a));
        let mut other = addrs(7946);
        other.admin = SocketAddr::from(([127, 0, 0, 1], 1));
        let c = Member::new(1, 5, other, None, 2).unwrap();
        assert_ne!(a.win_addr_conflict(&c), c.win_addr_conflict(&a));
    }

    #[test]
    fn generation_at_the_limit_cannot_renew() {
        let m = Member::new(1, u64::MAX, addrs(7946), None, 1).unwrap();
        assert_eq!(m.renew(), None);
    }

    #[test]
    fn validation() {
        let long = "x".repeat(RACK_BYTES_MAX + 1);
        assert_eq!(
            Member::new(3, 0, addrs(1), Some(long), 1),
            Err(MemberError::RackTooLong {
                node_id: 3,
                len: RACK_BYTES_MAX + 1
            })
        );
        assert_eq!(
            Member::new(3, 0, addrs(1), None, 0),
            Err(MemberError::NoShards { node_id: 3 })
        );
    }

    #[test]
    fn identity_stays_small_on_the_wire() {
        let m = Member::new(
            u64::MAX,
            u64::MAX,
            MemberAddrs {
                gossip: "[2001:db8::1]:7946".parse().unwrap(),
                quic: "[2001:db8::1]:7947".parse().unwrap(),
                admin: "[2001:db8::1]:7948".parse().unwrap(),
                peer: "[2001:db8::1]:7949".parse().unwrap(),
            },
            Some("r".repeat(RACK_BYTES_MAX)),
            u16::MAX,
        )
        .unwrap();
        let bytes = postcard::to_allocvec(&m).unwrap();
        // Worst case (IPv6 everywhere, longest rack); a header carries two,
        // so ~350 bytes of a 1400-byte packet at most, leaving room for
        // piggybacked updates.
        assert!(bytes.len() <= 176, "{} bytes", bytes.len());
        let back: Member = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, m);
    }
}

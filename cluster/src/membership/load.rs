//! Each member's small load summary, spread with foca's custom broadcasts.
//!
//! An item is `(node id, version, summary)`. Versions are
//! `(generation, sequence)`: the sequence counts a process's updates, the
//! generation (from the member's identity) makes a restarted node's first
//! update newer than everything its previous life sent. foca keeps
//! retransmitting an item until it is sent `max_transmissions` times or a
//! newer item of the same node invalidates it, and a receiver passes an
//! item on only if it is newer than what it holds, so stale summaries die
//! out instead of bouncing around.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::identity::{Member, NodeId};

/// Distinct nodes whose load is remembered. Only authenticated members can
/// add entries; the bound keeps a misbehaving one from growing memory.
pub const LOAD_NODES_MAX: usize = 16_384;

/// What a member tells the others about how busy it is (placement skews
/// replicas away from busy nodes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadSummary {
    /// Messages produced into the node per second.
    pub messages_in_per_sec: u64,
    /// Bytes produced into the node per second.
    pub bytes_in_per_sec: u64,
    /// Bytes fetched from the node per second.
    pub bytes_out_per_sec: u64,
    /// Share of time its reactors were busy, in thousandths (0..=1000).
    pub cpu_busy_permille: u16,
    /// Partitions it currently leads.
    pub partitions_led: u32,
}

/// Orders one node's summaries: later generation first, then sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LoadVersion {
    /// The member's identity generation when it published.
    pub generation: u64,
    /// Counts the updates of that generation.
    pub sequence: u64,
}

/// The broadcast item on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LoadItem {
    pub(crate) node_id: NodeId,
    pub(crate) version: LoadVersion,
    pub(crate) load: LoadSummary,
}

impl LoadItem {
    pub(crate) fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("postcard encodes plain integers into a Vec")
    }
}

/// foca's key for an item in its dissemination backlog.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadKey {
    node_id: NodeId,
    version: LoadVersion,
}

impl foca::Invalidates for LoadKey {
    /// A newer summary of the same node replaces the one still being sent.
    fn invalidates(&self, other: &Self) -> bool {
        self.node_id == other.node_id && self.version >= other.version
    }
}

/// A received item foca could not use.
#[derive(Debug, Error)]
pub enum LoadBroadcastError {
    /// Not a postcard `LoadItem`.
    #[error("undecodable load broadcast of {len} bytes: {source}")]
    Decode {
        /// Its length.
        len: usize,
        /// Why.
        source: postcard::Error,
    },
    /// Bytes after the item.
    #[error("load broadcast has {trailing} trailing bytes")]
    Trailing {
        /// How many.
        trailing: usize,
    },
}

/// The latest summary known for a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerLoad {
    /// Its version.
    pub version: LoadVersion,
    /// The summary.
    pub load: LoadSummary,
    /// When this member received it (the `now` of the input that carried
    /// it): consumers can ignore summaries that stopped coming.
    pub received_at: Instant,
}

/// Latest version per node, plus the updates not yet handed to the driver.
#[derive(Debug)]
pub(crate) struct LoadTable {
    local: NodeId,
    latest: HashMap<NodeId, PeerLoad>,
    /// Updates to report as outputs; drained after every foca call, so it
    /// holds at most what one packet carried.
    fresh: Vec<(NodeId, LoadSummary)>,
    now: Instant,
    pub(crate) decode_errors: u64,
    pub(crate) dropped_full: u64,
}

impl LoadTable {
    pub(crate) fn get(&self, node_id: NodeId) -> Option<&PeerLoad> {
        self.latest.get(&node_id)
    }

    pub(crate) fn take_fresh(&mut self) -> Vec<(NodeId, LoadSummary)> {
        std::mem::take(&mut self.fresh)
    }

    pub(crate) fn set_now(&mut self, now: Instant) {
        self.now = now;
    }

    /// Records `item` if it is newer than what is held; whether it is.
    fn accept(&mut self, item: &LoadItem) -> bool {
        if let Some(known) = self.latest.get(&item.node_id) {
            if known.version >= item.version {
                return false;
            }
        } else if self.latest.len() >= LOAD_NODES_MAX {
            self.dropped_full += 1;
            tracing::warn!(
                node_id = item.node_id,
                "load table full ({LOAD_NODES_MAX} nodes): summary dropped"
            );
            return false;
        }
        self.latest.insert(
            item.node_id,
            PeerLoad {
                version: item.version,
                load: item.load,
                received_at: self.now,
            },
        );
        true
    }
}

/// The [`foca::BroadcastHandler`] foca owns. foca offers no way back to its
/// handler, so the table sits behind a shared handle that the driver reads
/// too; both live on the thread driving the membership, so the lock is
/// never contended.
pub(crate) struct LoadBroadcasts {
    table: Arc<Mutex<LoadTable>>,
}

impl LoadBroadcasts {
    pub(crate) fn new(local: NodeId, now: Instant) -> (Self, SharedLoadTable) {
        let table = Arc::new(Mutex::new(LoadTable {
            local,
            latest: HashMap::new(),
            fresh: Vec::new(),
            now,
            decode_errors: 0,
            dropped_full: 0,
        }));
        (
            Self {
                table: Arc::clone(&table),
            },
            SharedLoadTable(table),
        )
    }
}

/// The driver's handle on the table foca's handler fills.
#[derive(Debug)]
pub(crate) struct SharedLoadTable(Arc<Mutex<LoadTable>>);

impl SharedLoadTable {
    pub(crate) fn lock(&self) -> MutexGuard<'_, LoadTable> {
        lock(&self.0)
    }
}

fn lock(table: &Mutex<LoadTable>) -> MutexGuard<'_, LoadTable> {
    // A panic while holding it leaves at worst one summary half-recorded,
    // which the next summary of that node overwrites.
    table
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl foca::BroadcastHandler<Member> for LoadBroadcasts {
    type Key = LoadKey;
    type Error = LoadBroadcastError;

    fn receive_item(
        &mut self,
        data: &[u8],
        sender: Option<&Member>,
    ) -> Result<Option<LoadKey>, LoadBroadcastError> {
        let mut table = lock(&self.table);
        let (item, rest) = match postcard::take_from_bytes::<LoadItem>(data) {
            Ok(decoded) => decoded,
            Err(source) => {
                table.decode_errors += 1;
                return Err(LoadBroadcastError::Decode {
                    len: data.len(),
                    source,
                });
            }
        };
        if !rest.is_empty() {
            table.decode_errors += 1;
            return Err(LoadBroadcastError::Trailing {
                trailing: rest.len(),
            });
        }
        let key = LoadKey {
            node_id: item.node_id,
            version: item.version,
        };
        if item.node_id == table.local {
            // Our own summary: spread it when we publish it (no sender);
            // an echo from a peer, or a leftover of our previous life,
            // must not be spread again.
            if sender.is_none() && table.accept(&item) {
                return Ok(Some(key));
            }
            return Ok(None);
        }
        if table.accept(&item) {
            table.fresh.push((item.node_id, item.load));
            Ok(Some(key))
        } else {
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use foca::{BroadcastHandler, Invalidates};

    use super::*;

    fn item(node_id: NodeId, generation: u64, sequence: u64, msgs: u64) -> LoadItem {
        LoadItem {
            node_id,
            version: LoadVersion {
                generation,
                sequence,
            },
            load: LoadSummary {
                messages_in_per_sec: msgs,
                ..LoadSummary::default()
            },
        }
    }

    fn peer(id: NodeId) -> Member {
        let a = std::net::SocketAddr::from(([127, 0, 0, 1], 7000 + id as u16));
        Member::new(
            id,
            1,
            crate::membership::MemberAddrs {
                gossip: a,
                quic: a,
                admin: a,
                peer: a,
            },
            None,
            1,
        )
        .unwrap()
    }

    #[test]
    fn newer_versions_replace_older_and_stale_ones_are_not_spread() {
        let (mut h, table) = LoadBroadcasts::new(1, Instant::now());
        let from = peer(2);
        assert!(h
            .receive_item(&item(2, 5, 1, 10).encode(), Some(&from))
            .unwrap()
            .is_some());
        assert!(h
            .receive_item(&item(2, 5, 1, 10).encode(), Some(&from))
            .unwrap()
            .is_none());
        assert!(h
            .receive_item(&item(2, 5, 0, 99).encode(), Some(&from))
            .unwrap()
            .is_none());
        assert!(h
            .receive_item(&item(2, 5, 2, 20).encode(), Some(&from))
            .unwrap()
            .is_some());
        // A restart (higher generation) beats any sequence of the old life.
        assert!(h
            .receive_item(&item(2, 6, 0, 30).encode(), Some(&from))
            .unwrap()
            .is_some());
        assert!(h
            .receive_item(&item(2, 5, 900, 1).encode(), Some(&from))
            .unwrap()
            .is_none());
        let t = table.lock();
        assert_eq!(t.get(2).unwrap().load.messages_in_per_sec, 30);
        let fresh: Vec<u64> = t.fresh.iter().map(|(_, l)| l.messages_in_per_sec).collect();
        assert_eq!(fresh, vec![10, 20, 30]);
    }

    #[test]
    fn own_summary_spreads_only_when_published_locally() {
        let (mut h, table) = LoadBroadcasts::new(1, Instant::now());
        assert!(h
            .receive_item(&item(1, 3, 1, 10).encode(), None)
            .unwrap()
            .is_some());
        assert!(h
            .receive_item(&item(1, 3, 2, 10).encode(), Some(&peer(2)))
            .unwrap()
            .is_none());
        assert!(
            table.lock().fresh.is_empty(),
            "own load reported as a peer's"
        );
    }

    #[test]
    fn garbage_and_trailing_bytes_are_errors() {
        let (mut h, table) = LoadBroadcasts::new(1, Instant::now());
        assert!(h.receive_item(&[0xff; 3], Some(&peer(2))).is_err());
        let mut bytes = item(2, 1, 1, 1).encode();
        bytes.push(0);
        assert!(matches!(
            h.receive_item(&bytes, Some(&peer(2))),
            Err(LoadBroadcastError::Trailing { trailing: 1 })
        ));
        assert_eq!(table.lock().decode_errors, 2);
        assert!(table.lock().get(2).is_none());
    }

    #[test]
    fn keys_invalidate_older_versions_of_the_same_node_only() {
        let k = |node_id, generation, sequence| LoadKey {
            node_id,
            version: LoadVersion {
                generation,
                sequence,
            },
        };
        assert!(k(1, 1, 2).invalidates(&k(1, 1, 1)));
        assert!(k(1, 2, 0).invalidates(&k(1, 1, 9)));
        assert!(!k(1, 1, 1).invalidates(&k(1, 1, 2)));
        assert!(!k(2, 9, 9).invalidates(&k(1, 1, 1)));
    }
}

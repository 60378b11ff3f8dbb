//! Which node a partition request goes to: the cached cluster metadata
//! (node addresses, each topic's leader per partition) and the choice made
//! from it. Sans-IO: the clock is an argument and the metadata comes in as
//! a value; `Client` does the fetching and the connecting.
//!
//! Every doubt ends at the bootstrap node (the one the client was
//! configured with): it forwards requests for partitions it does not lead,
//! so going there is always correct, only one hop slower. Going directly to
//! a leader is an optimisation taken only when the metadata is fresh, names
//! a leader that is not the bootstrap node, and gives it a usable address.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::types::ClusterMetadata;

/// Least time between two metadata fetches for one topic: a burst of
/// `NotLeader` answers (every in-flight request of a moved partition)
/// causes one refresh, not a storm of them.
pub(crate) const REFRESH_INTERVAL: Duration = Duration::from_millis(100);

/// How long a topic whose leader the member list lacks (gossip had not
/// told the bootstrap node about it yet) is served through the bootstrap
/// node before its metadata is fetched again. Longer than
/// [`REFRESH_INTERVAL`]: nothing failed, the route is only indirect.
pub(crate) const UNLISTED_REFRESH_INTERVAL: Duration = Duration::from_secs(1);

/// Metadata older than this is fetched again before the next request: a
/// leader change the client never saw an error for (the old leader
/// forwarded its requests, successfully) is picked up within this time
/// instead of costing a forwarding hop forever.
pub(crate) const METADATA_MAX_AGE: Duration = Duration::from_secs(5);

/// How long a node whose link failed is bypassed (requests go through the
/// bootstrap node meanwhile): without it, every request for its partitions
/// would wait for a connection attempt until gossip declares it down.
pub(crate) const NODE_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Where one partition request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// The bootstrap node's link.
    Bootstrap,
    /// The topic's metadata is missing or stale and due for a refresh:
    /// fetch it (through the bootstrap node), then ask again.
    Refresh,
    /// The partition's leader, directly.
    Leader { node_id: u32, addr: SocketAddr },
}

/// One topic's leaders as of the last metadata fetch.
#[derive(Debug)]
struct TopicRoutes {
    /// Per partition; `None` = no leader known.
    leaders: Vec<Option<u32>>,
    /// When metadata was last fetched (or a fetch last failed).
    fetched_at: Instant,
    /// Set by an answer that says the leaders moved; cleared by a fetch.
    stale: bool,
}

/// The metadata cache and the routing decisions made from it.
#[derive(Debug, Default)]
pub(crate) struct Routing {
    /// The bootstrap node's id and address, from its handshake.
    bootstrap: Option<(u32, SocketAddr)>,
    /// Live members from the latest metadata, with their address if the
    /// client can dial it.
    nodes: HashMap<u32, Option<SocketAddr>>,
    /// How many members the latest metadata listed (usable or not).
    node_count: usize,
    topics: HashMap<String, TopicRoutes>,
    /// Nodes whose link failed, bypassed until the instant given.
    bypassed: HashMap<u32, Instant>,
}

impl Routing {
    pub fn new() -> Self {
        Self::default()
    }

    /// Who the bootstrap link is connected to (after each handshake).
    pub fn set_bootstrap(&mut self, node_id: u32, addr: SocketAddr) {
        self.bootstrap = Some((node_id, addr));
    }

    /// Where a request for `topic`/`partition` goes at `now`.
    pub fn route(&self, topic: &str, partition: u32, now: Instant) -> Route {
        let Some(routes) = self.topics.get(topic) else {
            return Route::Refresh;
        };
        if routes.stale {
            return if now.saturating_duration_since(routes.fetched_at) >= REFRESH_INTERVAL {
                Route::Refresh
            } else {
                Route::Bootstrap
            };
        }
        // A single node leads everything: exactly the single-node client.
        if self.node_count <= 1 {
            return Route::Bootstrap;
        }
        if now.saturating_duration_since(routes.fetched_at) >= METADATA_MAX_AGE {
            return Route::Refresh;
        }
        let Some(node_id) = routes.leaders.get(partition as usize).copied().flatten() else {
            return Route::Bootstrap;
        };
        if self.bootstrap.is_some_and(|(id, _)| id == node_id) {
            return Route::Bootstrap;
        }
        let addr = match self.nodes.get(&node_id) {
            Some(Some(addr)) => *addr,
            // Listed without a usable address: it will not get one.
            Some(None) => return Route::Bootstrap,
            // Not listed (yet): look again now and then.
            None => {
                let age = now.saturating_duration_since(routes.fetched_at);
                return if age >= UNLISTED_REFRESH_INTERVAL {
                    Route::Refresh
                } else {
                    Route::Bootstrap
                };
            }
        };
        if let Some((_, bootstrap_addr)) = self.bootstrap {
            // The bootstrap node under another id, or an address of the
            // other IP family than the client's one UDP socket can reach.
            if addr == bootstrap_addr || addr.is_ipv4() != bootstrap_addr.is_ipv4() {
                return Route::Bootstrap;
            }
        }
        if self
            .bypassed
            .get(&node_id)
            .is_some_and(|&until| now < until)
        {
            return Route::Bootstrap;
        }
        Route::Leader { node_id, addr }
    }

    /// Takes in metadata fetched for `topic` at `now`. The member list
    /// replaces the cached one (it is the node's whole live view).
    pub fn apply(&mut self, topic: &str, metadata: &ClusterMetadata, now: Instant) {
        self.node_count = metadata.nodes.len();
        self.nodes = metadata
            .nodes
            .iter()
            .map(|n| (n.node_id, usable_addr(&n.host, n.port)))
            .collect();
        let Some(found) = metadata
            .topics
            .iter()
            .find(|t| t.name == topic && t.error.is_none())
        else {
            // Unknown topic (or an error): keep asking the bootstrap node,
            // which answers as it always did, and look again later.
            self.refresh_failed(topic, now);
            return;
        };
        // Indexed by partition number; a number beyond the list's length
        // (never sent by a node) is ignored rather than allocated for.
        let mut leaders = vec![None; found.partitions.len()];
        for p in found.partitions.iter().filter(|p| p.error.is_none()) {
            if let Some(slot) = leaders.get_mut(p.partition as usize) {
                *slot = p.leader_node_id;
            }
        }
        self.topics.insert(
            topic.to_owned(),
            TopicRoutes {
                leaders,
                fetched_at: now,
                stale: false,
            },
        );
    }

    /// A metadata fetch for `topic` failed at `now`: the bootstrap node
    /// serves the topic until the next attempt, one interval later.
    pub fn refresh_failed(&mut self, topic: &str, now: Instant) {
        let routes = self
            .topics
            .entry(topic.to_owned())
            .or_insert_with(|| TopicRoutes {
                leaders: Vec::new(),
                fetched_at: now,
                stale: true,
            });
        routes.fetched_at = now;
        routes.stale = true;
    }

    /// An answer said the topic's leaders moved (or are unavailable): its
    /// requests go through the bootstrap node until it is refreshed.
    pub fn mark_stale(&mut self, topic: &str) {
        if let Some(routes) = self.topics.get_mut(topic) {
            routes.stale = true;
        }
    }

    /// The link to `node_id` failed at `now`: bypass it for a while.
    pub fn node_failed(&mut self, node_id: u32, now: Instant) {
        self.bypassed.insert(node_id, now + NODE_RETRY_AFTER);
        self.bypassed.retain(|_, until| now < *until);
    }
}

/// A member's address if the client can dial it: an IP literal (nodes
/// advertise the address their QUIC endpoint is bound to), neither
/// unspecified (a node listening on `0.0.0.0` advertises nothing usable)
/// nor port 0.
fn usable_addr(host: &str, port: u16) -> Option<SocketAddr> {
    let ip: IpAddr = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()?;
    (!ip.is_unspecified() && port != 0).then_some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{NodeInfo, PartitionMetadata, TopicMetadata};
    use sprawl_wire::{ErrorCode, RemoteError};

    fn addr(i: u32) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, i as u8], 7470))
    }

    /// Members 1..=n at 127.0.0.i, `topic` with the given leaders.
    fn metadata(n: u32, topic: &str, leaders: &[u32]) -> ClusterMetadata {
        ClusterMetadata {
            cluster_id: String::new(),
            nodes: (1..=n)
                .map(|i| NodeInfo {
                    node_id: i,
                    host: addr(i).ip().to_string(),
                    port: addr(i).port(),
                })
                .collect(),
            topics: vec![TopicMetadata {
                name: topic.into(),
                error: None,
                partitions: leaders
                    .iter()
                    .enumerate()
                    .map(|(p, &l)| PartitionMetadata {
                        partition: p as u32,
                        error: None,
                        leader_node_id: Some(l),
                        leader_epoch: 0,
                        replica_node_ids: vec![l],
                        in_sync_node_ids: vec![l],
                    })
                    .collect(),
            }],
        }
    }

    /// Bootstrapped at node 1, metadata for "t" applied at `now`.
    fn routing(now: Instant, n: u32, leaders: &[u32]) -> Routing {
        let mut r = Routing::new();
        r.set_bootstrap(1, addr(1));
        r.apply("t", &metadata(n, "t", leaders), now);
        r
    }

    fn leader(i: u32) -> Route {
        Route::Leader {
            node_id: i,
            addr: addr(i),
        }
    }

    #[test]
    fn an_unknown_topic_needs_metadata_first() {
        let r = Routing::new();
        assert_eq!(r.route("t", 0, Instant::now()), Route::Refresh);
    }

    #[test]
    fn partitions_go_to_their_leader_and_the_bootstrap_node_to_itself() {
        let now = Instant::now();
        let r = routing(now, 3, &[1, 2, 3, 2]);
        assert_eq!(r.route("t", 0, now), Route::Bootstrap);
        assert_eq!(r.route("t", 1, now), leader(2));
        assert_eq!(r.route("t", 2, now), leader(3));
        assert_eq!(r.route("t", 3, now), leader(2));
        // A partition the metadata does not know (created since): the
        // bootstrap node answers, as it would without a cache.
        assert_eq!(r.route("t", 4, now), Route::Bootstrap);
        assert_eq!(r.route("other", 0, now), Route::Refresh);
    }

    #[test]
    fn a_single_node_is_the_bootstrap_node_whatever_it_says() {
        let now = Instant::now();
        // A single node advertises its listen address, maybe 0.0.0.0, and
        // the client may know it by another address or node id.
        let mut r = Routing::new();
        r.set_bootstrap(7, addr(9));
        r.apply("t", &metadata(1, "t", &[1, 1]), now);
        assert_eq!(r.route("t", 0, now), Route::Bootstrap);
        assert_eq!(r.route("t", 1, now), Route::Bootstrap);
    }

    #[test]
    fn unknown_or_unusable_addresses_go_to_the_bootstrap_node() {
        let now = Instant::now();
        let mut m = metadata(3, "t", &[2, 3, 4]);
        m.nodes[2].host = "0.0.0.0".into(); // node 3
        let mut r = Routing::new();
        r.set_bootstrap(1, addr(1));
        r.apply("t", &m, now);
        assert_eq!(r.route("t", 0, now), leader(2));
        assert_eq!(
            r.route("t", 1, now),
            Route::Bootstrap,
            "unspecified address"
        );
        assert_eq!(r.route("t", 2, now), Route::Bootstrap, "node 4 not listed");
        // ... yet: a listed node keeps its unusable address, an unlisted
        // one may appear.
        let later = now + UNLISTED_REFRESH_INTERVAL;
        assert_eq!(r.route("t", 1, later), Route::Bootstrap);
        assert_eq!(r.route("t", 2, later), Route::Refresh);
        m.nodes.push(NodeInfo {
            node_id: 4,
            host: addr(4).ip().to_string(),
            port: addr(4).port(),
        });
        r.apply("t", &m, later);
        assert_eq!(r.route("t", 2, later), leader(4));

        // The other IP family than the bootstrap address.
        m.nodes[1].host = "::1".into(); // node 2
        r.apply("t", &m, now);
        assert_eq!(r.route("t", 0, now), Route::Bootstrap);
        // A host name is not dialled (nodes advertise IP addresses).
        m.nodes[1].host = "node-2.example".into();
        r.apply("t", &m, now);
        assert_eq!(r.route("t", 0, now), Route::Bootstrap);
    }

    #[test]
    fn a_stale_topic_goes_to_the_bootstrap_node_until_its_refresh_is_due() {
        let t0 = Instant::now();
        let mut r = routing(t0, 3, &[2, 3]);
        r.mark_stale("t");
        // Within the interval of the last fetch: the bootstrap node forwards.
        assert_eq!(r.route("t", 0, t0), Route::Bootstrap);
        assert_eq!(r.route("t", 1, t0 + REFRESH_INTERVAL / 2), Route::Bootstrap);
        // Then one refresh is due; others topics are unaffected.
        assert_eq!(r.route("t", 0, t0 + REFRESH_INTERVAL), Route::Refresh);
        r.apply("other", &metadata(3, "other", &[3]), t0);
        assert_eq!(r.route("other", 0, t0), leader(3));

        // The refresh names a new leader and clears the mark.
        let t1 = t0 + REFRESH_INTERVAL;
        r.apply("t", &metadata(3, "t", &[3, 3]), t1);
        assert_eq!(r.route("t", 0, t1), leader(3));
    }

    #[test]
    fn refreshes_are_at_most_one_per_interval() {
        let t0 = Instant::now();
        let mut r = routing(t0, 3, &[2]);
        // Leadership flaps: each refresh says node 2, each answer from it
        // says not leader. Between refreshes, the bootstrap node serves.
        let mut now = t0;
        let mut refreshes = 0;
        for _ in 0..50 {
            now += Duration::from_millis(10);
            r.mark_stale("t");
            if r.route("t", 0, now) == Route::Refresh {
                refreshes += 1;
                r.apply("t", &metadata(3, "t", &[2]), now);
                assert_eq!(r.route("t", 0, now), leader(2));
            } else {
                assert_eq!(r.route("t", 0, now), Route::Bootstrap);
            }
        }
        assert_eq!(refreshes, 5, "500 ms, one refresh per 100 ms");
    }

    #[test]
    fn a_failed_refresh_waits_an_interval_and_serves_through_the_bootstrap_node() {
        let t0 = Instant::now();
        let mut r = Routing::new();
        r.set_bootstrap(1, addr(1));
        r.refresh_failed("t", t0);
        assert_eq!(r.route("t", 0, t0), Route::Bootstrap);
        assert_eq!(r.route("t", 0, t0 + REFRESH_INTERVAL), Route::Refresh);

        // So does an answer that does not know the topic.
        let mut m = metadata(3, "t", &[2]);
        m.topics[0].error = Some(RemoteError::new(ErrorCode::UnknownTopic, "no"));
        r.apply("t", &m, t0);
        assert_eq!(r.route("t", 0, t0), Route::Bootstrap);
        assert_eq!(r.route("t", 0, t0 + REFRESH_INTERVAL), Route::Refresh);
    }

    #[test]
    fn a_failed_node_is_bypassed_for_a_while() {
        let t0 = Instant::now();
        let mut r = routing(t0, 3, &[2, 3]);
        r.node_failed(2, t0);
        assert_eq!(r.route("t", 0, t0), Route::Bootstrap);
        assert_eq!(r.route("t", 1, t0), leader(3));
        assert_eq!(r.route("t", 0, t0 + NODE_RETRY_AFTER), leader(2));
    }

    #[test]
    fn partitions_without_a_leader_go_to_the_bootstrap_node() {
        let now = Instant::now();
        let mut m = metadata(3, "t", &[2, 3]);
        m.topics[0].partitions[0].leader_node_id = None;
        m.topics[0].partitions[1].error =
            Some(RemoteError::new(ErrorCode::LeaderNotAvailable, "down"));
        let mut r = Routing::new();
        r.set_bootstrap(1, addr(1));
        r.apply("t", &m, now);
        assert_eq!(r.route("t", 0, now), Route::Bootstrap);
        assert_eq!(r.route("t", 1, now), Route::Bootstrap);
    }

    #[test]
    fn old_metadata_is_fetched_again() {
        let t0 = Instant::now();
        let r = routing(t0, 3, &[2]);
        assert!(matches!(
            r.route("t", 0, t0),
            Route::Leader { node_id: 2, .. }
        ));
        assert!(matches!(
            r.route("t", 0, t0 + METADATA_MAX_AGE - Duration::from_millis(1)),
            Route::Leader { node_id: 2, .. }
        ));
        assert_eq!(r.route("t", 0, t0 + METADATA_MAX_AGE), Route::Refresh);
    }
}

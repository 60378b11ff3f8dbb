//! The node's gossip thread: drives the sans-IO SWIM membership
//! (`sprawl_cluster::membership`) over one UDP socket, publishes this
//! node's load once a second, and keeps the cluster view the admin
//! endpoint serves (`/cluster`). Control plane only: a plain OS thread,
//! never a shard's reactor.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use serde_json::{json, Value};
use sprawl_cluster::membership::{
    ClusterKey, KeyId, Keyring, LoadSummary, Member, MemberAddrs, Membership, MembershipConfig,
    MembershipOutput, MembershipTimer,
};
use sprawl_shards::ShardSnapshot;

/// Largest datagram read (foca packets are far smaller).
const DATAGRAM_BYTES_MAX: usize = 65_536;
/// The socket is polled at least this often, for timers and stop.
const POLL_MAX: Duration = Duration::from_millis(50);
/// Members expected, for foca's suspicion and retransmission settings.
const CLUSTER_SIZE_EXPECTED: u32 = 5;

/// What the gossip thread needs.
#[derive(Debug, Clone)]
pub struct GossipSettings {
    pub bind: SocketAddr,
    pub seeds: Vec<SocketAddr>,
    /// Hex keys; the first seals, all open (rotation: add a key everywhere,
    /// then make it first everywhere, then remove the old one).
    pub keys: Vec<String>,
    pub rack: Option<String>,
}

/// One member as the admin endpoint shows it.
#[derive(Debug, Clone, Serialize)]
pub struct MemberView {
    pub node_id: u64,
    pub generation: u64,
    pub state: &'static str,
    pub gossip: String,
    pub quic: String,
    pub admin: String,
    pub peer: String,
    pub rack: Option<String>,
    pub shards: u16,
    pub since_unix_ms: i64,
    pub load: Option<LoadSummary>,
}

/// The cluster as this node sees it.
#[derive(Debug, Default)]
pub struct ClusterView {
    pub local: Option<MemberView>,
    pub members: BTreeMap<u64, MemberView>,
    pub joined: bool,
    pub members_up_total: u64,
    pub members_down_total: u64,
    pub stats: Value,
}

impl ClusterView {
    pub fn to_json(&self) -> Value {
        json!({
            "local": self.local,
            "joined": self.joined,
            "members": self.members.values().collect::<Vec<_>>(),
            "members_up_total": self.members_up_total,
            "members_down_total": self.members_down_total,
            "gossip": self.stats,
        })
    }
}

impl ClusterView {
    /// Membership metrics in the Prometheus text format.
    pub fn render_prometheus(&self) -> String {
        use std::fmt::Write as _;
        let alive = self.members.values().filter(|m| m.state == "alive").count() + 1;
        let down = self.members.values().filter(|m| m.state == "down").count();
        let stat = |name: &str| self.stats[name].as_u64().unwrap_or(0);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP sprawl_cluster_members Members this node's gossip knows, by state (itself included).\n\
             # TYPE sprawl_cluster_members gauge\n\
             sprawl_cluster_members{{state=\"alive\"}} {alive}\n\
             sprawl_cluster_members{{state=\"down\"}} {down}"
        );
        for (name, help, value) in [
            (
                "sprawl_cluster_member_up_total",
                "Members seen becoming active.",
                self.members_up_total,
            ),
            (
                "sprawl_cluster_member_down_total",
                "Members declared down (or left).",
                self.members_down_total,
            ),
            (
                "sprawl_gossip_datagrams_received_total",
                "Gossip datagrams received.",
                stat("datagrams_received"),
            ),
            (
                "sprawl_gossip_datagrams_sent_total",
                "Gossip datagrams sent.",
                stat("datagrams_sent"),
            ),
            (
                "sprawl_gossip_rejected_total",
                "Gossip datagrams dropped by the keyring (bad key, tampered, replayed, malformed).",
                stat("rejected_total"),
            ),
            (
                "sprawl_gossip_auth_failed_total",
                "Gossip datagrams that failed authentication.",
                stat("rejected_auth_failed"),
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        }
        out
    }
}

pub type SharedView = Arc<Mutex<ClusterView>>;

/// A key id all nodes derive alike from the key itself (so operators only
/// handle the keys): a CRC of 256 random bits reveals nothing useful.
fn key_from_hex(hex: &str) -> anyhow::Result<ClusterKey> {
    // Validates (64 hex digits) before the id is derived from the bytes.
    ClusterKey::from_hex(KeyId(0), hex)
        .context("a cluster key is 64 hex digits (e.g. `openssl rand -hex 32`)")?;
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .filter_map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
        .collect();
    Ok(ClusterKey::from_hex(KeyId(crc32c::crc32c(&bytes)), hex)?)
}

fn view_of(member: &Member, state: &'static str) -> MemberView {
    let addrs: &MemberAddrs = member.addrs();
    MemberView {
        node_id: member.node_id(),
        generation: member.generation(),
        state,
        gossip: addrs.gossip.to_string(),
        quic: addrs.quic.to_string(),
        admin: addrs.admin.to_string(),
        peer: addrs.peer.to_string(),
        rack: member.rack().map(str::to_string),
        shards: member.shard_count(),
        since_unix_ms: sprawl_shards::shard::now_ms(),
        load: None,
    }
}

/// Starts the gossip thread. It leaves the cluster (telling a few members)
/// when `stop` is set.
#[allow(clippy::too_many_arguments)]
pub fn start(
    settings: &GossipSettings,
    node_id: u64,
    quic: SocketAddr,
    admin: SocketAddr,
    peer: SocketAddr,
    shards: u16,
    snapshots: Vec<Arc<Mutex<ShardSnapshot>>>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<(SharedView, std::thread::JoinHandle<()>)> {
    let mut keys = settings.keys.iter();
    let primary = keys
        .next()
        .context("gossip needs a cluster key: --cluster-key HEX (e.g. `openssl rand -hex 32`)")?;
    let mut keyring = Keyring::new(key_from_hex(primary)?)?;
    for extra in keys {
        keyring.add(key_from_hex(extra)?)?;
    }
    let socket = UdpSocket::bind(settings.bind)
        .with_context(|| format!("binding the gossip socket {}", settings.bind))?;
    let gossip = socket.local_addr()?;
    // A generation that rises across restarts: a restarted node replaces
    // its previous identity instead of being taken for an impostor.
    let generation = sprawl_shards::shard::now_ms() as u64;
    let local = Member::new(
        node_id,
        generation,
        MemberAddrs {
            gossip,
            quic,
            admin,
            peer,
        },
        settings.rack.clone(),
        shards,
    )?;
    let now = Instant::now();
    let mut membership = Membership::new(
        local.clone(),
        MembershipConfig::lan(CLUSTER_SIZE_EXPECTED),
        keyring,
        generation ^ node_id.rotate_left(17),
        now,
    )?;
    membership.join(&settings.seeds, now)?;
    let view: SharedView = Arc::new(Mutex::new(ClusterView {
        local: Some(view_of(&local, "alive")),
        ..ClusterView::default()
    }));
    let thread_view = view.clone();
    let join = std::thread::Builder::new()
        .name("gossip".into())
        .spawn(move || {
            let mut driver = Driver {
                socket,
                membership,
                timers: BinaryHeap::new(),
                timer_seq: 0,
                view: thread_view,
                snapshots,
                last_messages_in: None,
            };
            driver.run(&stop);
        })?;
    Ok((view, join))
}

struct Driver {
    socket: UdpSocket,
    membership: Membership,
    /// (deadline, insertion order) → timer; min-heap by deadline.
    timers: BinaryHeap<Reverse<(Instant, u64, TimerSlot)>>,
    timer_seq: u64,
    view: SharedView,
    snapshots: Vec<Arc<Mutex<ShardSnapshot>>>,
    last_messages_in: Option<(Instant, u64, u64, u64)>,
}

/// A timer in the heap; ordered by the heap key only.
struct TimerSlot(MembershipTimer);

impl PartialEq for TimerSlot {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for TimerSlot {}
impl PartialOrd for TimerSlot {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for TimerSlot {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

impl Driver {
    fn run(&mut self, stop: &AtomicBool) {
        let mut buf = vec![0u8; DATAGRAM_BYTES_MAX];
        let mut last_load = Instant::now();
        self.drain_outputs();
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            let wait = self
                .timers
                .peek()
                .map_or(POLL_MAX, |Reverse((at, _, _))| {
                    at.saturating_duration_since(now)
                })
                .clamp(Duration::from_millis(1), POLL_MAX);
            let _ = self.socket.set_read_timeout(Some(wait));
            match self.socket.recv_from(&mut buf) {
                Ok((n, from)) => {
                    if let Err(e) = self
                        .membership
                        .handle_datagram(from, &buf[..n], Instant::now())
                    {
                        tracing::debug!(%from, error = %e, "gossip datagram");
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => tracing::warn!(error = %e, "gossip socket"),
            }
            let now = Instant::now();
            while self
                .timers
                .peek()
                .is_some_and(|Reverse((at, _, _))| *at <= now)
            {
                let Reverse((_, _, TimerSlot(timer))) = self.timers.pop().expect("peeked");
                if let Err(e) = self.membership.handle_timer(timer, now) {
                    tracing::debug!(error = %e, "gossip timer");
                }
            }
            if last_load.elapsed() >= Duration::from_secs(1) {
                last_load = Instant::now();
                let load = self.load_summary();
                if let Err(e) = self.membership.set_load(load, last_load) {
                    tracing::debug!(error = %e, "publishing load");
                }
                let mut view = self.view.lock().expect("cluster view lock");
                if let Some(local) = &mut view.local {
                    local.load = Some(load);
                }
                let stats = self.membership.stats();
                view.stats = json!({
                    "datagrams_received": stats.datagrams_received,
                    "datagrams_accepted": stats.datagrams_accepted,
                    "datagrams_sent": stats.datagrams_sent,
                    "bytes_sent": stats.bytes_sent,
                    "rejected_auth_failed": stats.rejected.auth_failed,
                    "rejected_unknown_key": stats.rejected.unknown_key,
                    "rejected_total": stats.rejected.total(),
                    "protocol_errors": stats.protocol_errors,
                    "node_id_conflicts": stats.node_id_conflicts,
                });
            }
            self.drain_outputs();
        }
        if let Err(e) = self.membership.leave(Instant::now()) {
            tracing::debug!(error = %e, "leaving the cluster");
        }
        self.drain_outputs();
    }

    /// This node's load over the last second, from the shard snapshots.
    fn load_summary(&mut self) -> LoadSummary {
        let (mut messages, mut bytes_in, mut bytes_out) = (0u64, 0u64, 0u64);
        for s in &self.snapshots {
            let s = s.lock().expect("snapshot lock");
            messages += s.messages_in;
            bytes_in += s.bytes_in;
            bytes_out += s.bytes_out;
        }
        let now = Instant::now();
        let summary = match self.last_messages_in {
            Some((at, m, bi, bo)) => {
                let secs = now.duration_since(at).as_secs_f64().max(1e-3);
                let rate = |now: u64, then: u64| (now.saturating_sub(then) as f64 / secs) as u64;
                LoadSummary {
                    messages_in_per_sec: rate(messages, m),
                    bytes_in_per_sec: rate(bytes_in, bi),
                    bytes_out_per_sec: rate(bytes_out, bo),
                    ..LoadSummary::default()
                }
            }
            None => LoadSummary::default(),
        };
        self.last_messages_in = Some((now, messages, bytes_in, bytes_out));
        summary
    }

    fn drain_outputs(&mut self) {
        while let Some(output) = self.membership.poll_output() {
            match output {
                MembershipOutput::Send { to, bytes } => {
                    if let Err(e) = self.socket.send_to(&bytes, to) {
                        tracing::debug!(%to, error = %e, "gossip send");
                    }
                }
                MembershipOutput::Schedule { after, timer } => {
                    self.timer_seq += 1;
                    self.timers.push(Reverse((
                        Instant::now() + after,
                        self.timer_seq,
                        TimerSlot(timer),
                    )));
                }
                MembershipOutput::MemberUp(m) => {
                    tracing::info!(node_id = m.node_id(), gossip = %m.gossip_addr(), "member up");
                    let mut view = self.view.lock().expect("cluster view lock");
                    view.members_up_total += 1;
                    let load = view.members.get(&m.node_id()).and_then(|v| v.load);
                    let mut v = view_of(&m, "alive");
                    v.load = load;
                    view.members.insert(m.node_id(), v);
                }
                MembershipOutput::MemberDown(m) => {
                    tracing::warn!(node_id = m.node_id(), gossip = %m.gossip_addr(), "member down");
                    let mut view = self.view.lock().expect("cluster view lock");
                    view.members_down_total += 1;
                    let load = view.members.get(&m.node_id()).and_then(|v| v.load);
                    let mut v = view_of(&m, "down");
                    v.load = load;
                    view.members.insert(m.node_id(), v);
                }
                MembershipOutput::MemberRenamed { old, new } => {
                    let mut view = self.view.lock().expect("cluster view lock");
                    let state = view
                        .members
                        .get(&old.node_id())
                        .map_or("alive", |v| v.state);
                    view.members.remove(&old.node_id());
                    view.members.insert(new.node_id(), view_of(&new, state));
                }
                MembershipOutput::PeerLoad { node_id, load } => {
                    let mut view = self.view.lock().expect("cluster view lock");
                    if let Some(v) = view.members.get_mut(&node_id) {
                        v.load = Some(load);
                    }
                }
                MembershipOutput::Joined => {
                    tracing::info!("joined the cluster");
                    self.view.lock().expect("cluster view lock").joined = true;
                }
                MembershipOutput::Isolated => {
                    tracing::warn!("no other member reachable; retrying the seeds");
                    self.view.lock().expect("cluster view lock").joined = false;
                }
                MembershipOutput::Rejoined(m) => {
                    tracing::warn!(
                        generation = m.generation(),
                        "declared down while alive; rejoined"
                    );
                    self.view.lock().expect("cluster view lock").local = Some(view_of(&m, "alive"));
                }
                MembershipOutput::Defunct => {
                    tracing::info!("left the cluster");
                }
            }
        }
    }
}

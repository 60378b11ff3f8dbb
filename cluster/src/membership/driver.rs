//! `Membership`: the sans-IO driver around `foca::Foca`.
//!
//! Inputs are datagrams, timer expiries and commands, each with the current
//! time; outputs are drained with [`Membership::poll_output`] after every
//! input: datagrams to send (already sealed), timers to schedule, and what
//! changed. Nothing here touches a socket or a clock, so the node's UDP
//! loop and the deterministic simulator drive it the same way.
//!
//! Every sealed plaintext starts with a frame tag: a SWIM datagram (foca's
//! bytes), a state-sync request, or a state-sync chunk. State sync is the
//! anti-entropy memberlist calls push/pull: a member pulls another's whole
//! member list (foca's `iter_membership_state`) and merges it with foca's
//! `apply_many`, which applies SWIM's precedence rules; the protocol stays
//! foca's, this only moves its state in bulk.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use foca::{Foca, Notification, PostcardCodec};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use thiserror::Error;

use super::config::{swim_bytes_max, ConfigError, MembershipConfig, FRAME_TAG_BYTES};
use super::identity::{Member, NodeId};
use super::keyring::{Keyring, OpenError, RejectCounts};
use super::load::{LoadBroadcasts, LoadItem, LoadSummary, LoadVersion, PeerLoad, SharedLoadTable};

/// Seeds remembered for joining; more is a misconfiguration.
pub const SEEDS_MAX: usize = 64;
/// Outputs that may wait for [`Membership::poll_output`]. The caller drains
/// after every input, so this is never reached in correct use; one input
/// produces at most a few dozen.
pub const OUTPUTS_PENDING_MAX: usize = 1 << 16;
/// Datagrams one state-sync answer may take (~7,000 members at 1400-byte
/// datagrams); members past that are left to SWIM.
pub const SYNC_DATAGRAMS_MAX: usize = 256;

const FRAME_SWIM: u8 = 0;
const FRAME_SYNC_REQUEST: u8 = 1;
const FRAME_SYNC_STATE: u8 = 2;

type SwimInstance = Foca<Member, PostcardCodec, StdRng, LoadBroadcasts>;

/// Something for the caller to do or know, in the order it happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MembershipOutput {
    /// Send `bytes` (sealed) to `to` over UDP.
    Send {
        /// The destination's gossip address.
        to: SocketAddr,
        /// The sealed datagram.
        bytes: Vec<u8>,
    },
    /// Call [`Membership::handle_timer`] with `timer` after `after`.
    /// Every timer must be delivered (late is fine, lost is not).
    Schedule {
        /// Delay from the input that produced it.
        after: Duration,
        /// Hand back as is.
        timer: MembershipTimer,
    },
    /// A member became active.
    MemberUp(Member),
    /// An active member was declared down (or left).
    MemberDown(Member),
    /// A member's identity was replaced by a newer one on the same gossip
    /// address (restart, or a renewal after a false down). Liveness did not
    /// change unless a `MemberUp`/`MemberDown` follows.
    MemberRenamed {
        /// The identity known until now.
        old: Member,
        /// Its replacement.
        new: Member,
    },
    /// A newer load summary of a peer arrived.
    PeerLoad {
        /// Whose.
        node_id: NodeId,
        /// The summary.
        load: LoadSummary,
    },
    /// At least one member knows us: joined (or rejoined after being alone).
    Joined,
    /// No active member is left: we are alone; join retries to the seeds
    /// resume.
    Isolated,
    /// The cluster declared us down while we were alive; we renewed our
    /// identity (this one, one generation up) and rejoined.
    Rejoined(Member),
    /// We left the cluster (or could not renew after being declared down):
    /// this instance is done.
    Defunct,
}

/// An opaque timer to hand back to [`Membership::handle_timer`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MembershipTimer(TimerKind);

#[derive(Clone, Debug, PartialEq, Eq)]
enum TimerKind {
    Swim(foca::Timer<Member>),
    /// Announce to the seeds again if still not joined. `epoch` changes on
    /// every new join attempt so retries of an older one stop.
    JoinRetry {
        epoch: u64,
    },
    /// Pull a random member's member list.
    Sync,
}

/// Counters since creation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MembershipStats {
    /// Datagrams handed to [`Membership::handle_datagram`].
    pub datagrams_received: u64,
    /// Datagrams that authenticated and foca handled without error.
    pub datagrams_accepted: u64,
    /// Datagrams dropped by the keyring, by reason.
    pub rejected: RejectCounts,
    /// Authenticated datagrams foca refused (malformed, stale, misrouted).
    pub protocol_errors: u64,
    /// Datagrams dropped because this member left.
    pub ignored_after_leave: u64,
    /// Datagrams produced for sending.
    pub datagrams_sent: u64,
    /// Datagram bytes produced for sending.
    pub bytes_sent: u64,
    /// Outgoing datagrams that could not be sealed (nonce space exhausted).
    pub seal_failures: u64,
    /// Announces sent to seeds.
    pub join_announces: u64,
    /// Gossips sent early because the membership changed.
    pub change_gossips: u64,
    /// Members seen with the node id of another live member (or ours) on a
    /// different address: two nodes share a data dir.
    pub node_id_conflicts: u64,
    /// Load broadcasts that failed to decode.
    pub load_decode_errors: u64,
    /// State-sync requests sent.
    pub sync_requests: u64,
    /// State-sync datagrams sent in answer to requests.
    pub sync_datagrams_sent: u64,
    /// Member records received by state sync (known or not).
    pub sync_members_received: u64,
}

/// Errors of the membership driver. Dropped datagrams are normal operation
/// on an open port; they are returned so the caller can log them, and
/// counted in [`Membership::stats`].
#[derive(Debug, Error)]
pub enum MembershipError {
    /// The settings are invalid.
    #[error("membership config: {0}")]
    Config(#[from] ConfigError),
    /// The keyring dropped the datagram.
    #[error("gossip datagram from {from} dropped: {source}")]
    Rejected {
        /// Sender's address.
        from: SocketAddr,
        /// Why.
        source: OpenError,
    },
    /// An authenticated datagram foca refused.
    #[error("gossip datagram from {from} refused by SWIM: {source}")]
    Protocol {
        /// Sender's address.
        from: SocketAddr,
        /// foca's reason.
        source: foca::Error,
    },
    /// foca failed handling a timer (it recovers on the next probe).
    #[error("SWIM timer {timer}: {source}")]
    Timer {
        /// Which kind of timer.
        timer: &'static str,
        /// foca's reason.
        source: foca::Error,
    },
    /// An authenticated datagram whose frame is not understood.
    #[error("gossip datagram from {from}: {reason}")]
    Frame {
        /// Sender's address.
        from: SocketAddr,
        /// What was wrong.
        reason: FrameError,
    },
    /// foca refused an operation (announce, gossip, leave, broadcast).
    #[error("SWIM {operation}: {source}")]
    Swim {
        /// What was attempted.
        operation: &'static str,
        /// foca's reason.
        source: foca::Error,
    },
    /// More seeds than [`SEEDS_MAX`].
    #[error("{count} seeds given, at most {SEEDS_MAX}")]
    TooManySeeds {
        /// How many.
        count: usize,
    },
    /// The member left; this instance takes no more commands.
    #[error("this member left the cluster")]
    Left,
}

fn timer_name(timer: &foca::Timer<Member>) -> &'static str {
    match timer {
        foca::Timer::ProbeRandomMember(_) => "probe random member",
        foca::Timer::SendIndirectProbe { .. } => "send indirect probe",
        foca::Timer::ChangeSuspectToDown { .. } => "change suspect to down",
        foca::Timer::PeriodicAnnounce(_) => "periodic announce",
        foca::Timer::PeriodicAnnounceDown(_) => "periodic announce to down members",
        foca::Timer::PeriodicGossip(_) => "periodic gossip",
        foca::Timer::RemoveDown(_) => "remove down member",
    }
}

/// Why an authenticated datagram's frame was refused.
#[derive(Debug, Error)]
pub enum FrameError {
    /// No frame tag.
    #[error("empty plaintext")]
    Empty,
    /// A tag this build does not know.
    #[error("unknown frame tag {0}")]
    UnknownTag(u8),
    /// A state-sync chunk that does not decode.
    #[error("undecodable state-sync record at byte {offset}: {source}")]
    BadState {
        /// Where in the chunk.
        offset: usize,
        /// Why.
        source: postcard::Error,
    },
}

/// What happened during one call into foca, for the follow-ups the driver
/// takes after it returns.
#[derive(Default)]
struct CallEffects {
    membership_changed: bool,
    /// Whether foca is connected after the call, if that changed (the
    /// last of Active / Idle / Rejoin / Defunct decides).
    active_after: Option<bool>,
    became_idle: bool,
    defunct: bool,
    came_up: Vec<Member>,
    /// Sender of the datagram being handled, if the call handles one.
    datagram_from: Option<SocketAddr>,
}

/// The pieces foca's runtime callbacks write to: split from the foca
/// instance so both can be borrowed at once.
struct Outbox {
    keyring: Keyring,
    out: VecDeque<MembershipOutput>,
    stats: MembershipStats,
}

impl Outbox {
    fn push(&mut self, output: MembershipOutput) {
        debug_assert!(
            self.out.len() < OUTPUTS_PENDING_MAX,
            "membership outputs not drained: poll_output after every input"
        );
        self.out.push_back(output);
    }

    /// Seals `[tag] ++ payload` and queues it for `to`.
    fn send_frame(&mut self, to: SocketAddr, tag: u8, payload: &[u8]) {
        let mut plaintext = Vec::with_capacity(FRAME_TAG_BYTES + payload.len());
        plaintext.push(tag);
        plaintext.extend_from_slice(payload);
        self.send_plaintext(to, &plaintext);
    }

    fn send_plaintext(&mut self, to: SocketAddr, plaintext: &[u8]) {
        match self.keyring.seal(plaintext) {
            Ok(bytes) => {
                self.stats.datagrams_sent += 1;
                self.stats.bytes_sent += bytes.len() as u64;
                self.push(MembershipOutput::Send { to, bytes });
            }
            Err(err) => {
                self.stats.seal_failures += 1;
                tracing::error!(%to, %err, "gossip datagram not sent");
            }
        }
    }

    fn runtime<'a>(&'a mut self, effects: &'a mut CallEffects) -> Runtime<'a> {
        Runtime {
            outbox: self,
            effects,
        }
    }
}

/// foca's `Runtime` for one call: seals sends, queues timers and events.
struct Runtime<'a> {
    outbox: &'a mut Outbox,
    effects: &'a mut CallEffects,
}

impl foca::Runtime<Member> for Runtime<'_> {
    fn notify(&mut self, notification: Notification<'_, Member>) {
        let output = match notification {
            Notification::MemberUp(m) => {
                tracing::info!(node_id = m.node_id(), addr = %m.gossip_addr(), generation = m.generation(), "member up");
                self.effects.membership_changed = true;
                self.effects.came_up.push(m.clone());
                MembershipOutput::MemberUp(m.clone())
            }
            Notification::MemberDown(m) => {
                tracing::info!(node_id = m.node_id(), addr = %m.gossip_addr(), generation = m.generation(), "member down");
                self.effects.membership_changed = true;
                MembershipOutput::MemberDown(m.clone())
            }
            Notification::Rename(old, new) => {
                tracing::info!(
                    node_id = new.node_id(),
                    addr = %new.gossip_addr(),
                    old_generation = old.generation(),
                    generation = new.generation(),
                    "member renamed"
                );
                self.effects.membership_changed = true;
                MembershipOutput::MemberRenamed {
                    old: old.clone(),
                    new: new.clone(),
                }
            }
            Notification::Active => {
                tracing::info!("joined the cluster");
                self.effects.active_after = Some(true);
                MembershipOutput::Joined
            }
            Notification::Idle => {
                tracing::warn!("no live member left: isolated");
                self.effects.became_idle = true;
                self.effects.active_after = Some(false);
                MembershipOutput::Isolated
            }
            Notification::Rejoin(me) => {
                tracing::warn!(
                    generation = me.generation(),
                    "declared down while alive: renewed identity and rejoined"
                );
                self.effects.membership_changed = true;
                // foca starts over under the new identity and reports
                // `Active` again once a member answers it.
                self.effects.active_after = Some(false);
                MembershipOutput::Rejoined(me.clone())
            }
            Notification::Defunct => {
                tracing::info!("membership defunct");
                self.effects.defunct = true;
                self.effects.active_after = Some(false);
                MembershipOutput::Defunct
            }
        };
        self.outbox.push(output);
    }

    fn send_to(&mut self, to: Member, data: &[u8]) {
        self.outbox.send_frame(to.gossip_addr(), FRAME_SWIM, data);
    }

    fn submit_after(&mut self, event: foca::Timer<Member>, after: Duration) {
        self.outbox.push(MembershipOutput::Schedule {
            after,
            timer: MembershipTimer(TimerKind::Swim(event)),
        });
    }
}

/// One member's view of the cluster: SWIM failure detection and
/// dissemination (foca), sealed gossip (the keyring), joins through seeds,
/// and load summaries of every member.
pub struct Membership {
    swim: SwimInstance,
    outbox: Outbox,
    loads: SharedLoadTable,
    config: MembershipConfig,
    /// Plaintext of the datagram being handled (reused).
    plaintext: Vec<u8>,
    seeds: Vec<SocketAddr>,
    join_epoch: u64,
    join_attempt: u32,
    active: bool,
    left: bool,
    load_sequence: u64,
    last_change_gossip_at: Option<Instant>,
    /// Picks whom to pull state from (foca's RNG is private to it).
    sync_rng: StdRng,
    sync_timer_armed: bool,
    now: Instant,
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership")
            .field("local", self.swim.identity())
            .field("members", &self.swim.num_members())
            .field("active", &self.active)
            .field("left", &self.left)
            .finish_non_exhaustive()
    }
}

impl Membership {
    /// A member that knows nobody yet. `rng_seed` seeds foca's choices of
    /// whom to probe and gossip to (a random seed in production, a derived
    /// one in simulation).
    pub fn new(
        local: Member,
        config: MembershipConfig,
        mut keyring: Keyring,
        rng_seed: u64,
        now: Instant,
    ) -> Result<Self, MembershipError> {
        let swim_config = config.to_foca()?;
        keyring.set_packet_bytes_max(config.packet_bytes_max);
        let (handler, loads) = LoadBroadcasts::new(local.node_id(), now);
        let swim = Foca::with_custom_broadcast(
            local,
            swim_config,
            StdRng::seed_from_u64(rng_seed),
            PostcardCodec,
            handler,
        );
        Ok(Self {
            swim,
            outbox: Outbox {
                keyring,
                out: VecDeque::new(),
                stats: MembershipStats::default(),
            },
            loads,
            config,
            plaintext: Vec::new(),
            seeds: Vec::new(),
            join_epoch: 0,
            join_attempt: 0,
            active: false,
            left: false,
            load_sequence: 0,
            last_change_gossip_at: None,
            sync_rng: StdRng::seed_from_u64(rng_seed ^ 0x5157_a7e5_9c0d_e111),
            sync_timer_armed: false,
            now,
        })
    }

    /// Joins through `seeds` (gossip addresses as the seeds advertise
    /// them): announces to all of them now and again on a backoff timer
    /// until one answers, and again whenever this member finds itself
    /// alone. Our own address among the seeds is skipped, so every node can
    /// be given the same list; with no other seed this member waits to be
    /// joined.
    pub fn join(&mut self, seeds: &[SocketAddr], now: Instant) -> Result<(), MembershipError> {
        self.set_now(now);
        if self.left {
            return Err(MembershipError::Left);
        }
        if seeds.len() > SEEDS_MAX {
            return Err(MembershipError::TooManySeeds { count: seeds.len() });
        }
        let own = self.swim.identity().gossip_addr();
        self.seeds.clear();
        for seed in seeds {
            if *seed != own && !self.seeds.contains(seed) {
                self.seeds.push(*seed);
            }
        }
        self.start_joining()
    }

    /// Leaves the cluster: tells a few members we are going (they spread
    /// it), then ignores everything.
    pub fn leave(&mut self, now: Instant) -> Result<(), MembershipError> {
        self.set_now(now);
        if self.left {
            return Err(MembershipError::Left);
        }
        self.left = true;
        let mut effects = CallEffects::default();
        let result = self
            .swim
            .leave_cluster(self.outbox.runtime(&mut effects))
            .map_err(|source| MembershipError::Swim {
                operation: "leave",
                source,
            });
        self.after_call(effects);
        result
    }

    /// Publishes this member's load summary; it spreads with the gossip.
    /// Each call is a new version that replaces older ones everywhere.
    /// Gossip is best effort (each holder passes an item on
    /// `max_transmissions` times; a member misses one now and then,
    /// more under loss), so publish periodically, e.g. once a second on
    /// small clusters; every summary costs the cluster about
    /// members × `max_transmissions` item sends, so publish less often as
    /// the cluster grows (every 10 s or more at 1,000 members).
    pub fn set_load(&mut self, load: LoadSummary, now: Instant) -> Result<(), MembershipError> {
        self.set_now(now);
        if self.left {
            return Err(MembershipError::Left);
        }
        self.load_sequence += 1;
        let me = self.swim.identity();
        let item = LoadItem {
            node_id: me.node_id(),
            version: LoadVersion {
                generation: me.generation(),
                sequence: self.load_sequence,
            },
            load,
        };
        self.swim
            .add_broadcast(&item.encode())
            .map_err(|source| MembershipError::Swim {
                operation: "publish load",
                source,
            })?;
        Ok(())
    }

    /// A datagram received on the gossip socket from `from`.
    pub fn handle_datagram(
        &mut self,
        from: SocketAddr,
        packet: &[u8],
        now: Instant,
    ) -> Result<(), MembershipError> {
        self.set_now(now);
        self.outbox.stats.datagrams_received += 1;
        if self.left {
            self.outbox.stats.ignored_after_leave += 1;
            return Ok(());
        }
        if let Err(source) = self.outbox.keyring.open(packet, &mut self.plaintext) {
            self.outbox.stats.rejected = self.outbox.keyring.stats().rejected;
            tracing::debug!(%from, %source, "gossip datagram dropped");
            return Err(MembershipError::Rejected { from, source });
        }
        let result = match self.plaintext.first().copied() {
            Some(FRAME_SWIM) => {
                let mut effects = CallEffects {
                    datagram_from: Some(from),
                    ..CallEffects::default()
                };
                let result = self.swim.handle_data(
                    &self.plaintext[FRAME_TAG_BYTES..],
                    self.outbox.runtime(&mut effects),
                );
                self.after_call(effects);
                result.map_err(|source| MembershipError::Protocol { from, source })
            }
            Some(FRAME_SYNC_REQUEST) => {
                self.answer_sync(from);
                Ok(())
            }
            Some(FRAME_SYNC_STATE) => self.apply_sync_state(from),
            Some(tag) => Err(MembershipError::Frame {
                from,
                reason: FrameError::UnknownTag(tag),
            }),
            None => Err(MembershipError::Frame {
                from,
                reason: FrameError::Empty,
            }),
        };
        match &result {
            Ok(()) => self.outbox.stats.datagrams_accepted += 1,
            Err(err) => {
                self.outbox.stats.protocol_errors += 1;
                tracing::debug!(%err, "gossip datagram refused");
            }
        }
        result
    }

    /// A timer from a [`MembershipOutput::Schedule`] expired.
    pub fn handle_timer(
        &mut self,
        timer: MembershipTimer,
        now: Instant,
    ) -> Result<(), MembershipError> {
        self.set_now(now);
        match timer.0 {
            TimerKind::Swim(event) => {
                if self.left {
                    return Ok(());
                }
                let mut effects = CallEffects::default();
                let timer = timer_name(&event);
                let result = self
                    .swim
                    .handle_timer(event, self.outbox.runtime(&mut effects));
                self.after_call(effects);
                result.map_err(|source| MembershipError::Timer { timer, source })
            }
            TimerKind::JoinRetry { epoch } => {
                if epoch != self.join_epoch || self.active || self.left {
                    return Ok(());
                }
                self.join_attempt = self.join_attempt.saturating_add(1);
                self.announce_to_seeds()
            }
            TimerKind::Sync => {
                self.sync_timer_armed = false;
                if self.left {
                    return Ok(());
                }
                if self.active {
                    self.request_sync();
                }
                self.arm_sync_timer();
                Ok(())
            }
        }
    }

    /// The next output, in order; call until `None` after every input.
    pub fn poll_output(&mut self) -> Option<MembershipOutput> {
        self.outbox.out.pop_front()
    }

    /// This member's current identity (its generation goes up when it
    /// renews after a false down).
    pub fn local(&self) -> &Member {
        self.swim.identity()
    }

    /// The active members other than this one.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.swim.iter_members().map(foca::Member::id)
    }

    /// How many active members other than this one.
    pub fn member_count(&self) -> usize {
        self.swim.num_members()
    }

    /// Whether at least one member knows us.
    pub fn is_joined(&self) -> bool {
        self.active
    }

    /// Whether this member left (or went defunct): it takes no more input.
    pub fn has_left(&self) -> bool {
        self.left
    }

    /// The latest load summary of `node_id` (any node ever heard of; check
    /// [`Membership::members`] for liveness).
    pub fn peer_load(&self, node_id: NodeId) -> Option<PeerLoad> {
        self.loads.lock().get(node_id).copied()
    }

    /// Counters since creation.
    pub fn stats(&self) -> MembershipStats {
        let mut stats = self.outbox.stats;
        stats.rejected = self.outbox.keyring.stats().rejected;
        stats.load_decode_errors = self.loads.lock().decode_errors;
        stats
    }

    /// The keyring, to inspect.
    pub fn keyring(&self) -> &Keyring {
        &self.outbox.keyring
    }

    /// The keyring, to rotate keys (`add` / `promote` / `retire`) live.
    pub fn keyring_mut(&mut self) -> &mut Keyring {
        &mut self.outbox.keyring
    }

    /// The settings in use.
    pub fn config(&self) -> &MembershipConfig {
        &self.config
    }

    fn set_now(&mut self, now: Instant) {
        debug_assert!(now >= self.now, "time went backwards");
        self.now = now.max(self.now);
        self.loads.lock().set_now(self.now);
    }

    fn start_joining(&mut self) -> Result<(), MembershipError> {
        if self.seeds.is_empty() {
            return Ok(());
        }
        self.join_epoch += 1;
        self.join_attempt = 0;
        self.announce_to_seeds()
    }

    /// Announces to every seed and schedules the next retry.
    fn announce_to_seeds(&mut self) -> Result<(), MembershipError> {
        let mut effects = CallEffects::default();
        let mut first_error = None;
        for seed in &self.seeds {
            self.outbox.stats.join_announces += 1;
            tracing::debug!(%seed, attempt = self.join_attempt, "announcing to seed");
            if let Err(source) = self.swim.announce(
                Member::seed_placeholder(*seed),
                self.outbox.runtime(&mut effects),
            ) {
                first_error.get_or_insert(source);
            }
        }
        let base_ms = self.config.join_retry_interval_ms;
        let delay_ms = base_ms
            .saturating_mul(1u64 << self.join_attempt.min(20))
            .min(self.config.join_retry_interval_ms_max);
        self.outbox.push(MembershipOutput::Schedule {
            after: Duration::from_millis(delay_ms),
            timer: MembershipTimer(TimerKind::JoinRetry {
                epoch: self.join_epoch,
            }),
        });
        self.after_call(effects);
        match first_error {
            None => Ok(()),
            Some(source) => Err(MembershipError::Swim {
                operation: "announce",
                source,
            }),
        }
    }

    /// Follow-ups of a foca call: report load updates, track whether we
    /// are joined, and spread membership changes without waiting for the
    /// next gossip period.
    fn after_call(&mut self, effects: CallEffects) {
        let (fresh, decode_errors) = {
            let mut table = self.loads.lock();
            (table.take_fresh(), table.decode_errors)
        };
        self.outbox.stats.load_decode_errors = decode_errors;
        for (node_id, load) in fresh {
            self.outbox
                .push(MembershipOutput::PeerLoad { node_id, load });
        }
        for up in &effects.came_up {
            self.check_node_id_conflict(up);
        }
        let was_active = self.active;
        if let Some(active) = effects.active_after {
            self.active = active;
        }
        if self.active && !was_active && !self.left {
            // Just joined (or rejoined): the answer that let us in named a
            // few members; pull the whole list now from the member that
            // answered (a seed's view is the most complete one around).
            match effects.datagram_from {
                Some(from) => self.send_sync_request(from),
                None => self.request_sync(),
            }
            self.arm_sync_timer();
        }
        if effects.defunct {
            // Left, or declared down with no identity left to renew to:
            // this instance is done either way.
            self.left = true;
        }
        if effects.became_idle && !self.active && !self.left {
            // Alone: everybody else is down or unreachable. The seeds are
            // the way back once they (or the network) return.
            if let Err(err) = self.start_joining() {
                tracing::debug!(%err, "rejoin announce failed");
            }
        }
        let has_news = self.swim.updates_backlog() > 0 || self.swim.custom_broadcast_backlog() > 0;
        if effects.membership_changed && has_news && self.active && !self.left {
            let due = self.last_change_gossip_at.is_none_or(|at| {
                self.now.saturating_duration_since(at)
                    >= Duration::from_millis(self.config.change_gossip_interval_ms_min)
            });
            if due {
                self.last_change_gossip_at = Some(self.now);
                self.outbox.stats.change_gossips += 1;
                let mut more = CallEffects::default();
                if let Err(err) = self.swim.gossip(self.outbox.runtime(&mut more)) {
                    tracing::debug!(%err, "change gossip failed");
                }
                // Gossiping only sends: it cannot change membership, so
                // there is nothing to follow up.
                debug_assert!(!more.membership_changed && more.came_up.is_empty());
            }
        }
    }

    fn arm_sync_timer(&mut self) {
        if self.sync_timer_armed {
            return;
        }
        self.sync_timer_armed = true;
        self.outbox.push(MembershipOutput::Schedule {
            after: Duration::from_millis(self.config.sync_interval_ms),
            timer: MembershipTimer(TimerKind::Sync),
        });
    }

    /// Asks one random active member for its member list.
    fn request_sync(&mut self) {
        let count = self.swim.num_members();
        if count == 0 {
            return;
        }
        let pick = self.sync_rng.random_range(0..count);
        let Some(target) = self
            .swim
            .iter_members()
            .nth(pick)
            .map(|m| m.id().gossip_addr())
        else {
            return;
        };
        self.send_sync_request(target);
    }

    fn send_sync_request(&mut self, to: SocketAddr) {
        self.outbox.stats.sync_requests += 1;
        self.outbox.send_frame(to, FRAME_SYNC_REQUEST, &[]);
    }

    /// Sends our whole member list (down members too: they are news as
    /// well) to `to`, packed into as few datagrams as fit.
    fn answer_sync(&mut self, to: SocketAddr) {
        let budget = swim_bytes_max(self.config.packet_bytes_max) + FRAME_TAG_BYTES;
        let mut chunk = vec![FRAME_SYNC_STATE];
        let mut datagrams = 0;
        for member in self.swim.iter_membership_state() {
            let record =
                postcard::to_allocvec(member).expect("postcard encodes a member into a Vec");
            if chunk.len() + record.len() > budget {
                if datagrams + 1 == SYNC_DATAGRAMS_MAX {
                    tracing::warn!(%to, "member list over {SYNC_DATAGRAMS_MAX} datagrams: sync truncated");
                    break;
                }
                self.outbox.send_plaintext(to, &chunk);
                self.outbox.stats.sync_datagrams_sent += 1;
                datagrams += 1;
                chunk.truncate(FRAME_TAG_BYTES);
            }
            chunk.extend_from_slice(&record);
        }
        if chunk.len() > FRAME_TAG_BYTES {
            self.outbox.send_plaintext(to, &chunk);
            self.outbox.stats.sync_datagrams_sent += 1;
        }
    }

    /// Merges a chunk of a peer's member list. Records already known are
    /// no-ops in foca; news is applied without re-broadcasting (the rest of
    /// the cluster has it already: that is where it came from).
    fn apply_sync_state(&mut self, from: SocketAddr) -> Result<(), MembershipError> {
        let mut members = Vec::new();
        let mut rest = &self.plaintext[FRAME_TAG_BYTES..];
        while !rest.is_empty() {
            let offset = self.plaintext.len() - rest.len();
            match postcard::take_from_bytes::<foca::Member<Member>>(rest) {
                Ok((member, tail)) => {
                    members.push(member);
                    rest = tail;
                }
                Err(source) => {
                    return Err(MembershipError::Frame {
                        from,
                        reason: FrameError::BadState { offset, source },
                    })
                }
            }
        }
        self.outbox.stats.sync_members_received += members.len() as u64;
        let mut effects = CallEffects {
            datagram_from: Some(from),
            ..CallEffects::default()
        };
        let result = self.swim.apply_many(
            members.into_iter(),
            false,
            self.outbox.runtime(&mut effects),
        );
        self.after_call(effects);
        result.map_err(|source| MembershipError::Protocol { from, source })
    }

    fn check_node_id_conflict(&mut self, up: &Member) {
        let me = self.swim.identity();
        let clash_with_me = up.node_id() == me.node_id() && up.gossip_addr() != me.gossip_addr();
        let clash_with_peer = self
            .swim
            .iter_members()
            .map(foca::Member::id)
            .any(|m| m.node_id() == up.node_id() && m.gossip_addr() != up.gossip_addr());
        if clash_with_me || clash_with_peer {
            self.outbox.stats.node_id_conflicts += 1;
            tracing::error!(
                node_id = up.node_id(),
                addr = %up.gossip_addr(),
                "two live members share a node id: was a data dir copied?"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::{ClusterKey, KeyId, MemberAddrs};

    fn member(node_id: NodeId, port: u16) -> Member {
        let a = SocketAddr::from(([127, 0, 0, 1], port));
        let addrs = MemberAddrs {
            gossip: a,
            quic: a,
            admin: a,
            peer: a,
        };
        Member::new(node_id, 1, addrs, None, 1).unwrap()
    }

    fn membership(node_id: NodeId, port: u16, now: Instant) -> Membership {
        let keyring = Keyring::with_nonce_prefix(
            ClusterKey::new(KeyId(1), [3; 32]),
            [port as u8, (port >> 8) as u8, node_id as u8, 0, 0, 1],
        );
        Membership::new(
            member(node_id, port),
            MembershipConfig::lan(5),
            keyring,
            node_id,
            now,
        )
        .unwrap()
    }

    fn drain(m: &mut Membership) -> Vec<MembershipOutput> {
        std::iter::from_fn(|| m.poll_output()).collect()
    }

    /// Delivers datagrams among `nodes` at once until none is left
    /// (timers are dropped: this checks message exchange only). Returns
    /// every non-send output per node.
    fn exchange(nodes: &mut [Membership], now: Instant) -> Vec<Vec<MembershipOutput>> {
        let mut seen = vec![Vec::new(); nodes.len()];
        let mut in_flight = Vec::new();
        for _round in 0..100 {
            for (i, n) in nodes.iter_mut().enumerate() {
                for out in drain(n) {
                    match out {
                        MembershipOutput::Send { to, bytes } => {
                            in_flight.push((n.local().gossip_addr(), to, bytes))
                        }
                        MembershipOutput::Schedule { .. } => {}
                        other => seen[i].push(other),
                    }
                }
            }
            if in_flight.is_empty() {
                return seen;
            }
            for (from, to, bytes) in std::mem::take(&mut in_flight) {
                if let Some(n) = nodes.iter_mut().find(|n| n.local().gossip_addr() == to) {
                    let _ = n.handle_datagram(from, &bytes, now);
                }
            }
        }
        panic!("datagrams kept flowing without timers");
    }

    #[test]
    fn join_retries_back_off_until_the_cap() {
        let now = Instant::now();
        let mut m = membership(1, 7001, now);
        let seed = SocketAddr::from(([127, 0, 0, 1], 7002));
        m.join(&[seed, m.local().gossip_addr()], now).unwrap();
        let mut delays_ms = Vec::new();
        let mut at = now;
        for _ in 0..8 {
            let outs = drain(&mut m);
            let sends = outs
                .iter()
                .filter(|o| matches!(o, MembershipOutput::Send { to, .. } if *to == seed))
                .count();
            assert_eq!(
                sends,
                outs.len() - 1,
                "only announces to the seed: {outs:?}"
            );
            assert_eq!(sends, 1, "our own address is not a seed");
            let Some(MembershipOutput::Schedule { after, timer }) = outs.last().cloned() else {
                panic!("no retry scheduled: {outs:?}");
            };
            delays_ms.push(after.as_millis() as u64);
            at += after;
            m.handle_timer(timer, at).unwrap();
        }
        assert_eq!(
            delays_ms,
            vec![250, 500, 1000, 2000, 4000, 5000, 5000, 5000]
        );
        assert_eq!(m.stats().join_announces, 9);
        assert!(!m.is_joined());
    }

    #[test]
    fn a_stale_join_retry_does_nothing() {
        let now = Instant::now();
        let mut m = membership(1, 7001, now);
        let seed = SocketAddr::from(([127, 0, 0, 1], 7002));
        m.join(&[seed], now).unwrap();
        let Some(MembershipOutput::Schedule { timer: stale, .. }) = drain(&mut m).pop() else {
            panic!("no retry");
        };
        // A second join starts a new epoch: the first one's retry is void.
        m.join(&[seed], now).unwrap();
        drain(&mut m);
        m.handle_timer(stale, now).unwrap();
        assert!(drain(&mut m).is_empty());
    }

    #[test]
    fn members_join_through_a_seed_and_learn_each_other() {
        let now = Instant::now();
        let mut nodes = vec![
            membership(1, 7001, now),
            membership(2, 7002, now),
            membership(3, 7003, now),
        ];
        let seed = nodes[0].local().gossip_addr();
        nodes[1].join(&[seed], now).unwrap();
        nodes[2].join(&[seed], now).unwrap();
        let seen = exchange(&mut nodes, now);
        for (i, n) in nodes.iter().enumerate() {
            assert_eq!(n.member_count(), 2, "node {i}: {seen:?}");
            assert!(n.is_joined());
            assert!(seen[i].contains(&MembershipOutput::Joined));
            let ups = seen[i]
                .iter()
                .filter(|o| matches!(o, MembershipOutput::MemberUp(_)))
                .count();
            assert_eq!(ups, 2, "node {i}");
        }
        assert_eq!(nodes[0].stats().node_id_conflicts, 0);
    }

    #[test]
    fn two_live_members_with_one_node_id_are_flagged() {
        let now = Instant::now();
        let mut nodes = vec![
            membership(1, 7001, now),
            membership(2, 7002, now),
            membership(2, 7003, now),
        ];
        let seed = nodes[0].local().gossip_addr();
        nodes[1].join(&[seed], now).unwrap();
        nodes[2].join(&[seed], now).unwrap();
        exchange(&mut nodes, now);
        assert!(nodes[0].stats().node_id_conflicts >= 1);
    }

    #[test]
    fn garbage_is_rejected_and_counted() {
        let now = Instant::now();
        let mut m = membership(1, 7001, now);
        let from = SocketAddr::from(([127, 0, 0, 1], 9));
        let err = m.handle_datagram(from, b"not a gossip packet at all, just text", now);
        assert!(matches!(
            err,
            Err(MembershipError::Rejected {
                source: OpenError::BadVersion(_),
                ..
            })
        ));
        assert!(matches!(
            m.handle_datagram(from, &[1, 2], now),
            Err(MembershipError::Rejected {
                source: OpenError::Truncated { len: 2 },
                ..
            })
        ));
        let stats = m.stats();
        assert_eq!(stats.datagrams_received, 2);
        assert_eq!(stats.rejected.total(), 2);
        assert_eq!(stats.datagrams_accepted, 0);
        assert!(drain(&mut m).is_empty());
    }

    #[test]
    fn authentic_but_malformed_gossip_is_a_protocol_error() {
        let now = Instant::now();
        let mut m = membership(1, 7001, now);
        let mut peer_ring = Keyring::with_nonce_prefix(ClusterKey::new(KeyId(1), [3; 32]), [9; 6]);
        let from = SocketAddr::from(([127, 0, 0, 1], 7002));
        let mut send = |plaintext: &[u8]| {
            let packet = peer_ring.seal(plaintext).unwrap();
            m.handle_datagram(from, &packet, now)
        };
        let mut swim_garbage = vec![FRAME_SWIM];
        swim_garbage.extend_from_slice(&[0xff; 40]);
        assert!(matches!(
            send(&swim_garbage),
            Err(MembershipError::Protocol { .. })
        ));
        assert!(matches!(
            send(&[0xee, 1, 2]),
            Err(MembershipError::Frame {
                reason: FrameError::UnknownTag(0xee),
                ..
            })
        ));
        assert!(matches!(
            send(&[]),
            Err(MembershipError::Frame {
                reason: FrameError::Empty,
                ..
            })
        ));
        assert!(matches!(
            send(&[FRAME_SYNC_STATE, 0xff, 0xff, 0xff]),
            Err(MembershipError::Frame {
                reason: FrameError::BadState { offset: 1, .. },
                ..
            })
        ));
        assert_eq!(m.stats().protocol_errors, 4);
        assert_eq!(m.stats().rejected.total(), 0);
        assert_eq!(m.member_count(), 0);
    }

    #[test]
    fn a_joiner_pulls_the_whole_member_list() {
        let now = Instant::now();
        // Node 0 knows 80 members (more than one answer to an announce
        // holds); a newcomer joining through it learns all of them from
        // the state sync, not from the announce answer.
        let mut seed = membership(1, 7001, now);
        let others: Vec<foca::Member<Member>> = (0..80)
            .map(|i| foca::Member::alive(member(100 + i, 8000 + i as u16)))
            .collect();
        let mut effects = CallEffects::default();
        seed.swim
            .apply_many(others.into_iter(), false, seed.outbox.runtime(&mut effects))
            .unwrap();
        seed.after_call(effects);
        assert_eq!(seed.member_count(), 80);
        let mut joiner = membership(2, 7002, now);
        joiner.join(&[seed.local().gossip_addr()], now).unwrap();
        let mut nodes = vec![seed, joiner];
        exchange(&mut nodes, now);
        assert_eq!(nodes[1].member_count(), 81);
        assert_eq!(nodes[1].stats().sync_requests, 1);
        assert!(
            nodes[0].stats().sync_datagrams_sent >= 2,
            "80 members in one datagram?"
        );
        // The seed's list includes the joiner itself by then.
        assert_eq!(nodes[1].stats().sync_members_received, 81);
    }

    #[test]
    fn after_leaving_nothing_is_taken() {
        let now = Instant::now();
        let mut nodes = vec![membership(1, 7001, now), membership(2, 7002, now)];
        let seed = nodes[0].local().gossip_addr();
        nodes[1].join(&[seed], now).unwrap();
        exchange(&mut nodes, now);
        nodes[1].leave(now).unwrap();
        let seen = exchange(&mut nodes, now);
        assert!(seen[1].contains(&MembershipOutput::Defunct));
        assert!(
            seen[0]
                .iter()
                .any(|o| matches!(o, MembershipOutput::MemberDown(m) if m.node_id() == 2)),
            "the leave did not reach node 1: {seen:?}"
        );
        let leaver = &mut nodes[1];
        assert!(leaver.has_left());
        assert!(matches!(
            leaver.join(&[seed], now),
            Err(MembershipError::Left)
        ));
        assert!(matches!(leaver.leave(now), Err(MembershipError::Left)));
        assert!(matches!(
            leaver.set_load(LoadSummary::default(), now),
            Err(MembershipError::Left)
        ));
        leaver.handle_datagram(seed, b"whatever", now).unwrap();
        assert_eq!(leaver.stats().ignored_after_leave, 1);
    }

    #[test]
    fn too_many_seeds_and_bad_config_are_refused() {
        let now = Instant::now();
        let mut m = membership(1, 7001, now);
        let seeds: Vec<SocketAddr> = (0..=SEEDS_MAX as u16)
            .map(|p| SocketAddr::from(([127, 0, 0, 2], p)))
            .collect();
        assert!(matches!(
            m.join(&seeds, now),
            Err(MembershipError::TooManySeeds { count }) if count == SEEDS_MAX + 1
        ));
        let mut config = MembershipConfig::lan(5);
        config.probe_rtt_ms = config.probe_period_ms + 1;
        let keyring = Keyring::with_nonce_prefix(ClusterKey::new(KeyId(1), [3; 32]), [1; 6]);
        assert!(matches!(
            Membership::new(member(1, 7001), config, keyring, 1, now),
            Err(MembershipError::Config(
                ConfigError::RttNotBelowPeriod { .. }
            ))
        ));
    }
}

//! [`ReplicaHost`]: every partition replica of one shard (or node), driven
//! together: one tick for all groups, one envelope per destination node per
//! poll, inbound envelopes fanned out to their groups.

use std::collections::BTreeMap;

use super::envelope::{Envelope, EnvelopeBuilder, EnvelopeError};
use super::log::ReplicaLog;
use super::partition::{PartitionReplica, ProposalId, ReplicaError, ReplicaEvent};
use super::GroupId;
use crate::meta::MembershipChange;

/// Envelopes are cut at about this many bytes of entries (a group may
/// have 64 appends of 1 MiB in flight; a node-to-node frame holds 64 MiB).
pub const ENVELOPE_SPLIT_BYTES: usize = 8 << 20;

/// One envelope to hand to the transport for node `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outbound {
    pub to: u64,
    pub bytes: Vec<u8>,
}

/// What one inbound envelope did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delivery {
    pub stepped: usize,
    /// Messages for groups this host does not hold (a replica removed or
    /// not created yet): counted and ignored.
    pub unknown_group: usize,
    /// Messages a replica refused (typed error, logged at debug).
    pub rejected: usize,
}

/// Counters for the operator.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostStats {
    pub envelopes_sent: u64,
    pub envelope_bytes_sent: u64,
    /// Raft messages sent, heartbeats included.
    pub messages_sent: u64,
    /// Heartbeats sent as 25-byte records.
    pub heartbeats_sent: u64,
    /// Heartbeats dropped because a newer one of the group went instead.
    pub heartbeats_superseded: u64,
    pub envelopes_received: u64,
    pub envelopes_rejected: u64,
    pub messages_received: u64,
    pub unknown_group_messages: u64,
    pub rejected_messages: u64,
    pub encode_failures: u64,
}

/// All replicas of one shard. Groups are keyed by [`GroupId`], a `u64`
/// that the metadata layer assigns to each (topic, partition) when the
/// topic is created (stable across moves, never reused); a `u64` keeps the
/// per-message and per-heartbeat overhead fixed and small.
pub struct ReplicaHost<L: ReplicaLog> {
    node_id: u64,
    groups: BTreeMap<GroupId, PartitionReplica<L>>,
    events: Vec<ReplicaEvent>,
    stats: HostStats,
}

impl<L: ReplicaLog> ReplicaHost<L> {
    pub fn new(node_id: u64) -> Self {
        Self {
            node_id,
            groups: BTreeMap::new(),
            events: Vec::new(),
            stats: HostStats::default(),
        }
    }

    pub fn node_id(&self) -> u64 {
        self.node_id
    }

    pub fn stats(&self) -> &HostStats {
        &self.stats
    }

    /// Host a replica (created with [`PartitionReplica::bootstrap`] or
    /// [`PartitionReplica::open`] for this node).
    pub fn add_group(&mut self, replica: PartitionReplica<L>) -> Result<(), ReplicaError> {
        if replica.id() != self.node_id {
            return Err(ReplicaError::Config(format!(
                "replica of node {} added to the host of node {}",
                replica.id(),
                self.node_id
            )));
        }
        let group = replica.group();
        if self.groups.contains_key(&group) {
            return Err(ReplicaError::GroupExists(group));
        }
        self.groups.insert(group, replica);
        Ok(())
    }

    /// Stop hosting a group (after it removed this replica, or to reopen it
    /// from its log after a stop). Its later messages count as unknown.
    pub fn remove_group(&mut self, group: GroupId) -> Option<PartitionReplica<L>> {
        self.groups.remove(&group)
    }

    pub fn group(&self, group: GroupId) -> Option<&PartitionReplica<L>> {
        self.groups.get(&group)
    }

    pub fn group_mut(&mut self, group: GroupId) -> Option<&mut PartitionReplica<L>> {
        self.groups.get_mut(&group)
    }

    pub fn groups(&self) -> impl Iterator<Item = (&GroupId, &PartitionReplica<L>)> {
        self.groups.iter()
    }

    /// One tick for every group.
    pub fn tick(&mut self) {
        for replica in self.groups.values_mut() {
            replica.tick();
        }
    }

    pub fn propose(&mut self, group: GroupId, batch: Vec<u8>) -> Result<ProposalId, ReplicaError> {
        self.groups
            .get_mut(&group)
            .ok_or(ReplicaError::UnknownGroup(group))?
            .propose(batch)
    }

    pub fn propose_membership_change(
        &mut self,
        group: GroupId,
        change: MembershipChange,
    ) -> Result<ProposalId, ReplicaError> {
        self.groups
            .get_mut(&group)
            .ok_or(ReplicaError::UnknownGroup(group))?
            .propose_membership_change(change)
    }

    /// Decode an envelope that arrived on the (authenticated) connection of
    /// node `from` and step every message into its group. A malformed
    /// envelope is an error and steps nothing; single messages a replica
    /// refuses are counted.
    pub fn handle_envelope(&mut self, from: u64, bytes: &[u8]) -> Result<Delivery, EnvelopeError> {
        self.stats.envelopes_received += 1;
        let envelope = match self.check_envelope(from, bytes) {
            Ok(e) => e,
            Err(e) => {
                self.stats.envelopes_rejected += 1;
                return Err(e);
            }
        };
        let mut delivery = Delivery::default();
        for (group, message) in envelope.into_messages() {
            self.stats.messages_received += 1;
            let Some(replica) = self.groups.get_mut(&group) else {
                delivery.unknown_group += 1;
                self.stats.unknown_group_messages += 1;
                continue;
            };
            match replica.step(message) {
                Ok(()) => delivery.stepped += 1,
                Err(error) => {
                    tracing::debug!(node = self.node_id, %group, from, %error, "replica message refused");
                    delivery.rejected += 1;
                    self.stats.rejected_messages += 1;
                }
            }
        }
        Ok(delivery)
    }

    fn check_envelope(&self, from: u64, bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
        let envelope = Envelope::decode(bytes)?;
        if envelope.from != from {
            return Err(EnvelopeError::WrongSender {
                claimed: envelope.from,
                peer: from,
            });
        }
        if envelope.to != self.node_id {
            return Err(EnvelopeError::Misaddressed {
                to: envelope.to,
                node: self.node_id,
            });
        }
        Ok(envelope)
    }

    /// Drain every group and return one envelope per destination node,
    /// holding all groups' messages for it. Events go to
    /// [`ReplicaHost::take_events`].
    pub fn poll_output(&mut self) -> Vec<Outbound> {
        // Per destination: the envelope being filled and its approximate
        // size; a full one is set aside so no frame outgrows the transport.
        let mut builders: BTreeMap<u64, (EnvelopeBuilder, usize)> = BTreeMap::new();
        let mut full: Vec<(u64, EnvelopeBuilder)> = Vec::new();
        for (&group, replica) in self.groups.iter_mut() {
            if replica.is_stopped() {
                continue;
            }
            match replica.poll() {
                Ok(out) => {
                    for m in out.messages {
                        let size = 64
                            + m.get_entries()
                                .iter()
                                .map(|e| e.data.len() + 32)
                                .sum::<usize>()
                            + m.get_snapshot().data.len();
                        let to = m.to;
                        let (builder, bytes) = builders
                            .entry(to)
                            .or_insert_with(|| (EnvelopeBuilder::new(self.node_id, to), 0));
                        if *bytes > 0 && *bytes + size > ENVELOPE_SPLIT_BYTES {
                            let done =
                                std::mem::replace(builder, EnvelopeBuilder::new(self.node_id, to));
                            full.push((to, done));
                            *bytes = 0;
                        }
                        *bytes += size;
                        builder.push(group, m);
                    }
                    self.events.extend(out.events);
                }
                Err(error) => self.events.push(ReplicaEvent::Stopped {
                    group,
                    reason: error.to_string(),
                }),
            }
        }
        let mut outbound = Vec::with_capacity(builders.len() + full.len());
        let all = full
            .into_iter()
            .chain(builders.into_iter().map(|(to, (b, _))| (to, b)));
        for (to, builder) in all {
            self.stats.heartbeats_superseded += builder.superseded;
            let envelope = builder.finish();
            match envelope.encode() {
                Ok(bytes) => {
                    self.stats.envelopes_sent += 1;
                    self.stats.envelope_bytes_sent += bytes.len() as u64;
                    self.stats.messages_sent += envelope.message_count() as u64;
                    self.stats.heartbeats_sent += envelope.heartbeats.len() as u64;
                    outbound.push(Outbound { to, bytes });
                }
                Err(error) => {
                    // Raft treats it as a lost envelope and retries.
                    tracing::warn!(node = self.node_id, to, %error, "replica envelope dropped");
                    self.stats.encode_failures += 1;
                }
            }
        }
        outbound
    }

    /// Events of every group since the last call, in the order they
    /// happened per group.
    pub fn take_events(&mut self) -> Vec<ReplicaEvent> {
        std::mem::take(&mut self.events)
    }

    pub fn needs_sync(&self) -> bool {
        self.groups
            .values()
            .any(|r| !r.is_stopped() && r.needs_sync())
    }

    /// Sync every group that has writes waiting (a shard's group commit).
    pub fn sync_all(&mut self) {
        let groups: Vec<GroupId> = self
            .groups
            .iter()
            .filter(|(_, r)| !r.is_stopped() && r.needs_sync())
            .map(|(&g, _)| g)
            .collect();
        for group in groups {
            // A failure stops the group and is reported as an event.
            let _ = self.sync(group);
        }
    }

    pub fn sync(&mut self, group: GroupId) -> Result<(), ReplicaError> {
        let replica = self
            .groups
            .get_mut(&group)
            .ok_or(ReplicaError::UnknownGroup(group))?;
        let already_stopped = replica.is_stopped();
        replica.sync().inspect_err(|error| {
            if !already_stopped {
                self.events.push(ReplicaEvent::Stopped {
                    group,
                    reason: error.to_string(),
                });
            }
        })
    }

    /// A group's log flushed by itself up to `index`.
    pub fn on_persisted(&mut self, group: GroupId, index: u64) -> Result<(), ReplicaError> {
        self.groups
            .get_mut(&group)
            .ok_or(ReplicaError::UnknownGroup(group))?
            .on_persisted(index)
    }
}

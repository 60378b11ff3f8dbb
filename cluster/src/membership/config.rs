//! Membership settings and how they map to foca's `Config`.
//!
//! Targets (loopback, default settings): a killed node is declared down by
//! every member in < 2 s, and a membership change reaches all 5 members of
//! a 5-node cluster in < 50 ms p99. The simulation tests measure both.
//!
//! Where detection time goes: a live member probes the dead one (each
//! member probes one peer per `probe_period_ms`, round-robin over a
//! shuffled list, so with several probers the first probe comes within
//! about one period), waits `probe_rtt_ms` for the ack, asks
//! `indirect_probes` others, and at its next period marks the node
//! suspect; `suspect_to_down_ms` later it is down. The down update is then
//! gossiped at once (see `change_gossip_interval_ms_min`). So detection ≈
//! ≤ 1 period + 1 period + suspicion + one gossip hop: 200 + 200 + 600 +
//! ~1 ms ≈ 1 s typical, worst case when all probers just passed the dead
//! node ≈ 1.6 s.
//!
//! Why not shorter: a member that is busy (2 cores shared by every shard
//! and by other nodes on the same machine) must still answer a probe
//! within `probe_period_ms` through one of 3 relays, and a suspected
//! member gets `suspect_to_down_ms` (3 probe periods) to see the suspicion
//! and refute it. Suspicion grows with log10 of the cluster size, as in
//! memberlist and foca's own LAN preset, because rumours take more hops to
//! reach the suspect in large clusters.
//!
//! Why changes spread in milliseconds: foca piggybacks updates on probes
//! and on periodic gossip (`gossip_interval_ms`, only sent when there is
//! something to say). On top of that, the driver gossips to
//! `gossip_fanout` members as soon as it learns of a member going up, down
//! or being renamed, at most once per `change_gossip_interval_ms_min`:
//! every member that learns relays at once, an epidemic of network hops
//! (< 1 ms each on loopback) instead of gossip periods.
//!
//! Why state sync: SWIM tells a joiner only the members that fit in its
//! seed's answer and the rest as they happen to probe it, one full probe
//! round (members × probe period: 200 s at 1,000 members). So the driver
//! pulls the answering member's whole list right after joining and a random
//! member's every `sync_interval_ms`, which also repairs updates a member
//! missed (memberlist's push/pull does the same).

use std::num::{NonZeroU8, NonZeroUsize};
use std::time::Duration;

use thiserror::Error;

use super::keyring::SEAL_OVERHEAD_BYTES;

/// Bytes of the frame tag in front of every sealed plaintext (SWIM
/// datagram, state-sync request, state-sync chunk).
pub const FRAME_TAG_BYTES: usize = 1;
/// Plaintext bytes of a datagram foca may fill: the UDP payload minus the
/// seal and the frame tag.
pub fn swim_bytes_max(packet_bytes_max: usize) -> usize {
    packet_bytes_max - SEAL_OVERHEAD_BYTES - FRAME_TAG_BYTES
}

/// Smallest UDP payload accepted for `packet_bytes_max`: foca needs room for
/// a header with two identities and a few updates.
pub const PACKET_BYTES_MIN: usize = 512;
/// Largest UDP payload accepted (the IPv4 UDP maximum).
pub const PACKET_BYTES_MAX: usize = 65_507;

/// Settings of one member's SWIM instance and driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MembershipConfig {
    /// A random member is probed once per period.
    pub probe_period_ms: u64,
    /// Wait for a direct ack before asking others to probe indirectly.
    pub probe_rtt_ms: u64,
    /// Members asked to probe indirectly.
    pub indirect_probes: usize,
    /// A suspect not refuting within this is declared down.
    pub suspect_to_down_ms: u64,
    /// Times each update (and each load summary) is piggybacked.
    pub max_transmissions: u8,
    /// Periodic gossip of pending updates.
    pub gossip_interval_ms: u64,
    /// Members each gossip (periodic or on change) goes to.
    pub gossip_fanout: usize,
    /// Least time between two gossips triggered by membership changes.
    pub change_gossip_interval_ms_min: u64,
    /// Periodically ask a member for its member list (repairs missed
    /// updates: lossy links, large clusters).
    pub announce_interval_ms: u64,
    /// Periodically announce to members believed down, so both sides of a
    /// healed partition find each other again.
    pub announce_down_interval_ms: u64,
    /// Forget a down member after this long.
    pub remove_down_after_ms: u64,
    /// First delay between announces to the seeds while joining.
    pub join_retry_interval_ms: u64,
    /// The join retry delay doubles up to this.
    pub join_retry_interval_ms_max: u64,
    /// Every this often, pull the full member list of one random member
    /// (and once right after joining). SWIM alone tells a joiner only the
    /// few members its seed's reply holds, and the rest as they happen to
    /// probe it: one probe round, members × probe period, minutes at 1,000
    /// members. Pulling repairs that and any update lost on the way.
    pub sync_interval_ms: u64,
    /// Largest UDP payload sent or accepted, seal overhead included.
    pub packet_bytes_max: usize,
}

/// A setting foca (or the driver) cannot run with.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A period or timeout of zero.
    #[error("{field} must be greater than zero")]
    Zero {
        /// The setting.
        field: &'static str,
    },
    /// The direct-probe wait leaves no time for indirect probes.
    #[error("probe_rtt_ms ({rtt_ms}) must be less than probe_period_ms ({period_ms})")]
    RttNotBelowPeriod {
        /// `probe_rtt_ms`.
        rtt_ms: u64,
        /// `probe_period_ms`.
        period_ms: u64,
    },
    /// `packet_bytes_max` out of range.
    #[error("packet_bytes_max {0} is outside {PACKET_BYTES_MIN}..={PACKET_BYTES_MAX}")]
    PacketSize(usize),
    /// The join backoff ceiling is below its start.
    #[error("join_retry_interval_ms_max ({max_ms}) is below join_retry_interval_ms ({ms})")]
    JoinRetry {
        /// `join_retry_interval_ms`.
        ms: u64,
        /// `join_retry_interval_ms_max`.
        max_ms: u64,
    },
}

impl MembershipConfig {
    /// Settings for a LAN (or loopback) cluster of about
    /// `cluster_size_expected` members.
    pub fn lan(cluster_size_expected: u32) -> Self {
        let n = f64::from(cluster_size_expected.max(1));
        let probe_period_ms = 200;
        // memberlist's suspicion multiplier scaled by log10(n), floored at 1.
        let suspect_to_down_ms = (3.0 * probe_period_ms as f64 * n.log10().max(1.0)).round() as u64;
        // Enough retransmissions for an update to reach everyone with high
        // probability (4·log10(n+1), as foca's preset), at least 4 so a
        // lost packet or two in small clusters do not lose it.
        let max_transmissions = (4.0 * (n + 1.0).log10()).ceil().clamp(4.0, 255.0) as u8;
        Self {
            probe_period_ms,
            probe_rtt_ms: 60,
            indirect_probes: 3,
            suspect_to_down_ms,
            max_transmissions,
            gossip_interval_ms: 50,
            gossip_fanout: 3,
            change_gossip_interval_ms_min: 5,
            announce_interval_ms: 10_000,
            announce_down_interval_ms: 2_000,
            remove_down_after_ms: 60 * 60 * 1000,
            join_retry_interval_ms: 250,
            join_retry_interval_ms_max: 5_000,
            // A 1,000-member list is ~36 datagrams: ~4 a second per member
            // at this interval, against ~10 for probing.
            sync_interval_ms: 10_000,
            packet_bytes_max: 1400,
        }
    }

    /// Checks the settings and builds foca's config. foca's
    /// `max_packet_size` is its plaintext budget: the UDP payload minus the
    /// seal and the frame tag.
    pub fn to_foca(&self) -> Result<foca::Config, ConfigError> {
        for (field, value) in [
            ("probe_period_ms", self.probe_period_ms),
            ("probe_rtt_ms", self.probe_rtt_ms),
            ("suspect_to_down_ms", self.suspect_to_down_ms),
            ("gossip_interval_ms", self.gossip_interval_ms),
            ("announce_interval_ms", self.announce_interval_ms),
            ("announce_down_interval_ms", self.announce_down_interval_ms),
            ("remove_down_after_ms", self.remove_down_after_ms),
            ("join_retry_interval_ms", self.join_retry_interval_ms),
            ("sync_interval_ms", self.sync_interval_ms),
            ("indirect_probes", self.indirect_probes as u64),
            ("gossip_fanout", self.gossip_fanout as u64),
            ("max_transmissions", u64::from(self.max_transmissions)),
        ] {
            if value == 0 {
                return Err(ConfigError::Zero { field });
            }
        }
        if self.probe_rtt_ms >= self.probe_period_ms {
            return Err(ConfigError::RttNotBelowPeriod {
                rtt_ms: self.probe_rtt_ms,
                period_ms: self.probe_period_ms,
            });
        }
        if !(PACKET_BYTES_MIN..=PACKET_BYTES_MAX).contains(&self.packet_bytes_max) {
            return Err(ConfigError::PacketSize(self.packet_bytes_max));
        }
        if self.join_retry_interval_ms_max < self.join_retry_interval_ms {
            return Err(ConfigError::JoinRetry {
                ms: self.join_retry_interval_ms,
                max_ms: self.join_retry_interval_ms_max,
            });
        }
        let nonzero = |v: usize| NonZeroUsize::new(v).expect("checked above");
        Ok(foca::Config {
            probe_period: Duration::from_millis(self.probe_period_ms),
            probe_rtt: Duration::from_millis(self.probe_rtt_ms),
            num_indirect_probes: nonzero(self.indirect_probes),
            max_transmissions: NonZeroU8::new(self.max_transmissions).expect("checked above"),
            suspect_to_down_after: Duration::from_millis(self.suspect_to_down_ms),
            remove_down_after: Some(Duration::from_millis(self.remove_down_after_ms)),
            max_packet_size: nonzero(swim_bytes_max(self.packet_bytes_max)),
            // A member wrongly declared down learns it at once and renews
            // its identity instead of talking into the void.
            notify_down_members: true,
            periodic_announce: Some(foca::PeriodicParams {
                frequency: Duration::from_millis(self.announce_interval_ms),
                num_members: nonzero(1),
            }),
            periodic_announce_to_down_members: Some(foca::PeriodicParams {
                frequency: Duration::from_millis(self.announce_down_interval_ms),
                num_members: nonzero(2),
            }),
            periodic_gossip: Some(foca::PeriodicParams {
                frequency: Duration::from_millis(self.gossip_interval_ms),
                num_members: nonzero(self.gossip_fanout),
            }),
        })
    }
}

impl Default for MembershipConfig {
    /// [`MembershipConfig::lan`] sized for a 16-member cluster.
    fn default() -> Self {
        Self::lan(16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_scale_suspicion_and_retransmissions_with_size() {
        let small = MembershipConfig::lan(5);
        let large = MembershipConfig::lan(1000);
        assert_eq!(small.suspect_to_down_ms, 600);
        assert_eq!(large.suspect_to_down_ms, 1800);
        assert_eq!(small.max_transmissions, 4);
        assert_eq!(large.max_transmissions, 13);
        assert!(small.to_foca().is_ok());
        assert!(large.to_foca().is_ok());
    }

    #[test]
    fn foca_packet_budget_leaves_room_for_the_seal() {
        let c = MembershipConfig::lan(5).to_foca().unwrap();
        assert_eq!(c.max_packet_size.get(), 1400 - SEAL_OVERHEAD_BYTES - 1);
    }

    #[test]
    fn invalid_settings_are_refused() {
        let base = MembershipConfig::lan(5);
        let mut c = base.clone();
        c.probe_rtt_ms = c.probe_period_ms;
        assert!(matches!(
            c.to_foca(),
            Err(ConfigError::RttNotBelowPeriod { .. })
        ));
        let mut c = base.clone();
        c.suspect_to_down_ms = 0;
        assert_eq!(
            c.to_foca().unwrap_err(),
            ConfigError::Zero {
                field: "suspect_to_down_ms"
            }
        );
        let mut c = base.clone();
        c.packet_bytes_max = 100;
        assert_eq!(c.to_foca().unwrap_err(), ConfigError::PacketSize(100));
        let mut c = base;
        c.join_retry_interval_ms_max = 1;
        assert!(matches!(c.to_foca(), Err(ConfigError::JoinRetry { .. })));
    }
}

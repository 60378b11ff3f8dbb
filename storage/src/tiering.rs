//! Sans-IO tier state of a partition's segments: which are only local,
//! which are being uploaded, which are archived (local and remote), which
//! live only in the archive. The archiver and retention drive it; the
//! invariant it exists for:
//!
//! **An un-archived segment is never deleted locally**, whatever the
//! retention settings, the disk, or the order in which rolls, uploads,
//! failures, retention passes and restarts happen.

use std::collections::BTreeMap;

/// Where one segment lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentTier {
    /// Being appended to: never uploaded, never deleted.
    Active,
    /// Sealed, local only, waiting to be uploaded.
    Local,
    /// An upload is in flight (attempt number).
    Uploading { attempt: u32 },
    /// Verified in the archive and still on local disk.
    Archived,
    /// Verified in the archive; the local copy was deleted by local retention.
    RemoteOnly,
}

impl SegmentTier {
    pub fn has_local_copy(self) -> bool {
        !matches!(self, Self::RemoteOnly)
    }
    pub fn is_archived(self) -> bool {
        matches!(self, Self::Archived | Self::RemoteOnly)
    }
}

/// Sizes and ages retention decides on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentFacts {
    pub bytes: u64,
    pub max_timestamp_ms: Option<i64>,
}

/// Retention limits of one tier (`None` = no limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TierRetention {
    pub bytes: Option<u64>,
    pub ms: Option<u64>,
}

/// What a retention pass decided.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionPlan {
    /// Delete these local files (their segments are archived).
    pub delete_local: Vec<u64>,
    /// Delete these segments everywhere (objects, manifest entries, local files).
    pub delete_everywhere: Vec<u64>,
}

/// Tier state of one partition's segments, keyed by base offset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TierState {
    segments: BTreeMap<u64, (SegmentTier, SegmentFacts)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TierError {
    #[error("segment {0} is unknown to the tier state")]
    UnknownSegment(u64),
    #[error("segment {base} is {tier:?}, not in a state that allows {event}")]
    WrongState {
        base: u64,
        tier: SegmentTier,
        event: &'static str,
    },
}

impl TierState {
    pub fn tier(&self, base: u64) -> Option<SegmentTier> {
        self.segments.get(&base).map(|(t, _)| *t)
    }

    pub fn iter(&self) -> impl Iterator<Item = (u64, SegmentTier, SegmentFacts)> + '_ {
        self.segments.iter().map(|(b, (t, f))| (*b, *t, *f))
    }

    /// A new active segment (log open or roll).
    pub fn on_active(&mut self, base: u64, facts: SegmentFacts) {
        self.segments.insert(base, (SegmentTier::Active, facts));
    }

    /// A segment already sealed when found (recovery), archived or not.
    pub fn on_recovered(
        &mut self,
        base: u64,
        archived: bool,
        has_local_copy: bool,
        facts: SegmentFacts,
    ) {
        let tier = match (archived, has_local_copy) {
            (true, true) => SegmentTier::Archived,
            (true, false) => SegmentTier::RemoteOnly,
            (false, _) => SegmentTier::Local,
        };
        self.segments.insert(base, (tier, facts));
    }

    /// The active segment was sealed with its final facts.
    pub fn on_sealed(&mut self, base: u64, facts: SegmentFacts) -> Result<(), TierError> {
        let entry = self
            .segments
            .get_mut(&base)
            .ok_or(TierError::UnknownSegment(base))?;
        match entry.0 {
            SegmentTier::Active => {
                *entry = (SegmentTier::Local, facts);
                Ok(())
            }
            tier => Err(TierError::WrongState {
                base,
                tier,
                event: "seal",
            }),
        }
    }

    /// The oldest sealed segment waiting for upload, marked as uploading.
    /// Oldest first: local retention frees space from the front.
    pub fn start_next_upload(&mut self) -> Option<u64> {
        let (base, entry) = self
            .segments
            .iter_mut()
            .find(|(_, (t, _))| matches!(t, SegmentTier::Local))?;
        entry.0 = SegmentTier::Uploading { attempt: 1 };
        Some(*base)
    }

    /// The upload finished: verified (`ok`) or not (back to waiting).
    pub fn on_upload_result(&mut self, base: u64, ok: bool) -> Result<(), TierError> {
        let entry = self
            .segments
            .get_mut(&base)
            .ok_or(TierError::UnknownSegment(base))?;
        match entry.0 {
            SegmentTier::Uploading { .. } if ok => entry.0 = SegmentTier::Archived,
            SegmentTier::Uploading { .. } => entry.0 = SegmentTier::Local,
            tier => {
                return Err(TierError::WrongState {
                    base,
                    tier,
                    event: "upload result",
                })
            }
        }
        Ok(())
    }

    /// A restart loses in-flight uploads: they start again.
    pub fn on_restart(&mut self) {
        for (t, _) in self.segments.values_mut() {
            if matches!(t, SegmentTier::Uploading { .. }) {
                *t = SegmentTier::Local;
            }
        }
    }

    /// Decides a retention pass. `local` limits local disk (only archived
    /// segments may go); `total` limits the whole log (local and archive).
    /// Applying the plan is [`Self::apply`]'s job, after the deletions
    /// happened.
    pub fn plan_retention(
        &self,
        now_ms: i64,
        local: TierRetention,
        total: TierRetention,
    ) -> RetentionPlan {
        let mut plan = RetentionPlan::default();
        let expired = |limit: TierRetention, f: &SegmentFacts| {
            limit.ms.is_some_and(|ms| {
                f.max_timestamp_ms
                    .is_some_and(|ts| now_ms.saturating_sub(ts) > ms as i64)
            })
        };
        // Total retention: oldest first, never the active segment, and never
        // an un-archived one when archiving is on would lose data that was
        // promised to the archive, so only archived or local-only-expired.
        let mut total_bytes: u64 = self.segments.values().map(|(_, f)| f.bytes).sum();
        for (&base, (tier, facts)) in &self.segments {
            if matches!(
                tier,
                SegmentTier::Active | SegmentTier::Uploading { .. } | SegmentTier::Local
            ) {
                break;
            }
            let over = total.bytes.is_some_and(|max| total_bytes > max);
            if !(over || expired(total, facts)) {
                break;
            }
            total_bytes -= facts.bytes;
            plan.delete_everywhere.push(base);
        }
        // Local retention over what stays: only archived segments lose their
        // local copy; the first segment that is not archived stops the pass.
        let mut local_bytes: u64 = self
            .segments
            .iter()
            .filter(|(b, (t, _))| t.has_local_copy() && !plan.delete_everywhere.contains(b))
            .map(|(_, (_, f))| f.bytes)
            .sum();
        for (&base, (tier, facts)) in &self.segments {
            if plan.delete_everywhere.contains(&base) || *tier == SegmentTier::RemoteOnly {
                continue;
            }
            if *tier != SegmentTier::Archived {
                break;
            }
            let over = local.bytes.is_some_and(|max| local_bytes > max);
            if !(over || expired(local, facts)) {
                break;
            }
            local_bytes -= facts.bytes;
            plan.delete_local.push(base);
        }
        plan
    }

    /// Records that a plan's deletions happened.
    pub fn apply(&mut self, plan: &RetentionPlan) {
        for base in &plan.delete_everywhere {
            self.segments.remove(base);
        }
        for base in &plan.delete_local {
            if let Some((t, _)) = self.segments.get_mut(base) {
                debug_assert_eq!(
                    *t,
                    SegmentTier::Archived,
                    "only archived segments lose their local copy"
                );
                *t = SegmentTier::RemoteOnly;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn facts(bytes: u64, ts: i64) -> SegmentFacts {
        SegmentFacts {
            bytes,
            max_timestamp_ms: Some(ts),
        }
    }

    #[test]
    fn archived_segments_lose_local_copies_first_unarchived_never() {
        let mut s = TierState::default();
        for base in [0, 10, 20] {
            s.on_active(base, facts(0, 0));
            s.on_sealed(base, facts(100, base as i64)).unwrap();
        }
        s.on_active(30, facts(0, 0));
        let b = s.start_next_upload().unwrap();
        assert_eq!(b, 0);
        s.on_upload_result(0, true).unwrap();
        let plan = s.plan_retention(
            1000,
            TierRetention {
                bytes: Some(0),
                ms: None,
            },
            TierRetention::default(),
        );
        assert_eq!(plan.delete_local, vec![0], "only the archived segment goes");
        s.apply(&plan);
        assert_eq!(s.tier(0), Some(SegmentTier::RemoteOnly));
        // A failed upload returns the segment to the queue.
        assert_eq!(s.start_next_upload(), Some(10));
        s.on_upload_result(10, false).unwrap();
        assert_eq!(s.tier(10), Some(SegmentTier::Local));
        // Total retention removes the oldest archived segments everywhere.
        let plan = s.plan_retention(
            1000,
            TierRetention::default(),
            TierRetention {
                bytes: Some(150),
                ms: None,
            },
        );
        assert_eq!(plan.delete_everywhere, vec![0]);
    }

    #[derive(Debug, Clone)]
    enum Event {
        Roll {
            bytes: u64,
        },
        StartUpload,
        UploadDone {
            ok: bool,
        },
        Retention {
            local_bytes: Option<u64>,
            total_bytes: Option<u64>,
            local_ms: Option<u64>,
            now: i64,
        },
        Restart,
    }

    fn event() -> impl Strategy<Value = Event> {
        prop_oneof![
            (1u64..1000).prop_map(|bytes| Event::Roll { bytes }),
            Just(Event::StartUpload),
            any::<bool>().prop_map(|ok| Event::UploadDone { ok }),
            (
                proptest::option::of(0u64..3000),
                proptest::option::of(0u64..5000),
                proptest::option::of(0u64..100),
                0i64..200
            )
                .prop_map(|(local_bytes, total_bytes, local_ms, now)| {
                    Event::Retention {
                        local_bytes,
                        total_bytes,
                        local_ms,
                        now,
                    }
                }),
            Just(Event::Restart),
        ]
    }

    proptest! {
        /// Against a model that only remembers which segments were ever
        /// verified in the archive: no interleaving deletes the local copy
        /// of a segment the archive does not hold, nor the active segment.
        #[test]
        fn no_interleaving_deletes_an_unarchived_segment(events in proptest::collection::vec(event(), 1..80)) {
            let mut s = TierState::default();
            let mut verified: std::collections::BTreeSet<u64> = Default::default();
            let mut uploading: Vec<u64> = Vec::new();
            let mut next_base = 0u64;
            let mut active = 0u64;
            s.on_active(0, facts(0, 0));
            for (t, e) in events.into_iter().enumerate() {
                match e {
                    Event::Roll { bytes } => {
                        s.on_sealed(active, facts(bytes, t as i64)).unwrap();
                        next_base += 10;
                        active = next_base;
                        s.on_active(active, facts(0, 0));
                    }
                    Event::StartUpload => {
                        if let Some(b) = s.start_next_upload() {
                            prop_assert!(!verified.contains(&b));
                            uploading.push(b);
                        }
                    }
                    Event::UploadDone { ok } => {
                        if let Some(b) = uploading.pop() {
                            s.on_upload_result(b, ok).unwrap();
                            if ok { verified.insert(b); }
                        }
                    }
                    Event::Retention { local_bytes, total_bytes, local_ms, now } => {
                        let plan = s.plan_retention(
                            now,
                            TierRetention { bytes: local_bytes, ms: local_ms },
                            TierRetention { bytes: total_bytes, ms: None },
                        );
                        for b in plan.delete_local.iter().chain(&plan.delete_everywhere) {
                            prop_assert!(verified.contains(b), "segment {} deleted before it was archived", b);
                            prop_assert_ne!(*b, active, "the active segment was deleted");
                        }
                        s.apply(&plan);
                        for b in &plan.delete_everywhere { verified.remove(b); }
                    }
                    Event::Restart => {
                        s.on_restart();
                        uploading.clear();
                    }
                }
                // Every segment that has no local copy is in the archive.
                for (b, tier, _) in s.iter() {
                    if !tier.has_local_copy() {
                        prop_assert!(verified.contains(&b));
                    }
                }
            }
        }
    }
}

//! The capped set of a node's series.

use std::collections::BTreeMap;

use super::ring::{LoadRing, SampleError};
use super::{Scope, SeriesKey};

/// A node's load history: one [`LoadRing`] per series, at most
/// `series_max` series (≤ 54 KiB each, in memory and encoded).
///
/// Ordered by key, so iteration and the encoding are deterministic.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadHistory {
    pub(super) series: BTreeMap<SeriesKey, LoadRing>,
    pub(super) series_max: usize,
}

impl LoadHistory {
    /// An empty history holding at most `series_max` (≥ 1) series.
    pub fn new(series_max: usize) -> Self {
        assert!(series_max >= 1, "a load history must hold a series");
        Self {
            series: BTreeMap::new(),
            series_max,
        }
    }

    pub fn series_max(&self) -> usize {
        self.series_max
    }

    /// Changes the cap (≥ 1), dropping the least recently updated series
    /// beyond it; returns the dropped keys. For a cap that changed across a
    /// restart, after [`Self::decode`].
    pub fn set_series_max(&mut self, series_max: usize) -> Vec<SeriesKey> {
        assert!(series_max >= 1, "a load history must hold a series");
        self.series_max = series_max;
        let mut dropped = Vec::new();
        while self.series.len() > self.series_max {
            dropped.extend(self.drop_least_recent());
        }
        dropped
    }

    /// Records `value` for `key` at `now_unix_s`. A new series beyond the
    /// cap replaces the least recently updated one, whose key is returned
    /// (series are expected to be well under the cap; the cap bounds memory
    /// when topics come and go without [`Self::remove`]).
    pub fn record(
        &mut self,
        now_unix_s: i64,
        key: &SeriesKey,
        value: f64,
    ) -> Result<Option<SeriesKey>, SampleError> {
        if let Some(ring) = self.series.get_mut(key) {
            return ring.push(now_unix_s, value).map(|()| None);
        }
        // Validate before evicting, so a rejected sample drops nothing.
        let mut ring = LoadRing::new();
        ring.push(now_unix_s, value)?;
        let dropped = if self.series.len() >= self.series_max {
            self.drop_least_recent()
        } else {
            None
        };
        self.series.insert(key.clone(), ring);
        debug_assert!(self.series.len() <= self.series_max);
        Ok(dropped)
    }

    /// Ties (series updated in the same second) go to the smallest key, so
    /// which one goes is deterministic. A linear scan: it runs only when a
    /// new series meets a full history.
    fn drop_least_recent(&mut self) -> Option<SeriesKey> {
        let victim = self
            .series
            .iter()
            .min_by_key(|(_, ring)| ring.newest_s())
            .map(|(key, _)| key.clone())?;
        self.series.remove(&victim);
        Some(victim)
    }

    /// Forgets a series (its topic was deleted).
    pub fn remove(&mut self, key: &SeriesKey) -> Option<LoadRing> {
        self.series.remove(key)
    }

    /// Forgets every partition series of `topic`; returns how many.
    pub fn remove_topic(&mut self, topic: &str) -> usize {
        let before = self.series.len();
        self.series.retain(
            |key, _| !matches!(&key.scope, Scope::Partition { topic: t, .. } if t == topic),
        );
        before - self.series.len()
    }

    pub fn get(&self, key: &SeriesKey) -> Option<&LoadRing> {
        self.series.get(key)
    }

    /// Every series, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&SeriesKey, &LoadRing)> {
        self.series.iter()
    }

    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::super::Resource;
    use super::*;

    fn key(resource: Resource, topic: &str, partition: u32) -> SeriesKey {
        SeriesKey::new(
            resource,
            Scope::Partition {
                topic: topic.to_string(),
                partition,
            },
        )
    }

    #[test]
    fn records_per_series() {
        let mut history = LoadHistory::new(8);
        let cpu = SeriesKey::new(Resource::CpuBusy, Scope::Shard(0));
        let rate = key(Resource::MessagesIn, "a", 0);
        for second in 0..3 {
            history.record(second, &cpu, 0.5).unwrap();
            history.record(second, &rate, second as f64).unwrap();
        }
        assert_eq!(history.len(), 2);
        assert_eq!(history.get(&cpu).unwrap().fine_values(), vec![0.5; 3]);
        assert_eq!(
            history.get(&rate).unwrap().fine_values(),
            vec![0.0, 1.0, 2.0]
        );
        let keys: Vec<_> = history.iter().map(|(key, _)| key.clone()).collect();
        assert_eq!(keys, vec![rate, cpu], "key order: resource first");
    }

    #[test]
    fn beyond_the_cap_the_least_recently_updated_series_goes() {
        let mut history = LoadHistory::new(2);
        let (a, b, c) = (
            key(Resource::BytesIn, "a", 0),
            key(Resource::BytesIn, "b", 0),
            key(Resource::BytesIn, "c", 0),
        );
        history.record(10, &b, 1.0).unwrap();
        history.record(11, &a, 1.0).unwrap();
        history.record(12, &b, 1.0).unwrap();
        assert_eq!(history.record(13, &c, 1.0), Ok(Some(a.clone())));
        assert_eq!(history.len(), 2);
        assert!(history.get(&a).is_none());
        // Updating an existing series never evicts.
        assert_eq!(history.record(14, &b, 1.0), Ok(None));
        // A rejected sample for a new series evicts nothing.
        assert!(history.record(15, &a, f64::INFINITY).is_err());
        assert_eq!(history.len(), 2);
        assert_eq!(history.set_series_max(1), vec![c]);
        assert_eq!(history.iter().map(|(k, _)| k).collect::<Vec<_>>(), [&b]);
    }

    #[test]
    fn removing_a_topic_removes_only_its_partitions() {
        let mut history = LoadHistory::new(16);
        for resource in [Resource::MessagesIn, Resource::LogBytes] {
            for partition in 0..3 {
                history
                    .record(1, &key(resource, "gone", partition), 1.0)
                    .unwrap();
            }
            history.record(1, &key(resource, "gone2", 0), 1.0).unwrap();
        }
        history
            .record(1, &SeriesKey::new(Resource::Memory, Scope::Node), 1.0)
            .unwrap();
        assert_eq!(history.remove_topic("gone"), 6);
        assert_eq!(history.len(), 3);
        let node = SeriesKey::new(Resource::Memory, Scope::Node);
        assert!(history.remove(&node).is_some());
        assert!(history.remove(&node).is_none());
        assert_eq!(history.len(), 2);
    }
}

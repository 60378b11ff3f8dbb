//! One series' history at two resolutions, each a bounded ring (the gap
//! policy is on [`LoadRing`]).

use std::collections::VecDeque;

/// Fine ring: one slot per second for the last hour.
pub const FINE_SLOTS: usize = 3600;
/// Coarse ring: one mean per minute for the last seven days.
pub const COARSE_SLOTS: usize = 7 * 24 * 60;
/// Seconds per coarse slot.
pub const COARSE_STEP_S: i64 = 60;

/// Why a sample was not recorded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SampleError {
    /// Samples arrive in time order; an older one (a clock stepped back)
    /// cannot be placed without rewriting means already closed.
    #[error("sample at unix second {unix_s} is older than the newest one, at {newest_s}")]
    Stale { unix_s: i64, newest_s: i64 },
    /// NaN marks a gap, so it cannot be a value; storage is f32.
    #[error("sample at unix second {unix_s} is {value}, not a finite f32")]
    NotFinite { unix_s: i64, value: f64 },
}

/// The minute whose samples are still arriving.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct OpenMinute {
    /// `unix_s.div_euclid(COARSE_STEP_S)`.
    pub minute: i64,
    /// Of the f32-rounded samples, so replacing one subtracts what was added.
    pub sum: f64,
    pub count: u32,
}

/// Bounded load history of one series: [`FINE_SLOTS`] seconds and
/// [`COARSE_SLOTS`] minute means, at most 54 KiB (f32 slots, allocated as
/// they fill).
///
/// Gap policy. Forecasters need evenly spaced values, and a node misses
/// seconds (a stalled tick, a restart, hours down). Each ring keeps one slot
/// per step and stores a missed step as NaN, so what was observed stays
/// distinguishable from what was not (and is persisted as such). Readers get
/// [`Self::fine_values`] / [`Self::coarse_values`], where each run of
/// missing steps is replaced by the straight line between the observed
/// values on either side (a run at the old end, whose left side has aged
/// out, takes the first observed value). Why not the alternatives: zero
/// fabricates a dip that a seasonal forecaster would replay a period later;
/// repeating the last value fabricates a step that a trend forecaster reads
/// as a level shift; the line is the least-surprising guess for the short
/// gaps that dominate, and long outages matter less because the coarse
/// ring's buckets are means of real samples only (a minute with any sample
/// is exact; only wholly missed minutes are interpolated).
///
/// The newest slot of either ring is always observed, so the line always
/// has a right end. A jump forward longer than a whole ring clears it
/// rather than filling it with gaps.
#[derive(Debug, Clone, Default)]
pub struct LoadRing {
    /// Oldest first; NaN = no sample that second. Non-empty once pushed to.
    pub(super) fine: VecDeque<f32>,
    /// The second of `fine.back()`; meaningful when `fine` is not empty.
    pub(super) fine_newest_s: i64,
    /// Closed minute means, oldest first; NaN = a minute without samples.
    pub(super) coarse: VecDeque<f32>,
    /// The minute of `coarse.back()`; meaningful when `coarse` is not empty.
    pub(super) coarse_newest_minute: i64,
    /// `Some` once pushed to: the minute of `fine_newest_s`.
    pub(super) open: Option<OpenMinute>,
}

impl LoadRing {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.fine.is_empty()
    }

    /// Records `value` for the Unix second `unix_s`. A second sample for the
    /// newest second replaces the first (in the fine slot and in the minute
    /// mean); an older one is rejected.
    pub fn push(&mut self, unix_s: i64, value: f64) -> Result<(), SampleError> {
        let stored = value as f32;
        if !stored.is_finite() {
            return Err(SampleError::NotFinite { unix_s, value });
        }
        let Some(open) = self.open.as_mut() else {
            self.fine.push_back(stored);
            self.fine_newest_s = unix_s;
            self.open = Some(OpenMinute {
                minute: unix_s.div_euclid(COARSE_STEP_S),
                sum: f64::from(stored),
                count: 1,
            });
            return Ok(());
        };
        if unix_s < self.fine_newest_s {
            return Err(SampleError::Stale {
                unix_s,
                newest_s: self.fine_newest_s,
            });
        }
        if unix_s == self.fine_newest_s {
            let slot = self.fine.back_mut().expect("pushed to, so not empty");
            open.sum += f64::from(stored) - f64::from(*slot);
            *slot = stored;
            return Ok(());
        }

        let missed = steps_between(self.fine_newest_s, unix_s) - 1;
        push_after_gap(&mut self.fine, FINE_SLOTS, missed, stored);
        self.fine_newest_s = unix_s;

        let minute = unix_s.div_euclid(COARSE_STEP_S);
        if minute == open.minute {
            open.sum += f64::from(stored);
            open.count += 1;
        } else {
            let closed = *open;
            *open = OpenMinute {
                minute,
                sum: f64::from(stored),
                count: 1,
            };
            self.close_minute(closed);
        }
        self.debug_check();
        Ok(())
    }

    fn close_minute(&mut self, closed: OpenMinute) {
        debug_assert!(closed.count >= 1);
        // At most 60 samples of f32 range: the mean fits an f32.
        let mean = (closed.sum / f64::from(closed.count)) as f32;
        let missed = if self.coarse.is_empty() {
            0
        } else {
            steps_between(self.coarse_newest_minute, closed.minute) - 1
        };
        push_after_gap(&mut self.coarse, COARSE_SLOTS, missed, mean);
        self.coarse_newest_minute = closed.minute;
    }

    /// The Unix second of the newest sample.
    pub fn newest_s(&self) -> Option<i64> {
        (!self.fine.is_empty()).then_some(self.fine_newest_s)
    }

    /// The newest sample's value.
    pub fn latest(&self) -> Option<f64> {
        self.fine.back().map(|&value| f64::from(value))
    }

    /// The Unix second of `fine_values()[0]`.
    pub fn fine_start_s(&self) -> Option<i64> {
        self.newest_s()
            .map(|newest_s| newest_s - (self.fine.len() as i64 - 1))
    }

    /// One value per second, oldest first, ending at [`Self::newest_s`];
    /// missed seconds filled as the module doc describes.
    pub fn fine_values(&self) -> Vec<f64> {
        filled(&self.fine)
    }

    /// How many of the fine slots are filled-in gaps.
    pub fn fine_missing(&self) -> usize {
        self.fine.iter().filter(|value| value.is_nan()).count()
    }

    /// The Unix second at which the minute of `coarse_values()[0]` starts.
    pub fn coarse_start_s(&self) -> Option<i64> {
        (!self.coarse.is_empty())
            .then(|| (self.coarse_newest_minute - (self.coarse.len() as i64 - 1)) * COARSE_STEP_S)
    }

    /// One mean per minute, oldest first, up to the newest closed minute
    /// that had samples. The minute still receiving samples is left out, so
    /// a value never changes once read; wholly missed minutes are filled as
    /// the module doc describes, and those just before the open minute
    /// appear when it closes (filling them needs its mean).
    pub fn coarse_values(&self) -> Vec<f64> {
        filled(&self.coarse)
    }

    /// How many of the coarse slots are filled-in gaps.
    pub fn coarse_missing(&self) -> usize {
        self.coarse.iter().filter(|value| value.is_nan()).count()
    }

    pub(super) fn debug_check(&self) {
        debug_assert!(self.fine.len() <= FINE_SLOTS);
        debug_assert!(self.coarse.len() <= COARSE_SLOTS);
        debug_assert_eq!(self.open.is_some(), !self.fine.is_empty());
        debug_assert!(self.fine.back().is_none_or(|value| value.is_finite()));
        debug_assert!(self.coarse.back().is_none_or(|value| value.is_finite()));
        if let Some(open) = self.open {
            debug_assert_eq!(open.minute, self.fine_newest_s.div_euclid(COARSE_STEP_S));
            debug_assert!(self.coarse.is_empty() || self.coarse_newest_minute < open.minute);
        }
    }
}

/// Bitwise, so gaps (NaN) compare equal: two rings are equal when they
/// would encode to the same bytes.
impl PartialEq for LoadRing {
    fn eq(&self, other: &Self) -> bool {
        let bits = |ring: &VecDeque<f32>| ring.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        let open_bits = |open: Option<OpenMinute>| {
            open.map(|open| (open.minute, open.sum.to_bits(), open.count))
        };
        bits(&self.fine) == bits(&other.fine)
            && self.newest_s() == other.newest_s()
            && bits(&self.coarse) == bits(&other.coarse)
            && (self.coarse.is_empty() || self.coarse_newest_minute == other.coarse_newest_minute)
            && open_bits(self.open) == open_bits(other.open)
    }
}

/// Steps from `older` to `newer` (> older), saturating: any jump too large
/// to count clears the ring anyway.
fn steps_between(older: i64, newer: i64) -> usize {
    let steps = i128::from(newer) - i128::from(older);
    usize::try_from(steps).unwrap_or(usize::MAX)
}

/// Pushes `missed` gap slots and then `value`, keeping the newest `slots`.
fn push_after_gap(ring: &mut VecDeque<f32>, slots: usize, missed: usize, value: f32) {
    if missed >= slots - 1 {
        // Nothing older than the gap would survive it.
        ring.clear();
        ring.push_back(value);
        return;
    }
    for _ in 0..missed {
        push_bounded(ring, slots, f32::NAN);
    }
    push_bounded(ring, slots, value);
}

fn push_bounded(ring: &mut VecDeque<f32>, slots: usize, value: f32) {
    if ring.len() == slots {
        ring.pop_front();
    } else if ring.len() == ring.capacity() {
        // Grow by doubling, but never past `slots`: most series are young
        // or idle, and a full ring must not carry slack.
        ring.reserve_exact(ring.len().clamp(16, slots - ring.len()));
    }
    ring.push_back(value);
}

/// The ring as f64 with each NaN run replaced by the line between its
/// observed neighbours (a leading run takes the first observed value).
fn filled(ring: &VecDeque<f32>) -> Vec<f64> {
    let mut values: Vec<f64> = ring.iter().map(|&value| f64::from(value)).collect();
    let mut left: Option<(usize, f64)> = None;
    for index in 0..values.len() {
        let value = values[index];
        if value.is_nan() {
            continue;
        }
        let run_start = left.map_or(0, |(at, _)| at + 1);
        for (gap, slot) in values[run_start..index].iter_mut().enumerate() {
            *slot = match left {
                Some((at, from)) => {
                    let position = (run_start + gap - at) as f64 / (index - at) as f64;
                    from + (value - from) * position
                }
                None => value,
            };
        }
        left = Some((index, value));
    }
    // The newest slot is always observed, so no run is left at the end.
    debug_assert!(values.iter().all(|value| value.is_finite()));
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_040; // the start of a minute

    fn ring(samples: &[(i64, f64)]) -> LoadRing {
        let mut ring = LoadRing::new();
        for &(unix_s, value) in samples {
            ring.push(unix_s, value).unwrap();
        }
        ring
    }

    #[test]
    fn an_empty_ring_has_no_values() {
        let ring = LoadRing::new();
        assert!(ring.is_empty());
        assert_eq!(ring.newest_s(), None);
        assert_eq!(ring.latest(), None);
        assert!(ring.fine_values().is_empty() && ring.coarse_values().is_empty());
        assert_eq!((ring.fine_start_s(), ring.coarse_start_s()), (None, None));
    }

    #[test]
    fn missed_seconds_are_interpolated_and_counted() {
        let ring = ring(&[(T0, 1.0), (T0 + 4, 5.0), (T0 + 5, 2.0)]);
        assert_eq!(ring.fine_values(), vec![1.0, 2.0, 3.0, 4.0, 5.0, 2.0]);
        assert_eq!(ring.fine_missing(), 3);
        assert_eq!(ring.fine_start_s(), Some(T0));
        assert_eq!(ring.newest_s(), Some(T0 + 5));
        assert_eq!(ring.latest(), Some(2.0));
    }

    #[test]
    fn a_gap_at_the_old_end_takes_the_first_observed_value() {
        // 3599 seconds of gap then a sample: the sample before the gap ages
        // out of the hour, leaving the gap's tail at the old end.
        let mut samples = vec![(T0, 100.0), (T0 + 3000, 4.0)];
        samples.extend((1..=1000).map(|i| (T0 + 3000 + i, 4.0 + i as f64)));
        let ring = ring(&samples);
        let values = ring.fine_values();
        assert_eq!(values.len(), FINE_SLOTS);
        assert_eq!(ring.fine_start_s(), Some(T0 + 4000 - 3599));
        assert!(
            values[..2599].iter().all(|&v| v == 4.0),
            "{:?}",
            &values[..4]
        );
        assert_eq!(values[2599], 4.0);
        assert_eq!(*values.last().unwrap(), 1004.0);
    }

    #[test]
    fn the_fine_ring_keeps_the_last_hour() {
        let samples: Vec<(i64, f64)> = (0..5000).map(|i| (T0 + i, i as f64)).collect();
        let ring = ring(&samples);
        let values = ring.fine_values();
        assert_eq!(values.len(), FINE_SLOTS);
        assert_eq!(values[0], 1400.0);
        assert_eq!(ring.fine_start_s(), Some(T0 + 1400));
        assert_eq!(ring.fine_missing(), 0);
    }

    #[test]
    fn minute_means_close_when_the_next_minute_starts() {
        // Minute 0: 0..59 → mean 29.5; minute 1 half observed: 10 and 20.
        let mut samples: Vec<(i64, f64)> = (0..60).map(|i| (T0 + i, i as f64)).collect();
        samples.extend([(T0 + 60, 10.0), (T0 + 90, 20.0)]);
        let ring = ring(&samples);
        assert_eq!(ring.coarse_values(), vec![29.5]);
        assert_eq!(ring.coarse_start_s(), Some(T0));
        let ring = {
            let mut ring = ring;
            ring.push(T0 + 120, 0.0).unwrap();
            ring
        };
        // The partly observed minute is the mean of what was observed.
        assert_eq!(ring.coarse_values(), vec![29.5, 15.0]);
    }

    #[test]
    fn wholly_missed_minutes_are_interpolated_partly_missed_ones_are_real() {
        let ring = ring(&[
            (T0, 2.0),
            (T0 + 59, 4.0),     // minute 0: mean 3
            (T0 + 4 * 60, 9.0), // minutes 1..=3 missed; minute 4: 9 and 11
            (T0 + 4 * 60 + 30, 11.0),
            (T0 + 5 * 60, 0.0), // closes minute 4
        ]);
        assert_eq!(ring.coarse_values(), vec![3.0, 4.75, 6.5, 8.25, 10.0]);
        assert_eq!(ring.coarse_missing(), 3);
    }

    #[test]
    fn a_second_sample_for_the_same_second_replaces_the_first() {
        let mut ring = ring(&[(T0, 1.0), (T0 + 1, 100.0)]);
        ring.push(T0 + 1, 3.0).unwrap();
        assert_eq!(ring.fine_values(), vec![1.0, 3.0]);
        ring.push(T0 + 60, 0.0).unwrap();
        assert_eq!(ring.coarse_values(), vec![2.0]);
    }

    #[test]
    fn stale_and_non_finite_samples_are_rejected_without_effect() {
        let mut ring = ring(&[(T0, 1.0), (T0 + 10, 2.0)]);
        let before = ring.clone();
        assert_eq!(
            ring.push(T0 + 9, 5.0),
            Err(SampleError::Stale {
                unix_s: T0 + 9,
                newest_s: T0 + 10
            })
        );
        assert!(matches!(
            ring.push(T0 + 11, f64::NAN),
            Err(SampleError::NotFinite { .. })
        ));
        assert!(matches!(
            ring.push(T0 + 11, 1e39), // beyond f32
            Err(SampleError::NotFinite { .. })
        ));
        assert_eq!(ring, before);
    }

    #[test]
    fn a_jump_longer_than_a_ring_clears_it() {
        let mut ring = ring(&[(T0, 1.0), (T0 + 60, 2.0), (T0 + 120, 3.0)]);
        let later_s = T0 + 120 + FINE_SLOTS as i64;
        ring.push(later_s, 7.0).unwrap();
        assert_eq!(ring.fine_values(), vec![7.0]);
        assert_eq!(ring.coarse_values(), vec![1.0, 2.0, 3.0]);
        // Closing the minute of 7.0 places it after 59 missed minutes, which
        // still fit in the week.
        ring.push(later_s + 60, 8.0).unwrap();
        let coarse = ring.coarse_values();
        assert_eq!((coarse.len(), ring.coarse_missing()), (3 + 59 + 1, 59));
        assert_eq!((coarse[2], coarse[62]), (3.0, 7.0));
        ring.push(i64::MAX - COARSE_STEP_S, 9.0).unwrap();
        assert_eq!(ring.fine_values(), vec![9.0]);
        ring.push(i64::MAX, 10.0).unwrap();
        assert_eq!(ring.fine_start_s(), Some(i64::MAX - COARSE_STEP_S));
        assert_eq!(ring.coarse_values(), vec![9.0]);
    }

    proptest::proptest! {
        /// Against a reference that keeps every sample: each slot is the last
        /// value pushed for its second (NaN if none), each closed minute the
        /// mean of its seconds' last values.
        #[test]
        fn slots_match_a_reference_that_keeps_everything(
            steps in proptest::collection::vec((0i64..90, -1e3f64..1e3), 1..600),
        ) {
            let mut ring = LoadRing::new();
            let mut by_second = std::collections::BTreeMap::new();
            let mut now_s = T0 - 7;
            let mut first_s = None;
            for (step_s, value) in steps {
                now_s += step_s;
                first_s.get_or_insert(now_s);
                ring.push(now_s, value).unwrap();
                by_second.insert(now_s, value as f32);
            }
            let start_s = ring.fine_start_s().unwrap();
            proptest::prop_assert_eq!(ring.newest_s(), Some(now_s));
            proptest::prop_assert_eq!(start_s, (now_s - FINE_SLOTS as i64 + 1).max(first_s.unwrap()));
            let expected: Vec<u32> = (start_s..=now_s)
                .map(|s| by_second.get(&s).copied().unwrap_or(f32::NAN).to_bits())
                .collect();
            let stored: Vec<u32> = ring.fine.iter().map(|v| v.to_bits()).collect();
            proptest::prop_assert_eq!(stored, expected);

            let open_minute = now_s.div_euclid(COARSE_STEP_S);
            let mut minutes = std::collections::BTreeMap::<i64, (f64, u32)>::new();
            for (&s, &value) in by_second.range(..open_minute * COARSE_STEP_S) {
                let entry = minutes.entry(s.div_euclid(COARSE_STEP_S)).or_default();
                *entry = (entry.0 + f64::from(value), entry.1 + 1);
            }
            let coarse_start_s = ring.coarse_start_s();
            proptest::prop_assert_eq!(coarse_start_s.is_some(), !minutes.is_empty());
            if let Some(coarse_start_s) = coarse_start_s {
                let first = coarse_start_s / COARSE_STEP_S;
                proptest::prop_assert_eq!(first, *minutes.keys().next().unwrap());
                let last = *minutes.keys().next_back().unwrap();
                proptest::prop_assert_eq!(ring.coarse.len() as i64, last - first + 1);
                for (slot, minute) in ring.coarse.iter().zip(first..) {
                    match minutes.get(&minute) {
                        None => proptest::prop_assert!(slot.is_nan()),
                        Some(&(sum, count)) => {
                            let mean = sum / f64::from(count);
                            proptest::prop_assert!(
                                (f64::from(*slot) - mean).abs() <= 1e-3,
                                "minute {}: {} vs {}", minute, slot, mean
                            );
                        }
                    }
                }
            }
            let values = ring.fine_values();
            proptest::prop_assert_eq!(values.len(), ring.fine.len());
            proptest::prop_assert!(values.iter().all(|v| v.is_finite()));
        }
    }
}

//! When open-loop messages are due, and how large each message is.
//!
//! Open loop: message `k` is due at `start + k / rate`, whatever happened to
//! the messages before it. A sender that falls behind sends the due
//! messages late, and each one's latency is then measured from its due time
//! (see [`crate::recorder`]): that is the correction for coordinated
//! omission.

use std::fmt;
use std::str::FromStr;

/// Due times of an open-loop stream of messages at a fixed rate.
#[derive(Debug, Clone)]
pub struct OpenLoopSchedule {
    start_ns: u64,
    interval_ns: f64,
    next: u64,
}

impl OpenLoopSchedule {
    /// Messages at `rate_per_s`, the first due at `start_ns`.
    pub fn new(start_ns: u64, rate_per_s: f64) -> Self {
        assert!(
            rate_per_s.is_finite() && rate_per_s > 0.0,
            "rate {rate_per_s} must be positive"
        );
        Self {
            start_ns,
            interval_ns: 1e9 / rate_per_s,
            next: 0,
        }
    }

    /// Index of the next message.
    pub fn next_index(&self) -> u64 {
        self.next
    }

    /// When the next message is due.
    pub fn next_due_ns(&self) -> u64 {
        self.start_ns + (self.next as f64 * self.interval_ns) as u64
    }

    /// The next message's due time if it is due at `now_ns`, and moves on.
    pub fn take_due(&mut self, now_ns: u64) -> Option<u64> {
        let due = self.next_due_ns();
        (due <= now_ns).then(|| {
            self.next += 1;
            due
        })
    }
}

/// SplitMix64: a tiny, seedable generator for message sizes (no need for a
/// cryptographic or even a statistically strong one).
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0); the modulo bias is irrelevant here.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// Message sizes: fixed (`1024`), uniform in a range (`512-4096`), or
/// weighted choices (`100:9,10000:1`).
#[derive(Debug, Clone, PartialEq)]
pub enum SizeDist {
    Fixed(usize),
    Uniform { min: usize, max: usize },
    Weighted(Vec<(usize, u32)>),
}

impl SizeDist {
    pub fn sample(&self, rng: &mut SplitMix64) -> usize {
        match self {
            SizeDist::Fixed(n) => *n,
            SizeDist::Uniform { min, max } => min + rng.below((max - min + 1) as u64) as usize,
            SizeDist::Weighted(choices) => {
                let total: u64 = choices.iter().map(|&(_, w)| u64::from(w)).sum();
                let mut pick = rng.below(total);
                for &(size, weight) in choices {
                    if pick < u64::from(weight) {
                        return size;
                    }
                    pick -= u64::from(weight);
                }
                choices[choices.len() - 1].0
            }
        }
    }

    pub fn min(&self) -> usize {
        match self {
            SizeDist::Fixed(n) => *n,
            SizeDist::Uniform { min, .. } => *min,
            SizeDist::Weighted(c) => c.iter().map(|&(s, _)| s).min().unwrap_or(0),
        }
    }

    pub fn max(&self) -> usize {
        match self {
            SizeDist::Fixed(n) => *n,
            SizeDist::Uniform { max, .. } => *max,
            SizeDist::Weighted(c) => c.iter().map(|&(s, _)| s).max().unwrap_or(0),
        }
    }

    pub fn mean(&self) -> f64 {
        match self {
            SizeDist::Fixed(n) => *n as f64,
            SizeDist::Uniform { min, max } => (*min + *max) as f64 / 2.0,
            SizeDist::Weighted(c) => {
                let total: f64 = c.iter().map(|&(_, w)| f64::from(w)).sum();
                c.iter().map(|&(s, w)| s as f64 * f64::from(w)).sum::<f64>() / total
            }
        }
    }
}

impl FromStr for SizeDist {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let num = |t: &str| {
            t.trim()
                .parse::<usize>()
                .map_err(|e| format!("size {t:?}: {e}"))
        };
        if s.contains(':') {
            let mut choices = Vec::new();
            for part in s.split(',') {
                let (size, weight) = part
                    .split_once(':')
                    .ok_or_else(|| format!("{part:?}: expected SIZE:WEIGHT"))?;
                let weight = weight
                    .trim()
                    .parse::<u32>()
                    .map_err(|e| format!("weight {weight:?}: {e}"))?;
                choices.push((num(size)?, weight));
            }
            if choices.iter().all(|&(_, w)| w == 0) {
                return Err("every weight is zero".into());
            }
            Ok(SizeDist::Weighted(choices))
        } else if let Some((min, max)) = s.split_once('-') {
            let (min, max) = (num(min)?, num(max)?);
            if min > max {
                return Err(format!("range {min}-{max} is empty"));
            }
            Ok(SizeDist::Uniform { min, max })
        } else {
            Ok(SizeDist::Fixed(num(s)?))
        }
    }
}

impl fmt::Display for SizeDist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SizeDist::Fixed(n) => write!(f, "{n}"),
            SizeDist::Uniform { min, max } => write!(f, "{min}-{max}"),
            SizeDist::Weighted(c) => {
                let parts: Vec<String> = c.iter().map(|(s, w)| format!("{s}:{w}")).collect();
                f.write_str(&parts.join(","))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_times_do_not_drift_when_the_sender_is_late() {
        let mut s = OpenLoopSchedule::new(1_000, 1000.0); // one per ms
        assert_eq!(s.take_due(999), None);
        assert_eq!(s.take_due(1_000), Some(1_000));
        // The sender wakes 5 ms late: five messages are due at once, each
        // keeping its own due time.
        let late: Vec<u64> = std::iter::from_fn(|| s.take_due(5_001_000)).collect();
        assert_eq!(
            late,
            vec![1_001_000, 2_001_000, 3_001_000, 4_001_000, 5_001_000]
        );
        assert_eq!(s.next_index(), 6);
        assert_eq!(s.next_due_ns(), 6_001_000);
    }

    #[test]
    fn sizes_parse_and_sample_in_range() {
        assert_eq!("1024".parse::<SizeDist>().unwrap(), SizeDist::Fixed(1024));
        let u: SizeDist = "100-200".parse().unwrap();
        let w: SizeDist = "100:3,5000:1".parse().unwrap();
        assert!("200-100".parse::<SizeDist>().is_err());
        assert!("1:0".parse::<SizeDist>().is_err());
        let mut rng = SplitMix64::new(7);
        let mut big = 0;
        for _ in 0..4000 {
            let n = u.sample(&mut rng);
            assert!((100..=200).contains(&n));
            let m = w.sample(&mut rng);
            assert!(m == 100 || m == 5000);
            big += usize::from(m == 5000);
        }
        assert!((800..1200).contains(&big), "{big} of 4000 should be ~1000");
        assert_eq!(w.mean(), 1325.0);
        assert_eq!(w.to_string(), "100:3,5000:1");
    }
}

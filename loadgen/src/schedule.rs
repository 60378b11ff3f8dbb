//! When open-loop messages are due, and how large each message is.
//!
//! Open loop: a stream of messages follows a rate curve (messages per
//! second as a function of time, see [`RateCurve`]); message `k` is due at
//! the first time the curve's integral since the start reaches `k` (plus a
//! fixed phase), whatever happened to the messages before it. At a constant
//! rate that is `start + k / rate`. A sender that falls behind sends the due
//! messages late, and each one's latency is then measured from its due time
//! (see [`crate::recorder`]): that is the correction for coordinated
//! omission.

use std::fmt;
use std::str::FromStr;

/// Pieces one search for a due time may cross before it concludes that the
/// curve stays at zero: a bound on the work, not a limit any real load
/// shape comes near (a trace wraps around after its few thousand samples).
const PIECES_PER_SEARCH_MAX: usize = 1_000_000;

/// A stretch of a rate curve over which the rate is linear in time: from
/// the time it was asked for (`t_s`) until `until_s`, the rate is
/// `rate_per_s + slope_per_s2 * (t - t_s)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Piece {
    pub rate_per_s: f64,
    pub slope_per_s2: f64,
    /// Where the next piece starts (may be infinite).
    pub until_s: f64,
}

impl Piece {
    pub fn constant(rate_per_s: f64, until_s: f64) -> Self {
        Self {
            rate_per_s,
            slope_per_s2: 0.0,
            until_s,
        }
    }

    /// The same rate, ending at `until_s` if that is earlier.
    pub fn until(self, until_s: f64) -> Self {
        Self {
            until_s: self.until_s.min(until_s),
            ..self
        }
    }

    /// Every rate multiplied by `factor`.
    pub fn scaled(self, factor: f64) -> Self {
        Self {
            rate_per_s: self.rate_per_s * factor,
            slope_per_s2: self.slope_per_s2 * factor,
            ..self
        }
    }
}

/// Messages per second as a function of the seconds since the start of a
/// stream: piecewise linear, possibly with jumps between pieces, never
/// negative.
pub trait RateCurve {
    /// The piece that holds at `t_s` (≥ 0), starting there.
    fn piece_at(&self, t_s: f64) -> Piece;

    fn rate_at(&self, t_s: f64) -> f64 {
        self.piece_at(t_s).rate_per_s
    }
}

/// The same rate forever.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConstantRate(pub f64);

impl RateCurve for ConstantRate {
    fn piece_at(&self, _t_s: f64) -> Piece {
        Piece::constant(self.0, f64::INFINITY)
    }
}

/// Due times of an open-loop stream of messages that follows a rate curve.
#[derive(Debug, Clone)]
pub struct OpenLoopSchedule<C> {
    start_ns: u64,
    curve: C,
    /// Message `k` is due when the integral reaches `k + phase`.
    phase: f64,
    /// A piece boundary already crossed (seconds since `start_ns`) and the
    /// integral of the curve up to it. Due times are solved from here, so
    /// rounding does not accumulate message by message.
    anchor_s: f64,
    anchor_count: f64,
    next: u64,
    /// Cached: when message `next` is due; `None` if the curve stays at 0.
    next_due_ns: Option<u64>,
}

impl<C: RateCurve> OpenLoopSchedule<C> {
    /// Messages following `curve` from `start_ns`; message `k` is due when
    /// the curve's integral reaches `k + phase` (phase in `0..1`, so
    /// streams of equal rates can interleave instead of all falling due at
    /// once).
    pub fn new(start_ns: u64, curve: C, phase: f64) -> Self {
        assert!((0.0..1.0).contains(&phase), "phase {phase} must be in 0..1");
        let mut s = Self {
            start_ns,
            curve,
            phase,
            anchor_s: 0.0,
            anchor_count: 0.0,
            next: 0,
            next_due_ns: None,
        };
        s.next_due_ns = s.solve_next();
        s
    }

    /// Index of the next message.
    pub fn next_index(&self) -> u64 {
        self.next
    }

    /// When the next message is due (`u64::MAX`: never, the rate stays at
    /// zero).
    pub fn next_due_ns(&self) -> u64 {
        self.next_due_ns.unwrap_or(u64::MAX)
    }

    /// The next message's due time if it is due at `now_ns`, and moves on.
    pub fn take_due(&mut self, now_ns: u64) -> Option<u64> {
        let due = self.next_due_ns.filter(|&d| d <= now_ns)?;
        self.next += 1;
        self.next_due_ns = self.solve_next();
        Some(due)
    }

    pub fn curve(&self) -> &C {
        &self.curve
    }

    /// When the integral reaches `next + phase`, moving the anchor over the
    /// pieces that end before.
    fn solve_next(&mut self) -> Option<u64> {
        let target = self.next as f64 + self.phase;
        for _ in 0..PIECES_PER_SEARCH_MAX {
            let need = target - self.anchor_count;
            let piece = self.curve.piece_at(self.anchor_s);
            let (r, s) = (piece.rate_per_s, piece.slope_per_s2);
            debug_assert!(r >= 0.0, "negative rate {r} at {} s", self.anchor_s);
            let length_s = piece.until_s - self.anchor_s;
            let area = r * length_s + s * length_s * length_s / 2.0;
            if need <= 0.0 || need <= area || length_s.is_infinite() {
                let dx = if need <= 0.0 {
                    0.0
                } else if s == 0.0 {
                    if r <= 0.0 {
                        return None; // zero for ever
                    }
                    need / r
                } else {
                    // Root of r·x + s·x²/2 = need, in the form that does
                    // not cancel when s is small.
                    let root = (r * r + 2.0 * s * need).max(0.0).sqrt();
                    if r + root <= 0.0 {
                        return None; // falling to zero, for ever
                    }
                    2.0 * need / (r + root)
                };
                let due_s = self.anchor_s + dx.min(length_s);
                return Some(self.start_ns + (due_s * 1e9).round() as u64);
            }
            self.anchor_count += area;
            // A piece always ends after it starts, even when the boundary
            // rounds onto the anchor itself.
            self.anchor_s = piece.until_s.max(self.anchor_s.next_up());
        }
        None
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
        let mut s = OpenLoopSchedule::new(1_000, ConstantRate(1000.0), 0.0); // one per ms
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

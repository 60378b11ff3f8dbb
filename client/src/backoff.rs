//! Exponential back-off with jitter, as a plain function of the attempt
//! number and a random draw (no clock, no runtime).

use std::time::Duration;

/// Exponential back-off: `base * 2^(failures - 1)`, capped at `max`, then
/// scaled by a random factor in `[0.5, 1.0]` so that many clients failing
/// together do not retry in lockstep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The wait after `failures` consecutive failures (`failures >= 1`);
    /// `unit` is a random draw in `[0, 1]`.
    pub fn delay(&self, failures: u32, unit: f64) -> Duration {
        debug_assert!(failures >= 1, "no back-off before the first failure");
        let exponent = failures.saturating_sub(1).min(30);
        let full = self.base.saturating_mul(1u32 << exponent).min(self.max);
        full.mul_f64(0.5 + 0.5 * unit.clamp(0.0, 1.0))
    }
}

/// A small non-cryptographic generator for jitter (xorshift64*), seeded
/// from the process's hash randomness: no dependency for a few random bits.
#[derive(Debug, Clone)]
pub(crate) struct Jitter {
    state: u64,
}

impl Jitter {
    pub fn new() -> Self {
        use std::hash::{BuildHasher, Hasher};
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(0x5350_524c);
        Self::with_seed(hasher.finish())
    }

    pub fn with_seed(seed: u64) -> Self {
        Self { state: seed | 1 }
    }

    /// A draw in `[0, 1]`.
    pub fn unit(&mut self) -> f64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        let x = self.state.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_with_jitter_below_it() {
        let b = Backoff {
            base: Duration::from_millis(50),
            max: Duration::from_millis(1000),
        };
        assert_eq!(b.delay(1, 1.0), Duration::from_millis(50));
        assert_eq!(b.delay(2, 1.0), Duration::from_millis(100));
        assert_eq!(b.delay(3, 0.0), Duration::from_millis(100));
        assert_eq!(b.delay(10, 1.0), Duration::from_millis(1000));
        assert_eq!(b.delay(u32::MAX, 1.0), Duration::from_millis(1000));
    }

    #[test]
    fn jitter_stays_in_range() {
        let mut j = Jitter::with_seed(42);
        for _ in 0..1000 {
            let u = j.unit();
            assert!((0.0..=1.0).contains(&u), "{u}");
        }
    }
}

//! Retry timing (sans-IO): exponential backoff with jitter, per-attempt
//! timeouts that grow with the bytes an attempt moves.

use std::time::Duration;

/// How long S3 requests are retried and how long one attempt may take.
///
/// Each S3 request of an operation (a PUT, a HEAD, a GET...) is retried
/// until `budget_ms` has passed since its first attempt started; an attempt
/// that hangs is cut at its [`RetryPolicy::attempt_timeout`]. So a request
/// fails with `Unavailable` at most `budget_ms` + one attempt timeout after
/// it started, and a request that succeeds starts the next one's budget
/// afresh: a long but healthy upload never eats the budget of its
/// verification read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub budget_ms: u64,
    /// First backoff; doubled after every failure up to `backoff_max_ms`.
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    /// Timeout of an attempt that moves no body (HEAD, LIST, DELETE, small GET/PUT).
    pub request_timeout_ms: u64,
    /// Slowest transfer rate an attempt may run at before it is cut and
    /// retried: a body of `n` bytes gets `n / transfer_bytes_per_s_min`
    /// seconds on top of `request_timeout_ms`.
    pub transfer_bytes_per_s_min: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            budget_ms: 30_000,
            backoff_initial_ms: 50,
            backoff_max_ms: 2_000,
            request_timeout_ms: 10_000,
            transfer_bytes_per_s_min: 4 << 20,
        }
    }
}

impl RetryPolicy {
    pub fn attempt_timeout(&self, body_bytes: u64) -> Duration {
        let transfer_ms = body_bytes.saturating_mul(1000) / self.transfer_bytes_per_s_min.max(1);
        Duration::from_millis(self.request_timeout_ms.saturating_add(transfer_ms))
    }

    pub fn budget(&self) -> Duration {
        Duration::from_millis(self.budget_ms)
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.backoff_initial_ms == 0 || self.backoff_max_ms < self.backoff_initial_ms {
            return Err(format!(
                "backoff must satisfy 0 < backoff_initial_ms ({}) <= backoff_max_ms ({})",
                self.backoff_initial_ms, self.backoff_max_ms
            ));
        }
        if self.request_timeout_ms == 0 || self.transfer_bytes_per_s_min == 0 {
            return Err("request_timeout_ms and transfer_bytes_per_s_min must be > 0".into());
        }
        Ok(())
    }
}

/// Successive backoff delays of one request: "equal jitter" (half of the
/// exponential step fixed, half random), so retries from many partitions
/// after an outage spread out instead of arriving together.
#[derive(Debug, Clone)]
pub struct Backoff {
    next_ms: u64,
    max_ms: u64,
    rng: u64,
}

impl Backoff {
    pub fn new(policy: &RetryPolicy, seed: u64) -> Self {
        Self {
            next_ms: policy.backoff_initial_ms,
            max_ms: policy.backoff_max_ms,
            // splitmix64 of the seed: any seed (even 0) gives a usable state.
            rng: splitmix64(seed) | 1,
        }
    }

    pub fn next_delay(&mut self) -> Duration {
        let step = self.next_ms;
        self.next_ms = (self.next_ms.saturating_mul(2)).min(self.max_ms);
        let half = step / 2;
        let jitter = if half == 0 {
            0
        } else {
            self.next_random() % (half + 1)
        };
        Duration::from_millis(step - half + jitter)
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

pub(crate) fn splitmix64(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_to_the_cap_with_bounded_jitter() {
        let policy = RetryPolicy {
            backoff_initial_ms: 100,
            backoff_max_ms: 1000,
            ..Default::default()
        };
        for seed in 0..50 {
            let mut b = Backoff::new(&policy, seed);
            let steps = [100u64, 200, 400, 800, 1000, 1000, 1000];
            for step in steps {
                let d = b.next_delay().as_millis() as u64;
                assert!(
                    (step / 2..=step).contains(&d),
                    "seed {seed}: delay {d} outside [{}, {step}]",
                    step / 2
                );
            }
        }
    }

    #[test]
    fn jitter_differs_between_seeds() {
        let policy = RetryPolicy::default();
        let delays: std::collections::BTreeSet<_> = (0..20)
            .map(|seed| {
                let mut b = Backoff::new(&policy, seed);
                (0..4).map(|_| b.next_delay()).collect::<Vec<_>>()
            })
            .collect();
        assert!(delays.len() > 10, "jitter spreads retries: {delays:?}");
    }

    #[test]
    fn attempt_timeout_grows_with_the_body() {
        let p = RetryPolicy {
            request_timeout_ms: 1000,
            transfer_bytes_per_s_min: 1 << 20,
            ..Default::default()
        };
        assert_eq!(p.attempt_timeout(0), Duration::from_millis(1000));
        assert_eq!(p.attempt_timeout(4 << 20), Duration::from_millis(5000));
    }
}

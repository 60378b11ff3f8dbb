//! Synthetic series with known structure, for the tests.

use std::f64::consts::TAU;

/// Deterministic Gaussian noise: SplitMix64 and Box–Muller.
pub struct Noise(u64);

impl Noise {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        // In (0, 1]: the logarithm below stays finite.
        ((z >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    /// A standard normal draw.
    pub fn gaussian(&mut self) -> f64 {
        let (u, v) = (self.unit(), self.unit());
        (-2.0 * u.ln()).sqrt() * (TAU * v).cos()
    }
}

/// A daily-like load shape of `period` steps around 100 (two harmonics,
/// between about 45 and 150).
pub fn daily_shape(t: usize, period: usize) -> f64 {
    let phase = TAU * (t % period) as f64 / period as f64;
    100.0 + 40.0 * phase.sin() + 15.0 * (2.0 * phase + 1.0).sin()
}

/// `daily_shape` plus noise of standard deviation `noise_sd`, AR(1) with
/// coefficient `noise_ar` (0: independent).
pub fn seasonal(len: usize, period: usize, noise_sd: f64, noise_ar: f64, seed: u64) -> Vec<f64> {
    let mut noise = Noise::new(seed);
    // The innovation is scaled so the stationary noise has `noise_sd`.
    let innovation_sd = noise_sd * (1.0 - noise_ar * noise_ar).sqrt();
    let mut ar = noise_sd * noise.gaussian();
    (0..len)
        .map(|t| {
            ar = noise_ar * ar + innovation_sd * noise.gaussian();
            daily_shape(t, period) + ar
        })
        .collect()
}

/// Independent Gaussian values around `level`.
pub fn white_noise(len: usize, level: f64, sd: f64, seed: u64) -> Vec<f64> {
    let mut noise = Noise::new(seed);
    (0..len).map(|_| level + sd * noise.gaussian()).collect()
}

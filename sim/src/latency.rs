//! [`Latency`]: one-way delay distributions, sampled from the network's seeded RNG.

use rand::RngExt;
use rand::rngs::SmallRng;

use crate::scenario::LatencyFile;

/// A one-way delay distribution in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Latency {
    /// Always `ns`.
    Fixed(u64),
    /// Uniform in `[min, max]`.
    Uniform {
        /// Smallest delay.
        min: u64,
        /// Largest delay.
        max: u64,
    },
    /// `median · e^(sigma · Z)` with `Z` standard normal, cut at `max`.
    LogNormal {
        /// Median delay.
        median: f64,
        /// Shape.
        sigma: f64,
        /// Cut-off.
        max: u64,
    },
}

impl Latency {
    /// The distribution a (validated) scenario describes.
    pub fn from_file(file: LatencyFile) -> Self {
        let ns = |ms: f64| (ms * 1e6).round() as u64;
        match file {
            LatencyFile::Fixed { ms } => Latency::Fixed(ns(ms)),
            LatencyFile::Uniform { min_ms, max_ms } => Latency::Uniform {
                min: ns(min_ms),
                max: ns(max_ms),
            },
            LatencyFile::LogNormal {
                median_ms,
                sigma,
                max_ms,
            } => Latency::LogNormal {
                median: median_ms * 1e6,
                sigma,
                max: ns(max_ms),
            },
        }
    }

    /// One delay.
    pub fn sample(&self, rng: &mut SmallRng) -> u64 {
        match *self {
            Latency::Fixed(ns) => ns,
            Latency::Uniform { min, max } if max <= min => min,
            Latency::Uniform { min, max } => rng.random_range(min..=max),
            Latency::LogNormal { median, sigma, max } => {
                // Box-Muller: two uniforms give one standard normal. `u1` is kept away
                // from 0 so the logarithm is finite.
                let u1: f64 = rng.random_range(f64::EPSILON..1.0);
                let u2: f64 = rng.random_range(0.0..1.0);
                let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                let delay = median * (sigma * z).exp();
                (delay.round() as u64).min(max)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn samples_stay_in_bounds_and_lognormal_has_its_median() {
        let mut rng = SmallRng::seed_from_u64(3);
        let uniform = Latency::Uniform { min: 10, max: 20 };
        assert!((0..1000).all(|_| (10..=20).contains(&uniform.sample(&mut rng))));
        let lognormal = Latency::LogNormal {
            median: 1e6,
            sigma: 0.5,
            max: 50_000_000,
        };
        let mut samples: Vec<u64> = (0..20_001).map(|_| lognormal.sample(&mut rng)).collect();
        samples.sort_unstable();
        let median = samples[10_000] as f64;
        assert!((median / 1e6 - 1.0).abs() < 0.05, "median {median}");
        assert!(samples.iter().all(|&s| s <= 50_000_000));
    }
}

//! Instance start-up delays. Minimal stand-in with the lead engineer's API; on merge, main's
//! `coldstart.rs` replaces this file, so nothing here may grow beyond that API.

use std::time::Duration;

/// How long a new instance takes before it can serve: none, a fixed time, or a log-normal
/// spread given by its median and 99th percentile (real cold starts have a long right tail).
#[derive(Debug, Clone, PartialEq)]
pub enum ColdStartDelay {
    None,
    Fixed(Duration),
    LogNormal { p50: Duration, p99: Duration },
}

/// z-score of the 99th percentile of a standard normal distribution.
const Z99: f64 = 2.326_347_874_040_841;

impl ColdStartDelay {
    /// Draws one start-up delay; the caller owns the (seeded) rng so runs are reproducible.
    pub fn sample(&self, rng: &mut impl rand::Rng) -> Duration {
        match self {
            ColdStartDelay::None => Duration::ZERO,
            ColdStartDelay::Fixed(d) => *d,
            ColdStartDelay::LogNormal { p50, p99 } => {
                let median = p50.as_secs_f64();
                if median <= 0.0 {
                    return Duration::ZERO;
                }
                let sigma = (p99.as_secs_f64() / median).max(1.0).ln() / Z99;
                // Box–Muller: one standard normal from two uniforms in (0, 1].
                let u1: f64 = 1.0 - rng.random::<f64>();
                let u2: f64 = rng.random::<f64>();
                let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                Duration::from_secs_f64((median * (sigma * z).exp()).min(86_400.0))
            }
        }
    }
}

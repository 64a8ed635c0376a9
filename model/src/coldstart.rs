//! The extra cold-start delay: what image pull and container start cost on Cloud Run, which a
//! local process does not pay. Fixed, or log-normal from a median and a 99th percentile (startup
//! times are right-skewed: most starts are quick, a few are slow).

use std::time::Duration;

use rand_distr::{Distribution, LogNormal};

/// z-score of the 99th percentile of a standard normal distribution.
const Z99: f64 = 2.326_347_874_040_841;

/// How long an instance waits, before its process starts, to stand for pulling and starting a container.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum ColdStartDelay {
    /// No extra delay: the instance costs what its process takes to start.
    #[default]
    None,
    /// Always the same delay.
    Fixed(Duration),
    /// Log-normal with this median and 99th percentile (p99 ≥ p50).
    LogNormal { p50: Duration, p99: Duration },
}

impl ColdStartDelay {
    /// One delay drawn from the distribution.
    pub fn sample(&self, rng: &mut impl rand::Rng) -> Duration {
        match *self {
            ColdStartDelay::None => Duration::ZERO,
            ColdStartDelay::Fixed(d) => d,
            ColdStartDelay::LogNormal { p50, p99 } => {
                let median = p50.as_secs_f64().max(1e-6);
                let sigma = ((p99.as_secs_f64().max(median)) / median).ln() / Z99;
                if sigma <= 0.0 {
                    return p50;
                }
                match LogNormal::new(median.ln(), sigma) {
                    Ok(dist) => Duration::from_secs_f64(dist.sample(rng).min(3600.0)),
                    Err(_) => p50,
                }
            }
        }
    }

    /// The median delay, used where one number must stand for the distribution.
    pub fn median(&self) -> Duration {
        match *self {
            ColdStartDelay::None => Duration::ZERO,
            ColdStartDelay::Fixed(d) => d,
            ColdStartDelay::LogNormal { p50, .. } => p50,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn lognormal_matches_its_percentiles() {
        let d = ColdStartDelay::LogNormal {
            p50: Duration::from_millis(500),
            p99: Duration::from_millis(3000),
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut xs: Vec<f64> = (0..20_000)
            .map(|_| d.sample(&mut rng).as_secs_f64())
            .collect();
        xs.sort_by(f64::total_cmp);
        let p50 = xs[xs.len() / 2];
        let p99 = xs[xs.len() * 99 / 100];
        assert!((p50 - 0.5).abs() < 0.03, "p50 {p50}");
        assert!((p99 - 3.0).abs() < 0.35, "p99 {p99}");
    }

    #[test]
    fn fixed_and_none() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        assert_eq!(ColdStartDelay::None.sample(&mut rng), Duration::ZERO);
        let f = ColdStartDelay::Fixed(Duration::from_millis(250));
        assert_eq!(f.sample(&mut rng), Duration::from_millis(250));
    }
}

//! Random draws for the simulator: start-up and service times, and the percentiles it reports.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::Rng;

use crate::coldstart::ColdStartDelay;
use crate::load::ServiceTime;

/// The expected start-up time of `d` (the mean of the log-normal for `LogNormal`).
pub fn mean_startup(d: &ColdStartDelay) -> Duration {
    match d {
        ColdStartDelay::None => Duration::ZERO,
        ColdStartDelay::Fixed(t) => *t,
        ColdStartDelay::LogNormal { p50, p99 } => {
            let (mu, sigma) = lognormal_params(*p50, *p99);
            Duration::from_secs_f64((mu + sigma * sigma / 2.0).exp().min(86_400.0))
        }
    }
}

/// z-score of the 99th percentile of a standard normal distribution.
const Z99: f64 = 2.326_347_874_040_841;

/// (μ, σ) of a log-normal (in seconds) with this median and 99th percentile.
fn lognormal_params(p50: Duration, p99: Duration) -> (f64, f64) {
    let median = p50.as_secs_f64().max(1e-9);
    let sigma = (p99.as_secs_f64() / median).max(1.0).ln() / Z99;
    (median.ln(), sigma)
}

/// Millisecond of a duration, at least 1 so every request occupies its slot for a step.
pub(super) fn ms_at_least_1(d: Duration) -> u64 {
    (d.as_secs_f64() * 1000.0).round().max(1.0) as u64
}

/// Draws service times in ms. A log-normal is sampled through a table of its quantiles
/// (inverse-transform sampling with linear interpolation), which costs one uniform draw instead
/// of two plus four transcendental functions: an hour at 1000 RPS is 3.6 M draws.
pub(super) struct ServiceSampler {
    pub(super) source: ServiceTime,
    kind: SamplerKind,
}

enum SamplerKind {
    Fixed(u64),
    /// Service time (ms) at quantiles `i / (len - 1)` for the central part; the extreme tails
    /// (below the first and above the last inner quantile) are drawn exactly.
    Table {
        ms: Vec<f64>,
        mu: f64,
        sigma: f64,
    },
}

/// Quantile table resolution; tails outside `[1/N, 1 - 1/N]` are sampled exactly.
const TABLE_STEPS: usize = 4096;

impl ServiceSampler {
    pub(super) fn new(source: &ServiceTime) -> Self {
        let kind = match source {
            ServiceTime::Fixed(d) => SamplerKind::Fixed(ms_at_least_1(*d)),
            ServiceTime::LogNormal { p50, p99 } => {
                let (mu, sigma) = lognormal_params(*p50, *p99);
                let ms = (1..TABLE_STEPS)
                    .map(|i| {
                        let z = inverse_normal_cdf(i as f64 / TABLE_STEPS as f64);
                        (mu + sigma * z).exp().min(86_400.0) * 1000.0
                    })
                    .collect();
                SamplerKind::Table { ms, mu, sigma }
            }
        };
        ServiceSampler {
            source: source.clone(),
            kind,
        }
    }

    pub(super) fn sample(&self, rng: &mut StdRng) -> u64 {
        match &self.kind {
            SamplerKind::Fixed(ms) => *ms,
            SamplerKind::Table { ms, mu, sigma } => {
                let u: f64 = rng.random::<f64>();
                let x = u * TABLE_STEPS as f64;
                let i = x as usize;
                let v = if i == 0 || i >= TABLE_STEPS - 1 {
                    let p = u.clamp(1e-300, 1.0 - 1e-16);
                    (mu + sigma * inverse_normal_cdf(p)).exp().min(86_400.0) * 1000.0
                } else {
                    // ms[k] is the quantile (k + 1) / N, so x lies between ms[i - 1] and ms[i].
                    let f = x - i as f64;
                    ms[i - 1] + (ms[i] - ms[i - 1]) * f
                };
                v.round().max(1.0) as u64
            }
        }
    }
}

/// The standard normal quantile function (Acklam's rational approximation, relative error
/// below 1.2e-9 — far finer than the millisecond the simulator resolves).
fn inverse_normal_cdf(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    const LOW: f64 = 0.024_25;
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < LOW {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - LOW {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

/// Nearest-rank percentile of `v` (reordered in place); 0 when empty.
pub(super) fn percentile(v: &mut [u32], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
    let (_, x, _) = v.select_nth_unstable(rank);
    f64::from(*x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn inverse_normal_cdf_matches_known_quantiles() {
        assert!(inverse_normal_cdf(0.5).abs() < 1e-9);
        assert!((inverse_normal_cdf(0.975) - 1.959_963_985).abs() < 1e-6);
        assert!((inverse_normal_cdf(0.99) - Z99).abs() < 1e-6);
        assert!((inverse_normal_cdf(0.001) + 3.090_232_306).abs() < 1e-6);
    }

    #[test]
    fn lognormal_sampler_hits_its_percentiles() {
        let s = ServiceSampler::new(&ServiceTime::LogNormal {
            p50: Duration::from_millis(40),
            p99: Duration::from_millis(300),
        });
        let mut rng = StdRng::seed_from_u64(1);
        let mut v: Vec<u32> = (0..200_000).map(|_| s.sample(&mut rng) as u32).collect();
        let p50 = percentile(&mut v, 0.50);
        let p99 = percentile(&mut v, 0.99);
        assert!((39.0..=41.0).contains(&p50), "p50 {p50}");
        assert!((285.0..=315.0).contains(&p99), "p99 {p99}");
    }
}

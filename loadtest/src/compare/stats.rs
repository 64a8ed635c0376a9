//! The statistics behind `loadtest compare`. Pure: histograms and counts in, intervals out; every
//! random draw comes from a seeded generator, so the same inputs give the same verdict.
//!
//! # Latency percentiles: bootstrap from the HDR histograms
//!
//! A report keeps every latency exactly (to the histogram's precision), so the bootstrap can
//! resample the *whole* run rather than a capped sample. Resampling n values from a histogram
//! and taking the k-th smallest (k = ⌈q·n⌉) is the same as reading the histogram at the
//! quantile U₍ₖ₎, the k-th order statistic of n uniforms, which is Beta(k, n+1−k) distributed.
//! So one resample of a percentile costs one Beta draw and one histogram lookup, whatever n is:
//! 2000 resamples of a million-request run take milliseconds.
//!
//! The change is `current / baseline − 1`; its interval is the 2.5–97.5 % range of that ratio
//! over paired resamples (percentile bootstrap). With a rolling baseline (several runs), each
//! resample also multiplies by a log-normal factor whose spread is the between-run variation of
//! that percentile across the baseline runs (× √(1 + 1/K)): a new run differs from the mean of K
//! earlier ones by at least that much even when nothing changed. This double-counts the
//! within-run noise a little, which errs towards "no regression".

use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Beta, Distribution, StandardNormal};

use crate::engine::record::add_hist;

/// A percentile is judged only with at least this many requests above it on each side: the
/// bootstrap of a near-maximum order statistic is too narrow (the p99 of 60 requests is their
/// maximum, and resampling cannot produce anything larger).
pub const MIN_TAIL: f64 = 5.0;

/// Whether `n` requests carry enough tail above the q-quantile to judge it.
pub fn enough_tail(n: u64, q: f64) -> bool {
    n as f64 * (1.0 - q) >= MIN_TAIL - 1e-9
}

/// Two-sided confidence level of every interval.
pub const CONFIDENCE: f64 = 0.95;
/// z for [`CONFIDENCE`].
const Z: f64 = 1.959_963_984_540_054;

/// A point estimate with its interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    pub estimate: f64,
    pub low: f64,
    pub high: f64,
}

impl Interval {
    /// The interval excludes zero.
    pub fn significant(&self) -> bool {
        self.low > 0.0 || self.high < 0.0
    }
}

/// A deterministic generator for one metric: the same seed and label always draw the same.
pub fn rng_for(seed: u64, label: &str) -> StdRng {
    // FNV-1a: stable across platforms and Rust versions, unlike `DefaultHasher`.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in label.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    StdRng::seed_from_u64(seed ^ h)
}

/// The value at quantile `u` (0..=1) of `h`, in ms.
fn at(h: &Histogram<u64>, u: f64) -> f64 {
    h.value_at_quantile(u.clamp(0.0, 1.0)) as f64 / 1000.0
}

/// A histogram's cumulative counts, so a quantile is a binary search rather than a scan of
/// every bucket (thousands of lookups per metric). Reads exactly what
/// `Histogram::value_at_quantile` reads for quantiles above 0.
struct Cdf {
    values: Vec<u64>,
    cumulative: Vec<u64>,
    total: u64,
}

impl Cdf {
    fn new(h: &Histogram<u64>) -> Cdf {
        let mut values = Vec::new();
        let mut cumulative = Vec::new();
        let mut total = 0;
        for v in h.iter_recorded() {
            total += v.count_at_value();
            values.push(v.value_iterated_to());
            cumulative.push(total);
        }
        Cdf {
            values,
            cumulative,
            total,
        }
    }

    /// The value (ms) at quantile `u` in (0, 1].
    fn at(&self, u: f64) -> f64 {
        let want = ((u.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let i = self.cumulative.partition_point(|c| *c < want);
        self.values
            .get(i.min(self.values.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    }
}

/// One bootstrap draw of the q-quantile of a sample of `cdf.total` values from the histogram.
fn draw_percentile(cdf: &Cdf, q: f64, rng: &mut StdRng) -> f64 {
    let n = cdf.total as f64;
    let k = (q * n).ceil().clamp(1.0, n);
    match Beta::new(k, n + 1.0 - k) {
        Ok(b) => cdf.at(b.sample(rng)),
        Err(_) => cdf.at(q),
    }
}

/// Relative spread (sd / mean) of per-run values; 0 when fewer than two runs.
pub fn relative_spread(values: &[f64]) -> f64 {
    if values.len() < 2 {
        return 0.0;
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    if mean <= 0.0 {
        return 0.0;
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    var.sqrt() / mean
}

fn percentile_of_sorted(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = (p * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Change of the q-quantile, `current / baseline − 1`, with a bootstrap interval.
///
/// `between_runs` is the relative spread of this percentile across baseline runs (0 for a
/// single baseline run) and `baseline_runs` their number. `None` when either side is empty.
pub fn percentile_change(
    baseline: &Histogram<u64>,
    current: &Histogram<u64>,
    q: f64,
    between_runs: f64,
    baseline_runs: usize,
    resamples: usize,
    rng: &mut StdRng,
) -> Option<Interval> {
    if baseline.is_empty() || current.is_empty() {
        return None;
    }
    let b0 = at(baseline, q);
    let c0 = at(current, q);
    if b0 <= 0.0 {
        return None;
    }
    let sigma = if baseline_runs >= 2 {
        between_runs * (1.0 + 1.0 / baseline_runs as f64).sqrt()
    } else {
        0.0
    };
    let (bc, cc) = (Cdf::new(baseline), Cdf::new(current));
    let mut ratios: Vec<f64> = (0..resamples.max(1))
        .map(|_| {
            let b = draw_percentile(&bc, q, rng).max(1e-6);
            let c = draw_percentile(&cc, q, rng);
            let noise = if sigma > 0.0 {
                let z: f64 = StandardNormal.sample(rng);
                (sigma * z).exp()
            } else {
                1.0
            };
            c * noise / b - 1.0
        })
        .collect();
    ratios.sort_by(f64::total_cmp);
    let a = (1.0 - CONFIDENCE) / 2.0;
    Some(Interval {
        estimate: c0 / b0 - 1.0,
        low: percentile_of_sorted(&ratios, a),
        high: percentile_of_sorted(&ratios, 1.0 - a),
    })
}

/// The blocks of a run for the block bootstrap: its per-second histograms (empty seconds
/// dropped), merged into at most `max_blocks` runs of consecutive seconds.
pub fn blocks(seconds: &[Histogram<u64>], max_blocks: usize) -> Vec<Histogram<u64>> {
    let full: Vec<&Histogram<u64>> = seconds.iter().filter(|h| !h.is_empty()).collect();
    if full.is_empty() {
        return Vec::new();
    }
    let per = full.len().div_ceil(max_blocks.max(1));
    full.chunks(per)
        .map(|c| {
            let mut h = Histogram::new(2).expect("2 significant figures");
            for x in c {
                add_hist(&mut h, x);
            }
            h
        })
        .collect()
}

fn resample_blocks(blocks: &[Histogram<u64>], rng: &mut StdRng) -> Histogram<u64> {
    let mut h = Histogram::new(2).expect("2 significant figures");
    for _ in 0..blocks.len() {
        add_hist(&mut h, &blocks[rng.random_range(0..blocks.len())]);
    }
    h
}

/// Block bootstrap of the change of several quantiles at once: each resample draws whole
/// blocks of seconds with replacement on each side. Latencies are not independent — a noisy
/// neighbour or a GC pause slows a stretch of seconds together — and resampling whole seconds
/// keeps that clustering, where resampling single requests would call a one-second hiccup a
/// significant shift. `sigma[i]` is the between-run log spread to add (see
/// [`percentile_change`]). Returns, per quantile, the interval of current/baseline − 1 (without
/// the point estimate, which the caller has). `None` with fewer than two blocks a side.
pub fn block_percentile_change(
    baseline: &[Histogram<u64>],
    current: &[Histogram<u64>],
    qs: &[f64],
    sigma: &[f64],
    resamples: usize,
    rng: &mut StdRng,
) -> Option<Vec<(f64, f64)>> {
    if baseline.len() < 2 || current.len() < 2 {
        return None;
    }
    let mut ratios: Vec<Vec<f64>> = vec![Vec::with_capacity(resamples); qs.len()];
    for _ in 0..resamples.max(1) {
        let b = resample_blocks(baseline, rng);
        let c = resample_blocks(current, rng);
        for (i, q) in qs.iter().enumerate() {
            let noise = if sigma[i] > 0.0 {
                let z: f64 = StandardNormal.sample(rng);
                (sigma[i] * z).exp()
            } else {
                1.0
            };
            ratios[i].push(at(&c, *q) * noise / at(&b, *q).max(1e-6) - 1.0);
        }
    }
    let a = (1.0 - CONFIDENCE) / 2.0;
    Some(
        ratios
            .into_iter()
            .map(|mut r| {
                r.sort_by(f64::total_cmp);
                (
                    percentile_of_sorted(&r, a),
                    percentile_of_sorted(&r, 1.0 - a),
                )
            })
            .collect(),
    )
}

/// Wilson score interval of a proportion `x / n`.
pub fn wilson(x: u64, n: u64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let n = n as f64;
    let p = x as f64 / n;
    let z2 = Z * Z;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = Z / (1.0 + z2 / n) * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// Difference of two proportions `x2/n2 − x1/n1` (current − baseline) with Newcombe's hybrid
/// Wilson score interval (method 10): good coverage even at 0 errors, where the Wald interval
/// collapses to a point.
pub fn proportion_difference(x1: u64, n1: u64, x2: u64, n2: u64) -> Interval {
    let p1 = if n1 > 0 { x1 as f64 / n1 as f64 } else { 0.0 };
    let p2 = if n2 > 0 { x2 as f64 / n2 as f64 } else { 0.0 };
    let (l1, u1) = wilson(x1, n1);
    let (l2, u2) = wilson(x2, n2);
    let d = p2 - p1;
    Interval {
        estimate: d,
        low: d - ((p2 - l2).powi(2) + (u1 - p1).powi(2)).sqrt(),
        high: d + ((u2 - p2).powi(2) + (p1 - l1).powi(2)).sqrt(),
    }
}

/// Relative change of the mean of per-second values (`current / baseline − 1`), with a
/// bootstrap interval from resampling the seconds of each side.
pub fn mean_change(
    baseline: &[f64],
    current: &[f64],
    resamples: usize,
    rng: &mut StdRng,
) -> Option<Interval> {
    if baseline.is_empty() || current.is_empty() {
        return None;
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let b0 = mean(baseline);
    if b0 <= 0.0 {
        return None;
    }
    let resample_mean = |v: &[f64], rng: &mut StdRng| {
        (0..v.len())
            .map(|_| v[rng.random_range(0..v.len())])
            .sum::<f64>()
            / v.len() as f64
    };
    let mut ratios: Vec<f64> = (0..resamples.max(1))
        .map(|_| {
            let b = resample_mean(baseline, rng).max(1e-9);
            let c = resample_mean(current, rng);
            c / b - 1.0
        })
        .collect();
    ratios.sort_by(f64::total_cmp);
    let a = (1.0 - CONFIDENCE) / 2.0;
    Some(Interval {
        estimate: mean(current) / b0 - 1.0,
        low: percentile_of_sorted(&ratios, a),
        high: percentile_of_sorted(&ratios, 1.0 - a),
    })
}

/// Two-sided p-value of the Mann–Whitney U test (normal approximation with tie correction):
/// do per-second values of one run tend to be larger than the other's?
pub fn mann_whitney_p(a: &[f64], b: &[f64]) -> Option<f64> {
    let (n1, n2) = (a.len() as f64, b.len() as f64);
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let mut all: Vec<(f64, usize)> = a
        .iter()
        .map(|v| (*v, 0))
        .chain(b.iter().map(|v| (*v, 1)))
        .collect();
    all.sort_by(|x, y| x.0.total_cmp(&y.0));
    let n = all.len();
    let mut ranks = vec![0.0; n];
    let mut ties = 0.0;
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        let r = (i + j) as f64 / 2.0 + 1.0;
        for rank in &mut ranks[i..=j] {
            *rank = r;
        }
        let t = (j - i + 1) as f64;
        ties += t * t * t - t;
        i = j + 1;
    }
    let r1: f64 = all
        .iter()
        .zip(&ranks)
        .filter(|(x, _)| x.1 == 0)
        .map(|(_, r)| r)
        .sum();
    let u1 = r1 - n1 * (n1 + 1.0) / 2.0;
    let nt = n1 + n2;
    let var = n1 * n2 / 12.0 * ((nt + 1.0) - ties / (nt * (nt - 1.0)));
    if var <= 0.0 {
        return Some(1.0);
    }
    let z = (u1 - n1 * n2 / 2.0).abs() / var.sqrt();
    Some((2.0 * (1.0 - normal_cdf(z))).clamp(0.0, 1.0))
}

/// Standard normal CDF (Abramowitz–Stegun 7.1.26 erf, |error| < 1.5e-7).
pub fn normal_cdf(z: f64) -> f64 {
    let x = z.abs() / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let y = 1.0
        - (((((1.061_405_429 * t - 1.453_152_027) * t) + 1.421_413_741) * t - 0.284_496_736) * t
            + 0.254_829_592)
            * t
            * (-x * x).exp();
    if z >= 0.0 {
        0.5 * (1.0 + y)
    } else {
        0.5 * (1.0 - y)
    }
}

/// Ratio of two Poisson counts per unit time, `(c/tc) / (b/tb) − 1`, with the log-normal
/// interval (se of the log ratio = √(1/b + 1/c)).
pub fn rate_change(b: u64, tb: f64, c: u64, tc: f64) -> Option<Interval> {
    if b == 0 || c == 0 || tb <= 0.0 || tc <= 0.0 {
        return None;
    }
    let ratio = (c as f64 / tc) / (b as f64 / tb);
    let se = (1.0 / b as f64 + 1.0 / c as f64).sqrt();
    Some(Interval {
        estimate: ratio - 1.0,
        low: ratio * (-Z * se).exp() - 1.0,
        high: ratio * (Z * se).exp() - 1.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_distr::LogNormal;

    /// A histogram of `n` log-normal latencies around `median_ms`.
    fn hist(median_ms: f64, n: usize, seed: u64) -> Histogram<u64> {
        let mut rng = StdRng::seed_from_u64(seed);
        let d = LogNormal::new((median_ms * 1000.0).ln(), 0.25).unwrap();
        let mut h = Histogram::new(3).unwrap();
        for _ in 0..n {
            h.record(d.sample(&mut rng).max(1.0) as u64).unwrap();
        }
        h
    }

    #[test]
    fn a_30_percent_shift_is_detected_with_an_interval_that_excludes_zero() {
        let b = hist(20.0, 2000, 1);
        let c = hist(26.0, 2000, 2);
        for q in [0.5, 0.95] {
            let i = percentile_change(&b, &c, q, 0.0, 1, 1000, &mut rng_for(7, "x")).unwrap();
            assert!(i.significant() && i.low > 0.15, "{q}: {i:?}");
            assert!((i.estimate - 0.3).abs() < 0.1, "{q}: {i:?}");
        }
    }

    #[test]
    fn identical_distributions_are_not_significant() {
        let mut false_alarms = 0;
        for s in 0..20 {
            let b = hist(20.0, 1000, 100 + s);
            let c = hist(20.0, 1000, 200 + s);
            let i = percentile_change(&b, &c, 0.95, 0.0, 1, 1000, &mut rng_for(s, "p95")).unwrap();
            assert!(i.low < i.estimate && i.estimate < i.high, "{i:?}");
            if i.significant() {
                false_alarms += 1;
            }
        }
        // 95 % intervals: about one in twenty may exclude zero by chance.
        assert!(false_alarms <= 3, "{false_alarms} of 20");
    }

    #[test]
    fn the_same_seed_gives_the_same_interval() {
        let b = hist(20.0, 500, 1);
        let c = hist(21.0, 500, 2);
        let a = percentile_change(&b, &c, 0.99, 0.05, 3, 500, &mut rng_for(42, "p99"));
        let z = percentile_change(&b, &c, 0.99, 0.05, 3, 500, &mut rng_for(42, "p99"));
        assert_eq!(a, z);
    }

    #[test]
    fn between_run_spread_widens_the_interval() {
        let b = hist(20.0, 2000, 1);
        let c = hist(21.0, 2000, 2);
        let narrow = percentile_change(&b, &c, 0.5, 0.0, 1, 1000, &mut rng_for(1, "a")).unwrap();
        let wide = percentile_change(&b, &c, 0.5, 0.10, 3, 1000, &mut rng_for(1, "a")).unwrap();
        assert!(narrow.significant(), "{narrow:?}");
        assert!(!wide.significant(), "{wide:?}");
        assert!(wide.high - wide.low > 3.0 * (narrow.high - narrow.low));
    }

    #[test]
    fn a_one_second_hiccup_is_not_a_shift_but_a_steady_shift_is() {
        let secs = |median: f64, seed: u64| -> Vec<Histogram<u64>> {
            (0..10).map(|i| hist(median, 100, seed + i)).collect()
        };
        let base = secs(20.0, 0);
        let mut hiccup = secs(20.0, 100);
        hiccup[4] = hist(60.0, 100, 999);
        let all = |v: &[Histogram<u64>]| {
            let mut h = Histogram::new(2).unwrap();
            for x in v {
                h.add(x).unwrap();
            }
            h
        };
        // Request by request, the hiccup looks like a significant p95 shift…
        let iid = percentile_change(
            &all(&base),
            &all(&hiccup),
            0.95,
            0.0,
            1,
            1000,
            &mut rng_for(1, "i"),
        )
        .unwrap();
        assert!(iid.significant() && iid.low > 0.1, "{iid:?}");
        // …second by second it is one bad second out of ten.
        let q = [0.5, 0.95];
        let blk = block_percentile_change(
            &blocks(&base, 40),
            &blocks(&hiccup, 40),
            &q,
            &[0.0, 0.0],
            1000,
            &mut rng_for(1, "b"),
        )
        .unwrap();
        assert!(blk[1].0 <= 0.0, "p95 interval should include zero: {blk:?}");
        let steady = secs(26.0, 200);
        let blk = block_percentile_change(
            &blocks(&base, 40),
            &blocks(&steady, 40),
            &q,
            &[0.0, 0.0],
            1000,
            &mut rng_for(1, "b"),
        )
        .unwrap();
        assert!(blk[0].0 > 0.15 && blk[1].0 > 0.1, "{blk:?}");
        assert_eq!(blocks(&base, 4).len(), 4);
        assert_eq!(blocks(&base, 4).iter().map(|h| h.len()).sum::<u64>(), 1000);
    }

    #[test]
    fn error_rate_difference_uses_wilson_intervals() {
        // 0 of 1000 against 1 of 1000: not significant.
        assert!(!proportion_difference(0, 1000, 1, 1000).significant());
        // 0.1 % against 5 %: significant.
        let d = proportion_difference(1, 1000, 50, 1000);
        assert!(d.significant() && d.low > 0.02, "{d:?}");
        // Newcombe's published example (Newcombe 1998, table II, 56/70 vs 48/80): 0.0524–0.3339.
        let e = proportion_difference(48, 80, 56, 70);
        assert!(
            (e.low - 0.0524).abs() < 1e-3 && (e.high - 0.3339).abs() < 1e-3,
            "{e:?}"
        );
    }

    #[test]
    fn mann_whitney_and_mean_bootstrap_see_a_shift_in_per_second_counts() {
        let b: Vec<f64> = (0..30).map(|i| 100.0 + f64::from(i % 5)).collect();
        let same: Vec<f64> = (0..30).map(|i| 100.0 + f64::from((i + 2) % 5)).collect();
        let low: Vec<f64> = (0..30).map(|i| 80.0 + f64::from(i % 5)).collect();
        assert!(mann_whitney_p(&b, &same).unwrap() > 0.5);
        assert!(mann_whitney_p(&b, &low).unwrap() < 1e-6);
        let i = mean_change(&b, &low, 1000, &mut rng_for(3, "t")).unwrap();
        assert!(i.high < -0.15, "{i:?}");
        let j = mean_change(&b, &same, 1000, &mut rng_for(3, "t")).unwrap();
        assert!(!j.significant(), "{j:?}");
    }

    #[test]
    fn the_cdf_reads_what_the_histogram_reads() {
        let h = hist(20.0, 3000, 5);
        let c = Cdf::new(&h);
        for q in [0.001, 0.1, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0] {
            assert_eq!(c.at(q), at(&h, q), "{q}");
        }
    }

    #[test]
    fn normal_cdf_and_rate_change() {
        assert!((normal_cdf(1.959_964) - 0.975).abs() < 1e-6);
        assert!((normal_cdf(0.0) - 0.5).abs() < 1e-7);
        let r = rate_change(1000, 10.0, 1000, 10.0).unwrap();
        assert!(!r.significant() && r.estimate.abs() < 1e-12);
        assert!(rate_change(1000, 10.0, 800, 10.0).unwrap().high < 0.0);
    }
}

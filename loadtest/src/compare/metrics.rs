//! The compared metrics of one scope: p50, p95, p99 latency, error rate and throughput, each with
//! its change, its 95 % interval (methods in [`super::stats`]) and a verdict.

use hdrhistogram::Histogram;

use super::scopes::{decode, planned_seconds, throughput_windows, Scope};
use super::stats::{self, Interval};
use super::{pct, Methods, Metric, MetricVerdict, Options, BLOCK_RESAMPLES, MAX_BLOCKS};
use crate::engine::record::{add_hist, new_hist};
use crate::report::{InputError, Loaded};

const PERCENTILES: [(&str, f64); 3] = [("p50_ms", 0.50), ("p95_ms", 0.95), ("p99_ms", 0.99)];

/// How much wider the block bootstrap made each overall percentile's interval, below and above
/// the estimate: per-request intervals (the report has no per-request seconds) are widened by
/// the same factors. Starts at 1 (no widening) until the overall scope is judged.
pub(super) type Inflation = [(f64, f64); 3];

/// What every scope's metrics are judged with, read once from the inputs.
pub(super) struct Context<'a> {
    opts: &'a Options,
    /// Planned seconds of all baseline runs, and of the current run.
    base_secs: f64,
    cur_secs: f64,
    /// Blocks of whole seconds of the overall latency, for the block bootstrap.
    base_blocks: Vec<Histogram<u64>>,
    cur_blocks: Vec<Histogram<u64>>,
    /// Requests per second over the holds.
    base_windows: Vec<f64>,
    cur_windows: Vec<f64>,
    /// The baseline's own spread of each percentile (relative): how far its halves, or its
    /// runs, differ from each other with nothing changed.
    noise: [f64; 3],
}

impl<'a> Context<'a> {
    pub fn new(
        baseline: &[Loaded],
        current: &Loaded,
        opts: &'a Options,
    ) -> Result<Self, InputError> {
        let mut base_blocks = Vec::new();
        let mut halves = Vec::new();
        for b in baseline {
            let secs = run_seconds(b)?;
            halves.push(split_halves(&secs));
            base_blocks.extend(stats::blocks(&secs, MAX_BLOCKS));
        }
        let totals: Vec<Histogram<u64>> = baseline
            .iter()
            .map(|b| decode(&b.report.latency.histogram, &b.path, "latency"))
            .collect::<Result<_, _>>()?;
        Ok(Context {
            opts,
            base_secs: baseline.iter().map(|b| planned_seconds(&b.report)).sum(),
            cur_secs: planned_seconds(&current.report),
            base_blocks,
            cur_blocks: stats::blocks(&run_seconds(current)?, MAX_BLOCKS),
            base_windows: baseline
                .iter()
                .flat_map(|b| throughput_windows(&b.report))
                .collect(),
            cur_windows: throughput_windows(&current.report),
            noise: PERCENTILES.map(|(_, q)| baseline_noise(&halves, &totals, q)),
        })
    }
}

/// A run's per-second histograms of the overall latency.
fn run_seconds(l: &Loaded) -> Result<Vec<Histogram<u64>>, InputError> {
    l.report
        .timeline
        .iter()
        .map(|t| decode(&t.histogram, &l.path, &format!("timeline[{}]", t.second)))
        .collect()
}

/// A run's first and second half (by seconds that saw requests), each pooled.
fn split_halves(secs: &[Histogram<u64>]) -> (Histogram<u64>, Histogram<u64>) {
    let full: Vec<&Histogram<u64>> = secs.iter().filter(|h| !h.is_empty()).collect();
    let mid = full.len() / 2;
    (pool(&full[..mid]), pool(&full[mid..]))
}

/// How much the baseline disagrees with itself at quantile `q`, relative: the mean over its runs
/// of |second half / first half − 1|, and with several runs at least √2 × their relative spread
/// (two draws of the same run differ by about that). A change smaller than this cannot be told
/// from the baseline's own noise. Halves with too few requests above `q` count for nothing.
pub(super) fn baseline_noise(
    halves: &[(Histogram<u64>, Histogram<u64>)],
    totals: &[Histogram<u64>],
    q: f64,
) -> f64 {
    let diffs: Vec<f64> = halves
        .iter()
        .filter(|(a, b)| stats::enough_tail(a.len().min(b.len()), q))
        .map(|(a, b)| (ms_at(b, q) / ms_at(a, q).max(1e-6) - 1.0).abs())
        .collect();
    let halves_noise = if diffs.is_empty() {
        0.0
    } else {
        diffs.iter().sum::<f64>() / diffs.len() as f64
    };
    let refs: Vec<&Histogram<u64>> = totals.iter().collect();
    let runs = per_run_values(&refs, q);
    halves_noise.max(std::f64::consts::SQRT_2 * stats::relative_spread(&runs))
}

/// Adds histograms that may have different precision (per-second ones have 2 digits).
fn pool(hists: &[&Histogram<u64>]) -> Histogram<u64> {
    let mut h = new_hist(3);
    for x in hists {
        add_hist(&mut h, x);
    }
    h
}

/// Every metric of one scope, in report order. The overall scope must come first: it sets the
/// `inflation` the request scopes are widened by.
pub(super) fn scope_metrics(sc: &Scope, ctx: &Context, inflation: &mut Inflation) -> Vec<Metric> {
    let mut metrics = latency_metrics(sc, ctx, inflation);
    metrics.push(error_rate_metric(sc, ctx.opts.tolerance));
    metrics.push(throughput_metric(sc, ctx));
    metrics
}

fn ms_at(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

/// Each baseline run's value of quantile `q` (empty runs left out).
fn per_run_values(hists: &[&Histogram<u64>], q: f64) -> Vec<f64> {
    hists
        .iter()
        .filter(|h| !h.is_empty())
        .map(|h| ms_at(h, q))
        .collect()
}

/// The overall scope's block-bootstrap intervals, one per percentile, with the between-run
/// spread of each baseline percentile added (zero for a single baseline run).
fn block_intervals(hists: &[&Histogram<u64>], ctx: &Context) -> Option<Vec<(f64, f64)>> {
    let qs: Vec<f64> = PERCENTILES.iter().map(|p| p.1).collect();
    let sigma: Vec<f64> = qs
        .iter()
        .map(|q| {
            let per_run = per_run_values(hists, *q);
            if per_run.len() >= 2 {
                stats::relative_spread(&per_run) * (1.0 + 1.0 / per_run.len() as f64).sqrt()
            } else {
                0.0
            }
        })
        .collect();
    stats::block_percentile_change(
        &ctx.base_blocks,
        &ctx.cur_blocks,
        &qs,
        &sigma,
        ctx.opts.resamples.min(BLOCK_RESAMPLES),
        &mut stats::rng_for(ctx.opts.seed, "overall.blocks"),
    )
}

/// Overall: the union of the request-level and the block (whole-second) intervals, which sets
/// `inflation`; per request: widened by what the blocks did to the overall one. Widening is done
/// on the log of the ratio (current/baseline), so a widened interval stays above −100 %: a
/// latency cannot fall below zero, however noisy.
fn widen(
    i: Interval,
    block: Option<(f64, f64)>,
    overall: bool,
    inflation: &mut (f64, f64),
) -> Interval {
    let ln = |x: f64| (1.0 + x).max(1e-9).ln();
    let (e, lo, hi) = (ln(i.estimate), ln(i.low), ln(i.high));
    let below = (e - lo).max(1e-9);
    let above = (hi - e).max(1e-9);
    match (block, overall) {
        (Some((blo, bhi)), true) => {
            let w = Interval {
                low: i.low.min(blo),
                high: i.high.max(bhi),
                ..i
            };
            *inflation = (
                ((e - ln(w.low)) / below).max(1.0),
                ((ln(w.high) - e) / above).max(1.0),
            );
            w
        }
        (_, false) => Interval {
            low: (e - inflation.0 * below).exp() - 1.0,
            high: (e + inflation.1 * above).exp() - 1.0,
            ..i
        },
        _ => i,
    }
}

/// What a latency change must clear to count: the practical floor, max(tolerance, floor_ms)
/// as a share of the baseline value, and the baseline's own noise.
#[derive(Debug, Clone, Copy)]
pub(super) struct Floor {
    /// Relative: max(tolerance, floor_ms / baseline).
    pub relative: f64,
    /// The baseline's own spread (relative), see [`baseline_noise`].
    pub noise: f64,
}

impl Floor {
    pub fn latency(opts: &Options, baseline_ms: Option<f64>, noise: f64) -> Floor {
        let abs = baseline_ms
            .filter(|b| *b > 0.0)
            .map_or(0.0, |b| opts.floor_ms / b);
        Floor {
            relative: opts.tolerance.max(abs),
            noise,
        }
    }
}

fn latency_metrics(sc: &Scope, ctx: &Context, inflation: &mut Inflation) -> Vec<Metric> {
    let opts = ctx.opts;
    let hists: Vec<&Histogram<u64>> = sc.baseline.iter().map(|s| &s.hist).collect();
    let pooled = pool(&hists);
    let cur = &sc.current.hist;
    let overall = sc.request.is_none();
    let block = if overall {
        block_intervals(&hists, ctx)
    } else {
        None
    };
    let mut metrics = Vec::new();
    for (qi, (name, q)) in PERCENTILES.into_iter().enumerate() {
        let per_run = per_run_values(&hists, q);
        let spread = stats::relative_spread(&per_run);
        let mut rng = stats::rng_for(opts.seed, &format!("{}.{name}", sc.id));
        let fewest = pooled.len().min(cur.len());
        let tail_ok = stats::enough_tail(fewest, q);
        let change = tail_ok
            .then(|| {
                stats::percentile_change(
                    &pooled,
                    cur,
                    q,
                    spread,
                    per_run.len(),
                    opts.resamples,
                    &mut rng,
                )
            })
            .flatten()
            .map(|i| {
                let b = block.as_ref().map(|b| b[qi]);
                widen(i, b, overall, &mut inflation[qi])
            });
        let val = |h: &Histogram<u64>| (!h.is_empty()).then(|| ms_at(h, q));
        let floor = Floor::latency(opts, val(&pooled), ctx.noise[qi]);
        let mut m = metric(
            sc,
            name,
            "ms",
            true,
            (val(&pooled), val(cur)),
            "relative",
            change,
            "bootstrap (HDR histogram)",
            judge_latency(change, floor),
        );
        if m.verdict == MetricVerdict::Inconclusive {
            m.detail = Some(format!(
                "inconclusive: the baseline's own {name} varies by {} (its halves or runs), more than the floor of {} that a change must clear, and the change's interval does not clear it; use a longer or steadier baseline",
                pct(floor.noise),
                pct(floor.relative)
            ));
        }
        if !tail_ok && fewest > 0 {
            m.detail = Some(format!(
                "not judged: {fewest} requests leave fewer than {} above the {name} on one side; run longer or at a higher rate",
                stats::MIN_TAIL
            ));
        }
        metrics.push(m);
    }
    metrics
}

fn error_rate_metric(sc: &Scope, tolerance: f64) -> Metric {
    let (bn, be) = sc
        .baseline
        .iter()
        .fold((0, 0), |(n, e), x| (n + x.requests, e + x.errors));
    let (cn, ce) = (sc.current.requests, sc.current.errors);
    let rate = |e: u64, n: u64| (n > 0).then(|| e as f64 / n as f64);
    let change = (bn > 0 && cn > 0).then(|| stats::proportion_difference(be, bn, ce, cn));
    let base_rate = rate(be, bn).unwrap_or(0.0);
    metric(
        sc,
        "error_rate",
        "fraction",
        true,
        (rate(be, bn), rate(ce, cn)),
        "absolute",
        change,
        "Newcombe–Wilson difference",
        judge(change, true, |d| d.abs() > tolerance * base_rate),
    )
}

/// Per request: a Poisson rate ratio over the planned seconds; overall: a bootstrap of the
/// per-second means over the holds, with a Mann–Whitney p-value beside it.
fn throughput_metric(sc: &Scope, ctx: &Context) -> Metric {
    let tol = ctx.opts.tolerance;
    if sc.request.is_some() {
        let bn: u64 = sc.baseline.iter().map(|x| x.requests).sum();
        let cn = sc.current.requests;
        let change = stats::rate_change(bn, ctx.base_secs, cn, ctx.cur_secs);
        return metric(
            sc,
            "throughput_rps",
            "rps",
            false,
            (
                Some(bn as f64 / ctx.base_secs),
                Some(cn as f64 / ctx.cur_secs),
            ),
            "relative",
            change,
            "Poisson rate ratio",
            judge(change, false, |e| e.abs() > tol),
        );
    }
    let (bw, cw) = (&ctx.base_windows, &ctx.cur_windows);
    let mut rng = stats::rng_for(ctx.opts.seed, "overall.throughput_rps");
    let change = stats::mean_change(bw, cw, ctx.opts.resamples, &mut rng);
    let mean = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
    let mut m = metric(
        sc,
        "throughput_rps",
        "rps",
        false,
        (mean(bw), mean(cw)),
        "relative",
        change,
        "bootstrap of per-second means + Mann–Whitney",
        judge(change, false, |e| e.abs() > tol),
    );
    m.p_value = stats::mann_whitney_p(bw, cw);
    m
}

/// A latency percentile's verdict: as [`judge`] with the practical floor; and when the
/// baseline's own noise is wider than the floor, a change beyond the floor counts only when its
/// whole interval also lies beyond that noise — otherwise it is inconclusive, not a regression.
fn judge_latency(change: Option<Interval>, floor: Floor) -> (bool, MetricVerdict) {
    let (sig, verdict) = judge(change, true, |e| e.abs() > floor.relative);
    let Some(i) = change else {
        return (sig, verdict);
    };
    let nearest_zero = if i.estimate > 0.0 { i.low } else { -i.high };
    let clear_of_noise = nearest_zero > floor.noise;
    match verdict {
        MetricVerdict::Regression | MetricVerdict::Improvement
            if floor.noise > floor.relative && !clear_of_noise =>
        {
            (sig, MetricVerdict::Inconclusive)
        }
        v => (sig, v),
    }
}

/// Significant, and the verdict: a significant change beyond the tolerance (`exceeds`) is a
/// regression when it is worse, an improvement otherwise.
fn judge(
    change: Option<Interval>,
    higher_is_worse: bool,
    exceeds: impl Fn(f64) -> bool,
) -> (bool, MetricVerdict) {
    let Some(i) = change else {
        return (false, MetricVerdict::NotJudged);
    };
    let sig = i.significant();
    let worse = if higher_is_worse {
        i.estimate > 0.0
    } else {
        i.estimate < 0.0
    };
    let verdict = match (sig, exceeds(i.estimate)) {
        (false, _) => MetricVerdict::NoChange,
        (true, false) => MetricVerdict::WithinTolerance,
        (true, true) if worse => MetricVerdict::Regression,
        (true, true) => MetricVerdict::Improvement,
    };
    (sig, verdict)
}

#[allow(clippy::too_many_arguments)]
fn metric(
    sc: &Scope,
    name: &str,
    unit: &str,
    higher_is_worse: bool,
    (baseline, current): (Option<f64>, Option<f64>),
    change_kind: &str,
    change: Option<Interval>,
    method: &str,
    (significant, verdict): (bool, MetricVerdict),
) -> Metric {
    Metric {
        id: format!("{}.{name}", sc.id),
        scope: if sc.request.is_some() {
            "request"
        } else {
            "overall"
        }
        .into(),
        request: sc.request.clone(),
        metric: name.into(),
        unit: unit.into(),
        higher_is_worse,
        baseline,
        current,
        change_kind: change_kind.into(),
        change: change.map(|i| i.estimate),
        interval: change.map(|i| [i.low, i.high]),
        significant,
        p_value: None,
        method: method.into(),
        verdict,
        detail: None,
    }
}

/// How every interval was made, in words.
pub(super) fn methods(opts: &Options, baseline_runs: usize) -> Methods {
    Methods {
        latency: format!(
            "bootstrap from the HDR histograms: {} paired resamples of each whole run (a percentile of n values resampled from a histogram is the histogram read at a Beta(k, n+1−k) quantile, k = ⌈q·n⌉), seed {}; the interval is the 2.5–97.5 % range of current/baseline − 1; a percentile is judged only when each side has at least {} requests above it (n·(1−q) ≥ {}), since the bootstrap of an extreme order statistic is too narrow. Latencies cluster in time (a noisy neighbour slows a stretch of seconds), so overall percentiles are also block-bootstrapped by whole seconds (the run's timeline histograms, at most {} blocks, {} resamples) and the interval is the union of both; per-request intervals are widened on each side by the factor the blocks widened the overall one",
            opts.resamples, opts.seed, stats::MIN_TAIL, stats::MIN_TAIL, MAX_BLOCKS, opts.resamples.min(BLOCK_RESAMPLES)
        ),
        error_rate: "difference of proportions (current − baseline) with Newcombe's hybrid Wilson-score interval; it is larger than the tolerance when it exceeds tolerance × the baseline rate".into(),
        throughput: format!(
            "requests per second over the whole seconds of the hold stages: bootstrap of the mean ({} resamples of the seconds) for the interval of current/baseline − 1, with a Mann–Whitney rank test p-value beside it; per request, a Poisson rate ratio (log interval, se = √(1/a + 1/b))",
            opts.resamples
        ),
        baseline_noise: if baseline_runs >= 2 {
            format!("rolling baseline of {baseline_runs} runs: histograms and counts pooled; each latency resample also multiplied by a log-normal factor with the between-run relative spread of that percentile × √(1 + 1/{baseline_runs})")
        } else {
            "single baseline run: intervals hold sampling noise only; run-to-run noise (machine, neighbours) is not known — pass a folder of several baseline runs to account for it".into()
        },
        rule: format!(
            "a metric regresses only when its change is worse by more than the practical floor and its 95 % interval excludes zero; an improvement is the same the other way; the floor is the tolerance ({}), and for latency percentiles at least {} ms of the baseline value too; when the baseline's own spread of a percentile (|second half / first half − 1| of its runs, or √2 × the between-run spread) is wider than that floor, a change counts only if its whole interval also lies beyond that spread, else the metric is inconclusive; intervals of ratios are widened on the log scale, so they stay above −100 %; an SLO that passed in every baseline run and fails now is a regression",
            pct(opts.tolerance),
            crate::scenario::fmt_num(opts.floor_ms)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iv(estimate: f64, low: f64, high: f64) -> Interval {
        Interval {
            estimate,
            low,
            high,
        }
    }

    #[test]
    fn widened_ratio_intervals_never_reach_minus_100_percent() {
        // The overall interval [−55 %, −45 %] around −50 % widened by the blocks to −80 %:
        // about 8.7× below on the log scale (6× linearly).
        let mut inflation = (1.0, 1.0);
        let w = widen(
            iv(-0.5, -0.55, -0.45),
            Some((-0.8, -0.3)),
            true,
            &mut inflation,
        );
        assert_eq!((w.low, w.high), (-0.8, -0.3));
        assert!(inflation.0 > 2.0, "{inflation:?}");
        // A rare request's own [−90 %, −10 %]: widened linearly by the same factor it would
        // reach −0.5 − 6 × 0.4 = −290 %, an impossible latency.
        let r = widen(iv(-0.5, -0.9, -0.1), None, false, &mut inflation);
        assert!(r.low > -1.0 && r.low < -0.9, "{r:?}");
        assert!(r.high > -0.1, "{r:?}");
        // Huge inflation still stays above −100 %.
        let mut big = (50.0, 50.0);
        let r = widen(iv(-0.9, -0.95, -0.8), None, false, &mut big);
        assert!(r.low > -1.0, "{r:?}");
    }

    fn opts(tolerance: f64) -> Options {
        Options {
            tolerance,
            ..Options::default()
        }
    }

    #[test]
    fn the_floor_is_max_of_tolerance_and_one_millisecond() {
        // At 1.5 ms, 1 ms is 67 %: +11 % (0.17 ms) is within the floor even when significant.
        let f = Floor::latency(&opts(0.05), Some(1.5), 0.0);
        assert!((f.relative - 1.0 / 1.5).abs() < 1e-12);
        let (sig, v) = judge_latency(Some(iv(0.11, 0.08, 0.14)), f);
        assert!(sig);
        assert_eq!(v, MetricVerdict::WithinTolerance);
        // At 40 ms, 1 ms is 2.5 %: the 5 % tolerance is the floor, and +11 % regresses.
        let f = Floor::latency(&opts(0.05), Some(40.0), 0.0);
        assert_eq!(f.relative, 0.05);
        assert_eq!(
            judge_latency(Some(iv(0.11, 0.08, 0.14)), f).1,
            MetricVerdict::Regression
        );
    }

    #[test]
    fn a_noisy_baseline_makes_a_change_within_its_noise_inconclusive() {
        // The baseline's halves differ by 30 %, the floor is 10 %.
        let f = Floor {
            relative: 0.1,
            noise: 0.3,
        };
        let inconclusive = judge_latency(Some(iv(0.2, 0.12, 0.28)), f).1;
        assert_eq!(inconclusive, MetricVerdict::Inconclusive);
        // Clear of the noise: a regression; the other way, an improvement.
        assert_eq!(
            judge_latency(Some(iv(0.8, 0.5, 1.1)), f).1,
            MetricVerdict::Regression
        );
        assert_eq!(
            judge_latency(Some(iv(-0.6, -0.7, -0.45)), f).1,
            MetricVerdict::Improvement
        );
        // Not significant stays no change; the same change with a quiet baseline regresses.
        assert_eq!(
            judge_latency(Some(iv(0.2, -0.05, 0.4)), f).1,
            MetricVerdict::NoChange
        );
        let quiet = Floor { noise: 0.05, ..f };
        assert_eq!(
            judge_latency(Some(iv(0.2, 0.12, 0.28)), quiet).1,
            MetricVerdict::Regression
        );
    }

    #[test]
    fn baseline_noise_comes_from_its_halves_and_its_runs() {
        let hist = |ms: u64, n: u64| {
            let mut h = new_hist(3);
            h.record_n(ms * 1000, n).unwrap();
            h
        };
        // One run whose second half is 40 % slower.
        let halves = vec![(hist(10, 500), hist(14, 500))];
        let totals = vec![hist(12, 1000)];
        let n = baseline_noise(&halves, &totals, 0.5);
        assert!((n - 0.4).abs() < 0.01, "{n}");
        // Steady halves, but two runs 10 and 14 ms apart: √2 × their relative spread.
        let halves = vec![
            (hist(10, 500), hist(10, 500)),
            (hist(14, 500), hist(14, 500)),
        ];
        let totals = vec![hist(10, 1000), hist(14, 1000)];
        let n = baseline_noise(&halves, &totals, 0.5);
        let spread = stats::relative_spread(&[10.0, 14.0]);
        assert!((n - std::f64::consts::SQRT_2 * spread).abs() < 0.01, "{n}");
        // Halves too small for the p99 count for nothing.
        let halves = vec![(hist(10, 100), hist(20, 100))];
        assert_eq!(baseline_noise(&halves, &[hist(15, 200)], 0.99), 0.0);
    }
}

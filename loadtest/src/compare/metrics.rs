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
}

impl<'a> Context<'a> {
    pub fn new(
        baseline: &[Loaded],
        current: &Loaded,
        opts: &'a Options,
    ) -> Result<Self, InputError> {
        let mut base_blocks = Vec::new();
        for b in baseline {
            base_blocks.extend(run_blocks(b)?);
        }
        Ok(Context {
            opts,
            base_secs: baseline.iter().map(|b| planned_seconds(&b.report)).sum(),
            cur_secs: planned_seconds(&current.report),
            base_blocks,
            cur_blocks: run_blocks(current)?,
            base_windows: baseline
                .iter()
                .flat_map(|b| throughput_windows(&b.report))
                .collect(),
            cur_windows: throughput_windows(&current.report),
        })
    }
}

/// A run's per-second histograms of the overall latency, cut into blocks.
fn run_blocks(l: &Loaded) -> Result<Vec<Histogram<u64>>, InputError> {
    let secs = l
        .report
        .timeline
        .iter()
        .map(|t| decode(&t.histogram, &l.path, &format!("timeline[{}]", t.second)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(stats::blocks(&secs, MAX_BLOCKS))
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
/// `inflation`; per request: widened by what the blocks did to the overall one.
fn widen(
    i: Interval,
    block: Option<(f64, f64)>,
    overall: bool,
    inflation: &mut (f64, f64),
) -> Interval {
    let below = (i.estimate - i.low).max(1e-9);
    let above = (i.high - i.estimate).max(1e-9);
    match (block, overall) {
        (Some((lo, hi)), true) => {
            let w = Interval {
                low: i.low.min(lo),
                high: i.high.max(hi),
                ..i
            };
            *inflation = (
                ((w.estimate - w.low) / below).max(1.0),
                ((w.high - w.estimate) / above).max(1.0),
            );
            w
        }
        (_, false) => Interval {
            low: i.estimate - inflation.0 * below,
            high: i.estimate + inflation.1 * above,
            ..i
        },
        _ => i,
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
        let mut m = metric(
            sc,
            name,
            "ms",
            true,
            (val(&pooled), val(cur)),
            "relative",
            change,
            "bootstrap (HDR histogram)",
            judge(change, true, |e| e.abs() > opts.tolerance),
        );
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
            "a metric regresses only when its change is worse by more than the tolerance ({}) and its 95 % interval excludes zero; an improvement is the same the other way; an SLO that passed in every baseline run and fails now is a regression",
            pct(opts.tolerance)
        ),
    }
}

//! `loadtest compare BASELINE CURRENT`: did a run regress against a baseline, with statistics.
//!
//! For each request and overall: p50, p95, p99 latency, error rate and throughput, each with the
//! change, its 95 % interval and a verdict. A metric regresses only when the change is larger
//! than the tolerance **and** its interval excludes zero; an improvement is judged the same way.
//! SLOs that passed in the baseline and fail now are listed first and count as a regression.
//! The methods are in [`stats`] and written into every report (`method` in `compare.json`).

pub mod render;
pub mod stats;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::cli::CompareArgs;
use crate::engine::record::{decode_hist, new_hist};
use crate::exit;
use crate::report::{self, Report, ToolInfo};
use stats::Interval;

/// The shape version of `compare.json`.
pub const SCHEMA_VERSION: u32 = 1;
pub const DEFAULT_RESAMPLES: usize = 2000;
pub const DEFAULT_SEED: u64 = 20_261_122;
/// A run is cut into at most this many blocks of consecutive seconds for the block bootstrap.
pub const MAX_BLOCKS: usize = 30;
/// Block-bootstrap resamples (each merges every block of both sides, so fewer than per-request).
pub const BLOCK_RESAMPLES: usize = 1000;

/// A report that cannot be compared (or merged): which file, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{file}: {message}")]
pub struct InputError {
    pub file: String,
    pub message: String,
}

fn input_error(file: &Path, message: impl Into<String>) -> InputError {
    InputError {
        file: file.display().to_string(),
        message: message.into(),
    }
}

/// A report and where it came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub path: PathBuf,
    pub report: Report,
}

/// Reads one `report.json` (or the folder holding one), checking its `schema_version` first so
/// an incompatible file gets that message rather than a missing-field one.
pub fn load_report(path: &Path) -> Result<Loaded, InputError> {
    let file = if path.is_dir() {
        path.join("report.json")
    } else {
        path.to_path_buf()
    };
    let text = std::fs::read_to_string(&file)
        .map_err(|e| input_error(&file, format!("cannot read it ({e})")))?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        input_error(
            &file,
            format!("not JSON ({e}); give a report.json written by `loadtest run`"),
        )
    })?;
    match value.get("schema_version").and_then(|v| v.as_u64()) {
        Some(v) if v == u64::from(report::SCHEMA_VERSION) => {}
        Some(v) => {
            return Err(input_error(
                &file,
                format!(
                    "schema_version {v}, but this loadtest reads report.json schema_version {}; compare reports written by the same loadtest version",
                    report::SCHEMA_VERSION
                ),
            ))
        }
        None => {
            return Err(input_error(
                &file,
                "no schema_version: not a report.json written by `loadtest run`",
            ))
        }
    }
    let report: Report = serde_json::from_value(value)
        .map_err(|e| input_error(&file, format!("not a valid report.json ({e})")))?;
    Ok(Loaded { path: file, report })
}

/// A baseline: one report, a run folder (holding `report.json`), or a folder of several runs —
/// `*.json` reports beside each other and/or sub-folders holding a `report.json`.
pub fn load_baseline(path: &Path) -> Result<Vec<Loaded>, InputError> {
    if !path.is_dir() || path.join("report.json").is_file() {
        return Ok(vec![load_report(path)?]);
    }
    let entries = std::fs::read_dir(path)
        .map_err(|e| input_error(path, format!("cannot read the folder ({e})")))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter_map(|p| {
            if p.is_dir() {
                let r = p.join("report.json");
                r.is_file().then_some(r)
            } else {
                let name = p.file_name()?.to_str()?;
                (name.ends_with(".json") && name != "compare.json").then_some(p)
            }
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(input_error(
            path,
            "no report.json in this folder or its sub-folders; give a report.json or a folder of runs",
        ));
    }
    files.iter().map(|f| load_report(f)).collect()
}

/// `10%`, `10 %` or `0.1` → 0.1.
pub fn parse_tolerance(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let v = match t.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map(|v| v / 100.0),
        None => t.parse::<f64>(),
    }
    .map_err(|_| format!("--tolerance {s:?} is not a number; write it like 10% or 0.1"))?;
    if !v.is_finite() || !(0.0..=10.0).contains(&v) {
        return Err(format!("--tolerance {s:?} must be between 0% and 1000%"));
    }
    Ok(v)
}

/// How to compare.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Options {
    pub tolerance: f64,
    pub resamples: usize,
    pub seed: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            tolerance: 0.10,
            resamples: DEFAULT_RESAMPLES,
            seed: DEFAULT_SEED,
        }
    }
}

/// regression | no_regression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CompareVerdict {
    Regression,
    NoRegression,
}

/// What one metric did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricVerdict {
    /// Worse by more than the tolerance, and the interval excludes zero.
    Regression,
    /// Better by more than the tolerance, and the interval excludes zero.
    Improvement,
    /// A significant change, but within the tolerance.
    WithinTolerance,
    /// The interval includes zero.
    NoChange,
    /// Not enough data on one side.
    NotJudged,
}

impl MetricVerdict {
    pub fn as_str(self) -> &'static str {
        match self {
            MetricVerdict::Regression => "regression",
            MetricVerdict::Improvement => "improvement",
            MetricVerdict::WithinTolerance => "within tolerance",
            MetricVerdict::NoChange => "no change",
            MetricVerdict::NotJudged => "not judged",
        }
    }
}

/// One compared metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    /// `overall.p95_ms`, `request.home.error_rate`, `overall.throughput_rps`, …
    pub id: String,
    /// `overall` or `request`.
    pub scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    /// `p50_ms`, `p95_ms`, `p99_ms`, `error_rate`, `throughput_rps`.
    pub metric: String,
    /// `ms`, `fraction` or `rps`.
    pub unit: String,
    pub higher_is_worse: bool,
    pub baseline: Option<f64>,
    pub current: Option<f64>,
    /// `relative` (current / baseline − 1) or `absolute` (current − baseline, error rates).
    pub change_kind: String,
    pub change: Option<f64>,
    /// 95 % interval of `change`.
    pub interval: Option<[f64; 2]>,
    pub significant: bool,
    /// Mann–Whitney two-sided p-value on per-second values (overall throughput only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p_value: Option<f64>,
    /// Short name of the method behind the interval (see `method` at the top level).
    pub method: String,
    pub verdict: MetricVerdict,
    /// Why a metric was not judged, when it was not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// An SLO whose outcome differs from the baseline's, or that still fails.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SloChange {
    pub name: String,
    pub description: String,
    /// Passed in every baseline run.
    pub baseline_passed: bool,
    pub current_passed: bool,
    pub baseline_observed: Option<f64>,
    pub current_observed: Option<f64>,
    pub unit: String,
    /// `newly_failing`, `newly_passing` or `still_failing`.
    pub status: String,
}

/// One side of the comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Side {
    pub files: Vec<String>,
    pub runs: usize,
    pub requests: u64,
    pub started_at: Vec<String>,
    pub verdicts: Vec<String>,
}

/// How every interval was made, in words (also in compare.md and compare.html).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Methods {
    pub latency: String,
    pub error_rate: String,
    pub throughput: String,
    pub baseline_noise: String,
    pub rule: String,
}

/// Everything `compare.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub schema_version: u32,
    pub tool: ToolInfo,
    pub scenario: String,
    pub verdict: CompareVerdict,
    pub tolerance: f64,
    pub confidence: f64,
    pub resamples: usize,
    pub seed: u64,
    pub method: Methods,
    pub baseline: Side,
    pub current: Side,
    /// SLOs that passed before and fail now come first.
    pub slo_changes: Vec<SloChange>,
    /// Ids of the metrics that regressed.
    pub regressions: Vec<String>,
    pub improvements: Vec<String>,
    pub metrics: Vec<Metric>,
    pub warnings: Vec<String>,
}

impl Comparison {
    pub fn regressed(&self) -> bool {
        self.verdict == CompareVerdict::Regression
    }

    pub fn newly_failing(&self) -> impl Iterator<Item = &SloChange> {
        self.slo_changes
            .iter()
            .filter(|s| s.status == "newly_failing")
    }

    /// A one-line headline.
    pub fn headline(&self) -> String {
        let newly = self.newly_failing().count();
        match self.verdict {
            CompareVerdict::NoRegression => format!(
                "NO REGRESSION — {}: {} metrics against {} baseline run(s), tolerance {}; {} improved",
                self.scenario,
                self.metrics.len(),
                self.baseline.runs,
                pct(self.tolerance),
                self.improvements.len()
            ),
            CompareVerdict::Regression => format!(
                "REGRESSION — {}: {} metric(s) regressed{}; tolerance {}",
                self.scenario,
                self.regressions.len(),
                if newly > 0 {
                    format!(", {newly} SLO(s) passed before and fail now")
                } else {
                    String::new()
                },
                pct(self.tolerance)
            ),
        }
    }
}

pub(crate) fn pct(v: f64) -> String {
    let p = v * 100.0;
    if (p - p.round()).abs() < 1e-9 {
        format!("{p:.0}%")
    } else {
        format!("{p:.1}%")
    }
}

fn decode(h: &str, file: &Path, what: &str) -> Result<Histogram<u64>, InputError> {
    decode_hist(h).ok_or_else(|| {
        input_error(
            file,
            format!("{what}: the histogram is not HdrHistogram V2+deflate base64"),
        )
    })
}

/// Adds histograms that may have different precision (per-second ones have 2 digits).
fn pool(hists: &[Histogram<u64>]) -> Histogram<u64> {
    let mut h = new_hist(3);
    for x in hists {
        let _ = h.add(x);
    }
    h
}

/// Per-second request counts over the whole seconds of the hold stages (every whole second
/// but the last when there is no hold): ramps and the ragged tail would only add noise.
pub fn throughput_windows(r: &Report) -> Vec<f64> {
    let tl = &r.timeline;
    let mut out: Vec<f64> = Vec::new();
    for h in &r.load.holds {
        let a = h.start_s.ceil() as u64;
        let b = h.end_s.floor() as u64;
        out.extend(
            tl.iter()
                .filter(|i| i.second >= a && i.second < b)
                .map(|i| i.requests as f64),
        );
    }
    if out.len() < 2 {
        let n = tl.len().saturating_sub(1);
        out = tl[..n].iter().map(|i| i.requests as f64).collect();
    }
    out
}

struct Scope {
    id: String,
    request: Option<String>,
    /// Per baseline run, then current: latency histogram, requests, errors.
    baseline: Vec<(Histogram<u64>, u64, u64)>,
    current: (Histogram<u64>, u64, u64),
}

fn methods(opts: &Options, baseline_runs: usize) -> Methods {
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
    id: &str,
    request: &Option<String>,
    name: &str,
    unit: &str,
    higher_is_worse: bool,
    baseline: Option<f64>,
    current: Option<f64>,
    change_kind: &str,
    change: Option<Interval>,
    method: &str,
    verdict: (bool, MetricVerdict),
) -> Metric {
    Metric {
        id: format!("{id}.{name}"),
        scope: if request.is_some() {
            "request"
        } else {
            "overall"
        }
        .into(),
        request: request.clone(),
        metric: name.into(),
        unit: unit.into(),
        higher_is_worse,
        baseline,
        current,
        change_kind: change_kind.into(),
        change: change.map(|i| i.estimate),
        interval: change.map(|i| [i.low, i.high]),
        significant: verdict.0,
        p_value: None,
        method: method.into(),
        verdict: verdict.1,
        detail: None,
    }
}

/// Compares `current` against the baseline runs. Fails (exit 2) when a report is incompatible.
pub fn compare(
    baseline: &[Loaded],
    current: &Loaded,
    opts: &Options,
) -> Result<Comparison, InputError> {
    let Some(first) = baseline.first() else {
        return Err(input_error(
            &current.path,
            "no baseline report to compare with",
        ));
    };
    let scenario = current.report.scenario.name.clone();
    for b in baseline {
        if b.report.scenario.name != scenario {
            return Err(input_error(
                &b.path,
                format!(
                    "scenario {:?}, but {} ran scenario {:?}: compare runs of the same scenario",
                    b.report.scenario.name,
                    current.path.display(),
                    scenario
                ),
            ));
        }
    }
    let mut warnings = Vec::new();
    for l in baseline.iter().chain(std::iter::once(current)) {
        if l.report.verdict == report::Verdict::Invalid {
            warnings.push(format!(
                "{} is an invalid run ({}); its numbers may not mean what they seem",
                l.path.display(),
                l.report.invalid_reasons.join("; ")
            ));
        }
    }
    let cur_rate = current.report.load.hold_target_rps;
    let base_rate = first.report.load.hold_target_rps;
    if base_rate > 0.0 && ((cur_rate / base_rate) - 1.0).abs() > 0.01 {
        warnings.push(format!(
            "the runs asked for different rates ({base_rate:.1} rps in the baseline, {cur_rate:.1} rps now): throughput and latency changes may come from that"
        ));
    }

    // Scopes: overall, then every request name the current run has.
    let mut scopes = Vec::new();
    let overall_hist = |l: &Loaded| decode(&l.report.latency.histogram, &l.path, "latency");
    scopes.push(Scope {
        id: "overall".into(),
        request: None,
        baseline: baseline
            .iter()
            .map(|b| {
                Ok((
                    overall_hist(b)?,
                    b.report.totals.requests,
                    b.report.totals.errors,
                ))
            })
            .collect::<Result<_, InputError>>()?,
        current: (
            overall_hist(current)?,
            current.report.totals.requests,
            current.report.totals.errors,
        ),
    });
    for rq in &current.report.requests {
        let what = format!("requests.{}.latency", rq.name);
        let mut base = Vec::new();
        for b in baseline {
            match b.report.requests.iter().find(|x| x.name == rq.name) {
                Some(x) => base.push((
                    decode(&x.latency.histogram, &b.path, &what)?,
                    x.requests,
                    x.errors,
                )),
                None => warnings.push(format!(
                    "{} has no request {:?}; it is compared with the other baseline runs only",
                    b.path.display(),
                    rq.name
                )),
            }
        }
        if base.is_empty() {
            continue;
        }
        scopes.push(Scope {
            id: format!("request.{}", rq.name),
            request: Some(rq.name.clone()),
            baseline: base,
            current: (
                decode(&rq.latency.histogram, &current.path, &what)?,
                rq.requests,
                rq.errors,
            ),
        });
    }

    let tol = opts.tolerance;
    let k = baseline.len();
    // Per-request rates over the planned schedule (what the rate was asked over), not the
    // wall time, which includes waiting for the last answers.
    let planned = |r: &Report| {
        let s: f64 = r.scenario.stages.iter().map(|s| s.ramp_s + s.hold_s).sum();
        if s > 0.0 {
            s
        } else {
            r.duration_s.max(1e-9)
        }
    };
    let base_secs: f64 = baseline.iter().map(|b| planned(&b.report)).sum();
    let cur_secs = planned(&current.report);
    // Per-second histograms of the overall latency, for the block bootstrap.
    let run_blocks = |l: &Loaded| -> Result<Vec<Histogram<u64>>, InputError> {
        let secs = l
            .report
            .timeline
            .iter()
            .map(|t| decode(&t.histogram, &l.path, &format!("timeline[{}]", t.second)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(stats::blocks(&secs, MAX_BLOCKS))
    };
    let mut base_blocks = Vec::new();
    for b in baseline {
        base_blocks.extend(run_blocks(b)?);
    }
    let cur_blocks = run_blocks(current)?;
    // How much wider the block bootstrap made each overall percentile's interval: per-request
    // intervals (no per-request seconds in the report) are widened by the same factor.
    let mut inflation = [(1.0_f64, 1.0_f64); 3];

    let mut metrics = Vec::new();
    for sc in &scopes {
        let hists: Vec<Histogram<u64>> = sc.baseline.iter().map(|x| x.0.clone()).collect();
        let pooled = pool(&hists);
        let cur = &sc.current.0;
        let qs = [0.50, 0.95, 0.99];
        let block = if sc.request.is_none() {
            let sigma: Vec<f64> = qs
                .iter()
                .map(|q| {
                    let per_run: Vec<f64> = hists
                        .iter()
                        .filter(|h| !h.is_empty())
                        .map(|h| h.value_at_quantile(*q) as f64 / 1000.0)
                        .collect();
                    if per_run.len() >= 2 {
                        stats::relative_spread(&per_run) * (1.0 + 1.0 / per_run.len() as f64).sqrt()
                    } else {
                        0.0
                    }
                })
                .collect();
            stats::block_percentile_change(
                &base_blocks,
                &cur_blocks,
                &qs,
                &sigma,
                opts.resamples.min(BLOCK_RESAMPLES),
                &mut stats::rng_for(opts.seed, "overall.blocks"),
            )
        } else {
            None
        };
        for (qi, (name, q)) in [("p50_ms", 0.50), ("p95_ms", 0.95), ("p99_ms", 0.99)]
            .into_iter()
            .enumerate()
        {
            let per_run: Vec<f64> = hists
                .iter()
                .filter(|h| !h.is_empty())
                .map(|h| h.value_at_quantile(q) as f64 / 1000.0)
                .collect();
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
                .flatten();
            // Overall: the union of the request-level and the block (whole-second) intervals;
            // per request: widened by what the blocks did to the overall one.
            let change = change.map(|i| {
                let below = (i.estimate - i.low).max(1e-9);
                let above = (i.high - i.estimate).max(1e-9);
                match (&block, sc.request.is_none()) {
                    (Some(b), true) => {
                        let (lo, hi) = b[qi];
                        let w = Interval {
                            low: i.low.min(lo),
                            high: i.high.max(hi),
                            ..i
                        };
                        inflation[qi] = (
                            ((w.estimate - w.low) / below).max(1.0),
                            ((w.high - w.estimate) / above).max(1.0),
                        );
                        w
                    }
                    (_, false) => Interval {
                        low: i.estimate - inflation[qi].0 * below,
                        high: i.estimate + inflation[qi].1 * above,
                        ..i
                    },
                    _ => i,
                }
            });
            let val = |h: &Histogram<u64>| {
                (!h.is_empty()).then(|| h.value_at_quantile(q) as f64 / 1000.0)
            };
            let mut m = metric(
                &sc.id,
                &sc.request,
                name,
                "ms",
                true,
                val(&pooled),
                val(cur),
                "relative",
                change,
                "bootstrap (HDR histogram)",
                judge(change, true, |e| e.abs() > tol),
            );
            if !tail_ok && fewest > 0 {
                m.detail = Some(format!(
                    "not judged: {fewest} requests leave fewer than {} above the {name} on one side; run longer or at a higher rate",
                    stats::MIN_TAIL
                ));
            }
            metrics.push(m);
        }
        let (bn, be) = sc
            .baseline
            .iter()
            .fold((0, 0), |(n, e), x| (n + x.1, e + x.2));
        let (cn, ce) = (sc.current.1, sc.current.2);
        let rate = |e: u64, n: u64| (n > 0).then(|| e as f64 / n as f64);
        let change = (bn > 0 && cn > 0).then(|| stats::proportion_difference(be, bn, ce, cn));
        let base_rate = rate(be, bn).unwrap_or(0.0);
        metrics.push(metric(
            &sc.id,
            &sc.request,
            "error_rate",
            "fraction",
            true,
            rate(be, bn),
            rate(ce, cn),
            "absolute",
            change,
            "Newcombe–Wilson difference",
            judge(change, true, |d| d.abs() > tol * base_rate),
        ));
        if sc.request.is_some() {
            let change = stats::rate_change(bn, base_secs, cn, cur_secs);
            metrics.push(metric(
                &sc.id,
                &sc.request,
                "throughput_rps",
                "rps",
                false,
                Some(bn as f64 / base_secs),
                Some(cn as f64 / cur_secs),
                "relative",
                change,
                "Poisson rate ratio",
                judge(change, false, |e| e.abs() > tol),
            ));
        } else {
            let bw: Vec<f64> = baseline
                .iter()
                .flat_map(|b| throughput_windows(&b.report))
                .collect();
            let cw = throughput_windows(&current.report);
            let mut rng = stats::rng_for(opts.seed, "overall.throughput_rps");
            let change = stats::mean_change(&bw, &cw, opts.resamples, &mut rng);
            let mean = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
            let mut m = metric(
                &sc.id,
                &sc.request,
                "throughput_rps",
                "rps",
                false,
                mean(&bw),
                mean(&cw),
                "relative",
                change,
                "bootstrap of per-second means + Mann–Whitney",
                judge(change, false, |e| e.abs() > tol),
            );
            m.p_value = stats::mann_whitney_p(&bw, &cw);
            metrics.push(m);
        }
    }

    // SLOs: passed in every baseline run and failed now first, then fixed, then still failing.
    let mut slo_changes = Vec::new();
    for s in &current.report.slos {
        let base: Vec<_> = baseline
            .iter()
            .filter_map(|b| b.report.slos.iter().find(|x| x.name == s.name))
            .collect();
        if base.is_empty() {
            continue;
        }
        let baseline_passed = base.iter().all(|x| x.passed);
        let status = match (baseline_passed, s.passed) {
            (true, false) => "newly_failing",
            (false, true) => "newly_passing",
            (false, false) => "still_failing",
            (true, true) => continue,
        };
        let obs: Vec<f64> = base.iter().filter_map(|x| x.observed).collect();
        slo_changes.push(SloChange {
            name: s.name.clone(),
            description: s.description.clone(),
            baseline_passed,
            current_passed: s.passed,
            baseline_observed: (!obs.is_empty())
                .then(|| obs.iter().sum::<f64>() / obs.len() as f64),
            current_observed: s.observed,
            unit: s.unit.clone(),
            status: status.into(),
        });
    }
    let order = |s: &SloChange| match s.status.as_str() {
        "newly_failing" => 0,
        "newly_passing" => 1,
        _ => 2,
    };
    slo_changes.sort_by_key(order);

    let regressions: Vec<String> = metrics
        .iter()
        .filter(|m| m.verdict == MetricVerdict::Regression)
        .map(|m| m.id.clone())
        .collect();
    let improvements: Vec<String> = metrics
        .iter()
        .filter(|m| m.verdict == MetricVerdict::Improvement)
        .map(|m| m.id.clone())
        .collect();
    let newly = slo_changes.iter().any(|s| s.status == "newly_failing");
    let side = |ls: &[&Loaded]| Side {
        files: ls.iter().map(|l| l.path.display().to_string()).collect(),
        runs: ls.len(),
        requests: ls.iter().map(|l| l.report.totals.requests).sum(),
        started_at: ls.iter().map(|l| l.report.started_at.clone()).collect(),
        verdicts: ls
            .iter()
            .map(|l| l.report.verdict.as_str().to_string())
            .collect(),
    };
    let base_refs: Vec<&Loaded> = baseline.iter().collect();
    Ok(Comparison {
        schema_version: SCHEMA_VERSION,
        tool: ToolInfo {
            name: "loadtest".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        },
        scenario,
        verdict: if regressions.is_empty() && !newly {
            CompareVerdict::NoRegression
        } else {
            CompareVerdict::Regression
        },
        tolerance: tol,
        confidence: stats::CONFIDENCE,
        resamples: opts.resamples,
        seed: opts.seed,
        method: methods(opts, k),
        baseline: side(&base_refs),
        current: side(&[current]),
        slo_changes,
        regressions,
        improvements,
        metrics,
        warnings,
    })
}

/// Writes compare.json, compare.md and compare.html into `dir`.
pub fn write_all(
    c: &Comparison,
    baseline: &[Loaded],
    current: &Loaded,
    dir: &Path,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let json = serde_json::to_string_pretty(c).map_err(std::io::Error::other)?;
    std::fs::write(dir.join("compare.json"), json)?;
    std::fs::write(dir.join("compare.md"), render::markdown(c))?;
    let base: Vec<&Report> = baseline.iter().map(|l| &l.report).collect();
    std::fs::write(
        dir.join("compare.html"),
        render::html(c, &base, &current.report),
    )?;
    Ok(())
}

/// The terminal summary: headline, SLOs that now fail, regressions.
pub fn print_summary(c: &Comparison) {
    eprintln!("{}", c.headline());
    for s in c.newly_failing() {
        eprintln!(
            "  SLO passed before, fails now: {} (baseline {}, now {})",
            s.description,
            render::num(s.baseline_observed, &s.unit),
            render::num(s.current_observed, &s.unit)
        );
    }
    for m in c.metrics.iter().filter(|m| {
        matches!(
            m.verdict,
            MetricVerdict::Regression | MetricVerdict::Improvement
        )
    }) {
        eprintln!(
            "  {}: {} {} → {} ({}, 95% interval {})",
            m.verdict.as_str(),
            m.id,
            render::num(m.baseline, &m.unit),
            render::num(m.current, &m.unit),
            render::change(m),
            render::interval(m)
        );
    }
    for w in &c.warnings {
        eprintln!("  warning: {w}");
    }
}

/// `loadtest compare`.
pub fn compare_command(args: &CompareArgs) -> i32 {
    let bad = |e: &dyn std::fmt::Display| {
        eprintln!("loadtest: {e}");
        exit::BAD_INPUT
    };
    let tolerance = match parse_tolerance(&args.tolerance) {
        Ok(t) => t,
        Err(e) => return bad(&e),
    };
    if args.resamples == 0 || args.resamples > 1_000_000 {
        return bad(&"--resamples must be between 1 and 1000000");
    }
    let baseline = match load_baseline(&args.baseline) {
        Ok(b) => b,
        Err(e) => return bad(&e),
    };
    let current = match load_report(&args.current) {
        Ok(c) => c,
        Err(e) => return bad(&e),
    };
    let opts = Options {
        tolerance,
        resamples: args.resamples,
        seed: args.seed,
    };
    let c = match compare(&baseline, &current, &opts) {
        Ok(c) => c,
        Err(e) => return bad(&e),
    };
    let out = args.out.clone().unwrap_or_else(|| {
        current
            .path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."))
    });
    if let Err(e) = write_all(&c, &baseline, &current, &out) {
        return bad(&format!(
            "cannot write the comparison to {}: {e}; pass a writable --out",
            out.display()
        ));
    }
    print_summary(&c);
    eprintln!("  comparison: {}", out.display());
    if c.regressed() {
        exit::SLO_FAILED
    } else {
        exit::PASS
    }
}

/// Metrics by id (for tests and tools).
pub fn by_id(c: &Comparison) -> BTreeMap<&str, &Metric> {
    c.metrics.iter().map(|m| (m.id.as_str(), m)).collect()
}

//! `loadtest compare BASELINE CURRENT`: did a run regress against a baseline, with statistics.
//!
//! For each request and overall: p50, p95, p99 latency, error rate and throughput, each with the
//! change, its 95 % interval and a verdict. A metric regresses only when the change is larger
//! than the tolerance **and** its interval excludes zero; an improvement is judged the same way.
//! SLOs that passed in the baseline and fail now are listed first and count as a regression.
//! The methods are in [`stats`] and written into every report (`method` in `compare.json`).

mod metrics;
pub mod render;
mod scopes;
pub mod stats;

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::report::{InputError, Loaded, Report, ToolInfo};
pub use scopes::throughput_windows;

/// The shape version of `compare.json`.
pub const SCHEMA_VERSION: u32 = 1;
pub const DEFAULT_RESAMPLES: usize = 2000;
pub const DEFAULT_SEED: u64 = 20_261_122;
/// A run is cut into at most this many blocks of consecutive seconds for the block bootstrap.
pub const MAX_BLOCKS: usize = 30;
/// Block-bootstrap resamples (each merges every block of both sides, so fewer than per-request).
pub const BLOCK_RESAMPLES: usize = 1000;

/// How to compare.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Options {
    /// The practical floor, relative: a smaller change is never a regression.
    pub tolerance: f64,
    /// The practical floor of latency percentiles in ms: a smaller change is never a regression.
    pub floor_ms: f64,
    pub resamples: usize,
    pub seed: u64,
}

/// Default absolute floor of a latency percentile change.
pub const DEFAULT_FLOOR_MS: f64 = 1.0;

impl Default for Options {
    fn default() -> Self {
        Options {
            tolerance: 0.10,
            floor_ms: DEFAULT_FLOOR_MS,
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
    /// No regression found, but the baseline is too noisy to rule one out for some metric.
    Inconclusive,
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
    /// Beyond the floor, but the baseline's own noise is wider than the floor and the interval
    /// does not clear it.
    Inconclusive,
}

impl MetricVerdict {
    pub fn as_str(self) -> &'static str {
        match self {
            MetricVerdict::Regression => "regression",
            MetricVerdict::Improvement => "improvement",
            MetricVerdict::WithinTolerance => "within tolerance",
            MetricVerdict::NoChange => "no change",
            MetricVerdict::NotJudged => "not judged",
            MetricVerdict::Inconclusive => "inconclusive",
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
    /// Ids of the metrics the baseline is too noisy to judge.
    #[serde(default)]
    pub inconclusive: Vec<String>,
    /// The absolute floor of latency percentile changes (ms).
    #[serde(default)]
    pub floor_ms: f64,
    pub metrics: Vec<Metric>,
    pub warnings: Vec<String>,
}

impl Comparison {
    pub fn regressed(&self) -> bool {
        self.verdict == CompareVerdict::Regression
    }

    pub fn inconclusive(&self) -> bool {
        self.verdict == CompareVerdict::Inconclusive
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
            CompareVerdict::Inconclusive => format!(
                "INCONCLUSIVE — {}: no regression found, but {} metric(s) changed by less than the baseline varies by itself ({}); tolerance {}, floor {} ms",
                self.scenario,
                self.inconclusive.len(),
                self.inconclusive.join(", "),
                pct(self.tolerance),
                crate::scenario::fmt_num(self.floor_ms)
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

/// Compares `current` against the baseline runs. Fails (exit 2) when a report is incompatible.
pub fn compare(
    baseline: &[Loaded],
    current: &Loaded,
    opts: &Options,
) -> Result<Comparison, InputError> {
    let scenario = scopes::same_scenario(baseline, current)?;
    let mut warnings = scopes::input_warnings(baseline, current);
    let scopes = scopes::scopes(baseline, current, &mut warnings)?;
    let ctx = metrics::Context::new(baseline, current, opts)?;
    // The overall scope comes first and sets how much request scopes are widened.
    let mut inflation = [(1.0, 1.0); 3];
    let metrics: Vec<Metric> = scopes
        .iter()
        .flat_map(|sc| metrics::scope_metrics(sc, &ctx, &mut inflation))
        .collect();
    let slo_changes = slo_changes(baseline, current);
    let ids = |v: MetricVerdict| -> Vec<String> {
        metrics
            .iter()
            .filter(|m| m.verdict == v)
            .map(|m| m.id.clone())
            .collect()
    };
    let regressions = ids(MetricVerdict::Regression);
    let improvements = ids(MetricVerdict::Improvement);
    let inconclusive = ids(MetricVerdict::Inconclusive);
    let newly = slo_changes.iter().any(|s| s.status == "newly_failing");
    let base_refs: Vec<&Loaded> = baseline.iter().collect();
    Ok(Comparison {
        schema_version: SCHEMA_VERSION,
        tool: ToolInfo {
            name: "loadtest".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        },
        scenario,
        verdict: if !regressions.is_empty() || newly {
            CompareVerdict::Regression
        } else if !inconclusive.is_empty() {
            CompareVerdict::Inconclusive
        } else {
            CompareVerdict::NoRegression
        },
        tolerance: opts.tolerance,
        confidence: stats::CONFIDENCE,
        resamples: opts.resamples,
        seed: opts.seed,
        method: metrics::methods(opts, baseline.len()),
        baseline: side(&base_refs),
        current: side(&[current]),
        slo_changes,
        regressions,
        improvements,
        inconclusive,
        floor_ms: opts.floor_ms,
        metrics,
        warnings,
    })
}

fn side(ls: &[&Loaded]) -> Side {
    Side {
        files: ls.iter().map(|l| l.path.display().to_string()).collect(),
        runs: ls.len(),
        requests: ls.iter().map(|l| l.report.totals.requests).sum(),
        started_at: ls.iter().map(|l| l.report.started_at.clone()).collect(),
        verdicts: ls
            .iter()
            .map(|l| l.report.verdict.as_str().to_string())
            .collect(),
    }
}

/// SLOs whose outcome changed or that still fail: passed in every baseline run and failed now
/// first, then fixed, then still failing.
fn slo_changes(baseline: &[Loaded], current: &Loaded) -> Vec<SloChange> {
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
    slo_changes
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

/// Metrics by id (for tests and tools).
pub fn by_id(c: &Comparison) -> BTreeMap<&str, &Metric> {
    c.metrics.iter().map(|m| (m.id.as_str(), m)).collect()
}

//! Reports: `report.json` (versioned), `report.md`, `report.html` (inline SVG charts) and
//! `junit.xml`, all rendered from one [`Report`] value so they can never disagree.
//!
//! `report.json` is the contract: fields are added, never renamed, and `schema_version` says
//! which shape a reader has (`loadtest/schema/report.schema.json`). Histograms are HdrHistogram
//! V2 + deflate, base64, so `loadtest compare` can merge and test them later.

mod check;
pub mod html;
pub mod junit;
mod load;
pub mod markdown;

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::emu::EmuObserved;
use crate::engine::record::{encode_hist, pct_ms};
use crate::engine::Pacing;
use crate::scenario::{LatencySlo, Slos};
use crate::slo::SloResult;
pub use load::{load_baseline, load_report, InputError, Loaded};

/// The shape version of `report.json`.
pub const SCHEMA_VERSION: u32 = 1;

/// pass | fail | invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Fail,
    Invalid,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Invalid => "invalid",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolInfo {
    pub name: String,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageInfo {
    pub rps: f64,
    pub ramp_s: f64,
    pub hold_s: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestInfo {
    pub name: String,
    pub method: String,
    pub path: String,
    pub weight: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioInfo {
    pub name: String,
    pub description: String,
    pub source: String,
    pub load: String,
    pub stages: Vec<StageInfo>,
    pub requests: Vec<RequestInfo>,
    /// How `--duration` stretched the file's stages (1 = as written).
    pub duration_factor: f64,
    /// How `--rps`/`--rps-scale` scaled the file's rates (1 = as written).
    pub rps_factor: f64,
}

/// One hold stage's target against what was sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HoldInfo {
    pub stage: usize,
    pub start_s: f64,
    pub end_s: f64,
    pub target_rps: f64,
    pub achieved_rps: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadInfo {
    /// The highest rate the scenario asks for.
    pub target_rps: f64,
    /// Rate sent over the hold stages (the whole run when there is none).
    pub achieved_rps: f64,
    /// The rate asked over the same window.
    pub hold_target_rps: f64,
    pub achieved_ratio: f64,
    pub planned_requests: u64,
    pub sent_requests: u64,
    pub users: usize,
    /// How late requests left against the schedule (generator health).
    pub send_lag_p99_ms: f64,
    pub send_lag_max_ms: f64,
    pub holds: Vec<HoldInfo>,
    /// The in-flight cap, how it was chosen, and who made sends late.
    #[serde(flatten)]
    pub pacing: Pacing,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    pub requests: u64,
    pub ok: u64,
    pub errors: u64,
    pub transport_errors: u64,
    pub error_rate: f64,
    pub cold_start_responses: u64,
}

/// Latency summary in milliseconds with the full histogram (microseconds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub count: u64,
    pub min_ms: f64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    /// HdrHistogram V2+deflate, base64; values in microseconds.
    pub histogram: String,
}

impl Latency {
    pub fn from_hist(h: &hdrhistogram::Histogram<u64>) -> Latency {
        let p = |q| pct_ms(h, q).unwrap_or(0.0);
        let empty = h.is_empty();
        Latency {
            count: h.len(),
            min_ms: if empty { 0.0 } else { h.min() as f64 / 1000.0 },
            mean_ms: if empty { 0.0 } else { h.mean() / 1000.0 },
            p50_ms: p(0.50),
            p90_ms: p(0.90),
            p95_ms: p(0.95),
            p99_ms: p(0.99),
            p999_ms: p(0.999),
            max_ms: if empty { 0.0 } else { h.max() as f64 / 1000.0 },
            histogram: encode_hist(h),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestReport {
    pub name: String,
    pub method: String,
    pub path: String,
    pub requests: u64,
    pub errors: u64,
    pub transport_errors: u64,
    pub error_rate: f64,
    pub cold_start_responses: u64,
    pub status_codes: BTreeMap<String, u64>,
    pub latency: Latency,
}

/// One second of the run, by send time. `emu simulate` reads `second`, `requests`, `errors`,
/// `rps`, `p50_ms`, `p95_ms`, `p99_ms`: those never change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineItem {
    pub second: u64,
    pub target_rps: f64,
    pub requests: u64,
    pub errors: u64,
    pub rps: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub cold_starts: u64,
    /// HdrHistogram V2+deflate, base64 (µs), for windowed comparisons.
    pub histogram: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmulatorSection {
    /// The target answered `/_emu/status` as an emu front door.
    pub detected: bool,
    /// Distinct `x-emu-instance` values the client saw.
    pub instances_seen: u64,
    /// Responses that carried `x-emu-cold-start: true`.
    pub cold_start_responses: u64,
    pub latency_excluding_cold_starts: Latency,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed: Option<EmuObserved>,
}

/// Everything `report.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub schema_version: u32,
    pub tool: ToolInfo,
    pub scenario: ScenarioInfo,
    pub target: String,
    pub started_at: String,
    pub ended_at: String,
    pub started_unix_ms: i64,
    pub ended_unix_ms: i64,
    pub duration_s: f64,
    pub interrupted: bool,
    pub verdict: Verdict,
    pub invalid_reasons: Vec<String>,
    pub load: LoadInfo,
    pub totals: Totals,
    pub status_codes: BTreeMap<String, u64>,
    /// Measured from each request's intended send time (coordinated-omission corrected).
    pub latency: Latency,
    /// Send → response only: what the server alone cost.
    pub service_time: Latency,
    pub requests: Vec<RequestReport>,
    pub timeline: Vec<TimelineItem>,
    pub slos: Vec<SloResult>,
    pub emulator: EmulatorSection,
    /// The SLO rules as judged (after `--duration`/`--rps`/`--shard` scaling), so `loadtest
    /// merge` can judge merged shards by the same rules without the scenario file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slo_rules: Option<SloRules>,
    /// Set when this run was one shard (`--shard I/N`) of a bigger load.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<ShardInfo>,
    /// Set on a report written by `loadtest merge`: the shard reports it was made of.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merged_from: Vec<MergedShard>,
}

/// Which share of the load a run carried: the `index`-th (1-based) of `count` equal shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardInfo {
    pub index: u32,
    pub count: u32,
}

/// One input of a merged report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MergedShard {
    pub file: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<ShardInfo>,
    pub started_unix_ms: i64,
    pub requests: u64,
    /// Where this shard's second 0 falls in the merged timeline.
    pub offset_s: u64,
}

/// Latency thresholds (ms) of one scope, as in the scenario's `[slo]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencyRules {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p95_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_ms: Option<f64>,
}

/// A window rule: `window_s` seconds and its limit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WindowRule {
    pub window_s: f64,
    pub limit: f64,
}

/// The serialisable form of [`crate::scenario::Slos`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SloRules {
    pub overall: LatencyRules,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p95_excluding_cold_starts_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_rps: Option<f64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub per_request: BTreeMap<String, LatencyRules>,
    /// p95 of every window ≤ limit (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub windowed: Option<WindowRule>,
    /// p95 of last window / first ≤ limit (ratio).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<WindowRule>,
}

impl SloRules {
    pub fn from_slos(s: &Slos) -> SloRules {
        let lat = |l: &LatencySlo| LatencyRules {
            p50_ms: l.p50_ms,
            p95_ms: l.p95_ms,
            p99_ms: l.p99_ms,
        };
        let win = |w: &Option<(std::time::Duration, f64)>| {
            w.map(|(d, limit)| WindowRule {
                window_s: d.as_secs_f64(),
                limit,
            })
        };
        SloRules {
            overall: lat(&s.overall),
            p95_excluding_cold_starts_ms: s.p95_excluding_cold_starts_ms,
            error_rate: s.error_rate,
            min_rps: s.min_rps,
            per_request: s
                .per_request
                .iter()
                .map(|(n, l)| (n.clone(), lat(l)))
                .collect(),
            windowed: win(&s.windowed),
            drift: win(&s.drift),
        }
    }

    pub fn to_slos(&self) -> Slos {
        let lat = |l: &LatencyRules| LatencySlo {
            p50_ms: l.p50_ms,
            p95_ms: l.p95_ms,
            p99_ms: l.p99_ms,
        };
        let win = |w: &Option<WindowRule>| {
            w.map(|w| {
                (
                    std::time::Duration::from_secs_f64(w.window_s.max(0.0)),
                    w.limit,
                )
            })
        };
        Slos {
            overall: lat(&self.overall),
            p95_excluding_cold_starts_ms: self.p95_excluding_cold_starts_ms,
            error_rate: self.error_rate,
            min_rps: self.min_rps,
            per_request: self
                .per_request
                .iter()
                .map(|(n, l)| (n.clone(), lat(l)))
                .collect(),
            windowed: win(&self.windowed),
            drift: win(&self.drift),
        }
    }
}

impl Report {
    pub fn failed_slos(&self) -> impl Iterator<Item = &SloResult> {
        self.slos.iter().filter(|s| !s.passed)
    }

    /// A one-line headline for terminals and CI summaries.
    pub fn headline(&self) -> String {
        let mut s = format!(
            "{} — {}: {} requests, {:.1}/{:.1} rps, p95 {:.1} ms, errors {:.2}%",
            self.verdict.as_str().to_uppercase(),
            self.scenario.name,
            self.totals.requests,
            self.load.achieved_rps,
            self.load.hold_target_rps,
            self.latency.p95_ms,
            self.totals.error_rate * 100.0
        );
        if self.interrupted {
            s.push_str(" (interrupted)");
        }
        s
    }
}

/// Writes all four reports into `dir` (created if missing).
pub fn write_all(report: &Report, dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let json = serde_json::to_string_pretty(report).map_err(std::io::Error::other)?;
    std::fs::write(dir.join("report.json"), json)?;
    std::fs::write(dir.join("report.md"), markdown::render(report))?;
    std::fs::write(dir.join("report.html"), html::render(report))?;
    std::fs::write(dir.join("junit.xml"), junit::render(report))?;
    Ok(())
}

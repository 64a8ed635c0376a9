//! Step 1: the file as written. serde with `deny_unknown_fields`, so a typo is an error
//! instead of a silent default, and every value that validation may refuse is `Spanned`, so the
//! refusal names the line the value is on (not only its table's).

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScenario {
    pub name: Option<String>,
    pub description: Option<String>,
    pub target: Option<Spanned<String>>,
    /// Per-request timeout, e.g. "30s".
    pub timeout: Option<Spanned<String>>,
    /// Upper bound on requests in flight (goose users); default from the peak rate.
    pub max_in_flight: Option<Spanned<i64>>,
    #[serde(default)]
    pub stage: Vec<Spanned<RawStage>>,
    #[serde(default)]
    pub request: Vec<Spanned<RawRequest>>,
    /// Not `Spanned`: the toml crate cannot give a span to a table that only exists through a
    /// dotted header (`[slo.request.home]` with no `[slo]`), and fails with a confusing error.
    pub slo: Option<RawSlo>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStage {
    pub rps: Spanned<f64>,
    pub ramp: Option<Spanned<String>>,
    pub hold: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRequest {
    pub name: Spanned<String>,
    pub method: Option<Spanned<String>>,
    pub path: Spanned<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, Spanned<String>>,
    pub body: Option<Spanned<toml::Value>>,
    pub weight: Option<Spanned<i64>>,
    pub expect_status: Option<Spanned<StatusList>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum StatusList {
    One(i64),
    Many(Vec<i64>),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLatency {
    pub p50_ms: Option<Spanned<f64>>,
    pub p95_ms: Option<Spanned<f64>>,
    pub p99_ms: Option<Spanned<f64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSlo {
    pub p50_ms: Option<Spanned<f64>>,
    pub p95_ms: Option<Spanned<f64>>,
    pub p99_ms: Option<Spanned<f64>>,
    pub p95_excluding_cold_starts_ms: Option<Spanned<f64>>,
    /// Highest allowed error rate, 0..1.
    pub error_rate: Option<Spanned<f64>>,
    /// Lowest allowed achieved throughput over the hold stages.
    pub min_rps: Option<Spanned<f64>>,
    #[serde(default)]
    pub request: BTreeMap<String, Spanned<RawLatency>>,
    pub windowed: Option<Spanned<RawWindowed>>,
    pub drift: Option<Spanned<RawDrift>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWindowed {
    pub window: Spanned<String>,
    pub p95_ms: Spanned<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDrift {
    pub window: Option<Spanned<String>>,
    pub max_ratio: Spanned<f64>,
}

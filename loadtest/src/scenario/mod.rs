//! Scenario files (TOML) → a validated [`Scenario`].
//!
//! Three steps, as everywhere in this workspace: parse with serde (`deny_unknown_fields`, so a
//! typo is an error instead of a silent default), validate into types that cannot be invalid,
//! and let the engine build from those. Every error names `file:line` and what to do.

pub mod template;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

pub use template::{JsonTemplate, Template};

/// The longest duration any scenario field (or `--duration`) may have.
pub const MAX_DURATION: Duration = Duration::from_secs(30 * 24 * 3600);

/// The target used when neither the scenario nor `--target` names one.
pub const DEFAULT_TARGET: &str = "http://127.0.0.1:8080";

/// A scenario error: where it is and what to do about it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct ScenarioError {
    pub file: PathBuf,
    /// 1-based; 0 when the error is about the file as a whole.
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
        } else {
            write!(f, "{}: {}", self.file.display(), self.message)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Step 1: the file as written.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: Option<String>,
    description: Option<String>,
    target: Option<Spanned<String>>,
    /// Per-request timeout, e.g. "30s".
    timeout: Option<Spanned<String>>,
    /// Upper bound on requests in flight (goose users); default from the peak rate.
    max_in_flight: Option<Spanned<i64>>,
    #[serde(default)]
    stage: Vec<Spanned<RawStage>>,
    #[serde(default)]
    request: Vec<Spanned<RawRequest>>,
    slo: Option<Spanned<RawSlo>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStage {
    rps: f64,
    ramp: Option<String>,
    hold: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequest {
    name: String,
    method: Option<String>,
    path: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    body: Option<toml::Value>,
    weight: Option<i64>,
    expect_status: Option<StatusList>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum StatusList {
    One(i64),
    Many(Vec<i64>),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLatency {
    p50_ms: Option<f64>,
    p95_ms: Option<f64>,
    p99_ms: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSlo {
    p50_ms: Option<f64>,
    p95_ms: Option<f64>,
    p99_ms: Option<f64>,
    p95_excluding_cold_starts_ms: Option<f64>,
    /// Highest allowed error rate, 0..1.
    error_rate: Option<f64>,
    /// Lowest allowed achieved throughput over the hold stages.
    min_rps: Option<f64>,
    #[serde(default)]
    request: BTreeMap<String, RawLatency>,
    windowed: Option<RawWindowed>,
    drift: Option<RawDrift>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWindowed {
    window: String,
    p95_ms: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDrift {
    window: Option<String>,
    max_ratio: f64,
}

// ---------------------------------------------------------------------------------------------
// Step 2: validated types.

/// One stage of arrival rate: ramp linearly from the previous rate to `rps`, then hold it.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    pub rps: f64,
    pub ramp: Duration,
    pub hold: Duration,
}

/// HTTP methods goose's request builder can send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
    Head,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
            Method::Head => "HEAD",
        }
    }
}

/// One kind of request in the mix.
#[derive(Debug, Clone)]
pub struct RequestSpec {
    pub name: String,
    pub method: Method,
    pub path_src: String,
    pub path: Template,
    pub headers: Vec<(String, Template)>,
    pub body: Option<JsonTemplate>,
    pub weight: u32,
    /// Empty: any status below 400 is expected.
    pub expect_status: Vec<u16>,
}

impl RequestSpec {
    /// Whether `status` counts as success for this request.
    pub fn expects(&self, status: u16) -> bool {
        if self.expect_status.is_empty() {
            status < 400
        } else {
            self.expect_status.contains(&status)
        }
    }
}

/// Latency thresholds in milliseconds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LatencySlo {
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// The service-level objectives a run is judged by.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Slos {
    pub overall: LatencySlo,
    pub p95_excluding_cold_starts_ms: Option<f64>,
    pub error_rate: Option<f64>,
    pub min_rps: Option<f64>,
    /// Per request name.
    pub per_request: Vec<(String, LatencySlo)>,
    /// p95 of every window must stay under the threshold.
    pub windowed: Option<(Duration, f64)>,
    /// p95 of the last window / p95 of the first window must stay under the ratio.
    pub drift: Option<(Duration, f64)>,
}

/// A validated scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    pub source: PathBuf,
    pub target: Option<String>,
    pub timeout: Duration,
    pub max_in_flight: Option<usize>,
    pub stages: Vec<Stage>,
    pub requests: Vec<RequestSpec>,
    pub slos: Slos,
}

impl Scenario {
    /// Total planned duration of all stages.
    pub fn duration(&self) -> Duration {
        self.stages.iter().map(|s| s.ramp + s.hold).sum()
    }

    /// The highest rate any stage asks for.
    pub fn peak_rps(&self) -> f64 {
        self.stages.iter().map(|s| s.rps).fold(0.0, f64::max)
    }

    /// Squeezes or stretches every stage (and every SLO window) so the run lasts `total`.
    /// Windows keep at least one second.
    pub fn compress_to(&mut self, total: Duration) {
        let current = self.duration().as_secs_f64();
        if current <= 0.0 {
            return;
        }
        let f = total.as_secs_f64() / current;
        for s in &mut self.stages {
            s.ramp = s.ramp.mul_f64(f);
            s.hold = s.hold.mul_f64(f);
        }
        let scale_window = |w: Duration| w.mul_f64(f).max(Duration::from_secs(1));
        if let Some((w, _)) = &mut self.slos.windowed {
            *w = scale_window(*w);
        }
        if let Some((w, _)) = &mut self.slos.drift {
            *w = scale_window(*w);
        }
    }

    /// Multiplies every stage's rate (and the throughput SLO and the in-flight cap) by `f`.
    pub fn scale_rps(&mut self, f: f64) {
        for s in &mut self.stages {
            s.rps *= f;
        }
        if let Some(m) = &mut self.slos.min_rps {
            *m *= f;
        }
        if let Some(m) = &mut self.max_in_flight {
            *m = ((*m as f64) * f).ceil().max(1.0) as usize;
        }
    }

    /// One line describing the load, for `list` and reports.
    pub fn load_summary(&self) -> String {
        let stages: Vec<String> = self
            .stages
            .iter()
            .map(|s| {
                let mut parts = vec![format!("{} rps", fmt_num(s.rps))];
                if !s.ramp.is_zero() {
                    parts.push(format!("ramp {}", fmt_dur(s.ramp)));
                }
                if !s.hold.is_zero() {
                    parts.push(format!("hold {}", fmt_dur(s.hold)));
                }
                parts.join(" ")
            })
            .collect();
        format!(
            "{} ({} total)",
            stages.join(" → "),
            fmt_dur(self.duration())
        )
    }

    /// One line per SLO, for `list`.
    pub fn slo_summary(&self) -> Vec<String> {
        let mut out = Vec::new();
        let s = &self.slos;
        let lat = |prefix: &str, l: &LatencySlo, out: &mut Vec<String>| {
            for (p, v) in [("p50", l.p50_ms), ("p95", l.p95_ms), ("p99", l.p99_ms)] {
                if let Some(v) = v {
                    out.push(format!("{prefix}{p} < {} ms", fmt_num(v)));
                }
            }
        };
        lat("", &s.overall, &mut out);
        if let Some(v) = s.p95_excluding_cold_starts_ms {
            out.push(format!("p95 excluding cold starts < {} ms", fmt_num(v)));
        }
        if let Some(v) = s.error_rate {
            out.push(format!("error rate ≤ {}%", fmt_num(v * 100.0)));
        }
        if let Some(v) = s.min_rps {
            out.push(format!("throughput ≥ {} rps", fmt_num(v)));
        }
        for (name, l) in &s.per_request {
            lat(&format!("{name}: "), l, &mut out);
        }
        if let Some((w, v)) = s.windowed {
            out.push(format!(
                "p95 of every {} window < {} ms",
                fmt_dur(w),
                fmt_num(v)
            ));
        }
        if let Some((w, r)) = s.drift {
            out.push(format!(
                "p95 drift (last {} window / first) ≤ {}×",
                fmt_dur(w),
                fmt_num(r)
            ));
        }
        out
    }
}

/// Formats a number without a useless `.0`.
pub fn fmt_num(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as i64)
    } else {
        format!("{v:.2}")
    }
}

/// Formats a duration the way scenario files write it.
pub fn fmt_dur(d: Duration) -> String {
    let ms = d.as_millis() as u64;
    if ms % 1000 != 0 {
        return format!("{:.1}s", d.as_secs_f64());
    }
    humantime::format_duration(Duration::from_secs(ms / 1000)).to_string()
}

/// Finds the scenario file for `name_or_path`: an existing path, or `NAME` / `NAME.toml` in one
/// of `dirs`.
pub fn resolve(name_or_path: &str, dirs: &[PathBuf]) -> Option<PathBuf> {
    let p = Path::new(name_or_path);
    if p.is_file() {
        return Some(p.to_path_buf());
    }
    for dir in dirs {
        for candidate in [
            dir.join(name_or_path),
            dir.join(format!("{name_or_path}.toml")),
        ] {
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    None
}

/// Where scenario names are looked up: `./scenarios`, then the `scenarios/` folder of the
/// repository the binary sits in or was built in.
pub fn search_dirs() -> Vec<PathBuf> {
    let mut dirs = vec![PathBuf::from("scenarios")];
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1) {
            let candidate = dir.join("scenarios");
            if candidate.is_dir() {
                dirs.push(candidate);
                break;
            }
        }
    }
    dirs.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios"));
    dirs
}

/// Reads and validates a scenario file.
pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
    let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
        file: path.to_path_buf(),
        line: 0,
        message: format!("cannot read the scenario file: {e}; check the path"),
    })?;
    parse(path, &text)
}

/// Validates scenario text; `path` names it in errors and gives the default name.
pub fn parse(path: &Path, text: &str) -> Result<Scenario, ScenarioError> {
    let line_of = |offset: usize| -> usize {
        text[..offset.min(text.len())]
            .bytes()
            .filter(|b| *b == b'\n')
            .count()
            + 1
    };
    let err = |line: usize, message: String| ScenarioError {
        file: path.to_path_buf(),
        line,
        message,
    };
    let raw: RawScenario = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| line_of(s.start)).unwrap_or(0);
        let msg = e.message().trim().to_string();
        let hint = if msg.contains("unknown field") {
            "; fix the spelling or remove the key (see scenarios/README.md)"
        } else if msg.contains("missing field") {
            "; add it (see scenarios/README.md)"
        } else if msg.contains("invalid type") || msg.contains("did not match") {
            "; fix the value's type (see scenarios/README.md)"
        } else {
            "; fix the TOML syntax here"
        };
        err(line, format!("{msg}{hint}"))
    })?;

    let name = raw.name.unwrap_or_else(|| {
        path.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "scenario".into())
    });
    let dur = |line: usize, field: &str, s: &str| -> Result<Duration, ScenarioError> {
        let d = humantime::parse_duration(s.trim()).map_err(|e| {
            err(
                line,
                format!("{field} = {s:?} is not a duration ({e}); write it like \"30s\", \"5m\" or \"6h\""),
            )
        })?;
        if d > MAX_DURATION {
            return Err(err(
                line,
                format!("{field} = {s:?} is longer than 30 days: shorten it"),
            ));
        }
        Ok(d)
    };

    if let Some(t) = &raw.target {
        let v = t.get_ref();
        if !(v.starts_with("http://") || v.starts_with("https://")) {
            return Err(err(
                line_of(t.span().start),
                format!("target = {v:?} must be an http:// or https:// URL"),
            ));
        }
    }

    let timeout = match &raw.timeout {
        Some(t) => {
            let line = line_of(t.span().start);
            let d = dur(line, "timeout", t.get_ref())?;
            if d.is_zero() {
                return Err(err(line, "timeout must be above zero".into()));
            }
            d
        }
        None => Duration::from_secs(30),
    };
    let max_in_flight = match &raw.max_in_flight {
        Some(m) => {
            let v = *m.get_ref();
            if !(1..=10_000).contains(&v) {
                return Err(err(
                    line_of(m.span().start),
                    format!("max_in_flight = {v} must be between 1 and 10000 (each is a goose user with its own HTTP client)"),
                ));
            }
            Some(v as usize)
        }
        None => None,
    };

    if raw.stage.is_empty() {
        return Err(err(
            1,
            "no [[stage]]: add at least one, e.g. [[stage]] rps = 100, hold = \"5m\"".into(),
        ));
    }
    let mut stages = Vec::new();
    for s in &raw.stage {
        let line = line_of(s.span().start);
        let r = s.get_ref();
        if !r.rps.is_finite() || r.rps < 0.0 || r.rps > 100_000.0 {
            return Err(err(
                line,
                format!("rps = {} must be between 0 and 100000", r.rps),
            ));
        }
        let ramp = match &r.ramp {
            Some(v) => dur(line, "ramp", v)?,
            None => Duration::ZERO,
        };
        let hold = match &r.hold {
            Some(v) => dur(line, "hold", v)?,
            None => Duration::ZERO,
        };
        if ramp.is_zero() && hold.is_zero() {
            return Err(err(
                line,
                "this stage has neither ramp nor hold: give it a duration, e.g. hold = \"1m\""
                    .into(),
            ));
        }
        stages.push(Stage {
            rps: r.rps,
            ramp,
            hold,
        });
    }
    if stages.iter().all(|s| s.rps <= 0.0) {
        return Err(err(
            line_of(raw.stage[0].span().start),
            "every stage has rps = 0: give at least one stage a rate above zero".into(),
        ));
    }

    if raw.request.is_empty() {
        return Err(err(
            1,
            "no [[request]]: add at least one, e.g. [[request]] name = \"home\", path = \"/\""
                .into(),
        ));
    }
    let mut requests: Vec<RequestSpec> = Vec::new();
    for r in &raw.request {
        let line = line_of(r.span().start);
        let q = r.get_ref();
        if q.name.trim().is_empty() {
            return Err(err(line, "request name is empty: give it a name".into()));
        }
        if requests.iter().any(|o| o.name == q.name) {
            return Err(err(
                line,
                format!(
                    "request name {:?} is used twice: names must be unique",
                    q.name
                ),
            ));
        }
        let method = match q
            .method
            .as_deref()
            .unwrap_or("GET")
            .to_ascii_uppercase()
            .as_str()
        {
            "GET" => Method::Get,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            "HEAD" => Method::Head,
            other => {
                return Err(err(
                    line,
                    format!(
                    "method {other:?} is not supported: use GET, POST, PUT, PATCH, DELETE or HEAD"
                ),
                ))
            }
        };
        if !q.path.starts_with('/') {
            return Err(err(line, format!("path {:?} must start with '/'", q.path)));
        }
        let path = Template::compile(&q.path).map_err(|m| err(line, format!("path: {m}")))?;
        let mut headers = Vec::new();
        for (k, v) in &q.headers {
            if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err() {
                return Err(err(
                    line,
                    format!("header name {k:?} is not a valid HTTP header name"),
                ));
            }
            headers.push((
                k.clone(),
                Template::compile(v).map_err(|m| err(line, format!("header {k}: {m}")))?,
            ));
        }
        let body = match &q.body {
            Some(v) => {
                let json = serde_json::to_value(v)
                    .map_err(|e| err(line, format!("body cannot be written as JSON: {e}")))?;
                Some(JsonTemplate::compile(&json).map_err(|m| err(line, format!("body: {m}")))?)
            }
            None => None,
        };
        let weight = q.weight.unwrap_or(1);
        if !(1..=1_000_000).contains(&weight) {
            return Err(err(
                line,
                format!("weight = {weight} must be between 1 and 1000000"),
            ));
        }
        let statuses = match &q.expect_status {
            None => Vec::new(),
            Some(StatusList::One(s)) => vec![*s],
            Some(StatusList::Many(v)) => v.clone(),
        };
        let mut expect_status = Vec::new();
        for s in statuses {
            if !(100..=599).contains(&s) {
                return Err(err(
                    line,
                    format!("expect_status {s} is not an HTTP status (100..599)"),
                ));
            }
            expect_status.push(s as u16);
        }
        requests.push(RequestSpec {
            name: q.name.clone(),
            method,
            path_src: q.path.clone(),
            path,
            headers,
            body,
            weight: weight as u32,
            expect_status,
        });
    }

    let slos = match &raw.slo {
        None => Slos::default(),
        Some(s) => {
            let line = line_of(s.span().start);
            let r = s.get_ref();
            let ms = |field: &str, v: Option<f64>| -> Result<Option<f64>, ScenarioError> {
                match v {
                    Some(v) if !v.is_finite() || v <= 0.0 => Err(err(
                        line,
                        format!("slo {field} = {v} must be a positive number of milliseconds"),
                    )),
                    v => Ok(v),
                }
            };
            let latency = |prefix: &str, l: &RawLatency| -> Result<LatencySlo, ScenarioError> {
                Ok(LatencySlo {
                    p50_ms: ms(&format!("{prefix}p50_ms"), l.p50_ms)?,
                    p95_ms: ms(&format!("{prefix}p95_ms"), l.p95_ms)?,
                    p99_ms: ms(&format!("{prefix}p99_ms"), l.p99_ms)?,
                })
            };
            let overall = latency(
                "",
                &RawLatency {
                    p50_ms: r.p50_ms,
                    p95_ms: r.p95_ms,
                    p99_ms: r.p99_ms,
                },
            )?;
            if let Some(e) = r.error_rate {
                if !(0.0..=1.0).contains(&e) {
                    return Err(err(
                        line,
                        format!(
                            "slo error_rate = {e} must be a fraction between 0 and 1 (0.01 = 1 %)"
                        ),
                    ));
                }
            }
            if let Some(m) = r.min_rps {
                if !m.is_finite() || m < 0.0 {
                    return Err(err(line, format!("slo min_rps = {m} must be ≥ 0")));
                }
            }
            let mut per_request = Vec::new();
            for (name, l) in &r.request {
                if !requests.iter().any(|q| &q.name == name) {
                    return Err(err(
                        line,
                        format!(
                            "[slo.request.{name}] names no request: use one of {}",
                            requests
                                .iter()
                                .map(|q| q.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                }
                per_request.push((name.clone(), latency(&format!("request.{name}."), l)?));
            }
            let windowed = match &r.windowed {
                Some(w) => {
                    let d = dur(line, "slo.windowed.window", &w.window)?;
                    if d < Duration::from_secs(1) {
                        return Err(err(line, "slo.windowed.window must be at least 1s".into()));
                    }
                    Some((
                        d,
                        ms("windowed.p95_ms", Some(w.p95_ms))?.unwrap_or(w.p95_ms),
                    ))
                }
                None => None,
            };
            let drift = match &r.drift {
                Some(d) => {
                    let w = match &d.window {
                        Some(s) => dur(line, "slo.drift.window", s)?,
                        None => windowed.map(|w| w.0).unwrap_or(Duration::from_secs(60)),
                    };
                    if w < Duration::from_secs(1) {
                        return Err(err(line, "slo.drift.window must be at least 1s".into()));
                    }
                    if !d.max_ratio.is_finite() || d.max_ratio <= 0.0 {
                        return Err(err(
                            line,
                            format!("slo.drift.max_ratio = {} must be above 0 (1.5 = 50 % slower allowed)", d.max_ratio),
                        ));
                    }
                    Some((w, d.max_ratio))
                }
                None => None,
            };
            Slos {
                overall,
                p95_excluding_cold_starts_ms: ms(
                    "p95_excluding_cold_starts_ms",
                    r.p95_excluding_cold_starts_ms,
                )?,
                error_rate: r.error_rate,
                min_rps: r.min_rps,
                per_request,
                windowed,
                drift,
            }
        }
    };

    Ok(Scenario {
        name,
        description: raw.description.unwrap_or_default(),
        source: path.to_path_buf(),
        target: raw.target.map(Spanned::into_inner),
        timeout,
        max_in_flight,
        stages,
        requests,
        slos,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "t"
[[stage]]
rps = 10
ramp = "2s"
hold = "8s"

[[request]]
name = "home"
path = "/x/{{int:1..3}}"
weight = 2

[slo]
p95_ms = 100
error_rate = 0.01
[slo.request.home]
p99_ms = 200
[slo.windowed]
window = "5s"
p95_ms = 150
[slo.drift]
max_ratio = 1.5
"#;

    #[test]
    fn parses_a_good_scenario() {
        let s = parse(Path::new("t.toml"), GOOD).unwrap();
        assert_eq!(s.duration(), Duration::from_secs(10));
        assert_eq!(s.requests[0].weight, 2);
        assert_eq!(s.slos.drift, Some((Duration::from_secs(5), 1.5)));
        assert_eq!(s.slo_summary().len(), 5);
    }

    #[test]
    fn unknown_key_names_file_and_line() {
        let text = GOOD.replace("ramp = \"2s\"", "rmap = \"2s\"");
        let e = parse(Path::new("scenarios/t.toml"), &text).unwrap_err();
        assert_eq!(e.line, 5, "{e}");
        assert!(e.to_string().starts_with("scenarios/t.toml:5: "), "{e}");
        assert!(e.message.contains("rmap"), "{e}");
    }

    #[test]
    fn bad_values_name_the_line() {
        let text = GOOD.replace("weight = 2", "weight = 0");
        let e = parse(Path::new("t.toml"), &text).unwrap_err();
        assert!(e.message.contains("weight"), "{e}");
        assert!((8..=12).contains(&e.line), "{e}");
        let text = GOOD.replace("hold = \"8s\"", "hold = \"8 parsecs\"");
        let e = parse(Path::new("t.toml"), &text).unwrap_err();
        assert!(e.message.contains("duration"), "{e}");
        let text = GOOD.replace("[slo.request.home]", "[slo.request.nope]");
        assert!(parse(Path::new("t.toml"), &text).is_err());
    }

    #[test]
    fn bad_input_is_an_error_never_a_panic() {
        let cases = [
            "",
            "\u{0}\u{1}garbage",
            "[[stage]]\nrps = \"fast\"\nhold = \"1s\"",
            "[[stage]]\nrps = -1\nhold = \"1s\"\n[[request]]\nname=\"a\"\npath=\"/\"",
            "[[stage]]\nrps = 1e300\nhold = \"1s\"\n[[request]]\nname=\"a\"\npath=\"/\"",
            "[[stage]]\nrps = 1\nhold = \"99999999999h\"\n[[request]]\nname=\"a\"\npath=\"/\"",
            "[[stage]]\nrps = 1\n[[request]]\nname=\"a\"\npath=\"/\"",
            "[[stage]]\nrps = 1\nhold=\"1s\"\n[[request]]\nname=\"a\"\npath=\"x\"",
            "[[stage]]\nrps = 1\nhold=\"1s\"\n[[request]]\nname=\"a\"\npath=\"/\"\nmethod=\"BREW\"",
            "[[stage]]\nrps = 1\nhold=\"1s\"\n[[request]]\nname=\"a\"\npath=\"/\"\nexpect_status=[99]",
            "[[stage]]\nrps = 1\nhold=\"1s\"\n[[request]]\nname=\"a\"\npath=\"/\"\n[slo]\nerror_rate=5",
            "[[stage]]\nrps = 1\nhold=\"1s\"\n[[request]]\nname=\"a\"\npath=\"/\"\n[slo]\np95_ms=-1",
            "[[stage]]\nrps = 1\nhold=\"1s\"\n[[request]]\nname=\"a\"\npath=\"/\"\nheaders={\"bad header\"=\"x\"}",
            "target = \"ftp://x\"\n[[stage]]\nrps = 1\nhold=\"1s\"",
            "stage = 3",
        ];
        for text in cases {
            let e = parse(Path::new("x.toml"), text).unwrap_err();
            assert!(e.line >= 1, "{text:?} → {e}");
            assert!(!e.message.is_empty());
        }
    }

    #[test]
    fn compress_and_scale() {
        let mut s = parse(Path::new("t.toml"), GOOD).unwrap();
        s.compress_to(Duration::from_secs(5));
        assert_eq!(s.duration(), Duration::from_secs(5));
        assert_eq!(s.slos.windowed.unwrap().0, Duration::from_millis(2500));
        s.scale_rps(2.0);
        assert_eq!(s.peak_rps(), 20.0);
    }
}

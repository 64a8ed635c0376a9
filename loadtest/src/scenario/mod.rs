//! Scenario files (TOML) → a validated [`Scenario`].
//!
//! Three steps, as everywhere in this workspace: parse with serde (`deny_unknown_fields`, so a
//! typo is an error instead of a silent default), validate into types that cannot be invalid,
//! and let the engine build from those. Every error names `file:line` and what to do.

mod parse;
mod raw;
pub mod template;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use parse::parse;
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
// The validated types (step 1, the file as written, is in `raw`; step 2 in `parse`).

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
    if !ms.is_multiple_of(1000) {
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
    let bytes = std::fs::read(path).map_err(|e| ScenarioError {
        file: path.to_path_buf(),
        line: 0,
        message: format!("cannot read the scenario file: {e}; check the path"),
    })?;
    parse_bytes(path, &bytes)
}

/// Validates a scenario file's bytes: text that is not UTF-8 is refused at the line of the
/// first byte that is not (a file saved as Latin-1, a stray binary byte).
pub fn parse_bytes(path: &Path, bytes: &[u8]) -> Result<Scenario, ScenarioError> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let valid = &bytes[..e.valid_up_to()];
        ScenarioError {
            file: path.to_path_buf(),
            line: valid.iter().filter(|b| **b == b'\n').count() + 1,
            message: "this line is not UTF-8 text: save the file as UTF-8".into(),
        }
    })?;
    parse(path, text)
}

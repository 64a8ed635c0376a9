//! Step 2: the file as written, validated into a [`Scenario`]. Every refusal names the line of
//! the value (or table) it is about, and says what to write instead.

use std::path::Path;
use std::time::Duration;

use toml::Spanned;

use super::raw::{
    RawDrift, RawLatency, RawRequest, RawScenario, RawSlo, RawStage, RawWindowed, StatusList,
};
use super::{
    JsonTemplate, LatencySlo, Method, RequestSpec, Scenario, ScenarioError, Slos, Stage, Template,
    MAX_DURATION,
};

/// The file being validated: names it and turns byte offsets into lines.
struct Source<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Source<'_> {
    /// The 1-based line of a byte offset.
    fn line_of(&self, offset: usize) -> usize {
        line_of(self.text, offset)
    }

    fn line<T>(&self, v: &Spanned<T>) -> usize {
        self.line_of(v.span().start)
    }

    fn err(&self, line: usize, message: impl Into<String>) -> ScenarioError {
        ScenarioError {
            file: self.path.to_path_buf(),
            line,
            message: message.into(),
        }
    }

    /// A refusal of the spanned value, on its line.
    fn at<T>(&self, v: &Spanned<T>, message: impl Into<String>) -> ScenarioError {
        self.err(self.line(v), message)
    }

    /// A duration field, at most [`MAX_DURATION`].
    fn duration(&self, field: &str, v: &Spanned<String>) -> Result<Duration, ScenarioError> {
        let s = v.get_ref();
        let d = humantime::parse_duration(s.trim()).map_err(|e| {
            self.at(
                v,
                format!("{field} = {s:?} is not a duration ({e}); write it like \"30s\", \"5m\" or \"6h\""),
            )
        })?;
        if d > MAX_DURATION {
            return Err(self.at(
                v,
                format!("{field} = {s:?} is longer than 30 days: shorten it"),
            ));
        }
        Ok(d)
    }
}

/// The 1-based line of byte `offset` in `text`.
pub(super) fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// Validates scenario text; `path` names it in errors and gives the default name.
pub fn parse(path: &Path, text: &str) -> Result<Scenario, ScenarioError> {
    let src = Source { path, text };
    let raw: RawScenario = toml::from_str(text).map_err(|e| toml_error(&src, &e))?;
    let name = raw.name.unwrap_or_else(|| {
        path.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "scenario".into())
    });
    if let Some(t) = &raw.target {
        let v = t.get_ref();
        if !(v.starts_with("http://") || v.starts_with("https://")) {
            return Err(src.at(
                t,
                format!("target = {v:?} must be an http:// or https:// URL"),
            ));
        }
    }
    let timeout = match &raw.timeout {
        Some(t) => {
            let d = src.duration("timeout", t)?;
            if d.is_zero() {
                return Err(src.at(t, "timeout must be above zero"));
            }
            d
        }
        None => Duration::from_secs(30),
    };
    let max_in_flight = match &raw.max_in_flight {
        Some(m) => {
            let v = *m.get_ref();
            if !(1..=10_000).contains(&v) {
                return Err(src.at(
                    m,
                    format!("max_in_flight = {v} must be between 1 and 10000 (each is a goose user with its own HTTP client)"),
                ));
            }
            Some(v as usize)
        }
        None => None,
    };
    let stages = stages(&src, &raw.stage)?;
    let requests = requests(&src, &raw.request)?;
    let slos = match &raw.slo {
        None => Slos::default(),
        Some(s) => slos(&src, s, &requests)?,
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

/// A TOML or shape error, with its line and a hint of what to do.
fn toml_error(src: &Source, e: &toml::de::Error) -> ScenarioError {
    // toml gives every error a span (the mutation test holds it to that); without one the
    // error is about the file as a whole, line 0.
    let line = e.span().map(|s| src.line_of(s.start)).unwrap_or(0);
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
    src.err(line, format!("{msg}{hint}"))
}

fn stages(src: &Source, raw: &[Spanned<RawStage>]) -> Result<Vec<Stage>, ScenarioError> {
    let Some(first) = raw.first() else {
        return Err(src.err(
            1,
            "no [[stage]]: add at least one, e.g. [[stage]] rps = 100, hold = \"5m\"",
        ));
    };
    let mut stages = Vec::new();
    for s in raw {
        let r = s.get_ref();
        let rps = *r.rps.get_ref();
        if !rps.is_finite() || !(0.0..=100_000.0).contains(&rps) {
            return Err(src.at(&r.rps, format!("rps = {rps} must be between 0 and 100000")));
        }
        let ramp = match &r.ramp {
            Some(v) => src.duration("ramp", v)?,
            None => Duration::ZERO,
        };
        let hold = match &r.hold {
            Some(v) => src.duration("hold", v)?,
            None => Duration::ZERO,
        };
        if ramp.is_zero() && hold.is_zero() {
            return Err(src.at(
                s,
                "this stage has neither ramp nor hold: give it a duration, e.g. hold = \"1m\"",
            ));
        }
        stages.push(Stage { rps, ramp, hold });
    }
    if stages.iter().all(|s| s.rps <= 0.0) {
        return Err(src.at(
            first,
            "every stage has rps = 0: give at least one stage a rate above zero",
        ));
    }
    Ok(stages)
}

fn requests(src: &Source, raw: &[Spanned<RawRequest>]) -> Result<Vec<RequestSpec>, ScenarioError> {
    if raw.is_empty() {
        return Err(src.err(
            1,
            "no [[request]]: add at least one, e.g. [[request]] name = \"home\", path = \"/\"",
        ));
    }
    let mut requests: Vec<RequestSpec> = Vec::new();
    for r in raw {
        let q = r.get_ref();
        let name = q.name.get_ref();
        if name.trim().is_empty() {
            return Err(src.at(&q.name, "request name is empty: give it a name"));
        }
        if requests.iter().any(|o| &o.name == name) {
            return Err(src.at(
                &q.name,
                format!("request name {name:?} is used twice: names must be unique"),
            ));
        }
        requests.push(request(src, q)?);
    }
    Ok(requests)
}

fn method(src: &Source, m: Option<&Spanned<String>>) -> Result<Method, ScenarioError> {
    let Some(m) = m else {
        return Ok(Method::Get);
    };
    Ok(match m.get_ref().to_ascii_uppercase().as_str() {
        "GET" => Method::Get,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "PATCH" => Method::Patch,
        "DELETE" => Method::Delete,
        "HEAD" => Method::Head,
        other => {
            return Err(src.at(
                m,
                format!(
                    "method {other:?} is not supported: use GET, POST, PUT, PATCH, DELETE or HEAD"
                ),
            ))
        }
    })
}

fn request(src: &Source, q: &RawRequest) -> Result<RequestSpec, ScenarioError> {
    let method = method(src, q.method.as_ref())?;
    let path_src = q.path.get_ref();
    if !path_src.starts_with('/') {
        return Err(src.at(&q.path, format!("path {path_src:?} must start with '/'")));
    }
    let path = Template::compile(path_src).map_err(|m| src.at(&q.path, format!("path: {m}")))?;
    let mut headers = Vec::new();
    for (k, v) in &q.headers {
        if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err() {
            return Err(src.at(
                v,
                format!("header name {k:?} is not a valid HTTP header name"),
            ));
        }
        let t =
            Template::compile(v.get_ref()).map_err(|m| src.at(v, format!("header {k}: {m}")))?;
        headers.push((k.clone(), t));
    }
    let body = match &q.body {
        Some(v) => {
            let json = serde_json::to_value(v.get_ref())
                .map_err(|e| src.at(v, format!("body cannot be written as JSON: {e}")))?;
            Some(JsonTemplate::compile(&json).map_err(|m| src.at(v, format!("body: {m}")))?)
        }
        None => None,
    };
    let weight = match &q.weight {
        Some(w) => {
            let v = *w.get_ref();
            if !(1..=1_000_000).contains(&v) {
                return Err(src.at(w, format!("weight = {v} must be between 1 and 1000000")));
            }
            v as u32
        }
        None => 1,
    };
    let mut expect_status = Vec::new();
    if let Some(s) = &q.expect_status {
        let statuses = match s.get_ref() {
            StatusList::One(x) => vec![*x],
            StatusList::Many(v) => v.clone(),
        };
        for x in statuses {
            if !(100..=599).contains(&x) {
                return Err(src.at(
                    s,
                    format!("expect_status {x} is not an HTTP status (100..599)"),
                ));
            }
            expect_status.push(x as u16);
        }
    }
    Ok(RequestSpec {
        name: q.name.get_ref().clone(),
        method,
        path_src: path_src.clone(),
        path,
        headers,
        body,
        weight,
        expect_status,
    })
}

/// A latency threshold: a positive number of milliseconds.
fn ms(src: &Source, field: &str, v: Option<&Spanned<f64>>) -> Result<Option<f64>, ScenarioError> {
    match v {
        Some(s) if !s.get_ref().is_finite() || *s.get_ref() <= 0.0 => Err(src.at(
            s,
            format!(
                "slo {field} = {} must be a positive number of milliseconds",
                s.get_ref()
            ),
        )),
        v => Ok(v.map(|s| *s.get_ref())),
    }
}

fn latency(src: &Source, prefix: &str, l: &RawLatency) -> Result<LatencySlo, ScenarioError> {
    Ok(LatencySlo {
        p50_ms: ms(src, &format!("{prefix}p50_ms"), l.p50_ms.as_ref())?,
        p95_ms: ms(src, &format!("{prefix}p95_ms"), l.p95_ms.as_ref())?,
        p99_ms: ms(src, &format!("{prefix}p99_ms"), l.p99_ms.as_ref())?,
    })
}

fn slos(src: &Source, r: &RawSlo, requests: &[RequestSpec]) -> Result<Slos, ScenarioError> {
    let overall = LatencySlo {
        p50_ms: ms(src, "p50_ms", r.p50_ms.as_ref())?,
        p95_ms: ms(src, "p95_ms", r.p95_ms.as_ref())?,
        p99_ms: ms(src, "p99_ms", r.p99_ms.as_ref())?,
    };
    let error_rate = r.error_rate.as_ref().map(|e| (e, *e.get_ref()));
    if let Some((s, e)) = error_rate {
        if !(0.0..=1.0).contains(&e) {
            return Err(src.at(
                s,
                format!("slo error_rate = {e} must be a fraction between 0 and 1 (0.01 = 1 %)"),
            ));
        }
    }
    let min_rps = r.min_rps.as_ref().map(|m| (m, *m.get_ref()));
    if let Some((s, m)) = min_rps {
        if !m.is_finite() || m < 0.0 {
            return Err(src.at(s, format!("slo min_rps = {m} must be ≥ 0")));
        }
    }
    let mut per_request = Vec::new();
    for (name, l) in &r.request {
        if !requests.iter().any(|q| &q.name == name) {
            let names: Vec<&str> = requests.iter().map(|q| q.name.as_str()).collect();
            return Err(src.at(
                l,
                format!(
                    "[slo.request.{name}] names no request: use one of {}",
                    names.join(", ")
                ),
            ));
        }
        per_request.push((
            name.clone(),
            latency(src, &format!("request.{name}."), l.get_ref())?,
        ));
    }
    let windowed = r
        .windowed
        .as_ref()
        .map(|w| windowed(src, w.get_ref()))
        .transpose()?;
    let drift = r
        .drift
        .as_ref()
        .map(|d| drift(src, d.get_ref(), windowed.map(|w| w.0)))
        .transpose()?;
    Ok(Slos {
        overall,
        p95_excluding_cold_starts_ms: ms(
            src,
            "p95_excluding_cold_starts_ms",
            r.p95_excluding_cold_starts_ms.as_ref(),
        )?,
        error_rate: error_rate.map(|e| e.1),
        min_rps: min_rps.map(|m| m.1),
        per_request,
        windowed,
        drift,
    })
}

fn windowed(src: &Source, w: &RawWindowed) -> Result<(Duration, f64), ScenarioError> {
    let d = src.duration("slo.windowed.window", &w.window)?;
    if d < Duration::from_secs(1) {
        return Err(src.at(&w.window, "slo.windowed.window must be at least 1s"));
    }
    let p95 = ms(src, "windowed.p95_ms", Some(&w.p95_ms))?.unwrap_or(*w.p95_ms.get_ref());
    Ok((d, p95))
}

/// The drift window defaults to the windowed SLO's, else a minute.
fn drift(
    src: &Source,
    d: &RawDrift,
    windowed: Option<Duration>,
) -> Result<(Duration, f64), ScenarioError> {
    let w = match &d.window {
        Some(s) => {
            let w = src.duration("slo.drift.window", s)?;
            if w < Duration::from_secs(1) {
                return Err(src.at(s, "slo.drift.window must be at least 1s"));
            }
            w
        }
        None => windowed.unwrap_or(Duration::from_secs(60)),
    };
    let ratio = *d.max_ratio.get_ref();
    if !ratio.is_finite() || ratio <= 0.0 {
        return Err(src.at(
            &d.max_ratio,
            format!("slo.drift.max_ratio = {ratio} must be above 0 (1.5 = 50 % slower allowed)"),
        ));
    }
    Ok((w, ratio))
}

//! What is compared: the inputs checked against each other, and the scopes (overall, then every
//! request of the current run) with each side's latency histogram and counts.

use std::path::Path;

use hdrhistogram::Histogram;

use crate::engine::record::decode_hist;
use crate::report::{InputError, Loaded, Report, Verdict};

/// One side's data for one scope: the latency histogram, requests and errors.
pub(super) struct Sample {
    pub hist: Histogram<u64>,
    pub requests: u64,
    pub errors: u64,
}

/// `overall`, or one request name.
pub(super) struct Scope {
    pub id: String,
    pub request: Option<String>,
    /// One per baseline run that has this scope.
    pub baseline: Vec<Sample>,
    pub current: Sample,
}

pub(super) fn decode(h: &str, file: &Path, what: &str) -> Result<Histogram<u64>, InputError> {
    decode_hist(h).ok_or_else(|| {
        InputError::new(
            file,
            format!("{what}: the histogram is not HdrHistogram V2+deflate base64"),
        )
    })
}

/// The scenario every input ran, or the first file that ran another one.
pub(super) fn same_scenario(baseline: &[Loaded], current: &Loaded) -> Result<String, InputError> {
    if baseline.is_empty() {
        return Err(InputError::new(
            &current.path,
            "no baseline report to compare with",
        ));
    }
    let scenario = current.report.scenario.name.clone();
    for b in baseline {
        if b.report.scenario.name != scenario {
            return Err(InputError::new(
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
    Ok(scenario)
}

/// What may make the numbers mislead: invalid runs, and runs that asked for different rates.
pub(super) fn input_warnings(baseline: &[Loaded], current: &Loaded) -> Vec<String> {
    let mut warnings = Vec::new();
    for l in baseline.iter().chain(std::iter::once(current)) {
        if l.report.verdict == Verdict::Invalid {
            warnings.push(format!(
                "{} is an invalid run ({}); its numbers may not mean what they seem",
                l.path.display(),
                l.report.invalid_reasons.join("; ")
            ));
        }
    }
    let cur_rate = current.report.load.hold_target_rps;
    let base_rate = baseline
        .first()
        .map_or(0.0, |b| b.report.load.hold_target_rps);
    if base_rate > 0.0 && ((cur_rate / base_rate) - 1.0).abs() > 0.01 {
        warnings.push(format!(
            "the runs asked for different rates ({base_rate:.1} rps in the baseline, {cur_rate:.1} rps now): throughput and latency changes may come from that"
        ));
    }
    warnings
}

fn overall_sample(l: &Loaded) -> Result<Sample, InputError> {
    Ok(Sample {
        hist: decode(&l.report.latency.histogram, &l.path, "latency")?,
        requests: l.report.totals.requests,
        errors: l.report.totals.errors,
    })
}

/// Overall, then every request name the current run has (compared with the baseline runs that
/// have it; a baseline run without it is named in `warnings`).
pub(super) fn scopes(
    baseline: &[Loaded],
    current: &Loaded,
    warnings: &mut Vec<String>,
) -> Result<Vec<Scope>, InputError> {
    let mut scopes = vec![Scope {
        id: "overall".into(),
        request: None,
        baseline: baseline
            .iter()
            .map(overall_sample)
            .collect::<Result<_, _>>()?,
        current: overall_sample(current)?,
    }];
    for rq in &current.report.requests {
        let what = format!("requests.{}.latency", rq.name);
        let mut base = Vec::new();
        for b in baseline {
            match b.report.requests.iter().find(|x| x.name == rq.name) {
                Some(x) => base.push(Sample {
                    hist: decode(&x.latency.histogram, &b.path, &what)?,
                    requests: x.requests,
                    errors: x.errors,
                }),
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
            current: Sample {
                hist: decode(&rq.latency.histogram, &current.path, &what)?,
                requests: rq.requests,
                errors: rq.errors,
            },
        });
    }
    Ok(scopes)
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

/// The seconds a run was planned to last (what per-request rates are taken over), not the
/// wall time, which includes waiting for the last answers.
pub(super) fn planned_seconds(r: &Report) -> f64 {
    let s: f64 = r.scenario.stages.iter().map(|s| s.ramp_s + s.hold_s).sum();
    if s > 0.0 {
        s
    } else {
        r.duration_s.max(1e-9)
    }
}

//! `loadtest merge A.json B.json … --out DIR`: one report from the shards of a run spread over
//! several machines (`loadtest run --shard I/N` on each).
//!
//! Exact where the data allows: histograms are added bucket by bucket (the HDR encoding keeps
//! every count), counts and status codes are summed, and timelines are aligned by wall-clock
//! second (each shard's second 0 lands at its start rounded to the nearest second after the
//! earliest shard's start). The SLOs are judged again on the merged data by the rules each
//! report carries (`slo_rules`), with the throughput floor summed over the shards. What cannot be
//! merged exactly is said here: send lag is the worst shard's, and `instances_seen` the largest
//! count any shard saw (instance ids are not in the report).

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, SecondsFormat, Utc};

use crate::engine::{Pacing, Recorder};
use crate::report::{
    self, EmulatorSection, HoldInfo, InputError, Latency, LoadInfo, Loaded, Report, RequestReport,
    ScenarioInfo, SloRules, StageInfo, Verdict,
};
use crate::scenario::{fmt_dur, fmt_num};
use crate::slo::{self, SloResult};

mod sum;
#[cfg(test)]
mod tests;

use sum::Sums;

fn rfc3339(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn load_line(stages: &[StageInfo]) -> String {
    let total: f64 = stages.iter().map(|s| s.ramp_s + s.hold_s).sum();
    let parts: Vec<String> = stages
        .iter()
        .map(|s| {
            let mut p = vec![format!("{} rps", fmt_num(s.rps))];
            if s.ramp_s > 0.0 {
                p.push(format!(
                    "ramp {}",
                    fmt_dur(std::time::Duration::from_secs_f64(s.ramp_s))
                ));
            }
            if s.hold_s > 0.0 {
                p.push(format!(
                    "hold {}",
                    fmt_dur(std::time::Duration::from_secs_f64(s.hold_s))
                ));
            }
            p.join(" ")
        })
        .collect();
    format!(
        "{} ({} total)",
        parts.join(" → "),
        fmt_dur(std::time::Duration::from_secs_f64(total))
    )
}

/// Shards of one run start within this long of each other.
const MAX_START_SPREAD_MS: i64 = 3_600_000;

/// Checks that the inputs are shards of one run: same scenario, no shard twice, same count.
fn check(inputs: &[Loaded]) -> Result<Vec<String>, InputError> {
    let mut warnings = Vec::new();
    let first = &inputs[0];
    let name = &first.report.scenario.name;
    let mut seen: BTreeMap<u32, &Loaded> = BTreeMap::new();
    let mut count = None;
    for l in inputs {
        let r = &l.report;
        if &r.scenario.name != name {
            return Err(InputError::new(
                &l.path,
                format!(
                    "scenario {:?}, but {} ran {name:?}: merge shards of the same scenario",
                    r.scenario.name,
                    first.path.display()
                ),
            ));
        }
        if r.slo_rules.is_none() {
            return Err(InputError::new(
                &l.path,
                "no slo_rules: written by an older loadtest; re-run the shard with this version",
            ));
        }
        if let Some(sh) = r.shard {
            if count.is_some_and(|c| c != sh.count) {
                return Err(InputError::new(
                    &l.path,
                    format!(
                        "shard {}/{} does not belong with shards of {} (different N)",
                        sh.index,
                        sh.count,
                        count.unwrap_or(0)
                    ),
                ));
            }
            count = Some(sh.count);
            if let Some(other) = seen.insert(sh.index, l) {
                return Err(InputError::new(
                    &l.path,
                    format!(
                        "shard {}/{} is also {}: a shard merged twice would count its requests twice",
                        sh.index,
                        sh.count,
                        other.path.display()
                    ),
                ));
            }
        }
    }
    // Each shard's timeline is placed by its start: shards far apart would make a timeline of
    // all the seconds between them (and are not one run).
    for l in inputs {
        let apart = (l.report.started_unix_ms - first.report.started_unix_ms).abs();
        if apart > MAX_START_SPREAD_MS {
            return Err(InputError::new(
                &l.path,
                format!(
                    "field `started_unix_ms`: {:.0} s apart from {}; shards of one run start within {} s of each other",
                    apart as f64 / 1000.0,
                    first.path.display(),
                    MAX_START_SPREAD_MS / 1000
                ),
            ));
        }
    }
    if let Some(n) = count {
        let missing: Vec<String> = (1..=n)
            .filter(|i| !seen.contains_key(i))
            .map(|i| format!("{i}/{n}"))
            .collect();
        if !missing.is_empty() {
            warnings.push(format!(
                "shards {} are missing: the merged load is short of the scenario's",
                missing.join(", ")
            ));
        }
    }
    Ok(warnings)
}

/// Merges shard reports into one, judged on the merged data. The caller loads the inputs
/// (see [`report::load_report`]) so every error can name its file.
pub fn merge(inputs: &[Loaded]) -> Result<(Report, Vec<String>), InputError> {
    let Some(first) = inputs.first() else {
        return Err(InputError {
            file: "-".into(),
            message: "no reports to merge".into(),
        });
    };
    let warnings = check(inputs)?;
    let t0 = inputs
        .iter()
        .map(|l| l.report.started_unix_ms)
        .min()
        .unwrap_or(0);
    let t1 = inputs
        .iter()
        .map(|l| l.report.ended_unix_ms)
        .max()
        .unwrap_or(t0);
    let offsets: Vec<usize> = inputs
        .iter()
        .map(|l| ((l.report.started_unix_ms - t0) as f64 / 1000.0).round() as usize)
        .collect();
    let mut sums = Sums::new(inputs, &offsets);
    for (l, off) in inputs.iter().zip(&offsets) {
        sums.add(l, *off)?;
    }
    sums.totals.error_rate = if sums.totals.requests > 0 {
        sums.totals.errors as f64 / sums.totals.requests as f64
    } else {
        0.0
    };
    let load = merged_load(inputs);
    let (rules, mut slos) = judge(inputs, &sums, load.achieved_rps);
    slos.push(slo::saturation(&load.pacing));
    let verdict = if !sums.invalid.is_empty() {
        Verdict::Invalid
    } else if slos.iter().any(|s| !s.passed) {
        Verdict::Fail
    } else {
        Verdict::Pass
    };
    let targets: HashSet<&str> = inputs.iter().map(|l| l.report.target.as_str()).collect();
    let mut targets: Vec<&str> = targets.into_iter().collect();
    targets.sort();
    let report = Report {
        schema_version: report::SCHEMA_VERSION,
        tool: first.report.tool.clone(),
        scenario: merged_scenario(inputs),
        target: targets.join(" "),
        started_at: rfc3339(t0),
        ended_at: rfc3339(t1),
        started_unix_ms: t0,
        ended_unix_ms: t1,
        duration_s: (t1 - t0).max(0) as f64 / 1000.0,
        interrupted: sums.interrupted,
        verdict,
        invalid_reasons: std::mem::take(&mut sums.invalid),
        load,
        totals: sums.totals.clone(),
        status_codes: std::mem::take(&mut sums.codes),
        latency: Latency::from_hist(&sums.overall),
        service_time: Latency::from_hist(&sums.service),
        requests: merged_requests(inputs, &sums),
        timeline: sums.timeline(),
        slos,
        emulator: merged_emulator(inputs, &sums),
        slo_rules: Some(rules),
        shard: None,
        merged_from: std::mem::take(&mut sums.merged_from),
    };
    Ok((report, warnings))
}

fn sum_over(inputs: &[Loaded], f: impl Fn(&Report) -> f64) -> f64 {
    inputs.iter().map(|l| f(&l.report)).sum()
}

/// Rates of concurrent shards add up; send lag is the worst shard's.
fn merged_load(inputs: &[Loaded]) -> LoadInfo {
    let first = &inputs[0];
    let achieved_rps = sum_over(inputs, |r| r.load.achieved_rps);
    let hold_target_rps = sum_over(inputs, |r| r.load.hold_target_rps);
    let holds: Vec<HoldInfo> = first
        .report
        .load
        .holds
        .iter()
        .enumerate()
        .map(|(i, h)| HoldInfo {
            target_rps: sum_over(inputs, |r| {
                r.load.holds.get(i).map_or(0.0, |x| x.target_rps)
            }),
            achieved_rps: sum_over(inputs, |r| {
                r.load.holds.get(i).map_or(0.0, |x| x.achieved_rps)
            }),
            ..h.clone()
        })
        .collect();
    LoadInfo {
        target_rps: sum_over(inputs, |r| r.load.target_rps),
        achieved_rps,
        hold_target_rps,
        achieved_ratio: if hold_target_rps > 0.0 {
            achieved_rps / hold_target_rps
        } else {
            0.0
        },
        planned_requests: inputs.iter().map(|l| l.report.load.planned_requests).sum(),
        sent_requests: inputs.iter().map(|l| l.report.load.sent_requests).sum(),
        users: inputs.iter().map(|l| l.report.load.users).sum(),
        send_lag_p99_ms: inputs
            .iter()
            .map(|l| l.report.load.send_lag_p99_ms)
            .fold(0.0, f64::max),
        send_lag_max_ms: inputs
            .iter()
            .map(|l| l.report.load.send_lag_max_ms)
            .fold(0.0, f64::max),
        holds,
        pacing: merged_pacing(inputs),
    }
}

/// Shards run side by side: their caps, peaks (an upper bound of the merged peak) and late
/// sends add up.
fn merged_pacing(inputs: &[Loaded]) -> Pacing {
    let sum = |f: fn(&Pacing) -> u64| inputs.iter().map(|l| f(&l.report.load.pacing)).sum();
    Pacing {
        max_in_flight: inputs
            .iter()
            .map(|l| l.report.load.pacing.max_in_flight)
            .sum(),
        max_in_flight_basis: format!("the sum over {} shards", inputs.len()),
        open_file_limit: inputs
            .iter()
            .filter_map(|l| l.report.load.pacing.open_file_limit)
            .min(),
        peak_in_flight: sum(|p| p.peak_in_flight),
        not_sent_target_saturated: sum(|p| p.not_sent_target_saturated),
        sent_late_by_generator: sum(|p| p.sent_late_by_generator),
    }
}

/// Judges the merged data with the shards' rules (throughput floor summed).
fn judge(inputs: &[Loaded], sums: &Sums, achieved_rps: f64) -> (SloRules, Vec<SloResult>) {
    let mut rules = inputs[0].report.slo_rules.clone().unwrap_or_default();
    rules.min_rps = inputs
        .iter()
        .map(|l| l.report.slo_rules.as_ref().and_then(|r| r.min_rps))
        .sum::<Option<f64>>();
    let mut rec = Recorder::new(sums.names.len(), vec![]);
    rec.overall = sums.overall.clone();
    rec.excluding_cold = sums.excluding_cold.clone();
    rec.service = sums.service.clone();
    rec.per_request = sums.per_request.clone();
    rec.requests = sums.totals.requests;
    rec.errors = sums.totals.errors;
    rec.transport_errors = sums.totals.transport_errors;
    rec.cold_starts = sums.totals.cold_start_responses;
    rec.seconds = sums.judged_seconds();
    let slos = slo::evaluate(&rules.to_slos(), &rec, &sums.names, achieved_rps);
    (rules, slos)
}

/// The first shard's scenario with every stage's rate summed over the shards.
fn merged_scenario(inputs: &[Loaded]) -> ScenarioInfo {
    let mut scenario = inputs[0].report.scenario.clone();
    for (i, st) in scenario.stages.iter_mut().enumerate() {
        st.rps = sum_over(inputs, |r| r.scenario.stages.get(i).map_or(0.0, |x| x.rps));
    }
    scenario.rps_factor = sum_over(inputs, |r| r.scenario.rps_factor);
    scenario.load = load_line(&scenario.stages);
    scenario
}

fn merged_requests(inputs: &[Loaded], sums: &Sums) -> Vec<RequestReport> {
    sums.names
        .iter()
        .zip(&sums.per_request)
        .zip(&sums.request_codes)
        .map(|((name, s), codes)| {
            let spec = inputs
                .iter()
                .find_map(|l| l.report.requests.iter().find(|q| &q.name == name));
            RequestReport {
                name: name.clone(),
                method: spec.map(|q| q.method.clone()).unwrap_or_default(),
                path: spec.map(|q| q.path.clone()).unwrap_or_default(),
                requests: s.requests,
                errors: s.errors,
                transport_errors: s.transport_errors,
                error_rate: if s.requests > 0 {
                    s.errors as f64 / s.requests as f64
                } else {
                    0.0
                },
                cold_start_responses: s.cold_starts,
                status_codes: codes.clone(),
                latency: Latency::from_hist(&s.hist),
            }
        })
        .collect()
}

/// What emu saw, as far as shards can be joined: `instances_seen` is the largest count any
/// shard saw (instance ids are not in the report).
fn merged_emulator(inputs: &[Loaded], sums: &Sums) -> EmulatorSection {
    EmulatorSection {
        detected: inputs.iter().any(|l| l.report.emulator.detected),
        instances_seen: inputs
            .iter()
            .map(|l| l.report.emulator.instances_seen)
            .max()
            .unwrap_or(0),
        cold_start_responses: inputs
            .iter()
            .map(|l| l.report.emulator.cold_start_responses)
            .sum(),
        latency_excluding_cold_starts: Latency::from_hist(&sums.excluding_cold),
        status: inputs.iter().find_map(|l| l.report.emulator.status.clone()),
        error: inputs.iter().find_map(|l| l.report.emulator.error.clone()),
        observed: inputs
            .iter()
            .find_map(|l| l.report.emulator.observed.clone()),
    }
}

//! The report of a run, assembled and judged from what the engine recorded and emu returned.

use std::collections::BTreeMap;
use std::time::SystemTime;

use chrono::{DateTime, SecondsFormat, Utc};

use super::{Prepared, MIN_ACHIEVED_RATIO};
use crate::engine::{record, EngineResult, Recorder, Schedule};
use crate::report::{
    self, EmulatorSection, HoldInfo, Latency, LoadInfo, Report, RequestInfo, RequestReport,
    ScenarioInfo, SloRules, StageInfo, TimelineItem, ToolInfo, Totals, Verdict,
};
use crate::scenario::Scenario;
use crate::slo;

pub(super) fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn rfc3339(t: SystemTime) -> String {
    DateTime::<Utc>::from(t).to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Judges and assembles the report from what the engine and emu returned. `invalid` holds the
/// reasons found before any traffic (an unreachable target).
pub fn build_report(
    p: &Prepared,
    r: EngineResult,
    emulator: EmulatorSection,
    mut invalid: Vec<String>,
) -> Report {
    let sc = &p.scenario;
    let schedule = Schedule::new(&sc.stages);
    let rec = &r.recorder;
    let load = load_info(sc, &schedule, &r);
    let reachable = invalid.is_empty();
    invalid.extend(invalid_reasons(&r, &load, reachable));
    let names: Vec<String> = sc.requests.iter().map(|q| q.name.clone()).collect();
    let mut slos = slo::evaluate(&sc.slos, rec, &names, load.achieved_rps);
    if reachable {
        slos.push(slo::saturation(&load.pacing));
    }
    let verdict = if !invalid.is_empty() {
        Verdict::Invalid
    } else if slos.iter().any(|s| !s.passed) {
        Verdict::Fail
    } else {
        Verdict::Pass
    };
    Report {
        schema_version: report::SCHEMA_VERSION,
        tool: ToolInfo {
            name: "loadtest".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        },
        scenario: scenario_info(p),
        target: p.target.clone(),
        started_at: rfc3339(r.started),
        ended_at: rfc3339(r.ended),
        started_unix_ms: unix_ms(r.started),
        ended_unix_ms: unix_ms(r.ended),
        duration_s: r
            .ended
            .duration_since(r.started)
            .unwrap_or_default()
            .as_secs_f64(),
        interrupted: r.interrupted,
        verdict,
        invalid_reasons: invalid,
        load,
        totals: Totals {
            requests: rec.requests,
            ok: rec.requests - rec.errors,
            errors: rec.errors,
            transport_errors: rec.transport_errors,
            error_rate: rate(rec.errors, rec.requests),
            cold_start_responses: rec.cold_starts,
        },
        status_codes: codes(&rec.status),
        latency: Latency::from_hist(&rec.overall),
        service_time: Latency::from_hist(&rec.service),
        requests: request_reports(sc, rec),
        timeline: timeline(&schedule, &r),
        slos,
        emulator,
        slo_rules: Some(SloRules::from_slos(&sc.slos)),
        shard: p.shard,
        merged_from: Vec::new(),
    }
}

fn codes(m: &BTreeMap<u16, u64>) -> BTreeMap<String, u64> {
    m.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

fn rate(e: u64, n: u64) -> f64 {
    if n > 0 {
        e as f64 / n as f64
    } else {
        0.0
    }
}

/// The rate asked and sent over the holds (over the whole run when there is none).
fn load_info(sc: &Scenario, schedule: &Schedule, r: &EngineResult) -> LoadInfo {
    let rec = &r.recorder;
    let holds = schedule.holds();
    let hold_infos: Vec<HoldInfo> = holds
        .iter()
        .enumerate()
        .map(|(i, h)| HoldInfo {
            stage: h.stage,
            start_s: h.start,
            end_s: h.end,
            target_rps: h.rps,
            achieved_rps: rec.hold_sent.get(i).copied().unwrap_or(0) as f64 / (h.end - h.start),
        })
        .collect();
    let (achieved_rps, hold_target_rps) = if holds.is_empty() {
        let secs = schedule.duration().as_secs_f64().max(1e-9);
        (rec.requests as f64 / secs, schedule.total() as f64 / secs)
    } else {
        let secs: f64 = holds.iter().map(|h| h.end - h.start).sum();
        let sent: u64 = rec.hold_sent.iter().sum();
        let planned: f64 = holds.iter().map(|h| h.rps * (h.end - h.start)).sum();
        (sent as f64 / secs, planned / secs)
    };
    LoadInfo {
        target_rps: sc.peak_rps(),
        achieved_rps,
        hold_target_rps,
        achieved_ratio: if hold_target_rps > 0.0 {
            achieved_rps / hold_target_rps
        } else {
            0.0
        },
        planned_requests: r.planned,
        sent_requests: r.sent,
        users: r.users,
        send_lag_p99_ms: record::pct_ms(&rec.send_lag, 0.99).unwrap_or(0.0),
        send_lag_max_ms: if !rec.send_lag.is_empty() {
            rec.send_lag.max() as f64 / 1000.0
        } else {
            0.0
        },
        holds: hold_infos,
        pacing: r.pacing.clone(),
    }
}

/// Why the run does not count, found after it: the generator failed, Ctrl-C, the rate was not
/// held, nothing completed.
fn invalid_reasons(r: &EngineResult, load: &LoadInfo, reachable: bool) -> Vec<String> {
    let rec = &r.recorder;
    let mut invalid = Vec::new();
    if let Some(e) = &r.goose_error {
        invalid.push(format!("the load generator failed: {e}"));
    }
    if r.interrupted {
        invalid.push("interrupted (Ctrl-C) before the schedule finished".into());
    }
    if reachable && r.goose_error.is_none() && !r.interrupted {
        // A shortfall the target caused (it held every allowed request) is its SLO failure
        // (`not_sent_target_saturated`); only one the generator caused makes the run invalid.
        let pacing = &load.pacing;
        if load.achieved_ratio < MIN_ACHIEVED_RATIO
            && pacing.sent_late_by_generator >= pacing.not_sent_target_saturated
        {
            invalid.push(format!(
                "achieved {:.1} rps over the hold, {:.1} % of the {:.1} rps asked (at least {:.0} % needed): the generator could not keep up (send lag p99 {:.1} ms; {} sends late through the generator's own timer or CPU, {} through the target; at most {} of max_in_flight = {} in flight): use a bigger or less busy machine, or split the load with --shard",
                load.achieved_rps,
                load.achieved_ratio * 100.0,
                load.hold_target_rps,
                MIN_ACHIEVED_RATIO * 100.0,
                record::pct_ms(&rec.send_lag, 0.99).unwrap_or(0.0),
                pacing.sent_late_by_generator,
                pacing.not_sent_target_saturated,
                pacing.peak_in_flight,
                pacing.max_in_flight,
            ));
        } else if rec.requests == 0 {
            invalid.push("no request completed".into());
        }
    }
    invalid
}

/// Every second of the plan (and any the run overran into), empty ones included.
fn timeline(schedule: &Schedule, r: &EngineResult) -> Vec<TimelineItem> {
    let rec = &r.recorder;
    let planned_secs = schedule.duration().as_secs_f64().ceil() as usize;
    let n_secs = if r.sent == 0 {
        0
    } else {
        rec.seconds.len().max(planned_secs)
    };
    (0..n_secs)
        .map(|s| {
            let target_rps = schedule.planned_between(s as f64, s as f64 + 1.0);
            match rec.seconds.get(s) {
                Some(sec) => {
                    let [p50, p95, p99, max] = sec.percentiles();
                    TimelineItem {
                        second: s as u64,
                        target_rps,
                        requests: sec.requests,
                        errors: sec.errors,
                        rps: sec.requests as f64,
                        p50_ms: p50,
                        p95_ms: p95,
                        p99_ms: p99,
                        max_ms: max,
                        cold_starts: sec.cold_starts,
                        histogram: sec.encoded(),
                    }
                }
                None => TimelineItem {
                    second: s as u64,
                    target_rps,
                    requests: 0,
                    errors: 0,
                    rps: 0.0,
                    p50_ms: 0.0,
                    p95_ms: 0.0,
                    p99_ms: 0.0,
                    max_ms: 0.0,
                    cold_starts: 0,
                    histogram: record::encode_hist(&record::new_hist(2)),
                },
            }
        })
        .collect()
}

fn scenario_info(p: &Prepared) -> ScenarioInfo {
    let sc = &p.scenario;
    ScenarioInfo {
        name: sc.name.clone(),
        description: sc.description.clone(),
        source: sc.source.display().to_string(),
        load: sc.load_summary(),
        stages: sc
            .stages
            .iter()
            .map(|s| StageInfo {
                rps: s.rps,
                ramp_s: s.ramp.as_secs_f64(),
                hold_s: s.hold.as_secs_f64(),
            })
            .collect(),
        requests: sc
            .requests
            .iter()
            .map(|q| RequestInfo {
                name: q.name.clone(),
                method: q.method.as_str().into(),
                path: q.path_src.clone(),
                weight: q.weight,
            })
            .collect(),
        duration_factor: p.duration_factor,
        rps_factor: p.rps_factor,
    }
}

fn request_reports(sc: &Scenario, rec: &Recorder) -> Vec<RequestReport> {
    sc.requests
        .iter()
        .zip(&rec.per_request)
        .map(|(q, s)| RequestReport {
            name: q.name.clone(),
            method: q.method.as_str().into(),
            path: q.path_src.clone(),
            requests: s.requests,
            errors: s.errors,
            transport_errors: s.transport_errors,
            error_rate: rate(s.errors, s.requests),
            cold_start_responses: s.cold_starts,
            status_codes: codes(&s.status),
            latency: Latency::from_hist(&s.hist),
        })
        .collect()
}

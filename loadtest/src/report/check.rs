//! What a `report.json` must hold beyond its shape before `compare`, `merge` or the renderers
//! may trust it: every histogram decodes, every number is finite and in range, counts agree,
//! the timeline has one item per second in order. `loadtest run` writes nothing else, so a file
//! that fails here was edited or cut; the error names the field, so the reader knows which.
//!
//! Hand-written rather than JSON-Schema-validated at run time: the limits here are what the
//! code below relies on (a second index used to place a histogram, a duration turned into a
//! `Duration`), which a schema cannot say.

use super::{Latency, Report};
use crate::engine::record::decode_hist;
use crate::scenario::MAX_DURATION;

/// The latest instant a report may name: 9999-12-31, far beyond any run, far below overflow.
const MAX_UNIX_MS: i64 = 253_402_300_799_999;
/// A run (and each of its windows and timelines) lasts at most this long, plus a margin for the
/// request timeout and the tail.
fn max_secs() -> f64 {
    MAX_DURATION.as_secs_f64() + 86_400.0
}

/// A field that is wrong and why.
pub type Bad = (String, String);

fn bad(field: impl Into<String>, why: impl Into<String>) -> Bad {
    (field.into(), why.into())
}

/// A finite number in `[0, max]`.
fn number(field: &str, v: f64, max: f64) -> Result<(), Bad> {
    if v.is_finite() && (0.0..=max).contains(&v) {
        Ok(())
    } else {
        Err(bad(field, format!("{v} is out of range (0 to {max})")))
    }
}

/// Most requests a report may count: 100000 rps for 30 days is 2.6e11; sums of many such
/// stay far from overflow.
const MAX_COUNT: u64 = 1_000_000_000_000_000;

fn count(field: &str, v: u64) -> Result<(), Bad> {
    if v <= MAX_COUNT {
        Ok(())
    } else {
        Err(bad(field, format!("{v} is more than any run counts")))
    }
}

fn codes(field: &str, m: &std::collections::BTreeMap<String, u64>) -> Result<(), Bad> {
    for (k, v) in m {
        count(&format!("{field}.{k}"), *v)?;
    }
    Ok(())
}

fn hist(field: &str, encoded: &str) -> Result<(), Bad> {
    decode_hist(encoded)
        .map(|_| ())
        .ok_or_else(|| bad(field, "not a base64 HdrHistogram (V2 + deflate)"))
}

fn latency(field: &str, l: &Latency) -> Result<(), Bad> {
    for (name, v) in [
        ("min_ms", l.min_ms),
        ("mean_ms", l.mean_ms),
        ("p50_ms", l.p50_ms),
        ("p90_ms", l.p90_ms),
        ("p95_ms", l.p95_ms),
        ("p99_ms", l.p99_ms),
        ("p999_ms", l.p999_ms),
        ("max_ms", l.max_ms),
    ] {
        number(&format!("{field}.{name}"), v, 1e12)?;
    }
    hist(&format!("{field}.histogram"), &l.histogram)
}

/// Checks everything `compare`, `merge` and the renderers rely on; the first bad field.
pub fn check(r: &Report) -> Result<(), Bad> {
    run_info(r)?;
    totals(r)?;
    latency("latency", &r.latency)?;
    latency("service_time", &r.service_time)?;
    latency(
        "emulator.latency_excluding_cold_starts",
        &r.emulator.latency_excluding_cold_starts,
    )?;
    let mut names = std::collections::HashSet::new();
    for (i, q) in r.requests.iter().enumerate() {
        latency(&format!("requests[{i}].latency"), &q.latency)?;
        number(&format!("requests[{i}].error_rate"), q.error_rate, 1.0)?;
        if !names.insert(q.name.as_str()) {
            return Err(bad(
                format!("requests[{i}].name"),
                format!("{:?} is listed twice", q.name),
            ));
        }
        count(&format!("requests[{i}].requests"), q.requests)?;
        codes(&format!("requests[{i}].status_codes"), &q.status_codes)?;
        if q.errors > q.requests
            || q.transport_errors > q.requests
            || q.cold_start_responses > q.requests
        {
            return Err(bad(
                format!("requests[{i}].errors"),
                "more errors than requests",
            ));
        }
    }
    timeline(r)?;
    slos(r)?;
    if let Some(o) = &r.emulator.observed {
        for (i, s) in o.timeline.iter().enumerate() {
            number(
                &format!("emulator.observed.timeline[{i}].second"),
                s.second as f64,
                max_secs(),
            )?;
        }
    }
    Ok(())
}

/// When, how long, how scaled, which shard.
fn run_info(r: &Report) -> Result<(), Bad> {
    for (field, v) in [
        ("started_unix_ms", r.started_unix_ms),
        ("ended_unix_ms", r.ended_unix_ms),
    ] {
        if !(0..=MAX_UNIX_MS).contains(&v) {
            return Err(bad(
                field,
                format!("{v} is not a time between 1970 and 9999"),
            ));
        }
    }
    if r.ended_unix_ms < r.started_unix_ms {
        return Err(bad("ended_unix_ms", "before started_unix_ms"));
    }
    number("duration_s", r.duration_s, max_secs())?;
    for (i, s) in r.scenario.stages.iter().enumerate() {
        number(&format!("scenario.stages[{i}].rps"), s.rps, 1e7)?;
        number(
            &format!("scenario.stages[{i}].ramp_s"),
            s.ramp_s,
            max_secs(),
        )?;
        number(
            &format!("scenario.stages[{i}].hold_s"),
            s.hold_s,
            max_secs(),
        )?;
    }
    number("scenario.duration_factor", r.scenario.duration_factor, 1e9)?;
    number("scenario.rps_factor", r.scenario.rps_factor, 1e9)?;
    let l = &r.load;
    for (field, v) in [
        ("load.target_rps", l.target_rps),
        ("load.achieved_rps", l.achieved_rps),
        ("load.hold_target_rps", l.hold_target_rps),
        ("load.achieved_ratio", l.achieved_ratio),
        ("load.send_lag_p99_ms", l.send_lag_p99_ms),
        ("load.send_lag_max_ms", l.send_lag_max_ms),
    ] {
        number(field, v, 1e12)?;
    }
    for (i, h) in l.holds.iter().enumerate() {
        number(&format!("load.holds[{i}].start_s"), h.start_s, max_secs())?;
        number(&format!("load.holds[{i}].end_s"), h.end_s, max_secs())?;
        number(&format!("load.holds[{i}].target_rps"), h.target_rps, 1e7)?;
        number(
            &format!("load.holds[{i}].achieved_rps"),
            h.achieved_rps,
            1e7,
        )?;
        if h.end_s < h.start_s {
            return Err(bad(format!("load.holds[{i}].end_s"), "before its start_s"));
        }
    }
    if let Some(sh) = r.shard {
        if sh.count == 0 || sh.index == 0 || sh.index > sh.count {
            return Err(bad(
                "shard",
                format!(
                    "{}/{} is not a shard I/N with 1 ≤ I ≤ N",
                    sh.index, sh.count
                ),
            ));
        }
    }
    for (i, m) in r.merged_from.iter().enumerate() {
        number(
            &format!("merged_from[{i}].offset_s"),
            m.offset_s as f64,
            max_secs(),
        )?;
    }
    Ok(())
}

fn totals(r: &Report) -> Result<(), Bad> {
    let t = &r.totals;
    count("totals.requests", t.requests)?;
    codes("status_codes", &r.status_codes)?;
    for (field, v) in [
        ("load.planned_requests", r.load.planned_requests),
        ("load.sent_requests", r.load.sent_requests),
        ("load.users", r.load.users as u64),
        ("load.max_in_flight", r.load.pacing.max_in_flight as u64),
        ("load.peak_in_flight", r.load.pacing.peak_in_flight),
        (
            "load.not_sent_target_saturated",
            r.load.pacing.not_sent_target_saturated,
        ),
        (
            "load.sent_late_by_generator",
            r.load.pacing.sent_late_by_generator,
        ),
        ("emulator.instances_seen", r.emulator.instances_seen),
        (
            "emulator.cold_start_responses",
            r.emulator.cold_start_responses,
        ),
    ] {
        count(field, v)?;
    }
    if t.ok > t.requests
        || t.errors > t.requests
        || t.transport_errors > t.requests
        || t.cold_start_responses > t.requests
    {
        return Err(bad(
            "totals",
            format!(
                "ok {}, errors {} and transport_errors {} cannot exceed requests {}",
                t.ok, t.errors, t.transport_errors, t.requests
            ),
        ));
    }
    number("totals.error_rate", t.error_rate, 1.0)
}

/// One item per second, in order, each histogram readable.
fn timeline(r: &Report) -> Result<(), Bad> {
    if r.timeline.len() as f64 > max_secs() {
        return Err(bad(
            "timeline",
            format!("{} seconds, more than a run can last", r.timeline.len()),
        ));
    }
    for (i, s) in r.timeline.iter().enumerate() {
        if s.second != i as u64 {
            return Err(bad(
                format!("timeline[{i}].second"),
                format!("{}, but the timeline holds every second in order", s.second),
            ));
        }
        for (name, v) in [
            ("target_rps", s.target_rps),
            ("rps", s.rps),
            ("p50_ms", s.p50_ms),
            ("p95_ms", s.p95_ms),
            ("p99_ms", s.p99_ms),
            ("max_ms", s.max_ms),
        ] {
            number(&format!("timeline[{i}].{name}"), v, 1e12)?;
        }
        count(&format!("timeline[{i}].requests"), s.requests)?;
        if s.errors > s.requests || s.cold_starts > s.requests {
            return Err(bad(
                format!("timeline[{i}].errors"),
                "more errors or cold starts than requests",
            ));
        }
        hist(&format!("timeline[{i}].histogram"), &s.histogram)?;
    }
    Ok(())
}

/// Results and the rules they were judged by.
fn slos(r: &Report) -> Result<(), Bad> {
    for (i, s) in r.slos.iter().enumerate() {
        let finite = s.threshold.is_finite() && s.observed.is_none_or(f64::is_finite);
        if !finite {
            return Err(bad(
                format!("slos[{i}]"),
                "threshold or observed not finite",
            ));
        }
    }
    let Some(rules) = &r.slo_rules else {
        return Ok(());
    };
    let lat = |field: &str, l: &super::LatencyRules| -> Result<(), Bad> {
        for (n, v) in [
            ("p50_ms", l.p50_ms),
            ("p95_ms", l.p95_ms),
            ("p99_ms", l.p99_ms),
        ] {
            if let Some(v) = v {
                number(&format!("{field}.{n}"), v, 1e12)?;
            }
        }
        Ok(())
    };
    lat("slo_rules.overall", &rules.overall)?;
    for (name, l) in &rules.per_request {
        lat(&format!("slo_rules.per_request.{name}"), l)?;
    }
    for (field, v) in [
        (
            "slo_rules.p95_excluding_cold_starts_ms",
            rules.p95_excluding_cold_starts_ms,
        ),
        ("slo_rules.error_rate", rules.error_rate),
        ("slo_rules.min_rps", rules.min_rps),
    ] {
        if let Some(v) = v {
            number(field, v, 1e12)?;
        }
    }
    for (field, w) in [
        ("slo_rules.windowed", rules.windowed),
        ("slo_rules.drift", rules.drift),
    ] {
        if let Some(w) = w {
            number(&format!("{field}.window_s"), w.window_s, max_secs())?;
            number(&format!("{field}.limit"), w.limit, 1e12)?;
        }
    }
    Ok(())
}

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
use hdrhistogram::Histogram;

use crate::cli::MergeArgs;
use crate::compare::{load_report, InputError, Loaded};
use crate::engine::record::{decode_hist, encode_hist, new_hist, RequestStats, Second};
use crate::engine::Recorder;
use crate::exit;
use crate::report::{
    self, EmulatorSection, HoldInfo, Latency, LoadInfo, MergedShard, Report, RequestReport,
    StageInfo, TimelineItem, Totals, Verdict,
};
use crate::scenario::{fmt_dur, fmt_num};
use crate::slo;

fn err(l: &Loaded, message: impl Into<String>) -> InputError {
    InputError {
        file: l.path.display().to_string(),
        message: message.into(),
    }
}

fn hist(l: &Loaded, s: &str, what: &str) -> Result<Histogram<u64>, InputError> {
    decode_hist(s).ok_or_else(|| {
        err(
            l,
            format!("{what}: the histogram is not HdrHistogram V2+deflate base64"),
        )
    })
}

fn add_into(into: &mut Histogram<u64>, h: &Histogram<u64>) {
    // Auto-resizing histograms of equal or coarser precision: adding is exact.
    let _ = into.add(h);
}

fn add_codes(into: &mut BTreeMap<String, u64>, from: &BTreeMap<String, u64>) {
    for (k, v) in from {
        *into.entry(k.clone()).or_default() += v;
    }
}

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
            return Err(err(
                l,
                format!(
                    "scenario {:?}, but {} ran {name:?}: merge shards of the same scenario",
                    r.scenario.name,
                    first.path.display()
                ),
            ));
        }
        if r.slo_rules.is_none() {
            return Err(err(
                l,
                "no slo_rules: written by an older loadtest; re-run the shard with this version",
            ));
        }
        if let Some(sh) = r.shard {
            if count.is_some_and(|c| c != sh.count) {
                return Err(err(
                    l,
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
                return Err(err(
                    l,
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
/// (see [`load_report`]) so every error can name its file.
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

    // Request names: the first report's order, then any others.
    let mut names: Vec<String> = Vec::new();
    for l in inputs {
        for q in &l.report.requests {
            if !names.contains(&q.name) {
                names.push(q.name.clone());
            }
        }
    }

    let mut overall = new_hist(3);
    let mut service = new_hist(3);
    let mut excluding_cold = new_hist(3);
    let mut per_request: Vec<RequestStats> = names
        .iter()
        .map(|_| RequestStats {
            hist: new_hist(3),
            requests: 0,
            errors: 0,
            transport_errors: 0,
            cold_starts: 0,
            status: BTreeMap::new(),
        })
        .collect();
    let mut req_codes: Vec<BTreeMap<String, u64>> = vec![BTreeMap::new(); names.len()];
    let mut codes = BTreeMap::new();
    let n_secs = inputs
        .iter()
        .zip(&offsets)
        .map(|(l, o)| o + l.report.timeline.len())
        .max()
        .unwrap_or(0);
    struct Sec {
        hist: Histogram<u64>,
        requests: u64,
        errors: u64,
        cold: u64,
        target: f64,
    }
    let mut secs: Vec<Sec> = (0..n_secs)
        .map(|_| Sec {
            hist: new_hist(2),
            requests: 0,
            errors: 0,
            cold: 0,
            target: 0.0,
        })
        .collect();
    let mut totals = Totals {
        requests: 0,
        ok: 0,
        errors: 0,
        transport_errors: 0,
        error_rate: 0.0,
        cold_start_responses: 0,
    };
    let mut invalid = Vec::new();
    let mut interrupted = false;
    let mut merged_from = Vec::new();
    for (l, off) in inputs.iter().zip(&offsets) {
        let r = &l.report;
        add_into(&mut overall, &hist(l, &r.latency.histogram, "latency")?);
        add_into(
            &mut service,
            &hist(l, &r.service_time.histogram, "service_time")?,
        );
        add_into(
            &mut excluding_cold,
            &hist(
                l,
                &r.emulator.latency_excluding_cold_starts.histogram,
                "emulator.latency_excluding_cold_starts",
            )?,
        );
        add_codes(&mut codes, &r.status_codes);
        totals.requests += r.totals.requests;
        totals.ok += r.totals.ok;
        totals.errors += r.totals.errors;
        totals.transport_errors += r.totals.transport_errors;
        totals.cold_start_responses += r.totals.cold_start_responses;
        for q in &r.requests {
            let i = names.iter().position(|n| n == &q.name).unwrap_or(0);
            let s = &mut per_request[i];
            add_into(
                &mut s.hist,
                &hist(
                    l,
                    &q.latency.histogram,
                    &format!("requests.{}.latency", q.name),
                )?,
            );
            s.requests += q.requests;
            s.errors += q.errors;
            s.transport_errors += q.transport_errors;
            s.cold_starts += q.cold_start_responses;
            add_codes(&mut req_codes[i], &q.status_codes);
        }
        for item in &r.timeline {
            let s = &mut secs[off + item.second as usize];
            add_into(
                &mut s.hist,
                &hist(
                    l,
                    &item.histogram,
                    &format!("timeline[{}].histogram", item.second),
                )?,
            );
            s.requests += item.requests;
            s.errors += item.errors;
            s.cold += item.cold_starts;
            s.target += item.target_rps;
        }
        interrupted |= r.interrupted;
        invalid.extend(
            r.invalid_reasons
                .iter()
                .map(|x| format!("{}: {x}", l.path.display())),
        );
        merged_from.push(MergedShard {
            file: l.path.display().to_string(),
            shard: r.shard,
            started_unix_ms: r.started_unix_ms,
            requests: r.totals.requests,
            offset_s: *off as u64,
        });
    }
    totals.error_rate = if totals.requests > 0 {
        totals.errors as f64 / totals.requests as f64
    } else {
        0.0
    };

    // Load: rates of concurrent shards add up.
    let sum = |f: &dyn Fn(&Report) -> f64| inputs.iter().map(|l| f(&l.report)).sum::<f64>();
    let achieved_rps = sum(&|r| r.load.achieved_rps);
    let hold_target_rps = sum(&|r| r.load.hold_target_rps);
    let holds: Vec<HoldInfo> = first
        .report
        .load
        .holds
        .iter()
        .enumerate()
        .map(|(i, h)| HoldInfo {
            target_rps: sum(&|r| r.load.holds.get(i).map_or(0.0, |x| x.target_rps)),
            achieved_rps: sum(&|r| r.load.holds.get(i).map_or(0.0, |x| x.achieved_rps)),
            ..h.clone()
        })
        .collect();
    let load = LoadInfo {
        target_rps: sum(&|r| r.load.target_rps),
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
    };

    // Judge the merged data with the shards' rules (throughput floor summed).
    let mut rules = first.report.slo_rules.clone().unwrap_or_default();
    rules.min_rps = inputs
        .iter()
        .map(|l| l.report.slo_rules.as_ref().and_then(|r| r.min_rps))
        .sum::<Option<f64>>();
    let mut rec = Recorder::new(names.len(), vec![]);
    rec.overall = overall.clone();
    rec.excluding_cold = excluding_cold.clone();
    rec.service = service.clone();
    rec.per_request = per_request.clone();
    rec.requests = totals.requests;
    rec.errors = totals.errors;
    rec.transport_errors = totals.transport_errors;
    rec.cold_starts = totals.cold_start_responses;
    rec.seconds = secs
        .iter()
        .map(|s| Second::from_parts(s.requests, s.errors, s.cold, s.hist.clone()))
        .collect();
    let slos = slo::evaluate(&rules.to_slos(), &rec, &names, achieved_rps);
    let verdict = if !invalid.is_empty() {
        Verdict::Invalid
    } else if slos.iter().any(|s| !s.passed) {
        Verdict::Fail
    } else {
        Verdict::Pass
    };

    let pct = |h: &Histogram<u64>, q: f64| {
        if h.is_empty() {
            0.0
        } else {
            h.value_at_quantile(q) as f64 / 1000.0
        }
    };
    let timeline = secs
        .iter()
        .enumerate()
        .map(|(i, s)| TimelineItem {
            second: i as u64,
            target_rps: s.target,
            requests: s.requests,
            errors: s.errors,
            rps: s.requests as f64,
            p50_ms: pct(&s.hist, 0.50),
            p95_ms: pct(&s.hist, 0.95),
            p99_ms: pct(&s.hist, 0.99),
            max_ms: if s.hist.is_empty() {
                0.0
            } else {
                s.hist.max() as f64 / 1000.0
            },
            cold_starts: s.cold,
            histogram: encode_hist(&s.hist),
        })
        .collect();

    let mut scenario = first.report.scenario.clone();
    for (i, st) in scenario.stages.iter_mut().enumerate() {
        st.rps = sum(&|r| r.scenario.stages.get(i).map_or(0.0, |x| x.rps));
    }
    scenario.rps_factor = sum(&|r| r.scenario.rps_factor);
    scenario.load = load_line(&scenario.stages);

    let requests = names
        .iter()
        .zip(&per_request)
        .zip(&req_codes)
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
        .collect();

    let targets: HashSet<&str> = inputs.iter().map(|l| l.report.target.as_str()).collect();
    let mut targets: Vec<&str> = targets.into_iter().collect();
    targets.sort();
    let e = |f: &dyn Fn(&EmulatorSection) -> bool| inputs.iter().any(|l| f(&l.report.emulator));
    let emulator = EmulatorSection {
        detected: e(&|x| x.detected),
        instances_seen: inputs
            .iter()
            .map(|l| l.report.emulator.instances_seen)
            .max()
            .unwrap_or(0),
        cold_start_responses: inputs
            .iter()
            .map(|l| l.report.emulator.cold_start_responses)
            .sum(),
        latency_excluding_cold_starts: Latency::from_hist(&excluding_cold),
        status: inputs.iter().find_map(|l| l.report.emulator.status.clone()),
        error: inputs.iter().find_map(|l| l.report.emulator.error.clone()),
        observed: inputs
            .iter()
            .find_map(|l| l.report.emulator.observed.clone()),
    };

    let report = Report {
        schema_version: report::SCHEMA_VERSION,
        tool: first.report.tool.clone(),
        scenario,
        target: targets.join(" "),
        started_at: rfc3339(t0),
        ended_at: rfc3339(t1),
        started_unix_ms: t0,
        ended_unix_ms: t1,
        duration_s: (t1 - t0).max(0) as f64 / 1000.0,
        interrupted,
        verdict,
        invalid_reasons: invalid,
        load,
        totals,
        status_codes: codes,
        latency: Latency::from_hist(&overall),
        service_time: Latency::from_hist(&service),
        requests,
        timeline,
        slos,
        emulator,
        slo_rules: Some(rules),
        shard: None,
        merged_from,
    };
    Ok((report, warnings))
}

/// `loadtest merge`.
pub fn merge_command(args: &MergeArgs) -> i32 {
    let bad = |e: &dyn std::fmt::Display| {
        eprintln!("loadtest: {e}");
        exit::BAD_INPUT
    };
    let mut inputs = Vec::new();
    for p in &args.reports {
        match load_report(p) {
            Ok(l) => inputs.push(l),
            Err(e) => return bad(&e),
        }
    }
    let (report, warnings) = match merge(&inputs) {
        Ok(x) => x,
        Err(e) => return bad(&e),
    };
    if let Err(e) = report::write_all(&report, &args.out) {
        return bad(&format!(
            "cannot write the merged reports to {}: {e}; pass a writable --out",
            args.out.display()
        ));
    }
    eprintln!(
        "{} (merged from {} reports)",
        report.headline(),
        inputs.len()
    );
    for w in warnings {
        eprintln!("  warning: {w}");
    }
    for reason in &report.invalid_reasons {
        eprintln!("  invalid: {reason}");
    }
    for s in report.failed_slos() {
        eprintln!(
            "  SLO failed: {} — observed {}, wanted {} {}",
            s.description,
            s.observed
                .map(|o| format!("{o:.3} {}", s.unit))
                .unwrap_or_else(|| "nothing".into()),
            s.comparison,
            s.threshold
        );
    }
    eprintln!("  reports: {}", args.out.display());
    report.verdict.exit_code()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::record::Outcome;
    use crate::engine::EngineResult;
    use crate::report::ShardInfo;
    use crate::run::{build_report, Prepared};
    use std::path::{Path, PathBuf};
    use std::time::{Duration, SystemTime};

    const SCENARIO: &str = r#"
name = "merge-unit"
[[stage]]
rps = 100
hold = "4s"
[[request]]
name = "a"
path = "/a"
weight = 1
[[request]]
name = "b"
path = "/b"
weight = 1
[slo]
p95_ms = 40
min_rps = 90
[slo.windowed]
window = "2s"
p95_ms = 45
"#;

    /// A report of `outcomes` (request, sent ms, latency ms, ok), started at `start_ms`.
    fn report(
        outcomes: &[(usize, u64, u64, bool)],
        start_ms: u64,
        shard: Option<ShardInfo>,
    ) -> Report {
        let mut sc = crate::scenario::parse(Path::new("merge-unit.toml"), SCENARIO).unwrap();
        if let Some(sh) = shard {
            sc.scale_rps(1.0 / f64::from(sh.count));
        }
        let mut rec = Recorder::new(2, vec![(0.0, 4.0)]);
        for &(request, sent, lat, ok) in outcomes {
            rec.record(&Outcome {
                request,
                intended: Duration::from_millis(sent),
                sent: Duration::from_millis(sent),
                done: Duration::from_millis(sent) + Duration::from_micros(lat),
                status: Some(if ok { 200 } else { 500 }),
                ok,
                cold_start: false,
                instance: None,
            });
        }
        let started = SystemTime::UNIX_EPOCH + Duration::from_millis(start_ms);
        let p = Prepared {
            scenario: sc,
            target: "http://127.0.0.1:1".into(),
            out: PathBuf::from("unused"),
            duration_factor: 1.0,
            rps_factor: shard.map_or(1.0, |s| 1.0 / f64::from(s.count)),
            shard,
        };
        let emulator = EmulatorSection {
            detected: false,
            instances_seen: 0,
            cold_start_responses: 0,
            latency_excluding_cold_starts: Latency::from_hist(&rec.excluding_cold),
            status: None,
            error: None,
            observed: None,
        };
        let n = outcomes.len() as u64;
        build_report(
            &p,
            EngineResult {
                recorder: rec,
                started,
                ended: started + Duration::from_secs(4),
                interrupted: false,
                users: 4,
                planned: n,
                sent: n,
                goose_error: None,
            },
            emulator,
            vec![],
        )
    }

    /// 400 requests over 4 s with latencies spread 1–60 ms (µs resolution); every 50th fails.
    fn outcomes() -> Vec<(usize, u64, u64, bool)> {
        (0..400u64)
            .map(|i| {
                (
                    (i % 2) as usize,
                    i * 10,
                    1_000 + (i * 7_919) % 59_000,
                    i % 50 != 7,
                )
            })
            .collect()
    }

    #[test]
    fn two_shards_merge_exactly_into_what_one_run_would_have_recorded() {
        let all = outcomes();
        let (s1, s2): (Vec<_>, Vec<_>) = all.iter().partition(|o| (o.1 / 10) % 2 == 0);
        let whole = report(&all, 1_000_000, None);
        let a = report(&s1, 1_000_000, Some(ShardInfo { index: 1, count: 2 }));
        let b = report(&s2, 1_000_000, Some(ShardInfo { index: 2, count: 2 }));
        let load = |r: Report, f: &str| Loaded {
            path: PathBuf::from(f),
            report: r,
        };
        let (m, warnings) = merge(&[load(a, "a.json"), load(b, "b.json")]).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");

        assert_eq!(m.totals, whole.totals);
        assert_eq!(m.status_codes, whole.status_codes);
        // Histograms added exactly: same counts in every bucket, so every percentile is equal.
        let hm = decode_hist(&m.latency.histogram).unwrap();
        let hw = decode_hist(&whole.latency.histogram).unwrap();
        assert_eq!(hm, hw);
        assert_eq!(
            (
                m.latency.p50_ms,
                m.latency.p95_ms,
                m.latency.p99_ms,
                m.latency.max_ms
            ),
            (
                whole.latency.p50_ms,
                whole.latency.p95_ms,
                whole.latency.p99_ms,
                whole.latency.max_ms
            )
        );
        for (x, y) in m.requests.iter().zip(&whole.requests) {
            assert_eq!(
                (x.requests, x.errors, &x.status_codes),
                (y.requests, y.errors, &y.status_codes)
            );
            assert_eq!(x.latency.p95_ms, y.latency.p95_ms, "{}", x.name);
        }
        let reqs: Vec<u64> = m.timeline.iter().map(|t| t.requests).collect();
        assert_eq!(
            reqs,
            whole
                .timeline
                .iter()
                .map(|t| t.requests)
                .collect::<Vec<_>>()
        );
        assert_eq!(m.timeline.len(), whole.timeline.len());
        for (x, y) in m.timeline.iter().zip(&whole.timeline) {
            assert_eq!(
                decode_hist(&x.histogram),
                decode_hist(&y.histogram),
                "second {}",
                x.second
            );
        }
        // SLOs judged on the merged data with the summed throughput floor.
        assert_eq!(m.slo_rules.as_ref().unwrap().min_rps, Some(90.0));
        let names = |r: &Report| {
            r.slos
                .iter()
                .map(|s| (s.name.clone(), s.passed, s.observed))
                .collect::<Vec<_>>()
        };
        let (mut ms, mut ws) = (names(&m), names(&whole));
        ms.sort_by(|a, b| a.0.cmp(&b.0));
        ws.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(ms, ws);
        assert_eq!(m.verdict, whole.verdict);
        assert_eq!(m.merged_from.len(), 2);

        // A machine that started 1.2 s later lands one second later (wall clock, rounded).
        let late = report(&s2, 1_001_200, Some(ShardInfo { index: 2, count: 2 }));
        let a = report(&s1, 1_000_000, Some(ShardInfo { index: 1, count: 2 }));
        let (m, _) = merge(&[load(a.clone(), "a.json"), load(late.clone(), "b.json")]).unwrap();
        assert_eq!(m.merged_from[1].offset_s, 1);
        assert_eq!(m.timeline.len(), late.timeline.len() + 1);
        for (s, t) in m.timeline.iter().enumerate() {
            let from_a = a.timeline.get(s).map_or(0, |x| x.requests);
            let from_b = s
                .checked_sub(1)
                .and_then(|i| late.timeline.get(i))
                .map_or(0, |x| x.requests);
            assert_eq!(t.requests, from_a + from_b, "second {s}");
        }
        assert_eq!(m.totals.requests, 400);
        assert!((m.duration_s - 5.2).abs() < 1e-9, "{}", m.duration_s);
    }

    #[test]
    fn a_shard_given_twice_or_another_scenario_is_refused_naming_the_file() {
        let a = report(&outcomes(), 0, Some(ShardInfo { index: 1, count: 2 }));
        let load = |r: Report, f: &str| Loaded {
            path: PathBuf::from(f),
            report: r,
        };
        let e = merge(&[load(a.clone(), "x.json"), load(a.clone(), "y.json")]).unwrap_err();
        assert_eq!(e.file, "y.json");
        assert!(e.message.contains("shard 1/2 is also x.json"), "{e}");
        let mut other = a.clone();
        other.scenario.name = "other".into();
        other.shard = Some(ShardInfo { index: 2, count: 2 });
        let e = merge(&[load(a.clone(), "x.json"), load(other, "z.json")]).unwrap_err();
        assert!(e.file == "z.json" && e.message.contains("scenario"), "{e}");
        let (_, w) = merge(&[load(a, "x.json")]).unwrap();
        assert!(w[0].contains("2/2 are missing"), "{w:?}");
    }
}

//! `loadtest run` and `loadtest list`: resolve input, run the engine, judge, report.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, SecondsFormat, Utc};

use crate::cli::{RunArgs, RunCommand};
use crate::compare;
use crate::emu;
use crate::engine::{self, record, EngineResult, Recorder, Schedule};
use crate::exit;
use crate::report::{
    self, EmulatorSection, HoldInfo, Latency, LoadInfo, Report, RequestInfo, RequestReport,
    ScenarioInfo, ShardInfo, SloRules, StageInfo, TimelineItem, ToolInfo, Totals, Verdict,
};
use crate::scenario::{self, Scenario, DEFAULT_TARGET};
use crate::slo;

/// A run is invalid when less than this share of the asked rate was sent over the holds.
pub const MIN_ACHIEVED_RATIO: f64 = 0.95;

/// Where scenario names are looked up: `./scenarios`, then the `scenarios/` folder of the
/// repository the binary was built in or sits in.
pub fn scenario_dirs() -> Vec<PathBuf> {
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

fn bad_input(msg: impl std::fmt::Display) -> i32 {
    eprintln!("loadtest: {msg}");
    exit::BAD_INPUT
}

/// Everything `run` checks before any traffic: scenario, target, scaling, output folder.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub scenario: Scenario,
    pub target: String,
    pub out: PathBuf,
    pub duration_factor: f64,
    pub rps_factor: f64,
    /// `--shard I/N`: this run carries 1/N of the scenario's rate.
    pub shard: Option<ShardInfo>,
}

/// Parses `--shard I/N` (1 ≤ I ≤ N ≤ 10000).
pub fn parse_shard(s: &str) -> Result<ShardInfo, String> {
    let bad = || {
        format!(
            "--shard {s:?} must be I/N with 1 ≤ I ≤ N, e.g. 1/4 (in a Kubernetes Indexed Job: --shard $((JOB_COMPLETION_INDEX+1))/N)"
        )
    };
    let (i, n) = s.trim().split_once('/').ok_or_else(bad)?;
    let i: u32 = i.trim().parse().map_err(|_| bad())?;
    let n: u32 = n.trim().parse().map_err(|_| bad())?;
    if i < 1 || i > n || n > 10_000 {
        return Err(bad());
    }
    Ok(ShardInfo { index: i, count: n })
}

/// [`prepare`], then keep the shard's share of the rate (the throughput SLO and the in-flight
/// cap scale with it, so each shard is judged on its own share).
pub fn prepare_shard(args: &RunArgs, shard: Option<ShardInfo>) -> Result<Prepared, String> {
    let mut p = prepare(args)?;
    if let Some(sh) = shard {
        if sh.count > 1 {
            let f = 1.0 / f64::from(sh.count);
            p.scenario.scale_rps(f);
            p.rps_factor *= f;
        }
        p.shard = Some(sh);
    }
    Ok(p)
}

/// Validates the arguments into a [`Prepared`] run, or a message for exit code 2.
pub fn prepare(args: &RunArgs) -> Result<Prepared, String> {
    let dirs = scenario_dirs();
    let path = scenario::resolve(&args.scenario, &dirs).ok_or_else(|| {
        format!(
            "no scenario {:?}: give a path to a .toml file or one of the names `loadtest list` shows",
            args.scenario
        )
    })?;
    let mut sc = scenario::load(&path).map_err(|e| e.to_string())?;
    let original = sc.duration();
    let mut duration_factor = 1.0;
    if let Some(d) = &args.duration {
        let d = humantime::parse_duration(d.trim()).map_err(|e| {
            format!("--duration {d:?} is not a duration ({e}); write it like 90s, 3m or 1h")
        })?;
        if d < Duration::from_secs(1) || d > scenario::MAX_DURATION {
            return Err("--duration must be between 1s and 30 days".into());
        }
        duration_factor = d.as_secs_f64() / original.as_secs_f64().max(1e-9);
        sc.compress_to(d);
    }
    let mut rps_factor = 1.0;
    if let Some(n) = args.rps {
        if !n.is_finite() || n <= 0.0 || n > 100_000.0 {
            return Err(format!("--rps {n} must be above 0 and at most 100000"));
        }
        rps_factor = n / sc.peak_rps();
    }
    if let Some(f) = args.rps_scale {
        if !f.is_finite() || f <= 0.0 || f * sc.peak_rps() > 100_000.0 {
            return Err(format!(
                "--rps-scale {f} must be above 0 and keep the peak at most 100000 rps"
            ));
        }
        rps_factor = f;
    }
    if (rps_factor - 1.0).abs() > 1e-12 {
        sc.scale_rps(rps_factor);
    }
    let target = args
        .target
        .clone()
        .or_else(|| sc.target.clone())
        .unwrap_or_else(|| DEFAULT_TARGET.to_string());
    let target = target.trim_end_matches('/').to_string();
    match reqwest::Url::parse(&target) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
        _ => {
            return Err(format!(
                "target {target:?} is not an http(s) URL; pass e.g. --target http://127.0.0.1:8080"
            ))
        }
    }
    let out = args.out.clone().unwrap_or_else(|| {
        PathBuf::from("loadtest-runs").join(format!(
            "{}-{}",
            sc.name,
            Utc::now().format("%Y%m%d-%H%M%S")
        ))
    });
    Ok(Prepared {
        scenario: sc,
        target,
        out,
        duration_factor,
        rps_factor,
        shard: None,
    })
}

/// `loadtest run`.
pub fn run_command(cmd: &RunCommand) -> i32 {
    let args = &cmd.args;
    let shard = match cmd.shard.as_deref().map(parse_shard).transpose() {
        Ok(s) => s,
        Err(e) => return bad_input(e),
    };
    let prepared = match prepare_shard(args, shard) {
        Ok(p) => p,
        Err(e) => return bad_input(e),
    };
    // The baseline is read before any traffic: a typo in its path should not cost a run.
    let baseline = match &cmd.baseline {
        None => None,
        Some(path) => {
            let tolerance = match compare::parse_tolerance(&cmd.tolerance) {
                Ok(t) => t,
                Err(e) => return bad_input(e),
            };
            match compare::load_baseline(path) {
                Ok(b) => {
                    if let Some(other) = b
                        .iter()
                        .find(|l| l.report.scenario.name != prepared.scenario.name)
                    {
                        return bad_input(format!(
                            "{}: scenario {:?}, but this run is {:?}: give a baseline of the same scenario",
                            other.path.display(),
                            other.report.scenario.name,
                            prepared.scenario.name
                        ));
                    }
                    Some((b, tolerance))
                }
                Err(e) => return bad_input(e),
            }
        }
    };
    if let Err(e) = std::fs::create_dir_all(&prepared.out) {
        return bad_input(format!(
            "cannot create the output folder {}: {e}; pass a writable --out",
            prepared.out.display()
        ));
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadtest: cannot start the async runtime: {e}");
            return exit::INVALID;
        }
    };
    let report = rt.block_on(execute(&prepared, !args.no_progress));
    if let Err(e) = report::write_all(&report, &prepared.out) {
        eprintln!(
            "loadtest: cannot write the reports to {}: {e}",
            prepared.out.display()
        );
    }
    eprintln!("{}", report.headline());
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
    eprintln!("  reports: {}", prepared.out.display());
    let code = report.verdict.exit_code();
    let Some((baseline, tolerance)) = baseline else {
        return code;
    };
    let current = compare::Loaded {
        path: prepared.out.join("report.json"),
        report,
    };
    let opts = compare::Options {
        tolerance,
        ..compare::Options::default()
    };
    match compare::compare(&baseline, &current, &opts) {
        Err(e) => bad_input(e),
        Ok(c) => {
            if let Err(e) = compare::write_all(&c, &baseline, &current, &prepared.out) {
                eprintln!(
                    "loadtest: cannot write the comparison to {}: {e}",
                    prepared.out.display()
                );
            }
            compare::print_summary(&c);
            match (code, c.regressed()) {
                (exit::INVALID, _) => exit::INVALID,
                (_, true) => exit::SLO_FAILED,
                (code, false) => code,
            }
        }
    }
}

/// Runs a scenario (name or path) against `target`, writes the four reports into `out` and
/// returns the report: what an end-to-end test against a real emu front door calls. Goose keeps
/// process-wide state, so run one load test per process at a time.
pub async fn run_scenario(
    scenario: &str,
    target: &str,
    duration: Option<&str>,
    out: &Path,
) -> Result<Report, String> {
    let p = prepare(&RunArgs {
        scenario: scenario.to_string(),
        target: Some(target.to_string()),
        duration: duration.map(str::to_string),
        rps: None,
        rps_scale: None,
        out: Some(out.to_path_buf()),
        no_progress: true,
    })?;
    let report = execute(&p, false).await;
    report::write_all(&report, out).map_err(|e| format!("cannot write reports: {e}"))?;
    Ok(report)
}

/// Checks that the target answers HTTP at all (any status will do) and whether it is emu.
async fn reachable(
    client: &reqwest::Client,
    target: &str,
) -> Result<Option<serde_json::Value>, String> {
    emu::probe(client, target).await.map_err(|e| {
        let mut msg = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            msg = format!("{msg}: {s}");
            src = s.source();
        }
        format!("target {target} is unreachable ({msg}); start the service or pass --target")
    })
}

fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn rfc3339(t: SystemTime) -> String {
    DateTime::<Utc>::from(t).to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Runs a prepared scenario end to end and returns its report (never panics on the target).
pub async fn execute(p: &Prepared, progress: bool) -> Report {
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap_or_default();
    let mut invalid = Vec::new();
    let (engine_result, emu_status) = match reachable(&client, &p.target).await {
        Err(reason) => {
            invalid.push(reason);
            let now = SystemTime::now();
            (
                EngineResult {
                    recorder: Recorder::new(p.scenario.requests.len(), vec![]),
                    started: now,
                    ended: now,
                    interrupted: false,
                    users: 0,
                    planned: Schedule::new(&p.scenario.stages).total(),
                    sent: 0,
                    goose_error: None,
                },
                None,
            )
        }
        Ok(status) => {
            let r = engine::run(&p.scenario, &p.target, progress).await;
            (r, status)
        }
    };
    let mut emulator = EmulatorSection {
        detected: emu_status.is_some(),
        instances_seen: engine_result.recorder.instances.len() as u64,
        cold_start_responses: engine_result.recorder.cold_starts,
        latency_excluding_cold_starts: Latency::from_hist(&engine_result.recorder.excluding_cold),
        status: emu_status.clone(),
        error: None,
        observed: None,
    };
    let started_ms = unix_ms(engine_result.started);
    let ended_ms = unix_ms(engine_result.ended);
    if emu_status.is_some() {
        match emu::fetch_events(&client, &p.target, started_ms).await {
            Ok(doc) => emulator.observed = Some(emu::aggregate(&doc, started_ms, ended_ms)),
            Err(e) => emulator.error = Some(e),
        }
    }
    build_report(p, engine_result, emulator, invalid)
}

/// Judges and assembles the report from what the engine and emu returned.
pub fn build_report(
    p: &Prepared,
    r: EngineResult,
    emulator: EmulatorSection,
    mut invalid: Vec<String>,
) -> Report {
    let sc = &p.scenario;
    let schedule = Schedule::new(&sc.stages);
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
    let achieved_ratio = if hold_target_rps > 0.0 {
        achieved_rps / hold_target_rps
    } else {
        0.0
    };
    let reachable = invalid.is_empty();
    if let Some(e) = &r.goose_error {
        invalid.push(format!("the load generator failed: {e}"));
    }
    if r.interrupted {
        invalid.push("interrupted (Ctrl-C) before the schedule finished".into());
    }
    if reachable && r.goose_error.is_none() && !r.interrupted {
        if achieved_ratio < MIN_ACHIEVED_RATIO {
            invalid.push(format!(
                "achieved {achieved_rps:.1} rps over the hold, {:.1} % of the {hold_target_rps:.1} rps asked (at least {:.0} % needed): the generator could not keep up (send lag p99 {:.1} ms with {} requests in flight at most: raise max_in_flight in the scenario if the service is slow, or use a bigger machine)",
                achieved_ratio * 100.0,
                MIN_ACHIEVED_RATIO * 100.0,
                record::pct_ms(&rec.send_lag, 0.99).unwrap_or(0.0),
                r.users
            ));
        } else if rec.requests == 0 {
            invalid.push("no request completed".into());
        }
    }

    let names: Vec<String> = sc.requests.iter().map(|q| q.name.clone()).collect();
    let slos = slo::evaluate(&sc.slos, rec, &names, achieved_rps);
    let verdict = if !invalid.is_empty() {
        Verdict::Invalid
    } else if slos.iter().any(|s| !s.passed) {
        Verdict::Fail
    } else {
        Verdict::Pass
    };

    let codes = |m: &std::collections::BTreeMap<u16, u64>| {
        m.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    };
    let rate = |e: u64, n: u64| if n > 0 { e as f64 / n as f64 } else { 0.0 };
    let planned_secs = schedule.duration().as_secs_f64().ceil() as usize;
    let n_secs = if r.sent == 0 {
        0
    } else {
        rec.seconds.len().max(planned_secs)
    };
    let timeline = (0..n_secs)
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
        .collect();

    Report {
        schema_version: report::SCHEMA_VERSION,
        tool: ToolInfo {
            name: "loadtest".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        },
        scenario: ScenarioInfo {
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
        },
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
        load: LoadInfo {
            target_rps: sc.peak_rps(),
            achieved_rps,
            hold_target_rps,
            achieved_ratio,
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
        },
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
        requests: sc
            .requests
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
            .collect(),
        timeline,
        slos,
        emulator,
        slo_rules: Some(SloRules::from_slos(&sc.slos)),
        shard: p.shard,
        merged_from: Vec::new(),
    }
}

/// `loadtest list`.
pub fn list_command(path: Option<&Path>) -> i32 {
    let mut files = Vec::new();
    let dirs: Vec<PathBuf> = match path {
        Some(p) if p.is_file() => {
            files.push(p.to_path_buf());
            vec![]
        }
        Some(p) if p.is_dir() => vec![p.to_path_buf()],
        Some(p) => {
            return bad_input(format!(
                "{} is neither a scenario file nor a folder",
                p.display()
            ))
        }
        None => scenario_dirs(),
    };
    let mut seen = std::collections::BTreeSet::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut found: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        found.sort();
        for f in found {
            let name = f.file_name().map(|n| n.to_os_string());
            if seen.insert(name) {
                files.push(f);
            }
        }
    }
    if files.is_empty() {
        return bad_input("no scenario files found: run from the repository, or pass a folder");
    }
    let mut code = exit::PASS;
    for f in files {
        match scenario::load(&f) {
            Ok(s) => {
                println!("{}  ({})", s.name, f.display());
                if !s.description.is_empty() {
                    println!("    {}", s.description);
                }
                println!("    load: {}", s.load_summary());
                let reqs: Vec<String> = s
                    .requests
                    .iter()
                    .map(|q| {
                        format!(
                            "{} {} {} ×{}",
                            q.name,
                            q.method.as_str(),
                            q.path_src,
                            q.weight
                        )
                    })
                    .collect();
                println!("    requests: {}", reqs.join(", "));
                let slos = s.slo_summary();
                if slos.is_empty() {
                    println!("    SLOs: none");
                } else {
                    println!("    SLOs: {}", slos.join("; "));
                }
            }
            Err(e) => {
                eprintln!("loadtest: {e}");
                code = exit::BAD_INPUT;
            }
        }
    }
    code
}

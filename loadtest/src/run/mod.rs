//! Running a scenario: check everything before any traffic ([`prepare`]), run the engine
//! against the target ([`execute`]) and judge what it recorded into a [`Report`].
//!
//! Takes plain [`RunOptions`]; the command line (`crate::cli`) builds them, prints, and picks
//! the exit code.

mod build;
pub mod client;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use chrono::Utc;

use crate::emu;
use crate::engine::{self, EngineResult, Recorder, Schedule};
use crate::report::{self, EmulatorSection, Latency, Report, ShardInfo};
use crate::scenario::{self, Scenario, ScenarioError, DEFAULT_TARGET};
pub use build::build_report;
pub use client::ClientOptions;

/// A run is invalid when less than this share of the asked rate was sent over the holds.
pub const MIN_ACHIEVED_RATIO: f64 = 0.95;

/// How to change a scenario's rates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RateScaling {
    /// Scale every stage so the peak rate is this many requests per second.
    PeakRps(f64),
    /// Multiply every stage's rate by this factor.
    Factor(f64),
}

/// What to run, where, and how scaled: what `loadtest run`'s flags say, typed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunOptions {
    /// A scenario name (looked up in [`scenario::search_dirs`]) or a path to a scenario file.
    pub scenario: String,
    /// Base URL of the service; default: the scenario's, else [`DEFAULT_TARGET`].
    pub target: Option<String>,
    /// Compress (or stretch) the stages to last this long.
    pub duration: Option<Duration>,
    pub rate: Option<RateScaling>,
    /// Where the reports go; default `loadtest-runs/<scenario>-<timestamp>/`.
    pub out: Option<PathBuf>,
    /// Run the I-th of N equal shares of the scenario's rate.
    pub shard: Option<ShardInfo>,
    /// `--header "Name: value"`, as given.
    pub headers: Vec<String>,
    /// `--ca-cert FILE`: roots trusted beside the platform's.
    pub ca_cert: Option<PathBuf>,
    /// `--insecure`: no certificate check.
    pub insecure: bool,
    /// How often emu's timeline is read during the run; default [`emu::collect::EVERY`].
    pub emu_fetch_every: Option<Duration>,
}

/// Why a run cannot start: bad input, never the target's fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PrepareError {
    #[error(
        "no scenario {0:?}: give a path to a .toml file or one of the names `loadtest list` shows"
    )]
    NoScenario(String),
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    /// An option out of range, or a target that is not a URL.
    #[error("{0}")]
    Option(String),
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
    /// Headers, TLS roots, certificate checks.
    pub client: ClientOptions,
    /// How often emu's timeline is read during the run.
    pub emu_fetch_every: Duration,
}

/// Validates the options into a [`Prepared`] run. A shard keeps its share of the rate (the
/// throughput SLO and the in-flight cap scale with it, so each shard is judged on its share).
pub fn prepare(opts: &RunOptions) -> Result<Prepared, PrepareError> {
    let path = scenario::resolve(&opts.scenario, &scenario::search_dirs())
        .ok_or_else(|| PrepareError::NoScenario(opts.scenario.clone()))?;
    let mut sc = scenario::load(&path)?;
    let duration_factor = match opts.duration {
        Some(d) => stretch(&mut sc, d)?,
        None => 1.0,
    };
    let mut rps_factor = match opts.rate {
        Some(rate) => rate_factor(&sc, rate)?,
        None => 1.0,
    };
    if (rps_factor - 1.0).abs() > 1e-12 {
        sc.scale_rps(rps_factor);
    }
    if let Some(sh) = opts.shard {
        if sh.count > 1 {
            let f = 1.0 / f64::from(sh.count);
            sc.scale_rps(f);
            rps_factor *= f;
        }
    }
    let target = http_target(opts.target.as_deref().or(sc.target.as_deref()))?;
    let client = client_options(opts)?;
    // A --header replaces the scenario's header of the same name (the real service's token
    // over a placeholder one).
    for q in &mut sc.requests {
        q.headers.retain(|(k, _)| {
            !client
                .headers
                .iter()
                .any(|(c, _)| c.eq_ignore_ascii_case(k))
        });
    }
    let out = opts.out.clone().unwrap_or_else(|| {
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
        shard: opts.shard,
        client,
        emu_fetch_every: opts.emu_fetch_every.unwrap_or(emu::collect::EVERY),
    })
}

fn client_options(opts: &RunOptions) -> Result<ClientOptions, PrepareError> {
    let headers = opts
        .headers
        .iter()
        .map(|h| client::parse_header(h))
        .collect::<Result<Vec<_>, _>>()
        .map_err(PrepareError::Option)?;
    let ca_cert = opts
        .ca_cert
        .as_deref()
        .map(client::read_ca_cert)
        .transpose()
        .map_err(PrepareError::Option)?;
    Ok(ClientOptions {
        headers,
        ca_cert,
        insecure: opts.insecure,
    })
}

/// Squeezes the scenario to last `d`; returns the factor its stages were scaled by.
fn stretch(sc: &mut Scenario, d: Duration) -> Result<f64, PrepareError> {
    if d < Duration::from_secs(1) || d > scenario::MAX_DURATION {
        return Err(PrepareError::Option(
            "--duration must be between 1s and 30 days".into(),
        ));
    }
    let factor = d.as_secs_f64() / sc.duration().as_secs_f64().max(1e-9);
    sc.compress_to(d);
    Ok(factor)
}

/// The factor every rate is multiplied by, checked to keep the peak at most 100000 rps.
fn rate_factor(sc: &Scenario, rate: RateScaling) -> Result<f64, PrepareError> {
    match rate {
        RateScaling::PeakRps(n) => {
            if !n.is_finite() || n <= 0.0 || n > 100_000.0 {
                return Err(PrepareError::Option(format!(
                    "--rps {n} must be above 0 and at most 100000"
                )));
            }
            Ok(n / sc.peak_rps())
        }
        RateScaling::Factor(f) => {
            if !f.is_finite() || f <= 0.0 || f * sc.peak_rps() > 100_000.0 {
                return Err(PrepareError::Option(format!(
                    "--rps-scale {f} must be above 0 and keep the peak at most 100000 rps"
                )));
            }
            Ok(f)
        }
    }
}

/// The target without a trailing `/`, checked to be an http(s) URL with a host.
fn http_target(given: Option<&str>) -> Result<String, PrepareError> {
    let target = given
        .unwrap_or(DEFAULT_TARGET)
        .trim_end_matches('/')
        .to_string();
    match reqwest::Url::parse(&target) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(target),
        _ => Err(PrepareError::Option(format!(
            "target {target:?} is not an http(s) URL; pass e.g. --target http://127.0.0.1:8080"
        ))),
    }
}

/// Runs a scenario (name or path) against `target`, writes the four reports into `out` and
/// returns the report: what an end-to-end test against a real emu front door calls. Goose keeps
/// process-wide state, so run one load test per process at a time.
pub async fn run_scenario(
    scenario: &str,
    target: &str,
    duration: Option<Duration>,
    out: &Path,
) -> Result<Report, String> {
    let p = prepare(&RunOptions {
        scenario: scenario.to_string(),
        target: Some(target.to_string()),
        duration,
        out: Some(out.to_path_buf()),
        ..RunOptions::default()
    })
    .map_err(|e| e.to_string())?;
    let report = execute(&p, engine::ProgressMode::Off).await;
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

/// Runs a prepared scenario end to end and returns its report (never panics on the target).
pub async fn execute(p: &Prepared, progress: engine::ProgressMode) -> Report {
    let client = client::build(&p.client);
    let cap = engine::pacing::in_flight_cap(&p.scenario, engine::pacing::open_file_limit());
    let mut invalid = Vec::new();
    let probed = match &client {
        Ok(c) => reachable(c, &p.target).await,
        Err(e) => Err(e.clone()),
    };
    let client = client.unwrap_or_default();
    let (engine_result, emu_status) = match probed {
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
                    pacing: cap,
                    goose_error: None,
                },
                None,
            )
        }
        Ok(status) => {
            // emu keeps its timeline for a bounded time: a long run reads it as it goes.
            let collector = status.is_some().then(|| {
                let since = build::unix_ms(SystemTime::now());
                emu::collect::Collector::start(client.clone(), &p.target, since, p.emu_fetch_every)
            });
            let r = engine::run(&p.scenario, &p.target, client.clone(), cap, progress).await;
            (r, status.map(|s| (s, collector)))
        }
    };
    let (emu_status, collector) = match emu_status {
        Some((s, c)) => (Some(s), c),
        None => (None, None),
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
    let started_ms = build::unix_ms(engine_result.started);
    let ended_ms = build::unix_ms(engine_result.ended);
    if let Some(collector) = collector {
        match collector.finish(started_ms, ended_ms).await {
            Ok(doc) => emulator.observed = Some(emu::aggregate(&doc, started_ms, ended_ms)),
            Err(e) => emulator.error = Some(e),
        }
    }
    build_report(p, engine_result, emulator, invalid)
}

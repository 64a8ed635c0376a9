//! `emu simulate`: the same autoscaler model and queueing rules as `emu up`, on a simulated clock,
//! for a service spec and a load — the question every team asks before launch, answered offline.

use std::path::PathBuf;

use clap::Args;

use crate::model::{self, Load, ServiceTime, SimService, Stage};
use crate::spec::{self, parse_duration, ServiceSpec};

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Config file (default: ./emu.toml, else the built-in demo's settings).
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// A Cloud Run service YAML instead of emu.toml.
    #[arg(long = "file", short = 'f', value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Which service, when the config has several.
    #[arg(long, value_name = "NAME")]
    pub service: Option<String>,
    /// Constant arrival rate (requests per second).
    #[arg(long, value_name = "N", conflicts_with_all = ["stages", "trace", "report"])]
    pub rps: Option<f64>,
    /// How long to hold `--rps`.
    #[arg(long, value_name = "D", default_value = "60s")]
    pub duration: String,
    /// Ramp from 0 to `--rps` over this long before holding.
    #[arg(long, value_name = "D", default_value = "0s")]
    pub ramp: String,
    /// Staged arrival rate: `RPS:RAMP:HOLD,…`, e.g. `100:0s:60s,1000:10s:60s,0:0s:120s`.
    #[arg(long, value_name = "STAGES", conflicts_with_all = ["trace", "report"])]
    pub stages: Option<String>,
    /// A per-second trace: CSV with header `second,requests[,service_ms]`.
    #[arg(long, value_name = "FILE.csv", conflicts_with = "report")]
    pub trace: Option<PathBuf>,
    /// A loadtest report.json: replays its per-second request counts and p50 latency.
    #[arg(long, value_name = "report.json")]
    pub report: Option<PathBuf>,
    /// Service time per request: `100ms`, or `p50=80ms,p99=600ms` (log-normal).
    #[arg(long, value_name = "D", default_value = "100ms")]
    pub service_time: String,
    /// Seed for the random draws (startup and service times); the same seed gives the same run.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print JSON instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// A simulate error is always bad input: exit 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SimulateError(pub String);

fn err(s: impl Into<String>) -> SimulateError {
    SimulateError(s.into())
}

fn parse_service_time(s: &str) -> Result<ServiceTime, SimulateError> {
    if !s.contains('=') {
        return parse_duration(s)
            .map(ServiceTime::Fixed)
            .map_err(|e| err(format!("--service-time: {e}")));
    }
    let (mut p50, mut p99) = (None, None);
    for part in s.split(',') {
        match part.trim().split_once('=') {
            Some(("p50", d)) => {
                p50 = Some(parse_duration(d).map_err(|e| err(format!("--service-time: {e}")))?)
            }
            Some(("p99", d)) => {
                p99 = Some(parse_duration(d).map_err(|e| err(format!("--service-time: {e}")))?)
            }
            _ => {
                return Err(err(format!(
                    "--service-time {s:?}: write `100ms` or `p50=80ms,p99=600ms`"
                )))
            }
        }
    }
    match (p50, p99) {
        (Some(p50), Some(p99)) if p99 >= p50 => Ok(ServiceTime::LogNormal { p50, p99 }),
        _ => Err(err(format!(
            "--service-time {s:?}: give p50 and p99, p99 at least p50"
        ))),
    }
}

fn parse_stages(s: &str) -> Result<Vec<Stage>, SimulateError> {
    s.split(',')
        .map(|st| {
            let parts: Vec<&str> = st.trim().split(':').collect();
            let [rps, ramp, hold] = parts[..] else {
                return Err(err(format!(
                    "--stages: {st:?} is not RPS:RAMP:HOLD (e.g. 100:10s:60s)"
                )));
            };
            let rps: f64 = rps
                .parse()
                .map_err(|_| err(format!("--stages: {rps:?} is not a rate")))?;
            let ramp = parse_duration(ramp).map_err(|e| err(format!("--stages: {e}")))?;
            let hold = parse_duration(hold).map_err(|e| err(format!("--stages: {e}")))?;
            Ok(Stage { rps, ramp, hold })
        })
        .collect()
}

/// Picks the service and turns it into the simulator's terms.
pub fn sim_service(spec: &ServiceSpec) -> SimService {
    let mut svc = SimService::new(spec.autoscaler.clone(), spec.cold_start);
    svc.concurrency = spec.concurrency;
    svc.min_instances = spec.min_instances;
    svc.max_instances = spec.max_instances;
    svc.queue_timeout = spec.queue_timeout;
    svc.request_timeout = spec.timeout;
    svc
}

/// Runs `emu simulate`; returns what to print.
pub fn run(args: &SimulateArgs) -> Result<String, SimulateError> {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let cfg = if let Some(f) = &args.file {
        spec::load_yaml(f, &["(simulated)".to_string()]).map_err(|e| err(e.to_string()))?
    } else if let Some(c) = &args.config {
        spec::load_toml(c).map_err(|e| err(e.to_string()))?
    } else if cwd.join("emu.toml").exists() {
        spec::load_toml(&cwd.join("emu.toml")).map_err(|e| err(e.to_string()))?
    } else {
        spec::demo_config(std::path::Path::new("emu"), &cwd)
    };
    let spec = match &args.service {
        Some(name) => cfg
            .services
            .iter()
            .find(|s| &s.name == name)
            .ok_or_else(|| {
                let names: Vec<&str> = cfg.services.iter().map(|s| s.name.as_str()).collect();
                err(format!(
                    "no service {name:?} in {}: it has {}",
                    cfg.source.display(),
                    names.join(", ")
                ))
            })?,
        None if cfg.services.len() == 1 => &cfg.services[0],
        None => {
            let names: Vec<&str> = cfg.services.iter().map(|s| s.name.as_str()).collect();
            return Err(err(format!(
                "{} has several services ({}): pick one with --service",
                cfg.source.display(),
                names.join(", ")
            )));
        }
    };

    let service_time = parse_service_time(&args.service_time)?;
    let load = if let Some(path) = &args.trace {
        let text =
            std::fs::read_to_string(path).map_err(|e| err(format!("{}: {e}", path.display())))?;
        Load::Trace(
            model::parse_trace_csv(&text).map_err(|e| err(format!("{}: {e}", path.display())))?,
        )
    } else if let Some(path) = &args.report {
        let text =
            std::fs::read_to_string(path).map_err(|e| err(format!("{}: {e}", path.display())))?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| err(format!("{}: not JSON: {e}", path.display())))?;
        model::load_from_report_json(&v).map_err(|e| err(format!("{}: {e}", path.display())))?
    } else if let Some(st) = &args.stages {
        Load::Stages {
            stages: parse_stages(st)?,
            service_time,
        }
    } else {
        let rps = args.rps.unwrap_or(10.0);
        let hold = parse_duration(&args.duration).map_err(|e| err(format!("--duration: {e}")))?;
        let ramp = parse_duration(&args.ramp).map_err(|e| err(format!("--ramp: {e}")))?;
        Load::Stages {
            stages: vec![Stage { rps, ramp, hold }],
            service_time,
        }
    };
    load.validate().map_err(|e| err(e.to_string()))?;
    let svc = sim_service(spec);
    svc.validate().map_err(|e| err(e.to_string()))?;
    let result = model::simulate(&svc, &load, args.seed);
    if args.json {
        let v = serde_json::json!({
            "service": spec.name,
            "autoscaler": svc.effective_autoscaler(),
            "seed": args.seed,
            "result": result,
        });
        Ok(serde_json::to_string_pretty(&v).unwrap_or_default() + "\n")
    } else {
        let head = format!(
            "emu simulate: service {} (concurrency {}, instances {}..{}, profile {}, target {:.2} per instance), seed {}\n",
            spec.name,
            spec.concurrency,
            spec.min_instances,
            spec.max_instances,
            spec.autoscaling_profile,
            svc.effective_autoscaler().target_value(),
            args.seed
        );
        Ok(head + &model::render_table(&result))
    }
}

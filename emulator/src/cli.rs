//! The `emu` command line. `main.rs` only calls [`main`]; every subcommand is a library function
//! so tests run the same code.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::spec::{self, Config, SpecError};
use crate::telemetry::{LogFormat, LogTarget, RequestLogger};
use crate::up::{self, UpOptions};

/// Cloud Run on a laptop.
#[derive(Debug, Parser)]
#[command(
    name = "emu",
    version,
    about = "Cloud Run on a laptop: run services as Cloud Run would, in front of real PostgreSQL and Redis"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Run the services (emu.toml, a Cloud Run service YAML, or the built-in demo) behind the front door.
    Up(UpArgs),
    /// Show the running emu's services and instances.
    Status(StatusArgs),
    /// Run the built-in demo service (what `emu up` runs with no config).
    DemoApp,
    /// Stop the emu running in this folder (from another shell), like Ctrl-C there.
    Down(DownArgs),
    /// Simulate a service under a load with the same autoscaler, offline: instances, cold starts,
    /// queueing and 429s per second.
    Simulate(crate::simulate_cli::SimulateArgs),
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Config file (default: ./emu.toml when present, else the built-in demo).
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// A Cloud Run service YAML, as `gcloud run services describe SVC --format export` prints it. Repeatable.
    #[arg(long = "file", short = 'f', value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// The front door's port.
    #[arg(long, short = 'p', value_name = "PORT")]
    pub port: Option<u16>,
    /// The front door's address (loopback by default).
    #[arg(long, value_name = "IP")]
    pub host: Option<std::net::IpAddr>,
    /// PostgreSQL and Redis for every service: auto (Docker, else installed servers), docker,
    /// native, external (url in emu.toml) or none. Default: what emu.toml says; auto for the demo.
    #[arg(long, value_name = "MODE")]
    pub backends: Option<crate::backends::Mode>,
    /// Request log format.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Where request logs go: stderr, off, or a file path.
    #[arg(long, value_name = "stderr|off|PATH", default_value = "stderr")]
    pub request_log: LogTarget,
    /// What each instance runs (with -f): the words after `--`.
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct DownArgs {
    /// Also remove the backends' data: PostgreSQL and Redis under .emu/, or emu's Docker
    /// containers and volumes for this folder.
    #[arg(long)]
    pub volumes: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The front door's port (default: the running emu's, from .emu/emu.json, else 8080).
    #[arg(long, short = 'p')]
    pub port: Option<u16>,
    /// Print the raw JSON.
    #[arg(long)]
    pub json: bool,
}

/// Parses argv and runs; the exit code follows design.md (0 ok, 1 failure, 2 bad input).
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("emu: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    rt.block_on(run(cli))
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Cmd::DemoApp => match crate::demo::run().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("emu demo-app: {e:#}");
                ExitCode::from(1)
            }
        },
        Cmd::Up(args) => run_up(args).await,
        Cmd::Status(args) => run_status(args).await,
        Cmd::Down(args) => {
            let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
            match crate::backends::down(&cwd, args.volumes).await {
                Ok(report) => {
                    print!("{report}");
                    if !report.ends_with('\n') && !report.is_empty() {
                        println!();
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("emu down: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Cmd::Simulate(args) => match crate::simulate_cli::run(&args) {
            Ok(out) => {
                print!("{out}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("emu simulate: {e}");
                ExitCode::from(2)
            }
        },
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("EMU_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .compact()
        .try_init();
}

/// Resolves which config `emu up` runs: -f YAMLs, --config, ./emu.toml, or the demo.
pub fn load_config(args: &UpArgs, cwd: &Path) -> Result<Config, SpecError> {
    let mut cfg = if !args.files.is_empty() {
        let mut merged: Option<Config> = None;
        for f in &args.files {
            let c = spec::load_yaml(f, &args.command)?;
            merged = Some(match merged {
                None => c,
                Some(mut m) => {
                    m.services.extend(c.services);
                    m.warnings.extend(c.warnings);
                    m
                }
            });
        }
        let mut cfg = merged.expect("at least one file");
        cfg.project_dir = cwd.to_path_buf();
        cfg
    } else if let Some(path) = &args.config {
        spec::load_toml(path)?
    } else if cwd.join("emu.toml").exists() {
        spec::load_toml(&cwd.join("emu.toml"))?
    } else {
        let exe = std::env::current_exe().map_err(|e| {
            SpecError::new(
                Path::new("emu"),
                None,
                format!("cannot find emu's own executable for the demo: {e}"),
            )
        })?;
        spec::demo_config(&exe, cwd)
    };
    if let Some(p) = args.port {
        cfg.frontdoor.port = p;
    }
    if let Some(h) = args.host {
        cfg.frontdoor.host = h;
    }
    if let Some(mode) = args.backends {
        let mut pg = cfg.postgres.take().unwrap_or_default();
        pg.mode = mode;
        cfg.postgres = Some(pg);
        let mut redis = cfg.redis.take().unwrap_or_default();
        redis.mode = mode;
        cfg.redis = Some(redis);
    }
    Ok(cfg)
}

async fn run_up(args: UpArgs) -> ExitCode {
    init_tracing();
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let cfg = match load_config(&args, &cwd) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("emu: {e}");
            return ExitCode::from(2);
        }
    };
    for w in &cfg.warnings {
        tracing::warn!("{w}");
    }
    let logger = match RequestLogger::start(args.request_log.clone(), args.log_format) {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "emu: cannot open the request log {:?}: {e}",
                args.request_log
            );
            return ExitCode::from(2);
        }
    };
    let shutdown = CancellationToken::new();
    let project_dir = cfg.project_dir.clone();
    let names: Vec<String> = cfg.services.iter().map(|s| s.name.clone()).collect();
    let listeners = match up::bind(&cfg).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("emu: {e}");
            return ExitCode::from(1);
        }
    };

    // Backends are up and healthy before the first instance starts.
    let off = |m| crate::backends::Mode::None.eq(&m);
    let plan = crate::backends::BackendsPlan {
        postgres: cfg
            .postgres
            .clone()
            .unwrap_or(crate::backends::PostgresConfig {
                mode: crate::backends::Mode::None,
                ..Default::default()
            }),
        redis: cfg.redis.clone().unwrap_or(crate::backends::RedisConfig {
            mode: crate::backends::Mode::None,
            ..Default::default()
        }),
        project_dir: project_dir.clone(),
        databases: cfg
            .services
            .iter()
            .filter_map(|s| s.database.clone())
            .collect(),
    };
    let wants_backends = !off(plan.postgres.mode) || !off(plan.redis.mode);
    if wants_backends {
        eprintln!(
            "emu: starting backends (postgres: {}, redis: {})",
            plan.postgres.mode, plan.redis.mode
        );
    }
    let backends = match crate::backends::start(plan).await {
        Ok(b) => b,
        Err(e) => {
            eprintln!("emu: {e}");
            return ExitCode::from(if matches!(e, crate::backends::BackendError::Config(_)) {
                2
            } else {
                1
            });
        }
    };
    let mut service_env = std::collections::HashMap::new();
    for s in &cfg.services {
        let mut env = Vec::new();
        if let Some(url) = backends.database_url(s.database.as_deref()) {
            env.push((s.database_env.clone(), url));
        }
        if let Some(url) = backends.redis_url() {
            env.push((s.redis_env.clone(), url));
        }
        service_env.insert(s.name.clone(), env);
    }
    let backends_status = backends.status();
    if wants_backends {
        for store in ["postgres", "redis"] {
            let st = &backends_status[store];
            match st["url"].as_str() {
                Some(url) => eprintln!(
                    "emu: {store} ({}) at {url}",
                    st["mode"].as_str().unwrap_or("?")
                ),
                None => {
                    if let Some(why) = st["reason"].as_str().or(st["state"].as_str()) {
                        eprintln!("emu: {store} off: {why}");
                    }
                }
            }
        }
    }
    let opts = UpOptions {
        logger,
        service_env,
        backends_status,
        ..UpOptions::default()
    };
    let running = match up::start_with(listeners, cfg, opts, shutdown.clone()).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("emu: {e}");
            backends.stop().await;
            return ExitCode::from(1);
        }
    };
    if let Err(e) = up::write_state(&project_dir, running.addr) {
        tracing::warn!("{e}");
    }
    let addr = running.addr;
    eprintln!("emu: front door on http://{addr}  (admin: http://{addr}/_emu/status)");
    for n in &names {
        eprintln!("emu: service {n} at http://{n}.localhost:{}", addr.port());
    }
    crate::shutdown_signal().await;
    eprintln!("emu: shutting down: finishing in-flight requests, then stopping instances");
    shutdown.cancel();
    running.wait().await;
    // Backends stop after the last instance.
    backends.stop().await;
    up::clear_state(&project_dir);
    eprintln!("emu: stopped");
    ExitCode::SUCCESS
}

async fn run_status(args: StatusArgs) -> ExitCode {
    let port = args.port.or_else(|| {
        let text = std::fs::read_to_string(".emu/emu.json").ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        v["port"].as_u64().and_then(|p| u16::try_from(p).ok())
    });
    let port = port.unwrap_or(crate::spec::limits::DEFAULT_FRONTDOOR_PORT);
    let url = format!("http://127.0.0.1:{port}/_emu/status");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap_or_default();
    let v: serde_json::Value = match client.get(&url).send().await {
        Ok(r) => match r.json().await {
            Ok(v) => v,
            Err(e) => {
                eprintln!("emu status: {url} did not answer emu's status JSON: {e}");
                return ExitCode::from(1);
            }
        },
        Err(_) => {
            eprintln!("emu status: no emu answers on 127.0.0.1:{port}. Start one with `emu up`, or pass --port");
            return ExitCode::from(1);
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        print!("{}", status_table(&v));
    }
    ExitCode::SUCCESS
}

/// Renders `/_emu/status` as a table people read.
pub fn status_table(v: &serde_json::Value) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "emu {} (pid {}) on port {}",
        v["emu"]["version"].as_str().unwrap_or("?"),
        v["emu"]["pid"],
        v["emu"]["port"]
    );
    let empty = Vec::new();
    for s in v["services"].as_array().unwrap_or(&empty) {
        let _ = writeln!(
            out,
            "\nSERVICE {}  {}  runner={} concurrency={} instances={}..{} timeout={}s",
            s["name"].as_str().unwrap_or("?"),
            s["url"].as_str().unwrap_or(""),
            s["runner"]["kind"].as_str().unwrap_or("?"),
            s["spec"]["concurrency"],
            s["spec"]["min_instances"],
            s["spec"]["max_instances"],
            s["spec"]["timeout_s"]
        );
        let _ = writeln!(
            out,
            "  desired={} ready={} starting={} draining={} queue={} requests={} cold_starts={} 429s={} 504s={}",
            s["desired"], s["ready"], s["starting"], s["draining"], s["queue_depth"], s["requests"], s["cold_starts"], s["rejected_429"], s["timeouts_504"]
        );
        if let Some(f) = s["last_failure"].as_str() {
            let _ = writeln!(out, "  last failure: {f}");
        }
        let instances = s["instances"].as_array().unwrap_or(&empty);
        if !instances.is_empty() {
            let _ = writeln!(
                out,
                "  {:<24} {:<9} {:>9} {:>9} {:>10}",
                "INSTANCE", "STATE", "IN-FLIGHT", "SERVED", "STARTUP"
            );
            for i in instances {
                let startup = i["startup_ms"]
                    .as_u64()
                    .map(|ms| format!("{ms}ms"))
                    .unwrap_or_else(|| "-".into());
                let _ = writeln!(
                    out,
                    "  {:<24} {:<9} {:>9} {:>9} {:>10}",
                    i["id"].as_str().unwrap_or("?"),
                    i["state"].as_str().unwrap_or("?"),
                    i["in_flight"].to_string(),
                    i["served"].to_string(),
                    startup
                );
            }
        }
    }
    out
}

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
    /// Run the demo's database migrations and exit (what a migration job runs).
    DemoMigrate,
    /// Stop the emu running in this folder (from another shell), like Ctrl-C there.
    Down(DownArgs),
    /// Cloud Run jobs: `emu job run NAME`.
    #[command(subcommand)]
    Job(JobCmd),
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

#[derive(Debug, Subcommand)]
pub enum JobCmd {
    /// Run one execution of a job (from emu.toml's [[job]] or a Cloud Run Job YAML) to completion.
    Run(JobRunArgs),
}

#[derive(Debug, Args)]
pub struct JobRunArgs {
    /// The job's name (optional with -f: the YAML's job).
    pub name: Option<String>,
    /// Config file (default: ./emu.toml).
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// A Cloud Run Job YAML.
    #[arg(long = "file", short = 'f', value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Backends when no emu is running in this folder (default: what emu.toml says).
    #[arg(long, value_name = "MODE")]
    pub backends: Option<crate::backends::Mode>,
    /// What each task runs (with -f), instead of the YAML's command.
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
        Cmd::Job(JobCmd::Run(args)) => run_job(args).await,
        Cmd::DemoMigrate => match crate::demo::migrate().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("emu demo-migrate: {e:#}");
                ExitCode::from(1)
            }
        },
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

async fn run_job(args: JobRunArgs) -> ExitCode {
    init_tracing();
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let loaded = if let Some(f) = &args.file {
        spec::load_yaml(f, &args.command)
    } else {
        let path = args.config.clone().unwrap_or_else(|| cwd.join("emu.toml"));
        if !path.exists() {
            eprintln!(
                "emu job run: no {} here: pass -c emu.toml or -f job.yaml",
                path.display()
            );
            return ExitCode::from(2);
        }
        spec::load_toml(&path)
    };
    let cfg = match loaded {
        Ok(c) => c,
        Err(e) => {
            eprintln!("emu job run: {e}");
            return ExitCode::from(2);
        }
    };
    let job = match (&args.name, cfg.jobs.len()) {
        (Some(n), _) => cfg.jobs.iter().find(|j| &j.name == n),
        (None, 1) => cfg.jobs.first(),
        (None, _) => None,
    };
    let Some(job) = job else {
        let names: Vec<&str> = cfg.jobs.iter().map(|j| j.name.as_str()).collect();
        eprintln!(
            "emu job run: no job {} in {} (jobs: {})",
            args.name
                .as_deref()
                .map(|n| format!("{n:?}"))
                .unwrap_or_else(|| "named".into()),
            cfg.source.display(),
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        );
        return ExitCode::from(2);
    };
    let store = match crate::secrets::SecretStore::load(&cfg.secrets, &cfg.project_dir) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("emu job run: {e}");
            return ExitCode::from(2);
        }
    };
    // The backends of an emu running in this folder, else our own for the length of the job.
    let running = std::fs::read_to_string(cfg.project_dir.join(".emu/backends.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .filter(|v| {
            v["pid"].as_u64().is_some_and(|p| {
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(p as i32), None).is_ok()
            })
        });
    let mut own = None;
    let mut env: Vec<(String, String)> = Vec::new();
    if let Some(v) = running {
        let db = v["database_url"].as_str().map(|u| match &job.database {
            Some(d) => crate::backends::with_database(u, d),
            None => u.to_string(),
        });
        if let Some(u) = db {
            env.push((job.database_env.clone(), u));
        }
        if let Some(u) = v["redis_url"].as_str() {
            env.push((job.redis_env.clone(), u.to_string()));
        }
    } else {
        let mode_or = |m: Option<crate::backends::Mode>| {
            m.or(args.backends).unwrap_or(crate::backends::Mode::None)
        };
        let mut pg = cfg.postgres.clone().unwrap_or_default();
        pg.mode = mode_or(
            cfg.postgres
                .as_ref()
                .map(|p| p.mode)
                .filter(|_| args.backends.is_none()),
        );
        let mut redis = cfg.redis.clone().unwrap_or_default();
        redis.mode = mode_or(
            cfg.redis
                .as_ref()
                .map(|r| r.mode)
                .filter(|_| args.backends.is_none()),
        );
        let plan = crate::backends::BackendsPlan {
            postgres: pg,
            redis,
            project_dir: cfg.project_dir.clone(),
            databases: job.database.iter().cloned().collect(),
        };
        match crate::backends::start(plan).await {
            Ok(b) => {
                env = backend_env(
                    &b,
                    job.database.as_deref(),
                    &job.database_env,
                    &job.redis_env,
                );
                own = Some(b);
            }
            Err(e) => {
                eprintln!("emu job run: {e}");
                return ExitCode::from(1);
            }
        }
    }
    if let Err(e) = store.check(&job.name, &job.secrets) {
        eprintln!("emu job run: {e}");
        if let Some(b) = own {
            b.stop().await;
        }
        return ExitCode::from(2);
    }
    match store.materialize(&job.name, &job.secrets, &cfg.project_dir) {
        Ok(m) => env.extend(m.env),
        Err(e) => {
            eprintln!("emu job run: {e}");
            return ExitCode::from(1);
        }
    }
    let exec = crate::jobs::run(job, &env).await;
    if let Some(b) = own {
        b.stop().await;
    }
    eprintln!("emu: {}", exec.describe());
    if exec.succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// `DATABASE_URL` / `REDIS_URL` (under the names the service chose), for the stores that are on.
fn backend_env(
    backends: &crate::backends::Backends,
    database: Option<&str>,
    database_env: &str,
    redis_env: &str,
) -> Vec<(String, String)> {
    let mut env = Vec::new();
    if let Some(url) = backends.database_url(database) {
        env.push((database_env.to_string(), url));
    }
    if let Some(url) = backends.redis_url() {
        env.push((redis_env.to_string(), url));
    }
    env
}

/// A job's env: backends' URLs and its secrets.
fn job_env(
    store: &crate::secrets::SecretStore,
    backends: &crate::backends::Backends,
    job: &crate::spec::JobSpec,
    project_dir: &Path,
) -> Result<Vec<(String, String)>, crate::secrets::SecretError> {
    let mut env = backend_env(
        backends,
        job.database.as_deref(),
        &job.database_env,
        &job.redis_env,
    );
    store.check(&job.name, &job.secrets)?;
    env.extend(store.materialize(&job.name, &job.secrets, project_dir)?.env);
    Ok(env)
}

/// Records the running emu's backend URLs (unmasked, mode 0600) so `emu job run` in the same
/// folder reaches the same servers.
fn write_backends_file(project_dir: &Path, backends: &crate::backends::Backends) {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = project_dir.join(".emu");
    let _ = std::fs::create_dir_all(&dir);
    let v = serde_json::json!({
        "pid": std::process::id(),
        "database_url": backends.database_url(None),
        "redis_url": backends.redis_url(),
    });
    let path = dir.join("backends.json");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&path);
    if let Ok(mut f) = file {
        let _ = std::io::Write::write_all(&mut f, v.to_string().as_bytes());
    }
}

/// Resolves which config `emu up` runs: -f YAMLs, --config, ./emu.toml, or the demo.
pub fn load_config(args: &UpArgs, cwd: &Path) -> Result<Config, SpecError> {
    let source =
        spec::ConfigSource::choose(&args.files, &args.command, args.config.as_deref(), cwd)?;
    let overrides = spec::Overrides {
        port: args.port,
        host: args.host,
        backends: args.backends,
    };
    spec::load(&source, &overrides, cwd)
}

async fn run_up(args: UpArgs) -> ExitCode {
    init_tracing();
    if let Err(e) = crate::frontdoor::loops::check_env() {
        eprintln!("emu: {e}");
        return ExitCode::from(2);
    }
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
    // Secrets and backends' URLs for every service and job.
    let store = match crate::secrets::SecretStore::load(&cfg.secrets, &project_dir) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("emu: {e}");
            backends.stop().await;
            return ExitCode::from(2);
        }
    };
    let mut service_env = std::collections::HashMap::new();
    let mut service_mounts = std::collections::HashMap::new();
    for s in &cfg.services {
        let mut env = backend_env(
            &backends,
            s.database.as_deref(),
            &s.database_env,
            &s.redis_env,
        );
        match store
            .check(&s.name, &s.secrets)
            .and_then(|()| store.materialize(&s.name, &s.secrets, &project_dir))
        {
            Ok(m) => {
                env.extend(m.env);
                service_mounts.insert(s.name.clone(), m.mounts);
            }
            Err(e) => {
                eprintln!("emu: {e}");
                backends.stop().await;
                return ExitCode::from(2);
            }
        }
        service_env.insert(s.name.clone(), env);
    }
    // Jobs that services depend on (migrations) run to success before any service starts.
    let mut needed: Vec<&crate::spec::JobSpec> = cfg
        .jobs
        .iter()
        .filter(|j| cfg.services.iter().any(|s| s.depends_on.contains(&j.name)))
        .collect();
    needed.dedup_by_key(|j| j.name.clone());
    for job in needed {
        eprintln!(
            "emu: running job {} before the services that depend on it",
            job.name
        );
        let exec = match job_env(&store, &backends, job, &project_dir) {
            Ok(env) => crate::jobs::run(job, &env).await,
            Err(e) => {
                eprintln!("emu: {e}");
                backends.stop().await;
                return ExitCode::from(2);
            }
        };
        eprintln!("emu: {}", exec.describe());
        if !exec.succeeded {
            eprintln!("emu: not starting: job {} failed", job.name);
            backends.stop().await;
            return ExitCode::from(1);
        }
    }
    write_backends_file(&project_dir, &backends);
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
        service_mounts,
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
            "\nSERVICE {}  {}{}  runner={} concurrency={} instances={}..{} timeout={}s",
            s["name"].as_str().unwrap_or("?"),
            s["url"].as_str().unwrap_or(""),
            s["port"]
                .as_u64()
                .map(|p| format!(" (and :{p})"))
                .unwrap_or_default(),
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

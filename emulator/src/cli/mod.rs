//! The `emu` command line: parses arguments, hands each subcommand to the library, and maps
//! its error to an exit code (0 ok, 1 failure, 2 bad input). `main.rs` only calls [`main`].

mod status;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::console::{self, Stream};
use crate::spec::{self, Config, ConfigSource, Overrides, SpecError};
use crate::telemetry::{LogFormat, LogTarget};
use crate::up::{self, UpOptions};
pub use status::status_table;

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
    /// Started by `emu up`: cleans up after an emu that died without stopping its instances.
    #[command(name = "__watchdog", hide = true)]
    Watchdog,
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
    /// native, external (url in emu.toml) or none. Default: what emu.toml says; auto for the demo
    /// and for a YAML that uses Cloud SQL or Redis.
    #[arg(long, value_name = "MODE")]
    pub backends: Option<crate::backends::Mode>,
    /// PostgreSQL alone (auto|docker|native|external|none), over --backends.
    #[arg(long, value_name = "MODE")]
    pub postgres: Option<crate::backends::Mode>,
    /// Redis alone (auto|docker|native|external|none), over --backends.
    #[arg(long, value_name = "MODE")]
    pub redis: Option<crate::backends::Mode>,
    /// Request log format.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Where request logs go: stderr, off, or a file path.
    #[arg(long, value_name = "stderr|off|PATH", default_value = "stderr")]
    pub request_log: LogTarget,
    /// How long `/_emu/events` keeps its per-second samples and events (e.g. 1h, 6h): cover
    /// your longest run if you read it only at the end.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = humantime::parse_duration)]
    pub timeline_retention: std::time::Duration,
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
    /// PostgreSQL alone, over --backends.
    #[arg(long, value_name = "MODE")]
    pub postgres: Option<crate::backends::Mode>,
    /// Redis alone, over --backends.
    #[arg(long, value_name = "MODE")]
    pub redis: Option<crate::backends::Mode>,
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

/// Parses argv and runs: exit code 0 ok, 1 failure, 2 bad input.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    if let Cmd::Watchdog = cli.command {
        // Blocks on its pipe and builds its own runtime only once emu is gone.
        return crate::watchdog::run_watchdog();
    }
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
        // `main` runs it before any runtime exists; here (a caller's runtime) on a plain thread.
        Cmd::Watchdog => std::thread::spawn(crate::watchdog::run_watchdog)
            .join()
            .unwrap_or(ExitCode::from(1)),
        Cmd::Status(args) => status::run_status(args).await,
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
                    let newline = !report.ends_with('\n') && !report.is_empty();
                    let end = if newline { "\n" } else { "" };
                    console::write(Stream::Stdout, &format!("{report}{end}"));
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
                console::write(Stream::Stdout, &out);
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

/// Prints `emu: …` (or `emu job run: …`) and returns the exit code.
fn fail(prefix: &str, e: impl std::fmt::Display, code: u8) -> ExitCode {
    eprintln!("{prefix}: {e}");
    ExitCode::from(code)
}

/// The config `emu job run` reads: `-f` a job YAML, else `-c` / ./emu.toml; `--backends`
/// applies when no emu runs in this folder.
fn job_config(args: &JobRunArgs, cwd: &Path) -> Result<Config, SpecError> {
    let overrides = Overrides {
        backends: args.backends,
        postgres: args.postgres,
        redis: args.redis,
        ..Overrides::default()
    };
    if let Some(f) = &args.file {
        let mut cfg = spec::load_yaml(f, &args.command)?;
        overrides.apply(&mut cfg);
        return Ok(cfg);
    }
    let path = args.config.clone().unwrap_or_else(|| cwd.join("emu.toml"));
    if !path.exists() {
        return Err(SpecError::new(
            &path,
            None,
            "no such config here: pass -c emu.toml or -f job.yaml",
        ));
    }
    spec::load(&ConfigSource::Toml(path), &overrides, cwd)
}

async fn run_job(args: JobRunArgs) -> ExitCode {
    init_tracing();
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let cfg = match job_config(&args, &cwd) {
        Ok(c) => c,
        Err(e) => return fail("emu job run", e, 2),
    };
    match crate::jobs::run_outside_up(&cfg, args.name.as_deref()).await {
        Ok(exec) => {
            eprintln!("emu: {}", exec.describe());
            ExitCode::SUCCESS
        }
        Err(crate::jobs::JobRunError::Failed(exec)) => fail("emu", exec.describe(), 1),
        Err(e) => {
            let code = e.exit_code();
            fail("emu job run", e, code)
        }
    }
}

/// Resolves which config `emu up` runs (-f YAMLs, --config, ./emu.toml, or the demo), with the
/// command line's settings applied before it is checked.
pub fn load_config(args: &UpArgs, cwd: &Path) -> Result<Config, SpecError> {
    let source = ConfigSource::choose(&args.files, &args.command, args.config.as_deref(), cwd)?;
    let overrides = Overrides {
        port: args.port,
        host: args.host,
        backends: args.backends,
        postgres: args.postgres,
        redis: args.redis,
        ..Overrides::default()
    }
    .frontdoor_from_env()
    .map_err(|m| SpecError::new(Path::new("environment"), None, m))?;
    spec::load(&source, &overrides, cwd)
}

async fn run_up(args: UpArgs) -> ExitCode {
    init_tracing();
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let cfg = match load_config(&args, &cwd) {
        Ok(c) => c,
        Err(e) => return fail("emu", e, 2),
    };
    let listeners = match up::bind(&cfg).await {
        Ok(l) => l,
        Err(e) => return fail("emu", &e, e.exit_code()),
    };
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        crate::shutdown_signal().await;
        signal.cancel();
    });
    let opts = UpOptions {
        request_log: args.request_log,
        log_format: args.log_format,
        timeline_retention: args.timeline_retention,
        ..UpOptions::default()
    };
    match up::run(cfg, listeners, opts, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail("emu", &e, e.exit_code()),
    }
}

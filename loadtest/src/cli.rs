//! The command line: clap's arguments, turned into the typed options of [`crate::commands`].
//!
//! Data flows one way: `main` parses a [`Cli`], [`run_cli`] checks the flags' text (a bad
//! `--tolerance`, `--shard` or `--duration` is exit 2 here), the commands run the libraries
//! (`run`, `compare`, `merge`) with plain options and pick the exit code. Nothing below this
//! module knows clap.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::commands::{self, exit, CompareCommand, MergeCommand, RunCommand};
use crate::compare;
use crate::report::ShardInfo;
use crate::run::{RateScaling, RunOptions};

/// Drive a scenario at a service with goose and judge it against its SLOs.
///
/// Exit codes: 0 pass · 1 an SLO failed · 2 bad input · 3 run invalid · 4 (`--baseline`) the
/// comparison is inconclusive.
#[derive(Debug, Parser)]
#[command(name = "loadtest", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a scenario (a name from scenarios/, or a path to a TOML file).
    Run(RunArgs),
    /// List the scenarios with their load and SLOs.
    List {
        /// A scenario file or a folder of them (default: ./scenarios and the repo's).
        path: Option<PathBuf>,
    },
    /// Say, with statistics, whether CURRENT regressed against BASELINE.
    ///
    /// Exit codes: 0 no regression · 1 regression · 2 bad input · 4 inconclusive (the baseline is
    /// too noisy to rule a regression out).
    Compare(CompareArgs),
    /// Merge shard reports (`run --shard I/N`) into one report, judged on the merged data.
    ///
    /// Exit codes: as `run` (0 pass · 1 an SLO failed · 2 bad input · 3 a shard was invalid).
    Merge(MergeArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct CompareArgs {
    /// A report.json (or its folder), or a folder of several runs' reports: a rolling
    /// baseline whose spread is taken as run-to-run noise.
    pub baseline: PathBuf,
    /// The report.json (or its folder) to judge.
    pub current: PathBuf,
    /// Where to write compare.md, compare.json and compare.html [default: CURRENT's folder].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// A change smaller than this is never a regression, however significant, e.g. 10% or 0.1.
    #[arg(long, value_name = "PCT", default_value = "10%")]
    pub tolerance: String,
    /// A latency percentile change smaller than this many ms is never a regression either.
    #[arg(long, value_name = "MS", default_value_t = compare::DEFAULT_FLOOR_MS)]
    pub floor_ms: f64,
    /// Bootstrap resamples per metric.
    #[arg(long, value_name = "N", default_value_t = compare::DEFAULT_RESAMPLES)]
    pub resamples: usize,
    /// Seed of the bootstrap (the verdict is deterministic given the inputs and the seed).
    #[arg(long, value_name = "N", default_value_t = compare::DEFAULT_SEED)]
    pub seed: u64,
}

#[derive(Debug, Clone, clap::Args)]
pub struct MergeArgs {
    /// Shard reports: report.json files or the folders holding them.
    #[arg(required = true, num_args = 1..)]
    pub reports: Vec<PathBuf>,
    /// Where to write the merged report.json, report.md, report.html and junit.xml.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Scenario name (baseline, peak, soak, smoke, …) or path to a scenario file.
    pub scenario: String,
    /// Base URL of the service [default: the scenario's, else http://127.0.0.1:8080].
    #[arg(long, value_name = "URL")]
    pub target: Option<String>,
    /// Compress (or stretch) the scenario's stages to last this long, e.g. 3m.
    #[arg(long, value_name = "D")]
    pub duration: Option<String>,
    /// Scale every stage so the peak rate is N requests per second.
    #[arg(long, value_name = "N", conflicts_with = "rps_scale")]
    pub rps: Option<f64>,
    /// Multiply every stage's rate by F.
    #[arg(long, value_name = "F")]
    pub rps_scale: Option<f64>,
    /// Where to write the reports [default: loadtest-runs/<scenario>-<timestamp>/].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// No progress at all: neither the live bar (on a terminal) nor the plain lines (elsewhere).
    #[arg(long)]
    pub no_progress: bool,
    /// When stderr is not a terminal (a CI log), print one progress line this often.
    #[arg(long, value_name = "D", default_value = "10s")]
    pub progress_interval: String,
    /// A header for every request, "Name: value"; repeat for more. It replaces the scenario's
    /// header of the same name, e.g. --header "Authorization: Bearer $TOKEN".
    #[arg(long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// Trust this CA (PEM) beside the platform's roots for an https:// target.
    #[arg(long, value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// Do not check the target's certificate (a test server's; never the real service's).
    #[arg(long)]
    pub insecure: bool,
    /// How often to read emu's timeline during the run (tests shorten it; emu keeps an hour).
    #[arg(long, value_name = "D", default_value = "5m", value_parser = humantime::parse_duration, hide = true)]
    pub emu_fetch_every: Duration,
    /// Run the I-th of N equal shares of the scenario's rate (one per machine), e.g. 2/4;
    /// `loadtest merge` joins the shards' reports.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
    /// Compare with this baseline (a report.json or a folder of them) right after the run;
    /// a regression makes the exit code 1.
    #[arg(long, value_name = "FILE|DIR")]
    pub baseline: Option<PathBuf>,
    /// Tolerance for `--baseline` (see `loadtest compare`).
    #[arg(long, value_name = "PCT", default_value = "10%", requires = "baseline")]
    pub tolerance: String,
}

/// Runs a parsed command line and returns the process exit code.
pub fn run_cli(cli: Cli) -> i32 {
    let parsed = match cli.command {
        Command::Run(args) => run_command(&args).map(|c| commands::run(&c)),
        Command::List { path } => Ok(commands::list(path.as_deref())),
        Command::Compare(args) => compare_command(&args).map(|c| commands::compare(&c)),
        Command::Merge(args) => Ok(commands::merge(&MergeCommand {
            reports: args.reports,
            out: args.out,
        })),
    };
    parsed.unwrap_or_else(|message| {
        eprintln!("loadtest: {message}");
        exit::BAD_INPUT
    })
}

/// `run`'s flags as options; a message for exit 2 when one cannot be read.
pub fn run_command(args: &RunArgs) -> Result<RunCommand, String> {
    let shard = args.shard.as_deref().map(parse_shard).transpose()?;
    let duration = args.duration.as_deref().map(parse_duration).transpose()?;
    let tolerance = parse_tolerance(&args.tolerance)?;
    let progress_interval = humantime::parse_duration(args.progress_interval.trim())
        .ok()
        .filter(|d| (Duration::from_millis(100)..=Duration::from_secs(3600)).contains(d))
        .ok_or_else(|| {
            format!(
                "--progress-interval {:?} must be a duration from 100ms to 1h, e.g. 10s",
                args.progress_interval
            )
        })?;
    let rate = match (args.rps, args.rps_scale) {
        (Some(n), _) => Some(RateScaling::PeakRps(n)),
        (None, Some(f)) => Some(RateScaling::Factor(f)),
        (None, None) => None,
    };
    Ok(RunCommand {
        run: RunOptions {
            scenario: args.scenario.clone(),
            target: args.target.clone(),
            duration,
            rate,
            out: args.out.clone(),
            shard,
            headers: args.headers.clone(),
            ca_cert: args.ca_cert.clone(),
            insecure: args.insecure,
            emu_fetch_every: Some(args.emu_fetch_every),
        },
        progress: !args.no_progress,
        progress_interval,
        baseline: args.baseline.clone(),
        tolerance,
    })
}

/// `compare`'s flags as options; a message for exit 2 when one is out of range.
pub fn compare_command(args: &CompareArgs) -> Result<CompareCommand, String> {
    let tolerance = parse_tolerance(&args.tolerance)?;
    if !args.floor_ms.is_finite() || !(0.0..=60_000.0).contains(&args.floor_ms) {
        return Err(format!(
            "--floor-ms {} must be between 0 and 60000",
            args.floor_ms
        ));
    }
    if args.resamples == 0 || args.resamples > 1_000_000 {
        return Err("--resamples must be between 1 and 1000000".into());
    }
    Ok(CompareCommand {
        baseline: args.baseline.clone(),
        current: args.current.clone(),
        out: args.out.clone(),
        options: compare::Options {
            tolerance,
            floor_ms: args.floor_ms,
            resamples: args.resamples,
            seed: args.seed,
        },
    })
}

/// `10%`, `10 %` or `0.1` → 0.1.
pub fn parse_tolerance(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let v = match t.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map(|v| v / 100.0),
        None => t.parse::<f64>(),
    }
    .map_err(|_| format!("--tolerance {s:?} is not a number; write it like 10% or 0.1"))?;
    if !v.is_finite() || !(0.0..=10.0).contains(&v) {
        return Err(format!("--tolerance {s:?} must be between 0% and 1000%"));
    }
    Ok(v)
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

/// `--duration 90s`, `3m`, `1h`.
pub fn parse_duration(d: &str) -> Result<Duration, String> {
    humantime::parse_duration(d.trim()).map_err(|e| {
        format!("--duration {d:?} is not a duration ({e}); write it like 90s, 3m or 1h")
    })
}

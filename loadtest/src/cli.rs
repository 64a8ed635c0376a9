//! Command-line arguments. Parsed in `main.rs`, handled by [`crate::run_cli`].

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Drive a scenario at a service with goose and judge it against its SLOs.
///
/// Exit codes: 0 pass · 1 an SLO failed · 2 bad input · 3 run invalid.
#[derive(Debug, Parser)]
#[command(name = "loadtest", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a scenario (a name from scenarios/, or a path to a TOML file).
    Run(RunCommand),
    /// List the scenarios with their load and SLOs.
    List {
        /// A scenario file or a folder of them (default: ./scenarios and the repo's).
        path: Option<PathBuf>,
    },
    /// Say, with statistics, whether CURRENT regressed against BASELINE.
    ///
    /// Exit codes: 0 no regression · 1 regression · 2 bad input.
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
    /// Bootstrap resamples per metric.
    #[arg(long, value_name = "N", default_value_t = crate::compare::DEFAULT_RESAMPLES)]
    pub resamples: usize,
    /// Seed of the bootstrap (the verdict is deterministic given the inputs and the seed).
    #[arg(long, value_name = "N", default_value_t = crate::compare::DEFAULT_SEED)]
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
    /// No live progress line (it is off anyway when stderr is not a terminal).
    #[arg(long)]
    pub no_progress: bool,
}

/// `run`'s arguments: [`RunArgs`] (what the library's `prepare` takes) plus sharding and the
/// baseline to compare with.
#[derive(Debug, Clone, clap::Args)]
pub struct RunCommand {
    #[command(flatten)]
    pub args: RunArgs,
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

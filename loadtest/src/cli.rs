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
    Run(RunArgs),
    /// List the scenarios with their load and SLOs.
    List {
        /// A scenario file or a folder of them (default: ./scenarios and the repo's).
        path: Option<PathBuf>,
    },
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

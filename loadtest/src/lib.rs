//! `loadtest`: drive a scenario at a service with goose, judge it against SLOs, join what an
//! emu front door saw, and write reports.
//!
//! `main.rs` only parses arguments; [`run_cli`] does the rest and returns the exit code, so
//! tests drive the same code the binary does.

pub mod cli;
pub mod compare;
pub mod emu;
pub mod engine;
pub mod merge;
pub mod report;
pub mod run;
pub mod scenario;
pub mod slo;

/// Exit codes shared with `emu` (design.md).
pub mod exit {
    pub const PASS: i32 = 0;
    pub const SLO_FAILED: i32 = 1;
    pub const BAD_INPUT: i32 = 2;
    pub const INVALID: i32 = 3;
}

/// Runs a parsed command line and returns the process exit code.
pub fn run_cli(cli: cli::Cli) -> i32 {
    match cli.command {
        cli::Command::Run(args) => run::run_command(&args),
        cli::Command::List { path } => run::list_command(path.as_deref()),
        cli::Command::Compare(args) => compare::compare_command(&args),
        cli::Command::Merge(args) => merge::merge_command(&args),
    }
}

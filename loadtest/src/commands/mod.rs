//! The commands: each takes plain typed options (built by [`crate::cli`] from the flags, or by
//! a test), runs the libraries, prints what a terminal shows, and returns the exit code. The
//! exit codes live here and nowhere below.

mod compare;
mod list;
mod merge;
mod run;

pub use compare::{compare, CompareCommand};
pub use list::list;
pub use merge::{merge, MergeCommand};
pub use run::{run, RunCommand};

use crate::report::{Report, Verdict};

/// Exit codes shared with `emu` (design.md).
pub mod exit {
    pub const PASS: i32 = 0;
    /// An SLO failed, or (`compare`, `run --baseline`) a regression was found.
    pub const SLO_FAILED: i32 = 1;
    pub const BAD_INPUT: i32 = 2;
    /// Run invalid: target unreachable, rate not held, interrupted, a shard invalid.
    pub const INVALID: i32 = 3;
    /// `compare`, `run --baseline`: no regression found, but the baseline is too noisy to rule
    /// one out (its own spread is wider than the floor); not a failure, not a pass.
    pub const INCONCLUSIVE: i32 = 4;
}

/// The exit code for a run's (or a merged run's) verdict.
pub fn verdict_code(v: Verdict) -> i32 {
    match v {
        Verdict::Pass => exit::PASS,
        Verdict::Fail => exit::SLO_FAILED,
        Verdict::Invalid => exit::INVALID,
    }
}

/// Writes `text` to stdout. A reader that has gone (`loadtest list | head`) is not an error:
/// it had what it wanted, so the rest is dropped quietly instead of panicking in `println!`.
fn print_stdout(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        Err(e) => eprintln!("loadtest: cannot write to stdout: {e}"),
    }
}

fn bad_input(msg: impl std::fmt::Display) -> i32 {
    eprintln!("loadtest: {msg}");
    exit::BAD_INPUT
}

/// Why the run is invalid and which SLOs failed, after its headline.
fn print_reasons(report: &Report) {
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
        if let Some(d) = &s.detail {
            eprintln!("    {d}");
        }
    }
}

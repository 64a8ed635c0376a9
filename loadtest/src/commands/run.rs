//! `loadtest run`: prepare, run, write the reports, and (`--baseline`) compare right after.

use std::path::PathBuf;

use super::compare::print_summary;
use super::{bad_input, exit, print_reasons, verdict_code};
use crate::compare;
use crate::engine::ProgressMode;
use crate::report::{self, load_baseline, Loaded};
use crate::run::{execute, prepare, RunOptions};

/// A run, whether to show the live progress line, and the baseline to compare it with.
#[derive(Debug, Clone, PartialEq)]
pub struct RunCommand {
    pub run: RunOptions,
    pub progress: bool,
    /// Off a terminal, one progress line every this long.
    pub progress_interval: std::time::Duration,
    /// A report.json or a folder of them; a regression makes the exit code 1.
    pub baseline: Option<PathBuf>,
    /// Tolerance of the comparison with `baseline`.
    pub tolerance: f64,
}

/// Exit 0 pass, 1 an SLO failed or a regression, 2 bad input, 3 the run is invalid.
pub fn run(cmd: &RunCommand) -> i32 {
    let prepared = match prepare(&cmd.run) {
        Ok(p) => p,
        Err(e) => return bad_input(e),
    };
    // The baseline is read before any traffic: a typo in its path should not cost a run.
    let baseline = match &cmd.baseline {
        None => None,
        Some(path) => match load_baseline(path) {
            Ok(b) => {
                if let Some(other) = b
                    .iter()
                    .find(|l| l.report.scenario.name != prepared.scenario.name)
                {
                    return bad_input(format!(
                        "{}: scenario {:?}, but this run is {:?}: give a baseline of the same scenario",
                        other.path.display(),
                        other.report.scenario.name,
                        prepared.scenario.name
                    ));
                }
                Some(b)
            }
            Err(e) => return bad_input(e),
        },
    };
    if let Err(e) = std::fs::create_dir_all(&prepared.out) {
        return bad_input(format!(
            "cannot create the output folder {}: {e}; pass a writable --out",
            prepared.out.display()
        ));
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadtest: cannot start the async runtime: {e}");
            return exit::INVALID;
        }
    };
    let progress = ProgressMode::for_stderr(cmd.progress, cmd.progress_interval);
    let report = rt.block_on(execute(&prepared, progress));
    if let Err(e) = report::write_all(&report, &prepared.out) {
        eprintln!(
            "loadtest: cannot write the reports to {}: {e}",
            prepared.out.display()
        );
    }
    eprintln!("{}", report.headline());
    print_reasons(&report);
    eprintln!("  reports: {}", prepared.out.display());
    let code = verdict_code(report.verdict);
    let Some(baseline) = baseline else {
        return code;
    };
    let current = Loaded {
        path: prepared.out.join("report.json"),
        report,
    };
    let opts = compare::Options {
        tolerance: cmd.tolerance,
        ..compare::Options::default()
    };
    match compare::compare(&baseline, &current, &opts) {
        Err(e) => bad_input(e),
        Ok(c) => {
            if let Err(e) = compare::write_all(&c, &baseline, &current, &prepared.out) {
                eprintln!(
                    "loadtest: cannot write the comparison to {}: {e}",
                    prepared.out.display()
                );
            }
            print_summary(&c);
            match (code, c.regressed()) {
                (exit::INVALID, _) => exit::INVALID,
                (_, true) => exit::SLO_FAILED,
                (exit::PASS, false) if c.inconclusive() => exit::INCONCLUSIVE,
                (code, false) => code,
            }
        }
    }
}

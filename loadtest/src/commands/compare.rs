//! `loadtest compare BASELINE CURRENT`, and the summary `run --baseline` prints too.

use std::path::{Path, PathBuf};

use super::{bad_input, exit};
use crate::compare::{self as lib, render, Comparison, MetricVerdict};
use crate::report::{load_baseline, load_report};

/// What to compare, where the comparison goes, and how it is judged.
#[derive(Debug, Clone, PartialEq)]
pub struct CompareCommand {
    /// A report, a run folder, or a folder of runs (a rolling baseline).
    pub baseline: PathBuf,
    pub current: PathBuf,
    /// Default: CURRENT's folder.
    pub out: Option<PathBuf>,
    pub options: lib::Options,
}

/// Exit 0 no regression, 1 regression, 2 a report that cannot be read or compared, 4
/// inconclusive (the baseline is too noisy to rule a regression out).
pub fn compare(cmd: &CompareCommand) -> i32 {
    let baseline = match load_baseline(&cmd.baseline) {
        Ok(b) => b,
        Err(e) => return bad_input(e),
    };
    let current = match load_report(&cmd.current) {
        Ok(c) => c,
        Err(e) => return bad_input(e),
    };
    let c = match lib::compare(&baseline, &current, &cmd.options) {
        Ok(c) => c,
        Err(e) => return bad_input(e),
    };
    let out = cmd.out.clone().unwrap_or_else(|| {
        current
            .path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."))
    });
    if let Err(e) = lib::write_all(&c, &baseline, &current, &out) {
        return bad_input(format!(
            "cannot write the comparison to {}: {e}; pass a writable --out",
            out.display()
        ));
    }
    print_summary(&c);
    eprintln!("  comparison: {}", out.display());
    if c.regressed() {
        exit::SLO_FAILED
    } else if c.inconclusive() {
        exit::INCONCLUSIVE
    } else {
        exit::PASS
    }
}

/// The terminal summary: headline, SLOs that now fail, regressions and improvements.
pub(super) fn print_summary(c: &Comparison) {
    eprintln!("{}", c.headline());
    for s in c.newly_failing() {
        eprintln!(
            "  SLO passed before, fails now: {} (baseline {}, now {})",
            s.description,
            render::num(s.baseline_observed, &s.unit),
            render::num(s.current_observed, &s.unit)
        );
    }
    for m in c.metrics.iter().filter(|m| {
        matches!(
            m.verdict,
            MetricVerdict::Regression | MetricVerdict::Improvement | MetricVerdict::Inconclusive
        )
    }) {
        eprintln!(
            "  {}: {} {} → {} ({}, 95% interval {})",
            m.verdict.as_str(),
            m.id,
            render::num(m.baseline, &m.unit),
            render::num(m.current, &m.unit),
            render::change(m),
            render::interval(m)
        );
    }
    for w in &c.warnings {
        eprintln!("  warning: {w}");
    }
}

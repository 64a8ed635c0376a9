//! `loadtest merge A.json B.json … --out DIR`.

use std::path::PathBuf;

use super::{bad_input, print_reasons, verdict_code};
use crate::merge::merge as merge_reports;
use crate::report::{self, load_report};

/// The shard reports (files or the folders holding them) and where the merged reports go.
#[derive(Debug, Clone, PartialEq)]
pub struct MergeCommand {
    pub reports: Vec<PathBuf>,
    pub out: PathBuf,
}

/// Exit code as `run`'s (3 when a shard was invalid), 2 for a report that cannot be merged.
pub fn merge(cmd: &MergeCommand) -> i32 {
    let mut inputs = Vec::new();
    for p in &cmd.reports {
        match load_report(p) {
            Ok(l) => inputs.push(l),
            Err(e) => return bad_input(e),
        }
    }
    let (report, warnings) = match merge_reports(&inputs) {
        Ok(x) => x,
        Err(e) => return bad_input(e),
    };
    if let Err(e) = report::write_all(&report, &cmd.out) {
        return bad_input(format!(
            "cannot write the merged reports to {}: {e}; pass a writable --out",
            cmd.out.display()
        ));
    }
    eprintln!(
        "{} (merged from {} reports)",
        report.headline(),
        inputs.len()
    );
    for w in warnings {
        eprintln!("  warning: {w}");
    }
    print_reasons(&report);
    eprintln!("  reports: {}", cmd.out.display());
    verdict_code(report.verdict)
}

//! `emu simulate`'s human output: the per-second table and the totals.

use std::fmt::Write as _;

use super::{SimResult, SimSecond};

/// Rows a table shows before it groups seconds into windows.
const MAX_TABLE_ROWS: usize = 300;

/// Folds consecutive seconds into one row: counts are summed, levels are taken at the window's
/// end, concurrency is averaged, waits are the worst second's, panic is any second's.
fn fold_window(w: &[SimSecond]) -> SimSecond {
    let last = &w[w.len() - 1];
    let sum = |f: fn(&SimSecond) -> u64| w.iter().map(f).sum::<u64>();
    let max = |f: fn(&SimSecond) -> f64| w.iter().map(f).fold(0.0_f64, f64::max);
    SimSecond {
        second: w[0].second,
        arrivals: sum(|s| s.arrivals),
        concurrency: w.iter().map(|s| s.concurrency).sum::<f64>() / w.len() as f64,
        cold_starts: w.iter().map(|s| s.cold_starts).sum(),
        rejected_429: sum(|s| s.rejected_429),
        failed_500: sum(|s| s.failed_500),
        timeouts_504: sum(|s| s.timeouts_504),
        panicking: w.iter().any(|s| s.panicking),
        queue_wait_p50_ms: max(|s| s.queue_wait_p50_ms),
        queue_wait_p95_ms: max(|s| s.queue_wait_p95_ms),
        ..last.clone()
    }
}

/// A human table: one row per second (or per window of seconds when the run is long, so an
/// hour fits on a screen), runs of identical rows collapsed, then the totals.
pub fn render_table(r: &SimResult) -> String {
    const COLLAPSE_OVER: usize = 40;
    let width = r.per_second.len().div_ceil(MAX_TABLE_ROWS).max(1);
    let rows: Vec<SimSecond> = if width == 1 {
        r.per_second.clone()
    } else {
        r.per_second.chunks(width).map(fold_window).collect()
    };
    let mut out = String::new();
    if width > 1 {
        let _ = writeln!(
            out,
            "(each row is {width} s: counts summed, levels at the row's end, waits the worst second's)"
        );
    }
    let _ = writeln!(
        out,
        "{:>6} {:>8} {:>8} {:>5} {:>5} {:>4} {:>6} {:>8} {:>6} {:>6} {:>6} {:>7} {:>5} {:>8} {:>8}",
        "sec",
        "arrivals",
        "conc",
        "ready",
        "start",
        "cold",
        "queue",
        "inflight",
        "429",
        "500",
        "504",
        "desired",
        "panic",
        "wait_p50",
        "wait_p95"
    );
    let body = |s: &SimSecond| {
        format!(
            "{:>8} {:>8.1} {:>5} {:>5} {:>4} {:>6} {:>8} {:>6} {:>6} {:>6} {:>7} {:>5} {:>8.0} {:>8.0}",
            s.arrivals,
            s.concurrency,
            s.ready,
            s.starting,
            s.cold_starts,
            s.queue_depth,
            s.in_flight,
            s.rejected_429,
            s.failed_500,
            s.timeouts_504,
            s.desired,
            if s.panicking { "yes" } else { "-" },
            s.queue_wait_p50_ms,
            s.queue_wait_p95_ms
        )
    };
    let collapse = rows.len() > COLLAPSE_OVER;
    let unit = if width == 1 { "seconds" } else { "rows" };
    let mut i = 0;
    while i < rows.len() {
        let row = body(&rows[i]);
        let _ = writeln!(out, "{:>6} {row}", rows[i].second);
        let mut j = i + 1;
        if collapse {
            while j < rows.len() && body(&rows[j]) == row {
                j += 1;
            }
            if j - i > 2 {
                let _ = writeln!(
                    out,
                    "{:>6} … same for {} more {unit} (to {})",
                    "",
                    j - i - 1,
                    rows[j - 1].second
                );
            } else {
                j = i + 1;
            }
        }
        i = j;
    }
    let t = &r.totals;
    let _ = writeln!(
        out,
        "\nrequests {}  served {}  429 {}  500 {}  504 {}  cold starts {}  max instances {}",
        t.requests,
        t.served,
        t.rejected_429,
        t.failed_500,
        t.timeouts_504,
        t.cold_starts,
        t.max_instances_seen
    );
    let _ = writeln!(
        out,
        "queue wait ms: p50 {:.0}  p95 {:.0}  p99 {:.0}  mean {:.1}",
        t.queue_wait_p50_ms, t.queue_wait_p95_ms, t.queue_wait_p99_ms, t.queue_wait_mean_ms
    );
    out
}

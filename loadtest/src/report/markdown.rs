//! `report.md`: short enough for a CI job summary, complete enough to act on.

use std::fmt::Write as _;

use super::{Report, Verdict};

fn obs(v: Option<f64>, unit: &str) -> String {
    match v {
        None => "—".into(),
        Some(v) if unit == "fraction" => format!("{:.2}%", v * 100.0),
        Some(v) => format!("{v:.2} {unit}"),
    }
}

/// Makes text safe inside a Markdown table cell (`{{choice:a|b}}` would split the row).
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn thr(v: f64, unit: &str) -> String {
    if unit == "fraction" {
        format!("{:.2}%", v * 100.0)
    } else {
        format!("{v} {unit}")
    }
}

/// Renders the Markdown report.
pub fn render(r: &Report) -> String {
    let mut s = String::new();
    let icon = match r.verdict {
        Verdict::Pass => "✅",
        Verdict::Fail => "❌",
        Verdict::Invalid => "⚠️",
    };
    let _ = writeln!(
        s,
        "# {icon} loadtest `{}`: {}{}\n",
        r.scenario.name,
        r.verdict.as_str().to_uppercase(),
        if r.interrupted { " (interrupted)" } else { "" }
    );
    let _ = writeln!(
        s,
        "Target `{}` · {} → {} · {:.1} s · load: {}\n",
        r.target, r.started_at, r.ended_at, r.duration_s, r.scenario.load
    );
    if !r.invalid_reasons.is_empty() {
        let _ = writeln!(s, "**The run is invalid:**\n");
        for reason in &r.invalid_reasons {
            let _ = writeln!(s, "- {reason}");
        }
        s.push('\n');
    }
    summary(&mut s, r);
    slo_section(&mut s, r);
    request_section(&mut s, r);
    emulator_section(&mut s, r);
    let _ = writeln!(
        s,
        "_Charts: `report.html` · data: `report.json` (schema v{})_",
        r.schema_version
    );
    s
}

/// Throughput, requests, latency, service time, status codes and the generator's health.
fn summary(s: &mut String, r: &Report) {
    let _ = writeln!(s, "| | |\n|---|---|");
    let _ = writeln!(
        s,
        "| Throughput | {:.1} rps achieved of {:.1} asked ({:.1} %) |",
        r.load.achieved_rps,
        r.load.hold_target_rps,
        r.load.achieved_ratio * 100.0
    );
    let _ = writeln!(
        s,
        "| Requests | {} sent of {} planned, {} errors ({:.2} %), {} without a response |",
        r.totals.requests,
        r.load.planned_requests,
        r.totals.errors,
        r.totals.error_rate * 100.0,
        r.totals.transport_errors
    );
    let _ = writeln!(
        s,
        "| Latency (from intended send) | p50 {:.1} · p95 {:.1} · p99 {:.1} · max {:.1} ms |",
        r.latency.p50_ms, r.latency.p95_ms, r.latency.p99_ms, r.latency.max_ms
    );
    let _ = writeln!(
        s,
        "| Service time | p50 {:.1} · p95 {:.1} · p99 {:.1} ms |",
        r.service_time.p50_ms, r.service_time.p95_ms, r.service_time.p99_ms
    );
    let codes: Vec<String> = r
        .status_codes
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    let _ = writeln!(s, "| Status codes | {} |", codes.join(" · "));
    let p = &r.load.pacing;
    let fd = p
        .open_file_limit
        .map(|n| format!(", open-file limit {n}"))
        .unwrap_or_default();
    let _ = writeln!(
        s,
        "| In flight | max_in_flight {} ({}{fd}); at most {} in flight; {} held back by the target, {} sent late by the generator |",
        p.max_in_flight,
        p.max_in_flight_basis,
        p.peak_in_flight,
        p.not_sent_target_saturated,
        p.sent_late_by_generator
    );
    let _ = writeln!(
        s,
        "| Generator | {} users, send lag p99 {:.1} ms |\n",
        r.load.users, r.load.send_lag_p99_ms
    );
}

fn slo_section(s: &mut String, r: &Report) {
    let _ = writeln!(s, "## SLOs\n");
    if r.slos.is_empty() {
        let _ = writeln!(s, "No SLOs in this scenario.\n");
    } else {
        let _ = writeln!(
            s,
            "| | SLO | Threshold | Observed | Detail |\n|---|---|---|---|---|"
        );
        for slo in &r.slos {
            let _ = writeln!(
                s,
                "| {} | `{}` {} | {} {} | {} | {} |",
                if slo.passed { "✅" } else { "❌" },
                cell(&slo.name),
                cell(&slo.description),
                slo.comparison.replace('<', "&lt;").replace('>', "&gt;"),
                thr(slo.threshold, &slo.unit),
                obs(slo.observed, &slo.unit),
                cell(slo.detail.as_deref().unwrap_or(""))
            );
        }
        s.push('\n');
    }
}

fn request_section(s: &mut String, r: &Report) {
    let _ = writeln!(s, "## Requests\n");
    let _ = writeln!(
        s,
        "| Name | Method | Path | Requests | Errors | p50 ms | p95 ms | p99 ms |\n|---|---|---|---|---|---|---|---|"
    );
    for q in &r.requests {
        let _ = writeln!(
            s,
            "| {} | {} | `{}` | {} | {} | {:.1} | {:.1} | {:.1} |",
            cell(&q.name),
            q.method,
            cell(&q.path),
            q.requests,
            q.errors,
            q.latency.p50_ms,
            q.latency.p95_ms,
            q.latency.p99_ms
        );
    }
    s.push('\n');
}

/// What the client saw of instances and cold starts, and what emu saw when it is emu.
fn emulator_section(s: &mut String, r: &Report) {
    let e = &r.emulator;
    let _ = writeln!(s, "## Emulator\n");
    if e.detected {
        let _ = writeln!(
            s,
            "emu front door detected. Client saw {} distinct instances and {} cold-start responses; p95 excluding cold starts {:.1} ms.\n",
            e.instances_seen, e.cold_start_responses, e.latency_excluding_cold_starts.p95_ms
        );
        if let Some(o) = &e.observed {
            let m = &o.summary;
            let _ = writeln!(
                s,
                "emu saw: max {} ready / {} starting instances, {} instances started ({} failed), {} cold starts, max queue depth {}, {} × 429, {} × 504, {} × 5xx.\n",
                m.max_ready, m.max_starting, m.instances_started, m.instances_failed,
                m.cold_starts, m.max_queue_depth, m.rejected_429, m.timeouts_504, m.errors_5xx
            );
        }
        if let Some(err) = &e.error {
            let _ = writeln!(s, "Events could not be read: {err}\n");
        }
    } else {
        let _ = writeln!(
            s,
            "The target is not an emu front door (no `/_emu/status`).\n"
        );
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn pipes_in_cells_are_escaped() {
        assert_eq!(super::cell("/x/{{choice:a|b}}"), "/x/{{choice:a\\|b}}");
    }
}

//! `compare.md` (a table for a CI summary) and `compare.html` (self-contained: inline CSS and
//! SVG, no script, no CDN) with baseline and current drawn over each other.

use std::fmt::Write as _;

use hdrhistogram::Histogram;

use super::{pct, Comparison, Metric, MetricVerdict};
use crate::engine::record::{add_hist, decode_hist, new_hist};
use crate::report::html::xml_escape as esc;
use crate::report::html::{chart, nice_ceiling, short, Series};
use crate::report::Report;

/// A value with its unit, `—` when missing.
pub fn num(v: Option<f64>, unit: &str) -> String {
    match v {
        None => "—".into(),
        Some(v) => match unit {
            "ms" => format!("{v:.2} ms"),
            "fraction" => format!("{:.3}%", v * 100.0),
            "rps" => format!("{v:.1} rps"),
            "ratio" => format!("{v:.2}×"),
            u => format!("{v:.3} {u}"),
        },
    }
}

fn signed(v: f64, kind: &str) -> String {
    if kind == "absolute" {
        format!("{:+.3} pp", v * 100.0)
    } else {
        format!("{:+.1}%", v * 100.0)
    }
}

/// The change, relative (%) or absolute (percentage points for error rates).
pub fn change(m: &Metric) -> String {
    m.change
        .map(|c| signed(c, &m.change_kind))
        .unwrap_or_else(|| "—".into())
}

/// The 95 % interval of the change.
pub fn interval(m: &Metric) -> String {
    m.interval
        .map(|[a, b]| {
            format!(
                "[{}, {}]",
                signed(a, &m.change_kind),
                signed(b, &m.change_kind)
            )
        })
        .unwrap_or_else(|| "—".into())
}

fn verdict_cell(m: &Metric) -> String {
    match m.verdict {
        MetricVerdict::Regression => "**regression**".into(),
        MetricVerdict::Improvement => "improvement".into(),
        v => v.as_str().into(),
    }
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

/// Renders compare.md.
pub fn markdown(c: &Comparison) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# loadtest compare — {}\n", cell(&c.scenario));
    let _ = writeln!(s, "**{}**\n", cell(&c.headline()));
    let _ = writeln!(
        s,
        "Baseline: {} run(s), {} requests ({}). Current: {} requests ({}). Tolerance {}, {:.0}% intervals, {} resamples, seed {}.\n",
        c.baseline.runs,
        c.baseline.requests,
        cell(&c.baseline.files.join(", ")),
        c.current.requests,
        cell(&c.current.files.join(", ")),
        pct(c.tolerance),
        c.confidence * 100.0,
        c.resamples,
        c.seed
    );
    let newly: Vec<_> = c.newly_failing().collect();
    if !newly.is_empty() {
        s.push_str("## SLOs that passed before and fail now\n\n");
        for x in newly {
            let _ = writeln!(
                s,
                "- **{}** — baseline {}, now {}",
                cell(&x.description),
                num(x.baseline_observed, &x.unit),
                num(x.current_observed, &x.unit)
            );
        }
        s.push('\n');
    }
    let other: Vec<_> = c
        .slo_changes
        .iter()
        .filter(|x| x.status != "newly_failing")
        .collect();
    if !other.is_empty() {
        s.push_str("## Other SLO changes\n\n");
        for x in other {
            let _ = writeln!(
                s,
                "- {} — {} (baseline {}, now {})",
                cell(&x.description),
                x.status.replace('_', " "),
                num(x.baseline_observed, &x.unit),
                num(x.current_observed, &x.unit)
            );
        }
        s.push('\n');
    }
    s.push_str("## Metrics\n\n| metric | baseline | current | change | 95% interval | verdict |\n|---|---:|---:|---:|---|---|\n");
    for m in &c.metrics {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {}{} |",
            cell(&m.id),
            num(m.baseline, &m.unit),
            num(m.current, &m.unit),
            change(m),
            interval(m),
            verdict_cell(m),
            m.detail
                .as_deref()
                .map(|d| format!(" ({})", cell(d.trim_start_matches("not judged: "))))
                .unwrap_or_default()
        );
    }
    if !c.warnings.is_empty() {
        s.push_str("\n## Warnings\n\n");
        for w in &c.warnings {
            let _ = writeln!(s, "- {}", cell(w));
        }
    }
    let _ = write!(
        s,
        "\n## Method\n\n- Rule: {}\n- Latency: {}\n- Error rate: {}\n- Throughput: {}\n- Baseline noise: {}\n",
        c.method.rule, c.method.latency, c.method.error_rate, c.method.throughput, c.method.baseline_noise
    );
    s
}

/// One second of one side: offset, merged latency histogram, mean requests of its runs.
type Seconds = (f64, Histogram<u64>, f64);

/// Per-second histograms of several runs merged by offset from each run's start.
fn merged_seconds(runs: &[&Report]) -> Vec<Seconds> {
    let n = runs.iter().map(|r| r.timeline.len()).max().unwrap_or(0);
    (0..n)
        .map(|i| {
            let mut h = new_hist(2);
            let mut reqs = 0.0;
            let mut k = 0.0;
            for r in runs {
                if let Some(item) = r.timeline.get(i) {
                    if let Some(x) = decode_hist(&item.histogram) {
                        add_hist(&mut h, &x);
                    }
                    reqs += item.requests as f64;
                    k += 1.0;
                }
            }
            (i as f64, h, if k > 0.0 { reqs / k } else { 0.0 })
        })
        .collect()
}

fn pct_line(secs: &[Seconds], q: f64) -> Vec<(f64, f64)> {
    secs.iter()
        .filter(|(_, h, _)| !h.is_empty())
        .map(|(x, h, _)| (*x, h.value_at_quantile(q) as f64 / 1000.0))
        .collect()
}

/// Grouped bars per scope: p50/p95/p99 baseline (grey) and current (coloured by verdict) with
/// the current value's 95 % interval as a whisker.
fn percentile_bars(c: &Comparison) -> String {
    let rows: Vec<&Metric> = c
        .metrics
        .iter()
        .filter(|m| m.unit == "ms" && m.baseline.is_some() && m.current.is_some())
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    let (w, l, r, row_h) = (900.0, 230.0, 90.0, 26.0);
    let h = 34.0 + row_h * rows.len() as f64;
    let xmax = nice_ceiling(
        rows.iter()
            // Whiskers beyond 1.5× the largest value are clipped at the edge, so a wide p99
            // interval does not squash every bar.
            .map(|m| m.baseline.unwrap_or(0.0).max(m.current.unwrap_or(0.0)) * 1.5)
            .fold(0.0, f64::max),
    );
    let px = |x: f64| l + (x / xmax).clamp(0.0, 1.0) * (w - l - r);
    let mut s = String::new();
    let _ = write!(
        s,
        "<figure><svg viewBox=\"0 0 {w} {h}\" width=\"100%\" role=\"img\" aria-label=\"percentiles per request\"><text x=\"10\" y=\"16\" class=\"title\">Percentiles per request: baseline (grey) and current, with the 95% interval (ms, 0–{})</text>",
        short(xmax)
    );
    for (i, m) in rows.iter().enumerate() {
        let y = 30.0 + row_h * i as f64;
        let b = m.baseline.unwrap_or(0.0);
        let cur = m.current.unwrap_or(0.0);
        let color = match m.verdict {
            MetricVerdict::Regression => "#c62828",
            MetricVerdict::Improvement => "#2e7d32",
            _ => "#1565c0",
        };
        let _ = write!(
            s,
            "<text x=\"{:.0}\" y=\"{:.1}\" class=\"tick\" text-anchor=\"end\">{}</text><rect x=\"{l}\" y=\"{:.1}\" width=\"{:.1}\" height=\"9\" fill=\"#9e9e9e\"/><rect x=\"{l}\" y=\"{:.1}\" width=\"{:.1}\" height=\"9\" fill=\"{color}\"/>",
            l - 8.0,
            y + 14.0,
            esc(&m.id),
            y + 3.0,
            px(b) - l,
            y + 13.0,
            px(cur) - l,
        );
        if let Some([lo, hi]) = m.interval {
            let (a, z) = (px(b * (1.0 + lo)), px(b * (1.0 + hi)));
            let _ = write!(
                s,
                "<line x1=\"{a:.1}\" x2=\"{z:.1}\" y1=\"{0:.1}\" y2=\"{0:.1}\" stroke=\"#000\"/><line x1=\"{a:.1}\" x2=\"{a:.1}\" y1=\"{1:.1}\" y2=\"{2:.1}\" stroke=\"#000\"/><line x1=\"{z:.1}\" x2=\"{z:.1}\" y1=\"{1:.1}\" y2=\"{2:.1}\" stroke=\"#000\"/>",
                y + 17.5,
                y + 14.0,
                y + 21.0
            );
        }
        let _ = write!(
            s,
            "<text x=\"{:.0}\" y=\"{:.1}\" class=\"tick\">{} → {}</text>",
            w - r + 4.0,
            y + 14.0,
            short(b),
            short(cur)
        );
    }
    s.push_str("</svg></figure>\n");
    s
}

/// Baseline (dashed) under current over time: p50/p95, p99 and throughput.
fn over_time_charts(s: &mut String, base: &[Seconds], cur: &[Seconds]) {
    s.push_str("<h2>Latency over time (overall)</h2>");
    s.push_str(&chart(
        "p50 and p95, baseline dashed",
        "ms",
        &[
            Series {
                label: "baseline p50",
                color: "#90caf9",
                dashed: true,
                points: pct_line(base, 0.50),
            },
            Series {
                label: "baseline p95",
                color: "#ffcc80",
                dashed: true,
                points: pct_line(base, 0.95),
            },
            Series {
                label: "current p50",
                color: "#1565c0",
                dashed: false,
                points: pct_line(cur, 0.50),
            },
            Series {
                label: "current p95",
                color: "#e65100",
                dashed: false,
                points: pct_line(cur, 0.95),
            },
        ],
    ));
    s.push_str(&chart(
        "p99, baseline dashed",
        "ms",
        &[
            Series {
                label: "baseline p99",
                color: "#ef9a9a",
                dashed: true,
                points: pct_line(base, 0.99),
            },
            Series {
                label: "current p99",
                color: "#c62828",
                dashed: false,
                points: pct_line(cur, 0.99),
            },
        ],
    ));
    s.push_str(&chart(
        "Throughput (baseline: mean of its runs)",
        "requests/s",
        &[
            Series {
                label: "baseline",
                color: "#9e9e9e",
                dashed: true,
                points: base.iter().map(|(x, _, r)| (*x, *r)).collect(),
            },
            Series {
                label: "current",
                color: "#2e7d32",
                dashed: false,
                points: cur.iter().map(|(x, _, r)| (*x, *r)).collect(),
            },
        ],
    ));
}

/// Renders compare.html.
pub fn html(c: &Comparison, baseline: &[&Report], current: &Report) -> String {
    let base = merged_seconds(baseline);
    let cur = merged_seconds(&[current]);
    let mut s = String::new();
    let _ = write!(
        s,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>loadtest compare — {}</title><style>body{{font:14px/1.4 system-ui,sans-serif;margin:2em auto;max-width:960px;color:#222}}table{{border-collapse:collapse;width:100%}}td,th{{border-bottom:1px solid #ddd;padding:3px 6px;text-align:right}}td:first-child,th:first-child{{text-align:left}}.regression{{background:#ffebee;font-weight:bold}}.improvement{{background:#e8f5e9}}.grid{{stroke:#eee}}.tick{{font-size:11px;fill:#555}}.title{{font-size:13px;font-weight:bold}}.bad{{color:#c62828}}.good{{color:#2e7d32}}figure{{margin:1em 0}}</style></head><body>",
        esc(&c.scenario)
    );
    let cls = if c.regressed() { "bad" } else { "good" };
    let _ = write!(
        s,
        "<h1>loadtest compare — {}</h1><p class=\"{cls}\"><strong>{}</strong></p><p>Baseline: {} run(s), {} requests. Current: {} requests. Tolerance {}, {:.0}% intervals, {} resamples, seed {}.</p>",
        esc(&c.scenario),
        esc(&c.headline()),
        c.baseline.runs,
        c.baseline.requests,
        c.current.requests,
        pct(c.tolerance),
        c.confidence * 100.0,
        c.resamples,
        c.seed
    );
    let newly: Vec<_> = c.newly_failing().collect();
    if !newly.is_empty() {
        s.push_str("<h2 class=\"bad\">SLOs that passed before and fail now</h2><ul>");
        for x in newly {
            let _ = write!(
                s,
                "<li><strong>{}</strong> — baseline {}, now {}</li>",
                esc(&x.description),
                esc(&num(x.baseline_observed, &x.unit)),
                esc(&num(x.current_observed, &x.unit))
            );
        }
        s.push_str("</ul>");
    }
    over_time_charts(&mut s, &base, &cur);
    s.push_str("<h2>Per request</h2>");
    s.push_str(&percentile_bars(c));
    s.push_str("<h2>Metrics</h2><table><tr><th>metric</th><th>baseline</th><th>current</th><th>change</th><th>95% interval</th><th>verdict</th></tr>");
    for m in &c.metrics {
        let class = match m.verdict {
            MetricVerdict::Regression => " class=\"regression\"",
            MetricVerdict::Improvement => " class=\"improvement\"",
            _ => "",
        };
        let _ = write!(
            s,
            "<tr{class}><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&m.id),
            esc(&num(m.baseline, &m.unit)),
            esc(&num(m.current, &m.unit)),
            esc(&change(m)),
            esc(&interval(m)),
            esc(m.verdict.as_str())
        );
    }
    s.push_str("</table>");
    if !c.warnings.is_empty() {
        s.push_str("<h2>Warnings</h2><ul>");
        for w in &c.warnings {
            let _ = write!(s, "<li>{}</li>", esc(w));
        }
        s.push_str("</ul>");
    }
    let _ = writeln!(
        s,
        "<h2>Method</h2><ul><li>Rule: {}</li><li>Latency: {}</li><li>Error rate: {}</li><li>Throughput: {}</li><li>Baseline noise: {}</li></ul></body></html>",
        esc(&c.method.rule),
        esc(&c.method.latency),
        esc(&c.method.error_rate),
        esc(&c.method.throughput),
        esc(&c.method.baseline_noise)
    );
    s
}

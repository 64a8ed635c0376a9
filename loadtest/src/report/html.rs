//! `report.html`: one self-contained file (inline CSS and SVG, no script, no CDN — CI
//! artifacts are often opened offline) with charts of latency, throughput, errors and instances.

use std::fmt::Write as _;

/// Escapes text for XML (and HTML) attributes and content; drops control characters XML 1.0
/// cannot hold.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}

use xml_escape as esc;

use super::{Report, Verdict};

/// One line of a chart. Plans (a target rate, a desired count) and baselines are dashed, so the
/// measured line drawn over them stays visible.
pub(crate) struct Series<'a> {
    pub label: &'a str,
    pub color: &'a str,
    pub dashed: bool,
    pub points: Vec<(f64, f64)>,
}

/// A line chart as inline SVG; x in seconds. Shared by report.html and compare.html.
pub(crate) fn chart(title: &str, unit: &str, series: &[Series<'_>]) -> String {
    let (w, h, l, r, t, b) = (900.0, 240.0, 60.0, 20.0, 28.0, 30.0);
    let xmax = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold(1.0_f64, f64::max);
    let ymax_raw = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(0.0_f64, f64::max);
    let ymax = nice_ceiling(ymax_raw);
    let px = |x: f64| l + (x / xmax) * (w - l - r);
    let py = |y: f64| t + (1.0 - y / ymax) * (h - t - b);
    let mut s = String::new();
    let _ = write!(
        s,
        "<figure><svg viewBox=\"0 0 {w} {h}\" width=\"100%\" role=\"img\" aria-label=\"{}\">",
        esc(title)
    );
    let _ = write!(
        s,
        "<text x=\"{l}\" y=\"16\" class=\"title\">{} ({})</text>",
        esc(title),
        esc(unit)
    );
    for i in 0..=4 {
        let y = ymax * f64::from(i) / 4.0;
        let _ = write!(
            s,
            "<line x1=\"{l}\" x2=\"{}\" y1=\"{py:.1}\" y2=\"{py:.1}\" class=\"grid\"/><text x=\"{}\" y=\"{:.1}\" class=\"tick\" text-anchor=\"end\">{}</text>",
            w - r,
            l - 6.0,
            py(y) + 4.0,
            short(y),
            py = py(y)
        );
    }
    for i in 0..=5 {
        let x = xmax * f64::from(i) / 5.0;
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{}\" class=\"tick\" text-anchor=\"middle\">{}s</text>",
            px(x),
            h - 10.0,
            short(x)
        );
    }
    let mut lx = w - r - 10.0;
    for se in series.iter().rev() {
        if se.points.is_empty() {
            continue;
        }
        let pts: Vec<String> = downsample(&se.points, 1200)
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y)))
            .collect();
        let dash = if se.dashed {
            " stroke-dasharray=\"6 4\""
        } else {
            ""
        };
        let _ = write!(
            s,
            "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"1.6\"{dash} points=\"{}\"/>",
            se.color,
            pts.join(" ")
        );
        lx -= 8.0 * se.label.len() as f64 + 24.0;
        let _ = write!(
            s,
            "<rect x=\"{lx:.0}\" y=\"8\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{:.0}\" y=\"17\" class=\"tick\">{}</text>",
            se.color,
            lx + 14.0,
            esc(se.label)
        );
    }
    s.push_str("</svg></figure>\n");
    s
}

/// At most about `max` points, keeping each bucket's highest value so spikes stay visible
/// (a six-hour soak has 21 600 seconds; the chart has 840 pixels).
fn downsample(points: &[(f64, f64)], max: usize) -> Vec<(f64, f64)> {
    if points.len() <= max {
        return points.to_vec();
    }
    let per = points.len().div_ceil(max);
    points
        .chunks(per)
        .map(|c| {
            let y = c.iter().map(|p| p.1).fold(f64::MIN, f64::max);
            (c[0].0, y)
        })
        .collect()
}

pub(crate) fn nice_ceiling(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if v <= m * mag {
            return m * mag;
        }
    }
    10.0 * mag
}

pub(crate) fn short(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if v >= 100.0 || (v - v.round()).abs() < 1e-9 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// Renders the HTML report: one self-contained page, inline SVG charts, no script.
pub fn render(r: &Report) -> String {
    let mut charts = client_charts(r);
    if let Some(o) = r
        .emulator
        .observed
        .as_ref()
        .filter(|o| !o.timeline.is_empty())
    {
        charts.push_str(&emu_charts(o));
    }
    let verdict_class = match r.verdict {
        Verdict::Pass => "pass",
        Verdict::Fail => "fail",
        Verdict::Invalid => "invalid",
    };
    let slos = slo_rows(r);
    let reqs = request_rows(r);
    let invalid: String = r
        .invalid_reasons
        .iter()
        .map(|x| format!("<li>{}</li>", esc(x)))
        .collect();
    let emu = emu_section(r);
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>loadtest {name}: {verdict}</title>
<style>
body{{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:960px;color:#212529}}
h1 .pass{{color:#2b8a3e}} h1 .fail{{color:#c92a2a}} h1 .invalid{{color:#e67700}}
table{{border-collapse:collapse;width:100%;margin:.5em 0 1.5em}} td,th{{border-bottom:1px solid #dee2e6;padding:4px 8px;text-align:left}}
tr.fail td:first-child{{color:#c92a2a;font-weight:bold}} tr.pass td:first-child{{color:#2b8a3e}}
svg .grid{{stroke:#e9ecef}} svg .tick{{font-size:11px;fill:#495057}} svg .title{{font-size:13px;font-weight:600}}
figure{{margin:0 0 1em}}
</style></head><body>
<h1>loadtest <code>{name}</code>: <span class="{vclass}">{verdict}</span>{interrupted}</h1>
<p>Target <code>{target}</code> · {start} → {end} · {dur:.1} s · {load}</p>
{invalid_block}
<table><tr><th>Throughput</th><td>{ach:.1} rps achieved of {asked:.1} asked</td></tr>
<tr><th>Requests</th><td>{reqs_n} ({errs} errors, {rate:.2} %)</td></tr>
<tr><th>Latency (from intended send)</th><td>p50 {p50:.1} · p95 {p95:.1} · p99 {p99:.1} · max {max:.1} ms</td></tr></table>
<h2>SLOs</h2><table><tr><th></th><th>SLO</th><th>Description</th><th>Threshold</th><th>Observed</th><th>Detail</th></tr>{slos}</table>
<h2>Charts</h2>
{charts}
<h2>Requests</h2><table><tr><th>Name</th><th>Method</th><th>Path</th><th>Requests</th><th>Errors</th><th>p50 ms</th><th>p95 ms</th><th>p99 ms</th></tr>{reqs}</table>
<h2>Emulator</h2>{emu}
<p><small>report.json schema v{schema}</small></p>
</body></html>
"#,
        name = esc(&r.scenario.name),
        verdict = r.verdict.as_str().to_uppercase(),
        vclass = verdict_class,
        interrupted = if r.interrupted { " (interrupted)" } else { "" },
        target = esc(&r.target),
        start = esc(&r.started_at),
        end = esc(&r.ended_at),
        dur = r.duration_s,
        load = esc(&r.scenario.load),
        invalid_block = if invalid.is_empty() {
            String::new()
        } else {
            format!("<p><strong>The run is invalid:</strong></p><ul>{invalid}</ul>")
        },
        ach = r.load.achieved_rps,
        asked = r.load.hold_target_rps,
        reqs_n = r.totals.requests,
        errs = r.totals.errors,
        rate = r.totals.error_rate * 100.0,
        p50 = r.latency.p50_ms,
        p95 = r.latency.p95_ms,
        p99 = r.latency.p99_ms,
        max = r.latency.max_ms,
        schema = r.schema_version,
    )
}

/// Latency, throughput and errors per second, as the client saw them.
fn client_charts(r: &Report) -> String {
    let tl = &r.timeline;
    let pts = |f: &dyn Fn(&super::TimelineItem) -> f64| -> Vec<(f64, f64)> {
        tl.iter().map(|i| (i.second as f64, f(i))).collect()
    };
    let mut charts = String::new();
    charts.push_str(&chart(
        "Latency percentiles per second, from intended send",
        "ms",
        &[
            Series {
                label: "p50",
                dashed: false,
                color: "#2b8a3e",
                points: pts(&|i| i.p50_ms),
            },
            Series {
                label: "p95",
                dashed: false,
                color: "#e67700",
                points: pts(&|i| i.p95_ms),
            },
            Series {
                label: "p99",
                dashed: false,
                color: "#c92a2a",
                points: pts(&|i| i.p99_ms),
            },
        ],
    ));
    charts.push_str(&chart(
        "Throughput",
        "requests/s",
        &[
            Series {
                label: "target",
                dashed: true,
                color: "#868e96",
                points: pts(&|i| i.target_rps),
            },
            Series {
                label: "achieved",
                dashed: false,
                color: "#1971c2",
                points: pts(&|i| i.rps),
            },
        ],
    ));
    charts.push_str(&chart(
        "Errors per second",
        "requests",
        &[
            Series {
                label: "errors",
                dashed: false,
                color: "#c92a2a",
                points: pts(&|i| i.errors as f64),
            },
            Series {
                label: "cold starts",
                dashed: false,
                color: "#7048e8",
                points: pts(&|i| i.cold_starts as f64),
            },
        ],
    ));
    charts
}

/// Instances and queueing per second, as emu saw them.
fn emu_charts(o: &crate::emu::EmuObserved) -> String {
    let mut charts = String::new();
    let e = |f: &dyn Fn(&crate::emu::EmuSecond) -> u64| -> Vec<(f64, f64)> {
        o.timeline
            .iter()
            .map(|i| (i.second as f64, f(i) as f64))
            .collect()
    };
    charts.push_str(&chart(
        "Instances (emu)",
        "instances",
        &[
            Series {
                label: "ready",
                dashed: false,
                color: "#2b8a3e",
                points: e(&|i| i.ready),
            },
            Series {
                label: "starting",
                dashed: false,
                color: "#e67700",
                points: e(&|i| i.starting),
            },
            Series {
                label: "desired",
                dashed: true,
                color: "#868e96",
                points: e(&|i| i.desired),
            },
        ],
    ));
    charts.push_str(&chart(
        "Queueing and rejections (emu)",
        "per second",
        &[
            Series {
                label: "queue depth",
                dashed: false,
                color: "#1971c2",
                points: e(&|i| i.queue_depth),
            },
            Series {
                label: "429",
                dashed: false,
                color: "#c92a2a",
                points: e(&|i| i.rejected_429),
            },
            Series {
                label: "504",
                dashed: false,
                color: "#862e9c",
                points: e(&|i| i.timeouts_504),
            },
            Series {
                label: "cold starts",
                dashed: false,
                color: "#7048e8",
                points: e(&|i| i.cold_starts),
            },
        ],
    ));
    charts
}

fn slo_rows(r: &Report) -> String {
    let mut slos = String::new();
    for s in &r.slos {
        let _ = write!(
            slos,
            "<tr class=\"{}\"><td>{}</td><td><code>{}</code></td><td>{}</td><td>{} {}</td><td>{}</td><td>{}</td></tr>",
            if s.passed { "pass" } else { "fail" },
            if s.passed { "PASS" } else { "FAIL" },
            esc(&s.name),
            esc(&s.description),
            esc(&s.comparison),
            s.threshold,
            s.observed.map(|o| format!("{o:.3} {}", s.unit)).unwrap_or_else(|| "—".into()),
            esc(s.detail.as_deref().unwrap_or(""))
        );
    }
    slos
}

fn request_rows(r: &Report) -> String {
    let mut reqs = String::new();
    for q in &r.requests {
        let _ = write!(
            reqs,
            "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td></tr>",
            esc(&q.name), esc(&q.method), esc(&q.path), q.requests, q.errors,
            q.latency.p50_ms, q.latency.p95_ms, q.latency.p99_ms
        );
    }
    reqs
}

/// What the client and (when it is emu) the front door saw of instances and cold starts.
fn emu_section(r: &Report) -> String {
    if r.emulator.detected {
        let mut s = format!(
            "<p>emu front door detected; the client saw {} distinct instances and {} cold-start responses (p95 excluding cold starts {:.1} ms).</p>",
            r.emulator.instances_seen, r.emulator.cold_start_responses,
            r.emulator.latency_excluding_cold_starts.p95_ms
        );
        if let Some(o) = &r.emulator.observed {
            let m = &o.summary;
            let _ = write!(
                s,
                "<p>emu saw max {} ready and {} starting instances, {} started, {} failed, {} cold starts, max queue depth {}, {} × 429, {} × 504.</p>",
                m.max_ready, m.max_starting, m.instances_started, m.instances_failed,
                m.cold_starts, m.max_queue_depth, m.rejected_429, m.timeouts_504
            );
        }
        if let Some(e) = &r.emulator.error {
            let _ = write!(s, "<p>Events could not be read: {}</p>", esc(e));
        }
        s
    } else {
        "<p>The target is not an emu front door.</p>".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downsampling_keeps_spikes() {
        let mut pts: Vec<(f64, f64)> = (0..21_600).map(|i| (f64::from(i), 1.0)).collect();
        pts[12_345].1 = 99.0;
        let d = downsample(&pts, 1200);
        assert!(d.len() <= 1200);
        assert!(d.iter().any(|p| p.1 == 99.0));
        assert_eq!(nice_ceiling(730.0), 1000.0);
        assert_eq!(nice_ceiling(0.0), 1.0);
    }
}

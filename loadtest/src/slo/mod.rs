//! SLO rules, judged over the whole run and over windows.
//!
//! Pure: takes the scenario's objectives and what was recorded, returns one result per rule.
//! A latency rule with no data fails (a run that completed nothing met no objective); a drift
//! rule on a run shorter than two windows is reported as not judged and passes.

use serde::{Deserialize, Serialize};

use crate::engine::record::{pct_ms, Recorder};
use crate::engine::Pacing;
use crate::scenario::{fmt_dur, fmt_num, LatencySlo, Slos};

/// One SLO's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SloResult {
    /// Stable id, e.g. `p95_ms`, `request.home.p99_ms`, `windowed.p95_ms`, `drift.p95_ratio`.
    pub name: String,
    pub description: String,
    /// `<=` (observed must not exceed threshold) or `>=`.
    pub comparison: String,
    pub threshold: f64,
    pub observed: Option<f64>,
    pub unit: String,
    pub passed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

fn at_most(
    name: String,
    description: String,
    threshold: f64,
    observed: Option<f64>,
    unit: &str,
) -> SloResult {
    let passed = observed.is_some_and(|o| o <= threshold);
    SloResult {
        detail: observed
            .is_none()
            .then(|| "no completed requests".to_string()),
        name,
        description,
        comparison: "<=".into(),
        threshold,
        observed,
        unit: unit.into(),
        passed,
    }
}

fn latency_rules(
    out: &mut Vec<SloResult>,
    prefix: &str,
    label: &str,
    slo: &LatencySlo,
    hist: &hdrhistogram::Histogram<u64>,
) {
    for (p, q, t) in [
        ("p50", 0.50, slo.p50_ms),
        ("p95", 0.95, slo.p95_ms),
        ("p99", 0.99, slo.p99_ms),
    ] {
        if let Some(t) = t {
            out.push(at_most(
                format!("{prefix}{p}_ms"),
                format!("{label}{p} latency ≤ {} ms", fmt_num(t)),
                t,
                pct_ms(hist, q),
                "ms",
            ));
        }
    }
}

/// p95 (ms) of each whole window of `window_s` seconds that saw requests: `(start_s, p95)`.
pub fn window_p95s(rec: &Recorder, window_s: usize) -> Vec<(usize, f64)> {
    let w = window_s.max(1);
    let n = rec.seconds.len();
    let mut out = Vec::new();
    let mut a = 0;
    while a < n {
        let h = rec.window(a, a + w);
        if let Some(p) = pct_ms(&h, 0.95) {
            out.push((a, p));
        }
        a += w;
    }
    out
}

/// Judges every SLO the scenario sets. `achieved_rps` is the rate held over the hold stages.
pub fn evaluate(
    slos: &Slos,
    rec: &Recorder,
    request_names: &[String],
    achieved_rps: f64,
) -> Vec<SloResult> {
    let mut out = Vec::new();
    latency_rules(&mut out, "", "", &slos.overall, &rec.overall);
    if let Some(t) = slos.p95_excluding_cold_starts_ms {
        out.push(at_most(
            "p95_excluding_cold_starts_ms".into(),
            format!("p95 latency excluding cold starts ≤ {} ms", fmt_num(t)),
            t,
            pct_ms(&rec.excluding_cold, 0.95),
            "ms",
        ));
    }
    if let Some(t) = slos.error_rate {
        let observed = (rec.requests > 0).then(|| rec.errors as f64 / rec.requests as f64);
        out.push(at_most(
            "error_rate".into(),
            format!("error rate ≤ {}%", fmt_num(t * 100.0)),
            t,
            observed,
            "fraction",
        ));
    }
    if let Some(t) = slos.min_rps {
        out.push(SloResult {
            name: "min_rps".into(),
            description: format!("achieved throughput ≥ {} rps", fmt_num(t)),
            comparison: ">=".into(),
            threshold: t,
            observed: Some(achieved_rps),
            unit: "rps".into(),
            passed: achieved_rps >= t,
            detail: None,
        });
    }
    for (name, l) in &slos.per_request {
        if let Some(i) = request_names.iter().position(|n| n == name) {
            latency_rules(
                &mut out,
                &format!("request.{name}."),
                &format!("{name}: "),
                l,
                &rec.per_request[i].hist,
            );
        }
    }
    if let Some((w, t)) = slos.windowed {
        out.push(windowed(rec, w, t));
    }
    if let Some((w, ratio)) = slos.drift {
        out.push(drift(rec, w, ratio));
    }
    out
}

/// Every run's implicit objective: no slot held back because the target kept every allowed
/// request in flight. Such a run did not carry the load it was asked to; the target, not the
/// generator, fell behind, so it is the target's failure (exit 1), not an invalid run.
pub fn saturation(p: &Pacing) -> SloResult {
    let n = p.not_sent_target_saturated;
    let detail = (n > 0).then(|| {
        format!(
            "{n} requests could not be sent on time because the target held every allowed request in flight: max_in_flight = {} ({}), {} in flight at most; the service is too slow for this load",
            p.max_in_flight, p.max_in_flight_basis, p.peak_in_flight
        )
    });
    SloResult {
        name: "not_sent_target_saturated".into(),
        description: "no request held back by a target with every allowed request in flight".into(),
        comparison: "<=".into(),
        threshold: 0.0,
        observed: Some(n as f64),
        unit: "requests".into(),
        passed: n == 0,
        detail,
    }
}

/// The worst window's p95 against the threshold.
fn windowed(rec: &Recorder, w: std::time::Duration, t: f64) -> SloResult {
    let ws = w.as_secs_f64().round().max(1.0) as usize;
    let windows = window_p95s(rec, ws);
    let worst = windows.iter().copied().max_by(|a, b| a.1.total_cmp(&b.1));
    let mut r = at_most(
        "windowed.p95_ms".into(),
        format!(
            "p95 of every {} window ≤ {} ms",
            fmt_dur(std::time::Duration::from_secs(ws as u64)),
            fmt_num(t)
        ),
        t,
        worst.map(|x| x.1),
        "ms",
    );
    if let Some((start, p)) = worst {
        let over = windows.iter().filter(|x| x.1 > t).count();
        r.detail = Some(format!(
            "worst window {start}–{} s at {p:.1} ms; {over} of {} windows over",
            start + ws,
            windows.len()
        ));
    }
    r
}

/// The last whole window's p95 over the first's; not judged (and passed) on a run shorter than
/// two whole windows.
fn drift(rec: &Recorder, w: std::time::Duration, ratio: f64) -> SloResult {
    let ws = w.as_secs_f64().round().max(1.0) as usize;
    // Only whole windows: a short tail would compare a few requests against a full window.
    let whole = rec.seconds.len() / ws;
    let windows: Vec<(usize, f64)> = window_p95s(rec, ws)
        .into_iter()
        .filter(|(a, _)| a / ws < whole)
        .collect();
    let desc = format!(
        "p95 drift, last {} window / first ≤ {}×",
        fmt_dur(std::time::Duration::from_secs(ws as u64)),
        fmt_num(ratio)
    );
    match (windows.first(), windows.last()) {
        (Some(first), Some(last)) if windows.len() >= 2 && first.1 > 0.0 => {
            let observed = last.1 / first.1;
            SloResult {
                name: "drift.p95_ratio".into(),
                description: desc,
                comparison: "<=".into(),
                threshold: ratio,
                observed: Some(observed),
                unit: "ratio".into(),
                passed: observed <= ratio,
                detail: Some(format!(
                    "first window p95 {:.1} ms, last window p95 {:.1} ms",
                    first.1, last.1
                )),
            }
        }
        _ => SloResult {
            name: "drift.p95_ratio".into(),
            description: desc,
            comparison: "<=".into(),
            threshold: ratio,
            observed: None,
            unit: "ratio".into(),
            passed: true,
            detail: Some("not judged: the run is shorter than two whole windows".into()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::record::Outcome;
    use std::time::Duration;

    fn rec_with(latencies: &[(u64, u64)]) -> Recorder {
        let mut r = Recorder::new(1, vec![]);
        for (sent_ms, lat) in latencies {
            r.record(&Outcome {
                request: 0,
                intended: Duration::from_millis(*sent_ms),
                sent: Duration::from_millis(*sent_ms),
                done: Duration::from_millis(sent_ms + lat),
                status: Some(200),
                ok: true,
                cold_start: false,
                instance: None,
            });
        }
        r
    }

    #[test]
    fn whole_run_windowed_and_drift() {
        // 4 s at 10 ms, then 4 s at 40 ms.
        let mut v = Vec::new();
        for i in 0..80 {
            v.push((i * 100, if i < 40 { 10 } else { 40 }));
        }
        let rec = rec_with(&v);
        let slos = Slos {
            overall: LatencySlo {
                p50_ms: Some(50.0),
                p95_ms: Some(20.0),
                p99_ms: None,
            },
            error_rate: Some(0.0),
            windowed: Some((Duration::from_secs(2), 30.0)),
            drift: Some((Duration::from_secs(2), 2.0)),
            min_rps: Some(10.0),
            ..Slos::default()
        };
        let r = evaluate(&slos, &rec, &["a".into()], 9.0);
        let get = |n: &str| r.iter().find(|x| x.name == n).unwrap();
        assert!(get("p50_ms").passed);
        assert!(!get("p95_ms").passed);
        assert!(get("error_rate").passed);
        assert!(!get("min_rps").passed);
        assert!(!get("windowed.p95_ms").passed);
        let d = get("drift.p95_ratio");
        assert!(!d.passed && d.observed.unwrap() > 3.5, "{d:?}");
    }

    #[test]
    fn no_data_fails_latency_and_skips_drift() {
        let rec = Recorder::new(1, vec![]);
        let slos = Slos {
            overall: LatencySlo {
                p95_ms: Some(20.0),
                ..LatencySlo::default()
            },
            drift: Some((Duration::from_secs(60), 1.5)),
            ..Slos::default()
        };
        let r = evaluate(&slos, &rec, &[], 0.0);
        assert!(!r[0].passed);
        assert!(r[1].passed && r[1].observed.is_none());
    }
}

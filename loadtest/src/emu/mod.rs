//! The emulator's side of a run: `/_emu/status` to detect an emu front door, and
//! `/_emu/events` to join what emu saw (instances, cold starts, queueing, 429s, 504s) to what
//! the client saw.
//!
//! Parsing is tolerant on purpose: emu may add fields and kinds at any time, and an unknown
//! one must never spoil a load-test report. Aggregation is pure ([`aggregate`]) so it is tested
//! with hand-made event lists.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub mod collect;

/// One per-second row of what emu saw, summed over services.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EmuSecond {
    pub second: u64,
    pub ready: u64,
    pub starting: u64,
    pub draining: u64,
    pub in_flight: u64,
    pub queue_depth: u64,
    pub requests: u64,
    pub cold_starts: u64,
    pub rejected_429: u64,
    pub timeouts_504: u64,
    pub errors_5xx: u64,
    pub desired: u64,
}

/// An instance lifecycle event inside the run window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceEvent {
    pub ts_ms: i64,
    /// Seconds since the run's start (negative: before it).
    pub second: f64,
    pub service: String,
    pub instance: String,
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub startup_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// An autoscaler decision inside the run window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AutoscalerEvent {
    pub ts_ms: i64,
    pub second: f64,
    pub service: String,
    pub desired: Option<f64>,
    pub ready: Option<f64>,
    pub stable_avg: Option<f64>,
    pub panic_avg: Option<f64>,
    pub panicking: Option<bool>,
}

/// Totals over the run window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EmuSummary {
    pub services: Vec<String>,
    pub max_ready: u64,
    pub max_starting: u64,
    pub max_queue_depth: u64,
    pub cold_starts: u64,
    pub rejected_429: u64,
    pub timeouts_504: u64,
    pub errors_5xx: u64,
    pub instances_started: u64,
    pub instances_failed: u64,
    pub startup_ms_p50: Option<f64>,
    pub startup_ms_max: Option<f64>,
    pub events: u64,
    pub unknown_events: u64,
}

/// What emu saw during the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EmuObserved {
    pub summary: EmuSummary,
    pub timeline: Vec<EmuSecond>,
    pub instances: Vec<InstanceEvent>,
    pub autoscaler: Vec<AutoscalerEvent>,
}

/// Whether `body` is an emu status document (a JSON object with a top-level `"emu"` key).
pub fn is_emu_status(body: &serde_json::Value) -> bool {
    body.as_object().is_some_and(|o| o.contains_key("emu"))
}

/// Asks `{target}/_emu/status`. `Err` when nothing answers HTTP there (the target is
/// unreachable); `Ok(Some(status))` when the target is an emu front door; `Ok(None)` for any
/// other HTTP answer. Probing this path rather than `/` keeps the check from waking (and
/// cold-starting) the service before the run.
pub async fn probe(
    client: &reqwest::Client,
    target: &str,
) -> Result<Option<serde_json::Value>, reqwest::Error> {
    let url = format!("{}/_emu/status", target.trim_end_matches('/'));
    let resp = client
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await?;
    if resp.status().as_u16() != 200 {
        return Ok(None);
    }
    let body: Option<serde_json::Value> = resp.json().await.ok();
    Ok(body.filter(is_emu_status))
}

/// Fetches `{target}/_emu/events?since=<start_ms>`.
pub async fn fetch_events(
    client: &reqwest::Client,
    target: &str,
    since_ms: i64,
) -> Result<serde_json::Value, String> {
    let url = format!(
        "{}/_emu/events?since={since_ms}",
        target.trim_end_matches('/')
    );
    let resp = client
        .get(url)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| format!("GET /_emu/events failed: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("GET /_emu/events answered {}", resp.status()));
    }
    resp.json()
        .await
        .map_err(|e| format!("/_emu/events is not JSON: {e}"))
}

/// [`fetch_events`] once emu's timeline covers the run's end: emu writes one sample per service
/// per second, counting what happened since the one before, so the sample that counts the
/// run's last second is written after the run ends (a second later, or more on a busy machine).
/// Polls until every service that has samples has one at or after `end_ms`, for at most 10 s.
pub async fn fetch_events_through(
    client: &reqwest::Client,
    target: &str,
    since_ms: i64,
    end_ms: i64,
) -> Result<serde_json::Value, String> {
    let mut doc = fetch_events(client, target, since_ms).await?;
    for _ in 0..50 {
        if covers(&doc, end_ms) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        doc = fetch_events(client, target, since_ms).await?;
    }
    Ok(doc)
}

/// Each service's samples: (service, timestamps).
fn sample_times(doc: &serde_json::Value) -> BTreeMap<String, Vec<i64>> {
    let mut out: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let events = doc.get("events").and_then(|e| e.as_array());
    for ev in events.into_iter().flatten() {
        if ev.get("kind").and_then(|k| k.as_str()) == Some("sample") {
            if let Some(ts) = ev.get("ts_ms").and_then(|t| t.as_i64()) {
                out.entry(s(ev, "service").unwrap_or_default())
                    .or_default()
                    .push(ts);
            }
        }
    }
    out
}

/// True when every service with samples has one at or after `end_ms`.
pub fn covers(doc: &serde_json::Value, end_ms: i64) -> bool {
    sample_times(doc)
        .values()
        .all(|ts| ts.iter().any(|&t| t >= end_ms))
}

/// Per service, the last sample that belongs to the run: the first one at or after `end_ms`
/// (it counts the run's last second); one second past the end when there is none yet.
fn sample_cutoffs(doc: &serde_json::Value, end_ms: i64) -> BTreeMap<String, i64> {
    sample_times(doc)
        .into_iter()
        .map(|(service, ts)| {
            let first_after = ts.into_iter().filter(|&t| t >= end_ms).min();
            (service, first_after.unwrap_or(end_ms + 1000))
        })
        .collect()
}

fn u(v: &serde_json::Value, k: &str) -> u64 {
    v.get(k)
        .and_then(|x| x.as_f64())
        .map(|f| f.max(0.0).round() as u64)
        .unwrap_or(0)
}

fn f(v: &serde_json::Value, k: &str) -> Option<f64> {
    v.get(k).and_then(|x| x.as_f64())
}

fn s(v: &serde_json::Value, k: &str) -> Option<String> {
    v.get(k).and_then(|x| x.as_str()).map(str::to_string)
}

/// Folds the events document into per-second rows for `[start_ms, end_ms]`.
pub fn aggregate(doc: &serde_json::Value, start_ms: i64, end_ms: i64) -> EmuObserved {
    let mut out = EmuObserved::default();
    let empty = Vec::new();
    let events = doc
        .get("events")
        .and_then(|e| e.as_array())
        .unwrap_or(&empty);
    // second → service → the last sample of that service in that second.
    let mut samples: BTreeMap<u64, BTreeMap<String, &serde_json::Value>> = BTreeMap::new();
    let mut startups = Vec::new();
    let mut services = std::collections::BTreeSet::new();
    let cutoffs = sample_cutoffs(doc, end_ms);
    for ev in events {
        let Some(ts) = ev.get("ts_ms").and_then(|t| t.as_i64()) else {
            out.summary.unknown_events += 1;
            continue;
        };
        // Samples up to the one that counts the run's last second; other events with one
        // second of slack after the end.
        let is_sample = ev.get("kind").and_then(|k| k.as_str()) == Some("sample");
        let last = match is_sample {
            true => cutoffs.get(&s(ev, "service").unwrap_or_default()).copied(),
            false => None,
        };
        if ts < start_ms || ts > last.unwrap_or(end_ms + 1000) {
            continue;
        }
        out.summary.events += 1;
        let service = s(ev, "service").unwrap_or_default();
        let second = (ts - start_ms) as f64 / 1000.0;
        match ev.get("kind").and_then(|k| k.as_str()) {
            Some("sample") => {
                services.insert(service.clone());
                samples
                    .entry(((ts - start_ms) / 1000) as u64)
                    .or_default()
                    .insert(service, ev);
            }
            Some("instance") => {
                let state = s(ev, "state").unwrap_or_default();
                match state.as_str() {
                    "starting" => out.summary.instances_started += 1,
                    "failed" => out.summary.instances_failed += 1,
                    _ => {}
                }
                let startup_ms = f(ev, "startup_ms");
                if let Some(ms) = startup_ms {
                    startups.push(ms);
                }
                out.instances.push(InstanceEvent {
                    ts_ms: ts,
                    second,
                    service,
                    instance: s(ev, "instance").unwrap_or_default(),
                    state,
                    startup_ms,
                    reason: s(ev, "reason"),
                });
            }
            Some("autoscaler") => out.autoscaler.push(AutoscalerEvent {
                ts_ms: ts,
                second,
                service,
                desired: f(ev, "desired"),
                ready: f(ev, "ready"),
                stable_avg: f(ev, "stable_avg"),
                panic_avg: f(ev, "panic_avg"),
                panicking: ev.get("panicking").and_then(|p| p.as_bool()),
            }),
            _ => out.summary.unknown_events += 1,
        }
    }
    for (second, by_service) in samples {
        let mut row = EmuSecond {
            second,
            ..EmuSecond::default()
        };
        for ev in by_service.values() {
            row.ready += u(ev, "ready");
            row.starting += u(ev, "starting");
            row.draining += u(ev, "draining");
            row.in_flight += u(ev, "in_flight");
            row.queue_depth += u(ev, "queue_depth");
            row.requests += u(ev, "requests");
            row.cold_starts += u(ev, "cold_starts");
            row.rejected_429 += u(ev, "rejected_429");
            row.timeouts_504 += u(ev, "timeouts_504");
            row.errors_5xx += u(ev, "errors_5xx");
            row.desired += u(ev, "desired");
        }
        let sm = &mut out.summary;
        sm.max_ready = sm.max_ready.max(row.ready);
        sm.max_starting = sm.max_starting.max(row.starting);
        sm.max_queue_depth = sm.max_queue_depth.max(row.queue_depth);
        sm.cold_starts += row.cold_starts;
        sm.rejected_429 += row.rejected_429;
        sm.timeouts_504 += row.timeouts_504;
        sm.errors_5xx += row.errors_5xx;
        out.timeline.push(row);
    }
    out.summary.services = services.into_iter().collect();
    startups.sort_by(|a, b| a.total_cmp(b));
    out.summary.startup_ms_p50 = startups.get(startups.len() / 2).copied();
    out.summary.startup_ms_max = startups.last().copied();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn aggregates_samples_per_second_over_services_and_tolerates_unknowns() {
        let start = 1_000_000;
        let doc = json!({"now_ms": start + 5000, "extra": 1, "events": [
            {"ts_ms": start - 5000, "kind": "sample", "service": "a", "ready": 9},
            {"ts_ms": start + 100, "kind": "sample", "service": "a", "ready": 1, "starting": 1,
             "queue_depth": 3, "cold_starts": 1, "rejected_429": 2, "new_field": "x"},
            {"ts_ms": start + 200, "kind": "sample", "service": "b", "ready": 2, "timeouts_504": 1},
            {"ts_ms": start + 1100, "kind": "sample", "service": "a", "ready": 2},
            {"ts_ms": start + 300, "kind": "instance", "service": "a", "instance": "a-1",
             "state": "starting"},
            {"ts_ms": start + 900, "kind": "instance", "service": "a", "instance": "a-1",
             "state": "ready", "startup_ms": 600},
            {"ts_ms": start + 950, "kind": "autoscaler", "service": "a", "desired": 2,
             "stable_avg": 1.5, "panicking": false},
            {"ts_ms": start + 960, "kind": "mystery"},
            {"kind": "no-ts"}
        ]});
        let o = aggregate(&doc, start, start + 2000);
        assert_eq!(o.timeline.len(), 2);
        assert_eq!(o.timeline[0].ready, 3);
        assert_eq!(o.timeline[0].queue_depth, 3);
        assert_eq!(o.timeline[1].ready, 2);
        assert_eq!(o.summary.cold_starts, 1);
        assert_eq!(o.summary.rejected_429, 2);
        assert_eq!(o.summary.timeouts_504, 1);
        assert_eq!(o.summary.instances_started, 1);
        assert_eq!(o.summary.startup_ms_max, Some(600.0));
        assert_eq!(o.summary.unknown_events, 2);
        assert_eq!(o.summary.services, vec!["a".to_string(), "b".to_string()]);
        assert_eq!(o.autoscaler.len(), 1);
        assert!(is_emu_status(&json!({"emu": {"version": "0"}})));
        assert!(!is_emu_status(&json!(["emu"])));
    }

    #[test]
    fn the_sample_counting_the_last_second_belongs_to_the_run_however_late_it_lands() {
        let start = 1_000_000;
        let end = start + 2000;
        let early = json!({"events": [
            {"ts_ms": start + 900, "kind": "sample", "service": "a", "rejected_429": 4},
            {"ts_ms": start + 1900, "kind": "sample", "service": "a", "rejected_429": 5},
        ]});
        assert!(!covers(&early, end), "the last second is not counted yet");
        // A starved machine wrote it 2.5 s after the end; the one after is not the run's.
        let late = json!({"events": [
            {"ts_ms": start + 900, "kind": "sample", "service": "a", "rejected_429": 4},
            {"ts_ms": start + 1900, "kind": "sample", "service": "a", "rejected_429": 5},
            {"ts_ms": end + 2500, "kind": "sample", "service": "a", "rejected_429": 6},
            {"ts_ms": end + 3500, "kind": "sample", "service": "a", "rejected_429": 7},
            {"ts_ms": start + 950, "kind": "sample", "service": "b", "rejected_429": 1},
        ]});
        assert!(!covers(&late, end), "service b has no sample after the end");
        let o = aggregate(&late, start, end);
        assert_eq!(o.summary.rejected_429, 4 + 5 + 6 + 1);
        let both = json!({"events": [
            {"ts_ms": end + 10, "kind": "sample", "service": "a"},
            {"ts_ms": end + 20, "kind": "sample", "service": "b"},
        ]});
        assert!(covers(&both, end));
        assert!(
            covers(&json!({"events": []}), end),
            "no samples: nothing to wait for"
        );
    }
}

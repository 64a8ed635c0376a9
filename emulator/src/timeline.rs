//! The timeline: a sample per second per service, every instance start, ready and stop, and
//! every autoscaler decision, kept for a bounded time (default: the last hour). The supervisor
//! (`instances`) and the scaler write it; admin serves it as `/_emu/events` and only reads.
//!
//! Entries are kept compact and turned into JSON only when read: the per-second sample and the
//! autoscaler decision are plain structs (about 80 bytes each, against ~2.4 KB as a
//! `serde_json::Value` map), and the rarer lifecycle events keep their fields as one JSON string.
//! An idle emu writes 1.5 entries a second per service, so a map per entry grew by ~200 KB a
//! minute per service; bounded by time, the ring now holds a few hundred KB per service.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::model::Decision;

/// Wall-clock milliseconds since the Unix epoch (what `?since=` takes).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// How long entries are kept when `emu up --timeline-retention` does not say.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(3600);

/// A hard cap on entries whatever the retention, so a long retention with many services (or a
/// flood of lifecycle events from a crash loop) stays bounded: ~80 MB at ~80 bytes an entry.
const MAX_ENTRIES: usize = 1_000_000;

/// One service's second, as the scaler saw it: gauges at the end of the second and counts of
/// what happened during it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Sample {
    pub ready: u32,
    pub starting: u32,
    pub draining: u32,
    pub in_flight: u32,
    pub queue_depth: u32,
    /// Average concurrency over the second.
    pub concurrency: f64,
    pub requests: u32,
    pub cold_starts: u32,
    pub rejected_429: u32,
    pub timeouts_504: u32,
    pub errors_5xx: u32,
    pub desired: u32,
}

#[derive(Debug, Clone)]
enum Body {
    Sample(Sample),
    Decision {
        decision: Decision,
        previous: u32,
    },
    /// Any other kind, with its fields as the text of a JSON object.
    Other {
        kind: Box<str>,
        fields: Box<str>,
    },
}

#[derive(Debug, Clone)]
struct Entry {
    ts_ms: u64,
    service: Arc<str>,
    body: Body,
}

impl Entry {
    fn kind(&self) -> &str {
        match &self.body {
            Body::Sample(_) => "sample",
            Body::Decision { .. } => "autoscaler",
            Body::Other { kind, .. } => kind,
        }
    }

    /// The entry as `/_emu/events` shows it: `ts_ms`, `kind`, `service`, then its fields.
    fn to_json(&self) -> Value {
        let fields = match &self.body {
            Body::Sample(s) => serde_json::to_value(s).unwrap_or(Value::Null),
            Body::Decision { decision, previous } => {
                let mut v = serde_json::to_value(decision).unwrap_or(Value::Null);
                if let Some(f) = v.as_object_mut() {
                    f.insert("previous".into(), Value::from(*previous));
                }
                v
            }
            Body::Other { fields, .. } => serde_json::from_str(fields).unwrap_or(Value::Null),
        };
        let mut obj = Map::new();
        obj.insert("ts_ms".into(), Value::from(self.ts_ms));
        obj.insert("kind".into(), Value::from(self.kind()));
        obj.insert("service".into(), Value::from(&*self.service));
        if let Value::Object(f) = fields {
            obj.extend(f);
        }
        Value::Object(obj)
    }
}

/// A time-bounded, append-only event log.
#[derive(Debug)]
pub struct Timeline {
    ring: Mutex<Ring>,
    retention_ms: u64,
    max_entries: usize,
}

#[derive(Debug, Default)]
struct Ring {
    entries: VecDeque<Entry>,
    /// Service names, shared by every entry of the service instead of a copy each.
    names: Vec<Arc<str>>,
}

impl Ring {
    fn name(&mut self, service: &str) -> Arc<str> {
        if let Some(n) = self.names.iter().find(|n| &***n == service) {
            return n.clone();
        }
        let n: Arc<str> = Arc::from(service);
        self.names.push(n.clone());
        n
    }
}

impl Default for Timeline {
    fn default() -> Self {
        Timeline::new(DEFAULT_RETENTION)
    }
}

impl Timeline {
    /// Keeps entries for `retention` (and at most a million).
    pub fn new(retention: Duration) -> Self {
        Timeline::bounded(retention, MAX_ENTRIES)
    }

    fn bounded(retention: Duration, max_entries: usize) -> Self {
        Timeline {
            ring: Mutex::new(Ring::default()),
            retention_ms: retention.as_millis().min(u128::from(u64::MAX)) as u64,
            max_entries,
        }
    }

    /// The scaler's sample for `service` this second.
    pub fn push_sample(&self, service: &str, sample: Sample) {
        self.append(unix_ms(), service, Body::Sample(sample));
    }

    /// An autoscaler decision for `service`, with the count it replaced.
    pub fn push_decision(&self, service: &str, decision: &Decision, previous: u32) {
        let body = Body::Decision {
            decision: decision.clone(),
            previous,
        };
        self.append(unix_ms(), service, body);
    }

    /// Appends an event of `kind` for `service` with `fields` (an object) and a timestamp.
    pub fn push(&self, kind: &str, service: &str, fields: Value) {
        let body = Body::Other {
            kind: kind.into(),
            fields: fields.to_string().into(),
        };
        self.append(unix_ms(), service, body);
    }

    fn append(&self, ts_ms: u64, service: &str, body: Body) {
        let mut ring = self.ring.lock();
        let service = ring.name(service);
        let oldest_kept = ts_ms.saturating_sub(self.retention_ms);
        while ring
            .entries
            .front()
            .is_some_and(|e| e.ts_ms < oldest_kept || ring.entries.len() >= self.max_entries)
        {
            ring.entries.pop_front();
        }
        ring.entries.push_back(Entry {
            ts_ms,
            service,
            body,
        });
    }

    /// Events at or after `since` (Unix ms), oldest first.
    pub fn since(&self, since: u64) -> Vec<Value> {
        let ring = self.ring.lock();
        let start = ring.entries.partition_point(|e| e.ts_ms < since);
        ring.entries.range(start..).map(Entry::to_json).collect()
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.ring.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[cfg(test)]
    fn push_at(&self, ts_ms: u64, service: &str, sample: Sample) {
        self.append(ts_ms, service, Body::Sample(sample));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample(requests: u32) -> Sample {
        Sample {
            ready: 1,
            starting: 0,
            draining: 0,
            in_flight: 2,
            queue_depth: 0,
            concurrency: 1.5,
            requests,
            cold_starts: 0,
            rejected_429: 0,
            timeouts_504: 0,
            errors_5xx: 0,
            desired: 1,
        }
    }

    #[test]
    fn entries_read_back_as_the_events_feed_shows_them() {
        let t = Timeline::default();
        t.push_sample("api", sample(7));
        t.push(
            "instance",
            "api",
            json!({ "instance": "api-1", "state": "ready" }),
        );
        let all = t.since(0);
        assert_eq!(all.len(), 2);
        assert_eq!(all[0]["kind"], "sample");
        assert_eq!(all[0]["service"], "api");
        assert_eq!(all[0]["requests"], 7);
        assert_eq!(all[0]["concurrency"], 1.5);
        assert!(all[0]["ts_ms"].as_u64().unwrap() > 0);
        assert_eq!(all[1]["kind"], "instance");
        assert_eq!(all[1]["state"], "ready");
        assert!(t.since(unix_ms() + 10_000).is_empty());
    }

    #[test]
    fn entries_older_than_the_retention_are_dropped() {
        let t = Timeline::new(Duration::from_secs(60));
        for s in 0..180u64 {
            t.push_at(1_000_000 + s * 1000, "api", sample(s as u32));
        }
        let kept = t.since(0);
        // The last minute: seconds 119..=179 (an entry exactly 60 s old is still kept).
        assert_eq!(kept.len(), 61);
        assert_eq!(kept[0]["requests"], 119);
        assert_eq!(kept[60]["requests"], 179);
    }

    #[test]
    fn the_entry_cap_holds_whatever_the_retention() {
        let t = Timeline::bounded(Duration::from_secs(86_400), 3);
        for i in 0..5 {
            t.push_at(1_000 + i, "api", sample(i as u32));
        }
        let kept = t.since(0);
        assert_eq!(kept.len(), 3);
        assert_eq!(kept[0]["requests"], 2);
    }

    #[test]
    fn a_sample_is_a_few_dozen_bytes() {
        // What the ring holds per sample (its heap share, the service name, is shared).
        assert!(
            std::mem::size_of::<Entry>() <= 96,
            "{}",
            std::mem::size_of::<Entry>()
        );
    }
}

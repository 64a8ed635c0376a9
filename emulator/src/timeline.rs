//! The timeline: a sample per second per service, every instance start, ready and stop, and
//! every autoscaler decision, kept in a bounded ring. The supervisor (`instances`) and the
//! scaler write it; admin serves it as `/_emu/events` and only reads.

use std::collections::VecDeque;

use parking_lot::Mutex;
use serde_json::{Map, Value};

/// Wall-clock milliseconds since the Unix epoch (what `?since=` takes).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A bounded, append-only event log.
#[derive(Debug)]
pub struct Timeline {
    ring: Mutex<VecDeque<Value>>,
    capacity: usize,
}

impl Default for Timeline {
    fn default() -> Self {
        // A day of one-second samples for a few services, plus lifecycle events.
        Timeline::with_capacity(400_000)
    }
}

impl Timeline {
    pub fn with_capacity(capacity: usize) -> Self {
        Timeline {
            ring: Mutex::new(VecDeque::new()),
            capacity,
        }
    }

    /// Appends an event of `kind` for `service` with `fields` (an object) and a timestamp.
    pub fn push(&self, kind: &str, service: &str, fields: Value) {
        let mut obj = Map::new();
        obj.insert("ts_ms".into(), Value::from(unix_ms()));
        obj.insert("kind".into(), Value::from(kind));
        obj.insert("service".into(), Value::from(service));
        if let Value::Object(f) = fields {
            obj.extend(f);
        }
        let mut ring = self.ring.lock();
        if ring.len() >= self.capacity {
            ring.pop_front();
        }
        ring.push_back(Value::Object(obj));
    }

    /// Events at or after `since` (Unix ms).
    pub fn since(&self, since: u64) -> Vec<Value> {
        let ring = self.ring.lock();
        let start = ring.partition_point(|e| e["ts_ms"].as_u64().unwrap_or(0) < since);
        ring.range(start..).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn since_filters_and_ring_is_bounded() {
        let ev = Timeline::with_capacity(3);
        for i in 0..5 {
            ev.push("sample", "s", json!({ "i": i }));
        }
        let all = ev.since(0);
        assert_eq!(all.len(), 3);
        assert_eq!(all[0]["i"], 2);
        assert_eq!(all[0]["kind"], "sample");
        assert!(ev.since(unix_ms() + 10_000).is_empty());
    }
}

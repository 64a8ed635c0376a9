//! Reading emu's timeline while a run goes on. emu keeps `/_emu/events` for a bounded time (an
//! hour unless `emu up --timeline-retention` says more), so a soak read only at its end would
//! lose its first hours. The collector fetches what is new every few minutes and keeps it; at
//! the end it fetches the rest, once the timeline covers the run's last second.

use std::time::Duration;

use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{fetch_events, fetch_events_through};

/// How often a running collector fetches: well inside emu's shortest sensible retention.
pub const EVERY: Duration = Duration::from_secs(300);

/// Events gathered so far and where the next fetch starts.
#[derive(Debug, Default)]
struct Gathered {
    events: Vec<Value>,
    /// The newest `ts_ms` seen: the next fetch asks from here (inclusive) and drops the events
    /// at this very millisecond that it already has.
    newest_ms: i64,
}

impl Gathered {
    fn add(&mut self, doc: Value) {
        let Value::Object(mut doc) = doc else { return };
        let Some(Value::Array(fresh)) = doc.remove("events") else {
            return;
        };
        let boundary = self.newest_ms;
        for ev in fresh {
            let ts = ev.get("ts_ms").and_then(Value::as_i64).unwrap_or(i64::MIN);
            if ts < boundary {
                continue;
            }
            let repeat = ts == boundary
                && self
                    .events
                    .iter()
                    .rev()
                    .take_while(|e| e.get("ts_ms").and_then(Value::as_i64) == Some(boundary))
                    .any(|e| *e == ev);
            if !repeat {
                self.newest_ms = self.newest_ms.max(ts);
                self.events.push(ev);
            }
        }
    }

    fn into_doc(self) -> Value {
        serde_json::json!({ "events": self.events })
    }
}

/// A collector running beside a load run.
pub struct Collector {
    client: reqwest::Client,
    target: String,
    stop: oneshot::Sender<()>,
    task: JoinHandle<(Gathered, Option<String>)>,
}

impl Collector {
    /// Starts fetching `target`'s timeline from `since_ms`, every `every`.
    pub fn start(client: reqwest::Client, target: &str, since_ms: i64, every: Duration) -> Self {
        let (stop, mut stopped) = oneshot::channel();
        let (c, t) = (client.clone(), target.to_string());
        let task = tokio::spawn(async move {
            let mut got = Gathered {
                newest_ms: since_ms,
                ..Gathered::default()
            };
            let mut error = None;
            loop {
                tokio::select! {
                    _ = &mut stopped => return (got, error),
                    () = tokio::time::sleep(every) => {}
                }
                match fetch_events(&c, &t, got.newest_ms).await {
                    Ok(doc) => got.add(doc),
                    // Kept for the report only if the final fetch fails too.
                    Err(e) => error = Some(e),
                }
            }
        });
        Collector {
            client,
            target: target.to_string(),
            stop,
            task,
        }
    }

    /// Stops the periodic fetch and adds the rest of the run `start_ms..end_ms`, through the
    /// sample that covers `end_ms`. A run shorter than the fetch interval is read in one fetch
    /// from its start, as it always was. The result has the shape of `/_emu/events`.
    pub async fn finish(self, start_ms: i64, end_ms: i64) -> Result<Value, String> {
        let _ = self.stop.send(());
        let (mut got, _earlier) = self.task.await.map_err(|e| e.to_string())?;
        if got.events.is_empty() {
            got.newest_ms = start_ms;
        }
        let rest = fetch_events_through(&self.client, &self.target, got.newest_ms, end_ms).await?;
        got.add(rest);
        Ok(got.into_doc())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn overlapping_fetches_keep_each_event_once() {
        let mut g = Gathered::default();
        g.add(json!({"events": [
            {"ts_ms": 10, "kind": "sample", "service": "a"},
            {"ts_ms": 20, "kind": "sample", "service": "a"},
        ]}));
        // The next fetch starts at 20 (inclusive): the repeat is dropped, a new event at the
        // same millisecond is kept.
        g.add(json!({"events": [
            {"ts_ms": 20, "kind": "sample", "service": "a"},
            {"ts_ms": 20, "kind": "sample", "service": "b"},
            {"ts_ms": 30, "kind": "instance", "service": "a"},
        ]}));
        let doc = g.into_doc();
        let ev = doc["events"].as_array().unwrap();
        assert_eq!(ev.len(), 4, "{doc}");
        assert_eq!(ev[2]["service"], "b");
        assert_eq!(ev[3]["ts_ms"], 30);
    }
}

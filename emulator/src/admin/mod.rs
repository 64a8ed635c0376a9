//! `/_emu/`: status (JSON), metrics (Prometheus text) and events (the timeline, which admin reads
//! and others write), answered only to loopback clients on the front door's port.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use serde_json::{json, Value};

use emu_model::admission::QUEUE_BUCKETS;

use crate::service::ServiceRuntime;
use crate::timeline::{unix_ms, Timeline};

/// What admin reads.
#[derive(Debug)]
pub struct AdminState {
    pub services: Vec<Arc<ServiceRuntime>>,
    pub events: Arc<Timeline>,
    pub port: u16,
    pub started_ms: u64,
    /// Backends' status (masked URLs, presets), filled once they are up.
    pub backends: parking_lot::Mutex<Value>,
    /// The metadata server: address, project, region, service account.
    pub metadata: Value,
}

/// Answers a `/_emu/…` request.
impl crate::frontdoor::LocalEndpoints for AdminState {
    fn answer(&self, req: &Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        handle(self, req)
    }
}

pub fn handle<B>(state: &AdminState, req: &Request<B>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    match path.trim_end_matches('/') {
        "/_emu/status" => json_response(&status(state)),
        "/_emu/metrics" => {
            let mut r = Response::new(Full::new(Bytes::from(metrics(state))));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        "/_emu/events" => {
            let since = req.uri().query().and_then(|q| {
                q.split('&')
                    .find_map(|kv| kv.strip_prefix("since="))
                    .map(|v| v.parse::<u64>())
            });
            match since {
                Some(Err(_)) => plain(
                    StatusCode::BAD_REQUEST,
                    "since must be Unix milliseconds, like ?since=1700000000000\n",
                ),
                Some(Ok(s)) => {
                    json_response(&json!({ "now_ms": unix_ms(), "events": state.events.since(s) }))
                }
                None => {
                    json_response(&json!({ "now_ms": unix_ms(), "events": state.events.since(0) }))
                }
            }
        }
        _ => plain(
            StatusCode::NOT_FOUND,
            "emu admin: try /_emu/status, /_emu/metrics or /_emu/events?since=<unix ms>\n",
        ),
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *r.status_mut() = status;
    r
}

fn json_response(v: &Value) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec_pretty(v).unwrap_or_default();
    let mut r = Response::new(Full::new(Bytes::from(body)));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn runner_kind(s: &ServiceRuntime) -> (&'static str, String) {
    match &s.spec.runner {
        crate::spec::RunnerSpec::Process { command } => ("process", command.join(" ")),
        crate::spec::RunnerSpec::Upstream { url } => ("upstream", url.to_string()),
        crate::spec::RunnerSpec::Container { image } => ("container", image.clone()),
    }
}

/// The status document.
pub fn status(state: &AdminState) -> Value {
    let services: Vec<Value> = state
        .services
        .iter()
        .map(|s| {
            let spec = &s.spec;
            let (kind, what) = runner_kind(s);
            let (starting, ready, draining) = s.counts();
            let instances: Vec<Value> = s
                .instances
                .lock()
                .iter()
                .map(|i| {
                    json!({
                        "id": &*i.id,
                        "state": i.state().as_str(),
                        "in_flight": i.in_flight(),
                        "served": i.served(),
                        "startup_ms": i.startup_duration().map(|d| d.as_millis() as u64),
                        "address": i.addr().map(|a| a.to_string()),
                        "pid": i.pid(),
                    })
                })
                .collect();
            let c = &s.pool.counters;
            json!({
                "name": spec.name,
                "revision": spec.revision,
                "url": format!("http://{}.localhost:{}", spec.name, state.port),
                "port": spec.port,
                "runner": { "kind": kind, "run": what },
                "spec": {
                    "concurrency": spec.concurrency,
                    "min_instances": spec.min_instances,
                    "max_instances": spec.max_instances,
                    "timeout_s": spec.timeout.as_secs_f64(),
                    "queue_timeout_s": s.pool.queue_timeout().as_secs_f64(),
                    "autoscaling_profile": spec.autoscaling_profile,
                },
                "desired": s.desired(),
                "ready": ready,
                "starting": starting,
                "draining": draining,
                "queue_depth": s.pool.queue_depth(),
                "last_failure": s.last_failure.lock().clone(),
                "requests": c.requests.load(Ordering::Relaxed),
                "cold_starts": c.cold_starts.load(Ordering::Relaxed),
                "rejected_429": c.rejected_429.load(Ordering::Relaxed),
                "timeouts_504": c.timeouts_504.load(Ordering::Relaxed),
                "instances": instances,
            })
        })
        .collect();
    json!({
        "emu": { "version": env!("CARGO_PKG_VERSION"), "pid": std::process::id(), "port": state.port, "started_ms": state.started_ms },
        "services": services,
        "backends": state.backends.lock().clone(),
        "metadata": state.metadata.clone(),
    })
}

/// Prometheus text exposition. Counters are fixed atomics read here, so the request path never
/// looks up a label map.
pub fn metrics(state: &AdminState) -> String {
    let mut out = String::with_capacity(4096);
    let _ = writeln!(out, "# HELP emu_requests_total Requests answered by the front door, by service and status code.");
    let _ = writeln!(out, "# TYPE emu_requests_total counter");
    for s in &state.services {
        for (code, n) in s.pool.counters.by_status.iter().enumerate() {
            let n = n.load(Ordering::Relaxed);
            if n > 0 {
                let _ = writeln!(
                    out,
                    "emu_requests_total{{service=\"{}\",code=\"{code}\"}} {n}",
                    s.name()
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "# HELP emu_queue_wait_seconds Time requests waited for a free instance slot."
    );
    let _ = writeln!(out, "# TYPE emu_queue_wait_seconds histogram");
    for s in &state.services {
        let c = &s.pool.counters;
        let mut cum = 0;
        for (i, b) in QUEUE_BUCKETS.iter().enumerate() {
            cum += c.queue_wait_buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "emu_queue_wait_seconds_bucket{{service=\"{}\",le=\"{b}\"}} {cum}",
                s.name()
            );
        }
        cum += c.queue_wait_buckets[QUEUE_BUCKETS.len()].load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "emu_queue_wait_seconds_bucket{{service=\"{}\",le=\"+Inf\"}} {cum}",
            s.name()
        );
        let _ = writeln!(
            out,
            "emu_queue_wait_seconds_sum{{service=\"{}\"}} {}",
            s.name(),
            c.queue_wait_sum_us.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(
            out,
            "emu_queue_wait_seconds_count{{service=\"{}\"}} {}",
            s.name(),
            c.queue_wait_count.load(Ordering::Relaxed)
        );
    }
    let _ = writeln!(out, "# HELP emu_instances Instances by state.");
    let _ = writeln!(out, "# TYPE emu_instances gauge");
    for s in &state.services {
        let (starting, ready, draining) = s.counts();
        for (st, n) in [
            ("starting", starting),
            ("ready", ready),
            ("draining", draining),
        ] {
            let _ = writeln!(
                out,
                "emu_instances{{service=\"{}\",state=\"{st}\"}} {n}",
                s.name()
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP emu_desired_instances The instance count the autoscaler asks for."
    );
    let _ = writeln!(out, "# TYPE emu_desired_instances gauge");
    for s in &state.services {
        let _ = writeln!(
            out,
            "emu_desired_instances{{service=\"{}\"}} {}",
            s.name(),
            s.desired()
        );
    }
    let _ = writeln!(out, "# HELP emu_queue_depth Requests waiting for a slot.");
    let _ = writeln!(out, "# TYPE emu_queue_depth gauge");
    for s in &state.services {
        let _ = writeln!(
            out,
            "emu_queue_depth{{service=\"{}\"}} {}",
            s.name(),
            s.pool.queue_depth()
        );
    }
    let _ = writeln!(
        out,
        "# HELP emu_cold_starts_total Requests that waited for an instance to start."
    );
    let _ = writeln!(out, "# TYPE emu_cold_starts_total counter");
    for s in &state.services {
        let _ = writeln!(
            out,
            "emu_cold_starts_total{{service=\"{}\"}} {}",
            s.name(),
            s.pool.counters.cold_starts.load(Ordering::Relaxed)
        );
    }
    out
}

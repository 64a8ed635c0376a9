//! Request logs, one line per request, in Cloud Logging's JSON shape or as text; written by one
//! task so the request path only pushes onto a channel.

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Method};
use serde_json::json;
use tokio::sync::mpsc;

/// How request logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where request logs go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    Off,
    Stderr,
    File(PathBuf),
}

impl std::str::FromStr for LogTarget {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "off" | "none" => LogTarget::Off,
            "stderr" | "-" => LogTarget::Stderr,
            path => LogTarget::File(PathBuf::from(path)),
        })
    }
}

/// One finished request.
#[derive(Debug)]
pub struct RequestLog {
    pub service: String,
    pub revision: String,
    pub method: Method,
    pub url: String,
    pub status: u16,
    pub latency: Duration,
    pub remote_ip: IpAddr,
    pub user_agent: Option<HeaderValue>,
    pub trace: Option<String>,
    /// The request's span (16 hex digits) and whether its trace is sampled.
    pub span_id: Option<String>,
    pub trace_sampled: bool,
    /// `HTTP/1.1`, `HTTP/2`: what the client spoke.
    pub protocol: &'static str,
    /// Body sizes when known (declared lengths).
    pub request_size: Option<u64>,
    pub response_size: Option<u64>,
    pub instance: Option<Arc<str>>,
    pub cold_start: bool,
}

impl RequestLog {
    /// A log entry for a request answered without reaching a service (no route).
    pub fn new<B>(
        req: &http::Request<B>,
        service: &str,
        revision: &str,
        status: u16,
        peer: std::net::SocketAddr,
    ) -> Self {
        RequestLog {
            service: service.to_string(),
            revision: revision.to_string(),
            method: req.method().clone(),
            url: full_url(req),
            status,
            latency: Duration::ZERO,
            remote_ip: peer.ip(),
            user_agent: req.headers().get(http::header::USER_AGENT).cloned(),
            trace: None,
            span_id: None,
            trace_sampled: false,
            protocol: if req.version() == http::Version::HTTP_2 {
                "HTTP/2"
            } else {
                "HTTP/1.1"
            },
            request_size: None,
            response_size: None,
            instance: None,
            cold_start: false,
        }
    }
}

/// `http://host/path?query`, as Cloud Logging's `requestUrl` carries it.
pub fn full_url<B>(req: &http::Request<B>) -> String {
    let host = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .unwrap_or("localhost");
    let pq = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    format!("http://{host}{pq}")
}

/// Cheap to clone; `log` never blocks (a full channel drops the line and counts it).
#[derive(Debug, Clone)]
pub struct RequestLogger {
    tx: Option<mpsc::Sender<RequestLog>>,
}

impl RequestLogger {
    /// A logger that writes nothing.
    pub fn off() -> Self {
        RequestLogger { tx: None }
    }

    /// Starts the writer task.
    pub fn start(target: LogTarget, format: LogFormat) -> std::io::Result<Self> {
        let mut out: Box<dyn Write + Send> = match &target {
            LogTarget::Off => return Ok(Self::off()),
            LogTarget::Stderr => Box::new(std::io::stderr()),
            LogTarget::File(p) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)?,
            ),
        };
        let (tx, mut rx) = mpsc::channel::<RequestLog>(65_536);
        tokio::spawn(async move {
            let mut buf = Vec::with_capacity(64 * 1024);
            while let Some(first) = rx.recv().await {
                render(&first, format, &mut buf);
                while let Ok(next) = rx.try_recv() {
                    render(&next, format, &mut buf);
                    if buf.len() > 60 * 1024 {
                        break;
                    }
                }
                let _ = out.write_all(&buf);
                let _ = out.flush();
                buf.clear();
            }
        });
        Ok(RequestLogger { tx: Some(tx) })
    }

    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    pub fn log(&self, entry: RequestLog) {
        if let Some(tx) = &self.tx {
            let _ = tx.try_send(entry);
        }
    }
}

fn severity(status: u16) -> &'static str {
    match status {
        500.. => "ERROR",
        400..=499 => "WARNING",
        _ => "INFO",
    }
}

/// Renders one line into `buf`.
pub fn render(e: &RequestLog, format: LogFormat, buf: &mut Vec<u8>) {
    let now = chrono::Utc::now();
    match format {
        LogFormat::Json => {
            let _ = serde_json::to_writer(&mut *buf, &log_entry(e, now));
            buf.push(b'\n');
        }
        LogFormat::Text => {
            let _ = writeln!(
                buf,
                "{} {} {} {} {} {:.1}ms {}{}",
                now.format("%H:%M:%S%.3f"),
                e.service,
                e.method,
                e.url,
                e.status,
                e.latency.as_secs_f64() * 1000.0,
                e.instance.as_deref().unwrap_or("-"),
                if e.cold_start { " cold-start" } else { "" }
            );
        }
    }
}

/// One line of an instance's output as a JSON line: a line that is a JSON object passes through
/// as that object with the instance id under `logging.googleapis.com/labels` (where Cloud Run's
/// logging agent reads an entry's labels from); any other line becomes a `textPayload` entry.
pub fn instance_line(instance: &str, line: &str) -> String {
    let parsed = serde_json::from_str::<serde_json::Value>(line.trim());
    let v = match parsed {
        Ok(serde_json::Value::Object(mut obj)) => {
            let labels = obj
                .entry("logging.googleapis.com/labels")
                .or_insert_with(|| json!({}));
            if !labels.is_object() {
                *labels = json!({});
            }
            labels["instanceId"] = json!(instance);
            serde_json::Value::Object(obj)
        }
        _ => json!({
            "severity": "DEFAULT",
            "textPayload": line,
            "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "labels": { "instanceId": instance },
        }),
    };
    v.to_string()
}

/// A request as a Cloud Logging `LogEntry` (Google's JSON mapping: int64 sizes are strings, a
/// field with no value is left out, never null; `labels` are strings).
fn log_entry(e: &RequestLog, now: chrono::DateTime<chrono::Utc>) -> serde_json::Value {
    let mut v = json!({
        "severity": severity(e.status),
        "timestamp": now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "httpRequest": {
            "requestMethod": e.method.as_str(),
            "requestUrl": e.url,
            "status": e.status,
            "latency": format!("{:.6}s", e.latency.as_secs_f64()),
            "remoteIp": e.remote_ip.to_string(),
            "protocol": e.protocol,
        },
        "resource": {
            "type": "cloud_run_revision",
            "labels": { "service_name": e.service, "revision_name": e.revision, "location": "local" },
        },
        "labels": {},
        "logName": "projects/local/logs/run.googleapis.com%2Frequests",
    });
    let http = &mut v["httpRequest"];
    if let Some(ua) = e.user_agent.as_ref().and_then(|u| u.to_str().ok()) {
        http["userAgent"] = json!(ua);
    }
    if let Some(n) = e.request_size {
        http["requestSize"] = json!(n.to_string());
    }
    if let Some(n) = e.response_size {
        http["responseSize"] = json!(n.to_string());
    }
    if let Some(t) = &e.trace {
        v["trace"] = json!(format!("projects/local/traces/{t}"));
        v["traceSampled"] = json!(e.trace_sampled);
    }
    if let Some(s) = &e.span_id {
        v["spanId"] = json!(s);
    }
    if let Some(id) = e.instance.as_deref() {
        v["labels"]["instanceId"] = json!(id);
    }
    if e.cold_start {
        v["labels"]["coldStart"] = json!("true");
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_have_cloud_loggings_shape() {
        let e = RequestLog {
            service: "api".into(),
            revision: "api-00001-emu".into(),
            method: Method::GET,
            url: "/x?y=1".into(),
            status: 503,
            latency: Duration::from_millis(12),
            remote_ip: "127.0.0.1".parse().unwrap(),
            user_agent: Some(HeaderValue::from_static("curl/8")),
            trace: Some("abc".into()),
            span_id: Some("00f067aa0ba902b7".into()),
            trace_sampled: true,
            protocol: "HTTP/2",
            request_size: Some(12),
            response_size: Some(3456),
            instance: Some("api-1".into()),
            cold_start: true,
        };
        let mut buf = Vec::new();
        render(&e, LogFormat::Json, &mut buf);
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(v["severity"], "ERROR");
        assert_eq!(v["httpRequest"]["requestMethod"], "GET");
        assert_eq!(v["httpRequest"]["status"], 503);
        assert_eq!(v["httpRequest"]["latency"], "0.012000s");
        assert_eq!(v["httpRequest"]["remoteIp"], "127.0.0.1");
        assert_eq!(v["trace"], "projects/local/traces/abc");
        assert_eq!(v["spanId"], "00f067aa0ba902b7");
        assert_eq!(v["traceSampled"], true);
        assert_eq!(v["httpRequest"]["protocol"], "HTTP/2");
        assert_eq!(v["httpRequest"]["requestSize"], "12");
        assert_eq!(v["httpRequest"]["responseSize"], "3456");
        assert_eq!(v["labels"]["instanceId"], "api-1");
        assert_eq!(buf.iter().filter(|&&b| b == b'\n').count(), 1);
    }
}

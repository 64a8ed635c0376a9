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
            let mut v = json!({
                "severity": severity(e.status),
                "timestamp": now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                "httpRequest": {
                    "requestMethod": e.method.as_str(),
                    "requestUrl": e.url,
                    "status": e.status,
                    "latency": format!("{:.6}s", e.latency.as_secs_f64()),
                    "remoteIp": e.remote_ip.to_string(),
                    "protocol": "HTTP/1.1",
                },
                "resource": {
                    "type": "cloud_run_revision",
                    "labels": { "service_name": e.service, "revision_name": e.revision, "location": "local" },
                },
                "labels": { "instanceId": e.instance.as_deref() },
                "logName": "projects/local/logs/run.googleapis.com%2Frequests",
            });
            if let Some(ua) = e.user_agent.as_ref().and_then(|u| u.to_str().ok()) {
                v["httpRequest"]["userAgent"] = json!(ua);
            }
            if let Some(t) = &e.trace {
                v["logging.googleapis.com/trace"] = json!(format!("projects/local/traces/{t}"));
            }
            if e.cold_start {
                v["labels"]["coldStart"] = json!("true");
            }
            let _ = serde_json::to_writer(&mut *buf, &v);
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
        assert_eq!(
            v["logging.googleapis.com/trace"],
            "projects/local/traces/abc"
        );
        assert_eq!(buf.iter().filter(|&&b| b == b'\n').count(), 1);
    }
}

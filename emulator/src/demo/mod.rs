//! The built-in demo service, run as `emu demo-app`: what `emu up` serves when there is no
//! config. It follows the Cloud Run container contract: it listens on `PORT` and stops on SIGTERM.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::Query;
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

/// Version reported by `/health`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Debug, Deserialize)]
struct Millis {
    #[serde(default)]
    ms: u64,
}

/// Longest `/work` or `/cpu` a caller may ask for: enough for timeout tests, not a way to hang.
const MAX_MS: u64 = 3_600_000;

/// The demo's routes.
pub fn app() -> Router {
    Router::new()
        .route("/", get(hello))
        .route("/health", get(health))
        .route("/work", get(work))
        .route("/cpu", get(cpu))
        .route("/debug/request", get(debug_request))
}

async fn hello() -> String {
    let service = std::env::var("K_SERVICE").unwrap_or_else(|_| "demo".into());
    format!("Hello from {service}!\n")
}

async fn health() -> Json<Value> {
    Json(json!({
        "status": "ok",
        "service": std::env::var("K_SERVICE").unwrap_or_else(|_| "demo".into()),
        "version": VERSION,
    }))
}

/// Answers after `ms` milliseconds without using CPU: a request that holds a concurrency slot.
async fn work(Query(q): Query<Millis>) -> Json<Value> {
    let ms = q.ms.min(MAX_MS);
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Json(json!({ "slept_ms": ms }))
}

/// Burns CPU for `ms` milliseconds on a blocking thread.
async fn cpu(Query(q): Query<Millis>) -> Json<Value> {
    let ms = q.ms.min(MAX_MS);
    let iterations = tokio::task::spawn_blocking(move || {
        let end = std::time::Duration::from_millis(ms);
        let start = cpu_clock();
        let mut x: u64 = 0;
        while cpu_clock().saturating_sub(start) < end {
            for _ in 0..10_000 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            }
        }
        x
    })
    .await
    .unwrap_or(0);
    Json(json!({ "burned_ms": ms, "x": iterations % 1000 }))
}

/// Wall time since an arbitrary point, without `Instant` (which the project routes through tokio).
fn cpu_clock() -> Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

/// What the instance saw: the request headers and its Cloud Run environment.
async fn debug_request(headers: HeaderMap) -> Json<Value> {
    let headers: BTreeMap<String, String> = headers
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let env: BTreeMap<String, String> = std::env::vars()
        .filter(|(k, _)| {
            k == "PORT"
                || k.starts_with("K_")
                || k.starts_with("CLOUD_RUN_")
                || k.starts_with("EMU_")
                || k.starts_with("DEMO_")
        })
        .collect();
    Json(json!({ "headers": headers, "env": env, "pid": std::process::id() }))
}

/// Runs the demo on `127.0.0.1:$PORT` (8080 when unset) until SIGTERM or Ctrl-C.
pub async fn run() -> anyhow::Result<()> {
    let port: u16 = match std::env::var("PORT") {
        Ok(p) => p
            .parse()
            .map_err(|_| anyhow::anyhow!("PORT={p:?} is not a port number"))?,
        Err(_) => 8080,
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app())
        .with_graceful_shutdown(crate::shutdown_signal())
        .await?;
    Ok(())
}

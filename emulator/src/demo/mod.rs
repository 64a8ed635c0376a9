//! The built-in demo service, run as `emu demo-app`: what `emu up` serves when there is no
//! config. It follows the Cloud Run container contract: it listens on `PORT` and stops on SIGTERM.
//!
//! With `DATABASE_URL` and `REDIS_URL` (both optional) it is a small real service: items in
//! PostgreSQL (`POST /items`, `GET /items`), a Redis cache in front of `GET /items/{id}`
//! (`x-cache: hit|miss`), a Redis fixed-window rate limit on `/limited`, and a `/health` that
//! checks both live and answers 503 when a configured one is down. `/ws` (a WebSocket echo) and
//! `/events` (server-sent events) show what happens to long-lived answers.

mod items;
mod state;
mod streams;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

pub use state::{DemoConfig, DemoConfigError, DemoState, MIGRATOR};

/// Version reported by `/health`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Debug, Deserialize)]
struct Millis {
    #[serde(default)]
    ms: u64,
}

/// Longest `/work` or `/cpu` a caller may ask for: enough for timeout tests, not a way to hang.
const MAX_MS: u64 = 3_600_000;

/// The demo's routes, with dependencies from the environment (`DATABASE_URL`, `REDIS_URL`, …;
/// see [`DemoConfig`]). A bad setting is logged and that dependency left out. Call inside a
/// tokio runtime.
pub fn app() -> Router {
    let state = DemoConfig::from_env()
        .and_then(DemoState::new)
        .unwrap_or_else(|e| {
            tracing::error!("demo settings: {e}; running without database and Redis");
            DemoState::without_backends()
        });
    app_with(state)
}

/// The demo's routes over `state` (tests build the state from explicit URLs).
pub fn app_with(state: DemoState) -> Router {
    Router::new()
        .route("/", get(hello))
        .route("/health", get(health))
        .route("/work", get(work))
        .route("/cpu", get(cpu))
        .route("/debug/request", get(debug_request))
        .route("/ready", get(ready))
        .route("/debug/ready", post(set_ready))
        .route("/debug/health", post(set_healthy))
        .route("/items", post(items::create).get(items::list))
        .route("/items/{id}", get(items::get_one))
        .route("/limited", get(items::limited))
        .route("/ws", get(streams::ws))
        .route("/events", get(streams::events))
        .route("/events/ack", post(streams::ack))
        .with_state(state)
}

/// Readiness and liveness switches, flipped through `/debug/ready` and `/debug/health` so a test
/// (or a person) can watch emu take an instance out of rotation or restart it.
static READY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);
static HEALTHY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

#[derive(Debug, Deserialize)]
struct Switch {
    state: bool,
}

/// Readiness: 200 while this instance wants traffic, 503 otherwise.
async fn ready() -> Response {
    if READY.load(std::sync::atomic::Ordering::Relaxed) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

/// `POST /debug/ready?state=false` makes `/ready` fail on this instance.
async fn set_ready(Query(q): Query<Switch>) -> String {
    READY.store(q.state, std::sync::atomic::Ordering::Relaxed);
    format!("ready={}\n", q.state)
}

/// `POST /debug/health?state=false` makes `/health` fail on this instance (liveness).
async fn set_healthy(Query(q): Query<Switch>) -> String {
    HEALTHY.store(q.state, std::sync::atomic::Ordering::Relaxed);
    format!("healthy={}\n", q.state)
}

async fn hello() -> String {
    let service = std::env::var("K_SERVICE").unwrap_or_else(|_| "demo".into());
    format!("Hello from {service}!\n")
}

/// Checks each configured dependency live (pool acquire + `SELECT 1`, Redis PING, each bounded
/// by a short timeout); 503 when one is down. An unconfigured one is reported, never a failure.
async fn health(State(state): State<DemoState>) -> Response {
    let s = &state.0;
    let database = match &s.db {
        None => "not_configured",
        Some(pool) => {
            let ok = tokio::time::timeout(state::DEP_TIMEOUT, async {
                let mut c = pool.acquire().await?;
                sqlx::query("SELECT 1").execute(&mut *c).await
            })
            .await;
            if matches!(ok, Ok(Ok(_))) {
                "connected"
            } else {
                "disconnected"
            }
        }
    };
    let redis = match &s.redis {
        None => "not_configured",
        Some(r) => {
            let pong = r
                .run(|mut c| async move { redis::cmd("PING").query_async::<String>(&mut c).await })
                .await;
            if pong.is_ok() {
                "connected"
            } else {
                "disconnected"
            }
        }
    };
    let healthy = database != "disconnected"
        && redis != "disconnected"
        && HEALTHY.load(std::sync::atomic::Ordering::Relaxed);
    let code = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if healthy { "ok" } else { "degraded" },
        "service": s.cfg.service,
        "version": VERSION,
        "dependencies": { "database": database, "redis": redis },
    });
    (code, Json(body)).into_response()
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
    // A header sent more than once shows as one comma-joined list, so repeats stay visible.
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in &headers {
        let v = String::from_utf8_lossy(v.as_bytes());
        seen.entry(k.to_string())
            .and_modify(|all| {
                all.push_str(", ");
                all.push_str(&v);
            })
            .or_insert_with(|| v.into_owned());
    }
    let headers = seen;
    let env: BTreeMap<String, String> = std::env::vars()
        .filter_map(|(k, v)| shown_env(&k, v).map(|v| (k, v)))
        .collect();
    Json(json!({ "headers": headers, "env": env, "pid": std::process::id() }))
}

/// What `/debug/request` shows of one environment variable: the Cloud Run contract and `DEMO_*`
/// as they are, but anything that holds a secret (a `[secrets]` mapping, which emu lists in
/// `EMU_SECRET_ENV`, or a name like a key, token or password) only as set, since any client can
/// call this endpoint. Everything else is left out.
fn shown_env(name: &str, value: String) -> Option<String> {
    let shown = name == "PORT"
        || name.starts_with("K_")
        || name.starts_with("CLOUD_RUN_")
        || name.starts_with("EMU_")
        || name.starts_with("DEMO_");
    if !shown {
        return None;
    }
    let from_secrets = std::env::var(crate::secrets::SECRET_ENV_NAMES)
        .is_ok_and(|names| names.split(',').any(|n| n == name));
    // emu's own two secret-related variables hold a path and names, not secrets.
    let emu_own = name == crate::secrets::SECRET_ENV_NAMES || name == "EMU_SECRETS_ROOT";
    if (from_secrets || looks_secret(name)) && !emu_own {
        return Some("(set; value hidden)".into());
    }
    Some(value)
}

fn looks_secret(name: &str) -> bool {
    const WORDS: [&str; 9] = [
        "KEY",
        "TOKEN",
        "SECRET",
        "PASSWORD",
        "PASSWD",
        "CREDENTIAL",
        "PRIVATE",
        "AUTH",
        "SIGNING",
    ];
    let upper = name.to_ascii_uppercase();
    WORDS.iter().any(|w| upper.contains(w))
}

/// Runs the demo on `127.0.0.1:$PORT` (8080 when unset) until SIGTERM or Ctrl-C.
pub async fn run() -> anyhow::Result<()> {
    let port: u16 = match std::env::var("PORT") {
        Ok(p) => p
            .parse()
            .map_err(|_| anyhow::anyhow!("PORT={p:?} is not a port number"))?,
        Err(_) => 8080,
    };
    let cfg = DemoConfig::from_env()?;
    let state = DemoState::new(cfg)?;
    state.migrate_in_background();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    serve(listener, app_with(state), crate::shutdown_signal()).await?;
    Ok(())
}

/// Serves `router` on `listener` until `shutdown` resolves, with the peer address available
/// to handlers (the rate limit keys on it when there is no `x-forwarded-for`).
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// `emu demo-migrate`: runs the demo's migrations and exits — what a Cloud Run migration job does.
/// With `MIGRATE_DATABASES=a,b,c` task `CLOUD_RUN_TASK_INDEX` migrates the database at that index
/// (the one in `DATABASE_URL` replaced), so one job with N tasks migrates N databases.
pub async fn migrate() -> anyhow::Result<()> {
    let base = std::env::var("DATABASE_URL")
        .map_err(|_| anyhow::anyhow!("DATABASE_URL is not set: give the job a database"))?;
    let url = match std::env::var("MIGRATE_DATABASES") {
        Ok(list) => {
            let dbs: Vec<&str> = list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect();
            let index: usize = std::env::var("CLOUD_RUN_TASK_INDEX")
                .ok()
                .and_then(|i| i.parse().ok())
                .unwrap_or(0);
            let db = dbs.get(index).ok_or_else(|| {
                anyhow::anyhow!("task {index} has no database in MIGRATE_DATABASES={list:?}")
            })?;
            crate::backends::with_database(&base, db)
        }
        Err(_) => base,
    };
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(std::time::Duration::from_secs(10))
        .connect(&url)
        .await
        .map_err(|e| {
            anyhow::anyhow!("cannot connect to {}: {e}", crate::backends::mask_url(&url))
        })?;
    state::MIGRATOR.run(&pool).await?;
    println!("migrated {}", crate::backends::mask_url(&url));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_looking_names_are_hidden_and_the_contract_is_shown() {
        let shown = |name: &str| shown_env(name, "v".into());
        assert_eq!(shown("K_SERVICE").as_deref(), Some("v"));
        assert_eq!(shown("DEMO_CACHE_TTL").as_deref(), Some("v"));
        assert_eq!(shown("EMU_SECRETS_ROOT").as_deref(), Some("v"));
        for name in ["DEMO_JWT_SIGNING_KEY", "EMU_RUN_TOKEN", "DEMO_DB_PASSWORD"] {
            assert_eq!(
                shown(name).as_deref(),
                Some("(set; value hidden)"),
                "{name}"
            );
        }
        assert_eq!(shown("DATABASE_URL"), None);
        assert_eq!(shown("HOME"), None);
    }
}

//! Items in PostgreSQL with a Redis cache, and a Redis rate limit.

use std::net::SocketAddr;

use axum::extract::connect_info::ConnectInfo;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use super::state::DemoState;

/// What a handler could not do. The one place that turns failures into status codes; the
/// body never carries internals (those go to the log).
#[derive(Debug, thiserror::Error)]
pub(crate) enum DemoError {
    #[error("{0} is not configured")]
    NotConfigured(&'static str),
    #[error("{0} is unavailable")]
    Unavailable(&'static str),
    #[error("{0}")]
    BadRequest(String),
    #[error("not found")]
    NotFound,
}

impl IntoResponse for DemoError {
    fn into_response(self) -> Response {
        let code = match self {
            DemoError::NotConfigured(_) | DemoError::Unavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            DemoError::BadRequest(_) => StatusCode::BAD_REQUEST,
            DemoError::NotFound => StatusCode::NOT_FOUND,
        };
        (code, Json(json!({ "error": self.to_string() }))).into_response()
    }
}

fn db_error(e: sqlx::Error) -> DemoError {
    tracing::warn!("database: {e}");
    DemoError::Unavailable("database")
}

async fn pool(state: &DemoState) -> Result<&sqlx::PgPool, DemoError> {
    let pool = state
        .0
        .db
        .as_ref()
        .ok_or(DemoError::NotConfigured("database"))?;
    state.migrate().await.map_err(db_error)?;
    Ok(pool)
}

#[derive(Debug, Deserialize)]
pub(crate) struct NewItem {
    name: String,
    #[serde(default)]
    value: Value,
}

type ItemRow = (i64, String, String, DateTime<Utc>);

fn item_json((id, name, value, created_at): ItemRow) -> Value {
    json!({
        "id": id,
        "name": name,
        "value": serde_json::from_str::<Value>(&value).unwrap_or(Value::Null),
        "created_at": created_at.to_rfc3339(),
    })
}

/// `POST /items` `{"name": "...", "value": ...}` → 201 with the stored row.
pub(crate) async fn create(
    State(state): State<DemoState>,
    body: Result<Json<NewItem>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, DemoError> {
    let Json(item) = body.map_err(|e| DemoError::BadRequest(e.body_text()))?;
    let name = item.name.trim();
    if name.is_empty() || name.len() > 200 {
        return Err(DemoError::BadRequest(
            "name must be 1 to 200 characters".into(),
        ));
    }
    let pool = pool(&state).await?;
    let row: ItemRow = sqlx::query_as(
        "INSERT INTO items (name, value) VALUES ($1, $2::jsonb) \
         RETURNING id, name, value::text, created_at",
    )
    .bind(name)
    .bind(item.value.to_string())
    .fetch_one(pool)
    .await
    .map_err(db_error)?;
    Ok((StatusCode::CREATED, Json(item_json(row))).into_response())
}

#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    limit: Option<i64>,
}

/// `GET /items?limit=N` (default 20, at most 100): newest first.
pub(crate) async fn list(
    State(state): State<DemoState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, DemoError> {
    let limit = q.limit.unwrap_or(20).clamp(1, 100);
    let pool = pool(&state).await?;
    let rows: Vec<ItemRow> = sqlx::query_as(
        "SELECT id, name, value::text, created_at FROM items ORDER BY id DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await
    .map_err(db_error)?;
    let items: Vec<Value> = rows.into_iter().map(item_json).collect();
    Ok(Json(json!({ "items": items, "limit": limit })))
}

/// `GET /items/{id}`, cache-aside: Redis first (`x-cache: hit`), else PostgreSQL, then stored in
/// Redis for `DEMO_CACHE_TTL` seconds (`x-cache: miss`). Without Redis every read is a miss.
pub(crate) async fn get_one(
    State(state): State<DemoState>,
    Path(id): Path<i64>,
) -> Result<Response, DemoError> {
    let key = format!("demo:item:{id}");
    if let Some(r) = &state.0.redis {
        let k = key.clone();
        let cached = r
            .run(|mut c| async move {
                redis::cmd("GET")
                    .arg(&k)
                    .query_async::<Option<String>>(&mut c)
                    .await
            })
            .await;
        match cached {
            Ok(Some(text)) => {
                if let Ok(v) = serde_json::from_str::<Value>(&text) {
                    return Ok(with_cache(Json(v).into_response(), "hit"));
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!("redis cache read: {e}"),
        }
    }
    let pool = pool(&state).await?;
    let row: Option<ItemRow> =
        sqlx::query_as("SELECT id, name, value::text, created_at FROM items WHERE id = $1")
            .bind(id)
            .fetch_optional(pool)
            .await
            .map_err(db_error)?;
    let item = item_json(row.ok_or(DemoError::NotFound)?);
    if let Some(r) = &state.0.redis {
        let text = item.to_string();
        let ttl = state.0.cfg.cache_ttl_secs;
        let stored = r
            .run(|mut c| async move {
                redis::cmd("SET")
                    .arg(&key)
                    .arg(text)
                    .arg("EX")
                    .arg(ttl)
                    .query_async::<()>(&mut c)
                    .await
            })
            .await;
        if let Err(e) = stored {
            tracing::warn!("redis cache write: {e}");
        }
    }
    Ok(with_cache(Json(item).into_response(), "miss"))
}

fn with_cache(mut r: Response, v: &'static str) -> Response {
    r.headers_mut()
        .insert("x-cache", HeaderValue::from_static(v));
    r
}

/// The client a request is counted against: the first `x-forwarded-for` address (the original
/// client, as Cloud Run's front end appends), else the TCP peer.
fn client_of(req: &Request) -> String {
    if let Some(first) = req
        .headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        // The header is the client's to write: bound what becomes a Redis key.
        return first.chars().take(64).collect();
    }
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ci| ci.0.ip().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// `GET /limited`: a fixed-window rate limit per client in Redis (INCR + EXPIRE), 429 past
/// `DEMO_RATE_LIMIT`. When Redis is missing or down it lets requests through (fail open) and
/// says so in `x-ratelimit: unavailable`.
pub(crate) async fn limited(State(state): State<DemoState>, req: Request) -> Response {
    let cfg = &state.0.cfg;
    let client = client_of(&req);
    let limit = cfg.rate_limit;
    let Some(r) = &state.0.redis else {
        return unlimited(&client);
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let window = now / cfg.rate_window_secs;
    let key = format!("demo:rl:{client}:{window}");
    let expire = cfg.rate_window_secs + 1;
    let counted = r
        .run(|mut c| async move {
            let (n,): (u64,) = redis::pipe()
                .cmd("INCR")
                .arg(&key)
                .cmd("EXPIRE")
                .arg(&key)
                .arg(expire)
                .ignore()
                .query_async(&mut c)
                .await?;
            Ok(n)
        })
        .await;
    let n = match counted {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!("rate limit: redis: {e}");
            return unlimited(&client);
        }
    };
    let remaining = limit.saturating_sub(n);
    let mut resp = if n > limit {
        let mut r = (
            StatusCode::TOO_MANY_REQUESTS,
            Json(json!({ "error": "rate limit exceeded", "client": client, "limit": limit })),
        )
            .into_response();
        let retry = cfg.rate_window_secs - now % cfg.rate_window_secs;
        if let Ok(v) = HeaderValue::from_str(&retry.to_string()) {
            r.headers_mut().insert("retry-after", v);
        }
        r
    } else {
        Json(json!({ "ok": true, "client": client, "count": n, "limit": limit })).into_response()
    };
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&limit.to_string()) {
        h.insert("x-ratelimit-limit", v);
    }
    if let Ok(v) = HeaderValue::from_str(&remaining.to_string()) {
        h.insert("x-ratelimit-remaining", v);
    }
    resp
}

fn unlimited(client: &str) -> Response {
    let mut r = Json(json!({ "ok": true, "client": client, "limited": false })).into_response();
    r.headers_mut()
        .insert("x-ratelimit", HeaderValue::from_static("unavailable"));
    r
}

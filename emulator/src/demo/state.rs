//! The demo's dependencies: a small, lazily connecting PostgreSQL pool and a Redis connection
//! that reconnects after the server comes back. Neither is needed to start: the demo serves
//! `/health` (503) and its plain routes while they are down.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};
use tokio::sync::{Mutex, OnceCell};

/// The demo's schema, embedded at build time (`emulator/migrations/`).
pub static MIGRATOR: Migrator = sqlx::migrate!();

/// How long a health check or a request may wait on a dependency.
pub(crate) const DEP_TIMEOUT: Duration = Duration::from_secs(2);

/// What the demo reads from its environment.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    /// `DATABASE_URL`; None: the database is "not_configured".
    pub database_url: Option<String>,
    /// `REDIS_URL`; None: Redis is "not_configured".
    pub redis_url: Option<String>,
    /// `DEMO_DB_POOL` (default 5): connections per instance. Small, because many instances
    /// share a small tier (db-f1-micro allows 25 in all).
    pub db_pool: u32,
    /// `DEMO_RATE_LIMIT` (default `10/s`): requests per client per window on `/limited`.
    pub rate_limit: u64,
    /// Window of the rate limit in seconds (`N/s` → 1, `N/m` → 60).
    pub rate_window_secs: u64,
    /// `DEMO_CACHE_TTL` in seconds (default 60) for `GET /items/{id}`.
    pub cache_ttl_secs: u64,
    /// `K_SERVICE` (default "demo").
    pub service: String,
}

impl Default for DemoConfig {
    fn default() -> Self {
        DemoConfig {
            database_url: None,
            redis_url: None,
            db_pool: 5,
            rate_limit: 10,
            rate_window_secs: 1,
            cache_ttl_secs: 60,
            service: "demo".into(),
        }
    }
}

/// A bad demo setting, naming the variable.
#[derive(Debug, thiserror::Error)]
#[error("{var}: {message}")]
pub struct DemoConfigError {
    pub var: &'static str,
    pub message: String,
}

impl DemoConfig {
    /// Reads the environment of the process.
    pub fn from_env() -> Result<Self, DemoConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads settings through `get` (tests pass a map instead of touching the environment).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, DemoConfigError> {
        let mut cfg = DemoConfig::default();
        let nonempty = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        cfg.database_url = nonempty("DATABASE_URL");
        cfg.redis_url = nonempty("REDIS_URL");
        if let Some(s) = nonempty("K_SERVICE") {
            cfg.service = s;
        }
        if let Some(v) = nonempty("DEMO_DB_POOL") {
            cfg.db_pool = v
                .trim()
                .parse()
                .ok()
                .filter(|n| (1..=100).contains(n))
                .ok_or_else(|| DemoConfigError {
                    var: "DEMO_DB_POOL",
                    message: format!("{v:?} is not a pool size; use 1..=100"),
                })?;
        }
        if let Some(v) = nonempty("DEMO_RATE_LIMIT") {
            let (n, window) = parse_rate(&v).ok_or_else(|| DemoConfigError {
                var: "DEMO_RATE_LIMIT",
                message: format!("{v:?} is not a rate; use e.g. 10, 10/s or 600/m"),
            })?;
            cfg.rate_limit = n;
            cfg.rate_window_secs = window;
        }
        if let Some(v) = nonempty("DEMO_CACHE_TTL") {
            cfg.cache_ttl_secs =
                v.trim()
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| DemoConfigError {
                        var: "DEMO_CACHE_TTL",
                        message: format!("{v:?} is not a number of seconds above 0"),
                    })?;
        }
        Ok(cfg)
    }
}

/// `10`, `10/s`, `600/m` → (limit, window seconds).
fn parse_rate(v: &str) -> Option<(u64, u64)> {
    let v = v.trim();
    let (n, window) = match v.split_once('/') {
        None => (v, 1),
        Some((n, "s")) => (n, 1),
        Some((n, "m")) => (n, 60),
        Some(_) => return None,
    };
    let n: u64 = n.trim().parse().ok()?;
    (n > 0).then_some((n, window))
}

/// A Redis client whose one multiplexed connection is made on first use and dropped on a
/// connection error, so the next call reconnects (the server may have restarted).
pub(crate) struct RedisHandle {
    client: redis::Client,
    conn: Mutex<Option<MultiplexedConnection>>,
}

impl RedisHandle {
    async fn conn(&self) -> redis::RedisResult<MultiplexedConnection> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let cfg = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(DEP_TIMEOUT)
            .set_response_timeout(DEP_TIMEOUT);
        let c = self
            .client
            .get_multiplexed_async_connection_with_config(&cfg)
            .await?;
        *slot = Some(c.clone());
        Ok(c)
    }

    /// Runs one command (or pipeline) with a bound on time; forgets the connection when it
    /// broke, so the next call reconnects.
    pub(crate) async fn run<T, F, Fut>(&self, f: F) -> redis::RedisResult<T>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let result = match tokio::time::timeout(DEP_TIMEOUT, async {
            let c = self.conn().await?;
            f(c).await
        })
        .await
        {
            Ok(r) => r,
            Err(_) => Err(redis::RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "redis did not answer in time",
            ))),
        };
        if let Err(e) = &result {
            if e.is_io_error()
                || e.is_connection_dropped()
                || e.is_connection_refusal()
                || e.is_timeout()
            {
                *self.conn.lock().await = None;
            }
        }
        result
    }
}

pub(crate) struct Inner {
    pub cfg: DemoConfig,
    pub db: Option<PgPool>,
    pub redis: Option<RedisHandle>,
    pub schema: OnceCell<()>,
}

/// Shared state of the demo's handlers: cheap to clone.
#[derive(Clone)]
pub struct DemoState(pub(crate) Arc<Inner>);

impl DemoState {
    /// Builds the state without connecting: the pool and Redis connect on first use. Must be
    /// called inside a tokio runtime (the pool starts its maintenance task).
    pub fn new(cfg: DemoConfig) -> Result<Self, DemoConfigError> {
        let db = match &cfg.database_url {
            None => None,
            Some(url) => {
                let opts: PgConnectOptions = url.parse().map_err(|e| DemoConfigError {
                    var: "DATABASE_URL",
                    message: format!("{} does not parse: {e}", crate::backends::mask_url(url)),
                })?;
                Some(
                    PgPoolOptions::new()
                        .max_connections(cfg.db_pool)
                        .min_connections(0)
                        .acquire_timeout(DEP_TIMEOUT)
                        .idle_timeout(Duration::from_secs(60))
                        .connect_lazy_with(opts.disable_statement_logging()),
                )
            }
        };
        let redis = match &cfg.redis_url {
            None => None,
            Some(url) => Some(RedisHandle {
                client: redis::Client::open(url.as_str()).map_err(|e| DemoConfigError {
                    var: "REDIS_URL",
                    message: format!("{} does not parse: {e}", crate::backends::mask_url(url)),
                })?,
                conn: Mutex::new(None),
            }),
        };
        Ok(DemoState(Arc::new(Inner {
            cfg,
            db,
            redis,
            schema: OnceCell::new(),
        })))
    }

    /// A state with no database and no Redis.
    pub fn without_backends() -> Self {
        DemoState(Arc::new(Inner {
            cfg: DemoConfig::default(),
            db: None,
            redis: None,
            schema: OnceCell::new(),
        }))
    }

    /// Runs the embedded migrations once (concurrent instances are serialised by sqlx's
    /// advisory lock). Ok(false) when there is no database.
    pub async fn migrate(&self) -> Result<bool, sqlx::Error> {
        let Some(pool) = &self.0.db else {
            return Ok(false);
        };
        self.0
            .schema
            .get_or_try_init(|| async {
                MIGRATOR
                    .run(pool)
                    .await
                    .map_err(|e| sqlx::Error::Migrate(Box::new(e)))
            })
            .await?;
        Ok(true)
    }

    /// Retries [`migrate`](Self::migrate) in the background until it succeeds, so the demo
    /// starts while the database is still down.
    pub fn migrate_in_background(&self) {
        if self.0.db.is_none() {
            return;
        }
        let state = self.clone();
        tokio::spawn(async move {
            let mut warned = false;
            loop {
                match state.migrate().await {
                    Ok(_) => {
                        tracing::info!("demo schema ready");
                        return;
                    }
                    Err(e) => {
                        if !warned {
                            tracing::warn!("database not ready for migrations yet ({e}); retrying");
                            warned = true;
                        }
                        tokio::time::sleep(Duration::from_secs(2)).await;
                    }
                }
            }
        });
    }
}

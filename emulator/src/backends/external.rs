//! External mode: servers someone else runs. emu only checks them at start (connect and a simple
//! query or PING, with a short timeout) and never stops them.

use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use serde_json::{json, Value};
use sqlx::{ConnectOptions, Connection, Executor};

use super::{mask_url, BackendError, PostgresConfig, RedisConfig, Running};

const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

fn host_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    authority.rsplit('@').next().unwrap_or("").to_string()
}

/// A PostgreSQL server reached through `postgres.url`.
pub(crate) struct ExternalPostgres {
    url: String,
    version: String,
    max_connections: Option<i64>,
    tier: Option<String>,
}

impl ExternalPostgres {
    /// Connects, runs `SELECT 1`, reads the version and `max_connections`, and creates missing
    /// `databases` when the user may (a warning otherwise).
    pub(crate) async fn check(
        cfg: &PostgresConfig,
        databases: &[String],
    ) -> Result<(String, Self), BackendError> {
        let url = cfg.url.clone().unwrap_or_default();
        let unreachable = |detail: String| {
            BackendError::Unreachable {
            what: "PostgreSQL",
            url: mask_url(&url),
            detail,
            hint: "Check that the server runs and the URL (user, password, port, database) is right, or set [postgres] mode = \"native\" or \"docker\" to let emu run one".into(),
        }
        };
        let opts: sqlx::postgres::PgConnectOptions = url
            .parse()
            .map_err(|e: sqlx::Error| unreachable(format!("the URL does not parse: {e}")))?;
        let opts = opts.disable_statement_logging();
        let mut conn = match tokio::time::timeout(CHECK_TIMEOUT, opts.connect()).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(unreachable(e.to_string())),
            Err(_) => return Err(unreachable(format!("no answer within {CHECK_TIMEOUT:?}"))),
        };
        let checked = tokio::time::timeout(CHECK_TIMEOUT, async {
            let one: i32 = sqlx::query_scalar("SELECT 1").fetch_one(&mut conn).await?;
            let version: String = sqlx::query_scalar("SHOW server_version")
                .fetch_one(&mut conn)
                .await?;
            let max: String = sqlx::query_scalar("SHOW max_connections")
                .fetch_one(&mut conn)
                .await?;
            Ok::<_, sqlx::Error>((one, version, max.parse::<i64>().ok()))
        })
        .await;
        let (version, max_connections) = match checked {
            Ok(Ok((_, v, m))) => (v, m),
            Ok(Err(e)) => return Err(unreachable(format!("`SELECT 1` failed: {e}"))),
            Err(_) => {
                return Err(unreachable(format!(
                    "`SELECT 1` took over {CHECK_TIMEOUT:?}"
                )))
            }
        };
        for db in databases {
            let exists: Result<Option<i32>, _> =
                sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
                    .bind(db)
                    .fetch_optional(&mut conn)
                    .await;
            if matches!(exists, Ok(None)) {
                let sql = format!("CREATE DATABASE \"{}\"", db.replace('"', "\"\""));
                match conn.execute(sql.as_str()).await {
                    Ok(_) => {
                        tracing::info!(database = %db, "created database on the external server")
                    }
                    Err(e) => tracing::warn!(
                        database = %db,
                        "database is missing on the external server and could not be created ({e}); create it there"
                    ),
                }
            }
        }
        let _ = conn.close().await;
        Ok((
            url.clone(),
            ExternalPostgres {
                url,
                version,
                max_connections,
                tier: cfg.tier.clone(),
            },
        ))
    }
}

impl Running for ExternalPostgres {
    fn status(&self) -> Value {
        json!({
            "mode": "external",
            "version": self.version,
            "address": host_of(&self.url),
            "tier": self.tier,
            "max_connections": self.max_connections,
        })
    }

    fn ready(&self) -> BoxFuture<'_, bool> {
        super::pg_ready(&self.url).boxed()
    }

    fn stop(self: Box<Self>) -> BoxFuture<'static, ()> {
        // Not ours to stop.
        async {}.boxed()
    }
}

/// A Redis server reached through `redis.url`.
pub(crate) struct ExternalRedis {
    url: String,
    version: Option<String>,
    maxmemory: Option<u64>,
    policy: Option<String>,
}

impl ExternalRedis {
    /// Connects and sends PING; reads version and memory settings where the server allows.
    pub(crate) async fn check(cfg: &RedisConfig) -> Result<(String, Self), BackendError> {
        let url = cfg.url.clone().unwrap_or_default();
        let unreachable = |detail: String| {
            BackendError::Unreachable {
            what: "Redis",
            url: mask_url(&url),
            detail,
            hint: "Check that the server runs and the URL is right, or set [redis] mode = \"native\" or \"docker\" to let emu run one".into(),
        }
        };
        let client = redis::Client::open(url.as_str())
            .map_err(|e| unreachable(format!("the URL does not parse: {e}")))?;
        let conn_cfg = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(CHECK_TIMEOUT)
            .set_response_timeout(CHECK_TIMEOUT);
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&conn_cfg)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map_err(|e| unreachable(format!("PING failed: {e}")))?;
        let version = redis::cmd("INFO")
            .arg("server")
            .query_async::<String>(&mut conn)
            .await
            .ok()
            .and_then(|info| {
                info.lines()
                    .find_map(|l| l.strip_prefix("redis_version:"))
                    .map(|v| v.trim().to_string())
            });
        // Memorystore blocks CONFIG; then these stay unknown.
        let config = |key: &'static str| {
            let mut conn = conn.clone();
            async move {
                redis::cmd("CONFIG")
                    .arg("GET")
                    .arg(key)
                    .query_async::<Vec<String>>(&mut conn)
                    .await
                    .ok()
                    .and_then(|v| v.get(1).cloned())
            }
        };
        let maxmemory = config("maxmemory").await.and_then(|v| v.parse().ok());
        let policy = config("maxmemory-policy").await;
        Ok((
            url.clone(),
            ExternalRedis {
                url,
                version,
                maxmemory,
                policy,
            },
        ))
    }
}

impl Running for ExternalRedis {
    fn status(&self) -> Value {
        json!({
            "mode": "external",
            "version": self.version,
            "address": host_of(&self.url),
            "maxmemory": self.maxmemory,
            "maxmemory_policy": self.policy,
        })
    }

    fn ready(&self) -> BoxFuture<'_, bool> {
        super::native::ping(&self.url).boxed()
    }

    fn stop(self: Box<Self>) -> BoxFuture<'static, ()> {
        async {}.boxed()
    }
}

//! PostgreSQL (Cloud SQL) and Redis (Memorystore) behind emu: docker | native | external.
//!
//! [`start`] takes the `[postgres]` / `[redis]` config and returns [`Backends`] only once every
//! server it started answers queries. Each running store sits behind the small `Running`
//! trait: explicit readiness (the start functions wait for it), explicit async teardown
//! ([`Backends::stop`]), and a `Drop` fallback that kills what a forgotten `stop` would have
//! stopped (the same shape as testcontainers-rs' async containers).
//!
//! Native data lives under `<project>/.emu/` (see the `native` module); docker mode creates
//! the store containers through the Engine API (see [`docker`]).

mod credentials;
pub mod docker;
mod down;
mod external;
mod native;

use std::path::PathBuf;

use futures_util::future::BoxFuture;
use serde_json::{json, Value};

/// The `[postgres]` / `[redis]` config is the spec's; re-exported here for callers of [`start`].
pub use crate::spec::stores::{
    mask_url, tier_max_connections, ConfigIssue, Mode, PostgresConfig, RedisConfig,
    DEFAULT_MAX_CONNECTIONS, DEFAULT_POSTGRES_VERSION, DEFAULT_REDIS_VERSION, POSTGRES_VERSIONS,
    REDIS_VERSIONS,
};
pub use credentials::{credentials_path, Credentials};
pub use docker::{docker_available, DockerInstance};
pub use down::down;

/// Role services connect as. Not a superuser, so `max_connections` limits it the way Cloud SQL
/// limits application users (superusers keep `superuser_reserved_connections` slots).
pub const APP_USER: &str = "app";
/// Database every service gets unless it asks for its own.
pub const APP_DATABASE: &str = "app";
/// Slots PostgreSQL keeps for superusers (its default). emu starts the server with
/// `max_connections = tier limit + this`, so the app role gets exactly the tier's limit.
pub const SUPERUSER_RESERVED_CONNECTIONS: u32 = 3;

/// What `emu up` asks for.
#[derive(Debug, Clone, Default)]
pub struct BackendsPlan {
    pub postgres: PostgresConfig,
    pub redis: RedisConfig,
    /// The folder holding `.emu/` (native data, `emu.pid`); names the docker containers.
    pub project_dir: PathBuf,
    /// Extra databases services asked for; created at start when missing.
    pub databases: Vec<String>,
}

impl BackendsPlan {
    /// What `cfg` asks of the backends: each store's section (off when there is none), in the
    /// config's project folder, with the databases `databases` name.
    pub fn for_config(cfg: &crate::spec::Config, databases: Vec<String>) -> BackendsPlan {
        let mode = |m: Option<Mode>| m.unwrap_or(Mode::None);
        let mut postgres = cfg.postgres.clone().unwrap_or_default();
        postgres.mode = mode(cfg.postgres.as_ref().map(|p| p.mode));
        let mut redis = cfg.redis.clone().unwrap_or_default();
        redis.mode = mode(cfg.redis.as_ref().map(|r| r.mode));
        BackendsPlan {
            postgres,
            redis,
            project_dir: cfg.project_dir.clone(),
            databases,
        }
    }
}

/// Why the backing stores could not be provided. `Display` says what to do.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("emu.toml: {0}")]
    Config(#[from] ConfigIssue),
    #[error("{what} is not installed. {hint}")]
    NotInstalled { what: &'static str, hint: String },
    #[error("{what} did not start: {detail}")]
    Start { what: &'static str, detail: String },
    #[error("cannot reach {what} at {url}: {detail}. {hint}")]
    Unreachable {
        what: &'static str,
        /// Masked: never carries a password.
        url: String,
        detail: String,
        hint: String,
    },
    #[error("docker: {0}")]
    Docker(String),
    #[error("no Docker engine answers at {host} ({detail}). Start Docker or set DOCKER_HOST to its socket, or use --backends native (installed servers)")]
    NoEngine { host: String, detail: String },
    #[error("docker: image {image} is not on the Docker engine and cannot be pulled ({detail}). Set [{section}] image to a local image (`docker images` lists them), or use --backends native")]
    ImageMissing {
        section: &'static str,
        image: String,
        detail: String,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl BackendError {
    /// The exit code of a command that failed with this: 2 when the user has to change the
    /// config or the machine (bad config, no engine, an image that is not there), else 1.
    pub fn exit_code(&self) -> u8 {
        match self {
            BackendError::Config(_)
            | BackendError::NoEngine { .. }
            | BackendError::ImageMissing { .. } => 2,
            _ => 1,
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        BackendError::Io {
            context: context.into(),
            source,
        }
    }
}

/// A running backing store. Readiness is part of starting (a `Running` exists only once the
/// server answers); `stop` is the graceful teardown and `Drop` the fallback.
pub(crate) trait Running: Send + Sync {
    /// Mode, version, address and settings; URLs masked.
    fn status(&self) -> Value;
    /// True when the server answers now (connect + `SELECT 1`, or PING), within a short bound.
    fn ready(&self) -> BoxFuture<'_, bool>;
    /// Graceful stop, bounded in time.
    fn stop(self: Box<Self>) -> BoxFuture<'static, ()>;
}

enum Slot {
    Off {
        mode: Mode,
        reason: String,
    },
    On {
        mode: Mode,
        url: String,
        server: Box<dyn Running>,
    },
}

impl Slot {
    fn status(&self) -> Value {
        match self {
            Slot::Off { mode, reason } => json!({
                "mode": "off",
                "state": "off",
                "requested_mode": mode.as_str(),
                "reason": reason,
            }),
            Slot::On { mode, url, server } => {
                let mut v = server.status();
                if let Value::Object(m) = &mut v {
                    m.insert("state".into(), json!("running"));
                    m.insert("requested_mode".into(), json!(mode.as_str()));
                    m.insert("url".into(), json!(mask_url(url)));
                }
                v
            }
        }
    }

    async fn stop(self) {
        if let Slot::On { server, .. } = self {
            server.stop().await;
        }
    }

    async fn health(&self) -> &'static str {
        match self {
            Slot::Off { .. } => "off",
            Slot::On { server, .. } => {
                if server.ready().await {
                    "up"
                } else {
                    "down"
                }
            }
        }
    }
}

/// The running backing stores of one `emu up`.
pub struct Backends {
    postgres: Slot,
    redis: Slot,
}

impl std::fmt::Debug for Backends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backends")
            .field("status", &self.status())
            .finish()
    }
}

impl Backends {
    /// `DATABASE_URL` for a service: the shared `app` database, or `database` (one of
    /// `plan.databases`). None when PostgreSQL is off.
    pub fn database_url(&self, database: Option<&str>) -> Option<String> {
        match &self.postgres {
            Slot::On { url, .. } => Some(match database {
                Some(db) => with_database(url, db),
                None => url.clone(),
            }),
            Slot::Off { .. } => None,
        }
    }

    /// `REDIS_URL` for a service; None when Redis is off.
    pub fn redis_url(&self) -> Option<String> {
        match &self.redis {
            Slot::On { url, .. } => Some(url.clone()),
            Slot::Off { .. } => None,
        }
    }

    /// The local Redis's host and port under `host_env` / `port_env` (none when Redis is off),
    /// and its AUTH string, when it has one, beside them: `REDIS_HOST` → `REDIS_PASSWORD`.
    pub fn redis_host_port(&self, host_env: &str, port_env: &str) -> Vec<(String, String)> {
        let Some(url) = self.redis_url().and_then(|u| reqwest::Url::parse(&u).ok()) else {
            return Vec::new();
        };
        let host = url.host_str().unwrap_or("127.0.0.1").to_string();
        let port = url.port().unwrap_or(6379).to_string();
        let mut env = vec![(host_env.to_string(), host), (port_env.to_string(), port)];
        if let Some(pw) = url.password() {
            let prefix = host_env.strip_suffix("HOST").unwrap_or(host_env);
            env.push((format!("{prefix}PASSWORD"), pw.to_string()));
        }
        env
    }

    /// The environment a service instance gets: `DATABASE_URL` (for `database`, else the
    /// shared `app` database) and `REDIS_URL`, each only when that store is on.
    pub fn service_env(&self, database: Option<&str>) -> Vec<(String, String)> {
        self.env(database, "DATABASE_URL", "REDIS_URL")
    }

    /// [`Backends::service_env`] under the env names a service or job chose.
    pub fn env(
        &self,
        database: Option<&str>,
        database_env: &str,
        redis_env: &str,
    ) -> Vec<(String, String)> {
        let mut env = Vec::new();
        if let Some(url) = self.database_url(database) {
            env.push((database_env.to_string(), url));
        }
        if let Some(url) = self.redis_url() {
            env.push((redis_env.to_string(), url));
        }
        env
    }

    /// For `/_emu/status`: per store its mode, version, address and settings, or why it is off.
    /// URLs are masked.
    pub fn status(&self) -> Value {
        json!({
            "postgres": self.postgres.status(),
            "redis": self.redis.status(),
        })
    }

    /// Checks each store live: `{"postgres": "up"|"down"|"off", "redis": …}`.
    pub async fn health(&self) -> Value {
        let (pg, redis) = tokio::join!(self.postgres.health(), self.redis.health());
        json!({ "postgres": pg, "redis": redis })
    }

    /// Stops what emu started (PostgreSQL fast shutdown, Redis SIGTERM, containers stopped but
    /// kept), each bounded in time and escalated to SIGKILL. External servers are left alone.
    pub async fn stop(self) {
        let Backends { postgres, redis } = self;
        tokio::join!(postgres.stop(), redis.stop());
    }
}

/// Starts (or checks) PostgreSQL and Redis as `plan` asks; returns once they answer.
///
/// In `auto` mode a missing Docker engine and missing server binaries are not errors: that
/// store is off and [`Backends::status`] says why. Anything asked for explicitly that cannot be
/// provided is an error, and whatever was already started is stopped again.
pub async fn start(mut plan: BackendsPlan) -> Result<Backends, BackendError> {
    // Servers run with their own working directories: every path handed to them is absolute.
    plan.project_dir = std::path::absolute(&plan.project_dir).map_err(|e| {
        BackendError::io(
            format!(
                "resolving the project folder {}",
                plan.project_dir.display()
            ),
            e,
        )
    })?;
    plan.postgres.validate()?;
    plan.redis.validate()?;
    for db in &plan.databases {
        check_database_name(db)?;
    }
    let docker_up = if plan.postgres.mode == Mode::Auto || plan.redis.mode == Mode::Auto {
        docker_available().await
    } else {
        false
    };
    let postgres = start_postgres(&plan, docker_up).await?;
    let redis = match start_redis(&plan, docker_up).await {
        Ok(r) => r,
        Err(e) => {
            postgres.stop().await;
            return Err(e);
        }
    };
    Ok(Backends { postgres, redis })
}

fn check_database_name(db: &str) -> Result<(), BackendError> {
    let ok = !db.is_empty()
        && db.len() <= 63
        && db
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(ConfigIssue {
            key: "database".into(),
            message: format!(
                "{db:?} is not a database name emu creates; use letters, digits, _ or -, at most 63"
            ),
        }
        .into())
    }
}

/// Servers emu runs itself (native, docker) get the project's passwords ([`Credentials`]);
/// external ones bring their own in their URL.
async fn start_postgres(plan: &BackendsPlan, docker_up: bool) -> Result<Slot, BackendError> {
    let cfg = &plan.postgres;
    let mode = cfg.mode;
    let creds = || Credentials::load_or_create(&plan.project_dir);
    match mode {
        Mode::None => Ok(Slot::Off {
            mode,
            reason: "postgres.mode = \"none\"".into(),
        }),
        Mode::External => {
            let (url, server) = external::ExternalPostgres::check(cfg, &plan.databases).await?;
            Ok(on(mode, url, server))
        }
        Mode::Native => {
            let (url, server) =
                native::NativePostgres::start(cfg, &plan.project_dir, &plan.databases, &creds()?)
                    .await?;
            Ok(on(mode, url, server))
        }
        Mode::Docker => {
            let (url, server) = docker::StoreContainer::start_postgres(
                cfg,
                &plan.project_dir,
                &plan.databases,
                &creds()?.0,
            )
            .await?;
            Ok(on(mode, url, server))
        }
        Mode::Auto => {
            // Loaded once: whether they are new matters to the native fallback too.
            let creds = creds()?;
            if docker_up {
                match docker::StoreContainer::start_postgres(
                    cfg,
                    &plan.project_dir,
                    &plan.databases,
                    &creds.0,
                )
                .await
                {
                    Ok((url, server)) => return Ok(on(mode, url, server)),
                    Err(e) => tracing::warn!(
                        "postgres in docker failed ({e}); trying installed PostgreSQL binaries"
                    ),
                }
            }
            if native::find_postgres().await.is_empty() {
                let reason = format!(
                    "{} and no PostgreSQL installed: {}",
                    docker_word(docker_up),
                    native::POSTGRES_INSTALL_HINT
                );
                tracing::warn!("postgres is off: {reason}");
                return Ok(Slot::Off { mode, reason });
            }
            let (url, server) =
                native::NativePostgres::start(cfg, &plan.project_dir, &plan.databases, &creds)
                    .await?;
            Ok(on(mode, url, server))
        }
    }
}

async fn start_redis(plan: &BackendsPlan, docker_up: bool) -> Result<Slot, BackendError> {
    let cfg = &plan.redis;
    let mode = cfg.mode;
    let creds = || Credentials::load_or_create(&plan.project_dir).map(|(c, _)| c);
    match mode {
        Mode::None => Ok(Slot::Off {
            mode,
            reason: "redis.mode = \"none\"".into(),
        }),
        Mode::External => {
            let (url, server) = external::ExternalRedis::check(cfg).await?;
            Ok(on(mode, url, server))
        }
        Mode::Native => {
            let (url, server) =
                native::NativeRedis::start(cfg, &plan.project_dir, &creds()?).await?;
            Ok(on(mode, url, server))
        }
        Mode::Docker => {
            let (url, server) =
                docker::StoreContainer::start_redis(cfg, &plan.project_dir, &creds()?).await?;
            Ok(on(mode, url, server))
        }
        Mode::Auto => {
            if docker_up {
                match docker::StoreContainer::start_redis(cfg, &plan.project_dir, &creds()?).await {
                    Ok((url, server)) => return Ok(on(mode, url, server)),
                    Err(e) => tracing::warn!(
                        "redis in docker failed ({e}); trying an installed redis-server"
                    ),
                }
            }
            if native::find_redis().is_none() {
                let reason = format!(
                    "{} and no redis-server installed: {}",
                    docker_word(docker_up),
                    native::REDIS_INSTALL_HINT
                );
                tracing::warn!("redis is off: {reason}");
                return Ok(Slot::Off { mode, reason });
            }
            let (url, server) =
                native::NativeRedis::start(cfg, &plan.project_dir, &creds()?).await?;
            Ok(on(mode, url, server))
        }
    }
}

fn docker_word(docker_up: bool) -> &'static str {
    if docker_up {
        "the docker containers failed (see the warning above)"
    } else {
        "no Docker engine answers"
    }
}

fn on<R: Running + 'static>(mode: Mode, url: String, server: R) -> Slot {
    Slot::On {
        mode,
        url,
        server: Box::new(server),
    }
}

/// True when PostgreSQL at `url` accepts a connection and `SELECT 1` within 2 s.
pub(crate) async fn pg_ready(url: &str) -> bool {
    use sqlx::{ConnectOptions, Connection};
    let Ok(opts) = url.parse::<sqlx::postgres::PgConnectOptions>() else {
        return false;
    };
    let check = async {
        let mut c = opts.disable_statement_logging().connect().await?;
        let r: Result<i32, sqlx::Error> = sqlx::query_scalar("SELECT 1").fetch_one(&mut c).await;
        let _ = c.close().await;
        r
    };
    matches!(
        tokio::time::timeout(std::time::Duration::from_secs(2), check).await,
        Ok(Ok(1))
    )
}

/// `url` with its path replaced by `/database` (query kept).
pub fn with_database(url: &str, database: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let after = &rest[authority_end..];
    let query = after.find('?').map(|i| &after[i..]).unwrap_or("");
    format!(
        "{}{}/{}{}",
        &url[..scheme_end + 3],
        &rest[..authority_end],
        database,
        query
    )
}

/// Connects as a superuser and makes sure the `app` role (with `app_password`: set at every
/// start, so data from before the project's credentials existed takes them on) and the
/// databases exist.
pub(crate) async fn ensure_app_role_and_databases(
    admin: &mut sqlx::PgConnection,
    databases: &[String],
    app_password: &str,
) -> Result<(), sqlx::Error> {
    use sqlx::Executor;
    let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_roles WHERE rolname = $1")
        .bind(APP_USER)
        .fetch_optional(&mut *admin)
        .await?;
    let verb = if exists.is_none() {
        "CREATE ROLE"
    } else {
        "ALTER ROLE"
    };
    // Utility statements take no parameters; the password is a quoted literal, and the
    // statement is never logged (statement logging is off on emu's admin connections).
    admin
        .execute(
            format!(
                "{verb} \"{APP_USER}\" LOGIN CREATEDB PASSWORD {}",
                sql_literal(app_password)
            )
            .as_str(),
        )
        .await?;
    let mut all = vec![APP_DATABASE.to_string()];
    all.extend(databases.iter().cloned());
    for db in all {
        let exists: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
                .bind(&db)
                .fetch_optional(&mut *admin)
                .await?;
        if exists.is_none() {
            let sql = format!(
                "CREATE DATABASE \"{}\" OWNER \"{APP_USER}\"",
                db.replace('"', "\"\"")
            );
            if let Err(e) = admin.execute(sql.as_str()).await {
                // Another emu may have created it between the check and now.
                let duplicate = e
                    .as_database_error()
                    .and_then(|d| d.code())
                    .is_some_and(|c| c == "42P04");
                if !duplicate {
                    return Err(e);
                }
            }
            tracing::info!(database = %db, "created database");
        }
    }
    Ok(())
}

/// `s` as an SQL string literal.
pub(crate) fn sql_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_database() {
        assert_eq!(
            with_database("postgres://a:b@h:1/app", "orders"),
            "postgres://a:b@h:1/orders"
        );
        assert_eq!(
            with_database("postgres://a@h:1/app?sslmode=disable", "x"),
            "postgres://a@h:1/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
    }
}

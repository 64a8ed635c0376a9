//! PostgreSQL and Redis as containers, one of each per project, through the Engine API.
//!
//! [`postgres_spec`] / [`redis_spec`] say what the container is (image, command, env, port,
//! volume, labels: what `docker/compose.yaml` describes too); [`StoreContainer`] makes the
//! engine run it: image present (pulled, with progress, when missing), named volume, container
//! created or reused, started, its engine-chosen loopback port read back, and only returned
//! once a real connection answers.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use bollard::models::{ContainerCreateBody, HealthConfig, HostConfig, PortBinding, PortMap};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, RemoveContainerOptionsBuilder,
    StopContainerOptionsBuilder,
};
use bollard::Docker;
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};
use serde_json::{json, Value};
use sqlx::{ConnectOptions, Connection};
use tokio::time::Instant;

use super::super::{
    ensure_app_role_and_databases, sql_literal, BackendError, Credentials, PostgresConfig,
    RedisConfig, Running, APP_DATABASE, APP_USER, SUPERUSER_RESERVED_CONNECTIONS,
};
use super::{compose_project, engine_error, not_found, LABEL_PROJECT, LABEL_STORE};

/// Superuser password of postgres volumes made before emu generated one per project
/// (`.emu/credentials.json`); such a volume gets the project's password at its next start.
const LEGACY_PG_PASSWORD: &str = "emu";
/// Bound on a store answering after its container starts (a first `initdb` included).
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// Seconds between SIGTERM and SIGKILL when a store container stops, as `docker stop -t 10`.
const STOP_GRACE_SECS: i32 = 10;
const SECOND_NS: i64 = 1_000_000_000;

/// One store container as emu creates it (and as `docker/compose.yaml` describes it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSpec {
    /// `postgres` or `redis`: the store, the `emu.toml` section and the compose service.
    pub store: &'static str,
    /// `emu-<folder>-<store>`.
    pub container: String,
    pub image: String,
    /// Environment set on the container.
    pub env: BTreeMap<String, String>,
    /// The command (arguments to the image's entry point).
    pub cmd: Vec<String>,
    /// The port the server listens on inside the container.
    pub container_port: u16,
    /// The loopback port to publish on; the engine picks a free one when None.
    pub host_port: Option<u16>,
    /// The named volume holding the data, and where it is mounted.
    pub volume: String,
    pub mount: &'static str,
    pub labels: BTreeMap<String, String>,
    /// The engine's healthcheck command (shown by `docker ps`; emu itself polls a connection).
    pub healthcheck: Vec<String>,
}

fn labels(project: &str, store: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_PROJECT.to_string(), project.to_string()),
        (LABEL_STORE.to_string(), store.to_string()),
    ])
}

/// The PostgreSQL container of a project: `max_connections` = the tier's limit +
/// `superuser_reserved_connections`, so the app role gets exactly the tier's connections, as in
/// native mode. One volume per major version: a data directory opens only with its own version.
/// `password`: the superuser's (the project's, from [`Credentials`]).
pub fn postgres_spec(cfg: &PostgresConfig, project_dir: &Path, password: &str) -> StoreSpec {
    let project = compose_project(project_dir);
    let version = cfg.version_or_default();
    let server_max = cfg.effective_max_connections() + SUPERUSER_RESERVED_CONNECTIONS;
    StoreSpec {
        store: "postgres",
        container: format!("{project}-postgres"),
        image: cfg
            .image
            .clone()
            .unwrap_or_else(|| format!("postgres:{version}")),
        env: BTreeMap::from([
            ("POSTGRES_USER".into(), "postgres".into()),
            ("POSTGRES_PASSWORD".into(), password.into()),
            ("POSTGRES_DB".into(), "postgres".into()),
        ]),
        cmd: [
            "postgres".to_string(),
            "-c".into(),
            format!("max_connections={server_max}"),
            "-c".into(),
            format!("superuser_reserved_connections={SUPERUSER_RESERVED_CONNECTIONS}"),
        ]
        .into(),
        container_port: 5432,
        host_port: cfg.port,
        volume: format!("{project}-pg{version}"),
        mount: "/var/lib/postgresql/data",
        labels: labels(&project, "postgres"),
        healthcheck: [
            "CMD-SHELL",
            "pg_isready -U postgres -d postgres -h 127.0.0.1",
        ]
        .map(String::from)
        .into(),
    }
}

/// `redis-server` with Memorystore's settings, AUTH (`requirepass`) and blocked commands
/// (renamed to nothing).
fn redis_cmd(cfg: &RedisConfig, password: &str) -> Vec<String> {
    let maxmemory = cfg.maxmemory_bytes().to_string();
    let mut cmd: Vec<String> = [
        "redis-server",
        "--appendonly",
        "yes",
        "--maxmemory",
        &maxmemory,
        "--maxmemory-policy",
        "volatile-lru",
        "--requirepass",
        password,
    ]
    .map(String::from)
    .into();
    for c in cfg.blocked_commands() {
        cmd.extend(["--rename-command".into(), (*c).into(), String::new()]);
    }
    cmd
}

/// The Redis container of a project: Memorystore's `maxmemory` (the instance size) with
/// `volatile-lru`, as in native mode; `appendonly` keeps the data in the volume. `password`:
/// the project's `requirepass` (also in `REDISCLI_AUTH`, for the healthcheck's `redis-cli`).
pub fn redis_spec(cfg: &RedisConfig, project_dir: &Path, password: &str) -> StoreSpec {
    let project = compose_project(project_dir);
    StoreSpec {
        store: "redis",
        container: format!("{project}-redis"),
        image: cfg
            .image
            .clone()
            .unwrap_or_else(|| format!("redis:{}", cfg.version_or_default())),
        env: BTreeMap::from([("REDISCLI_AUTH".into(), password.into())]),
        cmd: redis_cmd(cfg, password),
        container_port: 6379,
        host_port: cfg.port,
        volume: format!("{project}-redis"),
        mount: "/data",
        labels: labels(&project, "redis"),
        healthcheck: ["CMD", "redis-cli", "ping"].map(String::from).into(),
    }
}

impl StoreSpec {
    fn port_key(&self) -> String {
        format!("{}/tcp", self.container_port)
    }

    fn port_bindings(&self) -> PortMap {
        HashMap::from([(
            self.port_key(),
            Some(vec![PortBinding {
                host_ip: Some("127.0.0.1".into()),
                host_port: Some(self.host_port.map(|p| p.to_string()).unwrap_or_default()),
            }]),
        )])
    }

    fn env_list(&self) -> Vec<String> {
        self.env.iter().map(|(k, v)| format!("{k}={v}")).collect()
    }

    fn create_body(&self) -> ContainerCreateBody {
        ContainerCreateBody {
            image: Some(self.image.clone()),
            cmd: Some(self.cmd.clone()),
            env: Some(self.env_list()),
            labels: Some(self.labels.clone().into_iter().collect()),
            exposed_ports: Some(vec![self.port_key()]),
            healthcheck: Some(HealthConfig {
                test: Some(self.healthcheck.clone()),
                interval: Some(SECOND_NS),
                timeout: Some(3 * SECOND_NS),
                retries: Some(60),
                start_period: Some(5 * SECOND_NS),
                ..Default::default()
            }),
            host_config: Some(HostConfig {
                port_bindings: Some(self.port_bindings()),
                binds: Some(vec![format!("{}:{}", self.volume, self.mount)]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// True when the existing container `c` runs this spec (so the next `emu up` reuses it);
    /// a changed image, tier, size or port makes a new container on the same volume.
    fn matches(&self, c: &bollard::models::ContainerInspectResponse) -> bool {
        let Some(config) = &c.config else {
            return false;
        };
        let env = config.env.clone().unwrap_or_default();
        let bindings = c.host_config.as_ref().and_then(|h| h.port_bindings.clone());
        config.image.as_deref() == Some(self.image.as_str())
            && config.cmd.as_ref() == Some(&self.cmd)
            && self.env_list().iter().all(|e| env.contains(e))
            && bindings == Some(self.port_bindings())
    }
}

/// A store container emu brought up (or reused) for this `emu up`.
pub(crate) struct StoreContainer {
    docker: Docker,
    spec: StoreSpec,
    port: u16,
    url: String,
    status: Value,
    stopped: bool,
}

impl StoreContainer {
    /// Image, volume, container (created or reused), started; returns with the published port.
    async fn up(docker: Docker, spec: StoreSpec) -> Result<Self, BackendError> {
        ensure_image(&docker, &spec).await?;
        docker
            .create_volume(bollard::models::VolumeCreateRequest {
                name: Some(spec.volume.clone()),
                labels: Some(spec.labels.clone().into_iter().collect()),
                ..Default::default()
            })
            .await
            .map_err(|e| engine_error(format!("creating volume {}", spec.volume), e))?;
        crate::watchdog::stop_on_death(&spec.container);
        let running = ensure_container(&docker, &spec).await?;
        if !running {
            docker
                .start_container(&spec.container, None)
                .await
                .map_err(|e| engine_error(format!("starting {}", spec.container), e))?;
        }
        let port = published_port(&docker, &spec).await?;
        tracing::info!(container = %spec.container, image = %spec.image, port, reused = running, "store container up");
        Ok(StoreContainer {
            docker,
            spec,
            port,
            url: String::new(),
            status: Value::Null,
            stopped: false,
        })
    }

    /// The project's PostgreSQL container, answering, with the app role and databases.
    pub(crate) async fn start_postgres(
        cfg: &PostgresConfig,
        project_dir: &Path,
        databases: &[String],
        creds: &Credentials,
    ) -> Result<(String, Self), BackendError> {
        let docker = super::engine().await?;
        let password = creds.postgres_password.as_str();
        let mut store = Self::up(docker, postgres_spec(cfg, project_dir, password)).await?;
        let port = store.port;
        let connect = || async { connect_superuser(port, password).await };
        let mut admin = match store.wait_until_ready(connect).await {
            Ok(c) => c,
            Err(e) => {
                store.stop_container().await;
                return Err(e);
            }
        };
        let setup = async {
            ensure_app_role_and_databases(&mut admin, databases, &creds.app_password).await?;
            sqlx::query_scalar::<_, String>("SHOW server_version")
                .fetch_one(&mut admin)
                .await
        };
        let server_version = match setup.await {
            Ok(v) => v,
            Err(e) => {
                store.stop_container().await;
                return Err(BackendError::Start {
                    what: "PostgreSQL (docker)",
                    detail: format!("creating the app role and databases: {e}"),
                });
            }
        };
        let _ = admin.close().await;
        let app_max = cfg.effective_max_connections();
        store.status = json!({
            "mode": "docker",
            "version": cfg.version_or_default(),
            "server_version": server_version,
            "image": store.spec.image,
            "container": store.spec.container,
            "address": format!("127.0.0.1:{port}"),
            "tier": cfg.tier,
            "max_connections": app_max,
            "server_max_connections": app_max + SUPERUSER_RESERVED_CONNECTIONS,
            "superuser_reserved_connections": SUPERUSER_RESERVED_CONNECTIONS,
            "volume": store.spec.volume,
        });
        store.url = format!(
            "postgres://{APP_USER}:{}@127.0.0.1:{port}/{APP_DATABASE}",
            creds.app_password
        );
        Ok((store.url.clone(), store))
    }

    /// The project's Redis container, answering PING.
    pub(crate) async fn start_redis(
        cfg: &RedisConfig,
        project_dir: &Path,
        creds: &Credentials,
    ) -> Result<(String, Self), BackendError> {
        let docker = super::engine().await?;
        let password = creds.redis_password.as_str();
        let mut store = Self::up(docker, redis_spec(cfg, project_dir, password)).await?;
        let url = format!("redis://:{password}@127.0.0.1:{}", store.port);
        let ping = || async {
            if super::super::native::ping(&url).await {
                Ok(())
            } else {
                Err(format!("no PING answer on {url}"))
            }
        };
        if let Err(e) = store.wait_until_ready(ping).await {
            store.stop_container().await;
            return Err(e);
        }
        store.status = json!({
            "mode": "docker",
            "version": cfg.version_or_default(),
            "image": store.spec.image,
            "container": store.spec.container,
            "address": format!("127.0.0.1:{}", store.port),
            "maxmemory": cfg.maxmemory_bytes(),
            "maxmemory_policy": "volatile-lru",
            "appendonly": true,
            "volume": store.spec.volume,
        });
        store.url.clone_from(&url);
        Ok((url, store))
    }

    /// Polls `attempt` (a real connection) until it succeeds, the container exits, or
    /// [`READY_TIMEOUT`] passes.
    async fn wait_until_ready<T, F, Fut>(&self, attempt: F) -> Result<T, BackendError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, String>>,
    {
        let what = if self.spec.store == "postgres" {
            "PostgreSQL (docker)"
        } else {
            "Redis (docker)"
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let last = match tokio::time::timeout(Duration::from_secs(3), attempt()).await {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) => e,
                Err(_) => "timed out".into(),
            };
            if let Some(exit) = self.exited().await {
                return Err(BackendError::Start {
                    what,
                    detail: format!(
                        "container {} exited ({exit}); `docker logs {}` shows why",
                        self.spec.container, self.spec.container
                    ),
                });
            }
            if Instant::now() >= deadline {
                return Err(BackendError::Start {
                    what,
                    detail: format!(
                        "no answer on 127.0.0.1:{} within {READY_TIMEOUT:?}: {last}",
                        self.port
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// `Some("exit code N")` once the container no longer runs.
    async fn exited(&self) -> Option<String> {
        let c = self
            .docker
            .inspect_container(&self.spec.container, None)
            .await
            .ok()?;
        let state = c.state?;
        (state.running != Some(true))
            .then(|| format!("exit code {}", state.exit_code.unwrap_or_default()))
    }

    async fn stop_container(&mut self) {
        self.stopped = true;
        stop_container(&self.docker, &self.spec.container).await;
    }
}

/// The container's superuser connection with the project's `password`. A volume made before
/// emu generated passwords still has the old fixed one: that one is tried too, and replaced.
async fn connect_superuser(port: u16, password: &str) -> Result<sqlx::PgConnection, String> {
    use sqlx::Executor;
    let opts = |pw: &str| {
        sqlx::postgres::PgConnectOptions::new()
            .host("127.0.0.1")
            .port(port)
            .username("postgres")
            .password(pw)
            .database("postgres")
            .disable_statement_logging()
    };
    let refused = match opts(password).connect().await {
        Ok(c) => return Ok(c),
        Err(e) if super::super::native::wrong_password(&e) => e,
        Err(e) => return Err(e.to_string()),
    };
    let Ok(mut c) = opts(LEGACY_PG_PASSWORD).connect().await else {
        return Err(format!(
            "{refused} (the volume's superuser password is not the one in .emu/credentials.json; put the old file back, or remove the data with `emu down --volumes`)"
        ));
    };
    tracing::info!("setting the project's superuser password on an older postgres volume");
    let sql = format!("ALTER ROLE postgres PASSWORD {}", sql_literal(password));
    c.execute(sql.as_str()).await.map_err(|e| e.to_string())?;
    Ok(c)
}

/// `docker stop -t 10`: SIGTERM (the image's stop signal), SIGKILL after 10 s. Kept, not
/// removed: the next `emu up` reuses it.
pub(super) async fn stop_container(docker: &Docker, name: &str) {
    let opts = StopContainerOptionsBuilder::default()
        .t(STOP_GRACE_SECS)
        .build();
    match docker.stop_container(name, Some(opts)).await {
        Ok(()) => {}
        // 304: already stopped; 404: already gone.
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 304 | 404,
            ..
        }) => {}
        Err(e) => tracing::warn!(container = name, "stopping the container failed: {e}"),
    }
}

/// The image is on the engine, or is pulled (progress in the log); else an error saying what
/// to do.
async fn ensure_image(docker: &Docker, spec: &StoreSpec) -> Result<(), BackendError> {
    match docker.inspect_image(&spec.image).await {
        Ok(_) => return Ok(()),
        Err(e) if not_found(&e) => {}
        Err(e) => return Err(engine_error(format!("inspecting image {}", spec.image), e)),
    }
    tracing::info!(image = %spec.image, "image not on the engine: pulling it");
    eprintln!("emu: pulling {} (not on the Docker engine yet)", spec.image);
    let (name, tag) = match spec.image.rsplit_once(':') {
        Some((n, t)) if !t.contains('/') => (n, t),
        _ => (spec.image.as_str(), "latest"),
    };
    let opts = CreateImageOptionsBuilder::default()
        .from_image(name)
        .tag(tag)
        .build();
    let mut pull = docker.create_image(Some(opts), None, None);
    let mut last_status = String::new();
    while let Some(step) = pull.next().await {
        match step {
            Ok(info) => {
                let status = info.status.unwrap_or_default();
                if status != last_status {
                    eprintln!("emu: pull {}: {status}", spec.image);
                    last_status = status;
                }
            }
            Err(e) => {
                return Err(BackendError::ImageMissing {
                    section: spec.store,
                    image: spec.image.clone(),
                    detail: e.to_string(),
                })
            }
        }
    }
    Ok(())
}

/// Creates the container unless one of that name runs this spec already (then it is reused);
/// one left from another spec is removed first (its volume stays). Returns true when the
/// reused container is running.
async fn ensure_container(docker: &Docker, spec: &StoreSpec) -> Result<bool, BackendError> {
    match docker.inspect_container(&spec.container, None).await {
        Ok(c) if spec.matches(&c) => {
            return Ok(c.state.and_then(|s| s.running).unwrap_or(false));
        }
        Ok(_) => {
            tracing::info!(container = %spec.container, "settings changed: recreating the container (the volume stays)");
            let opts = RemoveContainerOptionsBuilder::default().force(true).build();
            docker
                .remove_container(&spec.container, Some(opts))
                .await
                .map_err(|e| engine_error(format!("removing {}", spec.container), e))?;
        }
        Err(e) if not_found(&e) => {}
        Err(e) => return Err(engine_error(format!("inspecting {}", spec.container), e)),
    }
    let opts = CreateContainerOptionsBuilder::default()
        .name(&spec.container)
        .build();
    docker
        .create_container(Some(opts), spec.create_body())
        .await
        .map_err(|e| engine_error(format!("creating {}", spec.container), e))?;
    Ok(false)
}

/// The loopback port the engine published the store's port on (it picks one when the spec
/// names none).
async fn published_port(docker: &Docker, spec: &StoreSpec) -> Result<u16, BackendError> {
    let c = docker
        .inspect_container(&spec.container, None)
        .await
        .map_err(|e| engine_error(format!("inspecting {}", spec.container), e))?;
    c.network_settings
        .and_then(|n| n.ports)
        .and_then(|mut p| p.remove(&spec.port_key()).flatten())
        .and_then(|b| {
            b.into_iter()
                .find_map(|b| b.host_port.and_then(|p| p.parse().ok()))
        })
        .ok_or_else(|| {
            BackendError::Docker(format!(
                "container {} has no published port for {}",
                spec.container,
                spec.port_key()
            ))
        })
}

impl Running for StoreContainer {
    fn status(&self) -> Value {
        self.status.clone()
    }

    fn ready(&self) -> BoxFuture<'_, bool> {
        if self.spec.store == "postgres" {
            super::super::pg_ready(&self.url).boxed()
        } else {
            super::super::native::ping(&self.url).boxed()
        }
    }

    fn stop(mut self: Box<Self>) -> BoxFuture<'static, ()> {
        async move { self.stop_container().await }.boxed()
    }
}

impl Drop for StoreContainer {
    fn drop(&mut self) {
        if self.stopped {
            return;
        }
        // Fallback when `stop` was never awaited: stop it on a thread of its own, since `Drop`
        // cannot await (and the caller's runtime may be shutting down).
        // A fresh client: the one held here belongs to the caller's runtime.
        let name = self.spec.container.clone();
        std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(async {
                    if let Ok(docker) = super::engine().await {
                        stop_container(&docker, &name).await;
                    }
                });
            }
        });
    }
}

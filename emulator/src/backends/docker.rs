//! Docker: the backing stores as containers (`docker/compose.yaml`, embedded in the binary), and
//! [`DockerInstance`], which runs a service image as one instance.
//!
//! Everything goes through the docker CLI, so emu needs no Docker SDK and works with whatever
//! engine the CLI talks to (Docker Desktop, colima, podman's docker shim).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use serde_json::{json, Value};
use sqlx::{ConnectOptions, Connection};
use tokio::process::Command;
use tokio::time::Instant;

use super::{
    ensure_app_role_and_databases, BackendError, PostgresConfig, RedisConfig, Running,
    APP_DATABASE, APP_PASSWORD, APP_USER, SUPERUSER_RESERVED_CONNECTIONS,
};

/// `docker/compose.yaml`, written to `<project>/.emu/compose.yaml` before each use so emu runs
/// from any folder.
pub const COMPOSE_YAML: &str = include_str!("../../../docker/compose.yaml");

/// Superuser password of the postgres container (loopback only; emu's services use `app`).
const CONTAINER_PG_PASSWORD: &str = "emu";
/// Bound on `docker compose up --wait` (an image pull on first use included).
const UP_TIMEOUT: Duration = Duration::from_secs(300);
/// Bound on short docker commands.
const CMD_TIMEOUT: Duration = Duration::from_secs(60);

/// True when a Docker engine answers (`docker info` succeeds within 5 s).
pub async fn docker_available() -> bool {
    let mut cmd = Command::new("docker");
    cmd.args(["info", "--format", "{{.ServerVersion}}"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    matches!(
        tokio::time::timeout(Duration::from_secs(5), cmd.status()).await,
        Ok(Ok(s)) if s.success()
    )
}

/// Runs `docker <args>` and returns stdout; a failure carries stderr.
pub(crate) async fn docker(
    args: &[&str],
    envs: &[(String, String)],
    timeout: Duration,
) -> Result<String, BackendError> {
    let mut cmd = Command::new("docker");
    cmd.args(args)
        .envs(envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let shown = format!("docker {}", args.join(" "));
    let out = match tokio::time::timeout(timeout, cmd.output()).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => {
            return Err(BackendError::Docker(format!(
                "cannot run `{shown}`: {e}. Install the docker CLI, or use mode = \"native\""
            )))
        }
        Err(_) => {
            return Err(BackendError::Docker(format!(
                "`{shown}` took longer than {timeout:?}"
            )))
        }
    };
    if !out.status.success() {
        return Err(BackendError::Docker(format!(
            "`{shown}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The compose project name for a project folder: `emu-<folder>`, lowercased, so containers are
/// `emu-<folder>-postgres` and `emu-<folder>-redis`.
pub fn compose_project(project_dir: &Path) -> String {
    let abs = std::fs::canonicalize(project_dir).unwrap_or_else(|_| project_dir.to_path_buf());
    let folder: String = abs
        .file_name()
        .map(|f| f.to_string_lossy().to_lowercase())
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let folder = folder.trim_matches('-');
    if folder.is_empty() {
        "emu-project".into()
    } else {
        format!("emu-{folder}")
    }
}

/// The Docker network the compose project's containers share (`<project>_default`): run an
/// instance container on it to reach the stores as `postgres:5432` / `redis:6379`.
pub fn compose_network(project_dir: &Path) -> String {
    format!("{}_default", compose_project(project_dir))
}

/// Writes the embedded compose file to `<project>/.emu/compose.yaml`.
pub(crate) fn write_compose_file(project_dir: &Path) -> Result<PathBuf, BackendError> {
    let dir = project_dir.join(".emu");
    std::fs::create_dir_all(&dir)
        .map_err(|e| BackendError::io(format!("creating {}", dir.display()), e))?;
    let path = dir.join("compose.yaml");
    std::fs::write(&path, COMPOSE_YAML)
        .map_err(|e| BackendError::io(format!("writing {}", path.display()), e))?;
    Ok(path)
}

/// `docker compose -p <project> -f <file> <args>`.
pub(crate) async fn compose(
    project_dir: &Path,
    file: &Path,
    args: &[&str],
    envs: &[(String, String)],
    timeout: Duration,
) -> Result<String, BackendError> {
    let project = compose_project(project_dir);
    let file = file.display().to_string();
    let mut all = vec!["compose", "-p", project.as_str(), "-f", file.as_str()];
    all.extend_from_slice(args);
    let mut envs = envs.to_vec();
    envs.push(("EMU_PROJECT".into(), project.clone()));
    docker(&all, &envs, timeout).await
}

/// One compose service (postgres or redis) that emu brought up.
pub(crate) struct ComposeStore {
    project_dir: PathBuf,
    file: PathBuf,
    service: &'static str,
    envs: Vec<(String, String)>,
    port: u16,
    url: String,
    status: Value,
    stopped: bool,
}

impl ComposeStore {
    async fn up(
        project_dir: &Path,
        service: &'static str,
        container_port: u16,
        envs: Vec<(String, String)>,
    ) -> Result<Self, BackendError> {
        if !docker_available().await {
            return Err(BackendError::Docker(
                "no Docker engine answers (`docker info` failed). Start Docker, or use mode = \"native\" (installed servers) or \"external\"".into(),
            ));
        }
        let file = write_compose_file(project_dir)?;
        tracing::info!(service, project = %compose_project(project_dir), "docker compose up");
        compose(
            project_dir,
            &file,
            &["up", "-d", "--wait", service],
            &envs,
            UP_TIMEOUT,
        )
        .await?;
        let out = compose(
            project_dir,
            &file,
            &["port", service, &container_port.to_string()],
            &envs,
            CMD_TIMEOUT,
        )
        .await?;
        let port = parse_port(&out).ok_or_else(|| {
            BackendError::Docker(format!(
                "cannot read the published port of {service} from {out:?}"
            ))
        })?;
        Ok(ComposeStore {
            project_dir: project_dir.to_path_buf(),
            file,
            service,
            envs,
            port,
            url: String::new(),
            status: Value::Null,
            stopped: false,
        })
    }

    /// `docker compose up --wait postgres`, then the app role and databases.
    pub(crate) async fn start_postgres(
        cfg: &PostgresConfig,
        project_dir: &Path,
        databases: &[String],
    ) -> Result<(String, Self), BackendError> {
        let version = cfg.version_or_default();
        let app_max = cfg.effective_max_connections();
        let envs = vec![
            ("EMU_PG_VERSION".to_string(), version.to_string()),
            (
                "EMU_PG_MAX_CONNECTIONS".to_string(),
                (app_max + SUPERUSER_RESERVED_CONNECTIONS).to_string(),
            ),
            (
                "EMU_PG_PASSWORD".to_string(),
                CONTAINER_PG_PASSWORD.to_string(),
            ),
            (
                "EMU_PG_PORT".to_string(),
                cfg.port.map(|p| p.to_string()).unwrap_or_default(),
            ),
        ];
        let mut store = Self::up(project_dir, "postgres", 5432, envs).await?;
        let port = store.port;
        let opts = sqlx::postgres::PgConnectOptions::new()
            .host("127.0.0.1")
            .port(port)
            .username("postgres")
            .password(CONTAINER_PG_PASSWORD)
            .database("postgres")
            .disable_statement_logging();
        // The healthcheck passed inside the container; the published port may lag a moment.
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut admin = loop {
            match tokio::time::timeout(Duration::from_secs(3), opts.connect()).await {
                Ok(Ok(c)) => break c,
                other if Instant::now() >= deadline => {
                    let detail = match other {
                        Ok(Err(e)) => e.to_string(),
                        _ => "timed out".into(),
                    };
                    store.stop_service().await;
                    return Err(BackendError::Start {
                        what: "PostgreSQL (docker)",
                        detail: format!("connecting to 127.0.0.1:{port}: {detail}"),
                    });
                }
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        if let Err(e) = ensure_app_role_and_databases(&mut admin, databases).await {
            store.stop_service().await;
            return Err(BackendError::Start {
                what: "PostgreSQL (docker)",
                detail: format!("creating the app role and databases: {e}"),
            });
        }
        let _ = admin.close().await;
        store.status = json!({
            "mode": "docker",
            "version": version,
            "image": format!("postgres:{version}"),
            "container": format!("{}-postgres", compose_project(project_dir)),
            "address": format!("127.0.0.1:{port}"),
            "tier": cfg.tier,
            "max_connections": app_max,
            "server_max_connections": app_max + SUPERUSER_RESERVED_CONNECTIONS,
            "superuser_reserved_connections": SUPERUSER_RESERVED_CONNECTIONS,
            "volume": format!("{}-pg{version}", compose_project(project_dir)),
        });
        store.url = format!("postgres://{APP_USER}:{APP_PASSWORD}@127.0.0.1:{port}/{APP_DATABASE}");
        Ok((store.url.clone(), store))
    }

    /// `docker compose up --wait redis`, then PING.
    pub(crate) async fn start_redis(
        cfg: &RedisConfig,
        project_dir: &Path,
    ) -> Result<(String, Self), BackendError> {
        let version = cfg.version_or_default();
        let maxmemory = cfg.maxmemory_bytes();
        let envs = vec![
            ("EMU_REDIS_VERSION".to_string(), version.to_string()),
            ("EMU_REDIS_MAXMEMORY".to_string(), maxmemory.to_string()),
            (
                "EMU_REDIS_PORT".to_string(),
                cfg.port.map(|p| p.to_string()).unwrap_or_default(),
            ),
        ];
        let mut store = Self::up(project_dir, "redis", 6379, envs).await?;
        let url = format!("redis://127.0.0.1:{}", store.port);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !super::native::ping(&url).await {
            if Instant::now() >= deadline {
                store.stop_service().await;
                return Err(BackendError::Start {
                    what: "Redis (docker)",
                    detail: format!("no PING answer on {url}"),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        store.status = json!({
            "mode": "docker",
            "version": version,
            "image": format!("redis:{version}"),
            "container": format!("{}-redis", compose_project(project_dir)),
            "address": format!("127.0.0.1:{}", store.port),
            "maxmemory": maxmemory,
            "maxmemory_policy": "volatile-lru",
            "appendonly": true,
            "volume": format!("{}-redis", compose_project(project_dir)),
        });
        store.url.clone_from(&url);
        Ok((url, store))
    }

    async fn stop_service(&mut self) {
        self.stopped = true;
        if let Err(e) = compose(
            &self.project_dir,
            &self.file,
            &["stop", "-t", "10", self.service],
            &self.envs,
            CMD_TIMEOUT,
        )
        .await
        {
            tracing::warn!(service = self.service, "stopping the container failed: {e}");
        }
    }
}

fn parse_port(out: &str) -> Option<u16> {
    // "127.0.0.1:49153" (maybe several lines, e.g. an IPv6 one too)
    out.lines()
        .find_map(|l| l.trim().rsplit_once(':').and_then(|(_, p)| p.parse().ok()))
}

impl Running for ComposeStore {
    fn status(&self) -> Value {
        self.status.clone()
    }

    fn ready(&self) -> BoxFuture<'_, bool> {
        if self.service == "postgres" {
            super::pg_ready(&self.url).boxed()
        } else {
            super::native::ping(&self.url).boxed()
        }
    }

    fn stop(mut self: Box<Self>) -> BoxFuture<'static, ()> {
        // Stopped, not removed: the next `emu up` reuses the container and its volume.
        async move { self.stop_service().await }.boxed()
    }
}

impl Drop for ComposeStore {
    fn drop(&mut self) {
        if !self.stopped {
            // Fallback when `stop` was never awaited: ask Docker to stop it, without waiting.
            let container = format!("{}-{}", compose_project(&self.project_dir), self.service);
            spawn_detached(&["stop", "-t", "10", &container]);
        }
    }
}

/// Runs a docker command in the background and reaps it on a thread: for `Drop`, which cannot
/// wait.
fn spawn_detached(args: &[&str]) {
    if let Ok(mut child) = std::process::Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        std::thread::spawn(move || {
            let _ = child.wait();
        });
    }
}

/// Extra options for [`DockerInstance::start_with`].
#[derive(Debug, Clone, Default)]
pub struct InstanceOptions {
    /// `--network`: e.g. [`compose_network`] so the instance reaches docker-mode stores by
    /// service name (`postgres:5432`, `redis:6379`).
    pub network: Option<String>,
    /// `--add-host host.docker.internal:host-gateway`, for reaching servers on the host that
    /// listen on more than loopback.
    pub host_gateway: bool,
    /// `--memory` (e.g. "512m") and `--cpus` (e.g. "1"), from the service's limits.
    pub memory: Option<String>,
    pub cpus: Option<String>,
    /// `-v HOST:CONTAINER:ro` read-only mounts (secret files at their declared paths).
    pub mounts: Vec<(std::path::PathBuf, String)>,
    /// `--network host` (Linux): the instance shares the host's network, so loopback URLs of
    /// native backends work unchanged. No port is published; `PORT` is a free host port and
    /// [`DockerInstance::host_port`] returns it.
    pub host_network: bool,
}

/// One service instance running as a container: `docker run -d --rm`, its port published on
/// 127.0.0.1. Stop with [`stop`](Self::stop) (`docker stop -t 10`: SIGTERM, SIGKILL after 10 s,
/// as Cloud Run does); dropping it without `stop` removes the container in the background.
#[derive(Debug)]
pub struct DockerInstance {
    name: String,
    host_port: u16,
    container_port: u16,
    stopped: bool,
}

impl DockerInstance {
    /// Runs `image` as container `name` with `env` (plus `PORT=<container_port>` unless given),
    /// publishing `container_port` on a free loopback port. Returns once the container runs;
    /// readiness of the app inside is the caller's startup probe.
    pub async fn start(
        image: &str,
        env: &[(String, String)],
        container_port: u16,
        name: &str,
    ) -> Result<Self, BackendError> {
        Self::start_with(
            image,
            env,
            container_port,
            name,
            &InstanceOptions::default(),
        )
        .await
    }

    /// [`start`](Self::start) with network, host-gateway and resource options.
    pub async fn start_with(
        image: &str,
        env: &[(String, String)],
        container_port: u16,
        name: &str,
        opts: &InstanceOptions,
    ) -> Result<Self, BackendError> {
        let container_port = if opts.host_network {
            super::native::free_port()?
        } else {
            container_port
        };
        let args = run_args(image, env, container_port, name, opts);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        docker(&args, &[], UP_TIMEOUT).await?;
        let mut instance = DockerInstance {
            name: name.to_string(),
            host_port: 0,
            container_port,
            stopped: false,
        };
        if opts.host_network {
            instance.host_port = container_port;
            return Ok(instance);
        }
        let out = docker(
            &["port", name, &format!("{container_port}/tcp")],
            &[],
            CMD_TIMEOUT,
        )
        .await?;
        match parse_port(&out) {
            Some(p) => instance.host_port = p,
            None => {
                let _ = instance.stop().await;
                return Err(BackendError::Docker(format!(
                    "cannot read the published port of container {name} from {out:?}"
                )));
            }
        }
        Ok(instance)
    }

    /// The loopback port the instance answers on.
    pub fn host_port(&self) -> u16 {
        self.host_port
    }

    /// The port inside the container (`PORT`).
    pub fn container_port(&self) -> u16 {
        self.container_port
    }

    /// The container's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// True while the container runs.
    pub async fn is_running(&self) -> bool {
        docker(
            &["inspect", "-f", "{{.State.Running}}", &self.name],
            &[],
            CMD_TIMEOUT,
        )
        .await
        .is_ok_and(|o| o.trim() == "true")
    }

    /// `docker stop -t 10`: SIGTERM, SIGKILL after 10 s. `--rm` then removes the container.
    pub async fn stop(mut self) -> Result<(), BackendError> {
        self.stopped = true;
        match docker(
            &["stop", "-t", "10", &self.name],
            &[],
            Duration::from_secs(30),
        )
        .await
        {
            Ok(_) => Ok(()),
            // Already gone (exited and removed by --rm) is what we wanted.
            Err(BackendError::Docker(m)) if m.contains("No such container") => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl Drop for DockerInstance {
    fn drop(&mut self) {
        if !self.stopped {
            spawn_detached(&["rm", "-f", &self.name]);
        }
    }
}

/// The `docker run` arguments for an instance (separate so tests can check them without Docker).
pub fn run_args(
    image: &str,
    env: &[(String, String)],
    container_port: u16,
    name: &str,
    opts: &InstanceOptions,
) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "run".into(),
        "-d".into(),
        "--rm".into(),
        "--name".into(),
        name.into(),
    ];
    if opts.host_network {
        args.push("--network".into());
        args.push("host".into());
    } else {
        args.push("-p".into());
        args.push(format!("127.0.0.1::{container_port}"));
    }
    if !env.iter().any(|(k, _)| k == "PORT") {
        args.push("-e".into());
        args.push(format!("PORT={container_port}"));
    }
    for (k, v) in env {
        args.push("-e".into());
        args.push(format!("{k}={v}"));
    }
    if let Some(n) = opts.network.as_ref().filter(|_| !opts.host_network) {
        args.push("--network".into());
        args.push(n.clone());
    }
    for (host, container) in &opts.mounts {
        args.push("-v".into());
        args.push(format!("{}:{container}:ro", host.display()));
    }
    if opts.host_gateway {
        args.push("--add-host".into());
        args.push("host.docker.internal:host-gateway".into());
    }
    if let Some(m) = &opts.memory {
        args.push("--memory".into());
        args.push(m.clone());
    }
    if let Some(c) = &opts.cpus {
        args.push("--cpus".into());
        args.push(c.clone());
    }
    args.push(image.into());
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_names() {
        assert_eq!(compose_project(Path::new("/x/My App")), "emu-my-app");
        assert_eq!(parse_port("127.0.0.1:49153\n"), Some(49153));
        assert_eq!(parse_port("[::]:1\n"), Some(1));
    }

    #[test]
    fn run_arguments() {
        let a = run_args(
            "img:1",
            &[("K_SERVICE".into(), "api".into())],
            8080,
            "emu-api-1",
            &InstanceOptions::default(),
        );
        assert_eq!(
            a.join(" "),
            "run -d --rm --name emu-api-1 -p 127.0.0.1::8080 -e PORT=8080 -e K_SERVICE=api img:1"
        );
        let host = run_args(
            "img:1",
            &[],
            41000,
            "emu-api-2",
            &InstanceOptions {
                host_network: true,
                ..Default::default()
            },
        );
        assert_eq!(
            host.join(" "),
            "run -d --rm --name emu-api-2 --network host -e PORT=41000 img:1"
        );
    }
}

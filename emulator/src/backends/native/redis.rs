//! Redis from the installed `redis-server`: `redis.conf` rewritten at each start under
//! `.emu/redis` (Memorystore's blocked commands renamed away, `maxmemory` from `size_gb`), the
//! append-only file kept between runs.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use nix::sys::signal::Signal;
use serde_json::{json, Value};
use tokio::process::Command;
use tokio::time::Instant;

use super::super::{BackendError, Credentials, RedisConfig, Running};
use super::{
    create_dir, free_port, log_tail, open_log, path_dirs, process_alive, process_name,
    ServerProcess, SpawnError, PORT_ATTEMPTS, READY_TIMEOUT, REDIS_INSTALL_HINT,
};

/// The `redis-server` binary: PATH first, then the usual places.
pub(crate) fn find_redis() -> Option<PathBuf> {
    path_dirs()
        .into_iter()
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/local/bin")])
        .map(|d| d.join("redis-server"))
        .find(|p| p.is_file())
}

/// A Redis server emu runs from the installed `redis-server`.
pub(crate) struct NativeRedis {
    process: ServerProcess,
    port: u16,
    version: String,
    requested: u32,
    dir: PathBuf,
    maxmemory: u64,
    blocked: &'static [&'static str],
    /// With the password: for the health check.
    url: String,
}

impl NativeRedis {
    /// Writes `redis.conf` (with `requirepass`, as Memorystore's AUTH), starts the server and
    /// waits for PING. Returns the URL (carrying the password) and the server.
    pub(crate) async fn start(
        cfg: &RedisConfig,
        project_dir: &Path,
        creds: &Credentials,
    ) -> Result<(String, Self), BackendError> {
        let password = creds.redis_password.as_str();
        let Some(bin) = find_redis() else {
            return Err(BackendError::NotInstalled {
                what: "Redis",
                hint: format!("{REDIS_INSTALL_HINT}."),
            });
        };
        let requested = cfg.version_or_default();
        let version = redis_version(&bin)
            .await
            .unwrap_or_else(|| "unknown".into());
        if version
            .split('.')
            .next()
            .and_then(|m| m.parse::<u32>().ok())
            != Some(requested)
        {
            tracing::warn!(
                "redis.version asks for Redis {requested}; using the installed redis-server {version}. Docker mode runs the version asked for"
            );
        }
        let dir = project_dir.join(".emu").join("redis");
        create_dir(&dir)?;
        let dir = fs::canonicalize(&dir)
            .map_err(|e| BackendError::io(format!("resolving {}", dir.display()), e))?;
        let maxmemory = cfg.maxmemory_bytes();
        let blocked = cfg.blocked_commands();
        recover_stale_redis_pid(&dir)?;
        let mut attempt = 0;
        let (port, process) = loop {
            attempt += 1;
            let port = match cfg.port {
                Some(p) => p,
                None => free_port()?,
            };
            match spawn_redis(&bin, &dir, port, maxmemory, blocked, password).await {
                Ok(process) => break (port, process),
                Err(SpawnError::PortTaken) if cfg.port.is_none() && attempt < PORT_ATTEMPTS => {}
                Err(SpawnError::PortTaken) => {
                    return Err(BackendError::Start {
                        what: "Redis",
                        detail: format!("port {port} on 127.0.0.1 is in use (another server answers there); set redis.port to a free port or remove it to get one"),
                    })
                }
                Err(SpawnError::Failed(e)) => return Err(e),
            }
        };
        tracing::info!(port, dir = %dir.display(), "redis ready");
        let url = redis_url(password, port);
        let server = NativeRedis {
            process,
            port,
            version,
            requested,
            dir,
            maxmemory,
            blocked,
            url: url.clone(),
        };
        Ok((url, server))
    }
}

/// The URL of emu's Redis on `port`, with its password (the user name stays empty: `default`).
fn redis_url(password: &str, port: u16) -> String {
    format!("redis://:{password}@127.0.0.1:{port}")
}

/// Writes `redis.conf` for `port`, starts the server and waits until it answers PING as itself.
async fn spawn_redis(
    bin: &Path,
    dir: &Path,
    port: u16,
    maxmemory: u64,
    blocked: &[&str],
    password: &str,
) -> Result<ServerProcess, SpawnError> {
    let log = dir.join("redis.log");
    let conf = dir.join("redis.conf");
    write_private(&conf, &redis_conf(dir, port, maxmemory, blocked, password))?;
    let (out, err) = open_log(&log)?;
    let log_start = fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    let mut cmd = Command::new(bin);
    cmd.arg(&conf)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    let mut process = ServerProcess::spawn("redis-server", cmd, None)?;
    let url = redis_url(password, port);
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Some(status) = process.exited() {
            process.child = None;
            let tail = fs::read_to_string(&log)
                .map(|t| {
                    t.get(usize::try_from(log_start).unwrap_or(0)..)
                        .unwrap_or("")
                        .to_string()
                })
                .unwrap_or_default();
            if tail.contains("already in use") {
                return Err(SpawnError::PortTaken);
            }
            return Err(SpawnError::Failed(BackendError::Start {
                what: "Redis",
                detail: format!(
                    "redis-server exited ({status}); its log ({}) ends with:\n{}",
                    log.display(),
                    log_tail(&log, 15)
                ),
            }));
        }
        if ping(&url).await {
            if redis_pid(&url).await == Some(process.pid) {
                return Ok(process);
            }
            // Another server won a race for the port.
            process.stop(Signal::SIGTERM).await;
            return Err(SpawnError::PortTaken);
        }
        if Instant::now() >= deadline {
            process.stop(Signal::SIGTERM).await;
            return Err(SpawnError::Failed(BackendError::Start {
                what: "Redis",
                detail: format!(
                    "no answer on 127.0.0.1:{port} within {READY_TIMEOUT:?}; see {}",
                    log.display()
                ),
            }));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Writes `path` readable by its owner only (it holds the password): a new file is created
/// 0600, and an older one (from before passwords) is made so before the password goes in.
fn write_private(path: &Path, text: &str) -> Result<(), BackendError> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let err = |e| BackendError::io(format!("writing {}", path.display()), e);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(err)?;
    f.set_permissions(fs::Permissions::from_mode(0o600))
        .map_err(err)?;
    f.write_all(text.as_bytes()).map_err(err)
}

fn redis_conf(dir: &Path, port: u16, maxmemory: u64, blocked: &[&str], password: &str) -> String {
    let quoted = dir
        .display()
        .to_string()
        .replace('\\', "\\\\")
        .replace('"', "\\\"");
    let mut conf = format!(
        "# Written by emu at every start; edits are lost.\n\
         bind 127.0.0.1\n\
         port {port}\n\
         protected-mode yes\n\
         daemonize no\n\
         dir \"{quoted}\"\n\
         appendonly yes\n\
         appendfsync everysec\n\
         save \"\"\n\
         databases 16\n\
         maxmemory {maxmemory}\n\
         maxmemory-policy volatile-lru\n\
         logfile \"\"\n\
         pidfile \"{quoted}/redis.pid\"\n\
         requirepass \"{password}\"\n"
    );
    for c in blocked {
        conf.push_str(&format!("rename-command {c} \"\"\n"));
    }
    conf
}

/// Two servers on one append-only file would corrupt it: refuse when a live redis-server holds
/// `redis.pid`; remove the file when it is stale.
fn recover_stale_redis_pid(dir: &Path) -> Result<(), BackendError> {
    let pid_file = dir.join("redis.pid");
    let Ok(text) = fs::read_to_string(&pid_file) else {
        return Ok(());
    };
    if let Some(pid) = text.trim().parse::<i32>().ok().filter(|p| *p > 0) {
        if process_alive(pid) && process_name(pid).is_some_and(|n| n.starts_with("redis-server")) {
            return Err(BackendError::Start {
                what: "Redis",
                detail: format!(
                    "a redis-server (pid {pid}) is already running on {}: is another `emu up` running for this project? Stop it first (emu down)",
                    dir.display()
                ),
            });
        }
    }
    tracing::warn!(
        "removing a stale {} left by a run that did not stop cleanly",
        pid_file.display()
    );
    fs::remove_file(&pid_file)
        .map_err(|e| BackendError::io(format!("removing the stale {}", pid_file.display()), e))
}

async fn redis_version(bin: &Path) -> Option<String> {
    let out = Command::new(bin).arg("--version").output().await.ok()?;
    // "Redis server v=7.0.15 sha=..."
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .find_map(|w| w.strip_prefix("v="))
        .map(str::to_string)
}

/// The pid a Redis server reports (`INFO server` → `process_id`).
async fn redis_pid(url: &str) -> Option<u32> {
    let client = redis::Client::open(url).ok()?;
    let cfg = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Duration::from_secs(1))
        .set_response_timeout(Duration::from_secs(1));
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&cfg)
        .await
        .ok()?;
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut conn)
        .await
        .ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .and_then(|v| v.trim().parse().ok())
}

/// True when the Redis at `url` answers PING within a second.
pub(crate) async fn ping(url: &str) -> bool {
    let Ok(client) = redis::Client::open(url) else {
        return false;
    };
    let cfg = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Duration::from_secs(1))
        .set_response_timeout(Duration::from_secs(1));
    let Ok(mut conn) = client
        .get_multiplexed_async_connection_with_config(&cfg)
        .await
    else {
        return false;
    };
    redis::cmd("PING")
        .query_async::<String>(&mut conn)
        .await
        .is_ok()
}

impl Running for NativeRedis {
    fn status(&self) -> Value {
        json!({
            "mode": "native",
            "version": self.version,
            "requested_version": self.requested,
            "address": format!("127.0.0.1:{}", self.port),
            "pid": self.process.pid,
            "maxmemory": self.maxmemory,
            "maxmemory_policy": "volatile-lru",
            "appendonly": true,
            "blocked_commands": self.blocked,
            "data_dir": self.dir.display().to_string(),
        })
    }

    fn ready(&self) -> BoxFuture<'_, bool> {
        async move { ping(&self.url).await }.boxed()
    }

    fn stop(mut self: Box<Self>) -> BoxFuture<'static, ()> {
        // SIGTERM makes Redis fsync the append-only file and exit.
        async move { self.process.stop(Signal::SIGTERM).await }.boxed()
    }
}

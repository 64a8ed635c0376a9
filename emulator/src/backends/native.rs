//! Native mode: the installed `postgres` and `redis-server` run as emu's own child processes.
//!
//! Both run in the foreground as direct children, hardened by [`crate::proc::harden`] (own
//! process group, SIGKILL when emu dies), so nothing outlives emu. Data stays between runs:
//!
//! - PostgreSQL: a cluster initialised once (initdb, trust auth, loopback only) under
//!   `<project>/.emu/postgres/data`. PostgreSQL refuses to run as root, so when emu is root the
//!   cluster belongs to the `postgres` system user and the server runs as that user. If that
//!   user cannot reach the project folder (e.g. a project under `/root` or a 0700 temp dir), the
//!   cluster lives in `/var/lib/emu/postgres/<folder>-<hash>/` instead and
//!   `.emu/postgres/location` names it (`emu down --volumes` removes it too).
//! - Redis: `<project>/.emu/redis/` holds `redis.conf` (rewritten each start) and the
//!   append-only file.
//!
//! Ports are free loopback ports unless the config fixes one.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use nix::sys::signal::Signal;
use serde_json::{json, Value};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};
use tokio::process::{Child, Command};
use tokio::time::Instant;

use super::{
    ensure_app_role_and_databases, BackendError, PostgresConfig, RedisConfig, Running,
    APP_DATABASE, APP_PASSWORD, APP_USER, SUPERUSER_RESERVED_CONNECTIONS,
};
use crate::proc::{self, Hardening};

pub(crate) const POSTGRES_INSTALL_HINT: &str =
    "install it (Debian/Ubuntu: apt-get install postgresql) or start a Docker engine, or set [postgres] mode = \"external\" with a url";
pub(crate) const REDIS_INSTALL_HINT: &str =
    "install it (Debian/Ubuntu: apt-get install redis-server) or start a Docker engine, or set [redis] mode = \"external\" with a url";

/// How long a server may take to answer after it was spawned.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a graceful stop may take before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(15);
/// Ports tried when an automatically chosen port was taken in the meantime.
const PORT_ATTEMPTS: u32 = 3;

/// One installed PostgreSQL: the folder holding `postgres` and `initdb`, and its major version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PgBinaries {
    pub dir: PathBuf,
    pub major: u32,
}

/// Installed PostgreSQL versions, newest first: Debian's `/usr/lib/postgresql/<N>/bin`, then
/// any `postgres` on PATH that has `initdb` beside it.
pub(crate) async fn find_postgres() -> Vec<PgBinaries> {
    let mut found: Vec<PgBinaries> = Vec::new();
    if let Ok(entries) = fs::read_dir("/usr/lib/postgresql") {
        for e in entries.flatten() {
            let Ok(major) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let dir = e.path().join("bin");
            if dir.join("postgres").is_file() && dir.join("initdb").is_file() {
                found.push(PgBinaries { dir, major });
            }
        }
    }
    for dir in path_dirs() {
        let Ok(bin) = fs::canonicalize(dir.join("postgres")) else {
            continue;
        };
        let Some(dir) = bin.parent().map(Path::to_path_buf) else {
            continue;
        };
        if !dir.join("initdb").is_file() || found.iter().any(|b| b.dir == dir) {
            continue;
        }
        if let Some(major) = postgres_major(&bin).await {
            found.push(PgBinaries { dir, major });
        }
    }
    found.sort_by_key(|b| std::cmp::Reverse(b.major));
    found
}

fn path_dirs() -> Vec<PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default()
}

async fn postgres_major(bin: &Path) -> Option<u32> {
    let out = Command::new(bin).arg("--version").output().await.ok()?;
    // "postgres (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)"
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text.split_whitespace().nth(2)?;
    version.split('.').next()?.parse().ok()
}

/// The `redis-server` binary: PATH first, then the usual places.
pub(crate) fn find_redis() -> Option<PathBuf> {
    path_dirs()
        .into_iter()
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/local/bin")])
        .map(|d| d.join("redis-server"))
        .find(|p| p.is_file())
}

/// A free loopback port, found by binding port 0. Another process may take it before the server
/// binds it; callers retry on "address in use".
pub(crate) fn free_port() -> Result<u16, BackendError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| BackendError::io("finding a free port on 127.0.0.1", e))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| BackendError::io("finding a free port on 127.0.0.1", e))
}

/// A hardened child server process. `stop` is the graceful path; `Drop` SIGKILLs its group.
struct ServerProcess {
    name: &'static str,
    child: Option<Child>,
    pid: u32,
}

impl ServerProcess {
    fn spawn(
        name: &'static str,
        mut cmd: Command,
        run_as: Option<(u32, u32)>,
    ) -> Result<Self, BackendError> {
        proc::harden(&mut cmd, Hardening { run_as });
        let child = cmd
            .spawn()
            .map_err(|e| BackendError::io(format!("starting {name}"), e))?;
        let pid = child.id().unwrap_or(0);
        Ok(ServerProcess {
            name,
            child: Some(child),
            pid,
        })
    }

    /// The exit status if the server has already exited.
    fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Sends `signal` to the server, waits up to `grace`, then SIGKILLs its process group.
    async fn stop(&mut self, signal: Signal) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if child.try_wait().ok().flatten().is_none() {
            if let Ok(pid) = i32::try_from(self.pid) {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
            }
            match tokio::time::timeout(STOP_GRACE, child.wait()).await {
                Ok(_) => tracing::info!(server = self.name, pid = self.pid, "stopped"),
                Err(_) => {
                    tracing::warn!(
                        server = self.name,
                        pid = self.pid,
                        "did not stop within {STOP_GRACE:?}; killing it"
                    );
                    let _ = proc::signal_group(self.pid, Signal::SIGKILL);
                    let _ = child.wait().await;
                }
            }
        } else {
            // Already gone (crashed or killed): make sure none of its children linger.
            let _ = proc::signal_group(self.pid, Signal::SIGKILL);
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if self.child.is_some() {
            // Fallback when `stop` was never awaited: nothing may outlive emu. Both servers are
            // crash-safe (WAL, AOF), so the next start recovers.
            let _ = proc::signal_group(self.pid, Signal::SIGKILL);
        }
    }
}

/// Reads the last lines of a log file, for error messages.
fn log_tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    all[start..].join("\n")
}

fn open_log(path: &Path) -> Result<(Stdio, Stdio), BackendError> {
    let f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| BackendError::io(format!("opening {}", path.display()), e))?;
    let f2 = f
        .try_clone()
        .map_err(|e| BackendError::io(format!("opening {}", path.display()), e))?;
    Ok((Stdio::from(f), Stdio::from(f2)))
}

fn create_dir(path: &Path) -> Result<(), BackendError> {
    fs::create_dir_all(path)
        .map_err(|e| BackendError::io(format!("creating {}", path.display()), e))
}

// ---------------------------------------------------------------- PostgreSQL

/// A PostgreSQL server emu runs from the installed binaries.
pub(crate) struct NativePostgres {
    process: ServerProcess,
    port: u16,
    major: u32,
    requested: u32,
    data_dir: PathBuf,
    log: PathBuf,
    app_max_connections: u32,
    tier: Option<String>,
}

impl NativePostgres {
    /// Initialises the cluster if needed, starts the server and waits until it answers, then
    /// creates the `app` role and the databases. Returns the app's URL and the server.
    pub(crate) async fn start(
        cfg: &PostgresConfig,
        project_dir: &Path,
        databases: &[String],
    ) -> Result<(String, Self), BackendError> {
        let installed = find_postgres().await;
        if installed.is_empty() {
            return Err(BackendError::NotInstalled {
                what: "PostgreSQL",
                hint: format!("{POSTGRES_INSTALL_HINT}."),
            });
        }
        let requested = cfg.version_or_default();
        let run_as = if proc::is_root() {
            Some(proc::system_user("postgres").ok_or_else(|| BackendError::NotInstalled {
                what: "the `postgres` system user (PostgreSQL refuses to run as root)",
                hint: "Create it (useradd --system --user-group postgres; the postgresql package does this) or run emu as a normal user.".into(),
            })?)
        } else {
            None
        };
        let base = project_dir.join(".emu").join("postgres");
        create_dir(&base)?;
        let cluster_root = cluster_root(project_dir, &base, run_as)?;
        let data_dir = cluster_root.join("data");
        let log = base.join("postgres.log");

        // The cluster's own version wins: a data directory only opens with its major version.
        let existing_major = fs::read_to_string(data_dir.join("PG_VERSION"))
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok());
        let bins = match existing_major {
            Some(m) => installed.iter().find(|b| b.major == m).cloned().ok_or_else(|| {
                BackendError::Start {
                    what: "PostgreSQL",
                    detail: format!(
                        "the data in {} was created by PostgreSQL {m}, which is not installed (installed: {}). Install PostgreSQL {m}, or remove the data with `emu down --volumes`",
                        data_dir.display(),
                        majors(&installed)
                    ),
                }
            })?,
            None => installed
                .iter()
                .find(|b| b.major == requested)
                .unwrap_or(&installed[0])
                .clone(),
        };
        if bins.major != requested {
            tracing::warn!(
                "postgres.version asks for PostgreSQL {requested}; using the installed PostgreSQL {} (installed: {}). Docker mode runs any of 14, 15, 16",
                bins.major,
                majors(&installed)
            );
        }

        if existing_major.is_none() {
            initdb(&bins, &cluster_root, &data_dir, &log, run_as).await?;
        }
        recover_stale_pid(&data_dir)?;

        let app_max = cfg.effective_max_connections();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = match cfg.port {
                Some(p) => p,
                None => free_port()?,
            };
            match spawn_postgres(&bins, &cluster_root, &data_dir, &log, port, app_max, run_as).await {
                Ok(process) => {
                    let server = NativePostgres {
                        process,
                        port,
                        major: bins.major,
                        requested,
                        data_dir: data_dir.clone(),
                        log: log.clone(),
                        app_max_connections: app_max,
                        tier: cfg.tier.clone(),
                    };
                    let mut admin = admin_connect(port).await.map_err(|e| BackendError::Start {
                        what: "PostgreSQL",
                        detail: format!("connecting as the superuser: {e}"),
                    })?;
                    ensure_app_role_and_databases(&mut admin, databases)
                        .await
                        .map_err(|e| BackendError::Start {
                            what: "PostgreSQL",
                            detail: format!("creating the app role and databases: {e}"),
                        })?;
                    let _ = admin.close().await;
                    let url = format!(
                        "postgres://{APP_USER}:{APP_PASSWORD}@127.0.0.1:{port}/{APP_DATABASE}"
                    );
                    tracing::info!(port, version = bins.major, data = %data_dir.display(), "postgres ready");
                    return Ok((url, server));
                }
                Err(SpawnError::PortTaken) if cfg.port.is_none() && attempt < PORT_ATTEMPTS => {
                    continue
                }
                Err(SpawnError::PortTaken) => {
                    return Err(BackendError::Start {
                        what: "PostgreSQL",
                        detail: format!(
                            "port {port} on 127.0.0.1 is in use; set postgres.port to a free port or remove it to get one"
                        ),
                    })
                }
                Err(SpawnError::Failed(e)) => return Err(e),
            }
        }
    }
}

fn majors(installed: &[PgBinaries]) -> String {
    installed
        .iter()
        .map(|b| b.major.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Where the cluster lives: `.emu/postgres` when the server's user can reach it, else (root
/// only) a folder under `/var/lib/emu/postgres` recorded in `.emu/postgres/location`.
fn cluster_root(
    project_dir: &Path,
    base: &Path,
    run_as: Option<(u32, u32)>,
) -> Result<PathBuf, BackendError> {
    let location_file = base.join("location");
    let recorded = fs::read_to_string(&location_file)
        .ok()
        .map(|t| PathBuf::from(t.trim()));
    let Some((uid, gid)) = run_as else {
        // Not root: the server runs as us. A cluster an earlier root run put elsewhere is still
        // this project's data.
        return Ok(recorded.unwrap_or_else(|| base.to_path_buf()));
    };
    let root = if let Some(recorded) = recorded {
        recorded
    } else if reachable_by(base, uid, gid) {
        base.to_path_buf()
    } else {
        let abs = fs::canonicalize(project_dir).unwrap_or_else(|_| project_dir.to_path_buf());
        let folder: String = abs
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_else(|| "project".into())
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let hash = fnv1a(abs.to_string_lossy().as_bytes());
        let parent = PathBuf::from("/var/lib/emu/postgres");
        create_dir(&parent)?;
        let _ = fs::set_permissions("/var/lib/emu", fs::Permissions::from_mode(0o755));
        let _ = fs::set_permissions(&parent, fs::Permissions::from_mode(0o755));
        let root = parent.join(format!("{folder}-{hash:016x}"));
        fs::write(&location_file, format!("{}\n", root.display()))
            .map_err(|e| BackendError::io(format!("writing {}", location_file.display()), e))?;
        tracing::info!(
            "the postgres user cannot reach {}; keeping this project's PostgreSQL data in {}",
            base.display(),
            root.display()
        );
        root
    };
    create_dir(&root)?;
    std::os::unix::fs::chown(&root, Some(uid), Some(gid)).map_err(|e| {
        BackendError::io(format!("giving {} to the postgres user", root.display()), e)
    })?;
    fs::set_permissions(&root, fs::Permissions::from_mode(0o700))
        .map_err(|e| BackendError::io(format!("setting permissions on {}", root.display()), e))?;
    Ok(root)
}

/// True when (uid, gid) may search every folder from `/` down to `dir`'s parent (and `dir`
/// itself exists or can be made theirs).
fn reachable_by(dir: &Path, uid: u32, gid: u32) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(abs) = fs::canonicalize(dir) else {
        return false;
    };
    abs.ancestors().skip(1).all(|a| {
        let Ok(m) = fs::metadata(a) else {
            return false;
        };
        let mode = m.mode();
        mode & 0o001 != 0
            || (m.gid() == gid && mode & 0o010 != 0)
            || (m.uid() == uid && mode & 0o100 != 0)
    })
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Creates the cluster in a scratch folder and renames it into place, so a run killed during
/// initdb never leaves a half-made cluster behind.
async fn initdb(
    bins: &PgBinaries,
    cluster_root: &Path,
    data_dir: &Path,
    log: &Path,
    run_as: Option<(u32, u32)>,
) -> Result<(), BackendError> {
    let scratch = cluster_root.join("data.initdb");
    for d in [&scratch, &data_dir.to_path_buf()] {
        if d.exists() {
            fs::remove_dir_all(d).map_err(|e| {
                BackendError::io(format!("removing the unfinished {}", d.display()), e)
            })?;
        }
    }
    tracing::info!(
        version = bins.major,
        "initialising a PostgreSQL cluster in {}",
        data_dir.display()
    );
    let mut cmd = Command::new(bins.dir.join("initdb"));
    cmd.arg("-D")
        .arg(&scratch)
        .args([
            "--username=postgres",
            "--auth-local=trust",
            "--auth-host=trust",
            "--encoding=UTF8",
            "--no-locale",
        ])
        .current_dir(cluster_root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    proc::harden(&mut cmd, Hardening { run_as });
    let out = cmd
        .output()
        .await
        .map_err(|e| BackendError::io("running initdb", e))?;
    let _ = fs::write(log, [out.stdout.as_slice(), out.stderr.as_slice()].concat());
    if !out.status.success() {
        return Err(BackendError::Start {
            what: "PostgreSQL",
            detail: format!(
                "initdb failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    fs::rename(&scratch, data_dir).map_err(|e| {
        BackendError::io(
            format!("moving the new cluster to {}", data_dir.display()),
            e,
        )
    })
}

/// A `postmaster.pid` left by a killed run: removed unless a live PostgreSQL holds it.
fn recover_stale_pid(data_dir: &Path) -> Result<(), BackendError> {
    let pid_file = data_dir.join("postmaster.pid");
    let Ok(text) = fs::read_to_string(&pid_file) else {
        return Ok(());
    };
    let pid = text
        .lines()
        .next()
        .and_then(|l| l.trim().parse::<i32>().ok());
    if let Some(pid) = pid.filter(|p| *p > 0) {
        if process_alive(pid)
            && process_name(pid).is_some_and(|n| n == "postgres" || n == "postmaster")
        {
            return Err(BackendError::Start {
                what: "PostgreSQL",
                detail: format!(
                    "a PostgreSQL server (pid {pid}) is already running on {}: is another `emu up` running for this project? Stop it first (emu down)",
                    data_dir.display()
                ),
            });
        }
    }
    tracing::warn!(
        "removing a stale {} (pid {}) left by a run that did not stop cleanly",
        pid_file.display(),
        pid.map_or_else(|| "unreadable".to_string(), |p| p.to_string())
    );
    fs::remove_file(&pid_file)
        .map_err(|e| BackendError::io(format!("removing the stale {}", pid_file.display()), e))
}

/// True when `pid` is a live process (not a zombie waiting to be reaped).
pub(crate) fn process_alive(pid: i32) -> bool {
    if nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err() {
        return false;
    }
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // "pid (comm) S ...": the state follows the last ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_none_or(|state| state != "Z" && state != "X"),
        Err(_) => true,
    }
}

fn process_name(pid: i32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_string())
}

enum SpawnError {
    PortTaken,
    Failed(BackendError),
}

impl From<BackendError> for SpawnError {
    fn from(e: BackendError) -> Self {
        SpawnError::Failed(e)
    }
}

async fn spawn_postgres(
    bins: &PgBinaries,
    cluster_root: &Path,
    data_dir: &Path,
    log: &Path,
    port: u16,
    app_max: u32,
    run_as: Option<(u32, u32)>,
) -> Result<ServerProcess, SpawnError> {
    let (out, err) = open_log(log)?;
    let log_start = fs::metadata(log).map(|m| m.len()).unwrap_or(0);
    let server_max = app_max + SUPERUSER_RESERVED_CONNECTIONS;
    let mut cmd = Command::new(bins.dir.join("postgres"));
    cmd.arg("-D")
        .arg(data_dir)
        .args(["-c", "listen_addresses=127.0.0.1"])
        .args(["-c", &format!("port={port}")])
        // TCP only: no socket in /var/run/postgresql beside the system server's.
        .args(["-c", "unix_socket_directories="])
        .args(["-c", &format!("max_connections={server_max}")])
        .args([
            "-c",
            &format!("superuser_reserved_connections={SUPERUSER_RESERVED_CONNECTIONS}"),
        ])
        .current_dir(cluster_root)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    let mut process = ServerProcess::spawn("postgres", cmd, run_as)?;
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Some(status) = process.exited() {
            process.child = None;
            let tail = fs::read_to_string(log)
                .map(|t| {
                    t.get(usize::try_from(log_start).unwrap_or(0)..)
                        .unwrap_or("")
                        .to_string()
                })
                .unwrap_or_default();
            if tail.contains("could not bind") || tail.contains("already in use") {
                return Err(SpawnError::PortTaken);
            }
            return Err(SpawnError::Failed(BackendError::Start {
                what: "PostgreSQL",
                detail: format!(
                    "the server exited ({status}); its log ({}) ends with:\n{}",
                    log.display(),
                    log_tail(log, 15)
                ),
            }));
        }
        if let Ok(mut c) = admin_connect(port).await {
            // Make sure the server answering is ours, not one that won a race for the port.
            let dir: Result<String, _> =
                sqlx::query_scalar("SELECT current_setting('data_directory')")
                    .fetch_one(&mut c)
                    .await;
            let _ = c.close().await;
            let ours = dir.is_ok_and(|d| same_path(Path::new(&d), data_dir));
            if ours {
                return Ok(process);
            }
            tracing::warn!(
                port,
                "another PostgreSQL answers on the port chosen; trying another"
            );
            process.stop(Signal::SIGINT).await;
            return Err(SpawnError::PortTaken);
        }
        if Instant::now() >= deadline {
            process.stop(Signal::SIGINT).await;
            return Err(SpawnError::Failed(BackendError::Start {
                what: "PostgreSQL",
                detail: format!(
                    "no answer on 127.0.0.1:{port} within {READY_TIMEOUT:?}; see {}",
                    log.display()
                ),
            }));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn admin_connect(port: u16) -> Result<sqlx::PgConnection, sqlx::Error> {
    let opts = PgConnectOptions::new()
        .host("127.0.0.1")
        .port(port)
        .username("postgres")
        .database("postgres")
        .disable_statement_logging();
    match tokio::time::timeout(Duration::from_secs(2), opts.connect()).await {
        Ok(r) => r,
        Err(_) => Err(sqlx::Error::PoolTimedOut),
    }
}

impl Running for NativePostgres {
    fn status(&self) -> Value {
        json!({
            "mode": "native",
            "version": self.major,
            "requested_version": self.requested,
            "address": format!("127.0.0.1:{}", self.port),
            "pid": self.process.pid,
            "tier": self.tier,
            "max_connections": self.app_max_connections,
            "server_max_connections": self.app_max_connections + SUPERUSER_RESERVED_CONNECTIONS,
            "superuser_reserved_connections": SUPERUSER_RESERVED_CONNECTIONS,
            "data_dir": self.data_dir.display().to_string(),
            "log": self.log.display().to_string(),
        })
    }

    fn ready(&self) -> BoxFuture<'_, bool> {
        async move { admin_connect(self.port).await.is_ok() }.boxed()
    }

    fn stop(mut self: Box<Self>) -> BoxFuture<'static, ()> {
        // SIGINT is PostgreSQL's "fast" shutdown: roll back open transactions, checkpoint, exit.
        async move { self.process.stop(Signal::SIGINT).await }.boxed()
    }
}

// ---------------------------------------------------------------- Redis

/// Commands Memorystore blocks that emu blocks too (renamed away). `CONFIG`, `CLIENT` and
/// `MONITOR` stay: client libraries (CLIENT SETINFO/SETNAME), redis-cli and GUI tools use them,
/// and tests read `maxmemory` back with `CONFIG GET`. Status lists both sets.
pub(crate) const BLOCKED_COMMANDS: [&str; 7] = [
    "SAVE",
    "BGSAVE",
    "DEBUG",
    "CLUSTER",
    "ACL",
    "REPLICAOF",
    "SLAVEOF",
];
pub(crate) const KEPT_COMMANDS: [&str; 3] = ["CONFIG", "CLIENT", "MONITOR"];

/// A Redis server emu runs from the installed `redis-server`.
pub(crate) struct NativeRedis {
    process: ServerProcess,
    port: u16,
    version: String,
    requested: u32,
    dir: PathBuf,
    maxmemory: u64,
}

impl NativeRedis {
    /// Writes `redis.conf`, starts the server and waits for PING. Returns the URL and server.
    pub(crate) async fn start(
        cfg: &RedisConfig,
        project_dir: &Path,
    ) -> Result<(String, Self), BackendError> {
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
        let log = dir.join("redis.log");
        recover_stale_redis_pid(&dir)?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = match cfg.port {
                Some(p) => p,
                None => free_port()?,
            };
            let conf = dir.join("redis.conf");
            fs::write(&conf, redis_conf(&dir, port, maxmemory))
                .map_err(|e| BackendError::io(format!("writing {}", conf.display()), e))?;
            let (out, err) = open_log(&log)?;
            let log_start = fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
            let mut cmd = Command::new(&bin);
            cmd.arg(&conf)
                .current_dir(&dir)
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err);
            let mut process = ServerProcess::spawn("redis-server", cmd, None)?;
            let url = format!("redis://127.0.0.1:{port}");
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
                    if tail.contains("already in use")
                        && cfg.port.is_none()
                        && attempt < PORT_ATTEMPTS
                    {
                        break;
                    }
                    return Err(BackendError::Start {
                        what: "Redis",
                        detail: format!(
                            "redis-server exited ({status}); its log ({}) ends with:\n{}",
                            log.display(),
                            log_tail(&log, 15)
                        ),
                    });
                }
                if ping(&url).await {
                    if redis_pid(&url).await != Some(process.pid) {
                        // Another server won a race for the port.
                        process.stop(Signal::SIGTERM).await;
                        if cfg.port.is_none() && attempt < PORT_ATTEMPTS {
                            break;
                        }
                        return Err(BackendError::Start {
                            what: "Redis",
                            detail: format!("another server answers on 127.0.0.1:{port}; set redis.port to a free port or remove it to get one"),
                        });
                    }
                    tracing::info!(port, dir = %dir.display(), "redis ready");
                    return Ok((
                        url,
                        NativeRedis {
                            process,
                            port,
                            version,
                            requested,
                            dir,
                            maxmemory,
                        },
                    ));
                }
                if Instant::now() >= deadline {
                    process.stop(Signal::SIGTERM).await;
                    return Err(BackendError::Start {
                        what: "Redis",
                        detail: format!(
                            "no answer on 127.0.0.1:{port} within {READY_TIMEOUT:?}; see {}",
                            log.display()
                        ),
                    });
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

fn redis_conf(dir: &Path, port: u16, maxmemory: u64) -> String {
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
         pidfile \"{quoted}/redis.pid\"\n"
    );
    for c in BLOCKED_COMMANDS {
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

fn same_path(a: &Path, b: &Path) -> bool {
    let canon = |p: &Path| fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    canon(a) == canon(b)
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
            "blocked_commands": BLOCKED_COMMANDS,
            "kept_commands": KEPT_COMMANDS,
            "data_dir": self.dir.display().to_string(),
        })
    }

    fn ready(&self) -> BoxFuture<'_, bool> {
        async move { ping(&format!("redis://127.0.0.1:{}", self.port)).await }.boxed()
    }

    fn stop(mut self: Box<Self>) -> BoxFuture<'static, ()> {
        // SIGTERM makes Redis fsync the append-only file and exit.
        async move { self.process.stop(Signal::SIGTERM).await }.boxed()
    }
}

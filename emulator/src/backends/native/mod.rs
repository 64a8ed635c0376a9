//! Native mode: the installed `postgres` and `redis-server` run as emu's own child processes.
//!
//! Both run in the foreground as direct children, hardened by [`crate::proc::harden`] (own
//! process group, SIGKILL when emu dies), so nothing outlives emu. Data stays between runs:
//!
//! - PostgreSQL: a cluster initialised once (initdb; TCP on loopback only, always with a
//!   password: scram-sha-256, see `pg_auth`) under
//!   `<project>/.emu/postgres/data`. PostgreSQL refuses to run as root, so when emu is root the
//!   cluster belongs to the `postgres` system user and the server runs as that user. If that
//!   user cannot reach the project folder (e.g. a project under `/root` or a 0700 temp dir), the
//!   cluster lives in `/var/lib/emu/postgres/<folder>-<hash>/` instead and
//!   `.emu/postgres/location` names it (`emu down --volumes` removes it too).
//! - Redis: `<project>/.emu/redis/` holds `redis.conf` (rewritten each start) and the
//!   append-only file.
//!
//! Ports are free loopback ports unless the config fixes one.

mod pg_auth;
mod postgres;
mod redis;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::process::{Child, Command};

use super::BackendError;
use crate::proc::{self, Hardening};
pub(crate) use pg_auth::wrong_password;
pub(crate) use postgres::{find_postgres, NativePostgres};
pub(crate) use redis::{find_redis, ping, NativeRedis};

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

fn path_dirs() -> Vec<PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default()
}

/// A port free on every address ([`crate::ports::free_port`]). Another process may take it
/// before the server binds it; callers retry on "address in use".
pub(crate) fn free_port() -> Result<u16, BackendError> {
    crate::ports::free_port().map_err(|e| BackendError::io("finding a free port", e))
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

fn same_path(a: &Path, b: &Path) -> bool {
    let canon = |p: &Path| fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    canon(a) == canon(b)
}

/// Why one try to start a server failed: its port was taken (try another), or anything else.
enum SpawnError {
    PortTaken,
    Failed(BackendError),
}

impl From<BackendError> for SpawnError {
    fn from(e: BackendError) -> Self {
        SpawnError::Failed(e)
    }
}

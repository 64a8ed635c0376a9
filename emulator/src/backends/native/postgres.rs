//! PostgreSQL from the installed binaries: a cluster initialised once under `.emu/postgres`
//! (or, when emu is root and the `postgres` user cannot reach the project, under
//! `/var/lib/emu/postgres`), started on a free loopback port, with the `app` role and the
//! databases services asked for.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use nix::sys::signal::Signal;
use serde_json::{json, Value};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};
use tokio::process::Command;
use tokio::time::Instant;

use super::super::{
    ensure_app_role_and_databases, BackendError, Credentials, PostgresConfig, Running,
    APP_DATABASE, APP_USER, SUPERUSER_RESERVED_CONNECTIONS,
};
use super::pg_auth::{hba_is_ours, set_superuser_password, write_hba, wrong_password, PrivateFile};
use super::{
    create_dir, free_port, log_tail, open_log, path_dirs, process_alive, process_name, same_path,
    ServerProcess, SpawnError, PORT_ATTEMPTS, POSTGRES_INSTALL_HINT, READY_TIMEOUT,
};
use crate::proc::{self, Hardening};

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

async fn postgres_major(bin: &Path) -> Option<u32> {
    let out = Command::new(bin).arg("--version").output().await.ok()?;
    // "postgres (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)"
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text.split_whitespace().nth(2)?;
    version.split('.').next()?.parse().ok()
}

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
    /// The superuser's, for the health check.
    superuser_password: String,
}

impl NativePostgres {
    /// Initialises the cluster if needed, starts the server and waits until it answers, then
    /// creates the `app` role and the databases. Returns the app's URL and the server.
    /// `creds`: the project's passwords, and whether they were generated just now (then an
    /// existing cluster gets them set before it serves).
    pub(crate) async fn start(
        cfg: &PostgresConfig,
        project_dir: &Path,
        databases: &[String],
        creds: &(Credentials, bool),
    ) -> Result<(String, Self), BackendError> {
        let (creds, fresh) = (&creds.0, creds.1);
        let password = creds.postgres_password.as_str();
        let installed = find_postgres().await;
        if installed.is_empty() {
            return Err(BackendError::NotInstalled {
                what: "PostgreSQL",
                hint: format!("{POSTGRES_INSTALL_HINT}."),
            });
        }
        let run_as = server_user()?;
        let base = project_dir.join(".emu").join("postgres");
        create_dir(&base)?;
        let cluster = Cluster {
            root: cluster_root(project_dir, &base, run_as)?,
            log: base.join("postgres.log"),
            run_as,
        };
        let data_dir = cluster.data_dir();
        let requested = cfg.version_or_default();
        let (bins, initialised) = pick_binaries(&installed, &data_dir, requested)?;
        if !initialised {
            initdb(&bins, &cluster, password).await?;
        }
        recover_stale_pid(&data_dir)?;
        // A cluster from before emu used passwords (trust on loopback), or one whose password
        // file was just regenerated: set the superuser's password offline, before any port opens.
        if initialised && (fresh || !hba_is_ours(&data_dir)) {
            set_superuser_password(&bins, &cluster, password).await?;
        }
        write_hba(&cluster)?;
        let app_max = cfg.effective_max_connections();
        let (port, process) = start_on_a_port(cfg, &bins, &cluster, app_max, password).await?;
        let server = NativePostgres {
            process,
            port,
            major: bins.major,
            requested,
            data_dir: data_dir.clone(),
            log: cluster.log.clone(),
            app_max_connections: app_max,
            tier: cfg.tier.clone(),
            superuser_password: password.to_string(),
        };
        let mut admin = admin_connect(port, password)
            .await
            .map_err(|e| BackendError::Start {
                what: "PostgreSQL",
                detail: format!("connecting as the superuser: {e}"),
            })?;
        ensure_app_role_and_databases(&mut admin, databases, &creds.app_password)
            .await
            .map_err(|e| BackendError::Start {
                what: "PostgreSQL",
                detail: format!("creating the app role and databases: {e}"),
            })?;
        let _ = admin.close().await;
        let url = format!(
            "postgres://{APP_USER}:{}@127.0.0.1:{port}/{APP_DATABASE}",
            creds.app_password
        );
        tracing::info!(port, version = bins.major, data = %data_dir.display(), "postgres ready");
        Ok((url, server))
    }
}

/// Where a cluster lives and who runs it.
pub(super) struct Cluster {
    /// Holds `data/` (and `data.initdb` while initdb runs); the server's working directory.
    pub(super) root: PathBuf,
    pub(super) log: PathBuf,
    pub(super) run_as: Option<(u32, u32)>,
}

impl Cluster {
    pub(super) fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }
}

/// PostgreSQL refuses to run as root: then the server runs as the `postgres` system user.
fn server_user() -> Result<Option<(u32, u32)>, BackendError> {
    if !proc::is_root() {
        return Ok(None);
    }
    proc::system_user("postgres")
        .map(Some)
        .ok_or_else(|| BackendError::NotInstalled {
            what: "the `postgres` system user (PostgreSQL refuses to run as root)",
            hint: "Create it (useradd --system --user-group postgres; the postgresql package does this) or run emu as a normal user.".into(),
        })
}

/// The binaries to run, and whether the cluster exists already. The cluster's own version wins:
/// a data directory only opens with its major version.
fn pick_binaries(
    installed: &[PgBinaries],
    data_dir: &Path,
    requested: u32,
) -> Result<(PgBinaries, bool), BackendError> {
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
                    majors(installed)
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
            majors(installed)
        );
    }
    Ok((bins, existing_major.is_some()))
}

/// Starts the server on `postgres.port`, or on a free port (another, up to [`PORT_ATTEMPTS`]
/// times, when someone takes it first).
async fn start_on_a_port(
    cfg: &PostgresConfig,
    bins: &PgBinaries,
    cluster: &Cluster,
    app_max: u32,
    password: &str,
) -> Result<(u16, ServerProcess), BackendError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let port = match cfg.port {
            Some(p) => p,
            None => free_port()?,
        };
        match spawn_postgres(bins, cluster, port, app_max, password).await {
            Ok(process) => return Ok((port, process)),
            Err(SpawnError::PortTaken) if cfg.port.is_none() && attempt < PORT_ATTEMPTS => {}
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
/// initdb never leaves a half-made cluster behind. The superuser gets `password` (scram) from
/// the start: there is never a moment when the cluster trusts a connection.
async fn initdb(bins: &PgBinaries, cluster: &Cluster, password: &str) -> Result<(), BackendError> {
    let (cluster_root, data_dir, log, run_as) = (
        cluster.root.as_path(),
        &cluster.data_dir(),
        cluster.log.as_path(),
        cluster.run_as,
    );
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
    let pwfile = PrivateFile::create(&cluster_root.join("initdb.pw"), password, run_as)?;
    let mut cmd = Command::new(bins.dir.join("initdb"));
    cmd.arg("-D")
        .arg(&scratch)
        .arg(format!("--pwfile={}", pwfile.0.display()))
        .args([
            "--username=postgres",
            "--auth-local=peer",
            "--auth-host=scram-sha-256",
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
    drop(pwfile);
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

async fn spawn_postgres(
    bins: &PgBinaries,
    cluster: &Cluster,
    port: u16,
    app_max: u32,
    password: &str,
) -> Result<ServerProcess, SpawnError> {
    let (log, data_dir) = (&cluster.log, &cluster.data_dir());
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
        .args(["-c", "password_encryption=scram-sha-256"])
        .args(["-c", &format!("max_connections={server_max}")])
        .args([
            "-c",
            &format!("superuser_reserved_connections={SUPERUSER_RESERVED_CONNECTIONS}"),
        ])
        .current_dir(&cluster.root)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    let mut process = ServerProcess::spawn("postgres", cmd, cluster.run_as)?;
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
        let connected = admin_connect(port, password).await;
        if let Err(e) = &connected {
            if wrong_password(e) {
                process.stop(Signal::SIGINT).await;
                return Err(SpawnError::Failed(BackendError::Start {
                    what: "PostgreSQL",
                    detail: format!(
                        "the server in {} refuses the superuser password of .emu/credentials.json (the file was replaced?). Put the old file back, or remove the data with `emu down --volumes`",
                        data_dir.display()
                    ),
                }));
            }
        }
        if let Ok(mut c) = connected {
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

async fn admin_connect(port: u16, password: &str) -> Result<sqlx::PgConnection, sqlx::Error> {
    let opts = PgConnectOptions::new()
        .host("127.0.0.1")
        .port(port)
        .username("postgres")
        .password(password)
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
        async move {
            admin_connect(self.port, &self.superuser_password)
                .await
                .is_ok()
        }
        .boxed()
    }

    fn stop(mut self: Box<Self>) -> BoxFuture<'static, ()> {
        // SIGINT is PostgreSQL's "fast" shutdown: roll back open transactions, checkpoint, exit.
        async move { self.process.stop(Signal::SIGINT).await }.boxed()
    }
}

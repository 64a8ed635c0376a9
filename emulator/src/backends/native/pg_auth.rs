//! How native PostgreSQL authenticates: like Cloud SQL, never without a password.
//!
//! emu rewrites `pg_hba.conf` at every start: TCP (loopback only) needs a scram-sha-256
//! password, and the Unix socket (which emu does not open) would need the OS user to be the
//! role. Clusters made before this (initdb with `trust`), or whose password file was just
//! regenerated, get the superuser's password set in single-user mode before the server opens
//! a port, so there is never a window in which a wrong password is accepted.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use super::super::{sql_literal, BackendError};
use super::postgres::{Cluster, PgBinaries};
use crate::proc::{self, Hardening};

/// First line of the `pg_hba.conf` emu writes; a file without it predates passwords.
const HBA_HEADER: &str = "# Written by emu at every start; edits are lost.";

fn hba_text() -> String {
    format!(
        "{HBA_HEADER}\n\
         # TCP on loopback only (listen_addresses = 127.0.0.1), always with a password.\n\
         local all all peer\n\
         host all all 127.0.0.1/32 scram-sha-256\n\
         host all all ::1/128 scram-sha-256\n"
    )
}

/// True when the cluster's `pg_hba.conf` is the one emu writes (so passwords are in force).
pub(super) fn hba_is_ours(data_dir: &Path) -> bool {
    fs::read_to_string(data_dir.join("pg_hba.conf"))
        .is_ok_and(|t| t.lines().next() == Some(HBA_HEADER))
}

/// Writes `pg_hba.conf` (private to the server's user), replacing the file atomically.
pub(super) fn write_hba(cluster: &Cluster) -> Result<(), BackendError> {
    let path = cluster.data_dir().join("pg_hba.conf");
    let tmp = PrivateFile::create(
        &cluster.data_dir().join("pg_hba.conf.emu"),
        &hba_text(),
        cluster.run_as,
    )?;
    fs::rename(&tmp.0, &path)
        .map_err(|e| BackendError::io(format!("writing {}", path.display()), e))
}

/// True when `e` is PostgreSQL refusing the password (SQLSTATE 28P01).
pub(crate) fn wrong_password(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c == "28P01")
}

/// Sets the superuser's password with the server stopped (`postgres --single`: no port, no
/// socket), for a cluster that had none or another one.
pub(super) async fn set_superuser_password(
    bins: &PgBinaries,
    cluster: &Cluster,
    password: &str,
) -> Result<(), BackendError> {
    tracing::info!(
        "setting the PostgreSQL superuser password of {} (from .emu/credentials.json)",
        cluster.data_dir().display()
    );
    let mut cmd = Command::new(bins.dir.join("postgres"));
    cmd.arg("--single")
        .arg("-D")
        .arg(cluster.data_dir())
        .args(["-c", "listen_addresses=", "-c", "unix_socket_directories="])
        .args(["-c", "password_encryption=scram-sha-256"])
        .arg("postgres")
        .current_dir(&cluster.root)
        .env("LC_ALL", "C")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    proc::harden(
        &mut cmd,
        Hardening {
            run_as: cluster.run_as,
        },
    );
    let mut child = cmd
        .spawn()
        .map_err(|e| BackendError::io("starting postgres --single", e))?;
    // One statement per line in single-user mode; the password never reaches a log.
    let sql = format!("ALTER ROLE postgres PASSWORD {};\n", sql_literal(password));
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(sql.as_bytes())
            .await
            .map_err(|e| BackendError::io("writing to postgres --single", e))?;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| BackendError::io("running postgres --single", e))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || stderr.contains("ERROR") || stdout.contains("ERROR") {
        return Err(BackendError::Start {
            what: "PostgreSQL",
            detail: format!(
                "setting the superuser password (postgres --single) failed ({}): {}",
                out.status,
                stderr.trim()
            ),
        });
    }
    Ok(())
}

/// A file only the server's user can read (created 0600, owned by `run_as`), removed on drop.
pub(super) struct PrivateFile(pub(super) PathBuf);

impl PrivateFile {
    pub(super) fn create(
        path: &Path,
        text: &str,
        run_as: Option<(u32, u32)>,
    ) -> Result<Self, BackendError> {
        let _ = fs::remove_file(path);
        let err = |e| BackendError::io(format!("writing {}", path.display()), e);
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(err)?;
        let file = PrivateFile(path.to_path_buf());
        f.write_all(text.as_bytes()).map_err(err)?;
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::fchown(&f, Some(uid), Some(gid)).map_err(err)?;
        }
        Ok(file)
    }
}

impl Drop for PrivateFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

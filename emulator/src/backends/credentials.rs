//! The passwords of the servers emu runs for a project (native and docker modes), kept in
//! `<project>/.emu/credentials.json` (mode 0600, created with that mode) so every later run,
//! and the data those servers keep, use the same ones.
//!
//! Cloud SQL and Memorystore (with AUTH) never accept a connection without a password; neither
//! do emu's servers, so a wrong or missing password fails locally as it would in the cloud, and
//! another OS user on the machine cannot connect as the superuser.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::BackendError;

/// Length of each generated password: 32 letters and digits (about 190 bits).
const PASSWORD_LEN: usize = 32;

/// The project's passwords. Letters and digits only, so they need no escaping in URLs,
/// `redis.conf` or SQL literals.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    /// The `postgres` superuser's (emu's own connections: role and database setup, health).
    pub postgres_password: String,
    /// The `app` role's: the one in the `DATABASE_URL` services get.
    pub app_password: String,
    /// Redis `requirepass`: the one in `REDIS_URL`.
    pub redis_password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials { .. }")
    }
}

/// `<project>/.emu/credentials.json`.
pub fn credentials_path(project_dir: &Path) -> PathBuf {
    project_dir.join(".emu").join("credentials.json")
}

fn generate() -> String {
    rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(PASSWORD_LEN)
        .map(char::from)
        .collect()
}

fn valid(p: &str) -> bool {
    !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric())
}

impl Credentials {
    /// The project's credentials, generated and stored on the first call. The bool is true when
    /// they were created now (a data directory from before then still has the old passwords).
    pub fn load_or_create(project_dir: &Path) -> Result<(Credentials, bool), BackendError> {
        let path = credentials_path(project_dir);
        if let Some(c) = Self::load(&path)? {
            return Ok((c, false));
        }
        let fresh = Credentials {
            postgres_password: generate(),
            app_password: generate(),
            redis_password: generate(),
        };
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .map_err(|e| BackendError::io(format!("creating {}", parent.display()), e))?;
        }
        // Written to a private temporary file, then linked into place: a second emu starting
        // at the same moment either links first (and this one reads its file) or finds ours
        // complete; nobody ever reads a half-written file.
        let tmp = path.with_extension(format!("json.{}.tmp", std::process::id()));
        let _ = fs::remove_file(&tmp);
        let write = || -> std::io::Result<()> {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            let text = serde_json::to_string_pretty(&fresh).map_err(std::io::Error::other)?;
            f.write_all(text.as_bytes())?;
            f.write_all(b"\n")?;
            f.sync_all()
        };
        let linked = write().and_then(|()| fs::hard_link(&tmp, &path));
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                tracing::info!(
                    "generated this project's server passwords in {}",
                    path.display()
                );
                Ok((fresh, true))
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Self::load(&path)?
                .map(|c| (c, false))
                .ok_or_else(|| BackendError::io(format!("reading {}", path.display()), e)),
            Err(e) => Err(BackendError::io(format!("writing {}", path.display()), e)),
        }
    }

    fn load(path: &Path) -> Result<Option<Credentials>, BackendError> {
        let text = match fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(BackendError::io(format!("reading {}", path.display()), e)),
        };
        let bad = |why: String| {
            BackendError::Start {
            what: "emu",
            detail: format!(
                "{}: {why}. Fix it, or delete it to have emu generate new passwords (and reset them on its servers)",
                path.display()
            ),
        }
        };
        let c: Credentials = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        if ![&c.postgres_password, &c.app_password, &c.redis_password]
            .iter()
            .all(|p| valid(p))
        {
            return Err(bad("passwords must be non-empty letters and digits".into()));
        }
        if let Ok(m) = fs::metadata(path) {
            if m.permissions().mode() & 0o077 != 0 {
                tracing::warn!(
                    "{} is readable by other users (mode {:o}); `chmod 600` it",
                    path.display(),
                    m.permissions().mode() & 0o777
                );
            }
        }
        Ok(Some(c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let (a, created) = Credentials::load_or_create(dir.path()).unwrap();
        assert!(created);
        assert_eq!(a.postgres_password.len(), PASSWORD_LEN);
        assert_ne!(a.postgres_password, a.app_password);
        let mode = fs::metadata(credentials_path(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let (b, created) = Credentials::load_or_create(dir.path()).unwrap();
        assert!(!created);
        assert_eq!(a, b);
        assert!(!format!("{a:?}").contains(&a.redis_password));
    }

    #[test]
    fn a_damaged_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join(".emu")).unwrap();
        fs::write(
            credentials_path(dir.path()),
            "{\"postgres_password\": \"x\"}",
        )
        .unwrap();
        let e = Credentials::load_or_create(dir.path()).unwrap_err();
        assert!(e.to_string().contains("credentials.json"), "{e}");
    }
}

//! The local secret store: Secret Manager's stand-in. Secrets come from `[secrets]` (a value, or
//! `{ file = "…" }`), are handed to instances as env vars or as files at their declared mount
//! paths, and never appear in logs or status (only their names do).
//!
//! A process instance cannot see a private mount at `/secrets/…`, so its files are written under
//! `.emu/secrets/<service>/<mount path>` (mode 0600) and `EMU_SECRETS_ROOT` tells it where; a
//! container instance gets them mounted read-only at the declared path.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Where a secret's value comes from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum SecretSource {
    Value(String),
    File { file: PathBuf },
}

/// A reference from a service to a secret: `name:version` (the version is accepted and ignored:
/// the store keeps one value per name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRef {
    pub name: String,
    pub version: String,
}

impl SecretRef {
    /// Parses `name`, `name:latest` or `name:3`.
    pub fn parse(s: &str) -> Result<SecretRef, String> {
        let (name, version) = s.split_once(':').unwrap_or((s, "latest"));
        let ok = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok {
            return Err(format!(
                "{s:?} is not a secret reference: write NAME or NAME:VERSION (e.g. db-password:latest)"
            ));
        }
        Ok(SecretRef {
            name: name.to_string(),
            version: version.to_string(),
        })
    }
}

/// What a service asks for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SecretUse {
    /// env var → secret
    pub env: Vec<(String, SecretRef)>,
    /// absolute file path (as mounted in a container) → secret
    pub files: Vec<(String, SecretRef)>,
}

impl SecretUse {
    pub fn is_empty(&self) -> bool {
        self.env.is_empty() && self.files.is_empty()
    }

    /// Reads the gcloud `--set-secrets` form: `ENV=name:version` or `/path/file=name:version`.
    pub fn add(&mut self, target: &str, reference: &str) -> Result<(), String> {
        let r = SecretRef::parse(reference)?;
        if target.starts_with('/') {
            if target.ends_with('/') || target.contains("..") {
                return Err(format!(
                    "{target:?}: a secret file path must name a file, without '..'"
                ));
            }
            self.files.push((target.to_string(), r));
        } else {
            self.env.push((target.to_string(), r));
        }
        Ok(())
    }
}

/// Why secrets could not be given to an instance.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("service {service} uses secret {name:?}, which is not in [secrets]: add it (a value, or {{ file = \"path\" }})")]
    Missing { service: String, name: String },
    #[error("secret {name:?}: cannot read {path}: {source}")]
    Read {
        name: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write secret files under {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The secrets of one `emu up`, values loaded.
#[derive(Clone, Default)]
pub struct SecretStore {
    values: BTreeMap<String, String>,
}

impl std::fmt::Debug for SecretStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only: values never reach a log.
        f.debug_struct("SecretStore")
            .field("names", &self.values.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// What an instance gets: env vars, and files to mount (host path → container path).
#[derive(Debug, Clone, Default)]
pub struct Materialized {
    pub env: Vec<(String, String)>,
    pub mounts: Vec<(PathBuf, String)>,
}

impl SecretStore {
    /// Loads every source (files relative to `project_dir`).
    pub fn load(
        sources: &BTreeMap<String, SecretSource>,
        project_dir: &Path,
    ) -> Result<Self, SecretError> {
        let mut values = BTreeMap::new();
        for (name, src) in sources {
            let v = match src {
                SecretSource::Value(v) => v.clone(),
                SecretSource::File { file } => {
                    let path = project_dir.join(file);
                    std::fs::read_to_string(&path).map_err(|source| SecretError::Read {
                        name: name.clone(),
                        path: path.clone(),
                        source,
                    })?
                }
            };
            values.insert(name.clone(), v);
        }
        Ok(SecretStore { values })
    }

    pub fn names(&self) -> Vec<String> {
        self.values.keys().cloned().collect()
    }

    fn get(&self, service: &str, r: &SecretRef) -> Result<&str, SecretError> {
        self.values
            .get(&r.name)
            .map(String::as_str)
            .ok_or_else(|| SecretError::Missing {
                service: service.to_string(),
                name: r.name.clone(),
            })
    }

    /// Checks that everything `uses` names exists.
    pub fn check(&self, service: &str, uses: &SecretUse) -> Result<(), SecretError> {
        for (_, r) in uses.env.iter().chain(uses.files.iter()) {
            self.get(service, r)?;
        }
        Ok(())
    }

    /// Env vars (and [`SECRET_ENV_NAMES`] naming them), plus files written under `<project>/.emu/secrets/<service>/` (0600) and
    /// `EMU_SECRETS_ROOT` pointing there.
    pub fn materialize(
        &self,
        service: &str,
        uses: &SecretUse,
        project_dir: &Path,
    ) -> Result<Materialized, SecretError> {
        let mut out = Materialized::default();
        for (env, r) in &uses.env {
            out.env
                .push((env.clone(), self.get(service, r)?.to_string()));
        }
        if !uses.env.is_empty() {
            // Names only: emu's demo app hides these values on its debug endpoint.
            let names: Vec<&str> = uses.env.iter().map(|(env, _)| env.as_str()).collect();
            out.env.push((SECRET_ENV_NAMES.into(), names.join(",")));
        }
        if uses.files.is_empty() {
            return Ok(out);
        }
        let root = project_dir.join(".emu").join("secrets").join(service);
        let werr = |source| SecretError::Write {
            path: root.clone(),
            source,
        };
        std::fs::create_dir_all(&root).map_err(werr)?;
        set_mode(&root, 0o700).map_err(werr)?;
        for (path, r) in &uses.files {
            let host = root.join(path.trim_start_matches('/'));
            if let Some(parent) = host.parent() {
                std::fs::create_dir_all(parent).map_err(werr)?;
            }
            std::fs::write(&host, self.get(service, r)?).map_err(werr)?;
            set_mode(&host, 0o600).map_err(werr)?;
            out.mounts.push((host, path.clone()));
        }
        out.env
            .push(("EMU_SECRETS_ROOT".into(), root.display().to_string()));
        Ok(out)
    }
}

/// The environment variable listing (comma-separated) which variables of an instance hold
/// secrets, so that emu's demo app can show them as set without showing their values. An emu
/// addition beside `EMU_SECRETS_ROOT`; Cloud Run has no such variable.
pub const SECRET_ENV_NAMES: &str = "EMU_SECRET_ENV";

fn set_mode(p: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_and_files_materialize_without_leaking_in_debug() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("key.txt"), "k-123").unwrap();
        let mut src = BTreeMap::new();
        src.insert(
            "db-password".to_string(),
            SecretSource::Value("s3cret".into()),
        );
        src.insert(
            "api-key".to_string(),
            SecretSource::File {
                file: "key.txt".into(),
            },
        );
        let store = SecretStore::load(&src, dir.path()).unwrap();
        assert!(!format!("{store:?}").contains("s3cret"));
        let mut uses = SecretUse::default();
        uses.add("DB_PASSWORD", "db-password:latest").unwrap();
        uses.add("/secrets/api/key", "api-key:1").unwrap();
        let m = store.materialize("svc", &uses, dir.path()).unwrap();
        assert!(m
            .env
            .contains(&("DB_PASSWORD".to_string(), "s3cret".to_string())));
        let (host, container) = &m.mounts[0];
        assert_eq!(container, "/secrets/api/key");
        assert_eq!(std::fs::read_to_string(host).unwrap(), "k-123");
        assert!(host.starts_with(dir.path().join(".emu/secrets/svc")));
        let root = m.env.iter().find(|(k, _)| k == "EMU_SECRETS_ROOT").unwrap();
        assert_eq!(std::path::Path::new(&root.1).join("secrets/api/key"), *host);

        uses.add("X", "nope").unwrap();
        assert!(matches!(
            store.check("svc", &uses),
            Err(SecretError::Missing { .. })
        ));
        assert!(SecretRef::parse("bad name").is_err());
        assert!(uses.add("/secrets/../etc/passwd", "api-key").is_err());
    }
}

//! Which config `emu up` runs (`-f` YAMLs, `--config`, `./emu.toml`, or the demo), read,
//! overridden by the command line, then checked as a whole.

use std::path::{Path, PathBuf};

use super::types::Config;
use super::{check_config, demo_config, emu_toml, load_secrets_file, load_yaml};
use super::{Overrides, SpecError};

/// Where a config comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// Cloud Run service YAMLs (`-f`, repeatable), with what each instance runs (after `--`).
    Yaml {
        files: Vec<PathBuf>,
        command: Vec<String>,
    },
    /// An `emu.toml`.
    Toml(PathBuf),
    /// The built-in demo, run by this executable.
    Demo { exe: PathBuf },
}

impl ConfigSource {
    /// What `emu up` runs: the `-f` files, else `--config`, else `./emu.toml`, else the demo.
    pub fn choose(
        files: &[PathBuf],
        command: &[String],
        config: Option<&Path>,
        cwd: &Path,
    ) -> Result<ConfigSource, SpecError> {
        if !files.is_empty() {
            return Ok(ConfigSource::Yaml {
                files: files.to_vec(),
                command: command.to_vec(),
            });
        }
        if let Some(path) = config {
            return Ok(ConfigSource::Toml(path.to_path_buf()));
        }
        let here = cwd.join("emu.toml");
        if here.exists() {
            return Ok(ConfigSource::Toml(here));
        }
        let exe = std::env::current_exe().map_err(|e| {
            SpecError::new(
                Path::new("emu"),
                None,
                format!("cannot find emu's own executable for the demo: {e}"),
            )
        })?;
        Ok(ConfigSource::Demo { exe })
    }
}

/// Reads the config, applies the command line's overrides, then checks it as a whole.
pub fn load(source: &ConfigSource, overrides: &Overrides, cwd: &Path) -> Result<Config, SpecError> {
    let mut cfg = match source {
        ConfigSource::Yaml { files, command } => load_yamls(files, command, cwd)?,
        ConfigSource::Toml(path) => emu_toml::load_unchecked(path)?,
        ConfigSource::Demo { exe } => demo_config(exe, cwd),
    };
    overrides.apply(&mut cfg);
    check_config(&cfg)?;
    Ok(cfg)
}

/// Several service YAMLs as one config, with `./secrets.toml` as their secret store.
fn load_yamls(files: &[PathBuf], command: &[String], cwd: &Path) -> Result<Config, SpecError> {
    let mut merged: Option<Config> = None;
    for f in files {
        let c = load_yaml(f, command)?;
        merged = Some(match merged {
            None => c,
            Some(mut m) => {
                m.services.extend(c.services);
                m.jobs.extend(c.jobs);
                m.warnings.extend(c.warnings);
                m.postgres = m.postgres.or(c.postgres);
                m.redis = m.redis.or(c.redis);
                m.project.merge(c.project, &mut m.warnings);
                m
            }
        });
    }
    let Some(mut cfg) = merged else {
        return Err(SpecError::new(
            Path::new("emu"),
            None,
            "no service YAML given: pass -f service.yaml",
        ));
    };
    cfg.project_dir = cwd.to_path_buf();
    let secrets = cwd.join("secrets.toml");
    if secrets.exists() {
        let (values, lines) = load_secrets_file(&secrets)?;
        cfg.secrets = values;
        cfg.secret_lines = lines;
    }
    Ok(cfg)
}

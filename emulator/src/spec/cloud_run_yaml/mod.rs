//! A Cloud Run service YAML, taken unchanged: the Knative `serving.knative.dev/v1` `Service` that
//! `gcloud run services describe SVC --format export` prints (or a Cloud Run `Job`). Parsed into
//! a tree whose nodes know their lines ([`node`]), so every error names one. Fields emu does not
//! model are listed once as warnings; fields that only describe the service's state are skipped.

mod container;
mod identity;
mod job;
mod node;
mod service;
mod unknown;

use std::path::Path;

use super::stores::{PostgresConfig, RedisConfig};
use super::types::Config;
use super::SpecError;
use node::Node;

/// Errors in one file.
pub(super) struct Place<'a> {
    pub file: &'a Path,
}

impl Place<'_> {
    pub fn err(&self, line: usize, message: String) -> SpecError {
        SpecError::new(self.file, Some(line), message)
    }
}

/// Reads and validates a Cloud Run service YAML; `command` is what each instance runs (the words
/// after `--` on the command line), empty to run the image.
pub fn load_yaml(path: &Path, command: &[String]) -> Result<Config, SpecError> {
    let src = std::fs::read_to_string(path)
        .map_err(|e| SpecError::new(path, None, format!("cannot read the service YAML: {e}")))?;
    parse_yaml(&src, path, command)
}

/// Validates the text of a service YAML read from `path`.
pub fn parse_yaml(src: &str, path: &Path, command: &[String]) -> Result<Config, SpecError> {
    let place = Place { file: path };
    let root = node::parse(src)
        .map_err(|e| place.err(e.line, format!("not valid YAML: {}", e.message)))?;
    if root.as_map().is_none() {
        return Err(place.err(
            root.line,
            "expected a Cloud Run service (a YAML mapping with apiVersion, kind, metadata, spec)"
                .into(),
        ));
    }
    let text = |k: &str| root.get(k).and_then(Node::as_str).unwrap_or_default();
    let (api, kind) = (text("apiVersion"), text("kind"));
    let project_dir = std::env::current_dir().unwrap_or_else(|_| ".".into());
    let mut cfg = Config::empty(path.to_path_buf(), project_dir);
    if kind == "Job" && api.starts_with("run.googleapis.com") {
        cfg.jobs.push(job::read(&root, command, &place)?);
        cfg.project = identity::read(&root, None, None, &place)?;
        return Ok(cfg);
    }
    if kind != "Service" || !api.starts_with("serving.knative.dev/") {
        return Err(place.err(
            root.line_of("kind"),
            format!(
                "expected apiVersion serving.knative.dev/v1 and kind Service (what `gcloud run services describe SVC --format export` prints), found {api:?} / {kind:?}"
            ),
        ));
    }
    let read = service::read(&root, command, &place)?;
    cfg.services.push(read.service);
    cfg.postgres = read.cloudsql.then(PostgresConfig::default);
    cfg.redis = read.redis.then(RedisConfig::default);
    cfg.project = read.project;
    cfg.warnings = read
        .warnings
        .into_iter()
        .map(|w| format!("{}: {w}", path.display()))
        .collect();
    Ok(cfg)
}

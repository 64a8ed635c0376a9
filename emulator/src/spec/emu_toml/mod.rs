//! `emu.toml`: one or more `[[service]]`, plus `[emu]`, `[project]`, `[postgres]`, `[redis]`,
//! `[secrets]` and `[[job]]`. Parsed once into a spanned document: serde reads the types from it, and
//! [`positions`] gives the line of every key for the errors found afterwards.

mod emu_section;
mod job;
mod positions;
mod schema;
mod service;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use toml_edit::ImDocument;

use super::project::{Field, ProjectSettings};
use super::types::{Config, SectionLines};
use super::{check_config, SpecError};
use crate::secrets::SecretSource;
use positions::{line_of_offset, Positions, Seg};
use schema::{File, SecretsFile};
use service::Table;

/// Reads the `[secrets]` of a `secrets.toml` (for `emu up -f service.yaml`), with their lines.
pub fn load_secrets_file(
    path: &Path,
) -> Result<(BTreeMap<String, SecretSource>, SectionLines), SpecError> {
    let src = std::fs::read_to_string(path)
        .map_err(|e| SpecError::new(path, None, format!("cannot read the secrets file: {e}")))?;
    let (doc, f): (_, SecretsFile) = parse_document(&src, path)?;
    let lines = Positions::new(&src, &doc).section(path, "secrets");
    Ok((f.secrets, lines))
}

/// Reads and validates an `emu.toml`.
pub fn load_toml(path: &Path) -> Result<Config, SpecError> {
    let cfg = load_unchecked(path)?;
    check_config(&cfg)?;
    Ok(cfg)
}

/// Reads an `emu.toml` and validates each part, leaving the whole-config checks to the caller
/// (who applies the command line's overrides first).
pub(super) fn load_unchecked(path: &Path) -> Result<Config, SpecError> {
    let src = std::fs::read_to_string(path)
        .map_err(|e| SpecError::new(path, None, format!("cannot read the config: {e}")))?;
    parse_unchecked(&src, path)
}

/// Validates the text of an `emu.toml` read from `path`.
pub fn parse_toml(src: &str, path: &Path) -> Result<Config, SpecError> {
    let cfg = parse_unchecked(src, path)?;
    check_config(&cfg)?;
    Ok(cfg)
}

/// The spanned document and the typed file read from it; errors at serde's span.
fn parse_document<T: serde::de::DeserializeOwned>(
    src: &str,
    path: &Path,
) -> Result<(ImDocument<String>, T), SpecError> {
    let at = |e: &toml_edit::de::Error| e.span().map(|s| line_of_offset(src, s.start));
    let doc = ImDocument::parse(src.to_string()).map_err(|e| {
        let e = toml_edit::de::Error::from(e);
        SpecError::new(path, at(&e), e.message().trim().to_string())
    })?;
    let typed = toml_edit::de::from_document(doc.clone())
        .map_err(|e| SpecError::new(path, at(&e), e.message().trim().to_string()))?;
    Ok((doc, typed))
}

fn parse_unchecked(src: &str, path: &Path) -> Result<Config, SpecError> {
    let (doc, file): (_, File) = parse_document(src, path)?;
    let positions = Positions::new(src, &doc);
    let project_dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let project_dir = std::fs::canonicalize(&project_dir).unwrap_or(project_dir);
    let mut cfg = Config::empty(path.to_path_buf(), project_dir);

    if let Some(emu) = &file.emu {
        emu_section::apply(emu, &mut cfg.frontdoor, path, &positions)?;
    }
    for (index, s) in file.service.into_iter().enumerate() {
        let table = Table {
            file: path,
            positions: &positions,
            array: "service",
            index,
        };
        cfg.services
            .push(service::service_spec(s, &table, &cfg.project_dir)?);
    }
    for (index, j) in file.job.into_iter().enumerate() {
        let table = Table {
            file: path,
            positions: &positions,
            array: "job",
            index,
        };
        cfg.jobs.push(job::job_spec(j, &table, &cfg.project_dir)?);
    }
    if let Some(p) = &file.project {
        read_project(p, path, &positions, &mut cfg.project)?;
    }
    cfg.postgres = file.postgres;
    cfg.redis = file.redis;
    cfg.secrets = file.secrets;
    cfg.postgres_lines = positions.section(path, "postgres");
    cfg.redis_lines = positions.section(path, "redis");
    cfg.secret_lines = positions.section(path, "secrets");
    Ok(cfg)
}

/// `[project]`'s values, each checked at its line.
fn read_project(
    p: &schema::ProjectToml,
    path: &Path,
    positions: &Positions<'_>,
    into: &mut ProjectSettings,
) -> Result<(), SpecError> {
    let values = [
        (Field::Id, "id", p.id.clone()),
        (Field::Number, "number", p.number.as_ref().map(|n| n.text())),
        (Field::Region, "region", p.region.clone()),
        (
            Field::ServiceAccount,
            "service_account",
            p.service_account.clone(),
        ),
    ];
    for (field, key, value) in values {
        if let Some(v) = value {
            let line = positions.line(&[Seg::Key("project"), Seg::Key(key)]);
            into.set(field, &v, path, line.unwrap_or(1))?;
        }
    }
    Ok(())
}

/// [`parse_unchecked`] of an in-memory text, for the spec's own tests.
#[cfg(test)]
pub(super) fn parse_unchecked_for_tests(src: &str) -> Config {
    parse_unchecked(src, Path::new("emu.toml")).unwrap()
}

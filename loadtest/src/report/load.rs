//! Reading `report.json` files back: what `compare`, `merge` and `run --baseline` start from.
//!
//! Every error names the file and says what is wrong with it, so the command layer can print it
//! as it is and exit 2.

use std::path::{Path, PathBuf};

use super::{Report, SCHEMA_VERSION};

/// A report that cannot be compared (or merged): which file, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{file}: {message}")]
pub struct InputError {
    pub file: String,
    pub message: String,
}

impl InputError {
    pub fn new(file: &Path, message: impl Into<String>) -> Self {
        InputError {
            file: file.display().to_string(),
            message: message.into(),
        }
    }
}

/// A report and where it came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub path: PathBuf,
    pub report: Report,
}

/// Reads one `report.json` (or the folder holding one), checking its `schema_version` first so
/// an incompatible file gets that message rather than a missing-field one.
pub fn load_report(path: &Path) -> Result<Loaded, InputError> {
    let file = if path.is_dir() {
        path.join("report.json")
    } else {
        path.to_path_buf()
    };
    let text = std::fs::read_to_string(&file)
        .map_err(|e| InputError::new(&file, format!("cannot read it ({e})")))?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        InputError::new(
            &file,
            format!("not JSON ({e}); give a report.json written by `loadtest run`"),
        )
    })?;
    match value.get("schema_version").and_then(|v| v.as_u64()) {
        Some(v) if v == u64::from(SCHEMA_VERSION) => {}
        Some(v) => {
            return Err(InputError::new(
                &file,
                format!(
                    "schema_version {v}, but this loadtest reads report.json schema_version {SCHEMA_VERSION}; compare reports written by the same loadtest version"
                ),
            ))
        }
        None => {
            return Err(InputError::new(
                &file,
                "no schema_version: not a report.json written by `loadtest run`",
            ))
        }
    }
    // The path to the field a type error is about (`timeline[3].second`), not just the error.
    let report: Report = serde_path_to_error::deserialize(value).map_err(|e| {
        InputError::new(
            &file,
            format!(
                "field `{}`: {}; not a valid report.json",
                e.path(),
                e.inner()
            ),
        )
    })?;
    super::check::check(&report).map_err(|(field, why)| {
        InputError::new(
            &file,
            format!("field `{field}`: {why}; not a report.json as `loadtest run` writes it"),
        )
    })?;
    Ok(Loaded { path: file, report })
}

/// A baseline: one report, a run folder (holding `report.json`), or a folder of several runs —
/// `*.json` reports beside each other and/or sub-folders holding a `report.json`.
pub fn load_baseline(path: &Path) -> Result<Vec<Loaded>, InputError> {
    if !path.is_dir() || path.join("report.json").is_file() {
        return Ok(vec![load_report(path)?]);
    }
    let entries = std::fs::read_dir(path)
        .map_err(|e| InputError::new(path, format!("cannot read the folder ({e})")))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter_map(|p| {
            if p.is_dir() {
                let r = p.join("report.json");
                r.is_file().then_some(r)
            } else {
                let name = p.file_name()?.to_str()?;
                (name.ends_with(".json") && name != "compare.json").then_some(p)
            }
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(InputError::new(
            path,
            "no report.json in this folder or its sub-folders; give a report.json or a folder of runs",
        ));
    }
    files.iter().map(|f| load_report(f)).collect()
}

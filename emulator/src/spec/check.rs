//! What spans the whole config, checked once the command line's overrides are in: the stores'
//! sections, unique service and job names, ports taken once, the jobs and secrets that services
//! name. Each error names the line of the second of two clashing things and where the first is.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use super::stores::ConfigIssue;
use super::types::{Config, Origin, PortFrom, SectionLines};
use super::SpecError;

/// Checks what spans services: the stores, unique names and ports, jobs and secrets named.
pub fn check_config(cfg: &Config) -> Result<(), SpecError> {
    check_stores(cfg)?;
    check_services(cfg)?;
    check_jobs(cfg)?;
    check_secrets(cfg)?;
    check_secret_files(cfg)
}

fn check_stores(cfg: &Config) -> Result<(), SpecError> {
    let issue = |r: Result<(), ConfigIssue>, lines: &SectionLines| {
        r.map_err(|issue| {
            let key = issue.key.split_once('.').map_or("", |(_, k)| k);
            if lines.header.is_none() {
                // The file has no such section: the mode came from `--backends`, which is
                // what the error is about.
                return SpecError::new(
                    &cfg.source,
                    None,
                    format!("{issue} (the mode comes from --backends: pick another, or add the section with its url)"),
                );
            }
            SpecError::new(&lines.file, lines.line(key), issue.to_string())
        })
    };
    if let Some(p) = &cfg.postgres {
        issue(p.validate(), &cfg.postgres_lines)?;
    }
    if let Some(r) = &cfg.redis {
        issue(r.validate(), &cfg.redis_lines)?;
    }
    Ok(())
}

/// `file:line` of something written elsewhere, for "the other one is at …".
fn place(origin_file: &Path, line: Option<usize>, from: &Path) -> String {
    match (origin_file == from, line) {
        (true, Some(l)) => format!("line {l}"),
        (false, Some(l)) => format!("{}:{l}", origin_file.display()),
        (_, None) => origin_file.display().to_string(),
    }
}

fn check_services(cfg: &Config) -> Result<(), SpecError> {
    if cfg.services.is_empty() {
        // Nothing to point at but the file itself: its first line.
        return Err(SpecError::new(
            &cfg.source,
            Some(1),
            "no service defined: add a [[service]] table",
        ));
    }
    let mut names: HashMap<&str, &Origin> = HashMap::new();
    for s in &cfg.services {
        if let Some(first) = names.insert(&s.name, &s.origin) {
            return Err(SpecError::new(
                &s.origin.file,
                s.origin.name_line,
                format!(
                    "two services are named {:?} (the other at {}): service names must be unique",
                    s.name,
                    place(&first.file, first.name_line, &s.origin.file)
                ),
            ));
        }
    }
    // Who holds each port: the front door (unless it picks a free one) and each service's own.
    let mut ports: BTreeMap<u16, String> = BTreeMap::new();
    if cfg.frontdoor.port != 0 {
        let who = match &cfg.frontdoor.port_from {
            PortFrom::CommandLine => format!("the front door (--port {})", cfg.frontdoor.port),
            PortFrom::File { line } => format!(
                "the front door ([emu] port, {})",
                place(&cfg.source, *line, &cfg.source)
            ),
            PortFrom::Default => format!(
                "the front door (its default {}; set [emu] port or --port to move it)",
                cfg.frontdoor.port
            ),
        };
        ports.insert(cfg.frontdoor.port, who);
    }
    for s in &cfg.services {
        let Some(p) = s.port else { continue };
        let who = format!(
            "service {:?} ({})",
            s.name,
            place(&s.origin.file, s.origin.port_line, &s.origin.file)
        );
        if let Some(holder) = ports.insert(p, who) {
            return Err(SpecError::new(
                &s.origin.file,
                s.origin.port_line,
                format!(
                    "port {p} of service {:?} is already taken by {holder}: pick another",
                    s.name
                ),
            ));
        }
    }
    Ok(())
}

fn check_jobs(cfg: &Config) -> Result<(), SpecError> {
    let mut jobs: HashMap<&str, &Origin> = HashMap::new();
    for j in &cfg.jobs {
        if let Some(first) = jobs.insert(&j.name, &j.origin) {
            return Err(SpecError::new(
                &j.origin.file,
                j.origin.name_line,
                format!(
                    "two jobs are named {:?} (the other at {}): job names must be unique",
                    j.name,
                    place(&first.file, first.name_line, &j.origin.file)
                ),
            ));
        }
    }
    for s in &cfg.services {
        for d in &s.depends_on {
            if !jobs.contains_key(d.as_str()) {
                return Err(SpecError::new(
                    &s.origin.file,
                    s.origin.depends_on_line,
                    format!(
                        "service {:?} depends on job {d:?}, which is not defined: add a [[job]] named {d:?} or remove it from depends_on",
                        s.name
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Every secret a service or job uses is in the store (`[secrets]`, or `secrets.toml`).
fn check_secrets(cfg: &Config) -> Result<(), SpecError> {
    let users = cfg
        .services
        .iter()
        .map(|s| ("service", &s.name, &s.secrets, &s.origin))
        .chain(
            cfg.jobs
                .iter()
                .map(|j| ("job", &j.name, &j.secrets, &j.origin)),
        );
    for (kind, name, uses, origin) in users {
        for (target, r) in uses.env.iter().chain(&uses.files) {
            if !cfg.secrets.contains_key(&r.name) {
                return Err(SpecError::new(
                    &origin.file,
                    origin.secret_lines.get(target).copied(),
                    missing_secret(kind, name, &r.name, &origin.file),
                ));
            }
        }
    }
    Ok(())
}

/// Every `{ file = "path" }` secret can be read, found before any backend starts and reported at
/// the secret's line (`SecretStore::load` reads them later and would say only the path).
fn check_secret_files(cfg: &Config) -> Result<(), SpecError> {
    for (name, source) in &cfg.secrets {
        let crate::secrets::SecretSource::File { file } = source else {
            continue;
        };
        let path = cfg.project_dir.join(file);
        let problem = match std::fs::File::open(&path).and_then(|f| f.metadata()) {
            Ok(m) if m.is_dir() => Some("it is a directory".to_string()),
            Ok(_) => None,
            Err(e) => Some(e.to_string()),
        };
        if let Some(problem) = problem {
            let lines = &cfg.secret_lines;
            return Err(SpecError::new(
                &lines.file,
                lines.line(name),
                format!(
                    "secret {name:?} reads {}: {problem}: create the file, fix the path (relative to {}), or give the value inline (`{name} = \"VALUE\"`)",
                    path.display(),
                    cfg.project_dir.display()
                ),
            ));
        }
    }
    Ok(())
}

/// What to do about a secret not in the store: a YAML's secrets live in `./secrets.toml` (where
/// emu was started), an emu.toml's in its `[secrets]`; either way, the line to add.
fn missing_secret(kind: &str, user: &str, secret: &str, file: &std::path::Path) -> String {
    let bare = !secret.is_empty()
        && secret
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    let key = if bare {
        secret.to_string()
    } else {
        format!("{secret:?}")
    };
    let yaml = file.extension().is_some_and(|e| e == "yaml" || e == "yml");
    let store = if yaml {
        "./secrets.toml (beside where you run emu)"
    } else {
        "[secrets]"
    };
    format!(
        "{kind} {user} uses secret {secret:?}, which is not in {store}: add it under [secrets] as `{key} = \"VALUE\"` (or `{key} = {{ file = \"path\" }}`)"
    )
}

//! `emu.toml`: one or more `[[service]]`, plus `[emu]`, `[postgres]` and `[redis]`.
//! Unknown keys are errors: a typo must not silently change behaviour.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::duration::DurationField;
use super::locate::{line_of_offset, toml_key_line};
use super::{
    check_config, validate_service, ColdStartDelay, Config, FrontdoorSettings, Probe, ProbeAction,
    RawService, SpecError,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    emu: Option<EmuSection>,
    #[serde(default)]
    service: Vec<ServiceToml>,
    postgres: Option<super::stores::PostgresConfig>,
    redis: Option<super::stores::RedisConfig>,
    #[serde(default)]
    secrets: BTreeMap<String, crate::secrets::SecretSource>,
    #[serde(default)]
    job: Vec<JobToml>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JobToml {
    name: String,
    command: Command,
    tasks: Option<u32>,
    parallelism: Option<u32>,
    max_retries: Option<u32>,
    timeout: Option<DurationField>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    secrets: BTreeMap<String, String>,
    database: Option<String>,
    database_env: Option<String>,
    redis_env: Option<String>,
    workdir: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EmuSection {
    port: Option<u16>,
    host: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Command {
    Shell(String),
    Argv(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceToml {
    name: String,
    revision: Option<String>,
    command: Option<Command>,
    upstream: Option<String>,
    image: Option<String>,
    concurrency: Option<i64>,
    min_instances: Option<i64>,
    max_instances: Option<i64>,
    timeout: Option<DurationField>,
    container_port: Option<i64>,
    port: Option<i64>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    startup_probe: Option<ProbeToml>,
    liveness_probe: Option<ProbeToml>,
    readiness_probe: Option<ProbeToml>,
    cold_start: Option<ColdStartToml>,
    queue_timeout: Option<DurationField>,
    shutdown_grace: Option<DurationField>,
    autoscaling: Option<AutoscalingToml>,
    database: Option<String>,
    database_env: Option<String>,
    redis_env: Option<String>,
    workdir: Option<String>,
    /// `ENV = "secret:version"` or `"/path/file" = "secret:version"`, as gcloud's --set-secrets.
    #[serde(default)]
    secrets: BTreeMap<String, String>,
    /// Jobs that must succeed before this service starts.
    #[serde(default)]
    depends_on: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProbeToml {
    http_path: Option<String>,
    tcp: Option<bool>,
    initial_delay: Option<DurationField>,
    period: Option<DurationField>,
    timeout: Option<DurationField>,
    failure_threshold: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ColdStartToml {
    Fixed(DurationField),
    Dist {
        p50: DurationField,
        p99: DurationField,
    },
}

/// Autoscaler settings; each maps to the Knative annotation of the same meaning.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AutoscalingToml {
    profile: Option<String>,
    window: Option<DurationField>,
    target: Option<f64>,
    target_utilization_percentage: Option<f64>,
    panic_window_percentage: Option<f64>,
    panic_threshold_percentage: Option<f64>,
    max_scale_up_rate: Option<f64>,
    max_scale_down_rate: Option<f64>,
    scale_to_zero_grace_period: Option<DurationField>,
    scale_to_zero_pod_retention_period: Option<DurationField>,
    scale_down_delay: Option<DurationField>,
    initial_scale: Option<u32>,
}

/// A `secrets.toml` beside a service YAML: just the `[secrets]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretsFile {
    #[serde(default)]
    secrets: BTreeMap<String, crate::secrets::SecretSource>,
}

/// Reads the `[secrets]` of a `secrets.toml` (for `emu up -f service.yaml`).
pub fn load_secrets_file(
    path: &Path,
) -> Result<BTreeMap<String, crate::secrets::SecretSource>, SpecError> {
    let src = std::fs::read_to_string(path)
        .map_err(|e| SpecError::new(path, None, format!("cannot read the secrets file: {e}")))?;
    let f: SecretsFile = toml::from_str(&src).map_err(|e| {
        let line = e.span().map(|s| line_of_offset(&src, s.start));
        SpecError::new(path, line, e.message().trim().to_string())
    })?;
    Ok(f.secrets)
}

/// Reads and validates an `emu.toml`.
pub fn load_toml(path: &Path) -> Result<Config, SpecError> {
    let src = std::fs::read_to_string(path)
        .map_err(|e| SpecError::new(path, None, format!("cannot read the config: {e}")))?;
    parse_toml(&src, path)
}

/// Validates the text of an `emu.toml` read from `path`.
pub fn parse_toml(src: &str, path: &Path) -> Result<Config, SpecError> {
    let file: File = toml::from_str(src).map_err(|e| {
        let line = e.span().map(|s| line_of_offset(src, s.start));
        SpecError::new(path, line, e.message().trim().to_string())
    })?;
    let project_dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| std::path::PathBuf::from("."));
    let project_dir = std::fs::canonicalize(&project_dir).unwrap_or(project_dir);

    let mut frontdoor = FrontdoorSettings::default();
    if let Some(emu) = &file.emu {
        if let Some(p) = emu.port {
            frontdoor.port = p;
        }
        if let Some(h) = &emu.host {
            frontdoor.host = h.parse().map_err(|_| {
                let line = src
                    .lines()
                    .position(|l| l.trim_start().starts_with("host"))
                    .map(|i| i + 1);
                SpecError::new(
                    path,
                    line,
                    format!("host {h:?} is not an IP address: use 127.0.0.1 or ::1"),
                )
            })?;
        }
    }

    let mut services = Vec::new();
    for (i, s) in file.service.into_iter().enumerate() {
        let at = |key: &str| toml_key_line(src, "service", i, key);
        let dur = |field: &str,
                   d: &Option<DurationField>|
         -> Result<Option<std::time::Duration>, SpecError> {
            match d {
                None => Ok(None),
                Some(d) => d
                    .to_duration()
                    .map(Some)
                    .map_err(|m| SpecError::new(path, at(field), format!("{field}: {m}"))),
            }
        };
        let raw = RawService {
            revision: s.revision.clone(),
            command: s.command.as_ref().map(|c| match c {
                Command::Argv(v) => v.clone(),
                Command::Shell(line) => vec!["/bin/sh".into(), "-c".into(), format!("exec {line}")],
            }),
            upstream: s.upstream.clone(),
            image: s.image.clone(),
            concurrency: s.concurrency,
            min_instances: s.min_instances,
            max_instances: s.max_instances,
            timeout: dur("timeout", &s.timeout)?,
            container_port: s.container_port,
            port: s.port,
            env: s.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            startup_probe: probe(&s.startup_probe, "startup_probe", path, &at, true)?,
            liveness_probe: probe(&s.liveness_probe, "liveness_probe", path, &at, false)?,
            readiness_probe: probe(&s.readiness_probe, "readiness_probe", path, &at, false)?,
            cold_start: match &s.cold_start {
                None => ColdStartDelay::None,
                Some(ColdStartToml::Fixed(d)) => {
                    ColdStartDelay::Fixed(d.to_duration().map_err(|m| {
                        SpecError::new(path, at("cold_start"), format!("cold_start: {m}"))
                    })?)
                }
                Some(ColdStartToml::Dist { p50, p99 }) => {
                    let f = |d: &DurationField| {
                        d.to_duration().map_err(|m| {
                            SpecError::new(path, at("cold_start"), format!("cold_start: {m}"))
                        })
                    };
                    ColdStartDelay::LogNormal {
                        p50: f(p50)?,
                        p99: f(p99)?,
                    }
                }
            },
            queue_timeout: dur("queue_timeout", &s.queue_timeout)?,
            shutdown_grace: dur("shutdown_grace", &s.shutdown_grace)?,
            autoscaling_profile: s.autoscaling.as_ref().and_then(|a| a.profile.clone()),
            autoscaling: match &s.autoscaling {
                None => BTreeMap::new(),
                Some(a) => autoscaling_annotations(a, path, &at)?,
            },
            database: s.database.clone(),
            database_env: s.database_env.clone(),
            redis_env: s.redis_env.clone(),
            workdir: s.workdir.as_ref().map(|w| project_dir.join(w)),
            secrets: secret_use(&s.secrets, path, &at)?,
            depends_on: s.depends_on.clone(),
            name: s.name,
        };
        services.push(validate_service(raw, path, &at, &[])?);
    }

    let issue = [
        file.postgres.as_ref().map(|p| p.validate()),
        file.redis.as_ref().map(|r| r.validate()),
    ]
    .into_iter()
    .flatten()
    .find_map(Result::err);
    if let Some(issue) = issue {
        let (section, key) = issue
            .key
            .split_once('.')
            .unwrap_or((issue.key.as_str(), ""));
        let line = section_key_line(src, section, key);
        return Err(SpecError::new(path, line, issue.to_string()));
    }

    let mut jobs = Vec::new();
    for (i, j) in file.job.into_iter().enumerate() {
        let at = |key: &str| toml_key_line(src, "job", i, key);
        jobs.push(job_spec(j, path, &project_dir, &at)?);
    }

    let cfg = Config {
        source: path.to_path_buf(),
        project_dir,
        frontdoor,
        services,
        postgres: file.postgres,
        redis: file.redis,
        secrets: file.secrets,
        jobs,
        warnings: Vec::new(),
    };
    check_config(&cfg)?;
    Ok(cfg)
}

fn secret_use(
    map: &BTreeMap<String, String>,
    path: &Path,
    at: &dyn Fn(&str) -> Option<usize>,
) -> Result<crate::secrets::SecretUse, SpecError> {
    let mut uses = crate::secrets::SecretUse::default();
    for (target, reference) in map {
        if super::limits::RESERVED_ENV.contains(&target.as_str()) {
            return Err(SpecError::new(
                path,
                at(target),
                format!("The following reserved env names were provided: {target}. These values are automatically set by the system."),
            ));
        }
        uses.add(target, reference)
            .map_err(|m| SpecError::new(path, at(target), format!("secrets: {m}")))?;
    }
    Ok(uses)
}

fn job_spec(
    j: JobToml,
    path: &Path,
    project_dir: &Path,
    at: &dyn Fn(&str) -> Option<usize>,
) -> Result<super::JobSpec, SpecError> {
    let err = |field: &str, msg: String| SpecError::new(path, at(field), msg);
    if !super::is_dns_label(&j.name) {
        return Err(err("name", format!("job name {:?} is not valid: lowercase letters, digits and '-', starting with a letter", j.name)));
    }
    let command = match j.command {
        Command::Argv(v) if !v.is_empty() && !v[0].trim().is_empty() => v,
        Command::Shell(line) if !line.trim().is_empty() => {
            vec!["/bin/sh".into(), "-c".into(), format!("exec {line}")]
        }
        _ => {
            return Err(err(
                "command",
                "command is empty: give the program and its arguments".into(),
            ))
        }
    };
    let tasks = j.tasks.unwrap_or(1);
    if !(1..=10_000).contains(&tasks) {
        return Err(err(
            "tasks",
            format!("tasks = {tasks} is out of range: Cloud Run allows 1 to 10000"),
        ));
    }
    let max_retries = j.max_retries.unwrap_or(3);
    if max_retries > 10 {
        return Err(err(
            "max_retries",
            format!("max_retries = {max_retries} is out of range: Cloud Run allows 0 to 10"),
        ));
    }
    let timeout = match &j.timeout {
        None => std::time::Duration::from_secs(600),
        Some(d) => d
            .to_duration()
            .map_err(|m| err("timeout", format!("timeout: {m}")))?,
    };
    if timeout.is_zero() || timeout > std::time::Duration::from_secs(168 * 3600) {
        return Err(err(
            "timeout",
            "task timeout is out of range: Cloud Run allows 1 s to 168 h".into(),
        ));
    }
    for k in j.env.keys() {
        if super::limits::RESERVED_ENV.contains(&k.as_str()) || k.starts_with("CLOUD_RUN_") {
            return Err(err(
                k,
                format!("{k} is set by Cloud Run for a job's tasks: remove it from env"),
            ));
        }
    }
    Ok(super::JobSpec {
        name: j.name,
        command,
        tasks,
        parallelism: j.parallelism.unwrap_or(0),
        max_retries,
        timeout,
        env: j.env.into_iter().collect(),
        secrets: secret_use(&j.secrets, path, at)?,
        database: j.database,
        database_env: j.database_env.unwrap_or_else(|| "DATABASE_URL".into()),
        redis_env: j.redis_env.unwrap_or_else(|| "REDIS_URL".into()),
        workdir: j.workdir.map(|w| project_dir.join(w)),
    })
}

/// The line of `key` in the `[section]` table (or of the header when the key is not there).
fn section_key_line(src: &str, section: &str, key: &str) -> Option<usize> {
    let lines: Vec<&str> = src.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.trim() == format!("[{section}]"))?;
    for (i, l) in lines.iter().enumerate().skip(start + 1) {
        let t = l.trim_start();
        if t.starts_with('[') {
            break;
        }
        if !key.is_empty()
            && t.strip_prefix(key)
                .is_some_and(|r| r.trim_start().starts_with('='))
        {
            return Some(i + 1);
        }
    }
    Some(start + 1)
}

fn probe(
    p: &Option<ProbeToml>,
    field: &str,
    path: &Path,
    at: &dyn Fn(&str) -> Option<usize>,
    startup: bool,
) -> Result<Option<Probe>, SpecError> {
    let Some(p) = p else { return Ok(None) };
    let action = match (&p.http_path, p.tcp) {
        (Some(_), Some(true)) => {
            return Err(SpecError::new(
                path,
                at(field),
                format!("{field}: give either http_path or tcp = true, not both"),
            ))
        }
        (Some(path), _) => ProbeAction::Http { path: path.clone() },
        (None, _) => ProbeAction::Tcp,
    };
    let mut probe = if startup {
        Probe::explicit_startup(action)
    } else {
        Probe::explicit_liveness(action)
    };
    let d = |x: &Option<DurationField>,
             name: &str|
     -> Result<Option<std::time::Duration>, SpecError> {
        x.as_ref()
            .map(|d| {
                d.to_duration()
                    .map_err(|m| SpecError::new(path, at(field), format!("{field}.{name}: {m}")))
            })
            .transpose()
    };
    if let Some(v) = d(&p.initial_delay, "initial_delay")? {
        probe.initial_delay = v;
    }
    if let Some(v) = d(&p.period, "period")? {
        probe.period = v;
    }
    if let Some(v) = d(&p.timeout, "timeout")? {
        probe.timeout = v;
    }
    if let Some(v) = p.failure_threshold {
        probe.failure_threshold = v;
    }
    Ok(Some(probe))
}

fn autoscaling_annotations(
    a: &AutoscalingToml,
    path: &Path,
    at: &dyn Fn(&str) -> Option<usize>,
) -> Result<BTreeMap<String, String>, SpecError> {
    let mut m = BTreeMap::new();
    let k = |s: &str| format!("autoscaling.knative.dev/{s}");
    let dur = |d: &DurationField, name: &str| -> Result<String, SpecError> {
        d.to_duration()
            .map(|d| format!("{}s", d.as_secs_f64()))
            .map_err(|e| SpecError::new(path, at(name), format!("autoscaling.{name}: {e}")))
    };
    if let Some(d) = &a.window {
        m.insert(k("window"), dur(d, "window")?);
    }
    if let Some(v) = a.target {
        m.insert(k("target"), v.to_string());
    }
    if let Some(v) = a.target_utilization_percentage {
        m.insert(k("target-utilization-percentage"), v.to_string());
    }
    if let Some(v) = a.panic_window_percentage {
        m.insert(k("panic-window-percentage"), v.to_string());
    }
    if let Some(v) = a.panic_threshold_percentage {
        m.insert(k("panic-threshold-percentage"), v.to_string());
    }
    if let Some(v) = a.max_scale_up_rate {
        m.insert("emu.dev/max-scale-up-rate".into(), v.to_string());
    }
    if let Some(v) = a.max_scale_down_rate {
        m.insert("emu.dev/max-scale-down-rate".into(), v.to_string());
    }
    if let Some(d) = &a.scale_to_zero_grace_period {
        m.insert(
            "emu.dev/scale-to-zero-grace-period".into(),
            dur(d, "scale_to_zero_grace_period")?,
        );
    }
    if let Some(d) = &a.scale_to_zero_pod_retention_period {
        m.insert(
            k("scale-to-zero-pod-retention-period"),
            dur(d, "scale_to_zero_pod_retention_period")?,
        );
    }
    if let Some(d) = &a.scale_down_delay {
        m.insert(k("scale-down-delay"), dur(d, "scale_down_delay")?);
    }
    if let Some(v) = a.initial_scale {
        m.insert(k("initial-scale"), v.to_string());
    }
    Ok(m)
}

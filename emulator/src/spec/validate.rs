//! One service's fields, as either reader found them ([`RawService`]), validated into a
//! [`ServiceSpec`]. Errors name the line of the field at fault: the readers pass a locator that
//! maps a [`Field`] to the line where it is written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::types::{Origin, Probe, ProbeAction, Protocol, RunnerSpec, ServiceSpec};
use super::{limits, parse_duration, ColdStartDelay, SpecError};
use crate::model::{overrides_from_annotations, AutoscalerConfig, ModelError, Profile};
use crate::secrets::SecretUse;

/// A place in a service's spec that an error can be about. Each reader maps it to the line where
/// it is written (or the nearest enclosing one): emu.toml by key, a YAML by its Cloud Run path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field<'a> {
    Name,
    /// An env var, by name.
    Env(&'a str),
    Concurrency,
    MinInstances,
    MaxInstances,
    Timeout,
    ContainerPort,
    /// The container port's name (`http1`, `h2c`).
    Protocol,
    Port,
    Upstream,
    Command,
    StartupProbe,
    LivenessProbe,
    ReadinessProbe,
    ColdStart,
    QueueTimeout,
    Profile,
    /// An autoscaler setting, by its annotation (`autoscaling.knative.dev/window`).
    Autoscaling(&'a str),
    Database,
    DatabaseEnv,
    RedisEnv,
    /// A secret, by target (env name or file path).
    Secret(&'a str),
    DependsOn,
}

/// Maps a field to its line.
pub(crate) type Locator<'a> = &'a dyn Fn(Field<'_>) -> Option<usize>;

/// The spec's fields before validation, shared by the TOML and YAML readers.
#[derive(Debug, Clone, Default)]
pub(crate) struct RawService {
    pub name: String,
    pub revision: Option<String>,
    pub command: Option<Vec<String>>,
    pub upstream: Option<String>,
    pub image: Option<String>,
    pub concurrency: Option<i64>,
    pub min_instances: Option<i64>,
    pub max_instances: Option<i64>,
    pub timeout: Option<Duration>,
    pub container_port: Option<i64>,
    pub port: Option<i64>,
    /// The container port's name (`http1` or `h2c`).
    pub protocol: Option<String>,
    pub env: Vec<(String, String)>,
    pub startup_probe: Option<Probe>,
    pub liveness_probe: Option<Probe>,
    pub readiness_probe: Option<Probe>,
    pub cold_start: ColdStartDelay,
    pub queue_timeout: Option<Duration>,
    pub shutdown_grace: Option<Duration>,
    pub autoscaling_profile: Option<String>,
    pub autoscaling: BTreeMap<String, String>,
    pub database: Option<String>,
    pub database_env: Option<String>,
    pub redis_env: Option<String>,
    pub redis_host_env: Option<(String, String)>,
    pub workdir: Option<PathBuf>,
    pub secrets: SecretUse,
    pub depends_on: Vec<String>,
}

/// Builds errors at a field's line.
struct At<'a> {
    file: &'a Path,
    at: Locator<'a>,
}

impl At<'_> {
    fn err(&self, field: Field<'_>, message: String) -> SpecError {
        SpecError::new(self.file, (self.at)(field), message)
    }
}

/// Validates one service. `extra_command` is what `emu up -f FILE -- CMD…` gives.
pub(crate) fn validate_service(
    raw: RawService,
    file: &Path,
    at: Locator<'_>,
    extra_command: &[String],
) -> Result<ServiceSpec, SpecError> {
    let here = At { file, at };
    if !is_dns_label(&raw.name) {
        return Err(here.err(
            Field::Name,
            format!(
                "service name {:?} is not valid: use 1 to 49 lowercase letters, digits or '-', starting with a letter and not ending with '-' (as Cloud Run requires)",
                raw.name
            ),
        ));
    }
    check_env(&raw.env, &here)?;
    let (concurrency, min_instances, max_instances) = instance_bounds(&raw, &here)?;
    let (timeout, container_port, port) = timeout_and_ports(&raw, &here)?;
    let protocol = match raw.protocol.as_deref() {
        None => Protocol::Http1,
        Some(name) => Protocol::from_name(name).ok_or_else(|| {
            here.err(
                Field::Protocol,
                format!("protocol {name:?} is not one Cloud Run speaks to a container: use \"http1\" (the default) or \"h2c\" (HTTP/2 end to end, for gRPC)"),
            )
        })?,
    };
    let runner = runner(&raw, extra_command, &here)?;
    let (startup_probe, liveness_probe, readiness_probe) = probes(&raw, container_port, &here)?;
    check_timing(&raw, &here)?;
    check_backend_names(&raw, &here)?;
    let profile = raw
        .autoscaling_profile
        .clone()
        .unwrap_or_else(|| "cloud-run".into());
    if profile != "cloud-run" && profile != "knative" {
        return Err(here.err(
            Field::Profile,
            format!("autoscaling profile {profile:?} is unknown: use \"cloud-run\" or \"knative\""),
        ));
    }
    let autoscaler = resolve_autoscaler(
        &profile,
        concurrency,
        min_instances,
        max_instances,
        &raw.autoscaling,
    )
    .map_err(|(key, msg)| here.err(autoscaler_field(&key), msg))?;
    let origin = origin_of(&raw, file, at);
    let revision = raw
        .revision
        .unwrap_or_else(|| format!("{}-00001-emu", raw.name));
    Ok(ServiceSpec {
        name: raw.name,
        revision,
        runner,
        concurrency,
        min_instances,
        max_instances,
        timeout,
        container_port,
        port,
        protocol,
        env: raw.env,
        startup_probe,
        liveness_probe,
        readiness_probe,
        cold_start: raw.cold_start,
        queue_timeout: raw.queue_timeout,
        shutdown_grace: raw.shutdown_grace.unwrap_or(limits::SHUTDOWN_GRACE),
        autoscaling_profile: profile,
        autoscaling: raw.autoscaling,
        autoscaler,
        database: raw.database,
        database_env: raw.database_env.unwrap_or_else(|| "DATABASE_URL".into()),
        redis_env: raw.redis_env.unwrap_or_else(|| "REDIS_URL".into()),
        redis_host_env: raw.redis_host_env,
        workdir: raw.workdir,
        secrets: raw.secrets,
        depends_on: raw.depends_on,
        origin,
    })
}

/// The lines the whole-config checks need later.
fn origin_of(raw: &RawService, file: &Path, at: Locator<'_>) -> Origin {
    Origin {
        file: file.to_path_buf(),
        name_line: at(Field::Name),
        port_line: at(Field::Port),
        depends_on_line: at(Field::DependsOn),
        secret_lines: raw
            .secrets
            .env
            .iter()
            .chain(&raw.secrets.files)
            .filter_map(|(target, _)| at(Field::Secret(target)).map(|l| (target.clone(), l)))
            .collect(),
    }
}

/// The request timeout, the container's port and the service's own front door port.
fn timeout_and_ports(
    raw: &RawService,
    here: &At<'_>,
) -> Result<(Duration, u16, Option<u16>), SpecError> {
    let timeout = raw.timeout.unwrap_or(limits::DEFAULT_TIMEOUT);
    if timeout.is_zero() || timeout > limits::MAX_TIMEOUT {
        return Err(here.err(
            Field::Timeout,
            format!(
                "request timeout {} is out of range: Cloud Run allows 1 s to 3600 s",
                humantime::format_duration(timeout)
            ),
        ));
    }
    let container_port = match raw.container_port {
        None => limits::DEFAULT_CONTAINER_PORT,
        Some(p) => port_in_range(p).ok_or_else(|| {
            here.err(
                Field::ContainerPort,
                format!("container port {p} is out of range: use 1 to 65535"),
            )
        })?,
    };
    let port = match raw.port {
        None => None,
        Some(p) => Some(port_in_range(p).ok_or_else(|| {
            here.err(
                Field::Port,
                format!("port {p} is out of range: use 1 to 65535"),
            )
        })?),
    };
    Ok((timeout, container_port, port))
}

/// Checks the probes; returns (startup, liveness, readiness), the startup probe Cloud Run's
/// default when none is written. A probe port that names the containerPort means the instance's
/// own port: emu gives each instance a free PORT, and the probe follows it.
fn probes(
    raw: &RawService,
    container_port: u16,
    here: &At<'_>,
) -> Result<(Probe, Option<Probe>, Option<Probe>), SpecError> {
    let own_port = |mut p: Probe| {
        if p.port == Some(container_port) {
            p.port = None;
        }
        p
    };
    let startup_probe = raw
        .startup_probe
        .clone()
        .unwrap_or_else(Probe::default_startup);
    check_probe(
        &startup_probe,
        "startup_probe",
        true,
        Field::StartupProbe,
        here,
    )?;
    if let Some(p) = &raw.liveness_probe {
        check_probe(p, "liveness_probe", false, Field::LivenessProbe, here)?;
    }
    if let Some(p) = &raw.readiness_probe {
        check_probe(p, "readiness_probe", false, Field::ReadinessProbe, here)?;
    }
    Ok((
        own_port(startup_probe),
        raw.liveness_probe.clone().map(own_port),
        raw.readiness_probe.clone().map(own_port),
    ))
}

fn port_in_range(p: i64) -> Option<u16> {
    u16::try_from(p).ok().filter(|p| *p != 0)
}

fn check_env(env: &[(String, String)], here: &At<'_>) -> Result<(), SpecError> {
    let reserved: Vec<&str> = env
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| limits::RESERVED_ENV.contains(k))
        .collect();
    if let Some(first) = reserved.first() {
        return Err(here.err(
            Field::Env(first),
            format!(
                "The following reserved env names were provided: {}. These values are automatically set by the system. Remove them from the service's env.",
                reserved.join(", ")
            ),
        ));
    }
    for (k, _) in env {
        if k.is_empty() || k.contains('=') || k.contains('\0') {
            return Err(here.err(
                Field::Env(k),
                format!("env name {k:?} is not valid: names may not be empty or contain '='"),
            ));
        }
    }
    Ok(())
}

/// Concurrency and min/max instances, each within Cloud Run's range.
fn instance_bounds(raw: &RawService, here: &At<'_>) -> Result<(u32, u32, u32), SpecError> {
    let concurrency = match raw.concurrency {
        None => limits::DEFAULT_CONCURRENCY,
        Some(c) if (1..=i64::from(limits::MAX_CONCURRENCY)).contains(&c) => c as u32,
        Some(c) => {
            return Err(here.err(
                Field::Concurrency,
                format!("concurrency = {c} is out of range: Cloud Run allows 1 to 1000 requests per instance"),
            ))
        }
    };
    let min_instances = match raw.min_instances {
        None => 0,
        Some(m) if (0..=1000).contains(&m) => m as u32,
        Some(m) => {
            return Err(here.err(
                Field::MinInstances,
                format!("min instances = {m} is out of range: use 0 to 1000"),
            ))
        }
    };
    let max_instances = match raw.max_instances {
        None => limits::DEFAULT_MAX_INSTANCES.max(min_instances),
        Some(m) if (1..=1000).contains(&m) => m as u32,
        Some(m) => {
            return Err(here.err(
                Field::MaxInstances,
                format!("max instances = {m} is out of range: use 1 to 1000"),
            ))
        }
    };
    if min_instances > max_instances {
        return Err(here.err(
            Field::MinInstances,
            format!("min instances ({min_instances}) is above max instances ({max_instances}): lower min or raise max"),
        ));
    }
    Ok((concurrency, min_instances, max_instances))
}

/// What runs an instance: an upstream, the command after `--`, the spec's command, or an image.
fn runner(
    raw: &RawService,
    extra_command: &[String],
    here: &At<'_>,
) -> Result<RunnerSpec, SpecError> {
    if let Some(url) = &raw.upstream {
        if raw.command.is_some() || !extra_command.is_empty() {
            return Err(here.err(
                Field::Upstream,
                "a service has either `upstream` (an app you run yourself) or a command, not both"
                    .into(),
            ));
        }
        let uri: http::Uri = url.parse().map_err(|_| {
            here.err(
                Field::Upstream,
                format!("upstream {url:?} is not a URL: write it like \"http://127.0.0.1:3000\""),
            )
        })?;
        if uri.scheme_str() != Some("http") || uri.host().is_none() {
            return Err(here.err(
                Field::Upstream,
                format!("upstream {url:?} must be an http:// URL with a host, like \"http://127.0.0.1:3000\""),
            ));
        }
        return Ok(RunnerSpec::Upstream { url: uri });
    }
    if !extra_command.is_empty() {
        return Ok(RunnerSpec::Process {
            command: extra_command.to_vec(),
        });
    }
    if let Some(command) = &raw.command {
        if command.is_empty() || command[0].trim().is_empty() {
            return Err(here.err(Field::Command, "command is empty: give the program and its arguments, like [\"python3\", \"app.py\"]".into()));
        }
        return Ok(RunnerSpec::Process {
            command: command.clone(),
        });
    }
    if let Some(image) = &raw.image {
        return Ok(RunnerSpec::Container {
            image: image.clone(),
        });
    }
    Err(here.err(
        Field::Name,
        format!(
            "service {:?} has nothing to run: give `command = [...]`, `upstream = \"http://…\"` or `image = \"…\"` (with `emu up -f service.yaml -- CMD ARGS…`, the command after `--`)",
            raw.name
        ),
    ))
}

fn check_timing(raw: &RawService, here: &At<'_>) -> Result<(), SpecError> {
    if let ColdStartDelay::LogNormal { p50, p99 } = raw.cold_start {
        if p99 < p50 {
            return Err(here.err(
                Field::ColdStart,
                "cold_start p99 is below its p50: p99 must be at least p50".into(),
            ));
        }
    }
    if raw.queue_timeout.is_some_and(|q| q.is_zero()) {
        return Err(here.err(
            Field::QueueTimeout,
            "queue_timeout must be above zero".into(),
        ));
    }
    Ok(())
}

/// The env names that carry the backends' URLs, and the service's own database name.
fn check_backend_names(raw: &RawService, here: &At<'_>) -> Result<(), SpecError> {
    for (env_name, field) in [
        (&raw.database_env, Field::DatabaseEnv),
        (&raw.redis_env, Field::RedisEnv),
    ] {
        let Some(env_name) = env_name else { continue };
        if limits::RESERVED_ENV.contains(&env_name.as_str()) || env_name.is_empty() {
            return Err(here.err(
                field,
                format!("{env_name:?} cannot carry a backend URL: pick another env name"),
            ));
        }
    }
    if let Some(db) = &raw.database {
        if db.is_empty()
            || !db.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            || db.len() > 63
        {
            return Err(here.err(
                Field::Database,
                format!(
                    "database name {db:?} is not valid: use letters, digits and '_' (at most 63)"
                ),
            ));
        }
    }
    Ok(())
}

fn check_probe(
    p: &Probe,
    name: &str,
    startup: bool,
    field: Field<'_>,
    here: &At<'_>,
) -> Result<(), SpecError> {
    let fail = |msg: String| Err(here.err(field, format!("{name}: {msg}")));
    if p.failure_threshold == 0 {
        return fail("failure threshold must be at least 1".into());
    }
    if p.period.is_zero() || p.timeout.is_zero() {
        return fail("period and timeout must be above zero".into());
    }
    if p.timeout > p.period && !p.is_default {
        return fail(format!(
            "timeout ({}) may not exceed period ({}), as in Cloud Run",
            humantime::format_duration(p.timeout),
            humantime::format_duration(p.period)
        ));
    }
    let budget = p.period.checked_mul(p.failure_threshold);
    if startup && !p.is_default && budget.is_none_or(|b| b > limits::STARTUP_PROBE_BUDGET) {
        return fail(format!(
            "failure threshold × period = {} exceeds Cloud Run's 240 s: lower one of them",
            budget.map_or_else(
                || "more than 240s".to_string(),
                |b| humantime::format_duration(b).to_string()
            )
        ));
    }
    if let ProbeAction::Http { path } = &p.action {
        if !path.starts_with('/') {
            return fail(format!("HTTP path {path:?} must start with '/'"));
        }
    }
    Ok(())
}

/// The field an autoscaler error is about: the annotation it came from, or min/max instances.
fn autoscaler_field(key: &str) -> Field<'_> {
    // The autoscaler's own field names, by the annotation that sets each.
    const ANNOTATIONS: [(&str, &str); 13] = [
        (
            "target_utilization",
            "autoscaling.knative.dev/target-utilization-percentage",
        ),
        ("stable_window", "autoscaling.knative.dev/window"),
        (
            "panic_window_percentage",
            "autoscaling.knative.dev/panic-window-percentage",
        ),
        (
            "panic_threshold_percentage",
            "autoscaling.knative.dev/panic-threshold-percentage",
        ),
        (
            "scale_to_zero_retention",
            "autoscaling.knative.dev/scale-to-zero-pod-retention-period",
        ),
        (
            "scale_down_delay",
            "autoscaling.knative.dev/scale-down-delay",
        ),
        ("initial_scale", "autoscaling.knative.dev/initial-scale"),
        (
            "activation_scale",
            "autoscaling.knative.dev/activation-scale",
        ),
        ("target", "autoscaling.knative.dev/target"),
        ("max_scale_up_rate", "emu.dev/max-scale-up-rate"),
        ("max_scale_down_rate", "emu.dev/max-scale-down-rate"),
        ("scale_to_zero_grace", "emu.dev/scale-to-zero-grace-period"),
        ("tick_interval", "autoscaling"),
    ];
    match key {
        "profile" => Field::Profile,
        "min_scale" => Field::MinInstances,
        "max_scale" => Field::MaxInstances,
        "container_concurrency" => Field::Concurrency,
        _ => Field::Autoscaling(
            ANNOTATIONS
                .iter()
                .find(|(field, _)| *field == key)
                .map_or(key, |(_, annotation)| annotation),
        ),
    }
}

/// The autoscaler for a service: the profile's defaults, then Knative's annotations (and emu's
/// own `emu.dev/` knobs for settings Knative keeps cluster-wide), then min and max instances.
/// An error carries the annotation key (or the autoscaler's field) it is about.
pub fn resolve_autoscaler(
    profile: &str,
    concurrency: u32,
    min_instances: u32,
    max_instances: u32,
    settings: &BTreeMap<String, String>,
) -> Result<AutoscalerConfig, (String, String)> {
    let profile: Profile = profile
        .parse()
        .map_err(|e: ModelError| ("profile".to_string(), e.to_string()))?;
    let mut cfg = AutoscalerConfig::for_profile(profile, concurrency);
    let overrides =
        overrides_from_annotations(settings).map_err(|e| (e.key.clone(), e.to_string()))?;
    overrides.apply(&mut cfg);
    let num = |key: &str| -> Result<Option<f64>, (String, String)> {
        settings
            .get(key)
            .map(|v| {
                v.trim()
                    .parse::<f64>()
                    .map_err(|_| (key.to_string(), format!("{key}: {v:?} is not a number")))
            })
            .transpose()
    };
    if let Some(v) = num("emu.dev/max-scale-up-rate")? {
        cfg.max_scale_up_rate = v;
    }
    if let Some(v) = num("emu.dev/max-scale-down-rate")? {
        cfg.max_scale_down_rate = v;
    }
    if let Some(v) = settings.get("emu.dev/scale-to-zero-grace-period") {
        cfg.scale_to_zero_grace =
            parse_duration(v).map_err(|e| ("emu.dev/scale-to-zero-grace-period".to_string(), e))?;
    }
    cfg.min_scale = min_instances;
    cfg.max_scale = max_instances;
    cfg.validate().map_err(|e| {
        let key = match &e {
            ModelError::Config { field, .. } => field.to_string(),
            _ => "autoscaling".to_string(),
        };
        (key, e.to_string())
    })?;
    Ok(cfg)
}

/// Cloud Run service names: lowercase letters, digits and '-', starting with a letter, < 50 chars.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 49
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && !s.ends_with('-')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

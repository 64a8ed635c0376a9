//! Service specs: `emu.toml` or a Cloud Run service YAML → validated [`Config`].
//!
//! Three steps, as in linkerd's `env.rs`: parse (serde, unknown keys are errors in emu.toml),
//! validate into types that cannot be invalid, then the rest of emu builds from those. Every error
//! names the file and line and says what to do; the binary maps [`SpecError`] to exit code 2.

mod duration;
mod locate;
pub mod stores;
mod toml_file;
mod yaml;

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::model::coldstart::ColdStartDelay;
use crate::model::{overrides_from_annotations, AutoscalerConfig, Profile};
pub use duration::parse_duration;
pub use toml_file::{load_secrets_file, load_toml, parse_toml};
pub use yaml::{load_yaml, parse_yaml};

/// Cloud Run's limits and defaults (cloud-run-behavior.md §1, §2).
pub mod limits {
    use std::time::Duration;
    pub const DEFAULT_CONCURRENCY: u32 = 80;
    pub const MAX_CONCURRENCY: u32 = 1000;
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);
    pub const MAX_TIMEOUT: Duration = Duration::from_secs(3600);
    /// Cloud Run's default max instances for a new service.
    pub const DEFAULT_MAX_INSTANCES: u32 = 100;
    pub const DEFAULT_CONTAINER_PORT: u16 = 8080;
    pub const DEFAULT_FRONTDOOR_PORT: u16 = 8080;
    pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
    /// The env names Cloud Run sets itself and refuses in a spec.
    pub const RESERVED_ENV: [&str; 4] = ["PORT", "K_SERVICE", "K_REVISION", "K_CONFIGURATION"];
    /// `failureThreshold × periodSeconds` may not exceed this for a startup probe.
    pub const STARTUP_PROBE_BUDGET: Duration = Duration::from_secs(240);
}

/// A config error: where (file and line) and what to do. Exit code 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

impl SpecError {
    pub fn new(file: &Path, line: Option<usize>, message: impl Into<String>) -> Self {
        SpecError {
            file: file.to_path_buf(),
            line,
            message: message.into(),
        }
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.file.display(), line, self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

impl std::error::Error for SpecError {}

/// Everything `emu up` runs: the front door's settings and the services behind it.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the config came from (a file, or the built-in demo).
    pub source: PathBuf,
    /// The folder that holds `.emu/` (the config's folder, or the current one).
    pub project_dir: PathBuf,
    pub frontdoor: FrontdoorSettings,
    pub services: Vec<ServiceSpec>,
    /// The `[postgres]` section (None: no PostgreSQL unless `--backends` asks for one).
    pub postgres: Option<stores::PostgresConfig>,
    /// The `[redis]` section (None: no Redis unless `--backends` asks for one).
    pub redis: Option<stores::RedisConfig>,
    /// The local secret store (`[secrets]`).
    pub secrets: BTreeMap<String, crate::secrets::SecretSource>,
    /// Jobs (`[[job]]` or a Cloud Run Job YAML).
    pub jobs: Vec<JobSpec>,
    /// Things the spec says that emu does not model, listed once at start.
    pub warnings: Vec<String>,
}

/// A Cloud Run job: tasks that run to completion (a migration, a batch).
#[derive(Debug, Clone, PartialEq)]
pub struct JobSpec {
    pub name: String,
    pub command: Vec<String>,
    /// `taskCount`: how many tasks an execution runs (1..=10000).
    pub tasks: u32,
    /// How many tasks run at once (0 = all).
    pub parallelism: u32,
    /// Retries per failed task (Cloud Run's default 3, at most 10).
    pub max_retries: u32,
    /// Per-task timeout (Cloud Run's default 10 minutes, at most 168 h).
    pub timeout: Duration,
    pub env: Vec<(String, String)>,
    pub secrets: crate::secrets::SecretUse,
    pub database: Option<String>,
    pub database_env: String,
    pub redis_env: String,
    pub workdir: Option<PathBuf>,
}

/// The front door's listener and logging.
#[derive(Debug, Clone, PartialEq)]
pub struct FrontdoorSettings {
    pub host: IpAddr,
    pub port: u16,
}

impl Default for FrontdoorSettings {
    fn default() -> Self {
        FrontdoorSettings {
            host: IpAddr::from([127, 0, 0, 1]),
            port: limits::DEFAULT_FRONTDOOR_PORT,
        }
    }
}

/// One validated service: what Cloud Run would deploy as a revision.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceSpec {
    /// DNS-label name (`K_SERVICE`).
    pub name: String,
    /// Revision name (`K_REVISION`), `<name>-00001-<suffix>` unless the spec names one.
    pub revision: String,
    pub runner: RunnerSpec,
    /// Per-instance concurrency (`containerConcurrency`), 1..=1000.
    pub concurrency: u32,
    pub min_instances: u32,
    pub max_instances: u32,
    /// Request timeout (`timeoutSeconds`); includes a cold start.
    pub timeout: Duration,
    /// The port the container listens on (`containerPort`); process instances get a free one.
    pub container_port: u16,
    /// An extra front door port for this service alone (besides routing by host on the main one).
    pub port: Option<u16>,
    pub env: Vec<(String, String)>,
    pub startup_probe: Probe,
    pub liveness_probe: Option<Probe>,
    /// While failing, the instance gets no new requests (it is not restarted).
    pub readiness_probe: Option<Probe>,
    /// Extra delay standing for image pull and container start.
    pub cold_start: ColdStartDelay,
    /// How long a request may wait for a free slot before 429; default max(10 s, 3.5 × avg startup).
    pub queue_timeout: Option<Duration>,
    /// SIGTERM → SIGKILL grace.
    pub shutdown_grace: Duration,
    /// Autoscaler profile name (`cloud-run` or `knative`).
    pub autoscaling_profile: String,
    /// Autoscaler settings in Knative's annotation form (`autoscaling.knative.dev/window` → `60s`).
    pub autoscaling: BTreeMap<String, String>,
    /// The autoscaler these resolve to (profile defaults, then the settings, then min/max).
    pub autoscaler: AutoscalerConfig,
    /// A database of its own, created at start.
    pub database: Option<String>,
    /// Names of the env vars that carry the backends' URLs.
    pub database_env: String,
    pub redis_env: String,
    /// Working directory for process instances.
    pub workdir: Option<PathBuf>,
    /// Secrets as env vars and files.
    pub secrets: crate::secrets::SecretUse,
    /// Jobs that must succeed before this service starts (migrations).
    pub depends_on: Vec<String>,
}

/// How an instance is run.
#[derive(Debug, Clone, PartialEq)]
pub enum RunnerSpec {
    /// A local command, one process per instance.
    Process { command: Vec<String> },
    /// An app the user runs themselves at one address; instances are modelled in front of it.
    Upstream { url: http::Uri },
    /// A container image, one container per instance (needs a Docker engine).
    Container { image: String },
}

/// A startup or liveness probe, as Cloud Run takes them.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    pub action: ProbeAction,
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub failure_threshold: u32,
    /// True for Cloud Run's implicit TCP startup probe, which emu polls quickly within its budget.
    pub is_default: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeAction {
    /// Connect to PORT.
    Tcp,
    /// GET this path on PORT; 200..=399 passes.
    Http { path: String },
}

impl Probe {
    /// Cloud Run's default startup probe: TCP on PORT, 240 s timeout and period, threshold 1.
    pub fn default_startup() -> Probe {
        Probe {
            action: ProbeAction::Tcp,
            initial_delay: Duration::ZERO,
            period: Duration::from_secs(240),
            timeout: Duration::from_secs(240),
            failure_threshold: 1,
            is_default: true,
        }
    }

    /// Defaults for an explicitly written startup probe (Cloud Run: period 10 s, timeout 1 s, threshold 3).
    pub fn explicit_startup(action: ProbeAction) -> Probe {
        Probe {
            action,
            initial_delay: Duration::ZERO,
            period: Duration::from_secs(10),
            timeout: Duration::from_secs(1),
            failure_threshold: 3,
            is_default: false,
        }
    }

    /// Defaults for a liveness probe (period 10 s, timeout 1 s, threshold 3).
    pub fn explicit_liveness(action: ProbeAction) -> Probe {
        Probe::explicit_startup(action)
    }
}

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
    pub workdir: Option<PathBuf>,
    pub secrets: crate::secrets::SecretUse,
    pub depends_on: Vec<String>,
}

/// Finds the line of a field, for error messages.
pub(crate) type Locator<'a> = &'a dyn Fn(&str) -> Option<usize>;

/// Validates one service. `at(field)` names the line of a field (its key as written in the file).
pub(crate) fn validate_service(
    raw: RawService,
    file: &Path,
    at: Locator<'_>,
    extra_command: &[String],
) -> Result<ServiceSpec, SpecError> {
    let err = |field: &str, msg: String| SpecError::new(file, at(field), msg);

    if !is_dns_label(&raw.name) {
        return Err(err(
            "name",
            format!(
                "service name {:?} is not valid: use 1 to 49 lowercase letters, digits or '-', starting with a letter and not ending with '-' (as Cloud Run requires)",
                raw.name
            ),
        ));
    }

    let reserved: Vec<&str> = raw
        .env
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| limits::RESERVED_ENV.contains(k))
        .collect();
    if let Some(first) = reserved.first() {
        return Err(err(
            first,
            format!(
                "The following reserved env names were provided: {}. These values are automatically set by the system. Remove them from the service's env.",
                reserved.join(", ")
            ),
        ));
    }
    for (k, _) in &raw.env {
        if k.is_empty() || k.contains('=') || k.contains('\0') {
            return Err(err(
                k,
                format!("env name {k:?} is not valid: names may not be empty or contain '='"),
            ));
        }
    }

    let concurrency = match raw.concurrency {
        None => limits::DEFAULT_CONCURRENCY,
        Some(c) if (1..=i64::from(limits::MAX_CONCURRENCY)).contains(&c) => c as u32,
        Some(c) => {
            return Err(err(
                "concurrency",
                format!("concurrency = {c} is out of range: Cloud Run allows 1 to 1000 requests per instance"),
            ))
        }
    };
    let min_instances = match raw.min_instances {
        None => 0,
        Some(m) if (0..=1000).contains(&m) => m as u32,
        Some(m) => {
            return Err(err(
                "min_instances",
                format!("min instances = {m} is out of range: use 0 to 1000"),
            ))
        }
    };
    let max_instances = match raw.max_instances {
        None => limits::DEFAULT_MAX_INSTANCES.max(min_instances),
        Some(m) if (1..=1000).contains(&m) => m as u32,
        Some(m) => {
            return Err(err(
                "max_instances",
                format!("max instances = {m} is out of range: use 1 to 1000"),
            ))
        }
    };
    if min_instances > max_instances {
        return Err(err(
            "min_instances",
            format!("min instances ({min_instances}) is above max instances ({max_instances}): lower min or raise max"),
        ));
    }
    let timeout = raw.timeout.unwrap_or(limits::DEFAULT_TIMEOUT);
    if timeout.is_zero() || timeout > limits::MAX_TIMEOUT {
        return Err(err(
            "timeout",
            format!(
                "request timeout {} is out of range: Cloud Run allows 1 s to 3600 s",
                humantime::format_duration(timeout)
            ),
        ));
    }
    let container_port = match raw.container_port {
        None => limits::DEFAULT_CONTAINER_PORT,
        Some(p) if (1..=65535).contains(&p) => p as u16,
        Some(p) => {
            return Err(err(
                "container_port",
                format!("container port {p} is out of range: use 1 to 65535"),
            ))
        }
    };
    let port = match raw.port {
        None => None,
        Some(p) if (1..=65535).contains(&p) => Some(p as u16),
        Some(p) => {
            return Err(err(
                "port",
                format!("port {p} is out of range: use 1 to 65535"),
            ))
        }
    };

    let mut given = 0;
    given += usize::from(raw.command.is_some() || !extra_command.is_empty());
    given += usize::from(raw.upstream.is_some());
    let runner = if let Some(url) = raw.upstream {
        if raw.command.is_some() || !extra_command.is_empty() {
            return Err(err(
                "upstream",
                "a service has either `upstream` (an app you run yourself) or a command, not both"
                    .into(),
            ));
        }
        let uri: http::Uri = url.parse().map_err(|_| {
            err(
                "upstream",
                format!("upstream {url:?} is not a URL: write it like \"http://127.0.0.1:3000\""),
            )
        })?;
        if uri.scheme_str() != Some("http") || uri.host().is_none() {
            return Err(err(
                "upstream",
                format!("upstream {url:?} must be an http:// URL with a host, like \"http://127.0.0.1:3000\""),
            ));
        }
        RunnerSpec::Upstream { url: uri }
    } else if !extra_command.is_empty() {
        RunnerSpec::Process {
            command: extra_command.to_vec(),
        }
    } else if let Some(command) = raw.command {
        if command.is_empty() || command[0].trim().is_empty() {
            return Err(err("command", "command is empty: give the program and its arguments, like [\"python3\", \"app.py\"]".into()));
        }
        RunnerSpec::Process { command }
    } else if let Some(image) = raw.image {
        RunnerSpec::Container { image }
    } else {
        return Err(err(
            "name",
            format!(
                "service {:?} has nothing to run: give `command = [...]`, `upstream = \"http://…\"` or `image = \"…\"` (with `emu up -f service.yaml -- CMD ARGS…`, the command after `--`)",
                raw.name
            ),
        ));
    };
    let _ = given;

    let startup_probe = raw.startup_probe.unwrap_or_else(Probe::default_startup);
    check_probe(&startup_probe, "startup_probe", true, &err)?;
    if let Some(p) = &raw.liveness_probe {
        check_probe(p, "liveness_probe", false, &err)?;
    }
    if let Some(p) = &raw.readiness_probe {
        check_probe(p, "readiness_probe", false, &err)?;
    }

    if let ColdStartDelay::LogNormal { p50, p99 } = raw.cold_start {
        if p99 < p50 {
            return Err(err(
                "cold_start",
                "cold_start p99 is below its p50: p99 must be at least p50".into(),
            ));
        }
    }
    if let Some(q) = raw.queue_timeout {
        if q.is_zero() {
            return Err(err(
                "queue_timeout",
                "queue_timeout must be above zero".into(),
            ));
        }
    }
    let profile = raw
        .autoscaling_profile
        .unwrap_or_else(|| "cloud-run".into());
    if profile != "cloud-run" && profile != "knative" {
        return Err(err(
            "profile",
            format!("autoscaling profile {profile:?} is unknown: use \"cloud-run\" or \"knative\""),
        ));
    }
    for env_name in [&raw.database_env, &raw.redis_env].into_iter().flatten() {
        if limits::RESERVED_ENV.contains(&env_name.as_str()) || env_name.is_empty() {
            return Err(err(
                "database_env",
                format!("{env_name:?} cannot carry a backend URL: pick another env name"),
            ));
        }
    }
    if let Some(db) = &raw.database {
        if db.is_empty()
            || !db.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            || db.len() > 63
        {
            return Err(err(
                "database",
                format!(
                    "database name {db:?} is not valid: use letters, digits and '_' (at most 63)"
                ),
            ));
        }
    }

    let autoscaler = resolve_autoscaler(
        &profile,
        concurrency,
        min_instances,
        max_instances,
        &raw.autoscaling,
    )
    .map_err(|(key, msg)| {
        // The locators find `autoscaling.knative.dev/window` as the annotation in YAML and
        // as `window` in emu.toml.
        SpecError::new(file, at(&key), msg)
    })?;
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
        env: raw.env,
        startup_probe,
        liveness_probe: raw.liveness_probe,
        readiness_probe: raw.readiness_probe,
        cold_start: raw.cold_start,
        queue_timeout: raw.queue_timeout,
        shutdown_grace: raw.shutdown_grace.unwrap_or(limits::SHUTDOWN_GRACE),
        autoscaling_profile: profile,
        autoscaling: raw.autoscaling,
        autoscaler,
        database: raw.database,
        database_env: raw.database_env.unwrap_or_else(|| "DATABASE_URL".into()),
        redis_env: raw.redis_env.unwrap_or_else(|| "REDIS_URL".into()),
        workdir: raw.workdir,
        secrets: raw.secrets,
        depends_on: raw.depends_on,
    })
}

fn check_probe(
    p: &Probe,
    field: &str,
    startup: bool,
    err: &dyn Fn(&str, String) -> SpecError,
) -> Result<(), SpecError> {
    if p.failure_threshold == 0 {
        return Err(err(
            field,
            format!("{field}: failure threshold must be at least 1"),
        ));
    }
    if p.period.is_zero() || p.timeout.is_zero() {
        return Err(err(
            field,
            format!("{field}: period and timeout must be above zero"),
        ));
    }
    if p.timeout > p.period && !p.is_default {
        return Err(err(
            field,
            format!(
                "{field}: timeout ({}) may not exceed period ({}), as in Cloud Run",
                humantime::format_duration(p.timeout),
                humantime::format_duration(p.period)
            ),
        ));
    }
    if startup && !p.is_default && p.period * p.failure_threshold > limits::STARTUP_PROBE_BUDGET {
        return Err(err(
            field,
            format!(
                "{field}: failure threshold × period = {} exceeds Cloud Run's 240 s: lower one of them",
                humantime::format_duration(p.period * p.failure_threshold)
            ),
        ));
    }
    if let ProbeAction::Http { path } = &p.action {
        if !path.starts_with('/') {
            return Err(err(
                field,
                format!("{field}: HTTP path {path:?} must start with '/'"),
            ));
        }
    }
    Ok(())
}

/// The autoscaler for a service: the profile's defaults, then Knative's annotations (and emu's
/// own `emu.dev/` knobs for settings Knative keeps cluster-wide), then min and max instances.
/// An error carries the annotation key it is about.
pub fn resolve_autoscaler(
    profile: &str,
    concurrency: u32,
    min_instances: u32,
    max_instances: u32,
    settings: &BTreeMap<String, String>,
) -> Result<AutoscalerConfig, (String, String)> {
    let profile: Profile = profile
        .parse()
        .map_err(|e: crate::model::ModelError| ("profile".to_string(), e.to_string()))?;
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
            crate::model::ModelError::Config { field, .. } => field.to_string(),
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

/// The built-in demo: `emu demo-app` as service `demo` (concurrency 80, min 0, max 10).
pub fn demo_config(exe: &Path, project_dir: &Path) -> Config {
    let autoscaler = resolve_autoscaler("cloud-run", 80, 0, 10, &BTreeMap::new())
        .unwrap_or_else(|_| AutoscalerConfig::for_profile(Profile::CloudRun, 80));
    let service = ServiceSpec {
        autoscaler,
        name: "demo".into(),
        revision: "demo-00001-emu".into(),
        runner: RunnerSpec::Process {
            command: vec![exe.display().to_string(), "demo-app".into()],
        },
        concurrency: 80,
        min_instances: 0,
        max_instances: 10,
        timeout: limits::DEFAULT_TIMEOUT,
        container_port: limits::DEFAULT_CONTAINER_PORT,
        port: None,
        env: Vec::new(),
        startup_probe: Probe::default_startup(),
        liveness_probe: None,
        readiness_probe: None,
        cold_start: ColdStartDelay::None,
        queue_timeout: None,
        shutdown_grace: limits::SHUTDOWN_GRACE,
        autoscaling_profile: "cloud-run".into(),
        autoscaling: BTreeMap::new(),
        database: None,
        database_env: "DATABASE_URL".into(),
        redis_env: "REDIS_URL".into(),
        workdir: None,
        secrets: Default::default(),
        depends_on: Vec::new(),
    };
    Config {
        source: PathBuf::from("(built-in demo)"),
        project_dir: project_dir.to_path_buf(),
        frontdoor: FrontdoorSettings::default(),
        services: vec![service],
        // The demo stands for a service with Cloud SQL and Memorystore: real ones when they can
        // be had (Docker, or installed servers), else it runs without them.
        postgres: Some(stores::PostgresConfig::default()),
        redis: Some(stores::RedisConfig::default()),
        secrets: BTreeMap::new(),
        jobs: Vec::new(),
        warnings: Vec::new(),
    }
}

/// Checks what spans services: unique names and ports.
pub fn check_config(cfg: &Config) -> Result<(), SpecError> {
    let mut names = std::collections::HashSet::new();
    let mut ports = std::collections::HashSet::new();
    ports.insert(cfg.frontdoor.port);
    for s in &cfg.services {
        if !names.insert(&s.name) {
            return Err(SpecError::new(
                &cfg.source,
                None,
                format!(
                    "two services are named {:?}: service names must be unique",
                    s.name
                ),
            ));
        }
        if let Some(p) = s.port {
            if !ports.insert(p) {
                return Err(SpecError::new(
                    &cfg.source,
                    None,
                    format!("port {p} of service {:?} is already taken by the front door or another service: pick another", s.name),
                ));
            }
        }
    }
    if cfg.services.is_empty() {
        return Err(SpecError::new(
            &cfg.source,
            None,
            "no service defined: add a [[service]] table",
        ));
    }
    let mut jobs = std::collections::HashSet::new();
    for j in &cfg.jobs {
        if !jobs.insert(j.name.as_str()) {
            return Err(SpecError::new(
                &cfg.source,
                None,
                format!("two jobs are named {:?}: job names must be unique", j.name),
            ));
        }
    }
    for s in &cfg.services {
        for d in &s.depends_on {
            if !jobs.contains(d.as_str()) {
                return Err(SpecError::new(
                    &cfg.source,
                    None,
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

#[cfg(test)]
mod tests;

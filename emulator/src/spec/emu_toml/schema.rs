//! emu.toml as serde reads it. Unknown keys are errors: a typo must not silently change
//! behaviour. Values are checked afterwards (`service.rs`, `job.rs`), with the line of each key
//! from [`super::positions`].

use std::collections::BTreeMap;

use serde::Deserialize;

use super::super::duration::DurationField;
use super::super::stores::{PostgresConfig, RedisConfig};
use crate::secrets::SecretSource;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct File {
    pub emu: Option<EmuSection>,
    #[serde(default)]
    pub service: Vec<ServiceToml>,
    pub postgres: Option<PostgresConfig>,
    pub redis: Option<RedisConfig>,
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretSource>,
    #[serde(default)]
    pub job: Vec<JobToml>,
    pub project: Option<ProjectToml>,
}

/// `[project]`: the identity the metadata server answers with.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ProjectToml {
    pub id: Option<String>,
    /// `number = 123456789012` or `number = "123456789012"`.
    pub number: Option<NumberOrText>,
    pub region: Option<String>,
    pub service_account: Option<String>,
}

/// A value written as a TOML integer or a string.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum NumberOrText {
    Number(i64),
    Text(String),
}

impl NumberOrText {
    pub fn text(&self) -> String {
        match self {
            NumberOrText::Number(n) => n.to_string(),
            NumberOrText::Text(t) => t.clone(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct JobToml {
    pub name: String,
    pub command: Command,
    pub tasks: Option<u32>,
    pub parallelism: Option<u32>,
    pub max_retries: Option<u32>,
    pub timeout: Option<DurationField>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    pub database: Option<String>,
    pub database_env: Option<String>,
    pub redis_env: Option<String>,
    pub workdir: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EmuSection {
    pub port: Option<u16>,
    pub host: Option<String>,
    /// `"fast"` (default) or `"hyper"`.
    pub frontdoor: Option<String>,
    pub frontdoor_threads: Option<usize>,
    pub header_timeout: Option<DurationField>,
    pub idle_timeout: Option<DurationField>,
    pub max_connections: Option<i64>,
    pub max_connections_per_client: Option<i64>,
}

/// `command = "python3 app.py"` (run by a shell) or `command = ["python3", "app.py"]`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum Command {
    Shell(String),
    Argv(Vec<String>),
}

impl Command {
    /// The argv to run: a shell line runs as `/bin/sh -c "exec LINE"`.
    pub fn argv(&self) -> Vec<String> {
        match self {
            Command::Argv(v) => v.clone(),
            Command::Shell(line) => vec!["/bin/sh".into(), "-c".into(), format!("exec {line}")],
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ServiceToml {
    pub name: String,
    pub revision: Option<String>,
    pub command: Option<Command>,
    pub upstream: Option<String>,
    pub image: Option<String>,
    pub concurrency: Option<i64>,
    pub min_instances: Option<i64>,
    pub max_instances: Option<i64>,
    pub timeout: Option<DurationField>,
    pub container_port: Option<i64>,
    pub port: Option<i64>,
    /// `http1` (default) or `h2c`.
    pub protocol: Option<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    pub startup_probe: Option<ProbeToml>,
    pub liveness_probe: Option<ProbeToml>,
    pub readiness_probe: Option<ProbeToml>,
    pub cold_start: Option<ColdStartToml>,
    pub queue_timeout: Option<DurationField>,
    pub shutdown_grace: Option<DurationField>,
    pub autoscaling: Option<AutoscalingToml>,
    pub database: Option<String>,
    pub database_env: Option<String>,
    pub redis_env: Option<String>,
    pub workdir: Option<String>,
    /// `ENV = "secret:version"` or `"/path/file" = "secret:version"`, as gcloud's --set-secrets.
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    /// Jobs that must succeed before this service starts.
    #[serde(default)]
    pub depends_on: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ProbeToml {
    pub http_path: Option<String>,
    pub tcp: Option<bool>,
    pub initial_delay: Option<DurationField>,
    pub period: Option<DurationField>,
    pub timeout: Option<DurationField>,
    pub failure_threshold: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum ColdStartToml {
    Fixed(DurationField),
    Dist {
        p50: DurationField,
        p99: DurationField,
    },
}

/// Autoscaler settings; each maps to the Knative annotation of the same meaning.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AutoscalingToml {
    pub profile: Option<String>,
    pub window: Option<DurationField>,
    pub target: Option<f64>,
    pub target_utilization_percentage: Option<f64>,
    pub panic_window_percentage: Option<f64>,
    pub panic_threshold_percentage: Option<f64>,
    pub max_scale_up_rate: Option<f64>,
    pub max_scale_down_rate: Option<f64>,
    pub scale_to_zero_grace_period: Option<DurationField>,
    pub scale_to_zero_pod_retention_period: Option<DurationField>,
    pub scale_down_delay: Option<DurationField>,
    pub initial_scale: Option<u32>,
}

/// A `secrets.toml` beside a service YAML: just the `[secrets]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SecretsFile {
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretSource>,
}

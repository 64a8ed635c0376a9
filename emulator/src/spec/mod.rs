//! Service specs: `emu.toml` or a Cloud Run service YAML → validated [`Config`].
//!
//! Four steps, as in linkerd's `env.rs`: parse (with every node's position, unknown keys are
//! errors in emu.toml), validate each service and job into types that cannot be invalid, apply
//! the command line's overrides (`--port`, `--host`, `--backends`), then check what spans the
//! whole config (unique names and ports, the stores, jobs and secrets named). Every error names
//! the file and line and says what to do; the binary maps [`SpecError`] to exit code 2.

mod check;
mod cloud_run_yaml;
mod demo;
mod duration;
mod emu_toml;
mod load;
mod overrides;
pub mod project;
pub mod stores;
mod types;
mod validate;

use std::fmt;
use std::path::{Path, PathBuf};

pub use crate::model::coldstart::ColdStartDelay;
pub use check::check_config;
pub use cloud_run_yaml::{load_yaml, parse_yaml};
pub use demo::demo_config;
pub use duration::parse_duration;
pub use emu_toml::{load_secrets_file, load_toml, parse_toml};
pub use load::{load, ConfigSource};
pub use overrides::Overrides;
pub use project::ProjectSettings;
pub use types::{
    Config, FrontdoorSettings, JobSpec, Origin, PortFrom, Probe, ProbeAction, Protocol, RunnerSpec,
    SectionLines, ServiceSpec,
};
pub use validate::{is_dns_label, resolve_autoscaler};

/// Cloud Run's limits and defaults (its documented quotas and service defaults).
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
    /// The front door's bound on a request head's arrival.
    pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
    /// The front door's bound on a connection with no request in flight.
    pub const IDLE_TIMEOUT: Duration = Duration::from_secs(600);
    pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
    /// The env names Cloud Run sets itself and refuses in a spec.
    pub const RESERVED_ENV: [&str; 4] = ["PORT", "K_SERVICE", "K_REVISION", "K_CONFIGURATION"];
    /// `failureThreshold × periodSeconds` may not exceed this for a startup probe.
    pub const STARTUP_PROBE_BUDGET: Duration = Duration::from_secs(240);
    /// A job's tasks per execution (`taskCount`).
    pub const MAX_TASKS: u32 = 10_000;
    /// A job task's retries (`maxRetries`).
    pub const MAX_RETRIES: u32 = 10;
    /// A job task's default timeout.
    pub const DEFAULT_TASK_TIMEOUT: Duration = Duration::from_secs(600);
    /// A job task's longest timeout (168 h).
    pub const MAX_TASK_TIMEOUT: Duration = Duration::from_secs(168 * 3600);
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

#[cfg(test)]
mod tests;

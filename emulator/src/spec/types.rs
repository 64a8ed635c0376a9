//! The validated config: what the rest of emu builds from. Nothing here can be invalid; each
//! service and job also remembers where it was written ([`Origin`]), so that the checks that
//! span the whole config can still name a line.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::limits;
use super::project::ProjectSettings;
use super::stores::{PostgresConfig, RedisConfig};
use super::ColdStartDelay;
use crate::model::AutoscalerConfig;
use crate::secrets::{SecretSource, SecretUse};

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
    pub postgres: Option<PostgresConfig>,
    /// The `[redis]` section (None: no Redis unless `--backends` asks for one).
    pub redis: Option<RedisConfig>,
    /// The local secret store (`[secrets]`).
    pub secrets: BTreeMap<String, SecretSource>,
    /// Jobs (`[[job]]` or a Cloud Run Job YAML).
    pub jobs: Vec<JobSpec>,
    /// Things the spec says that emu does not model, listed once at start.
    pub warnings: Vec<String>,
    /// The project, region and service account the metadata server answers with.
    pub project: ProjectSettings,
    /// Where `[postgres]`'s keys are written.
    pub postgres_lines: SectionLines,
    /// Where `[redis]`'s keys are written.
    pub redis_lines: SectionLines,
    /// Where `[secrets]`' entries are written (emu.toml, or a `secrets.toml` beside a YAML).
    pub secret_lines: SectionLines,
}

impl Config {
    /// A config with nothing in it yet, read from `source`.
    pub(crate) fn empty(source: PathBuf, project_dir: PathBuf) -> Config {
        Config {
            source,
            project_dir,
            frontdoor: FrontdoorSettings::default(),
            services: Vec::new(),
            postgres: None,
            redis: None,
            secrets: BTreeMap::new(),
            jobs: Vec::new(),
            warnings: Vec::new(),
            project: ProjectSettings::default(),
            postgres_lines: SectionLines::default(),
            redis_lines: SectionLines::default(),
            secret_lines: SectionLines::default(),
        }
    }
}

/// Where a section's keys are written (`[postgres]`, `[redis]`, `[secrets]`), for the errors
/// found only once the command line's overrides are in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SectionLines {
    pub file: PathBuf,
    /// The section's header (`[postgres]`).
    pub header: Option<usize>,
    /// Each key's line.
    pub keys: BTreeMap<String, usize>,
}

impl SectionLines {
    /// The line of `key`, else of the section's header.
    pub fn line(&self, key: &str) -> Option<usize> {
        self.keys.get(key).copied().or(self.header)
    }
}

/// Where a service or job was written: for the errors found only when the whole config is put
/// together (two services with one name, a port taken twice, a job that is not defined).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    pub file: PathBuf,
    /// The line that names it (`name = "api"`, `metadata.name`).
    pub name_line: Option<usize>,
    /// The line of its own front door port (`port = 9001`, `emu.dev/port`).
    pub port_line: Option<usize>,
    /// The line of `depends_on` (`emu.dev/depends-on`).
    pub depends_on_line: Option<usize>,
    /// The line of each secret it uses, by target (env name or file path).
    pub secret_lines: BTreeMap<String, usize>,
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
    pub secrets: SecretUse,
    pub database: Option<String>,
    pub database_env: String,
    pub redis_env: String,
    pub workdir: Option<PathBuf>,
    pub origin: Origin,
}

/// Who chose the front door's port, so a clash can say which setting to change.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum PortFrom {
    /// Cloud Run's 8080: nobody set it.
    #[default]
    Default,
    /// `[emu] port` in emu.toml, at this line.
    File { line: Option<usize> },
    /// `--port` on the command line.
    CommandLine,
}

/// The front door's listener.
#[derive(Debug, Clone, PartialEq)]
pub struct FrontdoorSettings {
    pub host: IpAddr,
    pub port: u16,
    pub port_from: PortFrom,
    /// The HTTP/1.1 fast path on (`[emu] frontdoor = "fast"`, the default), or every
    /// connection on hyper's general path (`"hyper"`, for A/B benchmarks).
    pub fast_path: bool,
    /// Event loops, one per core unless set (`[emu] frontdoor_threads`); 0 serves on the main
    /// runtime.
    pub loops: Option<usize>,
    /// How long a request head may take to arrive, from the connection's start or from the
    /// first byte of a later request (`[emu] header_timeout`): a client that trickles its head
    /// (slowloris) is closed instead of holding a connection for ever.
    pub header_timeout: Duration,
    /// How long a connection with no request in flight stays open (`[emu] idle_timeout`).
    pub idle_timeout: Duration,
    /// Connections open at once (`[emu] max_connections`); over it a new one is answered 503
    /// and closed. None: derived from the open-file limit, so `accept` never runs out of file
    /// descriptors for everyone.
    pub max_connections: Option<usize>,
    /// Connections one client address may hold (`[emu] max_connections_per_client`); over it
    /// that client's new ones are answered 429 and closed, and other clients still get in.
    /// None: three quarters of the connection cap.
    pub max_connections_per_client: Option<usize>,
}

impl Default for FrontdoorSettings {
    fn default() -> Self {
        FrontdoorSettings {
            host: IpAddr::from([127, 0, 0, 1]),
            port: limits::DEFAULT_FRONTDOOR_PORT,
            port_from: PortFrom::Default,
            fast_path: true,
            loops: None,
            header_timeout: limits::HEADER_TIMEOUT,
            idle_timeout: limits::IDLE_TIMEOUT,
            max_connections: None,
            max_connections_per_client: None,
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
    /// What the instance speaks: HTTP/1.1, or cleartext HTTP/2 end to end (`ports[].name: h2c`).
    pub protocol: Protocol,
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
    /// (host var, port var) that get the local Redis's host and port: a YAML's `REDIS_HOST` /
    /// `REDIS_PORT`, which name Memorystore's private address in production.
    pub redis_host_env: Option<(String, String)>,
    /// Working directory for process instances.
    pub workdir: Option<PathBuf>,
    /// Secrets as env vars and files.
    pub secrets: SecretUse,
    /// Jobs that must succeed before this service starts (migrations).
    pub depends_on: Vec<String>,
    /// Where it was written.
    pub origin: Origin,
}

/// The protocol between the front door and an instance. Cloud Run sends HTTP/1.1 unless the
/// container port is named `h2c`; then requests reach the instance as cleartext HTTP/2 (what
/// gRPC streaming needs), whatever the client spoke to the front door.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Http1,
    H2c,
}

impl Protocol {
    /// From a port name (`http1`, `h2c`); anything else is no protocol Cloud Run knows.
    pub fn from_name(name: &str) -> Option<Protocol> {
        match name {
            "http1" => Some(Protocol::Http1),
            "h2c" => Some(Protocol::H2c),
            _ => None,
        }
    }
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
    /// A port other than the instance's own (`tcpSocket.port` / `httpGet.port` naming anything
    /// but the containerPort, which means the instance's PORT); None probes PORT.
    pub port: Option<u16>,
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
            port: None,
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
            port: None,
        }
    }

    /// How long a start may take before this (startup) probe fails it: the initial delay, then
    /// `failure_threshold` periods (Cloud Run's default probe: 240 s).
    pub fn budget(&self) -> Duration {
        self.initial_delay + self.period.saturating_mul(self.failure_threshold)
    }

    /// Defaults for a liveness probe (period 10 s, timeout 1 s, threshold 3).
    pub fn explicit_liveness(action: ProbeAction) -> Probe {
        Probe::explicit_startup(action)
    }
}

//! `emu up`'s composition root: [`run`] builds everything from one validated [`Config`] —
//! backends, secrets, the metadata server, the jobs services depend on, the front door, each
//! service's supervisor and autoscaler, the admin endpoints — serves until `shutdown`, then
//! stops it all in order (front door, instances, the metadata server, then backends). The
//! command line only parses arguments, loads the config, binds ([`bind`]) and maps [`UpError`]
//! to an exit code.

mod listen;
mod prepare;
mod serve;

use std::net::SocketAddr;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::backends::{BackendError, Backends};
use crate::secrets::{SecretError, SecretStore};
use crate::spec::Config;
use crate::state::{self, BackendsState};
use crate::telemetry::{LogFormat, LogTarget, RequestLogger};
pub use listen::{bind, Listeners};
use serve::ServeParts;

/// What `emu up` takes besides the config: how requests are logged, how long to drain.
#[derive(Debug, Clone)]
pub struct UpOptions {
    pub request_log: LogTarget,
    pub log_format: LogFormat,
    /// How long in-flight requests may take to finish at shutdown.
    pub drain: Duration,
    /// How long the timeline (`/_emu/events`) keeps entries.
    pub timeline_retention: Duration,
}

impl Default for UpOptions {
    fn default() -> Self {
        UpOptions {
            request_log: LogTarget::Off,
            log_format: LogFormat::Text,
            drain: Duration::from_secs(30),
            timeline_retention: crate::timeline::DEFAULT_RETENTION,
        }
    }
}

/// Why `emu up` could not run. [`UpError::exit_code`]: 2 for what the user must change in the
/// config or the command line, 1 for what failed at run time.
#[derive(Debug, thiserror::Error)]
pub enum UpError {
    #[error("cannot listen on {addr}: {source}. Is another emu (or something else) using it? Pick another port with --port")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot open the request log {target:?}: {source}")]
    RequestLog {
        target: LogTarget,
        source: std::io::Error,
    },
    #[error(transparent)]
    Backends(#[from] BackendError),
    #[error(transparent)]
    Secrets(#[from] SecretError),
    #[error("not starting: job {job} failed")]
    JobFailed { job: String },
    #[error(transparent)]
    Metadata(#[from] crate::metadata::MetadataError),
}

impl UpError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            UpError::Backends(e) => e.exit_code(),
            UpError::Secrets(_) | UpError::RequestLog { .. } => 2,
            UpError::Bind { .. } | UpError::JobFailed { .. } | UpError::Metadata(_) => 1,
        }
    }
}

/// Runs `cfg` on `listeners` until `shutdown` is cancelled, then stops everything in order.
pub async fn run(
    cfg: Config,
    listeners: Listeners,
    opts: UpOptions,
    shutdown: CancellationToken,
) -> Result<(), UpError> {
    let logger =
        RequestLogger::start(opts.request_log.clone(), opts.log_format).map_err(|source| {
            UpError::RequestLog {
                target: opts.request_log.clone(),
                source,
            }
        })?;
    for w in &cfg.warnings {
        tracing::warn!("{w}");
    }
    if let Err(e) = crate::watchdog::start() {
        tracing::warn!("no watchdog (instances may outlive emu if it is SIGKILLed): {e}");
    }
    // Backends are up and healthy before the first instance starts, and stop after the last.
    let (backends, wanted) = prepare::start_backends(&cfg).await?;
    let served = serve_with(&cfg, &backends, wanted, listeners, logger, &opts, shutdown).await;
    backends.stop().await;
    crate::watchdog::dismiss();
    state::clear_state(&cfg.project_dir);
    if served.is_ok() {
        eprintln!("emu: stopped");
    }
    served
}

/// Everything after the backends: secrets, jobs, the front door and instances, until shutdown.
async fn serve_with(
    cfg: &Config,
    backends: &Backends,
    report: bool,
    listeners: Listeners,
    logger: RequestLogger,
    opts: &UpOptions,
    shutdown: CancellationToken,
) -> Result<(), UpError> {
    let store = SecretStore::load(&cfg.secrets, &cfg.project_dir)?;
    let mut inputs = prepare::service_inputs(cfg, &store, backends)?;
    // Before the jobs: a migration may ask for a token too.
    let metadata = crate::metadata::start(&cfg.project).await?;
    for env in inputs.env.values_mut() {
        // First, so that a service's own env or secrets may point elsewhere.
        let own = std::mem::replace(env, metadata.env());
        env.extend(own);
    }
    prepare::run_needed_jobs(cfg, &store, backends, &metadata.env()).await?;
    let recorded = BackendsState {
        pid: std::process::id(),
        database_url: backends.database_url(None),
        redis_url: backends.redis_url(),
    };
    if let Err(e) = recorded.write(&cfg.project_dir) {
        tracing::warn!("cannot record the backends in .emu/backends.json: {e}");
    }
    let backends_status = backends.status();
    if report {
        prepare::report_backends(&backends_status);
    }
    prepare::report_metadata(&metadata);
    let parts = ServeParts {
        inputs,
        logger,
        backends_status,
        metadata_status: prepare::metadata_status(&metadata),
        drain: opts.drain,
        output: opts.log_format,
        timeline_retention: opts.timeline_retention,
    };
    let serving = serve::start(listeners, cfg, parts, shutdown.clone())?;
    if let Err(e) = state::write_state(&cfg.project_dir, serving.addr) {
        tracing::warn!("{e}");
    }
    let addr = serving.addr;
    eprintln!("emu: front door on http://{addr}  (admin: http://{addr}/_emu/status)");
    for s in &cfg.services {
        eprintln!(
            "emu: service {} at http://{}.localhost:{}",
            s.name,
            s.name,
            addr.port()
        );
    }
    shutdown.cancelled().await;
    eprintln!("emu: shutting down: finishing in-flight requests, then stopping instances");
    serving.wait().await;
    metadata.stop().await;
    Ok(())
}

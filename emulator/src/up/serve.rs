//! The serving half of `emu up`: each service's runtime, supervisor and autoscaler, the admin
//! state, and the front door on every bound socket; then, at shutdown, the order Cloud Run keeps:
//! stop admitting, let in-flight requests finish, stop instances (SIGTERM, grace, SIGKILL).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::listen::Listeners;
use super::prepare::ServiceInputs;
use super::UpError;
use crate::admin::AdminState;
use crate::frontdoor::{self, FrontDoor, Route};
use crate::service::ServiceRuntime;
use crate::service::Supervisor;
use crate::spec::Config;
use crate::telemetry::RequestLogger;
use crate::timeline::{unix_ms, Timeline};

/// The services being served, until shutdown has finished.
#[derive(Debug)]
pub(super) struct Serving {
    pub addr: SocketAddr,
    done: tokio::task::JoinHandle<()>,
}

impl Serving {
    /// Waits until shutdown has finished.
    pub async fn wait(self) {
        let _ = self.done.await;
    }
}

/// What the front door and the instances are given besides the config.
pub(super) struct ServeParts {
    pub inputs: ServiceInputs,
    pub logger: RequestLogger,
    /// The backends' status for `/_emu/status`.
    pub backends_status: serde_json::Value,
    /// The metadata server's address and identity for `/_emu/status`.
    pub metadata_status: serde_json::Value,
    /// How long in-flight requests may take to finish at shutdown.
    pub drain: Duration,
    /// How instances' output is written (`--log-format`).
    pub output: crate::telemetry::LogFormat,
    /// How long the timeline keeps entries (`--timeline-retention`).
    pub timeline_retention: Duration,
}

/// Starts everything on `listeners`; returns once the front door listens. Cancelling `shutdown`
/// stops it, in order.
pub(super) fn start(
    listeners: Listeners,
    cfg: &Config,
    parts: ServeParts,
    shutdown: CancellationToken,
) -> Result<Serving, UpError> {
    let Listeners { main, own } = listeners;
    let addr = main.local_addr().map_err(|source| UpError::Bind {
        addr: SocketAddr::new(cfg.frontdoor.host, cfg.frontdoor.port),
        source,
    })?;
    let events = Arc::new(Timeline::new(parts.timeline_retention));
    let services: Vec<Arc<ServiceRuntime>> = cfg
        .services
        .iter()
        .cloned()
        .map(ServiceRuntime::new)
        .collect();
    let admin = Arc::new(AdminState {
        services: services.clone(),
        events: events.clone(),
        port: addr.port(),
        started_ms: unix_ms(),
        backends: parking_lot::Mutex::new(parts.backends_status),
        metadata: parts.metadata_status,
    });
    let fd = FrontDoor::new(services.clone(), parts.logger, admin, &cfg.frontdoor);

    let workers = CancellationToken::new();
    let mut supervisors = Vec::new();
    let mut scalers = Vec::new();
    let ServiceInputs {
        mut env,
        mut mounts,
    } = parts.inputs;
    for svc in &services {
        let (tx, rx) = mpsc::channel(16);
        let name = &svc.spec.name;
        let sup = Supervisor::new(
            svc.clone(),
            events.clone(),
            env.remove(name).unwrap_or_default(),
            mounts.remove(name).unwrap_or_default(),
        )
        .with_output(parts.output);
        supervisors.push(tokio::spawn(sup.run(rx, workers.clone())));
        scalers.push(tokio::spawn(crate::scaler::run(
            svc.clone(),
            events.clone(),
            tx,
            workers.clone(),
        )));
    }

    let listening = CancellationToken::new();
    let mut serving = vec![tokio::spawn(frontdoor::serve(
        main,
        Route::ByHost,
        fd.clone(),
        listening.clone(),
        parts.drain,
    ))];
    for (name, l) in own {
        if let Some(svc) = services.iter().find(|s| s.spec.name == name) {
            serving.push(tokio::spawn(frontdoor::serve(
                l,
                Route::Fixed(svc.clone()),
                fd.clone(),
                listening.clone(),
                parts.drain,
            )));
        }
    }

    let done = tokio::spawn(async move {
        shutdown.cancelled().await;
        // Stop admitting (queued requests get 503), let in-flight ones finish, then stop instances.
        for s in &services {
            s.pool.close();
        }
        listening.cancel();
        for s in serving {
            let _ = s.await;
        }
        workers.cancel();
        for s in scalers {
            let _ = s.await;
        }
        for s in supervisors {
            let _ = s.await;
        }
    });
    Ok(Serving { addr, done })
}

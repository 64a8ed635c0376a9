//! `emu up`: binds the front door, starts the services' supervisors and control loops, serves
//! until Ctrl-C or SIGTERM, then shuts down in order: stop admitting, let in-flight requests finish,
//! stop instances (SIGTERM, grace, SIGKILL).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::admin::AdminState;
use crate::frontdoor::{self, FrontDoor, Route};
use crate::service::ServiceRuntime;
use crate::service::Supervisor;
use crate::spec::Config;
use crate::telemetry::RequestLogger;
use crate::timeline::{unix_ms, Timeline};

/// What `emu up` needs besides the config.
#[derive(Debug, Clone)]
pub struct UpOptions {
    pub logger: RequestLogger,
    /// Env given to each service's instances (the backends' URLs), by service name.
    pub service_env: std::collections::HashMap<String, Vec<(String, String)>>,
    /// Secret files mounted into each service's container instances, by service name.
    pub service_mounts: std::collections::HashMap<String, Vec<(PathBuf, String)>>,
    /// The backends' status for `/_emu/status`.
    pub backends_status: serde_json::Value,
    /// How long in-flight requests may take to finish at shutdown.
    pub drain: Duration,
}

impl Default for UpOptions {
    fn default() -> Self {
        UpOptions {
            logger: RequestLogger::off(),
            service_env: Default::default(),
            service_mounts: Default::default(),
            backends_status: serde_json::Value::Null,
            drain: Duration::from_secs(30),
        }
    }
}

/// Why `emu up` could not run.
#[derive(Debug, thiserror::Error)]
pub enum UpError {
    #[error("cannot listen on {addr}: {source}. Is another emu (or something else) using it? Pick another port with --port")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    State {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The running front door, as a caller (a test, the CLI) sees it.
#[derive(Debug)]
pub struct Running {
    pub addr: SocketAddr,
    pub services: Vec<Arc<ServiceRuntime>>,
    pub events: Arc<Timeline>,
    pub admin: Arc<AdminState>,
    done: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Waits until shutdown has finished.
    pub async fn wait(self) {
        let _ = self.done.await;
    }
}

/// The front door's sockets, bound before anything else starts so a taken port fails fast.
#[derive(Debug)]
pub struct Listeners {
    main: TcpListener,
    own: Vec<(String, TcpListener)>,
}

/// Binds the main port and each service's own port.
pub async fn bind(cfg: &Config) -> Result<Listeners, UpError> {
    let main_addr = SocketAddr::new(cfg.frontdoor.host, cfg.frontdoor.port);
    let main = TcpListener::bind(main_addr)
        .await
        .map_err(|source| UpError::Bind {
            addr: main_addr,
            source,
        })?;
    let mut own = Vec::new();
    for s in &cfg.services {
        if let Some(p) = s.port {
            let a = SocketAddr::new(cfg.frontdoor.host, p);
            let l = TcpListener::bind(a)
                .await
                .map_err(|source| UpError::Bind { addr: a, source })?;
            own.push((s.name.clone(), l));
        }
    }
    Ok(Listeners { main, own })
}

/// Binds and starts everything; returns once the front door listens. Cancelling `shutdown` stops it.
pub async fn start(
    cfg: Config,
    opts: UpOptions,
    shutdown: CancellationToken,
) -> Result<Running, UpError> {
    let listeners = bind(&cfg).await?;
    start_with(listeners, cfg, opts, shutdown).await
}

/// Starts everything on sockets from [`bind`].
pub async fn start_with(
    listeners: Listeners,
    cfg: Config,
    opts: UpOptions,
    shutdown: CancellationToken,
) -> Result<Running, UpError> {
    let Listeners { main, own } = listeners;
    let main_addr = SocketAddr::new(cfg.frontdoor.host, cfg.frontdoor.port);
    let addr = main.local_addr().map_err(|source| UpError::Bind {
        addr: main_addr,
        source,
    })?;
    let events = Arc::new(Timeline::default());
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
        backends: parking_lot::Mutex::new(opts.backends_status.clone()),
    });
    let fd = FrontDoor::new(services.clone(), opts.logger.clone(), admin.clone());

    let workers = CancellationToken::new();
    let mut supervisors = Vec::new();
    let mut scalers = Vec::new();
    for svc in &services {
        let (tx, rx) = mpsc::channel(16);
        let env = opts
            .service_env
            .get(&svc.spec.name)
            .cloned()
            .unwrap_or_default();
        let mounts = opts
            .service_mounts
            .get(&svc.spec.name)
            .cloned()
            .unwrap_or_default();
        let sup = Supervisor::new(svc.clone(), events.clone(), env, mounts);
        supervisors.push(tokio::spawn(sup.run(rx, workers.clone())));
        scalers.push(tokio::spawn(crate::scaler::run(
            svc.clone(),
            events.clone(),
            tx,
            workers.clone(),
        )));
    }

    let listeners = CancellationToken::new();
    let mut serving = Vec::new();
    serving.push(tokio::spawn(frontdoor::serve(
        main,
        Route::ByHost,
        fd.clone(),
        listeners.clone(),
        opts.drain,
    )));
    for (name, l) in own {
        if let Some(svc) = services.iter().find(|s| s.spec.name == name) {
            serving.push(tokio::spawn(frontdoor::serve(
                l,
                Route::Fixed(svc.clone()),
                fd.clone(),
                listeners.clone(),
                opts.drain,
            )));
        }
    }

    let svcs = services.clone();
    let done = tokio::spawn(async move {
        shutdown.cancelled().await;
        // Stop admitting (queued requests get 503), let in-flight ones finish, then stop instances.
        for s in &svcs {
            s.pool.close();
        }
        listeners.cancel();
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
    Ok(Running {
        addr,
        services,
        events,
        admin,
        done,
    })
}

/// Writes `.emu/emu.pid` and `.emu/emu.json` so `emu status` and `emu down` find this emu.
pub fn write_state(project_dir: &std::path::Path, addr: SocketAddr) -> Result<PathBuf, UpError> {
    let dir = project_dir.join(".emu");
    std::fs::create_dir_all(&dir).map_err(|source| UpError::State {
        path: dir.clone(),
        source,
    })?;
    let pid = dir.join("emu.pid");
    std::fs::write(&pid, std::process::id().to_string()).map_err(|source| UpError::State {
        path: pid.clone(),
        source,
    })?;
    let json = dir.join("emu.json");
    let v = serde_json::json!({ "pid": std::process::id(), "port": addr.port(), "host": addr.ip().to_string() });
    std::fs::write(&json, v.to_string()).map_err(|source| UpError::State {
        path: json.clone(),
        source,
    })?;
    Ok(dir)
}

/// Removes what [`write_state`] wrote, if it is still ours.
pub fn clear_state(project_dir: &std::path::Path) {
    let dir = project_dir.join(".emu");
    let ours = std::fs::read_to_string(dir.join("emu.pid"))
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        == Some(std::process::id());
    if ours {
        let _ = std::fs::remove_file(dir.join("emu.pid"));
        let _ = std::fs::remove_file(dir.join("emu.json"));
    }
}

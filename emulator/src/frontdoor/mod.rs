//! The front door: accepts HTTP/1.1 and h2c, routes by host (or a service's own port), answers
//! `/_emu/` itself, and admits and forwards everything else.

pub mod errors;
pub mod h1;
pub mod limits;
pub mod loops;
pub mod proxy;
pub(crate) mod rules;
pub mod upstream;
pub mod watch;
pub(crate) mod wire;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Request, Response};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::service::ServiceRuntime;
use crate::telemetry::RequestLogger;
use errors::ProxyError;
use proxy::FrontBody;
use rules::Exchange;
use upstream::UpstreamClient;

/// What answers `/_emu/`: emu's own endpoints, handed to the front door so that it knows of
/// them only that they exist and answer loopback clients (the admin room reads the services;
/// the front door never reads the admin room).
pub trait LocalEndpoints: Send + Sync {
    fn answer(&self, req: &Request<Incoming>) -> Response<Full<Bytes>>;
}

/// What every connection shares.
pub struct FrontDoor {
    pub services: Vec<Arc<ServiceRuntime>>,
    by_name: HashMap<String, Arc<ServiceRuntime>>,
    client: UpstreamClient,
    logger: RequestLogger,
    local: Arc<dyn LocalEndpoints>,
    /// The HTTP/1.1 fast path on; off, every connection goes hyper's way.
    fast_path: bool,
    loops: loops::Loops,
    /// Connection caps and timeouts, shared by every listener.
    pub limits: Arc<limits::Limits>,
}

impl FrontDoor {
    pub fn new(
        services: Vec<Arc<ServiceRuntime>>,
        logger: RequestLogger,
        local: Arc<dyn LocalEndpoints>,
        settings: &crate::spec::FrontdoorSettings,
    ) -> Arc<Self> {
        let by_name = services
            .iter()
            .map(|s| (s.spec.name.clone(), s.clone()))
            .collect();
        Arc::new(FrontDoor {
            services,
            by_name,
            client: upstream::upstream_client(),
            logger,
            local,
            fast_path: settings.fast_path,
            loops: loops::Loops::start(settings.loops),
            limits: limits::Limits::new(settings),
        })
    }
}

/// Which services a listener serves.
#[derive(Clone)]
pub enum Route {
    /// The main port: by host.
    ByHost,
    /// A service's own port.
    Fixed(Arc<ServiceRuntime>),
}

async fn handle(
    fd: &FrontDoor,
    route: &Route,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Response<FrontBody> {
    if req.uri().path().starts_with("/_emu/") {
        if !is_loopback(peer) {
            return ProxyError::Forbidden.into_response().map(Either::Right);
        }
        return fd.local.answer(&req).map(Either::Right);
    }
    let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let host = req
        .headers()
        .get(header::HOST)
        .map(|h| h.as_bytes())
        .or_else(|| req.uri().authority().map(|a| a.as_str().as_bytes()));
    let chosen = match rules::refuse(req.method().as_str().as_bytes(), target.as_bytes()) {
        Some(e) => Err(e),
        None => fd.route_host(route, host),
    };
    match chosen {
        Ok(service) => proxy::forward(fd, service, req, peer).await,
        Err(e) => {
            let ex = Exchange::new(
                fd,
                peer,
                fd.logger.enabled().then(|| proxy::log_fields(&req)),
            );
            let resp = e.render(errors::is_grpc(req.headers())).map(Either::Right);
            let size = http_body::Body::size_hint(resp.body()).exact();
            ex.finish(fd, resp.status().as_u16(), None, false, size);
            resp
        }
    }
}

fn is_loopback(peer: SocketAddr) -> bool {
    match peer.ip() {
        std::net::IpAddr::V4(v4) => v4.is_loopback(),
        std::net::IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// hyper's server, for what the fast path ([`h1`]) hands over: h2c, uploads it does not take,
/// `/_emu/`.
pub type HyperBuilder = auto::Builder<TokioExecutor>;

/// Serves one connection with hyper until it ends; on `shutdown` it finishes what is in flight
/// and closes. A head that takes longer than the header timeout closes it, and so does the idle
/// timeout with nothing in flight ([`watch`]).
async fn serve_hyper<I>(
    fd: Arc<FrontDoor>,
    route: Route,
    io: I,
    peer: SocketAddr,
    shutdown: CancellationToken,
    builder: &HyperBuilder,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = watch::Activity::new(fd.limits.header_timeout, fd.limits.idle_timeout);
    let io = watch::Watched {
        inner: io,
        activity: activity.clone(),
    };
    let requests = activity.clone();
    let svc = service_fn(move |req| {
        let fd = fd.clone();
        let route = route.clone();
        let busy = requests.begin();
        async move {
            let resp = handle(&fd, &route, req, peer).await;
            Ok::<_, Infallible>(resp.map(|inner| watch::Guarded { inner, busy }))
        }
    });
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), svc);
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        expired = activity.expired() => {
            if expired == watch::Expired::Idle {
                conn.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(IDLE_CLOSE_GRACE, conn).await;
            }
        }
        () = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// How long an idle connection closing gracefully (HTTP/2: GOAWAY) may take to finish.
const IDLE_CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Serves `listener` until `shutdown`, then lets open requests finish (up to `drain`).
pub async fn serve(
    listener: TcpListener,
    route: Route,
    fd: Arc<FrontDoor>,
    shutdown: CancellationToken,
    drain: Duration,
) {
    let tracker = TaskTracker::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().writev(false);
    let builder = Arc::new(builder);
    let mut loops = fd.loops.clone();
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: keep serving what is open.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let admitted = match fd.limits.admit(peer.ip()) {
            Ok(a) => a,
            Err(e) => {
                fd.limits.shed(stream, &e);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let conn = {
            let (fd, route, shutdown, builder) =
                (fd.clone(), route.clone(), shutdown.clone(), builder.clone());
            move |stream| async move {
                h1::serve_conn(fd, route, stream, peer, shutdown, builder).await;
                drop(admitted);
            }
        };
        match loops.pick() {
            // Moved to that loop's thread: deregistered here, registered there.
            Some(handle) => match stream.into_std() {
                Ok(std) => {
                    handle.spawn(tracker.track_future(async move {
                        if let Ok(stream) = tokio::net::TcpStream::from_std(std) {
                            conn(stream).await;
                        }
                    }));
                }
                Err(e) => tracing::warn!("cannot hand a connection to a front-door thread: {e}"),
            },
            None => {
                tracker.spawn(conn(stream));
            }
        }
    }
    drop(listener);
    tracker.close();
    let _ = tokio::time::timeout(drain, tracker.wait()).await;
}

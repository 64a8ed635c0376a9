//! The front door: accepts HTTP/1.1 and h2c, routes by host (or a service's own port), answers
//! `/_emu/` itself, and admits and forwards everything else.

pub mod admission;
pub mod errors;
pub mod proxy;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{header, Request, Response};
use http_body_util::Either;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, AdminState};
use crate::service::ServiceRuntime;
use crate::telemetry::{RequestLog, RequestLogger};
use errors::ProxyError;
use proxy::{FrontBody, UpstreamClient};

/// What every connection shares.
pub struct FrontDoor {
    pub services: Vec<Arc<ServiceRuntime>>,
    by_name: HashMap<String, Arc<ServiceRuntime>>,
    client: UpstreamClient,
    logger: RequestLogger,
    pub admin: Arc<AdminState>,
}

impl FrontDoor {
    pub fn new(
        services: Vec<Arc<ServiceRuntime>>,
        logger: RequestLogger,
        admin: Arc<AdminState>,
    ) -> Arc<Self> {
        let by_name = services
            .iter()
            .map(|s| (s.spec.name.clone(), s.clone()))
            .collect();
        Arc::new(FrontDoor {
            services,
            by_name,
            client: proxy::upstream_client(),
            logger,
            admin,
        })
    }

    /// The service a request on the main port is for: by host (`api.localhost:8080` → `api`),
    /// or the only one there is.
    fn route(&self, req: &Request<Incoming>) -> Result<&Arc<ServiceRuntime>, ProxyError> {
        if self.services.len() == 1 {
            return Ok(&self.services[0]);
        }
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri().host())
            .unwrap_or("");
        let label = host.split([':', '.']).next().unwrap_or("");
        self.by_name
            .get(label)
            .ok_or_else(|| ProxyError::NoService(host.to_string()))
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
        return admin::handle(&fd.admin, &req).map(Either::Right);
    }
    let service = match route {
        Route::Fixed(s) => s,
        Route::ByHost => match fd.route(&req) {
            Ok(s) => s,
            Err(e) => {
                let resp = e.into_response().map(Either::Right);
                if fd.logger.enabled() {
                    fd.logger.log(RequestLog::new(
                        &req,
                        "-",
                        "-",
                        resp.status().as_u16(),
                        peer,
                    ));
                }
                return resp;
            }
        },
    };
    proxy::forward(service, &fd.client, &fd.logger, req, peer).await
}

fn is_loopback(peer: SocketAddr) -> bool {
    match peer.ip() {
        std::net::IpAddr::V4(v4) => v4.is_loopback(),
        std::net::IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// Serves `listener` until `shutdown`, then lets open requests finish (up to `drain`).
pub async fn serve(
    listener: TcpListener,
    route: Route,
    fd: Arc<FrontDoor>,
    shutdown: CancellationToken,
    drain: Duration,
) {
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().writev(false);
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
        let _ = stream.set_nodelay(true);
        let fd = fd.clone();
        let route = route.clone();
        let svc = service_fn(move |req| {
            let fd = fd.clone();
            let route = route.clone();
            async move { Ok::<_, Infallible>(handle(&fd, &route, req, peer).await) }
        });
        let conn = builder
            .serve_connection(TokioIo::new(stream), svc)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(drain, graceful.shutdown()).await;
}

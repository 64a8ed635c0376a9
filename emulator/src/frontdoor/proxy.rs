//! Forwarding: one request from the front door to an instance and its response back, streamed both
//! ways, with Cloud Run's request headers, timeout and body limit.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, Uri};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{Either, Full, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use super::admission::Permit;
use super::errors::ProxyError;
use crate::service::ServiceRuntime;
use crate::telemetry::{RequestLog, RequestLogger};

/// Cloud Run refuses HTTP/1 request bodies over 32 MiB.
pub const MAX_BODY: usize = 32 * 1024 * 1024;

/// The body sent on to the instance: the client's, capped at [`MAX_BODY`].
pub type UpstreamBody = Limited<Incoming>;
/// The body the front door answers with: an instance's, or one of emu's own.
pub type FrontBody = Either<Tracked, Full<Bytes>>;
/// Pooled keep-alive connections to the instances.
pub type UpstreamClient = Client<HttpConnector, UpstreamBody>;

/// A client that reuses connections to instances (HTTP/1.1 keep-alive, no Nagle).
pub fn upstream_client() -> UpstreamClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(5)));
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(1024)
        .build(connector)
}

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_CLOUD_TRACE: HeaderName = HeaderName::from_static("x-cloud-trace-context");
static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
static X_EMU_INSTANCE: HeaderName = HeaderName::from_static("x-emu-instance");
static X_EMU_COLD_START: HeaderName = HeaderName::from_static("x-emu-cold-start");

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1): never forwarded.
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if let Some(conn) = headers.get(header::CONNECTION).cloned() {
        if let Ok(list) = conn.to_str() {
            for name in list.split(',') {
                if let Ok(n) = HeaderName::from_bytes(name.trim().as_bytes()) {
                    headers.remove(n);
                }
            }
        }
    }
    for h in &HOP_BY_HOP {
        headers.remove(h);
    }
    headers.remove(header::UPGRADE);
}

/// Trace id for this request: the client's (from traceparent or X-Cloud-Trace-Context) or a new one.
fn trace_headers(headers: &mut HeaderMap) -> String {
    let from_traceparent = headers
        .get(&TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let parts: Vec<&str> = v.split('-').collect();
            (parts.len() >= 4 && parts[1].len() == 32).then(|| parts[1].to_string())
        });
    let from_cloud = headers
        .get(&X_CLOUD_TRACE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split('/').next())
        .filter(|t| t.len() == 32 && t.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_string);
    let trace = from_traceparent
        .clone()
        .or_else(|| from_cloud.clone())
        .unwrap_or_else(|| format!("{:032x}", rand::random::<u128>()));
    let span: u64 = rand::random::<u64>() | 1;
    if from_cloud.is_none() {
        let v = format!("{trace}/{span};o=1");
        if let Ok(v) = HeaderValue::from_str(&v) {
            headers.insert(&X_CLOUD_TRACE, v);
        }
    }
    if from_traceparent.is_none() {
        let v = format!("00-{trace}-{span:016x}-01");
        if let Ok(v) = HeaderValue::from_str(&v) {
            headers.insert(&TRACEPARENT, v);
        }
    }
    trace
}

/// Forwards one request to `service`, admitting it first.
pub async fn forward(
    service: &Arc<ServiceRuntime>,
    client: &UpstreamClient,
    logger: &RequestLogger,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Response<FrontBody> {
    let arrived = Instant::now();
    let deadline = arrived + service.spec.timeout;
    let method = req.method().clone();
    let url = if logger.enabled() {
        crate::telemetry::full_url(&req)
    } else {
        String::new()
    };
    let user_agent = req.headers().get(header::USER_AGENT).cloned();
    let (result, trace) = forward_inner(service, client, req, peer, deadline).await;
    let (resp, instance, cold) = match result {
        Ok((resp, instance, cold)) => (resp, Some(instance), cold),
        Err(e) => (e.into_response().map(Either::Right), None, false),
    };
    let status = resp.status().as_u16();
    service.pool.counters.record_status(status);
    if logger.enabled() {
        logger.log(RequestLog {
            service: service.spec.name.clone(),
            revision: service.spec.revision.clone(),
            method,
            url,
            status,
            latency: arrived.elapsed(),
            remote_ip: peer.ip(),
            user_agent,
            trace,
            instance,
            cold_start: cold,
        });
    }
    resp
}

type Forwarded = (Response<FrontBody>, Arc<str>, bool);

async fn forward_inner(
    service: &Arc<ServiceRuntime>,
    client: &UpstreamClient,
    req: Request<Incoming>,
    peer: SocketAddr,
    deadline: Instant,
) -> (Result<Forwarded, ProxyError>, Option<String>) {
    let (mut parts, body) = req.into_parts();
    let too_large = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > MAX_BODY as u64);
    if too_large {
        return (Err(ProxyError::BodyTooLarge), None);
    }

    // Headers first, so a request's trace id is known even when it is rejected.
    let host = parts.headers.get(header::HOST).cloned().or_else(|| {
        parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    strip_hop_by_hop(&mut parts.headers);
    let xff = match parts
        .headers
        .get(&X_FORWARDED_FOR)
        .and_then(|v| v.to_str().ok())
    {
        Some(prev) => format!("{prev}, {}", peer.ip()),
        None => peer.ip().to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&xff) {
        parts.headers.insert(&X_FORWARDED_FOR, v);
    }
    if !parts.headers.contains_key(&X_FORWARDED_PROTO) {
        parts
            .headers
            .insert(&X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    }
    let trace = trace_headers(&mut parts.headers);
    if let Some(h) = host {
        parts.headers.insert(header::HOST, h);
    }

    let permit = match service.pool.acquire(deadline).await {
        Ok(p) => p,
        Err(e) => return (Err(e.into()), Some(trace)),
    };
    let Some(addr) = permit.slot.addr().cloned() else {
        return (Err(ProxyError::InstanceFailed), Some(trace));
    };
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let uri = match Uri::builder()
        .scheme("http")
        .authority(addr)
        .path_and_query(path)
        .build()
    {
        Ok(u) => u,
        Err(_) => return (Err(ProxyError::InstanceFailed), Some(trace)),
    };
    parts.uri = uri;
    parts.version = http::Version::HTTP_11;
    let upstream_req = Request::from_parts(parts, Limited::new(body, MAX_BODY));

    let sent = tokio::time::timeout_at(deadline, client.request(upstream_req)).await;
    let resp = match sent {
        Err(_) => return (Err(ProxyError::UpstreamTimeout), Some(trace)),
        Ok(Err(e)) => {
            let too_large = body_too_large(&e);
            if too_large {
                return (Err(ProxyError::BodyTooLarge), Some(trace));
            }
            let state = permit.slot.state();
            tracing::debug!(instance = %permit.slot.id, ?state, error = ?e, "upstream request failed");
            return (Err(ProxyError::InstanceFailed), Some(trace));
        }
        Ok(Ok(r)) => r,
    };

    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    if let Ok(v) = HeaderValue::from_str(&permit.slot.id) {
        parts.headers.insert(&X_EMU_INSTANCE, v);
    }
    if permit.cold {
        parts
            .headers
            .insert(&X_EMU_COLD_START, HeaderValue::from_static("true"));
    }
    if parts.headers.contains_key(header::SET_COOKIE)
        && !parts.headers.contains_key(header::CACHE_CONTROL)
    {
        parts
            .headers
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("private"));
    }
    let instance = permit.slot.id.clone();
    let cold = permit.cold;
    let body = Tracked {
        inner: body,
        deadline: tokio::time::sleep_until(deadline),
        permit: Some(permit),
    };
    (
        Ok((
            Response::from_parts(parts, Either::Left(body)),
            instance,
            cold,
        )),
        Some(trace),
    )
}

/// True when a forwarding error came from the 32 MiB cap on a streamed (chunked) request body.
fn body_too_large(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        cur = err.source();
    }
    false
}

pin_project! {
    /// An instance's response body, streamed through. It holds the request's slot until the body
    /// ends (the request is in flight until then) and cuts the stream at the request timeout.
    pub struct Tracked {
        #[pin]
        inner: Incoming,
        #[pin]
        deadline: Sleep,
        permit: Option<Permit>,
    }
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(None) => {
                this.permit.take();
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                this.permit.take();
                Poll::Ready(Some(Err(Box::new(e))))
            }
            Poll::Ready(Some(Ok(f))) => Poll::Ready(Some(Ok(f))),
            Poll::Pending => {
                if this.deadline.poll(cx).is_ready() {
                    this.permit.take();
                    return Poll::Ready(Some(Err("request timeout".into())));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

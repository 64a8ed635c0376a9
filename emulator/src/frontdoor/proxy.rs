//! The general path (hyper): one request from the front door to an instance and its answer
//! back, streamed both ways — HTTP/1.1 or h2c from the client, HTTP/1.1 or h2c to the instance
//! (`protocol = "h2c"`, `ports[].name: h2c`), and WebSocket handshakes, after which the
//! connection is a tunnel that holds its slot until it closes or the request timeout ends it.
//! The Cloud Run rules come from [`super::rules`]; this file only moves messages.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, Uri};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{Either, Full, Limited};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use super::errors::ProxyError;
use super::rules::{self, pairs, Answerer, Exchange, LogFields, Pass};
use super::upstream::{Conn, SendError};
use super::FrontDoor;
use crate::admission::Permit;
use crate::service::ServiceRuntime;
use crate::spec::Protocol;

/// Cloud Run refuses HTTP/1 request bodies over 32 MiB.
pub const MAX_BODY: usize = 32 * 1024 * 1024;

/// The body sent on to the instance: the client's, capped at [`MAX_BODY`] unless the instance
/// speaks HTTP/2 end to end.
pub type UpstreamBody = Limited<Incoming>;
/// The body the front door answers with: an instance's, or one of emu's own.
pub type FrontBody = Either<Tracked, Full<Bytes>>;

/// The log's view of a request, taken before the request is consumed.
pub(crate) fn log_fields(req: &Request<Incoming>) -> LogFields {
    let host = req.headers().get(header::HOST).map(HeaderValue::as_bytes);
    let target = match req.uri().path_and_query() {
        Some(p) if req.uri().authority().is_none() => p.as_str().to_string(),
        _ => req.uri().to_string(),
    };
    let ua = req
        .headers()
        .get(header::USER_AGENT)
        .map(HeaderValue::as_bytes);
    let mut fields = LogFields::new(
        req.method().as_str().as_bytes(),
        target.as_bytes(),
        host,
        ua,
    );
    if req.version() == http::Version::HTTP_2 {
        fields.protocol = "HTTP/2";
    }
    fields.request_size = http_body::Body::size_hint(req.body()).exact();
    fields
}

/// Forwards one request to `service`, admitting it first.
pub async fn forward(
    fd: &FrontDoor,
    service: &Arc<ServiceRuntime>,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Response<FrontBody> {
    let mut ex = Exchange::new(fd, peer, fd.logger.enabled().then(|| log_fields(&req)));
    ex.service = Some(service.clone());
    let deadline = ex.arrived + service.spec.timeout;
    let grpc = super::errors::is_grpc(req.headers());
    let result = forward_inner(fd, service, req, peer, deadline, &mut ex).await;
    let (resp, instance, cold) = match result {
        Ok((resp, instance, cold)) => (resp, Some(instance), cold),
        Err(e) => (e.render(grpc).map(Either::Right), None, false),
    };
    let size = http_body::Body::size_hint(resp.body()).exact();
    ex.finish(fd, resp.status().as_u16(), instance, cold, size);
    resp
}

type Forwarded = (Response<FrontBody>, Arc<str>, bool);

/// The instance's view of the request's URI: origin form for HTTP/1.1; for HTTP/2 the absolute
/// form, whose authority becomes `:authority`.
fn upstream_uri(uri: Uri, h2_authority: Option<&str>) -> Uri {
    let path = uri
        .path_and_query()
        .filter(|p| p.as_str().starts_with('/'))
        .cloned()
        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    if let Some(authority) = h2_authority {
        let absolute = Uri::builder()
            .scheme("http")
            .authority(authority)
            .path_and_query(path.clone())
            .build();
        if let Ok(u) = absolute {
            return u;
        }
    }
    origin_form(Uri::from(path))
}

/// Maps a failed send to what the client is told: the client's own body at fault (too large,
/// badly framed) is its error; anything else is the instance's.
fn send_error(e: SendError, permit: &Permit) -> ProxyError {
    match e {
        SendError::Connect => {
            let state = permit.slot.state();
            tracing::debug!(instance = %permit.slot.id, ?state, "cannot connect to the instance");
            ProxyError::InstanceFailed
        }
        SendError::Http(e) if body_too_large(&e) => ProxyError::BodyTooLarge,
        SendError::Http(e) if e.is_user() => ProxyError::BadRequest,
        SendError::Http(e) => {
            let state = permit.slot.state();
            tracing::debug!(instance = %permit.slot.id, ?state, error = ?e, "upstream request failed");
            ProxyError::InstanceFailed
        }
    }
}

async fn forward_inner(
    fd: &FrontDoor,
    service: &Arc<ServiceRuntime>,
    mut req: Request<Incoming>,
    peer: SocketAddr,
    deadline: Instant,
    ex: &mut Exchange,
) -> Result<Forwarded, ProxyError> {
    let h2c = service.spec.protocol == Protocol::H2c;
    let limit = if h2c { usize::MAX } else { MAX_BODY };
    let too_large = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > limit as u64);
    if too_large {
        return Err(ProxyError::BodyTooLarge);
    }
    let websocket = req.method() == http::Method::GET
        && req.version() == http::Version::HTTP_11
        && rules::is_websocket(pairs(req.headers()));
    let client_upgrade = websocket.then(|| hyper::upgrade::on(&mut req));

    // Headers first, so a request's trace id is known even when it is rejected.
    let (mut parts, body) = req.into_parts();
    let host = parts.headers.get(header::HOST).cloned().or_else(|| {
        parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    let mut headers = HeaderMap::with_capacity(parts.headers.len() + 4);
    let pass = Pass {
        upgrade: websocket,
        te_trailers: h2c,
    };
    let peer_ip = peer.ip().to_string();
    ex.trace = Some(rules::rewrite_request(
        pairs(&parts.headers),
        &peer_ip,
        pass,
        &mut headers,
    ));
    parts.headers = headers;

    let permit = service.pool.acquire(deadline).await?;
    let Some(addr) = permit.slot.addr() else {
        return Err(ProxyError::InstanceFailed);
    };
    let host = host.or_else(|| HeaderValue::from_str(addr.as_str()).ok());
    let h2 = h2c && !websocket;
    if h2 {
        // HTTP/2 names the host in `:authority`, from the URI.
        let authority = host
            .as_ref()
            .and_then(|h| h.to_str().ok())
            .unwrap_or(addr.as_str());
        parts.uri = upstream_uri(std::mem::take(&mut parts.uri), Some(authority));
        parts.headers.remove(header::HOST);
        parts.version = http::Version::HTTP_2;
    } else {
        if let Some(h) = host {
            parts.headers.insert(header::HOST, h);
        }
        parts.uri = upstream_uri(std::mem::take(&mut parts.uri), None);
        parts.version = http::Version::HTTP_11;
    }
    let upstream_req = Request::from_parts(parts, Limited::new(body, limit));

    // One timer for the whole request, first for the response head, then in the body; boxed so
    // it moves with the response as a pointer.
    let mut timer = Box::pin(tokio::time::sleep_until(deadline));
    let client = &fd.client;
    let sent = tokio::select! {
        biased;
        r = async {
            if websocket {
                client.send_upgrade(addr, upstream_req).await.map(|r| (r, None))
            } else if h2 {
                client.send_h2(addr, upstream_req).await.map(|r| (r, None))
            } else {
                client.send(addr, upstream_req).await.map(|(r, c)| (r, Some(c)))
            }
        } => r,
        () = &mut timer => return Err(ProxyError::UpstreamTimeout),
    };
    let (mut resp, conn) = sent.map_err(|e| send_error(e, &permit))?;
    let instance = permit.slot.id.clone();
    let cold = permit.cold;
    let upgraded = websocket && resp.status() == http::StatusCode::SWITCHING_PROTOCOLS;
    let answerer_id = permit.slot.id_header().cloned();
    let answerer = Answerer {
        instance: answerer_id
            .as_ref()
            .map_or(instance.as_bytes(), |v| v.as_bytes()),
        cold,
        upgrade: upgraded,
    };
    let mut headers = HeaderMap::with_capacity(resp.headers().len() + 3);
    rules::rewrite_response(pairs(resp.headers()), Some(&answerer), &mut headers);
    if let (true, Some(client_upgrade)) = (upgraded, client_upgrade) {
        let upstream_upgrade = hyper::upgrade::on(&mut resp);
        tokio::spawn(tunnel(client_upgrade, upstream_upgrade, permit, deadline));
        let (mut parts, _) = resp.into_parts();
        parts.headers = headers;
        let body = Either::Right(Full::new(Bytes::new()));
        return Ok((Response::from_parts(parts, body), instance, cold));
    }
    let (mut parts, body) = resp.into_parts();
    parts.headers = headers;
    let body = Tracked {
        inner: body,
        deadline: timer,
        permit: Some(permit),
        conn,
        done: false,
    };
    Ok((
        Response::from_parts(parts, Either::Left(body)),
        instance,
        cold,
    ))
}

/// A WebSocket after its handshake: bytes both ways until either side closes or the request
/// timeout passes (Cloud Run closes the connection then). The connection holds its concurrency
/// slot all along and counted as one request.
async fn tunnel(client: OnUpgrade, upstream: OnUpgrade, permit: Permit, deadline: Instant) {
    let (client, upstream) = tokio::join!(client, upstream);
    let (Ok(client), Ok(upstream)) = (client, upstream) else {
        return;
    };
    let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
    let copied = tokio::time::timeout_at(
        deadline,
        tokio::io::copy_bidirectional(&mut client, &mut upstream),
    )
    .await;
    if copied.is_err() {
        tracing::debug!(instance = %permit.slot.id, "WebSocket closed at the request timeout");
    }
    drop(permit);
}

/// The request's URI as an HTTP/1.1 origin-form (`/path?query`), as an instance is sent it.
fn origin_form(uri: Uri) -> Uri {
    if uri.scheme().is_none() && uri.authority().is_none() && uri.path_and_query().is_some() {
        return uri;
    }
    let mut parts = http::uri::Parts::default();
    parts.path_and_query = Some(
        uri.path_and_query()
            .filter(|p| p.as_str().starts_with('/'))
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
    );
    Uri::from_parts(parts).unwrap_or_default()
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
    /// Read to the end, it gives its connection back to the pool when dropped.
    pub struct Tracked {
        #[pin]
        inner: Incoming,
        deadline: Pin<Box<Sleep>>,
        permit: Option<Permit>,
        conn: Option<Conn>,
        done: bool,
    }

    impl PinnedDrop for Tracked {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if *this.done || this.inner.is_end_stream() {
                if let Some(conn) = this.conn.take() {
                    conn.check_in();
                }
            }
        }
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
                *this.done = true;
                this.permit.take();
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                this.permit.take();
                this.conn.take();
                Poll::Ready(Some(Err(Box::new(e))))
            }
            Poll::Ready(Some(Ok(f))) => Poll::Ready(Some(Ok(f))),
            Poll::Pending => {
                if this.deadline.as_mut().poll(cx).is_ready() {
                    this.permit.take();
                    this.conn.take();
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

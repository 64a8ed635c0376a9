//! Forwarding: one request from the front door to an instance and its response back, streamed both
//! ways, with Cloud Run's request headers, timeout and body limit.
//!
//! This is the hot path (see bench/RESULTS.md): it keeps its own pool of HTTP/1.1 connections to
//! the instances instead of hyper-util's generic client, builds header values without formatting
//! machinery, and allocates nothing per request that is only needed for the request log.

use std::cell::RefCell;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::Authority;
use http::{Request, Response, Uri};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{Either, Full, Limited};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use pin_project_lite::pin_project;
use tokio::net::TcpStream;
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

/// How long an unused connection to an instance is kept.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Most idle connections kept per instance address.
pub(crate) const MAX_IDLE_PER_HOST: usize = 1024;
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Pooled keep-alive HTTP/1.1 connections to the instances (no Nagle), cheap to clone.
///
/// A connection goes back to the pool when its response body has been read to the end, from the
/// response body itself; one whose body was cut short is dropped, which closes it.
#[derive(Clone, Default)]
pub struct UpstreamClient {
    pool: Arc<ConnPool>,
}

/// Idle connections by instance address. A list, not a map: there are a few addresses, and
/// comparing one costs less than hashing it (`Authority` hashes byte by byte, case-folded).
#[derive(Default)]
struct ConnPool {
    idle: Mutex<Vec<(Authority, Vec<IdleConn>)>>,
}

/// The idle list for `addr`, if there is one.
fn idle_for<'a>(
    idle: &'a mut [(Authority, Vec<IdleConn>)],
    addr: &Authority,
) -> Option<&'a mut Vec<IdleConn>> {
    idle.iter_mut()
        .find(|(a, _)| a.as_str() == addr.as_str())
        .map(|(_, l)| l)
}

/// The connection to an instance as hyper's client sees it. A write the instance refused (it
/// answered early, say 405 to an upload it does not want, and closed with the body unread) counts
/// as written, so the answer already on its way back is read and forwarded rather than lost to a
/// write error and turned into a 503.
struct UpstreamIo {
    inner: TokioIo<TcpStream>,
    broken: bool,
}

impl UpstreamIo {
    fn swallow(
        &mut self,
        r: Poll<std::io::Result<usize>>,
        len: usize,
    ) -> Poll<std::io::Result<usize>> {
        match r {
            Poll::Ready(Err(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::BrokenPipe
                        | std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::ConnectionAborted
                ) =>
            {
                self.broken = true;
                Poll::Ready(Ok(len))
            }
            other => other,
        }
    }
}

impl hyper::rt::Read for UpstreamIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for UpstreamIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.broken {
            return Poll::Ready(Ok(buf.len()));
        }
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.swallow(r, buf.len())
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let len = bufs.iter().map(|b| b.len()).sum();
        if self.broken {
            return Poll::Ready(Ok(len));
        }
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.swallow(r, len)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.broken {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.broken {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

struct IdleConn {
    send: http1::SendRequest<UpstreamBody>,
    since: Instant,
}

/// A connection on loan to one request.
struct Conn {
    send: http1::SendRequest<UpstreamBody>,
    addr: Authority,
    pool: Arc<ConnPool>,
}

impl Conn {
    /// Back to the pool, for the next request to the same address.
    fn check_in(self) {
        if self.send.is_closed() {
            return;
        }
        let now = Instant::now();
        let mut idle = self.pool.idle.lock();
        if idle_for(&mut idle, &self.addr).is_none() {
            idle.push((self.addr.clone(), Vec::new()));
        }
        let Some(list) = idle_for(&mut idle, &self.addr) else {
            return;
        };
        // The oldest connection sits at the bottom: drop it once it is stale.
        if list
            .first()
            .is_some_and(|c| c.send.is_closed() || now - c.since > IDLE_TIMEOUT)
        {
            list.remove(0);
        }
        if list.len() < MAX_IDLE_PER_HOST {
            list.push(IdleConn {
                send: self.send,
                since: now,
            });
        }
    }
}

/// Why a request could not be sent to an instance.
enum SendError {
    Connect,
    Http(hyper::Error),
}

impl ConnPool {
    /// The most recently used open connection to `addr`.
    fn check_out(&self, addr: &Authority) -> Option<http1::SendRequest<UpstreamBody>> {
        let mut idle = self.idle.lock();
        let list = idle_for(&mut idle, addr)?;
        let now = Instant::now();
        while let Some(c) = list.pop() {
            if !c.send.is_closed() && now - c.since <= IDLE_TIMEOUT {
                return Some(c.send);
            }
        }
        None
    }
}

/// A new TCP connection to an instance (no Nagle), within [`CONNECT_TIMEOUT`].
pub(crate) async fn connect_tcp(addr: &Authority) -> Option<TcpStream> {
    let host = addr.host();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port = addr.port_u16().unwrap_or(80);
    let s = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host, port)))
        .await
        .ok()?
        .ok()?;
    let _ = s.set_nodelay(true);
    Some(s)
}

async fn connect(addr: &Authority) -> Result<http1::SendRequest<UpstreamBody>, SendError> {
    let stream = connect_tcp(addr).await.ok_or(SendError::Connect)?;
    let io = UpstreamIo {
        inner: TokioIo::new(stream),
        broken: false,
    };
    let (send, conn) = http1::Builder::new()
        .writev(false)
        .handshake(io)
        .await
        .map_err(SendError::Http)?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(send)
}

impl UpstreamClient {
    /// Sends `req` (origin-form URI, Host set) to `addr` over a pooled connection, or a new one.
    /// A request that never left because a pooled connection had closed is retried, as
    /// hyper-util's client does.
    async fn send(
        &self,
        addr: &Authority,
        mut req: Request<UpstreamBody>,
    ) -> Result<(Response<Incoming>, Conn), SendError> {
        loop {
            let (mut send, reused) = match self.pool.check_out(addr) {
                Some(s) => (s, true),
                // Boxed: a rare path whose state would otherwise make every request's future
                // (moved into hyper's dispatcher per request) larger.
                None => (Box::pin(connect(addr)).await?, false),
            };
            if let Err(e) = send.ready().await {
                if reused {
                    continue;
                }
                return Err(SendError::Http(e));
            }
            match send.try_send_request(req).await {
                Ok(resp) => {
                    let conn = Conn {
                        send,
                        addr: addr.clone(),
                        pool: self.pool.clone(),
                    };
                    return Ok((resp, conn));
                }
                Err(mut e) => match e.take_message() {
                    Some(r) if reused => req = r,
                    _ => return Err(SendError::Http(e.into_error())),
                },
            }
        }
    }
}

/// A client that reuses connections to instances (HTTP/1.1 keep-alive, no Nagle).
pub fn upstream_client() -> UpstreamClient {
    UpstreamClient::default()
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

fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name) || name == header::UPGRADE
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages have none: one pass over the names beats eight hash lookups.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
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

/// A request's 32-hex-digit trace id, kept on the stack: it becomes a `String` only for the log.
#[derive(Clone, Copy)]
pub(crate) struct TraceId([u8; 32]);

impl TraceId {
    pub(crate) fn from_slice(s: &[u8]) -> Option<TraceId> {
        <[u8; 32]>::try_from(s).ok().map(TraceId)
    }
    pub(crate) fn random() -> TraceId {
        let mut out = [0u8; 32];
        hex_into(rand::random::<u128>(), &mut out);
        TraceId(out)
    }
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }
    pub(crate) fn to_log(self) -> String {
        String::from_utf8_lossy(&self.0).into_owned()
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Lower-case hex of `v`, zero-padded to fill `out`.
pub(crate) fn hex_into(mut v: u128, out: &mut [u8]) {
    for b in out.iter_mut().rev() {
        *b = HEX[(v & 0xf) as usize];
        v >>= 4;
    }
}

pub(crate) fn put_decimal(buf: &mut impl BufMut, mut v: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    buf.put_slice(&digits[i..]);
}

/// Trace id for this request: the client's (from traceparent or X-Cloud-Trace-Context) or a new one.
/// Whichever of the two headers is missing is added, both from one buffer.
fn trace_headers(headers: &mut HeaderMap) -> TraceId {
    let from_traceparent = headers
        .get(&TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let mut parts = v.split('-');
            let _version = parts.next();
            let id = parts.next()?;
            // At least four parts, the second of 32 characters.
            parts.next()?;
            parts.next()?;
            TraceId::from_slice(id.as_bytes())
        });
    let from_cloud = headers
        .get(&X_CLOUD_TRACE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split('/').next())
        .filter(|t| t.len() == 32 && t.bytes().all(|b| b.is_ascii_hexdigit()))
        .and_then(|t| TraceId::from_slice(t.as_bytes()));
    let trace = from_traceparent
        .or(from_cloud)
        .unwrap_or_else(TraceId::random);
    let span: u64 = rand::random::<u64>() | 1;
    if from_cloud.is_some() && from_traceparent.is_some() {
        return trace;
    }
    let mut buf = BytesMut::with_capacity(128);
    if from_cloud.is_none() {
        // `{trace}/{span};o=1`, span in decimal.
        buf.put_slice(trace.as_bytes());
        buf.put_u8(b'/');
        put_decimal(&mut buf, span);
        buf.put_slice(b";o=1");
        let v = buf.split().freeze();
        if let Ok(v) = HeaderValue::from_maybe_shared(v) {
            headers.insert(&X_CLOUD_TRACE, v);
        }
    }
    if from_traceparent.is_none() {
        // `00-{trace}-{span:016x}-01`.
        let mut span_hex = [0u8; 16];
        hex_into(u128::from(span), &mut span_hex);
        buf.put_slice(b"00-");
        buf.put_slice(trace.as_bytes());
        buf.put_u8(b'-');
        buf.put_slice(&span_hex);
        buf.put_slice(b"-01");
        let v = buf.split().freeze();
        if let Ok(v) = HeaderValue::from_maybe_shared(v) {
            headers.insert(&TRACEPARENT, v);
        }
    }
    trace
}

thread_local! {
    /// The last peer address and its X-Forwarded-For value: a connection's requests share one.
    static PEER_VALUE: RefCell<Option<(IpAddr, HeaderValue)>> = const { RefCell::new(None) };
}

fn peer_value(ip: IpAddr) -> Option<HeaderValue> {
    PEER_VALUE.with(|cell| {
        let mut cell = cell.borrow_mut();
        if let Some((cached, v)) = cell.as_ref() {
            if *cached == ip {
                return Some(v.clone());
            }
        }
        let v = HeaderValue::from_str(&ip.to_string()).ok()?;
        *cell = Some((ip, v.clone()));
        Some(v)
    })
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
    // What the request log needs is copied only when there is a log.
    let logged = logger.enabled().then(|| {
        (
            req.method().clone(),
            crate::telemetry::full_url(&req),
            req.headers().get(header::USER_AGENT).cloned(),
        )
    });
    let (result, trace) = forward_inner(service, client, req, peer, deadline).await;
    let (resp, instance, cold) = match result {
        Ok((resp, instance, cold)) => (resp, Some(instance), cold),
        Err(e) => (e.into_response().map(Either::Right), None, false),
    };
    let status = resp.status().as_u16();
    service.pool.counters.record_status(status);
    if let Some((method, url, user_agent)) = logged {
        logger.log(RequestLog {
            service: service.spec.name.clone(),
            revision: service.spec.revision.clone(),
            method,
            url,
            status,
            latency: arrived.elapsed(),
            remote_ip: peer.ip(),
            user_agent,
            trace: trace.map(TraceId::to_log),
            instance,
            cold_start: cold,
        });
    }
    resp
}

type Forwarded = (Response<FrontBody>, Arc<str>, bool);

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

async fn forward_inner(
    service: &Arc<ServiceRuntime>,
    client: &UpstreamClient,
    req: Request<Incoming>,
    peer: SocketAddr,
    deadline: Instant,
) -> (Result<Forwarded, ProxyError>, Option<TraceId>) {
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
    // Every X-Forwarded-For line the client sent (one list, RFC 9110 §5.3), then the client.
    let prev: Vec<&str> = parts
        .headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::trim)
        .collect();
    let xff = if prev.is_empty() {
        peer_value(peer.ip())
    } else {
        HeaderValue::from_str(&format!("{}, {}", prev.join(", "), peer.ip())).ok()
    };
    if let Some(v) = xff {
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
    let Some(addr) = permit.slot.addr() else {
        return (Err(ProxyError::InstanceFailed), Some(trace));
    };
    if !parts.headers.contains_key(header::HOST) {
        // HTTP/1.1 needs a Host: the instance's address, as a client library would send.
        if let Ok(v) = HeaderValue::from_str(addr.as_str()) {
            parts.headers.insert(header::HOST, v);
        }
    }
    parts.uri = origin_form(std::mem::take(&mut parts.uri));
    parts.version = http::Version::HTTP_11;
    let upstream_req = Request::from_parts(parts, Limited::new(body, MAX_BODY));

    // One timer for the whole request, first for the response head, then in the body; boxed so
    // it moves with the response as a pointer.
    let mut timer = Box::pin(tokio::time::sleep_until(deadline));
    let sent = tokio::select! {
        biased;
        r = client.send(addr, upstream_req) => Ok(r),
        () = &mut timer => Err(()),
    };
    let (resp, conn) = match sent {
        Err(()) => return (Err(ProxyError::UpstreamTimeout), Some(trace)),
        Ok(Err(SendError::Connect)) => {
            let state = permit.slot.state();
            tracing::debug!(instance = %permit.slot.id, ?state, "cannot connect to the instance");
            return (Err(ProxyError::InstanceFailed), Some(trace));
        }
        Ok(Err(SendError::Http(e))) => {
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
    if let Some(v) = permit.slot.id_header() {
        parts.headers.insert(&X_EMU_INSTANCE, v.clone());
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
        deadline: timer,
        permit: Some(permit),
        conn: Some(conn),
        done: false,
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
